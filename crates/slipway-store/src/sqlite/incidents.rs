//! The SQL of incidents, their comments and their mirror steps.
//!
//! At most one incident per stream is open: the code looks for the open one before opening another, and
//! the partial unique index `incidents_one_open_per_stream` refuses a second one whatever the code does.
//! Mirror steps are queued in the transaction of the change they mirror, so a change is never lost to the
//! external tracker, and leave the queue only when done.

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::json;
use slipway_model::{
    topics, ComposeId, ExternalIssue, Incident, IncidentAction, IncidentComment, IncidentState,
    MirrorAction, MirrorStep, NewIncident, NewIncidentComment,
};

use super::codec::{corrupt, normalize, parse_opt_ts, parse_ts, to_json_value, to_u32, to_u64, ts};
use super::{append_event, compose_state, exec, query_one, sql_limit, Db, SqliteStore};
use crate::{StoreError, StoreResult};

const INCIDENT_COLUMNS: &str = "id, stream, state, title, compose_id, opened_at, closed_at, \
                                external_tracker, external_id, external_url";

/// An `incidents` row as stored, read with [`INCIDENT_COLUMNS`].
struct IncidentRow {
    id: i64,
    stream: String,
    state: String,
    title: String,
    compose: String,
    opened_at: String,
    closed_at: Option<String>,
    external_tracker: Option<String>,
    external_id: Option<String>,
    external_url: Option<String>,
}

impl IncidentRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            stream: row.get(1)?,
            state: row.get(2)?,
            title: row.get(3)?,
            compose: row.get(4)?,
            opened_at: row.get(5)?,
            closed_at: row.get(6)?,
            external_tracker: row.get(7)?,
            external_id: row.get(8)?,
            external_url: row.get(9)?,
        })
    }

    fn decode(self, comments: Vec<IncidentComment>) -> StoreResult<Incident> {
        const T: &str = "incidents";
        let external = match (self.external_tracker, self.external_id) {
            (Some(tracker), Some(id)) => Some(ExternalIssue {
                tracker,
                id,
                url: self.external_url.unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Incident {
            id: to_u64(T, "id", self.id)?,
            stream: self.stream,
            state: self
                .state
                .parse::<IncidentState>()
                .map_err(|e| corrupt(T, "state", e))?,
            title: self.title,
            opened_at: parse_ts(T, "opened_at", &self.opened_at)?,
            closed_at: parse_opt_ts(T, "closed_at", self.closed_at)?,
            compose: ComposeId(self.compose),
            comments,
            external,
        })
    }
}

fn comments_of(tx: &Connection, op: &str, incident: i64) -> StoreResult<Vec<IncidentComment>> {
    const T: &str = "incident_comments";
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, created_at, author, body, compose_id FROM incident_comments \
             WHERE incident_id = ?1 ORDER BY id",
        )
        .db(op)?;
    let rows = stmt
        .query_map(params![incident], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
            ))
        })
        .db(op)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db(op)?;
    rows.into_iter()
        .map(|(id, at, author, body, compose)| {
            Ok(IncidentComment {
                id: to_u64(T, "id", id)?,
                at: parse_ts(T, "created_at", &at)?,
                author,
                body,
                compose: compose.map(ComposeId),
            })
        })
        .collect()
}

fn decode_all(tx: &Connection, op: &str, rows: Vec<IncidentRow>) -> StoreResult<Vec<Incident>> {
    rows.into_iter()
        .map(|row| {
            let comments = comments_of(tx, op, row.id)?;
            row.decode(comments)
        })
        .collect()
}

fn incident_in(tx: &Connection, op: &str, id: i64) -> StoreResult<Option<Incident>> {
    let row = query_one(
        tx,
        &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"),
        params![id],
        IncidentRow::read,
    )
    .optional()
    .db(op)?;
    Ok(decode_all(tx, op, row.into_iter().collect())?.pop())
}

fn existing(tx: &Connection, op: &str, id: i64) -> StoreResult<Incident> {
    incident_in(tx, op, id)?.ok_or_else(|| StoreError::NotFound(format!("incident {id}")))
}

