//! Incidents through the engine against a real store and a stand-in GitLab that checks each request:
//! open → comment → close mirrored, a tracker that is down (nothing fails, the steps wait and are
//! retried), a retry that must not open a second issue, and the embedded tracker alone. Nothing is built
//! or booted: composes and results are written to the store directly.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use slipway_exec::SystemRunner;
use slipway_model::{
    topics, Clock, Compose, ComposeId, Config, FailureKind, IncidentAction, IncidentState,
    MirrorAction, Outcome, RunId, SystemClock, TestResult, TestRun,
};
use slipway_release::fixture::FakeGitLab;
use slipway_release::{GitLabSettings, GitLabTracker, Tracker};
use slipway_store::{SqliteStore, Store};

use crate::{Engine, LogProgress};

const CONFIG: &str = r#"
[signing]
key = "keys/k.asc"

[gate.default]
required = ["boot.multi-user", "sshd.active"]

[[stream]]
name = "cloud"
recipe = "cloud.toml"
gate = "default"
"#;

const PROJECT: &str = "releng/images";
const TOKEN: &str = "glpat-engine-test";

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    store: Arc<dyn Store>,
}

fn fixture_with(extra_config: &str, tracker: Option<Arc<dyn Tracker>>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("slipway.toml"),
        format!("{CONFIG}{extra_config}"),
    )
    .expect("config");
    let config = Config::load(&dir.path().join("slipway.toml")).expect("valid config");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let engine = Engine::with_parts(
        config,
        Arc::clone(&store),
        Arc::new(SystemClock),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    );
    let engine = match tracker {
        Some(tracker) => engine.with_tracker(Some(tracker)),
        None => engine,
    };
    Fixture {
        _dir: dir,
        engine,
        store,
    }
}

fn gitlab_tracker(gitlab: &FakeGitLab) -> Arc<dyn Tracker> {
    Arc::new(
        GitLabTracker::new(GitLabSettings {
            url: gitlab.url(),
            project: PROJECT.into(),
            token: TOKEN.into(),
            labels: vec!["slipway".into()],
            timeout: Duration::from_secs(10),
        })
        .expect("tracker"),
    )
}

fn hours_ago(hours: i64) -> Timestamp {
    SystemClock.now() - SignedDuration::from_hours(hours)
}

/// A compose of `cloud` whose build failed with `reason`.
async fn failed_build(store: &dyn Store, reason: &str) -> ComposeId {
    let compose = store
        .create_compose(
            "cloud",
            "cloud",
            &slipway_model::sha256_hex(b"r"),
            hours_ago(3),
        )
        .await
        .expect("create");
    store
        .fail_compose(&compose.id, reason, hours_ago(3))
        .await
        .expect("fail");
    compose.id
}

/// A built compose of `cloud` with one test run: boot.multi-user passed, sshd.active had `sshd`.
async fn tested(engine: &Engine, store: &dyn Store, sshd: Outcome, serial: &str) -> Compose {
    let compose = crate::tests::built_compose_at(store, "cloud", hours_ago(2)).await;
    let log = engine
        .blobs()
        .put_bytes(serial.as_bytes())
        .expect("log blob");
    let at = hours_ago(1);
    let results: Vec<TestResult> = [("boot.multi-user", Outcome::Passed), ("sshd.active", sshd)]
        .into_iter()
        .map(|(testcase, outcome)| TestResult {
            artifact: format!("{}.qcow2", compose.id),
            log: Some(log.clone()),
            ..TestResult::new(compose.id.clone(), testcase, outcome, "", at)
        })
        .collect();
    let run = TestRun {
        id: RunId::fresh(),
        compose: compose.id.clone(),
        plan: "default".into(),
        artifact: format!("{}.qcow2", compose.id),
        description: String::new(),
        started_at: at,
        finished_at: at,
    };
    store
        .record_test_run(&run, &results, at)
        .await
        .expect("results");
    engine.decide("cloud", &compose.id).await.expect("decide");
    compose
}

