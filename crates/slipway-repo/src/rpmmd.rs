//! rpm-md sources (the `repodata/` of Fedora, CentOS Stream, openSUSE): refresh (fetch, verify, commit) and
//! snapshots of what they hold, the rpm counterpart of [`crate::AptRepo`].
//!
//! A refresh fetches `repodata/repomd.xml` conditionally and, when the source names a keyring, checks its
//! detached signature `repomd.xml.asc` with gpgv. It then fetches the `primary` metadata file repomd.xml
//! points at (`primary.xml.gz`, `.zst`, `.xz` or plain), checks its size and checksum, decompresses it, checks
//! the `<open-checksum>` and `<open-size>` of the result, and parses it into [`Package`] values. Only when
//! every check passed does the source's state switch to the new files; any failure leaves the previous good
//! state exactly as it was, and snapshots keep coming from it.
//!
//! The cache, under the directory given to [`RpmRepo::new`]:
//!
//! ```text
//! http/<sha256 of URL>                the last good repomd.xml (and .asc) with its validators (see `http`)
//! rpm/<source key>/state.json         the good state: repomd.xml digest and the primary file it lists
//! rpm/<source key>/primary/<checksum> the verified primary.xml, decompressed, named by the checksum of the
//!                                     compressed file in repomd.xml
//! ```
//!
//! The primary file is kept decompressed so loading a snapshot never decompresses again, and is named by its
//! checksum so a new state never overwrites the file the old one uses: `state.json`, replaced by one rename,
//! is the switch.
//!
//! Packages are written the way [`Package`] asks, in Debian's vocabulary: version `[epoch:]version-release`
//! (epoch 0 left out), provides and requires in relation syntax with rpm's `EQ LT LE GT GE` as
//! `= << <= >> >=`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Decoder, Reader, XmlVersion};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use slipway_exec::CommandRunner;
use slipway_model::PackageSource;

use crate::error::RepoError;
use crate::gpgv::Gpgv;
use crate::http::{temp_path, write_atomically, Fetched, Fetcher};
use crate::state::{
    check_download, commit_state, join_error, remove_unreferenced, GoodState, Open, SourceCache,
};
use crate::{Package, Refresh, RepoSnapshot, VersionScheme};

/// What a failed blocking task was doing.
const PROCESSING: &str = "process the primary metadata in";

/// One rpm-md repository, as a refresh needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RpmSource {
    /// Base URL of the repository: the directory holding `repodata/` (`https://…/fedora/linux/releases/41/
    /// Everything/x86_64/os`, `file:///srv/repo`).
    pub url: String,
    /// The repository id (`fedora`, `updates`), used as the snapshot's suite.
    pub name: String,
    /// Binary OpenPGP keyring to check `repodata/repomd.xml.asc` against. Without one the signature is not
    /// checked: many rpm-md repositories sign only their packages, not their metadata.
    pub keyring: Option<PathBuf>,
}

impl RpmSource {
    /// The repository at `url` with id `name`, its metadata signature unchecked.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            keyring: None,
        }
    }

    /// Checks `repomd.xml.asc` against `keyring` (a binary keyring, as gpgv reads).
    pub fn with_keyring(mut self, keyring: impl Into<PathBuf>) -> Self {
        self.keyring = Some(keyring.into());
        self
    }

    /// The source a recipe's [`PackageSource`] describes: its suite is the repository id, and a `trusted`
    /// source has its keyring ignored.
    pub fn from_package_source(source: &PackageSource) -> Self {
        Self {
            url: source.url.clone(),
            name: source.suite.clone(),
            keyring: if source.trusted {
                None
            } else {
                source.keyring.clone()
            },
        }
    }

    /// The base URL without a trailing slash.
    fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// The URL of a file given relative to the repository's base (as `<location href>` values are).
    fn file_url(&self, path: &str) -> String {
        format!("{}/{}", self.base(), path.trim_start_matches('/'))
    }

    /// The name of the source's state directory: a hash of what decides its contents, so two sources never
    /// share (and overwrite) one.
    fn key(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [self.base(), &self.name] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hex::encode(&hasher.finalize()[..16])
    }
}

/// A hash algorithm rpm-md metadata names in `<checksum type="…">`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumKind {
    /// `sha256`, what createrepo_c writes by default.
    Sha256,
    /// `sha512`.
    Sha512,
}

impl ChecksumKind {
    /// The algorithm named by a `type` attribute; `None` for the ones slipway does not check (`sha1`, `md5`:
    /// too weak to trust a download on).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The name as repomd.xml writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// The hash of `data`, lowercase hex.
    pub fn digest(self, data: &[u8]) -> String {
        let mut hasher = Hasher::new(self);
        hasher.update(data);
        hasher.finish()
    }
}

/// A checksum as repomd.xml gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// The algorithm.
    pub kind: ChecksumKind,
    /// The value, lowercase hex.
    pub hex: String,
}

/// One `<data>` entry of repomd.xml: a metadata file of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoMdData {
    /// Its `type`: `primary`, `filelists`, `other`, `updateinfo`, …
    pub kind: String,
    /// Its path relative to the repository's base URL (`repodata/<checksum>-primary.xml.gz`).
    pub location: String,
    /// Checksum of the file as stored (compressed).
    pub checksum: Checksum,
    /// Checksum of the decompressed content, when given.
    pub open_checksum: Option<Checksum>,
    /// Size of the file as stored, when given.
    pub size: Option<u64>,
    /// Size of the decompressed content, when given.
    pub open_size: Option<u64>,
}

/// The parsed `repodata/repomd.xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoMd {
    /// Its `<revision>`, when given (createrepo_c writes a timestamp).
    pub revision: Option<String>,
    /// Its `<data>` entries, in file order.
    pub data: Vec<RepoMdData>,
}

impl RepoMd {
    /// The entry of type `kind`, if listed.
    pub fn get(&self, kind: &str) -> Option<&RepoMdData> {
        self.data.iter().find(|d| d.kind == kind)
    }
}

/// The good state of one source, as written to `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    url: String,
    name: String,
    /// sha256 of the repomd.xml the state comes from.
    digest: String,
    /// Where repomd.xml placed the primary file, for error messages when the stored copy is parsed again.
    primary_location: String,
    /// Checksum of the compressed primary file in repomd.xml; also the name of the decompressed copy.
    primary_checksum: String,
}

impl GoodState for State {
    const KIND: &'static str = "rpm-md";

    fn digest(&self) -> &str {
        &self.digest
    }
}

impl State {
    fn primary_path(&self, dir: &Path) -> PathBuf {
        dir.join("primary").join(&self.primary_checksum)
    }

    /// The snapshot of this state, holding `packages`.
    fn into_snapshot(self, packages: Vec<Package>) -> RepoSnapshot {
        RepoSnapshot {
            url: self.url,
            suite: self.name,
            scheme: VersionScheme::Rpm,
            digest: self.digest,
            packages,
        }
    }
}

/// Client for rpm-md sources: refreshes them into a local cache and serves parsed snapshots.
///
/// Snapshots are kept in memory per source, so as long as a source's repomd.xml does not change its
/// packages are parsed at most once per process.
#[derive(Debug)]
pub struct RpmRepo {
    cache: SourceCache,
    runner: Arc<dyn CommandRunner>,
}

