//! Reactions to events. Each reaction is idempotent and keyed by the event's id: an event is marked
//! handled only after its reaction is done, and a reaction repeated after a crash changes nothing (jobs have
//! unique keys, decisions are recorded only when they change, a compose is released at most once).

use serde_json::Value;
use slipway_model::{topics, ComposeId, Event, Release, ReleaseState, Version};
use slipway_store::NewJob;

use crate::jobs::{JobKind, PublishJob, TestJob};
use crate::{Engine, EngineError, HANDLER};

/// Topics [`Engine::react`] does nothing for. They are neither read nor marked handled: a test run's
/// results alone are most of the event log. A topic missing here costs only that work; a topic wrongly
/// here would lose its reaction, which the engine's tests guard against.
pub(crate) const NO_REACTION: &[&str] = &[
    topics::TEST_RESULT,
    topics::COMPOSE_STARTED,
    topics::COMPOSE_SKIPPED,
    topics::ANNOUNCEMENT_QUEUED,
    topics::ANNOUNCEMENT_SENT,
    topics::INCIDENT_OPENED,
    topics::INCIDENT_COMMENTED,
    topics::INCIDENT_CLOSED,
    topics::RELEASE_OUT_OF_CYCLE,
    topics::RELEASE_EXPIRED,
    topics::REPO_CHANGED,
    topics::REPO_REFRESH_FAILED,
    topics::COMPOSE_DELETED,
];

impl Engine {
    /// Handles every event not handled yet; returns how many it handled.
    pub(crate) async fn handle_pending_events(&self) -> Result<usize, EngineError> {
        use std::sync::atomic::Ordering;
        let mut after = self.handled_through.load(Ordering::Acquire);
        let mut handled = 0;
        loop {
            // The mark, not the cursor, is what guarantees once-only: the cursor only saves reading
            // again the events this process has already seen handled.
            let found = self
                .store
                .unhandled_events_after(HANDLER, after, NO_REACTION, 500)
                .await?;
            for event in &found.events {
                self.react(event).await?;
                self.store
                    .mark_handled(HANDLER, event.id, self.now())
                    .await?;
                handled += 1;
                self.handled_through.store(event.seq, Ordering::Release);
            }
            self.handled_through.store(found.through, Ordering::Release);
            if found.events.is_empty() {
                return Ok(handled);
            }
            after = found.through;
        }
    }

    pub(crate) async fn react(&self, event: &Event) -> Result<(), EngineError> {
        let compose = compose_of(&event.body);
        match event.topic.as_str() {
            topics::COMPOSE_COMPLETE => {
                if let Some(compose) = compose {
                    self.store
                        .enqueue_job(
                            &NewJob {
                                kind: JobKind::Test.name().into(),
                                key: format!("test:{compose}"),
                                payload: serde_json::to_value(TestJob { compose })
                                    .unwrap_or_default(),
                            },
                            self.now(),
                        )
                        .await?;
                }
            }
            topics::COMPOSE_FAILED
            | topics::TEST_COMPLETE
            | topics::COMPOSE_VERDICT
            | topics::WAIVER_CREATED
            | topics::WAIVER_REVOKED => {
                if let Some(compose) = compose {
                    if let Some(found) = self.store.compose(&compose).await? {
                        let decision = self.decide_on(&found.stream, &found).await?;
                        self.progress.step(
                            &found.stream,
                            &format!(
                                "gate {} {compose}: {}",
                                if decision.passed { "passed" } else { "failed" },
                                decision.summary
                            ),
                        );
                    }
                }
            }
            topics::DECISION_CHANGED => {
                let passed = event
                    .body
                    .pointer("/decision/passed")
                    .and_then(Value::as_bool);
                let stream = event
                    .body
                    .pointer("/decision/stream")
                    .and_then(Value::as_str);
                let compose = event
                    .body
                    .pointer("/decision/compose")
                    .and_then(Value::as_str)
                    .map(|id| ComposeId(id.to_string()));
                if let (Some(passed), Some(stream), Some(compose)) = (passed, stream, compose) {
                    self.follow_decision(stream, &compose, passed).await?;
                }
            }
            topics::RELEASE_CREATED => {
                let stream = event.body.get("stream").and_then(Value::as_str);
                let version = event.body.get("version").and_then(Value::as_str);
                let version = version.and_then(|v| v.parse::<Version>().ok());
                if let (Some(stream), Some(version)) = (stream, version) {
                    if let Some(release) = self.store.release(stream, &version).await? {
                        if release.state == ReleaseState::Pending {
                            self.enqueue_publish(&release, false).await?;
                        }
                    }
                }
            }
            topics::RELEASE_PUBLISHED => self.announce_published(event).await?,
            topics::RELEASE_REVOKED => self.react_to_revocation(event).await?,
            topics::RELEASE_UNREVOKED => {
                if let Some(stream) = event.body.get("stream").and_then(Value::as_str) {
                    self.enqueue_republish(stream, &format!("unrevoked:{}", event.id))
                        .await?;
                }
            }
            topics::STREAM_STALE => self.react_to_staleness(event, true).await?,
            topics::STREAM_FRESH => self.react_to_staleness(event, false).await?,
            topics::STREAM_EOL => self.react_to_end_of_life(event).await?,
            _ => {}
        }
        Ok(())
    }

    /// Queues the publish job of a release. `fresh` gives it a new key, for releases whose earlier publish
    /// job was given up (a missing key, a full disk) and that a new cycle must retry.
    pub(crate) async fn enqueue_publish(
        &self,
        release: &Release,
        fresh: bool,
    ) -> Result<(), EngineError> {
        let mut key = format!("publish:{}:{}", release.stream, release.version);
        if fresh {
            key.push_str(&format!(":{}", uuid::Uuid::new_v4()));
        }
        self.store
            .enqueue_job(
                &NewJob {
                    kind: JobKind::Publish.name().into(),
                    key,
                    payload: serde_json::to_value(PublishJob {
                        stream: release.stream.clone(),
                        version: release.version.to_string(),
                    })
                    .unwrap_or_default(),
                },
                self.now(),
            )
            .await?;
        Ok(())
    }
}

fn compose_of(body: &Value) -> Option<ComposeId> {
    body.get("compose")
        .and_then(|c| c.as_str().or_else(|| c.get("id").and_then(Value::as_str)))
        .map(|s| ComposeId(s.to_string()))
}
