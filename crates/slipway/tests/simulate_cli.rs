//! `slipway simulate` on the example project: the summary it prints, the state and public tree it keeps
//! with `--dir`, and that it leaves the project's own state alone.

mod common;

use common::{example_project, slipway, text};
use slipway_store::{SqliteStore, Store};

const STREAM: &str = "bookworm-cloud";

#[tokio::test]
async fn a_simulation_kept_in_a_directory_has_a_store_and_tree_that_match_its_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let project = example_project(tmp.path());
    let kept = tmp.path().join("simulation");
    let out = slipway(
        &project,
        &[
            "simulate",
            "--days",
            "30",
            "--seed",
            "7",
            "--start",
            "2027-03-01",
            "--build-failure-rate",
            "0.2",
            "--json",
            "--dir",
            kept.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let summary = &report["summary"];
    assert_eq!(summary["days"], 30);
    assert_eq!(summary["violations"], serde_json::json!([]));
    let releases = summary["releases"].as_u64().expect("releases");
    assert!(releases > 0, "{summary}");

    // The kept store is a normal database holding what the summary counted.
    let store = SqliteStore::open(&kept.join("state/slipway.db")).expect("kept store");
    let stored = store.releases(STREAM).await.expect("releases");
    assert_eq!(stored.len() as u64, releases, "{summary}");
    let composes = store
        .composes(Some(STREAM), usize::MAX)
        .await
        .expect("composes");
    assert_eq!(Some(composes.len() as u64), summary["composes"].as_u64());

    // The kept tree points at the newest release that was not revoked.
    let newest = stored
        .iter()
        .find(|r| r.state != slipway_model::ReleaseState::Revoked)
        .expect("a release stands");
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(kept.join(format!("public/streams/{STREAM}.json"))).expect("stream JSON"),
    )
    .expect("JSON");
    assert_eq!(
        doc.pointer("/architectures/x86_64/artifacts/qemu/release")
            .and_then(|v| v.as_str()),
        Some(newest.version.to_string().as_str())
    );

    // The project's own state was not touched.
    assert!(!project.join("state/slipway.db").exists());
    assert!(!project.join("public").exists());

    // A directory that is not empty is refused.
    let again = slipway(
        &project,
        &[
            "simulate",
            "--days",
            "1",
            "--dir",
            kept.to_str().expect("utf-8"),
        ],
    );
    assert!(!again.status.success());
    assert!(text(&again).contains("is not empty"), "{}", text(&again));
}
