//! Releasing on the stream's cadence: the engine asks the release policy
//! ([`slipway_release::plan_release`]) what a stream should do now and carries out the answer.
//!
//! The policy is asked when a decision passes (for `on-pass` streams and stale `retry-nightly` ones) and
//! on every clock tick (for release days and promotions, which mature with time). The per-stream
//! [`CadenceState`] is kept in the store. Creating a release and saving the state are two transactions; a
//! crash between them is harmless because the policy counts a release made after an unhandled release day
//! as serving it.

use std::collections::HashMap;

use serde_json::json;
use slipway_model::{
    topics, CadenceState, CandidateCompose, ComposeId, Release, ReleaseState, StreamConfig,
};
use slipway_release::{ReleaseAction, ReleaseInputs};

use crate::lifecycle::{EndOfLife, OutOfCycle, EOL_KEY};
use crate::{Engine, EngineError};

/// How many of a stream's newest composes are considered as candidates.
pub(crate) const CANDIDATE_WINDOW: usize = 50;

/// The prefix of the keys of the streams' cadence states.
const CADENCE_PREFIX: &str = "cadence:";

fn cadence_key(stream: &str) -> String {
    format!("{CADENCE_PREFIX}{stream}")
}

/// What a release tick did for a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// A release was chosen (and will be published by its publish job).
    Released(Release),
    /// A release day passed without a candidate: the stream is stale since then.
    Stale {
        /// The missed release day.
        since: jiff::Timestamp,
    },
    /// Nothing to do.
    Nothing,
}

/// The records under `prefix` by the rest of their key, each decoded; one that does not decode is left
/// out, as [`Engine::cadence_state`] and [`Engine::end_of_life_of`] read it as absent.
fn decoded<T: serde::de::DeserializeOwned>(
    records: Vec<(String, serde_json::Value)>,
    prefix: &str,
) -> HashMap<String, T> {
    records
        .into_iter()
        .filter_map(|(key, value)| {
            let stream = key.strip_prefix(prefix)?.to_string();
            Some((stream, serde_json::from_value(value).ok()?))
        })
        .collect()
}

/// What the store keeps about every stream that a tick or a publish asks of each: its cadence state and
/// whether it ended. Read in two statements for all streams instead of two per stream.
#[derive(Debug, Default)]
pub(crate) struct StreamStates {
    cadence: HashMap<String, CadenceState>,
    ended: HashMap<String, EndOfLife>,
}

impl StreamStates {
    /// The stream's cadence state (the default when none is kept).
    pub(crate) fn cadence(&self, stream: &str) -> CadenceState {
        self.cadence.get(stream).cloned().unwrap_or_default()
    }

    /// The stream's end of life, if it reached it.
    pub(crate) fn end_of_life(&self, stream: &str) -> Option<&EndOfLife> {
        self.ended.get(stream)
    }
}

