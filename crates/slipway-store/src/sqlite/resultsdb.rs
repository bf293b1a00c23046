//! The SQL behind the ResultsDB-shaped queries ([`ResultQuery`], [`TestcaseQuery`], [`GroupQuery`]).
//!
//! Queries are assembled from fixed fragments and bound parameters only; no text from a request is ever
//! spliced into SQL. Globs become SQLite `GLOB` patterns (case-sensitive, like ResultsDB on PostgreSQL),
//! whose literal prefix lets SQLite search an index. The common filters each have an index: testcase
//! (`test_results_by_testcase`), item (`test_results_by_case`), group (`test_results_by_run`) and time
//! (`test_results_by_time`, which also serves the unfiltered newest-first listing).

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension};
use slipway_model::RunId;

use super::codec::ts;
use super::{
    decode_run, query_one, run_from_columns, Db, ResultRow, SqliteStore, RESULT_COLUMNS,
    RUN_COLUMNS,
};
use crate::{
    DataFilter, DataKey, GroupEntry, GroupQuery, PageRequest, Paged, ResultEntry, ResultQuery,
    SortOrder, StoreResult, TestcaseQuery, ITEM_TYPE,
};

/// `FROM` of every result query: the run is joined for its plan.
const RESULTS_FROM: &str = "FROM test_results r LEFT JOIN test_runs t ON t.id = r.run_id";

/// A SQL condition under construction, with its parameters in order.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    fn text(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// `expr IN (?, ?, …)` over `values`.
    fn one_of(&mut self, expr: &str, values: impl IntoIterator<Item = String>) -> String {
        let marks: Vec<&str> = values
            .into_iter()
            .map(|v| {
                self.params.push(Value::Text(v));
                "?"
            })
            .collect();
        format!("{expr} IN ({})", marks.join(", "))
    }

    /// `(expr GLOB ? OR …)` over `globs`.
    fn any_glob(&mut self, expr: &str, globs: &[String]) -> String {
        let parts: Vec<String> = globs
            .iter()
            .map(|g| {
                self.params.push(Value::Text(sqlite_glob(g)));
                format!("{expr} GLOB ?")
            })
            .collect();
        format!("({})", parts.join(" OR "))
    }

    /// Exact values or globs over `expr`, as one condition.
    fn matching(&mut self, expr: &str, values: &[String], like: bool) -> String {
        if like {
            self.any_glob(expr, values)
        } else {
            self.one_of(expr, values.iter().cloned())
        }
    }
}

/// An API glob (`*` for any text, everything else literal) as a SQLite `GLOB` pattern, in which `?` and
/// `[` are special too and have to be bracketed to stand for themselves.
fn sqlite_glob(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            other => out.push(other),
        }
    }
    out
}

/// The SQL expression giving a data key's value for a result row `r` (joined with its run `t`); `None`
/// for keys that are not single values.
fn data_expr(key: &DataKey) -> Option<&'static str> {
    Some(match key {
        DataKey::Item => "r.compose_id",
        DataKey::Artifact => "r.artifact",
        DataKey::Format => "r.format",
        DataKey::Arch => "r.arch",
        DataKey::Stream => "r.stream",
        DataKey::Scenario => "r.scenario",
        DataKey::Plan => "t.plan",
        DataKey::Log => "r.log_sha256",
        DataKey::Flaky => "(CASE WHEN r.flaky THEN 'true' ELSE 'false' END)",
        DataKey::Type | DataKey::Attempts | DataKey::Other(_) => return None,
    })
}

/// The condition of one data filter. A key without a value on a result (an empty scenario, no log) does
/// not match, as in ResultsDB, where such a result has no row for the key.
fn data_condition(w: &mut Where, filter: &DataFilter) -> String {
    if filter.values.is_empty() {
        return "1 = 1".into();
    }
    match &filter.key {
        DataKey::Type => {
            w.params.push(Value::Text(ITEM_TYPE.into()));
            w.matching("?", &filter.values, filter.like)
        }
        DataKey::Attempts => {
            let cond = w.matching(
                "json_extract(a.value, '$.outcome')",
                &filter.values,
                filter.like,
            );
            format!("EXISTS (SELECT 1 FROM json_each(r.attempts_json) a WHERE {cond})")
        }
        DataKey::Other(_) => "0 = 1".into(),
        key => {
            let expr = data_expr(key).unwrap_or("NULL");
            let cond = w.matching(expr, &filter.values, filter.like);
            format!("({expr} <> '' AND {cond})")
        }
    }
}

