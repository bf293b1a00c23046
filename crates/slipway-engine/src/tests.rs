//! The engine's reactions against a real store, without building or booting anything: events in, jobs,
//! decisions and releases out, each exactly once.

use std::sync::Arc;

use slipway_exec::SystemRunner;
use slipway_model::{
    sha256_hex, Artifact, ArtifactKind, Clock, Compose, Config, InputHash, Lock, Outcome,
    OutputFormat, ReleaseState, SystemClock, TestResult,
};
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

/// A recipe every engine test can use; nothing is built from it.
pub(crate) const RECIPE: &str = r#"
distribution = "debian"
suite = "bookworm"
packages = ["systemd"]
outputs = ["qcow2"]

[[source]]
url = "http://deb.debian.org/debian"
suite = "bookworm"

[system]
hostname = "debian"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    store: Arc<dyn Store>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("slipway.toml"), CONFIG).expect("config");
    std::fs::write(dir.path().join("cloud.toml"), RECIPE).expect("recipe");
    let config = Config::load(&dir.path().join("slipway.toml")).expect("valid config");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let engine = Engine::with_parts(
        config,
        Arc::clone(&store),
        Arc::new(SystemClock),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    );
    Fixture {
        _dir: dir,
        engine,
        store,
    }
}

async fn built_compose(store: &dyn Store) -> Compose {
    built_compose_at(store, "cloud", SystemClock.now()).await
}

/// A complete compose of `stream` with one qcow2 artifact, finished at `at`, as the store reads it back.
pub(crate) async fn built_compose_at(
    store: &dyn Store,
    stream: &str,
    at: jiff::Timestamp,
) -> Compose {
    let compose = store
        .create_compose(stream, "cloud", &sha256_hex(b"recipe"), at)
        .await
        .expect("create");
    let image = Artifact {
        kind: ArtifactKind::Image(OutputFormat::Qcow2),
        file_name: format!("{}.qcow2", compose.id),
        sha256: sha256_hex(b"image"),
        size: 5,
    };
    store
        .complete_compose(
            &compose.id,
            &InputHash(sha256_hex(b"inputs")),
            &Lock::default(),
            &slipway_model::PkgDiff::default(),
            &[image],
            at,
        )
        .await
        .expect("complete");
    store
        .compose(&compose.id)
        .await
        .expect("read")
        .expect("exists")
}

async fn pass_tests(store: &dyn Store, compose: &Compose, outcome: Outcome) {
    let now = SystemClock.now();
    let results: Vec<TestResult> = ["boot.multi-user", "sshd.active"]
        .iter()
        .map(|testcase| TestResult {
            artifact: format!("{}.qcow2", compose.id),
            ..TestResult::new(compose.id.clone(), *testcase, outcome, "", now)
        })
        .collect();
    store
        .record_test_run(&test_run(&compose.id, now), &results, now)
        .await
        .expect("results");
}

/// Records a test run of `compose` at `at` in which `boot.multi-user` had `outcome`.
pub(crate) async fn record_boot(
    store: &dyn Store,
    compose: &slipway_model::ComposeId,
    outcome: Outcome,
    at: jiff::Timestamp,
) {
    let result = TestResult {
        artifact: format!("{compose}.qcow2"),
        ..TestResult::new(compose.clone(), "boot.multi-user", outcome, "", at)
    };
    store
        .record_test_run(&test_run(compose, at), &[result], at)
        .await
        .expect("results");
}

/// A test run of `compose` that started and ended at `at`.
fn test_run(compose: &slipway_model::ComposeId, at: jiff::Timestamp) -> slipway_model::TestRun {
    slipway_model::TestRun {
        id: slipway_model::RunId::fresh(),
        compose: compose.clone(),
        plan: "default".into(),
        artifact: format!("{compose}.qcow2"),
        description: String::new(),
        started_at: at,
        finished_at: at,
    }
}

