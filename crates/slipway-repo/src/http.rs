//! Downloads with a cache of the last *good* copy.
//!
//! [`Fetcher::fetch`] downloads a URL (conditionally, with the validators of the last good copy) and hands
//! back the bytes without storing anything. Only when the caller has checked them (signature, checksums)
//! does [`Fetcher::commit`] make them the new good copy. A download that fails verification therefore never
//! replaces what was known to be good, and the next conditional request still asks relative to the good
//! copy, so a bad answer is not "cached away" by a 304 either.
//!
//! Each cache entry is one file: a JSON header line with the URL and its validators, then the body. Writing
//! both in one file and renaming it into place keeps body and validators consistent through a crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{
    HeaderMap, CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RepoError;

/// Default number of attempts per download.
pub const DEFAULT_ATTEMPTS: u32 = 4;

/// Default delay before the first retry; each further retry waits twice as long.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the server may stay silent in the middle of a response. Not a limit on the whole download: a
/// big index over a slow link is fine as long as bytes keep coming.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A downloader with a cache of last good copies; see the module documentation.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    cache_dir: PathBuf,
    attempts: u32,
    base_delay: Duration,
}

/// One download, not yet committed.
#[derive(Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The URL it came from.
    pub url: String,
    /// The body: the fresh download, or the cached good copy when the server answered 304.
    pub bytes: Vec<u8>,
    /// The server answered 304 Not Modified: `bytes` is the cached good copy.
    pub not_modified: bool,
    /// The response's `ETag`, if any.
    pub etag: Option<String>,
    /// The response's `Last-Modified`, if any.
    pub last_modified: Option<String>,
}

impl std::fmt::Debug for Fetched {
    // Not derived: the body can be megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("url", &self.url)
            .field("bytes", &self.bytes.len())
            .field("not_modified", &self.not_modified)
            .field("etag", &self.etag)
            .field("last_modified", &self.last_modified)
            .finish()
    }
}

