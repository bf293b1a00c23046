//! The gate: whether a compose may be released in a stream.
//!
//! [`decide`] takes the stream's requirements and the facts about a compose (its state, every test
//! result, the verdicts and waivers people gave) as of a point in time, and returns a [`Decision`]. It
//! fails closed: a requirement is met only by PASSED results or by a waiver. A missing result, one still
//! queued or running, an error, a failure, too few passes, a person's veto, or a compose that did not
//! build each leave the compose unreleasable, and each is listed with its reason and the results it rests
//! on.
//!
//! Time: the decision is *as of* `at`. Results submitted, verdicts given and waivers created after `at` are
//! ignored, a waiver revoked after `at` still counts, a compose that finished after `at` was still being
//! built, and only requirements whose `valid-since`/`valid-until` window contains `at` apply.

use std::collections::BTreeMap;

use jiff::Timestamp;
use slipway_model::{
    Compose, ComposeState, Decision, Outcome, Requirement, ResultUsed, Satisfied, TestResult,
    Unsatisfied, UnsatisfiedKind, Verdict, Waiver,
};

/// What the gate knows about one compose. Everything may include facts newer than the decision's time;
/// [`decide`] leaves those out.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The compose.
    pub compose: &'a Compose,
    /// Every result of the compose, in any order.
    pub results: &'a [TestResult],
    /// Every verdict on the compose, oldest first; the newest one given by the decision's time counts.
    pub verdicts: &'a [Verdict],
    /// Every waiver on the compose, revoked ones included.
    pub waivers: &'a [Waiver],
}

/// One thing wrong with a requirement, before waivers are looked at.
struct Problem {
    scenario: Option<String>,
    kind: UnsatisfiedKind,
    detail: String,
    results: Vec<u64>,
}

