//! Simulations over many seeds: the engine keeps its promises whatever the builder, tester and people do,
//! and the invariant checks do catch a broken promise.

use std::path::Path;
use std::sync::Arc;

use jiff::civil::date;
use slipway_exec::SystemRunner;
use slipway_model::{Clock, Config, Outcome, VirtualClock};
use slipway_store::{SqliteStore, Store};

use crate::invariants::InvariantChecker;
use crate::tests::{built_compose_at, record_boot, RECIPE};
use crate::{Engine, LogProgress, SeededWorld, SimulationOptions, SimulationSummary};

/// Four streams, one of each kind of policy: every pass released, a weekly release that skips a missed
/// day (and releases high security fixes at once), a fortnightly one that retries with the next
/// nightly, and a stable stream promoted from the weekly one after a week's soak.
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
name = "weekly"
recipe = "cloud.toml"
gate = "default"
cadence = { every = "7d", anchor = "2026-01-05", at = "12:00" }
on-missed = "skip"
security-threshold = "high"

[[stream]]
name = "fortnightly"
recipe = "cloud.toml"
gate = "default"
cadence = { every = "14d", anchor = "2026-01-05", at = "12:00" }
on-missed = "retry-nightly"

[[stream]]
name = "stable"
recipe = "cloud.toml"
gate = "default"
cadence = { cron = "0 12 * * 3" }
promote-from = { stream = "weekly", soak = "7d" }
"#;

async fn engine(dir: &Path, world: Option<SeededWorld>) -> (Engine, Arc<VirtualClock>) {
    std::fs::write(dir.join("slipway.toml"), CONFIG).expect("config");
    std::fs::write(dir.join("cloud.toml"), RECIPE).expect("recipe");
    let config = Config::load(&dir.join("slipway.toml")).expect("valid config");
    std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
    slipway_publish::GpgSigner::generate(
        Arc::new(SystemRunner),
        &config.signing.key,
        "simulation <simulation@example.org>",
    )
    .await
    .expect("key");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let clock = Arc::new(VirtualClock::new(
        "2026-01-01T00:00:00Z".parse().expect("time"),
    ));
    let mut engine = Engine::with_parts(
        config,
        store,
        clock.clone(),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    );
    if let Some(world) = world {
        engine = engine.with_world(Arc::new(world));
    }
    (engine, clock)
}

async fn simulate(seed: u64, days: u32) -> SimulationSummary {
    let dir = tempfile::tempdir().expect("tempdir");
    simulated(dir.path(), seed, days).await.2
}

/// The engine after `days` simulated days from 2026-01-01 of a world seeded with `seed` that fails
/// builds and tests, revokes releases and brings security fixes; its clock; and what it did.
async fn simulated(
    dir: &Path,
    seed: u64,
    days: u32,
) -> (Engine, Arc<VirtualClock>, SimulationSummary) {
    let mut world = SeededWorld::new(seed, 0.15, 0.2);
    world.revoke_rate = 0.1;
    world.security_rate = 0.15;
    let (engine, clock) = engine(dir, Some(world)).await;
    let summary = engine
        .simulate(
            &clock,
            &SimulationOptions {
                days,
                start: date(2026, 1, 1),
            },
            |_| {},
        )
        .await
        .expect("simulation")
        .summary;
    (engine, clock, summary)
}

#[tokio::test]
async fn every_invariant_holds_over_many_seeds() {
    let mut totals = SimulationSummary::default();
    for seed in 1..=8 {
        let summary = simulate(seed, 56).await;
        assert!(
            summary.violations.is_empty(),
            "seed {seed} broke invariants: {:#?}",
            summary.violations
        );
        assert!(
            summary.incidents_closed <= summary.incidents_opened,
            "seed {seed}: {summary:?}"
        );
        totals.releases += summary.releases;
        totals.stale_cycles += summary.stale_cycles;
        totals.incidents_opened += summary.incidents_opened;
        totals.incidents_closed += summary.incidents_closed;
        totals.revocations += summary.revocations;
        totals.emergency_releases += summary.emergency_releases;
        totals.failed_builds += summary.failed_builds;
        totals.failed_gates += summary.failed_gates;
    }
    // The seeds must reach every path the invariants guard, or they would hold for want of trying.
    for (what, count) in [
        ("releases", totals.releases),
        ("stale cycles", totals.stale_cycles),
        ("incidents opened", totals.incidents_opened),
        ("incidents closed", totals.incidents_closed),
        ("revocations", totals.revocations),
        ("emergency releases", totals.emergency_releases),
        ("failed builds", totals.failed_builds),
        ("failed gates", totals.failed_gates),
    ] {
        assert!(count > 0, "no {what} in any seed: {totals:?}");
    }
}

#[tokio::test]
async fn the_same_seed_gives_the_same_history() {
    let first = simulate(42, 21).await;
    let second = simulate(42, 21).await;
    assert_eq!(first, second);
}

