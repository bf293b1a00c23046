//! JUnit XML reports of test runs, in the shape Maven Surefire writes and Jenkins' JUnit plugin reads.
//!
//! One `<testsuite>` per run and one `<testcase>` per result. FAILED and NEEDS_INSPECTION become
//! `<failure>`, ERROR (and a result still QUEUED or RUNNING, which never finished) `<error>`, SKIPPED
//! `<skipped>`. Earlier attempts stay visible the way Surefire shows its reruns: a result that passed on a
//! rerun carries a `<flakyFailure>` (or `<flakyError>`) per failed attempt, and a result that failed every
//! attempt carries a `<rerunFailure>` (or `<rerunError>`) per earlier attempt. The note is the testcase's
//! `<system-out>`.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use slipway_model::{Attempt, Outcome, TestResult, TestRun};

/// How a result counts in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Passed,
    Failure,
    Error,
    Skipped,
}

fn kind(outcome: Outcome) -> Kind {
    match outcome {
        Outcome::Passed => Kind::Passed,
        Outcome::Failed | Outcome::NeedsInspection => Kind::Failure,
        Outcome::Skipped => Kind::Skipped,
        // A result that never finished is no pass: it counts as an error.
        Outcome::Error | Outcome::Queued | Outcome::Running => Kind::Error,
    }
}

/// Counts of a report's testcases, as the `<testsuite>` attributes give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Every testcase.
    pub tests: usize,
    /// FAILED and NEEDS_INSPECTION.
    pub failures: usize,
    /// ERROR, and results that never finished.
    pub errors: usize,
    /// SKIPPED.
    pub skipped: usize,
    /// Passed on a rerun after failing.
    pub flaky: usize,
}

impl Counts {
    /// The counts of a run's results.
    pub fn of(results: &[TestResult]) -> Self {
        let mut counts = Counts {
            tests: results.len(),
            ..Counts::default()
        };
        for result in results {
            match kind(result.outcome) {
                Kind::Passed => {}
                Kind::Failure => counts.failures += 1,
                Kind::Error => counts.errors += 1,
                Kind::Skipped => counts.skipped += 1,
            }
            if result.flaky {
                counts.flaky += 1;
            }
        }
        counts
    }
}

/// Renders a test run and its results as a JUnit XML document.
pub fn render(run: &TestRun, results: &[TestResult]) -> String {
    let counts = Counts::of(results);
    let duration = run.finished_at.duration_since(run.started_at).as_secs_f64();
    let name = if run.description.is_empty() {
        run.id.as_str()
    } else {
        run.description.as_str()
    };
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" \
         timestamp=\"{}\" hostname=\"slipway\" id=\"{}\">",
        attr(name),
        counts.tests,
        counts.failures,
        counts.errors,
        counts.skipped,
        seconds(duration.max(0.0)),
        naive_time(run.started_at),
        attr(run.id.as_str()),
    );
    out.push_str("  <properties>\n");
    for (key, value) in [
        ("run", run.id.as_str()),
        ("compose", run.compose.as_str()),
        ("plan", run.plan.as_str()),
        ("artifact", run.artifact.as_str()),
        ("flaky", &counts.flaky.to_string()),
    ] {
        let _ = writeln!(
            out,
            "    <property name=\"{}\" value=\"{}\"/>",
            attr(key),
            attr(value)
        );
    }
    out.push_str("  </properties>\n");
    for result in results {
        testcase(&mut out, run, result);
    }
    out.push_str("</testsuite>\n");
    out
}

