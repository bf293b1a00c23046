//! A stream's life beyond its cadence: revoking a bad release (and taking a revocation back), releasing
//! out of cycle, ending a stream, and the stream's condition (stale, ended) as the public tree shows it.
//!
//! Each command changes the store in one transaction that appends its event; the reactions to the
//! event (republishing the tree, announcing) run from the event queue like every other reaction, so a
//! crash after the command loses nothing: the next drain republishes and announces.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use slipway_model::{
    topics, ComposeId, EolNotice, Release, ReleaseState, RevocationNotice, StaleNotice,
    StreamConfig, Version,
};
use slipway_publish::{EolInfo, StaleInfo};
use slipway_store::{NewJob, StoreError};

use crate::jobs::{JobKind, PublishJob};
use crate::notify::public_url;
use crate::release::StreamStates;
use crate::{Engine, EngineError};

/// The prefix of the state record that marks a stream's end of life.
pub(crate) const EOL_KEY: &str = "eol:";
/// The prefix of the state records that say why a compose is released out of cycle.
const OUT_OF_CYCLE_KEY: &str = "out-of-cycle:";

/// A stream's end of life, as recorded by [`Engine::end_of_life`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndOfLife {
    /// When it ended.
    pub at: Timestamp,
    /// The stream its users should move to.
    #[serde(default)]
    pub successor: Option<String>,
    /// Who ended it.
    pub author: String,
    /// Its last release that is not revoked, when it ended.
    #[serde(default)]
    pub last_release: Option<Version>,
}

/// Why a compose is released out of cycle, as recorded by [`Engine::release_out_of_cycle`] and by the
/// engine for a security fix at or above the stream's threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfCycle {
    /// The stream.
    pub stream: String,
    /// The compose released.
    pub compose: ComposeId,
    /// Whether it is a security emergency (rather than a person's call for another reason).
    pub emergency: bool,
    /// The advisories it is released for.
    #[serde(default)]
    pub advisories: Vec<String>,
    /// Why it could not wait for the release day.
    pub reason: String,
    /// Who asked for it: a person, or `slipway` for an automatic security release.
    pub author: String,
    /// When.
    pub at: Timestamp,
}

impl OutOfCycle {
    /// One line for the release notes and the announcement: why, for what, and who asked.
    pub fn describe(&self) -> String {
        let what = if self.emergency {
            "security emergency"
        } else {
            "out of cycle"
        };
        let advisories = if self.advisories.is_empty() {
            String::new()
        } else {
            format!(" for {}", self.advisories.join(", "))
        };
        format!("{what}{advisories}: {} (by {})", self.reason, self.author)
    }
}

/// What [`Engine::revoke`] and [`Engine::unrevoke`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationOutcome {
    /// The release, in its state now.
    pub release: Release,
    /// The stream's current release now; `None` when no good release is left.
    pub current: Option<Release>,
}

/// What an out-of-cycle release asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfCycleRequest {
    /// The compose to release; `None` for the newest compose whose gate passed and that the stream has
    /// not released.
    pub compose: Option<ComposeId>,
    /// A security emergency.
    pub emergency: bool,
    /// The advisories it is for (required for an emergency).
    pub advisories: Vec<String>,
    /// Why it cannot wait.
    pub reason: String,
    /// Who asks.
    pub author: String,
}

impl Engine {
    /// The configured stream, or an error listing the streams there are.
    pub(crate) fn configured_stream(&self, stream: &str) -> Result<&StreamConfig, EngineError> {
        self.config.stream(stream).ok_or_else(|| {
            let names: Vec<&str> = self
                .config
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            EngineError::NotFound(format!(
                "no stream {stream:?} in the config; its streams are: {}",
                names.join(", ")
            ))
        })
    }