#[tokio::test]
async fn the_checks_catch_a_release_of_a_compose_that_failed_its_gate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, clock) = engine(dir.path(), None).await;
    let at: jiff::Timestamp = "2026-01-02T03:00:00Z".parse().expect("time");
    clock.set(at);
    let compose = built_compose_at(engine.store().as_ref(), "weekly", at).await;
    record_boot(engine.store().as_ref(), &compose.id, Outcome::Failed, at).await;
    engine.handle_pending_events().await.expect("react");
    let mut checker = InvariantChecker::default();
    assert_eq!(
        checker.check(&engine).await.expect("check"),
        Vec::<String>::new(),
        "the engine itself released nothing and opened the incident"
    );

    // Bypassing the engine's gate, as a bug would.
    engine
        .store()
        .create_release("weekly", &compose.id, at)
        .await
        .expect("release");
    let violations = checker.check(&engine).await.expect("check");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("had not passed its gate"),
        "{violations:?}"
    );
}

#[tokio::test]
async fn the_checks_catch_a_failed_nightly_on_no_incident_and_a_release_day_that_did_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, clock) = engine(dir.path(), None).await;
    let at: jiff::Timestamp = "2026-01-02T03:00:00Z".parse().expect("time");
    clock.set(at);
    // A compose whose build failed, recorded without the engine's reactions (no incident).
    let compose = engine
        .store()
        .create_compose("weekly", "cloud", &slipway_model::sha256_hex(b"r"), at)
        .await
        .expect("create");
    engine
        .store()
        .fail_compose(&compose.id, "mmdebstrap failed", at)
        .await
        .expect("fail");
    let mut checker = InvariantChecker::default();
    let violations = checker.check(&engine).await.expect("check");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("is on no incident"),
        "{violations:?}"
    );

    // A release day the engine never served: no release, not stale.
    let due: jiff::Timestamp = "2026-01-05T12:00:00Z".parse().expect("time");
    let missed = checker
        .check_release_day(&engine, "weekly", due)
        .await
        .expect("check");
    assert!(
        missed.is_some_and(|m| m.contains("neither released nor left the stream stale")),
        "a release day the engine did not serve must be reported"
    );
}

#[tokio::test]
async fn the_checks_catch_stream_metadata_that_points_at_a_revoked_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, clock) = engine(dir.path(), None).await;
    let at: jiff::Timestamp = "2026-01-02T03:00:00Z".parse().expect("time");
    clock.set(at);
    let store = engine.store().clone();
    let compose = built_compose_at(store.as_ref(), "weekly", at).await;
    record_boot(store.as_ref(), &compose.id, Outcome::Passed, at).await;
    let release = store
        .create_release("weekly", &compose.id, at)
        .await
        .expect("release");
    store
        .mark_release_published("weekly", &release.version, at)
        .await
        .expect("published");
    // Stream metadata as a broken publisher would leave it, pointing at the release.
    let streams = engine.config().publish_dir.join("streams");
    std::fs::create_dir_all(&streams).expect("mkdir");
    let doc = serde_json::json!({
        "stream": "weekly",
        "architectures": {"x86_64": {"artifacts": {"qemu": {"release": release.version.to_string()}}}}
    });
    std::fs::write(streams.join("weekly.json"), doc.to_string()).expect("write");
    let mut checker = InvariantChecker::default();
    assert_eq!(
        checker.check(&engine).await.expect("check"),
        Vec::<String>::new()
    );

    store
        .revoke_release("weekly", &release.version, "bad", "alice", at)
        .await
        .expect("revoke");
    let violations = checker.check(&engine).await.expect("check");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("points at the revoked release"),
        "{violations:?}"
    );
}

#[tokio::test]
async fn the_release_policy_answers_from_its_bounded_reads_as_from_the_whole_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Long enough for every stream to have more composes than the policy's window of fifty.
    let (engine, clock, _) = simulated(dir.path(), 5, 120).await;
    let store = engine.store();
    let mut released_plans = 0;
    for stream in &engine.config.streams {
        let policy = stream.release_policy();
        let state = engine.cadence_state(&stream.name).await.expect("state");
        let composes = store
            .candidate_composes(&stream.name, crate::release::CANDIDATE_WINDOW)
            .await
            .expect("composes");
        let whole = store.releases(&stream.name).await.expect("releases");
        let mut whole_source = Vec::new();
        if let Some(promotion) = &policy.promote_from {
            for release in store.releases(&promotion.stream).await.expect("source") {
                let compose = store.compose(&release.compose).await.expect("compose");
                let compose = compose.expect("a released compose");
                whole_source.push((release, slipway_model::CandidateCompose::of(&compose, None)));
            }
        }
        let (bounded, bounded_source) = engine
            .policy_releases(&stream.name, policy.promote_from.as_ref(), &composes)
            .await
            .expect("bounded");
        assert!(
            bounded.len() < whole.len(),
            "{}: the read is bounded",
            stream.name
        );
        // Every release day of the next two weeks, and the hours between, asked both ways.
        let now = clock.now();
        for hours in (1..=14 * 24).step_by(5) {
            let at = now + jiff::SignedDuration::from_hours(hours);
            let plan = |releases, source_releases| {
                slipway_release::plan_release(
                    &policy,
                    &state,
                    at,
                    &slipway_release::ReleaseInputs {
                        composes: &composes,
                        releases,
                        source_releases,
                    },
                )
            };
            let from_whole = plan(&whole, &whole_source);
            assert_eq!(
                plan(&bounded, &bounded_source),
                from_whole,
                "{} at {at}",
                stream.name
            );
            if matches!(
                from_whole.action,
                slipway_release::ReleaseAction::Release { .. }
            ) {
                released_plans += 1;
            }
        }
    }
    assert!(released_plans > 0, "some of the answers release a compose");
}
