//! Advisories in the engine: a compose's security upgrades matched against a local advisory file, the
//! emergency question under each threshold, and release notes that list what a release fixes and never
//! change afterwards. Nothing is built or booted; the tree is published with a real key.

use std::sync::Arc;

use jiff::SignedDuration;
use slipway_exec::SystemRunner;
use slipway_model::{
    sha256_hex, Artifact, ArtifactKind, Clock, Compose, ComposeId, Config, InputHash, Lock,
    OutputFormat, PackageChange, PkgDiff, SystemClock,
};
use slipway_store::{SqliteStore, Store};

use crate::{Engine, LogProgress};

const CONFIG: &str = r#"
[signing]
key = "keys/k.asc"

[gate.default]
required = ["boot.multi-user"]

[advisories]
files = ["advisories.toml"]

[[stream]]
name = "cloud"
recipe = "cloud.toml"
gate = "default"
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

const ADVISORIES: &str = r#"
[[advisory]]
id = "DSA-5555-1"
severity = "high"
summary = "openssl: denial of service"
url = "https://www.debian.org/security/2023/dsa-5555"

[[advisory.package]]
source = "openssl"
fixed-version = "3.0.13-1~deb12u1"
release = "bookworm"

[[advisory]]
id = "DSA-9999-1"
severity = "critical"
summary = "for another release"

[[advisory.package]]
source = "openssl"
fixed-version = "3.0.13-1~deb12u1"
release = "trixie"
"#;

struct Fixture {
    dir: tempfile::TempDir,
    engine: Engine,
    store: Arc<dyn Store>,
}

fn engine(dir: &std::path::Path, config: &str, store: &Arc<dyn Store>) -> Engine {
    std::fs::write(dir.join("slipway.toml"), config).expect("config");
    let config = Config::load(&dir.join("slipway.toml")).expect("valid config");
    Engine::with_parts(
        config,
        Arc::clone(store),
        Arc::new(SystemClock),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    )
}

async fn fixture(config: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cloud.toml"), RECIPE).expect("recipe");
    std::fs::write(dir.path().join("advisories.toml"), ADVISORIES).expect("advisories");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let engine = engine(dir.path(), config, &store);
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    slipway_publish::GpgSigner::generate(
        Arc::new(SystemRunner),
        &engine.config().signing.key,
        "test key <test@example.org>",
    )
    .await
    .expect("key");
    Fixture { dir, engine, store }
}

fn upgrade(source: &str, old: &str, new: &str, suite: &str) -> PackageChange {
    PackageChange {
        name: format!("lib{source}"),
        architecture: "amd64".into(),
        source: source.into(),
        old_version: old.into(),
        new_version: new.into(),
        suite: Some(suite.into()),
        security: suite.ends_with("-security"),
    }
}

/// A complete compose of the stream with one image, whose package diff holds `upgraded`.
async fn compose(f: &Fixture, hours_ago: i64, upgraded: Vec<PackageChange>) -> Compose {
    let at = SystemClock.now() - SignedDuration::from_hours(hours_ago);
    let image_text = format!("image {hours_ago}");
    let digest = f
        .engine
        .blobs()
        .put_bytes(image_text.as_bytes())
        .expect("blob");
    let created = f
        .store
        .create_compose("cloud", "cloud", &sha256_hex(b"recipe"), at)
        .await
        .expect("create");
    let pkgdiff = PkgDiff {
        previous: Some(ComposeId("cloud-20260101.0".into())),
        upgraded,
        ..PkgDiff::default()
    };
    f.store
        .complete_compose(
            &created.id,
            &InputHash(sha256_hex(b"inputs")),
            &Lock::default(),
            &pkgdiff,
            &[Artifact {
                kind: ArtifactKind::Image(OutputFormat::Qcow2),
                file_name: format!("{}.qcow2", created.id),
                sha256: digest,
                size: image_text.len() as u64,
            }],
            at,
        )
        .await
        .expect("complete");
    f.store
        .compose(&created.id)
        .await
        .expect("read")
        .expect("exists")
}

fn security_fix() -> Vec<PackageChange> {
    vec![upgrade(
        "openssl",
        "3.0.11-1~deb12u2",
        "3.0.13-1~deb12u1",
        "bookworm-security",
    )]
}

#[tokio::test]
async fn security_upgrades_match_the_advisories_of_the_streams_release() {
    let f = fixture(CONFIG).await;
    let fixed = compose(&f, 2, security_fix()).await;
    let (matched, warnings) = f
        .engine
        .advisories_of("cloud", &fixed)
        .await
        .expect("advisories");
    assert!(warnings.is_empty(), "{warnings:?}");
    let ids: Vec<&str> = matched.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["DSA-5555-1"], "the trixie advisory does not apply");
    assert!(f.engine.emergency_due("cloud", &fixed).await.expect("due"));

    let routine = compose(
        &f,
        1,
        vec![upgrade(
            "openssl",
            "3.0.11-1~deb12u2",
            "3.0.13-1~deb12u1",
            "bookworm-updates",
        )],
    )
    .await;
    assert!(
        !f.engine
            .emergency_due("cloud", &routine)
            .await
            .expect("due"),
        "not from a security suite"
    );

    for (threshold, due) in [("critical", false), ("none", false), ("medium", true)] {
        let config = CONFIG.replace(
            "gate = \"default\"\n",
            &format!("gate = \"default\"\nsecurity-threshold = \"{threshold}\"\n"),
        );
        let other = engine(f.dir.path(), &config, &f.store);
        assert_eq!(
            other.emergency_due("cloud", &fixed).await.expect("due"),
            due,
            "threshold {threshold}"
        );
    }
}

