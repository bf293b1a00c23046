//! The ResultsDB 2.0 routes.
//!
//! Shapes follow ResultsDB 2.x: a result is `{id, groups, testcase: {name, ref_url, href}, submit_time,
//! outcome, note, ref_url, data: {key: [values]}, href}` with `submit_time` as naive ISO 8601 in UTC; a
//! group is `{uuid, description, ref_url, results_count, results, href}`; a testcase `{name, ref_url,
//! href}`; lists are `{data, prev, next}` with links to the neighbouring pages (`/results/latest` is
//! `{data}` only, as in ResultsDB).
//!
//! Parameters of `/results` and `/results/latest`: `testcases` and `testcases:like` (`*` globs),
//! `outcome`, `since` (`TIME` or `START,END`, ISO 8601; a time without an offset is UTC), `groups`,
//! `_sort` (`desc:submit_time`, `asc:submit_time` or `disable_sorting`), `page`, `limit`, and any other
//! name as an item-data filter (`item`, `type`, `artifact`, `format`, `arch`, `stream`, `scenario`,
//! `flaky`, `plan`, `log`, `attempts`, each also as `KEY:like`); `/results/latest` also takes
//! `_distinct_on` (data keys) and ignores `outcome`, `page` and `limit`. Comma-separated values, and
//! repeated parameters, are alternatives. A key slipway does not record matches nothing, as in ResultsDB.
//! `/testcases` takes `name` and `name:like`; `/groups` takes `uuid`, `description` and
//! `description:like`; both page like `/results`.
//!
//! A bad parameter is a 400 and an unknown id a 404, both with a JSON `{"message"}` that names what was
//! wrong. Unlike ResultsDB, whose index answers 300, `/api/v2.0/` answers 200.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::{json, Value};
use slipway_model::{Outcome, RunId};
use slipway_store::{
    DataFilter, DataKey, GroupEntry, GroupQuery, PageRequest, Paged, ResultEntry, ResultQuery,
    SortOrder, StoreError, TestcaseQuery, ITEM_TYPE,
};
use tracing::Instrument;

use crate::{junit, ServerState};

/// The path prefix of the API.
pub const PREFIX: &str = "/api/v2.0";

/// Items per page when a request does not say (ResultsDB's default).
pub const DEFAULT_LIMIT: u64 = 20;

/// The most items one page may hold.
pub const MAX_LIMIT: u64 = 1000;

/// The outcomes the API accepts and reports.
const OUTCOMES: [Outcome; 7] = [
    Outcome::Passed,
    Outcome::Failed,
    Outcome::Error,
    Outcome::NeedsInspection,
    Outcome::Skipped,
    Outcome::Queued,
    Outcome::Running,
];

/// The API's routes, with a log line per request.
pub fn router(state: ServerState) -> Router {
    let at = |path: &str| format!("{PREFIX}{path}");
    Router::new()
        .route(PREFIX, get(index))
        .route(&at("/"), get(index))
        .route(&at("/results"), get(results))
        .route(&at("/results/latest"), get(latest))
        .route(&at("/results/{id}"), get(result))
        .route(&at("/testcases"), get(testcases))
        .route(&at("/testcases/{name}"), get(testcase))
        .route(&at("/testcases/{name}/results"), get(testcase_results))
        .route(&at("/groups"), get(groups))
        .route(&at("/groups/{uuid}"), get(group))
        .route(&at("/groups/{uuid}/results"), get(group_results))
        .route(&at("/groups/{uuid}/junit"), get(group_junit))
        .fallback(not_found)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Logs every request with its status and duration, inside a span that carries method and path.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let span = tracing::info_span!("request", %method, %uri);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            millis = started.elapsed().as_millis() as u64,
            "served"
        );
    });
    response
}

// ----- errors -----

/// What can go wrong in a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed; the message names the parameter.
    #[error("{0}")]
    BadRequest(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Store(err) => {
                tracing::error!(error = %err, "store failed while answering a request");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "message": self.to_string() }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not found: no such endpoint; the API lives under /api/v2.0/".into())
}

// ----- query strings -----

/// The parameters of a request, in order, each value split at commas, repeated names merged.
struct Params {
    raw: String,
    values: BTreeMap<String, Vec<String>>,
    order: Vec<String>,
}

