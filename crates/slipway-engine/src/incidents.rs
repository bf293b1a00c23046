//! Incidents: a stream whose nightly produced no good compose gets one (or a comment on its open one), and
//! the next good compose closes it.
//!
//! The store is the tracker of record. An external tracker, when configured, gets a copy: every change is
//! queued as a mirror step in the same transaction as the change, tried at once, and on failure kept
//! pending for [`Engine::sync_incidents`]. A tracker that is down therefore never fails the caller, and
//! nothing it missed is lost. An external issue's id is recorded the moment it exists, in the transaction
//! that marks its open step done, so a retry never opens a second issue.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use slipway_model::{
    ComposeId, ComposeState, Config, ExternalIssue, FailureKind, Incident, IncidentAction,
    IncidentReport, LogTail, MirrorAction, MirrorStep, NewIncident, NewIncidentComment, Sha256,
    TrackerKind,
};
use slipway_release::{
    render_incident, render_incident_close, render_incident_comment, GitLabSettings, GitLabTracker,
    Tracker, TrackerError, GITLAB, LOG_TAIL_BYTES,
};

use crate::{Engine, EngineError};

/// The author of what the engine writes on incidents.
const AUTHOR: &str = "slipway";
/// How many logs a report quotes: the first failures tell the story; the rest is in `slipway results`.
const MAX_LOGS: usize = 3;

/// The engine's external tracker and what serializes its use: two mirror passes at once could both find
/// an open step pending and open two issues.
pub(crate) struct Mirror {
    tracker: Option<Arc<dyn Tracker>>,
    running: tokio::sync::Mutex<()>,
}

impl Mirror {
    /// The tracker the config asks for; `None` for the embedded one.
    pub(crate) fn from_config(config: &Config) -> Self {
        Self::new(tracker_from_config(config))
    }

    fn new(tracker: Option<Arc<dyn Tracker>>) -> Self {
        Self {
            tracker,
            running: tokio::sync::Mutex::new(()),
        }
    }

    fn kind(&self) -> Option<&str> {
        self.tracker.as_deref().map(|t| t.kind())
    }
}

fn tracker_from_config(config: &Config) -> Option<Arc<dyn Tracker>> {
    let settings = &config.tracker;
    match settings.kind {
        TrackerKind::Embedded => None,
        TrackerKind::Gitlab => {
            let unusable = |reason: String| -> Option<Arc<dyn Tracker>> {
                Some(Arc::new(UnusableTracker {
                    kind: GITLAB,
                    reason,
                }))
            };
            let (Some(url), Some(project), Some(env)) = (
                settings.url.clone(),
                settings.project.clone(),
                settings.token_env.as_deref(),
            ) else {
                return unusable(
                    "[tracker] needs url, project and token-env for kind = \"gitlab\"".into(),
                );
            };
            let token = match std::env::var(env) {
                Ok(token) if !token.trim().is_empty() => token,
                _ => {
                    return unusable(format!(
                    "the environment variable {env} (named by tracker.token-env) holds no token; \
                         set it and run slipway again, the incidents are mirrored then"
                ))
                }
            };
            match GitLabTracker::new(GitLabSettings {
                url,
                project,
                token,
                labels: settings.labels.clone(),
                timeout: std::time::Duration::from_secs(settings.timeout_secs),
            }) {
                Ok(tracker) => Some(Arc::new(tracker)),
                Err(err) => unusable(err.to_string()),
            }
        }
    }
}

/// A configured tracker that cannot work (no token): every request fails with the reason, so the steps
/// stay pending and `status` shows why.
#[derive(Debug)]
struct UnusableTracker {
    kind: &'static str,
    reason: String,
}

#[async_trait]
impl Tracker for UnusableTracker {
    fn kind(&self) -> &str {
        self.kind
    }

    async fn open(&self, _title: &str, _body: &str) -> Result<ExternalIssue, TrackerError> {
        Err(TrackerError::Config(self.reason.clone()))
    }

    async fn comment(&self, _issue: &ExternalIssue, _body: &str) -> Result<(), TrackerError> {
        Err(TrackerError::Config(self.reason.clone()))
    }

    async fn close(&self, _issue: &ExternalIssue, _body: &str) -> Result<(), TrackerError> {
        Err(TrackerError::Config(self.reason.clone()))
    }
}

/// What a pass over the pending mirror steps did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MirrorSync {
    /// Steps the tracker carried out.
    pub done: usize,
    /// Steps that failed this time (they stay pending).
    pub failed: usize,
    /// Steps still pending afterwards: failed ones, those waiting behind a failed step of the same
    /// incident, and those for a tracker that is not configured.
    pub pending: usize,
}

impl Engine {
    /// The engine with another external tracker (`None`: the embedded one only). For tests, and for
    /// trackers slipway does not configure itself.
    pub fn with_tracker(mut self, tracker: Option<Arc<dyn Tracker>>) -> Self {
        self.incidents = Mirror::new(tracker);
        self
    }

