//! The gate on the command line: `decision` (now and `--at` a past time), `waive`, `waive --revoke`,
//! `waivers`, and their errors. Composes and results are put in the project's store directly; nothing is
//! built or booted.

mod common;

use std::path::Path;
use std::process::Output;

use common::{example_project, slipway, text};
use jiff::{SignedDuration, Timestamp};
use slipway_model::{
    sha256_hex, Artifact, ArtifactKind, ComposeId, InputHash, Lock, Outcome, OutputFormat, PkgDiff,
    RunId, TestResult, TestRun,
};
use slipway_store::{SqliteStore, Store};

/// The example's gate.
const REQUIRED: [&str; 7] = [
    "boot.multi-user",
    "cloud-init.finished",
    "cloud-init.hostname",
    "sshd.active",
    "rootfs.grown",
    "systemd.no-failed-units",
    "packages.match-lock",
];

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(output)))
}

fn open(project: &Path) -> SqliteStore {
    SqliteStore::open(&project.join("state/slipway.db")).expect("store")
}

/// A complete compose of the example stream, built three hours before `now`.
async fn compose(store: &SqliteStore, now: Timestamp) -> ComposeId {
    let at = now - SignedDuration::from_hours(3);
    let compose = store
        .create_compose("bookworm-cloud", "bookworm-cloud", &sha256_hex(b"r"), at)
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
            &PkgDiff::default(),
            &[image],
            at,
        )
        .await
        .expect("complete");
    compose.id
}

/// One test run at `at`: every required testcase passes except those given another outcome.
async fn results(store: &SqliteStore, id: &ComposeId, at: Timestamp, other: &[(&str, Outcome)]) {
    let results: Vec<TestResult> = REQUIRED
        .iter()
        .map(|testcase| {
            let outcome = other
                .iter()
                .find(|(t, _)| t == testcase)
                .map_or(Outcome::Passed, |(_, o)| *o);
            TestResult {
                artifact: format!("{id}.qcow2"),
                ..TestResult::new(id.clone(), *testcase, outcome, "", at)
            }
        })
        .collect();
    let run = TestRun {
        id: RunId::fresh(),
        compose: id.clone(),
        plan: "default".into(),
        artifact: format!("{id}.qcow2"),
        description: String::new(),
        started_at: at,
        finished_at: at,
    };
    store
        .record_test_run(&run, &results, at)
        .await
        .expect("run");
}

/// A project with one compose whose sshd.active failed an hour ago.
async fn project_with_failure(dir: &Path) -> (std::path::PathBuf, ComposeId) {
    let project = example_project(dir);
    let store = open(&project);
    let now = Timestamp::now();
    let id = compose(&store, now).await;
    results(
        &store,
        &id,
        now - SignedDuration::from_hours(1),
        &[("sshd.active", Outcome::Failed)],
    )
    .await;
    (project, id)
}

