//! The SQL of the notification queue.
//!
//! A notification is `pending` until a send succeeds, then `sent`. Claiming moves a due notification's
//! `next_attempt_at` forward by the claimer's hold, in the same transaction that reads it: a second
//! process polling meanwhile does not see it as due, and if the claimer dies before recording the outcome,
//! it is due again when the hold ends. Sending is therefore at least once: a process that dies after the
//! mail server took the message and before `mark_notification_sent` committed sends it again later.

use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::json;
use slipway_model::{topics, Announcement};

use super::codec::{
    corrupt, lease_end, normalize, parse_json, parse_opt_ts, parse_ts, sql_limit, to_json, to_u32,
    ts,
};
use super::{append_event, exec, query_one, Db, SqliteStore};
use crate::{Notification, NotificationState, StoreError, StoreResult};

const T: &str = "notifications";

const COLUMNS: &str = "id, key, announcement, state, attempts, queued_at, next_attempt_at, \
                       last_error, sent_at";

/// A `notifications` row as stored.
struct NotificationRow {
    id: i64,
    key: String,
    announcement: String,
    state: String,
    attempts: i64,
    queued_at: String,
    next_attempt_at: String,
    last_error: Option<String>,
    sent_at: Option<String>,
}

impl NotificationRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            key: row.get(1)?,
            announcement: row.get(2)?,
            state: row.get(3)?,
            attempts: row.get(4)?,
            queued_at: row.get(5)?,
            next_attempt_at: row.get(6)?,
            last_error: row.get(7)?,
            sent_at: row.get(8)?,
        })
    }

    fn decode(self) -> StoreResult<Notification> {
        Ok(Notification {
            id: self.id,
            key: self.key,
            announcement: parse_json(T, "announcement", &self.announcement)?,
            state: self
                .state
                .parse()
                .map_err(|e: String| corrupt(T, "state", e))?,
            attempts: to_u32(T, "attempts", self.attempts)?,
            queued_at: parse_ts(T, "queued_at", &self.queued_at)?,
            next_attempt_at: parse_ts(T, "next_attempt_at", &self.next_attempt_at)?,
            last_error: self.last_error,
            sent_at: parse_opt_ts(T, "sent_at", self.sent_at)?,
        })
    }
}

fn load(tx: &Connection, op: &str, id: i64) -> StoreResult<Notification> {
    query_one(
        tx,
        &format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1"),
        params![id],
        NotificationRow::read,
    )
    .optional()
    .db(op)?
    .ok_or_else(|| StoreError::NotFound(format!("notification {id}")))?
    .decode()
}

fn list(
    tx: &Connection,
    op: &str,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<Notification>> {
    let mut stmt = tx.prepare_cached(sql).db(op)?;
    let rows = stmt
        .query_map(params, NotificationRow::read)
        .db(op)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db(op)?;
    rows.into_iter().map(NotificationRow::decode).collect()
}

/// The body of `announcement.queued` and `announcement.sent`: enough for a consumer to know what went out,
/// without the whole text.
fn event_body(notification: &Notification) -> serde_json::Value {
    let a = &notification.announcement;
    json!({
        "id": notification.id,
        "key": notification.key,
        "kind": a.kind,
        "stream": a.stream,
        "version": a.version,
        "subject": a.subject,
        "attempts": notification.attempts,
    })
}

impl SqliteStore {
    pub(super) async fn notifications_enqueue(
        &self,
        key: &str,
        announcement: &Announcement,
        at: Timestamp,
    ) -> StoreResult<Option<Notification>> {
        const OP: &str = "enqueue_notification";
        let (key, announcement) = (key.to_owned(), announcement.clone());
        let at = normalize(at);
        self.write(OP, move |tx| {
            let added = tx
                .execute(
                    "INSERT INTO notifications (key, kind, stream, subject, announcement, state, \
                     attempts, queued_at, next_attempt_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6) ON CONFLICT (key) DO NOTHING",
                    params![
                        key,
                        announcement.kind.as_str(),
                        announcement.stream,
                        announcement.subject,
                        to_json(OP, &announcement)?,
                        ts(at),
                    ],
                )
                .db(OP)?;
            if added == 0 {
                return Ok(None);
            }
            let notification = load(tx, OP, tx.last_insert_rowid())?;
            append_event(
                tx,
                OP,
                topics::ANNOUNCEMENT_QUEUED,
                at,
                event_body(&notification),
            )?;
            Ok(Some(notification))
        })
        .await
    }

    pub(super) async fn notifications_claim(
        &self,
        at: Timestamp,
        hold: Duration,
        limit: usize,
    ) -> StoreResult<Vec<Notification>> {
        const OP: &str = "claim_notifications";
        let at = normalize(at);
        let until = lease_end(at, hold)?;
        self.write(OP, move |tx| {
            let due = list(
                tx,
                OP,
                &format!(
                    "SELECT {COLUMNS} FROM notifications \
                     WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2"
                ),
                params![ts(at), sql_limit(limit)],
            )?;
            for notification in &due {
                exec(
                    tx,
                    "UPDATE notifications SET next_attempt_at = ?2 WHERE id = ?1",
                    params![notification.id, ts(until)],
                )
                .db(OP)?;
            }
            Ok(due)
        })
        .await
    }

    pub(super) async fn notifications_mark_sent(&self, id: i64, at: Timestamp) -> StoreResult<()> {
        const OP: &str = "mark_notification_sent";
        let at = normalize(at);
        self.write(OP, move |tx| {
            if load(tx, OP, id)?.state == NotificationState::Sent {
                return Ok(());
            }
            exec(
                tx,
                "UPDATE notifications SET state = 'sent', attempts = attempts + 1, sent_at = ?2 \
                 WHERE id = ?1",
                params![id, ts(at)],
            )
            .db(OP)?;
            let notification = load(tx, OP, id)?;
            append_event(
                tx,
                OP,
                topics::ANNOUNCEMENT_SENT,
                at,
                event_body(&notification),
            )
        })
        .await
    }

    pub(super) async fn notifications_mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Timestamp,
        at: Timestamp,
    ) -> StoreResult<Notification> {
        const OP: &str = "mark_notification_failed";
        let error = error.to_owned();
        let retry_at = normalize(retry_at.max(at));
        self.write(OP, move |tx| {
            if load(tx, OP, id)?.state == NotificationState::Sent {
                return Err(StoreError::Conflict(format!(
                    "notification {id} is already sent"
                )));
            }
            exec(
                tx,
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?2, \
                 next_attempt_at = ?3 WHERE id = ?1",
                params![id, error, ts(retry_at)],
            )
            .db(OP)?;
            load(tx, OP, id)
        })
        .await
    }

    pub(super) async fn notifications_pending(&self) -> StoreResult<Vec<Notification>> {
        const OP: &str = "pending_notifications";
        self.read(OP, move |tx| {
            list(
                tx,
                OP,
                &format!("SELECT {COLUMNS} FROM notifications WHERE state = 'pending' ORDER BY id"),
                [],
            )
        })
        .await
    }

    pub(super) async fn notifications_sent(&self, limit: usize) -> StoreResult<Vec<Notification>> {
        const OP: &str = "sent_notifications";
        self.read(OP, move |tx| {
            list(
                tx,
                OP,
                &format!(
                    "SELECT {COLUMNS} FROM notifications WHERE state = 'sent' \
                     ORDER BY sent_at DESC, id DESC LIMIT ?1"
                ),
                params![sql_limit(limit)],
            )
        })
        .await
    }
}