/// The condition of a result query. `with_outcomes` is false for "latest" queries, which ResultsDB
/// answers without the outcome filter.
fn result_where(query: &ResultQuery, with_outcomes: bool) -> Where {
    let mut w = Where::default();
    let mut testcase = Vec::new();
    if !query.testcases.is_empty() {
        testcase.push(w.one_of("r.testcase", query.testcases.iter().cloned()));
    }
    if !query.testcase_globs.is_empty() {
        testcase.push(w.any_glob("r.testcase", &query.testcase_globs));
    }
    if !testcase.is_empty() {
        w.clauses.push(format!("({})", testcase.join(" OR ")));
    }
    if with_outcomes && !query.outcomes.is_empty() {
        let cond = w.one_of(
            "r.outcome",
            query.outcomes.iter().map(|o| o.as_str().to_string()),
        );
        w.clauses.push(cond);
    }
    if let Some(since) = query.since {
        w.params.push(Value::Text(ts(since)));
        w.clauses.push("r.submitted_at >= ?".into());
    }
    if let Some(until) = query.until {
        w.params.push(Value::Text(ts(until)));
        w.clauses.push("r.submitted_at <= ?".into());
    }
    if !query.groups.is_empty() {
        let cond = w.one_of("r.run_id", query.groups.iter().map(|g| g.0.clone()));
        w.clauses.push(cond);
    }
    for filter in &query.data {
        let cond = data_condition(&mut w, filter);
        w.clauses.push(cond);
    }
    w
}

fn direction(order: SortOrder) -> &'static str {
    match order {
        SortOrder::NewestFirst => "DESC",
        SortOrder::OldestFirst => "ASC",
    }
}

/// `LIMIT ? OFFSET ?` values that fetch one row beyond the page, to tell whether another page follows;
/// `None` when the offset is beyond anything a table can hold.
fn window(page: PageRequest) -> Option<(i64, i64)> {
    let limit = i64::try_from(page.limit.max(1)).ok()?.checked_add(1)?;
    let offset = i64::try_from(page.page.checked_mul(page.limit.max(1))?).ok()?;
    Some((limit, offset))
}

/// Cuts the extra row [`window`] asked for.
fn paged<T>(mut items: Vec<T>, page: PageRequest) -> Paged<T> {
    let limit = usize::try_from(page.limit.max(1)).unwrap_or(usize::MAX);
    let more = items.len() > limit;
    items.truncate(limit);
    Paged { items, more }
}

fn read_name(row: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
    row.get(0)
}

fn read_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ResultRow, Option<String>)> {
    Ok((ResultRow::read(row)?, row.get(15)?))
}

fn decode_entries(rows: Vec<(ResultRow, Option<String>)>) -> StoreResult<Vec<ResultEntry>> {
    rows.into_iter()
        .map(|(row, plan)| {
            Ok(ResultEntry {
                result: row.decode()?,
                plan,
            })
        })
        .collect()
}

/// The SQL and parameters of a page of results.
fn results_sql(query: &ResultQuery, limit: i64, offset: i64) -> (String, Vec<Value>) {
    let mut w = result_where(query, true);
    let dir = direction(query.order);
    let sql = format!(
        "SELECT {RESULT_COLUMNS}, t.plan {RESULTS_FROM}{} \
         ORDER BY r.submitted_at {dir}, r.id {dir} LIMIT ? OFFSET ?",
        w.text()
    );
    w.params.push(Value::Integer(limit));
    w.params.push(Value::Integer(offset));
    (sql, w.params)
}

/// The SQL and parameters of the latest results: a window over the matching rows numbers each
/// testcase's (and distinct-on values') results newest first, and the first of each is kept.
fn latest_sql(query: &ResultQuery, distinct_on: &[DataKey]) -> (String, Vec<Value>) {
    let w = result_where(query, false);
    let mut partition = vec!["r.testcase"];
    for key in distinct_on {
        match key {
            DataKey::Attempts => partition.push("r.attempts_json"),
            key => {
                if let Some(expr) = data_expr(key) {
                    partition.push(expr);
                }
            }
        }
    }
    let sql = format!(
        "SELECT * FROM (SELECT {RESULT_COLUMNS}, t.plan AS plan, \
             ROW_NUMBER() OVER (PARTITION BY {} ORDER BY r.submitted_at DESC, r.id DESC) AS n \
             {RESULTS_FROM}{}) \
         WHERE n = 1 ORDER BY submitted_at DESC, id DESC",
        partition.join(", "),
        w.text()
    );
    (sql, w.params)
}

