//! The SQLite store against the `Store` contract.

use std::collections::HashSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use slipway_model::{
    sha256_hex, topics, Artifact, ArtifactKind, Attempt, CandidateCompose, ComposeId, ComposeState,
    Decision, Event, InputHash, Lock, LockedPackage, NewWaiver, Outcome, OutputFormat,
    PackageChange, PkgDiff, Release, ReleaseState, RunId, TestResult, TestRun, Unsatisfied,
    UnsatisfiedKind, Verdict, Version,
};
use slipway_store::{JobOutcome, NewJob, RevocationAction, SqliteStore, Store, StoreError};

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn store() -> SqliteStore {
    SqliteStore::open_in_memory().expect("in-memory store")
}

fn image(name: &str, content: &[u8]) -> Artifact {
    Artifact {
        kind: ArtifactKind::Image(OutputFormat::Qcow2),
        file_name: name.to_string(),
        sha256: sha256_hex(content),
        size: content.len() as u64,
    }
}

fn lock() -> Lock {
    Lock::new(vec![LockedPackage {
        name: "bash".into(),
        version: "5.2".into(),
        architecture: "amd64".into(),
        sha256: None,
        source: None,
        suite: None,
    }])
}

fn input_hash() -> InputHash {
    InputHash::compute(&sha256_hex(b"recipe"), Some(&lock().hash()), "test")
}

async fn all_events(store: &SqliteStore) -> Vec<Event> {
    store.events_after(0, usize::MAX).await.expect("events")
}

async fn topics_after(store: &SqliteStore, after: i64) -> Vec<String> {
    store
        .events_after(after, usize::MAX)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.topic)
        .collect()
}

async fn last_seq(store: &SqliteStore) -> i64 {
    all_events(store).await.last().map_or(0, |e| e.seq)
}

/// A complete compose of `recipe` in stream `s`.
async fn complete(store: &SqliteStore, recipe: &str, at: Timestamp) -> ComposeId {
    let c = store
        .create_compose("s", recipe, &sha256_hex(recipe.as_bytes()), at)
        .await
        .expect("create");
    store
        .complete_compose(&c.id, &input_hash(), &lock(), &PkgDiff::default(), &[], at)
        .await
        .expect("complete");
    c.id
}

/// A test run of `compose` at `at`, with a fresh id.
fn run(compose: &ComposeId, at: Timestamp) -> TestRun {
    TestRun {
        id: RunId::fresh(),
        compose: compose.clone(),
        plan: "default".into(),
        artifact: "x.qcow2".into(),
        description: format!("{compose} x.qcow2"),
        started_at: at,
        finished_at: at,
    }
}

/// A result as recorded, less what the store assigns (its id and run), for comparing with what was given.
fn bare(result: &TestResult) -> TestResult {
    TestResult {
        id: None,
        run: None,
        ..result.clone()
    }
}

fn result(compose: &ComposeId, testcase: &str, outcome: Outcome, at: Timestamp) -> TestResult {
    TestResult {
        artifact: "x.qcow2".into(),
        ..TestResult::new(compose.clone(), testcase, outcome, "", at)
    }
}

fn decision(compose: &ComposeId, passed: bool, summary: &str) -> Decision {
    Decision {
        compose: compose.clone(),
        stream: "s".into(),
        passed,
        summary: summary.into(),
        unsatisfied: if passed {
            Vec::new()
        } else {
            vec![Unsatisfied {
                subject: "boot".into(),
                scenario: None,
                kind: UnsatisfiedKind::Missing,
                detail: "no result".into(),
                results: Vec::new(),
            }]
        },
        satisfied: Vec::new(),
        results_used: Vec::new(),
        waivers_used: Vec::new(),
        not_applicable: Vec::new(),
        at: None,
    }
}

fn job(key: &str) -> NewJob {
    NewJob {
        kind: "test".into(),
        key: key.into(),
        payload: json!({ "key": key }),
    }
}

// ----- composes -----

#[tokio::test]
async fn compose_ids_count_up_per_recipe_and_utc_day() {
    let s = store();
    let day1 = t("2026-11-21T10:00:00Z");
    let mut ids = Vec::new();
    for (recipe, at) in [
        ("cloud", day1),
        ("cloud", day1),
        ("cloud", t("2026-11-21T23:59:59Z")),
        ("vm", day1),
        ("cloud", t("2026-11-22T00:00:00Z")),
    ] {
        let c = s
            .create_compose("stream", recipe, &sha256_hex(b"r"), at)
            .await
            .expect("create");
        assert_eq!(c.state, ComposeState::Running);
        ids.push(c.id.0);
    }
    assert_eq!(
        ids,
        [
            "cloud-20261121.0",
            "cloud-20261121.1",
            "cloud-20261121.2",
            "vm-20261121.0",
            "cloud-20261122.0"
        ]
    );
    let events = all_events(&s).await;
    assert_eq!(events.len(), 5);
    assert!(events
        .iter()
        .all(|e| e.topic == topics::COMPOSE_STARTED && e.schema == "slipway.compose.started.v1"));
    assert_eq!(events[3].body["compose"], "vm-20261121.0");
    assert_eq!(events[3].body["stream"], "stream");
    assert_eq!(events[3].body["recipe"], "vm");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
}

fn diff() -> PkgDiff {
    PkgDiff {
        previous: Some(ComposeId("cloud-20261120.0".into())),
        upgraded: vec![PackageChange {
            name: "libssl3".into(),
            architecture: "amd64".into(),
            source: "openssl".into(),
            old_version: "3.0.11-1~deb12u2".into(),
            new_version: "3.0.15-1~deb12u1".into(),
            suite: Some("bookworm-security".into()),
            security: true,
        }],
        ..PkgDiff::default()
    }
}

#[tokio::test]
async fn state_records_are_replaced_and_listed_by_prefix_with_their_event() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    assert_eq!(s.state("source:a").await.expect("read"), None);
    s.set_state("source:a", &serde_json::json!({"digest": "1"}), None, at)
        .await
        .expect("set");
    let body = serde_json::json!({"source": "a"});
    s.set_state(
        "source:a",
        &serde_json::json!({"digest": "2"}),
        Some(("repo.changed", &body)),
        at,
    )
    .await
    .expect("set again");
    s.set_state("source:b", &serde_json::json!({"digest": "3"}), None, at)
        .await
        .expect("set b");
    s.set_state("recipe:x", &serde_json::json!(1), None, at)
        .await
        .expect("set recipe");
    assert_eq!(
        s.state("source:a").await.expect("read"),
        Some(serde_json::json!({"digest": "2"}))
    );
    let listed = s.states("source:").await.expect("list");
    assert_eq!(
        listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["source:a", "source:b"]
    );
    // Keys next to a prefix in key order, on both sides, and prefixes ending in the highest characters.
    for key in [
        "source",
        "source9",
        "source;",
        "source:",
        "source:\u{10FFFF}",
        "source:\u{10FFFF}x",
        "source:\u{D7FF}",
        "source:\u{E000}",
        "sourcf",
        "\u{10FFFF}",
        "\u{10FFFF}\u{10FFFF}z",
    ] {
        s.set_state(key, &serde_json::json!(0), None, at)
            .await
            .expect("set");
    }
    let keys = |prefix: &'static str| {
        let s = &s;
        async move {
            s.states(prefix)
                .await
                .expect("list")
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        keys("source:").await,
        [
            "source:",
            "source:a",
            "source:b",
            "source:\u{D7FF}",
            "source:\u{E000}",
            "source:\u{10FFFF}",
            "source:\u{10FFFF}x"
        ]
    );
    assert_eq!(
        keys("source:\u{10FFFF}").await,
        ["source:\u{10FFFF}", "source:\u{10FFFF}x"]
    );
    assert_eq!(keys("source:\u{D7FF}").await, ["source:\u{D7FF}"]);
    assert_eq!(
        keys("\u{10FFFF}").await,
        ["\u{10FFFF}", "\u{10FFFF}\u{10FFFF}z"]
    );
    assert_eq!(
        keys("").await.len(),
        14,
        "an empty prefix lists every record"
    );
    s.append_event("compose.skipped", &serde_json::json!({"recipe": "x"}), at)
        .await
        .expect("append");
    let events = all_events(&s).await;
    let topics: Vec<_> = events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, ["repo.changed", "compose.skipped"]);
    assert_eq!(events[0].body, body);
}

