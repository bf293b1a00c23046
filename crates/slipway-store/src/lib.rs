//! The one place SQL lives.
//!
//! [`Store`] is the trait every other part of slipway talks to; [`SqliteStore`] is the embedded
//! implementation (SQLite in WAL mode). Every state change is one transaction that also appends the
//! [`Event`] describing it (the transactional outbox), so a process that dies between two steps loses
//! nothing: on restart the engine reads the events it has not handled yet. Jobs are leased, so work held by
//! a dead worker is handed out again.
//!
//! The SQL is kept to what PostgreSQL also speaks, so a second implementation can follow.

mod notification;
mod query;
mod sqlite;

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use slipway_model::{
    Announcement, Artifact, CandidateCompose, Compose, ComposeId, Decision, Event, EventId,
    EventSeq, ExternalIssue, Incident, IncidentAction, InputHash, Lock, MirrorStep, NewIncident,
    NewIncidentComment, NewWaiver, PkgDiff, Release, ReleaseState, RevocationNote, RunId, Sha256,
    TestResult, TestRun, Verdict, Version, Waiver,
};

pub use notification::{Notification, NotificationState};
pub use query::{
    DataFilter, DataKey, GroupEntry, GroupQuery, PageRequest, Paged, ResultEntry, ResultQuery,
    SortOrder, TestcaseQuery, ITEM_TYPE,
};
pub use sqlite::SqliteStore;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// A row the caller named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change is not allowed in the current state; the message says why.
    #[error("{0}")]
    Conflict(String),
    /// A release cannot be revoked because it already is; nothing was changed.
    #[error(
        "release {version} of {stream} is already revoked (by {} at {}: {})",
        .revocation.author, .revocation.at, .revocation.reason
    )]
    AlreadyRevoked {
        /// The stream.
        stream: String,
        /// The release's version.
        version: Version,
        /// The revocation in force.
        revocation: RevocationNote,
    },
    /// A release cannot be unrevoked because it is not revoked; nothing was changed.
    #[error("release {version} of {stream} is not revoked (it is {}), so there is nothing to take back", .state.as_str())]
    NotRevoked {
        /// The stream.
        stream: String,
        /// The release's version.
        version: Version,
        /// Its state.
        state: ReleaseState,
    },
    /// A stored value could not be decoded; the database was changed by something else or is corrupt.
    #[error("corrupt value in {table}.{column}: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What [`Store::unhandled_events_after`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct UnhandledEvents {
    /// The events to handle, oldest first.
    pub events: Vec<Event>,
    /// Every event up to this sequence number was looked at: a handler that handles `events` may read
    /// on from here, past the events it skips or has already handled.
    pub through: EventSeq,
}

/// Work for a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's row id.
    pub id: i64,
    /// What kind of work: `compose`, `test`, `publish`.
    pub kind: String,
    /// A unique key: enqueuing a job whose key exists does nothing, which makes event handlers idempotent.
    pub key: String,
    /// The job's parameters.
    pub payload: serde_json::Value,
    /// How many times it has been claimed.
    pub attempts: u32,
}

/// A job to add to the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// What kind of work.
    pub kind: String,
    /// The unique key.
    pub key: String,
    /// The parameters.
    pub payload: serde_json::Value,
}

/// Whether an entry of a release's revocation history revoked it or took a revocation back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevocationAction {
    /// The release was revoked.
    Revoked,
    /// A revocation was taken back.
    Unrevoked,
}

/// One entry of a release's revocation history: every revocation and unrevocation is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// What happened.
    pub action: RevocationAction,
    /// Who did it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Done; never run again.
    Done,
    /// The worker could not do it; it is retried until `max_attempts` claims, then left failed.
    Failed {
        /// Why.
        error: String,
    },
}