fn testcases_sql(query: &TestcaseQuery, limit: i64, offset: i64) -> (String, Vec<Value>) {
    let mut w = Where::default();
    if !query.names.is_empty() {
        let cond = w.one_of("testcase", query.names.iter().cloned());
        w.clauses.push(cond);
    } else if !query.name_globs.is_empty() {
        let cond = w.any_glob("testcase", &query.name_globs);
        w.clauses.push(cond);
    }
    let sql = format!(
        "SELECT DISTINCT testcase FROM test_results{} ORDER BY testcase LIMIT ? OFFSET ?",
        w.text()
    );
    w.params.push(Value::Integer(limit));
    w.params.push(Value::Integer(offset));
    (sql, w.params)
}

/// The columns of a group: the run's, then its result count.
fn group_columns() -> String {
    let run = RUN_COLUMNS
        .split(", ")
        .map(|c| format!("g.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{run}, (SELECT COUNT(*) FROM test_results c WHERE c.run_id = g.id)")
}

fn groups_sql(query: &GroupQuery, limit: i64, offset: i64) -> (String, Vec<Value>) {
    let mut w = Where::default();
    if !query.descriptions.is_empty() {
        let cond = w.one_of("g.description", query.descriptions.iter().cloned());
        w.clauses.push(cond);
    } else if !query.description_globs.is_empty() {
        let cond = w.any_glob("g.description", &query.description_globs);
        w.clauses.push(cond);
    }
    if !query.ids.is_empty() {
        let cond = w.one_of("g.id", query.ids.iter().map(|id| id.0.clone()));
        w.clauses.push(cond);
    }
    let sql = format!(
        "SELECT {} FROM test_runs g{} ORDER BY g.started_at DESC, g.id DESC LIMIT ? OFFSET ?",
        group_columns(),
        w.text()
    );
    w.params.push(Value::Integer(limit));
    w.params.push(Value::Integer(offset));
    (sql, w.params)
}

fn read_group(row: &rusqlite::Row<'_>) -> rusqlite::Result<([String; 7], i64)> {
    Ok((decode_run(row)?, row.get(7)?))
}

fn decode_group((columns, count): ([String; 7], i64)) -> StoreResult<GroupEntry> {
    Ok(GroupEntry {
        run: run_from_columns(columns)?,
        results: super::codec::to_u64("test_results", "COUNT(*)", count)?,
    })
}

impl SqliteStore {
    /// Every row of a read query with positional `values`, each read with `read_row`.
    async fn read_all<T: Send + 'static>(
        &self,
        op: &'static str,
        sql: String,
        values: Vec<Value>,
        read_row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        self.read(op, move |tx| {
            let mut stmt = tx.prepare(&sql).db(op)?;
            let rows = stmt
                .query_map(params_from_iter(values), read_row)
                .db(op)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db(op)?;
            Ok(rows)
        })
        .await
    }

    pub(super) async fn rdb_find_results(
        &self,
        query: &ResultQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<ResultEntry>> {
        const OP: &str = "find_results";
        let Some((limit, offset)) = window(page) else {
            return Ok(Paged::default());
        };
        let (sql, values) = results_sql(query, limit, offset);
        let rows = self.read_all(OP, sql, values, read_entry).await?;
        Ok(paged(decode_entries(rows)?, page))
    }

    pub(super) async fn rdb_find_result(&self, id: u64) -> StoreResult<Option<ResultEntry>> {
        const OP: &str = "find_result";
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let row = self
            .read(OP, move |tx| {
                query_one(
                    tx,
                    &format!("SELECT {RESULT_COLUMNS}, t.plan {RESULTS_FROM} WHERE r.id = ?1"),
                    params![id],
                    read_entry,
                )
                .optional()
                .db(OP)
            })
            .await?;
        Ok(decode_entries(row.into_iter().collect())?.pop())
    }

    pub(super) async fn rdb_find_latest_results(
        &self,
        query: &ResultQuery,
        distinct_on: &[DataKey],
    ) -> StoreResult<Vec<ResultEntry>> {
        const OP: &str = "find_latest_results";
        let (sql, values) = latest_sql(query, distinct_on);
        let rows = self.read_all(OP, sql, values, read_entry).await?;
        decode_entries(rows)
    }

    pub(super) async fn rdb_find_testcases(
        &self,
        query: &TestcaseQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<String>> {
        const OP: &str = "find_testcases";
        let Some((limit, offset)) = window(page) else {
            return Ok(Paged::default());
        };
        let (sql, values) = testcases_sql(query, limit, offset);
        let names = self.read_all(OP, sql, values, read_name).await?;
        Ok(paged(names, page))
    }

    pub(super) async fn rdb_find_groups(
        &self,
        query: &GroupQuery,
        page: PageRequest,
    ) -> StoreResult<Paged<GroupEntry>> {
        const OP: &str = "find_groups";
        let Some((limit, offset)) = window(page) else {
            return Ok(Paged::default());
        };
        let (sql, values) = groups_sql(query, limit, offset);
        let rows = self.read_all(OP, sql, values, read_group).await?;
        let groups = rows
            .into_iter()
            .map(decode_group)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paged(groups, page))
    }

    pub(super) async fn rdb_find_group(&self, id: &RunId) -> StoreResult<Option<GroupEntry>> {
        const OP: &str = "find_group";
        let id = id.0.clone();
        let row = self
            .read(OP, move |tx| {
                query_one(
                    tx,
                    &format!(
                        "SELECT {} FROM test_runs g WHERE g.id = ?1",
                        group_columns()
                    ),
                    params![id],
                    read_group,
                )
                .optional()
                .db(OP)
            })
            .await?;
        row.map(decode_group).transpose()
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use slipway_model::Outcome;

    use super::*;

    /// SQLite's plan for a query, one line per step.
    fn plan(sql: &str, values: Vec<Value>) -> String {
        let mut conn = Connection::open_in_memory().expect("open");
        super::super::migrations::migrate(&mut conn).expect("migrate");
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare");
        let lines = stmt
            .query_map(params_from_iter(values), |row| row.get::<_, String>(3))
            .expect("query")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("rows");
        lines.join("\n")
    }

    fn assert_searches_results_by(plan: &str, index: &str) {
        assert!(
            plan.contains(&format!("SEARCH r USING INDEX {index}"))
                || plan.contains(&format!("SEARCH r USING COVERING INDEX {index}")),
            "expected a search of {index}:\n{plan}"
        );
        assert!(
            !plan.contains("SCAN r\n") && !plan.ends_with("SCAN r"),
            "{plan}"
        );
    }

    #[test]
    fn common_result_filters_search_an_index() {
        let by_testcase = ResultQuery {
            testcases: vec!["boot.multi-user".into()],
            ..ResultQuery::default()
        };
        let (sql, values) = results_sql(&by_testcase, 21, 0);
        assert_searches_results_by(&plan(&sql, values), "test_results_by_testcase");

        let by_glob = ResultQuery {
            testcase_globs: vec!["boot.*".into()],
            ..ResultQuery::default()
        };
        let (sql, values) = results_sql(&by_glob, 21, 0);
        assert_searches_results_by(&plan(&sql, values), "test_results_by_testcase");

        let by_item = ResultQuery {
            data: vec![DataFilter {
                key: DataKey::Item,
                values: vec!["cloud-20261121.0".into()],
                like: false,
            }],
            outcomes: vec![Outcome::Failed],
            ..ResultQuery::default()
        };
        let (sql, values) = results_sql(&by_item, 21, 0);
        assert_searches_results_by(&plan(&sql, values), "test_results_by_case");

        let by_group = ResultQuery {
            groups: vec![RunId("a".into())],
            ..ResultQuery::default()
        };
        let (sql, values) = results_sql(&by_group, 21, 0);
        assert_searches_results_by(&plan(&sql, values), "test_results_by_run");

        let by_time = ResultQuery {
            since: Some("2026-11-21T00:00:00Z".parse().expect("ts")),
            ..ResultQuery::default()
        };
        let (sql, values) = results_sql(&by_time, 21, 0);
        assert_searches_results_by(&plan(&sql, values), "test_results_by_time");

        let (sql, values) = latest_sql(&by_item, &[DataKey::Scenario]);
        assert_searches_results_by(&plan(&sql, values), "test_results_by_case");
    }

    #[test]
    fn unfiltered_listings_read_indexes_in_order_without_sorting() {
        let (sql, values) = results_sql(&ResultQuery::default(), 21, 0);
        let p = plan(&sql, values);
        assert!(p.contains("USING INDEX test_results_by_time"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");

        let (sql, values) = testcases_sql(&TestcaseQuery::default(), 21, 0);
        let p = plan(&sql, values);
        assert!(p.contains("test_results_by_testcase"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");

        let (sql, values) = groups_sql(&GroupQuery::default(), 21, 0);
        let p = plan(&sql, values);
        assert!(p.contains("test_runs_by_time"), "{p}");
        assert!(!p.contains("TEMP B-TREE FOR ORDER BY"), "{p}");
    }

    #[test]
    fn globs_keep_sqlite_wildcards_literal() {
        assert_eq!(sqlite_glob("boot.*"), "boot.*");
        assert_eq!(sqlite_glob("a?b[c]"), "a[?]b[[]c]");
    }
}
