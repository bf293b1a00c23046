//! A content-addressed cache of compressed chunks, shared by the format writers and by composes.
//!
//! Both writers cut the raw disk into chunks whose compressed form depends only on the chunk's own bytes
//! and the writer's settings, never on where the chunk lies: an `.xz` block restarts its dictionary and
//! carries its own header and check, a qcow2 cluster is its own deflate stream and the tables that place
//! it are rebuilt on every write. A rebuild that changes a few files leaves most chunks as they were, so
//! their compressed bytes are copied from an earlier build instead of computed again, and the output is
//! byte for byte what compressing would have given.
//!
//! - **Keys** are sha256 over a domain tag, the writer's namespace (format, every parameter that shapes
//!   its output, and a fingerprint of the encoder's output on a fixed sample, so a changed compression
//!   library cannot serve bytes the current one would not produce) and the uncompressed bytes. Serving a
//!   wrong entry would take a sha256 collision.
//! - **Entries** live at `<dir>/<first two hex digits>/<key in hex>`: a header (magic, the key, the
//!   payload's length and sha256) and the payload. They are written under a temporary name and renamed,
//!   and never synced: an entry torn by a crash fails its checksum, is removed and recompressed, so
//!   durability would buy nothing.
//! - **Size** is bounded by [`ChunkCache::prune`], which removes the least recently used entries (a hit
//!   touches its entry's modification time) until the cache fits its limit.
//!
//! Several writers and several processes may use one directory at once: writes are atomic renames of
//! identical content, and a reader that loses an entry to a concurrent prune simply compresses.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::Digest as _;

/// Default size limit of a chunk cache: room for the chunks of four or five composes of a cloud image
/// whose every chunk changed (an image with 765 MiB of data fills 445 MiB over both formats), and of
/// many more that share most of their chunks, as rebuilds after small changes do.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// Bumped whenever the entry layout or the meaning of a key changes, so old entries are never misread.
const FORMAT_VERSION: u32 = 1;
/// First bytes of every entry.
const MAGIC: &[u8; 8] = b"SLWCHNK1";
/// Magic, key, payload length, payload sha256.
const HEADER_LEN: usize = 8 + 32 + 8 + 32;
/// Temporary files older than this are leftovers of a crashed writer, removed by `prune`.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Why a chunk cache operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkCacheError {
    /// A file system operation on the cache failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Counters of one [`ChunkCache`] value since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Chunks copied from the cache.
    pub hits: u64,
    /// Chunks not in the cache (compressed, then stored).
    pub misses: u64,
    /// Entries that failed verification: removed, and their chunks compressed.
    pub corrupt: u64,
    /// Entries written.
    pub stored: u64,
    /// Entries that could not be written (the output is unaffected).
    pub store_failures: u64,
}

/// What [`ChunkCache::prune`] found and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// Entries left in the cache.
    pub kept_entries: u64,
    /// Their total size in bytes.
    pub kept_bytes: u64,
    /// Entries removed (least recently used first).
    pub removed_entries: u64,
    /// Their total size in bytes.
    pub removed_bytes: u64,
}

/// A directory of compressed chunks, keyed by content. See the module documentation.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    max_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    stored: AtomicU64,
    store_failures: AtomicU64,
    /// A full disk, a read-only or unreadable cache would otherwise warn once per chunk.
    warned_store: AtomicBool,
    warned_load: AtomicBool,
}

