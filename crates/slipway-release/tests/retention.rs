//! Garbage collection planning: the retention rules on hand-made histories, and properties over random
//! ones (nothing a kept release needs is ever deleted, shared blobs survive while anyone lists them, the
//! plan does not depend on the input's order).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use proptest::prelude::*;
use slipway_model::{
    sha256_hex, Artifact, ArtifactKind, Compose, ComposeId, ComposeState, OutputFormat, Release,
    ReleaseState, RetentionConfig, Sha256, Version,
};
use slipway_release::{plan_gc, GcPlan, KeepReason, StreamRetentionInput};

const DAY: i64 = 86_400;

fn at(day: i64) -> Timestamp {
    Timestamp::from_second(1_790_000_000 + day * DAY).expect("valid time")
}

fn blob(name: &str) -> Sha256 {
    sha256_hex(name.as_bytes())
}

fn compose(stream: &str, n: i64, state: ComposeState, blobs: &[&str]) -> Compose {
    Compose {
        id: ComposeId(format!("{stream}-{n}")),
        stream: stream.into(),
        recipe: stream.into(),
        recipe_hash: sha256_hex(b"recipe"),
        input_hash: None,
        state,
        created_at: at(n),
        finished_at: None,
        artifacts: blobs
            .iter()
            .map(|b| Artifact {
                kind: ArtifactKind::Image(OutputFormat::Qcow2),
                file_name: format!("{b}.qcow2"),
                sha256: blob(b),
                size: 100,
            })
            .collect(),
        lock: None,
        pkgdiff: None,
    }
}

fn release(stream: &str, n: i64, state: ReleaseState) -> Release {
    Release {
        stream: stream.into(),
        version: Version::new(at(n), 0),
        compose: ComposeId(format!("{stream}-{n}")),
        state,
        created_at: at(n),
        published_at: None,
        revocation: None,
    }
}

fn input(
    name: &str,
    retention: RetentionConfig,
    composes: Vec<Compose>,
    releases: Vec<Release>,
) -> StreamRetentionInput {
    StreamRetentionInput {
        name: name.into(),
        retention,
        releases,
        composes,
        passing: BTreeSet::new(),
        incidents: BTreeMap::new(),
    }
}

fn ids(plan: &GcPlan) -> Vec<&str> {
    plan.delete_composes.iter().map(|c| c.as_str()).collect()
}

fn expired(plan: &GcPlan) -> Vec<String> {
    plan.expire_releases
        .iter()
        .map(|e| format!("{} {}", e.stream, e.version))
        .collect()
}

fn reasons<'a>(plan: &'a GcPlan, id: &str) -> &'a [KeepReason] {
    &plan
        .kept
        .iter()
        .find(|k| k.compose.as_str() == id)
        .unwrap_or_else(|| panic!("{id} is kept"))
        .reasons
}

const COMPLETE: ComposeState = ComposeState::Complete;

#[test]
fn without_retention_nothing_goes() {
    let stream = input(
        "cloud",
        RetentionConfig::default(),
        (0..5)
            .map(|n| compose("cloud", n, COMPLETE, &["x"]))
            .collect(),
        vec![
            release("cloud", 0, ReleaseState::Superseded),
            release("cloud", 2, ReleaseState::Published),
        ],
    );
    let plan = plan_gc(at(400), &[stream]);
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.kept.len(), 5);
    assert!(reasons(&plan, "cloud-1").contains(&KeepReason::NoKeepDays));
}

