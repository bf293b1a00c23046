//! The schema, as an ordered list of scripts.
//!
//! Script `i` (0-based) brings the schema to version `i + 1`; `schema_migrations` records the versions
//! applied. Each script runs in its own transaction together with its `schema_migrations` row, so a crash
//! leaves the schema at a whole version. Scripts are append-only: never edit one that has shipped, add a
//! new one. The DDL sticks to types and constraints PostgreSQL also accepts (`TEXT`, `BIGINT`, `BOOLEAN`,
//! `INTEGER PRIMARY KEY`, which a PostgreSQL port spells `BIGINT GENERATED ALWAYS AS IDENTITY`).

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::codec::ts;
use super::Db;
use crate::{StoreError, StoreResult};

/// Version 1: everything slipway stores.
const V1: &str = r#"
CREATE TABLE composes (
    id          TEXT PRIMARY KEY,
    stream      TEXT NOT NULL,
    recipe      TEXT NOT NULL,
    day         TEXT NOT NULL,
    n           BIGINT NOT NULL,
    recipe_hash TEXT NOT NULL,
    input_hash  TEXT,
    state       TEXT NOT NULL CHECK (state IN ('running', 'complete', 'failed')),
    reason      TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    lock_json   TEXT,
    UNIQUE (recipe, day, n)
);
CREATE INDEX composes_by_stream ON composes (stream, created_at);
CREATE INDEX composes_by_time ON composes (created_at);

CREATE TABLE artifacts (
    compose_id TEXT NOT NULL REFERENCES composes (id),
    position   BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    file_name  TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    PRIMARY KEY (compose_id, file_name),
    UNIQUE (compose_id, position)
);

CREATE TABLE test_results (
    id           INTEGER PRIMARY KEY,
    compose_id   TEXT NOT NULL REFERENCES composes (id),
    testcase     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    artifact     TEXT NOT NULL,
    note         TEXT NOT NULL,
    log_sha256   TEXT,
    submitted_at TEXT NOT NULL
);
CREATE INDEX test_results_by_case ON test_results (compose_id, testcase, submitted_at);

