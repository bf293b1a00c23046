//! [`GitLabTracker`]: incidents mirrored to a GitLab project's issues over the REST API v4.
//!
//! Three requests, each authenticated with a `PRIVATE-TOKEN` header:
//!
//! - open: `POST /api/v4/projects/:id/issues` with `title`, `description` and `labels`; the answer's
//!   `iid` and `web_url` identify the issue;
//! - comment: `POST /api/v4/projects/:id/issues/:iid/notes` with `body`;
//! - close: `PUT /api/v4/projects/:id/issues/:iid` with `state_event=close`, then the closing note. Closing
//!   first makes a retried close harmless: GitLab accepts closing a closed issue, and the note is only
//!   posted once the close has succeeded.
//!
//! `:id` is the project's numeric id or its path (`group/project`), URL-encoded as GitLab asks. Redirects are
//! not followed: the token would go along to wherever they point, and a `POST` would turn into a `GET`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION, USER_AGENT};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_model::ExternalIssue;

use crate::tracker::{Tracker, TrackerError};

/// The kind name recorded with GitLab issues.
pub const GITLAB: &str = "gitlab";

/// How many characters of an error answer's body an error message quotes.
const BODY_EXCERPT: usize = 300;

/// What a [`GitLabTracker`] needs.
#[derive(Clone)]
pub struct GitLabSettings {
    /// The server's base URL, such as `https://gitlab.example.org` (a path prefix is kept).
    pub url: String,
    /// The project: its numeric id or its path (`group/subgroup/project`).
    pub project: String,
    /// The access token (a personal, project or group token with the `api` scope).
    pub token: String,
    /// Labels given to opened issues.
    pub labels: Vec<String>,
    /// How long one request may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for GitLabSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabSettings")
            .field("url", &self.url)
            .field("project", &self.project)
            .field("token", &"[redacted]")
            .field("labels", &self.labels)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Mirrors incidents to GitLab issues.
pub struct GitLabTracker {
    client: reqwest::Client,
    base: String,
    /// The project as it goes into paths: URL-encoded.
    project: String,
    token: String,
    labels: Vec<String>,
    timeout: Duration,
}

impl std::fmt::Debug for GitLabTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabTracker")
            .field("base", &self.base)
            .field("project", &self.project)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl GitLabTracker {
    /// A tracker for one GitLab project. Fails only if the token cannot be sent as a header or the HTTP
    /// client cannot start.
    pub fn new(settings: GitLabSettings) -> Result<Self, TrackerError> {
        let token = settings.token.trim().to_string();
        if token.is_empty() {
            return Err(TrackerError::Config("the GitLab token is empty".into()));
        }
        let mut headers = HeaderMap::new();
        let mut token_header = HeaderValue::from_str(&token).map_err(|_| {
            TrackerError::Config("the GitLab token holds characters a header cannot carry".into())
        })?;
        token_header.set_sensitive(true);
        headers.insert("PRIVATE-TOKEN", token_header);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("slipway/", env!("CARGO_PKG_VERSION"))),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TrackerError::Config(format!("cannot start the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: settings.url.trim().trim_end_matches('/').to_string(),
            project: encode_path_segment(settings.project.trim()),
            token,
            labels: settings.labels,
            timeout: settings.timeout,
        })
    }

    fn issues_path(&self) -> String {
        format!("/api/v4/projects/{}/issues", self.project)
    }

    fn issue_path(&self, issue: &ExternalIssue) -> String {
        format!("{}/{}", self.issues_path(), encode_path_segment(&issue.id))
    }

