//! Reading what the guest reports on its results port, incrementally, and turning attempts into outcomes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use slipway_model::Outcome;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The most of one boot's results file that is read. Each attempt's output is capped in the guest, so
/// only a guest gone wrong writes more; it must not make the host read without bound.
pub(crate) const RESULTS_CAP: u64 = 256 * 1024 * 1024;

/// The longest line kept while waiting for its end; longer ones are junk and dropped.
const LINE_CAP: usize = 1024 * 1024;

/// How one attempt ended, as the runner saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    /// Exit status 0.
    Passed,
    /// Any other exit status.
    Failed,
    /// Exit status 77: the test decided it does not apply.
    Skipped,
    /// Killed at its timeout.
    TimedOut,
}

impl AttemptEnd {
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Passed => Outcome::Passed,
            Self::Failed => Outcome::Failed,
            Self::Skipped => Outcome::Skipped,
            Self::TimedOut => Outcome::Error,
        }
    }
}

/// One attempt of one test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttemptRecord {
    pub end: AttemptEnd,
    /// The exit status (for a timeout, what `timeout` returned).
    pub status: i64,
    pub seconds: f64,
    /// Its captured output, up to the cap.
    pub output: Vec<u8>,
    /// The output was cut at the cap.
    pub truncated: bool,
}

/// Everything the guest reported so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct GuestReport {
    /// The boot settled (cloud-init done, systemd finished starting).
    pub settled: bool,
    /// The runner ran every test.
    pub done: bool,
    /// Attempts per test, in order.
    pub attempts: BTreeMap<String, Vec<AttemptRecord>>,
    /// Lines that looked like JSON but could not be used.
    pub skipped: usize,
}

/// One line on the results port. Every field is optional: the line's kind is told by which are present.
#[derive(Debug, Deserialize)]
struct Line {
    event: Option<String>,
    #[serde(default)]
    done: bool,
    chunk: Option<String>,
    test: Option<String>,
    attempt: Option<u32>,
    b64: Option<String>,
    outcome: Option<String>,
    status: Option<i64>,
    seconds: Option<f64>,
    #[serde(default)]
    truncated: bool,
}

/// Reads a growing results file from where it left off and folds complete lines into a [`GuestReport`].
#[derive(Debug)]
pub(crate) struct ResultsReader {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// Output chunks of attempts not yet reported, by (test, attempt).
    chunks: BTreeMap<(String, u32), Vec<u8>>,
    report: GuestReport,
}

impl ResultsReader {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
            chunks: BTreeMap::new(),
            report: GuestReport::default(),
        }
    }

    pub fn report(&self) -> &GuestReport {
        &self.report
    }

    /// Reads whatever was appended since the last call.
    pub async fn poll(&mut self) {
        if self.offset >= RESULTS_CAP {
            return;
        }
        let Ok(mut file) = tokio::fs::File::open(&self.path).await else {
            return;
        };
        if file
            .seek(std::io::SeekFrom::Start(self.offset))
            .await
            .is_err()
        {
            return;
        }
        let mut fresh = Vec::new();
        match file
            .take(RESULTS_CAP - self.offset)
            .read_to_end(&mut fresh)
            .await
        {
            Ok(n) => self.offset += n as u64,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), %err, "reading the results file");
                return;
            }
        }
        self.feed(&fresh);
    }

    /// Folds bytes into the report; a line without its end waits for the next call.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        if self.partial.len() + rest.len() <= LINE_CAP {
            self.partial.extend_from_slice(rest);
        } else {
            // A line this long is not one the runner writes: drop it and resynchronize at the next newline.
            self.partial.clear();
            self.report.skipped += 1;
        }
    }

    fn line(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        // The tty may add carriage returns and the port may carry NULs before the guest opens it.
        let line = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if !line.starts_with('{') {
            return;
        }
        let parsed: Line = match serde_json::from_str(line) {
            Ok(parsed) => parsed,
            Err(err) => {
                tracing::warn!(%err, line = %truncate(line, 200), "skipping a malformed results line");
                self.report.skipped += 1;
                return;
            }
        };
        if parsed.done {
            self.report.done = true;
        }
        if parsed.event.as_deref() == Some("settled") {
            self.report.settled = true;
        }
        if let (Some(test), Some(attempt), Some(b64)) = (&parsed.chunk, parsed.attempt, &parsed.b64)
        {
            match decode_base64(b64) {
                Ok(bytes) => self
                    .chunks
                    .entry((test.clone(), attempt))
                    .or_default()
                    .extend_from_slice(&bytes),
                Err(err) => {
                    tracing::warn!(%test, %err, "skipping a damaged output chunk");
                    self.report.skipped += 1;
                }
            }
            return;
        }
        if let (Some(test), Some(attempt), Some(outcome)) =
            (parsed.test, parsed.attempt, parsed.outcome)
        {
            let end = match outcome.as_str() {
                "PASSED" => AttemptEnd::Passed,
                "FAILED" => AttemptEnd::Failed,
                "SKIPPED" => AttemptEnd::Skipped,
                "TIMEOUT" => AttemptEnd::TimedOut,
                other => {
                    tracing::warn!(%test, outcome = other, "skipping an attempt without a known outcome");
                    self.report.skipped += 1;
                    return;
                }
            };
            let output = self
                .chunks
                .remove(&(test.clone(), attempt))
                .unwrap_or_default();
            self.report
                .attempts
                .entry(test)
                .or_default()
                .push(AttemptRecord {
                    end,
                    status: parsed.status.unwrap_or(-1),
                    seconds: parsed.seconds.unwrap_or(0.0).max(0.0),
                    output,
                    truncated: parsed.truncated,
                });
        }
    }
}

