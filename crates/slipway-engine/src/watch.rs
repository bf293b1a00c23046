//! Change detection: refreshing package sources, and deciding per stream whether anything it is built from
//! changed since its last compose.
//!
//! The check uses the lock of the stream's last complete compose and asks the repositories, through
//! [`slipway_repo::check_lock`], whether any locked package moved or the resolver's choices could differ
//! (see that module for why this cannot miss a change). When the recipe is unchanged too, the would-be input
//! hash equals the last compose's and nothing is built.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use slipway_model::{
    topics, Compose, ComposeId, ComposeState, InputHash, Lock, PkgDiff, Recipe, Sha256,
    StreamConfig,
};
use slipway_repo::{AptRepo, AptSource, PackageIndex, VersionScheme};

use crate::{Engine, EngineError};

/// What change detection decided for one stream.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// Compose: something changed, or there is nothing to compare with.
    Build {
        /// Why, for the progress line.
        reason: String,
        /// The compose whose lock this one should install when only the recipe changed (lets the
        /// installed tree be reused).
        expected_lock_from: Option<ComposeId>,
    },
    /// Nothing changed since `compose`.
    Skip {
        /// The last compose, which stays current.
        compose: ComposeId,
        /// Its input hash, which the would-be compose would have too.
        input_hash: InputHash,
    },
}

/// The stored status of one package source: its last good digest and how its last refresh went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Base URL.
    pub url: String,
    /// Suite.
    pub suite: String,
    /// Digest of the last good signed index; `None` before the first good refresh.
    pub digest: Option<String>,
    /// When the last good refresh happened.
    pub good_at: Option<Timestamp>,
    /// When it was last tried.
    pub checked_at: Timestamp,
    /// Why the last refresh failed, if it did.
    pub error: Option<String>,
    /// Refreshes failed in a row.
    pub failures: u32,
}

/// The last change check of a stream, kept so an unchanged stream is recognized without parsing indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CheckRecord {
    recipe_hash: Sha256,
    digests: Vec<String>,
    compose: ComposeId,
    unchanged: bool,
}

fn source_key(source: &AptSource) -> String {
    format!(
        "source:{} {}",
        source.url.trim_end_matches('/'),
        source.suite
    )
}

fn check_key(stream: &str) -> String {
    format!("check:{stream}")
}

/// The apt sources of a recipe.
pub(crate) fn apt_sources(recipe: &Recipe) -> Vec<AptSource> {
    recipe
        .sources
        .iter()
        .map(|s| AptSource::from_package_source(s, &recipe.architecture))
        .collect()
}

impl Engine {
    pub(crate) async fn repos(&self) -> Result<&AptRepo, EngineError> {
        self.repos
            .get_or_try_init(|| async {
                AptRepo::new(
                    self.config.state_dir.join("cache/repo"),
                    Arc::clone(&self.runner),
                )
                .map(|repo| repo.with_clock(Arc::clone(&self.clock)))
            })
            .await
            .map_err(EngineError::from)
    }

    /// Refreshes every distinct source of `recipes` once. Each outcome is stored as the source's status,
    /// with a `repo.changed` or `repo.refresh_failed` event. A failed refresh keeps the last good
    /// metadata in use. Returns the keys of the sources whose metadata changed.
    pub(crate) async fn refresh_sources(
        &self,
        recipes: &[&Recipe],
    ) -> Result<BTreeSet<String>, EngineError> {
        let mut sources: BTreeMap<String, AptSource> = BTreeMap::new();
        for recipe in recipes {
            for source in apt_sources(recipe) {
                sources.entry(source_key(&source)).or_insert(source);
            }
        }
        let repos = self.repos().await?;
        let mut changed = BTreeSet::new();
        for (key, source) in sources {
            let previous: Option<SourceStatus> = self
                .store
                .state(&key)
                .await?
                .and_then(|v| serde_json::from_value(v).ok());
            let now = self.now();
            let (status, event) = match repos.refresh(&source).await {
                Ok(refresh) => {
                    let status = SourceStatus {
                        url: source.url.clone(),
                        suite: source.suite.clone(),
                        digest: Some(refresh.digest.clone()),
                        good_at: Some(now),
                        checked_at: now,
                        error: None,
                        failures: 0,
                    };
                    let was = previous.as_ref().and_then(|p| p.digest.clone());
                    let event = (was.as_deref() != Some(refresh.digest.as_str())).then(|| {
                        changed.insert(key.clone());
                        (
                            topics::REPO_CHANGED,
                            serde_json::json!({
                                "url": source.url,
                                "suite": source.suite,
                                "digest": refresh.digest,
                                "previous_digest": was,
                            }),
                        )
                    });
                    (status, event)
                }
                Err(err) => {
                    let error = format!("{err}");
                    tracing::warn!(source = %key, "refresh failed: {error}");
                    let failures = previous.as_ref().map_or(0, |p| p.failures) + 1;
                    let status = SourceStatus {
                        url: source.url.clone(),
                        suite: source.suite.clone(),
                        digest: previous.as_ref().and_then(|p| p.digest.clone()),
                        good_at: previous.as_ref().and_then(|p| p.good_at),
                        checked_at: now,
                        error: Some(error.clone()),
                        failures,
                    };
                    let event = (
                        topics::REPO_REFRESH_FAILED,
                        serde_json::json!({
                            "url": source.url,
                            "suite": source.suite,
                            "error": error,
                            "failures": failures,
                            "last_good_digest": status.digest,
                        }),
                    );
                    (status, Some(event))
                }
            };
            let value = serde_json::to_value(&status).unwrap_or_default();
            self.store
                .set_state(&key, &value, event.as_ref().map(|(t, b)| (*t, b)), now)
                .await?;
        }
        Ok(changed)
    }

