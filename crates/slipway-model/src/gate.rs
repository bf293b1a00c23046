//! Gating: what a stream requires, what people said (waivers, verdicts), and the resulting decision.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{ComposeId, Outcome};

/// One requirement of a gate policy: a testcase (optionally in one scenario) must have passed.
///
/// Without a scenario, the latest result of *every* scenario the testcase ran in must be PASSED; with one,
/// only results of that scenario count. `min_count` asks for at least that many PASSED results (of the
/// counted scenarios), and the latest still has to pass. The requirement applies only to decisions made
/// within `[valid_since, valid_until)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "RawRequirement")]
pub struct Requirement {
    /// The testcase that must pass.
    pub testcase: String,
    /// Only results of this scenario count; `None` counts every scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The requirement applies to decisions made at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_since: Option<Timestamp>,
    /// The requirement applies to decisions made before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    /// How many PASSED results it takes; at least 1.
    pub min_count: u32,
}

impl Requirement {
    /// A requirement on a testcase's latest result in every scenario, always valid.
    pub fn testcase(name: impl Into<String>) -> Self {
        Self {
            testcase: name.into(),
            scenario: None,
            valid_since: None,
            valid_until: None,
            min_count: 1,
        }
    }

    /// Whether the requirement applies to a decision made at `at`: `valid_since <= at < valid_until`.
    pub fn applies_at(&self, at: Timestamp) -> bool {
        self.valid_since.is_none_or(|since| since <= at)
            && self.valid_until.is_none_or(|until| at < until)
    }

    /// The requirement as people read it: `testcase`, or `testcase [scenario]`.
    pub fn label(&self) -> String {
        match &self.scenario {
            Some(scenario) => format!("{} [{scenario}]", self.testcase),
            None => self.testcase.clone(),
        }
    }
}

/// A requirement as written in TOML, checked into a [`Requirement`].
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawRequirement {
    testcase: String,
    #[serde(default)]
    scenario: Option<String>,
    #[serde(default)]
    valid_since: Option<PolicyTime>,
    #[serde(default)]
    valid_until: Option<PolicyTime>,
    #[serde(default)]
    min_count: Option<MinCount>,
}

impl TryFrom<RawRequirement> for Requirement {
    type Error = String;
    fn try_from(raw: RawRequirement) -> Result<Self, String> {
        if raw.testcase.trim().is_empty() {
            return Err("`testcase` must name a testcase".into());
        }
        if raw.scenario.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(format!(
                "`scenario` of {} is empty; leave it out to count every scenario",
                raw.testcase
            ));
        }
        if let (Some(since), Some(until)) = (&raw.valid_since, &raw.valid_until) {
            if since.0 >= until.0 {
                return Err(format!(
                    "`valid-since` ({}) must be before `valid-until` ({}) for {}",
                    since.0, until.0, raw.testcase
                ));
            }
        }
        Ok(Self {
            testcase: raw.testcase,
            scenario: raw.scenario,
            valid_since: raw.valid_since.map(|t| t.0),
            valid_until: raw.valid_until.map(|t| t.0),
            min_count: raw.min_count.map_or(1, |m| m.0),
        })
    }
}

/// `min-count`: a positive integer, refused at its own position when it is not.
struct MinCount(u32);

impl<'de> Deserialize<'de> for MinCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        u32::try_from(value)
            .ok()
            .filter(|n| *n >= 1)
            .map(MinCount)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`min-count` must be a whole number of at least 1, not {value}"
                ))
            })
    }
}

/// A point in time in a policy: a TOML date or date-time, or a string holding one.
struct PolicyTime(Timestamp);

impl<'de> Deserialize<'de> for PolicyTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // TOML dates and date-times arrive as `toml::value::Datetime`; quoted ones as strings.
        let text = match toml::Value::deserialize(deserializer)? {
            toml::Value::String(s) => s,
            toml::Value::Datetime(dt) => dt.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a date such as 2026-11-21 or a time such as 2026-11-21T12:00:00Z, \
                     found a {}",
                    other.type_str()
                )))
            }
        };
        parse_time(&text)
            .map(PolicyTime)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a point in time as policies and the command line write it: an RFC 3339 time with an offset