    /// A stream's release by version, or an error naming the newest versions there are.
    async fn release_named(&self, stream: &str, version: &str) -> Result<Release, EngineError> {
        let parsed: Option<Version> = version.parse().ok();
        if let Some(parsed) = &parsed {
            if let Some(found) = self.store.release(stream, parsed).await? {
                return Ok(found);
            }
        }
        let releases = self.store.newest_releases(stream, &[], 5).await?;
        let known: Vec<String> = releases
            .iter()
            .take(5)
            .map(|r| format!("{} ({})", r.version, r.state.as_str()))
            .collect();
        let shape = if parsed.is_none() {
            " (a version looks like 20261121.0)"
        } else {
            ""
        };
        Err(EngineError::NotFound(if known.is_empty() {
            format!("{stream} has no release {version}{shape}: it has no releases at all")
        } else {
            format!(
                "{stream} has no release {version}{shape}; its newest are: {}",
                known.join(", ")
            )
        }))
    }

    /// The stream's current release: the one published and not revoked.
    pub(crate) async fn current_release(
        &self,
        stream: &str,
    ) -> Result<Option<Release>, EngineError> {
        Ok(self
            .store
            .newest_releases(stream, &[ReleaseState::Published], 1)
            .await?
            .into_iter()
            .next())
    }

    /// Revokes a release as bad: the stream falls back to the newest release before it that is not
    /// revoked, the public tree is republished without it as current (the index keeps it, marked, with
    /// the reason) and the revocation is announced. The republish and the announcement run as reactions
    /// to `release.revoked`, at the next drain. An unknown or already revoked release is refused and
    /// nothing changes.
    pub async fn revoke(
        &self,
        stream: &str,
        version: &str,
        reason: &str,
        author: &str,
    ) -> Result<RevocationOutcome, EngineError> {
        self.configured_stream(stream)?;
        if reason.trim().is_empty() {
            return Err(EngineError::Refused(
                "a revocation needs a reason: users read it next to the release".into(),
            ));
        }
        let release = self.release_named(stream, version).await?;
        let revoked = match self
            .store
            .revoke_release(stream, &release.version, reason, author, self.now())
            .await
        {
            Err(err @ StoreError::AlreadyRevoked { .. }) => {
                return Err(EngineError::Refused(err.to_string()))
            }
            other => other?,
        };
        let current = self.current_release(stream).await?;
        self.progress.step(
            stream,
            &format!(
                "release {} revoked by {author}: {reason}; {}",
                revoked.version,
                match &current {
                    Some(c) => format!("the stream falls back to {}", c.version),
                    None => "no good release is left".into(),
                }
            ),
        );
        Ok(RevocationOutcome {
            release: revoked,
            current,
        })
    }

    /// Takes a revocation back (it stays in the history); the tree is republished at the next drain.
    /// A release that is not revoked is refused and nothing changes.
    pub async fn unrevoke(
        &self,
        stream: &str,
        version: &str,
        reason: &str,
        author: &str,
    ) -> Result<RevocationOutcome, EngineError> {
        self.configured_stream(stream)?;
        let release = self.release_named(stream, version).await?;
        let restored = match self
            .store
            .unrevoke_release(stream, &release.version, author, reason, self.now())
            .await
        {
            Err(err @ StoreError::NotRevoked { .. }) => {
                return Err(EngineError::Refused(err.to_string()))
            }
            other => other?,
        };
        let current = self.current_release(stream).await?;
        self.progress.step(
            stream,
            &format!(
                "revocation of {} taken back by {author}; it is {} again",
                restored.version,
                restored.state.as_str()
            ),
        );
        Ok(RevocationOutcome {
            release: restored,
            current,
        })
    }

