//! Composes, their artifacts and their locks.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{sha256_hex, OutputFormat, Sha256};

/// The id of a compose: `<recipe>-<YYYYMMDD>.<n>`, readable and sortable within a recipe, like Fedora's
/// compose ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ComposeId(pub String);

impl ComposeId {
    /// The id of the `n`th compose of `recipe` on the UTC day of `at`.
    pub fn new(recipe: &str, at: Timestamp, n: u32) -> Self {
        Self(format!("{recipe}-{}.{n}", at.strftime("%Y%m%d")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComposeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hash of everything a compose's bytes depend on: the normalized recipe, the lock and the builder
/// version. Equal input hashes mean there is nothing new to build.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InputHash(pub Sha256);

impl InputHash {
    /// Combines the recipe hash, the lock's hash (if the lock is known yet) and the builder version.
    pub fn compute(recipe_hash: &Sha256, lock_hash: Option<&Sha256>, builder: &str) -> Self {
        let text = format!(
            "recipe {recipe_hash}\nlock {}\nbuilder {builder}\n",
            lock_hash.map_or("-", Sha256::as_str)
        );
        Self(sha256_hex(text.as_bytes()))
    }

    /// A 128-bit seed derived from the hash, for UUIDs and other values that must be fixed per input.
    pub fn seed(&self, purpose: &str) -> [u8; 16] {
        let digest = sha256_hex(format!("{}:{purpose}", self.0).as_bytes());
        let mut out = [0u8; 16];
        let bytes = hex::decode(digest.as_str()).unwrap_or_default();
        out.copy_from_slice(&bytes[..16]);
        out
    }
}

impl fmt::Display for InputHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The lifecycle of a compose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ComposeState {
    /// Queued or being built.
    Running,
    /// Built; artifacts and lock are recorded.
    Complete,
    /// The build failed; `reason` holds what went wrong, with the tail of the failing tool's stderr.
    Failed {
        /// What failed.
        reason: String,
    },
}

impl ComposeState {
    /// The state's name as stored and shown.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Failed { .. } => "failed",
        }
    }
}

/// One build of one recipe for one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compose {
    /// The compose's id.
    pub id: ComposeId,
    /// The stream the compose was made for.
    pub stream: String,
    /// The recipe's name.
    pub recipe: String,
    /// The hash of the normalized recipe it was built from.
    pub recipe_hash: Sha256,
    /// The input hash, known once the lock is resolved (after the build).
    pub input_hash: Option<InputHash>,
    /// Where it is in its life.
    #[serde(flatten)]
    pub state: ComposeState,
    /// When it was started.
    pub created_at: Timestamp,
    /// When it completed or failed.
    pub finished_at: Option<Timestamp>,
    /// Its output files.
    pub artifacts: Vec<Artifact>,
    /// The resolved package set, once known.
    pub lock: Option<Lock>,
    /// What changed in the package set since the previous compose of the recipe, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkgdiff: Option<crate::PkgDiff>,
}

impl Compose {
    /// The artifact of a given kind, if the compose has one.
    pub fn artifact(&self, kind: ArtifactKind) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.kind == kind)
    }
}

/// A compose as the release policy weighs it: which it is, when it was started, where it is in its life,
/// and whether its latest gate decision in the stream being planned passed (`None` while undecided).
///
/// The policy looks at a stream's fifty newest composes on every tick that may release; reading only
/// this keeps that look free of their locks and artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateCompose {
    /// The compose's id.
    pub id: ComposeId,
    /// When it was started; with the id, the order composes are weighed in.
    pub created_at: Timestamp,
    /// Where it is in its life; only a complete compose is ever released.
    pub state: ComposeState,
    /// Its latest gate decision in the stream: passed, failed, or `None` while undecided.
    pub passed: Option<bool>,
}

impl CandidateCompose {
    /// The candidate view of a compose and its latest decision in the stream.
    pub fn of(compose: &Compose, decision: Option<&crate::Decision>) -> Self {
        Self {
            id: compose.id.clone(),
            created_at: compose.created_at,
            state: compose.state.clone(),
            passed: decision.map(|d| d.passed),
        }
    }
}

/// What an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A disk image in an output format.
    Image(OutputFormat),
    /// The serial console log of a boot test.
    SerialLog,
    /// The compose's lock as JSON.
    LockJson,
    /// The release notes of a release of the compose.
    ReleaseNotes,
    /// The captured output of one attempt of a boot test.
    TestOutput,
}

impl ArtifactKind {
    /// A short name for listings and file names.
    pub fn name(&self) -> String {
        match self {
            Self::Image(format) => format.extension().to_string(),
            Self::SerialLog => "serial-log".to_string(),
            Self::LockJson => "lock".to_string(),
            Self::ReleaseNotes => "release-notes".to_string(),
            Self::TestOutput => "test-output".to_string(),
        }
    }
}

/// One output file, stored in the blob store under its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// What the file is.
    pub kind: ArtifactKind,
    /// The file name it is published under, such as `bookworm-cloud-20261121.0.qcow2`.
    pub file_name: String,
    /// Its content's sha256, which is also its blob key.
    pub sha256: Sha256,
    /// Its size in bytes.
    pub size: u64,
}

/// One installed package in a lock.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockedPackage {
    /// Binary package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Debian architecture (`amd64`, `all`).
    pub architecture: String,
    /// The sha256 of the package file it was installed from, as the repository lists it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    /// The source package it was built from, when it differs from `name`'s or is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The suite of the repository the installed version was found in (`bookworm-security`), when known.
    /// Not part of the lock's hash: the same file from another suite gives the same bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
}