    /// The stored status of every package source.
    pub async fn source_statuses(&self) -> Result<Vec<SourceStatus>, EngineError> {
        Ok(self
            .store
            .states("source:")
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_value(v).ok())
            .collect())
    }

    /// The source keys a recipe reads.
    pub(crate) fn source_keys(recipe: &Recipe) -> Vec<String> {
        apt_sources(recipe).iter().map(source_key).collect()
    }

    /// The digests of a recipe's sources' last good metadata, in source order; `None` if a source has
    /// never been refreshed successfully.
    async fn recipe_digests(&self, recipe: &Recipe) -> Result<Option<Vec<String>>, EngineError> {
        let mut digests = Vec::new();
        for key in Self::source_keys(recipe) {
            let status: Option<SourceStatus> = self
                .store
                .state(&key)
                .await?
                .and_then(|v| serde_json::from_value(v).ok());
            match status.and_then(|s| s.digest) {
                Some(d) => digests.push(d),
                None => return Ok(None),
            }
        }
        Ok(Some(digests))
    }

    /// Every package a recipe's sources list now (their last good metadata).
    pub(crate) async fn recipe_index(&self, recipe: &Recipe) -> Result<PackageIndex, EngineError> {
        let repos = self.repos().await?;
        let mut snapshots = Vec::new();
        for source in apt_sources(recipe) {
            snapshots.push(repos.snapshot(&source).await?);
        }
        Ok(PackageIndex::new(snapshots))
    }

    /// The newest complete compose of a stream, and the newest compose of any state.
    async fn last_composes(
        &self,
        stream: &str,
    ) -> Result<(Option<Compose>, Option<Compose>), EngineError> {
        // Mostly the newest compose is also the newest complete one; only when it is not are more read.
        let newest = self
            .store
            .composes(Some(stream), 1)
            .await?
            .into_iter()
            .next();
        if let Some(compose) = newest
            .as_ref()
            .filter(|c| c.state == ComposeState::Complete && c.lock.is_some())
        {
            return Ok((Some(compose.clone()), newest.clone()));
        }
        let complete = self.store.newest_locked_compose(stream).await?;
        Ok((complete, newest))
    }

    /// Decides whether `stream` needs a compose. `retry_failed` makes a stream whose newest compose failed
    /// build again even if nothing changed (a person asked, or the nightly is due); otherwise a failure is
    /// retried only when something changes.
    pub(crate) async fn plan_compose(
        &self,
        stream: &StreamConfig,
        recipe: &Recipe,
        force: bool,
        retry_failed: bool,
    ) -> Result<Plan, EngineError> {
        if force {
            return Ok(Plan::Build {
                reason: "forced".into(),
                expected_lock_from: None,
            });
        }
        let (last, newest) = self.last_composes(&stream.name).await?;
        let Some(last) = last else {
            return Ok(Plan::Build {
                reason: "no earlier compose to compare with".into(),
                expected_lock_from: None,
            });
        };
        let (Some(lock), Some(input_hash)) = (last.lock.clone(), last.input_hash.clone()) else {
            return Ok(Plan::Build {
                reason: "the last compose has no lock".into(),
                expected_lock_from: None,
            });
        };
        let newest_failed = newest
            .as_ref()
            .is_some_and(|c| c.id != last.id && matches!(c.state, ComposeState::Failed { .. }));
        let recipe_hash = recipe.hash();
        if let Some(world) = &self.world {
            let today = self.now().to_zoned(jiff::tz::TimeZone::UTC).date();
            return Ok(if world.inputs_changed(&stream.name, today) {
                Plan::Build {
                    reason: "packages changed (simulated)".into(),
                    expected_lock_from: None,
                }
            } else if newest_failed && retry_failed {
                Plan::Build {
                    reason: "the newest compose failed; trying again".into(),
                    expected_lock_from: Some(last.id.clone()),
                }
            } else {
                Plan::Skip {
                    compose: last.id,
                    input_hash,
                }
            });
        }
        let Some(digests) = self.recipe_digests(recipe).await? else {
            return Ok(Plan::Build {
                reason: "a package source has no good metadata to check against".into(),
                expected_lock_from: None,
            });
        };

        // Same recipe, same metadata as a check that found nothing: nothing to parse.
        let record: Option<CheckRecord> = self
            .store
            .state(&check_key(&stream.name))
            .await?
            .and_then(|v| serde_json::from_value(v).ok());
        let known_unchanged = record.as_ref().is_some_and(|r| {
            r.unchanged
                && r.compose == last.id
                && r.digests == digests
                && r.recipe_hash == last.recipe_hash
        });
        if !known_unchanged {
            let index = self.recipe_index(recipe).await?;
            let check = slipway_repo::check_lock(&lock, &index, &recipe.variant);
            let record = CheckRecord {
                recipe_hash: last.recipe_hash.clone(),
                digests,
                compose: last.id.clone(),
                unchanged: check.unchanged(),
            };
            self.store
                .set_state(
                    &check_key(&stream.name),
                    &serde_json::to_value(&record).unwrap_or_default(),
                    None,
                    self.now(),
                )
                .await?;
            if !check.unchanged() {
                let shown: Vec<String> = check
                    .changes
                    .iter()
                    .take(5)
                    .map(|c| c.to_string())
                    .collect();
                let more = check.changes.len().saturating_sub(shown.len());
                let mut reason = format!("packages changed: {}", shown.join("; "));
                if more > 0 {
                    reason.push_str(&format!(" and {more} more"));
                }
                return Ok(Plan::Build {
                    reason,
                    expected_lock_from: None,
                });
            }
        }
        // Every locked package is still what the repositories offer.
        if recipe_hash != last.recipe_hash {
            return Ok(Plan::Build {
                reason: format!("recipe {} changed", recipe.name),
                expected_lock_from: Some(last.id.clone()),
            });
        }
        if newest_failed && retry_failed {
            return Ok(Plan::Build {
                reason: "the newest compose failed; trying again".into(),
                expected_lock_from: Some(last.id.clone()),
            });
        }
        Ok(Plan::Skip {
            compose: last.id,
            input_hash,
        })
    }

    /// Records that a stream was checked and skipped.
    pub(crate) async fn record_skip(
        &self,
        stream: &str,
        recipe: &str,
        compose: &ComposeId,
        input_hash: &InputHash,
    ) -> Result<(), EngineError> {
        self.store
            .append_event(
                topics::COMPOSE_SKIPPED,
                &serde_json::json!({
                    "stream": stream,
                    "recipe": recipe,
                    "compose": compose,
                    "input_hash": input_hash,
                    "reason": "the recipe and every package in the last compose's lock are unchanged",
                }),
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// Completes a freshly built lock with what the repositories know (the suite each version came from,
    /// source package names, the selection hash) and computes the pkgdiff against the recipe's previous
    /// compose. The package checksums, part of the input hash, come from the composer and are not touched.
    pub(crate) async fn annotate_lock(
        &self,
        recipe: &Recipe,
        compose: &ComposeId,
        mut lock: Lock,
    ) -> Result<(Lock, PkgDiff), EngineError> {
        match self.recipe_index(recipe).await {
            Ok(index) => {
                for package in &mut lock.packages {
                    if let Some(found) =
                        index.exact(&package.name, &package.architecture, &package.version)
                    {
                        package.suite = Some(found.suite.to_string());
                        if package.source.is_none() && found.package.source != package.name {
                            package.source = Some(found.package.source.clone());
                        }
                    }
                }
                let architecture = recipe.architecture.clone();
                lock.selection_hash = Some(slipway_repo::selection_hash(
                    &lock,
                    &index,
                    &recipe.variant,
                    &architecture,
                ));
            }
            Err(err) => {
                // Without metadata the lock stays valid; the missing selection hash makes the next check
                // rebuild rather than guess.
                tracing::warn!("cannot annotate the lock of {compose}: {err}");
            }
        }
        let previous = self
            .store
            .latest_complete_compose(&recipe.name, Some(compose))
            .await?;
        let diff = slipway_repo::pkgdiff(
            previous
                .as_ref()
                .and_then(|c| c.lock.as_ref().map(|l| (&c.id, l))),
            &lock,
            VersionScheme::Debian,
        );
        Ok((lock, diff))
    }
}

/// The streams a daemon tick runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    /// Streams whose nightly is due (UTC day `today`).
    pub(crate) nightly: Vec<String>,
    /// Streams whose recipe or a source of it changed.
    pub(crate) changed: Vec<String>,
    /// Recipe hashes to remember as seen.
    pub(crate) seen: Vec<(String, Sha256)>,
    /// The UTC day of the tick.
    pub(crate) today: String,
}

