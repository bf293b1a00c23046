//! `plan_release` over random histories: composes that pass, fail or finish late, revocations, emergency
//! releases, and ticks
//! at irregular times with long gaps, applied as the engine applies them. After every tick:
//!
//! - a released compose is complete, its decision passed, it was never released in the stream before
//!   (so never a revoked one) and it is newer than the stream's newest non-revoked release;
//! - versions strictly increase;
//! - planning again at the same time does nothing and keeps the state;
//! - every release day either released or left the stream stale (or an out-of-cycle release came after
//!   it), and `on-pass` is never stale;
//! - a stale stream with `retry-nightly` has no candidate left.

use jiff::Timestamp;
use proptest::prelude::*;
use slipway_model::{
    Cadence, CadenceState, CandidateCompose, ComposeId, ComposeState, EverySchedule, OnMissed,
    Period, PeriodUnit, Promotion, Release, ReleaseState, StreamPolicy, TimeOfDay, Version,
};
use slipway_release::{plan_release, ReleaseAction, ReleaseInputs};

const START: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

#[derive(Debug, Clone)]
enum Outcome {
    Passes,
    FailsGate,
    FailsBuild,
    /// Still running at first; finishes and passes or fails a few steps later.
    Late(bool, usize),
}

#[derive(Debug, Clone)]
struct Step {
    /// Minutes until the tick after this step.
    advance: i64,
    compose: Option<Outcome>,
    /// Revoke the release at this index (modulo the count), if any.
    revoke: Option<usize>,
    /// Release the newest candidate out of cycle, as an emergency release does.
    emergency: bool,
}

fn step() -> impl Strategy<Value = Step> {
    let outcome = prop_oneof![
        3 => Just(Outcome::Passes),
        2 => Just(Outcome::FailsGate),
        1 => Just(Outcome::FailsBuild),
        1 => (any::<bool>(), 1usize..6).prop_map(|(p, n)| Outcome::Late(p, n)),
    ];
    let advance = prop_oneof![
        6 => 1i64..(36 * 60),
        1 => (36 * 60i64)..(40 * 24 * 60),
    ];
    (
        advance,
        proptest::option::weighted(0.7, outcome),
        proptest::option::weighted(0.05, any::<usize>()),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(advance, compose, revoke, emergency)| Step {
            advance,
            compose,
            revoke,
            emergency,
        })
}

fn policy() -> impl Strategy<Value = StreamPolicy> {
    let cadence = prop_oneof![
        Just(Cadence::OnPass),
        (1u32..15, 0i64..60, 0u8..24).prop_map(|(days, anchor_day, hour)| {
            let anchor = Timestamp::from_second(START + anchor_day * 86_400)
                .expect("in range")
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date();
            Cadence::Every(EverySchedule {
                every: Period::new(days, PeriodUnit::Days).expect("period"),
                anchor,
                at: TimeOfDay { hour, minute: 0 },
            })
        }),
        (1u32..100).prop_map(|hours| Cadence::Every(EverySchedule {
            every: Period::new(hours, PeriodUnit::Hours).expect("period"),
            anchor: jiff::civil::Date::constant(2026, 1, 3),
            at: TimeOfDay {
                hour: 5,
                minute: 30
            },
        })),
        prop_oneof![
            Just("0 12 * * tue"),
            Just("30 6 1,15 * *"),
            Just("0 */6 * * *"),
            Just("15 3 * * mon-fri"),
            Just("0 0 13 * fri"),
        ]
        .prop_map(|text| Cadence::Cron(text.parse().expect("cron"))),
    ];
    let on_missed = prop_oneof![Just(OnMissed::Skip), Just(OnMissed::RetryNightly)];
    (cadence, on_missed).prop_map(|(cadence, on_missed)| StreamPolicy {
        cadence,
        on_missed,
        promote_from: None,
    })
}

fn ts(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("in range")
}

/// A compose of the stream and, for one that finishes late, the step at which it does.
struct World {
    composes: Vec<CandidateCompose>,
    finishes: Vec<Option<(usize, bool)>>,
    releases: Vec<Release>,
    state: CadenceState,
}

impl World {
    fn new() -> Self {
        Self {
            composes: vec![],
            finishes: vec![],
            releases: vec![],
            state: CadenceState::default(),
        }
    }

