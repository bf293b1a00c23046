//! The ResultsDB API over HTTP: a server bound to a free port on 127.0.0.1 over a real SQLite store filled
//! through `Store::record_test_run`, asked with an HTTP client, with the standard Python ResultsDB client,
//! and its JUnit reports read by a JUnit parser.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;
use slipway_model::{
    sha256_hex, Attempt, ComposeId, InputHash, Lock, LockedPackage, Outcome, PkgDiff, RunId,
    TestResult, TestRun,
};
use slipway_server::ServerState;
use slipway_store::{SqliteStore, Store};
use tokio::sync::oneshot;

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

async fn compose(store: &SqliteStore, recipe: &str) -> ComposeId {
    let at = t("2026-11-21T09:00:00Z");
    let lock = Lock::new(vec![LockedPackage {
        name: "bash".into(),
        version: "5.2".into(),
        architecture: "amd64".into(),
        sha256: None,
        source: None,
        suite: None,
    }]);
    let c = store
        .create_compose("cloud", recipe, &sha256_hex(recipe.as_bytes()), at)
        .await
        .expect("create");
    let hash = InputHash::compute(&sha256_hex(b"recipe"), Some(&lock.hash()), "test");
    store
        .complete_compose(&c.id, &hash, &lock, &PkgDiff::default(), &[], at)
        .await
        .expect("complete");
    c.id
}

fn attempt(outcome: Outcome, seconds: f64) -> Attempt {
    Attempt {
        outcome,
        seconds,
        output: None,
        truncated: false,
    }
}

fn result(c: &ComposeId, testcase: &str, scenario: &str, outcome: Outcome, at: &str) -> TestResult {
    TestResult {
        scenario: scenario.into(),
        artifact: "cloud.qcow2".into(),
        format: "qcow2".into(),
        arch: "x86_64".into(),
        stream: "cloud".into(),
        attempts: vec![attempt(outcome, 2.0)],
        ..TestResult::new(
            c.clone(),
            testcase,
            outcome,
            format!("{testcase} said {outcome}"),
            t(at),
        )
    }
}