fn open_incident_in(tx: &Connection, op: &str, stream: &str) -> StoreResult<Option<Incident>> {
    let row = query_one(
        tx,
        &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE stream = ?1 AND state = 'open'"),
        params![stream],
        IncidentRow::read,
    )
    .optional()
    .db(op)?;
    Ok(decode_all(tx, op, row.into_iter().collect())?.pop())
}

/// An id as SQLite stores it; ids beyond its range name nothing.
fn key(what: &str, id: u64) -> StoreResult<i64> {
    i64::try_from(id).map_err(|_| StoreError::NotFound(format!("{what} {id}")))
}

fn insert_comment(
    tx: &Connection,
    op: &str,
    incident: i64,
    comment: &NewIncidentComment,
) -> StoreResult<IncidentComment> {
    if let Some(compose) = &comment.compose {
        compose_state(tx, op, compose.as_str())?;
    }
    exec(
        tx,
        "INSERT INTO incident_comments (incident_id, author, body, compose_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            incident,
            comment.author,
            comment.body,
            comment.compose.as_ref().map(ComposeId::as_str),
            ts(comment.at)
        ],
    )
    .db(op)?;
    Ok(IncidentComment {
        id: to_u64("incident_comments", "id", tx.last_insert_rowid())?,
        at: comment.at,
        author: comment.author.clone(),
        body: comment.body.clone(),
        compose: comment.compose.clone(),
    })
}

fn has_open_step(tx: &Connection, op: &str, incident: i64, tracker: &str) -> StoreResult<bool> {
    query_one(
        tx,
        "SELECT EXISTS (SELECT 1 FROM incident_mirror_steps \
         WHERE incident_id = ?1 AND tracker = ?2 AND action = 'open')",
        params![incident, tracker],
        |row| row.get(0),
    )
    .db(op)
}

fn queue_step(
    tx: &Connection,
    op: &str,
    incident: i64,
    comment: u64,
    action: MirrorAction,
    tracker: &str,
    at: Timestamp,
) -> StoreResult<()> {
    let comment = key("comment", comment)?;
    exec(
        tx,
        "INSERT INTO incident_mirror_steps (incident_id, comment_id, action, tracker, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![incident, comment, action.as_str(), tracker, ts(at)],
    )
    .db(op)?;
    Ok(())
}

/// Queues a comment for `tracker`, preceded by the incident's open step if the tracker never got one
/// (an incident opened before the tracker was configured is adopted with its opening report).
fn queue_comment(
    tx: &Connection,
    op: &str,
    incident: &Incident,
    comment: u64,
    tracker: &str,
    at: Timestamp,
) -> StoreResult<()> {
    let id = key("incident", incident.id)?;
    if !has_open_step(tx, op, id, tracker)? {
        let first = incident.comments.first().map_or(comment, |c| c.id);
        queue_step(tx, op, id, first, MirrorAction::Open, tracker, at)?;
    }
    queue_step(tx, op, id, comment, MirrorAction::Comment, tracker, at)
}

fn comment_event_body(
    incident: &Incident,
    comment: &IncidentComment,
    op: &str,
) -> StoreResult<serde_json::Value> {
    Ok(json!({
        "incident": incident.id,
        "stream": incident.stream,
        "state": incident.state,
        "comment": to_json_value(op, comment)?,
    }))
}

