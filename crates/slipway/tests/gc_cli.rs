//! `slipway gc` on the example project: composes and releases put in its store directly (nothing is built
//! or booted), blobs in its blob store, and the report as text and JSON.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{blob_path, compose, example_project, slipway, text};
use jiff::{SignedDuration, Timestamp};
use slipway_model::ComposeId;
use slipway_store::{SqliteStore, Store};

const STREAM: &str = "bookworm-cloud";

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", text(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(output)))
}

/// The example project with retention set, a signing key, and four composes: 40 days old and released
/// (superseded), 30 days old and released (current), 20 days old, and 1 day old.
async fn project(dir: &Path) -> (PathBuf, Vec<ComposeId>) {
    let project = example_project(dir);
    let config = project.join("slipway.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replacen(
            "gate = \"default\"\n",
            "gate = \"default\"\nretention = { keep-releases = 1, keep-days = 7 }\n",
            1,
        ),
    )
    .expect("write");
    let keys = slipway(&project, &["keys", "init"]);
    assert!(keys.status.success(), "{}", common::text(&keys));
    let store = SqliteStore::open(&project.join("state/slipway.db")).expect("store");
    let mut ids = Vec::new();
    for (days, content, released) in [
        (40, "image-40", true),
        (30, "image-30", true),
        (20, "image-20", false),
        (1, "image-1", false),
    ] {
        let id = compose(&store, &project, STREAM, days, content).await;
        if released {
            let at = Timestamp::now() - SignedDuration::from_hours(24 * days);
            let release = store
                .create_release(STREAM, &id, at)
                .await
                .expect("release");
            store
                .mark_release_published(STREAM, &release.version, at)
                .await
                .expect("published");
        }
        ids.push(id);
    }
    (project, ids)
}

#[tokio::test]
async fn gc_reports_a_dry_run_then_deletes_and_says_what_it_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (project, ids) = project(dir.path()).await;

    let dry = json(&slipway(&project, &["gc", "--dry-run", "--json"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["expired_releases"][0]["compose"], ids[0].as_str());
    assert_eq!(
        dry["deleted_composes"],
        serde_json::json!([ids[0].as_str(), ids[2].as_str()])
    );
    assert_eq!(
        dry["bytes_freed"],
        ("image-40".len() + "image-20".len()) as u64
    );
    assert!(
        blob_path(&project, "image-40").exists(),
        "a dry run deletes nothing"
    );

    let out = slipway(&project, &["gc"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("compose {} deleted", ids[0])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("compose {} deleted", ids[2])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("compose {} kept: released as {STREAM}", ids[1])),
        "{stdout}"
    );
    assert!(stdout.contains("public tree published again"), "{stdout}");
    assert!(
        stdout.contains("1 release(s) expired, 2 compose(s) and 2 blob(s) deleted: freed 16 bytes"),
        "{stdout}"
    );
    for (content, exists) in [
        ("image-40", false),
        ("image-30", true),
        ("image-20", false),
        ("image-1", true),
    ] {
        assert_eq!(blob_path(&project, content).exists(), exists, "{content}");
    }
    // Every release the index lists, newest first: the current index's (the newest month), then each
    // earlier year's part.
    let read = |rel: String| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(project.join("public").join(&rel)).expect(&rel))
            .expect("json")
    };
    let index = read(format!("releases/{STREAM}.json"));
    let mut listed = index["releases"].as_array().expect("releases").clone();
    for part in index["earlier"].as_array().into_iter().flatten() {
        let year = part["year"].as_str().expect("year");
        let part = read(format!("releases/{STREAM}/{year}.json"));
        listed.extend(
            part["releases"]
                .as_array()
                .expect("releases")
                .iter()
                .cloned(),
        );
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[1]["state"], "expired");

    let again = json(&slipway(&project, &["gc", "--json"]));
    assert_eq!(again["deleted_composes"], serde_json::json!([]));
    assert_eq!(again["bytes_freed"], 0);
}
