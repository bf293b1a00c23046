//! The bookkeeping apt and rpm-md sources share: the local cache with its downloads and per-source state
//! directories, the per-source lock, the parsed snapshots kept in memory, and the good state on disk.
//!
//! Each source has a state directory holding `state.json`, which names the verified index files (stored
//! beside it under their hashes) and the digest of the signed index they came from. A refresh writes new
//! index files under new names and then replaces `state.json` with one rename: that rename is the switch,
//! so a failure at any earlier point leaves the previous good state exactly as it was.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RepoError;
use crate::http::{write_atomically, Fetcher};
use crate::{Package, Refresh, RepoSnapshot};

/// The name of the good-state file in a source's state directory.
const STATE_FILE: &str = "state.json";

/// What a `state.json` holds, for one kind of source.
pub(crate) trait GoodState: Serialize + DeserializeOwned {
    /// What the state is called in warnings about it (`apt`, `rpm-md`).
    const KIND: &'static str;

    /// sha256 of the signed index the state comes from.
    fn digest(&self) -> &str;
}

/// The local cache of one kind of source (apt or rpm-md) and what one client keeps of it in memory.
///
/// On disk: the fetcher's last good downloads under `<cache>/http`, and a state directory per source under
/// `<cache>/<kind>/<source key>`. In memory: parsed snapshots per source key, so as long as a source's
/// signed index does not change its packages are parsed at most once per process, and a lock per source
/// that serializes its refreshes and snapshot loads, so they never interleave their writes and reads of its
/// state directory.
pub(crate) struct SourceCache {
    /// Downloads, with the last good copy of each signed index.
    pub fetcher: Fetcher,
    /// The parent of the state directories.
    pub dir: PathBuf,
    snapshots: Mutex<HashMap<String, Arc<RepoSnapshot>>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for SourceCache {
    // Not derived: the snapshots hold every package of every source, far too much for a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshots = self.snapshots.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("SourceCache")
            .field("dir", &self.dir)
            .field("fetcher", &self.fetcher)
            .field("snapshots", &snapshots)
            .finish_non_exhaustive()
    }
}

/// A source's state directory and good state, read under the source's lock, which is held as long as this
/// is.
pub(crate) struct Open<S> {
    /// The source's state directory.
    pub dir: PathBuf,
    /// Its good state, if it has one.
    pub previous: Option<S>,
    /// The source's lock.
    pub held: tokio::sync::OwnedMutexGuard<()>,
}

impl SourceCache {
    /// The cache under `cache_dir`, with the state directories of this kind of source in `kind` below it,
    /// downloading with the default retry policy.
    pub fn new(cache_dir: &Path, kind: &str) -> Result<Self, RepoError> {
        Ok(Self {
            fetcher: Fetcher::new(cache_dir.join("http"))?,
            dir: cache_dir.join(kind),
            snapshots: Mutex::default(),
            locks: Mutex::default(),
        })
    }

    /// Waits for the lock of source `key`, then reads its good state.
    pub async fn open<S: GoodState>(&self, key: &str) -> Open<S> {
        let held = self.lock(key).await;
        let dir = self.dir.join(key);
        let previous = read_state(&dir).await;
        Open {
            dir,
            previous,
            held,
        }
    }