fn testcase(out: &mut String, run: &TestRun, result: &TestResult) {
    let classname = if result.scenario.is_empty() {
        if result.artifact.is_empty() {
            run.artifact.as_str()
        } else {
            result.artifact.as_str()
        }
    } else {
        result.scenario.as_str()
    };
    let time: f64 = result.attempts.iter().map(|a| a.seconds.max(0.0)).sum();
    let _ = writeln!(
        out,
        "  <testcase name=\"{}\" classname=\"{}\" time=\"{}\">",
        attr(&result.testcase),
        attr(classname),
        seconds(time),
    );
    let final_kind = kind(result.outcome);
    let message = summary(&result.note, result.outcome);
    match final_kind {
        Kind::Passed => {}
        Kind::Failure | Kind::Error => {
            let tag = if final_kind == Kind::Failure {
                "failure"
            } else {
                "error"
            };
            let _ = writeln!(
                out,
                "    <{tag} message=\"{}\" type=\"{}\">{}</{tag}>",
                attr(&message),
                result.outcome,
                text(&result.note)
            );
        }
        Kind::Skipped => {
            let _ = writeln!(out, "    <skipped message=\"{}\"/>", attr(&message));
        }
    }
    // The last attempt is the result itself; the ones before it are what was rerun.
    let earlier = result.attempts.len().saturating_sub(1);
    let total = result.attempts.len();
    for (index, attempt) in result.attempts[..earlier].iter().enumerate() {
        interim(out, final_kind, attempt, index + 1, total);
    }
    let mut system_out = result.note.clone();
    if let Some(log) = &result.log {
        if !system_out.is_empty() {
            system_out.push('\n');
        }
        let _ = write!(system_out, "log: sha256 {}", log.as_str());
    }
    if !system_out.is_empty() {
        let _ = writeln!(out, "    <system-out>{}</system-out>", text(&system_out));
    }
    out.push_str("  </testcase>\n");
}

/// An earlier attempt that did not pass, as a flaky or rerun element.
fn interim(out: &mut String, final_kind: Kind, attempt: &Attempt, number: usize, total: usize) {
    let attempt_kind = kind(attempt.outcome);
    if matches!(attempt_kind, Kind::Passed | Kind::Skipped) {
        return;
    }
    let prefix = if final_kind == Kind::Passed {
        "flaky"
    } else {
        "rerun"
    };
    let suffix = if attempt_kind == Kind::Failure {
        "Failure"
    } else {
        "Error"
    };
    let message = format!(
        "attempt {number} of {total}: {} after {}s",
        attempt.outcome,
        seconds(attempt.seconds.max(0.0))
    );
    let _ = write!(
        out,
        "    <{prefix}{suffix} message=\"{}\" type=\"{}\">",
        attr(&message),
        attempt.outcome
    );
    if let Some(output) = &attempt.output {
        let truncated = if attempt.truncated {
            " (truncated)"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<system-out>output: sha256 {}{truncated}</system-out>",
            output.as_str()
        );
    }
    let _ = writeln!(out, "</{prefix}{suffix}>");
}

/// The first line of a note, shortened, for a `message` attribute.
fn summary(note: &str, outcome: Outcome) -> String {
    let line = note.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if line.is_empty() {
        return outcome.to_string();
    }
    let mut short: String = line.chars().take(200).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    short
}

/// Seconds with millisecond precision, as JUnit readers parse them.
fn seconds(value: f64) -> String {
    format!("{value:.3}")
}

/// A time as JUnit's `timestamp` attribute wants it: ISO 8601 in UTC without an offset.
fn naive_time(at: Timestamp) -> String {
    at.to_zoned(TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// Writes `c` escaped; characters XML 1.0 cannot carry at all (terminal escapes in a serial log) are
/// written as `\xNN` so the document stays well-formed and the text stays readable.
fn escape_into(out: &mut String, value: &str, in_attribute: bool) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if in_attribute => out.push_str("&quot;"),
            '\'' if in_attribute => out.push_str("&apos;"),
            // Attribute values are normalized by parsers; keep line breaks and tabs as references.
            '\n' if in_attribute => out.push_str("&#10;"),
            '\r' if in_attribute => out.push_str("&#13;"),
            '\t' if in_attribute => out.push_str("&#9;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_into(&mut out, value, true);
    out
}

fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_into(&mut out, value, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_readable_escapes() {
        assert_eq!(text("a\u{1b}[0m<b>&"), "a\\x1b[0m&lt;b&gt;&amp;");
        assert_eq!(
            attr("say \"hi\"\n'x'"),
            "say &quot;hi&quot;&#10;&apos;x&apos;"
        );
    }

    #[test]
    fn summaries_take_the_first_non_empty_line() {
        assert_eq!(summary("\n  \nfirst\nsecond", Outcome::Failed), "first");
        assert_eq!(summary("", Outcome::Error), "ERROR");
    }
}