/// (`2026-11-21T12:00:00Z`), a date-time without one (taken as UTC), or a date (`2026-11-21`, meaning 00:00
/// UTC that day).
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        if text.contains(['T', 't', ' ']) {
            if let Ok(zoned) = dt.to_zoned(jiff::tz::TimeZone::UTC) {
                return Ok(zoned.timestamp());
            }
        }
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        if let Ok(zoned) = date.to_zoned(jiff::tz::TimeZone::UTC) {
            return Ok(zoned.timestamp());
        }
    }
    Err(format!(
        "{text:?} is not a time: write a date such as 2026-11-21 (00:00 UTC) or an RFC 3339 time \
         such as 2026-11-21T12:00:00Z"
    ))
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

/// A person's word that an unmet requirement on one testcase of one compose does not block it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiver {
    /// The store's id for the waiver.
    pub id: u64,
    /// The compose it is about.
    pub compose: ComposeId,
    /// The testcase it waives.
    pub testcase: String,
    /// The scenario it waives; `None` waives the testcase in every scenario.
    pub scenario: Option<String>,
    /// Who waived it.
    pub author: String,
    /// Why.
    pub comment: String,
    /// When.
    pub created_at: Timestamp,
    /// Set once the waiver is taken back; the waiver itself is kept.
    pub revoked: Option<Revocation>,
}

impl Waiver {
    /// Whether the waiver was in force at `at`: created by then and not yet revoked.
    pub fn active_at(&self, at: Timestamp) -> bool {
        self.created_at <= at && self.revoked.as_ref().is_none_or(|r| r.at > at)
    }

    /// Whether it waives `testcase` in `scenario` (`None`: the requirement names no scenario and has no
    /// result, so only a waiver for every scenario fits).
    pub fn covers(&self, testcase: &str, scenario: Option<&str>) -> bool {
        self.testcase == testcase
            && match (&self.scenario, scenario) {
                (None, _) => true,
                (Some(mine), Some(asked)) => mine == asked,
                (Some(_), None) => false,
            }
    }
}

/// The taking back of a waiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Who revoked it.
    pub author: String,
    /// Why; may be empty.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// A waiver to record; the store gives it its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWaiver {
    /// The compose.
    pub compose: ComposeId,
    /// The testcase.
    pub testcase: String,
    /// The scenario, or `None` for every scenario.
    pub scenario: Option<String>,
    /// Who waives it.
    pub author: String,
    /// Why.
    pub comment: String,
    /// When.
    pub created_at: Timestamp,
}

/// Why a requirement is not met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsatisfiedKind {
    /// No result at all for the testcase (in the required scenario).
    Missing,
    /// The latest result is not PASSED; carries the outcome it has (FAILED, ERROR, QUEUED, RUNNING, ...).
    NotPassed(Outcome),
    /// The latest result passed, but fewer results passed than the requirement's `min-count`.
    NotEnoughResults {
        /// PASSED results found.
        passed: u32,
        /// PASSED results required.
        required: u32,
    },
    /// A person marked the compose failed.
    Vetoed,
    /// The compose did not build.
    ComposeFailed,
    /// The compose is still being built (or, for a decision as of a past time, was then).
    ComposeRunning,
    /// The decision could not be made (a policy file that does not parse, a store read that failed);
    /// failing closed, this blocks the compose.
    Error,
}

/// One unmet requirement with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsatisfied {
    /// The testcase, or `compose` for requirements on the compose itself, or `policy` for errors.
    pub subject: String,
    /// The scenario concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// What is wrong.
    pub kind: UnsatisfiedKind,
    /// A readable explanation.
    pub detail: String,
    /// The ids of the results that show it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<u64>,
}

/// One met requirement, with what met it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Satisfied {
    /// The requirement as people read it (`testcase` or `testcase [scenario]`).
    pub requirement: String,
    /// The ids of the results that met it (or that were waived).
    pub results: Vec<u64>,
    /// The ids of the waivers it needed; empty when it passed on its results alone.
    pub waivers: Vec<u64>,
}