#[tokio::test]
async fn completing_a_compose_stores_lock_artifacts_and_announces_them() {
    let s = store();
    let at = t("2026-11-21T10:00:00.123456789Z");
    let created = s
        .create_compose("bookworm-cloud", "cloud", &sha256_hex(b"r"), at)
        .await
        .expect("create");
    // Timestamps are kept to the microsecond, and what `create_compose` returns is what a read returns.
    assert_eq!(
        s.compose(&created.id).await.expect("read"),
        Some(created.clone())
    );

    let artifacts = [image("b.qcow2", b"b"), image("a.qcow2", b"a")];
    let done = t("2026-11-21T11:00:00Z");
    s.complete_compose(
        &created.id,
        &input_hash(),
        &lock(),
        &diff(),
        &artifacts,
        done,
    )
    .await
    .expect("complete");
    let c = s.compose(&created.id).await.expect("read").expect("exists");
    assert_eq!(c.state, ComposeState::Complete);
    assert_eq!(c.input_hash, Some(input_hash()));
    assert_eq!(c.lock, Some(lock()));
    assert_eq!(c.pkgdiff, Some(diff()));
    assert_eq!(c.finished_at, Some(done));
    assert_eq!(c.artifacts, artifacts, "artifacts keep the order given");

    let events = all_events(&s).await;
    let complete = &events[1];
    assert_eq!(complete.topic, topics::COMPOSE_COMPLETE);
    assert_eq!(complete.time, done);
    assert_eq!(complete.body["compose"], created.id.as_str());
    assert_eq!(complete.body["stream"], "bookworm-cloud");
    assert_eq!(complete.body["recipe"], "cloud");
    assert_eq!(complete.body["input_hash"], input_hash().0.as_str());
    assert_eq!(
        complete.body["security_upgrades"],
        serde_json::json!(["libssl3"])
    );
    let announced: Vec<Artifact> =
        serde_json::from_value(complete.body["artifacts"].clone()).expect("artifacts");
    assert_eq!(announced, artifacts);

    // Artifacts made later are appended; adding the same one again does nothing.
    let log = Artifact {
        kind: ArtifactKind::SerialLog,
        file_name: "serial.log".into(),
        sha256: sha256_hex(b"log"),
        size: 3,
    };
    s.add_artifact(&c.id, &log).await.expect("add");
    s.add_artifact(&c.id, &log).await.expect("add again");
    let other = Artifact {
        sha256: sha256_hex(b"other"),
        ..log.clone()
    };
    assert!(matches!(
        s.add_artifact(&c.id, &other).await,
        Err(StoreError::Conflict(_))
    ));
    let c = s.compose(&created.id).await.expect("read").expect("exists");
    assert_eq!(c.artifacts.len(), 3);
    assert_eq!(c.artifact(ArtifactKind::SerialLog), Some(&log));
    assert!(matches!(
        s.add_artifact(&ComposeId("nope-20261121.0".into()), &log)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(all_events(&s).await.len(), 2, "artifacts emit nothing");
}

#[tokio::test]
async fn only_running_composes_can_complete_or_fail() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = s
        .create_compose("s", "cloud", &sha256_hex(b"r"), at)
        .await
        .expect("create");
    s.fail_compose(&c.id, "mmdebstrap exited 1: no space left", at)
        .await
        .expect("fail");
    let failed = s.compose(&c.id).await.expect("read").expect("exists");
    assert_eq!(
        failed.state,
        ComposeState::Failed {
            reason: "mmdebstrap exited 1: no space left".into()
        }
    );
    assert_eq!(failed.finished_at, Some(at));
    let seq = last_seq(&s).await;

    let completed = s
        .complete_compose(
            &c.id,
            &input_hash(),
            &lock(),
            &PkgDiff::default(),
            &[image("a", b"a")],
            at,
        )
        .await;
    assert!(
        matches!(&completed, Err(StoreError::Conflict(m)) if m.contains("failed")),
        "{completed:?}"
    );
    assert!(matches!(
        s.fail_compose(&c.id, "again", at).await,
        Err(StoreError::Conflict(_))
    ));
    // Nothing of the refused changes is left behind.
    assert_eq!(s.compose(&c.id).await.expect("read"), Some(failed));
    assert!(topics_after(&s, seq).await.is_empty());

    let missing = ComposeId("cloud-19990101.0".into());
    assert!(matches!(
        s.complete_compose(
            &missing,
            &input_hash(),
            &lock(),
            &PkgDiff::default(),
            &[],
            at
        )
        .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.compose(&missing).await.expect("read"), None);

    let events = all_events(&s).await;
    assert_eq!(events[1].topic, topics::COMPOSE_FAILED);
    assert_eq!(
        events[1].body["reason"],
        "mmdebstrap exited 1: no space left"
    );

    // And a complete compose cannot fail afterwards.
    let done = complete(&s, "vm", at).await;
    assert!(matches!(
        s.fail_compose(&done, "late", at).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn composes_are_listed_newest_first() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    for (stream, minutes) in [("a", 0), ("b", 1), ("a", 2), ("a", 2)] {
        s.create_compose(
            stream,
            "cloud",
            &sha256_hex(b"r"),
            at + SignedDuration::from_mins(minutes),
        )
        .await
        .expect("create");
    }
    let ids = |v: Vec<slipway_model::Compose>| v.into_iter().map(|c| c.id.0).collect::<Vec<_>>();
    assert_eq!(
        ids(s.composes(None, 10).await.expect("list")),
        [
            "cloud-20261121.3",
            "cloud-20261121.2",
            "cloud-20261121.1",
            "cloud-20261121.0"
        ]
    );
    assert_eq!(
        ids(s.composes(Some("a"), 2).await.expect("list")),
        ["cloud-20261121.3", "cloud-20261121.2"]
    );
    assert!(s.composes(Some("c"), 10).await.expect("list").is_empty());
}

// ----- test results -----

#[tokio::test]
async fn test_runs_are_recorded_and_the_latest_result_per_testcase_wins() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    let seq = last_seq(&s).await;
    let first = [
        result(
            &c,
            "boot.multi-user",
            Outcome::Failed,
            t("2026-11-21T11:00:00Z"),
        ),
        result(&c, "boot.ssh", Outcome::Passed, t("2026-11-21T11:00:00Z")),
    ];
    s.record_test_run(
        &run(&c, t("2026-11-21T11:00:00Z")),
        &first,
        t("2026-11-21T11:00:01Z"),
    )
    .await
    .expect("record");
    let events = s.events_after(seq, 10).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>(),
        [
            topics::TEST_RESULT,
            topics::TEST_RESULT,
            topics::TEST_COMPLETE
        ]
    );
    let announced: TestResult = serde_json::from_value(events[0].body.clone()).expect("result");
    assert_eq!(bare(&announced), first[0]);
    assert!(announced.id.is_some() && announced.run.is_some());
    assert_eq!(events[2].body["compose"], c.as_str());
    assert_eq!(events[2].body["results"], 2);

    let rerun = [result(
        &c,
        "boot.multi-user",
        Outcome::Passed,
        t("2026-11-21T12:00:00Z"),
    )];
    s.record_test_run(
        &run(&c, t("2026-11-21T12:00:00Z")),
        &rerun,
        t("2026-11-21T12:00:00Z"),
    )
    .await
    .expect("record");

    let latest = s
        .latest_results(&c, t("2026-11-21T13:00:00Z"))
        .await
        .expect("latest");
    assert_eq!(
        latest.iter().map(bare).collect::<Vec<_>>(),
        vec![rerun[0].clone(), first[1].clone()]
    );
    // As of before the re-run, the failure was the latest.
    let before = s
        .latest_results(&c, t("2026-11-21T11:30:00Z"))
        .await
        .expect("latest");
    assert_eq!(before.iter().map(bare).collect::<Vec<_>>(), first.to_vec());
    // Results submitted exactly at `at` count.
    let exactly = s
        .latest_results(&c, t("2026-11-21T12:00:00Z"))
        .await
        .expect("latest");
    assert_eq!(exactly[0].outcome, Outcome::Passed);
    assert!(s
        .latest_results(&c, t("2026-11-21T10:59:59Z"))
        .await
        .expect("latest")
        .is_empty());

    // Two results of one testcase at the same instant: the one recorded later wins.
    let same_time = t("2026-11-21T14:00:00Z");
    s.record_test_run(
        &run(&c, same_time),
        &[
            result(&c, "boot.ssh", Outcome::Error, same_time),
            result(&c, "boot.ssh", Outcome::Passed, same_time),
        ],
        same_time,
    )
    .await
    .expect("record");
    let latest = s.latest_results(&c, same_time).await.expect("latest");
    assert_eq!(latest[1].outcome, Outcome::Passed);
}

#[tokio::test]
async fn test_results_must_belong_to_the_compose_of_the_run() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let a = complete(&s, "cloud", at).await;
    let b = complete(&s, "vm", at).await;
    let seq = last_seq(&s).await;
    let mixed = [
        result(&a, "boot", Outcome::Passed, at),
        result(&b, "boot", Outcome::Passed, at),
    ];
    assert!(matches!(
        s.record_test_run(&run(&a, at), &mixed, at).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.latest_results(&a, at).await.expect("latest").is_empty());
    assert!(topics_after(&s, seq).await.is_empty());
    let missing = ComposeId("x-20261121.0".into());
    assert!(matches!(
        s.record_test_run(&run(&missing, at), &[], at).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_run_in_flight_shows_queued_then_running_then_its_final_results() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    let seq = last_seq(&s).await;
    let started = run(&c, at);
    let queued = [
        result(&c, "boot", Outcome::Queued, at),
        result(&c, "ssh", Outcome::Queued, at),
    ];
    s.start_test_run(&started, &queued, at)
        .await
        .expect("start");
    assert_eq!(
        topics_after(&s, seq).await,
        [topics::TEST_RESULT, topics::TEST_RESULT],
        "a started run announces its queued results but is not complete"
    );
    let latest = |s: SqliteStore, when: Timestamp| {
        let c = c.clone();
        async move {
            s.latest_results(&c, when)
                .await
                .expect("latest")
                .into_iter()
                .map(|r| (r.testcase, r.outcome))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        latest(s.clone(), at).await,
        [
            ("boot".to_string(), Outcome::Queued),
            ("ssh".to_string(), Outcome::Queued)
        ]
    );

    let later = t("2026-11-21T10:01:00Z");
    s.add_test_results(
        &started.id,
        &[result(&c, "boot", Outcome::Running, later)],
        later,
    )
    .await
    .expect("running");
    assert_eq!(
        latest(s.clone(), later).await,
        [
            ("boot".to_string(), Outcome::Running),
            ("ssh".to_string(), Outcome::Queued)
        ]
    );
    assert!(matches!(
        s.add_test_results(&RunId::fresh(), &[], later).await,
        Err(StoreError::NotFound(_))
    ));

    let end = t("2026-11-21T10:05:00Z");
    let finished = TestRun {
        description: "done".into(),
        finished_at: end,
        ..started.clone()
    };
    let seq = last_seq(&s).await;
    s.finish_test_run(
        &finished,
        &[
            result(&c, "boot", Outcome::Passed, end),
            result(&c, "ssh", Outcome::Failed, end),
        ],
        end,
    )
    .await
    .expect("finish");
    let events = s.events_after(seq, 10).await.expect("events");
    assert_eq!(
        events.last().map(|e| e.topic.as_str()),
        Some(topics::TEST_COMPLETE)
    );
    assert_eq!(
        events.last().map(|e| e.body["results"].clone()),
        Some(json!(5))
    );
    assert_eq!(
        latest(s.clone(), end).await,
        [
            ("boot".to_string(), Outcome::Passed),
            ("ssh".to_string(), Outcome::Failed)
        ]
    );
    // As of before the end, the run is still seen in flight.
    assert_eq!(
        latest(s.clone(), later).await,
        [
            ("boot".to_string(), Outcome::Running),
            ("ssh".to_string(), Outcome::Queued)
        ]
    );
    let (stored, results) = s
        .test_run(&started.id)
        .await
        .expect("read")
        .expect("the run exists");
    assert_eq!(stored, finished);
    assert_eq!(
        results.len(),
        5,
        "every state a result passed through is kept"
    );
    assert!(matches!(
        s.finish_test_run(&finished, &[], end).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_test_run_keeps_its_results_attempts_and_item_data() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    let test_run = run(&c, at);
    let flaky = TestResult {
        scenario: "qcow2.x86_64.uefi".into(),
        format: "qcow2".into(),
        arch: "x86_64".into(),
        stream: "s".into(),
        flaky: true,
        attempts: vec![
            Attempt {
                outcome: Outcome::Failed,
                seconds: 1.25,
                output: Some(sha256_hex(b"first")),
                truncated: false,
            },
            Attempt {
                outcome: Outcome::Passed,
                seconds: 0.5,
                output: None,
                truncated: true,
            },
        ],
        ..result(&c, "flaky", Outcome::Passed, at)
    };
    let plain = result(&c, "plain", Outcome::Failed, at);
    let ids = s
        .record_test_run(&test_run, &[flaky.clone(), plain.clone()], at)
        .await
        .expect("record");
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);

    let (stored_run, results) = s
        .test_run(&test_run.id)
        .await
        .expect("read")
        .expect("the run exists");
    assert_eq!(stored_run, test_run);
    assert_eq!(results.iter().map(bare).collect::<Vec<_>>(), [flaky, plain]);
    assert_eq!(results[0].id, Some(ids[0]));
    assert_eq!(results[1].run.as_ref(), Some(&test_run.id));
    assert_eq!(
        s.test_runs(&c).await.expect("runs"),
        std::slice::from_ref(&test_run)
    );
    assert!(s.test_run(&RunId::fresh()).await.expect("read").is_none());

    // Recording the same run twice is refused and adds nothing.
    let seq = last_seq(&s).await;
    assert!(matches!(
        s.record_test_run(&test_run, &[result(&c, "again", Outcome::Passed, at)], at)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(topics_after(&s, seq).await.is_empty());
    assert_eq!(
        s.test_run(&test_run.id)
            .await
            .expect("read")
            .expect("run")
            .1
            .len(),
        2
    );
}

// ----- verdicts and decisions -----

#[tokio::test]
async fn verdicts_are_kept_oldest_first() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    let veto = Verdict {
        compose: c.clone(),
        failed: true,
        author: "alice".into(),
        reason: "broken networking".into(),
        created_at: t("2026-11-21T12:00:00Z"),
    };
    let withdraw = Verdict {
        failed: false,
        reason: "fixed upstream".into(),
        created_at: t("2026-11-21T13:00:00Z"),
        ..veto.clone()
    };
    s.add_verdict(&withdraw).await.expect("verdict");
    s.add_verdict(&veto).await.expect("verdict");
    assert_eq!(
        s.verdicts(&c).await.expect("verdicts"),
        vec![veto.clone(), withdraw.clone()]
    );
    let events = all_events(&s).await;
    let last = events.last().expect("event");
    assert_eq!(last.topic, topics::COMPOSE_VERDICT);
    assert_eq!(
        serde_json::from_value::<Verdict>(last.body.clone()).expect("verdict"),
        veto
    );
    let missing = Verdict {
        compose: ComposeId("x-20261121.0".into()),
        ..veto
    };
    assert!(matches!(
        s.add_verdict(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s
        .verdicts(&missing.compose)
        .await
        .expect("verdicts")
        .is_empty());
}

#[tokio::test]
async fn decisions_are_recorded_only_when_the_answer_changes() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    assert_eq!(s.latest_decision(&c, "s").await.expect("latest"), None);
    let seq = last_seq(&s).await;

    let failing = decision(&c, false, "boot: no result");
    assert!(s.record_decision(&failing, at).await.expect("record"));
    // Same answer in other words: nothing to announce.
    let reworded = decision(&c, false, "still waiting for boot");
    assert!(!s.record_decision(&reworded, at).await.expect("record"));
    assert_eq!(
        s.latest_decision(&c, "s").await.expect("latest"),
        Some(failing.clone())
    );
    let passing = decision(&c, true, "all passed");
    assert!(s.record_decision(&passing, at).await.expect("record"));
    assert_eq!(
        s.latest_decision(&c, "s").await.expect("latest"),
        Some(passing.clone())
    );

    let events = s.events_after(seq, 10).await.expect("events");
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.topic == topics::DECISION_CHANGED));
    assert_eq!(
        events[0].body,
        json!({ "decision": failing, "previous": null })
    );
    assert_eq!(
        events[1].body,
        json!({ "decision": passing, "previous": failing })
    );

    // Streams decide independently.
    let other_stream = Decision {
        stream: "other".into(),
        ..passing.clone()
    };
    assert!(s.record_decision(&other_stream, at).await.expect("record"));
    assert_eq!(
        s.latest_decision(&c, "s").await.expect("latest"),
        Some(passing)
    );
    let missing = decision(&ComposeId("x-20261121.0".into()), true, "");
    assert!(matches!(
        s.record_decision(&missing, at).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn candidate_composes_come_newest_first_with_their_latest_decision_in_the_stream() {
    let s = store();
    let old = complete(&s, "cloud", t("2026-11-19T10:00:00Z")).await;
    let undecided = complete(&s, "cloud", t("2026-11-20T10:00:00Z")).await;
    let newest = complete(&s, "cloud", t("2026-11-21T10:00:00Z")).await;
    let at = t("2026-11-21T12:00:00Z");
    s.record_decision(&decision(&old, true, "passed"), at)
        .await
        .expect("record");
    s.record_decision(&decision(&newest, false, "boot failed"), at)
        .await
        .expect("record");
    let passing = decision(&newest, true, "waived");
    s.record_decision(&passing, at).await.expect("record");
    // Another stream's decision on the same compose is not this stream's.
    let elsewhere = Decision {
        stream: "other".into(),
        ..decision(&undecided, true, "passed there")
    };
    s.record_decision(&elsewhere, at).await.expect("record");

    let failed = s
        .create_compose(
            "s",
            "cloud",
            &sha256_hex(b"cloud"),
            t("2026-11-18T10:00:00Z"),
        )
        .await
        .expect("create");
    s.fail_compose(&failed.id, "broken", at)
        .await
        .expect("fail");

    let window = s.candidate_composes("s", 2).await.expect("window");
    let ids: Vec<&ComposeId> = window.iter().map(|c| &c.id).collect();
    assert_eq!(
        ids,
        [&newest, &undecided],
        "newest first, at most the limit"
    );
    assert_eq!(window[0].passed, Some(true), "the latest decision counts");
    assert_eq!(
        window[1].passed, None,
        "another stream's decision is not this stream's"
    );
    let listed = s.composes(Some("s"), 5).await.expect("composes");
    let whole = s.candidate_composes("s", 5).await.expect("window");
    let decisions = [Some(true), None, Some(true), None];
    assert_eq!(
        whole,
        listed
            .iter()
            .zip(decisions)
            .map(|(c, passed)| CandidateCompose {
                passed,
                ..CandidateCompose::of(c, None)
            })
            .collect::<Vec<_>>(),
        "the same composes as a listing, in its order, with when they started and their state"
    );
    assert_eq!(
        whole[3].state,
        ComposeState::Failed {
            reason: "broken".into()
        }
    );
    assert!(s
        .candidate_composes("nothing", 5)
        .await
        .expect("empty")
        .is_empty());
}

// ----- waivers and decision history -----

fn new_waiver(
    compose: &ComposeId,
    testcase: &str,
    scenario: Option<&str>,
    at: Timestamp,
) -> NewWaiver {
    NewWaiver {
        compose: compose.clone(),
        testcase: testcase.into(),
        scenario: scenario.map(str::to_string),
        author: "bob".into(),
        comment: "known flaky mirror".into(),
        created_at: at,
    }
}

#[tokio::test]
async fn waivers_get_ids_events_and_are_revoked_without_being_deleted() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    let other = complete(&s, "cloud", at).await;
    let seq = last_seq(&s).await;

    let first = s
        .add_waiver(&new_waiver(&c, "sshd.active", None, at))
        .await
        .expect("waive");
    let second = s
        .add_waiver(&new_waiver(&c, "boot", Some("qcow2.uefi"), at))
        .await
        .expect("waive");
    let third = s
        .add_waiver(&new_waiver(&other, "boot", None, at))
        .await
        .expect("waive");
    assert_ne!(first.id, second.id);
    assert_eq!(first.testcase, "sshd.active");
    assert_eq!(second.scenario.as_deref(), Some("qcow2.uefi"));
    assert_eq!(first.revoked, None);

    let later = t("2026-11-21T11:00:00Z");
    let revoked = s
        .revoke_waiver(first.id, "carol", "fixed upstream", later)
        .await
        .expect("revoke");
    let revocation = revoked.revoked.clone().expect("revoked");
    assert_eq!(revocation.author, "carol");
    assert_eq!(revocation.reason, "fixed upstream");
    assert_eq!(revocation.at, later);
    assert!(matches!(
        s.revoke_waiver(first.id, "carol", "", later).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.revoke_waiver(9999, "carol", "", later).await,
        Err(StoreError::NotFound(_))
    ));

    // The revoked waiver is still there, and listing is per compose or for all.
    assert_eq!(
        s.waivers(Some(&c)).await.expect("list"),
        vec![revoked.clone(), second.clone()]
    );
    assert_eq!(s.waivers(None).await.expect("list").len(), 3);
    assert_eq!(s.waiver(third.id).await.expect("one"), Some(third.clone()));
    assert_eq!(s.waiver(9999).await.expect("none"), None);

    let events = s.events_after(seq, 10).await.expect("events");
    let topics: Vec<_> = events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(
        topics,
        vec![
            topics::WAIVER_CREATED,
            topics::WAIVER_CREATED,
            topics::WAIVER_CREATED,
            topics::WAIVER_REVOKED
        ]
    );
    assert_eq!(events[0].body, serde_json::to_value(&first).expect("json"));
    assert_eq!(
        events[3].body,
        serde_json::to_value(&revoked).expect("json")
    );

    assert!(matches!(
        s.add_waiver(&new_waiver(
            &ComposeId("x-20261121.0".into()),
            "boot",
            None,
            at
        ))
        .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn decision_history_keeps_each_change_in_order() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    let failing = decision(&c, false, "waiting");
    let passing = decision(&c, true, "passed");
    s.record_decision(&failing, at).await.expect("record");
    s.record_decision(&failing, t("2026-11-21T10:30:00Z"))
        .await
        .expect("same answer, not stored");
    s.record_decision(&passing, t("2026-11-21T11:00:00Z"))
        .await
        .expect("record");
    s.record_decision(&failing, t("2026-11-21T12:00:00Z"))
        .await
        .expect("record");
    let history = s.decisions(&c, "s").await.expect("history");
    let answers: Vec<(Timestamp, bool)> = history.iter().map(|(at, d)| (*at, d.passed)).collect();
    assert_eq!(
        answers,
        vec![
            (at, false),
            (t("2026-11-21T11:00:00Z"), true),
            (t("2026-11-21T12:00:00Z"), false)
        ]
    );
    assert!(s.decisions(&c, "other").await.expect("history").is_empty());
}

#[tokio::test]
async fn results_lists_every_result_up_to_a_time() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    let later = t("2026-11-21T12:00:00Z");
    s.record_test_run(
        &run(&c, at),
        &[
            result(&c, "boot", Outcome::Failed, at),
            result(&c, "boot", Outcome::Passed, at),
        ],
        at,
    )
    .await
    .expect("run");
    s.record_test_run(
        &run(&c, later),
        &[result(&c, "boot", Outcome::Passed, later)],
        later,
    )
    .await
    .expect("run");
    let all = s.results(&c, later).await.expect("results");
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let early = s.results(&c, at).await.expect("results");
    assert_eq!(
        early.iter().map(|r| r.outcome).collect::<Vec<_>>(),
        vec![Outcome::Failed, Outcome::Passed]
    );
}

// ----- releases -----

#[tokio::test]
async fn releases_get_day_versions_once_per_compose_and_supersede_on_publish() {
    let s = store();
    let day = t("2026-11-21T10:00:00Z");
    let a = complete(&s, "cloud", day).await;
    let b = complete(&s, "cloud", day).await;
    let c = complete(&s, "cloud", day).await;
    let seq = last_seq(&s).await;

    let ra = s.create_release("s", &a, day).await.expect("release");
    assert_eq!(ra.version.to_string(), "20261121.0");
    assert_eq!(ra.state, ReleaseState::Pending);
    assert_eq!(ra.compose, a);
    let again = s
        .create_release("s", &a, day + SignedDuration::from_hours(1))
        .await
        .expect("release");
    assert_eq!(again, ra, "a compose is released once per stream");
    let rb = s
        .create_release("s", &b, t("2026-11-21T18:00:00Z"))
        .await
        .expect("release");
    assert_eq!(rb.version.to_string(), "20261121.1");
    let rc = s
        .create_release("s", &c, t("2026-11-22T00:00:01Z"))
        .await
        .expect("release");
    assert_eq!(rc.version.to_string(), "20261122.0");
    // Another stream counts on its own and may release the same compose.
    let other = s.create_release("other", &a, day).await.expect("release");
    assert_eq!(other.version.to_string(), "20261121.0");

    let events = s.events_after(seq, 10).await.expect("events");
    assert_eq!(events.len(), 4, "the repeated create emits nothing");
    assert!(events.iter().all(|e| e.topic == topics::RELEASE_CREATED));
    assert_eq!(events[0].body["stream"], "s");
    assert_eq!(events[0].body["version"], "20261121.0");
    assert_eq!(events[0].body["compose"], a.as_str());

    let published_at = t("2026-11-22T01:00:00Z");
    let seq = last_seq(&s).await;
    s.mark_release_published("s", &ra.version, published_at)
        .await
        .expect("publish");
    s.mark_release_published("s", &ra.version, t("2026-11-23T00:00:00Z"))
        .await
        .expect("publish again");
    let events = s.events_after(seq, 10).await.expect("events");
    assert_eq!(events.len(), 1, "publishing again emits nothing");
    assert_eq!(events[0].topic, topics::RELEASE_PUBLISHED);
    assert_eq!(events[0].body["version"], "20261121.0");
    assert_eq!(events[0].body["compose"], a.as_str());
    assert_eq!(events[0].body["state"], "published");
    assert_eq!(events[0].body["superseded"], json!([]));

    s.mark_release_published("s", &rb.version, published_at)
        .await
        .expect("publish");
    let events = s.events_after(seq, 10).await.expect("events");
    assert_eq!(events[1].body["superseded"], json!(["20261121.0"]));

    let releases = s.releases("s").await.expect("releases");
    assert_eq!(
        releases
            .iter()
            .map(|r| (r.version.to_string(), r.state))
            .collect::<Vec<_>>(),
        [
            ("20261122.0".to_string(), ReleaseState::Pending),
            ("20261121.1".to_string(), ReleaseState::Published),
            ("20261121.0".to_string(), ReleaseState::Superseded),
        ]
    );
    assert_eq!(releases[1].published_at, Some(published_at));
    assert_eq!(releases[2].published_at, Some(published_at));
    assert_eq!(releases[0].published_at, None);
    // The other stream was not touched.
    assert_eq!(
        s.releases("other").await.expect("releases")[0].state,
        ReleaseState::Pending
    );

    // Republishing a superseded release changes nothing.
    s.mark_release_published("s", &ra.version, published_at)
        .await
        .expect("publish");
    assert_eq!(s.releases("s").await.expect("releases"), releases);

    let missing: Version = "20261231.0".parse().expect("version");
    assert!(matches!(
        s.mark_release_published("s", &missing, published_at).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn release_versions_sort_by_number_not_text() {
    let s = store();
    let day = t("2026-11-21T10:00:00Z");
    for _ in 0..11 {
        let c = complete(&s, "cloud", day).await;
        s.create_release("s", &c, day).await.expect("release");
    }
    let versions: Vec<String> = s
        .releases("s")
        .await
        .expect("releases")
        .into_iter()
        .map(|r| r.version.to_string())
        .collect();
    assert_eq!(versions[0], "20261121.10");
    assert_eq!(versions[1], "20261121.9");
    assert_eq!(versions[10], "20261121.0");
}

/// The stream's releases as `(version, state)`, newest first.
async fn states(s: &SqliteStore) -> Vec<(String, ReleaseState)> {
    s.releases("s")
        .await
        .expect("releases")
        .into_iter()
        .map(|r| (r.version.to_string(), r.state))
        .collect()
}

fn v(text: &str) -> Version {
    text.parse().expect("version")
}

#[tokio::test]
async fn revoking_falls_back_to_the_newest_good_release_and_unrevoking_restores_it() {
    use ReleaseState::{Pending, Published, Revoked, Superseded};
    let s = store();
    let day = t("2026-11-21T10:00:00Z");
    let mut versions = Vec::new();
    for _ in 0..3 {
        let c = complete(&s, "cloud", day).await;
        let r = s.create_release("s", &c, day).await.expect("release");
        s.mark_release_published("s", &r.version, day)
            .await
            .expect("publish");
        versions.push(r.version);
    }
    let (a, b, c) = (&versions[0], &versions[1], &versions[2]);
    let revoked_at = t("2026-11-22T08:00:00Z");

    // Revoking the published release makes the one before it current.
    let seq = last_seq(&s).await;
    let revoked = s
        .revoke_release("s", c, "boots to a black screen", "alice", revoked_at)
        .await
        .expect("revoke");
    assert_eq!(revoked.state, Revoked);
    let note = revoked.revocation.clone().expect("note");
    assert_eq!(
        (note.reason.as_str(), note.author.as_str(), note.at),
        ("boots to a black screen", "alice", revoked_at)
    );
    assert_eq!(
        states(&s).await,
        [
            (c.to_string(), Revoked),
            (b.to_string(), Published),
            (a.to_string(), Superseded)
        ]
    );
    assert_eq!(s.releases("s").await.expect("releases")[0], revoked);
    let events = s.events_after(seq, 10).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].topic, topics::RELEASE_REVOKED);
    let body = &events[0].body;
    assert_eq!(body["stream"], "s");
    assert_eq!(body["version"], c.to_string());
    assert_eq!(body["compose"], revoked.compose.as_str());
    assert_eq!(body["reason"], "boots to a black screen");
    assert_eq!(body["author"], "alice");
    assert_eq!(body["previous_state"], "published");
    assert_eq!(body["current"], b.to_string());

    // Bad input changes nothing and says what is wrong.
    let before = s.releases("s").await.expect("releases");
    let seq = last_seq(&s).await;
    let err = s
        .revoke_release("s", c, "again", "bob", revoked_at)
        .await
        .expect_err("already revoked");
    assert!(
        matches!(&err, StoreError::AlreadyRevoked { revocation, .. } if revocation.author == "alice"),
        "{err}"
    );
    assert!(err.to_string().contains("already revoked"), "{err}");
    let err = s
        .revoke_release("s", &v("20261231.0"), "x", "bob", revoked_at)
        .await
        .expect_err("unknown");
    assert!(matches!(&err, StoreError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("20261231.0"), "{err}");
    let err = s
        .revoke_release("nope", a, "x", "bob", revoked_at)
        .await
        .expect_err("unknown stream");
    assert!(matches!(&err, StoreError::NotFound(_)), "{err}");
    let err = s
        .unrevoke_release("s", b, "bob", "x", revoked_at)
        .await
        .expect_err("not revoked");
    assert!(
        matches!(
            &err,
            StoreError::NotRevoked {
                state: Published,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not revoked"), "{err}");
    assert!(matches!(
        s.unrevoke_release("s", &v("20261231.0"), "bob", "x", revoked_at)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.releases("s").await.expect("releases"), before);
    assert_eq!(last_seq(&s).await, seq, "no event for refused changes");

    // Revoking an older release leaves the current one alone.
    s.revoke_release("s", a, "bad kernel", "bob", revoked_at)
        .await
        .expect("revoke");
    assert_eq!(
        states(&s).await,
        [
            (c.to_string(), Revoked),
            (b.to_string(), Published),
            (a.to_string(), Revoked)
        ]
    );

    // Unrevoking the newest makes it current again; its revocation stays in the history.
    let unrevoked_at = t("2026-11-22T09:00:00Z");
    let seq = last_seq(&s).await;
    let back = s
        .unrevoke_release(
            "s",
            c,
            "carol",
            "the screen was the console's fault",
            unrevoked_at,
        )
        .await
        .expect("unrevoke");
    assert_eq!(back.state, Published);
    assert_eq!(back.revocation, None);
    assert_eq!(
        states(&s).await,
        [
            (c.to_string(), Published),
            (b.to_string(), Superseded),
            (a.to_string(), Revoked)
        ]
    );
    let events = s.events_after(seq, 10).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].topic, topics::RELEASE_UNREVOKED);
    assert_eq!(events[0].body["version"], c.to_string());
    assert_eq!(events[0].body["author"], "carol");
    assert_eq!(
        events[0].body["reason"],
        "the screen was the console's fault"
    );
    assert_eq!(events[0].body["state"], "published");
    assert_eq!(events[0].body["current"], c.to_string());
    let history = s.revocation_history("s", c).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|h| (h.action, h.author.as_str(), h.at))
            .collect::<Vec<_>>(),
        [
            (RevocationAction::Revoked, "alice", revoked_at),
            (RevocationAction::Unrevoked, "carol", unrevoked_at)
        ]
    );
    assert_eq!(history[0].reason, "boots to a black screen");
    assert!(s
        .revocation_history("s", b)
        .await
        .expect("history")
        .is_empty());
    assert!(matches!(
        s.revocation_history("s", &v("20261231.0")).await,
        Err(StoreError::NotFound(_))
    ));

    // Unrevoking an older release makes it superseded, not current.
    let back = s
        .unrevoke_release("s", a, "carol", "", unrevoked_at)
        .await
        .expect("unrevoke");
    assert_eq!(back.state, Superseded);
    assert_eq!(
        states(&s).await,
        [
            (c.to_string(), Published),
            (b.to_string(), Superseded),
            (a.to_string(), Superseded)
        ]
    );

    // Revoking every release leaves the stream with none current.
    for version in [a, b, c] {
        s.revoke_release("s", version, "all bad", "dave", revoked_at)
            .await
            .expect("revoke");
    }
    assert!(states(&s).await.iter().all(|(_, state)| *state == Revoked));
    let last = all_events(&s).await.pop().expect("event");
    assert_eq!(last.body["current"], serde_json::Value::Null);

    // A release revoked before it was published goes back to pending.
    let d = complete(&s, "cloud", day).await;
    let rd = s.create_release("s", &d, day).await.expect("release");
    s.revoke_release("s", &rd.version, "wrong compose", "dave", revoked_at)
        .await
        .expect("revoke");
    let err = s
        .mark_release_published("s", &rd.version, day)
        .await
        .expect_err("a revoked release is not published");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let back = s
        .unrevoke_release(
            "s",
            &rd.version,
            "dave",
            "right compose after all",
            revoked_at,
        )
        .await
        .expect("unrevoke");
    assert_eq!(back.state, Pending);
}

#[tokio::test]
async fn only_complete_composes_are_released() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    let running = s
        .create_compose("s", "cloud", &sha256_hex(b"r"), at)
        .await
        .expect("create");
    assert!(matches!(
        s.create_release("s", &running.id, at).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_release("s", &ComposeId("x-20261121.0".into()), at)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.releases("s").await.expect("releases").is_empty());
}

// ----- events -----

#[tokio::test]
async fn events_page_in_order_and_handlers_are_remembered() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    for _ in 0..5 {
        s.create_compose("s", "cloud", &sha256_hex(b"r"), at)
            .await
            .expect("create");
    }
    let first = s.events_after(0, 2).await.expect("events");
    assert_eq!(first.len(), 2);
    let rest = s.events_after(first[1].seq, 10).await.expect("events");
    assert_eq!(rest.len(), 3);
    assert!(rest[0].seq > first[1].seq);
    let ids: HashSet<_> = first.iter().chain(&rest).map(|e| e.id).collect();
    assert_eq!(ids.len(), 5);
    assert!(s
        .events_after(rest[2].seq, 10)
        .await
        .expect("events")
        .is_empty());

    let event = first[0].id;
    assert!(!s.is_handled("engine", event).await.expect("handled"));
    s.mark_handled("engine", event, at).await.expect("mark");
    s.mark_handled("engine", event, at)
        .await
        .expect("mark again");
    assert!(s.is_handled("engine", event).await.expect("handled"));
    assert!(!s.is_handled("bus", event).await.expect("handled"));
    assert!(!s.is_handled("engine", first[1].id).await.expect("handled"));

    // What a handler still has to do: every event after the cursor but the ones it marked.
    let seqs = |events: &[Event]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    s.mark_handled("engine", rest[1].id, at)
        .await
        .expect("mark");
    let all = s
        .unhandled_events_after("engine", 0, &[], 10)
        .await
        .expect("unhandled");
    assert_eq!(seqs(&all.events), [first[1].seq, rest[0].seq, rest[2].seq]);
    assert_eq!(
        all.through, rest[2].seq,
        "short of the limit, it looked at every event"
    );
    let one = s
        .unhandled_events_after("engine", first[1].seq, &[], 1)
        .await
        .expect("unhandled");
    assert_eq!(
        seqs(&one.events),
        [rest[0].seq],
        "after the cursor, at most the limit"
    );
    assert_eq!(one.through, rest[0].seq, "at the limit, it looked that far");
    let marked_last = s
        .unhandled_events_after("engine", rest[1].seq - 1, &[], 10)
        .await
        .expect("unhandled");
    assert_eq!(
        seqs(&marked_last.events),
        [rest[2].seq],
        "the marked one is passed over"
    );
    let none_left = s
        .unhandled_events_after("engine", rest[2].seq, &[], 10)
        .await
        .expect("unhandled");
    assert!(none_left.events.is_empty());
    assert_eq!(
        none_left.through, rest[2].seq,
        "an empty read stays at the newest event"
    );
    assert_eq!(
        s.unhandled_events_after("bus", 0, &[], 10)
            .await
            .expect("unhandled")
            .events
            .len(),
        5,
        "another handler's marks are not this one's"
    );

    // A reader of a few topics gets those and skips the rest.
    let c = s
        .create_compose("s", "cloud", &sha256_hex(b"r"), at)
        .await
        .expect("create");
    s.fail_compose(&c.id, "broken", at).await.expect("fail");
    let skipping_starts = s
        .unhandled_events_after("bus", 0, &[topics::COMPOSE_STARTED], 10)
        .await
        .expect("unhandled");
    assert_eq!(
        skipping_starts
            .events
            .iter()
            .map(|e| e.topic.as_str())
            .collect::<Vec<_>>(),
        [topics::COMPOSE_FAILED],
        "the topics a handler skips are left out"
    );
    let failed = s
        .events_after_on(0, &[topics::COMPOSE_FAILED, "no.such.topic"], 10)
        .await
        .expect("events");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].topic, topics::COMPOSE_FAILED);
    // Skipped events are looked at all the same: the read got to the newest event.
    assert_eq!(skipping_starts.through, failed[0].seq);
    assert_eq!(
        seqs(
            &s.events_after_on(0, &[topics::COMPOSE_STARTED], 10)
                .await
                .expect("events")
        ),
        seqs(&all_events(&s).await)[..6].to_vec(),
        "six composes started before the failure"
    );
    assert!(s
        .events_after_on(failed[0].seq, &[topics::COMPOSE_FAILED], 10)
        .await
        .expect("events")
        .is_empty());
}

// ----- jobs -----

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn jobs_are_enqueued_once_per_key_and_claimed_oldest_first() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    assert!(s.enqueue_job(&job("a"), at).await.expect("enqueue"));
    assert!(s.enqueue_job(&job("b"), at).await.expect("enqueue"));
    assert!(!s.enqueue_job(&job("a"), at).await.expect("enqueue again"));
    assert_eq!(s.open_jobs().await.expect("open"), 2);

    let a = s
        .claim_job("w1", LEASE, 3, at)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!((a.key.as_str(), a.attempts), ("a", 1));
    assert_eq!(a.payload, json!({ "key": "a" }));
    let b = s
        .claim_job("w2", LEASE, 3, at)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(b.key, "b");
    assert_eq!(s.claim_job("w3", LEASE, 3, at).await.expect("claim"), None);
    assert_eq!(s.open_jobs().await.expect("open"), 2);

    s.finish_job(a.id, "w1", JobOutcome::Done, at)
        .await
        .expect("finish");
    assert_eq!(s.open_jobs().await.expect("open"), 1);
    // Done is final: the key stays taken and the job is not handed out again.
    assert!(!s.enqueue_job(&job("a"), at).await.expect("enqueue again"));
    assert!(matches!(
        s.finish_job(a.id, "w1", JobOutcome::Done, at).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.finish_job(b.id, "w1", JobOutcome::Done, at).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.finish_job(999, "w1", JobOutcome::Done, at).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn expired_leases_are_claimed_again_and_the_old_holder_loses_the_job() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    s.enqueue_job(&job("a"), at).await.expect("enqueue");
    let first = s
        .claim_job("w1", LEASE, 3, at)
        .await
        .expect("claim")
        .expect("job");

    let within = at + SignedDuration::from_secs(30);
    assert!(s
        .extend_lease(first.id, "w1", LEASE, within)
        .await
        .expect("extend"));
    assert!(!s
        .extend_lease(first.id, "w2", LEASE, within)
        .await
        .expect("extend"));
    // The lease now runs to 10:01:30.
    let before_expiry = at + SignedDuration::from_secs(89);
    assert_eq!(
        s.claim_job("w2", LEASE, 3, before_expiry)
            .await
            .expect("claim"),
        None
    );
    let expired = at + SignedDuration::from_secs(90);
    let second = s
        .claim_job("w2", LEASE, 3, expired)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!((second.id, second.attempts), (first.id, 2));

    assert!(!s
        .extend_lease(first.id, "w1", LEASE, expired)
        .await
        .expect("extend"));
    assert!(matches!(
        s.finish_job(first.id, "w1", JobOutcome::Done, expired)
            .await,
        Err(StoreError::Conflict(_))
    ));
    s.finish_job(second.id, "w2", JobOutcome::Done, expired)
        .await
        .expect("finish");
    assert_eq!(s.open_jobs().await.expect("open"), 0);
}

#[tokio::test]
async fn failed_jobs_are_retried_until_attempts_run_out() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    s.enqueue_job(&job("flaky"), at).await.expect("enqueue");
    for attempt in 1..=3u32 {
        let j = s
            .claim_job("w", LEASE, 3, at)
            .await
            .expect("claim")
            .expect("job");
        assert_eq!(j.attempts, attempt);
        assert!(s.failed_jobs(10).await.expect("failed").is_empty());
        s.finish_job(
            j.id,
            "w",
            JobOutcome::Failed {
                error: format!("attempt {attempt} failed"),
            },
            at,
        )
        .await
        .expect("finish");
    }
    assert_eq!(s.claim_job("w", LEASE, 3, at).await.expect("claim"), None);
    assert_eq!(s.open_jobs().await.expect("open"), 0);
    let failed = s.failed_jobs(10).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.key, "flaky");
    assert_eq!(failed[0].0.attempts, 3);
    assert_eq!(failed[0].1, "attempt 3 failed");
}

#[tokio::test]
async fn a_job_whose_last_lease_expires_fails_for_good() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    s.enqueue_job(&job("hangs"), at).await.expect("enqueue");
    s.enqueue_job(&job("fine"), at).await.expect("enqueue");
    let hung = s
        .claim_job("w1", LEASE, 1, at)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(hung.key, "hangs");

    let later = at + SignedDuration::from_mins(5);
    let next = s
        .claim_job("w2", LEASE, 1, later)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(next.key, "fine", "the exhausted job is not handed out");
    let failed = s.failed_jobs(10).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.id, hung.id);
    assert!(failed[0].1.contains("w1"), "{}", failed[0].1);
    assert_eq!(s.open_jobs().await.expect("open"), 1);
    assert!(matches!(
        s.finish_job(hung.id, "w1", JobOutcome::Done, later).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn leases_of_dead_workers_are_released_by_prefix() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    for key in ["a", "b", "c", "d"] {
        s.enqueue_job(&job(key), at).await.expect("enqueue");
    }
    let a = s.claim_job("local-1", LEASE, 3, at).await.expect("claim");
    let b = s.claim_job("local-2", LEASE, 3, at).await.expect("claim");
    let c = s.claim_job("remote-1", LEASE, 3, at).await.expect("claim");
    let d = s
        .claim_job("local-3", LEASE, 1, at)
        .await
        .expect("claim")
        .expect("job");
    let (a, b, c) = (a.expect("job"), b.expect("job"), c.expect("job"));

    assert_eq!(s.release_leases("local-").await.expect("release"), 3);
    assert_eq!(s.release_leases("local-").await.expect("release"), 0);
    // Released jobs are claimable at once, without waiting for their leases to run out.
    let mut again = Vec::new();
    while let Some(j) = s.claim_job("local-9", LEASE, 3, at).await.expect("claim") {
        again.push((j.id, j.attempts));
    }
    assert_eq!(again, [(a.id, 2), (b.id, 2)]);
    // `d` had its only attempt and fails for good; the remote worker keeps `c`.
    let failed = s.failed_jobs(10).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.id, d.id);
    s.finish_job(c.id, "remote-1", JobOutcome::Done, at)
        .await
        .expect("finish");
    assert_eq!(s.open_jobs().await.expect("open"), 2);
}

#[tokio::test]
async fn concurrent_claims_never_share_a_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    // Two stores on one file stand in for two processes: each has its own connection.
    let stores = [
        SqliteStore::open(&path).expect("open"),
        SqliteStore::open(&path).expect("open"),
    ];
    let at = t("2026-11-21T10:00:00Z");
    for i in 0..40 {
        stores[0]
            .enqueue_job(&job(&format!("job-{i}")), at)
            .await
            .expect("enqueue");
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = stores[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut got = Vec::new();
            while let Some(j) = s.claim_job(&worker, LEASE, 3, at).await.expect("claim") {
                got.push(j.id);
                s.finish_job(j.id, &worker, JobOutcome::Done, at)
                    .await
                    .expect("finish");
            }
            got
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        for id in task.await.expect("task") {
            total += 1;
            assert!(seen.insert(id), "job {id} was handed out twice");
        }
    }
    assert_eq!(total, 40);
    assert_eq!(stores[1].open_jobs().await.expect("open"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_on_one_store_never_share_a_job() {
    let s = store();
    let at = t("2026-11-21T10:00:00Z");
    for i in 0..20 {
        s.enqueue_job(&job(&format!("job-{i}")), at)
            .await
            .expect("enqueue");
    }
    let claim_all = |s: SqliteStore, worker: &'static str| async move {
        let mut got = Vec::new();
        while let Some(j) = s.claim_job(worker, LEASE, 3, at).await.expect("claim") {
            got.push(j.id);
        }
        got
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claim_all(s.clone(), "a")),
        tokio::spawn(claim_all(s.clone(), "b"))
    );
    let (a, b) = (a.expect("task"), b.expect("task"));
    let all: HashSet<_> = a.iter().chain(&b).collect();
    assert_eq!(all.len(), 20);
    assert_eq!(a.len() + b.len(), 20);
}

// ----- durability -----

#[tokio::test]
async fn a_reopened_store_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/state/slipway.db");
    let at = t("2026-11-21T10:00:00Z");
    let (compose, events, job_id) = {
        let s = SqliteStore::open(&path).expect("open");
        assert_eq!(s.path(), Some(path.as_path()));
        let c = complete(&s, "cloud", at).await;
        s.record_test_run(&run(&c, at), &[result(&c, "boot", Outcome::Passed, at)], at)
            .await
            .expect("record");
        s.record_decision(&decision(&c, true, "ok"), at)
            .await
            .expect("decide");
        let r = s.create_release("s", &c, at).await.expect("release");
        s.mark_release_published("s", &r.version, at)
            .await
            .expect("publish");
        s.enqueue_job(&job("a"), at).await.expect("enqueue");
        let j = s
            .claim_job("local-1", LEASE, 3, at)
            .await
            .expect("claim")
            .expect("job");
        let events = all_events(&s).await;
        s.mark_handled("engine", events[0].id, at)
            .await
            .expect("mark");
        let compose = s.compose(&c).await.expect("read").expect("exists");
        (compose, events, j.id)
        // Dropped without any shutdown step, as a killed process would leave it.
    };

    let s = SqliteStore::open(&path).expect("reopen");
    assert_eq!(s.schema_version().await.expect("version"), 12);
    assert_eq!(
        s.compose(&compose.id).await.expect("read"),
        Some(compose.clone())
    );
    assert_eq!(all_events(&s).await, events);
    assert!(s.is_handled("engine", events[0].id).await.expect("handled"));
    assert_eq!(
        s.latest_results(&compose.id, at)
            .await
            .expect("latest")
            .len(),
        1
    );
    assert!(s
        .latest_decision(&compose.id, "s")
        .await
        .expect("decision")
        .is_some_and(|d| d.passed));
    assert_eq!(
        s.releases("s").await.expect("releases")[0].state,
        ReleaseState::Published
    );
    // The dead process's lease is handed back at start-up.
    assert_eq!(s.release_leases("local-").await.expect("release"), 1);
    let j = s
        .claim_job("local-2", LEASE, 3, at)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!((j.id, j.attempts), (job_id, 2));
    // New ids continue after the old ones.
    let next = s
        .create_compose("s", "cloud", &sha256_hex(b"r"), at)
        .await
        .expect("create");
    assert_eq!(next.id.as_str(), "cloud-20261121.1");
    assert!(all_events(&s).await.last().expect("event").seq > events.last().expect("event").seq);
}

#[tokio::test]
async fn a_database_from_a_newer_slipway_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).expect("open"));
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'x')",
            [],
        )
        .expect("insert");
    }
    let err = SqliteStore::open(&path).expect_err("newer schema");
    assert!(
        matches!(&err, StoreError::Database(m) if m.contains("99")),
        "{err}"
    );
}

