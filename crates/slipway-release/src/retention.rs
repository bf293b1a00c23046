//! Retention: which releases expire and which composes and blobs garbage collection may delete.
//!
//! [`plan_gc`] is pure: given every stream's retention, releases and composes (with their artifacts) and
//! the time, it says what to expire and delete, and why everything else is kept. The engine applies the
//! plan. The rules, per stream:
//!
//! - **Releases.** With `keep-releases = N`, the newest N releases that are not revoked stay listed; older
//!   listed ones expire (they leave the tree and the stream, and stay in the releases index). The stream's
//!   current release and pending releases never expire. Revoked releases keep their state (the reason must
//!   stay visible); already expired ones stay expired. Without `keep-releases` nothing expires.
//! - **Composes.** A compose is kept when any of these holds: it is running; its stream has no `keep-days`
//!   or it is younger than that; a listed release of any stream is of it (after this plan's expiries); a
//!   revoked release newer than the stream's oldest listed release is of it (so it can still be unrevoked);
//!   it is its stream's newest compose, its recipe's newest complete compose (change detection and package
//!   diffs compare against it) or its stream's newest compose that passed the gate (the next release may
//!   still take it); an incident names it. Everything else is deleted.
//! - **Blobs** are content-addressed and shared: one is deleted only when a deleted compose lists it and
//!   no kept compose does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::Serialize;
use slipway_model::{
    Compose, ComposeId, ComposeState, Release, ReleaseState, RetentionConfig, Sha256, Version,
};

/// One stream's part of the input of [`plan_gc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRetentionInput {
    /// The stream's name.
    pub name: String,
    /// Its retention settings.
    pub retention: RetentionConfig,
    /// Every release of the stream, in any order.
    pub releases: Vec<Release>,
    /// Every compose made for the stream (`compose.stream == name`), with its artifacts, in any order.
    pub composes: Vec<Compose>,
    /// The composes whose latest decision in this stream passed.
    pub passing: BTreeSet<ComposeId>,
    /// The composes the stream's incidents name (the one that opened each, and those its comments are
    /// about), with the incident: they are its evidence, and the store cannot delete them while it names
    /// them.
    pub incidents: BTreeMap<ComposeId, u64>,
}

/// What garbage collection should do, and why the rest stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcPlan {
    /// Releases to mark expired, by stream and version.
    pub expire_releases: Vec<ExpiredRelease>,
    /// Composes to delete with everything recorded about them, oldest first.
    pub delete_composes: Vec<ComposeId>,
    /// Blobs no kept compose lists, with their sizes, by digest.
    pub delete_blobs: Vec<(Sha256, u64)>,
    /// Every compose kept, by id, with the reasons.
    pub kept: Vec<KeptCompose>,
}

impl GcPlan {
    /// The bytes the deleted blobs hold.
    pub fn bytes_freed(&self) -> u64 {
        self.delete_blobs.iter().map(|(_, size)| size).sum()
    }

    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.expire_releases.is_empty()
            && self.delete_composes.is_empty()
            && self.delete_blobs.is_empty()
    }
}

/// A release that passes its stream's retention.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ExpiredRelease {
    /// The stream.
    pub stream: String,
    /// The release's version.
    pub version: Version,
    /// Its compose.
    pub compose: ComposeId,
}

/// A compose that stays, and every reason it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptCompose {
    /// The compose.
    pub compose: ComposeId,
    /// Why it stays; never empty.
    pub reasons: Vec<KeepReason>,
}