fn nightly_key(stream: &str) -> String {
    format!("nightly:{stream}")
}

fn recipe_seen_key(stream: &str) -> String {
    format!("recipe-seen:{stream}")
}

impl Engine {
    /// One poll of the daemon: refreshes the package sources, notices recipe edits and due nightlies, and
    /// runs a cycle for the streams that any of them touched. Returns `None` when nothing was due.
    ///
    /// A source change triggers the streams whose recipes read that source; a recipe edit triggers its
    /// stream once; a nightly triggers once per UTC day, at the first poll after its time. Each triggered
    /// stream still composes only if its would-be input hash differs from its last compose's.
    pub async fn watch_tick(&self) -> Result<Option<crate::CycleReport>, EngineError> {
        self.tick_releases().await?;
        let due = self.due_streams().await?;
        if due.nightly.is_empty() && due.changed.is_empty() {
            self.mark_triggered(&due).await?;
            return Ok(None);
        }
        let mut report: Option<crate::CycleReport> = None;
        for (streams, trigger) in [
            (&due.nightly, crate::Trigger::Nightly),
            (&due.changed, crate::Trigger::Change),
        ] {
            if streams.is_empty() {
                continue;
            }
            let cycle = self
                .run_cycle(&crate::CycleOptions {
                    force: false,
                    trigger,
                    streams: Some(streams.clone()),
                    // due_streams refreshed them a moment ago.
                    refresh_sources: false,
                })
                .await?;
            report = Some(match report {
                None => cycle,
                Some(mut earlier) => {
                    earlier.streams.extend(cycle.streams);
                    earlier
                }
            });
        }
        self.mark_triggered(&due).await?;
        Ok(report)
    }

