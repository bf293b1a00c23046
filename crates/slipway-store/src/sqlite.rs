//! The embedded [`Store`]: one SQLite file in WAL mode.
//!
//! One connection sits behind a mutex and every call runs on tokio's blocking pool, so SQLite's blocking
//! I/O never stalls the async workers. Every change is one `BEGIN IMMEDIATE` transaction that also
//! appends its events to the `events` table: taking the write lock up front means a transaction that reads
//! before it writes (allocating the next compose number, claiming a job) never fails half-way on a lock
//! upgrade, and two processes on the same file serialize instead of racing.
//!
//! Conventions a caller may rely on:
//!
//! - Timestamps are stored as RFC 3339 UTC text with six fractional digits and are truncated to
//!   microseconds; every value the store returns (and every timestamp in an event body) is the truncated
//!   one.
//! - Event sequence numbers increase in commit order, because writers are serialized.
//! - Event bodies (JSON):
//!   - `compose.started`: `{compose, stream, recipe, recipe_hash, created_at}`
//!   - `compose.complete`: `{compose, stream, recipe, recipe_hash, input_hash, lock_hash, artifacts,
//!     finished_at}` (artifacts as [`Artifact`] serializes them; the lock itself is read from the store)
//!   - `compose.failed`: `{compose, stream, recipe, reason, finished_at}`
//!   - `test.result`: the [`TestResult`]
//!   - `test.complete`: `{compose, stream, results}` (`results`: how many were recorded in the run)
//!   - `compose.verdict`: the [`Verdict`]
//!   - `waiver.created`: the [`Waiver`] (with its id); `waiver.revoked`: the [`Waiver`] with `revoked` set
//!   - `decision.changed`: `{decision, previous}` ([`Decision`]s; `previous` is null for the first one)
//!   - `release.created`: the [`Release`] (`stream`, `version`, `compose`, `state`, ...)
//!   - `release.published`: the [`Release`] after the change, plus `superseded`: the versions it
//!     superseded
//!   - `release.expired`: the [`Release`] after the change, plus `expired_at`
//!   - `compose.deleted`: `{compose, stream, recipe, state, created_at, artifacts, deleted_at}`
//!   - `incident.opened`: the [`Incident`] (with its first comment)
//!   - `incident.commented`, `incident.closed`: `{incident, stream, state, comment}` (`incident` is the
//!     id, `comment` the [`slipway_model::IncidentComment`] added)
//!   - `announcement.queued` and `announcement.sent`: `{id, key, kind, stream, version, subject,
//!     attempts}` of the notification (the text itself is in the queue)
//!   - `release.revoked`: `{stream, version, compose, reason, author, at, previous_state, current}` and
//!     `release.unrevoked`: `{stream, version, compose, reason, author, at, state, current}`, where
//!     `current` is the version the stream's published release has after the change (null if none)
//! - Jobs: see [`SqliteStore`]'s documentation.
//! - Notifications: see `sqlite/notifications.rs`; sending is at least once.

mod codec;
mod gc;
mod incidents;
mod migrations;
mod notifications;
mod resultsdb;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::json;
use slipway_model::{
    topics, Announcement, Artifact, CandidateCompose, Compose, ComposeId, ComposeState, Decision,
    Event, EventId, EventSeq, ExternalIssue, Incident, IncidentAction, InputHash, Lock, MirrorStep,
    NewIncident, NewIncidentComment, NewWaiver, Outcome, PkgDiff, Release, ReleaseState,
    Revocation, RevocationNote, RunId, Sha256, TestResult, TestRun, Verdict, Version, Waiver,
};
use uuid::Uuid;

use self::codec::{
    corrupt, day, kind_text, lease_end, normalize, parse_json, parse_kind, parse_opt_ts, parse_sha,
    parse_ts, sql_limit, to_json, to_json_value, to_u32, to_u64, ts,
};
use crate::{
    DataKey, GroupEntry, GroupQuery, Job, JobOutcome, NewJob, Notification, PageRequest, Paged,
    ResultEntry, ResultQuery, RevocationAction, RevocationRecord, Store, StoreError, StoreResult,
    TestcaseQuery, UnhandledEvents,
};

/// How long a call waits for another process's write lock before giving up. Write transactions are short,
/// so waiting long only happens when something is wrong; failing fast would turn contention into errors.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The embedded [`Store`]: SQLite in WAL mode.
///
/// Cloning is cheap and shares the connection.
///
/// # Jobs
///
/// A job is `queued`, `leased`, `done` or `failed`. [`Store::claim_job`] hands out the oldest job (by
/// insertion) that is queued, or leased with a lease that has run out, and has been claimed fewer than
/// `max_attempts` times; it counts the claim and remembers `max_attempts` on the job. Ending a job with
/// [`JobOutcome::Failed`] puts it back in the queue with its error, or marks it `failed` for good when the
/// claims remembered are used up. A job whose last allowed lease runs out is marked `failed` by the next
/// `claim_job` (its `last_error` then names the worker whose lease expired), and
/// [`Store::release_leases`] marks it `failed` at once. [`Store::failed_jobs`] lists the jobs in state
/// `failed`; [`Store::open_jobs`] counts `queued` and `leased`. Only the worker holding a job (state
/// `leased` under its name, even after the lease ran out, as long as nobody else claimed it) may extend or
/// finish it; anyone else gets `false` or [`StoreError::Conflict`].
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
    /// Run operations on the calling thread instead of the blocking pool: only for a scratch database,
    /// which never waits on a disk.
    inline: bool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Adds the failing operation to rusqlite's errors.
pub(crate) trait Db<T> {
    fn db(self, op: &str) -> StoreResult<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self, op: &str) -> StoreResult<T> {
        self.map_err(|e| StoreError::Database(format!("{op}: {e}")))
    }
}

/// How many prepared statements a connection keeps: more than the store has.
const STATEMENT_CACHE: usize = 256;

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database at `path` and brings its schema up to
    /// date. Blocks; call it at start-up or from `spawn_blocking`.
    ///
    /// Fails if the database was written by a newer slipway (a newer schema version).
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        Self::open_with(path, "FULL")
    }

    /// A throwaway database in memory, such as a simulation's, whose operations run on the calling thread:
    /// with no file under it each takes microseconds, less than handing it to the blocking pool costs.
    /// Nothing of value may live in it; [`SqliteStore::save_to`] writes a copy for inspection.
    ///
    /// The memory is a file of SQLite's in-memory file system rather than a `:memory:` database: the
    /// latter's page cache holds every page, and each commit walks it, so commits grow slower as the
    /// database grows.
    pub fn open_scratch() -> StoreResult<SqliteStore> {
        let op = "opening a scratch database";
        let conn = Connection::open_with_flags(
            "file:scratch?vfs=memdb",
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_URI
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .db(op)?;
        // The in-memory file system stops a database at 1 GiB unless told otherwise, and a simulation of
        // ten years of twenty streams holds more than that: only the machine's memory bounds it.
        let mut limit: i64 = SCRATCH_SIZE_LIMIT;
        // SAFETY: the handle is the open connection's own; "main" is a NUL-terminated name of its main
        // database; SQLITE_FCNTL_SIZE_LIMIT reads and writes the one i64 it is given a pointer to.
        // rusqlite has no safe call for it.
        #[allow(unsafe_code)]
        let code = unsafe {
            rusqlite::ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                rusqlite::ffi::SQLITE_FCNTL_SIZE_LIMIT,
                (&mut limit as *mut i64).cast(),
            )
        };
        if code != rusqlite::ffi::SQLITE_OK || limit < SCRATCH_SIZE_LIMIT {
            return Err(StoreError::Database(format!(
                "{op}: could not lift the in-memory database's size limit (SQLite code {code}, limit {limit} bytes)"
            )));
        }
        // No other connection ever opens it: holding its lock keeps the page cache valid from one
        // transaction to the next, and a rollback journal in memory is all a rollback needs.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .db(op)?;
        conn.pragma_update(None, "journal_mode", "MEMORY").db(op)?;
        Self::setup(conn, None, "OFF", true, op)
    }

    fn open_with(path: &Path, synchronous: &str) -> StoreResult<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("creating directory {}: {e}", parent.display()))
            })?;
        }
        let op = format!("opening {}", path.display());
        let conn = Connection::open(path).db(&op)?;
        conn.busy_timeout(BUSY_TIMEOUT).db(&op)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .db(&op)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "{op}: the database refused WAL mode (journal mode is {mode:?}); is it on a network \
                 file system?"
            )));
        }
        Self::setup(conn, Some(path.to_path_buf()), synchronous, false, &op)
    }

    /// A private database in memory, gone when the last clone is dropped. For tests.
    pub fn open_in_memory() -> StoreResult<SqliteStore> {
        let op = "opening an in-memory database";
        let conn = Connection::open_in_memory().db(op)?;
        Self::setup(conn, None, "FULL", false, op)
    }

    fn setup(
        mut conn: Connection,
        path: Option<PathBuf>,
        synchronous: &str,
        inline: bool,
        op: &str,
    ) -> StoreResult<SqliteStore> {
        // FULL rather than NORMAL: in WAL mode NORMAL may lose the last commits on power loss. Our commits
        // come before effects outside the database that cannot be taken back (a version published to
        // mirrors, an announcement), so a commit must be durable before we act on it. slipway writes a few
        // rows per build, so the extra fsync per commit costs nothing that matters. Only a scratch
        // database, which nothing outside depends on, skips the syncs.
        conn.pragma_update(None, "synchronous", synchronous)
            .db(op)?;
        conn.pragma_update(None, "foreign_keys", "ON").db(op)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrations::migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
            inline,
        })
    }

    /// Writes a consistent copy of the database to `path`, a new file that a normal [`SqliteStore::open`]
    /// reads: how a scratch database is kept for inspection. Refuses a path that already exists, and
    /// removes a copy it could not finish.
    ///
    /// The copy is the database's image as SQLite serializes it, written in one go. For a scratch
    /// database that image is the in-memory file itself, so nothing is copied twice. SQLite's page-by-page
    /// backup made the end of a ten-year simulation (1.2 GB) take four times as long (2.0 s against
    /// 0.5 s), and `VACUUM INTO`, which inserts every row again, longer still.
    pub async fn save_to(&self, path: &Path) -> StoreResult<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("creating directory {}: {e}", parent.display()))
            })?;
        }
        let target = path.to_path_buf();
        self.with_conn("saving a copy of the database", move |conn| {
            let op = format!("saving a copy of the database to {}", target.display());
            // Nothing else uses the connection meanwhile, so no transaction is open and the image is
            // the last commit.
            let image = conn.serialize(rusqlite::DatabaseName::Main).db(&op)?;
            let io = |e: std::io::Error| StoreError::Database(format!("{op}: {e}"));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => {
                        StoreError::Database(format!("{op}: the file already exists"))
                    }
                    _ => io(e),
                })?;
            let written =
                std::io::Write::write_all(&mut file, &image).and_then(|()| file.sync_all());
            if let Err(err) = written {
                drop(file);
                let _ = std::fs::remove_file(&target);
                return Err(io(err));
            }
            Ok(())
        })
        .await
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The schema version of the database (the number of migrations applied).
    pub async fn schema_version(&self) -> StoreResult<i64> {
        self.read("reading the schema version", |tx| {
            migrations::schema_version(tx)
        })
        .await
    }

    /// Runs `f` with the connection on the blocking pool (on the calling thread for a scratch database).
    async fn with_conn<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let run = move || {
            let mut guard = conn.lock().map_err(|_| {
                StoreError::Database(format!(
                    "{op}: the connection is unusable since an earlier operation panicked"
                ))
            })?;
            f(&mut guard)
        };
        if self.inline {
            return run();
        }
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| StoreError::Database(format!("{op}: {e}")))?
    }

    /// Runs `f` in a read transaction, so reads spanning several queries see one snapshot.
    async fn read<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.with_conn(op, move |conn| {
            in_transaction(conn, "BEGIN DEFERRED", op, f)
        })
        .await
    }

    /// Runs `f` in a write transaction, committed only if `f` succeeds.
    async fn write<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.with_conn(op, move |conn| {
            in_transaction(conn, "BEGIN IMMEDIATE", op, f)
        })
        .await
    }
}