    fn add(&mut self, i: usize, at: i64, outcome: &Outcome) {
        let id = ComposeId(format!("c{i:04}"));
        let (state, passed, finish) = match outcome {
            Outcome::Passes => (ComposeState::Complete, Some(true), None),
            Outcome::FailsGate => (ComposeState::Complete, Some(false), None),
            Outcome::FailsBuild => (
                ComposeState::Failed {
                    reason: "build".into(),
                },
                Some(false),
                None,
            ),
            Outcome::Late(passes, after) => {
                (ComposeState::Running, None, Some((i + after, *passes)))
            }
        };
        self.composes.push(CandidateCompose {
            id,
            created_at: ts(at),
            state,
            passed,
        });
        self.finishes.push(finish);
    }

    fn finish_late(&mut self, step: usize) {
        for (k, finish) in self.finishes.iter_mut().enumerate() {
            if let Some((at, passes)) = *finish {
                if at == step {
                    let compose = &mut self.composes[k];
                    compose.state = ComposeState::Complete;
                    compose.passed = Some(passes);
                    *finish = None;
                }
            }
        }
    }

    fn inputs(&self) -> ReleaseInputs<'_> {
        ReleaseInputs {
            composes: &self.composes,
            releases: &self.releases,
            source_releases: &[],
        }
    }

    fn compose(&self, id: &ComposeId) -> &CandidateCompose {
        self.composes
            .iter()
            .find(|c| &c.id == id)
            .expect("a release of a known compose")
    }

    fn newest_good_release_age(&self) -> Option<(Timestamp, ComposeId)> {
        self.releases
            .iter()
            .filter(|r| r.state != ReleaseState::Revoked)
            .map(|r| (self.compose(&r.compose).created_at, r.compose.clone()))
            .max()
    }

    /// The composes that could be released now, judged directly from the rules.
    fn candidates(&self) -> impl Iterator<Item = &CandidateCompose> {
        let newest = self.newest_good_release_age();
        self.composes.iter().filter(move |c| {
            c.state == ComposeState::Complete
                && c.passed == Some(true)
                && !self.releases.iter().any(|r| r.compose == c.id)
                && newest
                    .as_ref()
                    .is_none_or(|n| (c.created_at, c.id.clone()) > *n)
        })
    }

    fn has_candidate(&self) -> bool {
        self.candidates().next().is_some()
    }

    fn release(&mut self, compose: ComposeId, at: Timestamp) {
        let version = self.allocate(at);
        if let Some(last) = self.releases.last() {
            assert!(version > last.version, "versions must increase");
        }
        self.releases.push(Release {
            stream: "s".into(),
            version,
            compose,
            state: ReleaseState::Published,
            created_at: at,
            published_at: Some(at),
            revocation: None,
        });
    }

    /// Versions as the store allocates them: the UTC day of the release and the next number that day.
    fn allocate(&self, now: Timestamp) -> Version {
        let day = Version::new(now, 0);
        let n = self
            .releases
            .iter()
            .filter(|r| r.version.date() == day.date())
            .map(|r| r.version.n() + 1)
            .max()
            .unwrap_or(0);
        Version::new(now, n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn releases_keep_every_rule_over_random_histories(
        policy in policy(),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut world = World::new();
        let mut now = START;
        for (i, step) in steps.iter().enumerate() {
            world.finish_late(i);
            if let Some(outcome) = &step.compose {
                world.add(i, now, outcome);
            }
            if let Some(k) = step.revoke {
                if !world.releases.is_empty() {
                    let k = k % world.releases.len();
                    world.releases[k].state = ReleaseState::Revoked;
                }
            }
            if step.emergency {
                let newest = world.candidates().max_by_key(|c| (c.created_at, c.id.clone()));
                if let Some(id) = newest.map(|c| c.id.clone()) {
                    world.release(id, ts(now));
                }
            }
            now += step.advance * 60;
            let at = ts(now);
            let before = world.state.clone();
            let plan = plan_release(&policy, &world.state, at, &world.inputs());
            let mut released = false;
            match &plan.action {
                ReleaseAction::Release { compose, .. } => {
                    let c = world.compose(compose);
                    prop_assert_eq!(&c.state, &ComposeState::Complete);
                    prop_assert_eq!(c.passed, Some(true), "released a failing compose");
                    prop_assert!(
                        !world.releases.iter().any(|r| &r.compose == compose),
                        "released {} twice", compose
                    );
                    if let Some(newest) = world.newest_good_release_age() {
                        prop_assert!((c.created_at, c.id.clone()) > newest, "went backwards");
                    }
                    world.release(compose.clone(), at);
                    released = true;
                }
                ReleaseAction::MarkStale { since } => {
                    let spell_ended = before.stale_since.is_none_or(|stale| {
                        world
                            .releases
                            .iter()
                            .any(|r| r.state != ReleaseState::Revoked && r.created_at >= stale)
                    });
                    prop_assert!(spell_ended, "stale twice without a release between");
                    prop_assert!(*since <= at);
                    prop_assert!(!world.has_candidate(), "stale with a candidate");
                }
                _ => {}
            }
            world.state = plan.state.clone();

            let again = plan_release(&policy, &world.state, at, &world.inputs());
            prop_assert_eq!(&again.action, &ReleaseAction::Nothing);
            prop_assert_eq!(&again.state, &world.state);

            if !policy.cadence.is_scheduled() {
                prop_assert_eq!(world.state.stale_since, None);
                prop_assert!(!world.has_candidate(), "on-pass left a candidate");
            } else if let Some(handled) = before.handled_until {
                if let Some(latest) = policy.cadence.due_between(handled, at).last() {
                    let served_out_of_cycle = world
                        .releases
                        .iter()
                        .any(|r| r.state != ReleaseState::Revoked && r.created_at >= latest);
                    prop_assert!(
                        released || world.state.stale_since.is_some() || served_out_of_cycle,
                        "a release day neither released nor left the stream stale"
                    );
                }
                if policy.on_missed == OnMissed::RetryNightly && world.state.stale_since.is_some() {
                    prop_assert!(!world.has_candidate(), "retry-nightly left a candidate");
                }
            }
        }
    }

    #[test]
    fn promotion_releases_only_soaked_unrevoked_source_releases(
        publish_gaps in prop::collection::vec((1i64..(20 * 24), any::<bool>(), 0u8..10), 1..40),
        ticks in prop::collection::vec(1i64..(10 * 24), 1..80),
        soak_days in 1u32..20,
        retry in any::<bool>(),
    ) {
        // The source stream: a release every few hours to days, some revoked later (never before they
        // are published), composes in creation order.
        let mut source: Vec<(Release, CandidateCompose)> = vec![];
        let mut at = START;
        for (i, (gap, revoked, late)) in publish_gaps.iter().enumerate() {
            at += gap * 3600;
            let id = ComposeId(format!("c{i:04}"));
            let published = ts(at + i64::from(*late) * 3600);
            source.push((
                Release {
                    stream: "testing".into(),
                    version: Version::new(published, i as u32),
                    compose: id.clone(),
                    state: if *revoked { ReleaseState::Revoked } else { ReleaseState::Published },
                    created_at: published,
                    published_at: Some(published),
                    revocation: None,
                },
                CandidateCompose { id, created_at: ts(at), state: ComposeState::Complete, passed: None },
            ));
        }
        let soak = Period::new(soak_days, PeriodUnit::Days).expect("period");
        let policy = StreamPolicy {
            cadence: Cadence::Cron("0 12 * * tue".parse().expect("cron")),
            on_missed: if retry { OnMissed::RetryNightly } else { OnMissed::Skip },
            promote_from: Some(Promotion { stream: "testing".into(), soak }),
        };
        let mut state = CadenceState::default();
        let mut releases: Vec<Release> = vec![];
        let mut now = START;
        for tick in ticks {
            now += tick * 3600;
            let inputs = ReleaseInputs { composes: &[], releases: &releases, source_releases: &source };
            let plan = plan_release(&policy, &state, ts(now), &inputs);
            if let ReleaseAction::Release { compose, promoted_from, .. } = &plan.action {
                let (r, c) = source
                    .iter()
                    .find(|(r, _)| &r.compose == compose)
                    .expect("promotes a source release");
                prop_assert_eq!(promoted_from.as_ref(), Some(&r.version));
                prop_assert!(r.state != ReleaseState::Revoked, "promoted a revoked release");
                let published = r.published_at.expect("published");
                prop_assert!(published.as_second() + soak.seconds() <= now, "promoted before its soak");
                for earlier in &releases {
                    let (_, e) = source.iter().find(|(r, _)| r.compose == earlier.compose).expect("known");
                    prop_assert!(e.created_at < c.created_at, "went backwards or twice");
                }
                releases.push(Release {
                    stream: "stable".into(),
                    version: Version::new(ts(now), releases.len() as u32),
                    compose: compose.clone(),
                    state: ReleaseState::Published,
                    created_at: ts(now),
                    published_at: Some(ts(now)),
                    revocation: None,
                });
            }
            state = plan.state;
            let inputs = ReleaseInputs { composes: &[], releases: &releases, source_releases: &source };
            prop_assert_eq!(plan_release(&policy, &state, ts(now), &inputs).action, ReleaseAction::Nothing);
        }
    }
}