impl Params {
    fn parse(raw: Option<String>) -> Self {
        let raw = raw.unwrap_or_default();
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut order = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            let name = name.into_owned();
            if !values.contains_key(&name) {
                order.push(name.clone());
            }
            values.entry(name).or_default().extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string),
            );
        }
        Self { raw, values, order }
    }

    /// The values of a parameter (empty if absent).
    fn list(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// The single value of a parameter; a 400 if it has several.
    fn one(&self, name: &str) -> ApiResult<Option<String>> {
        match self.values.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one.clone())),
            Some(_) => Err(bad(format!("parameter `{name}` takes one value"))),
        }
    }

    fn page(&self) -> ApiResult<PageRequest> {
        let page = match self.one("page")? {
            None => 0,
            Some(text) => text.parse::<u64>().map_err(|_| {
                bad(format!(
                    "parameter `page` must be a whole number from 0, not {text:?}"
                ))
            })?,
        };
        let limit = match self.one("limit")? {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    bad(format!(
                        "parameter `limit` must be a whole number from 1 to {MAX_LIMIT}, not {text:?}"
                    ))
                })?,
        };
        Ok(PageRequest { page, limit })
    }
}

/// Names of `/results` that are not item-data filters. `callback` and `_` are JSONP leftovers that
/// ResultsDB ignores.
const RESULT_PARAMS: [&str; 11] = [
    "page",
    "limit",
    "since",
    "outcome",
    "groups",
    "_sort",
    "testcases",
    "testcases:like",
    "_distinct_on",
    "callback",
    "_",
];

/// A point in time as `since` takes it: RFC 3339 with an offset, or a date and time (or only a date)
/// without one, meaning UTC.
fn parse_time(text: &str) -> Option<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    if let Ok(at) = text.parse::<DateTime>() {
        return at.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp());
    }
    text.parse::<Date>()
        .ok()
        .and_then(|d| d.to_zoned(TimeZone::UTC).ok())
        .map(|z| z.timestamp())
}

fn parse_since(params: &Params) -> ApiResult<(Option<Timestamp>, Option<Timestamp>)> {
    let values = params.list("since");
    let time = |text: &String| {
        parse_time(text).ok_or_else(|| {
            bad(format!(
                "parameter `since` must be an ISO 8601 time or two of them separated by a comma \
                 (START,END), not {text:?}"
            ))
        })
    };
    match values.as_slice() {
        [] => Ok((None, None)),
        [start] => Ok((Some(time(start)?), None)),
        [start, end] => Ok((Some(time(start)?), Some(time(end)?))),
        _ => Err(bad(
            "parameter `since` takes a time or START,END, not more than two times",
        )),
    }
}