fn serial_log() -> String {
    let mut log: String = (1..=200)
        .map(|i| format!("[  {i}.000] boot line {i}\n"))
        .collect();
    log.push_str("[FAILED] Failed to start ssh.service - OpenBSD Secure Shell server.\n");
    log
}

#[tokio::test]
async fn open_comment_and_close_are_mirrored_to_gitlab() {
    let gitlab = FakeGitLab::start(PROJECT, TOKEN).await;
    let f = fixture_with("", Some(gitlab_tracker(&gitlab)));

    // A build failure opens the incident, with the build's error in it.
    let broken = failed_build(
        f.store.as_ref(),
        "mmdebstrap failed (exit status 1)\nE: Unable to locate package cloud-init\nE: apt-get update failed",
    )
    .await;
    let report = f
        .engine
        .incident_report("cloud", &broken)
        .await
        .expect("report");
    assert_eq!(report.kind, FailureKind::BuildFailed);
    assert_eq!(report.summary, "mmdebstrap failed (exit status 1)");
    let (action, incident) = f
        .engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    assert_eq!(action, IncidentAction::Opened);
    assert_eq!(incident.compose, broken);
    let external = incident.external.clone().expect("mirrored at once");
    assert_eq!(external.tracker, "gitlab");
    assert_eq!(external.id, "1");
    let issues = gitlab.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(
        issues[0].title,
        format!("cloud: no good compose (build failed on {broken})")
    );
    assert!(
        issues[0]
            .description
            .contains("E: Unable to locate package cloud-init"),
        "{}",
        issues[0].description
    );
    assert_eq!(issues[0].labels, "slipway");

    // A gate failure comments, naming the requirement and quoting the serial log's end.
    let gate_failed = tested(&f.engine, f.store.as_ref(), Outcome::Failed, &serial_log()).await;
    let report = f
        .engine
        .incident_report("cloud", &gate_failed.id)
        .await
        .expect("report");
    assert_eq!(report.kind, FailureKind::GateFailed);
    assert_eq!(report.failed_requirements.len(), 1);
    assert_eq!(report.failed_requirements[0].subject, "sshd.active");
    assert_eq!(report.logs.len(), 1, "one serial log, quoted once");
    let (action, incident) = f
        .engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    assert_eq!(action, IncidentAction::Commented);
    assert_eq!(incident.comments.len(), 2);
    let note = &gitlab.issues()[0].notes[0];
    assert!(note.contains("`sshd.active`"), "{note}");
    assert!(note.contains("Failed to start ssh.service"), "{note}");
    assert!(!note.contains("boot line 100\n"), "only the tail: {note}");

    // The same report again adds nothing, here or there.
    let requests = gitlab.requests().len();
    let (action, _) = f
        .engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    assert_eq!(action, IncidentAction::AlreadyRecorded);
    assert_eq!(gitlab.requests().len(), requests);

    // A good compose closes it with a comment naming the compose.
    let good = tested(&f.engine, f.store.as_ref(), Outcome::Passed, "ok\n").await;
    let closed = f
        .engine
        .record_good_compose("cloud", &good.id)
        .await
        .expect("close")
        .expect("there was an open incident");
    assert_eq!(closed.state, IncidentState::Closed);
    assert!(closed.comments[2].body.contains(good.id.as_str()));
    let issue = &gitlab.issues()[0];
    assert_eq!(issue.state, "closed");
    assert_eq!(issue.notes.len(), 2);
    assert!(
        issue.notes[1].contains(good.id.as_str()),
        "{}",
        issue.notes[1]
    );
    assert!(gitlab
        .requests()
        .iter()
        .all(|r| r.token.as_deref() == Some(TOKEN)));

    assert!(f
        .store
        .open_incident("cloud")
        .await
        .expect("read")
        .is_none());
    assert!(f
        .engine
        .pending_incident_mirrors()
        .await
        .expect("read")
        .is_empty());
    let topics: Vec<String> = f
        .store
        .events_after(0, 10_000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.topic)
        .filter(|t| t.starts_with("incident."))
        .collect();
    assert_eq!(
        topics,
        [
            topics::INCIDENT_OPENED,
            topics::INCIDENT_COMMENTED,
            topics::INCIDENT_CLOSED
        ]
    );
    // Nothing left to close.
    assert!(f
        .engine
        .record_good_compose("cloud", &good.id)
        .await
        .expect("nothing open")
        .is_none());
}

