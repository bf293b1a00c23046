//! One full cycle for every stream: compose → test → gate → release → publish.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use serde::Serialize;
use slipway_model::{ComposeState, Release, ReleaseState};
use slipway_store::NewJob;

use crate::jobs::{ComposeJob, JobKind};
use crate::watch::Plan;
use crate::{Engine, EngineError, EMBEDDED_WORKER_PREFIX};

/// Why a cycle runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A person ran it (`slipway run --once`): a stream whose newest compose failed is tried again.
    Manual,
    /// A stream's nightly time came: like manual, for the streams that are due.
    Nightly,
    /// A poll saw a package source or a recipe change: failures are retried only if something changed.
    Change,
}

/// What a cycle should do.
#[derive(Debug, Clone)]
pub struct CycleOptions {
    /// Compose even when nothing changed.
    pub force: bool,
    /// Why the cycle runs.
    pub trigger: Trigger,
    /// The streams to consider; `None` for all.
    pub streams: Option<Vec<String>>,
    /// Refresh the package sources first; false when the caller has just done so (a daemon tick).
    pub refresh_sources: bool,
}

impl CycleOptions {
    /// A cycle a person asked for, over every stream.
    pub fn manual(force: bool) -> Self {
        Self {
            force,
            trigger: Trigger::Manual,
            streams: None,
            refresh_sources: true,
        }
    }
}

/// What a cycle did for one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamOutcome {
    /// The stream.
    pub stream: String,
    /// The compose built in this cycle, or the unchanged last compose when it was skipped.
    pub compose: Option<String>,
    /// Its final state: complete, failed, running, or unchanged (skipped).
    pub compose_state: Option<String>,
    /// True when nothing the stream is built from changed, so nothing was built.
    pub skipped: bool,
    /// Why the stream was composed or skipped.
    pub reason: String,
    /// Why it failed, or why the gate said no.
    pub problem: Option<String>,
    /// The stream's newest published release after the cycle.
    pub release: Option<Release>,
    /// Whether that release was made in this cycle.
    pub released_now: bool,
}

/// What a cycle did.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    /// Per stream.
    pub streams: Vec<StreamOutcome>,
    /// The public tree.
    pub publish_dir: PathBuf,
    /// The download page.
    pub index_html: PathBuf,
}

impl CycleReport {
    /// True when every stream ended with a good compose released, or was unchanged.
    pub fn all_good(&self) -> bool {
        self.streams.iter().all(|s| s.problem.is_none())
    }
}

/// How long taking the state directory's lock waits out a momentary holder before reporting it busy.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);
/// How often it tries meanwhile.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

impl Engine {
    /// Runs one cycle for every stream, as a person asking for it: see [`Engine::run_cycle`].
    pub async fn run_once(&self) -> Result<CycleReport, EngineError> {
        self.run_cycle(&CycleOptions::manual(false)).await
    }

