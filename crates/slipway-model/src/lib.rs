//! The words of slipway, as types.
//!
//! Every other crate speaks in these values: a [`Recipe`] says what an image is, a [`Compose`] is one build of
//! it with its [`Artifact`]s and [`Lock`], a [`TestResult`] is one outcome of booting it, a [`Decision`] is
//! the gate's answer, a [`Release`] is a compose published in a stream, and an [`Event`] is an immutable fact
//! about any of them. The crate also parses the project config and recipes, with errors that name the file,
//! line, column and field.

mod advisory;
mod announce;
mod cadence;
mod clock;
mod compose;
mod config;
mod digest;
mod event;
mod gate;
mod incident;
mod package_version;
mod pkgdiff;
mod recipe;
mod release;
mod results;
mod testing;
mod toml_file;

pub use advisory::{
    load_advisory_file, Advisory, AdvisoryPackage, MatchedAdvisory, SecurityThreshold, Severity,
    SeverityError,
};
pub use announce::{
    check_mailbox, AdvisoryRef, AnnounceConfig, Announcement, AnnouncementKind, DownloadLink,
    EolNotice, MailSettings, ReleaseNotice, RevocationNotice, SmtpConfig, StaleNotice,
};
pub use cadence::{
    Cadence, CadenceState, CronError, CronSchedule, DueInstants, EverySchedule, OnMissed, Period,
    PeriodError, PeriodUnit, Promotion, StreamPolicy,
};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use compose::{
    Artifact, ArtifactKind, CandidateCompose, Compose, ComposeId, ComposeState, InputHash, Lock,
    LockedPackage,
};
pub use config::{
    AdvisoryConfig, BootTestConfig, Config, GateConfig, RetentionConfig, SigningConfig,
    StreamConfig, TimeOfDay, TrackerConfig, TrackerKind, WatchConfig,
};
pub use digest::{read_buffer_for, sha256_file, sha256_hex, Sha256, Sha256Writer};
pub use event::{topics, Event, EventId, EventSeq};
pub use gate::{
    parse_time, Decision, NewWaiver, Requirement, ResultUsed, Revocation, Satisfied, Unsatisfied,
    UnsatisfiedKind, Verdict, Waiver,
};
pub use incident::{
    ExternalIssue, FailureKind, Incident, IncidentAction, IncidentComment, IncidentReport,
    IncidentState, LogTail, MirrorAction, MirrorStep, NewIncident, NewIncidentComment,
};
pub use package_version::{compare_versions, VersionScheme};
pub use pkgdiff::{is_security_suite, PackageChange, PkgDiff};
pub use recipe::{
    DiskLayout, FileEntry, OutputFormat, PackageSource, Recipe, RecipeTests, SystemSettings, Units,
};
pub use release::{Release, ReleaseState, RevocationNote, Version, VersionError};
pub use results::{Attempt, Outcome, RunId, TestResult, TestRun};
pub use testing::{
    canonical_arch, glob_matches, pattern_matches, DenylistEntry, PlanConfig, DEFAULT_PLAN,
};
pub use toml_file::{parse_toml, read_toml, ConfigError, Location};

/// The version of slipway's builder, part of every input hash: a new builder may produce different bytes.
pub const BUILDER_VERSION: &str = concat!("slipway-", env!("CARGO_PKG_VERSION"));
