//! apt sources: refresh (fetch, verify, commit) and snapshots of what they hold.
//!
//! A refresh fetches `dists/<suite>/InRelease` conditionally, verifies its signature with gpgv, checks that
//! it has not expired, then fetches the `Packages` index of every requested component and architecture and
//! checks each against the size and sha256 the signed InRelease gives. Only when every file verified and
//! parsed does it switch the source's state to the new files; any failure leaves the previous good state
//! exactly as it was, and snapshots keep coming from it.
//!
//! The cache, under the directory given to [`AptRepo::new`]:
//!
//! ```text
//! http/<sha256 of URL>                 the last good InRelease with its ETag/Last-Modified (see `http`)
//! apt/<source key>/state.json          the good state: InRelease digest and the index files it lists
//! apt/<source key>/packages/<sha256>   each verified Packages index, decompressed, named by the sha256
//!                                      of the compressed file in InRelease
//! ```
//!
//! Index files are kept decompressed so loading a snapshot never decompresses again, and are named by their
//! hash so a new state never overwrites a file the old one uses: `state.json`, replaced by one rename, is
//! the switch. An index whose hash did not change between two InReleases is not downloaded again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slipway_exec::{Command, CommandRunner, ExecError};
use slipway_model::{Clock, PackageSource, SystemClock};

use crate::deb822::{parse_packages, parse_packages_from};
use crate::error::RepoError;
use crate::http::{write_atomically, Fetcher};
use crate::inrelease::{cleartext, is_clearsigned, Release, ReleaseFile};
use crate::{Package, RepoSnapshot, VersionScheme};

/// How long gpgv may take to check one InRelease.
const GPGV_TIMEOUT: Duration = Duration::from_secs(60);

/// One apt source, as a refresh needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AptSource {
    /// Base URL of the repository (`http://deb.debian.org/debian`, `file:///srv/repo`).
    pub url: String,
    /// The suite under `dists/`.
    pub suite: String,
    /// Components to read, such as `main`.
    pub components: Vec<String>,
    /// Architectures to read (`amd64`); packages of architecture `all` come with them.
    pub architectures: Vec<String>,
    /// Binary OpenPGP keyring holding the key that signs the InRelease.
    pub keyring: Option<PathBuf>,
    /// Skip the signature check (local sources only; the recipe loader enforces that).
    pub trusted: bool,
}

impl AptSource {
    /// The source a recipe's [`PackageSource`] describes, for the recipe's `architecture`.
    pub fn from_package_source(source: &PackageSource, architecture: &str) -> Self {
        Self {
            url: source.url.clone(),
            suite: source.suite.clone(),
            components: source.components.clone(),
            architectures: vec![architecture.to_string()],
            keyring: source.keyring.clone(),
            trusted: source.trusted,
        }
    }

    /// The base URL without a trailing slash.
    fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// The URL of a file under `dists/<suite>/`.
    fn dists_url(&self, path: &str) -> String {
        format!("{}/dists/{}/{path}", self.base(), self.suite)
    }

    /// The name of the source's state directory: a hash of everything that decides what the state holds and
    /// how it was checked, so two sources differing only in components or trust never share (and
    /// overwrite) one.
    fn key(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [self.base(), &self.suite] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        for list in [&self.components, &self.architectures] {
            for item in list {
                hasher.update(item.as_bytes());
                hasher.update([1]);
            }
            hasher.update([0]);
        }
        // A state accepted without a signature check (or with another keyring) must never be served to a
        // source that demands one.
        if let Some(keyring) = &self.keyring {
            hasher.update(keyring.as_os_str().as_encoded_bytes());
        }
        hasher.update([0, u8::from(self.trusted)]);
        hex::encode(&hasher.finalize()[..16])
    }
}

/// The result of a successful refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// sha256 of the InRelease the source's good state now comes from, lowercase hex.
    pub digest: String,
    /// Whether `digest` differs from that of the previous good state (true for the first refresh).
    pub changed: bool,
}

/// The good state of one source, as written to `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    url: String,
    suite: String,
    digest: String,
    indexes: Vec<IndexState>,
}

/// One verified index file of a good state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexState {
    component: String,
    architecture: String,
    /// Its path under `dists/<suite>/`.
    path: String,
    /// sha256 of the compressed file as InRelease lists it; also the name of the decompressed copy.
    sha256: String,
}

