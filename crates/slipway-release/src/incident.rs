//! The texts of incidents: Markdown a person can act on, for the embedded tracker and an external one.
//!
//! An incident opens with a report of the failing compose (what failed, which requirements and why, the
//! end of the build or serial log), gets the same report as a comment for each further failure, and is
//! closed with a note naming the good compose.

use slipway_model::{ComposeId, FailureKind, IncidentReport, LogTail, UnsatisfiedKind};

/// At most this many lines of each log go into a text: enough to see the error, short enough to read.
pub const LOG_TAIL_LINES: usize = 40;
/// At most this many bytes of each log go into a text, for logs with very long lines.
pub const LOG_TAIL_BYTES: usize = 8 * 1024;

/// The title and opening text of a new incident.
pub fn render_incident(report: &IncidentReport) -> (String, String) {
    let title = format!(
        "{}: no good compose ({} on {})",
        report.stream,
        report.kind.describe(),
        report.compose
    );
    let mut body = render_failure(report, false);
    body.push_str(&format!(
        "\n---\nThis incident closes by itself when a compose of `{}` passes its gate. Until then each \
         failing compose adds a comment here.\n",
        report.stream
    ));
    (title, body)
}

/// The comment that a further failure adds to the stream's open incident.
pub fn render_incident_comment(report: &IncidentReport) -> String {
    render_failure(report, true)
}

/// The note an incident is closed with: the good compose that ended it.
pub fn render_incident_close(stream: &str, compose: &ComposeId) -> String {
    format!(
        "Compose **{compose}** of stream `{stream}` passed its gate, so the stream has a good compose \
         again. Closing.\n\nDetails: `slipway decision {compose}`.\n"
    )
}

/// The report's text; `again` for a failure added to an open incident.
fn render_failure(report: &IncidentReport, again: bool) -> String {
    let compose = &report.compose;
    let mut out = String::new();
    let headline = match report.kind {
        FailureKind::BuildFailed => "failed to build",
        FailureKind::GateFailed => "failed its gate",
    };
    if again {
        out.push_str(&format!(
            "Still no good compose in `{}`: compose **{compose}** {headline}.\n\n",
            report.stream
        ));
    } else {
        out.push_str(&format!(
            "Compose **{compose}** of stream `{}` {headline}.\n\n",
            report.stream
        ));
    }
    out.push_str(&format!(
        "- **Failure:** {}\n- **Seen at:** {}\n- **Summary:** {}\n",
        report.kind.describe(),
        report.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        inline(&report.summary)
    ));
    if !report.failed_requirements.is_empty() {
        out.push_str("\n### Failed requirements\n\n");
        for unmet in &report.failed_requirements {
            let scenario = unmet
                .scenario
                .as_deref()
                .map(|s| format!(" [{}]", inline(s)))
                .unwrap_or_default();
            out.push_str(&format!(
                "- `{}`{scenario}: **{}** — {}",
                code_span_text(&unmet.subject),
                kind_word(&unmet.kind),
                inline(&unmet.detail)
            ));
            if !unmet.results.is_empty() {
                // Plain numbers: `#12` would link to issue 12 in GitLab.
                let ids: Vec<String> = unmet.results.iter().map(u64::to_string).collect();
                out.push_str(&format!(" (result ids {})", ids.join(", ")));
            }
            out.push('\n');
        }
    }
    for log in &report.logs {
        out.push_str(&render_log(log));
    }
    out.push_str("\n### What to do\n\n");
    match report.kind {
        FailureKind::BuildFailed => out.push_str(&format!(
            "- Read the build error above; `slipway compose show {compose}` shows the compose.\n\
             - Fix the recipe or wait for the package sources to settle, then `slipway run --once`.\n"
        )),
        FailureKind::GateFailed => out.push_str(&format!(
            "- `slipway decision {compose}` shows the full decision; `slipway results {compose}` the \
             test results and their output.\n\
             - A known, harmless failure can be waived: `slipway waive {compose} TESTCASE --reason \
             TEXT`.\n"
        )),
    }
    out
}

fn kind_word(kind: &UnsatisfiedKind) -> String {
    match kind {
        UnsatisfiedKind::Missing => "no result".into(),
        UnsatisfiedKind::NotPassed(outcome) => outcome.as_str().into(),
        UnsatisfiedKind::NotEnoughResults { passed, required } => {
            format!("{passed} of {required} passes")
        }
        UnsatisfiedKind::Vetoed => "marked failed".into(),
        UnsatisfiedKind::ComposeFailed => "build failed".into(),
        UnsatisfiedKind::ComposeRunning => "still building".into(),
        UnsatisfiedKind::Error => "could not decide".into(),
    }
}

/// A log's last lines in a fenced block that its own content cannot end early.
fn render_log(log: &LogTail) -> String {
    let tail = printable(&tail(&log.text, LOG_TAIL_LINES, LOG_TAIL_BYTES));
    let fence = "`".repeat(longest_backtick_run(&tail).max(2) + 1);
    format!(
        "\n### {} (last lines)\n\n{fence}text\n{}\n{fence}\n",
        inline(&log.name),
        tail.trim_end_matches('\n')
    )
}

/// The last `lines` lines of `text`, and at most its last `bytes` bytes (cut at a character boundary).
pub fn tail(text: &str, lines: usize, bytes: usize) -> String {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    let start = if lines == 0 {
        trimmed.len()
    } else {
        trimmed
            .rmatch_indices('\n')
            .nth(lines - 1)
            .map_or(0, |(i, _)| i + 1)
    };
    let mut start = start.max(trimmed.len().saturating_sub(bytes));
    while !trimmed.is_char_boundary(start) {
        start += 1;
    }
    trimmed[start..].to_string()
}