impl RpmRepo {
    /// A client caching under `cache_dir` (the same directory an [`crate::AptRepo`] may use: the two keep
    /// their states apart), running gpgv through `runner`, with the default download retry policy.
    pub fn new(
        cache_dir: impl Into<PathBuf>,
        runner: Arc<dyn CommandRunner>,
    ) -> Result<Self, RepoError> {
        Ok(Self {
            cache: SourceCache::new(&cache_dir.into(), "rpm")?,
            runner,
        })
    }

    /// Uses `fetcher` for downloads, for example one with another retry policy.
    pub fn with_fetcher(mut self, fetcher: Fetcher) -> Self {
        self.cache.fetcher = fetcher;
        self
    }

    /// Fetches and verifies the source's repomd.xml and primary metadata and, when everything checks out,
    /// makes them the source's good state. On any error the previous good state is left untouched.
    pub async fn refresh(&self, source: &RpmSource) -> Result<Refresh, RepoError> {
        let key = source.key();
        let Open {
            dir,
            previous,
            held: _held,
        } = self.cache.open::<State>(&key).await;

        let repomd_url = source.file_url("repodata/repomd.xml");
        let fetched = self.cache.fetcher.fetch(&repomd_url).await?;
        let digest = hex::encode(Sha256::digest(&fetched.bytes));
        // Checked on every refresh, even when unchanged: the keyring may have changed since, and gpgv is
        // cheap next to trusting a stale verdict.
        let signature = match &source.keyring {
            Some(keyring) => Some(self.verify(&repomd_url, &fetched.bytes, keyring).await?),
            None => None,
        };
        let repomd = parse_repomd(&fetched.bytes, &repomd_url)?;
        let primary = primary_entry(&repomd, &repomd_url)?;
        let stored = dir.join("primary").join(&primary.checksum.hex);

        if let Some(previous) = &previous {
            if previous.digest == digest
                && previous.primary_checksum == primary.checksum.hex
                && stored.is_file()
            {
                // The server may have sent the same bytes again with new validators.
                self.commit(&repomd_url, &fetched, signature.as_ref())
                    .await?;
                tracing::debug!(url = %source.url, repo = %source.name, "unchanged");
                return Ok(Refresh {
                    digest,
                    changed: false,
                });
            }
        }

        let state = State {
            url: source.url.clone(),
            name: source.name.clone(),
            digest: digest.clone(),
            primary_location: primary.location.clone(),
            primary_checksum: primary.checksum.hex.clone(),
        };
        let mut written = None;
        let loaded = self
            .load_primary(source, primary, previous.as_ref(), &stored, &mut written)
            .await;
        let packages = commit_state(&dir, &state, loaded, written).await?;
        // After the state: should this fail, the next refresh downloads repomd.xml again, finds the digest
        // of the state and is done.
        self.commit(&repomd_url, &fetched, signature.as_ref())
            .await?;
        remove_unreferenced(&dir.join("primary"), |name| name == state.primary_checksum).await;

        Ok(self
            .cache
            .refreshed(&key, state.into_snapshot(packages), previous.as_ref()))
    }

    /// The packages of the source's good state. Parsed at most once per repomd.xml digest in this process;
    /// [`RepoError::NoGoodCopy`] before the first successful refresh.
    pub async fn snapshot(&self, source: &RpmSource) -> Result<Arc<RepoSnapshot>, RepoError> {
        let key = source.key();
        let load = |state: State, dir: PathBuf| async move {
            let path = state.primary_path(&dir);
            let name = source.file_url(&state.primary_location);
            let packages = tokio::task::spawn_blocking(move || parse_primary_file(&path, &name))
                .await
                .map_err(join_error(PROCESSING, &dir))??;
            Ok(state.into_snapshot(packages))
        };
        self.cache
            .snapshot(&key, (&source.url, &source.name), load)
            .await
    }

    /// Makes the verified repomd.xml (and its signature) the good copies.
    async fn commit(
        &self,
        repomd_url: &str,
        repomd: &Fetched,
        signature: Option<&Fetched>,
    ) -> Result<(), RepoError> {
        if let Some(signature) = signature {
            self.cache.fetcher.commit(&signature.url, signature).await?;
        }
        self.cache.fetcher.commit(repomd_url, repomd).await
    }

    /// Fetches `repomd.xml.asc` and checks it against `keyring` with gpgv; returns the signature download,
    /// to be committed with repomd.xml.
    async fn verify(
        &self,
        repomd_url: &str,
        repomd: &[u8],
        keyring: &Path,
    ) -> Result<Fetched, RepoError> {
        let signature_url = format!("{repomd_url}.asc");
        let signature = match self.cache.fetcher.fetch(&signature_url).await {
            Ok(signature) => signature,
            Err(RepoError::NotFound { .. }) => {
                return Err(RepoError::MissingSignature {
                    url: repomd_url.to_string(),
                })
            }
            Err(error) => return Err(error),
        };
        let gpgv = Gpgv {
            url: repomd_url,
            keyring,
            action: "verify the repomd.xml signature with gpgv",
        };
        let keyring = gpgv.readable_keyring().await?;
        // gpgv reads a detached signature from a file only; the signed data comes on stdin, so what is
        // checked is exactly the repomd.xml bytes about to be used.
        let signature_path = temp_path(&self.cache.dir.join("repomd.xml.asc"));
        write_atomically(&signature_path, signature.bytes.clone()).await?;
        let args = [signature_path.as_os_str(), "-".as_ref()];
        let result = gpgv
            .run(self.runner.as_ref(), &keyring, &args, repomd)
            .await;
        let _ = tokio::fs::remove_file(&signature_path).await;
        result.map(|_| signature)
    }

    /// The packages of `primary`: from the stored copy when the previous state verified the same file,
    /// otherwise downloaded, checked, decompressed, checked again, parsed and stored at `stored` (which is
    /// then put into `written`).
    async fn load_primary(
        &self,
        source: &RpmSource,
        primary: &RepoMdData,
        previous: Option<&State>,
        stored: &Path,
        written: &mut Option<PathBuf>,
    ) -> Result<Vec<Package>, RepoError> {
        let url = source.file_url(&primary.location);
        let reusable = previous.is_some_and(|p| p.primary_checksum == primary.checksum.hex)
            && tokio::fs::metadata(stored).await.is_ok();
        if reusable {
            let path = stored.to_path_buf();
            return tokio::task::spawn_blocking(move || parse_primary_file(&path, &url))
                .await
                .map_err(join_error(PROCESSING, stored))?;
        }

        let fetched = self.cache.fetcher.fetch(&url).await?;
        let bytes = fetched.bytes;
        let kind = primary.checksum.kind;
        check_download(
            &url,
            &bytes,
            primary.size,
            kind.name(),
            &primary.checksum.hex,
            |bytes| kind.digest(bytes),
        )?;
        let parent = stored.parent().unwrap_or(stored).to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(RepoError::io("create directory", &parent))?;
        let entry = primary.clone();
        let target = stored.to_path_buf();
        let packages =
            tokio::task::spawn_blocking(move || store_primary(&bytes, &entry, &url, &target))
                .await
                .map_err(join_error(PROCESSING, stored))??;
        *written = Some(stored.to_path_buf());
        Ok(packages)
    }
}