/// A server over a store with two composes and three runs:
/// - run 0 (compose a, plan default, 10:00): boot.multi-user FAILED [uefi] with a serial log,
///   sshd.active PASSED after a FAILED attempt (flaky), rootfs.grown SKIPPED, cloud-init.finished ERROR
///   (never reported) with a note full of markup and a terminal escape;
/// - run 1 (compose a, plan smoke, 11:00): boot.multi-user PASSED [uefi], boot.multi-user PASSED [bios];
/// - run 2 (compose b, plan default, 12:00): boot.multi-user ERROR [uefi].
struct Server {
    base: String,
    a: ComposeId,
    b: ComposeId,
    runs: Vec<RunId>,
    store: Arc<SqliteStore>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("slipway.db")).expect("store"));
    let a = compose(&store, "cloud").await;
    let b = compose(&store, "edge").await;
    let mut boot_failed = result(
        &a,
        "boot.multi-user",
        "uefi",
        Outcome::Failed,
        "2026-11-21T10:00:00Z",
    );
    boot_failed.log = Some(sha256_hex(b"serial log"));
    let mut flaky = result(
        &a,
        "sshd.active",
        "uefi",
        Outcome::Passed,
        "2026-11-21T10:00:00Z",
    );
    flaky.flaky = true;
    flaky.attempts = vec![
        attempt(Outcome::Failed, 1.25),
        attempt(Outcome::Passed, 0.5),
    ];
    flaky.note = "passed on rerun".into();
    let skipped = result(
        &a,
        "rootfs.grown",
        "",
        Outcome::Skipped,
        "2026-11-21T10:00:00Z",
    );
    let mut missing = result(
        &a,
        "cloud-init.finished",
        "uefi",
        Outcome::Error,
        "2026-11-21T10:00:00Z",
    );
    missing.attempts.clear();
    missing.note = "no report <before> the deadline & \"quoted\"\n\u{1b}[0mlast line".into();
    let plans = [
        (
            &a,
            "default",
            "2026-11-21T10:00:00Z",
            vec![boot_failed, flaky, skipped, missing],
        ),
        (
            &a,
            "smoke",
            "2026-11-21T11:00:00Z",
            vec![
                result(
                    &a,
                    "boot.multi-user",
                    "uefi",
                    Outcome::Passed,
                    "2026-11-21T11:00:00Z",
                ),
                result(
                    &a,
                    "boot.multi-user",
                    "bios",
                    Outcome::Passed,
                    "2026-11-21T11:00:01Z",
                ),
            ],
        ),
        (
            &b,
            "default",
            "2026-11-21T12:00:00Z",
            vec![result(
                &b,
                "boot.multi-user",
                "uefi",
                Outcome::Error,
                "2026-11-21T12:00:00Z",
            )],
        ),
    ];
    let mut runs = Vec::new();
    for (compose, plan, at, results) in plans {
        let run = TestRun {
            id: RunId::fresh(),
            compose: compose.clone(),
            plan: plan.into(),
            artifact: "cloud.qcow2".into(),
            description: format!("{compose} {plan}"),
            started_at: t(at),
            finished_at: t(at) + jiff::SignedDuration::from_secs(90),
        };
        store
            .record_test_run(&run, &results, t(at))
            .await
            .expect("record");
        runs.push(run.id);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let state = ServerState {
        store: store.clone() as Arc<dyn Store>,
        public_url: None,
    };
    let task = tokio::spawn(slipway_server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    Server {
        base,
        a,
        b,
        runs,
        store,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Server {
    async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    async fn error(&self, path: &str, status: u16) -> String {
        let (got, body) = self.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        let value: Value = serde_json::from_str(&body).expect("json error");
        value["message"].as_str().expect("message").to_string()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("join").expect("served");
    }
}

fn testcases_of(list: &Value) -> Vec<(String, String)> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            (
                r["testcase"]["name"].as_str().expect("name").to_string(),
                r["outcome"].as_str().expect("outcome").to_string(),
            )
        })
        .collect()
}

fn pair(testcase: &str, outcome: &str) -> (String, String) {
    (testcase.into(), outcome.into())
}

#[tokio::test]
async fn a_result_has_resultsdb_shape() {
    let s = start().await;
    let list = s
        .json(&format!("/api/v2.0/results?groups={}", s.runs[0]))
        .await;
    let boot = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|r| r["testcase"]["name"] == "boot.multi-user")
        .expect("boot result")
        .clone();
    let id = boot["id"].as_u64().expect("integer id");
    let keys: Vec<&str> = boot
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "data",
            "groups",
            "href",
            "id",
            "note",
            "outcome",
            "ref_url",
            "submit_time",
            "testcase"
        ]
    );
    assert_eq!(boot["groups"], serde_json::json!([s.runs[0].as_str()]));
    assert_eq!(boot["outcome"], "FAILED");
    assert_eq!(boot["note"], "boot.multi-user said FAILED");
    assert_eq!(boot["submit_time"], "2026-11-21T10:00:00");
    assert_eq!(boot["ref_url"], Value::Null);
    assert_eq!(boot["href"], format!("{}/api/v2.0/results/{id}", s.base));
    assert_eq!(
        boot["testcase"],
        serde_json::json!({
            "name": "boot.multi-user",
            "ref_url": null,
            "href": format!("{}/api/v2.0/testcases/boot.multi-user", s.base),
        })
    );
    assert_eq!(
        boot["data"],
        serde_json::json!({
            "item": [s.a.as_str()],
            "type": ["slipway-compose"],
            "artifact": ["cloud.qcow2"],
            "format": ["qcow2"],
            "arch": ["x86_64"],
            "stream": ["cloud"],
            "scenario": ["uefi"],
            "flaky": ["false"],
            "plan": ["default"],
            "log": [sha256_hex(b"serial log").as_str()],
            "attempts": ["FAILED"],
        })
    );
    assert_eq!(s.json(&format!("/api/v2.0/results/{id}")).await, boot);

    let flaky = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|r| r["testcase"]["name"] == "sshd.active")
        .expect("flaky result");
    assert_eq!(flaky["data"]["flaky"], serde_json::json!(["true"]));
    assert_eq!(
        flaky["data"]["attempts"],
        serde_json::json!(["FAILED", "PASSED"])
    );
    s.stop().await;
}