/// Runs `f` between `begin` and a commit, rolling back if `f` or the commit fails. The three statements
/// come from the statement cache: most store calls are a statement or two, and parsing `BEGIN` and
/// `COMMIT` anew on every call cost as much as running them.
fn in_transaction<T>(
    conn: &Connection,
    begin: &str,
    op: &str,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    exec(conn, begin, []).db(op)?;
    let out = f(conn).and_then(|out| exec(conn, "COMMIT", []).db(op).map(|_| out));
    if out.is_err() && !conn.is_autocommit() {
        if let Err(err) = exec(conn, "ROLLBACK", []) {
            tracing::warn!("{op}: rolling back failed: {err}");
        }
    }
    out
}

/// Runs a statement through the connection's statement cache: the store runs the same few statements
/// over and over, and preparing one costs more than running it.
pub(crate) fn exec(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Reads one row through the connection's statement cache.
pub(crate) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// Appends one event to the outbox.
fn append_event(
    tx: &Connection,
    op: &str,
    topic: &str,
    at: Timestamp,
    body: impl serde::Serialize,
) -> StoreResult<()> {
    exec(
        tx,
        "INSERT INTO events (id, topic, time, schema, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            // Time-ordered, so that new ids land at the end of the id index rather than on a random page.
            Uuid::now_v7().to_string(),
            topic,
            ts(at),
            Event::schema_for(topic),
            to_json(op, &body)?,
        ],
    )
    .db(op)?;
    Ok(())
}

// ----- composes -----

/// How large a scratch database may grow: far beyond any simulation, so that memory is the only bound.
const SCRATCH_SIZE_LIMIT: i64 = 1 << 40;

const COMPOSE_COLUMNS: &str = "id, stream, recipe, recipe_hash, input_hash, state, reason, \
                               created_at, finished_at, lock_json, pkgdiff_json";

/// A compose's state from its `state` and `reason` columns.
fn compose_state_of(state: &str, reason: Option<String>) -> StoreResult<ComposeState> {
    Ok(match state {
        "running" => ComposeState::Running,
        "complete" => ComposeState::Complete,
        "failed" => ComposeState::Failed {
            reason: reason.unwrap_or_default(),
        },
        other => {
            return Err(corrupt(
                "composes",
                "state",
                format!("unknown state {other:?}"),
            ))
        }
    })
}

/// A `composes` row as stored.
struct ComposeRow {
    id: String,
    stream: String,
    recipe: String,
    recipe_hash: String,
    input_hash: Option<String>,
    state: String,
    reason: Option<String>,
    created_at: String,
    finished_at: Option<String>,
    lock_json: Option<String>,
    pkgdiff_json: Option<String>,
}

impl ComposeRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            stream: row.get(1)?,
            recipe: row.get(2)?,
            recipe_hash: row.get(3)?,
            input_hash: row.get(4)?,
            state: row.get(5)?,
            reason: row.get(6)?,
            created_at: row.get(7)?,
            finished_at: row.get(8)?,
            lock_json: row.get(9)?,
            pkgdiff_json: row.get(10)?,
        })
    }

    fn decode(self, artifacts: Vec<Artifact>) -> StoreResult<Compose> {
        const T: &str = "composes";
        let state = compose_state_of(&self.state, self.reason)?;
        Ok(Compose {
            id: ComposeId(self.id),
            stream: self.stream,
            recipe: self.recipe,
            recipe_hash: parse_sha(T, "recipe_hash", &self.recipe_hash)?,
            input_hash: self
                .input_hash
                .map(|h| parse_sha(T, "input_hash", &h).map(InputHash))
                .transpose()?,
            state,
            created_at: parse_ts(T, "created_at", &self.created_at)?,
            finished_at: parse_opt_ts(T, "finished_at", self.finished_at)?,
            artifacts,
            lock: self
                .lock_json
                .map(|l| parse_json::<Lock>(T, "lock_json", &l))
                .transpose()?,
            pkgdiff: self
                .pkgdiff_json
                .map(|d| parse_json::<PkgDiff>(T, "pkgdiff_json", &d))
                .transpose()?,
        })
    }
}

fn load_artifacts(conn: &Connection, op: &str, id: &str) -> StoreResult<Vec<Artifact>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT kind, file_name, sha256, size FROM artifacts WHERE compose_id = ?1 \
             ORDER BY position",
        )
        .db(op)?;
    let rows = stmt
        .query_map(params![id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .db(op)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db(op)?;
    rows.into_iter()
        .map(|(kind, file_name, sha256, size)| decode_artifact(kind, file_name, &sha256, size))
        .collect()
}

/// An `artifacts` row's columns as an [`Artifact`].
fn decode_artifact(
    kind: String,
    file_name: String,
    sha256: &str,
    size: i64,
) -> StoreResult<Artifact> {
    const T: &str = "artifacts";
    Ok(Artifact {
        kind: parse_kind(&kind)?,
        file_name,
        sha256: parse_sha(T, "sha256", sha256)?,
        size: to_u64(T, "size", size)?,
    })
}

fn load_compose(conn: &Connection, op: &str, id: &str) -> StoreResult<Option<Compose>> {
    first_compose(conn, op, "WHERE id = ?1", params![id])
}

/// The first compose `rest` (its `WHERE` and `ORDER BY` clauses) selects, with its artifacts.
fn first_compose(
    conn: &Connection,
    op: &str,
    rest: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Option<Compose>> {
    let row = query_one(
        conn,
        &format!("SELECT {COMPOSE_COLUMNS} FROM composes {rest}"),
        params,
        ComposeRow::from_row,
    )
    .optional()
    .db(op)?;
    match row {
        None => Ok(None),
        Some(row) => {
            let artifacts = load_artifacts(conn, op, &row.id)?;
            row.decode(artifacts).map(Some)
        }
    }
}

/// A test run and its results with their times normalized and every result tied to the run.
fn normalize_run(
    run: &TestRun,
    results: &[TestResult],
    at: Timestamp,
) -> (TestRun, Vec<TestResult>, Timestamp) {
    let run = TestRun {
        started_at: normalize(run.started_at),
        finished_at: normalize(run.finished_at),
        ..run.clone()
    };
    let results = results
        .iter()
        .map(|r| TestResult {
            run: Some(run.id.clone()),
            submitted_at: normalize(r.submitted_at),
            ..r.clone()
        })
        .collect();
    (run, results, normalize(at))
}

/// Inserts a new test run; returns its compose's stream. `Conflict` if the run is already recorded.
fn insert_test_run(tx: &Connection, op: &str, run: &TestRun) -> StoreResult<String> {
    let (_, stream) = compose_state(tx, op, run.compose.as_str())?;
    let inserted = exec(
        tx,
        "INSERT INTO test_runs \
             (id, compose_id, plan, artifact, description, started_at, finished_at, completed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, FALSE) ON CONFLICT (id) DO NOTHING",
        params![
            run.id.as_str(),
            run.compose.as_str(),
            run.plan,
            run.artifact,
            run.description,
            ts(run.started_at),
            ts(run.finished_at),
        ],
    )
    .db(op)?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "test run {} is already recorded",
            run.id
        )));
    }
    Ok(stream)
}

/// A recorded test run and whether it has finished (its `test.complete` was appended).
fn open_test_run(tx: &Connection, op: &str, id: &RunId) -> StoreResult<(TestRun, bool)> {
    let (columns, completed) = query_one(
        tx,
        &format!("SELECT {RUN_COLUMNS}, completed FROM test_runs WHERE id = ?1"),
        params![id.as_str()],
        |row| Ok((decode_run(row)?, row.get::<_, bool>(7)?)),
    )
    .optional()
    .db(op)?
    .ok_or_else(|| StoreError::NotFound(format!("test run {id}")))?;
    Ok((run_from_columns(columns)?, completed))
}

/// Appends results to a run, each with its `test.result` event; returns their ids in order.
fn insert_results(
    tx: &Connection,
    op: &str,
    run: &TestRun,
    results: &[TestResult],
    at: Timestamp,
) -> StoreResult<Vec<u64>> {
    let compose = &run.compose;
    let mut ids = Vec::with_capacity(results.len());
    for result in results {
        if &result.compose != compose {
            return Err(StoreError::Conflict(format!(
                "a result for compose {} cannot be recorded in a test run of {compose}",
                result.compose
            )));
        }
        exec(
            tx,
            "INSERT INTO test_results \
             (run_id, compose_id, testcase, scenario, outcome, artifact, format, arch, stream, \
              note, log_sha256, flaky, attempts_json, submitted_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                run.id.as_str(),
                compose.as_str(),
                result.testcase,
                result.scenario,
                result.outcome.as_str(),
                result.artifact,
                result.format,
                result.arch,
                result.stream,
                result.note,
                result.log.as_ref().map(Sha256::as_str),
                result.flaky,
                to_json(op, &result.attempts)?,
                ts(result.submitted_at),
            ],
        )
        .db(op)?;
        let id = to_u64("test_results", "id", tx.last_insert_rowid())?;
        ids.push(id);
        let stored = TestResult {
            id: Some(id),
            ..result.clone()
        };
        append_event(tx, op, topics::TEST_RESULT, at, &stored)?;
    }
    Ok(ids)
}

/// Marks a run finished and appends its `test.complete`, which makes the engine decide again.
fn complete_test_run(
    tx: &Connection,
    op: &str,
    run: &TestRun,
    stream: &str,
    at: Timestamp,
) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE test_runs SET completed = 1 WHERE id = ?1",
        params![run.id.as_str()],
    )
    .db(op)?;
    let results: i64 = query_one(
        tx,
        "SELECT COUNT(*) FROM test_results WHERE run_id = ?1",
        params![run.id.as_str()],
        |row| row.get(0),
    )
    .db(op)?;
    append_event(
        tx,
        op,
        topics::TEST_COMPLETE,
        at,
        json!({
            "compose": run.compose,
            "stream": stream,
            "run": run.id,
            "results": results,
        }),
    )
}

