//! `slipway serve` and `slipway results` over a project whose store is filled directly (no compose, no
//! boot): the server starts, answers over HTTP and stops on SIGTERM; `results` lists runs and writes JUnit.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{example_project, slipway, text};
use jiff::Timestamp;
use slipway_model::{
    sha256_hex, Attempt, ComposeId, InputHash, Lock, LockedPackage, Outcome, PkgDiff, RunId,
    TestResult, TestRun,
};
use slipway_store::{SqliteStore, Store};

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// Records one compose with one test run of two results, one of them flaky, in the project's store.
fn fill(project: &Path) -> (ComposeId, RunId) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(&project.join("state/slipway.db")).expect("store");
        let at = t("2026-11-21T10:00:00Z");
        let lock = Lock::new(vec![LockedPackage {
            name: "bash".into(),
            version: "5.2".into(),
            architecture: "amd64".into(),
            sha256: None,
            source: None,
            suite: None,
        }]);
        let compose = store
            .create_compose("bookworm-cloud", "bookworm-cloud", &sha256_hex(b"r"), at)
            .await
            .expect("create");
        let hash = InputHash::compute(&sha256_hex(b"r"), Some(&lock.hash()), "test");
        store
            .complete_compose(&compose.id, &hash, &lock, &PkgDiff::default(), &[], at)
            .await
            .expect("complete");
        let run = TestRun {
            id: RunId::fresh(),
            compose: compose.id.clone(),
            plan: "default".into(),
            artifact: "bookworm-cloud.qcow2".into(),
            description: "bookworm-cloud qcow2 under tcg".into(),
            started_at: at,
            finished_at: at,
        };
        let mut flaky = TestResult::new(compose.id.clone(), "sshd.active", Outcome::Passed, "", at);
        flaky.flaky = true;
        flaky.attempts = vec![
            Attempt {
                outcome: Outcome::Failed,
                seconds: 1.0,
                output: None,
                truncated: false,
            },
            Attempt {
                outcome: Outcome::Passed,
                seconds: 1.0,
                output: None,
                truncated: false,
            },
        ];
        let failed = TestResult::new(
            compose.id.clone(),
            "boot.multi-user",
            Outcome::Failed,
            "degraded",
            at,
        );
        store
            .record_test_run(&run, &[failed, flaky], at)
            .await
            .expect("record");
        (compose.id, run.id)
    })
}

/// A plain HTTP/1.1 GET; returns the status line and the body.
fn get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The log without terminal colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn serve_answers_resultsdb_requests_until_terminated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let (compose, run) = fill(&project);

    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("--config")
        .arg(project.join("slipway.toml"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SLIPWAY_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("slipway serve starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let (status, body) = get(&address, &format!("/api/v2.0/groups/{run}"));
    assert!(status.contains("200"), "{status}: {body}");
    let group: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(group["results_count"], 2);
    assert_eq!(group["description"], "bookworm-cloud qcow2 under tcg");

    let (status, body) = get(
        &address,
        &format!("/api/v2.0/results?item={compose}&outcome=FAILED"),
    );
    assert!(status.contains("200"), "{status}: {body}");
    let results: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(results["data"][0]["testcase"]["name"], "boot.multi-user");
    assert_eq!(results["data"].as_array().expect("data").len(), 1);

    let (status, body) = get(&address, "/api/v2.0/results?limit=nope");
    assert!(status.contains("400"), "{status}: {body}");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("stderr");
    assert!(status.success(), "exit {status:?}\n{log}");
    let log = strip_ansi(&log);
    assert!(
        log.contains("/api/v2.0/results?limit=nope") && log.contains("status=400"),
        "each request is logged:\n{log}"
    );
}

#[test]
fn results_lists_runs_marks_flaky_ones_and_writes_junit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let (compose, run) = fill(&project);

    let out = slipway(&project, &["results", compose.as_str()]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&format!("run {run}")), "{listing}");
    assert!(
        listing.contains("sshd.active  FLAKY (FAILED → PASSED)"),
        "{listing}"
    );
    assert!(listing.contains("1 runs, 1 flaky results"), "{listing}");

    let out = slipway(&project, &["results", compose.as_str(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["flaky"], 1);
    assert_eq!(report["runs"][0]["run"]["id"], run.as_str());
    assert_eq!(report["runs"][0]["counts"]["failures"], 1);
    assert_eq!(report["runs"][0]["results"][1]["flaky"], true);

    let file = dir.path().join("report.xml");
    let out = slipway(
        &project,
        &[
            "results",
            "--junit",
            run.as_str(),
            "-o",
            file.to_str().expect("utf-8 path"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let xml = std::fs::read_to_string(&file).expect("report written");
    assert!(
        xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("<flakyFailure"), "{xml}");

    let out = slipway(&project, &["results", "--junit", "no-such-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no test run no-such-run"),
        "{}",
        text(&out)
    );
    let out = slipway(&project, &["results", "nope-20260101.0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no compose nope-20260101.0"),
        "{}",
        text(&out)
    );
}