/// The `primary` entry of repomd.xml, or an error saying the repository lacks one.
fn primary_entry<'a>(repomd: &'a RepoMd, url: &str) -> Result<&'a RepoMdData, RepoError> {
    repomd
        .get("primary")
        .ok_or_else(|| RepoError::MissingMetadata {
            file: url.to_string(),
            kind: "primary",
        })
}

/// Decompresses a verified primary file into `target` (through a temporary file beside it), checking the
/// decompressed content against `<open-checksum>` and `<open-size>`, and parses it. `target` only appears
/// once everything checked out.
fn store_primary(
    compressed: &[u8],
    entry: &RepoMdData,
    url: &str,
    target: &Path,
) -> Result<Vec<Package>, RepoError> {
    let temp = temp_path(target);
    let result = (|| {
        let (size, digest) = decompress_into(compressed, &entry.location, url, &temp, entry)?;
        if let Some(expected) = entry.open_size {
            if size != expected {
                return Err(RepoError::ChecksumMismatch {
                    file: format!("{url} (decompressed)"),
                    check: "open-size",
                    expected: format!("{expected} bytes"),
                    got: format!("{size} bytes"),
                });
            }
        }
        if let (Some(expected), Some(got)) = (&entry.open_checksum, digest) {
            if got != expected.hex {
                return Err(RepoError::ChecksumMismatch {
                    file: format!("{url} (decompressed)"),
                    check: match expected.kind {
                        ChecksumKind::Sha256 => "open-checksum sha256",
                        ChecksumKind::Sha512 => "open-checksum sha512",
                    },
                    expected: expected.hex.clone(),
                    got,
                });
            }
        }
        let packages = parse_primary_file(&temp, url)?;
        std::fs::rename(&temp, target).map_err(RepoError::io("rename into place", target))?;
        Ok(packages)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Decompresses `compressed` (by the extension of `location`) into the file `out`, returning the
/// decompressed size and, when the entry has an open checksum, the decompressed content's hash in that
/// algorithm. Streams, so a large primary.xml never sits in memory whole.
fn decompress_into(
    compressed: &[u8],
    location: &str,
    url: &str,
    out: &Path,
    entry: &RepoMdData,
) -> Result<(u64, Option<String>), RepoError> {
    let broken = |reason: String| RepoError::Decompress {
        file: url.to_string(),
        reason,
    };
    let mut reader: Box<dyn Read + '_> = if location.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(compressed))
    } else if location.ends_with(".zst") {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(compressed)
                .map_err(|e| broken(e.to_string()))?,
        )
    } else if location.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(compressed))
    } else if location.ends_with(".xml") {
        Box::new(compressed)
    } else {
        return Err(broken(format!(
            "{location} uses a compression slipway does not read (it reads .gz, .zst, .xz and plain \
             .xml); ask the repository to publish one of those"
        )));
    };
    let file = File::create(out).map_err(RepoError::io("create", out))?;
    let mut writer = BufWriter::new(file);
    let mut hasher = entry.open_checksum.as_ref().map(|c| Hasher::new(c.kind));
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(broken(e.to_string())),
        };
        if let Some(hasher) = &mut hasher {
            hasher.update(&buf[..n]);
        }
        writer
            .write_all(&buf[..n])
            .map_err(RepoError::io("write", out))?;
        size += n as u64;
    }
    let file = writer.into_inner().map_err(|e| RepoError::Io {
        action: "write",
        path: out.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(RepoError::io("sync", out))?;
    Ok((size, hasher.map(Hasher::finish)))
}

/// sha256 or sha512, chosen at run time.
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn new(kind: ChecksumKind) -> Self {
        match kind {
            ChecksumKind::Sha256 => Self::Sha256(Sha256::new()),
            ChecksumKind::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> String {
        match self {
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// XML parsing

/// A problem found while parsing, at a byte offset; turned into [`RepoError::Parse`] once the line of that
/// offset is known (which for a streamed file means reading it again, so only on error).
#[derive(Debug)]
struct XmlProblem {
    position: u64,
    field: String,
    reason: String,
}

impl XmlProblem {
    fn new(position: u64, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            position,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A quick-xml error, at the position quick-xml gives for it.
    fn malformed<R>(reader: &Reader<R>, error: impl std::fmt::Display) -> Self {
        let position = reader.error_position();
        Self::new(
            position,
            "XML",
            format!("malformed XML at byte {position}: {error}"),
        )
    }

    /// Text that is not valid in the document's encoding, in the event ending at `position`.
    fn encoding(position: u64, error: impl std::fmt::Display) -> Self {
        Self::new(
            position,
            "XML",
            format!("undecodable text before byte {position}: {error}"),
        )
    }

    /// A document whose root element is `found` instead of `root`: not the kind of file (`document`) that
    /// was asked for.
    fn wrong_root(position: u64, found: &[u8], root: &str, document: &str) -> Self {
        Self::new(
            position,
            root,
            format!(
                "the root element is <{}>, not <{root}>: this is not an rpm-md {document}",
                String::from_utf8_lossy(found)
            ),
        )
    }

    /// A document without any root element `root`.
    fn no_root(position: u64, root: &str, document: &str) -> Self {
        Self::new(
            position,
            root,
            format!("the file has no <{root}> element: it is empty or not an rpm-md {document}"),
        )
    }

    fn into_error(self, file: &str, line: usize) -> RepoError {
        RepoError::Parse {
            file: file.to_string(),
            line,
            field: self.field,
            reason: self.reason,
        }
    }
}

/// The 1-based line of byte `position` in `data`.
fn line_at(data: &[u8], position: u64) -> usize {
    let end = usize::try_from(position)
        .unwrap_or(usize::MAX)
        .min(data.len());
    memchr::memchr_iter(b'\n', &data[..end]).count() + 1
}

/// The 1-based line of byte `position` in the file at `path`; 0 when the file cannot be read again.
fn line_in_file(path: &Path, position: u64) -> usize {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut reader = BufReader::new(file).take(position);
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 1;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return lines,
            Ok(n) => lines += memchr::memchr_iter(b'\n', &buf[..n]).count(),
        }
    }
}

/// The value of the unprefixed attribute `name`, unescaped; `position` is where the element ends, for the
/// error about a malformed attribute.
fn attribute(
    element: &BytesStart<'_>,
    name: &str,
    decoder: Decoder,
    position: u64,
) -> Result<Option<String>, XmlProblem> {
    let malformed = |e: &dyn std::fmt::Display| {
        XmlProblem::new(
            position,
            "XML",
            format!("malformed attribute before byte {position}: {e}"),
        )
    };
    for attr in element.attributes() {
        let attr = attr.map_err(|e| malformed(&e))?;
        if attr.key.as_ref() == name.as_bytes() {
            let value = attr
                .decoded_and_normalized_value(XmlVersion::Implicit1_0, decoder)
                .map_err(|e| malformed(&e))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// The text an entity reference stands for: a character reference or one of XML's five predefined
/// entities (the files have no DTD that could define others).
fn resolve_reference(reference: &BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = reference.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    let name = reference.decode().map_err(|e| e.to_string())?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_string)
        .ok_or_else(|| format!("unknown entity &{name};"))
}

/// Appends the character data of a text, CDATA or entity reference event (in the event ending at
/// `position`) to `text`; any other event adds nothing.
fn append_text(event: &Event<'_>, position: u64, text: &mut String) -> Result<(), XmlProblem> {
    let value = match event {
        Event::Text(t) => t.decode().map_err(|e| XmlProblem::encoding(position, e))?,
        Event::CData(t) => t.decode().map_err(|e| XmlProblem::encoding(position, e))?,
        Event::GeneralRef(r) => resolve_reference(r)
            .map_err(|e| XmlProblem::new(position, "XML", e))?
            .into(),
        _ => return Ok(()),
    };
    text.push_str(&value);
    Ok(())
}

/// What a streaming parse of one kind of rpm-md document does with its elements; [`walk`] does the reading,
/// the nesting and the text.
trait XmlHandler {
    /// What the element being read is, as far as parsing cares.
    type Tag: Copy;

    /// An element starts (or is empty) under `parent` (`None` for the root element): its tag, once what
    /// its attributes hold is taken. `position` is where its start tag ends.
    fn start(
        &mut self,
        parent: Option<Self::Tag>,
        element: &BytesStart<'_>,
        decoder: Decoder,
        position: u64,
    ) -> Result<Self::Tag, XmlProblem>;

    /// An element ended, with its text trimmed (empty for an empty element).
    fn end(&mut self, tag: Self::Tag, value: &str, position: u64) -> Result<(), XmlProblem>;

    /// Whether the text inside the element `tag` (`None`: outside every element) is read; text that is
    /// not is skipped unchecked.
    fn keeps_text(tag: Option<Self::Tag>) -> bool;
}

/// Reads a whole document into `handler`. Returns where the document ended and the innermost element
/// still open there (`None` for a document that closed every element).
fn walk<R: BufRead, H: XmlHandler>(
    input: R,
    handler: &mut H,
) -> Result<(u64, Option<H::Tag>), XmlProblem> {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut stack: Vec<H::Tag> = Vec::new();
    let mut text = String::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| XmlProblem::malformed(&reader, e))?;
        let position = reader.buffer_position();
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let tag = handler.start(stack.last().copied(), e, reader.decoder(), position)?;
                text.clear();
                if matches!(event, Event::Start(_)) {
                    stack.push(tag);
                } else {
                    handler.end(tag, "", position)?;
                }
            }
            Event::End(_) => {
                // An end tag without a start tag is an error quick-xml reports itself.
                if let Some(tag) = stack.pop() {
                    let value = std::mem::take(&mut text);
                    handler.end(tag, value.trim(), position)?;
                }
            }
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_)
                if H::keeps_text(stack.last().copied()) =>
            {
                append_text(&event, position, &mut text)?;
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok((reader.buffer_position(), stack.last().copied()))
}

/// Parses `repodata/repomd.xml`; `file` names it in errors.
pub fn parse_repomd(data: &[u8], file: &str) -> Result<RepoMd, RepoError> {
    parse_repomd_events(data).map_err(|p| {
        let line = line_at(data, p.position);
        p.into_error(file, line)
    })
}

/// What the element being read in repomd.xml is, as far as parsing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepoMdTag {
    Root,
    Revision,
    Data,
    Checksum,
    OpenChecksum,
    Location,
    Size,
    OpenSize,
    Other,
}

/// One `<data>` entry while it is being read.
#[derive(Debug, Default)]
struct DataDraft {
    kind: String,
    location: Option<String>,
    checksum: Option<(String, String)>,
    open_checksum: Option<(String, String)>,
    size: Option<u64>,
    open_size: Option<u64>,
    /// The `type` of the checksum element being read.
    checksum_type: String,
}

/// The state of a repomd.xml parse.
struct RepoMdReader {
    repomd: RepoMd,
    /// The `<data>` entry being read.
    draft: Option<DataDraft>,
    seen_root: bool,
}

impl XmlHandler for RepoMdReader {
    type Tag = RepoMdTag;

    fn start(
        &mut self,
        parent: Option<RepoMdTag>,
        e: &BytesStart<'_>,
        decoder: Decoder,
        position: u64,
    ) -> Result<RepoMdTag, XmlProblem> {
        let tag = match (parent, e.local_name().as_ref()) {
            (None, b"repomd") => RepoMdTag::Root,
            (None, other) => {
                return Err(XmlProblem::wrong_root(
                    position,
                    other,
                    "repomd",
                    "repomd.xml",
                ))
            }
            (Some(RepoMdTag::Root), b"revision") => RepoMdTag::Revision,
            (Some(RepoMdTag::Root), b"data") => RepoMdTag::Data,
            (Some(RepoMdTag::Data), b"checksum") => RepoMdTag::Checksum,
            (Some(RepoMdTag::Data), b"open-checksum") => RepoMdTag::OpenChecksum,
            (Some(RepoMdTag::Data), b"location") => RepoMdTag::Location,
            (Some(RepoMdTag::Data), b"size") => RepoMdTag::Size,
            (Some(RepoMdTag::Data), b"open-size") => RepoMdTag::OpenSize,
            _ => RepoMdTag::Other,
        };
        match tag {
            RepoMdTag::Root => self.seen_root = true,
            RepoMdTag::Data => {
                let kind = attribute(e, "type", decoder, position)?.unwrap_or_default();
                self.draft = Some(DataDraft {
                    kind,
                    ..DataDraft::default()
                });
            }
            RepoMdTag::Checksum | RepoMdTag::OpenChecksum => {
                if let Some(draft) = &mut self.draft {
                    draft.checksum_type =
                        attribute(e, "type", decoder, position)?.unwrap_or_default();
                }
            }
            RepoMdTag::Location => {
                if let Some(draft) = &mut self.draft {
                    draft.location = attribute(e, "href", decoder, position)?;
                }
            }
            _ => {}
        }
        Ok(tag)
    }

    fn end(&mut self, tag: RepoMdTag, value: &str, position: u64) -> Result<(), XmlProblem> {
        end_repomd_tag(tag, value, &mut self.draft, &mut self.repomd, position)
    }

    fn keeps_text(_: Option<RepoMdTag>) -> bool {
        true
    }
}

fn parse_repomd_events(data: &[u8]) -> Result<RepoMd, XmlProblem> {
    let mut reader = RepoMdReader {
        repomd: RepoMd {
            revision: None,
            data: Vec::new(),
        },
        draft: None,
        seen_root: false,
    };
    let (end, open) = walk(data, &mut reader)?;
    if !reader.seen_root {
        return Err(XmlProblem::no_root(end, "repomd", "repomd.xml"));
    }
    if open.is_some() {
        return Err(XmlProblem::new(
            end,
            "repomd",
            "the file ends inside an element: it is truncated",
        ));
    }
    Ok(reader.repomd)
}

/// Stores the value of a repomd.xml element that just ended.
fn end_repomd_tag(
    tag: RepoMdTag,
    value: &str,
    draft: &mut Option<DataDraft>,
    repomd: &mut RepoMd,
    position: u64,
) -> Result<(), XmlProblem> {
    let number = |field: &str| {
        value.parse::<u64>().map_err(|_| {
            XmlProblem::new(
                position,
                field.to_string(),
                format!("`{value}` is not a size in bytes"),
            )
        })
    };
    match tag {
        RepoMdTag::Revision => repomd.revision = Some(value.to_string()),
        RepoMdTag::Checksum | RepoMdTag::OpenChecksum => {
            if let Some(draft) = draft {
                let pair = (std::mem::take(&mut draft.checksum_type), value.to_string());
                if tag == RepoMdTag::Checksum {
                    draft.checksum = Some(pair);
                } else {
                    draft.open_checksum = Some(pair);
                }
            }
        }
        RepoMdTag::Size => {
            if let Some(draft) = draft {
                draft.size = Some(number("size")?);
            }
        }
        RepoMdTag::OpenSize => {
            if let Some(draft) = draft {
                draft.open_size = Some(number("open-size")?);
            }
        }
        RepoMdTag::Data => {
            if let Some(draft) = draft.take() {
                repomd.data.push(finish_data(draft, position)?);
            }
        }
        RepoMdTag::Root | RepoMdTag::Location | RepoMdTag::Other => {}
    }
    Ok(())
}

/// A complete `<data>` entry, or what it lacks.
fn finish_data(draft: DataDraft, position: u64) -> Result<RepoMdData, XmlProblem> {
    let field = |name: &str| format!("data type=\"{}\" {name}", draft.kind);
    let checksum = |pair: (String, String), name: &str| -> Result<Checksum, XmlProblem> {
        let kind = ChecksumKind::from_name(&pair.0).ok_or_else(|| {
            XmlProblem::new(
                position,
                field(name),
                format!(
                    "checksum type `{}` is not supported (slipway checks sha256 and sha512); \
                     regenerate the repository with createrepo_c's default --checksum sha256",
                    pair.0
                ),
            )
        })?;
        let hex = pair.1.to_ascii_lowercase();
        let expected_len = match kind {
            ChecksumKind::Sha256 => 64,
            ChecksumKind::Sha512 => 128,
        };
        if hex.len() != expected_len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(XmlProblem::new(
                position,
                field(name),
                format!("`{}` is not a {} in hex", pair.1, kind.name()),
            ));
        }
        Ok(Checksum { kind, hex })
    };
    let location = draft
        .location
        .clone()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            XmlProblem::new(
                position,
                field("location"),
                "the entry has no location href",
            )
        })?;
    let main = draft
        .checksum
        .clone()
        .ok_or_else(|| XmlProblem::new(position, field("checksum"), "the entry has no checksum"))?;
    let checksum_value = checksum(main, "checksum")?;
    let open_checksum = match draft.open_checksum.clone() {
        Some(pair) => Some(checksum(pair, "open-checksum")?),
        None => None,
    };
    Ok(RepoMdData {
        kind: draft.kind,
        location,
        checksum: checksum_value,
        open_checksum,
        size: draft.size,
        open_size: draft.open_size,
    })
}