/// The latest decision on a compose in the fixture's stream, which every test here expects to exist.
async fn decision_of(f: &Fixture, compose: &Compose) -> slipway_model::Decision {
    f.store
        .latest_decision(&compose.id, "cloud")
        .await
        .expect("decision")
        .expect("decided")
}

#[tokio::test]
async fn a_complete_compose_gets_exactly_one_test_job() {
    let f = fixture();
    let compose = built_compose(f.store.as_ref()).await;
    assert_eq!(
        f.engine.handle_pending_events().await.expect("handle"),
        1,
        "compose.complete is handled; compose.started has no reaction"
    );
    // Handling again finds nothing new.
    assert_eq!(
        f.engine
            .handle_pending_events()
            .await
            .expect("handle again"),
        0
    );
    let job = f
        .store
        .claim_job(
            "w",
            std::time::Duration::from_secs(60),
            3,
            SystemClock.now(),
        )
        .await
        .expect("claim")
        .expect("a test job");
    assert_eq!(job.kind, "test");
    assert_eq!(job.key, format!("test:{}", compose.id));
    assert_eq!(f.store.open_jobs().await.expect("count"), 1, "one job only");
}

#[tokio::test]
async fn passing_results_release_the_compose_once() {
    let f = fixture();
    let compose = built_compose(f.store.as_ref()).await;
    pass_tests(f.store.as_ref(), &compose, Outcome::Passed).await;
    f.engine.handle_pending_events().await.expect("handle");

    let decision = decision_of(&f, &compose).await;
    assert!(decision.passed, "{decision:?}");
    let releases = f.store.releases("cloud").await.expect("releases");
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].compose, compose.id);
    assert_eq!(releases[0].state, ReleaseState::Pending);
    let jobs = f.store.open_jobs().await.expect("jobs");
    assert_eq!(jobs, 2, "the test job and one publish job");

    // Reacting to every event again, as after a crash before the handled marks were written, changes
    // nothing: no second release, no second publish job.
    let mut after = 0;
    loop {
        let events = f.store.events_after(after, 100).await.expect("events");
        let Some(last) = events.last() else { break };
        after = last.seq;
        for event in events {
            f.engine.react(&event).await.expect("react again");
        }
    }
    assert_eq!(f.store.releases("cloud").await.expect("releases").len(), 1);
    assert_eq!(f.store.open_jobs().await.expect("jobs"), 2);
}

#[tokio::test]
async fn failing_or_vetoed_composes_are_not_released() {
    let f = fixture();
    let failing = built_compose(f.store.as_ref()).await;
    pass_tests(f.store.as_ref(), &failing, Outcome::Error).await;
    f.engine.handle_pending_events().await.expect("handle");
    let decision = decision_of(&f, &failing).await;
    assert!(!decision.passed);
    assert!(f
        .store
        .releases("cloud")
        .await
        .expect("releases")
        .is_empty());

    let vetoed = built_compose(f.store.as_ref()).await;
    f.engine
        .set_verdict(&vetoed.id, true, "alice", "kernel regression")
        .await
        .expect("veto");
    pass_tests(f.store.as_ref(), &vetoed, Outcome::Passed).await;
    f.engine.handle_pending_events().await.expect("handle");
    let decision = decision_of(&f, &vetoed).await;
    assert!(!decision.passed, "a veto outweighs passing tests");
    assert!(f
        .store
        .releases("cloud")
        .await
        .expect("releases")
        .is_empty());

    // Withdrawing the veto re-decides at once, and the next pass over events releases it.
    let decision = f
        .engine
        .set_verdict(&vetoed.id, false, "alice", "false alarm")
        .await
        .expect("withdraw");
    assert!(decision.passed);
    f.engine.handle_pending_events().await.expect("handle");
    let releases = f.store.releases("cloud").await.expect("releases");
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].compose, vetoed.id);
}

