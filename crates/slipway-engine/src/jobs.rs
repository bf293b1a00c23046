//! Job execution: compose, boot test and publish. Each job reads what it needs from the store, calls one
//! capability, and writes the outcome back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_boottest::{BootTestRequest, BootTester};
use slipway_compose::{ComposeRequest, Composer};
use slipway_model::{
    canonical_arch, topics, Artifact, ArtifactKind, Attempt, ComposeId, ComposeState,
    DenylistEntry, Outcome, OutputFormat, ReleaseState, RunId, TestResult, TestRun, Version,
};
use slipway_publish::{PublishFile, ReleaseInput, Signer, SiteInput, StreamInput};
use slipway_store::{Job, JobOutcome};

use crate::{Engine, EngineError, HEARTBEAT, LEASE, MAX_ATTEMPTS};

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    Compose,
    Test,
    Publish,
}

impl JobKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Compose => "compose",
            Self::Test => "test",
            Self::Publish => "publish",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ComposeJob {
    pub(crate) compose: ComposeId,
    /// The compose whose lock this one is expected to install (only the recipe changed).
    #[serde(default)]
    pub(crate) expected_lock_from: Option<ComposeId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TestJob {
    pub(crate) compose: ComposeId,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PublishJob {
    pub(crate) stream: String,
    pub(crate) version: String,
}

/// The state record that says up to which event the public tree shows the store, and with which
/// settings it was written.
const TREE_STATE: &str = "tree:published";

/// The events after which the public tree shows something else. `release.published` is not one: the
/// tree showed the release as published before the store marked it so.
const TREE_TOPICS: &[&str] = &[
    topics::RELEASE_CREATED,
    topics::RELEASE_REVOKED,
    topics::RELEASE_UNREVOKED,
    topics::RELEASE_EXPIRED,
    topics::RELEASE_OUT_OF_CYCLE,
    topics::COMPOSE_DELETED,
    topics::STREAM_STALE,
    topics::STREAM_FRESH,
    topics::STREAM_EOL,
    topics::INCIDENT_OPENED,
    topics::INCIDENT_CLOSED,
];

/// What [`TREE_STATE`] holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct TreeState {
    through: slipway_model::EventSeq,
    settings: String,
}

/// The releases of each stream as this engine last published them, with the event the tree showed
/// everything up to; a later publish reads again from the store only the streams that changed since.
#[derive(Debug, Default)]
pub(crate) struct PublishedInputs {
    through: slipway_model::EventSeq,
    streams: BTreeMap<String, StreamInput>,
    /// The publisher's fingerprint of each stream's input, passed back for a stream published again as it
    /// was.
    fingerprints: BTreeMap<String, String>,
}

/// What changed since the tree was last published.
enum TreeChange {
    /// Nothing it shows.
    None,
    /// These streams, since the tree showed every event up to `since`: for each, the releases events
    /// named, or `None` when something else (a deleted compose) may have changed any of them.
    Streams {
        since: slipway_model::EventSeq,
        names: BTreeMap<String, Option<BTreeSet<Version>>>,
    },
    /// Possibly anything: the tree was never published, its settings changed, or it is gone.
    All,
}

impl Engine {
    /// Claims and runs one job; false when none was runnable.
    pub(crate) async fn run_next_job(&self) -> Result<bool, EngineError> {
        let Some(job) = self
            .store
            .claim_job(&self.worker, LEASE, MAX_ATTEMPTS, self.now())
            .await?
        else {
            return Ok(false);
        };
        let span = tracing::info_span!("job", id = job.id, kind = %job.kind, key = %job.key);
        let _entered = span.enter();

        // Keep the lease while the job runs, so a long compose is not taken over by another worker. The
        // renewal runs in this task beside the job: a job that finishes before the first renewal (most do)
        // costs no task and no thread wake-up.
        let outcome = {
            let work = self.execute(&job);
            tokio::pin!(work);
            let mut renew =
                tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
            loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = renew.tick() => {
                        match self.store.extend_lease(job.id, &self.worker, LEASE, self.now()).await {
                            Ok(true) => {}
                            Ok(false) => tracing::warn!("job {} lost its lease", job.id),
                            Err(err) => tracing::warn!("could not renew the lease of job {}: {err}", job.id),
                        }
                    }
                }
            }
        };

        let outcome = match outcome {
            Ok(()) => JobOutcome::Done,
            Err(err) => {
                let error = format!("{err}");
                tracing::error!("job {} ({}) failed: {error}", job.id, job.key);
                JobOutcome::Failed { error }
            }
        };
        self.store
            .finish_job(job.id, &self.worker, outcome, self.now())
            .await?;
        Ok(true)
    }

    async fn execute(&self, job: &Job) -> Result<(), EngineError> {
        let bad_payload = || EngineError::Job(format!("job {} has a malformed payload", job.id));
        match job.kind.as_str() {
            "compose" => {
                let payload: ComposeJob =
                    serde_json::from_value(job.payload.clone()).map_err(|_| bad_payload())?;
                self.compose_job(&payload.compose, payload.expected_lock_from.as_ref())
                    .await
            }
            "test" => {
                let payload: TestJob =
                    serde_json::from_value(job.payload.clone()).map_err(|_| bad_payload())?;
                self.test_job(&payload.compose).await
            }
            "publish" => {
                let payload: PublishJob =
                    serde_json::from_value(job.payload.clone()).map_err(|_| bad_payload())?;
                self.publish_job(&payload.stream).await
            }
            other => Err(EngineError::Job(format!("unknown job kind {other:?}"))),
        }
    }

    fn work_dir(&self, name: &str) -> Result<PathBuf, EngineError> {
        let dir = self.config.state_dir.join("work").join(name);
        // Whatever an interrupted attempt left here is incomplete by definition.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| EngineError::Io {
                action: "clearing",
                path: dir.clone(),
                source,
            })?;
        }
        std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
            action: "creating",
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    async fn compose_job(
        &self,
        id: &ComposeId,
        expected_lock_from: Option<&ComposeId>,
    ) -> Result<(), EngineError> {
        let compose = self
            .store
            .compose(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no compose {id}")))?;
        if compose.state != ComposeState::Running {
            return Ok(());
        }
        let stream = self.config.stream(&compose.stream).ok_or_else(|| {
            EngineError::NotFound(format!("stream {} is not configured", compose.stream))
        })?;
        let recipe = self.recipe(stream)?;
        if let Some(world) = &self.world {
            return self.simulated_compose(world.as_ref(), &compose).await;
        }
        let expected_lock = match expected_lock_from {
            Some(from) => self.store.compose(from).await?.and_then(|c| c.lock),
            None => None,
        };
        let work_dir = self.work_dir(id.as_str())?;
        // Same day, same inputs, same bytes: the epoch is the compose's UTC day, not the second it started.
        let day =
            compose.created_at.as_second() - compose.created_at.as_second().rem_euclid(86_400);
        let request = ComposeRequest {
            recipe,
            compose_id: id.clone(),
            work_dir: work_dir.clone(),
            source_date_epoch: day,
            threads: self.threads,
            cache_dir: Some(self.config.state_dir.join("cache")),
            expected_lock,
        };
        let progress = Arc::clone(&self.progress);
        let stream_name = compose.stream.clone();
        let report = move |message: &str| progress.step(&stream_name, message);
        self.progress
            .step(&compose.stream, &format!("composing {id}"));
        let composer = Composer::new(Arc::clone(&self.runner));
        match composer.compose(&request, &report).await {
            Ok(output) => {
                let mut artifacts = Vec::new();
                for image in &output.images {
                    self.store_blob(&image.path, &image.sha256)?;
                    artifacts.push(Artifact {
                        kind: ArtifactKind::Image(image.format),
                        file_name: image.file_name.clone(),
                        sha256: image.sha256.clone(),
                        size: image.size,
                    });
                }
                let timings: Vec<String> = output
                    .timings
                    .iter()
                    .map(|t| format!("{} {:.1}s", t.step, t.seconds))
                    .collect();
                let (lock, pkgdiff) = self
                    .annotate_lock(&request.recipe, id, output.lock.clone())
                    .await?;
                self.store
                    .complete_compose(
                        id,
                        &output.input_hash,
                        &lock,
                        &pkgdiff,
                        &artifacts,
                        self.now(),
                    )
                    .await?;
                self.progress.step(
                    &compose.stream,
                    &format!(
                        "compose {id} complete: {} packages, {} ({})",
                        output.lock.packages.len(),
                        pkgdiff.summary(),
                        timings.join(", ")
                    ),
                );
            }
            Err(err) => {
                let reason = format!("{err}");
                self.store.fail_compose(id, &reason, self.now()).await?;
                self.progress
                    .step(&compose.stream, &format!("compose {id} FAILED: {reason}"));
            }
        }
        let _ = std::fs::remove_dir_all(&work_dir);
        Ok(())
    }

    /// A compose built by a simulation's world: its image is a few bytes in the blob store, so the release
    /// and publish that follow handle a real file.
    async fn simulated_compose(
        &self,
        world: &dyn crate::SimulatedWorld,
        compose: &slipway_model::Compose,
    ) -> Result<(), EngineError> {
        let id = &compose.id;
        let previous = self
            .store
            .latest_complete_compose(&compose.recipe, Some(id))
            .await?;
        match world.build(compose, previous.as_ref().and_then(|c| c.lock.as_ref())) {
            crate::SimulatedBuild::Failed { reason } => {
                self.store.fail_compose(id, &reason, self.now()).await?;
            }
            crate::SimulatedBuild::Built {
                lock,
                mut pkgdiff,
                image,
            } => {
                let sha256 = self
                    .blobs
                    .put_bytes(&image)
                    .map_err(|source| EngineError::Io {
                        action: "storing the simulated image of",
                        path: self.blobs.path(&slipway_model::sha256_hex(&image)),
                        source,
                    })?;
                pkgdiff.previous = previous.map(|c| c.id);
                let input_hash = slipway_model::InputHash::compute(
                    &compose.recipe_hash,
                    Some(&lock.hash()),
                    slipway_model::BUILDER_VERSION,
                );
                let artifact = Artifact {
                    kind: ArtifactKind::Image(OutputFormat::Qcow2),
                    file_name: format!("{id}.qcow2"),
                    sha256,
                    size: image.len() as u64,
                };
                self.store
                    .complete_compose(id, &input_hash, &lock, &pkgdiff, &[artifact], self.now())
                    .await?;
            }
        }
        Ok(())
    }

    fn store_blob(
        &self,
        path: &Path,
        digest: &slipway_model::Sha256,
    ) -> Result<PathBuf, EngineError> {
        self.blobs
            .put_file(path, digest)
            .map_err(|source| EngineError::Io {
                action: "storing artifact",
                path: path.to_path_buf(),
                source,
            })
    }

    /// Boots the compose's qcow2 and runs its stream's test plan: one test run with one result per test
    /// (plus an ERROR result per unreadable user test file), with the denylist applied.
    async fn test_job(&self, id: &ComposeId) -> Result<(), EngineError> {
        let compose = self
            .store
            .compose(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no compose {id}")))?;
        let stream = self.config.stream(&compose.stream).ok_or_else(|| {
            EngineError::NotFound(format!("stream {} is not configured", compose.stream))
        })?;
        let recipe = self.recipe(stream)?;
        let plan_name = self.config.plan_name(stream, &recipe);
        let format = OutputFormat::Qcow2;
        let arch = canonical_arch(&recipe.architecture).to_string();
        let scenario = format!("{}.{arch}.uefi", format.extension());

        // A broken file in a user repository becomes ERROR results of this run, not a failed job.
        let builtin = self
            .builtin_tests
            .get_or_init(slipway_boottest::builtin_tests);
        let repository = slipway_boottest::load_test_dirs(&self.config.boottest.test_dirs, builtin);
        let mut available = builtin.clone();
        available.extend(repository.tests);
        let tests = slipway_boottest::select_tests(
            &plan_name,
            self.config.plans.get(&plan_name),
            &available,
            format.extension(),
            &stream.name,
        );
        let run_id = RunId::fresh();
        let base = |testcase: &str, outcome: Outcome, note: String, at| TestResult {
            run: Some(run_id.clone()),
            scenario: scenario.clone(),
            format: format.extension().to_string(),
            arch: arch.clone(),
            stream: stream.name.clone(),
            ..TestResult::new(id.clone(), testcase, outcome, note, at)
        };
        let broken: Vec<TestResult> = repository
            .broken
            .iter()
            .map(|b| base(&b.testcase, Outcome::Error, b.error.clone(), self.now()))
            .collect();
        for b in &repository.broken {
            tracing::warn!(stream = %stream.name, error = %b.error, "a test file cannot be used");
        }

        if let Some(world) = &self.world {
            let run = TestRun {
                id: run_id.clone(),
                compose: id.clone(),
                plan: plan_name.clone(),
                artifact: format!("{id}.qcow2"),
                description: format!("{id}: simulated"),
                started_at: self.now(),
                finished_at: self.now(),
            };
            let names: Vec<String> = tests.iter().map(|t| t.name.clone()).collect();
            let results: Vec<TestResult> = names
                .iter()
                .zip(world.test(&compose, &names))
                .map(|(testcase, (outcome, note))| base(testcase, outcome, note, self.now()))
                .collect();
            self.store
                .record_test_run(&run, &results, self.now())
                .await?;
            return Ok(());
        }
        let now = self.now();
        let image = compose.artifact(ArtifactKind::Image(format)).cloned();
        let (Some(image), Some(lock)) = (image, compose.lock.clone()) else {
            // Nothing bootable: the plan's results are errors, and the gate fails closed on them.
            let mut results: Vec<TestResult> = tests
                .iter()
                .map(|test| {
                    base(
                        &test.name,
                        Outcome::Error,
                        "the compose has no qcow2 artifact to boot; add \"qcow2\" to the recipe's outputs".into(),
                        now,
                    )
                })
                .collect();
            results.extend(broken);
            let run = TestRun {
                id: run_id.clone(),
                compose: id.clone(),
                plan: plan_name,
                artifact: String::new(),
                description: format!("{id}: nothing to boot"),
                started_at: now,
                finished_at: now,
            };
            self.store.record_test_run(&run, &results, now).await?;
            return Ok(());
        };
        let work_dir = self.work_dir(&format!("test-{id}"))?;
        let accel = *self
            .accel
            .get_or_init(|| slipway_boottest::probe_kvm(self.runner.as_ref(), &work_dir))
            .await;
        let settings = &self.config.boottest;
        let request = BootTestRequest {
            compose: id.clone(),
            image: self.blobs.path(&image.sha256),
            tests: tests.clone(),
            lock,
            exclude_docs: recipe.exclude_docs,
            exclude_locales: recipe.exclude_locales,
            work_dir: work_dir.clone(),
            memory_mib: settings.memory_mib,
            cpus: settings.cpus,
            boot_allowance: Duration::from_secs(settings.deadline_secs),
            disk_gib: settings.disk_gib,
            accel,
            reruns: settings.reruns,
            memory_budget_mib: settings.memory_budget_mib,
            cpu_budget: settings.cpu_budget,
            tuning: slipway_boottest::VmTuning::default(),
        };
        self.progress.step(
            &compose.stream,
            &format!(
                "boot testing {} under {accel}: plan {plan_name}, {} tests",
                image.file_name,
                tests.len()
            ),
        );
        let started_at = self.now();
        // The run is visible from its start: every planned test QUEUED, then RUNNING as its VM starts.
        // The gate never counts either as passed, and the final results recorded below supersede them.
        let in_flight = |testcase: &str, outcome: Outcome, note: String, at| TestResult {
            artifact: image.file_name.clone(),
            ..base(testcase, outcome, note, at)
        };
        let planned: Vec<String> = tests.iter().map(|t| t.name.clone()).collect();
        let mut run = TestRun {
            id: run_id.clone(),
            compose: id.clone(),
            plan: plan_name.clone(),
            artifact: image.file_name.clone(),
            description: format!(
                "{id} {} under {accel}: plan {plan_name}, running",
                image.file_name
            ),
            started_at,
            finished_at: started_at,
        };
        let queued: Vec<TestResult> = planned
            .iter()
            .map(|testcase| {
                in_flight(
                    testcase,
                    Outcome::Queued,
                    "waiting for a VM within the budget".into(),
                    started_at,
                )
            })
            .collect();
        self.store.start_test_run(&run, &queued, started_at).await?;

        let tester = BootTester::new(Arc::clone(&self.runner));
        let (started_tx, mut started_rx) =
            tokio::sync::mpsc::unbounded_channel::<slipway_boottest::BootStarted>();
        let record_running = async {
            while let Some(boot) = started_rx.recv().await {
                let at = self.now();
                let running: Vec<TestResult> = boot
                    .testcases
                    .iter()
                    .map(|testcase| {
                        in_flight(
                            testcase,
                            Outcome::Running,
                            format!("running in boot {}", boot.name),
                            at,
                        )
                    })
                    .collect();
                if let Err(err) = self.store.add_test_results(&run_id, &running, at).await {
                    // Only the in-flight view suffers; the final results are recorded all the same.
                    tracing::warn!(compose = %id, "could not record running tests: {err}");
                }
            }
        };
        let (outcome, ()) = tokio::join!(
            tester.run_reporting(&request, Some(started_tx)),
            record_running
        );
        let report = match outcome {
            Ok(report) => report,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&work_dir);
                return Err(EngineError::Job(format!(
                    "boot test of {id} could not start: {err}"
                )));
            }
        };

        // The run's files go under names that carry the run, so a second run of a compose adds its own.
        let short_run: String = run_id.as_str().chars().take(8).collect();
        let mut boot_logs = Vec::new();
        for (n, boot) in report.boots.iter().enumerate() {
            let name = format!("{id}.{short_run}.boot-{n}-{}.serial.log", boot.name);
            boot_logs.push(
                self.keep_file(id, &boot.serial_log, ArtifactKind::SerialLog, name)
                    .await?,
            );
        }
        let today = self.now().to_zoned(jiff::tz::TimeZone::UTC).date();
        let now = self.now();
        let mut results = Vec::new();
        for case in &report.cases {
            let mut attempts = Vec::new();
            for (n, attempt) in case.attempts.iter().enumerate() {
                let output = match &attempt.output {
                    Some(path) => {
                        let name =
                            format!("{id}.{short_run}.{}.attempt-{}.log", case.testcase, n + 1);
                        self.keep_file(id, path, ArtifactKind::TestOutput, name)
                            .await?
                    }
                    None => None,
                };
                attempts.push(Attempt {
                    outcome: attempt.outcome,
                    seconds: attempt.seconds,
                    output,
                    truncated: attempt.truncated,
                });
            }
            let mut result = TestResult {
                artifact: image.file_name.clone(),
                log: boot_logs.get(case.boot).cloned().flatten(),
                flaky: case.flaky,
                attempts,
                ..base(&case.testcase, case.outcome, case.note.clone(), now)
            };
            let tags = tests
                .iter()
                .find(|t| t.name == case.testcase)
                .map(|t| t.tags.clone())
                .unwrap_or_default();
            apply_denylist(&self.config.denylist, &mut result, &tags, today);
            results.push(result);
        }
        for mut result in broken {
            result.artifact = image.file_name.clone();
            apply_denylist(&self.config.denylist, &mut result, &[], today);
            results.push(result);
        }
        let passed = results
            .iter()
            .filter(|r| r.outcome == Outcome::Passed)
            .count();
        run.description = format!(
            "{id} {} under {accel}: plan {plan_name}, {} boot(s)",
            image.file_name,
            report.boots.len()
        );
        run.finished_at = now;
        self.store.finish_test_run(&run, &results, now).await?;
        self.progress.step(
            &compose.stream,
            &format!(
                "boot test of {id}: {passed}/{} passed in {:.0}s",
                results.len(),
                report.seconds
            ),
        );
        let _ = std::fs::remove_dir_all(&work_dir);
        Ok(())
    }

    /// Stores a file of a test run as a blob and an artifact of the compose; `None` when it is missing.
    async fn keep_file(
        &self,
        id: &ComposeId,
        path: &Path,
        kind: ArtifactKind,
        file_name: String,
    ) -> Result<Option<slipway_model::Sha256>, EngineError> {
        if !path.exists() {
            return Ok(None);
        }
        let (digest, size) =
            slipway_model::sha256_file(path).map_err(|source| EngineError::Io {
                action: "reading",
                path: path.to_path_buf(),
                source,
            })?;
        self.store_blob(path, &digest)?;
        self.store
            .add_artifact(
                id,
                &Artifact {
                    kind,
                    file_name,
                    sha256: digest.clone(),
                    size,
                },
            )
            .await?;
        Ok(Some(digest))
    }

    /// Loads the signing key named in the config. Signatures are made in process; a key the in-process
    /// signer does not take is used through gpg, which is said once per engine rather than on every publish.
    ///
    /// A key loaded in the last minute from a file that still holds the same bytes is taken as it was:
    /// loading checks the key with a test signature, which a simulation's hundreds of publishes a year
    /// would otherwise pay each time. An edited file is loaded at once; the minute bounds how long a key
    /// that expired since is still used.
    pub(crate) async fn signer(&self) -> Result<Arc<dyn Signer>, EngineError> {
        let key = &self.config.signing.key;
        // A key file is a few kilobytes: read here, as a hand-off to the blocking pool costs more.
        let bytes = std::fs::read(key).ok();
        {
            let cached = self
                .signer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let (Some(cached), Some(bytes)) = (cached.as_ref(), &bytes) {
                if &cached.bytes == bytes && cached.loaded.elapsed() < KEY_RELOAD {
                    return Ok(Arc::clone(&cached.signer));
                }
            }
        }
        let loaded = slipway_publish::load_signer(Arc::clone(&self.runner), key).await?;
        if let Some(reason) = &loaded.gpg_fallback {
            if !self
                .gpg_fallback_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    key_file = %key.display(),
                    %reason,
                    "signing through gpg, which is slower: the in-process signer cannot use this key"
                );
            }
        }
        let signer: Arc<dyn Signer> = Arc::from(loaded.signer);
        if let Some(bytes) = bytes {
            *self
                .signer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(LoadedKey {
                bytes,
                loaded: std::time::Instant::now(),
                signer: Arc::clone(&signer),
            });
        }
        Ok(signer)
    }

    /// Writes the whole public tree from the store's releases, then marks pending releases published.
    /// A job finds nothing to do when the tree already shows every change (a publish job queued by each
    /// of twenty releases of one cycle, say, after the first of them published all twenty).
    pub(crate) async fn publish_job(&self, stream_name: &str) -> Result<(), EngineError> {
        let through = self.store.last_event_seq().await?;
        let settings = self.tree_settings();
        let change = self.tree_change(&settings).await?;
        if matches!(change, TreeChange::None) {
            return Ok(());
        }
        let mut published = self.published_inputs.lock().await;
        // What was last published is taken, not copied; should this publish fail, the next one reads every
        // stream from the store.
        let mut last = published.take().filter(
            |last| matches!(&change, TreeChange::Streams { since, .. } if last.through == *since),
        );
        let names = match &change {
            TreeChange::Streams { names, .. } => Some(names),
            _ => None,
        };
        let started = std::time::Instant::now();
        let signer = self.signer().await?;
        let now = self.now();
        let mut streams = Vec::new();
        let mut to_mark = Vec::new();
        let mut advisories = None;
        let mut known_fingerprints = BTreeMap::new();
        let states = self.stream_states().await?;
        for stream in &self.config.streams {
            // Streams nothing happened to since this engine's last publish are taken as it published them,
            // and a stream whose events all name their release is patched rather than read whole.
            let cached = last
                .as_mut()
                .and_then(|last| last.streams.remove(&stream.name));
            let named = names.and_then(|names| names.get(&stream.name));
            let cached = match (cached, named) {
                (Some(input), None) => {
                    // Stale and end-of-life markers are read again: an incident's link may have come
                    // since.
                    let (stale, eol) = self.stream_condition(&states, &stream.name).await?;
                    let fingerprint = last
                        .as_ref()
                        .and_then(|last| last.fingerprints.get(&stream.name));
                    if let (Some(fingerprint), true) =
                        (fingerprint, stale == input.stale && eol == input.eol)
                    {
                        known_fingerprints.insert(stream.name.clone(), fingerprint.clone());
                    }
                    streams.push(StreamInput {
                        stale,
                        eol,
                        ..input
                    });
                    continue;
                }
                (Some(input), Some(Some(versions))) => Some((input, versions)),
                _ => None,
            };
            let recipe = self.recipe(stream)?;
            // For a patched stream, the versions whose input may differ from what was last published: the
            // earlier years' parts of its index that hold none of them are passed on as they were.
            let mut touched = None;
            let mut releases = match cached {
                Some((input, versions)) => {
                    let same_architecture = input.architecture == recipe.architecture;
                    let (releases, changed) = self
                        .patched_releases(&stream.name, input.releases, versions, &mut advisories)
                        .await?;
                    touched = same_architecture.then_some(changed);
                    releases
                }
                None => self.stream_releases(&stream.name, &mut advisories).await?,
            };
            // The tree shows releases as they will be once this publish lands: the pending ones published,
            // the previously published one superseded.
            if releases
                .iter()
                .any(|r| r.release.state == ReleaseState::Pending)
            {
                let mut newest_seen = false;
                for input in &mut releases {
                    if let (Some(touched), ReleaseState::Pending | ReleaseState::Published) =
                        (touched.as_mut(), input.release.state)
                    {
                        touched.insert(input.release.version.clone());
                    }
                    match input.release.state {
                        ReleaseState::Pending if !newest_seen => {
                            to_mark.push((stream.name.clone(), input.release.version.clone()));
                            input.release.state = ReleaseState::Published;
                            input.release.published_at = Some(now);
                            newest_seen = true;
                        }
                        ReleaseState::Pending | ReleaseState::Published => {
                            if input.release.state == ReleaseState::Pending {
                                to_mark.push((stream.name.clone(), input.release.version.clone()));
                            }
                            input.release.state = ReleaseState::Superseded;
                            input.release.published_at.get_or_insert(now);
                        }
                        _ => {}
                    }
                }
            }
            if let (Some(touched), Some(last)) = (touched, last.as_ref()) {
                let prefix = format!("{}/", stream.name);
                for (key, fingerprint) in last.fingerprints.range(prefix.clone()..) {
                    let Some(part) = key.strip_prefix(&prefix) else {
                        break;
                    };
                    // A new release is in the current month, so the newest year's part, which stops
                    // before it, is passed on too.
                    if !touched.iter().any(|v| slipway_publish::part_holds(part, v)) {
                        known_fingerprints.insert(key.clone(), fingerprint.clone());
                    }
                }
            }
            let (stale, eol) = self.stream_condition(&states, &stream.name).await?;
            streams.push(StreamInput {
                name: stream.name.clone(),
                description: stream.description.clone(),
                architecture: recipe.architecture.clone(),
                releases,
                stale,
                eol,
            });
        }
        let input = SiteInput {
            publish_dir: self.config.publish_dir.clone(),
            base_url: self.config.base_url.clone(),
            title: "slipway images".into(),
            streams,
            generated_at: now,
            // A simulation's tree is thrown away: it need not survive a crash of the machine.
            durable: self.world.is_none(),
            known_fingerprints,
        };
        self.progress.step(stream_name, "publishing");
        let gathered = started.elapsed();
        let summary = slipway_publish::publish(&input, signer.as_ref()).await?;
        tracing::debug!(
            gather_ms = gathered.as_millis() as u64,
            publish_ms = (started.elapsed() - gathered).as_millis() as u64,
            "published the tree"
        );
        // Oldest first, so the store's supersession follows the same order as the tree.
        for (stream, version) in to_mark.iter().rev() {
            self.store
                .mark_release_published(stream, version, now)
                .await?;
            self.progress.step(
                stream,
                &format!(
                    "release {version} published at {}",
                    summary.publish_dir.display()
                ),
            );
        }
        let state = TreeState { through, settings };
        self.store
            .set_state(
                TREE_STATE,
                &serde_json::to_value(&state).unwrap_or_default(),
                None,
                now,
            )
            .await?;
        *published = Some(PublishedInputs {
            through,
            streams: input
                .streams
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect(),
            fingerprints: summary.fingerprints,
        });
        Ok(())
    }

    /// A stream's releases as this engine last published them, if it did.
    #[cfg(test)]
    pub(crate) async fn last_published_releases(&self, stream: &str) -> Option<Vec<ReleaseInput>> {
        let published = self.published_inputs.lock().await;
        Some(published.as_ref()?.streams.get(stream)?.releases.clone())
    }

    /// Every release of a stream with its files, newest first, read whole from the store.
    pub(crate) async fn stream_releases(
        &self,
        stream: &str,
        advisories: &mut Option<slipway_release::LoadedAdvisories>,
    ) -> Result<Vec<ReleaseInput>, EngineError> {
        // One read for the files of every release; a compose is read whole only for a release whose notes
        // are still to be made.
        let artifacts = self.store.released_artifacts(stream).await?;
        let mut releases = Vec::new();
        for release in self.store.releases(stream).await? {
            let recorded = artifacts.get(&release.compose).map(Vec::as_slice);
            if let Some(input) = self.release_input(release, recorded, advisories).await? {
                releases.push(input);
            }
        }
        Ok(releases)
    }

    /// A stream's releases as they were last published (`last`), with the releases named in `versions` and those that
    /// are (or were) the stream's published or pending ones read again: a revocation, unrevocation or new
    /// release changes only those. Newest first, like [`Engine::stream_releases`]; with the versions added,
    /// changed or removed.
    async fn patched_releases(
        &self,
        stream: &str,
        last: Vec<ReleaseInput>,
        versions: &BTreeSet<Version>,
        advisories: &mut Option<slipway_release::LoadedAdvisories>,
    ) -> Result<(Vec<ReleaseInput>, BTreeSet<Version>), EngineError> {
        // Patched in place, newest first: a stream's history is thousands of releases, and a publish
        // changes a few of them.
        let mut releases = last;
        if !releases.is_sorted_by(|a, b| a.release.version > b.release.version) {
            releases.sort_by(|a, b| b.release.version.cmp(&a.release.version));
            releases.dedup_by(|a, b| a.release.version == b.release.version);
        }
        let position = |releases: &[ReleaseInput], version: &Version| {
            releases.binary_search_by(|r| version.cmp(&r.release.version))
        };
        let mut fresh = BTreeMap::new();
        for release in self
            .store
            .newest_releases(
                stream,
                &[ReleaseState::Published, ReleaseState::Pending],
                usize::MAX,
            )
            .await?
        {
            fresh.insert(release.version.clone(), release);
        }
        let was_current = releases.iter().filter(|r| {
            matches!(
                r.release.state,
                ReleaseState::Published | ReleaseState::Pending
            )
        });
        let again: BTreeSet<Version> = versions
            .iter()
            .cloned()
            .chain(was_current.map(|r| r.release.version.clone()))
            .filter(|v| !fresh.contains_key(v))
            .collect();
        let mut touched = BTreeSet::new();
        for version in again {
            match self.store.release(stream, &version).await? {
                Some(release) => {
                    fresh.insert(version, release);
                }
                None => {
                    if let Ok(at) = position(&releases, &version) {
                        releases.remove(at);
                    }
                    touched.insert(version);
                }
            }
        }
        for (version, release) in fresh {
            let unchanged =
                position(&releases, &version).is_ok_and(|at| releases[at].release == release);
            if unchanged {
                continue;
            }
            touched.insert(version.clone());
            let recorded = self
                .store
                .compose(&release.compose)
                .await?
                .map(|c| c.artifacts);
            let input = self
                .release_input(release, recorded.as_deref(), advisories)
                .await?;
            match (input, position(&releases, &version)) {
                (Some(input), Ok(at)) => releases[at] = input,
                (Some(input), Err(at)) => releases.insert(at, input),
                (None, Ok(at)) => {
                    releases.remove(at);
                }
                (None, Err(_)) => {}
            }
        }
        Ok((releases, touched))
    }

    /// A release with the files the tree shows for it, given the artifacts recorded for its compose:
    /// its images and, unless it has expired, its notes (made now for a new release). `None` when its
    /// compose is gone and it is not an expired release, which the index lists without files.
    async fn release_input(
        &self,
        release: slipway_model::Release,
        recorded: Option<&[Artifact]>,
        advisories: &mut Option<slipway_release::LoadedAdvisories>,
    ) -> Result<Option<ReleaseInput>, EngineError> {
        if release.state == ReleaseState::Expired {
            // Listed in the index only; garbage collection may have deleted its compose.
            let files = recorded.map(|a| self.image_files(a)).unwrap_or_default();
            return Ok(Some(ReleaseInput { release, files }));
        }
        if release.state != ReleaseState::Pending {
            if let Some(notes) = recorded.and_then(|a| recorded_notes(a, &release)) {
                let mut files = self.image_files(recorded.into_iter().flatten());
                files.push(self.notes_file(notes.sha256.clone(), notes.size));
                return Ok(Some(ReleaseInput { release, files }));
            }
        }
        let Some(compose) = self.store.compose(&release.compose).await? else {
            return Ok(None);
        };
        let mut files = self.image_files(&compose.artifacts);
        let notes = self
            .release_notes_file(&release, &compose, &files, advisories)
            .await?;
        files.push(notes);
        Ok(Some(ReleaseInput { release, files }))
    }

    /// What the tree is made from besides the store: where and how it is published, the streams, and
    /// the signing key file (a new key must reach the tree).
    fn tree_settings(&self) -> String {
        let config = &self.config;
        let key = std::fs::metadata(&config.signing.key)
            .map(|m| (m.len(), m.modified().ok()))
            .ok();
        let streams: Vec<(&str, &str)> = config
            .streams
            .iter()
            .map(|s| (s.name.as_str(), s.description.as_str()))
            .collect();
        format!(
            "{:?}",
            (
                &config.publish_dir,
                &config.base_url,
                &config.signing.key,
                key,
                streams
            )
        )
    }

    /// What changed since the public tree was published with these settings: nothing, some streams (named
    /// by the events that change what the tree shows), or possibly everything.
    async fn tree_change(&self, settings: &str) -> Result<TreeChange, EngineError> {
        let Some(state) = self
            .store
            .state(TREE_STATE)
            .await?
            .and_then(|v| serde_json::from_value::<TreeState>(v).ok())
        else {
            return Ok(TreeChange::All);
        };
        if state.settings != settings || !self.config.publish_dir.join("index.html").exists() {
            return Ok(TreeChange::All);
        }
        let mut names: BTreeMap<String, Option<BTreeSet<Version>>> = BTreeMap::new();
        let mut after = state.through;
        loop {
            let events = self.store.events_after_on(after, TREE_TOPICS, 500).await?;
            let Some(last) = events.last() else {
                break;
            };
            for event in &events {
                let Some(name) = stream_of(&event.body) else {
                    return Ok(TreeChange::All);
                };
                let versions = names
                    .entry(name.to_string())
                    .or_insert_with(|| Some(BTreeSet::new()));
                if let Some(known) = versions {
                    if RELEASE_TOPICS.contains(&event.topic.as_str()) {
                        match version_of(&event.body) {
                            Some(version) => {
                                known.insert(version);
                            }
                            None => *versions = None,
                        }
                    } else if event.topic == topics::COMPOSE_DELETED {
                        *versions = None;
                    }
                }
            }
            after = last.seq;
        }
        Ok(if names.is_empty() {
            TreeChange::None
        } else {
            TreeChange::Streams {
                since: state.through,
                names,
            }
        })
    }
}