/// The header line of a cache entry.
#[derive(Debug, Serialize, Deserialize)]
struct EntryHeader {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// What one attempt came to, when it was not a success.
enum Failure {
    /// Worth another attempt: the connection failed or the server had a transient problem.
    Retry(String),
    /// The body arrived short: also worth another attempt, but reported as truncation if it persists.
    Truncated { expected: u64, got: u64 },
    /// Another attempt would give the same answer.
    Fatal(RepoError),
}

impl Fetcher {
    /// A fetcher keeping its good copies in `cache_dir` (created when first needed), with the default retry
    /// policy.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Self, RepoError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| RepoError::Client {
                reason: error_chain(&e),
            })?;
        Ok(Self {
            client,
            cache_dir: cache_dir.into(),
            attempts: DEFAULT_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
        })
    }

    /// Sets the retry policy: at most `attempts` attempts (at least one) per download, waiting
    /// `base_delay`, then twice that, and so on, between them.
    pub fn with_retries(mut self, attempts: u32, base_delay: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.base_delay = base_delay;
        self
    }

    /// The directory holding the good copies.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Downloads `url`; stores nothing (see [`Fetcher::commit`]).
    ///
    /// With a good copy in the cache, the request carries its validators (`If-None-Match`,
    /// `If-Modified-Since`) and a 304 answer returns the good copy with `not_modified` set. Connection
    /// errors, server errors (5xx) and truncated bodies are retried with exponential back-off. `file:` URLs
    /// are read directly and never count as not modified.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, RepoError> {
        if url.starts_with("file:") {
            return read_file_url(url).await;
        }
        let cached = self.read_entry(url).await;
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(url, cached.as_ref()).await {
                Ok(fetched) => return Ok(fetched),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(failure) => failure,
            };
            if attempt >= self.attempts {
                return Err(match failure {
                    Failure::Truncated { expected, got } => RepoError::Truncated {
                        url: url.to_string(),
                        expected,
                        got,
                    },
                    Failure::Retry(reason) => RepoError::Unreachable {
                        url: url.to_string(),
                        attempts: attempt,
                        reason,
                    },
                    Failure::Fatal(error) => error,
                });
            }
            let delay = self
                .base_delay
                .saturating_mul(1u32 << (attempt - 1).min(16));
            match &failure {
                Failure::Retry(reason) => {
                    tracing::warn!(%url, attempt, %reason, ?delay, "download failed, retrying")
                }
                Failure::Truncated { expected, got } => {
                    tracing::warn!(%url, attempt, expected, got, ?delay, "download truncated, retrying")
                }
                Failure::Fatal(_) => {}
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Makes `fetched`, downloaded from `url` and verified by the caller, the good copy of `url`: body and
    /// validators are written to a temporary file and renamed into place, so the entry is either the old one
    /// or the new one, never a mixture. A not-modified answer is already the good copy and writes nothing.
    pub async fn commit(&self, url: &str, fetched: &Fetched) -> Result<(), RepoError> {
        if fetched.not_modified {
            return Ok(());
        }
        let header = EntryHeader {
            url: url.to_string(),
            etag: fetched.etag.clone(),
            last_modified: fetched.last_modified.clone(),
        };
        let mut content = serde_json::to_vec(&header).map_err(|e| RepoError::Io {
            action: "encode the cache entry for",
            path: self.entry_path(url),
            source: std::io::Error::other(e),
        })?;
        content.push(b'\n');
        content.extend_from_slice(&fetched.bytes);
        write_atomically(&self.entry_path(url), content).await
    }

    /// The good copy of `url`, if one was committed (`not_modified` is set on it).
    pub async fn cached(&self, url: &str) -> Option<Fetched> {
        self.read_entry(url).await
    }

    /// Where the good copy of `url` lives: named by the URL's sha256, so any URL maps to a safe file name.
    fn entry_path(&self, url: &str) -> PathBuf {
        self.cache_dir
            .join(hex::encode(Sha256::digest(url.as_bytes())))
    }

    /// Reads the good copy of `url`. A missing or unreadable entry is no good copy: the download then
    /// simply goes unconditional.
    async fn read_entry(&self, url: &str) -> Option<Fetched> {
        let path = self.entry_path(url);
        let content = match tokio::fs::read(&path).await {
            Ok(content) => content,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable cache entry");
                return None;
            }
        };
        let newline = memchr::memchr(b'\n', &content)?;
        let header: EntryHeader = match serde_json::from_slice(&content[..newline]) {
            Ok(header) => header,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring corrupt cache entry");
                return None;
            }
        };
        if header.url != url {
            return None;
        }
        let mut bytes = content;
        bytes.drain(..=newline);
        Some(Fetched {
            url: header.url,
            bytes,
            not_modified: true,
            etag: header.etag,
            last_modified: header.last_modified,
        })
    }

    async fn attempt(&self, url: &str, cached: Option<&Fetched>) -> Result<Fetched, Failure> {
        let mut request = self.client.get(url);
        if let Some(good) = cached {
            if let Some(etag) = &good.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(date) = &good.last_modified {
                request = request.header(IF_MODIFIED_SINCE, date);
            }
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_builder() => {
                return Err(Failure::Fatal(RepoError::InvalidUrl {
                    url: url.to_string(),
                    reason: error_chain(&e),
                }))
            }
            Err(e) => return Err(Failure::Retry(error_chain(&e))),
        };
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return match cached {
                Some(good) => Ok(good.clone()),
                // A 304 to an unconditional request is a broken server; it will not get better.
                None => Err(Failure::Fatal(RepoError::Http {
                    url: url.to_string(),
                    status: status.as_u16(),
                })),
            };
        }
        if status.is_server_error() {
            return Err(Failure::Retry(format!("the server answered HTTP {status}")));
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(Failure::Fatal(RepoError::NotFound {
                url: url.to_string(),
            }));
        }
        if !status.is_success() {
            return Err(Failure::Fatal(RepoError::Http {
                url: url.to_string(),
                status: status.as_u16(),
            }));
        }

        let headers = response.headers();
        let expected = header_text(headers, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let etag = header_text(headers, ETAG);
        let last_modified = header_text(headers, LAST_MODIFIED);
        // Cap the up-front allocation: the length is the server's claim, not a fact.
        let capacity = expected.unwrap_or(0).min(64 << 20) as usize;
        let mut bytes = Vec::with_capacity(capacity);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Err(match expected {
                        Some(expected) => Failure::Truncated {
                            expected,
                            got: bytes.len() as u64,
                        },
                        None => Failure::Retry(format!(
                            "the response broke off after {} bytes: {}",
                            bytes.len(),
                            error_chain(&e)
                        )),
                    })
                }
            }
        }
        if let Some(expected) = expected {
            if bytes.len() as u64 != expected {
                return Err(Failure::Truncated {
                    expected,
                    got: bytes.len() as u64,
                });
            }
        }
        Ok(Fetched {
            url: url.to_string(),
            bytes,
            not_modified: false,
            etag,
            last_modified,
        })
    }
}