    /// Ends a stream: it composes and releases no more, its metadata and page say so with a pointer to
    /// `successor`, its releases index is archived, and the end is announced (the last three as
    /// reactions to `stream.eol`). Ending an ended stream, or naming a successor that is not a live stream
    /// of the config, is refused.
    pub async fn end_of_life(
        &self,
        stream: &str,
        successor: Option<&str>,
        author: &str,
    ) -> Result<EndOfLife, EngineError> {
        self.configured_stream(stream)?;
        if let Some(ended) = self.end_of_life_of(stream).await? {
            return Err(EngineError::Refused(format!(
                "{stream} already reached its end of life at {} (by {})",
                ended.at, ended.author
            )));
        }
        if let Some(successor) = successor {
            if successor == stream {
                return Err(EngineError::Refused(format!(
                    "{stream} cannot be its own successor"
                )));
            }
            self.configured_stream(successor)?;
            if self.end_of_life_of(successor).await?.is_some() {
                return Err(EngineError::Refused(format!(
                    "the successor {successor} has reached its end of life itself; name a live stream"
                )));
            }
        }
        let last_release = self.current_release(stream).await?.map(|r| r.version);
        let ended = EndOfLife {
            at: self.now(),
            successor: successor.map(str::to_string),
            author: author.to_string(),
            last_release,
        };
        let value = serde_json::to_value(&ended).unwrap_or_default();
        self.store
            .set_state(
                &format!("{EOL_KEY}{stream}"),
                &value,
                Some((
                    topics::STREAM_EOL,
                    &json!({"stream": stream, "successor": successor, "at": ended.at,
                            "last_release": ended.last_release}),
                )),
                ended.at,
            )
            .await?;
        self.progress.step(
            stream,
            &format!(
                "end of life{}",
                successor
                    .map(|s| format!("; users move to {s}"))
                    .unwrap_or_default()
            ),
        );
        Ok(ended)
    }