/// How long a loaded signing key is used without loading it again (see [`Engine::signer`]).
const KEY_RELOAD: Duration = Duration::from_secs(60);

/// A signer as loaded, with the key file's bytes it was loaded from and when.
pub(crate) struct LoadedKey {
    bytes: Vec<u8>,
    loaded: std::time::Instant,
    signer: Arc<dyn Signer>,
}

/// The tree topics whose events name the one release they changed (`version` in the body). A revocation
/// or unrevocation may also change which release is the published one; that one is read again anyway.
const RELEASE_TOPICS: &[&str] = &[
    topics::RELEASE_CREATED,
    topics::RELEASE_REVOKED,
    topics::RELEASE_UNREVOKED,
    topics::RELEASE_EXPIRED,
];

/// The release an event names.
fn version_of(body: &serde_json::Value) -> Option<Version> {
    body.get("version")?.as_str()?.parse().ok()
}

/// The stream an event is about, wherever its body names it.
fn stream_of(body: &serde_json::Value) -> Option<&str> {
    [
        "/stream",
        "/decision/stream",
        "/release/stream",
        "/compose/stream",
    ]
    .iter()
    .find_map(|pointer| body.pointer(pointer).and_then(serde_json::Value::as_str))
}

impl Engine {
    /// The image files among a compose's artifacts as the publisher takes them, from the blob store.
    fn image_files<'a>(
        &self,
        artifacts: impl IntoIterator<Item = &'a Artifact>,
    ) -> Vec<PublishFile> {
        artifacts
            .into_iter()
            .filter(|a| matches!(a.kind, ArtifactKind::Image(_)))
            .map(|a| PublishFile {
                kind: a.kind,
                file_name: a.file_name.clone(),
                sha256: a.sha256.clone(),
                size: a.size,
                source: self.blobs.path(&a.sha256),
            })
            .collect()
    }

    /// A release's notes as a file to publish. They never change once made (see
    /// [`slipway_publish::release_notes`]), so a release that is not pending publishes the notes
    /// recorded with its compose, and only a new release's are rendered, stored and recorded.
    async fn release_notes_file(
        &self,
        release: &slipway_model::Release,
        compose: &slipway_model::Compose,
        images: &[PublishFile],
        advisories: &mut Option<slipway_release::LoadedAdvisories>,
    ) -> Result<PublishFile, EngineError> {
        if release.state != ReleaseState::Pending {
            if let Some(recorded) = recorded_notes(&compose.artifacts, release) {
                return Ok(self.notes_file(recorded.sha256.clone(), recorded.size));
            }
        }
        let fixed = self
            .release_advisories(release, compose, advisories)
            .await?;
        let out_of_cycle = self
            .out_of_cycle_of(&release.stream, &compose.id)
            .await?
            .map(|note| note.describe());
        let notes = slipway_publish::release_notes(
            release,
            compose.pkgdiff.as_ref(),
            &fixed,
            out_of_cycle.as_deref(),
            images,
        );
        let digest = self
            .blobs
            .put_bytes(notes.as_bytes())
            .map_err(|source| EngineError::Io {
                action: "storing the release notes of",
                path: self
                    .blobs
                    .path(&slipway_model::sha256_hex(notes.as_bytes())),
                source,
            })?;
        self.keep_release_notes(compose, release, &digest, notes.len() as u64)
            .await?;
        Ok(self.notes_file(digest, notes.len() as u64))
    }

    /// Release notes in the blob store, as the publisher takes them.
    fn notes_file(&self, sha256: slipway_model::Sha256, size: u64) -> PublishFile {
        PublishFile {
            kind: ArtifactKind::ReleaseNotes,
            file_name: slipway_publish::RELEASE_NOTES.to_string(),
            source: self.blobs.path(&sha256),
            sha256,
            size,
        }
    }

    /// Records a release's notes as an artifact of its compose (once), so that the blob is known to be in
    /// use and garbage collection deletes it with the compose, not before.
    async fn keep_release_notes(
        &self,
        compose: &slipway_model::Compose,
        release: &slipway_model::Release,
        digest: &slipway_model::Sha256,
        size: u64,
    ) -> Result<(), EngineError> {
        let artifact = Artifact {
            kind: ArtifactKind::ReleaseNotes,
            file_name: release_notes_artifact_name(release),
            sha256: digest.clone(),
            size,
        };
        if !compose.artifacts.contains(&artifact) {
            self.store.add_artifact(&compose.id, &artifact).await?;
        }
        Ok(())
    }
}

