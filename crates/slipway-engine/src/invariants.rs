//! The promises a simulation checks as it runs, read from the store and the public tree the engine
//! wrote, never from what the simulation meant to happen:
//!
//! - a release is never of a compose that failed its gate or was marked failed when it was released;
//! - the stream metadata never points at a revoked release;
//! - a stream has at most one open incident;
//! - every nightly that produced no good compose is on an incident;
//! - every release day releases or leaves the stream stale;
//! - a stream's versions strictly increase.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use slipway_model::{CandidateCompose, ComposeId, ComposeState, Release, ReleaseState, Version};

use crate::{Engine, EngineError};

/// Checks the invariants step by step, remembering what it has checked.
#[derive(Debug, Default)]
pub(crate) struct InvariantChecker {
    /// Releases whose gate was checked, by stream and version.
    checked_releases: HashSet<(String, Version)>,
    /// Composes whose nightly outcome was checked.
    checked_composes: HashSet<ComposeId>,
    /// The newest release checked, by stream: when it was made and its version.
    newest_release: HashMap<String, (Timestamp, Version)>,
}

impl InvariantChecker {
    /// Checks everything that can change in a step; returns a line per broken promise. Only releases made
    /// since the last check are read, so a check costs the same in a simulation's tenth year as in its
    /// first.
    pub(crate) async fn check(&mut self, engine: &Engine) -> Result<Vec<String>, EngineError> {
        let mut violations = Vec::new();
        for stream in &engine.config.streams {
            let name = stream.name.as_str();
            let open = engine.store.incidents(Some(name), false).await?;
            if open.len() > 1 {
                violations.push(format!("{name} has {} open incidents", open.len()));
            }
            let since = self
                .newest_release
                .get(name)
                .map_or(Timestamp::MIN, |(at, _)| *at);
            let mut fresh: Vec<Release> = engine
                .releases_since(name, since)
                .await?
                .into_iter()
                .filter(|r| {
                    !self
                        .checked_releases
                        .contains(&(name.to_string(), r.version.clone()))
                })
                .collect();
            // Versions must grow in the order releases were made.
            fresh.sort_by_key(|r| (r.created_at, r.version.clone()));
            for release in &fresh {
                if let Some((_, before)) = self.newest_release.get(name) {
                    if release.version <= *before {
                        violations.push(format!(
                            "{name}: release {} was made after {before} but does not have a higher \
                             version",
                            release.version
                        ));
                    }
                }
                self.newest_release.insert(
                    name.to_string(),
                    (release.created_at, release.version.clone()),
                );
                self.checked_releases
                    .insert((name.to_string(), release.version.clone()));
                let Some(compose) = engine.store.compose(&release.compose).await? else {
                    continue;
                };
                // A promoted compose passed its own stream's gate; a compose of this stream, this one's.
                let decision = engine
                    .decision_at(&compose.stream, &compose.id, release.created_at)
                    .await?;
                if !decision.passed {
                    violations.push(format!(
                        "{name}: release {} is of {}, which had not passed its gate when it was \
                         released ({})",
                        release.version, compose.id, decision.summary
                    ));
                }
            }
            for version in published_versions(engine, name)? {
                let revoked = match version.parse::<Version>() {
                    Ok(version) => engine
                        .store
                        .release(name, &version)
                        .await?
                        .is_some_and(|r| r.state == ReleaseState::Revoked),
                    Err(_) => false,
                };
                if revoked {
                    violations.push(format!(
                        "{name}: the stream metadata points at the revoked release {version}"
                    ));
                }
            }
            violations.extend(self.check_nightlies(engine, name).await?);
        }
        Ok(violations)
    }