/// Why a compose is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum KeepReason {
    /// It is still being built.
    Running,
    /// Its stream sets no `keep-days`, so every compose stays.
    NoKeepDays,
    /// It is younger than its stream's `keep-days`.
    Young {
        /// The stream's `keep-days`.
        keep_days: u32,
    },
    /// A listed release is of it.
    Released {
        /// The release's stream.
        stream: String,
        /// The release's version.
        version: Version,
    },
    /// A revoked release inside the kept window is of it; it may be unrevoked.
    Revoked {
        /// The release's stream.
        stream: String,
        /// The release's version.
        version: Version,
    },
    /// It is its stream's newest compose.
    NewestOfStream,
    /// It is its recipe's newest complete compose, which change detection and package diffs use.
    NewestOfRecipe,
    /// It is its stream's newest compose that passed the gate, which the next release may take.
    NewestPassing,
    /// An incident names it.
    Incident {
        /// The incident's id.
        incident: u64,
    },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::NoKeepDays => f.write_str("its stream keeps every compose (no keep-days)"),
            Self::Young { keep_days } => write!(f, "younger than {keep_days} days"),
            Self::Released { stream, version } => write!(f, "released as {stream} {version}"),
            Self::Revoked { stream, version } => {
                write!(f, "revoked release {stream} {version} (may be unrevoked)")
            }
            Self::NewestOfStream => f.write_str("its stream's newest compose"),
            Self::NewestOfRecipe => f.write_str("its recipe's newest complete compose"),
            Self::NewestPassing => f.write_str("its stream's newest compose that passed the gate"),
            Self::Incident { incident } => write!(f, "named by incident {incident}"),
        }
    }
}

/// Whether a release is in the tree and can be pointed at, now or after publishing.
fn is_listed(state: ReleaseState) -> bool {
    matches!(
        state,
        ReleaseState::Pending | ReleaseState::Published | ReleaseState::Superseded
    )
}

/// The releases of a stream that expire under its retention.
fn expiring(stream: &StreamRetentionInput) -> Vec<ExpiredRelease> {
    let Some(keep) = stream.retention.keep_releases else {
        return Vec::new();
    };
    let mut releases: Vec<&Release> = stream.releases.iter().collect();
    releases.sort_by(|a, b| b.version.cmp(&a.version));
    let current = releases
        .iter()
        .find(|r| r.state == ReleaseState::Published)
        .map(|r| &r.version);
    let mut listed_kept = 0;
    let mut out = Vec::new();
    for release in releases {
        if !is_listed(release.state) {
            continue;
        }
        let protected = release.state == ReleaseState::Pending || Some(&release.version) == current;
        if listed_kept < keep || protected {
            listed_kept += 1;
            continue;
        }
        out.push(ExpiredRelease {
            stream: stream.name.clone(),
            version: release.version.clone(),
            compose: release.compose.clone(),
        });
    }
    out
}

fn keep(
    id: &ComposeId,
    reason: KeepReason,
    reasons: &mut BTreeMap<ComposeId, BTreeSet<KeepReason>>,
) {
    reasons.entry(id.clone()).or_default().insert(reason);
}