/// A release's notes as recorded among its compose's artifacts, once made.
fn recorded_notes<'a>(
    artifacts: &'a [Artifact],
    release: &slipway_model::Release,
) -> Option<&'a Artifact> {
    let name = release_notes_artifact_name(release);
    artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::ReleaseNotes && a.file_name == name)
}

/// The name a release's notes are recorded under among its compose's artifacts.
fn release_notes_artifact_name(release: &slipway_model::Release) -> String {
    format!("release-notes-{}-{}.txt", release.stream, release.version)
}

/// A failed or errored result that an active denylist entry covers becomes SKIPPED, its note saying why
/// and where it is tracked, and what it really was. Passing results stay as they are.
pub(crate) fn apply_denylist(
    denylist: &[DenylistEntry],
    result: &mut TestResult,
    tags: &[String],
    today: jiff::civil::Date,
) {
    if !matches!(result.outcome, Outcome::Failed | Outcome::Error) {
        return;
    }
    if let Some(entry) = denylist
        .iter()
        .find(|e| e.applies(&result.testcase, tags, &result.stream, &result.arch, today))
    {
        result.note = format!(
            "{}; it was {}: {}",
            entry.note(),
            result.outcome,
            result.note
        );
        result.outcome = Outcome::Skipped;
    }
}

