//! `CronSchedule::next_after` against a brute-force scan, minute by minute, over short windows.
//!
//! Each generated field carries the set of values it means, computed here from how it was written, so
//! the scan does not share the parser it checks.

use std::collections::BTreeSet;

use jiff::tz::Offset;
use jiff::Timestamp;
use proptest::prelude::*;
use slipway_model::CronSchedule;

/// A field as written, the values it selects, and whether it starts with `*` (which decides how the two
/// day fields combine).
#[derive(Debug, Clone)]
struct Field {
    text: String,
    values: BTreeSet<u32>,
    star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How a single value is written: a number, or for months and weekdays sometimes a name (and, alone,
/// Sunday sometimes as 7: style 2, which ranges do not use, since `0-7` and `7-7` mean other sets).
fn spell(kind: u32, value: u32, style: u8) -> String {
    match (kind, style % 3) {
        (3, 1) => MONTHS[value as usize - 1].to_string(),
        (3, 2) => MONTHS[value as usize - 1].to_uppercase(),
        (4, 1) if value < 7 => WEEKDAYS[value as usize].to_string(),
        (4, 2) if value == 0 => "7".to_string(),
        _ => value.to_string(),
    }
}

fn item(kind: u32, min: u32, max: u32) -> impl Strategy<Value = (String, BTreeSet<u32>)> {
    (min..=max, min..=max, 1u32..=7, 0u8..3, 0u8..3, 0u8..4).prop_map(
        move |(a, b, step, style_a, style_b, shape)| {
            let (low, high) = (a.min(b), a.max(b));
            match shape {
                0 => (spell(kind, a, style_a), BTreeSet::from([a])),
                1 => (
                    format!(
                        "{}-{}",
                        spell(kind, low, style_a % 2),
                        spell(kind, high, style_b % 2)
                    ),
                    (low..=high).collect(),
                ),
                2 => (
                    format!("{}-{}/{step}", spell(kind, low, style_a % 2), high),
                    (low..=high).step_by(step as usize).collect(),
                ),
                _ => (spell(kind, a, style_b), BTreeSet::from([a])),
            }
        },
    )
}

fn field(kind: u32, min: u32, max: u32) -> impl Strategy<Value = Field> {
    let star = Just(Field {
        text: "*".into(),
        values: (min..=max).collect(),
        star: true,
    });
    let stepped = (2u32..=9).prop_map(move |n| Field {
        text: format!("*/{n}"),
        values: (min..=max).step_by(n as usize).collect(),
        star: true,
    });
    let list = prop::collection::vec(item(kind, min, max), 1..4).prop_map(|items| {
        let text = items
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let values = items.into_iter().flat_map(|(_, v)| v).collect();
        Field {
            text,
            values,
            star: false,
        }
    });
    prop_oneof![1 => star, 1 => stepped, 3 => list]
}

#[derive(Debug, Clone)]
struct Expression {
    fields: [Field; 5],
}

impl Expression {
    fn text(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn fires_at(&self, t: Timestamp) -> bool {
        let dt = Offset::UTC.to_datetime(t);
        let [minute, hour, day, month, weekday] = &self.fields;
        let has = |f: &Field, v: i8| f.values.contains(&(v as u32));
        let sunday_zero = dt.weekday().to_sunday_zero_offset();
        let weekday_ok = has(weekday, sunday_zero) || (sunday_zero == 0 && has(weekday, 7));
        let day_ok = has(day, dt.day());
        let days = if day.star || weekday.star {
            day_ok && weekday_ok
        } else {
            day_ok || weekday_ok
        };
        has(minute, dt.minute()) && has(hour, dt.hour()) && has(month, dt.month()) && days
    }
}

fn expression() -> impl Strategy<Value = Expression> {
    (
        field(0, 0, 59),
        field(1, 0, 23),
        field(2, 1, 31),
        field(3, 1, 12),
        field(4, 0, 7),
    )
        .prop_map(|(a, b, c, d, e)| Expression {
            fields: [a, b, c, d, e],
        })
}

/// Two days and a bit, so windows cross midnight, month ends and the odd year end.
const WINDOW_MINUTES: i64 = 3000;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn next_after_is_the_first_minute_a_scan_finds(
        expression in expression(),
        // 2020-01-01 to 2031-01-01, to the second.
        start in 1_577_836_800i64..1_924_992_000,
    ) {
        let Ok(schedule) = expression.text().parse::<CronSchedule>() else {
            // Only an expression that can never fire is refused; the scan must agree over a long span.
            let mut t = start.div_euclid(60) * 60;
            for _ in 0..(60 * 24 * 366 * 4) / 60 {
                // Hourly steps are enough: a schedule that never fires matches no minute of any hour.
                for m in 0..60 {
                    let at = Timestamp::from_second(t + m * 60).expect("in range");
                    prop_assert!(!expression.fires_at(at), "{} refused but fires at {at}", expression.text());
                }
                t += 3600;
            }
            return Ok(());
        };
        let after = Timestamp::from_second(start).expect("in range");
        let scanned = (1..=WINDOW_MINUTES)
            .map(|k| Timestamp::from_second((start.div_euclid(60) + k) * 60).expect("in range"))
            .find(|t| expression.fires_at(*t));
        let next = schedule.next_after(after);
        match scanned {
            Some(first) => prop_assert_eq!(next, Some(first), "{}", expression.text()),
            None => {
                let window_end = (start.div_euclid(60) + WINDOW_MINUTES) * 60;
                let next = next.expect("a schedule that parses fires some day");
                prop_assert!(next.as_second() > window_end, "{} gave {next}", expression.text());
                prop_assert!(expression.fires_at(next), "{} gave {next}, which the scan rejects", expression.text());
            }
        }
    }
}