/// The state and stream of a compose; `NotFound` if there is no such compose.
fn compose_state(conn: &Connection, op: &str, id: &str) -> StoreResult<(String, String)> {
    query_one(
        conn,
        "SELECT state, stream FROM composes WHERE id = ?1",
        params![id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .db(op)?
    .ok_or_else(|| StoreError::NotFound(format!("compose {id}")))
}

/// Adds an artifact after the compose's others. Adding the same file again with the same content is a
/// no-op, so a retried worker does no harm; a different file under a taken name is a conflict.
fn insert_artifact(
    tx: &Connection,
    op: &str,
    compose: &str,
    artifact: &Artifact,
) -> StoreResult<()> {
    let size = i64::try_from(artifact.size)
        .map_err(|_| StoreError::Conflict(format!("artifact size {} too large", artifact.size)))?;
    let kind = kind_text(artifact.kind);
    let existing = query_one(
        tx,
        "SELECT kind, sha256, size FROM artifacts WHERE compose_id = ?1 AND file_name = ?2",
        params![compose, artifact.file_name],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        },
    )
    .optional()
    .db(op)?;
    if let Some((old_kind, old_sha, old_size)) = existing {
        if old_kind == kind && old_sha == artifact.sha256.as_str() && old_size == size {
            return Ok(());
        }
        return Err(StoreError::Conflict(format!(
            "compose {compose} already has a different artifact named {}",
            artifact.file_name
        )));
    }
    exec(
        tx,
        "INSERT INTO artifacts (compose_id, position, kind, file_name, sha256, size) \
         SELECT ?1, COALESCE(MAX(position) + 1, 0), ?2, ?3, ?4, ?5 \
         FROM artifacts WHERE compose_id = ?1",
        params![
            compose,
            kind,
            artifact.file_name,
            artifact.sha256.as_str(),
            size
        ],
    )
    .db(op)?;
    Ok(())
}

/// Refuses a change to a compose that has finished.
fn require_running(id: &str, state: &str) -> StoreResult<()> {
    if state == "running" {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "compose {id} is {state}, not running"
        )))
    }
}

// ----- results, verdicts, decisions -----

/// The columns of `test_results` that make a [`TestResult`], in this order.
pub(super) const RESULT_COLUMNS: &str = "r.id, r.run_id, r.compose_id, r.testcase, r.scenario, r.outcome, \
     r.artifact, r.format, r.arch, r.stream, r.note, r.log_sha256, r.flaky, r.attempts_json, r.submitted_at";

/// One `test_results` row, read with [`RESULT_COLUMNS`].
pub(super) struct ResultRow {
    id: i64,
    run: Option<String>,
    compose: String,
    testcase: String,
    scenario: String,
    outcome: String,
    artifact: String,
    format: String,
    arch: String,
    stream: String,
    note: String,
    log: Option<String>,
    flaky: bool,
    attempts: String,
    submitted_at: String,
}

impl ResultRow {
    /// Reads a row selected with [`RESULT_COLUMNS`].
    pub(super) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            run: row.get(1)?,
            compose: row.get(2)?,
            testcase: row.get(3)?,
            scenario: row.get(4)?,
            outcome: row.get(5)?,
            artifact: row.get(6)?,
            format: row.get(7)?,
            arch: row.get(8)?,
            stream: row.get(9)?,
            note: row.get(10)?,
            log: row.get(11)?,
            flaky: row.get(12)?,
            attempts: row.get(13)?,
            submitted_at: row.get(14)?,
        })
    }

    pub(super) fn decode(self) -> StoreResult<TestResult> {
        const T: &str = "test_results";
        Ok(TestResult {
            id: Some(to_u64(T, "id", self.id)?),
            run: self.run.map(RunId),
            compose: ComposeId(self.compose),
            testcase: self.testcase,
            scenario: self.scenario,
            outcome: self
                .outcome
                .parse::<Outcome>()
                .map_err(|e| corrupt(T, "outcome", e))?,
            artifact: self.artifact,
            format: self.format,
            arch: self.arch,
            stream: self.stream,
            note: self.note,
            log: self
                .log
                .map(|l| parse_sha(T, "log_sha256", &l))
                .transpose()?,
            flaky: self.flaky,
            attempts: parse_json(T, "attempts_json", &self.attempts)?,
            submitted_at: parse_ts(T, "submitted_at", &self.submitted_at)?,
        })
    }
}

/// The columns of `test_runs` that make a [`TestRun`], in this order.
const RUN_COLUMNS: &str = "id, compose_id, plan, artifact, description, started_at, finished_at";

fn decode_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<[String; 7]> {
    Ok([
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ])
}

fn run_from_columns(columns: [String; 7]) -> StoreResult<TestRun> {
    const T: &str = "test_runs";
    let [id, compose, plan, artifact, description, started_at, finished_at] = columns;
    Ok(TestRun {
        id: RunId(id),
        compose: ComposeId(compose),
        plan,
        artifact,
        description,
        started_at: parse_ts(T, "started_at", &started_at)?,
        finished_at: parse_ts(T, "finished_at", &finished_at)?,
    })
}

/// The newest composes, of one stream or all, newest first.
fn newest_composes(
    tx: &Connection,
    op: &str,
    stream: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<Compose>> {
    // `n` breaks ties between composes started in the same microsecond; comparing ids as text would
    // put `.10` before `.9`.
    let rows = match stream {
        Some(stream) => {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {COMPOSE_COLUMNS} FROM composes WHERE stream = ?1 \
                             ORDER BY created_at DESC, n DESC, id DESC LIMIT ?2"
                ))
                .db(op)?;
            let rows = stmt
                .query_map(params![stream, sql_limit(limit)], ComposeRow::from_row)
                .db(op)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(op)?;
            rows
        }
        None => {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {COMPOSE_COLUMNS} FROM composes \
                             ORDER BY created_at DESC, n DESC, id DESC LIMIT ?1"
                ))
                .db(op)?;
            let rows = stmt
                .query_map(params![sql_limit(limit)], ComposeRow::from_row)
                .db(op)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(op)?;
            rows
        }
    };
    rows.into_iter()
        .map(|row| {
            let artifacts = load_artifacts(tx, op, &row.id)?;
            row.decode(artifacts)
        })
        .collect()
}

/// The least string greater than every string that starts with `prefix`: `prefix` with its last
/// character replaced by the next one. Text compares byte by byte in UTF-8, which orders by code point, so
/// the keys that start with `prefix` are exactly those from `prefix` up to it. `None` when there is no
/// such string (an empty prefix, or one of only the highest character): every key from `prefix` on.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The code points after `last`, skipping the surrogates, which are no characters.
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The events a query over `events` selects, in its order; the query selects `seq, id, topic, time,
/// schema, body`.
fn read_events(
    tx: &Connection,
    op: &str,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<Event>> {
    const T: &str = "events";
    let mut stmt = tx.prepare_cached(sql).db(op)?;
    let rows = stmt
        .query_map(params, |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })
        .db(op)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db(op)?;
    rows.into_iter()
        .map(|(seq, id, topic, time, schema, body)| {
            Ok(Event {
                id: Uuid::parse_str(&id).map_err(|e| corrupt(T, "id", e))?,
                seq,
                topic,
                time: parse_ts(T, "time", &time)?,
                schema,
                body: parse_json(T, "body", &body)?,
            })
        })
        .collect()
}

fn latest_decision_in(
    conn: &Connection,
    op: &str,
    compose: &str,
    stream: &str,
) -> StoreResult<Option<Decision>> {
    // The newest row by insertion: decisions are made one after another, and the caller's clock (possibly
    // virtual) need not be monotonic.
    let body: Option<String> = query_one(
        conn,
        "SELECT body FROM decisions WHERE compose_id = ?1 AND stream = ?2 \
             ORDER BY id DESC LIMIT 1",
        params![compose, stream],
        |row| row.get(0),
    )
    .optional()
    .db(op)?;
    body.map(|b| parse_json("decisions", "body", &b))
        .transpose()
}

const WAIVER_COLUMNS: &str = "id, compose_id, testcase, scenario, author, comment, created_at, \
                              revoked_at, revoked_by, revoke_reason";

/// A `waivers` row as stored, read with [`WAIVER_COLUMNS`].
struct WaiverRow {
    id: i64,
    compose: String,
    testcase: String,
    scenario: Option<String>,
    author: String,
    comment: String,
    created_at: String,
    revoked_at: Option<String>,
    revoked_by: Option<String>,
    revoke_reason: Option<String>,
}

impl WaiverRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            compose: row.get(1)?,
            testcase: row.get(2)?,
            scenario: row.get(3)?,
            author: row.get(4)?,
            comment: row.get(5)?,
            created_at: row.get(6)?,
            revoked_at: row.get(7)?,
            revoked_by: row.get(8)?,
            revoke_reason: row.get(9)?,
        })
    }

    fn decode(self) -> StoreResult<Waiver> {
        const T: &str = "waivers";
        let revoked = match parse_opt_ts(T, "revoked_at", self.revoked_at)? {
            Some(at) => Some(Revocation {
                author: self.revoked_by.unwrap_or_default(),
                reason: self.revoke_reason.unwrap_or_default(),
                at,
            }),
            None => None,
        };
        Ok(Waiver {
            id: to_u64(T, "id", self.id)?,
            compose: ComposeId(self.compose),
            testcase: self.testcase,
            scenario: self.scenario,
            author: self.author,
            comment: self.comment,
            created_at: parse_ts(T, "created_at", &self.created_at)?,
            revoked,
        })
    }
}

fn waiver_in(conn: &Connection, op: &str, id: i64) -> StoreResult<Option<Waiver>> {
    query_one(
        conn,
        &format!("SELECT {WAIVER_COLUMNS} FROM waivers WHERE id = ?1"),
        params![id],
        WaiverRow::read,
    )
    .optional()
    .db(op)?
    .map(WaiverRow::decode)
    .transpose()
}

/// A waiver id as SQLite stores it; ids beyond its range name no waiver.
fn waiver_key(id: u64) -> StoreResult<i64> {
    i64::try_from(id).map_err(|_| StoreError::NotFound(format!("waiver {id}")))
}

// ----- releases -----

const RELEASE_COLUMNS: &str = "stream, version, compose_id, state, created_at, published_at, \
                               revoke_reason, revoked_by, revoked_at";

struct ReleaseRow {
    stream: String,
    version: String,
    compose: String,
    state: String,
    created_at: String,
    published_at: Option<String>,
    revoke_reason: Option<String>,
    revoked_by: Option<String>,
    revoked_at: Option<String>,
}

impl ReleaseRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            stream: row.get(0)?,
            version: row.get(1)?,
            compose: row.get(2)?,
            state: row.get(3)?,
            created_at: row.get(4)?,
            published_at: row.get(5)?,
            revoke_reason: row.get(6)?,
            revoked_by: row.get(7)?,
            revoked_at: row.get(8)?,
        })
    }

    fn decode(self) -> StoreResult<Release> {
        const T: &str = "releases";
        let revocation = match (self.revoke_reason, self.revoked_by, self.revoked_at) {
            (Some(reason), Some(author), Some(at)) => Some(RevocationNote {
                reason,
                author,
                at: parse_ts(T, "revoked_at", &at)?,
            }),
            _ => None,
        };
        Ok(Release {
            stream: self.stream,
            version: self
                .version
                .parse::<Version>()
                .map_err(|e| corrupt(T, "version", e))?,
            compose: ComposeId(self.compose),
            state: self
                .state
                .parse::<ReleaseState>()
                .map_err(|e| corrupt(T, "state", e))?,
            created_at: parse_ts(T, "created_at", &self.created_at)?,
            published_at: parse_opt_ts(T, "published_at", self.published_at)?,
            revocation,
        })
    }
}

/// One release, or `NotFound` naming it.
fn load_release(
    conn: &Connection,
    op: &str,
    stream: &str,
    version: &Version,
) -> StoreResult<Release> {
    query_one(
        conn,
        &format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE stream = ?1 AND version = ?2"),
        params![stream, version.to_string()],
        ReleaseRow::from_row,
    )
    .optional()
    .db(op)?
    .ok_or_else(|| StoreError::NotFound(format!("release {version} of stream {stream}")))?
    .decode()
}