    /// Runs one cycle and returns when all work it caused is done: refreshes the package sources, decides
    /// per stream whether anything changed, composes what did, and tests, gates, releases and publishes.
    ///
    /// Holds the state directory's lock for the whole cycle. Work left over by an earlier process that died
    /// (leased jobs, unhandled events, running composes) is picked up first, so running again after a kill
    /// finishes what was started instead of starting it twice.
    pub async fn run_cycle(&self, options: &CycleOptions) -> Result<CycleReport, EngineError> {
        let _lock = self.lock_state_dir()?;
        // Mistakes in recipes are the cheapest to find and fix, so they are reported before anything else.
        let mut selected = Vec::new();
        // Streams often share a recipe file: each file is read once per cycle.
        let mut recipes: std::collections::HashMap<&std::path::Path, slipway_model::Recipe> =
            std::collections::HashMap::new();
        for stream in &self.config.streams {
            if options
                .streams
                .as_ref()
                .is_some_and(|names| !names.contains(&stream.name))
            {
                continue;
            }
            let recipe = match recipes.get(stream.recipe.as_path()) {
                Some(recipe) => recipe.clone(),
                None => {
                    let recipe = self.recipe(stream)?;
                    recipes.insert(stream.recipe.as_path(), recipe.clone());
                    recipe
                }
            };
            selected.push((stream, recipe));
        }
        if self.world.is_none() {
            self.preflight().await?;
        } else {
            self.signer().await?;
        }
        let returned = self.store.release_leases(EMBEDDED_WORKER_PREFIX).await?;
        if returned > 0 {
            tracing::info!(
                returned,
                "took over jobs of an earlier process that stopped"
            );
        }
        let recipes: Vec<&slipway_model::Recipe> = selected.iter().map(|(_, r)| r).collect();
        if options.refresh_sources && self.world.is_none() {
            self.refresh_sources(&recipes).await?;
        }

        let mut started = Vec::new();
        let mut skipped = Vec::new();
        for (stream, recipe) in &selected {
            let now = self.now();
            if let Some(ended) = self.end_of_life_of(&stream.name).await? {
                self.progress.step(
                    &stream.name,
                    &format!("reached its end of life at {}; nothing composed", ended.at),
                );
                continue;
            }
            // Only the newest compose can be unfinished: a cycle starts a compose only after resuming
            // the stream's unfinished one.
            let unfinished = match self
                .store
                .candidate_composes(&stream.name, 1)
                .await?
                .into_iter()
                .find(|c| c.state == ComposeState::Running)
            {
                Some(newest) => self.store.compose(&newest.id).await?,
                None => None,
            };
            let (compose, reason, expected_from) = match unfinished {
                Some(compose) => {
                    self.progress.step(
                        &stream.name,
                        &format!("resuming unfinished compose {}", compose.id),
                    );
                    (compose, "resuming an interrupted compose".to_string(), None)
                }
                None => {
                    let retry = options.trigger != Trigger::Change;
                    match self
                        .plan_compose(stream, recipe, options.force, retry)
                        .await?
                    {
                        Plan::Skip {
                            compose,
                            input_hash,
                        } => {
                            self.record_skip(&stream.name, &recipe.name, &compose, &input_hash)
                                .await?;
                            self.progress.step(
                                &stream.name,
                                &format!("unchanged since compose {compose} (input {input_hash}); nothing to build"),
                            );
                            skipped.push((stream.name.clone(), compose));
                            continue;
                        }
                        Plan::Build {
                            reason,
                            expected_lock_from,
                        } => {
                            let compose = self
                                .store
                                .create_compose(&stream.name, &recipe.name, &recipe.hash(), now)
                                .await?;
                            self.progress.step(
                                &stream.name,
                                &format!("compose {} queued: {reason}", compose.id),
                            );
                            (compose, reason, expected_lock_from)
                        }
                    }
                }
            };
            self.store
                .enqueue_job(
                    &NewJob {
                        kind: JobKind::Compose.name().into(),
                        key: format!("compose:{}", compose.id),
                        payload: serde_json::to_value(ComposeJob {
                            compose: compose.id.clone(),
                            expected_lock_from: expected_from,
                        })
                        .unwrap_or_default(),
                    },
                    now,
                )
                .await?;
            started.push((stream.name.clone(), compose.id, reason));
        }

        // Releases chosen before a crash but never published get a fresh publish job.
        for (stream, _) in &selected {
            for release in self
                .store
                .newest_releases(&stream.name, &[ReleaseState::Pending], usize::MAX)
                .await?
            {
                self.enqueue_publish(&release, true).await?;
            }
        }

        self.drain().await?;
        // Release days and promotions that came due are served now, so a `run --once` on a release day
        // releases without waiting for a daemon.
        let states = self.stream_states().await?;
        for (stream, _) in &selected {
            self.release_tick_with(
                stream,
                true,
                states.cadence(&stream.name),
                states.end_of_life(&stream.name).is_some(),
            )
            .await?;
        }
        self.drain().await?;

        // A compose whose job was given up (it crashed the worker every time) must not stay "running"
        // forever: that would block the stream's next cycle.
        let mut finished = HashMap::new();
        for (_, id, _) in &started {
            let Some(mut compose) = self.store.compose(id).await? else {
                continue;
            };
            if compose.state == ComposeState::Running {
                let failures = self.store.failed_jobs(50).await?;
                let last = failures
                    .iter()
                    .find(|(job, _)| job.key == format!("compose:{id}"))
                    .map(|(_, e)| e.clone())
                    .unwrap_or_else(|| "the compose job did not finish".into());
                self.store.fail_compose(id, &last, self.now()).await?;
                self.drain().await?;
                if let Some(failed) = self.store.compose(id).await? {
                    compose = failed;
                }
            }
            finished.insert(id.clone(), compose);
        }

        let mut report = Vec::new();
        for (stream, id) in skipped {
            let release = self.current_release(&stream).await?;
            report.push(StreamOutcome {
                stream,
                compose: Some(id.to_string()),
                compose_state: Some("unchanged".into()),
                skipped: true,
                reason: "the recipe and every package in the last compose's lock are unchanged"
                    .into(),
                problem: None,
                release,
                released_now: false,
            });
        }
        for (stream, id, reason) in started {
            let compose = finished.remove(&id);
            let decision = self.store.latest_decision(&id, &stream).await?;
            let release = self.current_release(&stream).await?;
            let released_now = release.as_ref().is_some_and(|r| r.compose == id);
            let problem = match (&compose, &decision) {
                (Some(c), _) if matches!(c.state, ComposeState::Failed { .. }) => {
                    Some(match &c.state {
                        ComposeState::Failed { reason } => format!("compose failed: {reason}"),
                        _ => String::new(),
                    })
                }
                (_, Some(d)) if !d.passed => Some(format!(
                    "gate: {}{}",
                    d.summary,
                    d.unsatisfied
                        .iter()
                        .map(|u| format!("\n  - {}", u.detail))
                        .collect::<String>()
                )),
                (_, None) => Some("no gate decision was reached".into()),
                _ if !released_now => Some("the compose passed but was not published".into()),
                _ => None,
            };
            report.push(StreamOutcome {
                stream,
                compose: Some(id.to_string()),
                compose_state: compose.map(|c| c.state.name().to_string()),
                skipped: false,
                reason,
                problem,
                release,
                released_now,
            });
        }
        let publish_dir = self.config.publish_dir.clone();
        Ok(CycleReport {
            streams: report,
            index_html: publish_dir.join("index.html"),
            publish_dir,
        })
    }