/// The final outcome of a test from its attempts: PASSED if any attempt passed (flaky when an earlier
/// one did not), else the last attempt's outcome (a timeout is ERROR). `None` when there is no attempt.
pub(crate) fn decide(test: &str, attempts: &[AttemptRecord]) -> Option<(Outcome, bool, String)> {
    let last = attempts.last()?;
    if let Some(pass) = attempts.iter().position(|a| a.end == AttemptEnd::Passed) {
        let note = last_line(&attempts[pass].output).unwrap_or_else(|| "passed".into());
        if pass == 0 {
            return Some((Outcome::Passed, false, note));
        }
        let first = &attempts[0];
        return Some((
            Outcome::Passed,
            true,
            format!(
                "flaky: attempt 1 {}, attempt {} passed: {note}",
                describe(first),
                pass + 1
            ),
        ));
    }
    let note = match last.end {
        AttemptEnd::TimedOut => format!(
            "{test} timed out after {:.0}s{}",
            last.seconds,
            last_line(&last.output).map_or(String::new(), |l| format!("; last output: {l}"))
        ),
        AttemptEnd::Skipped => {
            last_line(&last.output).unwrap_or_else(|| "skipped (exit status 77)".into())
        }
        _ => {
            let line = last_line(&last.output).unwrap_or_else(|| "(no output)".into());
            format!("exit status {}: {line}", last.status)
        }
    };
    let note = if attempts.len() > 1 && last.end != AttemptEnd::Skipped {
        format!("{note} (all {} attempts)", attempts.len())
    } else {
        note
    };
    Some((last.end.outcome(), false, note))
}

fn describe(attempt: &AttemptRecord) -> String {
    match attempt.end {
        AttemptEnd::TimedOut => "timed out".into(),
        AttemptEnd::Failed => format!("failed with exit status {}", attempt.status),
        AttemptEnd::Skipped => "skipped".into(),
        AttemptEnd::Passed => "passed".into(),
    }
}

/// The last non-empty line of an output, cleaned for a one-line note and capped.
pub(crate) fn last_line(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let line = text
        .lines()
        .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|l| l.trim().to_string())
        .rfind(|l| !l.is_empty())?;
    Some(truncate(&line, 500).to_string())
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Standard base64 with padding, as coreutils' `base64` writes it.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
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

