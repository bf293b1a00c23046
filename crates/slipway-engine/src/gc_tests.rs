//! Garbage collection on a temporary project: composes and releases made through the store (nothing is
//! built or booted), blobs in the project's blob store, a real signing key for the republished tree.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use slipway_exec::SystemRunner;
use slipway_model::{
    sha256_hex, topics, Artifact, ArtifactKind, Clock, ComposeId, Config, InputHash, Lock,
    OutputFormat, PkgDiff, ReleaseState, SystemClock,
};
use slipway_store::{SqliteStore, Store};

use crate::{BlobReason, Engine, EngineError, GcReport, LogProgress};

const CONFIG: &str = r#"
[signing]
key = "keys/k.asc"

[gate.default]
required = ["boot.multi-user"]

[[stream]]
name = "cloud"
recipe = "cloud.toml"
gate = "default"
retention = { keep-releases = 1, keep-days = 7 }
"#;

const RECIPE: &str = r#"
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

async fn fixture(config: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("slipway.toml"), config).expect("config");
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

fn days_ago(days: i64) -> Timestamp {
    SystemClock.now() - SignedDuration::from_hours(24 * days)
}

impl Fixture {
    /// Stores `content` as a blob and describes it as an artifact named after it: an image for
    /// `image-*`, otherwise a lock (composes with the same packages share that blob).
    fn blob(&self, content: &str) -> Artifact {
        let digest = self
            .engine
            .blobs()
            .put_bytes(content.as_bytes())
            .expect("blob");
        let kind = if content.starts_with("image") {
            ArtifactKind::Image(OutputFormat::Qcow2)
        } else {
            ArtifactKind::LockJson
        };
        Artifact {
            kind,
            file_name: format!("{content}.{}", kind.name()),
            sha256: digest,
            size: content.len() as u64,
        }
    }

    /// A complete compose of the stream made `days` ago with these images.
    async fn compose(&self, days: i64, images: &[&str]) -> ComposeId {
        let at = days_ago(days);
        let artifacts: Vec<Artifact> = images.iter().map(|i| self.blob(i)).collect();
        let compose = self
            .store
            .create_compose("cloud", "cloud", &sha256_hex(b"recipe"), at)
            .await
            .expect("create");
        self.store
            .complete_compose(
                &compose.id,
                &InputHash(sha256_hex(b"inputs")),
                &Lock::default(),
                &PkgDiff::default(),
                &artifacts,
                at,
            )
            .await
            .expect("complete");
        compose.id
    }

    async fn release(&self, compose: &ComposeId, days: i64) {
        let release = self
            .store
            .create_release("cloud", compose, days_ago(days))
            .await
            .expect("release");
        self.store
            .mark_release_published("cloud", &release.version, days_ago(days))
            .await
            .expect("published");
    }

    fn has_blob(&self, content: &str) -> bool {
        self.engine
            .blobs()
            .path(&sha256_hex(content.as_bytes()))
            .exists()
    }
}

fn names(report: &GcReport, reason: BlobReason) -> Vec<String> {
    let mut names: Vec<String> = report
        .deleted_blobs
        .iter()
        .filter(|b| b.reason == reason)
        .map(|b| b.name.clone())
        .collect();
    names.sort();
    names
}

fn digests(contents: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = contents
        .iter()
        .map(|c| sha256_hex(c.as_bytes()).to_string())
        .collect();
    out.sort();
    out
}

/// Composes 40, 30, 20 and 1 days old sharing a lock blob; the first two released (the second is
/// current), plus a stray blob and an interrupted write in the blob directory.
async fn history(f: &Fixture) -> [ComposeId; 4] {
    let c0 = f.compose(40, &["lock", "image-0"]).await;
    f.release(&c0, 40).await;
    let c1 = f.compose(30, &["lock", "image-1"]).await;
    f.release(&c1, 30).await;
    let c2 = f.compose(20, &["lock", "image-2"]).await;
    let c3 = f.compose(1, &["image-3"]).await;
    f.blob("stray");
    let partial = f
        .engine
        .blobs()
        .path(&sha256_hex(b"x"))
        .with_file_name(format!(".{}.partial", sha256_hex(b"x")));
    std::fs::create_dir_all(partial.parent().expect("dir")).expect("mkdir");
    std::fs::write(partial, b"half").expect("partial");
    [c0, c1, c2, c3]
}

