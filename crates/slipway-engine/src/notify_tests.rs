//! The notification queue through the engine, against a real SMTP server (Python's aiosmtpd) and a real
//! outbox directory: an announcement survives a mail server that is down, is sent once when it is up,
//! and a published release is announced with its download links.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use slipway_exec::SystemRunner;
use slipway_model::{Announcement, AnnouncementKind, Clock, Config, SmtpConfig};
use slipway_release::fixture::{read_eml, unused_port, SmtpSink};
use slipway_release::SmtpMailer;
use slipway_store::{NotificationState, SqliteStore, Store};

use crate::{Engine, LogProgress};

/// A clock the test moves by hand.
#[derive(Debug)]
struct TestClock(Mutex<Timestamp>);

impl TestClock {
    fn advance(&self, seconds: i64) {
        let mut now = self.0.lock().expect("clock");
        *now += SignedDuration::from_secs(seconds);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

const START: &str = "2026-11-21T10:00:00Z";

fn config_text(extra: &str) -> String {
    format!(
        r#"
base-url = "https://images.example.org"

[signing]
key = "keys/k.asc"

[gate.default]
required = ["boot.multi-user"]

[[stream]]
name = "cloud"
recipe = "cloud.toml"
gate = "default"
{extra}"#
    )
}

struct World {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<TestClock>,
    engine: Engine,
}

fn world(extra: &str) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("slipway.toml"), config_text(extra)).expect("config");
    let config = Config::load(&dir.path().join("slipway.toml")).expect("valid config");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let clock = Arc::new(TestClock(Mutex::new(START.parse().expect("timestamp"))));
    let engine = Engine::with_parts(
        config,
        Arc::clone(&store),
        clock.clone(),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    );
    World {
        dir,
        store,
        clock,
        engine,
    }
}

fn announcement(subject: &str) -> Announcement {
    Announcement {
        kind: AnnouncementKind::Revocation,
        stream: "cloud".into(),
        version: Some("20261121.0".parse().expect("version")),
        subject: subject.into(),
        body: "cloud 20261121.0 is revoked.\n".into(),
        created_at: START.parse().expect("timestamp"),
    }
}

const RECIPIENTS: &str = r#"
[announce]
from = "Release Team <releng@example.org>"
recipients = ["cloud-announce@lists.example.org"]
"#;

#[tokio::test]
async fn a_mail_server_that_is_down_leaves_the_announcement_pending_until_it_is_up() {
    let port = unused_port().expect("port");
    let w = world(RECIPIENTS);
    let engine = w.engine.with_mailer(Arc::new(SmtpMailer::new(SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        starttls: false,
        username: None,
        password_env: None,
        timeout_secs: 10,
    })));
    engine
        .announce(announcement("[cloud] 20261121.0 revoked"))
        .await
        .expect("queued")
        .expect("new");
    // Announcing the same again queues nothing.
    assert!(engine
        .announce(announcement("[cloud] 20261121.0 revoked"))
        .await
        .expect("queued")
        .is_none());

    let report = engine.deliver_notifications().await;
    assert_eq!(report.sent, 0);
    assert_eq!(report.failed.len(), 1);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let pending = engine.pending_notifications().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    let error = pending[0].last_error.as_deref().expect("error kept");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert_eq!(
        pending[0].next_attempt_at,
        w.clock.now() + SignedDuration::from_secs(60)
    );

    // Not due yet: nothing is tried.
    let report = engine.deliver_notifications().await;
    assert_eq!((report.sent, report.failed.len()), (0, 0));

    let sink = SmtpSink::start_on(port).expect("SMTP server");
    w.clock.advance(60);
    let report = engine.deliver_notifications().await;
    assert_eq!(report.sent, 1, "{report:?}");
    assert!(report.failed.is_empty());
    assert!(engine
        .pending_notifications()
        .await
        .expect("pending")
        .is_empty());
    let sent = engine.sent_notifications(10).await.expect("sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, NotificationState::Sent);
    assert_eq!(sent[0].attempts, 2);
    assert_eq!(sent[0].sent_at, Some(w.clock.now()));

    // Later deliveries send nothing again.
    w.clock.advance(3600);
    assert_eq!(engine.deliver_notifications().await.sent, 0);
    let received = sink.received().expect("received");
    assert_eq!(received.len(), 1);
    let mail = &received[0].mail;
    assert_eq!(mail.header("Subject"), Some("[cloud] 20261121.0 revoked"));
    assert_eq!(
        mail.header("From"),
        Some("Release Team <releng@example.org>")
    );
    assert_eq!(
        received[0].envelope_to,
        ["cloud-announce@lists.example.org"]
    );
    assert_eq!(mail.body.trim_end(), "cloud 20261121.0 is revoked.");
}