    /// Refreshes the sources and works out which streams a daemon tick should run, and why.
    pub(crate) async fn due_streams(&self) -> Result<Due, EngineError> {
        let now = self.now();
        let mut recipes = Vec::new();
        for stream in &self.config.streams {
            recipes.push((stream, self.recipe(stream)?));
        }
        let refs: Vec<&Recipe> = recipes.iter().map(|(_, r)| r).collect();
        let changed_sources = self.refresh_sources(&refs).await?;

        let mut due = Due {
            today: now.strftime("%Y-%m-%d").to_string(),
            ..Due::default()
        };
        let second_of_day = now.as_second().rem_euclid(86_400);
        for (stream, recipe) in &recipes {
            let hash = recipe.hash();
            let seen = self.store.state(&recipe_seen_key(&stream.name)).await?;
            let edited = seen.as_ref().and_then(|v| v.as_str()) != Some(hash.as_str());
            if edited {
                due.seen.push((stream.name.clone(), hash));
            }
            if let Some(at) = stream.nightly {
                let last = self.store.state(&nightly_key(&stream.name)).await?;
                if second_of_day >= at.seconds()
                    && last.as_ref().and_then(|v| v.as_str()) != Some(due.today.as_str())
                {
                    due.nightly.push(stream.name.clone());
                    continue;
                }
            }
            let source_moved = Self::source_keys(recipe)
                .iter()
                .any(|k| changed_sources.contains(k));
            if edited || source_moved {
                due.changed.push(stream.name.clone());
            }
        }
        Ok(due)
    }

    /// Remembers what a tick acted on: the nightlies run today and the recipe versions seen.
    pub(crate) async fn mark_triggered(&self, due: &Due) -> Result<(), EngineError> {
        let now = self.now();
        for stream in &due.nightly {
            self.store
                .set_state(
                    &nightly_key(stream),
                    &serde_json::json!(due.today),
                    None,
                    now,
                )
                .await?;
        }
        for (stream, hash) in &due.seen {
            self.store
                .set_state(
                    &recipe_seen_key(stream),
                    &serde_json::json!(hash.as_str()),
                    None,
                    now,
                )
                .await?;
        }
        Ok(())
    }
}
