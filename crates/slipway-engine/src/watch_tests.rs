//! Change detection and daemon triggers against a real signed apt repository served over HTTP, with a
//! store seeded with a compose whose lock that repository gave. Nothing is built or booted here: the
//! end-to-end test in the CLI crate does that.

use std::sync::Arc;

use slipway_exec::SystemRunner;
use slipway_model::{
    topics, Clock, Config, InputHash, Lock, LockedPackage, Sha256, VirtualClock, BUILDER_VERSION,
};
use slipway_repo::fixture::apt::{AptRepoBuilder, DebPackage};
use slipway_repo::fixture::server::HttpServer;
use slipway_store::{SqliteStore, Store};

use crate::watch::Plan;
use crate::{Engine, LogProgress};

struct World {
    dir: tempfile::TempDir,
    repo: AptRepoBuilder,
    server: HttpServer,
    store: Arc<dyn Store>,
    clock: Arc<VirtualClock>,
    engine: Engine,
}

fn recipe_text(url: &str, keyring: &std::path::Path, hostname: &str, package: &str) -> String {
    format!(
        r#"
distribution = "debian"
suite = "stable"
variant = "apt"
packages = ["{package}"]
outputs = ["qcow2"]

[[source]]
url = "{url}"
suite = "stable"
keyring = "{}"

[system]
hostname = "{hostname}"
"#,
        keyring.display()
    )
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut repo = AptRepoBuilder::new(dir.path().join("repo"))
        .expect("repo")
        .with_package(DebPackage::new("tool-a", "1.0").source("tools"))
        .with_package(DebPackage::new("tool-b", "1.0").depends("tool-a"));
    repo.publish().expect("publish");
    let server = HttpServer::serve(repo.root()).expect("serve");
    let url = server.url();
    std::fs::write(
        dir.path().join("a.toml"),
        recipe_text(&url, repo.keyring(), "a", "tool-a"),
    )
    .expect("recipe a");
    std::fs::write(
        dir.path().join("b.toml"),
        recipe_text(&url, repo.keyring(), "b", "tool-b"),
    )
    .expect("recipe b");
    std::fs::write(
        dir.path().join("slipway.toml"),
        r#"
[signing]
key = "keys/k.asc"

[gate.default]
required = ["boot.multi-user"]

[[stream]]
name = "a"
recipe = "a.toml"
gate = "default"
nightly = "03:00"

[[stream]]
name = "b"
recipe = "b.toml"
gate = "default"
"#,
    )
    .expect("config");
    let config = Config::load(&dir.path().join("slipway.toml")).expect("config");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let clock = Arc::new(VirtualClock::new(
        "2026-11-21T01:00:00Z".parse().expect("time"),
    ));
    let engine = Engine::with_parts(
        config,
        Arc::clone(&store),
        clock.clone(),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    );
    World {
        dir,
        repo,
        server,
        store,
        clock,
        engine,
    }
}

/// Records a complete compose of `stream` whose lock holds `packages` at the repository's versions, the
/// way the compose job records one.
async fn seed_compose(w: &World, stream: &str, packages: &[&str]) -> slipway_model::ComposeId {
    let config = w.engine.config();
    let recipe = config
        .recipe(config.stream(stream).expect("stream"))
        .expect("recipe");
    let index = w.engine.recipe_index(&recipe).await.expect("index");
    let lock = Lock::new(
        packages
            .iter()
            .map(|name| {
                let found = index.candidate(name, "amd64").expect("listed").package;
                LockedPackage {
                    name: found.name.clone(),
                    version: found.version.clone(),
                    architecture: found.architecture.clone(),
                    sha256: Some(Sha256::parse(&found.sha256).expect("sha256")),
                    source: None,
                    suite: None,
                }
            })
            .collect(),
    );
    let compose = w
        .store
        .create_compose(stream, &recipe.name, &recipe.hash(), w.clock.now())
        .await
        .expect("create");
    let (lock, diff) = w
        .engine
        .annotate_lock(&recipe, &compose.id, lock)
        .await
        .expect("annotate");
    let input = InputHash::compute(&recipe.hash(), Some(&lock.hash()), BUILDER_VERSION);
    w.store
        .complete_compose(&compose.id, &input, &lock, &diff, &[], w.clock.now())
        .await
        .expect("complete");
    compose.id
}

async fn plan(w: &World, stream: &str) -> Plan {
    let config = w.engine.config();
    let stream = config.stream(stream).expect("stream");
    let recipe = config.recipe(stream).expect("recipe");
    w.engine
        .plan_compose(stream, &recipe, false, false)
        .await
        .expect("plan")
}

async fn topics_of(store: &dyn Store) -> Vec<String> {
    store
        .events_after(0, 1000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.topic)
        .collect()
}