/// Decides on a compose in `stream` under `requirements`, as of `at`.
pub fn decide(
    stream: &str,
    requirements: &[Requirement],
    facts: &Facts<'_>,
    at: Timestamp,
) -> Decision {
    let compose = facts.compose;
    let mut unsatisfied = Vec::new();
    let mut satisfied = Vec::new();
    let mut results_used = Vec::new();
    let mut waivers_used = Vec::new();
    let mut not_applicable = Vec::new();

    if let Some(problem) = compose_problem(compose, at) {
        unsatisfied.push(problem);
    }

    // Verdicts are oldest first; the newest given by `at` is the one in force.
    if let Some(veto) = facts
        .verdicts
        .iter()
        .filter(|v| v.created_at <= at)
        .max_by_key(|v| v.created_at)
        .filter(|v| v.failed)
    {
        unsatisfied.push(Unsatisfied {
            subject: "compose".into(),
            scenario: None,
            kind: UnsatisfiedKind::Vetoed,
            detail: format!("marked failed by {}: {}", veto.author, veto.reason),
            results: vec![],
        });
    }

    let results: Vec<&TestResult> = facts
        .results
        .iter()
        .filter(|r| r.submitted_at <= at)
        .collect();
    let waivers: Vec<&Waiver> = facts.waivers.iter().filter(|w| w.active_at(at)).collect();

    let mut applicable = 0;
    for requirement in requirements {
        if !requirement.applies_at(at) {
            not_applicable.push(requirement.label());
            continue;
        }
        applicable += 1;
        let relevant: Vec<&TestResult> = results
            .iter()
            .copied()
            .filter(|r| {
                r.testcase == requirement.testcase
                    && requirement
                        .scenario
                        .as_ref()
                        .is_none_or(|s| &r.scenario == s)
            })
            .collect();
        let latest = latest_per_scenario(&relevant);
        for result in latest.values() {
            let used = ResultUsed {
                testcase: result.testcase.clone(),
                outcome: result.outcome,
                scenario: result.scenario.clone(),
                id: result.id,
            };
            if !results_used.contains(&used) {
                results_used.push(used);
            }
        }
        let problems = requirement_problems(requirement, &results, &relevant, &latest);
        let mut cited: Vec<u64> = latest.values().filter_map(|r| r.id).collect();
        if requirement.min_count > 1 {
            cited = relevant
                .iter()
                .filter(|r| r.outcome == Outcome::Passed)
                .filter_map(|r| r.id)
                .chain(cited)
                .collect();
            cited.sort_unstable();
            cited.dedup();
        }
        let mut waived_by = Vec::new();
        let mut unwaived = Vec::new();
        for problem in problems {
            match waivers
                .iter()
                .filter(|w| w.covers(&requirement.testcase, problem.scenario.as_deref()))
                .max_by_key(|w| w.created_at)
            {
                Some(waiver) => {
                    if !waived_by.contains(&waiver.id) {
                        waived_by.push(waiver.id);
                    }
                }
                None => unwaived.push(problem),
            }
        }
        if unwaived.is_empty() {
            for id in &waived_by {
                if !waivers_used.contains(id) {
                    waivers_used.push(*id);
                }
            }
            satisfied.push(Satisfied {
                requirement: requirement.label(),
                results: cited,
                waivers: waived_by,
            });
        } else {
            unsatisfied.extend(unwaived.into_iter().map(|p| Unsatisfied {
                subject: requirement.testcase.clone(),
                scenario: p.scenario,
                kind: p.kind,
                detail: p.detail,
                results: p.results,
            }));
        }
    }

    let passed = unsatisfied.is_empty();
    let summary = if passed {
        let waived = satisfied.iter().filter(|s| !s.waivers.is_empty()).count();
        let mut summary = format!("all {applicable} applicable requirements met");
        if waived > 0 {
            summary.push_str(&format!(" ({waived} by waiver)"));
        }
        summary
    } else {
        let mut labels: Vec<String> = Vec::new();
        for u in &unsatisfied {
            let label = match &u.scenario {
                Some(s) => format!("{} [{s}]", u.subject),
                None => u.subject.clone(),
            };
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        format!("unmet: {}", labels.join(", "))
    };
    Decision {
        compose: compose.id.clone(),
        stream: stream.to_string(),
        passed,
        summary,
        unsatisfied,
        satisfied,
        results_used,
        waivers_used,
        not_applicable,
        at: Some(at),
    }
}

/// What is wrong with the compose itself as of `at`, if anything.
fn compose_problem(compose: &Compose, at: Timestamp) -> Option<Unsatisfied> {
    let unsatisfied = |kind, detail| Unsatisfied {
        subject: "compose".into(),
        scenario: None,
        kind,
        detail,
        results: vec![],
    };
    if compose.created_at > at {
        return Some(unsatisfied(
            UnsatisfiedKind::ComposeRunning,
            format!("the compose did not exist yet at {at}"),
        ));
    }
    let finished_by_then = compose.finished_at.is_some_and(|f| f <= at);
    match &compose.state {
        ComposeState::Complete if finished_by_then => None,
        ComposeState::Failed { reason } if finished_by_then => Some(unsatisfied(
            UnsatisfiedKind::ComposeFailed,
            format!("the compose failed: {}", first_line(reason)),
        )),
        // Running now, or finished only after `at`: at that time it was still being built.
        _ => Some(unsatisfied(
            UnsatisfiedKind::ComposeRunning,
            "the compose is still being built".into(),
        )),
    }
}

/// The newest result per scenario (by submission time, then id).
fn latest_per_scenario<'r>(results: &[&'r TestResult]) -> BTreeMap<&'r str, &'r TestResult> {
    let mut latest: BTreeMap<&str, &TestResult> = BTreeMap::new();
    for &result in results {
        let newer = latest
            .get(result.scenario.as_str())
            .is_none_or(|seen| (result.submitted_at, result.id) >= (seen.submitted_at, seen.id));
        if newer {
            latest.insert(&result.scenario, result);
        }
    }
    latest
}

