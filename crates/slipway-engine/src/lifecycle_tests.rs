//! Revocation, end of life, out-of-cycle releases and stale streams through the engine, checked in the
//! public tree the publisher wrote and the announcements queued. Releases come from a few simulated days
//! (the seeded world builds and tests); everything else is the production path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::civil::date;
use serde_json::Value;
use slipway_exec::SystemRunner;
use slipway_model::{AnnouncementKind, Config, ReleaseState, VirtualClock};
use slipway_store::{SqliteStore, Store};

use crate::tests::RECIPE;
use crate::{Engine, EngineError, LogProgress, OutOfCycleRequest, SeededWorld, SimulationOptions};

const CONFIG: &str = r#"
[signing]
key = "keys/k.asc"

[gate.default]
required = ["boot.multi-user"]

[[stream]]
name = "rawhide"
recipe = "cloud.toml"
gate = "default"

[[stream]]
name = "next"
recipe = "cloud.toml"
gate = "default"

[[stream]]
name = "weekly"
recipe = "cloud.toml"
gate = "default"
cadence = { every = "7d", anchor = "2026-01-05", at = "12:00" }
"#;

struct Fixture {
    dir: tempfile::TempDir,
    engine: Engine,
    clock: Arc<VirtualClock>,
}

/// A project whose world has new inputs every night and fails builds at `build_failure_rate`.
async fn fixture(build_failure_rate: f64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("slipway.toml"), CONFIG).expect("config");
    std::fs::write(dir.path().join("cloud.toml"), RECIPE).expect("recipe");
    let config = Config::load(&dir.path().join("slipway.toml")).expect("valid config");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    slipway_publish::GpgSigner::generate(
        Arc::new(SystemRunner),
        &config.signing.key,
        "test key <test@example.org>",
    )
    .await
    .expect("key");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let clock = Arc::new(VirtualClock::new(
        "2026-01-01T00:00:00Z".parse().expect("time"),
    ));
    let mut world = SeededWorld::new(7, build_failure_rate, 0.0);
    world.change_rate = 1.0;
    let engine = Engine::with_parts(
        config,
        store,
        clock.clone(),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    )
    .with_world(Arc::new(world));
    Fixture { dir, engine, clock }
}

impl Fixture {
    async fn days(&self, start: jiff::civil::Date, days: u32) {
        let report = self
            .engine
            .simulate(&self.clock, &SimulationOptions { days, start }, |_| {})
            .await
            .expect("simulation");
        assert!(
            report.summary.violations.is_empty(),
            "{:?}",
            report.summary.violations
        );
    }

    fn public(&self, rel: &str) -> PathBuf {
        self.dir.path().join("public").join(rel)
    }

