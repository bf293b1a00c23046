//! [`GitLabTracker`] against a local stand-in of GitLab's issue API that checks every request: the
//! token header, the method, the URL-encoded project path and the JSON body.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use slipway_model::ExternalIssue;

use crate::fixture::FakeGitLab;
use crate::{GitLabSettings, GitLabTracker, Tracker, TrackerError};

const TOKEN: &str = "glpat-test-token-123";

fn tracker(url: &str, project: &str, token: &str) -> GitLabTracker {
    GitLabTracker::new(GitLabSettings {
        url: url.to_string(),
        project: project.to_string(),
        token: token.to_string(),
        labels: vec!["slipway".into(), "incident".into()],
        timeout: Duration::from_secs(5),
    })
    .expect("tracker")
}

#[tokio::test]
async fn opens_comments_on_and_closes_an_issue() {
    let gitlab = FakeGitLab::start("releng/images", TOKEN).await;
    // A trailing slash on the configured URL is fine.
    let tracker = tracker(&format!("{}/", gitlab.url()), "releng/images", TOKEN);

    let issue = tracker
        .open("cloud: no good compose", "Compose **c-1** failed its gate.")
        .await
        .expect("open");
    assert_eq!(
        issue,
        ExternalIssue {
            tracker: "gitlab".into(),
            id: "1".into(),
            url: format!("{}/releng/images/-/issues/1", gitlab.url()),
        }
    );
    tracker
        .comment(&issue, "Compose **c-2** failed too.")
        .await
        .expect("comment");
    tracker
        .close(&issue, "Compose **c-3** passed. Closing.")
        .await
        .expect("close");

    let requests = gitlab.requests();
    let summary: Vec<(String, String, u16)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.status))
        .collect();
    let base = "/api/v4/projects/releng%2Fimages/issues";
    assert_eq!(
        summary,
        vec![
            ("POST".into(), base.to_string(), 201),
            ("POST".into(), format!("{base}/1/notes"), 201),
            ("PUT".into(), format!("{base}/1"), 200),
            ("POST".into(), format!("{base}/1/notes"), 201),
        ]
    );
    assert!(requests.iter().all(|r| r.token.as_deref() == Some(TOKEN)));
    assert_eq!(
        requests[0].body,
        json!({
            "title": "cloud: no good compose",
            "description": "Compose **c-1** failed its gate.",
            "labels": "slipway,incident",
        })
    );
    assert_eq!(
        requests[1].body,
        json!({"body": "Compose **c-2** failed too."})
    );
    assert_eq!(requests[2].body, json!({"state_event": "close"}));

    let issues = gitlab.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].state, "closed");
    assert_eq!(issues[0].labels, "slipway,incident");
    assert_eq!(
        issues[0].notes,
        [
            "Compose **c-2** failed too.",
            "Compose **c-3** passed. Closing."
        ]
    );

    // Closing again (a retried step) is harmless.
    tracker
        .close(&issue, "Closing again.")
        .await
        .expect("close twice");
    assert_eq!(gitlab.issues()[0].state, "closed");
}

#[tokio::test]
async fn a_numeric_project_id_is_used_as_is() {
    let gitlab = FakeGitLab::start("42", TOKEN).await;
    let tracker = tracker(&gitlab.url(), "42", TOKEN);
    let issue = tracker.open("t", "b").await.expect("open");
    assert_eq!(issue.id, "1");
    assert_eq!(gitlab.requests()[0].path, "/api/v4/projects/42/issues");
}