#[tokio::test]
async fn an_older_release_published_late_does_not_displace_the_newer_one() {
    let s = store();
    let day = t("2026-11-21T10:00:00Z");
    let a = complete(&s, "cloud", day).await;
    let b = complete(&s, "cloud", day).await;
    let ra = s.create_release("s", &a, day).await.expect("release");
    let rb = s.create_release("s", &b, day).await.expect("release");
    s.mark_release_published("s", &rb.version, day)
        .await
        .expect("publish");
    s.mark_release_published("s", &ra.version, day)
        .await
        .expect("publish");
    let states: Vec<_> = s
        .releases("s")
        .await
        .expect("releases")
        .into_iter()
        .map(|r| (r.version, r.state, r.published_at.is_some()))
        .collect();
    assert_eq!(
        states,
        [
            (rb.version, ReleaseState::Published, true),
            (ra.version, ReleaseState::Superseded, true),
        ]
    );
}

#[tokio::test]
async fn the_latest_complete_compose_of_a_recipe_spans_streams_and_skips_the_excluded() {
    let s = store();
    let r = sha256_hex(b"r");
    let older = s
        .create_compose("testing", "cloud", &r, t("2026-11-20T10:00:00Z"))
        .await
        .expect("create");
    s.complete_compose(
        &older.id,
        &input_hash(),
        &lock(),
        &PkgDiff::default(),
        &[],
        t("2026-11-20T11:00:00Z"),
    )
    .await
    .expect("complete");
    let newer = s
        .create_compose("stable", "cloud", &r, t("2026-11-21T10:00:00Z"))
        .await
        .expect("create");
    s.complete_compose(
        &newer.id,
        &input_hash(),
        &lock(),
        &PkgDiff::default(),
        &[],
        t("2026-11-21T11:00:00Z"),
    )
    .await
    .expect("complete");
    // Running, failed and other recipes' composes do not count.
    s.create_compose("stable", "cloud", &r, t("2026-11-22T10:00:00Z"))
        .await
        .expect("running");
    let other = s
        .create_compose("stable", "minimal", &r, t("2026-11-23T10:00:00Z"))
        .await
        .expect("other recipe");
    s.fail_compose(&other.id, "broken", t("2026-11-23T11:00:00Z"))
        .await
        .expect("fail");

    let latest = s
        .latest_complete_compose("cloud", None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(latest.id, newer.id);
    assert_eq!(latest.lock, Some(lock()));
    let before = s
        .latest_complete_compose("cloud", Some(&newer.id))
        .await
        .expect("read")
        .expect("found");
    assert_eq!(before.id, older.id);
    assert_eq!(
        s.latest_complete_compose("minimal", None)
            .await
            .expect("read"),
        None
    );
    // By stream: the newest complete one, past the running compose and the failed one after it.
    let failed = s
        .create_compose("stable", "cloud", &r, t("2026-11-24T10:00:00Z"))
        .await
        .expect("create");
    s.fail_compose(&failed.id, "broken", t("2026-11-24T11:00:00Z"))
        .await
        .expect("fail");
    let newest = s
        .newest_locked_compose("stable")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(newest.id, newer.id);
    assert_eq!(newest.lock, Some(lock()));
    assert_eq!(
        s.newest_locked_compose("unstable").await.expect("read"),
        None
    );
}

#[tokio::test]
async fn a_scratch_store_holds_what_it_is_given_and_its_copy_opens_as_a_normal_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("simulation/slipway.db");
    let at = t("2026-11-21T10:00:00Z");
    {
        let s = SqliteStore::open_scratch().expect("open");
        let c = complete(&s, "cloud", at).await;
        s.create_release("s", &c, at).await.expect("release");
        assert!(s.last_event_seq().await.expect("seq") > 0);
        s.save_to(&path).await.expect("save");
    }
    let s = SqliteStore::open(&path).expect("reopen");
    assert_eq!(s.releases("s").await.expect("releases").len(), 1);
    let events = all_events(&s).await;
    assert_eq!(
        s.last_event_seq().await.expect("seq"),
        events.last().expect("events").seq
    );
}