fn header_text(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An error and its causes on one line: reqwest's own message ("error sending request") says little
/// without the cause ("Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn read_file_url(url: &str) -> Result<Fetched, RepoError> {
    let path = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| RepoError::InvalidUrl {
            url: url.to_string(),
            reason: "not a local file URL (file:///absolute/path)".into(),
        })?;
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(Fetched {
            url: url.to_string(),
            bytes,
            not_modified: false,
            etag: None,
            last_modified: None,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RepoError::NotFound {
            url: url.to_string(),
        }),
        Err(source) => Err(RepoError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// Writes `content` to `path` through a temporary file in the same directory and a rename, syncing the file
/// first so the rename never exposes a file whose data did not reach the disk.
pub(crate) async fn write_atomically(path: &Path, content: Vec<u8>) -> Result<(), RepoError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || write_atomically_blocking(&path, &content))
        .await
        .map_err(|e| RepoError::Io {
            action: "write",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
}

/// The blocking body of [`write_atomically`].
pub(crate) fn write_atomically_blocking(path: &Path, content: &[u8]) -> Result<(), RepoError> {
    use std::io::Write;

    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(RepoError::io("create directory", dir))?;
    let temp = temp_path(path);
    let result = (|| {
        let mut file =
            std::fs::File::create(&temp).map_err(RepoError::io("create", temp.clone()))?;
        file.write_all(content)
            .map_err(RepoError::io("write", temp.clone()))?;
        file.sync_all()
            .map_err(RepoError::io("sync", temp.clone()))?;
        std::fs::rename(&temp, path).map_err(RepoError::io("rename into place", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// A fresh temporary name beside `path`: hidden, and unique per process and call so that concurrent writers
/// never share one.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_urls_are_read_directly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a b.txt");
        std::fs::write(&path, b"hello").expect("write");
        let url = reqwest::Url::from_file_path(&path)
            .expect("url")
            .to_string();
        let fetcher = Fetcher::new(dir.path().join("cache")).expect("fetcher");
        let fetched = fetcher.fetch(&url).await.expect("reads");
        assert_eq!(fetched.bytes, b"hello");
        assert!(!fetched.not_modified);
        let missing = fetcher
            .fetch(&format!("file://{}/nope", dir.path().display()))
            .await
            .expect_err("missing");
        assert!(matches!(missing, RepoError::NotFound { .. }), "{missing}");
    }

    #[tokio::test]
    async fn commit_stores_body_and_validators_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fetcher = Fetcher::new(dir.path()).expect("fetcher");
        let url = "http://example.invalid/x";
        assert_eq!(fetcher.cached(url).await, None);
        let fetched = Fetched {
            url: url.into(),
            bytes: b"line one\nline two\n".to_vec(),
            not_modified: false,
            etag: Some("\"abc\"".into()),
            last_modified: Some("Sat, 04 May 2024 08:17:01 GMT".into()),
        };
        fetcher.commit(url, &fetched).await.expect("commits");
        let good = fetcher.cached(url).await.expect("cached");
        assert_eq!(good.bytes, fetched.bytes);
        assert_eq!(good.etag, fetched.etag);
        assert_eq!(good.last_modified, fetched.last_modified);
        assert!(good.not_modified);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn error_chain_includes_causes() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(error_chain(&outer), "refused");
    }
}
