//! The release engineering brain.
//!
//! The engine is the only part of slipway that moves data between the [`Store`] and the capabilities
//! (compose, boot test, gate, release, publish). It works from events: each state change in the store
//! appends an event in the same transaction, and the engine reacts to the events it has not handled yet by
//! deciding, releasing and enqueuing jobs. Jobs (compose, test, publish) are leased from the store and run
//! by workers; in the embedded default those workers are tasks of this process.
//!
//! Because reactions are keyed by event id and jobs by a unique key, a process killed at any point is
//! recovered by running again: leases of the dead process are returned, unhandled events are handled, and
//! nothing is done twice.

mod advisories;
#[cfg(test)]
mod advisory_tests;
mod blobs;
mod cycle;
#[cfg(test)]
mod gate_tests;
mod gc;
#[cfg(test)]
mod gc_tests;
mod handlers;
#[cfg(test)]
mod incident_tests;
mod incidents;
mod invariants;
mod jobs;
mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
mod notify;
#[cfg(test)]
mod notify_tests;
mod queries;
mod release;
#[cfg(test)]
mod release_tests;
#[cfg(test)]
mod signer_tests;
mod simulate;
#[cfg(test)]
mod simulation_tests;
#[cfg(test)]
mod tests;
mod watch;
#[cfg(test)]
mod watch_tests;
mod world;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use slipway_exec::{CommandRunner, SystemRunner};
use slipway_model::{
    Clock, Compose, ComposeId, Config, Decision, GateConfig, NewWaiver, Requirement, SystemClock,
    Verdict, Waiver,
};
use slipway_store::{SqliteStore, Store, StoreError};

pub use blobs::{BlobFile, BlobStore};
pub use cycle::{CycleOptions, CycleReport, StreamOutcome, Trigger};
pub use gc::{BlobReason, DeletedBlob, GcReport};
pub use incidents::MirrorSync;
pub use lifecycle::{EndOfLife, OutOfCycle, OutOfCycleRequest, RevocationOutcome};
pub use notify::{retry_delay, DeliveryReport};
pub use queries::RecipeChanges;
pub use release::TickOutcome;
pub use simulate::{SimulationOptions, SimulationReport, SimulationSummary, TimelineEntry};
pub use watch::SourceStatus;
pub use world::{SeededWorld, SimulatedBuild, SimulatedWorld};

