//! A stand-in GitLab for tests: the three issue endpoints slipway uses, on 127.0.0.1, checking each
//! request the way GitLab would (token, method, path, JSON body) and answering with GitLab-shaped JSON.
//!
//! It records every request, can answer with an error status on demand, and can be stopped and started
//! again on the same address, so tests can take the tracker down and bring it back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `POST`, `PUT`, ...
    pub method: String,
    /// The path as sent, still percent-encoded.
    pub path: String,
    /// The `PRIVATE-TOKEN` header, if sent.
    pub token: Option<String>,
    /// The body, parsed as JSON (`null` when it was not JSON).
    pub body: Value,
    /// The status the fake answered with.
    pub status: u16,
}

/// An issue as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeIssue {
    /// The issue's number within the project.
    pub iid: u64,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// Its labels, as sent (comma-separated).
    pub labels: String,
    /// `opened` or `closed`.
    pub state: String,
    /// Its notes' bodies, oldest first.
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<RecordedRequest>,
    issues: BTreeMap<u64, FakeIssue>,
    /// Answer every request with this status, until cleared.
    failure: Option<u16>,
}

#[derive(Debug, Clone)]
struct Setup {
    /// The project segment as GitLab expects it in paths: URL-encoded.
    project: String,
    token: String,
    base: String,
    state: Arc<Mutex<State>>,
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeGitLab {
    addr: SocketAddr,
    setup: Setup,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FakeGitLab {
    /// Starts a fake serving `project` (a numeric id, or a path such as `releng/images`, which requests
    /// must send URL-encoded) to clients presenting `token`.
    pub async fn start(project: &str, token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitLab");
        let addr = listener.local_addr().expect("its address");
        let setup = Setup {
            project: project.replace('/', "%2F"),
            token: token.to_string(),
            base: format!("http://{addr}"),
            state: Arc::new(Mutex::new(State::default())),
        };
        let mut fake = Self {
            addr,
            setup,
            server: None,
        };
        fake.serve(listener);
        fake
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let setup = self.setup.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let setup = setup.clone();
                async move { handle(&setup, method, uri, headers, body) }
            },
        );
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// The base URL to configure: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.setup.base.clone()
    }

    /// Stops answering: connections to its address are refused until [`FakeGitLab::restart`].
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Serves again on the same address, with the same issues.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the fake GitLab again");
        self.serve(listener);
    }

    /// Answers every request with `status` (and a GitLab-style error body) until cleared with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        lock(&self.setup.state).failure = status;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.setup.state).requests.clone()
    }

    /// Every issue, by iid.
    pub fn issues(&self) -> Vec<FakeIssue> {
        lock(&self.setup.state).issues.values().cloned().collect()
    }
}

impl Drop for FakeGitLab {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn message(status: StatusCode, text: &str) -> (StatusCode, Value) {
    (status, json!({ "message": text }))
}

fn handle(setup: &Setup, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let token = headers
        .get("PRIVATE-TOKEN")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = lock(&setup.state);
    let (status, answer) = answer(
        setup,
        &mut state,
        &method,
        uri.path(),
        &headers,
        token.as_deref(),
        &json_body,
    );
    state.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        token,
        body: json_body,
        status: status.as_u16(),
    });
    (status, Json(answer)).into_response()
}

fn answer(
    setup: &Setup,
    state: &mut State,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    if let Some(status) = state.failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return message(status, &format!("{} fake failure", status.as_u16()));
    }
    if token != Some(setup.token.as_str()) {
        return message(StatusCode::UNAUTHORIZED, "401 Unauthorized");
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return message(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send JSON");
    }
    let prefix = format!("/api/v4/projects/{}/issues", setup.project);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return message(StatusCode::NOT_FOUND, "404 Project Not Found");
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    match (method, parts.as_slice()) {
        (&Method::POST, []) => {
            let Some(title) = text("title").filter(|t| !t.trim().is_empty()) else {
                return message(StatusCode::BAD_REQUEST, "title is missing");
            };
            let iid = state.issues.keys().max().map_or(1, |n| n + 1);
            let issue = FakeIssue {
                iid,
                title,
                description: text("description").unwrap_or_default(),
                labels: text("labels").unwrap_or_default(),
                state: "opened".into(),
                notes: vec![],
            };
            let shown = issue_json(setup, &issue);
            state.issues.insert(iid, issue);
            (StatusCode::CREATED, shown)
        }
        (&Method::POST, [iid, "notes"]) => {
            let Some(issue) = iid.parse().ok().and_then(|n: u64| state.issues.get_mut(&n)) else {
                return message(StatusCode::NOT_FOUND, "404 Issue Not Found");
            };
            let Some(note) = text("body").filter(|b| !b.trim().is_empty()) else {
                return message(StatusCode::BAD_REQUEST, "body is missing");
            };
            issue.notes.push(note.clone());
            let id = 5000 + issue.notes.len() as u64;
            (
                StatusCode::CREATED,
                json!({ "id": id, "body": note, "noteable_iid": issue.iid }),
            )
        }
        (&Method::PUT, [iid]) => {
            let Some(issue) = iid.parse().ok().and_then(|n: u64| state.issues.get_mut(&n)) else {
                return message(StatusCode::NOT_FOUND, "404 Issue Not Found");
            };
            match text("state_event").as_deref() {
                Some("close") => issue.state = "closed".into(),
                Some("reopen") => issue.state = "opened".into(),
                _ => return message(StatusCode::BAD_REQUEST, "state_event is missing"),
            }
            let issue = issue.clone();
            (StatusCode::OK, issue_json(setup, &issue))
        }
        _ => message(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

fn issue_json(setup: &Setup, issue: &FakeIssue) -> Value {
    json!({
        "id": 1000 + issue.iid,
        "iid": issue.iid,
        "project_id": 7,
        "title": issue.title,
        "description": issue.description,
        "state": issue.state,
        "labels": issue.labels.split(',').filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        "web_url": format!("{}/{}/-/issues/{}", setup.base, setup.project.replace("%2F", "/"), issue.iid),
    })
}