/// One index file a refresh has to have.
#[derive(Debug, Clone)]
struct Wanted<'a> {
    component: String,
    architecture: String,
    file: &'a ReleaseFile,
}

/// Client for apt sources: refreshes them into a local cache and serves parsed snapshots.
///
/// Snapshots are kept in memory per source, so as long as a source's InRelease digest does not change its
/// packages are parsed at most once per process. Refreshes and snapshot loads of one source are serialized
/// within the client; a cache directory is meant to be used by one process at a time (slipway's run lock
/// ensures that), since a refresh deletes the index files its new state no longer needs.
pub struct AptRepo {
    fetcher: Fetcher,
    dir: PathBuf,
    runner: Arc<dyn CommandRunner>,
    clock: Arc<dyn Clock>,
    snapshots: Mutex<HashMap<String, Arc<RepoSnapshot>>>,
    /// One lock per source, so two refreshes of one source (or a refresh and a snapshot load) never
    /// interleave their writes and reads of its state directory.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for AptRepo {
    // Not derived: the snapshots hold every package of every source, far too much for a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshots = self.snapshots.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("AptRepo")
            .field("dir", &self.dir)
            .field("fetcher", &self.fetcher)
            .field("runner", &self.runner)
            .field("clock", &self.clock)
            .field("snapshots", &snapshots)
            .finish_non_exhaustive()
    }
}