/// The versions of a stream's published releases. The `IN` term names the condition of the partial index
/// of current releases, which SQLite does not infer from `state = 'published'` alone: without it, every
/// release of the stream is read.
const PUBLISHED_VERSIONS: &str = "SELECT version FROM releases WHERE stream = ?1 \
     AND state IN ('pending', 'published') AND state = 'published'";

/// Supersedes a stream's published releases other than version `?2`, over the same index as
/// [`PUBLISHED_VERSIONS`].
const SUPERSEDE_PUBLISHED: &str = "UPDATE releases SET state = 'superseded' \
     WHERE stream = ?1 AND state IN ('pending', 'published') AND state = 'published' \
     AND version <> ?2";

/// Makes the newest release of a stream that is published or superseded the published one and every other
/// such release superseded, so the stream's current release is its newest good one. Pending and revoked
/// releases are left as they are. Returns the current release's version, if there is one.
fn settle_current(tx: &Connection, op: &str, stream: &str) -> StoreResult<Option<Version>> {
    let current: Option<String> = query_one(
        tx,
        "SELECT version FROM releases WHERE stream = ?1 AND state IN ('published', 'superseded') \
             ORDER BY day DESC, n DESC LIMIT 1",
        params![stream],
        |row| row.get(0),
    )
    .optional()
    .db(op)?;
    let Some(current) = current else {
        return Ok(None);
    };
    exec(tx, SUPERSEDE_PUBLISHED, params![stream, current]).db(op)?;
    exec(
        tx,
        "UPDATE releases SET state = 'published' WHERE stream = ?1 AND version = ?2",
        params![stream, current],
    )
    .db(op)?;
    current
        .parse()
        .map(Some)
        .map_err(|e| corrupt("releases", "version", e))
}

/// Appends an entry to a release's revocation history.
fn record_revocation(
    tx: &Connection,
    op: &str,
    release: &Release,
    action: RevocationAction,
    author: &str,
    reason: &str,
    at: Timestamp,
) -> StoreResult<()> {
    let action = match action {
        RevocationAction::Revoked => "revoked",
        RevocationAction::Unrevoked => "unrevoked",
    };
    exec(
        tx,
        "INSERT INTO release_revocations (stream, version, action, author, reason, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            release.stream,
            release.version.to_string(),
            action,
            author,
            reason,
            ts(at)
        ],
    )
    .db(op)?;
    Ok(())
}

// ----- jobs -----

const JOB_COLUMNS: &str = "id, kind, key, payload, attempts";

struct JobRow {
    id: i64,
    kind: String,
    key: String,
    payload: String,
    attempts: i64,
}

