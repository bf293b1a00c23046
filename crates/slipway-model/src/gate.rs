//! Gating: what a stream requires, what a person said, and the resulting decision.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{ComposeId, Outcome};

/// One requirement of a gate: the latest result of this testcase must be PASSED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The testcase that must pass.
    pub testcase: String,
}

/// A person's word on a compose: mark it failed even though its tests passed, or take that back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The compose the verdict is about.
    pub compose: ComposeId,
    /// True to veto the compose; false withdraws an earlier veto.
    pub failed: bool,
    /// Who said it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: Timestamp,
}

/// Why a requirement is not met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsatisfiedKind {
    /// No result at all for the testcase.
    Missing,
    /// The latest result is not PASSED; carries the outcome it has.
    NotPassed(Outcome),
    /// A person marked the compose failed.
    Vetoed,
    /// The compose did not build.
    ComposeFailed,
}

/// One unmet requirement with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsatisfied {
    /// The testcase, or `compose` for requirements on the compose itself.
    pub subject: String,
    /// What is wrong.
    pub kind: UnsatisfiedKind,
    /// A readable explanation.
    pub detail: String,
}

/// The gate's answer for a compose in a stream. Fails closed: anything not positively satisfied is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The compose decided on.
    pub compose: ComposeId,
    /// The stream whose gate decided.
    pub stream: String,
    /// Whether the compose may be released.
    pub passed: bool,
    /// A one-line summary.
    pub summary: String,
    /// Every unmet requirement; empty when `passed`.
    pub unsatisfied: Vec<Unsatisfied>,
    /// The testcases whose results were used, with the outcome each had.
    pub results_used: Vec<(String, Outcome)>,
}

impl Decision {
    /// True when two decisions say the same thing, so only real changes are announced.
    pub fn same_answer(&self, other: &Decision) -> bool {
        self.passed == other.passed && self.unsatisfied == other.unsatisfied
    }
}