    /// Records that `stream`'s nightly produced no good compose: opens the stream's incident with the
    /// report, or comments on the open one (a report on a compose the incident already holds adds
    /// nothing), then mirrors the change to the external tracker. A tracker that fails leaves the change
    /// pending for [`Engine::sync_incidents`]; only a store failure is an error.
    pub async fn record_bad_nightly(
        &self,
        stream: &str,
        report: &IncidentReport,
    ) -> Result<(IncidentAction, Incident), EngineError> {
        let (title, body) = render_incident(report);
        let (action, incident) = self
            .store
            .open_or_comment_incident(
                &NewIncident {
                    stream: stream.to_string(),
                    compose: report.compose.clone(),
                    author: AUTHOR.into(),
                    title,
                    body,
                    comment: render_incident_comment(report),
                    at: self.now(),
                },
                self.incidents.kind(),
            )
            .await?;
        let verb = match action {
            IncidentAction::Opened => "opened",
            IncidentAction::Commented => "commented on",
            IncidentAction::AlreadyRecorded => "already holds it:",
        };
        self.progress.step(
            stream,
            &format!(
                "incident {} {verb} {} ({})",
                incident.id,
                report.compose,
                report.kind.describe()
            ),
        );
        if action == IncidentAction::AlreadyRecorded {
            return Ok((action, incident));
        }
        self.mirror(Some(incident.id)).await?;
        Ok((action, self.reread(incident).await?))
    }

    /// Records that `stream` has a good compose: closes its open incident, if any, with a comment naming
    /// the compose, and mirrors the close. Returns the closed incident.
    pub async fn record_good_compose(
        &self,
        stream: &str,
        compose: &ComposeId,
    ) -> Result<Option<Incident>, EngineError> {
        let Some(open) = self.store.open_incident(stream).await? else {
            return Ok(None);
        };
        let closed = self
            .store
            .close_incident(
                open.id,
                &NewIncidentComment {
                    author: AUTHOR.into(),
                    body: render_incident_close(stream, compose),
                    compose: Some(compose.clone()),
                    at: self.now(),
                },
                self.incidents.kind(),
            )
            .await?;
        self.progress.step(
            stream,
            &format!("incident {} closed: {compose} is good", closed.id),
        );
        self.mirror(Some(closed.id)).await?;
        Ok(Some(self.reread(closed).await?))
    }

    /// Retries every pending mirror step, in order; a step that fails holds back the later steps of its
    /// incident (a comment cannot precede its issue). Tracker failures are counted, not returned.
    pub async fn sync_incidents(&self) -> Result<MirrorSync, EngineError> {
        self.mirror(None).await
    }

    /// Changes to incidents that the external tracker has not received yet, oldest first, with their
    /// attempts and last error: what `status` shows as pending.
    pub async fn pending_incident_mirrors(&self) -> Result<Vec<MirrorStep>, EngineError> {
        Ok(self.store.pending_mirror_steps().await?)
    }

