//! Security advisories in the engine: loading them from the configured sources, matching a compose's
//! package diff, and recording what a release fixes so its notes never change.

use std::collections::BTreeSet;
use std::path::PathBuf;

use slipway_model::{Compose, MatchedAdvisory, Release, ReleaseState};
use slipway_release::LoadedAdvisories;

use crate::{Engine, EngineError};

/// The prefix of the state records that hold, per release, the advisories its notes list.
const RELEASE_ADVISORIES: &str = "advisories:";

impl Engine {
    /// Where the security tracker's data is cached.
    fn advisory_cache_dir(&self) -> PathBuf {
        self.config.state_dir.join("cache").join("advisories")
    }

    /// The releases (codenames) advisories are kept for: one per stream (the configured `release`, else the
    /// stream's recipe's suite). Always the same set for one config, so the tracker's cache serves every
    /// stream.
    fn advisory_releases(&self) -> BTreeSet<String> {
        self.config
            .streams
            .iter()
            .filter_map(|stream| self.recipe(stream).ok())
            .map(|recipe| self.config.advisories.release_for(&recipe))
            .collect()
    }

    /// Reads every configured advisory source; problems are warnings in the result.
    pub(crate) async fn load_advisories(&self) -> LoadedAdvisories {
        let config = &self.config.advisories;
        if config.files.is_empty() && config.debian_tracker.is_none() {
            return LoadedAdvisories::default();
        }
        slipway_release::load_advisories(
            config,
            &self.advisory_releases(),
            &self.advisory_cache_dir(),
        )
        .await
    }

    /// The advisories a compose's package upgrades fix, for its stream's release, from `loaded`.
    pub(crate) fn match_advisories(
        &self,
        stream: &str,
        compose: &Compose,
        loaded: &LoadedAdvisories,
    ) -> Result<Vec<MatchedAdvisory>, EngineError> {
        if let Some(world) = &self.world {
            return Ok(world.advisories(compose));
        }
        let Some(pkgdiff) = &compose.pkgdiff else {
            return Ok(Vec::new());
        };
        let config = self
            .config
            .stream(stream)
            .ok_or_else(|| EngineError::NotFound(format!("no stream {stream} in the config")))?;
        let release = self.config.advisories.release_for(&self.recipe(config)?);
        let advisories: Vec<_> = loaded
            .advisories
            .iter()
            .filter_map(|a| a.for_release(&release))
            .collect();
        Ok(slipway_release::advisories_for(pkgdiff, &advisories))
    }

    /// The advisories a compose's upgrades fix in a stream, and the warnings met loading them (a broken
    /// advisory file, an unreachable tracker).
    pub async fn advisories_of(
        &self,
        stream: &str,
        compose: &Compose,
    ) -> Result<(Vec<MatchedAdvisory>, Vec<String>), EngineError> {
        let loaded = self.load_advisories().await;
        let matched = self.match_advisories(stream, compose, &loaded)?;
        Ok((matched, loaded.warnings))
    }

    /// Whether a compose must be released at once: an upgrade from a security suite fixes an advisory at
    /// or above its stream's `security-threshold`.
    pub async fn emergency_due(
        &self,
        stream: &str,
        compose: &Compose,
    ) -> Result<bool, EngineError> {
        let threshold = self
            .config
            .stream(stream)
            .ok_or_else(|| EngineError::NotFound(format!("no stream {stream} in the config")))?
            .security_threshold;
        if threshold.severity().is_none() {
            return Ok(false);
        }
        let (matched, _) = self.advisories_of(stream, compose).await?;
        Ok(slipway_release::emergency_due(&matched, threshold))
    }

    /// The advisories recorded for a release when it was first published (none for a release published
    /// before advisories were recorded), as its notes list them.
    pub(crate) async fn recorded_advisories(
        &self,
        release: &Release,
    ) -> Result<Option<Vec<MatchedAdvisory>>, EngineError> {
        let key = format!("{RELEASE_ADVISORIES}{}/{}", release.stream, release.version);
        let Some(value) = self.store.state(&key).await? else {
            return Ok(None);
        };
        serde_json::from_value(value).map(Some).map_err(|err| {
            EngineError::Job(format!(
                "the recorded advisories of {} {} are unreadable: {err}",
                release.stream, release.version
            ))
        })
    }

    /// The advisories a release's notes list. They are matched once, when the release is first published,
    /// and recorded: the notes are signed, so they must not change when an advisory appears or is rated
    /// later. A release published before advisories were recorded lists none. `loaded` is filled on first
    /// need.
    pub(crate) async fn release_advisories(
        &self,
        release: &Release,
        compose: &Compose,
        loaded: &mut Option<LoadedAdvisories>,
    ) -> Result<Vec<MatchedAdvisory>, EngineError> {
        if let Some(recorded) = self.recorded_advisories(release).await? {
            return Ok(recorded);
        }
        if release.state != ReleaseState::Pending {
            return Ok(Vec::new());
        }
        if loaded.is_none() {
            *loaded = Some(self.load_advisories().await);
        }
        let matched = match loaded {
            Some(loaded) => self.match_advisories(&release.stream, compose, loaded)?,
            None => Vec::new(),
        };
        let value = serde_json::to_value(&matched).map_err(|err| {
            EngineError::Job(format!("cannot record the advisories of a release: {err}"))
        })?;
        let key = format!("{RELEASE_ADVISORIES}{}/{}", release.stream, release.version);
        self.store.set_state(&key, &value, None, self.now()).await?;
        Ok(matched)
    }
}

/// The advisories as an announcement names them: one entry per advisory, with every source package it
/// fixes in the release.
pub(crate) fn advisory_refs(matched: &[MatchedAdvisory]) -> Vec<slipway_model::AdvisoryRef> {
    let mut refs: Vec<slipway_model::AdvisoryRef> = Vec::new();
    for m in matched {
        match refs.iter_mut().find(|r| r.id == m.id) {
            Some(existing) => existing.packages.push(m.source.clone()),
            None => refs.push(slipway_model::AdvisoryRef {
                id: m.id.clone(),
                severity: m.severity.to_string(),
                packages: vec![m.source.clone()],
                url: m.url.clone(),
            }),
        }
    }
    refs
}