#[tokio::test]
async fn a_waiver_passes_the_gate_and_revoking_it_fails_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (project, id) = project_with_failure(dir.path()).await;
    let id = id.as_str();

    let out = slipway(&project, &["decision", id]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stdout(&out).contains("sshd.active is FAILED"),
        "{}",
        text(&out)
    );

    let out = slipway(
        &project,
        &[
            "waive",
            id,
            "sshd.active",
            "--reason",
            "host key race, #12",
            "--author",
            "bob",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("gate now PASSED"), "{}", text(&out));

    let out = slipway(&project, &["decision", id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let decision = json(&out);
    assert_eq!(decision["passed"], true);
    let waiver_id = decision["waivers_used"][0]
        .as_u64()
        .expect("a waiver cited");

    let out = slipway(&project, &["waivers", id, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let waivers = json(&out);
    assert_eq!(waivers.as_array().map(Vec::len), Some(1));
    assert_eq!(waivers[0]["id"].as_u64(), Some(waiver_id));
    assert_eq!(waivers[0]["author"], "bob");
    assert_eq!(waivers[0]["comment"], "host key race, #12");
    assert_eq!(waivers[0]["revoked"], serde_json::Value::Null);

    let revoke = waiver_id.to_string();
    let out = slipway(
        &project,
        &[
            "waive",
            "--revoke",
            &revoke,
            "--reason",
            "a real bug",
            "--author",
            "carol",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("gate now FAILED"), "{}", text(&out));

    // Revoked, not deleted.
    let out = slipway(&project, &["waivers", "--json"]);
    let waivers = json(&out);
    assert_eq!(waivers[0]["revoked"]["author"], "carol");
    assert_eq!(waivers[0]["revoked"]["reason"], "a real bug");
    let out = slipway(&project, &["waivers"]);
    assert!(stdout(&out).contains("revoked by carol"), "{}", text(&out));

    let out = slipway(&project, &["decision", id]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    let out = slipway(&project, &["waive", "--revoke", &revoke]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already revoked"), "{}", text(&out));

    // Every step was an event.
    let out = slipway(&project, &["events", "--json"]);
    let topics: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["topic"].as_str().map(str::to_string))
        .collect();
    assert!(topics.contains(&"waiver.created".to_string()), "{topics:?}");
    assert!(topics.contains(&"waiver.revoked".to_string()), "{topics:?}");
    let changes = topics.iter().filter(|t| *t == "decision.changed").count();
    assert_eq!(changes, 3, "failed, passed, failed: {topics:?}");
}

#[tokio::test]
async fn decision_at_a_past_time_ignores_later_results_and_waivers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (project, id) = project_with_failure(dir.path()).await;
    let now = Timestamp::now();
    {
        let store = open(&project);
        results(
            &store,
            &id,
            now - SignedDuration::from_mins(30),
            &[("rootfs.grown", Outcome::Error)],
        )
        .await;
    }
    let out = slipway(
        &project,
        &["waive", id.as_str(), "sshd.active", "--reason", "known"],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Now: sshd.active passed in the second run, rootfs.grown errored.
    let out = slipway(&project, &["decision", id.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let decision = json(&out);
    assert_eq!(decision["unsatisfied"][0]["subject"], "rootfs.grown");
    assert_eq!(decision["unsatisfied"][0]["kind"]["not_passed"], "ERROR");

    // Forty-five minutes ago: only the first run, whose sshd.active failed; the waiver did not exist.
    let then = (now - SignedDuration::from_mins(45)).to_string();
    let out = slipway(
        &project,
        &["decision", id.as_str(), "--at", &then, "--json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let decision = json(&out);
    assert_eq!(decision["unsatisfied"][0]["subject"], "sshd.active");
    assert_eq!(decision["unsatisfied"][0]["kind"]["not_passed"], "FAILED");
    assert_eq!(decision["waivers_used"], serde_json::json!([]));

    // Before any result: everything missing.
    let early = (now - SignedDuration::from_mins(150)).to_string();
    let out = slipway(&project, &["decision", id.as_str(), "--at", &early]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stdout(&out).contains("no result for boot.multi-user"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn bad_input_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (project, id) = project_with_failure(dir.path()).await;
    let id = id.as_str();

    let out = slipway(&project, &["decision", "nope-20260101.0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no compose nope-20260101.0"),
        "{}",
        text(&out)
    );

    let out = slipway(&project, &["decision", id, "--at", "yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--at: \"yesterday\" is not a time"),
        "{}",
        text(&out)
    );

    let out = slipway(&project, &["decision", id, "--stream", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no stream nope"), "{}", text(&out));

    let out = slipway(
        &project,
        &["waive", "nope-20260101.0", "boot", "--reason", "x"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no compose nope-20260101.0"),
        "{}",
        text(&out)
    );

    let out = slipway(&project, &["waive", id, "sshd.active", "--reason", " "]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--reason must say why"),
        "{}",
        text(&out)
    );

    let out = slipway(&project, &["waive", "--revoke", "99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no waiver 99"), "{}", text(&out));

    let out = slipway(&project, &["unmark-failed", id, "--reason", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not marked failed"),
        "{}",
        text(&out)
    );

    // Nothing above stored anything.
    let out = slipway(&project, &["waivers", "--json"]);
    assert_eq!(json(&out), serde_json::json!([]));
}

#[tokio::test]
async fn a_malformed_policy_file_fails_the_decision_naming_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (project, id) = project_with_failure(dir.path()).await;
    let config = project.join("slipway.toml");
    let text_before = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        // Only the stream's own line: the example also shows a commented-out second stream.
        text_before.replacen(
            "\ngate = \"default\"\n",
            "\ngate = \"default\"\npolicy = \"policies/stable.toml\"\n",
            1,
        ),
    )
    .expect("write");
    std::fs::create_dir_all(project.join("policies")).expect("mkdir");
    std::fs::write(
        project.join("policies/stable.toml"),
        "[[require]]\ntestcase = \"boot.multi-user\"\nvalid-since = \"last week\"\n",
    )
    .expect("write");

    // The config itself is fine: other commands work.
    let out = slipway(&project, &["status"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = slipway(&project, &["decision", id.as_str()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let printed = stdout(&out);
    assert!(printed.contains("stable.toml:3:15"), "{printed}");
    assert!(printed.contains("require[0].valid-since"), "{printed}");

    // Fixed, it is read again at the next decision: the waiver-free failure of sshd.active remains.
    std::fs::write(
        project.join("policies/stable.toml"),
        "[[require]]\ntestcase = \"boot.multi-user\"\nvalid-since = 2020-01-01\n",
    )
    .expect("write");
    let out = slipway(&project, &["decision", id.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let decision = json(&out);
    assert_eq!(decision["unsatisfied"][0]["subject"], "sshd.active");
}
