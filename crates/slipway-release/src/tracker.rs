//! External trackers that mirror incidents: the [`Tracker`] trait and its errors.

use async_trait::async_trait;
use slipway_model::ExternalIssue;

/// Why a request to an external tracker failed. Every variant names the request (method and path, never
/// the token), so a person can reproduce it; none of them is fatal to slipway, which keeps the step and
/// tries again later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// The tracker could not be reached, or did not answer in time.
    #[error("{method} {path}: {message}")]
    Unreachable {
        /// The HTTP method.
        method: &'static str,
        /// The request path, such as `/api/v4/projects/7/issues`.
        path: String,
        /// What went wrong: connection refused, timed out, TLS, ...
        message: String,
    },
    /// The tracker answered with an error status.
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The tracker answered with success, but not with what was asked for.
    #[error("{method} {path}: unexpected answer: {message}")]
    Response {
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// What was wrong with it.
        message: String,
    },
    /// The tracker cannot be used as configured (a missing token, a client that would not start).
    #[error("{0}")]
    Config(String),
}

/// An external issue tracker that mirrors incidents: one issue per incident, a comment per further
/// failure, closed when the stream has a good compose again.
///
/// Implementations make one attempt per call; retrying is the engine's business.
#[async_trait]
pub trait Tracker: Send + Sync + std::fmt::Debug {
    /// The kind of tracker, such as `gitlab`, recorded with the issues it opens and the steps meant for it.
    fn kind(&self) -> &str;

    /// Opens an issue and returns where it is.
    async fn open(&self, title: &str, body: &str) -> Result<ExternalIssue, TrackerError>;

    /// Adds a comment to an issue.
    async fn comment(&self, issue: &ExternalIssue, body: &str) -> Result<(), TrackerError>;

    /// Closes an issue with a closing comment. Closing an issue that is already closed is not an error,
    /// so a retried close does no harm.
    async fn close(&self, issue: &ExternalIssue, body: &str) -> Result<(), TrackerError>;
}
