//! Package files shared by composes, and their checksums.
//!
//! The cache is a flat directory of `.deb` files named the way apt names them in
//! `/var/cache/apt/archives` (`<name>_<version, ':' as %3a>_<arch>.deb`), plus `.index`, one line per file
//! with its size, modification time, sha256 and when a compose last used it, and `.lock`, held while the
//! index and the file set change. Before mmdebstrap runs, [`DebCache::stage`] hard links (or copies) every
//! cached file into a staging directory that mmdebstrap's setup hook puts into the tree's apt archive;
//! apt checks each file against the repository's checksum and downloads only what is missing or different.
//! Afterwards [`DebCache::add`] takes the files of the installed packages from the customize hook's
//! staging directory, stores the new ones (temporary name, then rename) and returns every file's sha256.
//!
//! Files are never changed in place: apt and dpkg only read them and replace archive files by renaming, so
//! the same inode can be linked into a tree, a staging directory and the cache at once.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;
use slipway_model::{LockedPackage, Sha256};

use super::{io_err, now_unix, unique_suffix, CacheError, FileLock};

const INDEX: &str = ".index";
const LOCK: &str = ".lock";
const TMP_PREFIX: &str = ".tmp-";
const INDEX_HEADER: &str = "slipway deb cache index 1";

/// When cached package files are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebPrunePolicy {
    /// A file not used by any of the last this many composes that recorded their packages is dropped.
    pub keep_composes: u64,
    /// A file no compose used for this long is dropped.
    pub max_age: Duration,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DebPruned {
    /// Files removed.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The file name apt gives a package's file in its archive directory: name, version and architecture
/// joined by `_`, with the epoch colon written `%3a`.
pub fn deb_file_name(package: &LockedPackage) -> String {
    format!(
        "{}_{}_{}.deb",
        package.name,
        package.version.replace(':', "%3a"),
        package.architecture
    )
}

/// The sha256 of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<Sha256> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256::from_bytes(hasher.finalize().into()))
}

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    sha256: Sha256,
    /// The compose generation that last used the file.
    used_generation: u64,
    /// When it was last used, in seconds since the epoch.
    used_at: i64,
}

#[derive(Debug, Default)]
struct Index {
    /// Counts composes that recorded their packages.
    generation: u64,
    entries: BTreeMap<String, Entry>,
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

fn is_cached_name(name: &str) -> bool {
    name.ends_with(".deb") && !name.starts_with('.') && !name.contains(['\t', '\n', '/'])
}

impl Index {
    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != INDEX_HEADER {
            return None;
        }
        let generation = lines.next()?.strip_prefix("generation\t")?.parse().ok()?;
        let mut entries = BTreeMap::new();
        for line in lines {
            let f: Vec<&str> = line.split('\t').collect();
            let [name, size, mtime, sha, generation, used_at] = f[..] else {
                return None;
            };
            entries.insert(
                name.to_string(),
                Entry {
                    size: size.parse().ok()?,
                    mtime_ns: mtime.parse().ok()?,
                    sha256: Sha256::parse(sha).ok()?,
                    used_generation: generation.parse().ok()?,
                    used_at: used_at.parse().ok()?,
                },
            );
        }
        Some(Self {
            generation,
            entries,
        })
    }

    fn render(&self) -> String {
        let mut out = format!("{INDEX_HEADER}\ngeneration\t{}\n", self.generation);
        for (name, e) in &self.entries {
            out.push_str(&format!(
                "{name}\t{}\t{}\t{}\t{}\t{}\n",
                e.size,
                e.mtime_ns,
                e.sha256.as_str(),
                e.used_generation,
                e.used_at
            ));
        }
        out
    }
}

/// The package file cache in one directory.
#[derive(Debug, Clone)]
pub struct DebCache {
    dir: PathBuf,
}