impl JobRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            kind: row.get(1)?,
            key: row.get(2)?,
            payload: row.get(3)?,
            attempts: row.get(4)?,
        })
    }

    fn decode(self) -> StoreResult<Job> {
        Ok(Job {
            id: self.id,
            kind: self.kind,
            key: self.key,
            payload: parse_json("jobs", "payload", &self.payload)?,
            attempts: to_u32("jobs", "attempts", self.attempts)?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_compose(
        &self,
        stream: &str,
        recipe: &str,
        recipe_hash: &Sha256,
        at: Timestamp,
    ) -> StoreResult<Compose> {
        const OP: &str = "create_compose";
        let (stream, recipe, recipe_hash) =
            (stream.to_owned(), recipe.to_owned(), recipe_hash.clone());
        let at = normalize(at);
        self.write(OP, move |tx| {
            let day = day(at);
            // Deleted composes count too: an id is never given out twice.
            let n: i64 = query_one(
                tx,
                "SELECT COALESCE(MAX(n) + 1, 0) FROM ( \
                         SELECT n FROM composes WHERE recipe = ?1 AND day = ?2 \
                         UNION ALL \
                         SELECT n FROM deleted_composes WHERE recipe = ?1 AND day = ?2)",
                params![recipe, day],
                |row| row.get(0),
            )
            .db(OP)?;
            let id = ComposeId::new(&recipe, at, to_u32("composes", "n", n)?);
            exec(
                tx,
                "INSERT INTO composes (id, stream, recipe, day, n, recipe_hash, state, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7)",
                params![
                    id.as_str(),
                    stream,
                    recipe,
                    day,
                    n,
                    recipe_hash.as_str(),
                    ts(at)
                ],
            )
            .db(OP)?;
            append_event(
                tx,
                OP,
                topics::COMPOSE_STARTED,
                at,
                json!({
                    "compose": id,
                    "stream": stream,
                    "recipe": recipe,
                    "recipe_hash": recipe_hash,
                    "created_at": at,
                }),
            )?;
            Ok(Compose {
                id,
                stream,
                recipe,
                recipe_hash,
                input_hash: None,
                state: ComposeState::Running,
                created_at: at,
                finished_at: None,
                artifacts: Vec::new(),
                lock: None,
                pkgdiff: None,
            })
        })
        .await
    }

    async fn complete_compose(
        &self,
        id: &ComposeId,
        input_hash: &InputHash,
        lock: &Lock,
        pkgdiff: &PkgDiff,
        artifacts: &[Artifact],
        at: Timestamp,
    ) -> StoreResult<()> {
        const OP: &str = "complete_compose";
        let (id, input_hash, lock, pkgdiff, artifacts) = (
            id.clone(),
            input_hash.clone(),
            lock.clone(),
            pkgdiff.clone(),
            artifacts.to_vec(),
        );
        let at = normalize(at);
        self.write(OP, move |tx| {
            let (state, stream) = compose_state(tx, OP, id.as_str())?;
            require_running(id.as_str(), &state)?;
            exec(
                tx,
                "UPDATE composes SET state = 'complete', input_hash = ?2, lock_json = ?3, \
                 finished_at = ?4, pkgdiff_json = ?5 WHERE id = ?1",
                params![
                    id.as_str(),
                    input_hash.0.as_str(),
                    to_json(OP, &lock)?,
                    ts(at),
                    to_json(OP, &pkgdiff)?
                ],
            )
            .db(OP)?;
            for artifact in &artifacts {
                insert_artifact(tx, OP, id.as_str(), artifact)?;
            }
            let compose = load_compose(tx, OP, id.as_str())?
                .ok_or_else(|| StoreError::NotFound(format!("compose {id}")))?;
            append_event(
                tx,
                OP,
                topics::COMPOSE_COMPLETE,
                at,
                json!({
                    "compose": id,
                    "stream": stream,
                    "recipe": compose.recipe,
                    "recipe_hash": compose.recipe_hash,
                    "input_hash": input_hash,
                    "lock_hash": lock.hash(),
                    "pkgdiff": pkgdiff.summary(),
                    "security_upgrades": pkgdiff.security_upgrades().map(|c| &c.name).collect::<Vec<_>>(),
                    "artifacts": compose.artifacts,
                    "finished_at": at,
                }),
            )
        })
        .await
    }

    async fn fail_compose(&self, id: &ComposeId, reason: &str, at: Timestamp) -> StoreResult<()> {
        const OP: &str = "fail_compose";
        let (id, reason) = (id.clone(), reason.to_owned());
        let at = normalize(at);
        self.write(OP, move |tx| {
            let (state, stream) = compose_state(tx, OP, id.as_str())?;
            require_running(id.as_str(), &state)?;
            let recipe: String = query_one(
                tx,
                "SELECT recipe FROM composes WHERE id = ?1",
                params![id.as_str()],
                |row| row.get(0),
            )
            .db(OP)?;
            exec(
                tx,
                "UPDATE composes SET state = 'failed', reason = ?2, finished_at = ?3 WHERE id = ?1",
                params![id.as_str(), reason, ts(at)],
            )
            .db(OP)?;
            append_event(
                tx,
                OP,
                topics::COMPOSE_FAILED,
                at,
                json!({
                    "compose": id,
                    "stream": stream,
                    "recipe": recipe,
                    "reason": reason,
                    "finished_at": at,
                }),
            )
        })
        .await
    }

    async fn compose(&self, id: &ComposeId) -> StoreResult<Option<Compose>> {
        const OP: &str = "compose";
        let id = id.clone();
        self.read(OP, move |tx| load_compose(tx, OP, id.as_str()))
            .await
    }

    async fn newest_locked_compose(&self, stream: &str) -> StoreResult<Option<Compose>> {
        const OP: &str = "newest_locked_compose";
        let stream = stream.to_owned();
        self.read(OP, move |tx| {
            // Walks `composes_by_stream` from the newest: a failed compose or two at most before a match.
            first_compose(
                tx,
                OP,
                "WHERE stream = ?1 AND state = 'complete' AND lock_json IS NOT NULL \
                 ORDER BY created_at DESC, n DESC, id DESC LIMIT 1",
                params![stream],
            )
        })
        .await
    }

    async fn latest_complete_compose(
        &self,
        recipe: &str,
        excluding: Option<&ComposeId>,
    ) -> StoreResult<Option<Compose>> {
        const OP: &str = "latest_complete_compose";
        let recipe = recipe.to_owned();
        let excluding = excluding
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        self.read(OP, move |tx| {
            first_compose(
                tx,
                OP,
                "WHERE recipe = ?1 AND state = 'complete' AND id != ?2 \
                 ORDER BY created_at DESC, n DESC, id DESC LIMIT 1",
                params![recipe, excluding],
            )
        })
        .await
    }

    async fn composes(&self, stream: Option<&str>, limit: usize) -> StoreResult<Vec<Compose>> {
        const OP: &str = "composes";
        let stream = stream.map(str::to_owned);
        self.read(OP, move |tx| {
            newest_composes(tx, OP, stream.as_deref(), limit)
        })
        .await
    }

    async fn candidate_composes(
        &self,
        stream: &str,
        limit: usize,
    ) -> StoreResult<Vec<CandidateCompose>> {
        const OP: &str = "candidate_composes";
        let stream = stream.to_owned();
        self.read(OP, move |tx| {
            // The subquery walks `decisions_by_compose` back to each compose's latest decision in the
            // stream, so the whole window is one statement whatever its size.
            let mut stmt = tx
                .prepare_cached(
                    "SELECT c.id, c.state, c.reason, c.created_at, \
                            (SELECT d.passed FROM decisions d \
                              WHERE d.compose_id = c.id AND d.stream = c.stream \
                              ORDER BY d.id DESC LIMIT 1) \
                     FROM composes c WHERE c.stream = ?1 \
                     ORDER BY c.created_at DESC, c.n DESC, c.id DESC LIMIT ?2",
                )
                .db(OP)?;
            let rows = stmt
                .query_map(params![stream, sql_limit(limit)], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, Option<bool>>(4)?,
                    ))
                })
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter()
                .map(|(id, state, reason, created_at, passed)| {
                    Ok(CandidateCompose {
                        id: ComposeId(id),
                        created_at: parse_ts("composes", "created_at", &created_at)?,
                        state: compose_state_of(&state, reason)?,
                        passed,
                    })
                })
                .collect()
        })
        .await
    }

    async fn add_artifact(&self, id: &ComposeId, artifact: &Artifact) -> StoreResult<()> {
        const OP: &str = "add_artifact";
        let (id, artifact) = (id.clone(), artifact.clone());
        self.write(OP, move |tx| {
            compose_state(tx, OP, id.as_str())?;
            insert_artifact(tx, OP, id.as_str(), &artifact)
        })
        .await
    }

    async fn record_test_run(
        &self,
        run: &TestRun,
        results: &[TestResult],
        at: Timestamp,
    ) -> StoreResult<Vec<u64>> {
        const OP: &str = "record_test_run";
        let (run, results, at) = normalize_run(run, results, at);
        self.write(OP, move |tx| {
            let stream = insert_test_run(tx, OP, &run)?;
            let ids = insert_results(tx, OP, &run, &results, at)?;
            complete_test_run(tx, OP, &run, &stream, at)?;
            Ok(ids)
        })
        .await
    }

    async fn start_test_run(
        &self,
        run: &TestRun,
        queued: &[TestResult],
        at: Timestamp,
    ) -> StoreResult<Vec<u64>> {
        const OP: &str = "start_test_run";
        let (run, results, at) = normalize_run(run, queued, at);
        self.write(OP, move |tx| {
            insert_test_run(tx, OP, &run)?;
            insert_results(tx, OP, &run, &results, at)
        })
        .await
    }

    async fn add_test_results(
        &self,
        run: &RunId,
        results: &[TestResult],
        at: Timestamp,
    ) -> StoreResult<Vec<u64>> {
        const OP: &str = "add_test_results";
        let run_id = run.clone();
        let results = results.to_vec();
        let at = normalize(at);
        self.write(OP, move |tx| {
            let (run, _) = open_test_run(tx, OP, &run_id)?;
            let (run, results, at) = normalize_run(&run, &results, at);
            insert_results(tx, OP, &run, &results, at)
        })
        .await
    }

    async fn finish_test_run(
        &self,
        run: &TestRun,
        results: &[TestResult],
        at: Timestamp,
    ) -> StoreResult<Vec<u64>> {
        const OP: &str = "finish_test_run";
        let (run, results, at) = normalize_run(run, results, at);
        self.write(OP, move |tx| {
            let (stored, finished) = open_test_run(tx, OP, &run.id)?;
            if finished {
                return Err(StoreError::Conflict(format!(
                    "test run {} is already finished",
                    run.id
                )));
            }
            if stored.compose != run.compose {
                return Err(StoreError::Conflict(format!(
                    "test run {} belongs to compose {}, not {}",
                    run.id, stored.compose, run.compose
                )));
            }
            exec(
                tx,
                "UPDATE test_runs SET artifact = ?2, description = ?3, finished_at = ?4 WHERE id = ?1",
                params![
                    run.id.as_str(),
                    run.artifact,
                    run.description,
                    ts(run.finished_at)
                ],
            )
            .db(OP)?;
            let ids = insert_results(tx, OP, &run, &results, at)?;
            let (_, stream) = compose_state(tx, OP, run.compose.as_str())?;
            complete_test_run(tx, OP, &run, &stream, at)?;
            Ok(ids)
        })
        .await
    }

    async fn test_run(&self, id: &RunId) -> StoreResult<Option<(TestRun, Vec<TestResult>)>> {
        const OP: &str = "test_run";
        let id = id.clone();
        self.read(OP, move |tx| {
            let columns = query_one(
                tx,
                &format!("SELECT {RUN_COLUMNS} FROM test_runs WHERE id = ?1"),
                params![id.as_str()],
                decode_run,
            )
            .optional()
            .db(OP)?;
            let Some(columns) = columns else {
                return Ok(None);
            };
            let run = run_from_columns(columns)?;
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {RESULT_COLUMNS} FROM test_results r WHERE r.run_id = ?1 ORDER BY r.id"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![id.as_str()], ResultRow::read)
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            let results = rows
                .into_iter()
                .map(ResultRow::decode)
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(Some((run, results)))
        })
        .await
    }

    async fn test_runs(&self, compose: &ComposeId) -> StoreResult<Vec<TestRun>> {
        const OP: &str = "test_runs";
        let compose = compose.clone();
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM test_runs WHERE compose_id = ?1 ORDER BY started_at, id"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![compose.as_str()], decode_run)
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter().map(run_from_columns).collect()
        })
        .await
    }

    async fn latest_results(
        &self,
        compose: &ComposeId,
        at: Timestamp,
    ) -> StoreResult<Vec<TestResult>> {
        const OP: &str = "latest_results";
        let compose = compose.clone();
        self.read(OP, move |tx| {
            // A result is the latest of its testcase if no other result of that testcase, also submitted by
            // `at`, is newer; equal times are ordered by insertion.
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {RESULT_COLUMNS} \
                     FROM test_results r \
                     WHERE r.compose_id = ?1 AND r.submitted_at <= ?2 \
                       AND NOT EXISTS ( \
                           SELECT 1 FROM test_results n \
                           WHERE n.compose_id = r.compose_id AND n.testcase = r.testcase \
                             AND n.submitted_at <= ?2 \
                             AND (n.submitted_at > r.submitted_at \
                                  OR (n.submitted_at = r.submitted_at AND n.id > r.id))) \
                     ORDER BY r.testcase"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![compose.as_str(), ts(at)], ResultRow::read)
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter().map(ResultRow::decode).collect()
        })
        .await
    }

    async fn add_verdict(&self, verdict: &Verdict) -> StoreResult<()> {
        const OP: &str = "add_verdict";
        let verdict = Verdict {
            created_at: normalize(verdict.created_at),
            ..verdict.clone()
        };
        self.write(OP, move |tx| {
            compose_state(tx, OP, verdict.compose.as_str())?;
            exec(
                tx,
                "INSERT INTO verdicts (compose_id, failed, author, reason, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    verdict.compose.as_str(),
                    verdict.failed,
                    verdict.author,
                    verdict.reason,
                    ts(verdict.created_at),
                ],
            )
            .db(OP)?;
            append_event(
                tx,
                OP,
                topics::COMPOSE_VERDICT,
                verdict.created_at,
                to_json_value(OP, &verdict)?,
            )
        })
        .await
    }

    async fn verdicts(&self, compose: &ComposeId) -> StoreResult<Vec<Verdict>> {
        const OP: &str = "verdicts";
        let compose = compose.clone();
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT failed, author, reason, created_at FROM verdicts \
                     WHERE compose_id = ?1 ORDER BY created_at, id",
                )
                .db(OP)?;
            let rows = stmt
                .query_map(params![compose.as_str()], |row| {
                    Ok((
                        row.get::<_, bool>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter()
                .map(|(failed, author, reason, created_at)| {
                    Ok(Verdict {
                        compose: compose.clone(),
                        failed,
                        author,
                        reason,
                        created_at: parse_ts("verdicts", "created_at", &created_at)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn record_decision(&self, decision: &Decision, at: Timestamp) -> StoreResult<bool> {
        const OP: &str = "record_decision";
        let decision = decision.clone();
        let at = normalize(at);
        self.write(OP, move |tx| {
            compose_state(tx, OP, decision.compose.as_str())?;
            let previous = latest_decision_in(tx, OP, decision.compose.as_str(), &decision.stream)?;
            if previous.as_ref().is_some_and(|p| p.same_answer(&decision)) {
                return Ok(false);
            }
            exec(
                tx,
                "INSERT INTO decisions (compose_id, stream, passed, body, decided_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    decision.compose.as_str(),
                    decision.stream,
                    decision.passed,
                    to_json(OP, &decision)?,
                    ts(at),
                ],
            )
            .db(OP)?;
            append_event(
                tx,
                OP,
                topics::DECISION_CHANGED,
                at,
                json!({ "decision": decision, "previous": previous }),
            )?;
            Ok(true)
        })
        .await
    }

    async fn latest_decision(
        &self,
        compose: &ComposeId,
        stream: &str,
    ) -> StoreResult<Option<Decision>> {
        const OP: &str = "latest_decision";
        let (compose, stream) = (compose.clone(), stream.to_owned());
        self.read(OP, move |tx| {
            latest_decision_in(tx, OP, compose.as_str(), &stream)
        })
        .await
    }

    async fn results(&self, compose: &ComposeId, at: Timestamp) -> StoreResult<Vec<TestResult>> {
        const OP: &str = "results";
        let compose = compose.clone();
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {RESULT_COLUMNS} FROM test_results r \
                     WHERE r.compose_id = ?1 AND r.submitted_at <= ?2 \
                     ORDER BY r.submitted_at, r.id"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![compose.as_str(), ts(at)], ResultRow::read)
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter().map(ResultRow::decode).collect()
        })
        .await
    }

    async fn add_waiver(&self, waiver: &NewWaiver) -> StoreResult<Waiver> {
        const OP: &str = "add_waiver";
        let waiver = NewWaiver {
            created_at: normalize(waiver.created_at),
            ..waiver.clone()
        };
        self.write(OP, move |tx| {
            compose_state(tx, OP, waiver.compose.as_str())?;
            exec(
                tx,
                "INSERT INTO waivers (compose_id, testcase, scenario, author, comment, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    waiver.compose.as_str(),
                    waiver.testcase,
                    waiver.scenario,
                    waiver.author,
                    waiver.comment,
                    ts(waiver.created_at),
                ],
            )
            .db(OP)?;
            let stored = waiver_in(tx, OP, tx.last_insert_rowid())?
                .ok_or_else(|| StoreError::Database(format!("{OP}: the new row vanished")))?;
            append_event(
                tx,
                OP,
                topics::WAIVER_CREATED,
                stored.created_at,
                to_json_value(OP, &stored)?,
            )?;
            Ok(stored)
        })
        .await
    }

    async fn revoke_waiver(
        &self,
        id: u64,
        author: &str,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<Waiver> {
        const OP: &str = "revoke_waiver";
        let (author, reason, at) = (author.to_owned(), reason.to_owned(), normalize(at));
        let key = waiver_key(id)?;
        self.write(OP, move |tx| {
            let existing =
                waiver_in(tx, OP, key)?.ok_or_else(|| StoreError::NotFound(format!("waiver {id}")))?;
            if let Some(revoked) = &existing.revoked {
                return Err(StoreError::Conflict(format!(
                    "waiver {id} was already revoked by {} at {}",
                    revoked.author, revoked.at
                )));
            }
            exec(
                tx,
                "UPDATE waivers SET revoked_at = ?1, revoked_by = ?2, revoke_reason = ?3 WHERE id = ?4",
                params![ts(at), author, reason, key],
            )
            .db(OP)?;
            let stored = waiver_in(tx, OP, key)?
                .ok_or_else(|| StoreError::Database(format!("{OP}: the row vanished")))?;
            append_event(
                tx,
                OP,
                topics::WAIVER_REVOKED,
                at,
                to_json_value(OP, &stored)?,
            )?;
            Ok(stored)
        })
        .await
    }

    async fn waiver(&self, id: u64) -> StoreResult<Option<Waiver>> {
        const OP: &str = "waiver";
        let Ok(key) = i64::try_from(id) else {
            return Ok(None);
        };
        self.read(OP, move |tx| waiver_in(tx, OP, key)).await
    }

    async fn waivers(&self, compose: Option<&ComposeId>) -> StoreResult<Vec<Waiver>> {
        const OP: &str = "waivers";
        let compose = compose.map(|c| c.as_str().to_owned());
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {WAIVER_COLUMNS} FROM waivers \
                     WHERE ?1 IS NULL OR compose_id = ?1 ORDER BY id"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![compose], WaiverRow::read)
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter().map(WaiverRow::decode).collect()
        })
        .await
    }

    async fn decisions(
        &self,
        compose: &ComposeId,
        stream: &str,
    ) -> StoreResult<Vec<(Timestamp, Decision)>> {
        const OP: &str = "decisions";
        let (compose, stream) = (compose.clone(), stream.to_owned());
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT decided_at, body FROM decisions WHERE compose_id = ?1 AND stream = ?2 \
                     ORDER BY id",
                )
                .db(OP)?;
            let rows = stmt
                .query_map(params![compose.as_str(), stream], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter()
                .map(|(at, body)| {
                    Ok((
                        parse_ts("decisions", "decided_at", &at)?,
                        parse_json("decisions", "body", &body)?,
                    ))
                })
                .collect()
        })
        .await
    }

    async fn create_release(
        &self,
        stream: &str,
        compose: &ComposeId,
        at: Timestamp,
    ) -> StoreResult<Release> {
        const OP: &str = "create_release";
        let (stream, compose) = (stream.to_owned(), compose.clone());
        let at = normalize(at);
        self.write(OP, move |tx| {
            let existing = query_one(
                tx,
                &format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE stream = ?1 AND compose_id = ?2"
                ),
                params![stream, compose.as_str()],
                ReleaseRow::from_row,
            )
            .optional()
            .db(OP)?;
            if let Some(row) = existing {
                return row.decode();
            }
            let (state, _) = compose_state(tx, OP, compose.as_str())?;
            if state != "complete" {
                return Err(StoreError::Conflict(format!(
                    "compose {compose} is {state}; only a complete compose can be released"
                )));
            }
            let day = day(at);
            let n: i64 = query_one(
                tx,
                "SELECT COALESCE(MAX(n) + 1, 0) FROM releases WHERE stream = ?1 AND day = ?2",
                params![stream, day],
                |row| row.get(0),
            )
            .db(OP)?;
            let release = Release {
                stream,
                version: Version::new(at, to_u32("releases", "n", n)?),
                compose,
                state: ReleaseState::Pending,
                created_at: at,
                published_at: None,
                revocation: None,
            };
            exec(
                tx,
                "INSERT INTO releases (stream, version, day, n, compose_id, state, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    release.stream,
                    release.version.to_string(),
                    day,
                    n,
                    release.compose.as_str(),
                    release.state.as_str(),
                    ts(at),
                ],
            )
            .db(OP)?;
            append_event(
                tx,
                OP,
                topics::RELEASE_CREATED,
                at,
                to_json_value(OP, &release)?,
            )?;
            Ok(release)
        })
        .await
    }

    async fn mark_release_published(
        &self,
        stream: &str,
        version: &Version,
        at: Timestamp,
    ) -> StoreResult<()> {
        const OP: &str = "mark_release_published";
        let (stream, version) = (stream.to_owned(), version.clone());
        let at = normalize(at);
        self.write(OP, move |tx| {
            let release = load_release(tx, OP, &stream, &version)?;
            match release.state {
                ReleaseState::Pending => {}
                // Superseded releases were published before; publishing again changes nothing.
                ReleaseState::Published | ReleaseState::Superseded => return Ok(()),
                ReleaseState::Revoked => {
                    return Err(StoreError::Conflict(format!(
                        "release {version} of {stream} is revoked and cannot be published"
                    )))
                }
                ReleaseState::Expired => {
                    return Err(StoreError::Conflict(format!(
                        "release {version} of {stream} has expired and cannot be published"
                    )))
                }
            }
            let published: Vec<String> = {
                let mut stmt = tx.prepare_cached(PUBLISHED_VERSIONS).db(OP)?;
                let rows = stmt
                    .query_map(params![stream], |row| row.get(0))
                    .db(OP)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .db(OP)?;
                rows
            };
            // Publishing normally goes in version order, but should an older release finish publishing
            // after a newer one, the newer one stays the stream's current release.
            let mut superseded = Vec::new();
            let mut newer_exists = false;
            for other in published {
                let other_version: Version = other
                    .parse()
                    .map_err(|e| corrupt("releases", "version", e))?;
                if other_version < version {
                    superseded.push(other_version);
                } else {
                    newer_exists = true;
                }
            }
            for old in &superseded {
                exec(
                    tx,
                    "UPDATE releases SET state = 'superseded' WHERE stream = ?1 AND version = ?2",
                    params![stream, old.to_string()],
                )
                .db(OP)?;
            }
            let state = if newer_exists {
                ReleaseState::Superseded
            } else {
                ReleaseState::Published
            };
            exec(
                tx,
                "UPDATE releases SET state = ?3, published_at = COALESCE(published_at, ?4) \
                 WHERE stream = ?1 AND version = ?2",
                params![stream, version.to_string(), state.as_str(), ts(at)],
            )
            .db(OP)?;
            let release = Release {
                state,
                published_at: Some(release.published_at.unwrap_or(at)),
                ..release
            };
            let mut body = to_json_value(OP, &release)?;
            if let Some(object) = body.as_object_mut() {
                object.insert("superseded".into(), to_json_value(OP, &superseded)?);
            }
            append_event(tx, OP, topics::RELEASE_PUBLISHED, at, body)
        })
        .await
    }

    async fn releases(&self, stream: &str) -> StoreResult<Vec<Release>> {
        const OP: &str = "releases";
        let stream = stream.to_owned();
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE stream = ?1 \
                     ORDER BY day DESC, n DESC"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![stream], ReleaseRow::from_row)
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter().map(ReleaseRow::decode).collect()
        })
        .await
    }

    async fn newest_releases(
        &self,
        stream: &str,
        states: &[ReleaseState],
        limit: usize,
    ) -> StoreResult<Vec<Release>> {
        const OP: &str = "newest_releases";
        let stream = stream.to_owned();
        let only_current = !states.is_empty()
            && states
                .iter()
                .all(|s| matches!(s, ReleaseState::Pending | ReleaseState::Published));
        // `,a,b,` matched against `,state,`: one statement, whatever states are asked for.
        let states: String = if states.is_empty() {
            String::new()
        } else {
            states
                .iter()
                .fold(String::from(","), |all, s| format!("{all}{},", s.as_str()))
        };
        // Asked only for current releases, the read walks the few rows of the `releases_current` index.
        let current = if only_current {
            "AND state IN ('pending', 'published')"
        } else {
            ""
        };
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE stream = ?1 {current} \
                     AND (?2 = '' OR instr(?2, ',' || state || ',') > 0) \
                     ORDER BY day DESC, n DESC LIMIT ?3"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(
                    params![stream, states, sql_limit(limit)],
                    ReleaseRow::from_row,
                )
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter().map(ReleaseRow::decode).collect()
        })
        .await
    }

    async fn releases_made_since(
        &self,
        stream: &str,
        since: Timestamp,
    ) -> StoreResult<Vec<Release>> {
        const OP: &str = "releases_made_since";
        let stream = stream.to_owned();
        self.read(OP, move |tx| {
            // A release's day is the UTC date it was made (its version's date), so the day bounds the
            // read to a range of the (stream, day, n) index; the time within the first day is checked
            // here.
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE stream = ?1 AND day >= ?2 \
                     ORDER BY day DESC, n DESC"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![stream, day(since)], ReleaseRow::from_row)
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            let mut releases = Vec::with_capacity(rows.len());
            for row in rows {
                let release = row.decode()?;
                if release.created_at >= since {
                    releases.push(release);
                }
            }
            Ok(releases)
        })
        .await
    }

    async fn release(&self, stream: &str, version: &Version) -> StoreResult<Option<Release>> {
        const OP: &str = "release";
        let (stream, version) = (stream.to_owned(), version.clone());
        self.read(OP, move |tx| {
            match load_release(tx, OP, &stream, &version) {
                Ok(release) => Ok(Some(release)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(err) => Err(err),
            }
        })
        .await
    }

    async fn expire_release(
        &self,
        stream: &str,
        version: &Version,
        at: Timestamp,
    ) -> StoreResult<Release> {
        self.expire_release_tx(stream, version, at).await
    }

    async fn delete_compose(&self, id: &ComposeId, at: Timestamp) -> StoreResult<Compose> {
        self.delete_compose_tx(id, at).await
    }

    async fn referenced_blobs(&self) -> StoreResult<std::collections::BTreeSet<Sha256>> {
        self.referenced_blobs_tx().await
    }

    async fn revoke_release(
        &self,
        stream: &str,
        version: &Version,
        reason: &str,
        author: &str,
        at: Timestamp,
    ) -> StoreResult<Release> {
        const OP: &str = "revoke_release";
        let (stream, version) = (stream.to_owned(), version.clone());
        let (reason, author) = (reason.to_owned(), author.to_owned());
        let at = normalize(at);
        self.write(OP, move |tx| {
            let release = load_release(tx, OP, &stream, &version)?;
            if let Some(revocation) = release.revocation.clone() {
                return Err(StoreError::AlreadyRevoked {
                    stream,
                    version,
                    revocation,
                });
            }
            if release.state == ReleaseState::Revoked {
                // Revoked without a note cannot be written by this store; say what is there all the same.
                return Err(StoreError::Conflict(format!(
                    "release {version} of stream {stream} is already revoked"
                )));
            }
            exec(
                tx,
                "UPDATE releases SET state = 'revoked', revoke_reason = ?3, revoked_by = ?4, \
                 revoked_at = ?5 WHERE stream = ?1 AND version = ?2",
                params![stream, version.to_string(), reason, author, ts(at)],
            )
            .db(OP)?;
            record_revocation(
                tx,
                OP,
                &release,
                RevocationAction::Revoked,
                &author,
                &reason,
                at,
            )?;
            let current = settle_current(tx, OP, &stream)?;
            let body = json!({
                "stream": stream,
                "version": version,
                "compose": release.compose,
                "reason": reason,
                "author": author,
                "at": at,
                "previous_state": release.state,
                "current": current,
            });
            append_event(tx, OP, topics::RELEASE_REVOKED, at, body)?;
            load_release(tx, OP, &stream, &version)
        })
        .await
    }

    async fn unrevoke_release(
        &self,
        stream: &str,
        version: &Version,
        author: &str,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<Release> {
        const OP: &str = "unrevoke_release";
        let (stream, version) = (stream.to_owned(), version.clone());
        let (reason, author) = (reason.to_owned(), author.to_owned());
        let at = normalize(at);
        self.write(OP, move |tx| {
            let release = load_release(tx, OP, &stream, &version)?;
            if release.state != ReleaseState::Revoked {
                return Err(StoreError::NotRevoked {
                    stream,
                    version,
                    state: release.state,
                });
            }
            // A release revoked before it was ever published goes back to waiting for its publish;
            // the others rejoin the published ones, and settling decides which one is current.
            let state = if release.published_at.is_some() {
                ReleaseState::Superseded
            } else {
                ReleaseState::Pending
            };
            exec(
                tx,
                "UPDATE releases SET state = ?3, revoke_reason = NULL, revoked_by = NULL, \
                 revoked_at = NULL WHERE stream = ?1 AND version = ?2",
                params![stream, version.to_string(), state.as_str()],
            )
            .db(OP)?;
            record_revocation(
                tx,
                OP,
                &release,
                RevocationAction::Unrevoked,
                &author,
                &reason,
                at,
            )?;
            let current = settle_current(tx, OP, &stream)?;
            let release = load_release(tx, OP, &stream, &version)?;
            let body = json!({
                "stream": stream,
                "version": version,
                "compose": release.compose,
                "reason": reason,
                "author": author,
                "at": at,
                "state": release.state,
                "current": current,
            });
            append_event(tx, OP, topics::RELEASE_UNREVOKED, at, body)?;
            Ok(release)
        })
        .await
    }

    async fn revocation_history(
        &self,
        stream: &str,
        version: &Version,
    ) -> StoreResult<Vec<RevocationRecord>> {
        const OP: &str = "revocation_history";
        let (stream, version) = (stream.to_owned(), version.clone());
        self.read(OP, move |tx| {
            load_release(tx, OP, &stream, &version)?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT action, author, reason, at FROM release_revocations \
                     WHERE stream = ?1 AND version = ?2 ORDER BY id",
                )
                .db(OP)?;
            let rows = stmt
                .query_map(params![stream, version.to_string()], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter()
                .map(|(action, author, reason, at)| {
                    const T: &str = "release_revocations";
                    let action = match action.as_str() {
                        "revoked" => RevocationAction::Revoked,
                        "unrevoked" => RevocationAction::Unrevoked,
                        other => {
                            return Err(corrupt(T, "action", format!("unknown action {other:?}")))
                        }
                    };
                    Ok(RevocationRecord {
                        action,
                        author,
                        reason,
                        at: parse_ts(T, "at", &at)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn released_artifacts(
        &self,
        stream: &str,
    ) -> StoreResult<std::collections::HashMap<ComposeId, Vec<Artifact>>> {
        const OP: &str = "released_artifacts";
        let stream = stream.to_owned();
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT a.compose_id, a.kind, a.file_name, a.sha256, a.size                      FROM releases r JOIN artifacts a ON a.compose_id = r.compose_id                      WHERE r.stream = ?1 ORDER BY a.compose_id, a.position",
                )
                .db(OP)?;
            let rows = stmt
                .query_map(params![stream], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                })
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            let mut by_compose: std::collections::HashMap<ComposeId, Vec<Artifact>> =
                std::collections::HashMap::new();
            for (compose, kind, file_name, sha256, size) in rows {
                by_compose
                    .entry(ComposeId(compose))
                    .or_default()
                    .push(decode_artifact(kind, file_name, &sha256, size)?);
            }
            Ok(by_compose)
        })
        .await
    }

    async fn last_event_seq(&self) -> StoreResult<EventSeq> {
        const OP: &str = "last_event_seq";
        self.read(OP, move |tx| {
            query_one(tx, "SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get::<_, i64>(0)
            })
            .db(OP)
        })
        .await
    }

    async fn events_after(&self, after: EventSeq, limit: usize) -> StoreResult<Vec<Event>> {
        const OP: &str = "events_after";
        self.read(OP, move |tx| {
            read_events(
                tx,
                OP,
                "SELECT seq, id, topic, time, schema, body FROM events WHERE seq > ?1 \
                 ORDER BY seq LIMIT ?2",
                params![after, sql_limit(limit)],
            )
        })
        .await
    }

    async fn events_after_on(
        &self,
        after: EventSeq,
        topics: &[&str],
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        const OP: &str = "events_after_on";
        let topics = to_json(OP, &topics)?;
        self.read(OP, move |tx| {
            // One statement for any list of topics: the list is a JSON array parameter.
            read_events(
                tx,
                OP,
                "SELECT seq, id, topic, time, schema, body FROM events WHERE seq > ?1 \
                 AND topic IN (SELECT value FROM json_each(?2)) ORDER BY seq LIMIT ?3",
                params![after, topics, sql_limit(limit)],
            )
        })
        .await
    }

    async fn unhandled_events_after(
        &self,
        handler: &str,
        after: EventSeq,
        skip: &[&str],
        limit: usize,
    ) -> StoreResult<UnhandledEvents> {
        const OP: &str = "unhandled_events_after";
        let handler = handler.to_owned();
        let skip = to_json(OP, &skip)?;
        self.read(OP, move |tx| {
            let events = read_events(
                tx,
                OP,
                "SELECT seq, id, topic, time, schema, body FROM events e WHERE seq > ?1 \
                 AND topic NOT IN (SELECT value FROM json_each(?3)) \
                 AND NOT EXISTS (SELECT 1 FROM handled_events h \
                                 WHERE h.handler = ?2 AND h.event_id = e.id) \
                 ORDER BY seq LIMIT ?4",
                params![after, handler, skip, sql_limit(limit)],
            )?;
            // Short of the limit, the read looked at every event there is: in this snapshot, and since
            // writers commit one at a time in sequence order, no earlier event can still appear.
            let through = match events.last() {
                Some(last) if events.len() >= limit => last.seq,
                _ => query_one(
                    tx,
                    "SELECT COALESCE(MAX(seq), ?1) FROM events",
                    params![after],
                    |row| row.get(0),
                )
                .db(OP)?,
            };
            Ok(UnhandledEvents { events, through })
        })
        .await
    }

    async fn is_handled(&self, handler: &str, event: EventId) -> StoreResult<bool> {
        const OP: &str = "is_handled";
        let handler = handler.to_owned();
        self.read(OP, move |tx| {
            query_one(
                tx,
                "SELECT 1 FROM handled_events WHERE handler = ?1 AND event_id = ?2",
                params![handler, event.to_string()],
                |_| Ok(()),
            )
            .optional()
            .db(OP)
            .map(|found| found.is_some())
        })
        .await
    }

    async fn mark_handled(&self, handler: &str, event: EventId, at: Timestamp) -> StoreResult<()> {
        const OP: &str = "mark_handled";
        let handler = handler.to_owned();
        self.write(OP, move |tx| {
            exec(
                tx,
                "INSERT INTO handled_events (handler, event_id, handled_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (handler, event_id) DO NOTHING",
                params![handler, event.to_string(), ts(at)],
            )
            .db(OP)?;
            Ok(())
        })
        .await
    }

    async fn enqueue_job(&self, job: &NewJob, at: Timestamp) -> StoreResult<bool> {
        const OP: &str = "enqueue_job";
        let job = job.clone();
        self.write(OP, move |tx| {
            let added = exec(
                tx,
                "INSERT INTO jobs (kind, key, payload, state, attempts, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, 'queued', 0, ?4, ?4) ON CONFLICT (key) DO NOTHING",
                params![job.kind, job.key, to_json(OP, &job.payload)?, ts(at)],
            )
            .db(OP)?;
            Ok(added == 1)
        })
        .await
    }

    async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        max_attempts: u32,
        at: Timestamp,
    ) -> StoreResult<Option<Job>> {
        const OP: &str = "claim_job";
        let worker = worker.to_owned();
        let now = ts(at);
        let until = ts(lease_end(at, lease)?);
        let max = i64::from(max_attempts);
        self.write(OP, move |tx| {
            // Jobs out of claims are retired here, so they stop counting as open.
            exec(
                tx,
                "UPDATE jobs SET state = 'failed', \
                     last_error = CASE WHEN state = 'leased' \
                         THEN 'lease of worker ' || COALESCE(worker, '?') || ' expired' \
                         ELSE COALESCE(last_error, 'out of attempts') END, \
                     lease_until = NULL, updated_at = ?2 \
                 WHERE attempts >= ?1 \
                   AND (state = 'queued' OR (state = 'leased' AND lease_until <= ?2))",
                params![max, now],
            )
            .db(OP)?;
            let candidate = query_one(
                tx,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs \
                         WHERE attempts < ?1 \
                           AND (state = 'queued' OR (state = 'leased' AND lease_until <= ?2)) \
                         ORDER BY id LIMIT 1"
                ),
                params![max, now],
                JobRow::from_row,
            )
            .optional()
            .db(OP)?;
            let Some(row) = candidate else {
                return Ok(None);
            };
            exec(
                tx,
                "UPDATE jobs SET state = 'leased', worker = ?2, lease_until = ?3, \
                     attempts = attempts + 1, max_attempts = ?4, updated_at = ?5 \
                 WHERE id = ?1",
                params![row.id, worker, until, max, now],
            )
            .db(OP)?;
            let job = JobRow {
                attempts: row.attempts + 1,
                ..row
            };
            job.decode().map(Some)
        })
        .await
    }

    async fn extend_lease(
        &self,
        job: i64,
        worker: &str,
        lease: Duration,
        at: Timestamp,
    ) -> StoreResult<bool> {
        const OP: &str = "extend_lease";
        let worker = worker.to_owned();
        let until = ts(lease_end(at, lease)?);
        let now = ts(at);
        self.write(OP, move |tx| {
            let changed = exec(
                tx,
                "UPDATE jobs SET lease_until = ?3, updated_at = ?4 \
                     WHERE id = ?1 AND state = 'leased' AND worker = ?2",
                params![job, worker, until, now],
            )
            .db(OP)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn finish_job(
        &self,
        job: i64,
        worker: &str,
        outcome: JobOutcome,
        at: Timestamp,
    ) -> StoreResult<()> {
        const OP: &str = "finish_job";
        let worker = worker.to_owned();
        let now = ts(at);
        self.write(OP, move |tx| {
            let (state, holder, attempts, max_attempts) = query_one(
                tx,
                "SELECT state, worker, attempts, max_attempts FROM jobs WHERE id = ?1",
                params![job],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .optional()
            .db(OP)?
            .ok_or_else(|| StoreError::NotFound(format!("job {job}")))?;
            if state != "leased" || holder.as_deref() != Some(worker.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "job {job} is not held by {worker} (it is {state}{})",
                    holder
                        .map(|h| format!(", last held by {h}"))
                        .unwrap_or_default()
                )));
            }
            match outcome {
                JobOutcome::Done => exec(
                    tx,
                    "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = ?2 \
                     WHERE id = ?1",
                    params![job, now],
                ),
                JobOutcome::Failed { error } => {
                    // A leased job always has `max_attempts`; without one, retrying could go on forever.
                    let exhausted = match max_attempts {
                        Some(max) => attempts >= max,
                        None => true,
                    };
                    let (next, worker) = if exhausted {
                        ("failed", Some(worker))
                    } else {
                        ("queued", None)
                    };
                    exec(
                        tx,
                        "UPDATE jobs SET state = ?2, worker = ?3, lease_until = NULL, \
                             last_error = ?4, updated_at = ?5 \
                         WHERE id = ?1",
                        params![job, next, worker, error, now],
                    )
                }
            }
            .db(OP)?;
            Ok(())
        })
        .await
    }

    async fn release_leases(&self, worker_prefix: &str) -> StoreResult<usize> {
        const OP: &str = "release_leases";
        let prefix = worker_prefix.to_owned();
        self.write(OP, move |tx| {
            // Matched here rather than with LIKE, whose wildcards a worker name could contain.
            let leased: Vec<(i64, String, i64, Option<i64>)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, worker, attempts, max_attempts FROM jobs \
                         WHERE state = 'leased' AND worker IS NOT NULL",
                    )
                    .db(OP)?;
                let rows = stmt
                    .query_map([], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .db(OP)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .db(OP)?;
                rows
            };
            let mut released = 0;
            for (id, worker, attempts, max_attempts) in leased {
                if !worker.starts_with(&prefix) {
                    continue;
                }
                let exhausted = max_attempts.is_some_and(|max| attempts >= max);
                let next = if exhausted { "failed" } else { "queued" };
                // `updated_at` is left alone: this call has no clock, and the engine's may be virtual.
                exec(
                tx,
                    "UPDATE jobs SET state = ?2, worker = NULL, lease_until = NULL, last_error = ?3 \
                     WHERE id = ?1",
                    params![id, next, format!("worker {worker} stopped while holding the job")],
                )
                .db(OP)?;
                released += 1;
            }
            Ok(released)
        })
        .await
    }

    async fn open_jobs(&self) -> StoreResult<usize> {
        const OP: &str = "open_jobs";
        self.read(OP, move |tx| {
            let count: i64 = query_one(
                tx,
                "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'leased')",
                [],
                |row| row.get(0),
            )
            .db(OP)?;
            usize::try_from(count).map_err(|_| corrupt("jobs", "state", "negative count"))
        })
        .await
    }

    async fn failed_jobs(&self, limit: usize) -> StoreResult<Vec<(Job, String)>> {
        const OP: &str = "failed_jobs";
        self.read(OP, move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS}, last_error FROM jobs WHERE state = 'failed' \
                     ORDER BY updated_at DESC, id DESC LIMIT ?1"
                ))
                .db(OP)?;
            let rows = stmt
                .query_map(params![sql_limit(limit)], |row| {
                    Ok((JobRow::from_row(row)?, row.get::<_, Option<String>>(5)?))
                })
                .db(OP)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(OP)?;
            rows.into_iter()
                .map(|(job, error)| Ok((job.decode()?, error.unwrap_or_default())))
                .collect()
        })
        .await
    }

    async fn append_event(
        &self,
        topic: &str,
        body: &serde_json::Value,
        at: Timestamp,
    ) -> StoreResult<()> {
        const OP: &str = "append_event";
        let (topic, body) = (topic.to_owned(), body.clone());
        let at = normalize(at);
        self.write(OP, move |tx| append_event(tx, OP, &topic, at, body))
            .await
    }

    async fn set_state(
        &self,
        key: &str,
        value: &serde_json::Value,
        event: Option<(&str, &serde_json::Value)>,
        at: Timestamp,
    ) -> StoreResult<()> {
        const OP: &str = "set_state";
        let (key, value) = (key.to_owned(), value.clone());
        let event = event.map(|(topic, body)| (topic.to_owned(), body.clone()));
        let at = normalize(at);
        self.write(OP, move |tx| {
            exec(
                tx,
                "INSERT INTO state (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, to_json(OP, &value)?, ts(at)],
            )
            .db(OP)?;
            if let Some((topic, body)) = event {
                append_event(tx, OP, &topic, at, body)?;
            }
            Ok(())
        })
        .await
    }

    async fn state(&self, key: &str) -> StoreResult<Option<serde_json::Value>> {
        const OP: &str = "state";
        let key = key.to_owned();
        self.read(OP, move |tx| {
            let value: Option<String> = query_one(
                tx,
                "SELECT value FROM state WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .db(OP)?;
            value.map(|v| parse_json("state", "value", &v)).transpose()
        })
        .await
    }

    async fn states(&self, prefix: &str) -> StoreResult<Vec<(String, serde_json::Value)>> {
        const OP: &str = "states";
        let prefix = prefix.to_owned();
        // A range over the key's index: the state table also holds a record per release out of cycle and
        // per compose's advisories, so a scan would grow with the history.
        let upper = prefix_upper_bound(&prefix);
        self.read(OP, move |tx| {
            let row = |row: &Row<'_>| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?));
            let rows = match &upper {
                Some(upper) => tx
                    .prepare_cached(
                        "SELECT key, value FROM state WHERE key >= ?1 AND key < ?2 ORDER BY key",
                    )
                    .db(OP)?
                    .query_map(params![prefix, upper], row)
                    .db(OP)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
                None => tx
                    .prepare_cached("SELECT key, value FROM state WHERE key >= ?1 ORDER BY key")
                    .db(OP)?
                    .query_map(params![prefix], row)
                    .db(OP)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
            }
            .db(OP)?;
            rows.into_iter()
                .map(|(key, value)| Ok((key, parse_json("state", "value", &value)?)))
                .collect()
        })
        .await
    }

    async fn open_or_comment_incident(
        &self,
        new: &NewIncident,
        mirror: Option<&str>,
    ) -> StoreResult<(IncidentAction, Incident)> {
        self.inc_open_or_comment(new, mirror).await
    }

    async fn comment_incident(
        &self,
        id: u64,
        comment: &NewIncidentComment,
        mirror: Option<&str>,
    ) -> StoreResult<Incident> {
        self.inc_comment(id, comment, mirror).await
    }

    async fn close_incident(
        &self,
        id: u64,
        comment: &NewIncidentComment,
        mirror: Option<&str>,
    ) -> StoreResult<Incident> {
        self.inc_close(id, comment, mirror).await
    }

    async fn set_incident_external(
        &self,
        id: u64,
        external: &ExternalIssue,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.inc_set_external(id, external, at).await
    }

    async fn open_incident(&self, stream: &str) -> StoreResult<Option<Incident>> {
        self.inc_open_incident(stream).await
    }

    async fn incidents(
        &self,
        stream: Option<&str>,
        include_closed: bool,
    ) -> StoreResult<Vec<Incident>> {
        self.inc_incidents(stream, include_closed).await
    }

    async fn newest_incidents(&self, stream: &str, limit: usize) -> StoreResult<Vec<Incident>> {
        self.inc_newest_incidents(stream, limit).await
    }

    async fn incident(&self, id: u64) -> StoreResult<Option<Incident>> {
        self.inc_incident(id).await
    }

    async fn pending_mirror_steps(&self) -> StoreResult<Vec<MirrorStep>> {
        self.inc_pending_steps().await
    }

    async fn finish_mirror_step(&self, step: u64, at: Timestamp) -> StoreResult<()> {
        self.inc_finish_step(step, at).await
    }

    async fn fail_mirror_step(&self, step: u64, error: &str, at: Timestamp) -> StoreResult<()> {
        self.inc_fail_step(step, error, at).await
    }

    async fn find_results(
        &self,
        query: &ResultQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<ResultEntry>> {
        self.rdb_find_results(query, page).await
    }

    async fn find_result(&self, id: u64) -> StoreResult<Option<ResultEntry>> {
        self.rdb_find_result(id).await
    }

    async fn find_latest_results(
        &self,
        query: &ResultQuery,
        distinct_on: &[DataKey],
    ) -> StoreResult<Vec<ResultEntry>> {
        self.rdb_find_latest_results(query, distinct_on).await
    }

    async fn find_testcases(
        &self,
        query: &TestcaseQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<String>> {
        self.rdb_find_testcases(query, page).await
    }

    async fn find_groups(
        &self,
        query: &GroupQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<GroupEntry>> {
        self.rdb_find_groups(query, page).await
    }

    async fn find_group(&self, id: &RunId) -> StoreResult<Option<GroupEntry>> {
        self.rdb_find_group(id).await
    }

    async fn enqueue_notification(
        &self,
        key: &str,
        announcement: &Announcement,
        at: Timestamp,
    ) -> StoreResult<Option<Notification>> {
        self.notifications_enqueue(key, announcement, at).await
    }

    async fn claim_notifications(
        &self,
        at: Timestamp,
        hold: Duration,
        limit: usize,
    ) -> StoreResult<Vec<Notification>> {
        self.notifications_claim(at, hold, limit).await
    }

    async fn mark_notification_sent(&self, id: i64, at: Timestamp) -> StoreResult<()> {
        self.notifications_mark_sent(id, at).await
    }

    async fn mark_notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Timestamp,
        at: Timestamp,
    ) -> StoreResult<Notification> {
        self.notifications_mark_failed(id, error, retry_at, at)
            .await
    }

    async fn pending_notifications(&self) -> StoreResult<Vec<Notification>> {
        self.notifications_pending().await
    }

    async fn sent_notifications(&self, limit: usize) -> StoreResult<Vec<Notification>> {
        self.notifications_sent(limit).await
    }
}

#[cfg(test)]
mod scratch_tests {
    use super::*;

    #[tokio::test]
    async fn a_scratch_database_grows_past_the_in_memory_file_systems_default_gibibyte() {
        let store = SqliteStore::open_scratch().expect("scratch store");
        let stored: i64 = store
            .write("a big table", |tx| {
                tx.execute_batch("CREATE TABLE big (b BLOB)").db("create")?;
                // Three blobs of 400 MB: more than the 1 GiB SQLite's in-memory file system allows
                // unless its limit is lifted.
                for _ in 0..3 {
                    tx.execute_batch("INSERT INTO big VALUES (zeroblob(400000000))")
                        .db("insert")?;
                }
                tx.query_row("SELECT sum(length(b)) FROM big", [], |row| row.get(0))
                    .db("sum")
            })
            .await
            .expect("writes past 1 GiB");
        assert_eq!(stored, 1_200_000_000);
    }
}

#[cfg(test)]
mod transaction_tests {
    use super::*;

    /// A write that fails after changing rows leaves none of its changes, and the connection takes the
    /// next transaction: the cached `BEGIN`/`COMMIT` statements roll back what they began.
    async fn a_failed_write_leaves_nothing_behind(store: SqliteStore) {
        let at = Timestamp::UNIX_EPOCH;
        store
            .set_state("kept", &json!(1), None, at)
            .await
            .expect("first write");
        let failed = store
            .write("a write that fails half-way", |tx| {
                exec(
                    tx,
                    "INSERT INTO state (key, value, updated_at) VALUES ('lost', '2', 'x')",
                    [],
                )
                .db("insert")?;
                Err::<(), _>(StoreError::Conflict("changed my mind".into()))
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
        assert_eq!(store.state("lost").await.expect("read"), None);
        store
            .set_state("after", &json!(3), None, at)
            .await
            .expect("a write after the failed one");
        assert_eq!(store.state("kept").await.expect("read"), Some(json!(1)));
        assert_eq!(store.state("after").await.expect("read"), Some(json!(3)));
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_behind_in_a_file_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("slipway.db")).expect("open");
        a_failed_write_leaves_nothing_behind(store).await;
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_behind_in_a_scratch_database() {
        a_failed_write_leaves_nothing_behind(SqliteStore::open_scratch().expect("open")).await;
    }

    #[tokio::test]
    async fn a_copy_is_never_written_over_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("copy.db");
        std::fs::write(&path, b"someone's file").expect("write");
        let store = SqliteStore::open_scratch().expect("open");
        let err = store.save_to(&path).await.expect_err("refused");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), b"someone's file");
    }
}

#[cfg(test)]
mod query_plan_tests {
    use super::*;

    /// Reading or superseding a stream's published release must go through the partial index of current
    /// releases: a scan of the stream's releases grows with its whole history.
    #[test]
    fn the_published_release_is_found_over_the_index_of_current_releases() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrations::migrate(&mut conn).expect("schema");
        for sql in [PUBLISHED_VERSIONS, SUPERSEDE_PUBLISHED] {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("plan");
            let plan: Vec<String> = stmt
                .query_map(
                    rusqlite::params_from_iter(
                        ["cloud", "20261121.0"]
                            .into_iter()
                            .take(stmt.parameter_count()),
                    ),
                    |row| row.get(3),
                )
                .expect("rows")
                .collect::<rusqlite::Result<_>>()
                .expect("plan rows");
            assert!(
                plan.iter().any(|step| step.contains("releases_current")),
                "{sql}: {plan:?}"
            );
        }
    }
}
