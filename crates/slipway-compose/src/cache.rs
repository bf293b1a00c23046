//! Caches shared by composes, all under one directory (`ComposeRequest::cache_dir`):
//!
//! - [`debs`]: package files apt downloaded, handed to the next mmdebstrap run so it downloads only what
//!   changed, with an index of their sha256 so a compose's lock records the checksum of every package it
//!   installed without hashing the same file twice;
//! - [`trees`]: installed root trees, keyed by what decides them (the package-related recipe fields,
//!   `SOURCE_DATE_EPOCH` and the lock), so a compose whose packages did not change skips mmdebstrap.
//!
//! Every file a cache serves is written under a temporary name and renamed into place, and every
//! read-modify-write holds a lock on a file in the cache (`flock`), so composes running at the same time,
//! in one process or several, see either an entry or nothing. A cache never decides bytes: a compose that
//! uses it takes the same steps after the tree exists as one that does not, and the tree itself is keyed
//! by everything that can change it.

pub mod debs;
pub mod trees;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use debs::{deb_file_name, DebCache, DebPrunePolicy, DebPruned};
pub use trees::{tree_key, TreeCache, TreeKey};

/// How much the caches keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Installed trees kept per recipe name; the least recently used go first. Zero turns the tree cache
    /// off (package files are still cached).
    pub trees_per_recipe: usize,
    /// Which package files are dropped after each compose.
    pub debs: DebPrunePolicy,
}

impl Default for CachePolicy {
    /// Two trees per recipe (the current package set and the one before, which a revert brings back) and
    /// the package files of the last eight composes, at most thirty days unused.
    fn default() -> Self {
        Self {
            trees_per_recipe: 2,
            debs: DebPrunePolicy {
                keep_composes: 8,
                max_age: Duration::from_secs(30 * 24 * 60 * 60),
            },
        }
    }
}

/// What the caches did for one compose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUse {
    /// The installed tree came from the tree cache; mmdebstrap did not run.
    pub tree_reused: bool,
    /// Package files mmdebstrap took from the package cache instead of downloading.
    pub debs_from_cache: usize,
    /// Package files mmdebstrap downloaded.
    pub debs_downloaded: usize,
}

/// Why a cache operation failed. A failing cache makes a compose slower, never different: callers log
/// these and carry on without the cache where they can.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A file operation failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// Copying a tree failed; the message carries `cp`'s stderr tail.
    #[error("{action}: {error}")]
    Exec {
        /// What was being done.
        action: String,
        /// The tool's error.
        error: slipway_exec::ExecError,
    },
    /// A blocking task panicked or was cancelled.
    #[error("{action} did not finish: {message}")]
    Task {
        /// What was being done.
        action: &'static str,
        /// What the runtime reported.
        message: String,
    },
}

pub(crate) fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |error| CacheError::Io {
        action,
        path,
        error,
    }
}

/// Runs blocking cache work off the async runtime.
pub(crate) async fn blocking<T, F>(action: &'static str, work: F) -> Result<T, CacheError>
where
    F: FnOnce() -> Result<T, CacheError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| CacheError::Task {
            action,
            message: join.to_string(),
        })?
}

/// An advisory lock on a file (`flock`), released when dropped. `flock` locks belong to the open file, so
/// two composes in one process exclude each other just as two processes do, and a crashed holder's lock
/// goes away with it.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for an exclusive lock on `path`, creating the file if needed.
    pub(crate) fn exclusive(path: &Path) -> Result<Self, CacheError> {
        Self::take(path, rustix::fs::FlockOperation::LockExclusive)
    }

    /// Waits for a shared lock on `path`, creating the file if needed.
    pub(crate) fn shared(path: &Path) -> Result<Self, CacheError> {
        Self::take(path, rustix::fs::FlockOperation::LockShared)
    }

    fn take(path: &Path, operation: rustix::fs::FlockOperation) -> Result<Self, CacheError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("opening the lock file", path))?;
        rustix::fs::flock(&file, operation)
            .map_err(|errno| io_err("locking", path)(errno.into()))?;
        Ok(Self { _file: file })
    }
}

/// A name for a temporary sibling that no other compose, in this process or another, will pick.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Seconds since the epoch now.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Removes a directory tree if it exists.
pub(crate) fn remove_tree(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("removing", path)(error))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_lock_excludes_within_one_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let held = FileLock::exclusive(&path).expect("lock");
        let file = File::options().write(true).open(&path).expect("open");
        assert!(
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
        );
        drop(held);
        assert!(
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok()
        );
    }

    #[test]
    fn suffixes_differ() {
        assert_ne!(unique_suffix(), unique_suffix());
    }
}