impl LockedPackage {
    /// The source package name: the recorded one, or the binary's own name when none is recorded (Debian
    /// omits `Source` when the two are equal).
    pub fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.name)
    }
}

/// The resolved package set of a compose, sorted by name and architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The packages, sorted.
    pub packages: Vec<LockedPackage>,
    /// A hash of the repository facts, beyond the packages' own versions, that the resolver's choices
    /// depended on when the lock was made: the essential set and the available alternatives of every
    /// dependency with a choice. A change to it can change the package set even when no locked package has
    /// a new version. Not part of [`Lock::hash`]: it decides which packages, not their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_hash: Option<String>,
}

impl Lock {
    /// A lock from packages in any order.
    pub fn new(mut packages: Vec<LockedPackage>) -> Self {
        packages.sort_by(|a, b| {
            (&a.name, &a.architecture, &a.version, &a.sha256).cmp(&(
                &b.name,
                &b.architecture,
                &b.version,
                &b.sha256,
            ))
        });
        packages.dedup_by(|a, b| a.name == b.name && a.architecture == b.architecture);
        Self {
            packages,
            selection_hash: None,
        }
    }

    /// A hash of names, versions, architectures and package file checksums: the part of the lock that
    /// decides the bytes. A package rebuilt under the same version changes it through its checksum.
    pub fn hash(&self) -> Sha256 {
        let mut text = String::new();
        for p in &self.packages {
            text.push_str(&format!(
                "{} {} {} {}\n",
                p.name,
                p.version,
                p.architecture,
                p.sha256.as_ref().map_or("-", Sha256::as_str)
            ));
        }
        sha256_hex(text.as_bytes())
    }

    /// The `dpkg-query -f` format [`Lock::from_dpkg_query`] reads.
    pub const DPKG_QUERY_FORMAT: &'static str =
        "${Package}\t${Version}\t${Architecture}\t${source:Package}\n";

    /// Parses `dpkg-query -W` output in [`Lock::DPKG_QUERY_FORMAT`]; the source column may be missing.
    pub fn from_dpkg_query(output: &str) -> Self {
        Self::new(
            output
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split('\t');
                    let name = fields.next()?.trim();
                    let version = fields.next()?.trim();
                    let architecture = fields.next()?.trim();
                    let source = fields.next().map(str::trim).filter(|s| !s.is_empty());
                    (!name.is_empty() && !version.is_empty()).then(|| LockedPackage {
                        name: name.to_string(),
                        version: version.to_string(),
                        architecture: architecture.to_string(),
                        sha256: None,
                        source: source.filter(|s| *s != name).map(str::to_string),
                        suite: None,
                    })
                })
                .collect(),
        )
    }

    /// The package of a name and architecture.
    pub fn get(&self, name: &str, architecture: &str) -> Option<&LockedPackage> {
        self.packages
            .binary_search_by(|p| {
                (p.name.as_str(), p.architecture.as_str()).cmp(&(name, architecture))
            })
            .ok()
            .map(|i| &self.packages[i])
    }

    /// Differences between this lock (expected) and another package set (actual), as readable lines.
    pub fn differences(&self, actual: &Lock) -> Vec<String> {
        let key = |p: &LockedPackage| (p.name.clone(), p.architecture.clone());
        let expected: std::collections::BTreeMap<_, _> =
            self.packages.iter().map(|p| (key(p), &p.version)).collect();
        let found: std::collections::BTreeMap<_, _> = actual
            .packages
            .iter()
            .map(|p| (key(p), &p.version))
            .collect();
        let mut out = Vec::new();
        for ((name, arch), version) in &expected {
            match found.get(&(name.clone(), arch.clone())) {
                None => out.push(format!("missing {name}:{arch} {version}")),
                Some(v) if v != version => {
                    out.push(format!("{name}:{arch} is {v}, lock says {version}"))
                }
                Some(_) => {}
            }
        }
        for ((name, arch), version) in &found {
            if !expected.contains_key(&(name.clone(), arch.clone())) {
                out.push(format!("unexpected {name}:{arch} {version}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dpkg_query_and_compares_package_sets() {
        let lock = Lock::from_dpkg_query("bash\t5.2.15-2+b2\tamd64\nbase-files\t12.4\tamd64\n");
        assert_eq!(lock.packages.len(), 2);
        assert_eq!(lock.packages[0].name, "base-files");
        assert!(lock.differences(&lock.clone()).is_empty());
        let other = Lock::from_dpkg_query("bash\t5.2.15-2+b3\tamd64\nvim\t9\tamd64\n");
        assert_eq!(
            lock.differences(&other),
            vec![
                "missing base-files:amd64 12.4".to_string(),
                "bash:amd64 is 5.2.15-2+b3, lock says 5.2.15-2+b2".to_string(),
                "unexpected vim:amd64 9".to_string(),
            ]
        );
    }

    #[test]
    fn compose_ids_carry_recipe_and_day() {
        let at: Timestamp = "2026-11-21T10:00:00Z".parse().expect("timestamp");
        assert_eq!(ComposeId::new("cloud", at, 2).as_str(), "cloud-20261121.2");
    }

    #[test]
    fn input_hash_depends_on_every_part() {
        let r = sha256_hex(b"r");
        let l = sha256_hex(b"l");
        let base = InputHash::compute(&r, Some(&l), "b1");
        assert_ne!(base, InputHash::compute(&r, None, "b1"));
        assert_ne!(base, InputHash::compute(&r, Some(&l), "b2"));
        assert_ne!(base, InputHash::compute(&sha256_hex(b"x"), Some(&l), "b1"));
        assert_ne!(base.seed("esp"), base.seed("root"));
    }
}