impl ChunkCache {
    /// A cache in `dir` (created on first write) that [`prune`](Self::prune) keeps under `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            store_failures: AtomicU64::new(0),
            warned_store: AtomicBool::new(false),
            warned_load: AtomicBool::new(false),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size limit `prune` applies.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// What this value has done so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            store_failures: self.store_failures.load(Ordering::Relaxed),
        }
    }

    /// Where the entry for `key` lives.
    pub fn entry_path(&self, key: &ChunkKey) -> PathBuf {
        let hex = key.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// The payload stored under `key`, passed through `decode`; `None` if there is none or it is
    /// damaged. An entry that fails its checksum, or that `decode` rejects, is removed so the next
    /// write replaces it.
    pub(crate) fn load<T>(
        &self,
        key: &ChunkKey,
        decode: impl FnOnce(Vec<u8>) -> Option<T>,
    ) -> Option<T> {
        let path = self.entry_path(key);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(error) => {
                if error.kind() != std::io::ErrorKind::NotFound
                    && !self.warned_load.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(path = %path.display(), %error, "cannot read the chunk cache; compressing instead");
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let mut bytes = Vec::new();
        if let Err(error) = file.read_to_end(&mut bytes) {
            if !self.warned_load.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %path.display(), %error, "cannot read the chunk cache; compressing instead");
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match verify(key, bytes).and_then(decode) {
            Some(value) => {
                // The modification time is the recency `prune` goes by; failing to set it only makes
                // the entry look older.
                let _ = file.set_modified(SystemTime::now());
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            None => {
                tracing::warn!(path = %path.display(), "damaged chunk cache entry; compressing the chunk again");
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                self.misses.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the concatenation of `parts` under `key`. A failure is counted and logged once, never
    /// returned: the cache only saves time, and the chunk is already compressed.
    pub(crate) fn store(&self, key: &ChunkKey, parts: &[&[u8]]) {
        match self.try_store(key, parts) {
            Ok(()) => {
                self.stored.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.store_failures.fetch_add(1, Ordering::Relaxed);
                if !self.warned_store.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %error, "cannot write to the chunk cache; later builds will compress these chunks again");
                }
            }
        }
    }

    fn try_store(&self, key: &ChunkKey, parts: &[&[u8]]) -> Result<(), ChunkCacheError> {
        let path = self.entry_path(key);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|source| io("creating", parent, source))?;
        // Unique per process and thread: a thread writes one entry at a time, and two writers of the
        // same key rename identical content over each other.
        let thread = format!("{:?}", std::thread::current().id());
        let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
        let temp = parent.join(format!(
            ".{}.{}.{thread}.tmp",
            key.to_hex(),
            std::process::id()
        ));
        let result = write_entry(&temp, key, parts).and_then(|()| {
            std::fs::rename(&temp, &path).map_err(|source| io("renaming to", &path, source))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// Removes least recently used entries until the cache holds at most its limit, and temporary
    /// files that crashed writers left behind.
    pub fn prune(&self) -> Result<PruneStats, ChunkCacheError> {
        self.prune_to(self.max_bytes)
    }

    /// Like [`prune`](Self::prune), with another limit (`0` empties the cache).
    pub fn prune_to(&self, max_bytes: u64) -> Result<PruneStats, ChunkCacheError> {
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        let top = match std::fs::read_dir(&self.dir) {
            Ok(top) => top,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PruneStats::default())
            }
            Err(source) => return Err(io("listing", &self.dir, source)),
        };
        let now = SystemTime::now();
        for sub in top {
            let sub = sub.map_err(|source| io("listing", &self.dir, source))?;
            let sub_path = sub.path();
            if !sub_path.is_dir() {
                continue;
            }
            let files = match std::fs::read_dir(&sub_path) {
                Ok(files) => files,
                // Another pruner removed it, or it is not ours to read: skip, do not fail.
                Err(_) => continue,
            };
            for file in files {
                let Ok(file) = file else { continue };
                let path = file.path();
                // A concurrent prune or rename may have taken the file since it was listed.
                let Ok(meta) = file.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let is_temp = file.file_name().to_string_lossy().starts_with('.');
                if is_temp {
                    if now.duration_since(modified).unwrap_or_default() > STALE_TEMP {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                }
                entries.push((modified, meta.len(), path));
            }
        }
        // Oldest first; the path breaks ties so two pruners agree on the order.
        entries.sort();
        let mut stats = PruneStats {
            kept_entries: entries.len() as u64,
            kept_bytes: entries.iter().map(|e| e.1).sum(),
            ..PruneStats::default()
        };
        for (_, len, path) in entries {
            if stats.kept_bytes <= max_bytes {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io("removing", &path, source)),
            }
            stats.kept_entries -= 1;
            stats.kept_bytes -= len;
            stats.removed_entries += 1;
            stats.removed_bytes += len;
        }
        Ok(stats)
    }
}

/// The key of one chunk: sha256 of the writer's namespace and the chunk's uncompressed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkKey([u8; 32]);

impl ChunkKey {
    /// The key as 64 lowercase hex digits, as entries are named.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Makes the keys of one writer: a hasher already fed with the domain tag and the namespace, cloned
/// for each chunk.
#[derive(Clone)]
pub(crate) struct ChunkKeyer {
    prefix: sha2::Sha256,
}

impl ChunkKeyer {
    /// A keyer for `namespace`, which must name everything besides the chunk's bytes that shapes the
    /// compressed result.
    pub(crate) fn new(namespace: &str) -> Self {
        let mut prefix = sha2::Sha256::new();
        prefix.update(b"slipway chunk cache\0");
        prefix.update(FORMAT_VERSION.to_le_bytes());
        prefix.update((namespace.len() as u64).to_le_bytes());
        prefix.update(namespace.as_bytes());
        Self { prefix }
    }

    /// A hasher to feed the chunk into; callers frame variable-length input themselves.
    pub(crate) fn hasher(&self) -> sha2::Sha256 {
        self.prefix.clone()
    }

    /// The key of a chunk made of `bytes` alone.
    pub(crate) fn key(&self, bytes: &[u8]) -> ChunkKey {
        let mut h = self.hasher();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
        Self::finish(h)
    }

    /// The key from a hasher returned by [`hasher`](Self::hasher).
    pub(crate) fn finish(hasher: sha2::Sha256) -> ChunkKey {
        ChunkKey(hasher.finalize().into())
    }
}

/// A short digest of `bytes` for namespaces: the encoder's output on a fixed sample.
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    hex::encode(&sha2::Sha256::digest(bytes)[..16])
}

/// 64 KiB of text-like bytes, the same on every run, to fingerprint encoders with: a library update
/// that changes what the encoder emits changes the fingerprint and so every key.
pub(crate) fn fingerprint_sample() -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"slipway ",
        b"kernel ",
        b"/usr/lib/x86_64-linux-gnu ",
        b"0123 ",
        b"systemd-networkd ",
        b"\n",
        b"ELF\x02\x01\x01 ",
        b"\x00\x00\x00\x00",
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(1 << 16);
    while out.len() < 1 << 16 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 8) as usize]);
        if x % 5 == 1 {
            out.push((x >> 40) as u8);
        }
    }
    out.truncate(1 << 16);
    out
}