#[tokio::test]
async fn a_dry_run_reports_and_changes_nothing() {
    let f = fixture(CONFIG).await;
    let [c0, _, c2, _] = history(&f).await;
    let events = f
        .store
        .events_after(0, 100_000)
        .await
        .expect("events")
        .len();

    let report = f.engine.gc(true).await.expect("dry run");
    assert!(report.dry_run);
    assert_eq!(report.expired_releases.len(), 1);
    assert_eq!(report.expired_releases[0].compose, c0);
    assert_eq!(report.deleted_composes, [c0.clone(), c2.clone()]);
    assert_eq!(
        names(&report, BlobReason::Planned),
        digests(&["image-0", "image-2"])
    );
    assert_eq!(
        names(&report, BlobReason::Unreferenced),
        digests(&["stray"])
    );
    assert_eq!(names(&report, BlobReason::Partial).len(), 1);
    assert_eq!(
        report.bytes_freed,
        ("image-0".len() + "image-2".len() + "stray".len() + "half".len()) as u64
    );
    assert!(!report.republished);

    assert_eq!(
        f.store
            .events_after(0, 100_000)
            .await
            .expect("events")
            .len(),
        events
    );
    assert_eq!(
        f.store.composes(None, 100).await.expect("composes").len(),
        4
    );
    for content in ["lock", "image-0", "image-2", "stray"] {
        assert!(f.has_blob(content), "{content} kept by a dry run");
    }
    let states: Vec<ReleaseState> = f
        .store
        .releases("cloud")
        .await
        .expect("releases")
        .into_iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [ReleaseState::Published, ReleaseState::Superseded]);
}

#[tokio::test]
async fn gc_expires_deletes_republishes_and_frees_only_unused_blobs() {
    let f = fixture(CONFIG).await;
    let [c0, c1, c2, c3] = history(&f).await;

    let report = f.engine.gc(false).await.expect("gc");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.expired_releases.len(), 1);
    assert_eq!(report.deleted_composes, [c0.clone(), c2.clone()]);
    assert!(report.republished);
    let kept: Vec<&ComposeId> = report.kept.iter().map(|k| &k.compose).collect();
    assert_eq!(kept, [&c1, &c3]);

    // The store: the old release expired and is still listed; its compose and the unreleased one are gone.
    let releases = f.store.releases("cloud").await.expect("releases");
    assert_eq!(
        releases.iter().map(|r| r.state).collect::<Vec<_>>(),
        [ReleaseState::Published, ReleaseState::Expired]
    );
    assert_eq!(releases[1].compose, c0);
    for id in [&c0, &c2] {
        assert_eq!(f.store.compose(id).await.expect("read"), None);
    }
    let topics: Vec<String> = f
        .store
        .events_after(0, 100_000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.topic)
        .filter(|t| t == topics::RELEASE_EXPIRED || t == topics::COMPOSE_DELETED)
        .collect();
    assert_eq!(
        topics,
        [
            topics::RELEASE_EXPIRED,
            topics::COMPOSE_DELETED,
            topics::COMPOSE_DELETED
        ]
    );

    // The blobs: the shared lock stays for the kept composes; the release notes of the current release
    // are an artifact of its compose now, so they stay too.
    for gone in ["image-0", "image-2", "stray"] {
        assert!(!f.has_blob(gone), "{gone} deleted");
    }
    for kept in ["lock", "image-1", "image-3"] {
        assert!(f.has_blob(kept), "{kept} kept");
    }
    let current = f.store.compose(&c1).await.expect("read").expect("kept");
    let notes = current
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::ReleaseNotes)
        .expect("the notes are recorded");
    assert!(f.engine.blobs().path(&notes.sha256).exists());
    assert_eq!(
        report.bytes_freed,
        ("image-0".len() + "image-2".len() + "stray".len() + "half".len()) as u64
    );

    // The tree: the expired release left it and stays in the releases index.
    let public = &f.engine.config().publish_dir;
    assert!(public
        .join("cloud")
        .join(releases[0].version.to_string())
        .is_dir());
    assert!(!public
        .join("cloud")
        .join(releases[1].version.to_string())
        .exists());
    // The releases are days old, so the expired one may be in the current index (the newest month) or in
    // its year's part.
    let expired = &releases[1].version;
    let read = |rel: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(public.join(rel)).expect(rel)).expect("json")
    };
    let current = read("releases/cloud.json");
    let part = if current["month"] == expired.month() {
        current
    } else {
        read(&format!("releases/cloud/{}.json", expired.year()))
    };
    let entry = part["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .find(|r| r["version"] == expired.to_string())
        .expect("the expired release is listed");
    assert_eq!(entry["state"], "expired");
    assert_eq!(entry["compose"], c0.as_str());

    // Nothing is left to do.
    let again = f.engine.gc(false).await.expect("gc again");
    assert!(again.expired_releases.is_empty());
    assert!(again.deleted_composes.is_empty());
    assert!(again.deleted_blobs.is_empty(), "{:?}", again.deleted_blobs);
    assert!(!again.republished);
}

