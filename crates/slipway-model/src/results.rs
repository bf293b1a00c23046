//! Test outcomes in the ResultsDB vocabulary.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ComposeId;

/// The outcome of one testcase, as ResultsDB names them, plus the states a result passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// The test ran and its assertion held.
    Passed,
    /// The test ran and its assertion did not hold.
    Failed,
    /// The test could not run or finish (the VM never booted, the deadline passed).
    Error,
    /// A person has to look at it.
    NeedsInspection,
    /// The test did not apply.
    Skipped,
    /// Waiting to run.
    Queued,
    /// Running now.
    Running,
}

impl Outcome {
    /// The outcome as ResultsDB spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "PASSED",
            Self::Failed => "FAILED",
            Self::Error => "ERROR",
            Self::NeedsInspection => "NEEDS_INSPECTION",
            Self::Skipped => "SKIPPED",
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PASSED" => Self::Passed,
            "FAILED" => Self::Failed,
            "ERROR" => Self::Error,
            "NEEDS_INSPECTION" => Self::NeedsInspection,
            "SKIPPED" => Self::Skipped,
            "QUEUED" => Self::Queued,
            "RUNNING" => Self::Running,
            other => return Err(format!("unknown outcome {other:?}")),
        })
    }
}

/// One attempt at a testcase inside a result: the first run, and each rerun after a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// What this attempt gave.
    pub outcome: Outcome,
    /// Seconds the attempt ran.
    pub seconds: f64,
    /// The sha256 of its captured output (stdout and stderr, capped), kept as a blob, when there is any.
    #[serde(default)]
    pub output: Option<crate::Sha256>,
    /// True when the output was cut at the cap.
    #[serde(default)]
    pub truncated: bool,
}

/// One outcome of one testcase on one compose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The store's id for the result (ResultsDB's integer id); `None` until it is recorded.
    #[serde(default)]
    pub id: Option<u64>,
    /// The test run (one boot, or one batch of boots) the result belongs to: its ResultsDB group.
    #[serde(default)]
    pub run: Option<RunId>,
    /// The compose that was tested.
    pub compose: ComposeId,
    /// The testcase's name, such as `boot.multi-user`.
    pub testcase: String,
    /// The scenario the testcase ran in, such as `qcow2.x86_64.uefi`; empty when it has none.
    #[serde(default)]
    pub scenario: String,
    /// What happened. A failure that passed when rerun is PASSED with `flaky` set.
    pub outcome: Outcome,
    /// The artifact file that was booted.
    pub artifact: String,
    /// The artifact's format, such as `qcow2`.
    #[serde(default)]
    pub format: String,
    /// The architecture the artifact is for, such as `x86_64`.
    #[serde(default)]
    pub arch: String,
    /// The stream the compose was built for.
    #[serde(default)]
    pub stream: String,
    /// A short explanation, such as the failing command's output.
    pub note: String,
    /// The sha256 of the kept log (the serial console), when there is one.
    pub log: Option<crate::Sha256>,
    /// True when the first attempt failed and a rerun passed.
    #[serde(default)]
    pub flaky: bool,
    /// Every attempt, in order; empty for results that were never run (an image that could not boot).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// When the result was recorded.
    pub submitted_at: Timestamp,
}

impl TestResult {
    /// A result with only the required facts; the rest empty.
    pub fn new(
        compose: ComposeId,
        testcase: impl Into<String>,
        outcome: Outcome,
        note: impl Into<String>,
        submitted_at: Timestamp,
    ) -> Self {
        Self {
            id: None,
            run: None,
            compose,
            testcase: testcase.into(),
            scenario: String::new(),
            outcome,
            artifact: String::new(),
            format: String::new(),
            arch: String::new(),
            stream: String::new(),
            note: note.into(),
            log: None,
            flaky: false,
            attempts: Vec::new(),
            submitted_at,
        }
    }
}

/// The id of a test run: a UUID, which is also the run's ResultsDB group id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    /// A fresh id: a version 7 UUID, which starts with the time it was made. Runs' ids then grow with
    /// time, and the store's indexes by run take each new run at their end rather than at a random page.
    pub fn fresh() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One test run of a compose: the plan's tests over one or more boots of one artifact. It is the unit a
/// JUnit report describes and a ResultsDB group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRun {
    /// The run's id.
    pub id: RunId,
    /// The compose tested.
    pub compose: ComposeId,
    /// The plan that chose the tests.
    pub plan: String,
    /// The artifact booted.
    pub artifact: String,
    /// A readable description, such as `cloud-20261121.0 qcow2 under tcg`.
    pub description: String,
    /// When the run started.
    pub started_at: Timestamp,
    /// When the run ended.
    pub finished_at: Timestamp,
}
