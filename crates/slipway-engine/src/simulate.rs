//! `slipway simulate`: the engine run over months or years of a virtual clock.
//!
//! Every day, each stream's nightly compose is started at its nightly time (03:00 UTC when it has none),
//! and every release day and promotion is served when it comes. The builder, the boot tester and the
//! package sources are the [`SimulatedWorld`](crate::SimulatedWorld) set on the engine; everything else
//! (store, events, gate, release policy, publishing) is the production code. The timeline is read back
//! from the events the engine appended, so it shows what the engine did, not what the simulation
//! expected.

use std::collections::BTreeMap;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use slipway_model::{topics, Clock, Event, ReleaseState, TimeOfDay, VirtualClock};

use crate::invariants::InvariantChecker;
use crate::{CycleOptions, Engine, EngineError, Trigger};

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct SimulationOptions {
    /// How many days to simulate.
    pub days: u32,
    /// The first simulated day (UTC).
    pub start: Date,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// When it happened (virtual time).
    pub at: Timestamp,
    /// The stream.
    pub stream: String,
    /// What happened, in a line.
    pub what: String,
}

/// What a simulation did, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimulationSummary {
    /// Days simulated.
    pub days: u32,
    /// Streams simulated.
    pub streams: usize,
    /// Composes started.
    pub composes: u64,
    /// Composes whose build failed.
    pub failed_builds: u64,
    /// Composes the gate failed.
    pub failed_gates: u64,
    /// Releases made.
    pub releases: u64,
    /// Times a stream became stale.
    pub stale_cycles: u64,
    /// Times a stale stream released again.
    pub recovered: u64,
    /// Incidents opened.
    pub incidents_opened: u64,
    /// Incidents closed by a good compose.
    pub incidents_closed: u64,
    /// Releases revoked.
    pub revocations: u64,
    /// Releases made at once for a security fix.
    pub emergency_releases: u64,
    /// Broken promises found by the checks after every step (see the engine's `invariants` module);
    /// empty when the engine kept them all.
    pub violations: Vec<String>,
}

/// The outcome of a simulation.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    /// Everything notable, in order.
    pub timeline: Vec<TimelineEntry>,
    /// The counts.
    pub summary: SimulationSummary,
}

/// The default nightly time of a stream that has none.
const DEFAULT_NIGHTLY: TimeOfDay = TimeOfDay { hour: 3, minute: 0 };

impl Engine {
    /// Runs the simulation day by day on `clock`, which must be the engine's clock, calling `progress`
    /// after each day with the number of days done. Refuses to run on an engine without a simulated world:
    /// a simulation must never compose for real or touch a real project's state.
    pub async fn simulate(
        &self,
        clock: &VirtualClock,
        options: &SimulationOptions,
        mut progress: impl FnMut(u32),
    ) -> Result<SimulationReport, EngineError> {
        if self.world.is_none() {
            return Err(EngineError::Refused(
                "a simulation needs a simulated world; use `slipway simulate`".into(),
            ));
        }
        let mut nightlies: BTreeMap<TimeOfDay, Vec<String>> = BTreeMap::new();
        for stream in &self.config.streams {
            nightlies
                .entry(stream.nightly.unwrap_or(DEFAULT_NIGHTLY))
                .or_default()
                .push(stream.name.clone());
        }
        let mut report = SimulationReport {
            timeline: Vec::new(),
            summary: SimulationSummary {
                days: options.days,
                streams: self.config.streams.len(),
                ..SimulationSummary::default()
            },
        };
        let mut failed_builds = std::collections::HashSet::new();
        let mut seen = self
            .store
            .events_after(0, 1)
            .await?
            .first()
            .map_or(0, |e| e.seq - 1);
        let start = options
            .start
            .to_zoned(TimeZone::UTC)
            .map_err(|err| EngineError::Refused(format!("bad start date: {err}")))?
            .timestamp();
        clock.set(start);
        let mut checker = InvariantChecker::default();
        // Starts every schedule at the simulation's start.
        self.tick_releases().await?;
        for day in 0..options.days {
            let date = options
                .start
                .checked_add(jiff::Span::new().days(i64::from(day)))
                .map_err(|err| EngineError::Refused(format!("date out of range: {err}")))?;
            let day_start = at_time(date, Time::midnight())?;
            let day_end = day_start
                .saturating_add(jiff::SignedDuration::from_hours(24))
                .unwrap_or(day_start);
            // The day's instants, in order: nightlies, then release days and promotions that fall in between
            // are served by the tick that follows each step and by the one at the day's end.
            for (time, streams) in &nightlies {
                let at = at_time(
                    date,
                    Time::new(time.hour as i8, time.minute as i8, 0, 0).unwrap_or(Time::midnight()),
                )?;
                self.step_to(clock, at, &mut checker, &mut report.summary)
                    .await?;
                self.run_cycle(&CycleOptions {
                    force: false,
                    trigger: Trigger::Nightly,
                    streams: Some(streams.clone()),
                    refresh_sources: false,
                })
                .await?;
            }
            self.step_to(clock, day_end, &mut checker, &mut report.summary)
                .await?;
            self.revoke_bad_releases(day_start).await?;
            report.summary.violations.extend(checker.check(self).await?);
            seen = self
                .read_timeline(seen, &mut report, &mut failed_builds)
                .await?;
            progress(day + 1);
        }
        Ok(report)
    }

