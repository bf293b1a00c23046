//! When a stream releases: its cadence (a fixed period from an anchor, a cron expression, or every
//! passing compose), what a missed release day does, and promotion from another stream after a soak.
//!
//! Everything here is UTC: release days are the same instants for every reader of the config, whatever
//! the machine's time zone, and there are no daylight-saving gaps to fall into.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::TimeOfDay;

/// A length of time written `<n>h`, `<n>d` or `<n>w` (`"14d"`), for a cadence's period and a promotion's
/// soak. Hours, days and weeks are exact multiples of 3600 seconds: in UTC every day has 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    count: u32,
    unit: PeriodUnit,
}

/// The unit of a [`Period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeriodUnit {
    /// `h`: 3600 seconds.
    Hours,
    /// `d`: 24 hours.
    Days,
    /// `w`: 7 days.
    Weeks,
}

impl PeriodUnit {
    fn seconds(self) -> i64 {
        match self {
            Self::Hours => 3600,
            Self::Days => 86_400,
            Self::Weeks => 7 * 86_400,
        }
    }

    fn suffix(self) -> char {
        match self {
            Self::Hours => 'h',
            Self::Days => 'd',
            Self::Weeks => 'w',
        }
    }
}

/// The longest period accepted: a century is far beyond any cadence or soak, and keeping periods short
/// keeps every instant computed from them inside the range of a timestamp.
const MAX_PERIOD_SECONDS: i64 = 100 * 366 * 86_400;

impl Period {
    /// A period of `count` units; `None` when `count` is zero or the period is longer than a century.
    pub fn new(count: u32, unit: PeriodUnit) -> Option<Self> {
        let period = Self { count, unit };
        (count > 0 && period.seconds() <= MAX_PERIOD_SECONDS).then_some(period)
    }

    /// The number of units.
    pub fn count(self) -> u32 {
        self.count
    }

    /// The unit.
    pub fn unit(self) -> PeriodUnit {
        self.unit
    }

    /// The length in seconds.
    pub fn seconds(self) -> i64 {
        i64::from(self.count) * self.unit.seconds()
    }
}

/// A string that is not a [`Period`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration: write a positive whole number and a unit, h (hours), d (days) or w (weeks), such as \"14d\"{detail}")]
pub struct PeriodError {
    text: String,
    detail: &'static str,
}

impl FromStr for Period {
    type Err = PeriodError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |detail| PeriodError {
            text: text.to_string(),
            detail,
        };
        let Some(last) = text.chars().last() else {
            return Err(err(""));
        };
        let unit = match last {
            'h' => PeriodUnit::Hours,
            'd' => PeriodUnit::Days,
            'w' => PeriodUnit::Weeks,
            _ => return Err(err("")),
        };
        let digits = &text[..text.len() - 1];
        // Only plain digits: no sign, no space, no leading zero, so "14d" has exactly one spelling.
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(""));
        }
        if digits.starts_with('0') {
            return Err(err(if digits.bytes().all(|b| b == b'0') {
                " (it must be longer than zero)"
            } else {
                " (without leading zeros)"
            }));
        }
        let count: u32 = digits.parse().map_err(|_| err(" (at most a century)"))?;
        Period::new(count, unit).ok_or_else(|| err(" (at most a century)"))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.count, self.unit.suffix())
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// When a stream releases.
///
/// Written in the config as `cadence = "on-pass"`, `cadence = { every = "14d", anchor = "2026-01-06",
/// at = "12:00" }` or `cadence = { cron = "0 12 * * 2" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cadence {
    /// Every compose that passes its gate is released at once; there are no release days.
    #[default]
    OnPass,
    /// Release days at a fixed period from an anchor.
    Every(EverySchedule),
    /// Release days given by a cron expression.
    Cron(CronSchedule),
}

/// Release instants `anchor + k × every` at the time of day `at`, for k = 0, 1, 2, …
///
/// The anchor is the first release day: a stream can be configured ahead of the day it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EverySchedule {
    /// The period between release instants.
    pub every: Period,
    /// The UTC date of the first release instant.
    pub anchor: Date,
    /// The UTC time of day of the anchor (and so of every release instant when the period is whole days).
    pub at: TimeOfDay,
}

impl EverySchedule {
    fn first(&self) -> Option<i64> {
        let dt = self
            .anchor
            .at(self.at.hour as i8, self.at.minute as i8, 0, 0);
        Offset::UTC.to_timestamp(dt).ok().map(Timestamp::as_second)
    }

    fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let first = self.first()?;
        let period = self.every.seconds();
        let after = after.as_second();
        let next = if after < first {
            first
        } else {
            let k = (after - first) / period + 1;
            first.checked_add(k.checked_mul(period)?)?
        };
        Timestamp::from_second(next).ok()
    }
}

impl Cadence {
    /// Whether the stream has release days (anything but `on-pass`).
    pub fn is_scheduled(&self) -> bool {
        !matches!(self, Self::OnPass)
    }

    /// The first release instant strictly after `after`; `None` for `on-pass` and for a schedule with no
    /// release instant left before the end of time.
    pub fn next_due(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Self::OnPass => None,
            Self::Every(every) => every.next_after(after),
            Self::Cron(cron) => cron.next_after(after),
        }
    }

    /// The release instants in `(after, until]`, in order.
    pub fn due_between(&self, after: Timestamp, until: Timestamp) -> DueInstants<'_> {
        DueInstants {
            cadence: self,
            after,
            until,
        }
    }
}

/// The release instants of a cadence within a window: see [`Cadence::due_between`].
#[derive(Debug, Clone)]
pub struct DueInstants<'a> {
    cadence: &'a Cadence,
    after: Timestamp,
    until: Timestamp,
}

impl Iterator for DueInstants<'_> {
    type Item = Timestamp;
    fn next(&mut self) -> Option<Timestamp> {
        let next = self.cadence.next_due(self.after)?;
        if next > self.until {
            return None;
        }
        self.after = next;
        Some(next)
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OnPass => f.write_str("on-pass"),
            Self::Every(e) => write!(
                f,
                "every {} from {} at {} UTC",
                e.every,
                e.anchor,
                String::from(e.at)
            ),
            Self::Cron(c) => write!(f, "cron \"{c}\" (UTC)"),
        }
    }
}

impl Serialize for Cadence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::OnPass => serializer.serialize_str("on-pass"),
            Self::Every(e) => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("every", &e.every)?;
                map.serialize_entry("anchor", &e.anchor.to_string())?;
                map.serialize_entry("at", &String::from(e.at))?;
                map.end()
            }
            Self::Cron(c) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("cron", &c.to_string())?;
                map.end()
            }
        }
    }
}

const CADENCE_FORMS: &str =
    "write \"on-pass\", { every = \"14d\", anchor = \"2026-01-06\", at = \"12:00\" } \
                             or { cron = \"0 12 * * 2\" }";

impl<'de> Deserialize<'de> for Cadence {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(s) if s == "on-pass" => Ok(Self::OnPass),
            toml::Value::String(s) => Err(D::Error::custom(format!(
                "{s:?} is not a cadence: {CADENCE_FORMS}"
            ))),
            toml::Value::Table(table) => Self::from_table(table).map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "a cadence is a string or a table, not a {}: {CADENCE_FORMS}",
                other.type_str()
            ))),
        }
    }
}

impl Cadence {
    fn from_table(mut table: toml::Table) -> Result<Self, String> {
        let mut text = |key: &str| -> Result<Option<String>, String> {
            match table.remove(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s)),
                // An unquoted TOML date (`anchor = 2026-01-06`) is as clear as a quoted one.
                Some(toml::Value::Datetime(dt)) if key == "anchor" => Ok(Some(dt.to_string())),
                Some(other) => Err(format!(
                    "`{key}` must be a string, not a {}",
                    other.type_str()
                )),
            }
        };
        let every = text("every")?;
        let anchor = text("anchor")?;
        let at = text("at")?;
        let cron = text("cron")?;
        if let Some(key) = table.keys().next() {
            return Err(format!(
                "unknown cadence key `{key}`: expected `every`, `anchor` and `at`, or `cron`"
            ));
        }
        match (every, cron) {
            (Some(every), None) => {
                let every: Period = every.parse().map_err(|e| format!("`every`: {e}"))?;
                let anchor = anchor.ok_or_else(|| {
                    "`every` needs an `anchor`, the date of the first release day, such as \
                     anchor = \"2026-01-06\""
                        .to_string()
                })?;
                let anchor: Date = anchor.parse().map_err(|_| {
                    format!("`anchor`: {anchor:?} is not a date such as \"2026-01-06\"")
                })?;
                let at = match at {
                    Some(at) => TimeOfDay::try_from(at).map_err(|e| format!("`at`: {e}"))?,
                    None => TimeOfDay { hour: 0, minute: 0 },
                };
                Ok(Self::Every(EverySchedule { every, anchor, at }))
            }
            (None, Some(cron)) => {
                if anchor.is_some() || at.is_some() {
                    return Err(
                        "`anchor` and `at` belong to `every`; a cron expression holds its own times"
                            .into(),
                    );
                }
                let cron: CronSchedule = cron.parse().map_err(|e| format!("`cron`: {e}"))?;
                Ok(Self::Cron(cron))
            }
            (Some(_), Some(_)) => Err("give either `every` or `cron`, not both".into()),
            (None, None) => Err(format!(
                "the cadence table is missing `every` or `cron`: {CADENCE_FORMS}"
            )),
        }
    }
}