impl SqliteStore {
    pub(super) async fn inc_open_or_comment(
        &self,
        new: &NewIncident,
        mirror: Option<&str>,
    ) -> StoreResult<(IncidentAction, Incident)> {
        const OP: &str = "open_or_comment_incident";
        let new = NewIncident {
            at: normalize(new.at),
            ..new.clone()
        };
        let mirror = mirror.map(str::to_owned);
        self.write(OP, move |tx| {
            compose_state(tx, OP, new.compose.as_str())?;
            let comment = |body: &str| NewIncidentComment {
                author: new.author.clone(),
                body: body.to_string(),
                compose: Some(new.compose.clone()),
                at: new.at,
            };
            if let Some(open) = open_incident_in(tx, OP, &new.stream)? {
                if open
                    .comments
                    .iter()
                    .any(|c| c.compose.as_ref() == Some(&new.compose))
                {
                    return Ok((IncidentAction::AlreadyRecorded, open));
                }
                let id = key("incident", open.id)?;
                let added = insert_comment(tx, OP, id, &comment(&new.comment))?;
                if let Some(tracker) = &mirror {
                    queue_comment(tx, OP, &open, added.id, tracker, new.at)?;
                }
                append_event(
                    tx,
                    OP,
                    topics::INCIDENT_COMMENTED,
                    new.at,
                    comment_event_body(&open, &added, OP)?,
                )?;
                return Ok((IncidentAction::Commented, existing(tx, OP, id)?));
            }
            exec(
                tx,
                "INSERT INTO incidents (stream, state, title, compose_id, opened_at) \
                 VALUES (?1, 'open', ?2, ?3, ?4)",
                params![new.stream, new.title, new.compose.as_str(), ts(new.at)],
            )
            .db(OP)?;
            let id = tx.last_insert_rowid();
            let first = insert_comment(tx, OP, id, &comment(&new.body))?;
            if let Some(tracker) = &mirror {
                queue_step(tx, OP, id, first.id, MirrorAction::Open, tracker, new.at)?;
            }
            let incident = existing(tx, OP, id)?;
            append_event(
                tx,
                OP,
                topics::INCIDENT_OPENED,
                new.at,
                to_json_value(OP, &incident)?,
            )?;
            Ok((IncidentAction::Opened, incident))
        })
        .await
    }

    pub(super) async fn inc_comment(
        &self,
        id: u64,
        comment: &NewIncidentComment,
        mirror: Option<&str>,
    ) -> StoreResult<Incident> {
        const OP: &str = "comment_incident";
        let comment = NewIncidentComment {
            at: normalize(comment.at),
            ..comment.clone()
        };
        let mirror = mirror.map(str::to_owned);
        let id = key("incident", id)?;
        self.write(OP, move |tx| {
            let incident = existing(tx, OP, id)?;
            let added = insert_comment(tx, OP, id, &comment)?;
            if let Some(tracker) = &mirror {
                // A closed incident the tracker never saw stays out of it, as on close.
                if incident.state == IncidentState::Open || has_open_step(tx, OP, id, tracker)? {
                    queue_comment(tx, OP, &incident, added.id, tracker, comment.at)?;
                }
            }
            append_event(
                tx,
                OP,
                topics::INCIDENT_COMMENTED,
                comment.at,
                comment_event_body(&incident, &added, OP)?,
            )?;
            existing(tx, OP, id)
        })
        .await
    }

    pub(super) async fn inc_close(
        &self,
        id: u64,
        comment: &NewIncidentComment,
        mirror: Option<&str>,
    ) -> StoreResult<Incident> {
        const OP: &str = "close_incident";
        let comment = NewIncidentComment {
            at: normalize(comment.at),
            ..comment.clone()
        };
        let mirror = mirror.map(str::to_owned);
        let key = key("incident", id)?;
        self.write(OP, move |tx| {
            let incident = existing(tx, OP, key)?;
            if let Some(closed_at) = incident.closed_at {
                return Err(StoreError::Conflict(format!(
                    "incident {id} of {} was already closed at {closed_at}",
                    incident.stream
                )));
            }
            let added = insert_comment(tx, OP, key, &comment)?;
            exec(
                tx,
                "UPDATE incidents SET state = 'closed', closed_at = ?1 WHERE id = ?2",
                params![ts(comment.at), key],
            )
            .db(OP)?;
            if let Some(tracker) = &mirror {
                if has_open_step(tx, OP, key, tracker)? {
                    queue_step(
                        tx,
                        OP,
                        key,
                        added.id,
                        MirrorAction::Close,
                        tracker,
                        comment.at,
                    )?;
                }
            }
            let closed = existing(tx, OP, key)?;
            append_event(
                tx,
                OP,
                topics::INCIDENT_CLOSED,
                comment.at,
                comment_event_body(&closed, &added, OP)?,
            )?;
            Ok(closed)
        })
        .await
    }

