//! How values are written to and read from columns.
//!
//! Timestamps are stored as RFC 3339 UTC text with exactly six fractional digits
//! (`2026-11-21T10:00:00.000000Z`): readable in a SQL shell, valid `timestamptz` input for PostgreSQL, and,
//! because every value has the same width, text order is time order, so `ORDER BY` and `<=` on the column
//! work without date functions. Values are truncated to microseconds; the store hands back the truncated
//! value everywhere (also in event bodies) so what a caller gets equals what a later read returns.

use std::fmt::Display;

use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;
use slipway_model::{ArtifactKind, OutputFormat, Sha256};

use crate::{StoreError, StoreResult};

const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// The stored text of a timestamp.
pub(super) fn ts(at: Timestamp) -> String {
    at.strftime(TIMESTAMP_FORMAT).to_string()
}

/// The timestamp as it will read back from the database.
pub(super) fn normalize(at: Timestamp) -> Timestamp {
    ts(at).parse().unwrap_or(at)
}

/// The UTC day of a timestamp as `YYYYMMDD`, the day part of compose ids and release versions.
pub(super) fn day(at: Timestamp) -> String {
    at.strftime("%Y%m%d").to_string()
}

/// `at + lease`, refusing leases that leave the representable range.
pub(super) fn lease_end(at: Timestamp, lease: std::time::Duration) -> StoreResult<Timestamp> {
    SignedDuration::try_from(lease)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .ok_or_else(|| StoreError::Conflict(format!("a lease of {lease:?} from {at} is too long")))
}

/// The stored text of an artifact kind: `image:qcow2`, `image:raw.xz`, `serial-log`, `lock-json`. Plain
/// words rather than serde's JSON so the column can be read and filtered in SQL.
pub(super) fn kind_text(kind: ArtifactKind) -> String {
    match kind {
        ArtifactKind::Image(format) => format!("image:{}", format.extension()),
        ArtifactKind::SerialLog => "serial-log".to_string(),
        ArtifactKind::LockJson => "lock-json".to_string(),
        ArtifactKind::ReleaseNotes => "release-notes".to_string(),
        ArtifactKind::TestOutput => "test-output".to_string(),
    }
}

/// Reads what [`kind_text`] wrote.
pub(super) fn parse_kind(text: &str) -> StoreResult<ArtifactKind> {
    let kind = match text {
        "serial-log" => Some(ArtifactKind::SerialLog),
        "lock-json" => Some(ArtifactKind::LockJson),
        "release-notes" => Some(ArtifactKind::ReleaseNotes),
        "test-output" => Some(ArtifactKind::TestOutput),
        other => other.strip_prefix("image:").and_then(|ext| {
            OutputFormat::ALL
                .into_iter()
                .find(|f| f.extension() == ext)
                .map(ArtifactKind::Image)
        }),
    };
    kind.ok_or_else(|| corrupt("artifacts", "kind", format!("unknown kind {text:?}")))
}

pub(super) fn corrupt(
    table: &'static str,
    column: &'static str,
    message: impl Display,
) -> StoreError {
    StoreError::Corrupt {
        table,
        column,
        message: message.to_string(),
    }
}

pub(super) fn parse_ts(
    table: &'static str,
    column: &'static str,
    text: &str,
) -> StoreResult<Timestamp> {
    text.parse()
        .map_err(|e| corrupt(table, column, format!("{text:?}: {e}")))
}

pub(super) fn parse_opt_ts(
    table: &'static str,
    column: &'static str,
    text: Option<String>,
) -> StoreResult<Option<Timestamp>> {
    text.map(|t| parse_ts(table, column, &t)).transpose()
}

pub(super) fn parse_sha(
    table: &'static str,
    column: &'static str,
    text: &str,
) -> StoreResult<Sha256> {
    Sha256::parse(text).map_err(|e| corrupt(table, column, e))
}

pub(super) fn parse_json<T: DeserializeOwned>(
    table: &'static str,
    column: &'static str,
    text: &str,
) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| corrupt(table, column, e))
}

pub(super) fn to_u32(table: &'static str, column: &'static str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| corrupt(table, column, format!("{value} is out of range")))
}

pub(super) fn to_u64(table: &'static str, column: &'static str, value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(table, column, format!("{value} is negative")))
}

/// A `usize` limit as SQL's `LIMIT` takes it; anything beyond `i64` means "no limit" anyway.
pub(super) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Encodes a value for a JSON TEXT column or an event body.
pub(super) fn to_json<T: serde::Serialize>(op: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Database(format!("{op}: encoding JSON: {e}")))
}

pub(super) fn to_json_value<T: serde::Serialize>(
    op: &str,
    value: &T,
) -> StoreResult<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| StoreError::Database(format!("{op}: encoding JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_fixed_width_so_text_order_is_time_order() {
        let a: Timestamp = "2026-11-21T10:00:00Z".parse().expect("timestamp");
        let b: Timestamp = "2026-11-21T10:00:00.5Z".parse().expect("timestamp");
        let c: Timestamp = "2026-11-21T10:00:00.123456789Z".parse().expect("timestamp");
        assert_eq!(ts(a), "2026-11-21T10:00:00.000000Z");
        assert_eq!(ts(b), "2026-11-21T10:00:00.500000Z");
        assert_eq!(ts(c), "2026-11-21T10:00:00.123456Z");
        assert!(ts(a) < ts(c) && ts(c) < ts(b));
        assert_eq!(ts(normalize(c)), ts(c));
        assert_eq!(normalize(c).as_nanosecond() % 1000, 0);
        assert_eq!(parse_ts("t", "c", &ts(b)).expect("parses"), b);
    }

    #[test]
    fn artifact_kinds_round_trip() {
        let mut kinds = vec![
            ArtifactKind::SerialLog,
            ArtifactKind::LockJson,
            ArtifactKind::ReleaseNotes,
            ArtifactKind::TestOutput,
        ];
        kinds.extend(OutputFormat::ALL.into_iter().map(ArtifactKind::Image));
        for kind in kinds {
            assert_eq!(parse_kind(&kind_text(kind)).expect("known kind"), kind);
        }
        assert!(parse_kind("image:vhd").is_err());
    }
}