    /// Moves the clock to `until`, serving on the way every release instant of every stream at its time,
    /// and checking that each release day released or left its stream stale.
    async fn step_to(
        &self,
        clock: &VirtualClock,
        until: Timestamp,
        checker: &mut InvariantChecker,
        summary: &mut SimulationSummary,
    ) -> Result<(), EngineError> {
        loop {
            let now = clock.now();
            let mut next: Option<Timestamp> = None;
            for stream in &self.config.streams {
                if let Some(due) = stream.cadence.next_due(now) {
                    if due <= until && next.is_none_or(|n| due < n) {
                        next = Some(due);
                    }
                }
            }
            match next {
                Some(due) => {
                    clock.set(due);
                    self.tick_releases().await?;
                    for stream in &self.config.streams {
                        if stream.cadence.next_due(now) == Some(due) {
                            summary
                                .violations
                                .extend(checker.check_release_day(self, &stream.name, due).await?);
                        }
                    }
                }
                None => {
                    clock.set(until);
                    self.tick_releases().await?;
                    return Ok(());
                }
            }
        }
    }

    /// Revokes the releases made since `since` that the world says turned out bad, as a person would
    /// with `slipway revoke`, and carries out the reactions.
    async fn revoke_bad_releases(&self, since: Timestamp) -> Result<(), EngineError> {
        let Some(world) = self.world.clone() else {
            return Ok(());
        };
        let mut revoked = false;
        for stream in &self.config.streams {
            for release in self.releases_since(&stream.name, since).await? {
                let version = release.version.to_string();
                if release.state != ReleaseState::Revoked && world.revokes(&stream.name, &version) {
                    self.revoke(
                        &stream.name,
                        &version,
                        "simulated: found bad after its release",
                        "simulation",
                    )
                    .await?;
                    revoked = true;
                }
            }
        }
        if revoked {
            self.settle().await?;
        }
        Ok(())
    }

    /// Adds the events after `after` to the timeline and summary; returns the last sequence number read.
    async fn read_timeline(
        &self,
        mut after: i64,
        report: &mut SimulationReport,
        failed_builds: &mut std::collections::HashSet<String>,
    ) -> Result<i64, EngineError> {
        loop {
            let events = self
                .store
                .events_after_on(after, TIMELINE_TOPICS, 1000)
                .await?;
            let Some(last) = events.last() else {
                return Ok(after);
            };
            after = last.seq;
            for event in &events {
                if let Some(entry) = timeline_entry(event, &mut report.summary, failed_builds) {
                    report.timeline.push(entry);
                }
            }
        }
    }
}

