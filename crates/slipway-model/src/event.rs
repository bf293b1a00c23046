//! Events: immutable facts about state changes, appended in the same transaction as the change.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The unique id of an event; handlers remember the ids they have acted on.
pub type EventId = Uuid;

/// The position of an event in the store's log, increasing in commit order.
pub type EventSeq = i64;

/// An event as stored and carried on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id.
    pub id: EventId,
    /// Position in the log.
    pub seq: EventSeq,
    /// Topic without the deployment prefix, such as `compose.complete`.
    pub topic: String,
    /// When the change happened.
    pub time: Timestamp,
    /// The name of the body's JSON schema, such as `slipway.compose.complete.v1`.
    pub schema: String,
    /// The body.
    pub body: serde_json::Value,
}

impl Event {
    /// The schema name that goes with a topic.
    pub fn schema_for(topic: &str) -> String {
        format!("slipway.{topic}.v1")
    }
}

/// The topics slipway emits.
pub mod topics {
    /// A compose was started.
    pub const COMPOSE_STARTED: &str = "compose.started";
    /// A compose finished building.
    pub const COMPOSE_COMPLETE: &str = "compose.complete";
    /// A compose failed to build.
    pub const COMPOSE_FAILED: &str = "compose.failed";
    /// A stream was checked and nothing it is built from changed: its would-be input hash equals its last
    /// compose's, so nothing was built.
    pub const COMPOSE_SKIPPED: &str = "compose.skipped";
    /// A package source published new metadata (its signed index's digest changed).
    pub const REPO_CHANGED: &str = "repo.changed";
    /// A package source could not be refreshed; its last good metadata stays in use.
    pub const REPO_REFRESH_FAILED: &str = "repo.refresh_failed";
    /// One test result was recorded.
    pub const TEST_RESULT: &str = "test.result";
    /// A boot test of a compose finished and all its results are recorded.
    pub const TEST_COMPLETE: &str = "test.complete";
    /// A person marked a compose failed, or withdrew that.
    pub const COMPOSE_VERDICT: &str = "compose.verdict";
    /// A person waived a testcase of a compose.
    pub const WAIVER_CREATED: &str = "waiver.created";
    /// A waiver was revoked (it is kept, marked revoked).
    pub const WAIVER_REVOKED: &str = "waiver.revoked";
    /// The gate's decision on a compose in a stream changed.
    pub const DECISION_CHANGED: &str = "decision.changed";
    /// A release was chosen and given its version.
    pub const RELEASE_CREATED: &str = "release.created";
    /// A release's files and metadata are in the public tree.
    pub const RELEASE_PUBLISHED: &str = "release.published";
    /// A release passed its stream's retention and is withdrawn from the tree (kept in the index).
    pub const RELEASE_EXPIRED: &str = "release.expired";
    /// A compose and everything recorded about it were deleted by garbage collection.
    pub const COMPOSE_DELETED: &str = "compose.deleted";
    /// A release day passed with nothing to release: the stream keeps its previous release and is stale.
    pub const STREAM_STALE: &str = "stream.stale";
    /// A stale stream released again.
    pub const STREAM_FRESH: &str = "stream.fresh";
    /// A stream with no good compose got an incident.
    pub const INCIDENT_OPENED: &str = "incident.opened";
    /// An incident got a comment (another failing compose, or a person's note).
    pub const INCIDENT_COMMENTED: &str = "incident.commented";
    /// An incident was closed, with a comment (a good compose came).
    pub const INCIDENT_CLOSED: &str = "incident.closed";
    /// An announcement was put in the notification queue; it is sent (and retried) from there.
    pub const ANNOUNCEMENT_QUEUED: &str = "announcement.queued";
    /// A queued announcement was handed to the mail server or written to the outbox.
    pub const ANNOUNCEMENT_SENT: &str = "announcement.sent";
    /// A release was revoked as bad: the stream falls back to the newest release before it that is not.
    pub const RELEASE_REVOKED: &str = "release.revoked";
    /// A revocation was taken back: the release is served again.
    pub const RELEASE_UNREVOKED: &str = "release.unrevoked";
    /// A compose is to be released out of cycle (a security fix, or a person's call); the release follows
    /// as `release.created`.
    pub const RELEASE_OUT_OF_CYCLE: &str = "release.out_of_cycle";
    /// A stream reached its end of life: it composes and releases no more, and points at its successor.
    pub const STREAM_EOL: &str = "stream.eol";
}