    /// The report on a compose that did not make a good nightly: the build's error when it failed, else
    /// the gate's unmet requirements (the latest recorded decision, or one made now), with the ends of the
    /// logs that show them.
    pub async fn incident_report(
        &self,
        stream: &str,
        compose: &ComposeId,
    ) -> Result<IncidentReport, EngineError> {
        let found = self
            .store
            .compose(compose)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no compose {compose}")))?;
        let at = self.now();
        if let ComposeState::Failed { reason } = &found.state {
            let summary = reason.lines().next().unwrap_or("the build failed").trim();
            return Ok(IncidentReport {
                stream: stream.to_string(),
                compose: compose.clone(),
                kind: FailureKind::BuildFailed,
                summary: summary.to_string(),
                failed_requirements: Vec::new(),
                logs: vec![LogTail {
                    name: "build".into(),
                    text: reason.clone(),
                }],
                at,
            });
        }
        let decision = match self.store.latest_decision(compose, stream).await? {
            Some(decision) => decision,
            None => self.evaluate(stream, compose, at).await?,
        };
        let results = self.store.results(compose, at).await?;
        let mut logs = Vec::new();
        let mut seen = HashSet::new();
        'requirements: for unmet in &decision.unsatisfied {
            for id in &unmet.results {
                let Some(result) = results.iter().find(|r| r.id == Some(*id)) else {
                    continue;
                };
                let output = result.attempts.last().and_then(|a| a.output.clone());
                let candidates = [
                    (output, format!("output of {}", result.testcase)),
                    (
                        result.log.clone(),
                        format!("serial log of the boot that ran {}", result.testcase),
                    ),
                ];
                for (digest, name) in candidates {
                    let Some(digest) = digest else { continue };
                    if logs.len() >= MAX_LOGS {
                        break 'requirements;
                    }
                    if !seen.insert(digest.clone()) {
                        continue;
                    }
                    if let Some(text) = self.blob_tail(&digest).await {
                        logs.push(LogTail { name, text });
                    }
                }
            }
        }
        Ok(IncidentReport {
            stream: stream.to_string(),
            compose: compose.clone(),
            kind: FailureKind::GateFailed,
            summary: decision.summary.clone(),
            failed_requirements: decision.unsatisfied,
            logs,
            at,
        })
    }

    /// The end of a blob, as text; `None` if it cannot be read (a report goes out without it).
    async fn blob_tail(&self, digest: &Sha256) -> Option<String> {
        let path = self.blobs.path(digest);
        match tokio::task::spawn_blocking(move || read_tail(&path)).await {
            Ok(Ok(text)) => Some(text),
            Ok(Err(err)) => {
                tracing::warn!(%digest, "cannot read a log for an incident report: {err}");
                None
            }
            Err(_) => None,
        }
    }

    async fn reread(&self, incident: Incident) -> Result<Incident, EngineError> {
        Ok(self.store.incident(incident.id).await?.unwrap_or(incident))
    }

    /// Applies pending mirror steps (of one incident, or of all) with the configured tracker.
    async fn mirror(&self, only: Option<u64>) -> Result<MirrorSync, EngineError> {
        let _running = self.incidents.running.lock().await;
        let steps = self.store.pending_mirror_steps().await?;
        let mut sync = MirrorSync::default();
        let Some(tracker) = self.incidents.tracker.clone() else {
            sync.pending = steps.len();
            return Ok(sync);
        };
        let mut held_back = HashSet::new();
        for step in steps {
            if only.is_some_and(|id| id != step.incident) {
                sync.pending += 1;
                continue;
            }
            if step.tracker != tracker.kind() || held_back.contains(&step.incident) {
                sync.pending += 1;
                continue;
            }
            match self.apply(tracker.as_ref(), &step).await? {
                Ok(()) => sync.done += 1,
                Err(err) => {
                    tracing::warn!(
                        incident = step.incident,
                        stream = step.stream,
                        action = step.action.as_str(),
                        "the {} tracker did not take the change; it stays pending: {err}",
                        step.tracker
                    );
                    self.store
                        .fail_mirror_step(step.id, &err.to_string(), self.now())
                        .await?;
                    held_back.insert(step.incident);
                    sync.failed += 1;
                    sync.pending += 1;
                }
            }
        }
        Ok(sync)
    }

    /// One step. The outer error is the store's; the inner one the tracker's.
    async fn apply(
        &self,
        tracker: &dyn Tracker,
        step: &MirrorStep,
    ) -> Result<Result<(), TrackerError>, EngineError> {
        let incident = self.store.incident(step.incident).await?.ok_or_else(|| {
            EngineError::NotFound(format!("incident {} of a mirror step", step.incident))
        })?;
        let Some(comment) = incident.comments.iter().find(|c| c.id == step.comment) else {
            return Err(EngineError::NotFound(format!(
                "comment {} of incident {}",
                step.comment, incident.id
            )));
        };
        let external = incident
            .external
            .as_ref()
            .filter(|e| e.tracker == step.tracker);
        let outcome = match (step.action, external) {
            (MirrorAction::Open, Some(issue)) => {
                // Opened before a crash took the step's completion along: record nothing new.
                self.store
                    .set_incident_external(incident.id, issue, self.now())
                    .await?;
                return Ok(Ok(()));
            }
            (MirrorAction::Open, None) => {
                match tracker.open(&incident.title, &comment.body).await {
                    Ok(issue) => {
                        self.store
                            .set_incident_external(incident.id, &issue, self.now())
                            .await?;
                        return Ok(Ok(()));
                    }
                    Err(err) => Err(err),
                }
            }
            (_, None) => Err(TrackerError::Config(format!(
                "incident {} has no {} issue yet",
                incident.id, step.tracker
            ))),
            (MirrorAction::Comment, Some(issue)) => tracker.comment(issue, &comment.body).await,
            (MirrorAction::Close, Some(issue)) => tracker.close(issue, &comment.body).await,
        };
        if outcome.is_ok() {
            self.store.finish_mirror_step(step.id, self.now()).await?;
        }
        Ok(outcome)
    }
}

/// The last [`LOG_TAIL_BYTES`] × 8 bytes of a file as text, starting at a line: enough for the renderer
/// to take its last lines from, without reading a whole serial log.
fn read_tail(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let window = (LOG_TAIL_BYTES as u64) * 8;
    let start = len.saturating_sub(window);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(window).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        if let Some((_, rest)) = text.split_once('\n') {
            return Ok(rest.to_string());
        }
    }
    Ok(text)
}
