//! Incidents: the tracker entry of a stream that has no good compose.
//!
//! A stream whose nightly fails (the build, or the gate) gets an incident, or a comment on the one already
//! open; the next good compose closes it with a comment. The store holds the incidents (the embedded
//! tracker, which is the truth); an external tracker, when configured, mirrors them.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{ComposeId, Unsatisfied};

/// Whether an incident is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// The stream has had no good compose since the incident was opened.
    Open,
    /// A good compose closed it.
    Closed,
}

impl IncidentState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IncidentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            other => Err(format!("unknown incident state {other:?}")),
        }
    }
}

/// One entry in an incident's history: the opening report, each further failure, the closing note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentComment {
    /// The store's id for the comment.
    pub id: u64,
    /// When it was written.
    pub at: Timestamp,
    /// Who wrote it (`slipway` for what the engine writes).
    pub author: String,
    /// The text, Markdown.
    pub body: String,
    /// The compose it is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<ComposeId>,
}

/// The issue in an external tracker that mirrors an incident.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExternalIssue {
    /// The kind of tracker, such as `gitlab`.
    pub tracker: String,
    /// The issue's id in that tracker (GitLab: the issue's iid within its project).
    pub id: String,
    /// Where a person reads it.
    pub url: String,
}

/// The tracker entry of a stream that has no good compose. At most one per stream is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The store's id for the incident.
    pub id: u64,
    /// The stream concerned.
    pub stream: String,
    /// Open or closed.
    pub state: IncidentState,
    /// A one-line title.
    pub title: String,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// When a good compose closed it.
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
    /// The first failing compose, the one that opened it.
    pub compose: ComposeId,
    /// Its history, oldest first; the first comment is the opening report.
    pub comments: Vec<IncidentComment>,
    /// The external issue mirroring it, once one exists.
    #[serde(default)]
    pub external: Option<ExternalIssue>,
}

/// A failure to record: a new incident, or a comment on the stream's open one. Both texts are given so
/// the store can pick in the same transaction that finds out whether one is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIncident {
    /// The stream.
    pub stream: String,
    /// The failing compose.
    pub compose: ComposeId,
    /// Who reports it.
    pub author: String,
    /// The title of a new incident.
    pub title: String,
    /// The opening comment of a new incident, Markdown.
    pub body: String,
    /// The comment added to the open incident instead, Markdown.
    pub comment: String,
    /// When.
    pub at: Timestamp,
}

/// A comment to add to an incident (also the note an incident is closed with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIncidentComment {
    /// Who writes it.
    pub author: String,
    /// The text, Markdown.
    pub body: String,
    /// The compose it is about, if any.
    pub compose: Option<ComposeId>,
    /// When.
    pub at: Timestamp,
}

/// What recording a failure did to a stream's incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentAction {
    /// No incident was open; one was opened.
    Opened,
    /// The open incident got a comment.
    Commented,
    /// The open incident already records this compose; nothing was added (a repeated report).
    AlreadyRecorded,
}

/// Why a nightly produced no good compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The compose did not build.
    BuildFailed,
    /// The compose built, but its gate decision failed.
    GateFailed,
}

impl FailureKind {
    /// How people read it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::BuildFailed => "build failed",
            Self::GateFailed => "gate failed",
        }
    }
}

/// The last lines of a log, kept in a report so a person can see what went wrong without digging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTail {
    /// Which log, such as `build` or `serial log of the boot that ran sshd.active`.
    pub name: String,
    /// Its last lines.
    pub text: String,
}

/// What goes into an incident's text: which compose failed in which stream, how, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentReport {
    /// The stream.
    pub stream: String,
    /// The failing compose.
    pub compose: ComposeId,
    /// Build or gate.
    pub kind: FailureKind,
    /// One line: the build's error, or the gate decision's summary.
    pub summary: String,
    /// The gate's unmet requirements with their details; empty for a failed build.
    #[serde(default)]
    pub failed_requirements: Vec<Unsatisfied>,
    /// The ends of the build log or the serial logs.
    #[serde(default)]
    pub logs: Vec<LogTail>,
    /// When the failure was seen.
    pub at: Timestamp,
}

/// What a step mirroring an incident to an external tracker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorAction {
    /// Open the external issue with the incident's title and opening comment.
    Open,
    /// Add a comment to the external issue.
    Comment,
    /// Close the external issue with the closing comment.
    Close,
}

impl MirrorAction {
    /// The action's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Comment => "comment",
            Self::Close => "close",
        }
    }
}

impl fmt::Display for MirrorAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MirrorAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "comment" => Ok(Self::Comment),
            "close" => Ok(Self::Close),
            other => Err(format!("unknown mirror action {other:?}")),
        }
    }
}

/// A change to an incident that an external tracker has not received yet. Steps are kept in the store
/// until they succeed, and are applied in order per incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorStep {
    /// The store's id for the step; steps of one incident are applied in id order.
    pub id: u64,
    /// The incident.
    pub incident: u64,
    /// The incident's stream.
    pub stream: String,
    /// What to do.
    pub action: MirrorAction,
    /// The comment whose text the step carries (the opening report, a comment, the closing note).
    pub comment: u64,
    /// The kind of tracker it is for, such as `gitlab`.
    pub tracker: String,
    /// When the step was recorded.
    pub created_at: Timestamp,
    /// How many times it was tried and failed.
    pub attempts: u32,
    /// The last failure, naming the request and the tracker's answer.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it was last tried.
    #[serde(default)]
    pub last_attempt_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_actions_round_trip_through_their_names() {
        for state in [IncidentState::Open, IncidentState::Closed] {
            assert_eq!(state.as_str().parse::<IncidentState>(), Ok(state));
        }
        for action in [
            MirrorAction::Open,
            MirrorAction::Comment,
            MirrorAction::Close,
        ] {
            assert_eq!(action.as_str().parse::<MirrorAction>(), Ok(action));
        }
        assert!("reopened".parse::<IncidentState>().is_err());
        assert!("delete".parse::<MirrorAction>().is_err());
    }
}