fn parse_outcomes(params: &Params) -> ApiResult<Vec<Outcome>> {
    params
        .list("outcome")
        .iter()
        .map(|text| {
            text.to_ascii_uppercase().parse::<Outcome>().map_err(|_| {
                let known: Vec<&str> = OUTCOMES.iter().map(|o| o.as_str()).collect();
                bad(format!(
                    "parameter `outcome`: {text:?} is not one of {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

fn parse_sort(params: &Params) -> ApiResult<SortOrder> {
    match params.one("_sort")?.as_deref() {
        None | Some("desc:submit_time") | Some("disable_sorting") => Ok(SortOrder::NewestFirst),
        Some("asc:submit_time") => Ok(SortOrder::OldestFirst),
        Some(other) => Err(bad(format!(
            "parameter `_sort` must be `desc:submit_time`, `asc:submit_time` or `disable_sorting`, \
             not {other:?}"
        ))),
    }
}

/// Every parameter that is not one of `/results`' own, as an item-data filter.
fn parse_data_filters(params: &Params) -> ApiResult<Vec<DataFilter>> {
    let mut filters = Vec::new();
    for name in &params.order {
        if RESULT_PARAMS.contains(&name.as_str()) {
            continue;
        }
        let (key, like) = match name.split_once(':') {
            None => (name.as_str(), false),
            Some((key, "like")) => (key, true),
            Some((_, modifier)) => {
                return Err(bad(format!(
                    "parameter `{name}`: unknown modifier `{modifier}` (only `KEY:like` is known)"
                )))
            }
        };
        if key.is_empty() {
            return Err(bad(format!("parameter `{name}` names no item-data key")));
        }
        let key = DataKey::parse(key);
        let values = params.list(name);
        if key == DataKey::Flaky && !like {
            if let Some(v) = values.iter().find(|v| *v != "true" && *v != "false") {
                return Err(bad(format!(
                    "parameter `flaky` must be `true` or `false`, not {v:?}"
                )));
            }
        }
        filters.push(DataFilter { key, values, like });
    }
    Ok(filters)
}

fn result_query(params: &Params) -> ApiResult<ResultQuery> {
    let (since, until) = parse_since(params)?;
    Ok(ResultQuery {
        testcases: params.list("testcases"),
        testcase_globs: params.list("testcases:like"),
        outcomes: parse_outcomes(params)?,
        since,
        until,
        groups: params.list("groups").into_iter().map(RunId).collect(),
        data: parse_data_filters(params)?,
        order: parse_sort(params)?,
    })
}

/// Refuses parameters a list endpoint does not know, naming them.
fn only(params: &Params, known: &[&str]) -> ApiResult<()> {
    match params
        .order
        .iter()
        .find(|name| !known.contains(&name.as_str()) && *name != "callback" && *name != "_")
    {
        Some(name) => Err(bad(format!(
            "unknown parameter `{name}`; this endpoint takes {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Ok(()),
    }
}

// ----- links -----

/// Where clients reach the server: the configured public URL, or `http://` and the `Host` header.
fn base_url(state: &ServerState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Percent-encodes one path segment.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value.
fn query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The links to the previous and next page: the request's own URL with `page` replaced, the rest of the
/// query kept as the client wrote it.
fn page_links(
    base: &str,
    path: &str,
    params: &Params,
    page: PageRequest,
    more: bool,
) -> (Option<String>, Option<String>) {
    let kept: Vec<&str> = params
        .raw
        .split('&')
        .filter(|part| {
            !part.is_empty() && !part.starts_with("page=") && !part.starts_with("callback=")
        })
        .collect();
    let link = |n: u64| {
        let mut query = kept.join("&");
        if !query.is_empty() {
            query.push('&');
        }
        format!("{base}{path}?{query}page={n}")
    };
    let prev = (page.page > 0).then(|| link(page.page - 1));
    let next = more.then(|| link(page.page + 1));
    (prev, next)
}

// ----- shapes -----

/// A time as ResultsDB writes it: Python's `isoformat()` of a naive UTC datetime.
fn submit_time(at: Timestamp) -> String {
    let civil = at.to_zoned(TimeZone::UTC).datetime();
    let micros = civil.subsec_nanosecond() / 1000;
    let seconds = civil.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if micros == 0 {
        seconds
    } else {
        format!("{seconds}.{micros:06}")
    }
}

fn testcase_json(base: &str, name: &str) -> Value {
    json!({
        "name": name,
        "ref_url": null,
        "href": format!("{base}{PREFIX}/testcases/{}", segment(name)),
    })
}

/// A result's item data: every key slipway records that has a value on it.
fn result_data(entry: &ResultEntry) -> BTreeMap<&'static str, Vec<String>> {
    let r = &entry.result;
    let mut data = BTreeMap::new();
    data.insert("item", vec![r.compose.as_str().to_string()]);
    data.insert("type", vec![ITEM_TYPE.to_string()]);
    for (key, value) in [
        ("artifact", &r.artifact),
        ("format", &r.format),
        ("arch", &r.arch),
        ("stream", &r.stream),
        ("scenario", &r.scenario),
    ] {
        if !value.is_empty() {
            data.insert(key, vec![value.clone()]);
        }
    }
    data.insert("flaky", vec![r.flaky.to_string()]);
    if let Some(plan) = entry.plan.as_ref().filter(|p| !p.is_empty()) {
        data.insert("plan", vec![plan.clone()]);
    }
    if let Some(log) = &r.log {
        data.insert("log", vec![log.as_str().to_string()]);
    }
    if !r.attempts.is_empty() {
        data.insert(
            "attempts",
            r.attempts
                .iter()
                .map(|a| a.outcome.as_str().to_string())
                .collect(),
        );
    }
    data
}

fn result_json(base: &str, entry: &ResultEntry) -> Value {
    let r = &entry.result;
    let id = r.id.unwrap_or_default();
    json!({
        "id": id,
        "groups": r.run.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "testcase": testcase_json(base, &r.testcase),
        "submit_time": submit_time(r.submitted_at),
        "outcome": r.outcome.as_str(),
        "note": r.note,
        "ref_url": null,
        "data": result_data(entry),
        "href": format!("{base}{PREFIX}/results/{id}"),
    })
}

fn group_json(base: &str, entry: &GroupEntry) -> Value {
    let id = entry.run.id.as_str();
    json!({
        "uuid": id,
        "description": entry.run.description,
        "ref_url": null,
        "results_count": entry.results,
        "results": format!("{base}{PREFIX}/results?groups={}", query_value(id)),
        "href": format!("{base}{PREFIX}/groups/{}", segment(id)),
    })
}

fn list_json<T>(
    paged: &Paged<T>,
    links: (Option<String>, Option<String>),
    item: impl Fn(&T) -> Value,
) -> Json<Value> {
    Json(json!({
        "data": paged.items.iter().map(item).collect::<Vec<_>>(),
        "prev": links.0,
        "next": links.1,
    }))
}

// ----- handlers -----

async fn index(State(state): State<ServerState>, headers: HeaderMap) -> Json<Value> {
    let base = base_url(&state, &headers);
    Json(json!({
        "message": "slipway test results, in the shape of the ResultsDB 2.0 API (read-only)",
        "documentation": "https://docs.resultsdb20.apiary.io/",
        "groups": format!("{base}{PREFIX}/groups"),
        "results": format!("{base}{PREFIX}/results"),
        "testcases": format!("{base}{PREFIX}/testcases"),
        "outcomes": OUTCOMES.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
    }))
}

/// A page of results under `query`, listed at `path`.
async fn results_page(
    state: &ServerState,
    headers: &HeaderMap,
    path: &str,
    params: &Params,
    query: ResultQuery,
) -> ApiResult<Json<Value>> {
    let page = params.page()?;
    let found = state.store.find_results(&query, page).await?;
    let base = base_url(state, headers);
    let links = page_links(&base, path, params, page, found.more);
    Ok(list_json(&found, links, |e| result_json(&base, e)))
}

async fn results(
    State(state): State<ServerState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw);
    let query = result_query(&params)?;
    results_page(
        &state,
        &headers,
        &format!("{PREFIX}/results"),
        &params,
        query,
    )
    .await
}

async fn latest(
    State(state): State<ServerState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw);
    let query = result_query(&params)?;
    let distinct_on: Vec<DataKey> = params
        .list("_distinct_on")
        .iter()
        .map(|k| DataKey::parse(k))
        .collect();
    let filtered = !query.testcases.is_empty()
        || !query.testcase_globs.is_empty()
        || query.since.is_some()
        || !query.groups.is_empty()
        || !query.data.is_empty();
    if !distinct_on.is_empty() && !filtered {
        return Err(bad(
            "parameter `_distinct_on` needs at least one other filter (testcases, since, groups or \
             item data)",
        ));
    }
    let found = state
        .store
        .find_latest_results(&query, &distinct_on)
        .await?;
    let base = base_url(&state, &headers);
    Ok(Json(json!({
        "data": found.iter().map(|e| result_json(&base, e)).collect::<Vec<_>>(),
    })))
}

async fn result(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let number: u64 = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("Result not found: {id:?} is not a result id")))?;
    let entry = state
        .store
        .find_result(number)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Result not found: no result {number}")))?;
    Ok(Json(result_json(&base_url(&state, &headers), &entry)))
}

async fn testcases(
    State(state): State<ServerState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw);
    only(&params, &["page", "limit", "name", "name:like"])?;
    let page = params.page()?;
    let query = TestcaseQuery {
        names: params.list("name"),
        name_globs: params.list("name:like"),
    };
    let found = state.store.find_testcases(&query, page).await?;
    let base = base_url(&state, &headers);
    let links = page_links(
        &base,
        &format!("{PREFIX}/testcases"),
        &params,
        page,
        found.more,
    );
    Ok(list_json(&found, links, |name| testcase_json(&base, name)))
}

async fn testcase_exists(state: &ServerState, name: &str) -> ApiResult<()> {
    let query = TestcaseQuery {
        names: vec![name.to_string()],
        name_globs: Vec::new(),
    };
    let found = state
        .store
        .find_testcases(&query, PageRequest { page: 0, limit: 1 })
        .await?;
    if found.items.is_empty() {
        return Err(ApiError::NotFound(format!(
            "Testcase not found: no results of testcase {name:?}"
        )));
    }
    Ok(())
}

async fn testcase(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    testcase_exists(&state, &name).await?;
    Ok(Json(testcase_json(&base_url(&state, &headers), &name)))
}

async fn testcase_results(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    testcase_exists(&state, &name).await?;
    let params = Params::parse(raw);
    let mut query = result_query(&params)?;
    query.testcases = vec![name.clone()];
    query.testcase_globs.clear();
    let path = format!("{PREFIX}/testcases/{}/results", segment(&name));
    results_page(&state, &headers, &path, &params, query).await
}

async fn groups(
    State(state): State<ServerState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw);
    only(
        &params,
        &["page", "limit", "uuid", "description", "description:like"],
    )?;
    let page = params.page()?;
    let query = GroupQuery {
        ids: params.list("uuid").into_iter().map(RunId).collect(),
        descriptions: params.list("description"),
        description_globs: params.list("description:like"),
    };
    let found = state.store.find_groups(&query, page).await?;
    let base = base_url(&state, &headers);
    let links = page_links(
        &base,
        &format!("{PREFIX}/groups"),
        &params,
        page,
        found.more,
    );
    Ok(list_json(&found, links, |g| group_json(&base, g)))
}

async fn find_group(state: &ServerState, uuid: &str) -> ApiResult<GroupEntry> {
    state
        .store
        .find_group(&RunId(uuid.to_string()))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Group not found: no test run {uuid:?}")))
}

async fn group(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let entry = find_group(&state, &uuid).await?;
    Ok(Json(group_json(&base_url(&state, &headers), &entry)))
}

async fn group_results(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    find_group(&state, &uuid).await?;
    let params = Params::parse(raw);
    let mut query = result_query(&params)?;
    query.groups = vec![RunId(uuid.clone())];
    let path = format!("{PREFIX}/groups/{}/results", segment(&uuid));
    results_page(&state, &headers, &path, &params, query).await
}

async fn group_junit(
    State(state): State<ServerState>,
    Path(uuid): Path<String>,
) -> ApiResult<Response> {
    let (run, results) = state
        .store
        .test_run(&RunId(uuid.clone()))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Group not found: no test run {uuid:?}")))?;
    let xml = junit::render(&run, &results);
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        xml,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_without_an_offset_are_utc() {
        let expected: Timestamp = "2026-11-21T10:00:00Z".parse().expect("ts");
        assert_eq!(parse_time("2026-11-21T10:00:00"), Some(expected));
        assert_eq!(parse_time("2026-11-21T12:00:00+02:00"), Some(expected));
        assert_eq!(
            parse_time("2026-11-21"),
            Some("2026-11-21T00:00:00Z".parse().expect("ts"))
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn submit_times_are_naive_utc_like_python_isoformat() {
        let at: Timestamp = "2026-11-21T10:00:00.25+01:00".parse().expect("ts");
        assert_eq!(submit_time(at), "2026-11-21T09:00:00.250000");
        let whole: Timestamp = "2026-11-21T10:00:00Z".parse().expect("ts");
        assert_eq!(submit_time(whole), "2026-11-21T10:00:00");
    }

    #[test]
    fn page_links_replace_only_the_page() {
        let params = Params::parse(Some("testcases:like=boot.*&page=1&limit=2".into()));
        let page = params.page().expect("page");
        let (prev, next) = page_links("http://h", "/api/v2.0/results", &params, page, true);
        assert_eq!(
            prev.as_deref(),
            Some("http://h/api/v2.0/results?testcases:like=boot.*&limit=2&page=0")
        );
        assert_eq!(
            next.as_deref(),
            Some("http://h/api/v2.0/results?testcases:like=boot.*&limit=2&page=2")
        );
    }
}