fn requirement_problems(
    requirement: &Requirement,
    all: &[&TestResult],
    relevant: &[&TestResult],
    latest: &BTreeMap<&str, &TestResult>,
) -> Vec<Problem> {
    let label = requirement.label();
    if relevant.is_empty() {
        let mut detail = format!("no result for {label}");
        if requirement.scenario.is_some() {
            let mut others: Vec<&str> = all
                .iter()
                .filter(|r| r.testcase == requirement.testcase)
                .map(|r| {
                    if r.scenario.is_empty() {
                        "(none)"
                    } else {
                        r.scenario.as_str()
                    }
                })
                .collect();
            others.sort_unstable();
            others.dedup();
            if !others.is_empty() {
                detail.push_str(&format!(
                    " (it has results in other scenarios: {})",
                    others.join(", ")
                ));
            }
        }
        return vec![Problem {
            scenario: requirement.scenario.clone(),
            kind: UnsatisfiedKind::Missing,
            detail,
            results: vec![],
        }];
    }
    let mut problems = Vec::new();
    for (scenario, result) in latest {
        if result.outcome == Outcome::Passed {
            continue;
        }
        let name = if scenario.is_empty() {
            requirement.testcase.clone()
        } else {
            format!("{} [{scenario}]", requirement.testcase)
        };
        let note = first_line(&result.note);
        problems.push(Problem {
            scenario: (!scenario.is_empty()).then(|| scenario.to_string()),
            kind: UnsatisfiedKind::NotPassed(result.outcome),
            detail: if note.is_empty() {
                format!("{name} is {}", result.outcome)
            } else {
                format!("{name} is {}: {note}", result.outcome)
            },
            results: result.id.into_iter().collect(),
        });
    }
    if problems.is_empty() {
        let passes: Vec<&&TestResult> = relevant
            .iter()
            .filter(|r| r.outcome == Outcome::Passed)
            .collect();
        let passed = u32::try_from(passes.len()).unwrap_or(u32::MAX);
        if passed < requirement.min_count {
            problems.push(Problem {
                scenario: requirement.scenario.clone(),
                kind: UnsatisfiedKind::NotEnoughResults {
                    passed,
                    required: requirement.min_count,
                },
                detail: format!(
                    "{label} passed {passed} time(s); the policy asks for {}",
                    requirement.min_count
                ),
                results: passes.iter().filter_map(|r| r.id).collect(),
            });
        }
    }
    problems
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_model::{sha256_hex, ComposeId, Revocation};

    const COMPOSE: &str = "cloud-20261121.0";

    fn t(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("valid")
    }

    /// A compose created at 0 and finished at 1 in `state`.
    fn compose(state: ComposeState) -> Compose {
        let finished = !matches!(state, ComposeState::Running);
        Compose {
            id: ComposeId(COMPOSE.into()),
            stream: "cloud".into(),
            recipe: "cloud".into(),
            recipe_hash: sha256_hex(b"r"),
            input_hash: None,
            state,
            created_at: t(0),
            finished_at: finished.then(|| t(1)),
            artifacts: vec![],
            lock: None,
            pkgdiff: None,
        }
    }

    fn result(id: u64, testcase: &str, outcome: Outcome, second: i64) -> TestResult {
        TestResult {
            id: Some(id),
            artifact: "cloud.qcow2".into(),
            ..TestResult::new(ComposeId(COMPOSE.into()), testcase, outcome, "", t(second))
        }
    }

    fn in_scenario(mut result: TestResult, scenario: &str) -> TestResult {
        result.scenario = scenario.into();
        result
    }

    fn verdict(failed: bool, second: i64) -> Verdict {
        Verdict {
            compose: ComposeId(COMPOSE.into()),
            failed,
            author: "alice".into(),
            reason: "bad kernel".into(),
            created_at: t(second),
        }
    }

    fn waiver(id: u64, testcase: &str, scenario: Option<&str>, second: i64) -> Waiver {
        Waiver {
            id,
            compose: ComposeId(COMPOSE.into()),
            testcase: testcase.into(),
            scenario: scenario.map(str::to_string),
            author: "bob".into(),
            comment: "known issue".into(),
            created_at: t(second),
            revoked: None,
        }
    }

    fn policy() -> Vec<Requirement> {
        vec![Requirement::testcase("boot"), Requirement::testcase("ssh")]
    }

    struct Case {
        compose: Compose,
        results: Vec<TestResult>,
        verdicts: Vec<Verdict>,
        waivers: Vec<Waiver>,
        policy: Vec<Requirement>,
        at: Timestamp,
    }

    impl Case {
        fn new(results: Vec<TestResult>) -> Self {
            Self {
                compose: compose(ComposeState::Complete),
                results,
                verdicts: vec![],
                waivers: vec![],
                policy: policy(),
                at: t(100),
            }
        }
        fn decide(&self) -> Decision {
            decide(
                "cloud",
                &self.policy,
                &Facts {
                    compose: &self.compose,
                    results: &self.results,
                    verdicts: &self.verdicts,
                    waivers: &self.waivers,
                },
                self.at,
            )
        }
    }

    fn passing() -> Vec<TestResult> {
        vec![
            result(1, "boot", Outcome::Passed, 10),
            result(2, "ssh", Outcome::Passed, 10),
        ]
    }

    fn kinds(decision: &Decision) -> Vec<(String, UnsatisfiedKind)> {
        decision
            .unsatisfied
            .iter()
            .map(|u| (u.subject.clone(), u.kind.clone()))
            .collect()
    }

    #[test]
    fn passes_when_every_requirement_passed_and_cites_the_results() {
        let decision = Case::new(passing()).decide();
        assert!(decision.passed, "{decision:?}");
        assert!(decision.unsatisfied.is_empty());
        assert_eq!(decision.satisfied.len(), 2);
        assert_eq!(decision.satisfied[0].results, vec![1]);
        assert_eq!(decision.satisfied[1].results, vec![2]);
        let ids: Vec<_> = decision.results_used.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![Some(1), Some(2)]);
        assert!(decision.waivers_used.is_empty());
        assert_eq!(decision.at, Some(t(100)));
    }

    #[test]
    fn a_missing_result_fails_closed() {
        let decision = Case::new(vec![result(1, "boot", Outcome::Passed, 10)]).decide();
        assert!(!decision.passed);
        assert_eq!(
            kinds(&decision),
            vec![("ssh".to_string(), UnsatisfiedKind::Missing)]
        );
    }

    #[test]
    fn failed_error_queued_running_and_needs_inspection_fail_closed() {
        for outcome in [
            Outcome::Failed,
            Outcome::Error,
            Outcome::Queued,
            Outcome::Running,
            Outcome::NeedsInspection,
            Outcome::Skipped,
        ] {
            let decision = Case::new(vec![
                result(1, "boot", Outcome::Passed, 10),
                result(2, "ssh", outcome, 10),
            ])
            .decide();
            assert!(!decision.passed, "{outcome} must not pass");
            assert_eq!(
                kinds(&decision),
                vec![("ssh".to_string(), UnsatisfiedKind::NotPassed(outcome))]
            );
            assert_eq!(decision.unsatisfied[0].results, vec![2], "cites the result");
        }
    }

    #[test]
    fn the_newest_result_counts_and_ties_go_to_the_later_id() {
        let decision = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            result(2, "ssh", Outcome::Failed, 10),
            result(3, "ssh", Outcome::Passed, 20),
        ])
        .decide();
        assert!(decision.passed, "{decision:?}");
        let decision = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            result(3, "ssh", Outcome::Passed, 20),
            result(4, "ssh", Outcome::Failed, 20),
        ])
        .decide();
        assert!(!decision.passed, "{decision:?}");
    }

    #[test]
    fn min_count_needs_enough_passes_and_a_passing_latest() {
        let mut case = Case::new(passing());
        case.policy[1].min_count = 3;
        case.results.push(result(3, "ssh", Outcome::Passed, 11));
        let decision = case.decide();
        assert!(!decision.passed);
        assert_eq!(
            kinds(&decision),
            vec![(
                "ssh".to_string(),
                UnsatisfiedKind::NotEnoughResults {
                    passed: 2,
                    required: 3
                }
            )]
        );
        assert_eq!(decision.unsatisfied[0].results, vec![2, 3]);
        case.results.push(result(4, "ssh", Outcome::Passed, 12));
        let decision = case.decide();
        assert!(decision.passed, "{decision:?}");
        assert_eq!(decision.satisfied[1].results, vec![2, 3, 4]);
        // Enough passes, but the newest failed.
        case.results.push(result(5, "ssh", Outcome::Failed, 13));
        let decision = case.decide();
        assert_eq!(
            kinds(&decision),
            vec![(
                "ssh".to_string(),
                UnsatisfiedKind::NotPassed(Outcome::Failed)
            )]
        );
    }

    #[test]
    fn a_scenario_requirement_counts_only_its_scenario() {
        let mut case = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            in_scenario(result(2, "ssh", Outcome::Passed, 10), "bios"),
        ]);
        case.policy[1].scenario = Some("uefi".into());
        let decision = case.decide();
        assert!(!decision.passed);
        assert_eq!(decision.unsatisfied[0].kind, UnsatisfiedKind::Missing);
        assert_eq!(decision.unsatisfied[0].scenario.as_deref(), Some("uefi"));
        assert!(
            decision.unsatisfied[0].detail.contains("bios"),
            "{decision:?}"
        );
        case.results
            .push(in_scenario(result(3, "ssh", Outcome::Passed, 11), "uefi"));
        assert!(case.decide().passed);
    }

    #[test]
    fn without_a_scenario_every_scenario_must_pass() {
        let decision = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            in_scenario(result(2, "ssh", Outcome::Passed, 10), "bios"),
            in_scenario(result(3, "ssh", Outcome::Failed, 10), "uefi"),
        ])
        .decide();
        assert!(!decision.passed);
        assert_eq!(decision.unsatisfied[0].scenario.as_deref(), Some("uefi"));
        assert_eq!(decision.unsatisfied[0].results, vec![3]);
    }

    #[test]
    fn a_requirement_outside_its_window_does_not_apply() {
        let mut case = Case::new(vec![result(1, "boot", Outcome::Passed, 10)]);
        case.policy[1].valid_until = Some(t(50));
        let decision = case.decide();
        assert!(decision.passed, "{decision:?}");
        assert_eq!(decision.not_applicable, vec!["ssh".to_string()]);
        case.policy[1].valid_until = None;
        case.policy[1].valid_since = Some(t(200));
        assert!(case.decide().passed);
        // Inside the window it applies again.
        case.at = t(200);
        let decision = case.decide();
        assert_eq!(
            kinds(&decision),
            vec![("ssh".to_string(), UnsatisfiedKind::Missing)]
        );
    }

    #[test]
    fn a_waiver_satisfies_a_failed_requirement_and_is_cited() {
        let mut case = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            result(2, "ssh", Outcome::Failed, 10),
        ]);
        case.waivers.push(waiver(7, "ssh", None, 20));
        let decision = case.decide();
        assert!(decision.passed, "{decision:?}");
        assert_eq!(decision.waivers_used, vec![7]);
        assert_eq!(decision.satisfied[1].waivers, vec![7]);
        assert_eq!(decision.satisfied[1].results, vec![2]);
        // A waiver of another testcase, or of another scenario, does not help.
        case.waivers = vec![waiver(8, "boot", None, 20)];
        assert!(!case.decide().passed);
        case.results[1].scenario = "uefi".into();
        case.waivers = vec![waiver(9, "ssh", Some("bios"), 20)];
        assert!(!case.decide().passed);
        case.waivers = vec![waiver(10, "ssh", Some("uefi"), 20)];
        assert!(case.decide().passed);
    }

    #[test]
    fn a_waiver_satisfies_a_missing_requirement() {
        let mut case = Case::new(vec![result(1, "boot", Outcome::Passed, 10)]);
        case.waivers.push(waiver(3, "ssh", None, 20));
        let decision = case.decide();
        assert!(decision.passed, "{decision:?}");
        assert_eq!(decision.waivers_used, vec![3]);
        assert!(
            decision.summary.contains("1 by waiver"),
            "{}",
            decision.summary
        );
    }

    #[test]
    fn a_revoked_waiver_no_longer_counts_but_did_before_its_revocation() {
        let mut case = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            result(2, "ssh", Outcome::Failed, 10),
        ]);
        let mut revoked = waiver(4, "ssh", None, 20);
        revoked.revoked = Some(Revocation {
            author: "carol".into(),
            reason: "fixed the wrong thing".into(),
            at: t(50),
        });
        case.waivers.push(revoked);
        let decision = case.decide();
        assert!(!decision.passed);
        assert!(decision.waivers_used.is_empty());
        case.at = t(30);
        assert!(case.decide().passed, "the waiver was in force at 30");
        case.at = t(15);
        assert!(!case.decide().passed, "the waiver did not exist yet at 15");
    }

    #[test]
    fn a_veto_fails_a_passing_compose_and_withdrawing_it_restores_it() {
        let mut case = Case::new(passing());
        case.verdicts.push(verdict(true, 20));
        let vetoed = case.decide();
        assert!(!vetoed.passed);
        assert_eq!(
            kinds(&vetoed),
            vec![("compose".to_string(), UnsatisfiedKind::Vetoed)]
        );
        assert!(vetoed.unsatisfied[0].detail.contains("alice"));
        case.verdicts.push(verdict(false, 30));
        assert!(case.decide().passed, "unvetoed");
        // As of before the withdrawal, the veto stood.
        case.at = t(25);
        assert!(!case.decide().passed);
    }

    #[test]
    fn a_waiver_does_not_lift_a_veto() {
        let mut case = Case::new(passing());
        case.verdicts.push(verdict(true, 20));
        case.waivers.push(waiver(1, "compose", None, 20));
        assert!(!case.decide().passed);
    }

    #[test]
    fn a_failed_compose_never_passes() {
        let mut case = Case::new(passing());
        case.compose = compose(ComposeState::Failed {
            reason: "\nE: Unable to locate package nope".into(),
        });
        let decision = case.decide();
        assert!(!decision.passed);
        assert_eq!(decision.unsatisfied[0].kind, UnsatisfiedKind::ComposeFailed);
        assert!(decision.unsatisfied[0]
            .detail
            .contains("Unable to locate package nope"));
    }

    #[test]
    fn a_running_compose_never_passes_nor_one_that_finished_after_the_time_asked() {
        let mut case = Case::new(passing());
        case.compose = compose(ComposeState::Running);
        let decision = case.decide();
        assert!(!decision.passed);
        assert_eq!(
            kinds(&decision),
            vec![("compose".to_string(), UnsatisfiedKind::ComposeRunning)]
        );
        case.compose = compose(ComposeState::Complete);
        case.compose.finished_at = Some(t(60));
        case.at = t(50);
        assert_eq!(kinds(&case.decide())[0].1, UnsatisfiedKind::ComposeRunning);
    }

    #[test]
    fn results_after_the_time_asked_are_ignored() {
        let mut case = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            result(2, "ssh", Outcome::Failed, 10),
            result(3, "ssh", Outcome::Passed, 60),
        ]);
        assert!(case.decide().passed);
        case.at = t(50);
        let decision = case.decide();
        assert_eq!(
            kinds(&decision),
            vec![(
                "ssh".to_string(),
                UnsatisfiedKind::NotPassed(Outcome::Failed)
            )]
        );
    }

    #[test]
    fn an_internal_error_is_a_failed_decision() {
        let decision = Decision::failed(
            ComposeId(COMPOSE.into()),
            "cloud",
            "policy",
            "policies/stable.toml:3:1: field `require[0].min-count`: bad".into(),
        );
        assert!(!decision.passed);
        assert_eq!(decision.unsatisfied[0].kind, UnsatisfiedKind::Error);
        assert!(decision.summary.contains("stable.toml:3:1"));
        // It differs from any real answer, so recording it announces the change.
        assert!(!decision.same_answer(&Case::new(vec![]).decide()));
    }

    #[test]
    fn the_same_failure_with_a_new_result_is_the_same_answer() {
        let first = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            result(2, "ssh", Outcome::Failed, 10),
        ])
        .decide();
        let mut again = Case::new(vec![
            result(1, "boot", Outcome::Passed, 10),
            result(2, "ssh", Outcome::Failed, 10),
            result(3, "ssh", Outcome::Failed, 20),
        ]);
        assert!(first.same_answer(&again.decide()));
        again.results.push(result(4, "ssh", Outcome::Error, 30));
        assert!(!first.same_answer(&again.decide()));
    }
}