/// One result a decision looked at.
///
/// The field order matters: decisions stored before results had ids hold `[testcase, outcome]` pairs,
/// which serde reads as the first two fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultUsed {
    /// The testcase.
    pub testcase: String,
    /// Its outcome.
    pub outcome: Outcome,
    /// The scenario; empty when none.
    #[serde(default)]
    pub scenario: String,
    /// The result's id.
    #[serde(default)]
    pub id: Option<u64>,
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
    /// Every met requirement, citing its results and waivers.
    #[serde(default)]
    pub satisfied: Vec<Satisfied>,
    /// The results the decision looked at.
    pub results_used: Vec<ResultUsed>,
    /// The ids of the waivers that satisfied a requirement.
    #[serde(default)]
    pub waivers_used: Vec<u64>,
    /// Requirements of the policy that did not apply at the time of the decision (outside their
    /// `valid-since`/`valid-until` window).
    #[serde(default)]
    pub not_applicable: Vec<String>,
    /// The time the decision is about: now, or the past time it was asked for. Results, waivers and
    /// verdicts after it were ignored.
    #[serde(default)]
    pub at: Option<Timestamp>,
}

impl Decision {
    /// A failed decision with no facts: what the gate says when it could not decide.
    pub fn failed(compose: ComposeId, stream: &str, subject: &str, detail: String) -> Self {
        Self {
            compose,
            stream: stream.to_string(),
            passed: false,
            summary: format!("no decision could be made: {detail}"),
            unsatisfied: vec![Unsatisfied {
                subject: subject.to_string(),
                scenario: None,
                kind: UnsatisfiedKind::Error,
                detail,
                results: vec![],
            }],
            satisfied: vec![],
            results_used: vec![],
            waivers_used: vec![],
            not_applicable: vec![],
            at: None,
        }
    }

    /// True when two decisions say the same thing, so only real changes are announced: the same answer
    /// with the same unmet requirements (subject, scenario, kind) and the same waivers relied on. A new
    /// result that fails the same way, or a reworded detail, is not a change.
    pub fn same_answer(&self, other: &Decision) -> bool {
        let key = |d: &Decision| {
            d.unsatisfied
                .iter()
                .map(|u| (u.subject.clone(), u.scenario.clone(), u.kind.clone()))
                .collect::<Vec<_>>()
        };
        self.passed == other.passed
            && key(self) == key(other)
            && self.waivers_used == other.waivers_used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_or_rfc3339() {
        assert_eq!(
            parse_time("2026-11-21").expect("date"),
            "2026-11-21T00:00:00Z".parse::<Timestamp>().expect("ts")
        );
        assert_eq!(
            parse_time("2026-11-21T12:30:00+01:00").expect("offset"),
            "2026-11-21T11:30:00Z".parse::<Timestamp>().expect("ts")
        );
        assert_eq!(
            parse_time("2026-11-21T12:30:00").expect("local"),
            "2026-11-21T12:30:00Z".parse::<Timestamp>().expect("ts")
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01").is_err());
    }

    #[test]
    fn old_decisions_with_pairs_still_read() {
        let used: ResultUsed = serde_json::from_str(r#"["boot", "PASSED"]"#).expect("pair");
        assert_eq!(used.testcase, "boot");
        assert_eq!(used.outcome, Outcome::Passed);
        assert_eq!(used.id, None);
    }

    #[test]
    fn a_window_includes_its_start_and_excludes_its_end() {
        let mut r = Requirement::testcase("boot");
        r.valid_since = Some(Timestamp::from_second(10).expect("ts"));
        r.valid_until = Some(Timestamp::from_second(20).expect("ts"));
        assert!(!r.applies_at(Timestamp::from_second(9).expect("ts")));
        assert!(r.applies_at(Timestamp::from_second(10).expect("ts")));
        assert!(r.applies_at(Timestamp::from_second(19).expect("ts")));
        assert!(!r.applies_at(Timestamp::from_second(20).expect("ts")));
    }
}