    /// Sends one JSON request and returns the JSON answer of a 2xx response.
    async fn send(&self, method: Method, path: &str, body: &Value) -> Result<Value, TrackerError> {
        let name = method_name(&method);
        let url = format!("{}{path}", self.base);
        tracing::debug!(method = name, path, "tracker request");
        let response = self
            .client
            .request(method, &url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| TrackerError::Unreachable {
                method: name,
                path: path.to_string(),
                message: self.redact(&self.describe(&e)),
            })?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TrackerError::Unreachable {
                method: name,
                path: path.to_string(),
                message: self.redact(&format!("reading the answer: {}", self.describe(&e))),
            })?;
        if !status.is_success() {
            let mut text = excerpt(&String::from_utf8_lossy(&bytes));
            if let (true, Some(location)) = (status.is_redirection(), location) {
                text = format!(
                    "redirected to {location}; set tracker.url to the address the API answers at"
                );
            }
            return Err(TrackerError::Status {
                method: name,
                path: path.to_string(),
                status: status.as_u16(),
                body: self.redact(&text),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| TrackerError::Response {
            method: name,
            path: path.to_string(),
            message: self.redact(&format!(
                "not JSON ({e}): {}",
                excerpt(&String::from_utf8_lossy(&bytes))
            )),
        })
    }

    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("no answer within {} s", self.timeout.as_secs_f64());
        }
        // reqwest's own message is generic ("error sending request"); the cause is in the chain.
        let mut message = error_chain(error);
        if error.is_connect() {
            message = format!("cannot connect to {}: {message}", self.base);
        }
        message
    }

    /// Removes the token from text that goes into an error, in case a server or library echoes it.
    fn redact(&self, text: &str) -> String {
        text.replace(&self.token, "[redacted]")
    }
}

#[async_trait]
impl Tracker for GitLabTracker {
    fn kind(&self) -> &str {
        GITLAB
    }

    async fn open(&self, title: &str, body: &str) -> Result<ExternalIssue, TrackerError> {
        let path = self.issues_path();
        let answer = self
            .send(
                Method::POST,
                &path,
                &json!({
                    "title": title,
                    "description": body,
                    "labels": self.labels.join(","),
                }),
            )
            .await?;
        let unexpected = |message: String| TrackerError::Response {
            method: "POST",
            path: path.clone(),
            message,
        };
        let iid = answer.get("iid").and_then(Value::as_u64).ok_or_else(|| {
            unexpected(format!("no issue iid in {}", excerpt(&answer.to_string())))
        })?;
        let url = answer
            .get("web_url")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected(format!("no web_url in {}", excerpt(&answer.to_string()))))?;
        Ok(ExternalIssue {
            tracker: GITLAB.into(),
            id: iid.to_string(),
            url: url.to_string(),
        })
    }

    async fn comment(&self, issue: &ExternalIssue, body: &str) -> Result<(), TrackerError> {
        let path = format!("{}/notes", self.issue_path(issue));
        self.send(Method::POST, &path, &json!({ "body": body }))
            .await?;
        Ok(())
    }

    async fn close(&self, issue: &ExternalIssue, body: &str) -> Result<(), TrackerError> {
        let path = self.issue_path(issue);
        let answer = self
            .send(Method::PUT, &path, &json!({ "state_event": "close" }))
            .await?;
        match answer.get("state").and_then(Value::as_str) {
            Some("closed") => {}
            other => {
                return Err(TrackerError::Response {
                    method: "PUT",
                    path,
                    message: format!(
                        "the issue's state is {} after closing it",
                        other.unwrap_or("missing")
                    ),
                })
            }
        }
        self.comment(issue, body).await
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::GET => "GET",
        Method::DELETE => "DELETE",
        _ => "HTTP",
    }
}

/// An error and its causes, without the URL reqwest puts in its own message.
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        parts.push(error.to_string());
    }
    parts.join(": ")
}

/// The start of a text, on one line, for an error message.
fn excerpt(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    match flat.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat.to_string(),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, as GitLab wants a project path
/// (`group/project` → `group%2Fproject`) in one path segment.
fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_are_one_encoded_segment() {
        assert_eq!(encode_path_segment("42"), "42");
        assert_eq!(
            encode_path_segment("releng/cloud images"),
            "releng%2Fcloud%20images"
        );
        assert_eq!(encode_path_segment("a.b_c~d-e"), "a.b_c~d-e");
    }

    #[test]
    fn excerpts_are_short_and_flat() {
        assert_eq!(excerpt("a\nb"), "a b");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), BODY_EXCERPT + 1);
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let tracker = GitLabTracker::new(GitLabSettings {
            url: "https://gitlab.example.org/".into(),
            project: "releng/images".into(),
            token: "glpat-secret".into(),
            labels: vec![],
            timeout: Duration::from_secs(5),
        })
        .expect("tracker");
        let text = format!("{tracker:?}");
        assert!(!text.contains("glpat-secret"), "{text}");
        assert!(text.contains("releng%2Fimages"), "{text}");
        assert_eq!(tracker.redact("token glpat-secret!"), "token [redacted]!");
    }
}