#[tokio::test]
async fn results_filter_and_page_with_links() {
    let s = start().await;
    let all = s.json("/api/v2.0/results").await;
    assert_eq!(all["data"].as_array().expect("data").len(), 7);
    assert_eq!(all["prev"], Value::Null);
    assert_eq!(all["next"], Value::Null);
    assert_eq!(testcases_of(&all)[0], pair("boot.multi-user", "ERROR"));

    // Paging: next and prev links lead through every result exactly once.
    let mut url = "/api/v2.0/results?testcases:like=boot.*,sshd.*&limit=2".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = s.json(&url).await;
        pages += 1;
        for r in page["data"].as_array().expect("data") {
            seen.push(r["id"].as_u64().expect("id"));
        }
        if pages > 1 {
            let prev = page["prev"].as_str().expect("prev link");
            assert!(
                prev.starts_with(&s.base) && prev.contains(&format!("page={}", pages - 2)),
                "{prev}"
            );
        } else {
            assert_eq!(page["prev"], Value::Null);
        }
        match page["next"].as_str() {
            Some(next) => {
                assert!(
                    next.contains("testcases:like=boot.*,sshd.*") && next.contains("limit=2"),
                    "{next}"
                );
                url = next.strip_prefix(&s.base).expect("same server").to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (5, 5));

    let failed = s
        .json("/api/v2.0/results?outcome=failed,ERROR&testcases=boot.multi-user")
        .await;
    assert_eq!(
        testcases_of(&failed),
        [
            pair("boot.multi-user", "ERROR"),
            pair("boot.multi-user", "FAILED")
        ]
    );
    let since = s
        .json("/api/v2.0/results?since=2026-11-21T11:00:00,2026-11-21T12:00:00%2B01:00")
        .await;
    // The end is 11:00 UTC: the offset counts, so 11:00:01 and 12:00 are outside.
    assert_eq!(testcases_of(&since), [pair("boot.multi-user", "PASSED")]);
    assert_eq!(since["data"][0]["submit_time"], "2026-11-21T11:00:00");
    let oldest = s
        .json("/api/v2.0/results?_sort=asc:submit_time&limit=1")
        .await;
    assert_eq!(oldest["data"][0]["submit_time"], "2026-11-21T10:00:00");
    let of_b = s.json(&format!("/api/v2.0/results?item={}", s.b)).await;
    assert_eq!(testcases_of(&of_b), [pair("boot.multi-user", "ERROR")]);
    let repeated = s
        .json(&format!(
            "/api/v2.0/results?item={}&item={}&scenario:like=bi*",
            s.a, s.b
        ))
        .await;
    assert_eq!(testcases_of(&repeated), [pair("boot.multi-user", "PASSED")]);
    let flaky = s
        .json("/api/v2.0/results?flaky=true&type=slipway-compose")
        .await;
    assert_eq!(testcases_of(&flaky), [pair("sshd.active", "PASSED")]);
    let smoke = s.json("/api/v2.0/results?plan=smoke").await;
    assert_eq!(smoke["data"].as_array().expect("data").len(), 2);
    let unknown_key = s.json("/api/v2.0/results?productmd.compose.id=x").await;
    assert_eq!(unknown_key["data"], serde_json::json!([]));

    let in_group = s
        .json(&format!("/api/v2.0/groups/{}/results?limit=1", s.runs[1]))
        .await;
    assert_eq!(in_group["data"].as_array().expect("data").len(), 1);
    assert!(in_group["next"]
        .as_str()
        .expect("next")
        .contains(&format!("/groups/{}/results?", s.runs[1])));
    s.stop().await;
}

#[tokio::test]
async fn latest_results_are_one_per_testcase_and_scenario() {
    let s = start().await;
    let latest = s
        .json(&format!("/api/v2.0/results/latest?item={}", s.a))
        .await;
    assert_eq!(
        latest
            .as_object()
            .expect("object")
            .keys()
            .collect::<Vec<_>>(),
        ["data"]
    );
    let mut got = testcases_of(&latest);
    got.sort();
    assert_eq!(
        got,
        [
            pair("boot.multi-user", "PASSED"),
            pair("cloud-init.finished", "ERROR"),
            pair("rootfs.grown", "SKIPPED"),
            pair("sshd.active", "PASSED"),
        ]
    );
    assert_eq!(
        latest["data"][0]["data"]["scenario"],
        serde_json::json!(["bios"])
    );

    let per_scenario = s
        .json("/api/v2.0/results/latest?testcases=boot.multi-user&_distinct_on=scenario")
        .await;
    let scenarios: Vec<(String, String)> = per_scenario["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            (
                r["data"]["scenario"][0]
                    .as_str()
                    .expect("scenario")
                    .to_string(),
                r["outcome"].as_str().expect("outcome").to_string(),
            )
        })
        .collect();
    assert_eq!(scenarios, [pair("uefi", "ERROR"), pair("bios", "PASSED")]);

    let message = s
        .error("/api/v2.0/results/latest?_distinct_on=scenario", 400)
        .await;
    assert!(message.contains("_distinct_on"), "{message}");
    s.stop().await;
}