#[tokio::test]
async fn a_bump_rebuilds_only_the_locks_that_hold_it_and_bad_metadata_changes_nothing() {
    let mut w = world();
    let recipes: Vec<_> = w
        .engine
        .config()
        .streams
        .iter()
        .map(|s| w.engine.config().recipe(s).expect("recipe"))
        .collect();
    let refs: Vec<_> = recipes.iter().collect();
    w.engine.refresh_sources(&refs).await.expect("refresh");
    let a = seed_compose(&w, "a", &["tool-a"]).await;
    let b = seed_compose(&w, "b", &["tool-a", "tool-b"]).await;

    // Nothing changed: both are skipped with their own input hash.
    for (stream, id) in [("a", &a), ("b", &b)] {
        match plan(&w, stream).await {
            Plan::Skip { compose, .. } => assert_eq!(&compose, id),
            other => panic!("{stream}: expected a skip, got {other:?}"),
        }
    }

    // --force builds even so.
    let config = w.engine.config();
    let stream_a = config.stream("a").expect("stream");
    let recipe_a = config.recipe(stream_a).expect("recipe");
    match w
        .engine
        .plan_compose(stream_a, &recipe_a, true, false)
        .await
        .expect("plan")
    {
        Plan::Build { reason, .. } => assert_eq!(reason, "forced"),
        other => panic!("expected a forced build, got {other:?}"),
    }

    // tool-b moves: only b holds it.
    w.repo.bump("tool-b", "1.1").expect("bump");
    let changed = w.engine.refresh_sources(&refs).await.expect("refresh");
    assert_eq!(changed.len(), 1);
    assert!(matches!(plan(&w, "a").await, Plan::Skip { .. }));
    match plan(&w, "b").await {
        Plan::Build {
            reason,
            expected_lock_from,
        } => {
            assert!(reason.contains("tool-b:amd64 1.0 → 1.1"), "{reason}");
            assert_eq!(expected_lock_from, None);
        }
        other => panic!("expected a build, got {other:?}"),
    }
    let affected = w
        .engine
        .affected(&["tools".to_string()])
        .await
        .expect("affected");
    let names: Vec<_> = affected.iter().map(|a| a.recipe.as_str()).collect();
    assert_eq!(
        names,
        ["a", "b"],
        "tool-a is in both locks, built from source tools"
    );

    // Tampered metadata: refused, recorded, and the last good state still says b changed and a did not.
    w.repo.bump("tool-a", "1.1").expect("bump");
    let packages = w.repo.packages_path("main", "amd64", "Packages.xz");
    let mut bytes = std::fs::read(&packages).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&packages, bytes).expect("tamper");
    let changed = w.engine.refresh_sources(&refs).await.expect("refresh");
    assert!(changed.is_empty(), "refused metadata is not a change");
    assert!(topics_of(w.store.as_ref())
        .await
        .contains(&topics::REPO_REFRESH_FAILED.to_string()));
    let statuses = w.engine.source_statuses().await.expect("statuses");
    assert_eq!(statuses.len(), 1);
    assert!(statuses[0].error.is_some());
    assert_eq!(statuses[0].failures, 1);
    assert!(matches!(plan(&w, "a").await, Plan::Skip { .. }));

    // A recipe edit that leaves the packages alone builds, expecting the last lock.
    w.repo.publish().expect("repair");
    w.engine.refresh_sources(&refs).await.expect("refresh");
    let fresh = seed_compose(&w, "a", &["tool-a"]).await;
    std::fs::write(
        w.dir.path().join("a.toml"),
        recipe_text(&w.server.url(), w.repo.keyring(), "renamed", "tool-a"),
    )
    .expect("edit");
    match plan(&w, "a").await {
        Plan::Build {
            expected_lock_from, ..
        } => assert_eq!(expected_lock_from, Some(fresh)),
        other => panic!("expected a build, got {other:?}"),
    }
}

#[tokio::test]
async fn the_daemon_triggers_on_recipe_edits_once_and_on_nightlies_once_a_day() {
    let mut w = world();
    // First tick: no recipe was seen before, so both streams are due as changed.
    let due = w.engine.due_streams().await.expect("due");
    assert_eq!(due.changed, ["a", "b"]);
    assert!(due.nightly.is_empty(), "01:00 is before a's 03:00 nightly");
    w.engine.mark_triggered(&due).await.expect("mark");
    let due = w.engine.due_streams().await.expect("due");
    assert!(due.changed.is_empty() && due.nightly.is_empty(), "{due:?}");

    // Editing one recipe triggers its stream, once.
    std::fs::write(
        w.dir.path().join("b.toml"),
        recipe_text(&w.server.url(), w.repo.keyring(), "b-edited", "tool-b"),
    )
    .expect("edit");
    let due = w.engine.due_streams().await.expect("due");
    assert_eq!(due.changed, ["b"]);
    w.engine.mark_triggered(&due).await.expect("mark");
    assert!(w
        .engine
        .due_streams()
        .await
        .expect("due")
        .changed
        .is_empty());

    // A source change triggers every stream that reads it.
    w.repo.bump("tool-a", "1.1").expect("bump");
    let due = w.engine.due_streams().await.expect("due");
    assert_eq!(due.changed, ["a", "b"]);
    w.engine.mark_triggered(&due).await.expect("mark");

    // The nightly fires at the first tick after 03:00, once that day, and again the next day.
    w.clock
        .set("2026-11-21T03:05:00Z".parse().expect("timestamp"));
    let due = w.engine.due_streams().await.expect("due");
    assert_eq!(due.nightly, ["a"]);
    w.engine.mark_triggered(&due).await.expect("mark");
    w.clock
        .set("2026-11-21T23:00:00Z".parse().expect("timestamp"));
    assert!(w
        .engine
        .due_streams()
        .await
        .expect("due")
        .nightly
        .is_empty());
    w.clock
        .set("2026-11-22T03:00:00Z".parse().expect("timestamp"));
    assert_eq!(w.engine.due_streams().await.expect("due").nightly, ["a"]);
}