#[tokio::test]
async fn a_verdict_on_an_unknown_compose_is_refused() {
    let f = fixture();
    let err = f
        .engine
        .set_verdict(&slipway_model::ComposeId("nope".into()), true, "a", "b")
        .await
        .expect_err("unknown compose");
    assert!(err.to_string().contains("no compose nope"), "{err}");
}

#[tokio::test]
async fn a_compose_whose_job_was_given_up_is_failed_instead_of_blocking_the_stream() {
    let f = fixture();
    let key = &f.engine.config().signing.key;
    std::fs::create_dir_all(key.parent().expect("key dir")).expect("mkdir");
    slipway_publish::GpgSigner::generate(
        Arc::new(SystemRunner),
        key,
        "test key <test@example.org>",
    )
    .await
    .expect("key");
    let config = f.engine.config();
    let recipe = config
        .recipe(config.stream("cloud").expect("stream"))
        .expect("recipe");
    let start = SystemClock.now() - jiff::SignedDuration::from_hours(1);
    let compose = f
        .store
        .create_compose("cloud", &recipe.name, &recipe.hash(), start)
        .await
        .expect("create");
    f.store
        .enqueue_job(
            &slipway_store::NewJob {
                kind: "compose".into(),
                key: format!("compose:{}", compose.id),
                payload: serde_json::json!({ "compose": compose.id }),
            },
            start,
        )
        .await
        .expect("enqueue");
    // A worker elsewhere claimed it every time it was allowed to and died each time (its lease ran out).
    let lease = std::time::Duration::from_secs(60);
    for minute in 0..crate::MAX_ATTEMPTS {
        let at = start + jiff::SignedDuration::from_mins(i64::from(minute) * 5);
        let claimed = f
            .store
            .claim_job("remote@dead-host:1", lease, crate::MAX_ATTEMPTS, at)
            .await
            .expect("claim");
        assert!(claimed.is_some(), "claim {minute} is allowed");
    }

    let report = f.engine.run_once().await.expect("cycle");
    let failed = f
        .store
        .compose(&compose.id)
        .await
        .expect("read")
        .expect("exists");
    assert!(
        matches!(failed.state, slipway_model::ComposeState::Failed { .. }),
        "{failed:?}"
    );
    let outcome = &report.streams[0];
    assert_eq!(outcome.compose.as_deref(), Some(compose.id.as_str()));
    assert!(
        outcome
            .problem
            .as_deref()
            .is_some_and(|p| p.starts_with("compose failed")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_topics_the_engine_skips_have_no_reaction() {
    let f = fixture();
    let compose = built_compose(f.store.as_ref()).await;
    // A body naming everything a reaction reads: the compose, the stream, a release and a decision.
    let body = serde_json::json!({
        "compose": compose.id,
        "stream": "cloud",
        "version": "20261121.0",
        "decision": {"compose": compose.id, "stream": "cloud", "passed": true},
        "since": SystemClock.now(),
    });
    let event = |topic: &str| slipway_model::Event {
        id: uuid::Uuid::new_v4(),
        seq: 0,
        topic: topic.to_string(),
        time: SystemClock.now(),
        schema: slipway_model::Event::schema_for(topic),
        body: body.clone(),
    };
    let events_before = f.store.last_event_seq().await.expect("seq");
    for topic in crate::handlers::NO_REACTION {
        f.engine.react(&event(topic)).await.expect("react");
        assert_eq!(
            f.store.open_jobs().await.expect("jobs"),
            0,
            "{topic} queued a job"
        );
        assert_eq!(
            f.store.last_event_seq().await.expect("seq"),
            events_before,
            "{topic} appended an event"
        );
    }
    // The same body on a topic the engine reacts to does queue work.
    f.engine
        .react(&event(slipway_model::topics::COMPOSE_COMPLETE))
        .await
        .expect("react");
    assert_eq!(f.store.open_jobs().await.expect("jobs"), 1);
}
