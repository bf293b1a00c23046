//! Reading what the guest reported on its results port, and turning it into one outcome per testcase.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use slipway_model::{Lock, Outcome};
use tokio::io::AsyncReadExt;

use crate::{CaseOutcome, DEFAULT_BATTERY};

/// The most of the results file that is read: the guest writes a few tens of KiB; anything past this is a
/// guest gone wrong, and must not make the host read without bound.
pub(crate) const RESULTS_CAP: u64 = 1024 * 1024;

/// How many lock differences a FAILED note lists before summarizing the rest.
const DIFFERENCES_SHOWN: usize = 10;

/// Everything the guest reported, as far as it got.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct GuestReport {
    /// Testcases the guest decided itself: outcome and note.
    pub cases: BTreeMap<String, (Outcome, String)>,
    /// The guest's hostname.
    pub hostname: Option<String>,
    /// The guest's installed packages, `dpkg-query` format.
    pub dpkg_query: Option<String>,
    /// Why the package list could not be used, when it arrived damaged.
    pub dpkg_query_error: Option<String>,
    /// Boot timing text (`systemd-analyze` and friends), for people.
    pub boot_timing: Option<String>,
    /// The battery finished.
    pub done: bool,
    /// Lines that looked like JSON but could not be used.
    pub skipped: usize,
}

/// One line on the results port. Every field is optional: the line's kind is told by which are present.
#[derive(Debug, Deserialize)]
struct Line {
    testcase: Option<String>,
    outcome: Option<String>,
    #[serde(default)]
    note: String,
    fact: Option<String>,
    value: Option<String>,
    b64: Option<String>,
    #[serde(default)]
    done: bool,
}

/// Parses the results port's output. Lines that are not JSON objects (boot noise, a garbled byte from the
/// UART) are ignored; JSON objects that do not parse or say nothing usable are skipped with a warning.
pub(crate) fn parse(bytes: &[u8]) -> GuestReport {
    let mut report = GuestReport::default();
    let text = String::from_utf8_lossy(bytes);
    for raw in text.split('\n') {
        // The tty may add carriage returns and the port may carry NULs before the guest opens it.
        let line = raw.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if !line.starts_with('{') {
            continue;
        }
        let parsed: Line = match serde_json::from_str(line) {
            Ok(parsed) => parsed,
            Err(err) => {
                tracing::warn!(%err, line = %truncate(line, 200), "skipping a malformed results line");
                report.skipped += 1;
                continue;
            }
        };
        if parsed.done {
            report.done = true;
        }
        if let Some(testcase) = parsed.testcase {
            let outcome = parsed.outcome.as_deref().map(str::parse::<Outcome>);
            match outcome {
                Some(Ok(outcome)) => {
                    report.cases.insert(testcase, (outcome, parsed.note));
                }
                _ => {
                    tracing::warn!(%testcase, outcome = ?parsed.outcome, "skipping a result without a known outcome");
                    report.skipped += 1;
                }
            }
            continue;
        }
        match (parsed.fact.as_deref(), parsed.value, parsed.b64) {
            (Some("hostname"), Some(value), _) => report.hostname = Some(value),
            (Some("dpkg-query"), _, Some(b64)) => match decode_text(&b64) {
                Ok(text) => {
                    report.dpkg_query = Some(text);
                    report.dpkg_query_error = None;
                }
                Err(err) => report.dpkg_query_error = Some(err),
            },
            (Some("boot-timing"), _, Some(b64)) => report.boot_timing = decode_text(&b64).ok(),
            (Some(other), _, _) => tracing::debug!(fact = other, "ignoring an unknown fact"),
            (None, _, _) => {}
        }
    }
    report
}

/// Reads at most [`RESULTS_CAP`] bytes of the results file; a file that is not there yet reads as empty.
pub(crate) async fn read_capped(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(file) = tokio::fs::File::open(path).await {
        if let Err(err) = file.take(RESULTS_CAP).read_to_end(&mut out).await {
            tracing::warn!(path = %path.display(), %err, "reading the results file");
        }
    }
    out
}

