//! The gate: whether a compose may be released in a stream.
//!
//! [`decide`] takes the stream's policy, the compose, the latest results and the verdicts people gave, and
//! returns a [`Decision`]. It fails closed: a requirement passes only if the latest result of its testcase is
//! PASSED. A missing result, one still queued or running, an error, a failure or a person's veto each leave
//! the compose unreleasable, and each is listed with its reason.

use std::collections::BTreeMap;

use slipway_model::{
    Compose, ComposeState, Decision, GateConfig, Outcome, TestResult, Unsatisfied, UnsatisfiedKind,
    Verdict,
};

/// Decides on `compose` in `stream` under `policy`, given the latest result per testcase and every verdict
/// on the compose (oldest first; the newest verdict counts).
pub fn decide(
    stream: &str,
    policy: &GateConfig,
    compose: &Compose,
    latest_results: &[TestResult],
    verdicts: &[Verdict],
) -> Decision {
    let mut unsatisfied = Vec::new();
    let mut results_used = Vec::new();

    match &compose.state {
        ComposeState::Complete => {}
        ComposeState::Running => unsatisfied.push(Unsatisfied {
            subject: "compose".into(),
            kind: UnsatisfiedKind::NotPassed(Outcome::Running),
            detail: "the compose is still being built".into(),
        }),
        ComposeState::Failed { reason } => unsatisfied.push(Unsatisfied {
            subject: "compose".into(),
            kind: UnsatisfiedKind::ComposeFailed,
            detail: format!("the compose failed: {}", first_line(reason)),
        }),
    }

    if let Some(veto) = verdicts.last().filter(|v| v.failed) {
        unsatisfied.push(Unsatisfied {
            subject: "compose".into(),
            kind: UnsatisfiedKind::Vetoed,
            detail: format!("marked failed by {}: {}", veto.author, veto.reason),
        });
    }

    // The store hands over the latest result per testcase; if it ever passes more than one, the newest wins.
    let mut latest: BTreeMap<&str, &TestResult> = BTreeMap::new();
    for result in latest_results {
        let newer = latest
            .get(result.testcase.as_str())
            .is_none_or(|seen| result.submitted_at >= seen.submitted_at);
        if newer {
            latest.insert(&result.testcase, result);
        }
    }

    for testcase in &policy.required {
        match latest.get(testcase.as_str()) {
            None => unsatisfied.push(Unsatisfied {
                subject: testcase.clone(),
                kind: UnsatisfiedKind::Missing,
                detail: format!("no result for {testcase}"),
            }),
            Some(result) => {
                results_used.push((testcase.clone(), result.outcome));
                if result.outcome != Outcome::Passed {
                    let note = first_line(&result.note);
                    unsatisfied.push(Unsatisfied {
                        subject: testcase.clone(),
                        kind: UnsatisfiedKind::NotPassed(result.outcome),
                        detail: if note.is_empty() {
                            format!("{testcase} is {}", result.outcome)
                        } else {
                            format!("{testcase} is {}: {note}", result.outcome)
                        },
                    });
                }
            }
        }
    }

    let passed = unsatisfied.is_empty();
    let summary = if passed {
        format!("all {} required testcases passed", policy.required.len())
    } else {
        format!(
            "{} of {} requirements unsatisfied",
            unsatisfied.len(),
            policy.required.len() + 1
        )
    };
    Decision {
        compose: compose.id.clone(),
        stream: stream.to_string(),
        passed,
        summary,
        unsatisfied,
        results_used,
    }
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
    use jiff::Timestamp;
    use slipway_model::{sha256_hex, ComposeId};

    fn compose(state: ComposeState) -> Compose {
        Compose {
            id: ComposeId("cloud-20261121.0".into()),
            stream: "cloud".into(),
            recipe: "cloud".into(),
            recipe_hash: sha256_hex(b"r"),
            input_hash: None,
            state,
            created_at: Timestamp::UNIX_EPOCH,
            finished_at: None,
            artifacts: vec![],
            lock: None,
            pkgdiff: None,
        }
    }

    fn result(testcase: &str, outcome: Outcome, second: i64) -> TestResult {
        TestResult {
            artifact: "cloud.qcow2".into(),
            ..TestResult::new(
                ComposeId("cloud-20261121.0".into()),
                testcase,
                outcome,
                "",
                Timestamp::from_second(second).expect("valid"),
            )
        }
    }

    fn verdict(failed: bool) -> Verdict {
        Verdict {
            compose: ComposeId("cloud-20261121.0".into()),
            failed,
            author: "alice".into(),
            reason: "bad kernel".into(),
            created_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn policy() -> GateConfig {
        GateConfig {
            required: vec!["boot".into(), "ssh".into()],
        }
    }

    #[test]
    fn passes_only_when_every_required_testcase_passed() {
        let results = [
            result("boot", Outcome::Passed, 1),
            result("ssh", Outcome::Passed, 1),
        ];
        let decision = decide(
            "cloud",
            &policy(),
            &compose(ComposeState::Complete),
            &results,
            &[],
        );
        assert!(decision.passed, "{decision:?}");
        assert!(decision.unsatisfied.is_empty());
        assert_eq!(decision.results_used.len(), 2);
    }

    #[test]
    fn a_missing_result_fails_closed() {
        let results = [result("boot", Outcome::Passed, 1)];
        let decision = decide(
            "cloud",
            &policy(),
            &compose(ComposeState::Complete),
            &results,
            &[],
        );
        assert!(!decision.passed);
        assert_eq!(decision.unsatisfied[0].kind, UnsatisfiedKind::Missing);
        assert_eq!(decision.unsatisfied[0].subject, "ssh");
    }

    #[test]
    fn error_running_queued_and_failed_results_fail_closed() {
        for outcome in [
            Outcome::Error,
            Outcome::Running,
            Outcome::Queued,
            Outcome::Failed,
            Outcome::NeedsInspection,
            Outcome::Skipped,
        ] {
            let results = [
                result("boot", Outcome::Passed, 1),
                result("ssh", outcome, 1),
            ];
            let decision = decide(
                "cloud",
                &policy(),
                &compose(ComposeState::Complete),
                &results,
                &[],
            );
            assert!(!decision.passed, "{outcome} must not pass");
            assert_eq!(
                decision.unsatisfied[0].kind,
                UnsatisfiedKind::NotPassed(outcome)
            );
        }
    }

    #[test]
    fn the_newest_result_of_a_testcase_counts() {
        let results = [
            result("boot", Outcome::Passed, 1),
            result("ssh", Outcome::Failed, 1),
            result("ssh", Outcome::Passed, 2),
        ];
        let decision = decide(
            "cloud",
            &policy(),
            &compose(ComposeState::Complete),
            &results,
            &[],
        );
        assert!(decision.passed, "{decision:?}");
    }

    #[test]
    fn a_veto_fails_a_passing_compose_and_withdrawing_it_restores_it() {
        let results = [
            result("boot", Outcome::Passed, 1),
            result("ssh", Outcome::Passed, 1),
        ];
        let done = compose(ComposeState::Complete);
        let vetoed = decide("cloud", &policy(), &done, &results, &[verdict(true)]);
        assert!(!vetoed.passed);
        assert_eq!(vetoed.unsatisfied[0].kind, UnsatisfiedKind::Vetoed);
        assert!(vetoed.unsatisfied[0].detail.contains("alice"));
        let restored = decide(
            "cloud",
            &policy(),
            &done,
            &results,
            &[verdict(true), verdict(false)],
        );
        assert!(restored.passed);
    }

    #[test]
    fn a_failed_or_unfinished_compose_never_passes() {
        let results = [
            result("boot", Outcome::Passed, 1),
            result("ssh", Outcome::Passed, 1),
        ];
        let failed = compose(ComposeState::Failed {
            reason: "\nE: Unable to locate package nope".into(),
        });
        let decision = decide("cloud", &policy(), &failed, &results, &[]);
        assert!(!decision.passed);
        assert_eq!(decision.unsatisfied[0].kind, UnsatisfiedKind::ComposeFailed);
        assert!(decision.unsatisfied[0]
            .detail
            .contains("Unable to locate package nope"));
        let running = decide(
            "cloud",
            &policy(),
            &compose(ComposeState::Running),
            &results,
            &[],
        );
        assert!(!running.passed);
    }
}