/// Control characters (terminal escapes from a serial console) written as `\xNN`, so the text shows what
/// was there without driving a reader's terminal or breaking Markdown.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            if c == '\r' {
                continue;
            }
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// Text for one line of Markdown: newlines become spaces, and characters that would start markup are
/// escaped, so a detail taken from a tool cannot reformat the report.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in printable(text).chars() {
        match c {
            '\n' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.trim().to_string()
}

/// Text inside a single-backtick code span: backticks cannot be escaped there, so they are replaced.
fn code_span_text(text: &str) -> String {
    printable(text).replace('`', "'").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use slipway_model::{Outcome, Unsatisfied};

    fn report(kind: FailureKind) -> IncidentReport {
        IncidentReport {
            stream: "bookworm-cloud".into(),
            compose: ComposeId("bookworm-cloud-20261121.0".into()),
            kind,
            summary: "2 of 7 requirements unmet".into(),
            failed_requirements: vec![
                Unsatisfied {
                    subject: "sshd.active".into(),
                    scenario: Some("qcow2.x86_64.uefi".into()),
                    kind: UnsatisfiedKind::NotPassed(Outcome::Failed),
                    detail: "sshd.service is inactive\nsee the journal".into(),
                    results: vec![12, 15],
                },
                Unsatisfied {
                    subject: "rootfs.grown".into(),
                    scenario: None,
                    kind: UnsatisfiedKind::Missing,
                    detail: "no result".into(),
                    results: vec![],
                },
            ],
            logs: vec![LogTail {
                name: "serial log of the boot that ran sshd.active".into(),
                text: (1..=100).map(|i| format!("line {i}\n")).collect::<String>(),
            }],
            at: "2026-11-21T03:12:00Z".parse::<Timestamp>().expect("ts"),
        }
    }

    #[test]
    fn an_opening_report_names_the_compose_the_requirements_and_the_log_tail() {
        let (title, body) = render_incident(&report(FailureKind::GateFailed));
        assert_eq!(
            title,
            "bookworm-cloud: no good compose (gate failed on bookworm-cloud-20261121.0)"
        );
        assert!(
            body.starts_with(
                "Compose **bookworm-cloud-20261121.0** of stream `bookworm-cloud` failed its gate.\n"
            ),
            "{body}"
        );
        assert!(
            body.contains("- `sshd.active` [qcow2.x86\\_64.uefi]: **FAILED** — sshd.service is inactive see the journal (result ids 12, 15)"),
            "{body}"
        );
        assert!(body.contains("- `rootfs.grown`: **no result**"), "{body}");
        // The last 40 lines, not more.
        assert!(body.contains("line 61\n"), "{body}");
        assert!(body.contains("line 100\n```"), "{body}");
        assert!(!body.contains("line 60\n"), "{body}");
        assert!(
            body.contains("`slipway decision bookworm-cloud-20261121.0`"),
            "{body}"
        );
        assert!(body.contains("closes by itself"), "{body}");
    }

    #[test]
    fn a_build_failure_says_so_and_points_at_the_build() {
        let mut report = report(FailureKind::BuildFailed);
        report.failed_requirements.clear();
        report.summary = "mmdebstrap failed: E: Unable to locate package cloud-init".into();
        report.logs = vec![LogTail {
            name: "build".into(),
            text: "I: resolving\nE: Unable to locate package cloud-init\n".into(),
        }];
        let (title, body) = render_incident(&report);
        assert!(title.contains("build failed"), "{title}");
        assert!(body.contains("failed to build"), "{body}");
        assert!(!body.contains("Failed requirements"), "{body}");
        assert!(
            body.contains("### build (last lines)\n\n```text\nI: resolving\nE: Unable"),
            "{body}"
        );
        let comment = render_incident_comment(&report);
        assert!(
            comment.starts_with("Still no good compose in `bookworm-cloud`: compose **bookworm-cloud-20261121.0** failed to build.\n"),
            "{comment}"
        );
        assert!(!comment.contains("closes by itself"), "{comment}");
    }

    #[test]
    fn log_content_cannot_break_out_of_its_block_or_drive_a_terminal() {
        let mut report = report(FailureKind::GateFailed);
        report.logs = vec![LogTail {
            name: "serial".into(),
            text: "ok\n```\n# not a heading\n\u{1b}[31mred\u{1b}[0m\r\n".into(),
        }];
        let (_, body) = render_incident(&report);
        assert!(
            body.contains("````text\nok\n```\n# not a heading\n\\x1b[31mred\\x1b[0m\n````"),
            "{body}"
        );
    }

    #[test]
    fn details_cannot_inject_markup() {
        let mut report = report(FailureKind::GateFailed);
        report.summary = "<script>x</script> *bold* [link](http://x)".into();
        let (_, body) = render_incident(&report);
        assert!(
            body.contains("\\<script\\>x\\</script\\> \\*bold\\* \\[link\\](http://x)"),
            "{body}"
        );
    }

    #[test]
    fn tails_keep_the_last_lines_and_bytes() {
        assert_eq!(tail("a\nb\nc\n", 2, 100), "b\nc");
        assert_eq!(tail("a\nb\nc", 5, 100), "a\nb\nc");
        assert_eq!(tail("abcdef", 5, 3), "def");
        assert_eq!(tail("ééé", 5, 3), "é");
        assert_eq!(tail("", 5, 3), "");
    }

    #[test]
    fn the_closing_note_names_the_good_compose() {
        let body = render_incident_close(
            "bookworm-cloud",
            &ComposeId("bookworm-cloud-20261122.0".into()),
        );
        assert!(body.contains("**bookworm-cloud-20261122.0**"), "{body}");
        assert!(body.contains("passed its gate"), "{body}");
    }
}