/// Decodes standard base64 (with or without padding) into text, lossily for invalid UTF-8.
#[cfg(test)]
pub(crate) fn decode_text(b64: &str) -> Result<String, String> {
    decode_base64(b64).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Standard-alphabet base64, as coreutils' `base64` writes it. Whitespace is ignored.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
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

    fn attempt_line(test: &str, n: u32, outcome: &str, status: i64, truncated: bool) -> String {
        format!(
            "{{\"test\":\"{test}\",\"attempt\":{n},\"outcome\":\"{outcome}\",\"status\":{status},\"seconds\":1.5,\"truncated\":{truncated}}}\r\n"
        )
    }

    fn chunk_line(test: &str, n: u32, text: &[u8]) -> String {
        format!(
            "{{\"chunk\":\"{test}\",\"attempt\":{n},\"i\":0,\"b64\":\"{}\"}}\n",
            encode_base64(text)
        )
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
            assert_eq!(
                decode_text(&encode_base64(text.as_bytes())).as_deref(),
                Ok(text),
                "{text:?}"
            );
        }
        assert_eq!(decode_text("YW Jj\nZA==").as_deref(), Ok("abcd"));
        assert!(decode_text("a").is_err());
        assert!(decode_text("YW*j").is_err());
        assert!(decode_text("YQ===").is_err());
    }

    #[test]
    fn lines_split_across_reads_are_joined_and_junk_is_ignored() {
        let mut reader = ResultsReader::new(Path::new("/nonexistent"));
        let text = String::from("\0\0garbage from the UART\r\n{\"event\":\"settled\"}\n")
            + &chunk_line("a", 1, b"line one\nall good\n")
            + &attempt_line("a", 1, "PASSED", 0, false)
            + "{\"test\":\"b\",\"outc\n{\"test\":\"b\",\"attempt\":1,\"outcome\":\"MAYBE\"}\n"
            + "{\"done\":true}\n";
        let (first, second) = text.as_bytes().split_at(70);
        reader.feed(first);
        assert!(reader.report().attempts.is_empty());
        reader.feed(second);
        let report = reader.report();
        assert!(report.settled && report.done);
        assert_eq!(report.skipped, 2);
        let a = &report.attempts["a"];
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].output, b"line one\nall good\n");
        assert_eq!(
            decide("a", a),
            Some((Outcome::Passed, false, "all good".into()))
        );
        assert!(!report.attempts.contains_key("b"));
    }

    #[test]
    fn outcomes_follow_the_attempts() {
        let mut reader = ResultsReader::new(Path::new("/nonexistent"));
        let text = chunk_line("flaky", 1, b"not yet\n")
            + &attempt_line("flaky", 1, "FAILED", 1, false)
            + &chunk_line("flaky", 2, b"now\n")
            + &attempt_line("flaky", 2, "PASSED", 0, false)
            + &chunk_line("bad", 1, b"wrong\n")
            + &attempt_line("bad", 1, "FAILED", 3, false)
            + &attempt_line("bad", 2, "FAILED", 3, false)
            + &attempt_line("hang", 1, "TIMEOUT", 124, false)
            + &attempt_line("hang", 2, "TIMEOUT", 124, false)
            + &chunk_line("noisy", 1, b"\x1b[31m\x00junk\xff\n")
            + &attempt_line("noisy", 1, "PASSED", 0, true)
            + &attempt_line("na", 1, "SKIPPED", 77, false);
        reader.feed(text.as_bytes());
        let report = reader.report();
        let (outcome, flaky, note) = decide("flaky", &report.attempts["flaky"]).expect("flaky");
        assert_eq!((outcome, flaky), (Outcome::Passed, true));
        assert_eq!(
            note,
            "flaky: attempt 1 failed with exit status 1, attempt 2 passed: now"
        );
        let (outcome, flaky, note) = decide("bad", &report.attempts["bad"]).expect("bad");
        assert_eq!((outcome, flaky), (Outcome::Failed, false));
        assert_eq!(note, "exit status 3: (no output) (all 2 attempts)");
        let (outcome, _, note) = decide("hang", &report.attempts["hang"]).expect("hang");
        assert_eq!(outcome, Outcome::Error);
        assert!(note.starts_with("hang timed out after 2s"), "{note}");
        let noisy = &report.attempts["noisy"][0];
        assert!(noisy.truncated);
        assert_eq!(
            decide("noisy", &report.attempts["noisy"]).expect("noisy").0,
            Outcome::Passed
        );
        assert_eq!(
            decide("na", &report.attempts["na"]).expect("na").0,
            Outcome::Skipped
        );
        assert_eq!(decide("none", &[]), None);
    }

    #[tokio::test]
    async fn reading_picks_up_where_it_stopped() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results");
        let mut reader = ResultsReader::new(&path);
        reader.poll().await;
        assert!(!reader.report().settled);
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(b"{\"event\":\"sett").expect("write");
        reader.poll().await;
        assert!(!reader.report().settled);
        file.write_all(b"led\"}\n{\"done\":true}\n").expect("write");
        reader.poll().await;
        assert!(reader.report().settled && reader.report().done);
    }

    #[test]
    fn overlong_lines_are_dropped() {
        let mut reader = ResultsReader::new(Path::new("/nonexistent"));
        reader.feed(&vec![b'x'; LINE_CAP + 10]);
        reader.feed(b"more junk\n{\"done\":true}\n");
        assert!(reader.report().done);
        assert_eq!(reader.report().skipped, 1);
    }
}