#[tokio::test]
async fn a_file_stores_copy_holds_its_last_commit_and_opens_as_a_normal_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("copy/slipway.db");
    let at = t("2026-11-21T10:00:00Z");
    let s = SqliteStore::open(&dir.path().join("slipway.db")).expect("open");
    let c = complete(&s, "cloud", at).await;
    s.create_release("s", &c, at).await.expect("release");
    s.save_to(&copy).await.expect("save");
    let saved = SqliteStore::open(&copy).expect("reopen");
    assert_eq!(saved.releases("s").await.expect("releases").len(), 1);
    assert_eq!(
        saved.last_event_seq().await.expect("seq"),
        s.last_event_seq().await.expect("seq")
    );
}

#[tokio::test]
async fn released_artifacts_are_those_of_the_streams_released_composes_in_order() {
    let s = SqliteStore::open_in_memory().expect("store");
    let at = t("2026-11-21T10:00:00Z");
    let released = complete(&s, "cloud", at).await;
    let unreleased = complete(&s, "cloud", at + SignedDuration::from_hours(1)).await;
    for (compose, name) in [
        (&released, "b.qcow2"),
        (&released, "a.raw.xz"),
        (&unreleased, "c.qcow2"),
    ] {
        s.add_artifact(
            compose,
            &slipway_model::Artifact {
                kind: slipway_model::ArtifactKind::Image(slipway_model::OutputFormat::Qcow2),
                file_name: name.into(),
                sha256: sha256_hex(name.as_bytes()),
                size: 3,
            },
        )
        .await
        .expect("artifact");
    }
    s.create_release("s", &released, at).await.expect("release");
    let by_compose = s.released_artifacts("s").await.expect("artifacts");
    assert_eq!(by_compose.len(), 1, "{by_compose:?}");
    let expected = s
        .compose(&released)
        .await
        .expect("read")
        .expect("exists")
        .artifacts;
    let names: Vec<&str> = expected.iter().map(|a| a.file_name.as_str()).collect();
    assert_eq!(names, ["b.qcow2", "a.raw.xz"], "the compose's order");
    assert_eq!(by_compose.get(&released), Some(&expected));
    assert!(!by_compose.contains_key(&unreleased));
    assert!(s
        .released_artifacts("other")
        .await
        .expect("artifacts")
        .is_empty());
}