#[tokio::test]
async fn a_tracker_that_is_down_fails_nothing_and_gets_every_change_once_it_is_back() {
    let mut gitlab = FakeGitLab::start(PROJECT, TOKEN).await;
    gitlab.stop().await;
    let f = fixture_with("", Some(gitlab_tracker(&gitlab)));

    let first = failed_build(f.store.as_ref(), "mmdebstrap failed").await;
    let report = f
        .engine
        .incident_report("cloud", &first)
        .await
        .expect("report");
    let (action, incident) = f
        .engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("a tracker that is down does not fail the caller");
    assert_eq!(action, IncidentAction::Opened);
    assert!(incident.external.is_none());
    let pending = f.engine.pending_incident_mirrors().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].action, MirrorAction::Open);
    assert_eq!(pending[0].attempts, 1);
    let error = pending[0].last_error.clone().expect("the error is kept");
    assert!(
        error.starts_with("POST /api/v4/projects/releng%2Fimages/issues: cannot connect"),
        "{error}"
    );
    assert!(!error.contains(TOKEN), "{error}");

    let second = failed_build(f.store.as_ref(), "mmdebstrap failed again").await;
    let report = f
        .engine
        .incident_report("cloud", &second)
        .await
        .expect("report");
    let (action, _) = f
        .engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    assert_eq!(action, IncidentAction::Commented);
    let good = tested(&f.engine, f.store.as_ref(), Outcome::Passed, "ok\n").await;
    let closed = f
        .engine
        .record_good_compose("cloud", &good.id)
        .await
        .expect("close")
        .expect("closed");
    assert_eq!(
        closed.state,
        IncidentState::Closed,
        "the store is the truth"
    );

    let pending = f.engine.pending_incident_mirrors().await.expect("pending");
    let actions: Vec<(MirrorAction, u32)> =
        pending.iter().map(|s| (s.action, s.attempts)).collect();
    // The open step was tried each time; the later steps wait behind it untried.
    assert_eq!(
        actions,
        [
            (MirrorAction::Open, 3),
            (MirrorAction::Comment, 0),
            (MirrorAction::Close, 0)
        ]
    );
    let sync = f.engine.sync_incidents().await.expect("sync while down");
    assert_eq!((sync.done, sync.failed, sync.pending), (0, 1, 3));
    assert!(gitlab.requests().is_empty());

    gitlab.restart().await;
    let sync = f.engine.sync_incidents().await.expect("sync");
    assert_eq!((sync.done, sync.failed, sync.pending), (3, 0, 0));
    let issues = gitlab.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].state, "closed");
    assert_eq!(issues[0].notes.len(), 2);
    assert!(issues[0].notes[0].contains(second.as_str()));
    assert!(issues[0].notes[1].contains(good.id.as_str()));
    let incident = f
        .store
        .incident(closed.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(incident.external.expect("linked").id, "1");

    // Nothing is sent twice.
    let requests = gitlab.requests().len();
    let sync = f.engine.sync_incidents().await.expect("sync");
    assert_eq!((sync.done, sync.pending), (0, 0));
    assert_eq!(gitlab.requests().len(), requests);
}