CREATE TABLE verdicts (
    id         INTEGER PRIMARY KEY,
    compose_id TEXT NOT NULL REFERENCES composes (id),
    failed     BOOLEAN NOT NULL,
    author     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX verdicts_by_compose ON verdicts (compose_id, created_at);

CREATE TABLE decisions (
    id         INTEGER PRIMARY KEY,
    compose_id TEXT NOT NULL REFERENCES composes (id),
    stream     TEXT NOT NULL,
    passed     BOOLEAN NOT NULL,
    body       TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
CREATE INDEX decisions_by_compose ON decisions (compose_id, stream, id);

CREATE TABLE releases (
    stream       TEXT NOT NULL,
    version      TEXT NOT NULL,
    day          TEXT NOT NULL,
    n            BIGINT NOT NULL,
    compose_id   TEXT NOT NULL REFERENCES composes (id),
    state        TEXT NOT NULL
                 CHECK (state IN ('pending', 'published', 'superseded', 'revoked')),
    created_at   TEXT NOT NULL,
    published_at TEXT,
    PRIMARY KEY (stream, version),
    UNIQUE (stream, day, n),
    UNIQUE (stream, compose_id)
);

CREATE TABLE events (
    seq    INTEGER PRIMARY KEY,
    id     TEXT NOT NULL UNIQUE,
    topic  TEXT NOT NULL,
    time   TEXT NOT NULL,
    schema TEXT NOT NULL,
    body   TEXT NOT NULL
);

CREATE TABLE handled_events (
    handler    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (handler, event_id)
);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    key          TEXT NOT NULL UNIQUE,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed')),
    worker       TEXT,
    lease_until  TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, id);
"#;

/// The scripts in order.
/// Version 2: package diffs of composes, and named state records (source status, change checks).
const V2: &str = r#"
ALTER TABLE composes ADD COLUMN pkgdiff_json TEXT;

CREATE TABLE state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"#;

/// Version 3: test runs (ResultsDB groups), each result's scenario, item data, flake flag and attempts, and
/// the indexes the ResultsDB API reads by (results by testcase, runs by start time).
const V3: &str = r#"
CREATE TABLE test_runs (
    id          TEXT PRIMARY KEY,
    compose_id  TEXT NOT NULL REFERENCES composes (id),
    plan        TEXT NOT NULL,
    artifact    TEXT NOT NULL,
    description TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE INDEX test_runs_by_compose ON test_runs (compose_id, started_at);

ALTER TABLE test_results ADD COLUMN run_id TEXT REFERENCES test_runs (id);
ALTER TABLE test_results ADD COLUMN scenario TEXT NOT NULL DEFAULT '';
ALTER TABLE test_results ADD COLUMN format TEXT NOT NULL DEFAULT '';
ALTER TABLE test_results ADD COLUMN arch TEXT NOT NULL DEFAULT '';
ALTER TABLE test_results ADD COLUMN stream TEXT NOT NULL DEFAULT '';
ALTER TABLE test_results ADD COLUMN flaky BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE test_results ADD COLUMN attempts_json TEXT NOT NULL DEFAULT '[]';
CREATE INDEX test_results_by_run ON test_results (run_id, id);
CREATE INDEX test_results_by_time ON test_results (submitted_at, id);
CREATE INDEX test_results_by_testcase ON test_results (testcase, submitted_at, id);
CREATE INDEX test_runs_by_time ON test_runs (started_at, id);
"#;

/// Version 4: waivers. A revoked waiver keeps its row; the revocation fills the `revoked_*` columns.
const V4: &str = r#"
CREATE TABLE waivers (
    id            INTEGER PRIMARY KEY,
    compose_id    TEXT NOT NULL REFERENCES composes (id),
    testcase      TEXT NOT NULL,
    scenario      TEXT,
    author        TEXT NOT NULL,
    comment       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT,
    revoked_by    TEXT,
    revoke_reason TEXT
);
CREATE INDEX waivers_by_compose ON waivers (compose_id, id);
"#;

/// Version 5: a test run is recorded when it starts, with QUEUED results, and completed later; runs
/// recorded before this version were recorded whole.
const V5: &str = r#"
ALTER TABLE test_runs ADD COLUMN completed BOOLEAN NOT NULL DEFAULT TRUE;
"#;

/// Version 6: incidents (the embedded tracker), their comments, and the steps that mirror them to an
/// external tracker. A partial unique index keeps at most one incident per stream open, whatever the code
/// above does.
const V6: &str = r#"
CREATE TABLE incidents (
    id               INTEGER PRIMARY KEY,
    stream           TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    title            TEXT NOT NULL,
    compose_id       TEXT NOT NULL REFERENCES composes (id),
    opened_at        TEXT NOT NULL,
    closed_at        TEXT,
    external_tracker TEXT,
    external_id      TEXT,
    external_url     TEXT,
    CHECK ((state = 'open') = (closed_at IS NULL)),
    CHECK ((external_tracker IS NULL) = (external_id IS NULL))
);
CREATE UNIQUE INDEX incidents_one_open_per_stream ON incidents (stream) WHERE state = 'open';
CREATE INDEX incidents_by_stream ON incidents (stream, id);

CREATE TABLE incident_comments (
    id          INTEGER PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    author      TEXT NOT NULL,
    body        TEXT NOT NULL,
    compose_id  TEXT REFERENCES composes (id),
    created_at  TEXT NOT NULL
);
CREATE INDEX incident_comments_by_incident ON incident_comments (incident_id, id);

CREATE TABLE incident_mirror_steps (
    id              INTEGER PRIMARY KEY,
    incident_id     BIGINT NOT NULL REFERENCES incidents (id),
    comment_id      BIGINT NOT NULL REFERENCES incident_comments (id),
    action          TEXT NOT NULL CHECK (action IN ('open', 'comment', 'close')),
    tracker         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_attempt_at TEXT,
    done_at         TEXT
);
CREATE INDEX incident_mirror_steps_by_incident ON incident_mirror_steps (incident_id, id);
CREATE INDEX incident_mirror_steps_pending ON incident_mirror_steps (id) WHERE done_at IS NULL;
"#;

/// Version 7: the notification queue. Each row is one announcement (serialized whole, so a retry sends
/// exactly what was queued) under a unique key; `kind`, `stream` and `subject` are copies for SQL readers.
const V7: &str = r#"
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    stream          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    announcement    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    queued_at       TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    sent_at         TEXT
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at, id);
CREATE INDEX notifications_sent ON notifications (state, sent_at, id);
"#;

/// Version 8: release revocations. The release row carries its current revocation (reason, author, time),
/// cleared when it is taken back; `release_revocations` keeps every revocation and unrevocation.
const V8: &str = r#"
ALTER TABLE releases ADD COLUMN revoke_reason TEXT;
ALTER TABLE releases ADD COLUMN revoked_by TEXT;
ALTER TABLE releases ADD COLUMN revoked_at TEXT;

CREATE TABLE release_revocations (
    id      INTEGER PRIMARY KEY,
    stream  TEXT NOT NULL,
    version TEXT NOT NULL,
    action  TEXT NOT NULL CHECK (action IN ('revoked', 'unrevoked')),
    author  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    at      TEXT NOT NULL,
    FOREIGN KEY (stream, version) REFERENCES releases (stream, version)
);
CREATE INDEX release_revocations_by_release ON release_revocations (stream, version, id);
"#;

/// Version 9: garbage collection. A release may be `expired` and outlive its compose (an expired release
/// stays in the releases index after garbage collection deleted its compose), so `releases.compose_id` no
/// longer references `composes`. SQLite cannot change a table's constraints, so the table is rebuilt,
/// with every column it has by version 8 (see [`REBUILDS`]). A deleted compose leaves a tombstone, so its
/// id (and its `n` of the day) is never given out again and an expired release never names a newer
/// compose. Artifacts are indexed by digest for the question which blobs are still used.
const V9: &str = r#"
CREATE TABLE releases_v9 (
    stream        TEXT NOT NULL,
    version       TEXT NOT NULL,
    day           TEXT NOT NULL,
    n             BIGINT NOT NULL,
    compose_id    TEXT NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('pending', 'published', 'superseded', 'revoked', 'expired')),
    created_at    TEXT NOT NULL,
    published_at  TEXT,
    revoke_reason TEXT,
    revoked_by    TEXT,
    revoked_at    TEXT,
    PRIMARY KEY (stream, version),
    UNIQUE (stream, day, n),
    UNIQUE (stream, compose_id)
);
INSERT INTO releases_v9 (stream, version, day, n, compose_id, state, created_at, published_at,
                         revoke_reason, revoked_by, revoked_at)
    SELECT stream, version, day, n, compose_id, state, created_at, published_at,
           revoke_reason, revoked_by, revoked_at
    FROM releases;
