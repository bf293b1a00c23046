//! `slipway incidents` on the command line: open incidents by default, closed ones with `--all`, a
//! stream filter, external links and pending mirror steps, JSON, and a clear error for an unknown stream.
//! Incidents are put in the project's store directly; nothing is built, booted or sent anywhere.

mod common;

use std::path::Path;
use std::process::Output;

use common::{example_project, slipway, text};
use jiff::{SignedDuration, Timestamp};
use slipway_model::{sha256_hex, ComposeId, ExternalIssue, NewIncident, NewIncidentComment};
use slipway_store::{SqliteStore, Store};

const STREAM: &str = "bookworm-cloud";

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn failed_compose(store: &SqliteStore, at: Timestamp) -> ComposeId {
    let compose = store
        .create_compose(STREAM, STREAM, &sha256_hex(b"r"), at)
        .await
        .expect("create");
    store
        .fail_compose(&compose.id, "mmdebstrap failed", at)
        .await
        .expect("fail");
    compose.id
}

fn failure(compose: &ComposeId, at: Timestamp) -> NewIncident {
    NewIncident {
        stream: STREAM.into(),
        compose: compose.clone(),
        author: "slipway".into(),
        title: format!("{STREAM}: no good compose (build failed on {compose})"),
        body: format!("Compose **{compose}** failed to build.\n\nE: Unable to locate package x\n"),
        comment: format!("Compose **{compose}** still fails.\n"),
        at,
    }
}

/// One closed incident mirrored to GitLab, and one open incident whose mirror step failed.
async fn project_with_incidents(dir: &Path) -> std::path::PathBuf {
    let project = example_project(dir);
    let store = SqliteStore::open(&project.join("state/slipway.db")).expect("store");
    let start = Timestamp::now() - SignedDuration::from_hours(72);
    let hour = |n: i64| start + SignedDuration::from_hours(n);

    let c1 = failed_compose(&store, hour(1)).await;
    let (_, first) = store
        .open_or_comment_incident(&failure(&c1, hour(1)), None)
        .await
        .expect("open");
    let c2 = failed_compose(&store, hour(25)).await;
    store
        .open_or_comment_incident(&failure(&c2, hour(25)), None)
        .await
        .expect("comment");
    store
        .set_incident_external(
            first.id,
            &ExternalIssue {
                tracker: "gitlab".into(),
                id: "12".into(),
                url: "https://gitlab.example.org/releng/images/-/issues/12".into(),
            },
            hour(25),
        )
        .await
        .expect("link");
    let good = failed_compose(&store, hour(49)).await;
    store
        .close_incident(
            first.id,
            &NewIncidentComment {
                author: "slipway".into(),
                body: format!("Compose **{good}** passed its gate. Closing.\n"),
                compose: Some(good.clone()),
                at: hour(49),
            },
            None,
        )
        .await
        .expect("close");

    let c4 = failed_compose(&store, hour(60)).await;
    store
        .open_or_comment_incident(&failure(&c4, hour(60)), Some("gitlab"))
        .await
        .expect("open");
    let step = store.pending_mirror_steps().await.expect("steps")[0].id;
    store
        .fail_mirror_step(
            step,
            "POST /api/v4/projects/releng%2Fimages/issues: cannot connect to https://gitlab.example.org",
            hour(60),
        )
        .await
        .expect("fail");
    project
}

#[tokio::test]
async fn lists_open_incidents_by_default_and_closed_ones_with_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = project_with_incidents(dir.path()).await;

    let out = slipway(&project, &["incidents"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = stdout(&out);
    assert!(
        listed.contains("incident 2  bookworm-cloud  OPEN"),
        "{listed}"
    );
    assert!(!listed.contains("incident 1 "), "{listed}");
    assert!(listed.contains("no external issue yet"), "{listed}");
    assert!(
        listed.contains("pending gitlab open (comment 4, 1 attempt, last error: POST /api/v4/projects/releng%2Fimages/issues: cannot connect"),
        "{listed}"
    );
    assert!(
        listed.contains("failed to build."),
        "first lines of comments: {listed}"
    );
    assert!(
        !listed.contains("Unable to locate"),
        "not the whole body: {listed}"
    );

    let out = slipway(&project, &["incidents", "--all", "--full"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = stdout(&out);
    let closed = listed
        .find("incident 1  bookworm-cloud  CLOSED")
        .expect(&listed);
    assert!(
        listed.find("incident 2 ").expect("open one") < closed,
        "newest first: {listed}"
    );
    assert!(
        listed.contains("gitlab issue 12: https://gitlab.example.org/releng/images/-/issues/12"),
        "{listed}"
    );
    assert!(listed.contains("Unable to locate package x"), "{listed}");
    assert!(listed.contains("still fails"), "{listed}");
    assert!(listed.contains("passed its gate. Closing."), "{listed}");
}

#[tokio::test]
async fn json_carries_comments_links_and_pending_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = project_with_incidents(dir.path()).await;
    let out = slipway(
        &project,
        &["incidents", "--all", "--json", "--stream", STREAM],
    );
    assert!(out.status.success(), "{}", text(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], 2);
    assert_eq!(listed[0]["state"], "open");
    assert_eq!(listed[0]["pending_mirror"][0]["action"], "open");
    assert_eq!(listed[0]["pending_mirror"][0]["attempts"], 1);
    assert_eq!(listed[1]["state"], "closed");
    assert_eq!(listed[1]["external"]["id"], "12");
    assert_eq!(listed[1]["comments"].as_array().expect("comments").len(), 3);
    assert!(listed[1]["pending_mirror"]
        .as_array()
        .expect("steps")
        .is_empty());

    let out = slipway(&project, &["incidents", "--json"]);
    let open: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(open.as_array().expect("a list").len(), 1);
}

#[test]
fn an_unknown_stream_is_refused_and_help_explains_the_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let out = slipway(&project, &["incidents", "--stream", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no stream \"nope\""), "{err}");
    assert!(err.contains("streams: bookworm-cloud"), "{err}");

    let out = slipway(&project, &["incidents"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out).trim(), "no open incidents");

    let out = slipway(&project, &["incidents", "--help"]);
    assert!(out.status.success(), "{}", text(&out));
    let help = stdout(&out);
    for expected in [
        "--stream",
        "--all",
        "--json",
        "closed by the next good compose",
    ] {
        assert!(help.contains(expected), "{expected}: {help}");
    }
}