#[tokio::test]
async fn a_retried_step_does_not_open_a_second_issue() {
    let gitlab = FakeGitLab::start(PROJECT, TOKEN).await;
    let f = fixture_with("", Some(gitlab_tracker(&gitlab)));
    let first = failed_build(f.store.as_ref(), "first").await;
    let report = f
        .engine
        .incident_report("cloud", &first)
        .await
        .expect("report");
    f.engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    assert_eq!(gitlab.issues().len(), 1);

    // The tracker breaks after the issue exists: the comment waits.
    gitlab.fail_with(Some(500));
    let second = failed_build(f.store.as_ref(), "second").await;
    let report = f
        .engine
        .incident_report("cloud", &second)
        .await
        .expect("report");
    f.engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    let pending = f.engine.pending_incident_mirrors().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].action, MirrorAction::Comment);
    assert!(
        pending[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("/issues/1/notes: HTTP 500")),
        "{pending:?}"
    );

    gitlab.fail_with(None);
    let sync = f.engine.sync_incidents().await.expect("sync");
    assert_eq!((sync.done, sync.pending), (1, 0));
    let issues = gitlab.issues();
    assert_eq!(issues.len(), 1, "the retry commented on the existing issue");
    assert_eq!(issues[0].notes.len(), 1);
    let opens = gitlab
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/issues"))
        .count();
    assert_eq!(opens, 1);
}

#[tokio::test]
async fn an_incident_opened_before_the_tracker_was_configured_is_mirrored_with_its_next_comment() {
    let gitlab = FakeGitLab::start(PROJECT, TOKEN).await;
    let embedded = fixture_with("", None);
    let first = failed_build(embedded.store.as_ref(), "first").await;
    let report = embedded
        .engine
        .incident_report("cloud", &first)
        .await
        .expect("report");
    let (_, incident) = embedded
        .engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    assert!(incident.external.is_none());
    assert!(embedded
        .engine
        .pending_incident_mirrors()
        .await
        .expect("pending")
        .is_empty());

    // The same store, now with GitLab configured.
    let engine = Engine::with_parts(
        embedded.engine.config().clone(),
        Arc::clone(&embedded.store),
        Arc::new(SystemClock),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    )
    .with_tracker(Some(gitlab_tracker(&gitlab)));
    let second = failed_build(embedded.store.as_ref(), "second").await;
    let report = engine
        .incident_report("cloud", &second)
        .await
        .expect("report");
    let (action, incident) = engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    assert_eq!(action, IncidentAction::Commented);
    assert!(incident.external.is_some());
    let issues = gitlab.issues();
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0].description.contains(first.as_str()),
        "opened with the first report"
    );
    assert!(issues[0].notes[0].contains(second.as_str()));
}

#[tokio::test]
async fn without_an_external_tracker_incidents_live_in_the_store() {
    let f = fixture_with("", None);
    let broken = failed_build(f.store.as_ref(), "boom").await;
    let report = f
        .engine
        .incident_report("cloud", &broken)
        .await
        .expect("report");
    let (action, incident) = f
        .engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    assert_eq!(action, IncidentAction::Opened);
    assert!(incident.external.is_none());
    assert!(f
        .engine
        .pending_incident_mirrors()
        .await
        .expect("pending")
        .is_empty());
    let good = tested(&f.engine, f.store.as_ref(), Outcome::Passed, "ok\n").await;
    let closed = f
        .engine
        .record_good_compose("cloud", &good.id)
        .await
        .expect("close")
        .expect("closed");
    assert_eq!(closed.state, IncidentState::Closed);
    let sync = f.engine.sync_incidents().await.expect("sync");
    assert_eq!(sync, crate::MirrorSync::default());
}

#[tokio::test]
async fn a_gitlab_tracker_without_its_token_keeps_changes_pending_and_says_why() {
    let variable = format!("SLIPWAY_TEST_UNSET_{}", uuid::Uuid::new_v4().simple());
    let f = fixture_with(
        &format!(
            "\n[tracker]\nkind = \"gitlab\"\nurl = \"http://127.0.0.1:9\"\nproject = \"7\"\n\
             token-env = \"{variable}\"\n"
        ),
        None,
    );
    let broken = failed_build(f.store.as_ref(), "boom").await;
    let report = f
        .engine
        .incident_report("cloud", &broken)
        .await
        .expect("report");
    f.engine
        .record_bad_nightly("cloud", &report)
        .await
        .expect("record");
    let pending = f.engine.pending_incident_mirrors().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].tracker, "gitlab");
    let error = pending[0].last_error.clone().expect("why");
    assert!(error.contains(&variable), "{error}");
    assert!(error.contains("tracker.token-env"), "{error}");
}