impl Engine {
    /// The stream's stored cadence state.
    pub async fn cadence_state(&self, stream: &str) -> Result<CadenceState, EngineError> {
        Ok(self
            .store
            .state(&cadence_key(stream))
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    /// Every stream's cadence state and end of life, as the store keeps them now.
    pub(crate) async fn stream_states(&self) -> Result<StreamStates, EngineError> {
        Ok(StreamStates {
            cadence: decoded(self.store.states(CADENCE_PREFIX).await?, CADENCE_PREFIX),
            ended: decoded(self.store.states(EOL_KEY).await?, EOL_KEY),
        })
    }

    /// Serves every stream's release days and promotions that came due, and publishes what they released.
    /// Holds the state directory's lock meanwhile.
    pub async fn tick_releases(&self) -> Result<Vec<(String, TickOutcome)>, EngineError> {
        let _lock = self.lock_state_dir()?;
        let outcomes = self.release_tick().await?;
        self.drain().await?;
        Ok(outcomes)
    }

    /// Runs the release policy of every stream at the current time.
    pub async fn release_tick(&self) -> Result<Vec<(String, TickOutcome)>, EngineError> {
        let mut outcomes = Vec::new();
        let states = self.stream_states().await?;
        for stream in &self.config.streams {
            let outcome = self
                .release_tick_with(
                    stream,
                    true,
                    states.cadence(&stream.name),
                    states.end_of_life(&stream.name).is_some(),
                )
                .await?;
            if outcome != TickOutcome::Nothing {
                outcomes.push((stream.name.clone(), outcome));
            }
        }
        Ok(outcomes)
    }

    /// What follows a changed decision on a compose: the stream's incident is opened, commented or
    /// closed, a security fix at or above the stream's threshold is released at once, and the release
    /// policy is asked. Only the stream's newest compose speaks for its nightly: a verdict or a waiver on
    /// an older compose changes neither the incident nor what is released out of cycle.
    pub(crate) async fn follow_decision(
        &self,
        stream: &str,
        compose: &ComposeId,
        passed: bool,
    ) -> Result<(), EngineError> {
        let Some(config) = self.config.stream(stream) else {
            return Ok(());
        };
        let newest = self.store.candidate_composes(stream, 1).await?;
        if newest.first().is_some_and(|c| &c.id == compose) {
            if passed {
                self.record_good_compose(stream, compose).await?;
                self.release_security_fix(config, compose).await?;
            } else if self.end_of_life_of(stream).await?.is_none() {
                let report = self.incident_report(stream, compose).await?;
                self.record_bad_nightly(stream, &report).await?;
            }
        }
        if passed {
            self.release_tick_stream(config, false).await?;
        }
        Ok(())
    }

    /// Releases a passing compose at once when its upgrades from a security suite fix an advisory at or
    /// above the stream's `security-threshold`. Streams that release every pass, or take their releases
    /// from another stream, are left to their policy. Returns whether it released.
    async fn release_security_fix(
        &self,
        stream: &StreamConfig,
        compose: &ComposeId,
    ) -> Result<bool, EngineError> {
        let threshold = stream.security_threshold;
        if !stream.cadence.is_scheduled()
            || stream.promote_from.is_some()
            || threshold.severity().is_none()
        {
            return Ok(false);
        }
        let Some(found) = self.store.compose(compose).await? else {
            return Ok(false);
        };
        // A release of the compose can only have been made after it.
        let released = self
            .releases_since(&stream.name, found.created_at)
            .await?
            .iter()
            .any(|r| &r.compose == compose);
        if released || self.end_of_life_of(&stream.name).await?.is_some() {
            return Ok(false);
        }
        let (matched, _) = self.advisories_of(&stream.name, &found).await?;
        if !slipway_release::emergency_due(&matched, threshold) {
            return Ok(false);
        }
        let mut urgent: Vec<String> = Vec::new();
        for advisory in &matched {
            if threshold.reached_by(advisory.severity) && !urgent.contains(&advisory.id) {
                urgent.push(advisory.id.clone());
            }
        }
        let reason = format!(
            "security fix at or above the stream's threshold ({}): {}",
            String::from(threshold),
            urgent.join(", ")
        );
        self.record_out_of_cycle(&OutOfCycle {
            stream: stream.name.clone(),
            compose: compose.clone(),
            emergency: true,
            advisories: urgent,
            reason: reason.clone(),
            author: "slipway".into(),
            at: self.now(),
        })
        .await?;
        let release = self
            .store
            .create_release(&stream.name, compose, self.now())
            .await?;
        self.progress.step(
            &stream.name,
            &format!("release {} of {compose} at once: {reason}", release.version),
        );
        Ok(true)
    }

    /// Runs the release policy of one stream at the current time. `timed` is true for a clock tick and
    /// false when a decision just passed; the distinction only saves work, the policy decides the same.
    pub(crate) async fn release_tick_stream(
        &self,
        stream: &StreamConfig,
        timed: bool,
    ) -> Result<TickOutcome, EngineError> {
        let state = self.cadence_state(&stream.name).await?;
        let ended = self.end_of_life_of(&stream.name).await?.is_some();
        self.release_tick_with(stream, timed, state, ended).await
    }

    /// [`Engine::release_tick_stream`] with the stream's cadence state, and whether it ended, read.
    pub(crate) async fn release_tick_with(
        &self,
        stream: &StreamConfig,
        timed: bool,
        state: CadenceState,
        ended: bool,
    ) -> Result<TickOutcome, EngineError> {
        let now = self.now();
        let policy = stream.release_policy();
        // Most ticks find nothing due; answering that from the stored state alone keeps a daemon's polls
        // and a simulation's clock steps cheap.
        let nothing_due = match (policy.cadence.is_scheduled(), state.handled_until) {
            (false, _) => timed && policy.promote_from.is_none(),
            (true, None) => false,
            (true, Some(handled)) => {
                policy.cadence.due_between(handled, now).next().is_none()
                    && !(state.stale_since.is_some()
                        && policy.on_missed == slipway_model::OnMissed::RetryNightly)
            }
        };
        if nothing_due || ended {
            return Ok(TickOutcome::Nothing);
        }

        let composes = self
            .store
            .candidate_composes(&stream.name, CANDIDATE_WINDOW)
            .await?;
        let (releases, source_releases) = self
            .policy_releases(&stream.name, policy.promote_from.as_ref(), &composes)
            .await?;
        let plan = slipway_release::plan_release(
            &policy,
            &state,
            now,
            &ReleaseInputs {
                composes: &composes,
                releases: &releases,
                source_releases: &source_releases,
            },
        );
        let outcome = match &plan.action {
            ReleaseAction::Release {
                compose,
                why,
                promoted_from,
            } => {
                let release = self
                    .store
                    .create_release(&stream.name, compose, now)
                    .await?;
                let from = promoted_from
                    .as_ref()
                    .zip(policy.promote_from.as_ref())
                    .map(|(version, p)| format!(", promoted from {} {version}", p.stream))
                    .unwrap_or_default();
                self.progress.step(
                    &stream.name,
                    &format!(
                        "release {} of {} chosen: {why}{from}",
                        release.version, release.compose
                    ),
                );
                TickOutcome::Released(release)
            }
            ReleaseAction::MarkStale { since } => TickOutcome::Stale { since: *since },
            _ => TickOutcome::Nothing,
        };
        if plan.state != state || matches!(outcome, TickOutcome::Stale { .. }) {
            let value = serde_json::to_value(&plan.state).unwrap_or_default();
            let current = self
                .store
                .newest_releases(&stream.name, &[ReleaseState::Published], 1)
                .await?
                .into_iter()
                .next()
                .map(|r| r.version.to_string());
            // The stale transitions are events, so the site, announcements and incidents follow them.
            let event = match (state.stale_since, plan.state.stale_since) {
                (None, Some(since)) => Some((
                    topics::STREAM_STALE,
                    json!({"stream": stream.name, "since": since, "current": current}),
                )),
                (Some(since), None) => Some((
                    topics::STREAM_FRESH,
                    json!({"stream": stream.name, "stale_since": since}),
                )),
                _ => None,
            };
            self.store
                .set_state(
                    &cadence_key(&stream.name),
                    &value,
                    event.as_ref().map(|(topic, body)| (*topic, body)),
                    now,
                )
                .await?;
            if let TickOutcome::Stale { since } = &outcome {
                self.progress.step(
                    &stream.name,
                    &format!("no passing compose on the release day {since}: the stream is stale"),
                );
            }
        }
        Ok(outcome)
    }

    /// The releases the release policy needs, read as a bounded slice of the history: the stream's newest
    /// release that is not revoked, and every release made since the oldest compose that could matter;
    /// for a promoted stream, also the source's releases made since the compose the stream last released
    /// (each with its compose).
    ///
    /// That is all [`slipway_release::plan_release`] looks at. A compose is released after it was made,
    /// so every release of a compose among `composes`, or of a source compose newer than the stream's
    /// newest release, was made after the floor; and a release older than the floor concerns a compose
    /// older than every candidate.
    pub(crate) async fn policy_releases(
        &self,
        stream: &str,
        promotion: Option<&slipway_model::Promotion>,
        composes: &[CandidateCompose],
    ) -> Result<(Vec<Release>, Vec<(Release, CandidateCompose)>), EngineError> {
        let kept = self
            .store
            .newest_releases(stream, &ReleaseState::NOT_REVOKED, 1)
            .await?
            .into_iter()
            .next();
        let mut floor = composes.iter().map(|c| c.created_at).min();
        let mut source_releases = Vec::new();
        if let Some(promotion) = promotion {
            // The compose the stream released last bounds which source releases can still be candidates;
            // with none released yet, every one can.
            let released_compose = match &kept {
                Some(release) => self.store.compose(&release.compose).await?,
                None => None,
            };
            let source_floor = released_compose.map_or(jiff::Timestamp::MIN, |c| c.created_at);
            floor = Some(floor.map_or(source_floor, |f| f.min(source_floor)));
            for release in self.releases_since(&promotion.stream, source_floor).await? {
                // The store never releases a compose twice in a stream, so a revoked source release
                // leaves nothing of its compose to promote.
                if release.state == ReleaseState::Revoked {
                    continue;
                }
                if let Some(compose) = self.store.compose(&release.compose).await? {
                    source_releases.push((release, CandidateCompose::of(&compose, None)));
                }
            }
        }
        let mut releases = match floor {
            Some(floor) => self.releases_since(stream, floor).await?,
            None => Vec::new(),
        };
        if let Some(kept) = kept {
            if !releases.iter().any(|r| r.version == kept.version) {
                releases.push(kept);
            }
        }
        Ok((releases, source_releases))
    }

    /// The stream's releases made at or after `since`, newest first, read without the history before.
    pub(crate) async fn releases_since(
        &self,
        stream: &str,
        since: jiff::Timestamp,
    ) -> Result<Vec<Release>, EngineError> {
        Ok(self.store.releases_made_since(stream, since).await?)
    }
}
