//! `slipway outbox` and the pending announcements in `slipway status`: a mail server that is down keeps
//! the announcement queued with its error, and without a mail server it lands in the outbox directory.

mod common;

use std::path::Path;

use common::{example_project, slipway, text};
use slipway_model::{Announcement, AnnouncementKind};
use slipway_release::fixture::{read_eml, unused_port};
use slipway_store::{SqliteStore, Store};

fn json(project: &Path, args: &[&str]) -> serde_json::Value {
    let out = slipway(project, args);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Queues an announcement in the project's database, as a release would.
async fn queue(project: &Path, subject: &str) {
    let store = SqliteStore::open(&project.join("state/slipway.db")).expect("store");
    store
        .enqueue_notification(
            subject,
            &Announcement {
                kind: AnnouncementKind::Release,
                stream: "bookworm-cloud".into(),
                version: Some("20261121.0".parse().expect("version")),
                subject: subject.into(),
                body: "bookworm-cloud 20261121.0 is released.\n".into(),
                created_at: jiff::Timestamp::now(),
            },
            jiff::Timestamp::now(),
        )
        .await
        .expect("queued");
}

#[test]
fn a_new_project_has_an_empty_outbox_in_its_state_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let outbox = json(&project, &["outbox", "--json"]);
    assert_eq!(
        outbox["target"],
        project.join("state/outbox").display().to_string()
    );
    assert_eq!(outbox["pending"], serde_json::json!([]));
    assert_eq!(outbox["sent"], serde_json::json!([]));
}

#[tokio::test]
async fn an_unreachable_mail_server_leaves_the_announcement_pending_in_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let port = unused_port().expect("port");
    let config = project.join("slipway.toml");
    let text_before = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text_before.replace(
            "# smtp = { host = \"smtp.example.org\", port = 587, starttls = true, username = \"releng\", password-env = \"SLIPWAY_SMTP_PASSWORD\" }",
            &format!("smtp = {{ host = \"127.0.0.1\", port = {port}, starttls = false }}"),
        ),
    )
    .expect("write");
    queue(&project, "[bookworm-cloud] 20261121.0 released").await;

    let outbox = json(&project, &["outbox", "--send", "--json"]);
    assert_eq!(outbox["target"], format!("smtp://127.0.0.1:{port}"));
    let pending = outbox["pending"].as_array().expect("pending");
    assert_eq!(pending.len(), 1, "{outbox}");
    assert_eq!(pending[0]["attempts"], 1);
    let error = pending[0]["last_error"].as_str().expect("error");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");

    let status = json(&project, &["status", "--json"]);
    let in_status = &status[0]["pending_notifications"];
    assert_eq!(
        in_status[0]["announcement"]["subject"], "[bookworm-cloud] 20261121.0 released",
        "{status}"
    );
    let out = slipway(&project, &["status"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("announcement pending (1 attempt failed, next at ")
            && shown.contains("): [bookworm-cloud] 20261121.0 released [release]"),
        "{shown}"
    );
    assert!(shown.contains(&format!("last error: sending \"[bookworm-cloud] 20261121.0 released\" through the SMTP server 127.0.0.1:{port} failed")), "{shown}");
}

#[tokio::test]
async fn without_a_mail_server_the_announcement_is_written_to_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    queue(&project, "[bookworm-cloud] 20261121.0 released").await;
    let out = slipway(&project, &["outbox", "--send"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sent 1, failed 0"),
        "{}",
        text(&out)
    );
    let files: Vec<_> = std::fs::read_dir(project.join("state/outbox"))
        .expect("outbox")
        .map(|e| e.expect("entry").path())
        .collect();
    let mails = read_eml(&files).expect("parsed");
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].header("From"),
        Some("Example Cloud Images <releng@example.org>")
    );
    assert_eq!(mails[0].header("To"), Some("cloud-announce@example.org"));
    assert_eq!(
        mails[0].header("Subject"),
        Some("[bookworm-cloud] 20261121.0 released")
    );
    let outbox = json(&project, &["outbox", "--json"]);
    assert_eq!(outbox["pending"], serde_json::json!([]));
    assert_eq!(outbox["sent"][0]["state"], "sent");
}