impl AptRepo {
    /// A client caching under `cache_dir`, running gpgv through `runner`, with the default download retry
    /// policy and the system clock.
    pub fn new(
        cache_dir: impl Into<PathBuf>,
        runner: Arc<dyn CommandRunner>,
    ) -> Result<Self, RepoError> {
        let cache_dir = cache_dir.into();
        Ok(Self {
            fetcher: Fetcher::new(cache_dir.join("http"))?,
            dir: cache_dir.join("apt"),
            runner,
            clock: Arc::new(SystemClock),
            snapshots: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Uses `fetcher` for downloads, for example one with another retry policy.
    pub fn with_fetcher(mut self, fetcher: Fetcher) -> Self {
        self.fetcher = fetcher;
        self
    }

    /// Uses `clock` to decide whether a Release file has expired.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Fetches and verifies the source's InRelease and package lists and, when everything checks out,
    /// makes them the source's good state. On any error the previous good state is left untouched.
    pub async fn refresh(&self, source: &AptSource) -> Result<Refresh, RepoError> {
        let key = source.key();
        let lock = self.lock_for(&key);
        let _held = lock.lock().await;
        let dir = self.dir.join(&key);
        let previous = read_state(&dir).await;

        let inrelease_url = source.dists_url("InRelease");
        let fetched = self.fetcher.fetch(&inrelease_url).await?;
        let digest = hex::encode(Sha256::digest(&fetched.bytes));
        // Verified on every refresh, even when unchanged: it is cheap, and the expiry must be checked
        // against today, not against the day the file was first fetched.
        let text = self.verify(source, &inrelease_url, &fetched.bytes).await?;
        let release = Release::parse(&text, &inrelease_url)?;
        release.check_valid(self.clock.now(), &inrelease_url)?;
        let wanted = select_indexes(&release, source, &inrelease_url)?;

        if let Some(previous) = &previous {
            if previous.digest == digest && state_is_complete(&dir, previous, &wanted) {
                // The server may have sent the same bytes again with new validators.
                self.fetcher.commit(&inrelease_url, &fetched).await?;
                tracing::debug!(url = %source.url, suite = %source.suite, "unchanged");
                return Ok(Refresh {
                    digest,
                    changed: false,
                });
            }
        }

        let mut written = Vec::new();
        let loaded = self
            .fetch_indexes(
                source,
                &release,
                &wanted,
                previous.as_ref(),
                &dir,
                &mut written,
            )
            .await;
        let state = State {
            url: source.url.clone(),
            suite: source.suite.clone(),
            digest: digest.clone(),
            indexes: wanted
                .iter()
                .map(|w| IndexState {
                    component: w.component.clone(),
                    architecture: w.architecture.clone(),
                    path: w.file.path.clone(),
                    sha256: w.file.sha256.clone(),
                })
                .collect(),
        };
        let committed = match loaded {
            Ok(packages) => write_state(&dir, &state).await.map(|()| packages),
            Err(error) => Err(error),
        };
        let packages = match committed {
            Ok(packages) => packages,
            Err(error) => {
                // Files of this failed attempt are referenced by no state; do not leave them lying about.
                for path in written {
                    let _ = tokio::fs::remove_file(path).await;
                }
                return Err(error);
            }
        };
        // After the state, and not fatal: the state is what counts, and without this copy the next refresh
        // merely downloads InRelease again, finds the digest of the state and is done.
        if let Err(error) = self.fetcher.commit(&inrelease_url, &fetched).await {
            tracing::warn!(url = %inrelease_url, %error, "could not cache the verified InRelease");
        }
        remove_unreferenced(&dir, &state).await;

        let snapshot = Arc::new(RepoSnapshot {
            url: source.url.clone(),
            suite: source.suite.clone(),
            scheme: VersionScheme::Debian,
            digest: digest.clone(),
            packages,
        });
        self.remember(&key, snapshot);
        let changed = !matches!(&previous, Some(p) if p.digest == digest);
        tracing::info!(url = %source.url, suite = %source.suite, %digest, changed, "refreshed");
        Ok(Refresh { digest, changed })
    }

    /// The packages of the source's good state. Parsed at most once per InRelease digest in this process;
    /// [`RepoError::NoGoodCopy`] before the first successful refresh.
    pub async fn snapshot(&self, source: &AptSource) -> Result<Arc<RepoSnapshot>, RepoError> {
        let key = source.key();
        let lock = self.lock_for(&key);
        let _held = lock.lock().await;
        let dir = self.dir.join(&key);
        let state = read_state(&dir)
            .await
            .ok_or_else(|| RepoError::NoGoodCopy {
                url: source.url.clone(),
                suite: source.suite.clone(),
            })?;
        if let Some(known) = self.remembered(&key) {
            if known.digest == state.digest {
                return Ok(known);
            }
        }
        let files: Vec<(PathBuf, String)> = state
            .indexes
            .iter()
            .map(|index| {
                (
                    dir.join("packages").join(&index.sha256),
                    source.dists_url(&index.path),
                )
            })
            .collect();
        let packages = tokio::task::spawn_blocking(move || {
            let mut lists = Vec::with_capacity(files.len());
            for (path, name) in &files {
                let file = std::fs::File::open(path).map_err(RepoError::io("open", path))?;
                lists.push(parse_packages_from(file, name)?);
            }
            Ok::<_, RepoError>(merge(lists))
        })
        .await
        .map_err(|e| RepoError::Io {
            action: "load the packages of",
            path: dir.clone(),
            source: std::io::Error::other(e),
        })??;
        let snapshot = Arc::new(RepoSnapshot {
            url: state.url,
            suite: state.suite,
            scheme: VersionScheme::Debian,
            digest: state.digest,
            packages,
        });
        self.remember(&key, Arc::clone(&snapshot));
        Ok(snapshot)
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(key.to_string()).or_default())
    }

    fn remembered(&self, key: &str) -> Option<Arc<RepoSnapshot>> {
        let snapshots = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        snapshots.get(key).cloned()
    }

    fn remember(&self, key: &str, snapshot: Arc<RepoSnapshot>) {
        let mut snapshots = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        snapshots.insert(key.to_string(), snapshot);
    }

    /// The signed text of the InRelease: checked with gpgv against the source's keyring, or merely unwrapped
    /// for a trusted source.
    async fn verify(
        &self,
        source: &AptSource,
        url: &str,
        bytes: &[u8],
    ) -> Result<String, RepoError> {
        let not_text = || RepoError::Parse {
            file: url.to_string(),
            line: 1,
            field: "InRelease".into(),
            reason: "the file is not UTF-8 text (or a broken clear-signed message)".into(),
        };
        if source.trusted {
            return cleartext(bytes).ok_or_else(not_text);
        }
        if !is_clearsigned(bytes) {
            return Err(RepoError::MissingSignature {
                url: url.to_string(),
            });
        }
        let bad = |detail: String| RepoError::BadSignature {
            url: url.to_string(),
            keyring: source.keyring.clone(),
            detail,
        };
        let Some(keyring) = &source.keyring else {
            return Err(bad(
                "the source names no keyring to check it with (set `keyring`; for \
                 Debian's archive install debian-archive-keyring and use \
                 /usr/share/keyrings/debian-archive-keyring.gpg)"
                    .into(),
            ));
        };
        let keyring = std::path::absolute(keyring).unwrap_or_else(|_| keyring.clone());
        match tokio::fs::read(&keyring).await {
            Ok(head) if head.starts_with(b"-----BEGIN PGP") => {
                return Err(bad(
                    "the keyring is ASCII-armored, and gpgv reads binary keyrings only: \
                     convert it with `gpg --dearmor`"
                        .into(),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(bad(format!("the keyring cannot be read: {e}"))),
        }
        // Signed data on stdin and the signed text on stdout: gpgv's output is exactly what the signature
        // covers, so text outside the signed part can never be parsed.
        let command = Command::new("gpgv")
            .arg("--status-fd")
            .arg("2")
            .arg("--keyring")
            .arg(keyring.as_os_str())
            .args(["--output", "-"])
            .stdin(bytes.to_vec())
            .timeout(GPGV_TIMEOUT);
        match self.runner.run(command).await {
            Ok(output) => {
                let status = output.stderr_tail;
                // gpgv exits 0 for a good signature by an expired or revoked key; apt refuses those.
                for refused in ["EXPKEYSIG", "REVKEYSIG", "EXPSIG"] {
                    if status.contains(&format!("[GNUPG:] {refused}")) {
                        return Err(bad(summarize_gpgv(&status)));
                    }
                }
                if !status.contains("[GNUPG:] VALIDSIG") {
                    return Err(bad(summarize_gpgv(&status)));
                }
                String::from_utf8(output.stdout).map_err(|_| not_text())
            }
            Err(ExecError::Failed { stderr_tail, .. }) => Err(bad(summarize_gpgv(&stderr_tail))),
            Err(error) => Err(RepoError::Exec {
                action: "verify the InRelease signature with gpgv",
                source: error,
            }),
        }
    }

    /// Downloads (or reuses) every wanted index, verifies it against the Release, decompresses and parses
    /// it, and stores the decompressed copy under its hash. Returns all their packages.
    async fn fetch_indexes(
        &self,
        source: &AptSource,
        release: &Release,
        wanted: &[Wanted<'_>],
        previous: Option<&State>,
        dir: &Path,
        written: &mut Vec<PathBuf>,
    ) -> Result<Vec<Package>, RepoError> {
        let packages_dir = dir.join("packages");
        tokio::fs::create_dir_all(&packages_dir)
            .await
            .map_err(RepoError::io("create directory", &packages_dir))?;
        let mut lists = Vec::with_capacity(wanted.len());
        for want in wanted {
            let stored = packages_dir.join(&want.file.sha256);
            let plain_url = source.dists_url(&want.file.path);
            let reusable = previous
                .is_some_and(|p| p.indexes.iter().any(|i| i.sha256 == want.file.sha256))
                && tokio::fs::metadata(&stored).await.is_ok();
            if reusable {
                let name = plain_url.clone();
                let packages = tokio::task::spawn_blocking(move || {
                    let file =
                        std::fs::File::open(&stored).map_err(RepoError::io("open", &stored))?;
                    parse_packages_from(file, &name)
                })
                .await
                .map_err(join_error(&packages_dir))??;
                lists.push(packages);
                continue;
            }

            let (url, bytes) = self.download_index(source, release, want.file).await?;
            if bytes.len() as u64 != want.file.size {
                return Err(RepoError::ChecksumMismatch {
                    file: url,
                    check: "size",
                    expected: format!("{} bytes", want.file.size),
                    got: format!("{} bytes", bytes.len()),
                });
            }
            let got = hex::encode(Sha256::digest(&bytes));
            if got != want.file.sha256 {
                return Err(RepoError::ChecksumMismatch {
                    file: url,
                    check: "sha256",
                    expected: want.file.sha256.clone(),
                    got,
                });
            }
            let path = want.file.path.clone();
            let target = stored.clone();
            let packages = tokio::task::spawn_blocking(move || {
                let data = decompress(&path, &bytes, &url)?;
                let packages = parse_packages(&data, &url)?;
                crate::http::write_atomically_blocking(&target, &data)?;
                Ok::<_, RepoError>(packages)
            })
            .await
            .map_err(join_error(&packages_dir))??;
            written.push(stored);
            lists.push(packages);
        }
        Ok(merge(lists))
    }

    /// Downloads one index file, by hash when the archive offers that (a mirror mid-update then still
    /// serves the file the InRelease describes), falling back to its plain path. Returns the URL used.
    async fn download_index(
        &self,
        source: &AptSource,
        release: &Release,
        file: &ReleaseFile,
    ) -> Result<(String, Vec<u8>), RepoError> {
        let plain = source.dists_url(&file.path);
        if release.acquire_by_hash {
            let dir = file.path.rsplit_once('/').map_or("", |(dir, _)| dir);
            let by_hash = source.dists_url(&format!("{dir}/by-hash/SHA256/{}", file.sha256));
            match self.fetcher.fetch(&by_hash).await {
                Ok(fetched) => return Ok((by_hash, fetched.bytes)),
                Err(RepoError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let fetched = self.fetcher.fetch(&plain).await?;
        Ok((plain, fetched.bytes))
    }
}

fn join_error(path: &Path) -> impl FnOnce(tokio::task::JoinError) -> RepoError {
    let path = path.to_path_buf();
    move |e| RepoError::Io {
        action: "process the index files in",
        path,
        source: std::io::Error::other(e),
    }
}

/// Which index files to fetch: for each component and architecture `binary-<arch>/Packages` in the best
/// compression listed (xz, gz, none). Debian's per-architecture lists already include the `all` packages,
/// so `binary-all` is used only for an architecture the Release lists no file for.
fn select_indexes<'a>(
    release: &'a Release,
    source: &AptSource,
    file: &str,
) -> Result<Vec<Wanted<'a>>, RepoError> {
    let pick = |component: &str, arch: &str| -> Option<&'a ReleaseFile> {
        ["Packages.xz", "Packages.gz", "Packages"]
            .iter()
            .find_map(|name| release.file(&format!("{component}/binary-{arch}/{name}")))
    };
    let mut wanted: Vec<Wanted<'a>> = Vec::new();
    for component in &source.components {
        for arch in &source.architectures {
            let (arch_used, found) = match pick(component, arch) {
                Some(found) => (arch.as_str(), found),
                None => match pick(component, "all") {
                    Some(found) => ("all", found),
                    None => {
                        return Err(RepoError::MissingIndex {
                            file: file.to_string(),
                            component: component.clone(),
                            architecture: arch.clone(),
                        })
                    }
                },
            };
            if !wanted.iter().any(|w| w.file.path == found.path) {
                wanted.push(Wanted {
                    component: component.clone(),
                    architecture: arch_used.to_string(),
                    file: found,
                });
            }
        }
    }
    Ok(wanted)
}

/// Whether `state` already holds exactly the wanted files, all present on disk.
fn state_is_complete(dir: &Path, state: &State, wanted: &[Wanted<'_>]) -> bool {
    state.indexes.len() == wanted.len()
        && wanted.iter().all(|w| {
            state
                .indexes
                .iter()
                .any(|i| i.path == w.file.path && i.sha256 == w.file.sha256)
                && dir.join("packages").join(&w.file.sha256).is_file()
        })
}

/// The packages of several index files as one list. A package of architecture `all` appears in every
/// architecture's list; it is kept once.
fn merge(lists: Vec<Vec<Package>>) -> Vec<Package> {
    if lists.len() <= 1 {
        return lists.into_iter().next().unwrap_or_default();
    }
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    let mut out = Vec::with_capacity(lists.iter().map(Vec::len).sum());
    for package in lists.into_iter().flatten() {
        let key = (
            package.name.clone(),
            package.version.clone(),
            package.architecture.clone(),
        );
        if seen.insert(key) {
            out.push(package);
        }
    }
    out
}

/// Decompresses an index by its file name's extension.
fn decompress(path: &str, bytes: &[u8], url: &str) -> Result<Vec<u8>, RepoError> {
    use std::io::Read;

    let broken = |e: std::io::Error| RepoError::Decompress {
        file: url.to_string(),
        reason: e.to_string(),
    };
    let mut out = Vec::with_capacity(bytes.len() * 6);
    if path.ends_with(".xz") {
        liblzma::read::XzDecoder::new_multi_decoder(bytes)
            .read_to_end(&mut out)
            .map_err(broken)?;
    } else if path.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(broken)?;
    } else {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// gpgv's complaint without the machine-readable status lines, on one line.
fn summarize_gpgv(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("[GNUPG:]"))
        .collect();
    if lines.is_empty() {
        "gpgv found no valid signature".into()
    } else {
        lines.join("; ")
    }
}

/// The source's good state, if it has one. A state file that cannot be read or parsed counts as none: the
/// next refresh rebuilds it from scratch.
async fn read_state(dir: &Path) -> Option<State> {
    let path = dir.join("state.json");
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable apt state");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring corrupt apt state");
            None
        }
    }
}

async fn write_state(dir: &Path, state: &State) -> Result<(), RepoError> {
    let path = dir.join("state.json");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| RepoError::Io {
        action: "encode",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_atomically(&path, bytes).await
}

/// Deletes index files the new state no longer uses. Best effort: a leftover file costs disk, not
/// correctness.
async fn remove_unreferenced(dir: &Path, state: &State) {
    let keep: HashSet<&str> = state.indexes.iter().map(|i| i.sha256.as_str()).collect();
    let Ok(mut entries) = tokio::fs::read_dir(dir.join("packages")).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        if !keep.contains(name.to_string_lossy().as_ref()) {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(paths: &[&str]) -> Release {
        let mut text = String::from("Suite: s\nSHA256:\n");
        for path in paths {
            text.push_str(&format!(" {} 1 {path}\n", "0".repeat(64)));
        }
        Release::parse(&text, "InRelease").expect("parses")
    }

    fn source(components: &[&str], architectures: &[&str]) -> AptSource {
        AptSource {
            url: "http://m/debian/".into(),
            suite: "s".into(),
            components: components.iter().map(|s| s.to_string()).collect(),
            architectures: architectures.iter().map(|s| s.to_string()).collect(),
            keyring: None,
            trusted: false,
        }
    }

    fn picked(release: &Release, source: &AptSource) -> Vec<String> {
        select_indexes(release, source, "InRelease")
            .expect("selects")
            .iter()
            .map(|w| w.file.path.clone())
            .collect()
    }

    #[test]
    fn picks_the_best_compression_of_each_arch_file() {
        let r = release(&[
            "main/binary-amd64/Packages",
            "main/binary-amd64/Packages.gz",
            "main/binary-amd64/Packages.xz",
            "main/binary-all/Packages.xz",
            "contrib/binary-amd64/Packages",
            "contrib/binary-amd64/Packages.gz",
        ]);
        assert_eq!(
            picked(&r, &source(&["main", "contrib"], &["amd64"])),
            [
                "main/binary-amd64/Packages.xz",
                "contrib/binary-amd64/Packages.gz"
            ]
        );
    }

    #[test]
    fn binary_all_only_when_no_arch_file_is_listed() {
        let r = release(&["main/binary-all/Packages.xz"]);
        assert_eq!(
            picked(&r, &source(&["main"], &["amd64", "arm64"])),
            ["main/binary-all/Packages.xz"]
        );
        let err = select_indexes(&r, &source(&["contrib"], &["amd64"]), "InRelease")
            .expect_err("nothing for contrib");
        assert!(matches!(err, RepoError::MissingIndex { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("component contrib, architecture amd64"));
    }

    #[test]
    fn urls_and_keys() {
        let s = source(&["main"], &["amd64"]);
        assert_eq!(
            s.dists_url("InRelease"),
            "http://m/debian/dists/s/InRelease"
        );
        let mut other = s.clone();
        other.components.push("contrib".into());
        assert_ne!(s.key(), other.key());
        let mut slash = s.clone();
        slash.url = "http://m/debian".into();
        assert_eq!(s.key(), slash.key());
    }

    #[test]
    fn merge_keeps_arch_all_packages_once() {
        let p = |name: &str, arch: &str| Package {
            name: name.into(),
            version: "1".into(),
            architecture: arch.into(),
            source: name.into(),
            provides: String::new(),
            depends: String::new(),
            size: 1,
            sha256: String::new(),
            filename: String::new(),
            essential: false,
            priority: String::new(),
        };
        let merged = merge(vec![
            vec![p("a", "amd64"), p("doc", "all")],
            vec![p("a", "i386"), p("doc", "all")],
        ]);
        let names: Vec<_> = merged
            .iter()
            .map(|p| format!("{}:{}", p.name, p.architecture))
            .collect();
        assert_eq!(names, ["a:amd64", "doc:all", "a:i386"]);
    }

    #[test]
    fn gpgv_summary_drops_status_lines() {
        let stderr = "[GNUPG:] NEWSIG\ngpgv: Signature made today\n[GNUPG:] ERRSIG 1\ngpgv: Can't check signature: No public key\n";
        assert_eq!(
            summarize_gpgv(stderr),
            "gpgv: Signature made today; gpgv: Can't check signature: No public key"
        );
        assert_eq!(summarize_gpgv(""), "gpgv found no valid signature");
    }
}
