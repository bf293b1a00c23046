//! How values are written to and read from columns.
//!
//! Timestamps are stored as RFC 3339 UTC text with exactly six fractional digits
//! (`2026-11-21T10:00:00.000000Z`): readable in a SQL shell, valid `timestamptz` input for PostgreSQL, and,
//! because every value has the same width, text order is time order, so `ORDER BY` and `<=` on the column
//! work without date functions. Values are truncated to microseconds; the store hands back the truncated
//! value everywhere (also in event bodies) so what a caller gets equals what a later read returns.

use std::fmt::Display;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;
use slipway_model::{ArtifactKind, OutputFormat, Sha256};

use crate::{StoreError, StoreResult};

const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// The stored text of a timestamp.
///
/// Every store call writes a timestamp or two, so the fixed format is written digit by digit rather than
/// through the general formatter, which interprets its format string each time; years outside four digits
/// are left to it.
pub(super) fn ts(at: Timestamp) -> String {
    let civil = TimeZone::UTC.to_datetime(at);
    let four_digits = u32::try_from(civil.year())
        .ok()
        .filter(|year| *year <= 9999);
    let Some(year) = four_digits else {
        return at.strftime(TIMESTAMP_FORMAT).to_string();
    };
    let mut text = String::with_capacity(TIMESTAMP_LEN);
    push_digits(&mut text, year, 4);
    text.push('-');
    push_digits(&mut text, civil.month().unsigned_abs().into(), 2);
    text.push('-');
    push_digits(&mut text, civil.day().unsigned_abs().into(), 2);
    text.push('T');
    push_digits(&mut text, civil.hour().unsigned_abs().into(), 2);
    text.push(':');
    push_digits(&mut text, civil.minute().unsigned_abs().into(), 2);
    text.push(':');
    push_digits(&mut text, civil.second().unsigned_abs().into(), 2);
    text.push('.');
    push_digits(
        &mut text,
        civil.subsec_nanosecond().unsigned_abs() / 1000,
        6,
    );
    text.push('Z');
    text
}

/// The length of [`ts`]'s text for a four-digit year.
const TIMESTAMP_LEN: usize = 27;

/// Appends `value` in decimal, zero-padded to `width` digits (`value` must fit).
fn push_digits(text: &mut String, value: u32, width: u32) {
    let mut unit = 10u32.pow(width - 1);
    while unit > 0 {
        text.push(char::from(b'0' + ((value / unit) % 10) as u8));
        unit /= 10;
    }
}

/// The timestamp as it will read back from the database: truncated to the microsecond, toward the past
/// (the fraction of a civil time is never negative).
pub(super) fn normalize(at: Timestamp) -> Timestamp {
    i64::try_from(at.as_nanosecond().div_euclid(1000))
        .ok()
        .and_then(|micros| Timestamp::from_microsecond(micros).ok())
        .unwrap_or(at)
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
    if let Some(at) = parse_stored_ts(text) {
        return Ok(at);
    }
    text.parse()
        .map_err(|e| corrupt(table, column, format!("{text:?}: {e}")))
}

/// Reads the exact shape [`ts`] writes for a four-digit year, or `None` for anything else, which the
/// general RFC 3339 parser then reads (or rejects with its reason).
fn parse_stored_ts(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if bytes.len() != TIMESTAMP_LEN
        || [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ]
        .iter()
        .any(|&(at, separator)| bytes[at] != separator)
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i32> {
        bytes[from..to].iter().try_fold(0i32, |value, &digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + i32::from(digit - b'0'))
        })
    };
    let civil = jiff::civil::DateTime::new(
        i16::try_from(number(0, 4)?).ok()?,
        i8::try_from(number(5, 7)?).ok()?,
        i8::try_from(number(8, 10)?).ok()?,
        i8::try_from(number(11, 13)?).ok()?,
        i8::try_from(number(14, 16)?).ok()?,
        i8::try_from(number(17, 19)?).ok()?,
        number(20, 26)? * 1000,
    )
    .ok()?;
    TimeZone::UTC.to_timestamp(civil).ok()
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
    fn the_fixed_format_is_written_and_read_as_the_general_formatter_and_parser_do() {
        // A spread of instants: both sides of the epoch, a leap day, the ends of the four-digit years,
        // the last nanosecond of a second, and a pseudo-random walk through the years in between.
        let mut instants: Vec<Timestamp> = [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "0001-01-01T00:00:00.000001Z",
            "0000-06-15T12:30:00Z",
            "2028-02-29T23:59:59.999999999Z",
            "9999-12-30T12:00:00.999999Z",
            "2026-11-21T10:00:00.000000500Z",
        ]
        .iter()
        .map(|text| text.parse().expect("timestamp"))
        .collect();
        // Seconds from the year 1 to the last day of 9999, with a nanosecond part.
        let (first, last) = (-62_135_596_800i64, 253_402_000_000i64);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let second = first + (seed % (last - first) as u64) as i64;
            let nanos = (seed >> 34) as i32 % 1_000_000_000;
            instants.push(Timestamp::new(second, nanos).expect("in range"));
        }
        for at in instants {
            let general = at.strftime(TIMESTAMP_FORMAT).to_string();
            assert_eq!(ts(at), general, "{at:?}");
            let read: Timestamp = general.parse().expect("the general parser reads it");
            assert_eq!(parse_stored_ts(&general), Some(read), "{general}");
            assert_eq!(normalize(at), read, "{at:?}");
        }
    }

    #[test]
    fn years_beyond_four_digits_and_other_shapes_go_to_the_general_formatter_and_parser() {
        // The earliest instant is in the year -9999; the latest, in 9999, is the fixed shape's last.
        for far in [Timestamp::MIN, Timestamp::MAX] {
            assert_eq!(ts(far), far.strftime(TIMESTAMP_FORMAT).to_string());
        }
        // Other RFC 3339 shapes still read; nonsense is still a corrupt column that names the text.
        for text in ["2026-11-21T10:00:00Z", "2026-11-21T11:00:00+01:00"] {
            assert_eq!(parse_stored_ts(text), None);
            assert_eq!(
                parse_ts("t", "c", text).expect("parses"),
                "2026-11-21T10:00:00Z"
                    .parse::<Timestamp>()
                    .expect("timestamp")
            );
        }
        for text in ["2026-13-21T10:00:00.000000Z", "2026-11-21T10:00:0x.000000Z"] {
            assert_eq!(parse_stored_ts(text), None);
            let err = parse_ts("t", "c", text).expect_err("refused");
            assert!(err.to_string().contains(text), "{err}");
        }
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