    /// Every compose of the stream whose build failed, or whose gate failed while it was the newest, is
    /// named by one of the stream's incidents.
    async fn check_nightlies(
        &mut self,
        engine: &Engine,
        stream: &str,
    ) -> Result<Vec<String>, EngineError> {
        let composes = engine.store.candidate_composes(stream, 10).await?;
        let mut violations = Vec::new();
        for (index, compose) in composes.iter().enumerate() {
            if self.checked_composes.contains(&compose.id) || compose.state == ComposeState::Running
            {
                continue;
            }
            let bad = match &compose.state {
                ComposeState::Failed { .. } => true,
                ComposeState::Complete => match compose.passed {
                    // Undecided yet: check it at a later step.
                    None => continue,
                    // Only the newest compose speaks for the nightly; a newer one decides an older
                    // compose's failure out of the incident's scope.
                    Some(passed) => !passed && index == 0,
                },
                ComposeState::Running => continue,
            };
            self.checked_composes.insert(compose.id.clone());
            if !bad {
                continue;
            }
            // The newest incidents answer at once; the whole history only confirms a miss.
            if !on_a_recent_incident(engine, stream, compose).await?
                && !incident_composes(engine, stream)
                    .await?
                    .contains(&compose.id)
            {
                violations.push(format!(
                    "{stream}: the nightly {} produced no good compose but is on no incident",
                    compose.id
                ));
            }
        }
        Ok(violations)
    }

    /// After a release day at `due` was served: the stream released then or is stale.
    pub(crate) async fn check_release_day(
        &self,
        engine: &Engine,
        stream: &str,
        due: Timestamp,
    ) -> Result<Option<String>, EngineError> {
        if engine.end_of_life_of(stream).await?.is_some() {
            return Ok(None);
        }
        let released = !engine.releases_since(stream, due).await?.is_empty();
        let stale = engine.cadence_state(stream).await?.stale_since.is_some();
        Ok((!released && !stale).then(|| {
            format!("{stream}: the release day {due} neither released nor left the stream stale")
        }))
    }
}

/// Whether one of the incidents opened since `compose` was made, or the newest one opened before it (the one
/// that was open then, if any), names it: read newest first, a few at a time. At most one incident is open at
/// a time, so an older incident was closed before the compose was made and cannot name it.
async fn on_a_recent_incident(
    engine: &Engine,
    stream: &str,
    compose: &CandidateCompose,
) -> Result<bool, EngineError> {
    let mut limit = 4;
    loop {
        let incidents = engine.store.newest_incidents(stream, limit).await?;
        for incident in &incidents {
            let names = incident.compose == compose.id
                || incident
                    .comments
                    .iter()
                    .any(|c| c.compose.as_ref() == Some(&compose.id));
            if names {
                return Ok(true);
            }
            if incident.opened_at < compose.created_at {
                return Ok(false);
            }
        }
        if incidents.len() < limit {
            return Ok(false);
        }
        limit *= 4;
    }
}

/// The composes named by a stream's incidents, open or closed.
async fn incident_composes(
    engine: &Engine,
    stream: &str,
) -> Result<HashSet<ComposeId>, EngineError> {
    let mut named = HashSet::new();
    for incident in engine.store.incidents(Some(stream), true).await? {
        named.insert(incident.compose.clone());
        named.extend(incident.comments.into_iter().filter_map(|c| c.compose));
    }
    Ok(named)
}

/// The versions the stream's published metadata points at (one per platform, all the same when sane).
fn published_versions(engine: &Engine, stream: &str) -> Result<Vec<String>, EngineError> {
    let path = engine
        .config
        .publish_dir
        .join("streams")
        .join(format!("{stream}.json"));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(EngineError::Io {
                action: "reading",
                path,
                source,
            })
        }
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|err| EngineError::Job(format!("{} is not JSON: {err}", path.display())))?;
    let mut versions = Vec::new();
    if let Some(architectures) = doc.get("architectures").and_then(|a| a.as_object()) {
        for arch in architectures.values() {
            if let Some(artifacts) = arch.get("artifacts").and_then(|a| a.as_object()) {
                for platform in artifacts.values() {
                    if let Some(release) = platform.get("release").and_then(|r| r.as_str()) {
                        versions.push(release.to_string());
                    }
                }
            }
        }
    }
    Ok(versions)
}
