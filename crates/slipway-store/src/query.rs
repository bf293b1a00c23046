//! Queries over test results, runs and testcases in the terms ResultsDB's API uses: filters by testcase,
//! outcome, time, group (test run) and item data, with pages.
//!
//! These are plain values: the HTTP layer parses a request into them, the store answers them with indexed
//! SQL.

use jiff::Timestamp;
use slipway_model::{Outcome, RunId, TestResult, TestRun};

/// The value of the `type` item-data key of every slipway result: what kind of item was tested.
pub const ITEM_TYPE: &str = "slipway-compose";

/// An item-data key a result can be filtered or told apart by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataKey {
    /// `item`: the compose id.
    Item,
    /// `type`: always [`ITEM_TYPE`].
    Type,
    /// `artifact`: the file booted.
    Artifact,
    /// `format`: the artifact's format.
    Format,
    /// `arch`: the architecture.
    Arch,
    /// `stream`: the stream the compose was built for.
    Stream,
    /// `scenario`: the scenario the testcase ran in.
    Scenario,
    /// `flaky`: `true` or `false`.
    Flaky,
    /// `plan`: the test plan of the result's run.
    Plan,
    /// `log`: the sha256 of the kept log.
    Log,
    /// `attempts`: the outcome of each attempt, in order; a filter matches if any attempt has the value.
    Attempts,
    /// A key slipway does not record: no result has it, so a filter on it matches nothing.
    Other(String),
}

impl DataKey {
    /// Every key slipway records, in the order results list them.
    pub const KNOWN: [DataKey; 11] = [
        DataKey::Item,
        DataKey::Type,
        DataKey::Artifact,
        DataKey::Format,
        DataKey::Arch,
        DataKey::Stream,
        DataKey::Scenario,
        DataKey::Flaky,
        DataKey::Plan,
        DataKey::Log,
        DataKey::Attempts,
    ];

    /// The key as the API spells it.
    pub fn name(&self) -> &str {
        match self {
            Self::Item => "item",
            Self::Type => "type",
            Self::Artifact => "artifact",
            Self::Format => "format",
            Self::Arch => "arch",
            Self::Stream => "stream",
            Self::Scenario => "scenario",
            Self::Flaky => "flaky",
            Self::Plan => "plan",
            Self::Log => "log",
            Self::Attempts => "attempts",
            Self::Other(name) => name,
        }
    }

    /// The key named `name`; any name slipway does not record is [`DataKey::Other`].
    pub fn parse(name: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|k| k.name() == name)
            .unwrap_or_else(|| Self::Other(name.to_string()))
    }
}

/// One item-data condition: the key has one of the values (exactly, or as `*` globs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFilter {
    /// The key.
    pub key: DataKey,
    /// The values, any of which matches.
    pub values: Vec<String>,
    /// True when the values are globs in which `*` stands for any text (the API's `key:like`).
    pub like: bool,
}

/// Which way results are ordered by submission time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Newest first (ResultsDB's default).
    #[default]
    NewestFirst,
    /// Oldest first.
    OldestFirst,
}

/// Which results to find. Empty lists do not filter; conditions of different fields must all hold, values
/// within one field are alternatives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultQuery {
    /// Exact testcase names; together with `testcase_globs`, a result matches if any of them does.
    pub testcases: Vec<String>,
    /// Testcase name globs (`*` for any text).
    pub testcase_globs: Vec<String>,
    /// Outcomes.
    pub outcomes: Vec<Outcome>,
    /// Submitted at or after this time.
    pub since: Option<Timestamp>,
    /// Submitted at or before this time.
    pub until: Option<Timestamp>,
    /// Test runs (ResultsDB groups) the result belongs to.
    pub groups: Vec<RunId>,
    /// Item-data conditions.
    pub data: Vec<DataFilter>,
    /// The order of the answer.
    pub order: SortOrder,
}

/// Which page of an answer to return: `limit` items after skipping `page * limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The page number, from 0.
    pub page: u64,
    /// Items per page, at least 1.
    pub limit: u64,
}

/// One page of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    /// The items of the page.
    pub items: Vec<T>,
    /// True when a later page has items.
    pub more: bool,
}

impl<T> Default for Paged<T> {
    /// An empty page with nothing after it.
    fn default() -> Self {
        Self {
            items: Vec::new(),
            more: false,
        }
    }
}

/// A result as the API shows it: the result and the plan of its run.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultEntry {
    /// The result.
    pub result: TestResult,
    /// The test plan of the run it belongs to, if it belongs to one.
    pub plan: Option<String>,
}

/// Which testcases to list, by name. Empty lists do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestcaseQuery {
    /// Exact names; if any are given, the globs are ignored (as ResultsDB does).
    pub names: Vec<String>,
    /// Name globs (`*` for any text).
    pub name_globs: Vec<String>,
}

/// Which test runs (groups) to list. Empty lists do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupQuery {
    /// Run ids.
    pub ids: Vec<RunId>,
    /// Exact descriptions; if any are given, the globs are ignored (as ResultsDB does).
    pub descriptions: Vec<String>,
    /// Description globs (`*` for any text).
    pub description_globs: Vec<String>,
}

/// A test run as the API shows it: the run and how many results it has.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEntry {
    /// The run.
    pub run: TestRun,
    /// The number of results recorded in it.
    pub results: u64,
}
