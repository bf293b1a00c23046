//! What can go wrong while fetching, checking and parsing repository metadata.
//!
//! Every message says what failed, where (URL, file, line), and what to do about it; a refresh that fails with
//! any of these leaves the last good copy of the source in place.

use std::path::PathBuf;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The source could not be reached: connection refused, DNS failure, time-out, or a server error (5xx)
    /// on every attempt.
    #[error(
        "{url} is unreachable after {attempts} attempt(s): {reason}; check the URL and the network \
         (the last good copy stays in use and the next refresh tries again)"
    )]
    Unreachable {
        /// The URL that was requested.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// What the last attempt ran into.
        reason: String,
    },
    /// The server (or the file system, for `file:` URLs) says the file does not exist.
    #[error("{url} does not exist; check the source's URL, suite and components")]
    NotFound {
        /// The URL that was requested.
        url: String,
    },
    /// The URL cannot be requested at all.
    #[error("{url} is not a usable URL: {reason}; check the source's URL")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The server answered with a status that is neither success nor retryable.
    #[error(
        "{url} answered HTTP {status}; check the URL and whether the server needs credentials"
    )]
    Http {
        /// The URL that was requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The signed index has no OpenPGP signature: an apt `InRelease` that is not clear-signed, or an rpm-md
    /// `repomd.xml` without its detached `repomd.xml.asc`.
    #[error(
        "{url} is not signed (an InRelease that is not clear-signed, or a repomd.xml without a \
         repomd.xml.asc beside it); use a repository that signs its metadata, or skip the check for a \
         local source: mark it `trusted` (an rpm-md source without a keyring is not checked either)"
    )]
    MissingSignature {
        /// The URL of the unsigned index (`InRelease`, `repomd.xml`).
        url: String,
    },
    /// The signature did not verify against the source's keyring.
    #[error(
        "the signature of {url} does not verify{}: {detail}; check that the keyring holds the \
         repository's signing key",
        keyring_hint(.keyring)
    )]
    BadSignature {
        /// The URL of the signed index.
        url: String,
        /// The keyring it was checked against, if any.
        keyring: Option<PathBuf>,
        /// What gpgv said, or why it was not run.
        detail: String,
    },
    /// A downloaded file's size or hash differs from what the signed index says.
    #[error(
        "{check} mismatch for {file}: the signed index says {expected}, the download has {got}; the \
         mirror may be in the middle of an update, so try again later, or use another mirror"
    )]
    ChecksumMismatch {
        /// The file (URL) whose content is wrong.
        file: String,
        /// What was compared: `sha256` or `size`.
        check: &'static str,
        /// The value the signed index gives.
        expected: String,
        /// The value of the download.
        got: String,
    },
    /// The server sent fewer (or more) bytes than its `Content-Length` announced.
    #[error(
        "truncated download of {url}: {got} of {expected} bytes arrived; the connection broke or a proxy \
         cut it, try again"
    )]
    Truncated {
        /// The URL that was requested.
        url: String,
        /// The length the server announced.
        expected: u64,
        /// The length that arrived.
        got: u64,
    },
    /// Repository metadata is malformed.
    #[error("{file}:{line}: {field}: {reason}")]
    Parse {
        /// The file (URL or path) being parsed.
        file: String,
        /// The 1-based line of the problem.
        line: usize,
        /// The field concerned, or the part of the file when no field is.
        field: String,
        /// What is wrong, and what to do where that is not obvious.
        reason: String,
    },
    /// A compressed index could not be decompressed although its checksum matched: the repository
    /// published a broken file.
    #[error("cannot decompress {file}: {reason}; the repository published a broken file, report it to its maintainers")]
    Decompress {
        /// The URL of the compressed file.
        file: String,
        /// What the decompressor reported.
        reason: String,
    },
    /// The Release file's `Valid-Until` has passed: the mirror may be serving stale (possibly replayed)
    /// metadata.
    #[error(
        "{file} expired at {valid_until} (its Valid-Until); the mirror is stale or this machine's clock is \
         wrong: use an up-to-date mirror or fix the clock"
    )]
    Expired {
        /// The URL of the Release file.
        file: String,
        /// Its `Valid-Until` value, as written.
        valid_until: String,
    },
    /// The signed index lists no package list for a requested component and architecture.
    #[error(
        "{file} lists no Packages file for component {component}, architecture {architecture}; check the \
         source's components and the recipe's architecture"
    )]
    MissingIndex {
        /// The URL of the Release file.
        file: String,
        /// The component asked for.
        component: String,
        /// The architecture asked for.
        architecture: String,
    },
    /// The signed index of an rpm-md repository lists no metadata file of a kind that is needed.
    #[error(
        "{file} lists no {kind} metadata, so the repository's packages cannot be known; check that the \
         URL is the repository's root (the directory holding repodata/)"
    )]
    MissingMetadata {
        /// The URL of repomd.xml.
        file: String,
        /// The `type` of the missing `<data>` entry (`primary`).
        kind: &'static str,
    },
    /// A snapshot was asked for before any refresh of the source succeeded.
    #[error("there is no verified copy of {url} (suite {suite}) yet; refresh the source first")]
    NoGoodCopy {
        /// The source's URL.
        url: String,
        /// The source's suite.
        suite: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {reason}")]
    Client {
        /// What the client library reported.
        reason: String,
    },
    /// A helper program (gpgv) could not be run.
    #[error("{action}: {source}")]
    Exec {
        /// What the program was run for.
        action: &'static str,
        /// The runner's error, which names the package to install for a missing program.
        source: slipway_exec::ExecError,
    },
    /// Reading or writing the local cache (or a `file:` source) failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done, as a verb phrase (`read`, `write`, `rename`).
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn keyring_hint(keyring: &Option<PathBuf>) -> String {
    match keyring {
        Some(path) => format!(" with keyring {}", path.display()),
        None => String::new(),
    }
}

impl RepoError {
    /// A closure that wraps an I/O error with what was done to which path, for `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> RepoError {
        let path = path.into();
        move |source| RepoError::Io {
            action,
            path,
            source,
        }
    }
}
