//! The ResultsDB-shaped queries of the SQLite store: filters, order, pages, latest results, testcases and
//! groups, over results recorded with `record_test_run`.

use jiff::Timestamp;
use slipway_model::{
    sha256_hex, Attempt, ComposeId, InputHash, Lock, LockedPackage, Outcome, PkgDiff, RunId,
    TestResult, TestRun,
};
use slipway_store::{
    DataFilter, DataKey, GroupQuery, PageRequest, ResultQuery, SortOrder, SqliteStore, Store,
    TestcaseQuery,
};

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

async fn compose(store: &SqliteStore, recipe: &str, at: Timestamp) -> ComposeId {
    let lock = Lock::new(vec![LockedPackage {
        name: "bash".into(),
        version: "5.2".into(),
        architecture: "amd64".into(),
        sha256: None,
        source: None,
        suite: None,
    }]);
    let c = store
        .create_compose("s", recipe, &sha256_hex(recipe.as_bytes()), at)
        .await
        .expect("create");
    let hash = InputHash::compute(&sha256_hex(b"recipe"), Some(&lock.hash()), "test");
    store
        .complete_compose(&c.id, &hash, &lock, &PkgDiff::default(), &[], at)
        .await
        .expect("complete");
    c.id
}

fn attempt(outcome: Outcome) -> Attempt {
    Attempt {
        outcome,
        seconds: 1.5,
        output: None,
        truncated: false,
    }
}

fn result(
    compose: &ComposeId,
    testcase: &str,
    scenario: &str,
    outcome: Outcome,
    at: &str,
) -> TestResult {
    TestResult {
        scenario: scenario.into(),
        artifact: "x.qcow2".into(),
        format: "qcow2".into(),
        arch: "x86_64".into(),
        stream: "s".into(),
        attempts: vec![attempt(outcome)],
        ..TestResult::new(compose.clone(), testcase, outcome, "", t(at))
    }
}

struct Fixture {
    store: SqliteStore,
    a: ComposeId,
    b: ComposeId,
    runs: [RunId; 3],
}

/// Two composes and three runs:
/// - run 0 (compose a, plan default, 10:00): boot.multi-user FAILED [uefi], sshd.active PASSED after a
///   failed attempt (flaky), rootfs.grown SKIPPED;
/// - run 1 (compose a, plan smoke, 11:00): boot.multi-user PASSED [uefi], boot.multi-user PASSED [bios];
/// - run 2 (compose b, plan default, 12:00): boot.multi-user ERROR [uefi].
async fn fixture() -> Fixture {
    let store = SqliteStore::open_in_memory().expect("store");
    let a = compose(&store, "cloud", t("2026-11-21T09:00:00Z")).await;
    let b = compose(&store, "edge", t("2026-11-21T09:00:00Z")).await;
    let mut flaky = result(
        &a,
        "sshd.active",
        "uefi",
        Outcome::Passed,
        "2026-11-21T10:00:00Z",
    );
    flaky.flaky = true;
    flaky.attempts = vec![attempt(Outcome::Failed), attempt(Outcome::Passed)];
    let plans = [
        (
            &a,
            "default",
            "2026-11-21T10:00:00Z",
            vec![
                result(
                    &a,
                    "boot.multi-user",
                    "uefi",
                    Outcome::Failed,
                    "2026-11-21T10:00:00Z",
                ),
                flaky,
                result(
                    &a,
                    "rootfs.grown",
                    "",
                    Outcome::Skipped,
                    "2026-11-21T10:00:00Z",
                ),
            ],
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
            artifact: "x.qcow2".into(),
            description: format!("{compose} {plan}"),
            started_at: t(at),
            finished_at: t(at),
        };
        store
            .record_test_run(&run, &results, t(at))
            .await
            .expect("record");
        runs.push(run.id);
    }
    let runs: [RunId; 3] = runs.try_into().expect("three runs");
    Fixture { store, a, b, runs }
}

const ALL: PageRequest = PageRequest {
    page: 0,
    limit: 100,
};

/// (testcase, scenario, outcome) of what a query finds, in order.
async fn found(f: &Fixture, query: ResultQuery) -> Vec<(String, String, Outcome)> {
    f.store
        .find_results(&query, ALL)
        .await
        .expect("find")
        .items
        .into_iter()
        .map(|e| (e.result.testcase, e.result.scenario, e.result.outcome))
        .collect()
}

fn data(key: DataKey, values: &[&str], like: bool) -> DataFilter {
    DataFilter {
        key,
        values: values.iter().map(|v| v.to_string()).collect(),
        like,
    }
}

fn row(testcase: &str, scenario: &str, outcome: Outcome) -> (String, String, Outcome) {
    (testcase.into(), scenario.into(), outcome)
}

