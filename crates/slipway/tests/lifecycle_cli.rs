//! `slipway revoke`, `unrevoke`, `release` and `eol` on the example project: two releases put in its
//! store directly (nothing is built or booted), then the commands, checked in the public tree, the
//! outbox, `status`, and their refusals of bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{compose, example_project, slipway, text};
use jiff::{SignedDuration, Timestamp};
use slipway_store::{SqliteStore, Store};

const STREAM: &str = "bookworm-cloud";

/// The example project with a signing key and two published releases (the older superseded); returns
/// the project and the versions, oldest first.
async fn project(dir: &Path) -> (PathBuf, Vec<String>) {
    let project = example_project(dir);
    let keys = slipway(&project, &["keys", "init"]);
    assert!(keys.status.success(), "{}", text(&keys));
    let store = SqliteStore::open(&project.join("state/slipway.db")).expect("store");
    let mut versions = Vec::new();
    for (days, content) in [(9, "image-9"), (2, "image-2")] {
        let id = compose(&store, &project, STREAM, days, content).await;
        let at = Timestamp::now() - SignedDuration::from_hours(24 * days);
        let release = store
            .create_release(STREAM, &id, at)
            .await
            .expect("release");
        store
            .mark_release_published(STREAM, &release.version, at)
            .await
            .expect("published");
        versions.push(release.version.to_string());
    }
    (project, versions)
}

/// The version the stream metadata points at.
fn current(project: &Path) -> Option<String> {
    let path = project
        .join("public/streams")
        .join(format!("{STREAM}.json"));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("stream metadata")).expect("JSON");
    doc.pointer("/architectures/x86_64/artifacts/qemu/release")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn outbox(project: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(project.join("state/outbox")) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("mail"))
        .collect()
}

fn failed_with(output: &Output, message: &str) {
    assert!(!output.status.success(), "{}", text(output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(message),
        "expected {message:?} in:\n{}",
        text(output)
    );
}

#[tokio::test]
async fn revoke_republishes_at_the_previous_release_announces_and_refuses_a_second_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (project, versions) = project(dir.path()).await;
    let (older, newer) = (&versions[0], &versions[1]);

    let revoked = slipway(
        &project,
        &[
            "revoke",
            STREAM,
            newer,
            "--reason",
            "kernel panics on boot",
            "--author",
            "alice",
        ],
    );
    assert!(revoked.status.success(), "{}", text(&revoked));
    let out = String::from_utf8_lossy(&revoked.stdout);
    assert!(out.contains(&format!("{STREAM} {newer} revoked")), "{out}");
    assert!(
        out.contains(&format!("current release of {STREAM}: {older}")),
        "{out}"
    );
    assert_eq!(current(&project).as_ref(), Some(older));
    let mails = outbox(&project);
    assert!(
        mails
            .iter()
            .any(|m| m.contains("kernel panics on boot") && m.contains(older.as_str())),
        "a revocation announcement naming the reason and the fallback: {mails:?}"
    );

    let again = slipway(&project, &["revoke", STREAM, newer, "--reason", "again"]);
    failed_with(&again, "already revoked");
    let unknown = slipway(&project, &["revoke", STREAM, "20200101.0", "--reason", "x"]);
    failed_with(&unknown, "has no release 20200101.0");
    let stream = slipway(&project, &["revoke", "nope", newer, "--reason", "x"]);
    failed_with(&stream, "no stream \"nope\"");
    assert_eq!(
        current(&project).as_ref(),
        Some(older),
        "refusals change nothing"
    );

    let status = slipway(&project, &["status"]);
    assert!(status.status.success(), "{}", text(&status));

    let restored = slipway(
        &project,
        &[
            "unrevoke",
            STREAM,
            newer,
            "--reason",
            "the test rig was broken",
        ],
    );
    assert!(restored.status.success(), "{}", text(&restored));
    assert_eq!(current(&project).as_ref(), Some(newer));
    let not_revoked = slipway(&project, &["unrevoke", STREAM, newer, "--reason", "x"]);
    failed_with(&not_revoked, "is not revoked");
}

#[tokio::test]
async fn eol_marks_the_stream_and_status_shows_it_and_bad_arguments_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (project, _) = project(dir.path()).await;

    let emergency = slipway(
        &project,
        &["release", STREAM, "--emergency", "--reason", "x"],
    );
    failed_with(&emergency, "--advisory");
    let successor = slipway(&project, &["eol", STREAM, "--successor", "nope"]);
    failed_with(&successor, "no stream \"nope\"");
    let own = slipway(&project, &["eol", STREAM, "--successor", STREAM]);
    failed_with(&own, "cannot be its own successor");

    let ended = slipway(&project, &["eol", STREAM]);
    assert!(ended.status.success(), "{}", text(&ended));
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            project
                .join("public/streams")
                .join(format!("{STREAM}.json")),
        )
        .expect("stream metadata"),
    )
    .expect("JSON");
    assert!(doc.pointer("/metadata/x-slipway-eol/at").is_some(), "{doc}");
    let status = slipway(&project, &["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("END OF LIFE since"),
        "{}",
        text(&status)
    );
    assert!(
        outbox(&project).iter().any(|m| m.contains("end of life")),
        "the end of life is announced"
    );
    let twice = slipway(&project, &["eol", STREAM]);
    failed_with(&twice, "already reached its end of life");
    let release = slipway(&project, &["release", STREAM, "--reason", "one more"]);
    failed_with(&release, "releases no more");
}