/// Parses a decompressed `primary.xml` held in memory; `file` names it in errors.
pub fn parse_primary(data: &[u8], file: &str) -> Result<Vec<Package>, RepoError> {
    parse_primary_events(data).map_err(|p| {
        let line = line_at(data, p.position);
        p.into_error(file, line)
    })
}

/// Parses the decompressed `primary.xml` at `path`, streaming; `file` names it in errors.
fn parse_primary_file(path: &Path, file: &str) -> Result<Vec<Package>, RepoError> {
    let handle = File::open(path).map_err(RepoError::io("read", path))?;
    parse_primary_events(BufReader::with_capacity(256 * 1024, handle)).map_err(|p| {
        let line = line_in_file(path, p.position);
        p.into_error(file, line)
    })
}

/// What the element being read in primary.xml is, as far as parsing cares. Elements are told apart by local
/// name and parent, so the namespace prefix (`rpm:`) the file happens to use does not matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrimaryTag {
    Metadata,
    Package,
    Name,
    Arch,
    Checksum,
    Format,
    SourceRpm,
    Provides,
    Requires,
    Other,
}

impl PrimaryTag {
    fn of(parent: Option<PrimaryTag>, local: &[u8]) -> Self {
        match (parent, local) {
            (None, b"metadata") => Self::Metadata,
            (Some(Self::Metadata), b"package") => Self::Package,
            (Some(Self::Package), b"name") => Self::Name,
            (Some(Self::Package), b"arch") => Self::Arch,
            (Some(Self::Package), b"checksum") => Self::Checksum,
            (Some(Self::Package), b"format") => Self::Format,
            (Some(Self::Format), b"sourcerpm") => Self::SourceRpm,
            (Some(Self::Format), b"provides") => Self::Provides,
            (Some(Self::Format), b"requires") => Self::Requires,
            _ => Self::Other,
        }
    }