/// The topics the timeline and summary are read from ([`timeline_entry`] looks at no others): reading
/// only these leaves out the test results, most of the log.
const TIMELINE_TOPICS: &[&str] = &[
    topics::COMPOSE_STARTED,
    topics::COMPOSE_FAILED,
    topics::DECISION_CHANGED,
    topics::RELEASE_CREATED,
    topics::STREAM_STALE,
    topics::STREAM_FRESH,
    topics::INCIDENT_OPENED,
    topics::INCIDENT_CLOSED,
    topics::RELEASE_REVOKED,
    topics::RELEASE_OUT_OF_CYCLE,
];

fn at_time(date: Date, time: Time) -> Result<Timestamp, EngineError> {
    date.to_datetime(time)
        .to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|err| EngineError::Refused(format!("time out of range: {err}")))
}

/// The timeline line of an event, counting it in `summary`; `None` for events too small to show.
fn timeline_entry(
    event: &Event,
    summary: &mut SimulationSummary,
    failed_builds: &mut std::collections::HashSet<String>,
) -> Option<TimelineEntry> {
    let body = &event.body;
    let text = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let (stream, what) = match event.topic.as_str() {
        topics::COMPOSE_STARTED => {
            summary.composes += 1;
            return None;
        }
        topics::COMPOSE_FAILED => {
            summary.failed_builds += 1;
            failed_builds.insert(text("/compose"));
            (
                text("/stream"),
                format!("compose {} failed: {}", text("/compose"), text("/reason")),
            )
        }
        topics::DECISION_CHANGED => {
            let passed = body.pointer("/decision/passed").and_then(Value::as_bool);
            // A compose's first failed decision counts, unless its build failed: that is counted above.
            if passed != Some(false)
                || body.pointer("/previous").is_some_and(|p| !p.is_null())
                || failed_builds.contains(&text("/decision/compose"))
            {
                return None;
            }
            summary.failed_gates += 1;
            (
                text("/decision/stream"),
                format!(
                    "gate failed {}: {}",
                    text("/decision/compose"),
                    text("/decision/summary")
                ),
            )
        }
        topics::RELEASE_CREATED => {
            summary.releases += 1;
            (
                text("/stream"),
                format!("released {} ({})", text("/version"), text("/compose")),
            )
        }
        topics::STREAM_STALE => {
            summary.stale_cycles += 1;
            (
                text("/stream"),
                format!(
                    "stale: no passing compose on the release day {}",
                    text("/since")
                ),
            )
        }
        topics::STREAM_FRESH => {
            summary.recovered += 1;
            (text("/stream"), "released again after being stale".into())
        }
        topics::INCIDENT_OPENED => {
            summary.incidents_opened += 1;
            (
                text("/stream"),
                format!(
                    "incident {} opened for {}",
                    body.pointer("/id")
                        .map_or_else(|| "?".into(), Value::to_string),
                    text("/compose")
                ),
            )
        }
        topics::INCIDENT_CLOSED => {
            summary.incidents_closed += 1;
            (
                text("/stream"),
                format!(
                    "incident {} closed by {}",
                    body.pointer("/incident")
                        .map_or_else(|| "?".into(), Value::to_string),
                    text("/comment/compose")
                ),
            )
        }
        topics::RELEASE_REVOKED => {
            summary.revocations += 1;
            (
                text("/stream"),
                format!("revoked {}: {}", text("/version"), text("/reason")),
            )
        }
        topics::RELEASE_OUT_OF_CYCLE => {
            if body.get("emergency").and_then(Value::as_bool) == Some(true) {
                summary.emergency_releases += 1;
            }
            (
                text("/stream"),
                format!("out of cycle {}: {}", text("/compose"), text("/reason")),
            )
        }
        _ => return None,
    };
    Some(TimelineEntry {
        at: event.time,
        stream,
        what,
    })
}