/// How long a worker holds a job before another may take it over; renewed while the job runs.
const LEASE: Duration = Duration::from_secs(600);
/// How often a running job renews its lease.
const HEARTBEAT: Duration = Duration::from_secs(60);
/// How many times a job is claimed before it is given up.
const MAX_ATTEMPTS: u32 = 3;
/// The name under which the engine records the events it handled.
const HANDLER: &str = "engine";
/// Workers of the embedded daemon are named with this prefix; whoever holds the state directory's lock
/// knows that any lease held under it belongs to a dead process.
const EMBEDDED_WORKER_PREFIX: &str = "embedded@";

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A config or recipe file is wrong.
    #[error(transparent)]
    Config(#[from] slipway_model::ConfigError),
    /// A local file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another `slipway run` holds the state directory.
    #[error(
        "another slipway process is running on {0} (its lock file is held); wait for it or stop it"
    )]
    Busy(PathBuf),
    /// A compose, stream or release named by the caller does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state; the message says why.
    #[error("{0}")]
    Refused(String),
    /// A job could not do its work; the message says which job and why. The job is retried.
    #[error("{0}")]
    Job(String),
    /// Signing or publishing failed.
    #[error(transparent)]
    Publish(#[from] slipway_publish::PublishError),
    /// The signing key could not be loaded.
    #[error(transparent)]
    Sign(#[from] slipway_publish::SignError),
    /// A required system tool is missing.
    #[error(transparent)]
    Exec(#[from] slipway_exec::ExecError),
    /// A package source could not be read.
    #[error(transparent)]
    Repo(#[from] slipway_repo::RepoError),
}

/// Where the engine reports progress on long work, so the CLI can show it.
pub trait Progress: Send + Sync {
    /// Something happened in a stream (a step started or ended).
    fn step(&self, stream: &str, message: &str);
}

/// A progress sink that only logs.
#[derive(Debug, Default)]
pub struct LogProgress;

impl Progress for LogProgress {
    fn step(&self, stream: &str, message: &str) {
        tracing::info!(stream, "{message}");
    }
}

/// The engine over one project: its config, store, blob store and effects.
pub struct Engine {
    config: Config,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    clock: Arc<dyn Clock>,
    runner: Arc<dyn CommandRunner>,
    progress: Arc<dyn Progress>,
    /// Where announcements are sent: the config's SMTP server or `.eml` outbox, unless replaced.
    mailer: Arc<dyn slipway_release::Mailer>,
    worker: String,
    threads: usize,
    /// The accelerator boot tests use, probed once per process: a probe on a host whose KVM hangs costs
    /// its whole timeout.
    accel: tokio::sync::OnceCell<slipway_boottest::Accel>,
    /// The client of package sources; made on first use, and kept so parsed indexes are reused.
    repos: tokio::sync::OnceCell<slipway_repo::AptRepo>,
    /// Every event up to this sequence number is handled; later passes start after it instead of reading
    /// the whole log again.
    handled_through: std::sync::atomic::AtomicI64,
    /// Set only by simulations: stands in for the package sources, the builder and the boot tester.
    world: Option<Arc<dyn SimulatedWorld>>,
    /// The external tracker incidents are mirrored to, if any.
    incidents: incidents::Mirror,
    /// Whether the engine has said that it signs through gpg because the in-process signer cannot use the
    /// key; the key is loaded again and again, and once is enough to hear it.
    gpg_fallback_warned: std::sync::atomic::AtomicBool,
    /// The signer last loaded, kept for the next publishes while the key file holds the same bytes.
    signer: std::sync::Mutex<Option<jobs::LoadedKey>>,
    /// What this engine last published; held for the whole of a publish, which also keeps two publishes
    /// of one engine from running at once.
    published_inputs: tokio::sync::Mutex<Option<jobs::PublishedInputs>>,
    /// Recipes as last read, by file: a job parses a recipe again only when its file changed.
    recipes: std::sync::Mutex<std::collections::HashMap<PathBuf, (Vec<u8>, slipway_model::Recipe)>>,
    /// The tests built into slipway, parsed on first use: they are part of the binary and never change.
    builtin_tests: std::sync::OnceLock<Vec<slipway_boottest::TestDef>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config.path)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The recipe of a stream, parsed again only when its file, or a file it takes content from,
    /// changed since this engine last read it ([`slipway_model::Recipe::is_current`]).
    pub(crate) fn recipe(
        &self,
        stream: &slipway_model::StreamConfig,
    ) -> Result<slipway_model::Recipe, EngineError> {
        let mut recipes = self
            .recipes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((text, recipe)) = recipes.get(&stream.recipe) {
            if recipe.is_current(&stream.recipe, text) {
                return Ok(recipe.clone());
            }
        }
        // Read before the load: an edit in between makes the next call load again, never keep a stale
        // recipe.
        let text = std::fs::read(&stream.recipe).ok();
        let recipe = self.config.recipe(stream)?;
        match text {
            Some(text) => {
                recipes.insert(stream.recipe.clone(), (text, recipe.clone()));
            }
            None => {
                recipes.remove(&stream.recipe);
            }
        }
        Ok(recipe)
    }

    /// Opens the project's embedded store (`<state-dir>/slipway.db`) and blob store.
    pub async fn open(config: Config, progress: Arc<dyn Progress>) -> Result<Self, EngineError> {
        let db = config.state_dir.join("slipway.db");
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&db))
            .await
            .map_err(|err| StoreError::Database(format!("opening the database: {err}")))??;
        Ok(Self::with_parts(
            config,
            Arc::new(store),
            Arc::new(SystemClock),
            Arc::new(SystemRunner),
            progress,
        ))
    }

    /// An engine from explicit parts, for tests and for other store implementations.
    pub fn with_parts(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        runner: Arc<dyn CommandRunner>,
        progress: Arc<dyn Progress>,
    ) -> Self {
        let blobs = BlobStore::new(config.blob_dir());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let worker = format!("{EMBEDDED_WORKER_PREFIX}{host}:{}", std::process::id());
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let incidents = incidents::Mirror::from_config(&config);
        let mailer = notify::configured_mailer(&config);
        Self {
            mailer,
            config,
            store,
            blobs,
            clock,
            runner,
            progress,
            worker,
            threads,
            accel: tokio::sync::OnceCell::new(),
            repos: tokio::sync::OnceCell::new(),
            handled_through: std::sync::atomic::AtomicI64::new(0),
            world: None,
            incidents,
            gpg_fallback_warned: std::sync::atomic::AtomicBool::new(false),
            signer: std::sync::Mutex::new(None),
            published_inputs: tokio::sync::Mutex::new(None),
            recipes: std::sync::Mutex::new(std::collections::HashMap::new()),
            builtin_tests: std::sync::OnceLock::new(),
        }
    }

    /// The engine of a simulation: `world` replaces the package sources, the builder and the boot tester.
    /// Nothing else changes. Never use it on a real project's state.
    pub fn with_world(mut self, world: Arc<dyn SimulatedWorld>) -> Self {
        self.world = Some(world);
        // A simulation's blobs and public tree are thrown away; syncing them would only slow it down.
        self.blobs = self.blobs.without_syncs();
        self
    }

    /// The store, for read commands.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Records a person's verdict on a compose (veto, or withdrawal of a veto) and re-decides the compose
    /// at once, so `status` shows the effect without waiting for the next run. Withdrawing a veto that is
    /// not in force is refused.
    pub async fn set_verdict(
        &self,
        compose: &ComposeId,
        failed: bool,
        author: &str,
        reason: &str,
    ) -> Result<Decision, EngineError> {
        let found = self.store.compose(compose).await?.ok_or_else(|| {
            EngineError::NotFound(format!("no compose {compose}; see `slipway status`"))
        })?;
        if !failed {
            let vetoed = self
                .store
                .verdicts(compose)
                .await?
                .last()
                .is_some_and(|v| v.failed);
            if !vetoed {
                return Err(EngineError::Refused(format!(
                    "{compose} is not marked failed; nothing to withdraw"
                )));
            }
        }
        self.store
            .add_verdict(&Verdict {
                compose: compose.clone(),
                failed,
                author: author.to_string(),
                reason: reason.to_string(),
                created_at: self.now(),
            })
            .await?;
        self.decide(&found.stream, compose).await
    }

    /// Waives a testcase (in one scenario, or in all) of a compose and re-decides the compose at once.
    pub async fn waive(
        &self,
        compose: &ComposeId,
        testcase: &str,
        scenario: Option<&str>,
        author: &str,
        comment: &str,
    ) -> Result<(Waiver, Decision), EngineError> {
        let found = self.store.compose(compose).await?.ok_or_else(|| {
            EngineError::NotFound(format!("no compose {compose}; see `slipway status`"))
        })?;
        let waiver = self
            .store
            .add_waiver(&NewWaiver {
                compose: compose.clone(),
                testcase: testcase.to_string(),
                scenario: scenario.map(str::to_string),
                author: author.to_string(),
                comment: comment.to_string(),
                created_at: self.now(),
            })
            .await?;
        let decision = self.decide(&found.stream, compose).await?;
        Ok((waiver, decision))
    }

    /// Revokes a waiver (it is kept, marked revoked) and re-decides its compose at once.
    pub async fn revoke_waiver(
        &self,
        id: u64,
        author: &str,
        reason: &str,
    ) -> Result<(Waiver, Decision), EngineError> {
        let waiver = match self
            .store
            .revoke_waiver(id, author, reason, self.now())
            .await
        {
            Err(StoreError::NotFound(_)) => {
                return Err(EngineError::NotFound(format!(
                    "no waiver {id}; `slipway waivers` lists them"
                )))
            }
            other => other?,
        };
        let stream = match self.store.compose(&waiver.compose).await? {
            Some(found) => found.stream,
            None => {
                return Err(EngineError::NotFound(format!(
                    "no compose {}",
                    waiver.compose
                )))
            }
        };
        let decision = self.decide(&stream, &waiver.compose).await?;
        Ok((waiver, decision))
    }

    /// Decides on a compose in a stream from what the store knows now, and records the decision (an event
    /// is appended only when it changed). A policy that cannot be read or a store read that fails gives a
    /// failed decision, which is recorded like any other.
    pub async fn decide(&self, stream: &str, compose: &ComposeId) -> Result<Decision, EngineError> {
        let now = self.now();
        let decision = self.evaluate(stream, compose, now).await?;
        self.store.record_decision(&decision, now).await?;
        Ok(decision)
    }

    /// [`Engine::decide`] on a compose the caller has just read.
    pub(crate) async fn decide_on(
        &self,
        stream: &str,
        compose: &Compose,
    ) -> Result<Decision, EngineError> {
        let now = self.now();
        let decision = self.evaluate_read(stream, compose, now).await;
        self.store.record_decision(&decision, now).await?;
        Ok(decision)
    }

    /// The decision on a compose in a stream as of `at`: results submitted, waivers created or revoked and
    /// verdicts given after `at` are ignored, and the requirements are those whose validity window holds
    /// `at`. Nothing is recorded.
    pub async fn decision_at(
        &self,
        stream: &str,
        compose: &ComposeId,
        at: Timestamp,
    ) -> Result<Decision, EngineError> {
        self.evaluate(stream, compose, at).await
    }

    /// The decision as of `at`, failing closed on anything that goes wrong on the way. Errors only for a
    /// compose that does not exist.
    async fn evaluate(
        &self,
        stream: &str,
        compose: &ComposeId,
        at: Timestamp,
    ) -> Result<Decision, EngineError> {
        match self.store.compose(compose).await {
            Ok(Some(found)) => Ok(self.evaluate_read(stream, &found, at).await),
            Ok(None) => Err(EngineError::NotFound(format!("no compose {compose}"))),
            Err(err) => Ok(undecided(
                stream,
                compose,
                at,
                "store",
                format!("reading the compose failed: {err}"),
            )),
        }
    }

    /// The decision as of `at` on a compose already read, failing closed on anything that goes wrong.
    async fn evaluate_read(&self, stream: &str, found: &Compose, at: Timestamp) -> Decision {
        let compose = &found.id;
        let requirements = match self.requirements(stream).await {
            Ok(requirements) => requirements,
            Err(message) => return undecided(stream, compose, at, "policy", message),
        };
        let facts = async {
            Ok::<_, StoreError>((
                self.store.results(compose, at).await?,
                self.store.verdicts(compose).await?,
                self.store.waivers(Some(compose)).await?,
            ))
        };
        match facts.await {
            Ok((results, verdicts, waivers)) => slipway_gate::decide(
                stream,
                &requirements,
                &slipway_gate::Facts {
                    compose: found,
                    results: &results,
                    verdicts: &verdicts,
                    waivers: &waivers,
                },
                at,
            ),
            Err(err) => undecided(
                stream,
                compose,
                at,
                "store",
                format!("reading results and waivers failed: {err}"),
            ),
        }
    }

    /// A stream's requirements: its gate's and its policy file's, the file read now so edits apply at the
    /// next decision. The error is a message for the decision, naming file, line, column and field.
    async fn requirements(&self, stream: &str) -> Result<Vec<Requirement>, String> {
        let Some(config) = self.config.stream(stream) else {
            return Err(format!("stream {stream} is not in the config"));
        };
        let mut requirements = Vec::new();
        if let Some(gate) = &config.gate {
            match self.config.gates.get(gate) {
                Some(gate) => requirements.extend(gate.requirements()),
                None => return Err(format!("no [gate.{gate}] is defined")),
            }
        }
        if let Some(path) = config.policy.clone() {
            let policy = tokio::task::spawn_blocking(move || GateConfig::load(&path))
                .await
                .map_err(|err| format!("reading the policy file failed: {err}"))?
                .map_err(|err| format!("the policy file is invalid: {err}"))?;
            requirements.extend(policy.requirements());
        }
        Ok(requirements)
    }
}

/// The failed decision the gate gives when it cannot decide (an unreadable policy, a failed store read):
/// it fails closed, and says why.
fn undecided(
    stream: &str,
    compose: &ComposeId,
    at: Timestamp,
    subject: &str,
    detail: String,
) -> Decision {
    tracing::warn!(%compose, stream, "gate could not decide: {detail}");
    Decision {
        at: Some(at),
        ..Decision::failed(compose.clone(), stream, subject, detail)
    }
}