#[tokio::test]
async fn release_notes_list_the_advisories_and_never_change_afterwards() {
    let f = fixture(CONFIG).await;
    let first = compose(&f, 2, security_fix()).await;
    let release = f
        .store
        .create_release("cloud", &first.id, SystemClock.now())
        .await
        .expect("release");
    f.engine.publish_job("cloud").await.expect("publish");
    let notes_path = f
        .engine
        .config()
        .publish_dir
        .join("cloud")
        .join(release.version.to_string())
        .join(slipway_publish::RELEASE_NOTES);
    let notes = std::fs::read_to_string(&notes_path).expect("notes");
    assert!(
        notes.contains(
            "Security advisories fixed:\n  DSA-5555-1 (high) openssl 3.0.11-1~deb12u2 -> \
             3.0.13-1~deb12u1: openssl: denial of service\n    \
             https://www.debian.org/security/2023/dsa-5555\n"
        ),
        "{notes}"
    );

    // The announcement names what the notes list.
    let notice = f
        .engine
        .release_notice("cloud", &release.version.to_string())
        .await
        .expect("notice")
        .expect("a release");
    assert_eq!(
        notice.advisories,
        [slipway_model::AdvisoryRef {
            id: "DSA-5555-1".into(),
            severity: "high".into(),
            packages: vec!["openssl".into()],
            url: Some("https://www.debian.org/security/2023/dsa-5555".into()),
        }]
    );

    // The advisory is rated again and another appears; the published notes stay as they were (their
    // signed CHECKSUM must stay valid), and the next release lists what is known then.
    std::fs::write(
        f.dir.path().join("advisories.toml"),
        ADVISORIES.replace("severity = \"high\"", "severity = \"critical\"")
            + "\n[[advisory]]\nid = \"DSA-6000-1\"\nseverity = \"low\"\n\
               [[advisory.package]]\nsource = \"curl\"\nfixed-version = \"7.88.1-10+deb12u5\"\n",
    )
    .expect("write");
    let second = compose(
        &f,
        1,
        vec![upgrade(
            "curl",
            "7.88.1-10+deb12u4",
            "7.88.1-10+deb12u5",
            "bookworm-security",
        )],
    )
    .await;
    let next = f
        .store
        .create_release("cloud", &second.id, SystemClock.now())
        .await
        .expect("release");
    f.engine
        .publish_job("cloud")
        .await
        .expect("publish again without rewriting the first release");
    assert_eq!(std::fs::read_to_string(&notes_path).expect("notes"), notes);
    let next_notes = std::fs::read_to_string(
        f.engine
            .config()
            .publish_dir
            .join("cloud")
            .join(next.version.to_string())
            .join(slipway_publish::RELEASE_NOTES),
    )
    .expect("notes");
    assert!(next_notes.contains("DSA-6000-1 (low) curl"), "{next_notes}");
    assert!(!next_notes.contains("DSA-5555-1"), "{next_notes}");
}

/// Records a passing boot test of a compose and lets `engine` react (gate, incidents, releases).
async fn pass(f: &Fixture, engine: &Engine, compose: &Compose) {
    crate::tests::record_boot(
        f.store.as_ref(),
        &compose.id,
        slipway_model::Outcome::Passed,
        SystemClock.now(),
    )
    .await;
    engine.handle_pending_events().await.expect("react");
}

#[tokio::test]
async fn a_passing_security_fix_at_the_threshold_is_released_at_once_and_a_routine_one_waits() {
    // The first release day is years away: only an emergency releases anything.
    let config = CONFIG.replace(
        "gate = \"default\"\n",
        "gate = \"default\"\ncadence = { every = \"14d\", anchor = \"2036-01-07\" }\nsecurity-threshold = \"high\"\n",
    );
    let f = fixture(&config).await;
    f.engine.release_tick().await.expect("start the schedule");

    let routine = compose(
        &f,
        3,
        vec![upgrade(
            "openssl",
            "3.0.11-1~deb12u2",
            "3.0.13-1~deb12u1",
            "bookworm-updates",
        )],
    )
    .await;
    pass(&f, &f.engine, &routine).await;
    assert!(
        f.store
            .releases("cloud")
            .await
            .expect("releases")
            .is_empty(),
        "a routine upgrade waits for the release day"
    );

    let fixed = compose(&f, 2, security_fix()).await;
    pass(&f, &f.engine, &fixed).await;
    let releases = f.store.releases("cloud").await.expect("releases");
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(releases[0].compose, fixed.id);
    let why = f
        .engine
        .out_of_cycle_of("cloud", &fixed.id)
        .await
        .expect("read")
        .expect("the reason is recorded");
    assert!(why.emergency);
    assert_eq!(why.advisories, ["DSA-5555-1"]);
    assert_eq!(why.author, "slipway");

    // Under a critical threshold the same fix waits.
    let strict = config.replace(
        "security-threshold = \"high\"",
        "security-threshold = \"critical\"",
    );
    let other = engine(f.dir.path(), &strict, &f.store);
    let later = compose(&f, 1, security_fix()).await;
    pass(&f, &other, &later).await;
    assert_eq!(
        f.store.releases("cloud").await.expect("releases").len(),
        1,
        "high is below a critical threshold"
    );
}