impl DebCache {
    /// The cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Links every cached package file into `staging` (created if missing): a hard link where the two
    /// directories share a filesystem, a copy otherwise. A file pruned by another compose in the meantime
    /// is skipped; apt downloads it. Returns how many files were staged.
    pub fn stage(&self, staging: &Path) -> Result<usize, CacheError> {
        std::fs::create_dir_all(staging).map_err(io_err("creating", staging))?;
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("reading", &self.dir)(e)),
        };
        let mut staged = 0;
        for entry in entries {
            let entry = entry.map_err(io_err("reading", &self.dir))?;
            let name = entry.file_name();
            if !name.to_str().is_some_and(is_cached_name) {
                continue;
            }
            let from = entry.path();
            let to = staging.join(&name);
            match link_or_copy(&from, &to) {
                Ok(()) => staged += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("staging", &from)(e)),
            }
        }
        Ok(staged)
    }

    /// Adds the files named in `names` that are in `dir` to the cache, records that one compose used them,
    /// prunes by `policy`, and returns the sha256 of each file found, by file name. A file already cached
    /// as the same inode is not read again; its checksum comes from the index.
    pub fn add(
        &self,
        dir: &Path,
        names: &[String],
        policy: &DebPrunePolicy,
    ) -> Result<HashMap<String, Sha256>, CacheError> {
        self.update(policy, |cache, index, generation, now| {
            let mut sums = HashMap::new();
            for name in names.iter().filter(|n| is_cached_name(n)) {
                let staged = dir.join(name);
                let Ok(staged_meta) = std::fs::symlink_metadata(&staged) else {
                    continue;
                };
                let cached = cache.dir.join(name);
                let cached_meta = std::fs::symlink_metadata(&cached).ok();
                let same_inode = cached_meta
                    .as_ref()
                    .is_some_and(|m| m.dev() == staged_meta.dev() && m.ino() == staged_meta.ino());
                let sha = if same_inode {
                    cache.known_sha(index, name)?
                } else {
                    let sha = sha256_file(&staged).map_err(io_err("hashing", &staged))?;
                    // A different file under the same name (the repository rebuilt the package without a
                    // new version) replaces the cached one: the cache holds what was last installed.
                    let keep = match &cached_meta {
                        Some(_) => cache.known_sha(index, name)? == sha,
                        None => false,
                    };
                    if !keep {
                        cache.insert(&staged, name)?;
                    }
                    sha
                };
                let meta =
                    std::fs::symlink_metadata(&cached).map_err(io_err("reading", &cached))?;
                index.entries.insert(
                    name.clone(),
                    Entry {
                        size: meta.len(),
                        mtime_ns: mtime_ns(&meta),
                        sha256: sha.clone(),
                        used_generation: generation,
                        used_at: now,
                    },
                );
                sums.insert(name.clone(), sha);
            }
            Ok(sums)
        })
    }

    /// Records that a compose used the cached files in `names` (one that reused an installed tree), so a
    /// prune keeps them for when the tree has to be built again, and prunes by `policy`.
    pub fn record_use(&self, names: &[String], policy: &DebPrunePolicy) -> Result<(), CacheError> {
        self.update(policy, |cache, index, generation, now| {
            for name in names.iter().filter(|n| is_cached_name(n)) {
                if cache.dir.join(name).exists() {
                    let _ = cache.known_sha(index, name)?;
                    if let Some(entry) = index.entries.get_mut(name) {
                        entry.used_generation = generation;
                        entry.used_at = now;
                    }
                }
            }
            Ok(())
        })
    }

    /// Drops the files no compose needs by `policy` without recording a use.
    pub fn prune(&self, policy: &DebPrunePolicy) -> Result<DebPruned, CacheError> {
        std::fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let _lock = FileLock::exclusive(&self.dir.join(LOCK))?;
        let mut index = self.read_index();
        let pruned = self.prune_locked(&mut index, policy, now_unix())?;
        self.write_index(&index)?;
        Ok(pruned)
    }

    /// Under the cache's lock: reads the index, lets `work` change files and entries as compose number
    /// `generation`, prunes, and writes the index back.
    fn update<T>(
        &self,
        policy: &DebPrunePolicy,
        work: impl FnOnce(&Self, &mut Index, u64, i64) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        std::fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let _lock = FileLock::exclusive(&self.dir.join(LOCK))?;
        let mut index = self.read_index();
        index.generation += 1;
        let now = now_unix();
        let generation = index.generation;
        let out = work(self, &mut index, generation, now)?;
        let pruned = self.prune_locked(&mut index, policy, now)?;
        if pruned.files > 0 {
            tracing::info!(
                files = pruned.files,
                bytes = pruned.bytes,
                "pruned the package cache"
            );
        }
        self.write_index(&index)?;
        Ok(out)
    }

    /// The sha256 of a cached file: from the index when its size and modification time still match,
    /// otherwise read (and entered in the index, as unused).
    fn known_sha(&self, index: &mut Index, name: &str) -> Result<Sha256, CacheError> {
        let path = self.dir.join(name);
        let meta = std::fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
        if let Some(entry) = index.entries.get(name) {
            if entry.size == meta.len() && entry.mtime_ns == mtime_ns(&meta) {
                return Ok(entry.sha256.clone());
            }
        }
        let sha = sha256_file(&path).map_err(io_err("hashing", &path))?;
        let previous = index.entries.get(name);
        let entry = Entry {
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
            sha256: sha.clone(),
            used_generation: previous.map_or(0, |e| e.used_generation),
            used_at: previous.map_or(meta.mtime(), |e| e.used_at),
        };
        index.entries.insert(name.to_string(), entry);
        Ok(sha)
    }

    /// Puts `from` into the cache as `name`: linked (or copied) to a temporary name, then renamed over any
    /// older file, so a reader sees the old file or the new one and never a part.
    fn insert(&self, from: &Path, name: &str) -> Result<(), CacheError> {
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}", unique_suffix()));
        link_or_copy(from, &tmp).map_err(io_err("storing", &tmp))?;
        let to = self.dir.join(name);
        std::fs::rename(&tmp, &to).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err("renaming into place", &to)(e)
        })
    }

    fn read_index(&self) -> Index {
        let path = self.dir.join(INDEX);
        match std::fs::read_to_string(&path) {
            Ok(text) => Index::parse(&text).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "unreadable package cache index; rebuilding it");
                Index::default()
            }),
            Err(_) => Index::default(),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), CacheError> {
        let path = self.dir.join(INDEX);
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}index-{}", unique_suffix()));
        let mut file = std::fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        file.write_all(index.render().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))
    }

    /// Removes files not used by the last `keep_composes` composes or unused for `max_age`, index entries
    /// of files that are gone, and temporary files of interrupted composes (the caller holds the lock, so
    /// no temporary file is in use).
    fn prune_locked(
        &self,
        index: &mut Index,
        policy: &DebPrunePolicy,
        now: i64,
    ) -> Result<DebPruned, CacheError> {
        let mut pruned = DebPruned::default();
        let oldest_kept_generation = index
            .generation
            .saturating_sub(policy.keep_composes.saturating_sub(1));
        let max_age = i64::try_from(policy.max_age.as_secs()).unwrap_or(i64::MAX);
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pruned),
            Err(e) => return Err(io_err("reading", &self.dir)(e)),
        };
        let mut present = std::collections::HashSet::new();
        for entry in entries {
            let entry = entry.map_err(io_err("reading", &self.dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with(TMP_PREFIX) {
                remove_file(&path)?;
                continue;
            }
            if !is_cached_name(&name) {
                continue;
            }
            // A file the index does not know (left by an interrupted compose or put there by hand)
            // counts as used by generation 0, when the file was last modified.
            let (generation, used_at) = index
                .entries
                .get(&name)
                .map_or((0, file_mtime(&path)), |e| (e.used_generation, e.used_at));
            let stale = generation < oldest_kept_generation
                || now.saturating_sub(used_at) > max_age
                || policy.keep_composes == 0;
            if stale {
                let size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
                remove_file(&path)?;
                index.entries.remove(&name);
                pruned.files += 1;
                pruned.bytes += size;
            } else {
                present.insert(name);
            }
        }
        index.entries.retain(|name, _| present.contains(name));
        Ok(pruned)
    }
}

