//! A stream's release decision at a moment: release a compose, mark the stream stale, or wait.
//!
//! [`plan_release`] is a total, pure function of the stream's policy, what the engine remembers about the
//! stream ([`CadenceState`]), the time, and the composes and releases it reads from the store. The engine
//! calls it on every tick, applies the plan, and stores the new state; calling it again at the same time
//! after that yields [`ReleaseAction::Nothing`] and the same state.

use std::collections::HashMap;
use std::fmt;

use jiff::Timestamp;
use slipway_model::{
    CadenceState, CandidateCompose, ComposeId, ComposeState, OnMissed, Release, ReleaseState,
    StreamPolicy, Version,
};

/// What the planner reads about a stream, as the engine loads it from the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReleaseInputs<'a> {
    /// The stream's composes with their latest decision in this stream (`None` when undecided), in any
    /// order. The engine may pass only the newest ones: a release whose compose is not among them is
    /// taken to be older than all of them.
    pub composes: &'a [CandidateCompose],
    /// The stream's releases, revoked ones included. The engine may leave out releases older than its
    /// oldest compose in `composes` (and, for a promotion, older than the compose of its newest release
    /// that is not revoked), as long as that newest release is among them: the plan never looks further.
    pub releases: &'a [Release],
    /// For a stream with `promote-from`: the source stream's releases, each with its compose, at least
    /// those made since the compose of the stream's newest release that is not revoked (all of them
    /// while it has none). Revoked ones may be left out. Ignored for other streams.
    pub source_releases: &'a [(Release, CandidateCompose)],
}

/// What to do now, and the state to keep for the next call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePlan {
    /// The action.
    pub action: ReleaseAction,
    /// The stream's state after the action; the engine stores it (it changes only when something
    /// happened: the first tick, a release day, a release, a stale transition).
    pub state: CadenceState,
}

/// The action of a [`ReleasePlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseAction {
    /// Release this compose in the stream now.
    Release {
        /// The compose to release.
        compose: ComposeId,
        /// Why now.
        why: ReleaseReason,
        /// For a promotion: the source stream's release of the compose.
        promoted_from: Option<Version>,
    },
    /// A release day found nothing to release: the stream keeps its previous release and is stale since
    /// that day (the first such day, when several passed unhandled).
    MarkStale {
        /// The release day that was missed.
        since: Timestamp,
    },
    /// Nothing to do.
    Nothing,
}

/// Why a compose is released now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseReason {
    /// The stream releases every compose that passes (`on-pass`).
    Passed,
    /// A release day arrived (the latest, when several passed since the last call).
    ReleaseDay {
        /// The release instant.
        due: Timestamp,
    },
    /// The stream was stale and releases the first compose that passed since (`retry-nightly`).
    Retry {
        /// The release day that was missed.
        stale_since: Timestamp,
    },
}

impl fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passed => f.write_str("passed its gate (cadence on-pass)"),
            Self::ReleaseDay { due } => write!(f, "release day {due}"),
            Self::Retry { stale_since } => write!(
                f,
                "first candidate since the missed release day {stale_since} (on-missed retry-nightly)"
            ),
        }
    }
}