/// Turns the guest's report into one outcome per battery testcase, in battery order.
///
/// `missing_note` says why a testcase that never arrived is ERROR (the deadline passed, the VM stopped).
pub(crate) fn evaluate(
    report: &GuestReport,
    expected_hostname: &str,
    lock: &Lock,
    missing_note: &str,
) -> Vec<CaseOutcome> {
    DEFAULT_BATTERY
        .iter()
        .map(|&testcase| {
            let (outcome, note) = match testcase {
                "cloud-init.hostname" => match &report.hostname {
                    Some(found) if found == expected_hostname => {
                        (Outcome::Passed, format!("hostname is {expected_hostname}"))
                    }
                    Some(found) => (
                        Outcome::Failed,
                        format!("hostname is {found:?}, meta-data said {expected_hostname:?}"),
                    ),
                    None => (Outcome::Error, missing_note.to_string()),
                },
                "packages.match-lock" => match (&report.dpkg_query, &report.dpkg_query_error) {
                    (Some(listing), _) => compare_lock(lock, listing),
                    (None, Some(err)) => (
                        Outcome::Error,
                        format!("the guest's package list was unreadable: {err}"),
                    ),
                    (None, None) => (Outcome::Error, missing_note.to_string()),
                },
                _ => match report.cases.get(testcase) {
                    Some((outcome, note)) => (*outcome, note.clone()),
                    None => (Outcome::Error, missing_note.to_string()),
                },
            };
            CaseOutcome {
                testcase: testcase.to_string(),
                outcome,
                note,
            }
        })
        .collect()
}