DROP TABLE releases;
ALTER TABLE releases_v9 RENAME TO releases;
CREATE INDEX releases_by_compose ON releases (compose_id);

CREATE TABLE deleted_composes (
    id         TEXT PRIMARY KEY,
    stream     TEXT NOT NULL,
    recipe     TEXT NOT NULL,
    day        TEXT NOT NULL,
    n          BIGINT NOT NULL,
    deleted_at TEXT NOT NULL,
    UNIQUE (recipe, day, n)
);

CREATE INDEX artifacts_by_sha256 ON artifacts (sha256);
"#;

/// Version 10: a stream's and a recipe's composes, newest first, are read by walking an index instead of
/// sorting the whole history on every read (the order is `created_at, n, id`, as the reads sort).
const V10: &str = r#"
DROP INDEX composes_by_stream;
CREATE INDEX composes_by_stream ON composes (stream, created_at, n, id);
CREATE INDEX composes_by_recipe ON composes (recipe, state, created_at, n, id);
"#;

/// Version 11: the reads a release tick and a publish make of a stream's current releases (pending or
/// published) and of its open incident walk an index of those few rows instead of the stream's whole
/// history.
const V11: &str = r#"
CREATE INDEX releases_current ON releases (stream, day, n) WHERE state IN ('pending', 'published');
CREATE INDEX incidents_open ON incidents (stream, id) WHERE state = 'open';
"#;

/// Version 12: a stream's candidate composes, each with its latest decision's verdict, are read from the
/// indexes alone. A release tick reads the newest fifty of them; reading each compose's row (which holds
/// its lock) and each decision's row (which holds its body) cost a page apiece.
const V12: &str = r#"
DROP INDEX composes_by_stream;
CREATE INDEX composes_by_stream ON composes (stream, created_at, n, id, state, reason);
DROP INDEX decisions_by_compose;
CREATE INDEX decisions_by_compose ON decisions (compose_id, stream, id, passed);
"#;

const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12];

/// The versions whose script rebuilds a table that other tables reference (`release_revocations` names
/// `releases`). SQLite's way is to switch foreign key enforcement off around the transaction (it cannot
/// be switched inside one), rebuild, and check every foreign key before committing.
const REBUILDS: &[i64] = &[9];

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn current_version(conn: &Connection) -> StoreResult<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )
    .db("reading the schema version")
}

