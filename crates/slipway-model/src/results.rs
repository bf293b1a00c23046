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

/// One outcome of one testcase on one compose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    /// The compose that was tested.
    pub compose: ComposeId,
    /// The testcase's name, such as `boot.multi-user`.
    pub testcase: String,
    /// What happened.
    pub outcome: Outcome,
    /// The artifact file that was booted.
    pub artifact: String,
    /// A short explanation, such as the failing command's output.
    pub note: String,
    /// The sha256 of the kept log (the serial console), when there is one.
    pub log: Option<crate::Sha256>,
    /// When the result was recorded.
    pub submitted_at: Timestamp,
}