/// Plans garbage collection at `now`; see the module documentation for the rules. The plan depends only on
/// the input's content, not on its order.
pub fn plan_gc(now: Timestamp, streams: &[StreamRetentionInput]) -> GcPlan {
    let mut expire: Vec<ExpiredRelease> = streams.iter().flat_map(expiring).collect();
    expire.sort();
    let expired: BTreeSet<(&str, &Version)> = expire
        .iter()
        .map(|e| (e.stream.as_str(), &e.version))
        .collect();

    let mut owned_reasons: BTreeMap<ComposeId, BTreeSet<KeepReason>> = BTreeMap::new();

    // Releases keep their composes wherever those were made (a promoted stream releases another stream's
    // compose).
    for stream in streams {
        let listed_after = |r: &Release| {
            is_listed(r.state) && !expired.contains(&(stream.name.as_str(), &r.version))
        };
        let oldest_listed = stream
            .releases
            .iter()
            .filter(|r| listed_after(r))
            .map(|r| &r.version)
            .min();
        for release in &stream.releases {
            if listed_after(release) {
                keep(
                    &release.compose,
                    KeepReason::Released {
                        stream: stream.name.clone(),
                        version: release.version.clone(),
                    },
                    &mut owned_reasons,
                );
            } else if release.state == ReleaseState::Revoked
                && oldest_listed.is_none_or(|oldest| &release.version > oldest)
            {
                keep(
                    &release.compose,
                    KeepReason::Revoked {
                        stream: stream.name.clone(),
                        version: release.version.clone(),
                    },
                    &mut owned_reasons,
                );
            }
        }
    }

    // Order by creation, then id: the order composes were started in.
    let order = |c: &&Compose| (c.created_at, c.id.clone());
    let mut newest_of_recipe: BTreeMap<&str, &Compose> = BTreeMap::new();
    for stream in streams {
        for compose in &stream.composes {
            if compose.state == ComposeState::Complete {
                let entry = newest_of_recipe
                    .entry(compose.recipe.as_str())
                    .or_insert(compose);
                if order(&compose) > order(entry) {
                    *entry = compose;
                }
            }
        }
    }
    for compose in newest_of_recipe.values() {
        keep(&compose.id, KeepReason::NewestOfRecipe, &mut owned_reasons);
    }

    for stream in streams {
        if let Some(newest) = stream.composes.iter().max_by_key(order) {
            keep(&newest.id, KeepReason::NewestOfStream, &mut owned_reasons);
        }
        if let Some(passing) = stream
            .composes
            .iter()
            .filter(|c| c.state == ComposeState::Complete && stream.passing.contains(&c.id))
            .max_by_key(order)
        {
            keep(&passing.id, KeepReason::NewestPassing, &mut owned_reasons);
        }
        for (compose, incident) in &stream.incidents {
            keep(
                compose,
                KeepReason::Incident {
                    incident: *incident,
                },
                &mut owned_reasons,
            );
        }
        for compose in &stream.composes {
            if compose.state == ComposeState::Running {
                keep(&compose.id, KeepReason::Running, &mut owned_reasons);
            }
            match stream.retention.keep_days {
                None => keep(&compose.id, KeepReason::NoKeepDays, &mut owned_reasons),
                Some(days) => {
                    let age = now
                        .as_second()
                        .saturating_sub(compose.created_at.as_second());
                    if age < i64::from(days) * 86_400 {
                        keep(
                            &compose.id,
                            KeepReason::Young { keep_days: days },
                            &mut owned_reasons,
                        );
                    }
                }
            }
        }
    }

    let mut all: Vec<&Compose> = streams.iter().flat_map(|s| &s.composes).collect();
    all.sort_by_key(order);
    all.dedup_by(|a, b| a.id == b.id);

    let mut delete_composes = Vec::new();
    let mut kept_digests: BTreeSet<&Sha256> = BTreeSet::new();
    let mut freed: BTreeMap<&Sha256, u64> = BTreeMap::new();
    for compose in &all {
        if owned_reasons.contains_key(&compose.id) {
            kept_digests.extend(compose.artifacts.iter().map(|a| &a.sha256));
        } else {
            delete_composes.push(compose.id.clone());
            for artifact in &compose.artifacts {
                freed.insert(&artifact.sha256, artifact.size);
            }
        }
    }
    let delete_blobs = freed
        .into_iter()
        .filter(|(digest, _)| !kept_digests.contains(digest))
        .map(|(digest, size)| (digest.clone(), size))
        .collect();
    let known: BTreeSet<&ComposeId> = all.iter().map(|c| &c.id).collect();
    let kept = owned_reasons
        .into_iter()
        // A release may name a compose that is already gone; there is nothing of it to keep.
        .filter(|(id, _)| known.contains(id))
        .map(|(compose, reasons)| KeptCompose {
            compose,
            reasons: reasons.into_iter().collect(),
        })
        .collect();
    GcPlan {
        expire_releases: expire,
        delete_composes,
        delete_blobs,
        kept,
    }
}
