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

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slipway_exec::CommandRunner;
use slipway_model::{Clock, PackageSource, SystemClock};

use crate::deb822::{parse_packages, parse_packages_from};
use crate::error::RepoError;
use crate::gpgv::Gpgv;
use crate::http::Fetcher;
use crate::inrelease::{cleartext, is_clearsigned, Release, ReleaseFile};
use crate::state::{
    check_download, commit_state, join_error, remove_unreferenced, GoodState, Open, SourceCache,
};
use crate::{Package, Refresh, RepoSnapshot, VersionScheme};

/// What a failed blocking task was doing.
const PROCESSING: &str = "process the index files in";

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

/// The good state of one source, as written to `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    url: String,
    suite: String,
    digest: String,
    indexes: Vec<IndexState>,
}

impl GoodState for State {
    const KIND: &'static str = "apt";

    fn digest(&self) -> &str {
        &self.digest
    }
}

impl State {
    /// The snapshot of this state, holding `packages`.
    fn into_snapshot(self, packages: Vec<Package>) -> RepoSnapshot {
        RepoSnapshot {
            url: self.url,
            suite: self.suite,
            scheme: VersionScheme::Debian,
            digest: self.digest,
            packages,
        }
    }
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
#[derive(Debug)]
pub struct AptRepo {
    cache: SourceCache,
    runner: Arc<dyn CommandRunner>,
    clock: Arc<dyn Clock>,
}

impl AptRepo {
    /// A client caching under `cache_dir`, running gpgv through `runner`, with the default download retry
    /// policy and the system clock.
    pub fn new(
        cache_dir: impl Into<PathBuf>,
        runner: Arc<dyn CommandRunner>,
    ) -> Result<Self, RepoError> {
        Ok(Self {
            cache: SourceCache::new(&cache_dir.into(), "apt")?,
            runner,
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `fetcher` for downloads, for example one with another retry policy.
    pub fn with_fetcher(mut self, fetcher: Fetcher) -> Self {
        self.cache.fetcher = fetcher;
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
        let Open {
            dir,
            previous,
            held: _held,
        } = self.cache.open::<State>(&key).await;

        let inrelease_url = source.dists_url("InRelease");
        let fetched = self.cache.fetcher.fetch(&inrelease_url).await?;
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
                self.cache.fetcher.commit(&inrelease_url, &fetched).await?;
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
        let packages = commit_state(&dir, &state, loaded, written).await?;
        // After the state, and not fatal: the state is what counts, and without this copy the next refresh
        // merely downloads InRelease again, finds the digest of the state and is done.
        if let Err(error) = self.cache.fetcher.commit(&inrelease_url, &fetched).await {
            tracing::warn!(url = %inrelease_url, %error, "could not cache the verified InRelease");
        }
        let keep: HashSet<&str> = state.indexes.iter().map(|i| i.sha256.as_str()).collect();
        remove_unreferenced(&dir.join("packages"), |name| keep.contains(name)).await;

        Ok(self
            .cache
            .refreshed(&key, state.into_snapshot(packages), previous.as_ref()))
    }

    /// The packages of the source's good state. Parsed at most once per InRelease digest in this process;
    /// [`RepoError::NoGoodCopy`] before the first successful refresh.
    pub async fn snapshot(&self, source: &AptSource) -> Result<Arc<RepoSnapshot>, RepoError> {
        let key = source.key();
        let load = |state: State, dir: PathBuf| async move {
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
            .map_err(join_error("load the packages of", &dir))??;
            Ok(state.into_snapshot(packages))
        };
        self.cache
            .snapshot(&key, (&source.url, &source.suite), load)
            .await
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
        let Some(keyring) = &source.keyring else {
            let detail =
                "the source names no keyring to check it with (set `keyring`; for Debian's \
                 archive install debian-archive-keyring and use \
                 /usr/share/keyrings/debian-archive-keyring.gpg)";
            return Err(RepoError::BadSignature {
                url: url.to_string(),
                keyring: None,
                detail: detail.into(),
            });
        };
        let gpgv = Gpgv {
            url,
            keyring,
            action: "verify the InRelease signature with gpgv",
        };
        let keyring = gpgv.readable_keyring().await?;
        // Signed data on stdin and the signed text on stdout: gpgv's output is exactly what the signature
        // covers, so text outside the signed part can never be parsed.
        let args = [OsStr::new("--output"), OsStr::new("-")];
        let signed = gpgv
            .run(self.runner.as_ref(), &keyring, &args, bytes)
            .await?;
        String::from_utf8(signed).map_err(|_| not_text())
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
                .map_err(join_error(PROCESSING, &packages_dir))??;
                lists.push(packages);
                continue;
            }

            let (url, bytes) = self.download_index(source, release, want.file).await?;
            check_download(
                &url,
                &bytes,
                Some(want.file.size),
                "sha256",
                &want.file.sha256,
                |bytes| hex::encode(Sha256::digest(bytes)),
            )?;
            let path = want.file.path.clone();
            let target = stored.clone();
            let packages = tokio::task::spawn_blocking(move || {
                let data = decompress(&path, &bytes, &url)?;
                let packages = parse_packages(&data, &url)?;
                crate::http::write_atomically_blocking(&target, &data)?;
                Ok::<_, RepoError>(packages)
            })
            .await
            .map_err(join_error(PROCESSING, &packages_dir))??;
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
            match self.cache.fetcher.fetch(&by_hash).await {
                Ok(fetched) => return Ok((by_hash, fetched.bytes)),
                Err(RepoError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let fetched = self.cache.fetcher.fetch(&plain).await?;
        Ok((plain, fetched.bytes))
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
}