#[test]
fn old_releases_expire_and_free_their_composes() {
    // Composes on days 0..10; releases of days 0, 2, 4, 6 (the current one), 8 revoked.
    let composes = (0..10)
        .map(|n| compose("cloud", n, COMPLETE, &[&format!("image-{n}")]))
        .collect();
    let releases = vec![
        release("cloud", 0, ReleaseState::Superseded),
        release("cloud", 2, ReleaseState::Superseded),
        release("cloud", 4, ReleaseState::Superseded),
        release("cloud", 6, ReleaseState::Published),
        release("cloud", 8, ReleaseState::Revoked),
    ];
    let retention = RetentionConfig {
        keep_releases: Some(2),
        keep_days: Some(3),
    };
    let plan = plan_gc(at(10), &[input("cloud", retention, composes, releases)]);
    assert_eq!(
        expired(&plan),
        [
            format!("cloud {}", Version::new(at(0), 0)),
            format!("cloud {}", Version::new(at(2), 0)),
        ]
    );
    // Kept: the two listed releases (4, 6), the revoked one inside their window (8), the young (8, 9)
    // and the newest (9). Day 7 is exactly 3 days old, no longer younger than keep-days.
    assert_eq!(
        ids(&plan),
        ["cloud-0", "cloud-1", "cloud-2", "cloud-3", "cloud-5", "cloud-7"]
    );
    assert!(reasons(&plan, "cloud-4").contains(&KeepReason::Released {
        stream: "cloud".into(),
        version: Version::new(at(4), 0)
    }));
    assert!(reasons(&plan, "cloud-8").contains(&KeepReason::Revoked {
        stream: "cloud".into(),
        version: Version::new(at(8), 0)
    }));
    assert!(reasons(&plan, "cloud-9").contains(&KeepReason::NewestOfStream));
    assert!(reasons(&plan, "cloud-9").contains(&KeepReason::Young { keep_days: 3 }));
    assert_eq!(plan.delete_blobs.len(), 6);
    assert_eq!(plan.bytes_freed(), 600);
}

#[test]
fn the_current_and_pending_releases_never_expire() {
    let composes = (0..4).map(|n| compose("cloud", n, COMPLETE, &[])).collect();
    // A pending release is newer than the current one; with keep-releases = 1 both stay.
    let releases = vec![
        release("cloud", 0, ReleaseState::Superseded),
        release("cloud", 1, ReleaseState::Published),
        release("cloud", 2, ReleaseState::Pending),
        release("cloud", 3, ReleaseState::Expired),
    ];
    let retention = RetentionConfig {
        keep_releases: Some(1),
        keep_days: Some(0),
    };
    let plan = plan_gc(at(30), &[input("cloud", retention, composes, releases)]);
    assert_eq!(
        expired(&plan),
        [format!("cloud {}", Version::new(at(0), 0))]
    );
    // Day 3's release had already expired; its compose is the newest, so it stays for that alone.
    assert_eq!(ids(&plan), ["cloud-0"]);
    assert_eq!(
        reasons(&plan, "cloud-3"),
        [KeepReason::NewestOfStream, KeepReason::NewestOfRecipe]
    );
}

#[test]
fn running_passing_and_newest_complete_composes_stay() {
    let mut stream = input(
        "cloud",
        RetentionConfig {
            keep_releases: None,
            keep_days: Some(1),
        },
        vec![
            compose("cloud", 0, COMPLETE, &[]),
            compose("cloud", 1, COMPLETE, &[]),
            compose("cloud", 2, COMPLETE, &[]),
            compose("cloud", 3, ComposeState::Failed { reason: "x".into() }, &[]),
            compose("cloud", 4, ComposeState::Running, &[]),
        ],
        vec![],
    );
    stream.passing = BTreeSet::from([ComposeId("cloud-1".into())]);
    let plan = plan_gc(at(100), &[stream.clone()]);
    assert_eq!(ids(&plan), ["cloud-0", "cloud-3"]);
    assert_eq!(reasons(&plan, "cloud-1"), [KeepReason::NewestPassing]);
    assert_eq!(reasons(&plan, "cloud-2"), [KeepReason::NewestOfRecipe]);
    assert_eq!(
        reasons(&plan, "cloud-4"),
        [KeepReason::Running, KeepReason::NewestOfStream]
    );

    // The failed compose is the evidence of an incident: it stays.
    stream.incidents = BTreeMap::from([(ComposeId("cloud-3".into()), 7)]);
    let plan = plan_gc(at(100), &[stream]);
    assert_eq!(ids(&plan), ["cloud-0"]);
    assert_eq!(
        reasons(&plan, "cloud-3"),
        [KeepReason::Incident { incident: 7 }]
    );
}

#[test]
fn shared_blobs_survive_while_a_kept_compose_lists_them() {
    let retention = RetentionConfig {
        keep_releases: Some(1),
        keep_days: Some(0),
    };
    let composes = vec![
        compose("cloud", 0, COMPLETE, &["kernel", "old"]),
        compose("cloud", 1, COMPLETE, &["kernel", "new"]),
    ];
    let plan = plan_gc(
        at(50),
        &[input(
            "cloud",
            retention,
            composes,
            vec![release("cloud", 1, ReleaseState::Published)],
        )],
    );
    assert_eq!(ids(&plan), ["cloud-0"]);
    assert_eq!(plan.delete_blobs, [(blob("old"), 100)]);
}