/// Checks an entry's header against `key` and its payload against the stored length and sha256, and
/// returns the payload.
fn verify(key: &ChunkKey, mut bytes: Vec<u8>) -> Option<Vec<u8>> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC || bytes[8..40] != key.0 {
        return None;
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[40..48]);
    let len = u64::from_le_bytes(len);
    if (bytes.len() - HEADER_LEN) as u64 != len {
        return None;
    }
    let digest = sha2::Sha256::digest(&bytes[HEADER_LEN..]);
    if digest.as_slice() != &bytes[48..HEADER_LEN] {
        return None;
    }
    bytes.drain(..HEADER_LEN);
    Some(bytes)
}

fn write_entry(path: &Path, key: &ChunkKey, parts: &[&[u8]]) -> Result<(), ChunkCacheError> {
    let mut digest = sha2::Sha256::new();
    let mut len = 0u64;
    for part in parts {
        digest.update(part);
        len += part.len() as u64;
    }
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&key.0);
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&digest.finalize());
    let mut file = File::create(path).map_err(|source| io("creating", path, source))?;
    file.write_all(&header)
        .map_err(|source| io("writing", path, source))?;
    for part in parts {
        file.write_all(part)
            .map_err(|source| io("writing", path, source))?;
    }
    Ok(())
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> ChunkCacheError {
    ChunkCacheError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, ChunkCache) {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = ChunkCache::new(dir.path().join("chunks"), 1 << 20);
        (dir, cache)
    }

    #[test]
    fn stores_and_loads() {
        let (_dir, cache) = cache();
        let key = ChunkKeyer::new("test").key(b"uncompressed");
        assert_eq!(cache.load(&key, Some), None);
        cache.store(&key, &[b"comp", b"ressed"]);
        assert_eq!(cache.load(&key, Some), Some(b"compressed".to_vec()));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.stored), (1, 1, 1));
    }

    #[test]
    fn keys_depend_on_namespace_and_framing() {
        let a = ChunkKeyer::new("a");
        let b = ChunkKeyer::new("b");
        assert_ne!(a.key(b"x"), b.key(b"x"));
        assert_ne!(a.key(b"x"), a.key(b"x\0"));
        assert_eq!(a.key(b"x"), a.key(b"x"));
    }

    #[test]
    fn damaged_entries_are_removed() {
        let (_dir, cache) = cache();
        let key = ChunkKeyer::new("test").key(b"data");
        for damage in [
            |b: &mut Vec<u8>| b.truncate(b.len() - 1),
            |b: &mut Vec<u8>| {
                let last = b.len() - 1;
                b[last] ^= 1;
            },
            |b: &mut Vec<u8>| b[0] = b'X',
            |b: &mut Vec<u8>| b.truncate(10),
        ] {
            cache.store(&key, &[b"payload"]);
            let path = cache.entry_path(&key);
            let mut bytes = std::fs::read(&path).expect("entry");
            damage(&mut bytes);
            std::fs::write(&path, &bytes).expect("damage");
            assert_eq!(cache.load(&key, Some), None);
            assert!(!path.exists(), "a damaged entry is removed");
        }
        assert_eq!(cache.stats().corrupt, 4);
    }

    #[test]
    fn an_entry_under_another_key_is_rejected() {
        let (_dir, cache) = cache();
        let keyer = ChunkKeyer::new("test");
        let (a, b) = (keyer.key(b"a"), keyer.key(b"b"));
        cache.store(&a, &[b"payload of a"]);
        let b_path = cache.entry_path(&b);
        std::fs::create_dir_all(b_path.parent().expect("parent")).expect("dir");
        std::fs::copy(cache.entry_path(&a), &b_path).expect("copy");
        assert_eq!(cache.load(&b, Some), None);
    }

    #[test]
    fn decode_rejection_counts_as_damage() {
        let (_dir, cache) = cache();
        let key = ChunkKeyer::new("test").key(b"data");
        cache.store(&key, &[b"payload"]);
        assert_eq!(cache.load(&key, |_| None::<()>), None);
        assert_eq!(cache.stats().corrupt, 1);
    }

    #[test]
    fn prune_removes_least_recently_used_first() {
        let (_dir, cache) = cache();
        let keyer = ChunkKeyer::new("test");
        let keys: Vec<ChunkKey> = (0u8..4).map(|i| keyer.key(&[i])).collect();
        let payload = vec![7u8; 1000];
        let base = SystemTime::now() - Duration::from_secs(1000);
        for (i, key) in keys.iter().enumerate() {
            cache.store(key, &[&payload]);
            let file = File::options()
                .write(true)
                .open(cache.entry_path(key))
                .expect("entry");
            file.set_modified(base + Duration::from_secs(i as u64 * 10))
                .expect("mtime");
        }
        // A hit makes the oldest entry the newest.
        assert!(cache.load(&keys[0], Some).is_some());
        let entry = (HEADER_LEN + payload.len()) as u64;
        let stats = cache.prune_to(2 * entry).expect("prune");
        assert_eq!(stats.removed_entries, 2);
        assert_eq!(stats.kept_bytes, 2 * entry);
        let exists: Vec<bool> = keys.iter().map(|k| cache.entry_path(k).exists()).collect();
        assert_eq!(exists, [true, false, false, true]);
        assert_eq!(cache.prune_to(0).expect("prune").kept_entries, 0);
    }

    #[test]
    fn prune_of_a_missing_directory_is_empty() {
        let (_dir, cache) = cache();
        assert_eq!(cache.prune().expect("prune"), PruneStats::default());
    }
}
