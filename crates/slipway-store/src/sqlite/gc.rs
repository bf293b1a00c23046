//! What garbage collection needs: expiring releases, deleting composes with everything recorded about
//! them, and knowing which blobs are still named.

use std::collections::BTreeSet;

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;
use slipway_model::{topics, Compose, ComposeId, Release, ReleaseState, Sha256, Version};

use super::codec::{normalize, parse_sha, to_json_value, ts};
use super::{
    append_event, exec, load_compose, query_one, Db, ReleaseRow, SqliteStore, RELEASE_COLUMNS,
};
use crate::{StoreError, StoreResult};

/// The tables that hang off a compose, children before parents (results name their run).
const COMPOSE_CHILDREN: [&str; 6] = [
    "test_results",
    "test_runs",
    "verdicts",
    "waivers",
    "decisions",
    "artifacts",
];

impl SqliteStore {
    pub(super) async fn expire_release_tx(
        &self,
        stream: &str,
        version: &Version,
        at: Timestamp,
    ) -> StoreResult<Release> {
        const OP: &str = "expire_release";
        let (stream, version) = (stream.to_owned(), version.clone());
        let at = normalize(at);
        self.write(OP, move |tx| {
            let release = query_one(
                tx,
                &format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE stream = ?1 AND version = ?2"
                ),
                params![stream, version.to_string()],
                ReleaseRow::from_row,
            )
            .optional()
            .db(OP)?
            .ok_or_else(|| StoreError::NotFound(format!("release {version} of {stream}")))?
            .decode()?;
            match release.state {
                ReleaseState::Expired => return Ok(release),
                ReleaseState::Superseded => {}
                other => {
                    return Err(StoreError::Conflict(format!(
                        "release {version} of {stream} is {}; only a superseded release can expire",
                        other.as_str()
                    )))
                }
            }
            exec(
                tx,
                "UPDATE releases SET state = 'expired' WHERE stream = ?1 AND version = ?2",
                params![stream, version.to_string()],
            )
            .db(OP)?;
            let release = Release {
                state: ReleaseState::Expired,
                ..release
            };
            let mut body = to_json_value(OP, &release)?;
            if let Some(object) = body.as_object_mut() {
                object.insert("expired_at".into(), json!(at));
            }
            append_event(tx, OP, topics::RELEASE_EXPIRED, at, body)?;
            Ok(release)
        })
        .await
    }

    pub(super) async fn delete_compose_tx(
        &self,
        id: &ComposeId,
        at: Timestamp,
    ) -> StoreResult<Compose> {
        const OP: &str = "delete_compose";
        let id = id.clone();
        let at = normalize(at);
        self.write(OP, move |tx| delete_compose(tx, OP, &id, at))
            .await
    }

    pub(super) async fn referenced_blobs_tx(&self) -> StoreResult<BTreeSet<Sha256>> {
        const OP: &str = "referenced_blobs";
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT DISTINCT sha256 FROM artifacts")
                .db(OP)?;
            let digests = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            digests
                .iter()
                .map(|d| parse_sha("artifacts", "sha256", d))
                .collect()
        })
        .await
    }
}

fn delete_compose(
    tx: &Connection,
    op: &str,
    id: &ComposeId,
    at: Timestamp,
) -> StoreResult<Compose> {
    let compose = load_compose(tx, op, id.as_str())?
        .ok_or_else(|| StoreError::NotFound(format!("compose {id}")))?;
    if compose.state == slipway_model::ComposeState::Running {
        return Err(StoreError::Conflict(format!(
            "compose {id} is running; it cannot be deleted"
        )));
    }
    let release: Option<(String, String, String)> = query_one(
        tx,
        "SELECT stream, version, state FROM releases \
             WHERE compose_id = ?1 AND state != 'expired' LIMIT 1",
        params![id.as_str()],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .optional()
    .db(op)?;
    if let Some((stream, version, state)) = release {
        return Err(StoreError::Conflict(format!(
            "compose {id} is release {version} of {stream} ({state}); only composes whose releases \
             have all expired can be deleted"
        )));
    }
    // An incident keeps its evidence: its rows name the compose.
    let incident: Option<i64> = query_one(
        tx,
        "SELECT id FROM incidents WHERE compose_id = ?1 \
             UNION SELECT incident_id FROM incident_comments WHERE compose_id = ?1 LIMIT 1",
        params![id.as_str()],
        |row| row.get(0),
    )
    .optional()
    .db(op)?;
    if let Some(incident) = incident {
        return Err(StoreError::Conflict(format!(
            "compose {id} is named by incident {incident}; it is kept as the incident's evidence"
        )));
    }
    let (day, n): (String, i64) = query_one(
        tx,
        "SELECT day, n FROM composes WHERE id = ?1",
        params![id.as_str()],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .db(op)?;
    for table in COMPOSE_CHILDREN {
        exec(
            tx,
            &format!("DELETE FROM {table} WHERE compose_id = ?1"),
            params![id.as_str()],
        )
        .db(op)?;
    }
    exec(
        tx,
        "DELETE FROM composes WHERE id = ?1",
        params![id.as_str()],
    )
    .db(op)?;
    exec(
        tx,
        "INSERT INTO deleted_composes (id, stream, recipe, day, n, deleted_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id.as_str(), compose.stream, compose.recipe, day, n, ts(at)],
    )
    .db(op)?;
    append_event(
        tx,
        op,
        topics::COMPOSE_DELETED,
        at,
        json!({
            "compose": id,
            "stream": compose.stream,
            "recipe": compose.recipe,
            "state": compose.state.name(),
            "created_at": compose.created_at,
            "artifacts": compose.artifacts,
            "deleted_at": at,
        }),
    )?;
    Ok(compose)
}