#[tokio::test]
async fn newest_releases_are_bounded_filtered_by_state_and_newest_first() {
    let s = SqliteStore::open_in_memory().expect("store");
    let mut versions = Vec::new();
    for day in 1..=4 {
        let at = t(&format!("2026-11-0{day}T10:00:00Z"));
        let c = complete(&s, "cloud", at).await;
        let release = s.create_release("s", &c, at).await.expect("release");
        s.mark_release_published("s", &release.version, at)
            .await
            .expect("published");
        versions.push(release.version);
    }
    s.revoke_release("s", &versions[3], "bad", "alice", t("2026-11-05T00:00:00Z"))
        .await
        .expect("revoke");
    let names = |releases: Vec<Release>| -> Vec<String> {
        releases.iter().map(|r| r.version.to_string()).collect()
    };

    let newest = s.newest_releases("s", &[], 2).await.expect("newest");
    assert_eq!(
        names(newest),
        [versions[3].to_string(), versions[2].to_string()]
    );
    // The revoked newest one is skipped when only published releases are asked for.
    let current = s
        .newest_releases("s", &[ReleaseState::Published], 1)
        .await
        .expect("current");
    assert_eq!(names(current), [versions[2].to_string()]);
    // The current ones (a pending release beside the published one) come from their own index.
    let at = t("2026-11-06T10:00:00Z");
    let c = complete(&s, "cloud", at).await;
    let pending = s.create_release("s", &c, at).await.expect("pending");
    let current = s
        .newest_releases(
            "s",
            &[ReleaseState::Published, ReleaseState::Pending],
            usize::MAX,
        )
        .await
        .expect("current");
    assert_eq!(
        names(current),
        [pending.version.to_string(), versions[2].to_string()]
    );
    let old = s
        .newest_releases(
            "s",
            &[ReleaseState::Superseded, ReleaseState::Revoked],
            usize::MAX,
        )
        .await
        .expect("old");
    assert_eq!(
        names(old),
        [
            versions[3].to_string(),
            versions[1].to_string(),
            versions[0].to_string()
        ]
    );
    assert!(s
        .newest_releases("other", &[], 5)
        .await
        .expect("none")
        .is_empty());

    let one = s.release("s", &versions[1]).await.expect("read");
    assert_eq!(one.map(|r| r.state), Some(ReleaseState::Superseded));
    let missing: Version = "20991231.0".parse().expect("version");
    assert_eq!(s.release("s", &missing).await.expect("read"), None);

    // Releases made since a time: on its own day only those at or after it, every state, newest first.
    let later_that_day = t("2026-11-06T18:00:00Z");
    let c = complete(&s, "cloud", later_that_day).await;
    let second = s
        .create_release("s", &c, later_that_day)
        .await
        .expect("second that day");
    let since = |at: &str| {
        let s = &s;
        let at = t(at);
        async move { names(s.releases_made_since("s", at).await.expect("since")) }
    };
    assert_eq!(
        since("2026-11-06T12:00:00Z").await,
        [second.version.to_string()]
    );
    assert_eq!(
        since("2026-11-06T10:00:00Z").await,
        [second.version.to_string(), pending.version.to_string()]
    );
    assert_eq!(
        since("2026-11-04T00:00:00Z").await,
        [
            second.version.to_string(),
            pending.version.to_string(),
            versions[3].to_string()
        ],
        "a revoked release counts as made"
    );
    assert_eq!(since("2026-11-01T10:00:00Z").await.len(), 6);
    assert!(since("2026-11-06T18:00:01Z").await.is_empty());
    assert!(s
        .releases_made_since("other", t("2026-01-01T00:00:00Z"))
        .await
        .expect("none")
        .is_empty());
}