#[test]
fn a_promoted_release_keeps_the_compose_of_another_stream() {
    let retention = RetentionConfig {
        keep_releases: Some(1),
        keep_days: Some(0),
    };
    let testing = input(
        "testing",
        retention,
        vec![
            compose("testing", 0, COMPLETE, &["a"]),
            compose("testing", 1, COMPLETE, &["b"]),
        ],
        vec![
            release("testing", 0, ReleaseState::Superseded),
            release("testing", 1, ReleaseState::Published),
        ],
    );
    let mut promoted = release("stable", 5, ReleaseState::Published);
    promoted.compose = ComposeId("testing-0".into());
    let stable = input("stable", retention, vec![], vec![promoted]);
    let plan = plan_gc(at(50), &[testing, stable]);
    assert_eq!(
        expired(&plan),
        [format!("testing {}", Version::new(at(0), 0))]
    );
    assert!(plan.delete_composes.is_empty());
    assert!(reasons(&plan, "testing-0").contains(&KeepReason::Released {
        stream: "stable".into(),
        version: Version::new(at(5), 0)
    }));
}

// ----- properties over random histories -----

/// A random history of up to three streams, each with up to 12 composes (days 0..60, shared blobs from a
/// pool of 6) and releases of some of its complete composes.
fn history() -> impl Strategy<Value = (i64, Vec<StreamRetentionInput>)> {
    let stream = (
        proptest::option::of(1u32..4),
        proptest::option::of(0u32..40),
        proptest::collection::vec(
            (
                0i64..60,
                0u8..10,
                proptest::collection::vec(0usize..6, 0..3),
                0u8..10,
                any::<bool>(),
            ),
            0..12,
        ),
        proptest::collection::btree_set(0usize..12, 0..3),
    );
    (40i64..120, proptest::collection::vec(stream, 1..4)).prop_map(|(now, streams)| {
        let inputs = streams
            .into_iter()
            .enumerate()
            .map(|(s, (keep_releases, keep_days, composes, held))| {
                let name = format!("s{s}");
                let mut made = Vec::new();
                let mut releases = Vec::new();
                let mut passing = BTreeSet::new();
                for (i, (day, state, blobs, release_roll, passed)) in
                    composes.into_iter().enumerate()
                {
                    let state = match state {
                        0 => ComposeState::Running,
                        1 => ComposeState::Failed { reason: "x".into() },
                        _ => ComposeState::Complete,
                    };
                    let names: Vec<String> = blobs.iter().map(|b| format!("blob-{b}")).collect();
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    let mut c = compose(&name, day, state.clone(), &refs);
                    c.id = ComposeId(format!("{name}-{i}"));
                    if state == ComposeState::Complete {
                        if passed {
                            passing.insert(c.id.clone());
                        }
                        let release_state = match release_roll {
                            0..=3 => None,
                            4 => Some(ReleaseState::Revoked),
                            5 => Some(ReleaseState::Expired),
                            6 => Some(ReleaseState::Pending),
                            _ => Some(ReleaseState::Superseded),
                        };
                        if let Some(state) = release_state {
                            releases.push(Release {
                                stream: name.clone(),
                                version: Version::new(at(day), i as u32),
                                compose: c.id.clone(),
                                state,
                                created_at: at(day),
                                published_at: None,
                                revocation: None,
                            });
                        }
                    }
                    made.push(c);
                }
                // The newest superseded release is the current one.
                if let Some(newest) = releases
                    .iter_mut()
                    .filter(|r| r.state == ReleaseState::Superseded)
                    .max_by(|a, b| a.version.cmp(&b.version))
                {
                    newest.state = ReleaseState::Published;
                }
                StreamRetentionInput {
                    name,
                    retention: RetentionConfig {
                        keep_releases,
                        keep_days,
                    },
                    incidents: held
                        .iter()
                        .filter(|i| **i < made.len())
                        .map(|i| (made[*i].id.clone(), *i as u64))
                        .collect(),
                    releases,
                    composes: made,
                    passing,
                }
            })
            .collect();
        (now, inputs)
    })
}