    /// Whether the element's text is a value parsing keeps.
    fn keeps_text(self) -> bool {
        matches!(
            self,
            Self::Name | Self::Arch | Self::Checksum | Self::SourceRpm
        )
    }
}

/// One `<package>` while it is being read.
#[derive(Debug, Default)]
struct PackageDraft {
    name: String,
    arch: String,
    version: Option<String>,
    checksum_type: String,
    checksum: String,
    size: u64,
    location: String,
    sourcerpm: String,
    provides: Vec<String>,
    /// `pre="1"` requires, which must be installed before the package's scripts run: Debian's Pre-Depends,
    /// which [`Package::depends`] lists first.
    requires_pre: Vec<String>,
    requires: Vec<String>,
}

/// The state of a primary.xml parse.
#[derive(Default)]
struct PrimaryReader {
    packages: Vec<Package>,
    /// The `<package>` being read.
    draft: Option<PackageDraft>,
    /// The package count `<metadata>` declares, with where it does.
    declared: Option<(usize, u64)>,
    seen_root: bool,
}

impl XmlHandler for PrimaryReader {
    type Tag = PrimaryTag;

    fn start(
        &mut self,
        parent: Option<PrimaryTag>,
        e: &BytesStart<'_>,
        decoder: Decoder,
        position: u64,
    ) -> Result<PrimaryTag, XmlProblem> {
        let tag = PrimaryTag::of(parent, e.local_name().as_ref());
        match (parent, tag) {
            (None, PrimaryTag::Metadata) => {
                self.seen_root = true;
                if let Some(count) = attribute(e, "packages", decoder, position)? {
                    let count = count.trim().parse::<usize>().map_err(|_| {
                        XmlProblem::new(
                            position,
                            "metadata packages",
                            format!("`{count}` is not a package count"),
                        )
                    })?;
                    self.declared = Some((count, position));
                }
            }
            (None, _) => {
                return Err(XmlProblem::wrong_root(
                    position,
                    e.local_name().as_ref(),
                    "metadata",
                    "primary.xml",
                ))
            }
            (_, PrimaryTag::Package) => self.draft = Some(PackageDraft::default()),
            (Some(PrimaryTag::Package), PrimaryTag::Checksum) => {
                if let Some(draft) = &mut self.draft {
                    draft.checksum_type =
                        attribute(e, "type", decoder, position)?.unwrap_or_default();
                }
            }
            (Some(PrimaryTag::Package), PrimaryTag::Other) => {
                if let Some(draft) = &mut self.draft {
                    package_attributes(e, decoder, draft, position)?;
                }
            }
            (Some(PrimaryTag::Provides | PrimaryTag::Requires), PrimaryTag::Other)
                if e.local_name().as_ref() == b"entry" =>
            {
                if let Some(draft) = &mut self.draft {
                    let entry = relation_entry(e, decoder, position)?;
                    if let Some((relation, pre)) = entry {
                        match parent {
                            Some(PrimaryTag::Provides) => draft.provides.push(relation),
                            _ if pre => draft.requires_pre.push(relation),
                            _ => draft.requires.push(relation),
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(tag)
    }

    fn end(&mut self, tag: PrimaryTag, value: &str, position: u64) -> Result<(), XmlProblem> {
        end_primary_tag(tag, value, &mut self.draft, &mut self.packages, position)
    }

    /// Only where the text is kept: a strange reference in some package's description must not make the
    /// whole repository unusable.
    fn keeps_text(tag: Option<PrimaryTag>) -> bool {
        tag.is_some_and(PrimaryTag::keeps_text)
    }
}

fn parse_primary_events<R: BufRead>(input: R) -> Result<Vec<Package>, XmlProblem> {
    let mut reader = PrimaryReader::default();
    let (end, open) = walk(input, &mut reader)?;
    if !reader.seen_root {
        return Err(XmlProblem::no_root(end, "metadata", "primary.xml"));
    }
    if let Some(open) = open {
        return Err(XmlProblem::new(
            end,
            "metadata",
            format!(
                "the file ends inside <{}>: it is truncated",
                match open {
                    PrimaryTag::Metadata => "metadata",
                    PrimaryTag::Package => "package",
                    _ => "an element of a package",
                }
            ),
        ));
    }
    let packages = reader.packages;
    if let Some((count, at)) = reader.declared {
        if count != packages.len() {
            return Err(XmlProblem::new(
                at,
                "metadata packages",
                format!(
                    "the file says it lists {count} packages but holds {}: it is truncated or broken",
                    packages.len()
                ),
            ));
        }
    }
    Ok(packages)
}

/// Reads the attributes of the `<version>`, `<size>` and `<location>` children of a `<package>`.
fn package_attributes(
    element: &BytesStart<'_>,
    decoder: Decoder,
    draft: &mut PackageDraft,
    position: u64,
) -> Result<(), XmlProblem> {
    let get = |name: &str| attribute(element, name, decoder, position);
    match element.local_name().as_ref() {
        b"version" => {
            let epoch = get("epoch")?.unwrap_or_default();
            let ver = get("ver")?.unwrap_or_default();
            let rel = get("rel")?.unwrap_or_default();
            if ver.is_empty() {
                return Err(XmlProblem::new(
                    position,
                    format!("package {} version", draft.name),
                    "the version has no `ver`",
                ));
            }
            draft.version = Some(evr(&epoch, &ver, &rel));
        }
        b"size" => {
            if let Some(size) = get("package")? {
                draft.size = size.trim().parse().map_err(|_| {
                    XmlProblem::new(
                        position,
                        format!("package {} size", draft.name),
                        format!("`{size}` is not a size in bytes"),
                    )
                })?;
            }
        }
        b"location" => draft.location = get("href")?.unwrap_or_default(),
        _ => {}
    }
    Ok(())
}

/// An `<rpm:entry>` of provides or requires in Debian relation syntax, with whether it is `pre="1"`; `None`
/// for entries that cannot be written in it: `rpmlib(…)` requires are rpm's own feature flags, and rich
/// dependencies (`(a if b)`) are boolean expressions with no Debian equivalent.
fn relation_entry(
    element: &BytesStart<'_>,
    decoder: Decoder,
    position: u64,
) -> Result<Option<(String, bool)>, XmlProblem> {
    let Some(name) = attribute(element, "name", decoder, position)? else {
        return Ok(None);
    };
    if name.is_empty() || name.starts_with("rpmlib(") || name.starts_with('(') {
        return Ok(None);
    }
    let pre = attribute(element, "pre", decoder, position)?.is_some_and(|p| p == "1");
    let flags = attribute(element, "flags", decoder, position)?;
    let op = match flags.as_deref() {
        Some("EQ") => Some("="),
        Some("LT") => Some("<<"),
        Some("LE") => Some("<="),
        Some("GT") => Some(">>"),
        Some("GE") => Some(">="),
        _ => None,
    };
    let ver = attribute(element, "ver", decoder, position)?.unwrap_or_default();
    let relation = match op {
        Some(op) if !ver.is_empty() => {
            let epoch = attribute(element, "epoch", decoder, position)?.unwrap_or_default();
            let rel = attribute(element, "rel", decoder, position)?.unwrap_or_default();
            format!("{name} ({op} {})", evr(&epoch, &ver, &rel))
        }
        _ => name,
    };
    Ok(Some((relation, pre)))
}

/// `[epoch:]version[-release]`, with epoch 0 (rpm's default) left out as rpm itself prints it.
fn evr(epoch: &str, version: &str, release: &str) -> String {
    let mut out = String::with_capacity(epoch.len() + version.len() + release.len() + 2);
    let epoch = epoch.trim();
    if epoch.bytes().any(|b| b != b'0') {
        out.push_str(epoch);
        out.push(':');
    }
    out.push_str(version);
    if !release.is_empty() {
        out.push('-');
        out.push_str(release);
    }
    out
}

/// The source package name of a source rpm file name: `glibc-2.40-3.fc41.src.rpm` → `glibc`.
fn source_name(sourcerpm: &str) -> Option<&str> {
    let stem = sourcerpm
        .strip_suffix(".src.rpm")
        .or_else(|| sourcerpm.strip_suffix(".nosrc.rpm"))?;
    // Name, version and release are separated by the last two hyphens; names may contain hyphens.
    let (rest, _release) = stem.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    (!name.is_empty()).then_some(name)
}

/// Stores the value of a primary.xml element that just ended, completing a package at `</package>`.
fn end_primary_tag(
    tag: PrimaryTag,
    value: &str,
    draft: &mut Option<PackageDraft>,
    packages: &mut Vec<Package>,
    position: u64,
) -> Result<(), XmlProblem> {
    if tag == PrimaryTag::Package {
        if let Some(draft) = draft.take() {
            packages.push(finish_package(draft, position)?);
        }
        return Ok(());
    }
    let Some(draft) = draft else {
        return Ok(());
    };
    match tag {
        PrimaryTag::Name => draft.name = value.to_string(),
        PrimaryTag::Arch => draft.arch = value.to_string(),
        PrimaryTag::Checksum => draft.checksum = value.to_ascii_lowercase(),
        PrimaryTag::SourceRpm => draft.sourcerpm = value.to_string(),
        _ => {}
    }
    Ok(())
}

/// A complete [`Package`], or what the `<package>` lacks.
fn finish_package(draft: PackageDraft, position: u64) -> Result<Package, XmlProblem> {
    if draft.name.is_empty() {
        return Err(XmlProblem::new(
            position,
            "package name",
            "a <package> has no <name>",
        ));
    }
    let Some(version) = draft.version else {
        return Err(XmlProblem::new(
            position,
            format!("package {} version", draft.name),
            "the package has no <version>",
        ));
    };
    let source = source_name(&draft.sourcerpm)
        .map(str::to_string)
        .unwrap_or_else(|| draft.name.clone());
    let mut depends: Vec<String> =
        Vec::with_capacity(draft.requires_pre.len() + draft.requires.len());
    // rpm lists a requirement that is both `pre` and ordinary twice; once is enough here.
    for relation in draft.requires_pre.into_iter().chain(draft.requires) {
        if !depends.contains(&relation) {
            depends.push(relation);
        }
    }
    Ok(Package {
        name: draft.name,
        version,
        architecture: draft.arch,
        source,
        provides: draft.provides.join(", "),
        depends: depends.join(", "),
        size: draft.size,
        sha256: if draft.checksum_type == "sha256" {
            draft.checksum
        } else {
            String::new()
        },
        filename: draft.location,
        essential: false,
        priority: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>hello</name>
  <arch>x86_64</arch>
  <version epoch="2" ver="1.0" rel="1.fc41"/>
  <checksum type="sha256" pkgid="YES">F9246F72B8C31BB10D05A1CCD82CCB5154BBD83B55CF9A8ABF848ED1A8EF2FB9</checksum>
  <summary>say &amp; greet</summary>
  <size package="5573" installed="0" archive="124"/>
  <location href="Packages/h/hello-1.0-1.fc41.x86_64.rpm"/>
  <format>
    <rpm:sourcerpm>hello-world-1.0-1.fc41.src.rpm</rpm:sourcerpm>
    <rpm:provides>
      <rpm:entry name="greeter" flags="EQ" epoch="0" ver="1.0"/>
      <rpm:entry name="hello(x86-64)" flags="EQ" epoch="2" ver="1.0" rel="1.fc41"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="bar"/>
      <rpm:entry name="rpmlib(CompressedFileNames)" flags="LE" epoch="0" ver="3.0.4" rel="1"/>
      <rpm:entry name="libfoo" flags="GE" epoch="0" ver="1.2" rel="3"/>
      <rpm:entry name="old" flags="LT" ver="2"/>
      <rpm:entry name="/bin/sh" pre="1"/>
      <rpm:entry name="/bin/sh"/>
      <rpm:entry name="(a if b)"/>
    </rpm:requires>
    <file>/usr/bin/hello</file>
  </format>
</package>
<package type="rpm">
  <name>noepoch</name>
  <arch>noarch</arch>
  <version epoch="0" ver="3" rel="2"/>
  <checksum type="sha512" pkgid="YES">abc</checksum>
  <size package="10"/>
  <location href="noepoch-3-2.noarch.rpm"/>
  <format/>
</package>
</metadata>
"#;

    #[test]
    fn rpm_primary_packages_are_written_in_debian_terms() {
        let packages = parse_primary(PRIMARY.as_bytes(), "primary.xml").expect("parses");
        assert_eq!(packages.len(), 2);
        let hello = &packages[0];
        assert_eq!(hello.name, "hello");
        assert_eq!(hello.version, "2:1.0-1.fc41");
        assert_eq!(hello.architecture, "x86_64");
        assert_eq!(hello.source, "hello-world");
        assert_eq!(
            hello.provides,
            "greeter (= 1.0), hello(x86-64) (= 2:1.0-1.fc41)"
        );
        assert_eq!(hello.depends, "/bin/sh, bar, libfoo (>= 1.2-3), old (<< 2)");
        assert_eq!(hello.size, 5573);
        assert_eq!(
            hello.sha256,
            "f9246f72b8c31bb10d05a1ccd82ccb5154bbd83b55cf9a8abf848ed1a8ef2fb9"
        );
        assert_eq!(hello.filename, "Packages/h/hello-1.0-1.fc41.x86_64.rpm");
        let plain = &packages[1];
        assert_eq!(plain.version, "3-2");
        assert_eq!(
            plain.source, "noepoch",
            "no sourcerpm: the binary's own name"
        );
        assert_eq!(plain.sha256, "", "only a sha256 pkgid is a sha256");
        assert_eq!((plain.provides.as_str(), plain.depends.as_str()), ("", ""));
    }

    #[test]
    fn rpm_flags_map_to_debian_operators() {
        let xml = |flags: &str| {
            format!(
                r#"<metadata packages="1"><package><name>p</name><version ver="1"/><format>
                <requires><entry name="d" flags="{flags}" ver="2" rel="1"/></requires></format></package></metadata>"#
            )
        };
        for (flags, op) in [
            ("EQ", "="),
            ("LT", "<<"),
            ("LE", "<="),
            ("GT", ">>"),
            ("GE", ">="),
        ] {
            let packages = parse_primary(xml(flags).as_bytes(), "p").expect("parses");
            assert_eq!(packages[0].depends, format!("d ({op} 2-1)"));
        }
    }

    #[test]
    fn rpm_references_in_kept_text_are_resolved() {
        let xml = "<metadata><package><name>g&#43;&#x2B;</name><version ver=\"1\"/>\
                   <description>odd &#0; &custom;</description></package></metadata>";
        let packages = parse_primary(xml.as_bytes(), "p").expect("parses");
        assert_eq!(packages[0].name, "g++");
        let bad =
            "<metadata><package><name>x&custom;</name><version ver=\"1\"/></package></metadata>";
        let err = parse_primary(bad.as_bytes(), "p").expect_err("unknown entity");
        assert!(err.to_string().contains("unknown entity &custom;"), "{err}");
    }

    #[test]
    fn rpm_source_names_drop_version_and_release() {
        assert_eq!(source_name("glibc-2.40-3.fc41.src.rpm"), Some("glibc"));
        assert_eq!(
            source_name("python-foo-bar-1.0-1.src.rpm"),
            Some("python-foo-bar")
        );
        assert_eq!(source_name("x-1-1.nosrc.rpm"), Some("x"));
        assert_eq!(source_name("garbage"), None);
        assert_eq!(source_name("1-1.src.rpm"), None);
        assert_eq!(evr("0", "1", ""), "1");
        assert_eq!(evr("", "1", "2"), "1-2");
        assert_eq!(evr("10", "1", "2"), "10:1-2");
    }

    #[test]
    fn rpm_malformed_primary_names_file_line_and_byte() {
        let broken = "<metadata packages=\"1\">\n<package>\n<name>a</nme>\n</package></metadata>";
        let err = parse_primary(broken.as_bytes(), "repo/primary.xml").expect_err("malformed");
        let text = err.to_string();
        assert!(matches!(err, RepoError::Parse { line: 3, .. }), "{text}");
        assert!(
            text.starts_with("repo/primary.xml:3: XML: malformed XML at byte "),
            "{text}"
        );
    }

    #[test]
    fn rpm_truncated_primary_is_refused() {
        let cut = &PRIMARY[..PRIMARY.find("<arch>").expect("arch")];
        let err = parse_primary(cut.as_bytes(), "p.xml").expect_err("truncated");
        assert!(
            err.to_string()
                .contains("ends inside <package>: it is truncated"),
            "{err}"
        );
        // Cut inside a tag: quick-xml's own complaint, with the file and line.
        let err = parse_primary(&PRIMARY.as_bytes()[..PRIMARY.len() / 2], "p.xml")
            .expect_err("truncated");
        assert!(matches!(err, RepoError::Parse { .. }), "{err}");
        // Cut exactly between two packages: well-formed up to there, but short of the declared count.
        let between = PRIMARY
            .find("<package type=\"rpm\">\n  <name>noepoch")
            .expect("second");
        let short = format!("{}</metadata>", &PRIMARY[..between]);
        let err = parse_primary(short.as_bytes(), "p.xml").expect_err("short");
        assert!(
            err.to_string().contains("lists 2 packages but holds 1"),
            "{err}"
        );
        let err = parse_primary(b"", "p.xml").expect_err("empty");
        assert!(err.to_string().contains("no <metadata>"), "{err}");
    }

    const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1795268669</revision>
  <data type="primary">
    <checksum type="sha256">B616e371aaae92f3e7c4c7ae6bd80c6e568fd42af29e39e879a034f40186eedd</checksum>
    <open-checksum type="sha256">2ed04d0ceb692065e72378c94ea29dad19eee49510340150fc102f236c32abd4</open-checksum>
    <location href="repodata/b616-primary.xml.gz"/>
    <timestamp>1795268669</timestamp>
    <size>684</size>
    <open-size>2195</open-size>
  </data>
  <data type="other">
    <checksum type="sha256">99afc4a5d0531e2d3194e86a5d15d70c35668c9d6e70a07e44cdd8bf13f73a5a</checksum>
    <location href="repodata/99af-other.xml.gz"/>
  </data>
</repomd>
"#;

    #[test]
    fn rpm_repomd_lists_its_data_files() {
        let repomd = parse_repomd(REPOMD.as_bytes(), "repomd.xml").expect("parses");
        assert_eq!(repomd.revision.as_deref(), Some("1795268669"));
        let primary = repomd.get("primary").expect("primary");
        assert_eq!(primary.location, "repodata/b616-primary.xml.gz");
        assert_eq!(primary.checksum.kind, ChecksumKind::Sha256);
        assert!(primary.checksum.hex.starts_with("b616e371"));
        assert_eq!(primary.size, Some(684));
        assert_eq!(primary.open_size, Some(2195));
        assert!(primary.open_checksum.is_some());
        let other = repomd.get("other").expect("other");
        assert_eq!((other.size, other.open_checksum.as_ref()), (None, None));
    }

    #[test]
    fn rpm_repomd_problems_are_refused() {
        let without = REPOMD.replace("type=\"primary\"", "type=\"primary_db\"");
        let repomd = parse_repomd(without.as_bytes(), "r").expect("parses");
        let url = "http://m/repodata/repomd.xml";
        match primary_entry(&repomd, url).expect_err("no primary") {
            RepoError::MissingMetadata { file, kind } => {
                assert_eq!((file.as_str(), kind), (url, "primary"))
            }
            other => panic!("expected missing metadata, got {other}"),
        }

        let sha1 = REPOMD.replacen("type=\"sha256\"", "type=\"sha\"", 1);
        let err = parse_repomd(sha1.as_bytes(), "r").expect_err("sha1");
        assert!(
            err.to_string()
                .contains("checksum type `sha` is not supported"),
            "{err}"
        );

        let err = parse_repomd(b"<html><body>404</body></html>", "r").expect_err("html");
        assert!(
            err.to_string().contains("not an rpm-md repomd.xml"),
            "{err}"
        );

        let bad_size = REPOMD.replace("<size>684</size>", "<size>lots</size>");
        let err = parse_repomd(bad_size.as_bytes(), "r").expect_err("size");
        assert!(matches!(err, RepoError::Parse { line: 9, .. }), "{err}");
    }

    fn entry(location: &str, compressed: &[u8], open: &[u8]) -> RepoMdData {
        RepoMdData {
            kind: "primary".into(),
            location: location.into(),
            checksum: Checksum {
                kind: ChecksumKind::Sha256,
                hex: ChecksumKind::Sha256.digest(compressed),
            },
            open_checksum: Some(Checksum {
                kind: ChecksumKind::Sha512,
                hex: ChecksumKind::Sha512.digest(open),
            }),
            size: Some(compressed.len() as u64),
            open_size: Some(open.len() as u64),
        }
    }

    #[test]
    fn rpm_stored_primary_is_checked_after_decompression() {
        let dir = tempfile::tempdir().expect("tempdir");
        let xml = PRIMARY.as_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(xml).expect("compress");
        let gz = gz.finish().expect("compress");
        let zst = zstd::encode_all(xml, 3).expect("compress");
        for (location, compressed) in [
            ("p.xml.gz", &gz),
            ("p.xml.zst", &zst),
            ("p.xml", &xml.to_vec()),
        ] {
            let target = dir.path().join(location);
            let packages = store_primary(
                compressed,
                &entry(location, compressed, xml),
                location,
                &target,
            )
            .expect("stores");
            assert_eq!(packages.len(), 2, "{location}");
            assert_eq!(std::fs::read(&target).expect("stored"), xml, "{location}");
        }

        // Content that decompresses but is not what repomd.xml describes: refused, and nothing is left.
        let target = dir.path().join("bad");
        let mut wrong = entry("p.xml.gz", &gz, b"other content");
        wrong.open_size = Some(xml.len() as u64);
        let err = store_primary(&gz, &wrong, "u/p.xml.gz", &target).expect_err("open-checksum");
        assert!(
            matches!(
                err,
                RepoError::ChecksumMismatch {
                    check: "open-checksum sha512",
                    ..
                }
            ),
            "{err}"
        );
        wrong.open_size = Some(3);
        let err = store_primary(&gz, &wrong, "u/p.xml.gz", &target).expect_err("open-size");
        assert!(
            matches!(
                err,
                RepoError::ChecksumMismatch {
                    check: "open-size",
                    ..
                }
            ),
            "{err}"
        );
        let err =
            store_primary(&gz[..gz.len() / 2], &wrong, "u/p.xml.gz", &target).expect_err("cut");
        assert!(matches!(err, RepoError::Decompress { .. }), "{err}");
        let err = store_primary(&gz, &entry("p.xml.bz2", &gz, xml), "u/p.xml.bz2", &target)
            .expect_err("bz2");
        assert!(err.to_string().contains("reads .gz, .zst, .xz"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 3, "only the three good files: {left:?}");
    }

    #[test]
    fn rpm_sources_key_ignores_a_trailing_slash() {
        let a = RpmSource::new("http://m/repo/", "fedora");
        let b = RpmSource::new("http://m/repo", "fedora");
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), RpmSource::new("http://m/repo", "updates").key());
        assert_eq!(
            a.file_url("repodata/repomd.xml"),
            "http://m/repo/repodata/repomd.xml"
        );
    }
}
