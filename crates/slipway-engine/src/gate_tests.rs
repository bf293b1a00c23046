//! The engine's decision flow against a real store: waivers and verdicts re-decide a compose, a
//! `decision.changed` is announced once per change with the previous answer, a broken policy file fails
//! only its own stream, and decisions can be asked as of a past time. Nothing is built or booted.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use slipway_exec::SystemRunner;
use slipway_model::{
    topics, Clock, Compose, Config, Decision, Event, NewWaiver, Outcome, RunId, SystemClock,
    TestResult, TestRun, UnsatisfiedKind,
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

[[stream]]
name = "edge"
recipe = "cloud.toml"
policy = "policies/edge.toml"
"#;

const GOOD_POLICY: &str = "required = [\"boot.multi-user\"]\n";

struct Fixture {
    dir: tempfile::TempDir,
    engine: Engine,
    store: Arc<dyn Store>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("slipway.toml"), CONFIG).expect("config");
    std::fs::create_dir_all(dir.path().join("policies")).expect("mkdir");
    std::fs::write(dir.path().join("policies/edge.toml"), GOOD_POLICY).expect("policy");
    let config = Config::load(&dir.path().join("slipway.toml")).expect("valid config");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let engine = Engine::with_parts(
        config,
        Arc::clone(&store),
        Arc::new(SystemClock),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    );
    Fixture { dir, engine, store }
}

/// A complete compose of `stream`, built an hour ago.
async fn built(store: &dyn Store, stream: &str) -> Compose {
    crate::tests::built_compose_at(
        store,
        stream,
        SystemClock.now() - SignedDuration::from_hours(1),
    )
    .await
}

/// Records one test run of `compose` at `at` with the given outcomes.
async fn record(store: &dyn Store, compose: &Compose, outcomes: &[(&str, Outcome)], at: Timestamp) {
    let results: Vec<TestResult> = outcomes
        .iter()
        .map(|(testcase, outcome)| TestResult {
            artifact: format!("{}.qcow2", compose.id),
            ..TestResult::new(compose.id.clone(), *testcase, *outcome, "", at)
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
}

async fn changes_after(store: &dyn Store, seq: i64) -> Vec<Event> {
    store
        .events_after(seq, 1000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.topic == topics::DECISION_CHANGED)
        .collect()
}

async fn last_seq(store: &dyn Store) -> i64 {
    store
        .events_after(0, 100_000)
        .await
        .expect("events")
        .last()
        .map_or(0, |e| e.seq)
}

fn decision_in(event: &Event, key: &str) -> Decision {
    serde_json::from_value(event.body[key].clone()).expect("a decision")
}

#[tokio::test]
async fn a_waiver_flips_a_failed_decision_once_and_a_revocation_flips_it_back() {
    let f = fixture();
    let compose = built(f.store.as_ref(), "cloud").await;
    let tested = SystemClock.now() - SignedDuration::from_mins(30);
    record(
        f.store.as_ref(),
        &compose,
        &[
            ("boot.multi-user", Outcome::Passed),
            ("sshd.active", Outcome::Failed),
        ],
        tested,
    )
    .await;
    f.engine.handle_pending_events().await.expect("handle");
    let failed = f
        .store
        .latest_decision(&compose.id, "cloud")
        .await
        .expect("read")
        .expect("decided");
    assert!(!failed.passed);
    let seq = last_seq(f.store.as_ref()).await;

    let (waiver, decision) = f
        .engine
        .waive(
            &compose.id,
            "sshd.active",
            None,
            "bob",
            "sshd flake, tracked in #12",
        )
        .await
        .expect("waive");
    assert!(decision.passed, "{decision:?}");
    assert_eq!(decision.waivers_used, vec![waiver.id]);
    // The engine also reacts to waiver.created; deciding again with the same answer announces nothing.
    f.engine.handle_pending_events().await.expect("handle");
    let changes = changes_after(f.store.as_ref(), seq).await;
    assert_eq!(changes.len(), 1, "one decision.changed for one change");
    let announced = decision_in(&changes[0], "decision");
    let previous = decision_in(&changes[0], "previous");
    assert!(announced.passed);
    assert_eq!(announced.waivers_used, vec![waiver.id]);
    assert!(!previous.passed);
    assert_eq!(previous.unsatisfied, failed.unsatisfied);
    // The passing decision released the compose.
    let releases = f.store.releases("cloud").await.expect("releases");
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].compose, compose.id);

    let seq = last_seq(f.store.as_ref()).await;
    let (revoked, decision) = f
        .engine
        .revoke_waiver(waiver.id, "carol", "the flake was a real bug")
        .await
        .expect("revoke");
    assert!(revoked.revoked.is_some());
    assert!(!decision.passed);
    f.engine.handle_pending_events().await.expect("handle");
    let changes = changes_after(f.store.as_ref(), seq).await;
    assert_eq!(changes.len(), 1);
    assert!(decision_in(&changes[0], "previous").passed);
    assert!(!decision_in(&changes[0], "decision").passed);

    let err = f
        .engine
        .revoke_waiver(waiver.id, "carol", "")
        .await
        .expect_err("revoked twice");
    assert!(err.to_string().contains("already revoked"), "{err}");
    let err = f
        .engine
        .revoke_waiver(4242, "carol", "")
        .await
        .expect_err("unknown waiver");
    assert!(err.to_string().contains("no waiver 4242"), "{err}");
}