#[tokio::test]
async fn results_are_newest_first_and_paged() {
    let f = fixture().await;
    let all = found(&f, ResultQuery::default()).await;
    assert_eq!(all.len(), 6);
    assert_eq!(all[0], row("boot.multi-user", "uefi", Outcome::Error));
    assert_eq!(all[1], row("boot.multi-user", "bios", Outcome::Passed));
    assert_eq!(
        all[3..],
        [
            row("rootfs.grown", "", Outcome::Skipped),
            row("sshd.active", "uefi", Outcome::Passed),
            row("boot.multi-user", "uefi", Outcome::Failed)
        ],
        "equal times are ordered by id, newest first"
    );

    let mut seen = Vec::new();
    for page in 0..3 {
        let p = f
            .store
            .find_results(&ResultQuery::default(), PageRequest { page, limit: 2 })
            .await
            .expect("page");
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.more, page < 2, "page {page}");
        seen.extend(p.items.into_iter().map(|e| e.result.id));
    }
    let beyond = f
        .store
        .find_results(&ResultQuery::default(), PageRequest { page: 3, limit: 2 })
        .await
        .expect("page");
    assert!(beyond.items.is_empty() && !beyond.more);
    let ids: Vec<_> = seen.into_iter().flatten().collect();
    assert_eq!(ids.len(), 6);

    let oldest = found(
        &f,
        ResultQuery {
            order: SortOrder::OldestFirst,
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(oldest[0], row("boot.multi-user", "uefi", Outcome::Failed));
}

#[tokio::test]
async fn results_filter_by_testcase_outcome_time_and_group() {
    let f = fixture().await;
    let by_name_or_glob = found(
        &f,
        ResultQuery {
            testcases: vec!["rootfs.grown".into()],
            testcase_globs: vec!["sshd.*".into()],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(
        by_name_or_glob,
        [
            row("rootfs.grown", "", Outcome::Skipped),
            row("sshd.active", "uefi", Outcome::Passed)
        ]
    );
    let glob_is_not_a_prefix_of_everything = found(
        &f,
        ResultQuery {
            testcase_globs: vec!["BOOT.*".into()],
            ..ResultQuery::default()
        },
    )
    .await;
    assert!(
        glob_is_not_a_prefix_of_everything.is_empty(),
        "globs are case-sensitive"
    );

    let failing = found(
        &f,
        ResultQuery {
            outcomes: vec![Outcome::Failed, Outcome::Error],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(
        failing,
        [
            row("boot.multi-user", "uefi", Outcome::Error),
            row("boot.multi-user", "uefi", Outcome::Failed)
        ]
    );

    let window = found(
        &f,
        ResultQuery {
            since: Some(t("2026-11-21T11:00:00Z")),
            until: Some(t("2026-11-21T11:00:00Z")),
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(window, [row("boot.multi-user", "uefi", Outcome::Passed)]);

    let in_groups = found(
        &f,
        ResultQuery {
            groups: vec![f.runs[1].clone(), f.runs[2].clone()],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(in_groups.len(), 3);
}

#[tokio::test]
async fn results_filter_by_item_data() {
    let f = fixture().await;
    let of_b = found(
        &f,
        ResultQuery {
            data: vec![data(DataKey::Item, &[f.b.as_str()], false)],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(of_b, [row("boot.multi-user", "uefi", Outcome::Error)]);

    let bios_or_none = found(
        &f,
        ResultQuery {
            data: vec![data(DataKey::Scenario, &["bi*"], true)],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(
        bios_or_none,
        [row("boot.multi-user", "bios", Outcome::Passed)]
    );

    let any_scenario = found(
        &f,
        ResultQuery {
            data: vec![data(DataKey::Scenario, &["*"], true)],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(
        any_scenario.len(),
        5,
        "a result without a scenario has no such key"
    );

    let flaky = found(
        &f,
        ResultQuery {
            data: vec![data(DataKey::Flaky, &["true"], false)],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(flaky, [row("sshd.active", "uefi", Outcome::Passed)]);

    let smoke_of_a = found(
        &f,
        ResultQuery {
            data: vec![
                data(DataKey::Plan, &["smoke"], false),
                data(DataKey::Item, &[f.a.as_str(), f.b.as_str()], false),
            ],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(smoke_of_a.len(), 2);

    let failed_once = found(
        &f,
        ResultQuery {
            data: vec![data(DataKey::Attempts, &["FAILED"], false)],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(
        failed_once,
        [
            row("sshd.active", "uefi", Outcome::Passed),
            row("boot.multi-user", "uefi", Outcome::Failed)
        ]
    );

    let typed = found(
        &f,
        ResultQuery {
            data: vec![data(
                DataKey::Type,
                &["koji_build", "slipway-compose"],
                false,
            )],
            ..ResultQuery::default()
        },
    )
    .await;
    assert_eq!(typed.len(), 6);
    let other_type = found(
        &f,
        ResultQuery {
            data: vec![data(DataKey::Type, &["koji_build"], false)],
            ..ResultQuery::default()
        },
    )
    .await;
    assert!(other_type.is_empty());

    let unknown_key = found(
        &f,
        ResultQuery {
            data: vec![data(DataKey::parse("productmd.compose.id"), &["x"], false)],
            ..ResultQuery::default()
        },
    )
    .await;
    assert!(
        unknown_key.is_empty(),
        "no result has a key slipway does not record"
    );
}

#[tokio::test]
async fn a_result_is_found_by_id_with_its_plan() {
    let f = fixture().await;
    let first = f
        .store
        .find_results(&ResultQuery::default(), ALL)
        .await
        .expect("find")
        .items
        .remove(0);
    let id = first.result.id.expect("id");
    let again = f
        .store
        .find_result(id)
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(again, first);
    assert_eq!(again.plan.as_deref(), Some("default"));
    assert_eq!(again.result.run.as_ref(), Some(&f.runs[2]));
    assert!(f.store.find_result(9999).await.expect("find").is_none());
}

#[tokio::test]
async fn latest_results_are_one_per_testcase_or_per_distinct_values() {
    let f = fixture().await;
    let latest_of_a: Vec<_> = f
        .store
        .find_latest_results(
            &ResultQuery {
                data: vec![data(DataKey::Item, &[f.a.as_str()], false)],
                // Outcomes do not narrow "latest", as in ResultsDB.
                outcomes: vec![Outcome::Failed],
                ..ResultQuery::default()
            },
            &[],
        )
        .await
        .expect("latest")
        .into_iter()
        .map(|e| (e.result.testcase, e.result.scenario, e.result.outcome))
        .collect();
    assert_eq!(
        latest_of_a,
        [
            row("boot.multi-user", "bios", Outcome::Passed),
            row("rootfs.grown", "", Outcome::Skipped),
            row("sshd.active", "uefi", Outcome::Passed),
        ]
    );

    let per_scenario: Vec<_> = f
        .store
        .find_latest_results(
            &ResultQuery {
                testcases: vec!["boot.multi-user".into()],
                ..ResultQuery::default()
            },
            &[DataKey::Scenario],
        )
        .await
        .expect("latest")
        .into_iter()
        .map(|e| (e.result.testcase, e.result.scenario, e.result.outcome))
        .collect();
    assert_eq!(
        per_scenario,
        [
            row("boot.multi-user", "uefi", Outcome::Error),
            row("boot.multi-user", "bios", Outcome::Passed),
        ]
    );
}

#[tokio::test]
async fn testcases_are_distinct_sorted_and_paged() {
    let f = fixture().await;
    let all = f
        .store
        .find_testcases(&TestcaseQuery::default(), ALL)
        .await
        .expect("testcases");
    assert_eq!(
        all.items,
        ["boot.multi-user", "rootfs.grown", "sshd.active"]
    );
    assert!(!all.more);
    let second = f
        .store
        .find_testcases(&TestcaseQuery::default(), PageRequest { page: 1, limit: 1 })
        .await
        .expect("page");
    assert_eq!(second.items, ["rootfs.grown"]);
    assert!(second.more);
    let like = f
        .store
        .find_testcases(
            &TestcaseQuery {
                names: Vec::new(),
                name_globs: vec!["*.active".into(), "root*".into()],
            },
            ALL,
        )
        .await
        .expect("like");
    assert_eq!(like.items, ["rootfs.grown", "sshd.active"]);
    let exact = f
        .store
        .find_testcases(
            &TestcaseQuery {
                names: vec!["sshd".into()],
                name_globs: Vec::new(),
            },
            ALL,
        )
        .await
        .expect("exact");
    assert!(exact.items.is_empty());
}

#[tokio::test]
async fn groups_are_runs_newest_first_with_their_result_counts() {
    let f = fixture().await;
    let all = f
        .store
        .find_groups(&GroupQuery::default(), ALL)
        .await
        .expect("groups");
    let listed: Vec<_> = all
        .items
        .iter()
        .map(|g| (g.run.id.clone(), g.results))
        .collect();
    assert_eq!(
        listed,
        [
            (f.runs[2].clone(), 1),
            (f.runs[1].clone(), 2),
            (f.runs[0].clone(), 3)
        ]
    );
    let smoke = f
        .store
        .find_groups(
            &GroupQuery {
                description_globs: vec!["* smoke".into()],
                ..GroupQuery::default()
            },
            ALL,
        )
        .await
        .expect("like");
    assert_eq!(smoke.items.len(), 1);
    assert_eq!(smoke.items[0].run.plan, "smoke");
    let by_id = f
        .store
        .find_groups(
            &GroupQuery {
                ids: vec![f.runs[0].clone(), RunId("nope".into())],
                ..GroupQuery::default()
            },
            PageRequest { page: 0, limit: 1 },
        )
        .await
        .expect("ids");
    assert_eq!(by_id.items.len(), 1);
    assert!(!by_id.more);
    let one = f
        .store
        .find_group(&f.runs[0])
        .await
        .expect("group")
        .expect("exists");
    assert_eq!(one.results, 3);
    assert_eq!(one.run.description, format!("{} default", f.a));
    assert!(f
        .store
        .find_group(&RunId("nope".into()))
        .await
        .expect("group")
        .is_none());
}