/// The stream's release decision at `now`.
///
/// - A candidate is, for a stream of its own composes, a complete compose whose decision passed; for a
///   stream with `promote-from`, a compose the source stream released, published at least the soak before
///   `now` and not revoked there (and not failed by this stream's own decision, if it has one). Either way
///   it must be newer (by creation time, then id) than the stream's newest non-revoked release and never
///   released in the stream before, so the stream never goes backwards, never releases a compose twice
///   and never re-releases a revoked one. The newest candidate is the one released.
/// - `on-pass`: the newest candidate is released at once; the stream is never stale.
/// - Scheduled: the first call only starts the schedule. When one or more release instants passed since
///   the last call, the newest candidate is released; with none, the stream becomes stale since the
///   first of them (a stream already stale stays stale since its earlier day). While stale,
///   `retry-nightly` releases the newest candidate as soon as there is one; `skip` waits for a release
///   day.
/// - A release made outside the plan (an emergency release) after the stream became stale ends it, and
///   one made after a release day that no call handled yet serves that day: it is not missed.
pub fn plan_release(
    policy: &StreamPolicy,
    state: &CadenceState,
    now: Timestamp,
    inputs: &ReleaseInputs<'_>,
) -> ReleasePlan {
    let mut next = state.clone();
    if let Some(since) = next.stale_since {
        let released_since = inputs
            .releases
            .iter()
            .any(|r| r.state != ReleaseState::Revoked && r.created_at >= since);
        if released_since {
            next.stale_since = None;
        }
    }
    let candidate = newest_candidate(policy, now, inputs);
    let release = |(compose, promoted_from): Candidate, why| ReleaseAction::Release {
        compose,
        why,
        promoted_from,
    };

    if !policy.cadence.is_scheduled() {
        // Forgetting the schedule means a later switch to one starts afresh instead of counting every
        // release day since as missed.
        next = CadenceState::default();
        let action = candidate.map_or(ReleaseAction::Nothing, |c| {
            release(c, ReleaseReason::Passed)
        });
        return ReleasePlan {
            action,
            state: next,
        };
    }

    let Some(handled) = next.handled_until else {
        next.handled_until = Some(now);
        return ReleasePlan {
            action: ReleaseAction::Nothing,
            state: next,
        };
    };

    let mut due = policy.cadence.due_between(handled, now);
    let action = if let Some(first) = due.next() {
        // A release made out of cycle after a missed day (while the engine was not ticking) served
        // that day late; only days after the stream's last release count as missed.
        let last_release = inputs
            .releases
            .iter()
            .filter(|r| r.state != ReleaseState::Revoked)
            .map(|r| r.created_at)
            .max();
        let unserved = |day: &Timestamp| last_release.is_none_or(|at| *day > at);
        let mut first_missed = Some(first).filter(unserved);
        let mut latest = first;
        for day in due {
            latest = day;
            first_missed = first_missed.or(Some(day).filter(unserved));
        }
        next.handled_until = Some(now);
        match (candidate, first_missed) {
            (Some(c), _) => {
                next.stale_since = None;
                release(c, ReleaseReason::ReleaseDay { due: latest })
            }
            (None, Some(since)) if next.stale_since.is_none() => {
                next.stale_since = Some(since);
                ReleaseAction::MarkStale { since }
            }
            (None, _) => ReleaseAction::Nothing,
        }
    } else {
        match (next.stale_since, policy.on_missed, candidate) {
            (Some(stale_since), OnMissed::RetryNightly, Some(c)) => {
                next.stale_since = None;
                release(c, ReleaseReason::Retry { stale_since })
            }
            _ => ReleaseAction::Nothing,
        }
    };
    ReleasePlan {
        action,
        state: next,
    }
}

/// A compose to release and, for a promotion, the source release it comes from.
type Candidate = (ComposeId, Option<Version>);

/// The order of composes: creation time, then id (the order they were started in).
type Age<'a> = (Timestamp, &'a ComposeId);

fn newest_candidate(
    policy: &StreamPolicy,
    now: Timestamp,
    inputs: &ReleaseInputs<'_>,
) -> Option<Candidate> {
    let mut ages: HashMap<&ComposeId, Timestamp> = inputs
        .composes
        .iter()
        .map(|c| (&c.id, c.created_at))
        .collect();
    if policy.promote_from.is_some() {
        for (_, c) in inputs.source_releases {
            ages.entry(&c.id).or_insert(c.created_at);
        }
    }
    let newest_released: Option<Age<'_>> = inputs
        .releases
        .iter()
        .filter(|r| r.state != ReleaseState::Revoked)
        .filter_map(|r| ages.get(&r.compose).map(|at| (*at, &r.compose)))
        .max();
    let fresh = |age: Age<'_>| {
        newest_released.is_none_or(|released| age > released)
            && !inputs.releases.iter().any(|r| &r.compose == age.1)
    };

    match &policy.promote_from {
        None => inputs
            .composes
            .iter()
            .filter(|c| c.state == ComposeState::Complete && c.passed == Some(true))
            .map(|c| (c.created_at, &c.id))
            .filter(|age| fresh(*age))
            .max()
            .map(|(_, id)| (id.clone(), None)),
        Some(promotion) => {
            let failed_here = |id: &ComposeId| {
                inputs
                    .composes
                    .iter()
                    .any(|c| &c.id == id && c.passed == Some(false))
            };
            let soak = promotion.soak.seconds();
            inputs
                .source_releases
                .iter()
                .filter(|(r, c)| {
                    r.state != ReleaseState::Revoked
                        && r.compose == c.id
                        && c.state == ComposeState::Complete
                        && r.published_at.is_some_and(|published| {
                            published
                                .as_second()
                                .checked_add(soak)
                                .is_some_and(|matured| matured <= now.as_second())
                        })
                })
                .filter(|(_, c)| !revoked_in_source(inputs.source_releases, &c.id))
                .filter(|(_, c)| !failed_here(&c.id))
                .map(|(r, c)| ((c.created_at, &c.id), &r.version))
                .filter(|(age, _)| fresh(*age))
                .max_by(|a, b| a.0.cmp(&b.0))
                .map(|((_, id), version)| (id.clone(), Some(version.clone())))
        }
    }
}