#[tokio::test]
async fn a_waiver_recorded_elsewhere_is_decided_on_by_the_engine() {
    let f = fixture();
    let compose = built(f.store.as_ref(), "cloud").await;
    let tested = SystemClock.now() - SignedDuration::from_mins(30);
    record(
        f.store.as_ref(),
        &compose,
        &[("boot.multi-user", Outcome::Passed)],
        tested,
    )
    .await;
    f.engine.handle_pending_events().await.expect("handle");
    assert!(
        !f.store
            .latest_decision(&compose.id, "cloud")
            .await
            .expect("read")
            .expect("decided")
            .passed
    );
    f.store
        .add_waiver(&NewWaiver {
            compose: compose.id.clone(),
            testcase: "sshd.active".into(),
            scenario: None,
            author: "bob".into(),
            comment: "not applicable to this image".into(),
            created_at: SystemClock.now(),
        })
        .await
        .expect("waive");
    f.engine.handle_pending_events().await.expect("handle");
    let decision = f
        .store
        .latest_decision(&compose.id, "cloud")
        .await
        .expect("read")
        .expect("decided");
    assert!(decision.passed, "{decision:?}");
}

#[tokio::test]
async fn unmark_failed_without_a_veto_is_refused() {
    let f = fixture();
    let compose = built(f.store.as_ref(), "cloud").await;
    let err = f
        .engine
        .set_verdict(&compose.id, false, "alice", "oops")
        .await
        .expect_err("no veto");
    assert!(err.to_string().contains("is not marked failed"), "{err}");
    assert!(f
        .store
        .verdicts(&compose.id)
        .await
        .expect("read")
        .is_empty());
}

#[tokio::test]
async fn a_malformed_policy_file_fails_only_its_stream_and_is_read_again_when_fixed() {
    let f = fixture();
    std::fs::write(
        f.dir.path().join("policies/edge.toml"),
        "required = [\"boot.multi-user\"]\n[[require]]\ntestcase = \"sshd.active\"\nmin-count = \"two\"\n",
    )
    .expect("break the policy");
    let cloud = built(f.store.as_ref(), "cloud").await;
    let edge = built(f.store.as_ref(), "edge").await;
    let tested = SystemClock.now() - SignedDuration::from_mins(30);
    let all_pass = [
        ("boot.multi-user", Outcome::Passed),
        ("sshd.active", Outcome::Passed),
    ];
    record(f.store.as_ref(), &cloud, &all_pass, tested).await;
    record(f.store.as_ref(), &edge, &all_pass, tested).await;
    f.engine
        .handle_pending_events()
        .await
        .expect("the engine keeps going");

    let cloud_decision = f
        .store
        .latest_decision(&cloud.id, "cloud")
        .await
        .expect("read")
        .expect("decided");
    assert!(cloud_decision.passed, "{cloud_decision:?}");
    assert_eq!(f.store.releases("cloud").await.expect("releases").len(), 1);

    let edge_decision = f
        .store
        .latest_decision(&edge.id, "edge")
        .await
        .expect("read")
        .expect("decided");
    assert!(!edge_decision.passed);
    assert_eq!(edge_decision.unsatisfied[0].kind, UnsatisfiedKind::Error);
    let detail = &edge_decision.unsatisfied[0].detail;
    assert!(detail.contains("edge.toml:4:13"), "{detail}");
    assert!(detail.contains("require[0].min-count"), "{detail}");
    assert!(f.store.releases("edge").await.expect("releases").is_empty());

    std::fs::write(f.dir.path().join("policies/edge.toml"), GOOD_POLICY).expect("fix");
    let decision = f.engine.decide("edge", &edge.id).await.expect("decide");
    assert!(decision.passed, "{decision:?}");
}

#[tokio::test]
async fn a_decision_as_of_a_past_time_ignores_what_came_later() {
    let f = fixture();
    let compose = built(f.store.as_ref(), "cloud").await;
    let now = SystemClock.now();
    let first = now - SignedDuration::from_mins(40);
    let second = now - SignedDuration::from_mins(20);
    record(
        f.store.as_ref(),
        &compose,
        &[
            ("boot.multi-user", Outcome::Passed),
            ("sshd.active", Outcome::Error),
        ],
        first,
    )
    .await;
    record(
        f.store.as_ref(),
        &compose,
        &[("sshd.active", Outcome::Passed)],
        second,
    )
    .await;
    let seq = last_seq(f.store.as_ref()).await;

    let now_decision = f
        .engine
        .decision_at("cloud", &compose.id, now)
        .await
        .expect("decide");
    assert!(now_decision.passed, "{now_decision:?}");
    let then = f
        .engine
        .decision_at("cloud", &compose.id, first + SignedDuration::from_mins(1))
        .await
        .expect("decide");
    assert!(!then.passed);
    assert_eq!(
        then.unsatisfied[0].kind,
        UnsatisfiedKind::NotPassed(Outcome::Error)
    );
    let before_build = f
        .engine
        .decision_at(
            "cloud",
            &compose.id,
            compose.created_at - SignedDuration::from_mins(1),
        )
        .await
        .expect("decide");
    assert_eq!(
        before_build.unsatisfied[0].kind,
        UnsatisfiedKind::ComposeRunning
    );
    assert_eq!(
        last_seq(f.store.as_ref()).await,
        seq,
        "a past decision is not recorded"
    );
}