/// What a scheduled stream does after a release day that found no compose to release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OnMissed {
    /// Keep the previous release and stay stale until a later release day finds a compose.
    #[default]
    Skip,
    /// Stay stale only until the first compose that passes; release it at once.
    RetryNightly,
}

/// `promote-from = { stream = "testing", soak = "14d" }`: the stream releases what another stream
/// released at least `soak` ago and never revoked, instead of its own composes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Promotion {
    /// The stream whose releases are promoted.
    pub stream: String,
    /// How long a release must have been published in that stream before it is promoted.
    pub soak: Period,
}

/// The release policy of one stream, as the release crate's planner reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPolicy {
    /// When the stream releases.
    pub cadence: Cadence,
    /// What a release day without a candidate leads to.
    pub on_missed: OnMissed,
    /// Where candidates come from when not the stream's own composes.
    pub promote_from: Option<Promotion>,
}

/// What the engine keeps per stream between ticks so that every release day is handled exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CadenceState {
    /// Release instants at or before this have been handled. `None` before the first tick: the schedule
    /// then starts at that tick, so days before the stream existed never count as missed.
    #[serde(default)]
    pub handled_until: Option<Timestamp>,
    /// The release day since which the stream has had no release it was due, if it is stale.
    #[serde(default)]
    pub stale_since: Option<Timestamp>,
}

/// A five-field cron expression, `minute hour day-of-month month day-of-week`, read in UTC.
///
/// Each field is `*` or a comma-separated list of values, ranges `a-b` and steps `*/n` or `a-b/n`;
/// months and weekdays may be named (`jan`, `mon`), and both 0 and 7 are Sunday. When both day fields
/// are restricted (neither starts with `*`), a day matching either one fires, as in every cron since
/// Vixie's; otherwise a day must match both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// A cron expression that does not parse, or that can never fire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a cron expression (minute hour day-of-month month day-of-week): {message}"
)]
pub struct CronError {
    text: String,
    message: String,
}

struct CronField {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: CronField = CronField {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: CronField = CronField {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: CronField = CronField {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: CronField = CronField {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: CronField = CronField {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl CronField {
    fn value(&self, text: &str) -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(self.min + i as u32);
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            let names = if self.names.is_empty() {
                String::new()
            } else {
                format!(
                    " or a name ({}–{})",
                    self.names[0],
                    self.names[self.names.len() - 1]
                )
            };
            return Err(format!(
                "{} field: {text:?} is not a number from {} to {}{names}",
                self.name, self.min, self.max
            ));
        }
        let value: u32 = text.parse().unwrap_or(u32::MAX);
        if value < self.min || value > self.max {
            return Err(format!(
                "{} field: {value} is out of range {}–{}",
                self.name, self.min, self.max
            ));
        }
        Ok(value)
    }

    /// The set of values a field selects, as a bit mask indexed by value.
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut set = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let n: u32 = step
                        .parse()
                        .ok()
                        .filter(|n| *n > 0 && step.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| {
                            format!(
                                "{} field: step {step:?} is not a positive number",
                                self.name
                            )
                        })?;
                    (range, Some(n))
                }
                None => (item, None),
            };
            let (low, high) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (low, high) = (self.value(a)?, self.value(b)?);
                if low > high {
                    return Err(format!(
                        "{} field: range {range:?} runs backwards; write it as two ranges",
                        self.name
                    ));
                }
                (low, high)
            } else {
                if step.is_some() {
                    return Err(format!(
                        "{} field: a step needs a range, as in \"*/{n}\" or \"{range}-{}/{n}\"",
                        self.name,
                        self.max,
                        n = step.unwrap_or(1)
                    ));
                }
                let v = self.value(range)?;
                (v, v)
            };
            let step = step.unwrap_or(1);
            let mut v = low;
            while v <= high {
                set |= 1 << v;
                v += step;
            }
        }
        Ok(set)
    }
}