#[cfg(test)]
mod denylist_tests {
    use super::*;
    use jiff::civil::Date;

    fn result(outcome: Outcome) -> TestResult {
        TestResult {
            stream: "cloud".into(),
            arch: "x86_64".into(),
            ..TestResult::new(
                ComposeId("cloud-20261121.0".into()),
                "user.broken",
                outcome,
                "exit status 1: nope",
                jiff::Timestamp::UNIX_EPOCH,
            )
        }
    }

    #[test]
    fn a_denylisted_failure_is_skipped_until_its_snooze_date() {
        let denylist = vec![DenylistEntry {
            pattern: "user.*".into(),
            reason: "known breakage".into(),
            tracker: "https://bugs.example.org/7".into(),
            snooze_until: Date::constant(2026, 11, 30),
            streams: vec![],
            arches: vec!["amd64".into()],
        }];
        let mut failed = result(Outcome::Failed);
        apply_denylist(&denylist, &mut failed, &[], Date::constant(2026, 11, 21));
        assert_eq!(failed.outcome, Outcome::Skipped);
        assert_eq!(
            failed.note,
            "denylisted until 2026-11-30: known breakage (https://bugs.example.org/7); it was FAILED: exit status 1: nope"
        );
        let mut errored = result(Outcome::Error);
        apply_denylist(&denylist, &mut errored, &[], Date::constant(2026, 11, 30));
        assert_eq!(errored.outcome, Outcome::Skipped);
        let mut passed = result(Outcome::Passed);
        apply_denylist(&denylist, &mut passed, &[], Date::constant(2026, 11, 21));
        assert_eq!(passed.outcome, Outcome::Passed);
        let mut late = result(Outcome::Failed);
        apply_denylist(&denylist, &mut late, &[], Date::constant(2026, 12, 1));
        assert_eq!(
            late.outcome,
            Outcome::Failed,
            "past its snooze date it counts again"
        );
    }
}