fn refuse_newer(version: i64) -> StoreResult<()> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::Database(format!(
            "the database has schema version {version}, newer than the {SCHEMA_VERSION} this slipway \
             knows; run a newer slipway or restore a backup"
        )));
    }
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`].
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    const OP: &str = "migrating the schema";
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at TEXT NOT NULL
         )",
    )
    .db(OP)?;
    refuse_newer(current_version(conn)?)?;
    for (index, script) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        let rebuild = REBUILDS.contains(&version);
        if rebuild {
            conn.pragma_update(None, "foreign_keys", "OFF").db(OP)?;
        }
        let applied = apply(conn, version, script);
        if rebuild {
            conn.pragma_update(None, "foreign_keys", "ON").db(OP)?;
        }
        applied?;
    }
    Ok(())
}

/// Applies one script in its own transaction unless the database already has its version.
fn apply(conn: &mut Connection, version: i64, script: &str) -> StoreResult<()> {
    const OP: &str = "migrating the schema";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db(OP)?;
    // Read again under the write lock: another process may have migrated since the check above.
    let current = current_version(&tx)?;
    refuse_newer(current)?;
    if current >= version {
        return Ok(());
    }
    tx.execute_batch(script)
        .db(&format!("{OP} to version {version}"))?;
    // With enforcement off for a rebuild, nothing else checked the references.
    let broken: Option<String> = tx
        .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
        .optional()
        .db(OP)?;
    if let Some(table) = broken {
        return Err(StoreError::Database(format!(
            "{OP} to version {version}: a row of {table} names a row that does not exist"
        )));
    }
    tx.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
        params![version, ts(Timestamp::now())],
    )
    .db(OP)?;
    tx.commit().db(OP)?;
    tracing::info!(version, "applied schema migration");
    Ok(())
}

/// The version recorded in the database.
pub(super) fn schema_version(conn: &Connection) -> StoreResult<i64> {
    current_version(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written by a slipway that knew versions 1 to 8 keeps its releases, their revocations
    /// and their history through version 9, and afterwards a release may expire and outlive its compose.
    #[test]
    fn version_9_keeps_releases_and_lets_them_outlive_their_compose() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "foreign_keys", "ON")
            .expect("pragma");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .expect("create");
        for (i, script) in MIGRATIONS[..8].iter().enumerate() {
            conn.execute_batch(script).expect("old script");
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 'then')",
                params![i as i64 + 1],
            )
            .expect("version");
        }
        conn.execute_batch(
            "INSERT INTO composes (id, stream, recipe, day, n, recipe_hash, state, created_at) \
             VALUES ('cloud-20261121.0', 'cloud', 'cloud', '20261121', 0, 'h', 'complete', 't'); \
             INSERT INTO releases (stream, version, day, n, compose_id, state, created_at, published_at, \
                                   revoke_reason, revoked_by, revoked_at) \
             VALUES ('cloud', '20261121.0', '20261121', 0, 'cloud-20261121.0', 'revoked', 't', 'p', \
                     'broken', 'alice', 'r'); \
             INSERT INTO release_revocations (stream, version, action, author, reason, at) \
             VALUES ('cloud', '20261121.0', 'revoked', 'alice', 'broken', 'r');",
        )
        .expect("rows");
        assert!(
            conn.execute("DELETE FROM composes", []).is_err(),
            "before version 9 a release holds its compose"
        );

        migrate(&mut conn).expect("migrate");
        assert_eq!(schema_version(&conn).expect("version"), SCHEMA_VERSION);
        let enforced: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("pragma");
        assert!(
            enforced,
            "foreign keys are enforced again after the rebuild"
        );
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Row = conn
            .query_row(
                "SELECT version, compose_id, state, published_at, revoke_reason, revoked_by \
                 FROM releases",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .expect("release kept");
        assert_eq!(
            row,
            (
                "20261121.0".into(),
                "cloud-20261121.0".into(),
                "revoked".into(),
                Some("p".into()),
                Some("broken".into()),
                Some("alice".into())
            )
        );
        assert!(
            conn.execute("DELETE FROM releases", []).is_err(),
            "the revocation history still names its release"
        );
        conn.execute("UPDATE releases SET state = 'expired'", [])
            .expect("expired is a state");
        conn.execute("DELETE FROM composes", [])
            .expect("an expired release does not hold its compose");
        assert!(conn
            .execute("UPDATE releases SET state = 'gone'", [])
            .is_err());
    }

    /// The newest composes of a stream or a recipe are found by walking an index, not by sorting every
    /// compose ever made on each read (what made long histories slow before version 10).
    #[test]
    fn newest_composes_are_read_without_sorting_the_history() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("migrate");
        for query in [
            "SELECT id FROM composes WHERE stream = 'cloud' \
             ORDER BY created_at DESC, n DESC, id DESC LIMIT 1",
            "SELECT id FROM composes WHERE recipe = 'cloud' AND state = 'complete' AND id != 'x' \
             ORDER BY created_at DESC, n DESC, id DESC LIMIT 1",
        ] {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
                .expect("explain");
            let plan: Vec<String> = stmt
                .query_map([], |row| row.get::<_, String>(3))
                .expect("plan")
                .collect::<rusqlite::Result<_>>()
                .expect("rows");
            let plan = plan.join("; ");
            assert!(
                plan.contains("USING") && plan.contains("INDEX"),
                "{query}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{query}: {plan}");
        }
    }
}
