//! Releasing on a cadence through the engine: events from the store, the policy's answer carried out, the
//! state kept, stale transitions announced as events. Nothing is built, booted or published here.

use std::sync::Arc;

use jiff::Timestamp;
use slipway_exec::SystemRunner;
use slipway_model::{topics, Compose, Config, Outcome, VirtualClock};
use slipway_store::{SqliteStore, Store};

use crate::tests::{built_compose_at, record_boot, RECIPE};
use crate::{Engine, LogProgress, TickOutcome};

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    store: Arc<dyn Store>,
    clock: Arc<VirtualClock>,
}

/// A project with one stream `weekly` that releases on Mondays at 12:00 (2026-11-23 is a Monday), with
/// the given `on-missed`.
fn fixture(on_missed: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
[signing]
key = "keys/k.asc"

[gate.default]
required = ["boot.multi-user"]

[[stream]]
name = "weekly"
recipe = "cloud.toml"
gate = "default"
cadence = {{ every = "7d", anchor = "2026-11-23", at = "12:00" }}
on-missed = "{on_missed}"
"#
    );
    std::fs::write(dir.path().join("slipway.toml"), config).expect("config");
    std::fs::write(dir.path().join("cloud.toml"), RECIPE).expect("recipe");
    let config = Config::load(&dir.path().join("slipway.toml")).expect("valid config");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let clock = Arc::new(VirtualClock::new(t("2026-11-20T00:00:00Z")));
    let engine = Engine::with_parts(
        config,
        Arc::clone(&store),
        clock.clone(),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    );
    Fixture {
        _dir: dir,
        engine,
        store,
        clock,
    }
}

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

impl Fixture {
    /// A compose built and tested at `at` with the given outcome, and the engine's reactions to it.
    async fn compose(&self, at: &str, outcome: Outcome) -> Compose {
        self.clock.set(t(at));
        let compose = built_compose_at(self.store.as_ref(), "weekly", t(at)).await;
        record_boot(self.store.as_ref(), &compose.id, outcome, t(at)).await;
        self.engine.handle_pending_events().await.expect("react");
        compose
    }

    async fn tick(&self, at: &str) -> Vec<(String, TickOutcome)> {
        self.clock.set(t(at));
        let outcomes = self.engine.release_tick().await.expect("tick");
        self.engine.handle_pending_events().await.expect("react");
        outcomes
    }

    async fn released(&self) -> Vec<String> {
        let mut releases = self.store.releases("weekly").await.expect("releases");
        releases.reverse();
        releases
            .into_iter()
            .map(|r| r.compose.to_string())
            .collect()
    }

    async fn topics(&self) -> Vec<String> {
        self.store
            .events_after(0, 10_000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.topic)
            .filter(|t| t == topics::STREAM_STALE || t == topics::STREAM_FRESH)
            .collect()
    }
}

#[tokio::test]
async fn a_scheduled_stream_releases_on_its_release_day_and_goes_stale_when_nothing_passed() {
    let f = fixture("skip");
    f.tick("2026-11-20T00:00:00Z").await; // starts the schedule
    let first = f.compose("2026-11-21T03:00:00Z", Outcome::Passed).await;
    assert!(
        f.released().await.is_empty(),
        "a passing compose waits for the release day"
    );
    let newer = f.compose("2026-11-22T03:00:00Z", Outcome::Passed).await;
    f.compose("2026-11-23T03:00:00Z", Outcome::Failed).await;
    assert!(f.tick("2026-11-23T11:59:00Z").await.is_empty());

    let outcomes = f.tick("2026-11-23T12:00:00Z").await;
    assert!(
        matches!(outcomes.as_slice(), [(_, TickOutcome::Released(r))] if r.compose == newer.id)
    );
    assert_eq!(f.released().await, [newer.id.to_string()]);
    assert_ne!(first.id, newer.id);

    // The next Monday finds nothing newer that passed: stale since then, once.
    f.compose("2026-11-25T03:00:00Z", Outcome::Failed).await;
    let outcomes = f.tick("2026-11-30T12:05:00Z").await;
    assert_eq!(
        outcomes,
        [(
            "weekly".to_string(),
            TickOutcome::Stale {
                since: t("2026-11-30T12:00:00Z")
            }
        )]
    );
    assert_eq!(
        f.engine
            .cadence_state("weekly")
            .await
            .expect("state")
            .stale_since,
        Some(t("2026-11-30T12:00:00Z"))
    );
    assert_eq!(f.topics().await, [topics::STREAM_STALE]);

    // With `skip`, a compose passing while stale waits for the next release day.
    let late = f.compose("2026-12-01T03:00:00Z", Outcome::Passed).await;
    assert_eq!(f.released().await.len(), 1);
    assert!(f.tick("2026-12-06T00:00:00Z").await.is_empty());
    f.tick("2026-12-07T12:00:00Z").await;
    assert_eq!(
        f.released().await,
        [newer.id.to_string(), late.id.to_string()]
    );
    assert_eq!(
        f.topics().await,
        [topics::STREAM_STALE, topics::STREAM_FRESH]
    );
}

#[tokio::test]
async fn retry_nightly_releases_the_first_compose_to_pass_after_a_missed_day() {
    let f = fixture("retry-nightly");
    f.tick("2026-11-20T00:00:00Z").await;
    let outcomes = f.tick("2026-11-23T12:00:00Z").await;
    assert!(matches!(
        outcomes.as_slice(),
        [(_, TickOutcome::Stale { .. })]
    ));
    f.compose("2026-11-24T03:00:00Z", Outcome::Failed).await;
    assert!(f.released().await.is_empty());
    let good = f.compose("2026-11-25T03:00:00Z", Outcome::Passed).await;
    assert_eq!(
        f.released().await,
        [good.id.to_string()],
        "released when its decision passed, not on the next release day"
    );
    assert_eq!(
        f.topics().await,
        [topics::STREAM_STALE, topics::STREAM_FRESH]
    );
    // Ticking again changes nothing.
    assert!(f.tick("2026-11-25T04:00:00Z").await.is_empty());
    assert_eq!(f.released().await.len(), 1);
}

#[tokio::test]
async fn several_missed_release_days_make_one_stale_transition() {
    let f = fixture("skip");
    f.tick("2026-11-20T00:00:00Z").await;
    // The engine was down for three release days.
    let outcomes = f.tick("2026-12-10T00:00:00Z").await;
    assert_eq!(
        outcomes,
        [(
            "weekly".to_string(),
            TickOutcome::Stale {
                since: t("2026-11-23T12:00:00Z")
            }
        )]
    );
    assert!(f.tick("2026-12-14T12:00:00Z").await.is_empty());
    assert_eq!(f.topics().await, [topics::STREAM_STALE]);
}

#[tokio::test]
async fn a_release_day_of_an_ended_stream_releases_nothing_and_leaves_it_fresh() {
    let f = fixture("skip");
    f.tick("2026-11-20T00:00:00Z").await; // starts the schedule
    f.compose("2026-11-21T03:00:00Z", Outcome::Passed).await;
    f.clock.set(t("2026-11-22T00:00:00Z"));
    f.engine
        .end_of_life("weekly", None, "alice")
        .await
        .expect("end of life");
    f.engine.handle_pending_events().await.expect("react");

    // A tick of every stream reads the ends of life with the cadence states, in one go.
    assert!(f.tick("2026-11-23T12:00:00Z").await.is_empty());
    assert!(
        f.released().await.is_empty(),
        "an ended stream releases no more"
    );
    assert!(f.topics().await.is_empty(), "and is not stale either");
}