/// Whether the source stream revoked any release of this compose.
fn revoked_in_source(source: &[(Release, CandidateCompose)], compose: &ComposeId) -> bool {
    source
        .iter()
        .any(|(r, _)| &r.compose == compose && r.state == ReleaseState::Revoked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_model::{
        parse_time, Cadence, EverySchedule, Period, PeriodUnit, Promotion, TimeOfDay,
    };

    fn t(text: &str) -> Timestamp {
        parse_time(text).expect("time")
    }

    /// Every `days` days from `anchor` (a Tuesday in these tests) at 12:00 UTC.
    fn every(days: u32, anchor: &str) -> Cadence {
        Cadence::Every(EverySchedule {
            every: Period::new(days, PeriodUnit::Days).expect("period"),
            anchor: anchor.parse().expect("date"),
            at: TimeOfDay {
                hour: 12,
                minute: 0,
            },
        })
    }

    fn cron(text: &str) -> Cadence {
        Cadence::Cron(text.parse().expect("cron"))
    }

    /// Weekly on Tuesdays at 12:00 UTC: 2026-01-06, -13, -20, -27, 02-03, …
    fn weekly(on_missed: OnMissed) -> StreamPolicy {
        StreamPolicy {
            cadence: every(7, "2026-01-06"),
            on_missed,
            promote_from: None,
        }
    }

    /// A compose started at `at` in `state`, with the gate's answer `passed` (`None`: undecided).
    fn compose(id: &str, at: &str, state: ComposeState, passed: Option<bool>) -> CandidateCompose {
        CandidateCompose {
            id: ComposeId(id.into()),
            created_at: t(at),
            state,
            passed,
        }
    }

    /// A stream, its source stream's releases, and the engine's part: apply each plan and keep the state.
    struct Stream {
        policy: StreamPolicy,
        state: CadenceState,
        composes: Vec<CandidateCompose>,
        releases: Vec<Release>,
        source: Vec<(Release, CandidateCompose)>,
    }

    impl Stream {
        fn new(policy: StreamPolicy) -> Self {
            Self {
                policy,
                state: CadenceState::default(),
                composes: vec![],
                releases: vec![],
                source: vec![],
            }
        }

        fn passed(&mut self, id: &str, at: &str) {
            self.composes
                .push(compose(id, at, ComposeState::Complete, Some(true)));
        }

        fn gate_failed(&mut self, id: &str, at: &str) {
            self.composes
                .push(compose(id, at, ComposeState::Complete, Some(false)));
        }

        fn inputs(&self) -> ReleaseInputs<'_> {
            ReleaseInputs {
                composes: &self.composes,
                releases: &self.releases,
                source_releases: &self.source,
            }
        }

        /// Plans at `now`, applies the plan as the engine would, and checks that planning again at the
        /// same time does nothing and keeps the state.
        fn tick(&mut self, now: &str) -> ReleaseAction {
            let now = t(now);
            let plan = plan_release(&self.policy, &self.state, now, &self.inputs());
            if let ReleaseAction::Release { compose, .. } = &plan.action {
                let n = self
                    .releases
                    .iter()
                    .filter(|r| r.version.date() == Version::new(now, 0).date())
                    .count() as u32;
                self.releases.push(Release {
                    stream: "s".into(),
                    version: Version::new(now, n),
                    compose: compose.clone(),
                    state: ReleaseState::Published,
                    created_at: now,
                    published_at: Some(now),
                    revocation: None,
                });
            }
            self.state = plan.state.clone();
            let again = plan_release(&self.policy, &self.state, now, &self.inputs());
            assert_eq!(again.action, ReleaseAction::Nothing, "not idempotent");
            assert_eq!(again.state, self.state, "not idempotent");
            plan.action
        }

        fn released(&self) -> Vec<&str> {
            self.releases.iter().map(|r| r.compose.as_str()).collect()
        }
    }

    fn released(id: &str) -> impl Fn(&ReleaseAction) -> bool + '_ {
        move |action| matches!(action, ReleaseAction::Release { compose, .. } if compose.as_str() == id)
    }

    #[test]
    fn on_pass_releases_each_passing_compose_at_once_and_is_never_stale() {
        let mut s = Stream::new(StreamPolicy::default());
        assert_eq!(s.tick("2026-01-01T00:00:00Z"), ReleaseAction::Nothing);
        s.passed("a", "2026-01-01T01:00:00Z");
        let action = s.tick("2026-01-01T02:00:00Z");
        assert!(released("a")(&action), "{action:?}");
        assert!(matches!(
            action,
            ReleaseAction::Release {
                why: ReleaseReason::Passed,
                promoted_from: None,
                ..
            }
        ));
        s.gate_failed("b", "2026-01-02T01:00:00Z");
        assert_eq!(s.tick("2026-01-20T00:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.state, CadenceState::default(), "never stale");
        // Two pass between ticks: the newer one only, and never the older one afterwards.
        s.passed("c", "2026-01-21T01:00:00Z");
        s.passed("d", "2026-01-21T02:00:00Z");
        assert!(released("d")(&s.tick("2026-01-21T03:00:00Z")));
        assert_eq!(s.tick("2026-01-22T00:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.released(), ["a", "d"]);
    }

    #[test]
    fn the_first_tick_starts_the_schedule_without_counting_earlier_days() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.passed("a", "2026-01-01T01:00:00Z");
        // Release days before the stream's first tick were not missed: it just started.
        assert_eq!(s.tick("2026-02-01T00:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.state.handled_until, Some(t("2026-02-01T00:00:00Z")));
        assert_eq!(s.state.stale_since, None);
        assert_eq!(s.tick("2026-02-03T11:59:00Z"), ReleaseAction::Nothing);
        let action = s.tick("2026-02-03T12:00:00Z");
        assert_eq!(
            action,
            ReleaseAction::Release {
                compose: ComposeId("a".into()),
                why: ReleaseReason::ReleaseDay {
                    due: t("2026-02-03T12:00:00Z")
                },
                promoted_from: None,
            }
        );
    }

    #[test]
    fn a_release_day_releases_the_newest_passing_compose_and_nothing_between_days() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        s.passed("a", "2026-01-02T00:00:00Z");
        s.passed("b", "2026-01-03T00:00:00Z");
        s.gate_failed("c", "2026-01-04T00:00:00Z");
        // A failed build that a decision passed, a running compose, and an undecided one.
        let failed = ComposeState::Failed { reason: "x".into() };
        s.composes
            .push(compose("d", "2026-01-05T00:00:00Z", failed, Some(true)));
        s.composes.push(compose(
            "e",
            "2026-01-05T01:00:00Z",
            ComposeState::Running,
            None,
        ));
        s.composes.push(compose(
            "f",
            "2026-01-05T02:00:00Z",
            ComposeState::Complete,
            None,
        ));
        // Passing composes wait for the release day.
        assert_eq!(s.tick("2026-01-05T12:00:00Z"), ReleaseAction::Nothing);
        assert!(released("b")(&s.tick("2026-01-06T12:00:01Z")));
        s.passed("g", "2026-01-07T00:00:00Z");
        assert_eq!(s.tick("2026-01-12T00:00:00Z"), ReleaseAction::Nothing);
        assert!(released("g")(&s.tick("2026-01-13T12:00:00Z")));
        assert_eq!(s.released(), ["b", "g"]);
    }

    #[test]
    fn a_release_day_without_a_candidate_makes_the_stream_stale_since_that_day() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        s.passed("a", "2026-01-02T00:00:00Z");
        assert!(released("a")(&s.tick("2026-01-06T12:00:00Z")));
        s.gate_failed("b", "2026-01-08T00:00:00Z");
        assert_eq!(
            s.tick("2026-01-13T12:30:00Z"),
            ReleaseAction::MarkStale {
                since: t("2026-01-13T12:00:00Z")
            }
        );
        assert_eq!(s.state.stale_since, Some(t("2026-01-13T12:00:00Z")));
        // The next day without a candidate keeps it stale since the first missed day, silently.
        assert_eq!(s.tick("2026-01-20T12:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.state.stale_since, Some(t("2026-01-13T12:00:00Z")));
    }

    #[test]
    fn skip_stays_stale_until_a_release_day_finds_a_compose() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        assert!(matches!(
            s.tick("2026-01-06T12:00:00Z"),
            ReleaseAction::MarkStale { .. }
        ));
        s.passed("a", "2026-01-07T00:00:00Z");
        assert_eq!(s.tick("2026-01-07T01:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.tick("2026-01-12T00:00:00Z"), ReleaseAction::Nothing);
        assert!(s.state.stale_since.is_some());
        let action = s.tick("2026-01-13T12:00:00Z");
        assert!(released("a")(&action), "{action:?}");
        assert_eq!(s.state.stale_since, None);
    }

    #[test]
    fn retry_nightly_releases_the_first_compose_that_passes_after_the_missed_day() {
        let mut s = Stream::new(weekly(OnMissed::RetryNightly));
        s.tick("2026-01-01T00:00:00Z");
        assert!(matches!(
            s.tick("2026-01-06T12:00:00Z"),
            ReleaseAction::MarkStale { .. }
        ));
        s.gate_failed("a", "2026-01-07T03:00:00Z");
        assert_eq!(s.tick("2026-01-07T05:00:00Z"), ReleaseAction::Nothing);
        s.passed("b", "2026-01-08T03:00:00Z");
        assert_eq!(
            s.tick("2026-01-08T05:00:00Z"),
            ReleaseAction::Release {
                compose: ComposeId("b".into()),
                why: ReleaseReason::Retry {
                    stale_since: t("2026-01-06T12:00:00Z")
                },
                promoted_from: None,
            }
        );
        assert_eq!(s.state.stale_since, None);
        // Not stale any more: the next passing compose waits for the release day.
        s.passed("c", "2026-01-09T03:00:00Z");
        assert_eq!(s.tick("2026-01-09T05:00:00Z"), ReleaseAction::Nothing);
        assert!(released("c")(&s.tick("2026-01-13T12:00:00Z")));
    }

    #[test]
    fn many_missed_release_days_in_one_tick_are_one_stale_transition() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        // The engine was down over four release days.
        assert_eq!(
            s.tick("2026-02-01T00:00:00Z"),
            ReleaseAction::MarkStale {
                since: t("2026-01-06T12:00:00Z")
            }
        );
        assert_eq!(s.tick("2026-02-01T06:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.state.stale_since, Some(t("2026-01-06T12:00:00Z")));
    }

    #[test]
    fn a_compose_that_passed_during_a_long_gap_is_released_at_the_next_tick() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        s.passed("a", "2026-01-15T00:00:00Z");
        // Days 01-06 (nothing yet), 01-13 (nothing yet), 01-20 and 01-27 passed unhandled: one release
        // covers them, named after the latest.
        assert_eq!(
            s.tick("2026-01-29T00:00:00Z"),
            ReleaseAction::Release {
                compose: ComposeId("a".into()),
                why: ReleaseReason::ReleaseDay {
                    due: t("2026-01-27T12:00:00Z")
                },
                promoted_from: None,
            }
        );
        assert_eq!(s.state.stale_since, None);
    }

    #[test]
    fn a_stale_stream_releases_on_a_later_release_day_even_across_a_gap() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        assert!(matches!(
            s.tick("2026-01-06T12:00:00Z"),
            ReleaseAction::MarkStale { .. }
        ));
        s.passed("a", "2026-01-16T00:00:00Z");
        // The tick of 01-13 never came; the one after 01-20 finds the compose.
        assert!(released("a")(&s.tick("2026-01-20T13:00:00Z")));
        assert_eq!(s.state.stale_since, None);
    }

    #[test]
    fn never_backwards_never_twice_never_a_revoked_compose() {
        let mut s = Stream::new(StreamPolicy::default());
        s.passed("a", "2026-01-01T00:00:00Z");
        s.passed("b", "2026-01-02T00:00:00Z");
        assert!(released("b")(&s.tick("2026-01-02T01:00:00Z")));
        // "a" passes late: older than the release, never released.
        assert_eq!(s.tick("2026-01-03T00:00:00Z"), ReleaseAction::Nothing);
        // Revoking "b" makes "a" the newest good one again, but "b" itself never comes back.
        s.releases[0].state = ReleaseState::Revoked;
        s.passed("c", "2026-01-01T12:00:00Z");
        let action = s.tick("2026-01-04T00:00:00Z");
        assert!(released("c")(&action), "{action:?}");
        assert_eq!(s.tick("2026-01-05T00:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.released(), ["b", "c"]);
        // Versions grow with the day and the count within it.
        assert!(s.releases[0].version < s.releases[1].version);
    }

    #[test]
    fn an_out_of_cycle_release_ends_a_stale_spell() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        assert!(matches!(
            s.tick("2026-01-06T12:00:00Z"),
            ReleaseAction::MarkStale { .. }
        ));
        s.passed("a", "2026-01-07T00:00:00Z");
        s.releases.push(Release {
            stream: "s".into(),
            version: Version::new(t("2026-01-07T02:00:00Z"), 0),
            compose: ComposeId("a".into()),
            state: ReleaseState::Published,
            created_at: t("2026-01-07T02:00:00Z"),
            published_at: Some(t("2026-01-07T02:00:00Z")),
            revocation: None,
        });
        assert_eq!(s.tick("2026-01-07T03:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.state.stale_since, None);
    }

    #[test]
    fn an_out_of_cycle_release_after_an_unhandled_release_day_serves_it() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        s.passed("a", "2026-01-02T00:00:00Z");
        // The engine did not tick on 01-06; an emergency release of "a" came on 01-07.
        s.releases.push(Release {
            stream: "s".into(),
            version: Version::new(t("2026-01-07T02:00:00Z"), 0),
            compose: ComposeId("a".into()),
            state: ReleaseState::Published,
            created_at: t("2026-01-07T02:00:00Z"),
            published_at: Some(t("2026-01-07T02:00:00Z")),
            revocation: None,
        });
        assert_eq!(s.tick("2026-01-08T00:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.state.stale_since, None);
        // The next day after it with nothing new is missed.
        assert_eq!(
            s.tick("2026-01-20T13:00:00Z"),
            ReleaseAction::MarkStale {
                since: t("2026-01-13T12:00:00Z")
            }
        );
    }

    fn promoting(cadence: Cadence, on_missed: OnMissed) -> Stream {
        Stream::new(StreamPolicy {
            cadence,
            on_missed,
            promote_from: Some(Promotion {
                stream: "testing".into(),
                soak: "14d".parse().expect("period"),
            }),
        })
    }

    fn source_release(
        id: &str,
        composed: &str,
        published: Option<&str>,
        state: ReleaseState,
    ) -> (Release, CandidateCompose) {
        let at = published.map(t).unwrap_or_else(|| t(composed));
        (
            Release {
                stream: "testing".into(),
                version: Version::new(at, 0),
                compose: ComposeId(id.into()),
                state,
                created_at: at,
                published_at: published.map(t),
                revocation: None,
            },
            compose(id, composed, ComposeState::Complete, None),
        )
    }

    #[test]
    fn promotion_takes_what_the_source_released_a_soak_ago_and_never_revoked() {
        let mut s = promoting(cron("0 12 * * tue"), OnMissed::Skip);
        s.tick("2026-01-01T00:00:00Z");
        s.source = vec![
            source_release(
                "a",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T06:00:00Z"),
                ReleaseState::Superseded,
            ),
            source_release(
                "b",
                "2026-01-02T00:00:00Z",
                Some("2026-01-02T06:00:00Z"),
                ReleaseState::Revoked,
            ),
            source_release(
                "c",
                "2026-01-03T00:00:00Z",
                Some("2026-01-10T06:00:00Z"),
                ReleaseState::Published,
            ),
            source_release("d", "2026-01-04T00:00:00Z", None, ReleaseState::Pending),
        ];
        // Its own passing composes are not candidates.
        s.passed("own", "2026-01-05T00:00:00Z");
        // On 01-20, "a" has soaked 19 days, "b" is revoked, "c" only 10 days.
        let action = s.tick("2026-01-20T12:00:00Z");
        assert_eq!(
            action,
            ReleaseAction::Release {
                compose: ComposeId("a".into()),
                why: ReleaseReason::ReleaseDay {
                    due: t("2026-01-20T12:00:00Z")
                },
                promoted_from: Some(Version::new(t("2026-01-01T06:00:00Z"), 0)),
            }
        );
        // On 01-27 "c" has soaked 17 days.
        assert!(released("c")(&s.tick("2026-01-27T12:00:00Z")));
        // Nothing new matured by 02-03: stale.
        assert!(matches!(
            s.tick("2026-02-03T12:00:00Z"),
            ReleaseAction::MarkStale { .. }
        ));
        assert_eq!(s.released(), ["a", "c"]);
    }

    #[test]
    fn promotion_never_goes_back_to_an_older_source_release() {
        let mut s = promoting(Cadence::OnPass, OnMissed::Skip);
        s.source = vec![
            source_release(
                "a",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T06:00:00Z"),
                ReleaseState::Superseded,
            ),
            source_release(
                "b",
                "2026-01-02T00:00:00Z",
                Some("2026-01-02T06:00:00Z"),
                ReleaseState::Published,
            ),
        ];
        assert!(released("b")(&s.tick("2026-02-01T00:00:00Z")));
        assert_eq!(s.tick("2026-02-02T00:00:00Z"), ReleaseAction::Nothing);
        // The source revokes "b" and releases an older compose "a2": the promoting stream takes it only
        // once it revoked "b" itself.
        s.source[1].0.state = ReleaseState::Revoked;
        s.source.push(source_release(
            "a2",
            "2026-01-01T12:00:00Z",
            Some("2026-01-03T06:00:00Z"),
            ReleaseState::Published,
        ));
        assert_eq!(s.tick("2026-02-03T00:00:00Z"), ReleaseAction::Nothing);
        s.releases[0].state = ReleaseState::Revoked;
        assert!(released("a2")(&s.tick("2026-02-04T00:00:00Z")));
    }

    #[test]
    fn promotion_with_retry_releases_as_soon_as_a_release_matures() {
        let mut s = promoting(every(14, "2026-01-06"), OnMissed::RetryNightly);
        s.tick("2026-01-01T00:00:00Z");
        s.source = vec![source_release(
            "a",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T06:00:00Z"),
            ReleaseState::Published,
        )];
        assert_eq!(
            s.tick("2026-01-06T12:00:00Z"),
            ReleaseAction::MarkStale {
                since: t("2026-01-06T12:00:00Z")
            }
        );
        assert_eq!(s.tick("2026-01-15T05:59:59Z"), ReleaseAction::Nothing);
        let action = s.tick("2026-01-15T06:00:00Z");
        assert!(
            matches!(
                &action,
                ReleaseAction::Release {
                    why: ReleaseReason::Retry { .. },
                    ..
                }
            ),
            "{action:?}"
        );
        assert!(released("a")(&action));
    }

    #[test]
    fn promotion_skips_a_compose_this_stream_failed() {
        let mut s = promoting(Cadence::OnPass, OnMissed::Skip);
        s.source = vec![source_release(
            "a",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T06:00:00Z"),
            ReleaseState::Published,
        )];
        s.gate_failed("a", "2026-01-01T00:00:00Z");
        assert_eq!(s.tick("2026-02-01T00:00:00Z"), ReleaseAction::Nothing);
    }

    #[test]
    fn switching_to_on_pass_forgets_the_schedule() {
        let mut s = Stream::new(weekly(OnMissed::Skip));
        s.tick("2026-01-01T00:00:00Z");
        assert!(matches!(
            s.tick("2026-01-06T12:00:00Z"),
            ReleaseAction::MarkStale { .. }
        ));
        s.policy = StreamPolicy::default();
        assert_eq!(s.tick("2026-01-07T00:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.state, CadenceState::default());
        s.policy = weekly(OnMissed::Skip);
        // Back on a schedule, it starts afresh at the first tick.
        assert_eq!(s.tick("2026-03-01T00:00:00Z"), ReleaseAction::Nothing);
        assert_eq!(s.state.stale_since, None);
    }
}