    pub(super) async fn inc_set_external(
        &self,
        id: u64,
        external: &ExternalIssue,
        at: Timestamp,
    ) -> StoreResult<()> {
        const OP: &str = "set_incident_external";
        let external = external.clone();
        let at = normalize(at);
        let key = key("incident", id)?;
        self.write(OP, move |tx| {
            let incident = existing(tx, OP, key)?;
            match &incident.external {
                Some(known) if *known == external => {}
                Some(known) => {
                    return Err(StoreError::Conflict(format!(
                        "incident {id} is already mirrored as {} issue {} ({})",
                        known.tracker, known.id, known.url
                    )))
                }
                None => {
                    exec(
                        tx,
                        "UPDATE incidents SET external_tracker = ?1, external_id = ?2, \
                         external_url = ?3 WHERE id = ?4",
                        params![external.tracker, external.id, external.url, key],
                    )
                    .db(OP)?;
                }
            }
            exec(
                tx,
                "UPDATE incident_mirror_steps SET done_at = ?1 \
                 WHERE incident_id = ?2 AND tracker = ?3 AND action = 'open' AND done_at IS NULL",
                params![ts(at), key, external.tracker],
            )
            .db(OP)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn inc_open_incident(&self, stream: &str) -> StoreResult<Option<Incident>> {
        const OP: &str = "open_incident";
        let stream = stream.to_owned();
        self.read(OP, move |tx| open_incident_in(tx, OP, &stream))
            .await
    }

    pub(super) async fn inc_incidents(
        &self,
        stream: Option<&str>,
        include_closed: bool,
    ) -> StoreResult<Vec<Incident>> {
        const OP: &str = "incidents";
        let stream = stream.map(str::to_owned);
        self.read(OP, move |tx| {
            // One statement per case, each written so that SQLite can answer it from an index: a stream's
            // incidents from `incidents_by_stream`, its open one from `incidents_open`.
            let filter = match (&stream, include_closed) {
                (Some(_), true) => "WHERE stream = ?1",
                (Some(_), false) => "WHERE stream = ?1 AND state = 'open'",
                (None, true) => "",
                (None, false) => "WHERE state = 'open'",
            };
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents {filter} ORDER BY id DESC"
                ))
                .db(OP)?;
            let rows = match &stream {
                Some(stream) => stmt.query_map(params![stream], IncidentRow::read),
                None => stmt.query_map([], IncidentRow::read),
            }
            .db(OP)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db(OP)?;
            decode_all(tx, OP, rows)
        })
        .await
    }

    pub(super) async fn inc_newest_incidents(
        &self,
        stream: &str,
        limit: usize,
    ) -> StoreResult<Vec<Incident>> {
        const OP: &str = "newest_incidents";
        let stream = stream.to_owned();
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE stream = ?1 \
                     ORDER BY id DESC LIMIT ?2"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![stream, sql_limit(limit)], IncidentRow::read)
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            decode_all(tx, OP, rows)
        })
        .await
    }

    pub(super) async fn inc_incident(&self, id: u64) -> StoreResult<Option<Incident>> {
        const OP: &str = "incident";
        let Ok(key) = i64::try_from(id) else {
            return Ok(None);
        };
        self.read(OP, move |tx| incident_in(tx, OP, key)).await
    }

    pub(super) async fn inc_pending_steps(&self) -> StoreResult<Vec<MirrorStep>> {
        const OP: &str = "pending_mirror_steps";
        const T: &str = "incident_mirror_steps";
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT s.id, s.incident_id, i.stream, s.action, s.comment_id, s.tracker, \
                     s.created_at, s.attempts, s.last_error, s.last_attempt_at \
                     FROM incident_mirror_steps s JOIN incidents i ON i.id = s.incident_id \
                     WHERE s.done_at IS NULL ORDER BY s.id",
                )
                .db(OP)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        (
                            row.get::<_, i64>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, i64>(4)?,
                        ),
                        (
                            row.get::<_, String>(5)?,
                            row.get::<_, String>(6)?,
                            row.get::<_, i64>(7)?,
                            row.get::<_, Option<String>>(8)?,
                            row.get::<_, Option<String>>(9)?,
                        ),
                    ))
                })
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter()
                .map(
                    |(
                        (id, incident, stream, action, comment),
                        (tracker, created_at, attempts, last_error, last_attempt_at),
                    )| {
                        Ok(MirrorStep {
                            id: to_u64(T, "id", id)?,
                            incident: to_u64(T, "incident_id", incident)?,
                            stream,
                            action: action
                                .parse::<MirrorAction>()
                                .map_err(|e| corrupt(T, "action", e))?,
                            comment: to_u64(T, "comment_id", comment)?,
                            tracker,
                            created_at: parse_ts(T, "created_at", &created_at)?,
                            attempts: to_u32(T, "attempts", attempts)?,
                            last_error,
                            last_attempt_at: parse_opt_ts(T, "last_attempt_at", last_attempt_at)?,
                        })
                    },
                )
                .collect()
        })
        .await
    }

    pub(super) async fn inc_finish_step(&self, step: u64, at: Timestamp) -> StoreResult<()> {
        const OP: &str = "finish_mirror_step";
        let key = key("mirror step", step)?;
        let at = normalize(at);
        self.write(OP, move |tx| {
            let changed = exec(
                tx,
                "UPDATE incident_mirror_steps SET done_at = COALESCE(done_at, ?1) WHERE id = ?2",
                params![ts(at), key],
            )
            .db(OP)?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("mirror step {step}")));
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn inc_fail_step(
        &self,
        step: u64,
        error: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        const OP: &str = "fail_mirror_step";
        let key = key("mirror step", step)?;
        let (error, at) = (error.to_owned(), normalize(at));
        self.write(OP, move |tx| {
            let changed = exec(
                tx,
                "UPDATE incident_mirror_steps SET attempts = attempts + 1, last_error = ?1, \
                     last_attempt_at = ?2 WHERE id = ?3 AND done_at IS NULL",
                params![error, ts(at), key],
            )
            .db(OP)?;
            if changed == 0 {
                let known: bool = query_one(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM incident_mirror_steps WHERE id = ?1)",
                    params![key],
                    |row| row.get(0),
                )
                .db(OP)?;
                if !known {
                    return Err(StoreError::NotFound(format!("mirror step {step}")));
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use crate::sqlite::SqliteStore;

    /// The database itself refuses a second open incident for a stream, even from SQL that skips the
    /// store's checks; a closed one does not count.
    #[tokio::test]
    async fn the_database_allows_one_open_incident_per_stream() {
        let store = SqliteStore::open_in_memory().expect("store");
        let conn = store.conn.lock().expect("connection");
        conn.execute_batch(
            "INSERT INTO composes (id, stream, recipe, day, n, recipe_hash, state, created_at) \
             VALUES ('c-1', 'cloud', 'cloud', '20261121', 0, 'x', 'failed', '2026-11-21T00:00:00.000000Z');",
        )
        .expect("compose");
        let insert = |stream: &str, state: &str, closed_at: Option<&str>| {
            conn.execute(
                "INSERT INTO incidents (stream, state, title, compose_id, opened_at, closed_at) \
                 VALUES (?1, ?2, 't', 'c-1', '2026-11-21T00:00:00.000000Z', ?3)",
                params![stream, state, closed_at],
            )
        };
        insert("cloud", "open", None).expect("first open incident");
        let err = insert("cloud", "open", None).expect_err("a second open incident");
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        insert("edge", "open", None).expect("another stream");
        insert("cloud", "closed", Some("2026-11-22T00:00:00.000000Z")).expect("closed ones");
        insert("cloud", "closed", Some("2026-11-23T00:00:00.000000Z")).expect("closed ones");
        let err = insert("cloud", "closed", None).expect_err("closed without a time");
        assert!(err.to_string().contains("CHECK"), "{err}");
    }
}