    fn json(&self, rel: &str) -> Value {
        let path = self.public(rel);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).expect("JSON")
    }

    /// The version `streams/<stream>.json` points at (its qemu image's release), if any.
    fn current_in_metadata(&self, stream: &str) -> Option<String> {
        let doc = self.json(&format!("streams/{stream}.json"));
        doc.pointer("/architectures/x86_64/artifacts")
            .and_then(Value::as_object)
            .and_then(|artifacts| artifacts.values().next())
            .and_then(|platform| platform.get("release"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    async fn versions(&self, stream: &str) -> Vec<String> {
        self.engine
            .store()
            .releases(stream)
            .await
            .expect("releases")
            .into_iter()
            .map(|r| r.version.to_string())
            .collect()
    }

    async fn announcements(&self, kind: AnnouncementKind) -> Vec<slipway_model::Announcement> {
        self.engine
            .pending_notifications()
            .await
            .expect("notifications")
            .into_iter()
            .map(|n| n.announcement)
            .filter(|a| a.kind == kind)
            .collect()
    }
}

fn page(path: &Path) -> String {
    std::fs::read_to_string(path).expect("page")
}

#[tokio::test]
async fn revoking_falls_back_to_the_previous_good_release_everywhere_and_is_announced() {
    let f = fixture(0.0).await;
    f.days(date(2026, 1, 1), 3).await;
    let versions = f.versions("rawhide").await;
    assert_eq!(versions.len(), 3, "{versions:?}");
    let (newest, previous) = (&versions[0], &versions[1]);
    assert_eq!(f.current_in_metadata("rawhide").as_ref(), Some(newest));

    let outcome = f
        .engine
        .revoke("rawhide", newest, "breaks cloud-init on boot", "alice")
        .await
        .expect("revoke");
    assert_eq!(outcome.release.state, ReleaseState::Revoked);
    assert_eq!(
        outcome.current.as_ref().map(|r| r.version.to_string()),
        Some(previous.clone())
    );
    assert!(f.engine.settle().await.expect("settle"));

    assert_eq!(f.current_in_metadata("rawhide").as_ref(), Some(previous));
    let index = f.json("releases/rawhide.json");
    let entry = index["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .find(|r| r["version"] == newest.as_str())
        .expect("the revoked release stays in the index");
    assert_eq!(entry["state"], "revoked");
    assert_eq!(entry["revocation"]["reason"], "breaks cloud-init on boot");
    assert_eq!(entry["revocation"]["author"], "alice");
    let html = page(&f.public("index.html"));
    assert!(html.contains(newest.as_str()) && html.contains("breaks cloud-init on boot"));

    let revocations = f.announcements(AnnouncementKind::Revocation).await;
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert!(revocations[0].body.contains("breaks cloud-init on boot"));
    assert!(revocations[0].body.contains(previous.as_str()));

    // Again: refused, and nothing changes.
    let again = f
        .engine
        .revoke("rawhide", newest, "still bad", "bob")
        .await
        .expect_err("already revoked");
    assert!(matches!(again, EngineError::Refused(_)), "{again}");
    assert!(again.to_string().contains("already revoked"), "{again}");
    let history = f
        .engine
        .store()
        .revocation_history("rawhide", &newest.parse().expect("version"))
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    let unknown = f
        .engine
        .revoke("rawhide", "20250101.0", "bad", "bob")
        .await
        .expect_err("unknown");
    assert!(
        unknown.to_string().contains("has no release 20250101.0"),
        "{unknown}"
    );
    let stream = f
        .engine
        .revoke("nope", newest, "bad", "bob")
        .await
        .expect_err("unknown stream");
    assert!(
        stream.to_string().contains("no stream \"nope\""),
        "{stream}"
    );
    assert_eq!(f.announcements(AnnouncementKind::Revocation).await.len(), 1);

    // Taking it back serves it again.
    f.engine
        .unrevoke("rawhide", newest, "it was the test rig", "alice")
        .await
        .expect("unrevoke");
    assert!(f.engine.settle().await.expect("settle"));
    assert_eq!(f.current_in_metadata("rawhide").as_ref(), Some(newest));
}

#[tokio::test]
async fn revoking_the_only_release_leaves_the_stream_empty_with_a_banner() {
    let f = fixture(0.0).await;
    f.days(date(2026, 1, 1), 1).await;
    let versions = f.versions("next").await;
    assert_eq!(versions.len(), 1);
    f.engine
        .revoke("next", &versions[0], "wrong kernel", "alice")
        .await
        .expect("revoke");
    f.engine.settle().await.expect("settle");
    assert_eq!(f.current_in_metadata("next"), None);
    let html = page(&f.public("index.html"));
    assert!(
        html.contains("every release of this stream has been revoked"),
        "the page must say why the stream is empty"
    );
}

#[tokio::test]
async fn end_of_life_stops_composes_marks_the_tree_archives_the_index_and_announces() {
    let f = fixture(0.0).await;
    f.days(date(2026, 1, 1), 2).await;
    let ended = f
        .engine
        .end_of_life("rawhide", Some("next"), "alice")
        .await
        .expect("eol");
    assert_eq!(ended.successor.as_deref(), Some("next"));
    f.engine.settle().await.expect("settle");

    let doc = f.json("streams/rawhide.json");
    assert_eq!(doc["metadata"]["x-slipway-eol"]["successor"], "next");
    let archive = doc["metadata"]["x-slipway-eol"]["archive"]
        .as_str()
        .expect("archive link");
    let archived = f.json(archive);
    assert_eq!(
        archived["releases"].as_array().map(Vec::len),
        Some(2),
        "the archived index lists the stream's releases"
    );
    let eol = f.announcements(AnnouncementKind::Eol).await;
    assert_eq!(eol.len(), 1);
    assert!(eol[0].body.contains("next"));

    let composes_before = f
        .engine
        .store()
        .composes(Some("rawhide"), 100)
        .await
        .expect("composes")
        .len();
    f.days(date(2026, 1, 3), 2).await;
    let composes_after = f
        .engine
        .store()
        .composes(Some("rawhide"), 100)
        .await
        .expect("composes")
        .len();
    assert_eq!(
        composes_before, composes_after,
        "an ended stream composes no more"
    );
    assert_eq!(f.versions("next").await.len(), 4, "the successor goes on");

    let again = f
        .engine
        .end_of_life("rawhide", None, "bob")
        .await
        .expect_err("ended already");
    assert!(again
        .to_string()
        .contains("already reached its end of life"));
    let to_ended = f
        .engine
        .end_of_life("next", Some("rawhide"), "bob")
        .await
        .expect_err("an ended successor");
    assert!(to_ended.to_string().contains("name a live stream"));
    let released = f
        .engine
        .release_out_of_cycle(
            "rawhide",
            &OutOfCycleRequest {
                compose: None,
                emergency: false,
                advisories: vec![],
                reason: "one more".into(),
                author: "bob".into(),
            },
        )
        .await
        .expect_err("an ended stream releases no more");
    assert!(released.to_string().contains("releases no more"));
}

#[tokio::test]
async fn an_emergency_release_goes_out_before_the_release_day_with_its_advisory() {
    let f = fixture(0.0).await;
    // 2026-01-05 is the first release day; two nightlies pass before it.
    f.days(date(2026, 1, 1), 2).await;
    assert!(f.versions("weekly").await.is_empty());
    let release = f
        .engine
        .release_out_of_cycle(
            "weekly",
            &OutOfCycleRequest {
                compose: None,
                emergency: true,
                advisories: vec!["DSA-9999-1".into()],
                reason: "remote root in openssh".into(),
                author: "alice".into(),
            },
        )
        .await
        .expect("release");
    let newest = f
        .engine
        .store()
        .composes(Some("weekly"), 1)
        .await
        .expect("composes");
    assert_eq!(release.compose, newest[0].id, "the newest passing compose");
    f.engine.settle().await.expect("settle");
    assert_eq!(
        f.current_in_metadata("weekly"),
        Some(release.version.to_string())
    );
    let notes =
        std::fs::read_to_string(f.public(&format!("weekly/{}/RELEASE-NOTES.txt", release.version)))
            .expect("release notes");
    assert!(
        notes.contains("security emergency for DSA-9999-1: remote root in openssh"),
        "{notes}"
    );
    let emergency = f.announcements(AnnouncementKind::Emergency).await;
    assert_eq!(emergency.len(), 1, "{emergency:?}");
    assert!(emergency[0].body.contains("DSA-9999-1"));

    let nothing_new = f
        .engine
        .release_out_of_cycle(
            "weekly",
            &OutOfCycleRequest {
                compose: None,
                emergency: false,
                advisories: vec![],
                reason: "again".into(),
                author: "alice".into(),
            },
        )
        .await
        .expect_err("nothing passed since");
    assert!(
        nothing_new
            .to_string()
            .contains("has passed its gate since its last release"),
        "{nothing_new}"
    );
}

#[tokio::test]
async fn a_stream_with_no_passing_compose_goes_stale_with_an_incident_marker_and_announcement() {
    let f = fixture(1.0).await;
    // Every build fails: the release day of 2026-01-05 finds nothing.
    f.days(date(2026, 1, 1), 6).await;
    let open = f
        .engine
        .store()
        .incidents(Some("weekly"), false)
        .await
        .expect("incidents");
    assert_eq!(open.len(), 1, "one open incident for the failing nightlies");
    let mut named: std::collections::BTreeSet<_> = open[0]
        .comments
        .iter()
        .filter_map(|c| c.compose.clone())
        .collect();
    named.insert(open[0].compose.clone());
    assert_eq!(named.len(), 6, "every failed nightly is on it: {named:?}");

    let doc = f.json("streams/weekly.json");
    let since = doc["metadata"]["x-slipway-stale"]["since"]
        .as_str()
        .expect("stale marker");
    assert!(since.starts_with("2026-01-05"), "{since}");
    let stale = f.announcements(AnnouncementKind::Stale).await;
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(page(&f.public("index.html")).contains("Stale since 2026-01-05"));
}

#[tokio::test]
async fn a_publish_job_leaves_a_tree_that_shows_every_change_alone_and_publishes_after_a_change() {
    let f = fixture(0.0).await;
    f.days(date(2026, 1, 1), 2).await;
    let generation = || std::fs::read_link(f.dir.path().join("public")).expect("public link");
    let before = generation();

    f.engine.publish_job("rawhide").await.expect("publish");
    assert_eq!(generation(), before, "nothing changed: no new generation");

    let versions = f.versions("rawhide").await;
    f.engine
        .revoke("rawhide", &versions[0], "bad", "alice")
        .await
        .expect("revoke");
    f.engine.publish_job("rawhide").await.expect("publish");
    assert_ne!(generation(), before, "a revocation is published");
    assert_eq!(
        f.current_in_metadata("rawhide").as_ref(),
        Some(&versions[1])
    );
}

/// The releases and file names of a stream as the publisher was (or would be) given them.
fn shown(releases: &[slipway_publish::ReleaseInput]) -> Vec<(slipway_model::Release, Vec<String>)> {
    releases
        .iter()
        .map(|r| {
            let files = r
                .files
                .iter()
                .map(|f| format!("{} {}", f.file_name, f.sha256));
            (r.release.clone(), files.collect())
        })
        .collect()
}

#[tokio::test]
async fn a_publish_that_patches_a_stream_shows_what_reading_the_whole_stream_shows() {
    let f = fixture(0.0).await;
    let agree = |when: &'static str| {
        let f = &f;
        async move {
            for stream in ["rawhide", "next", "weekly"] {
                let patched = f
                    .engine
                    .last_published_releases(stream)
                    .await
                    .expect("the engine published");
                let whole = f
                    .engine
                    .stream_releases(stream, &mut None)
                    .await
                    .expect("releases");
                assert_eq!(shown(&patched), shown(&whole), "{stream} after {when}");
            }
        }
    };
    f.days(date(2026, 1, 1), 4).await;
    agree("four days").await;
    let versions = f.versions("rawhide").await;
    assert!(versions.len() >= 4, "{versions:?}");

    // An older release revoked: the current one stays; then the newest: the one before takes over.
    for version in [&versions[2], &versions[0]] {
        f.engine
            .revoke("rawhide", version, "bad", "alice")
            .await
            .expect("revoke");
        assert!(f.engine.settle().await.expect("settle"));
        agree("a revocation").await;
    }
    assert_eq!(
        f.current_in_metadata("rawhide").as_ref(),
        Some(&versions[1])
    );
    f.engine
        .unrevoke("rawhide", &versions[0], "the rig was broken", "alice")
        .await
        .expect("unrevoke");
    assert!(f.engine.settle().await.expect("settle"));
    agree("an unrevocation").await;
    assert_eq!(
        f.current_in_metadata("rawhide").as_ref(),
        Some(&versions[0])
    );
    f.days(date(2026, 1, 5), 3).await;
    agree("three more days").await;
}

#[tokio::test]
async fn every_release_is_in_its_years_index_part_with_its_state_after_the_year_turned_and_an_old_one_was_revoked(
) {
    let f = fixture(0.0).await;
    // A month turns first, then the year: the newest year's part is made, grows by a month, and is
    // completed.
    f.days(date(2026, 11, 29), 4).await;
    f.days(date(2026, 12, 29), 5).await;
    let versions = f.versions("rawhide").await;
    let last_year = versions
        .iter()
        .find(|v| v.starts_with("2026"))
        .expect("a release of 2026")
        .clone();
    assert!(
        versions.iter().any(|v| v.starts_with("2027")),
        "{versions:?}"
    );
    // The revocation touches only the earlier year's part: the engine passes the others' fingerprints
    // back, so a wrong guess would leave that part as it was.
    f.engine
        .revoke("rawhide", &last_year, "bad", "alice")
        .await
        .expect("revoke");
    assert!(f.engine.settle().await.expect("settle"));
    f.days(date(2027, 1, 3), 2).await;

    for stream in ["rawhide", "next", "weekly"] {
        let current = f.json(&format!("releases/{stream}.json"));
        for release in f.engine.store().releases(stream).await.expect("releases") {
            let year = release.version.year();
            let part = if current["month"] == release.version.month() {
                current.clone()
            } else {
                f.json(&format!("releases/{stream}/{year}.json"))
            };
            let listed = part["releases"]
                .as_array()
                .expect("releases")
                .iter()
                .filter(|r| r["version"] == release.version.to_string())
                .collect::<Vec<_>>();
            assert_eq!(listed.len(), 1, "{stream} {} in {part}", release.version);
            assert_eq!(
                listed[0]["state"],
                release.state.as_str(),
                "{stream} {}",
                release.version
            );
        }
    }
    let part = f.json("releases/rawhide/2026.json");
    let revoked = part["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .find(|r| r["version"] == last_year.as_str())
        .expect("listed");
    assert_eq!(revoked["revocation"]["reason"], "bad");
}