#[tokio::test]
async fn testcases_and_groups_are_listed_and_found() {
    let s = start().await;
    let testcases = s.json("/api/v2.0/testcases?limit=2").await;
    let names: Vec<&str> = testcases["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["boot.multi-user", "cloud-init.finished"]);
    assert_eq!(
        testcases["next"].as_str(),
        Some(format!("{}/api/v2.0/testcases?limit=2&page=1", s.base).as_str())
    );
    let second = s.json("/api/v2.0/testcases?limit=2&page=1").await;
    assert_eq!(second["data"].as_array().expect("data").len(), 2);
    assert_eq!(
        second["prev"].as_str(),
        Some(format!("{}/api/v2.0/testcases?limit=2&page=0", s.base).as_str())
    );
    assert_eq!(second["next"], Value::Null);
    let like = s.json("/api/v2.0/testcases?name:like=*.active").await;
    assert_eq!(like["data"][0]["name"], "sshd.active");
    assert_eq!(like["data"].as_array().expect("data").len(), 1);
    let one = s.json("/api/v2.0/testcases/sshd.active").await;
    assert_eq!(
        one,
        serde_json::json!({
            "name": "sshd.active",
            "ref_url": null,
            "href": format!("{}/api/v2.0/testcases/sshd.active", s.base),
        })
    );
    let of_testcase = s.json("/api/v2.0/testcases/sshd.active/results").await;
    assert_eq!(testcases_of(&of_testcase), [pair("sshd.active", "PASSED")]);

    let groups = s.json("/api/v2.0/groups").await;
    let uuids: Vec<&str> = groups["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|g| g["uuid"].as_str().expect("uuid"))
        .collect();
    assert_eq!(
        uuids,
        [s.runs[2].as_str(), s.runs[1].as_str(), s.runs[0].as_str()]
    );
    let group = s.json(&format!("/api/v2.0/groups/{}", s.runs[0])).await;
    assert_eq!(
        group,
        serde_json::json!({
            "uuid": s.runs[0].as_str(),
            "description": format!("{} default", s.a),
            "ref_url": null,
            "results_count": 4,
            "results": format!("{}/api/v2.0/results?groups={}", s.base, s.runs[0]),
            "href": format!("{}/api/v2.0/groups/{}", s.base, s.runs[0]),
        })
    );
    assert_eq!(groups["data"][2], group);
    let by_link = s
        .json(
            group["results"]
                .as_str()
                .expect("link")
                .strip_prefix(&s.base)
                .expect("same server"),
        )
        .await;
    assert_eq!(by_link["data"].as_array().expect("data").len(), 4);
    let smoke = s.json("/api/v2.0/groups?description:like=*smoke").await;
    assert_eq!(smoke["data"][0]["uuid"], s.runs[1].as_str());
    let by_uuid = s
        .json(&format!(
            "/api/v2.0/groups?uuid={},{}&limit=1",
            s.runs[0], s.runs[2]
        ))
        .await;
    assert_eq!(by_uuid["data"][0]["uuid"], s.runs[2].as_str());
    assert!(by_uuid["next"].as_str().is_some());

    let index = s.json("/api/v2.0/").await;
    assert_eq!(index["results"], format!("{}/api/v2.0/results", s.base));
    assert_eq!(index["outcomes"][0], "PASSED");
    s.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_400_and_unknown_ids_404() {
    let s = start().await;
    for (path, parameter) in [
        ("/api/v2.0/results?limit=0", "`limit`"),
        ("/api/v2.0/results?limit=ten", "`limit`"),
        ("/api/v2.0/results?page=-1", "`page`"),
        ("/api/v2.0/results?outcome=GREEN", "`outcome`"),
        ("/api/v2.0/results?since=yesterday", "`since`"),
        (
            "/api/v2.0/results?since=2026-01-01,2026-01-02,2026-01-03",
            "`since`",
        ),
        ("/api/v2.0/results?_sort=desc:outcome", "`_sort`"),
        ("/api/v2.0/results?flaky=maybe", "`flaky`"),
        ("/api/v2.0/results?item:regex=x", "`item:regex`"),
        ("/api/v2.0/results/latest?since=never", "`since`"),
        ("/api/v2.0/testcases?limit=100000", "`limit`"),
        ("/api/v2.0/testcases?nmae=x", "`nmae`"),
        ("/api/v2.0/groups?page=x", "`page`"),
        ("/api/v2.0/groups?descripton=x", "`descripton`"),
    ] {
        let message = s.error(path, 400).await;
        assert!(message.contains(parameter), "{path}: {message}");
    }
    for path in [
        "/api/v2.0/results/999999".to_string(),
        "/api/v2.0/results/abc".to_string(),
        "/api/v2.0/testcases/no.such.test".to_string(),
        "/api/v2.0/testcases/no.such.test/results".to_string(),
        "/api/v2.0/groups/00000000-0000-0000-0000-000000000000".to_string(),
        "/api/v2.0/groups/nope/junit".to_string(),
        "/api/v2.0/groups/nope/results".to_string(),
        "/api/v3/results".to_string(),
    ] {
        let message = s.error(&path, 404).await;
        assert!(
            message.to_lowercase().contains("not found"),
            "{path}: {message}"
        );
    }
    // Nothing stored was lost or changed by the bad requests.
    assert_eq!(
        s.store
            .find_group(&s.runs[0])
            .await
            .expect("group")
            .expect("run")
            .results,
        4
    );
    s.stop().await;
}

/// Runs a Python script from `tests/fixtures` and parses the JSON it prints.
fn python(script: &str, args: &[&str]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(script);
    let output = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs (scripts/install-deps installs it)");
    assert!(
        output.status.success(),
        "{script} failed (scripts/install-deps installs resultsdb_api and junitparser):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("script prints JSON")
}

#[tokio::test]
async fn the_standard_resultsdb_client_reads_it() {
    let s = start().await;
    let one = s
        .json(&format!(
            "/api/v2.0/results?groups={}&testcases=sshd.active",
            s.runs[0]
        ))
        .await;
    let id = one["data"][0]["id"].as_u64().expect("id").to_string();
    let url = format!("{}/api/v2.0", s.base);
    let (group, item) = (s.runs[0].to_string(), s.b.to_string());
    let got = tokio::task::spawn_blocking(move || {
        python("resultsdb_client.py", &[&url, &group, &id, &item])
    })
    .await
    .expect("join");

    let page = &got["results_page"];
    assert_eq!(page["data"].as_array().expect("data").len(), 2);
    assert!(page["next"].as_str().expect("next").contains("page=1"));
    assert_eq!(
        testcases_of(&got["results_failed"]),
        [
            pair("boot.multi-user", "ERROR"),
            pair("boot.multi-user", "FAILED")
        ]
    );
    assert_eq!(
        testcases_of(&got["results_by_item"]),
        [pair("boot.multi-user", "ERROR")]
    );
    assert_eq!(
        got["results_in_group"]["data"]
            .as_array()
            .expect("data")
            .len(),
        4
    );
    assert_eq!(got["result"], one["data"][0]);
    assert_eq!(got["result"]["data"]["flaky"], serde_json::json!(["true"]));
    assert_eq!(got["testcases"]["data"].as_array().expect("data").len(), 4);
    assert_eq!(got["testcases_like"]["data"][0]["name"], "sshd.active");
    assert_eq!(got["testcase"]["name"], "sshd.active");
    assert_eq!(got["groups"]["data"].as_array().expect("data").len(), 3);
    assert_eq!(got["groups_like"]["data"][0]["uuid"], s.runs[1].as_str());
    assert_eq!(got["group"]["results_count"], 4);
    assert_eq!(got["missing_result"], "ResultsDBapiException");
    s.stop().await;
}

#[tokio::test]
async fn junit_reports_are_read_by_a_junit_parser() {
    let s = start().await;
    let (status, xml) = s
        .get(&format!("/api/v2.0/groups/{}/junit", s.runs[0]))
        .await;
    assert_eq!(status, 200, "{xml}");
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(file.path(), &xml).expect("write");
    let path = file.path().to_string_lossy().into_owned();
    let report = tokio::task::spawn_blocking(move || python("junit_report.py", &[&path]))
        .await
        .expect("join");

    assert_eq!(report["name"], format!("{} default", s.a));
    assert_eq!(
        (
            &report["tests"],
            &report["failures"],
            &report["errors"],
            &report["skipped"]
        ),
        (
            &serde_json::json!(4),
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1)
        )
    );
    assert_eq!(report["properties"]["run"], s.runs[0].as_str());
    assert_eq!(report["properties"]["flaky"], "1");
    let case = |name: &str| {
        report["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no testcase {name}"))
            .clone()
    };
    let boot = case("boot.multi-user");
    assert_eq!(boot["kinds"], serde_json::json!(["Failure"]));
    assert_eq!(boot["classname"], "uefi");
    let boot_out = boot["system_out"].as_str().expect("system-out");
    assert!(
        boot_out.contains("boot.multi-user said FAILED"),
        "{boot_out}"
    );
    assert!(
        boot_out.contains(sha256_hex(b"serial log").as_str()),
        "{boot_out}"
    );

    let flaky = case("sshd.active");
    assert_eq!(
        flaky["kinds"],
        serde_json::json!([]),
        "a flaky pass is a pass"
    );
    assert_eq!(
        flaky["flaky"],
        serde_json::json!(["attempt 1 of 2: FAILED after 1.250s"])
    );
    assert_eq!(flaky["reruns"], serde_json::json!([]));
    assert_eq!(
        case("rootfs.grown")["kinds"],
        serde_json::json!(["Skipped"])
    );

    let missing = case("cloud-init.finished");
    assert_eq!(missing["kinds"], serde_json::json!(["Error"]));
    assert_eq!(
        missing["messages"],
        serde_json::json!(["no report <before> the deadline & \"quoted\""])
    );
    assert_eq!(
        missing["system_out"],
        "no report <before> the deadline & \"quoted\"\n\\x1b[0mlast line"
    );
    s.stop().await;
}