/// The persistent state of slipway. All methods are transactions.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // ----- composes -----

    /// Starts a compose for `stream` from `recipe`: allocates the id `<recipe>-<YYYYMMDD>.<n>` (the next
    /// free `n` for that recipe and UTC day), stores it as running, and appends `compose.started`.
    async fn create_compose(
        &self,
        stream: &str,
        recipe: &str,
        recipe_hash: &Sha256,
        at: Timestamp,
    ) -> StoreResult<Compose>;

    /// Records a finished build: input hash, lock and image artifacts; appends `compose.complete`.
    /// Fails with `Conflict` unless the compose is running, `NotFound` if there is no such compose.
    async fn complete_compose(
        &self,
        id: &ComposeId,
        input_hash: &InputHash,
        lock: &Lock,
        pkgdiff: &PkgDiff,
        artifacts: &[Artifact],
        at: Timestamp,
    ) -> StoreResult<()>;

    /// Records a failed build with its reason; appends `compose.failed`. Fails with `Conflict` unless the
    /// compose is running.
    async fn fail_compose(&self, id: &ComposeId, reason: &str, at: Timestamp) -> StoreResult<()>;

    /// One compose with its artifacts and lock.
    async fn compose(&self, id: &ComposeId) -> StoreResult<Option<Compose>>;

    /// Composes, newest first, of one stream or of all.
    async fn composes(&self, stream: Option<&str>, limit: usize) -> StoreResult<Vec<Compose>>;

    /// A stream's newest composes as the release policy weighs them, newest first as
    /// [`Store::composes`] gives them, each with whether its latest decision in that stream passed: one
    /// read that leaves their locks and artifacts alone.
    async fn candidate_composes(
        &self,
        stream: &str,
        limit: usize,
    ) -> StoreResult<Vec<CandidateCompose>>;

    /// The newest complete compose of a stream that has a lock: what a new compose's inputs are compared
    /// with to decide whether anything changed.
    async fn newest_locked_compose(&self, stream: &str) -> StoreResult<Option<Compose>>;

    /// The newest complete compose of a recipe (in any stream) other than `excluding`: the compose whose
    /// lock is the recipe's current one, and what a new compose's package diff is taken against.
    async fn latest_complete_compose(
        &self,
        recipe: &str,
        excluding: Option<&ComposeId>,
    ) -> StoreResult<Option<Compose>>;

    /// Adds an artifact made after the build, such as a boot test's serial log. Adding the same artifact
    /// again is a no-op (so a retried worker does no harm); a different file under a name already used by
    /// the compose is a `Conflict`. Appends no event.
    async fn add_artifact(&self, id: &ComposeId, artifact: &Artifact) -> StoreResult<()>;

    // ----- test results -----

    /// Records one test run of a compose and its results: appends one `test.result` event per result
    /// (carrying the id the store gave it) and then one `test.complete`. Returns the results' ids, in
    /// order. `NotFound` if there is no such compose; `Conflict` (and nothing recorded) if a result names
    /// another compose or the run is already recorded.
    async fn record_test_run(
        &self,
        run: &TestRun,
        results: &[TestResult],
        at: Timestamp,
    ) -> StoreResult<Vec<u64>>;

    /// Records a test run as it starts, with one QUEUED result per planned test, so readers and the gate
    /// see it in flight. Appends a `test.result` event per result but no `test.complete`. Errors as
    /// [`Store::record_test_run`].
    async fn start_test_run(
        &self,
        run: &TestRun,
        queued: &[TestResult],
        at: Timestamp,
    ) -> StoreResult<Vec<u64>>;

    /// Appends results (RUNNING ones, say) to a started run; a testcase's latest result is the one that
    /// counts, and earlier ones stay as history. `NotFound` if there is no such run.
    async fn add_test_results(
        &self,
        run: &RunId,
        results: &[TestResult],
        at: Timestamp,
    ) -> StoreResult<Vec<u64>>;

    /// Finishes a started run: updates its artifact, description and end time, appends the final results
    /// and then `test.complete`. `Conflict` if it is finished already or `run` names another compose.
    async fn finish_test_run(
        &self,
        run: &TestRun,
        results: &[TestResult],
        at: Timestamp,
    ) -> StoreResult<Vec<u64>>;

    /// A test run and its results in recorded order; `None` if there is no such run.
    async fn test_run(&self, id: &RunId) -> StoreResult<Option<(TestRun, Vec<TestResult>)>>;

    /// Every test run of a compose, oldest first.
    async fn test_runs(&self, compose: &ComposeId) -> StoreResult<Vec<TestRun>>;

    /// The latest result of each testcase of a compose, as of `at` (results submitted later are ignored).
    async fn latest_results(
        &self,
        compose: &ComposeId,
        at: Timestamp,
    ) -> StoreResult<Vec<TestResult>>;

    /// Every result of a compose submitted by `at`, oldest first (by submission time, then id): what the
    /// gate reads to count passes and find each testcase's latest result per scenario.
    async fn results(&self, compose: &ComposeId, at: Timestamp) -> StoreResult<Vec<TestResult>>;

    // ----- verdicts, waivers and decisions -----

    /// Records a person's verdict on a compose; appends `compose.verdict`. `NotFound` if no such compose.
    async fn add_verdict(&self, verdict: &Verdict) -> StoreResult<()>;

    /// Every verdict on a compose, oldest first.
    async fn verdicts(&self, compose: &ComposeId) -> StoreResult<Vec<Verdict>>;

    /// Records a waiver and appends `waiver.created` carrying it; returns it with its id. `NotFound` if
    /// there is no such compose.
    async fn add_waiver(&self, waiver: &NewWaiver) -> StoreResult<Waiver>;

    /// Marks a waiver revoked (the waiver is kept) and appends `waiver.revoked` carrying it. `NotFound` if
    /// there is no such waiver, `Conflict` if it is already revoked.
    async fn revoke_waiver(
        &self,
        id: u64,
        author: &str,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<Waiver>;

    /// One waiver.
    async fn waiver(&self, id: u64) -> StoreResult<Option<Waiver>>;

    /// The waivers of one compose, or of all, oldest first; revoked ones included.
    async fn waivers(&self, compose: Option<&ComposeId>) -> StoreResult<Vec<Waiver>>;

    /// Stores a decision if it differs (by [`Decision::same_answer`]) from the latest one for the same
    /// compose and stream, appending `decision.changed` with the new and the previous decision. Returns
    /// whether it changed. `NotFound` if there is no such compose.
    async fn record_decision(&self, decision: &Decision, at: Timestamp) -> StoreResult<bool>;

    /// The latest decision for a compose in a stream.
    async fn latest_decision(
        &self,
        compose: &ComposeId,
        stream: &str,
    ) -> StoreResult<Option<Decision>>;

    /// Every decision recorded for a compose in a stream, oldest first, with the time it was recorded:
    /// the history of its answers (only changes are recorded).
    async fn decisions(
        &self,
        compose: &ComposeId,
        stream: &str,
    ) -> StoreResult<Vec<(Timestamp, Decision)>>;

    // ----- releases -----

    /// Creates the release of `compose` in `stream` with the next version of the UTC day of `at`, in state
    /// pending, and appends `release.created`. If the compose is already released in the stream, returns
    /// that release unchanged: a compose is never released twice in one stream. Otherwise `NotFound` if
    /// there is no such compose and `Conflict` unless it is complete.
    async fn create_release(
        &self,
        stream: &str,
        compose: &ComposeId,
        at: Timestamp,
    ) -> StoreResult<Release>;

    /// Marks a release published once its files are in the public tree; the stream's previously
    /// published release becomes superseded. Appends `release.published`. Doing it again is a no-op.
    /// `NotFound` if there is no such release; `Conflict` if it was revoked.
    async fn mark_release_published(
        &self,
        stream: &str,
        version: &Version,
        at: Timestamp,
    ) -> StoreResult<()>;

    /// Every release of a stream, newest first.
    async fn releases(&self, stream: &str) -> StoreResult<Vec<Release>>;

    /// A stream's releases made at or after `since`, newest first: what a look back over a span of time
    /// reads, whatever the stream's history before it.
    async fn releases_made_since(
        &self,
        stream: &str,
        since: Timestamp,
    ) -> StoreResult<Vec<Release>>;

    /// A stream's newest releases, newest first: at most `limit`, and only those in one of `states`
    /// unless it is empty. What a question about the current or the latest releases reads, instead of
    /// the whole history.
    async fn newest_releases(
        &self,
        stream: &str,
        states: &[ReleaseState],
        limit: usize,
    ) -> StoreResult<Vec<Release>>;

    /// One release of a stream by version, if there is one.
    async fn release(&self, stream: &str, version: &Version) -> StoreResult<Option<Release>>;

    /// The artifacts of every compose a stream has released, by compose, each list in the compose's
    /// order: what publishing the stream's releases needs, in one read rather than a compose at a time.
    async fn released_artifacts(
        &self,
        stream: &str,
    ) -> StoreResult<std::collections::HashMap<ComposeId, Vec<Artifact>>>;

    // ----- garbage collection -----

    /// Marks a superseded release expired (it leaves the public tree and the stream; the releases index
    /// keeps it) and appends `release.expired`. Expiring an expired release returns it unchanged.
    /// `NotFound` if there is no such release; `Conflict` if it is pending, published or revoked.
    async fn expire_release(
        &self,
        stream: &str,
        version: &Version,
        at: Timestamp,
    ) -> StoreResult<Release>;

    /// Deletes a compose and everything recorded about it (artifacts, test runs and results, verdicts,
    /// waivers, decisions) in one transaction, leaving a tombstone so its id is never given out again, and
    /// appends `compose.deleted` listing its artifacts. Returns the compose as it was. Blob files are the
    /// caller's. `NotFound` if there is no such compose; `Conflict` if it is running, a release that has
    /// not expired is of it, or an incident names it.
    async fn delete_compose(&self, id: &ComposeId, at: Timestamp) -> StoreResult<Compose>;

    /// Every blob digest that an artifact of some compose names.
    async fn referenced_blobs(&self) -> StoreResult<BTreeSet<Sha256>>;

    // ----- incidents -----

    /// Opens an incident for `new.stream` with `new.title` whose first comment is `new.body`, or, when the
    /// stream has an open incident, adds `new.comment` to it as a comment; appends
    /// `incident.opened` or `incident.commented`. When the open incident already has a comment about
    /// `new.compose`, adds nothing and returns [`IncidentAction::AlreadyRecorded`], so a repeated report
    /// is harmless. With `mirror` (a tracker kind such as `gitlab`), the change is queued as a mirror step
    /// for that tracker in the same transaction; an open incident that was never mirrored gets its open
    /// step first. `NotFound` if there is no such compose.
    async fn open_or_comment_incident(
        &self,
        new: &NewIncident,
        mirror: Option<&str>,
    ) -> StoreResult<(IncidentAction, Incident)>;

    /// Adds a comment to an incident (open or closed) and appends `incident.commented`; with `mirror`,
    /// queues it as in [`Store::open_or_comment_incident`], except that a closed incident the tracker never
    /// got is not brought over. `NotFound` if there is no such incident (or compose).
    async fn comment_incident(
        &self,
        id: u64,
        comment: &NewIncidentComment,
        mirror: Option<&str>,
    ) -> StoreResult<Incident>;

    /// Closes an open incident with a comment and appends `incident.closed`. With `mirror`, queues the
    /// close for that tracker if the incident was ever queued to it (an incident the tracker never saw is
    /// not opened there just to be closed). `NotFound` if there is no such incident, `Conflict` if it is
    /// closed already.
    async fn close_incident(
        &self,
        id: u64,
        comment: &NewIncidentComment,
        mirror: Option<&str>,
    ) -> StoreResult<Incident>;

    /// Records the external issue mirroring an incident and marks the incident's pending open steps for
    /// that tracker done, in one transaction: once an issue exists it is never opened again. Recording the
    /// same issue again is a no-op; a different one is a `Conflict` (the first issue stays the incident's).
    /// `NotFound` if there is no such incident.
    async fn set_incident_external(
        &self,
        id: u64,
        external: &ExternalIssue,
        at: Timestamp,
    ) -> StoreResult<()>;

    /// The stream's open incident, if it has one.
    async fn open_incident(&self, stream: &str) -> StoreResult<Option<Incident>>;

    /// Incidents of one stream or of all, newest first; closed ones only with `include_closed`.
    async fn incidents(
        &self,
        stream: Option<&str>,
        include_closed: bool,
    ) -> StoreResult<Vec<Incident>>;

    /// A stream's newest `limit` incidents, open or closed, newest first, with their comments.
    async fn newest_incidents(&self, stream: &str, limit: usize) -> StoreResult<Vec<Incident>>;

    /// One incident with its comments.
    async fn incident(&self, id: u64) -> StoreResult<Option<Incident>>;

    /// Mirror steps not done yet, oldest first (the order they must be applied in, per incident).
    async fn pending_mirror_steps(&self) -> StoreResult<Vec<MirrorStep>>;

    /// Marks a mirror step done. Doing it again is a no-op; `NotFound` if there is no such step.
    async fn finish_mirror_step(&self, step: u64, at: Timestamp) -> StoreResult<()>;

    /// Records a failed attempt at a mirror step (it stays pending): counts it and keeps the error.
    /// `NotFound` if there is no such step.
    async fn fail_mirror_step(&self, step: u64, error: &str, at: Timestamp) -> StoreResult<()>;
    /// Revokes a release as bad: its state becomes revoked with the note (reason, author, time), a history
    /// entry is kept, and `release.revoked` is appended. If it was the stream's published release, the
    /// newest release that is published or superseded and not revoked becomes published, so the stream's
    /// current release is always the newest good one. Returns the revoked release.
    ///
    /// `NotFound` for an unknown release, [`StoreError::AlreadyRevoked`] if it is revoked already; either
    /// way nothing changes.
    async fn revoke_release(
        &self,
        stream: &str,
        version: &Version,
        reason: &str,
        author: &str,
        at: Timestamp,
    ) -> StoreResult<Release>;

    /// Takes a revocation back: the release returns to the state it would have had (published if it is the
    /// newest good release of its stream, the one published so far then superseded; superseded otherwise;
    /// pending if it was revoked before it was ever published). Its revocation stays in the history, a new
    /// entry records the unrevocation, and `release.unrevoked` is appended. Returns the release.
    ///
    /// `NotFound` for an unknown release, [`StoreError::NotRevoked`] if it is not revoked; either way
    /// nothing changes.
    async fn unrevoke_release(
        &self,
        stream: &str,
        version: &Version,
        author: &str,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<Release>;

    /// The revocations and unrevocations of a release, oldest first. `NotFound` for an unknown release.
    async fn revocation_history(
        &self,
        stream: &str,
        version: &Version,
    ) -> StoreResult<Vec<RevocationRecord>>;

    // ----- events -----

    /// Events with a sequence number greater than `after`, oldest first, at most `limit`.
    async fn events_after(&self, after: EventSeq, limit: usize) -> StoreResult<Vec<Event>>;

    /// Events on one of `topics` with a sequence number greater than `after`, oldest first, at most
    /// `limit`: for a reader that follows a few topics among many.
    async fn events_after_on(
        &self,
        after: EventSeq,
        topics: &[&str],
        limit: usize,
    ) -> StoreResult<Vec<Event>>;

    /// Events with a sequence number greater than `after` that `handler` has not marked handled, oldest
    /// first, at most `limit`, leaving out those on one of `skip`: the topics the handler has no reaction
    /// to, which it then need neither read nor mark.
    async fn unhandled_events_after(
        &self,
        handler: &str,
        after: EventSeq,
        skip: &[&str],
        limit: usize,
    ) -> StoreResult<UnhandledEvents>;

    /// The sequence number of the newest event; 0 when there is none.
    async fn last_event_seq(&self) -> StoreResult<EventSeq>;

    /// Whether `handler` has already acted on an event.
    async fn is_handled(&self, handler: &str, event: EventId) -> StoreResult<bool>;

    /// Remembers that `handler` acted on an event.
    async fn mark_handled(&self, handler: &str, event: EventId, at: Timestamp) -> StoreResult<()>;

    // ----- jobs -----

    /// Adds a job unless one with the same key exists. Returns whether it was added.
    async fn enqueue_job(&self, job: &NewJob, at: Timestamp) -> StoreResult<bool>;

    /// Claims the oldest runnable job (queued, or leased with an expired lease) for `worker`, holding it for
    /// `lease`. Jobs that have been claimed `max_attempts` times are not handed out again.
    async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        max_attempts: u32,
        at: Timestamp,
    ) -> StoreResult<Option<Job>>;

    /// Extends a lease; false if the worker no longer holds the job.
    async fn extend_lease(
        &self,
        job: i64,
        worker: &str,
        lease: Duration,
        at: Timestamp,
    ) -> StoreResult<bool>;

    /// Ends a job held by `worker`. `Conflict` if the worker does not hold it (any more), `NotFound` if there
    /// is no such job.
    async fn finish_job(
        &self,
        job: i64,
        worker: &str,
        outcome: JobOutcome,
        at: Timestamp,
    ) -> StoreResult<()>;

    /// Returns every job leased by a worker whose name starts with `prefix` to the queue: used at start-up
    /// by the embedded daemon, which holds the state directory's lock and so knows such workers are dead.
    async fn release_leases(&self, worker_prefix: &str) -> StoreResult<usize>;

    /// The number of jobs that are queued or leased (not done, not failed for good).
    async fn open_jobs(&self) -> StoreResult<usize>;

    /// Jobs that failed for good, with their last error, newest first.
    async fn failed_jobs(&self, limit: usize) -> StoreResult<Vec<(Job, String)>>;

    // ----- named state and plain facts -----

    /// Appends an event that reports a fact with no state change of its own, such as a skipped compose.
    async fn append_event(
        &self,
        topic: &str,
        body: &serde_json::Value,
        at: Timestamp,
    ) -> StoreResult<()>;

    /// Sets a named state record (the status of a package source, the last change check of a recipe) and,
    /// if given, appends an event `(topic, body)` in the same transaction.
    async fn set_state(
        &self,
        key: &str,
        value: &serde_json::Value,
        event: Option<(&str, &serde_json::Value)>,
        at: Timestamp,
    ) -> StoreResult<()>;

    /// A named state record.
    async fn state(&self, key: &str) -> StoreResult<Option<serde_json::Value>>;

    /// Every state record whose key starts with `prefix`, sorted by key.
    async fn states(&self, prefix: &str) -> StoreResult<Vec<(String, serde_json::Value)>>;

    // ----- ResultsDB queries -----

    /// Results matching `query`, in its order (ties by id, in the same direction), one page of them.
    async fn find_results(
        &self,
        query: &ResultQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<ResultEntry>>;

    /// One result by its id; `None` if there is none.
    async fn find_result(&self, id: u64) -> StoreResult<Option<ResultEntry>>;

    /// The newest result (by submission time, then id) of each testcase among those matching `query`
    /// (its outcomes are ignored, as ResultsDB does), newest first. With `distinct_on`, the newest of each
    /// combination of testcase and those keys' values.
    async fn find_latest_results(
        &self,
        query: &ResultQuery,
        distinct_on: &[DataKey],
    ) -> StoreResult<Vec<ResultEntry>>;

    /// Distinct testcase names that have results, sorted by name, one page of them.
    async fn find_testcases(
        &self,
        query: &TestcaseQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<String>>;

    /// Test runs matching `query`, newest first (by start, then id), one page of them.
    async fn find_groups(
        &self,
        query: &GroupQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<GroupEntry>>;

    /// One test run with its result count; `None` if there is none.
    async fn find_group(&self, id: &RunId) -> StoreResult<Option<GroupEntry>>;

    // ----- notifications -----

    /// Queues an announcement under a unique `key`, due at once, and appends `announcement.queued` in the
    /// same transaction. Returns `None` (and changes nothing) when a notification with the key exists, so a
    /// reaction repeated after a crash queues nothing twice.
    async fn enqueue_notification(
        &self,
        key: &str,
        announcement: &Announcement,
        at: Timestamp,
    ) -> StoreResult<Option<Notification>>;

    /// Claims up to `limit` pending notifications due at `at`, oldest first, and holds them for `hold`:
    /// their next attempt moves to `at + hold`, so another process does not send them meanwhile, and a
    /// claimer that dies before recording the outcome leaves them due again when the hold ends.
    async fn claim_notifications(
        &self,
        at: Timestamp,
        hold: Duration,
        limit: usize,
    ) -> StoreResult<Vec<Notification>>;

    /// Records a successful send (counting the attempt) and appends `announcement.sent`. Doing it again
    /// is a no-op. `NotFound` if there is no such notification.
    async fn mark_notification_sent(&self, id: i64, at: Timestamp) -> StoreResult<()>;

    /// Records a failed send: counts the attempt, keeps the error, and makes the notification due again at
    /// `retry_at` (never before `at`). Returns it as it is now. `NotFound` if there is no such
    /// notification, `Conflict` if it was sent.
    async fn mark_notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Timestamp,
        at: Timestamp,
    ) -> StoreResult<Notification>;

    /// Every pending notification, oldest first.
    async fn pending_notifications(&self) -> StoreResult<Vec<Notification>>;

    /// The `limit` most recently sent notifications, newest first.
    async fn sent_notifications(&self, limit: usize) -> StoreResult<Vec<Notification>>;
}