    /// The stream's end of life, if it reached it.
    pub async fn end_of_life_of(&self, stream: &str) -> Result<Option<EndOfLife>, EngineError> {
        Ok(self
            .store
            .state(&format!("{EOL_KEY}{stream}"))
            .await?
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Releases a compose out of cycle: now, without waiting for the release day. The compose must have
    /// passed its gate and not be released in the stream yet; by default it is the newest such compose.
    /// The reason (and, for an emergency, the advisories) is kept and shown in the announcement and
    /// the release notes. The publish follows at the next drain.
    pub async fn release_out_of_cycle(
        &self,
        stream: &str,
        request: &OutOfCycleRequest,
    ) -> Result<Release, EngineError> {
        self.configured_stream(stream)?;
        if request.reason.trim().is_empty() {
            return Err(EngineError::Refused(
                "a release out of cycle needs a reason: the announcement gives it".into(),
            ));
        }
        if request.emergency && request.advisories.is_empty() {
            return Err(EngineError::Refused(
                "an emergency release names the advisory it fixes (--advisory ID)".into(),
            ));
        }
        if let Some(ended) = self.end_of_life_of(stream).await? {
            return Err(EngineError::Refused(format!(
                "{stream} reached its end of life at {}; it releases no more",
                ended.at
            )));
        }
        let releases = self.store.releases(stream).await?;
        let released = |id: &ComposeId| releases.iter().find(|r| &r.compose == id);
        let compose = match &request.compose {
            Some(id) => {
                let found = self.store.compose(id).await?.ok_or_else(|| {
                    EngineError::NotFound(format!("no compose {id}; see `slipway status`"))
                })?;
                if found.stream != stream {
                    return Err(EngineError::Refused(format!(
                        "{id} is a compose of {}, not of {stream}",
                        found.stream
                    )));
                }
                if let Some(release) = released(id) {
                    return Err(EngineError::Refused(format!(
                        "{id} is already released in {stream} as {} ({})",
                        release.version,
                        release.state.as_str()
                    )));
                }
                let decision = self.decide(stream, id).await?;
                if !decision.passed {
                    return Err(EngineError::Refused(format!(
                        "{id} has not passed its gate ({}); only a passing compose is released",
                        decision.summary
                    )));
                }
                id.clone()
            }
            None => self.newest_unreleased_pass(stream, &releases).await?,
        };
        self.record_out_of_cycle(&OutOfCycle {
            stream: stream.to_string(),
            compose: compose.clone(),
            emergency: request.emergency,
            advisories: request.advisories.clone(),
            reason: request.reason.clone(),
            author: request.author.clone(),
            at: self.now(),
        })
        .await?;
        let release = self
            .store
            .create_release(stream, &compose, self.now())
            .await?;
        self.progress.step(
            stream,
            &format!(
                "release {} of {compose} out of cycle{}: {}",
                release.version,
                if request.emergency {
                    format!(" for {}", request.advisories.join(", "))
                } else {
                    String::new()
                },
                request.reason
            ),
        );
        Ok(release)
    }

    /// The newest compose of a stream whose gate passed and that it has not released; an error saying so
    /// when there is none.
    async fn newest_unreleased_pass(
        &self,
        stream: &str,
        releases: &[Release],
    ) -> Result<ComposeId, EngineError> {
        let newest_release = releases
            .iter()
            .map(|r| r.created_at)
            .max()
            .unwrap_or(Timestamp::MIN);
        for compose in self.store.composes(Some(stream), 50).await? {
            if releases.iter().any(|r| r.compose == compose.id) {
                // Older composes than a released one are older than what users have.
                break;
            }
            let passed = self
                .store
                .latest_decision(&compose.id, stream)
                .await?
                .is_some_and(|d| d.passed);
            if passed {
                return Ok(compose.id);
            }
        }
        Err(EngineError::Refused(format!(
            "no compose of {stream} has passed its gate since its last release{}; \
             `slipway status` shows the composes and their decisions",
            if newest_release == Timestamp::MIN {
                String::new()
            } else {
                format!(" ({newest_release})")
            }
        )))
    }

    /// Records why a compose is released out of cycle, with `release.out_of_cycle`. It is recorded
    /// before the release is created, so the release's announcement and notes always find it.
    pub(crate) async fn record_out_of_cycle(&self, note: &OutOfCycle) -> Result<(), EngineError> {
        let value = serde_json::to_value(note).unwrap_or_default();
        self.store
            .set_state(
                &out_of_cycle_key(&note.stream, &note.compose),
                &value,
                Some((topics::RELEASE_OUT_OF_CYCLE, &value)),
                note.at,
            )
            .await?;
        Ok(())
    }

    /// Why a compose was released out of cycle in a stream, if it was.
    pub async fn out_of_cycle_of(
        &self,
        stream: &str,
        compose: &ComposeId,
    ) -> Result<Option<OutOfCycle>, EngineError> {
        Ok(self
            .store
            .state(&out_of_cycle_key(stream, compose))
            .await?
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    /// The stream's condition as the public tree shows it: stale since a missed release day (with the
    /// open incident's link, when the tracker gives one), and ended.
    pub(crate) async fn stream_condition(
        &self,
        states: &StreamStates,
        stream: &str,
    ) -> Result<(Option<StaleInfo>, Option<EolInfo>), EngineError> {
        let eol = states.end_of_life(stream).map(|e| EolInfo {
            at: e.at,
            successor: e.successor.clone(),
        });
        let stale = match states.cadence(stream).stale_since {
            Some(since) if eol.is_none() => Some(StaleInfo {
                since,
                incident_url: self.incident_url(stream).await?,
            }),
            _ => None,
        };
        Ok((stale, eol))
    }

    /// Where a person reads the stream's open incident, when its tracker serves one.
    async fn incident_url(&self, stream: &str) -> Result<Option<String>, EngineError> {
        Ok(self
            .store
            .open_incident(stream)
            .await?
            .and_then(|i| i.external)
            .map(|e| e.url))
    }

    /// Queues a publish of the whole tree for a change that is not a new release (a revocation, a stale
    /// spell, an end of life). `cause` keys the job, so a reaction repeated after a crash queues it once.
    pub(crate) async fn enqueue_republish(
        &self,
        stream: &str,
        cause: &str,
    ) -> Result<(), EngineError> {
        self.store
            .enqueue_job(
                &NewJob {
                    kind: JobKind::Publish.name().into(),
                    key: format!("publish:{stream}:{cause}"),
                    payload: serde_json::to_value(PublishJob {
                        stream: stream.to_string(),
                        version: String::new(),
                    })
                    .unwrap_or_default(),
                },
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// The reaction to `release.revoked`: republish, and announce the revocation with the release the
    /// stream falls back to.
    pub(crate) async fn react_to_revocation(
        &self,
        event: &slipway_model::Event,
    ) -> Result<(), EngineError> {
        let Some((stream, version)) = stream_and_version(&event.body) else {
            return Ok(());
        };
        self.enqueue_republish(&stream, &format!("revoked:{version}:{}", event.id))
            .await?;
        let Ok(release) = self.release_named(&stream, &version).await else {
            return Ok(());
        };
        let Some(note) = release.revocation.clone() else {
            // Unrevoked again before this reaction ran: nothing to announce.
            return Ok(());
        };
        let fallback = self.current_release(&stream).await?.map(|r| r.version);
        let announcement = slipway_release::revocation_announcement(&RevocationNotice {
            stream: stream.clone(),
            version: release.version.clone(),
            reason: note.reason,
            author: note.author,
            revoked_at: note.at,
            fallback,
            stream_url: Some(public_url(
                self.config.base_url.as_deref(),
                &format!("{stream}/"),
            )),
        });
        self.announce_keyed(
            &format!("revocation:{stream}:{version}:{}", event.id),
            announcement,
        )
        .await?;
        Ok(())
    }

    /// The reaction to `stream.stale` and `stream.fresh`: republish (the banner comes or goes) and
    /// announce the transition.
    pub(crate) async fn react_to_staleness(
        &self,
        event: &slipway_model::Event,
        stale: bool,
    ) -> Result<(), EngineError> {
        let Some(stream) = event.body.get("stream").and_then(|v| v.as_str()) else {
            return Ok(());
        };
        let since = event
            .body
            .get(if stale { "since" } else { "stale_since" })
            .and_then(|v| serde_json::from_value::<Timestamp>(v.clone()).ok());
        let Some(since) = since else { return Ok(()) };
        self.enqueue_republish(stream, &format!("stale:{}", event.id))
            .await?;
        let current = self.current_release(stream).await?.map(|r| r.version);
        let announcement = slipway_release::stale_announcement(&StaleNotice {
            stream: stream.to_string(),
            stale,
            since,
            current,
            incident_url: self.incident_url(stream).await?,
            at: event.time,
        });
        self.announce_keyed(&format!("stale:{stream}:{}", event.id), announcement)
            .await?;
        Ok(())
    }

    /// The reaction to `stream.eol`: republish (the metadata, page and archived index say so) and
    /// announce the end.
    pub(crate) async fn react_to_end_of_life(
        &self,
        event: &slipway_model::Event,
    ) -> Result<(), EngineError> {
        let Some(stream) = event.body.get("stream").and_then(|v| v.as_str()) else {
            return Ok(());
        };
        let Some(ended) = self.end_of_life_of(stream).await? else {
            return Ok(());
        };
        self.enqueue_republish(stream, &format!("eol:{}", event.id))
            .await?;
        let announcement = slipway_release::eol_announcement(&EolNotice {
            stream: stream.to_string(),
            last_release: ended.last_release,
            successor: ended.successor,
            at: ended.at,
        });
        self.announce_keyed(&format!("eol:{stream}"), announcement)
            .await?;
        Ok(())
    }
}

fn out_of_cycle_key(stream: &str, compose: &ComposeId) -> String {
    format!("{OUT_OF_CYCLE_KEY}{stream}:{compose}")
}

fn stream_and_version(body: &serde_json::Value) -> Option<(String, String)> {
    let stream = body.get("stream")?.as_str()?.to_string();
    let version = body.get("version")?.as_str()?.to_string();
    Some((stream, version))
}

impl Engine {
    /// Carries out the reactions that a command's change set off (republishing the tree, queueing
    /// announcements), and whatever else an interrupted run left queued, when no other slipway process
    /// holds the state directory. Returns false when one does: that process carries them out itself.
    pub async fn settle(&self) -> Result<bool, EngineError> {
        let _lock = match self.lock_state_dir() {
            Ok(lock) => lock,
            Err(EngineError::Busy(_)) => return Ok(false),
            Err(err) => return Err(err),
        };
        self.drain().await?;
        Ok(true)
    }
}