#[tokio::test]
async fn a_rejected_token_names_the_request_and_status_but_not_the_token() {
    let gitlab = FakeGitLab::start("releng/images", TOKEN).await;
    let tracker = tracker(&gitlab.url(), "releng/images", "glpat-wrong-token");
    let err = tracker.open("t", "b").await.expect_err("401");
    assert!(
        matches!(err, TrackerError::Status { status: 401, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("POST /api/v4/projects/releng%2Fimages/issues: HTTP 401: "),
        "{message}"
    );
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert!(!message.contains("glpat-wrong-token"), "{message}");
    assert!(gitlab.issues().is_empty());
}

#[tokio::test]
async fn a_server_error_is_reported_with_the_body_and_nothing_changes() {
    let gitlab = FakeGitLab::start("releng/images", TOKEN).await;
    let tracker = tracker(&gitlab.url(), "releng/images", TOKEN);
    let issue = tracker.open("t", "b").await.expect("open");
    gitlab.fail_with(Some(500));
    let err = tracker.comment(&issue, "c").await.expect_err("500");
    let message = err.to_string();
    assert!(
        message.starts_with("POST /api/v4/projects/releng%2Fimages/issues/1/notes: HTTP 500: "),
        "{message}"
    );
    assert!(message.contains("500 fake failure"), "{message}");
    let err = tracker.close(&issue, "c").await.expect_err("500");
    assert!(
        err.to_string()
            .starts_with("PUT /api/v4/projects/releng%2Fimages/issues/1: HTTP 500"),
        "{err}"
    );
    gitlab.fail_with(None);
    assert!(gitlab.issues()[0].notes.is_empty());
    assert_eq!(gitlab.issues()[0].state, "opened");
}

#[tokio::test]
async fn a_refused_connection_names_the_request() {
    let mut gitlab = FakeGitLab::start("releng/images", TOKEN).await;
    gitlab.stop().await;
    let tracker = tracker(&gitlab.url(), "releng/images", TOKEN);
    let err = tracker.open("t", "b").await.expect_err("refused");
    assert!(matches!(err, TrackerError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "POST /api/v4/projects/releng%2Fimages/issues: cannot connect to http://127.0.0.1:"
        ),
        "{message}"
    );
    assert!(!message.contains(TOKEN), "{message}");

    // Back up: the same tracker works again.
    gitlab.restart().await;
    tracker.open("t", "b").await.expect("open after restart");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let tracker = GitLabTracker::new(GitLabSettings {
        url: format!("http://{addr}"),
        project: "7".into(),
        token: TOKEN.into(),
        labels: vec![],
        timeout: Duration::from_secs(1),
    })
    .expect("tracker");
    let err = tracker.open("t", "b").await.expect_err("timeout");
    assert_eq!(
        err.to_string(),
        "POST /api/v4/projects/7/issues: no answer within 1 s"
    );
    hold.abort();
}

/// Serves a fixed answer to any request.
async fn fixed(status: StatusCode, headers: Vec<(&'static str, String)>, body: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(move || {
        let (headers, body) = (headers.clone(), body.clone());
        async move {
            let mut response =
                axum::response::IntoResponse::into_response((status, axum::Json(body)));
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            response
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_answer_without_the_issue_is_an_error() {
    let url = fixed(StatusCode::CREATED, vec![], json!({"id": 3})).await;
    let err = tracker(&url, "7", TOKEN)
        .open("t", "b")
        .await
        .expect_err("no iid");
    assert!(matches!(err, TrackerError::Response { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("POST /api/v4/projects/7/issues: unexpected answer: no issue iid"),
        "{err}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let url = fixed(
        StatusCode::MOVED_PERMANENTLY,
        vec![(
            "location",
            "https://elsewhere.example.org/api/v4/projects/7/issues".into(),
        )],
        json!({}),
    )
    .await;
    let err = tracker(&url, "7", TOKEN)
        .open("t", "b")
        .await
        .expect_err("redirect");
    let message = err.to_string();
    assert!(message.contains("HTTP 301"), "{message}");
    assert!(
        message.contains("redirected to https://elsewhere.example.org/"),
        "{message}"
    );
}

#[tokio::test]
async fn a_close_the_server_does_not_carry_out_is_an_error() {
    let url = fixed(StatusCode::OK, vec![], json!({"iid": 1, "state": "opened"})).await;
    let issue = ExternalIssue {
        tracker: "gitlab".into(),
        id: "1".into(),
        url: String::new(),
    };
    let err = tracker(&url, "7", TOKEN)
        .close(&issue, "bye")
        .await
        .expect_err("still open");
    assert!(err.to_string().contains("state is opened"), "{err}");
}