impl FromStr for CronSchedule {
    type Err = CronError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |message: String| CronError {
            text: text.to_string(),
            message,
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(err(format!("it has {} fields, not 5", fields.len())));
        };
        let minutes = MINUTE.parse(minute).map_err(err)?;
        let hours = HOUR.parse(hour).map_err(err)? as u32;
        let days = DAY.parse(day).map_err(err)? as u32;
        let months = MONTH.parse(month).map_err(err)? as u16;
        let mut weekdays = WEEKDAY.parse(weekday).map_err(err)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        let schedule = Self {
            text: fields.join(" "),
            minutes,
            hours,
            days,
            months,
            weekdays: weekdays as u8,
            days_restricted: !day.starts_with('*'),
            weekdays_restricted: !weekday.starts_with('*'),
        };
        if !schedule.can_fire() {
            return Err(err(
                "no selected month has any of the selected days, so it never fires".into(),
            ));
        }
        Ok(schedule)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The years within which every cron schedule repeats: the Gregorian calendar's cycle.
const CRON_HORIZON_YEARS: i16 = 400;

impl CronSchedule {
    fn can_fire(&self) -> bool {
        if self.days_restricted && self.weekdays_restricted {
            // Either field fires, and every weekday occurs in every month.
            return true;
        }
        if !self.days_restricted && self.weekdays_restricted {
            // `*`-style days always include the 1st, and every weekday falls on some month's 1st.
            return true;
        }
        const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12).any(|m| {
            self.months & (1 << m) != 0
                && (1..=LONGEST[m as usize - 1]).any(|d| self.days & (1 << d) != 0)
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.days_restricted && self.weekdays_restricted {
            day || weekday
        } else {
            day && weekday
        }
    }

    /// The first selected (hour, minute) at or after `hour:minute` on a selected day.
    fn time_from(&self, hour: i8, minute: i8) -> Option<(i8, i8)> {
        let first_minute = |from: i8| {
            let mask = self.minutes & (u64::MAX << from);
            (mask != 0).then(|| mask.trailing_zeros() as i8)
        };
        if self.hours & (1 << hour) != 0 {
            if let Some(m) = first_minute(minute) {
                return Some((hour, m));
            }
        }
        let later = if hour >= 23 {
            0
        } else {
            self.hours & (u32::MAX << (hour + 1))
        };
        (later != 0)
            .then(|| later.trailing_zeros() as i8)
            .and_then(|h| first_minute(0).map(|m| (h, m)))
    }

    /// The first instant strictly after `after` that the expression selects, to the minute. `None` when
    /// there is none before the end of time that timestamps can express.
    ///
    /// Days that cannot fire are skipped a month or a day at a time and the time of day is found from
    /// the hour and minute masks, so it costs at most a few hundred cheap steps however far ahead the
    /// answer lies.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = (after.as_second().div_euclid(60) + 1).checked_mul(60)?;
        let start = Offset::UTC.to_datetime(Timestamp::from_second(start).ok()?);
        let horizon = start.year().saturating_add(CRON_HORIZON_YEARS);
        let mut date = start.date();
        let (mut hour, mut minute) = (start.hour(), start.minute());
        loop {
            if date.year() > horizon {
                return None;
            }
            if self.months & (1 << date.month()) == 0 {
                date = date.last_of_month().tomorrow().ok()?;
                (hour, minute) = (0, 0);
                continue;
            }
            if self.day_matches(date) {
                if let Some((h, m)) = self.time_from(hour, minute) {
                    let found: DateTime = date.at(h, m, 0, 0);
                    return Offset::UTC.to_timestamp(found).ok();
                }
            }
            date = date.tomorrow().ok()?;
            (hour, minute) = (0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn periods_are_strict() {
        assert_eq!(
            "14d".parse::<Period>().map(Period::seconds),
            Ok(14 * 86_400)
        );
        assert_eq!("2w".parse::<Period>().map(Period::seconds), Ok(14 * 86_400));
        assert_eq!("36h".parse::<Period>().map(Period::seconds), Ok(36 * 3600));
        assert_eq!("14d".parse::<Period>().expect("valid").to_string(), "14d");
        for bad in [
            "",
            "d",
            "14",
            "14 days",
            "14 d",
            " 14d",
            "-1d",
            "+1d",
            "0d",
            "00h",
            "014d",
            "1.5d",
            "14D",
            "1y",
            "99999999999d",
            "5300w",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad:?} must be refused");
        }
        let message = "0d".parse::<Period>().expect_err("zero").to_string();
        assert!(message.contains("longer than zero"), "{message}");
    }

    #[test]
    fn every_counts_from_the_anchor_at_its_time() {
        let cadence = Cadence::Every(EverySchedule {
            every: "14d".parse().expect("valid"),
            anchor: Date::constant(2026, 1, 6),
            at: TimeOfDay {
                hour: 12,
                minute: 0,
            },
        });
        // Before the anchor, the anchor is next; the anchor itself is not after itself.
        assert_eq!(
            cadence.next_due(ts("2025-06-01T00:00:00Z")),
            Some(ts("2026-01-06T12:00:00Z"))
        );
        assert_eq!(
            cadence.next_due(ts("2026-01-06T12:00:00Z")),
            Some(ts("2026-01-20T12:00:00Z"))
        );
        assert_eq!(
            cadence.next_due(ts("2026-01-20T11:59:59Z")),
            Some(ts("2026-01-20T12:00:00Z"))
        );
        let due: Vec<_> = cadence
            .due_between(ts("2026-01-06T12:00:00Z"), ts("2026-02-17T12:00:00Z"))
            .collect();
        assert_eq!(
            due,
            vec![
                ts("2026-01-20T12:00:00Z"),
                ts("2026-02-03T12:00:00Z"),
                ts("2026-02-17T12:00:00Z")
            ]
        );
        assert_eq!(Cadence::OnPass.next_due(ts("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn cron_fields_parse() {
        let c: CronSchedule = "0 12 * * 2".parse().expect("valid");
        assert_eq!(c.minutes, 1);
        assert_eq!(c.hours, 1 << 12);
        assert_eq!(c.weekdays, 1 << 2);
        let c: CronSchedule = "*/15 0-6/2 1,15 jan-mar,DEC sun,7".parse().expect("valid");
        assert_eq!(c.minutes, (1 << 0) | (1 << 15) | (1 << 30) | (1 << 45));
        assert_eq!(c.hours, (1 << 0) | (1 << 2) | (1 << 4) | (1 << 6));
        assert_eq!(c.days, (1 << 1) | (1 << 15));
        assert_eq!(c.months, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 12));
        assert_eq!(c.weekdays, 1, "0 and 7 are both Sunday");
        let c: CronSchedule = "0 0 * * 5-7".parse().expect("valid");
        assert_eq!(c.weekdays, (1 << 0) | (1 << 5) | (1 << 6));
    }

    #[test]
    fn bad_cron_expressions_say_what_is_wrong() {
        for (text, expected) in [
            ("0 12 * *", "4 fields"),
            ("0 12 * * 2 1", "6 fields"),
            ("60 12 * * *", "minute field: 60 is out of range"),
            ("0 24 * * *", "hour field"),
            ("0 0 0 * *", "day-of-month field: 0 is out of range"),
            ("0 0 * 13 *", "month field"),
            ("0 0 * * 8", "day-of-week field"),
            ("0 0 * * funday", "not a number from 0 to 7 or a name"),
            ("*/0 * * * *", "step \"0\""),
            ("5/10 * * * *", "a step needs a range"),
            ("0 0 * * fri-mon", "runs backwards"),
            ("0 0 30 feb *", "never fires"),
            ("0 0 31 4,6,9,11 *", "never fires"),
            ("0 0 1,,2 * *", "not a number"),
            ("-1 * * * *", "not a number"),
        ] {
            let message = text.parse::<CronSchedule>().expect_err(text).to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn cron_next_after_finds_the_next_minute_that_fires() {
        let tuesday_noon: CronSchedule = "0 12 * * 2".parse().expect("valid");
        // 2026-01-06 is a Tuesday.
        assert_eq!(
            tuesday_noon.next_after(ts("2026-01-06T11:59:30Z")),
            Some(ts("2026-01-06T12:00:00Z"))
        );
        assert_eq!(
            tuesday_noon.next_after(ts("2026-01-06T12:00:00Z")),
            Some(ts("2026-01-13T12:00:00Z"))
        );
        // Both day fields restricted: the 1st of the month or a Friday.
        let either: CronSchedule = "30 6 1 * fri".parse().expect("valid");
        assert_eq!(
            either.next_after(ts("2026-01-28T00:00:00Z")),
            Some(ts("2026-01-30T06:30:00Z"))
        );
        assert_eq!(
            either.next_after(ts("2026-01-30T06:30:00Z")),
            Some(ts("2026-02-01T06:30:00Z"))
        );
        // A leap day is years away; it is found without a minute-by-minute walk.
        let leap: CronSchedule = "0 0 29 2 *".parse().expect("valid");
        assert_eq!(
            leap.next_after(ts("2024-03-01T00:00:00Z")),
            Some(ts("2028-02-29T00:00:00Z"))
        );
        // A Friday the 13th at 23:59, with a step in the day-of-month field keeping `*` semantics.
        let late: CronSchedule = "59 23 13 * 5".parse().expect("valid");
        assert_eq!(
            late.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-02T23:59:00Z")),
            "both restricted: any Friday fires too"
        );
        let odd_mondays: CronSchedule = "0 0 */2 * mon".parse().expect("valid");
        // 2026-01-05 is a Monday on an odd day; `*/2` starts with `*`, so a day must match both.
        assert_eq!(
            odd_mondays.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-05T00:00:00Z"))
        );
        assert_eq!(
            odd_mondays.next_after(ts("2026-01-05T00:00:00Z")),
            Some(ts("2026-01-19T00:00:00Z"))
        );
    }

    #[test]
    fn cadences_deserialize_from_their_three_forms() {
        #[derive(Deserialize)]
        struct Holder {
            cadence: Cadence,
        }
        let parse = |text: &str| toml::from_str::<Holder>(text).map(|h| h.cadence);
        assert_eq!(
            parse("cadence = \"on-pass\"").expect("valid"),
            Cadence::OnPass
        );
        let every = parse("cadence = { every = \"14d\", anchor = 2026-01-06, at = \"12:00\" }")
            .expect("valid");
        assert_eq!(
            every.next_due(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-06T12:00:00Z"))
        );
        let midnight =
            parse("cadence = { every = \"1w\", anchor = \"2026-01-06\" }").expect("valid");
        assert_eq!(
            midnight.next_due(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-06T00:00:00Z"))
        );
        let cron = parse("cadence = { cron = \"0 12 * * tue\" }").expect("valid");
        assert_eq!(cron.to_string(), "cron \"0 12 * * tue\" (UTC)");
        for (text, expected) in [
            ("cadence = \"weekly\"", "not a cadence"),
            ("cadence = 14", "not a integer"),
            (
                "cadence = { every = \"14 days\", anchor = \"2026-01-06\" }",
                "`every`",
            ),
            ("cadence = { every = \"14d\" }", "needs an `anchor`"),
            (
                "cadence = { every = \"14d\", anchor = \"Jan 6\" }",
                "`anchor`",
            ),
            (
                "cadence = { every = \"14d\", anchor = \"2026-01-06\", at = \"25:00\" }",
                "`at`",
            ),
            (
                "cadence = { cron = \"0 12 * * 2\", at = \"12:00\" }",
                "belong to `every`",
            ),
            ("cadence = { cron = \"0 12 * *\" }", "`cron`"),
            (
                "cadence = { every = \"1d\", cron = \"0 12 * * 2\", anchor = \"2026-01-06\" }",
                "not both",
            ),
            ("cadence = { evry = \"1d\" }", "unknown cadence key `evry`"),
            ("cadence = {}", "missing `every` or `cron`"),
        ] {
            let message = parse(text).expect_err(text).to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn cadences_serialize_back_to_what_they_read() {
        #[derive(Serialize, Deserialize)]
        struct Holder {
            cadence: Cadence,
        }
        for text in [
            "cadence = \"on-pass\"\n",
            "cadence = { every = \"14d\", anchor = \"2026-01-06\", at = \"12:00\" }\n",
            "cadence = { cron = \"0 12 * * 2\" }\n",
        ] {
            let holder: Holder = toml::from_str(text).expect("valid");
            let again: Holder =
                toml::from_str(&toml::to_string(&holder).expect("serializes")).expect("reparses");
            assert_eq!(again.cadence, holder.cadence, "{text}");
        }
    }
}
