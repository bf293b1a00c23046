//! The notification queue's rows: announcements waiting to be sent, and those sent.

use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use slipway_model::Announcement;

/// Where a queued announcement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationState {
    /// Not delivered yet; sent (again) once its next attempt is due.
    Pending,
    /// Handed to the mail server or written to the outbox.
    Sent,
}

impl NotificationState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
        }
    }
}

impl FromStr for NotificationState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            other => Err(format!("unknown notification state {other:?}")),
        }
    }
}

/// One announcement in the notification queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The row id.
    pub id: i64,
    /// The unique key it was queued under: queuing the same key again does nothing.
    pub key: String,
    /// What is sent.
    pub announcement: Announcement,
    /// Pending or sent.
    pub state: NotificationState,
    /// How many sends were tried, the successful one included.
    pub attempts: u32,
    /// When it was queued.
    pub queued_at: Timestamp,
    /// When it is (or was) next due to be tried.
    pub next_attempt_at: Timestamp,
    /// Why the last failed attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
}