#[tokio::test]
async fn blobs_left_behind_by_an_interrupted_run_are_removed_next_time() {
    let f = fixture(CONFIG).await;
    let [_, _, c2, _] = history(&f).await;
    // A run that deleted the compose and died before removing its files.
    f.store
        .delete_compose(&c2, SystemClock.now())
        .await
        .expect("delete");
    assert!(f.has_blob("image-2"));

    let report = f.engine.gc(false).await.expect("gc");
    assert!(!f.has_blob("image-2"));
    assert!(f.has_blob("lock"), "still named by kept composes");
    assert!(names(&report, BlobReason::Unreferenced).contains(&sha256_hex(b"image-2").to_string()));
}

#[tokio::test]
async fn without_retention_settings_nothing_is_deleted() {
    let config = CONFIG.replace("retention = { keep-releases = 1, keep-days = 7 }\n", "");
    let f = fixture(&config).await;
    history(&f).await;
    let report = f.engine.gc(false).await.expect("gc");
    assert!(report.expired_releases.is_empty());
    assert!(report.deleted_composes.is_empty());
    assert_eq!(
        report.deleted_blobs.len(),
        2,
        "only the stray blob and the partial write: {:?}",
        report.deleted_blobs
    );
    assert_eq!(report.kept.len(), 4);
    for content in ["lock", "image-0", "image-1", "image-2", "image-3"] {
        assert!(f.has_blob(content));
    }
}

#[tokio::test]
async fn a_running_cycle_keeps_gc_out_but_not_a_dry_run() {
    let f = fixture(CONFIG).await;
    history(&f).await;
    let _held = f.engine.lock_state_dir().expect("lock");
    assert!(matches!(
        f.engine.gc(false).await,
        Err(EngineError::Busy(_))
    ));
    let report = f.engine.gc(true).await.expect("dry run");
    assert_eq!(report.deleted_composes.len(), 2);
}

#[tokio::test]
async fn composes_an_incident_names_are_kept() {
    let f = fixture(CONFIG).await;
    let [_, _, c2, _] = history(&f).await;
    f.store
        .open_or_comment_incident(
            &slipway_model::NewIncident {
                stream: "cloud".into(),
                compose: c2.clone(),
                author: "slipway".into(),
                title: "cloud: no good compose".into(),
                body: "the gate failed".into(),
                comment: "still failing".into(),
                at: days_ago(20),
            },
            None,
        )
        .await
        .expect("incident");
    let report = f.engine.gc(false).await.expect("gc");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(!report.deleted_composes.contains(&c2));
    let kept = report.kept.iter().find(|k| k.compose == c2).expect("kept");
    assert!(matches!(
        kept.reasons[..],
        [slipway_release::KeepReason::Incident { .. }]
    ));
    assert!(f.has_blob("image-2"));
}