#[tokio::test]
async fn without_smtp_announcements_are_written_to_the_outbox() {
    let w = world("");
    assert_eq!(
        w.engine.mailer().target(),
        w.dir.path().join("state/outbox").display().to_string()
    );
    w.engine
        .announce(announcement("first"))
        .await
        .expect("queued");
    w.clock.advance(1);
    w.engine
        .announce(Announcement {
            created_at: w.clock.now(),
            ..announcement("second")
        })
        .await
        .expect("queued");
    let report = w.engine.deliver_notifications().await;
    assert_eq!(report.sent, 2, "{report:?}");

    let outbox = w.dir.path().join("state/outbox");
    let mut files: Vec<_> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mails = read_eml(&files).expect("parsed");
    let subjects: Vec<_> = mails.iter().map(|m| m.header("Subject")).collect();
    assert_eq!(subjects, [Some("first"), Some("second")]);
    for mail in &mails {
        assert!(mail.defects.is_empty(), "{:?}", mail.defects);
        assert_eq!(mail.header("From"), Some("slipway <slipway@localhost>"));
        assert_eq!(mail.header("To"), Some("announce@localhost"));
    }
}

#[tokio::test]
async fn a_published_release_is_announced_once_with_its_downloads() {
    let w = world("");
    let at = w.clock.now();
    let compose = crate::tests::built_compose_at(w.store.as_ref(), "cloud", at).await;
    let release = w
        .store
        .create_release("cloud", &compose.id, at)
        .await
        .expect("release");
    w.store
        .mark_release_published("cloud", &release.version, at)
        .await
        .expect("published");
    w.engine.handle_pending_events().await.expect("handled");
    // The reaction repeated (a crash before the event was marked handled) queues nothing more.
    let event = w
        .store
        .events_after(0, 100)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.topic == slipway_model::topics::RELEASE_PUBLISHED)
        .expect("published event");
    w.engine.react(&event).await.expect("reacted again");

    let pending = w.engine.pending_notifications().await.expect("pending");
    assert_eq!(pending.len(), 1);
    let announcement = &pending[0].announcement;
    let version = release.version.to_string();
    assert_eq!(announcement.kind, AnnouncementKind::Release);
    assert_eq!(announcement.subject, format!("[cloud] {version} released"));
    let image = &compose.artifacts[0];
    let url = format!(
        "https://images.example.org/cloud/{version}/{}",
        image.file_name
    );
    assert!(
        announcement.body.contains(&format!("  {url}\n")),
        "{}",
        announcement.body
    );
    assert!(
        announcement
            .body
            .contains(&format!("  {}  {}\n", image.sha256, image.file_name)),
        "{}",
        announcement.body
    );
    assert!(announcement.body.contains(&format!(
        "https://images.example.org/cloud/{version}/CHECKSUM"
    )));
    assert!(announcement.body.contains("Advisories: none"));
}

#[tokio::test]
async fn a_superseded_release_is_not_announced() {
    let w = world("");
    let at = w.clock.now();
    let old = crate::tests::built_compose_at(w.store.as_ref(), "cloud", at).await;
    let new = crate::tests::built_compose_at(
        w.store.as_ref(),
        "cloud",
        at + SignedDuration::from_secs(1),
    )
    .await;
    let first = w
        .store
        .create_release("cloud", &old.id, at)
        .await
        .expect("release");
    let second = w
        .store
        .create_release("cloud", &new.id, at)
        .await
        .expect("release");
    // Published newest first, as a late publish of an older release can happen: the older one is
    // superseded at once.
    w.store
        .mark_release_published("cloud", &second.version, at)
        .await
        .expect("published");
    w.store
        .mark_release_published("cloud", &first.version, at)
        .await
        .expect("published");
    w.engine.handle_pending_events().await.expect("handled");
    let pending = w.engine.pending_notifications().await.expect("pending");
    let versions: Vec<_> = pending
        .iter()
        .map(|n| n.announcement.version.clone())
        .collect();
    assert_eq!(versions, [Some(second.version)]);
}