fn compare_lock(lock: &Lock, listing: &str) -> (Outcome, String) {
    let found = Lock::from_dpkg_query(listing);
    if found.packages.is_empty() {
        return (
            Outcome::Error,
            "the guest reported no installed packages".to_string(),
        );
    }
    let differences = lock.differences(&found);
    if differences.is_empty() {
        return (
            Outcome::Passed,
            format!(
                "all {} installed packages match the lock",
                found.packages.len()
            ),
        );
    }
    let mut note = format!(
        "{} difference(s) from the lock: {}",
        differences.len(),
        differences
            .iter()
            .take(DIFFERENCES_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    if differences.len() > DIFFERENCES_SHOWN {
        note.push_str(&format!(
            "; and {} more",
            differences.len() - DIFFERENCES_SHOWN
        ));
    }
    (Outcome::Failed, note)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Decodes standard base64 (with or without padding) into text, lossily for invalid UTF-8.
pub(crate) fn decode_text(b64: &str) -> Result<String, String> {
    decode_base64(b64).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Standard-alphabet base64, as coreutils' `base64` writes it. Whitespace is ignored.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let symbols: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let body = symbols
        .iter()
        .rposition(|&c| c != b'=')
        .map_or(&symbols[..0], |end| &symbols[..=end]);
    if symbols.len() - body.len() > 2 || body.len() % 4 == 1 {
        return Err("malformed base64 (bad length or padding)".to_string());
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or_else(|| format!("malformed base64 (byte {c:#04x})"))?;
            acc |= v << (18 - 6 * i);
        }
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        // A small encoder for tests only, to feed the decoder what coreutils would.
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in text.as_bytes().chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    const DPKG: &str = "bash\t5.2.15-2+b7\tamd64\nbase-files\t12.4+deb12u8\tamd64\n";

    fn lock() -> Lock {
        Lock::from_dpkg_query(DPKG)
    }

    fn case<'a>(cases: &'a [CaseOutcome], testcase: &str) -> &'a CaseOutcome {
        cases
            .iter()
            .find(|c| c.testcase == testcase)
            .unwrap_or_else(|| panic!("no {testcase} in {cases:?}"))
    }

    fn complete_output(hostname: &str, dpkg: &str) -> String {
        let mut out = String::from("\0\0garbage from the UART\r\n");
        for testcase in [
            "boot.multi-user",
            "cloud-init.finished",
            "sshd.active",
            "rootfs.grown",
            "systemd.no-failed-units",
        ] {
            out.push_str(&format!(
                "{{\"testcase\":\"{testcase}\",\"outcome\":\"PASSED\",\"note\":\"ok\"}}\r\n"
            ));
        }
        out.push_str(&format!(
            "{{\"fact\":\"hostname\",\"value\":\"{hostname}\"}}\n"
        ));
        out.push_str(&format!(
            "{{\"fact\":\"dpkg-query\",\"b64\":\"{}\"}}\n",
            b64(dpkg)
        ));
        out.push_str("{\"done\":true,\"uptime\":\"12.5\"}\n");
        out
    }

    #[test]
    fn base64_round_trips_every_length() {
        for text in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "bash\t5.2\tamd64\n",
            "ü\u{0}x",
        ] {
            assert_eq!(decode_text(&b64(text)).as_deref(), Ok(text), "{text:?}");
        }
        assert_eq!(decode_text("YW Jj\nZA==").as_deref(), Ok("abcd"));
        assert!(decode_text("a").is_err());
        assert!(decode_text("YW*j").is_err());
        assert!(decode_text("YQ===").is_err());
    }

    #[test]
    fn a_complete_run_passes_every_case() {
        let report = parse(complete_output("slipway-test-1", DPKG).as_bytes());
        assert!(report.done);
        assert_eq!(report.skipped, 0);
        let cases = evaluate(&report, "slipway-test-1", &lock(), "unused");
        let names: Vec<&str> = cases.iter().map(|c| c.testcase.as_str()).collect();
        assert_eq!(names, DEFAULT_BATTERY);
        assert!(
            cases.iter().all(|c| c.outcome == Outcome::Passed),
            "{cases:?}"
        );
        assert_eq!(
            case(&cases, "packages.match-lock").note,
            "all 2 installed packages match the lock"
        );
    }

    #[test]
    fn junk_and_malformed_lines_are_skipped() {
        let mut text = String::from("{\"testcase\":\"sshd.active\",\"outc\n");
        text.push_str("not json at all {\"done\":true}\n");
        text.push_str("{\"testcase\":\"sshd.active\",\"outcome\":\"MAYBE\"}\n");
        text.push_str("{\"testcase\":\"boot.multi-user\",\"outcome\":\"FAILED\",\"note\":\"multi-user.target is failed\"}\n");
        text.push_str("\u{fffd}\u{1b}[0m\n{\"unknown\":1}\n");
        let report = parse(text.as_bytes());
        assert!(!report.done, "a done inside junk does not count");
        assert_eq!(report.skipped, 2);
        let cases = evaluate(&report, "h", &lock(), "the VM stopped");
        assert_eq!(cases[0].outcome, Outcome::Failed);
        assert_eq!(cases[0].note, "multi-user.target is failed");
        for case in &cases[1..] {
            assert_eq!(case.outcome, Outcome::Error, "{case:?}");
            assert_eq!(case.note, "the VM stopped");
        }
    }

    #[test]
    fn missing_cases_are_errors() {
        let report = parse(b"");
        let cases = evaluate(&report, "h", &lock(), "deadline of 15s passed");
        assert_eq!(cases.len(), DEFAULT_BATTERY.len());
        assert!(cases
            .iter()
            .all(|c| c.outcome == Outcome::Error && c.note.contains("deadline")));
    }

    #[test]
    fn a_wrong_hostname_fails() {
        let report = parse(complete_output("debian", DPKG).as_bytes());
        let cases = evaluate(&report, "slipway-test-1", &lock(), "unused");
        assert_eq!(cases[2].testcase, "cloud-init.hostname");
        assert_eq!(cases[2].outcome, Outcome::Failed);
        assert!(cases[2].note.contains("\"debian\""), "{}", cases[2].note);
    }

    #[test]
    fn a_lock_mismatch_fails_naming_the_differences() {
        let guest = "bash\t5.2.15-2+b8\tamd64\nbase-files\t12.4+deb12u8\tamd64\nvim\t9\tamd64\n";
        let report = parse(complete_output("h", guest).as_bytes());
        let cases = evaluate(&report, "h", &lock(), "unused");
        let packages = &case(&cases, "packages.match-lock");
        assert_eq!(packages.testcase, "packages.match-lock");
        assert_eq!(packages.outcome, Outcome::Failed);
        assert_eq!(
            packages.note,
            "2 difference(s) from the lock: bash:amd64 is 5.2.15-2+b8, lock says 5.2.15-2+b7; \
             unexpected vim:amd64 9"
        );
    }

    #[test]
    fn long_difference_lists_are_summarized() {
        let guest: String = (0..25).map(|i| format!("pkg{i:02}\t1\tamd64\n")).collect();
        let (outcome, note) = compare_lock(&Lock::default(), &guest);
        assert_eq!(outcome, Outcome::Failed);
        assert!(note.starts_with("25 difference(s)"), "{note}");
        assert!(note.ends_with("; and 15 more"), "{note}");
    }

    #[test]
    fn a_damaged_package_list_is_an_error() {
        let report = parse(b"{\"fact\":\"dpkg-query\",\"b64\":\"!!!\"}\n");
        let cases = evaluate(&report, "h", &lock(), "unused");
        assert_eq!(case(&cases, "packages.match-lock").outcome, Outcome::Error);
        assert!(
            case(&cases, "packages.match-lock")
                .note
                .contains("unreadable"),
            "{}",
            case(&cases, "packages.match-lock").note
        );
        let empty = parse(b"{\"fact\":\"dpkg-query\",\"b64\":\"\"}\n");
        assert_eq!(
            evaluate(&empty, "h", &lock(), "unused")[5].outcome,
            Outcome::Error
        );
    }

    #[tokio::test]
    async fn reading_is_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results");
        assert!(read_capped(&path).await.is_empty());
        std::fs::write(&path, vec![b'x'; RESULTS_CAP as usize + 10]).expect("write");
        assert_eq!(read_capped(&path).await.len(), RESULTS_CAP as usize);
    }
}