    /// Handles events and runs jobs until neither is left.
    pub(crate) async fn drain(&self) -> Result<(), EngineError> {
        loop {
            let handled = self.handle_pending_events().await?;
            let ran = self.run_next_job().await?;
            if handled == 0 && !ran {
                return Ok(());
            }
        }
    }

    /// Checks what a cycle needs before spending minutes on a compose: the tools and the signing key.
    async fn preflight(&self) -> Result<(), EngineError> {
        slipway_exec::require_programs(&[
            "mmdebstrap",
            "mkfs.ext4",
            "mkfs.vfat",
            "mcopy",
            "qemu-img",
            "qemu-system-x86_64",
            "gpg",
        ])?;
        self.signer().await?;
        Ok(())
    }

    /// Takes the state directory's lock, so two daemons never work on one project.
    pub(crate) fn lock_state_dir(&self) -> Result<File, EngineError> {
        let dir = &self.config.state_dir;
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
            action: "creating",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("run.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| EngineError::Io {
                action: "opening",
                path: path.clone(),
                source,
            })?;
        // A lock is held by an open file description, which a child process shares between its fork and
        // its exec: a process spawned by another thread at the wrong moment holds the lock for an
        // instant. A short wait tells that apart from another slipway that holds it for real.
        let mut waited = std::time::Duration::ZERO;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if waited < LOCK_PATIENCE => {
                    std::thread::sleep(LOCK_RETRY);
                    waited += LOCK_RETRY;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(EngineError::Busy(dir.clone()))
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(EngineError::Io {
                        action: "locking",
                        path,
                        source,
                    })
                }
            }
        }
    }
}