fn file_mtime(path: &Path) -> i64 {
    std::fs::symlink_metadata(path).map_or(0, |m| m.mtime())
}

fn remove_file(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("removing", path)(e)),
        _ => Ok(()),
    }
}

/// Hard links `from` to `to`, or copies it where a link is impossible (another filesystem). An existing
/// `to` is replaced.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(to)?;
            link_or_copy(from, to)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(e),
        Err(_) => {
            // Another filesystem, or links not allowed: copy under a temporary name so `to` never holds
            // part of a file.
            let tmp = to.with_file_name(format!("{TMP_PREFIX}copy-{}", unique_suffix()));
            let copied = std::fs::copy(from, &tmp)
                .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, to));
            if copied.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            copied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(keep_composes: u64) -> DebPrunePolicy {
        DebPrunePolicy {
            keep_composes,
            max_age: Duration::from_secs(3600),
        }
    }

    fn package(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            sha256: None,
            source: None,
            suite: None,
        }
    }

    #[test]
    fn file_names_follow_apt() {
        assert_eq!(
            deb_file_name(&package("libc6", "2.36-9+deb12u4")),
            "libc6_2.36-9+deb12u4_amd64.deb"
        );
        assert_eq!(
            deb_file_name(&package("systemd", "1:252.22-1~deb12u1")),
            "systemd_1%3a252.22-1~deb12u1_amd64.deb"
        );
    }

    #[test]
    fn files_are_added_hashed_once_staged_and_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DebCache::new(dir.path().join("debs"));
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        std::fs::write(out.join("a_1_amd64.deb"), b"package a").expect("write");
        std::fs::write(out.join("b_1_amd64.deb"), b"package b").expect("write");
        let names = vec!["a_1_amd64.deb".to_string(), "b_1_amd64.deb".to_string()];

        let sums = cache.add(&out, &names, &policy(2)).expect("add");
        assert_eq!(
            sums["a_1_amd64.deb"],
            slipway_model::sha256_hex(b"package a")
        );
        assert_eq!(sums.len(), 2);

        let staging = dir.path().join("in");
        assert_eq!(cache.stage(&staging).expect("stage"), 2);
        assert_eq!(
            std::fs::read(staging.join("b_1_amd64.deb")).expect("read"),
            b"package b"
        );
        // The index and lock are not package files and are never staged.
        assert!(!staging.join(INDEX).exists());

        // Adding a staged (same inode) file again takes its checksum from the index.
        let again = cache.add(&staging, &names[..1], &policy(2)).expect("add");
        assert_eq!(again["a_1_amd64.deb"], sums["a_1_amd64.deb"]);

        // b was last used two composes ago; with one compose kept it goes, a stays.
        let pruned = cache.prune(&policy(1)).expect("prune");
        assert_eq!(pruned.files, 1);
        assert!(cache.dir().join("a_1_amd64.deb").exists());
        assert!(!cache.dir().join("b_1_amd64.deb").exists());
    }

    #[test]
    fn a_rebuilt_file_under_the_same_name_replaces_the_cached_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DebCache::new(dir.path().join("debs"));
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        let names = vec!["a_1_amd64.deb".to_string()];
        std::fs::write(out.join("a_1_amd64.deb"), b"first build").expect("write");
        cache.add(&out, &names, &policy(4)).expect("add");
        std::fs::remove_file(out.join("a_1_amd64.deb")).expect("rm");
        std::fs::write(out.join("a_1_amd64.deb"), b"second build").expect("write");
        let sums = cache.add(&out, &names, &policy(4)).expect("add");
        assert_eq!(
            sums["a_1_amd64.deb"],
            slipway_model::sha256_hex(b"second build")
        );
        assert_eq!(
            std::fs::read(cache.dir().join("a_1_amd64.deb")).expect("read"),
            b"second build"
        );
    }

    #[test]
    fn leftover_temporary_files_are_removed_and_a_bad_index_is_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DebCache::new(dir.path().to_path_buf());
        std::fs::write(dir.path().join(".tmp-123-4-5"), b"half").expect("write");
        std::fs::write(dir.path().join(INDEX), b"garbage").expect("write");
        std::fs::write(dir.path().join("a_1_amd64.deb"), b"a").expect("write");
        cache
            .record_use(&["a_1_amd64.deb".into()], &policy(3))
            .expect("record");
        assert!(!dir.path().join(".tmp-123-4-5").exists());
        assert!(dir.path().join("a_1_amd64.deb").exists());
        let index = cache.read_index();
        assert_eq!(index.generation, 1);
        assert_eq!(index.entries["a_1_amd64.deb"].used_generation, 1);
    }
}