    /// Waits for and holds the lock of the source `key` until the guard is dropped.
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(locks.entry(key.to_string()).or_default())
        };
        lock.lock_owned().await
    }

    /// The snapshot of the good state of source `key`: the one parsed before when the state has not changed
    /// since, otherwise what `load` makes of the state (given with the source's state directory).
    /// [`RepoError::NoGoodCopy`] (naming the source by its `url` and `suite`) when the source has no good
    /// state yet.
    pub async fn snapshot<S, F, Fut>(
        &self,
        key: &str,
        (url, suite): (&str, &str),
        load: F,
    ) -> Result<Arc<RepoSnapshot>, RepoError>
    where
        S: GoodState,
        F: FnOnce(S, PathBuf) -> Fut,
        Fut: Future<Output = Result<RepoSnapshot, RepoError>>,
    {
        let Open {
            dir,
            previous,
            held: _held,
        } = self.open::<S>(key).await;
        let state = previous.ok_or_else(|| RepoError::NoGoodCopy {
            url: url.to_string(),
            suite: suite.to_string(),
        })?;
        if let Some(known) = self.known(key, state.digest()) {
            return Ok(known);
        }
        let snapshot = Arc::new(load(state, dir).await?);
        self.remember(key, Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// Keeps the snapshot a refresh of source `key` produced, and says whether its digest differs from that
    /// of the `previous` good state.
    pub fn refreshed<S: GoodState>(
        &self,
        key: &str,
        snapshot: RepoSnapshot,
        previous: Option<&S>,
    ) -> Refresh {
        let digest = snapshot.digest.clone();
        let changed = previous.map(S::digest) != Some(digest.as_str());
        tracing::info!(url = %snapshot.url, suite = %snapshot.suite, %digest, changed, "refreshed");
        self.remember(key, Arc::new(snapshot));
        Refresh { digest, changed }
    }

    /// The snapshot of source `key` parsed before, if it is the one of the signed index `digest`.
    fn known(&self, key: &str, digest: &str) -> Option<Arc<RepoSnapshot>> {
        let snapshots = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        snapshots.get(key).filter(|s| s.digest == digest).cloned()
    }

    fn remember(&self, key: &str, snapshot: Arc<RepoSnapshot>) {
        let mut snapshots = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        snapshots.insert(key.to_string(), snapshot);
    }
}

/// The good state in `dir`, if it has one. A state file that cannot be read or parsed counts as none: the
/// next refresh rebuilds it from scratch.
async fn read_state<S: GoodState>(dir: &Path) -> Option<S> {
    let kind = S::KIND;
    let path = dir.join(STATE_FILE);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable {kind} state");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring corrupt {kind} state");
            None
        }
    }
}

/// Makes `state` the good state in `dir` once `loaded` (the packages of the files it names) succeeded,
/// with one atomic replacement of the state file. On any error the files of this attempt (`written`),
/// which no state references, are deleted and the previous state stays as it was.
pub(crate) async fn commit_state<S: GoodState>(
    dir: &Path,
    state: &S,
    loaded: Result<Vec<Package>, RepoError>,
    written: impl IntoIterator<Item = PathBuf>,
) -> Result<Vec<Package>, RepoError> {
    let committed = match loaded {
        Ok(packages) => write_state(dir, state).await.map(|()| packages),
        Err(error) => Err(error),
    };
    if committed.is_err() {
        for path in written {
            let _ = tokio::fs::remove_file(path).await;
        }
    }
    committed
}

async fn write_state<S: GoodState>(dir: &Path, state: &S) -> Result<(), RepoError> {
    let path = dir.join(STATE_FILE);
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| RepoError::Io {
        action: "encode",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_atomically(&path, bytes).await
}

/// Deletes the files in `dir` that `keep` does not want (by file name), such as index files the new state
/// no longer uses. Best effort: a leftover file costs disk, not correctness.
pub(crate) async fn remove_unreferenced(dir: &Path, keep: impl Fn(&str) -> bool) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if !keep(entry.file_name().to_string_lossy().as_ref()) {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// A [`RepoError::Io`] for a blocking task (parsing stored index files) that panicked or was cancelled,
/// for `map_err`.
pub(crate) fn join_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(tokio::task::JoinError) -> RepoError {
    let path = path.to_path_buf();
    move |e| RepoError::Io {
        action,
        path,
        source: std::io::Error::other(e),
    }
}

/// Checks a download against the size and hash its signed index gives: `size` when the index gives one,
/// and `digest` (the download's hash in the index's algorithm, named `check`) against `expected`.
pub(crate) fn check_download(
    url: &str,
    bytes: &[u8],
    size: Option<u64>,
    check: &'static str,
    expected: &str,
    digest: impl FnOnce(&[u8]) -> String,
) -> Result<(), RepoError> {
    if let Some(size) = size {
        if bytes.len() as u64 != size {
            return Err(RepoError::ChecksumMismatch {
                file: url.to_string(),
                check: "size",
                expected: format!("{size} bytes"),
                got: format!("{} bytes", bytes.len()),
            });
        }
    }
    let got = digest(bytes);
    if got != expected {
        return Err(RepoError::ChecksumMismatch {
            file: url.to_string(),
            check,
            expected: expected.to_string(),
            got,
        });
    }
    Ok(())
}