fn listed(state: ReleaseState) -> bool {
    matches!(
        state,
        ReleaseState::Pending | ReleaseState::Published | ReleaseState::Superseded
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn nothing_a_kept_release_needs_is_ever_deleted((now, streams) in history()) {
        let plan = plan_gc(at(now), &streams);
        let deleted: BTreeSet<&ComposeId> = plan.delete_composes.iter().collect();
        let expired: BTreeSet<(&str, &Version)> = plan
            .expire_releases
            .iter()
            .map(|e| (e.stream.as_str(), &e.version))
            .collect();
        let all: BTreeMap<&ComposeId, &Compose> =
            streams.iter().flat_map(|s| &s.composes).map(|c| (&c.id, c)).collect();

        for stream in &streams {
            for release in &stream.releases {
                let still_listed =
                    listed(release.state) && !expired.contains(&(stream.name.as_str(), &release.version));
                if still_listed {
                    prop_assert!(!deleted.contains(&release.compose),
                        "{} of listed release {} deleted", release.compose, release.version);
                }
                if matches!(release.state, ReleaseState::Pending | ReleaseState::Published
                    | ReleaseState::Revoked | ReleaseState::Expired) {
                    prop_assert!(!expired.contains(&(stream.name.as_str(), &release.version)),
                        "a {:?} release was expired", release.state);
                }
            }
            if let Some(keep) = stream.retention.keep_releases {
                let before = stream.releases.iter().filter(|r| listed(r.state)).count();
                let after = before
                    - plan.expire_releases.iter().filter(|e| e.stream == stream.name).count();
                prop_assert!(after >= before.min(keep as usize));
                // The newest `keep` listed releases never expire.
                let mut newest: Vec<&Version> = stream.releases.iter()
                    .filter(|r| listed(r.state))
                    .map(|r| &r.version)
                    .collect();
                newest.sort_by(|a, b| b.cmp(a));
                for version in newest.iter().take(keep as usize) {
                    prop_assert!(!expired.contains(&(stream.name.as_str(), *version)));
                }
            } else {
                prop_assert!(plan.expire_releases.iter().all(|e| e.stream != stream.name));
            }
            for compose in &stream.composes {
                let young = stream.retention.keep_days.is_none_or(|days| {
                    at(now).as_second() - compose.created_at.as_second() < i64::from(days) * DAY
                });
                if young || compose.state == ComposeState::Running {
                    prop_assert!(!deleted.contains(&compose.id), "{} deleted while young or running", compose.id);
                }
            }
            if let Some(newest) = stream.composes.iter().max_by_key(|c| (c.created_at, c.id.clone())) {
                prop_assert!(!deleted.contains(&newest.id));
            }
            for held in stream.incidents.keys() {
                prop_assert!(!deleted.contains(held), "{} named by an incident deleted", held);
            }
        }

        // Blobs: never one a kept compose lists; always one that only deleted composes list.
        let kept_blobs: BTreeSet<&Sha256> = all
            .values()
            .filter(|c| !deleted.contains(&c.id))
            .flat_map(|c| c.artifacts.iter().map(|a| &a.sha256))
            .collect();
        let deleted_blobs: BTreeSet<&Sha256> = plan.delete_blobs.iter().map(|(d, _)| d).collect();
        prop_assert!(kept_blobs.is_disjoint(&deleted_blobs));
        let orphaned: BTreeSet<&Sha256> = all
            .values()
            .filter(|c| deleted.contains(&c.id))
            .flat_map(|c| c.artifacts.iter().map(|a| &a.sha256))
            .filter(|d| !kept_blobs.contains(d))
            .collect();
        prop_assert_eq!(orphaned, deleted_blobs);

        // Every compose is either deleted or kept with a reason, never both.
        let kept: BTreeSet<&ComposeId> = plan.kept.iter().map(|k| &k.compose).collect();
        prop_assert!(kept.is_disjoint(&deleted));
        prop_assert_eq!(kept.len() + deleted.len(), all.len());
        prop_assert!(plan.kept.iter().all(|k| !k.reasons.is_empty()));
    }

    #[test]
    fn the_plan_does_not_depend_on_the_input_order((now, streams) in history()) {
        let plan = plan_gc(at(now), &streams);
        let mut reversed: Vec<StreamRetentionInput> = streams.iter().rev().cloned().collect();
        for stream in &mut reversed {
            stream.composes.reverse();
            stream.releases.reverse();
        }
        prop_assert_eq!(plan_gc(at(now), &reversed), plan);
    }
}
