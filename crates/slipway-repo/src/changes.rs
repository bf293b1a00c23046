//! Whether a lock is still what the repositories would give.
//!
//! slipway checks the lock of a recipe's last compose against the current indexes instead of resolving the
//! dependency closure again. The argument that this cannot miss a change:
//!
//! - The package set mmdebstrap installs is decided by the recipe (hashed separately), the candidate
//!   version of every package the resolver visits, those versions' dependency fields, and which packages
//!   exist to satisfy a dependency with a choice (`a | b`, or a virtual package).
//! - Every package the resolver installed is in the lock. Its candidate is checked: newer, older (the locked
//!   version was pulled), gone, or the same version with a different file (a rebuild) all count as changes.
//!   While the candidate is unchanged its dependency fields are unchanged too, since a version's control
//!   data is fixed by its file, whose checksum is compared.
//! - What the resolver saw beyond the lock's own packages is summed up in a selection hash, made when the
//!   lock was made: the essential (and, for priority-based variants, priority) set, and for every dependency
//!   of a locked package that offers a choice, which alternatives exist and who provides them. A package
//!   that appears and would now be chosen changes this hash.
//! - Packages that are not installed and not an alternative of a dependency of one cannot change the result.
//!
//! A lock without a selection hash (made before it was recorded) counts as changed, so the first check
//! after an upgrade rebuilds once rather than guess.

use std::fmt;

use serde::Serialize;
use slipway_model::{sha256_hex, Lock};

use crate::index::PackageIndex;
use crate::relation::parse_relations;
use crate::version::compare_versions;

/// One reason a lock is out of date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LockChange {
    /// A newer version is available.
    Newer {
        /// Binary package.
        name: String,
        /// Architecture.
        architecture: String,
        /// The locked version.
        locked: String,
        /// The version apt would install now.
        available: String,
        /// The suite offering it.
        suite: String,
    },
    /// The locked version is gone and only an older one is listed.
    Older {
        /// Binary package.
        name: String,
        /// Architecture.
        architecture: String,
        /// The locked version.
        locked: String,
        /// The highest version still listed.
        available: String,
    },
    /// No version of the package is listed any more.
    Vanished {
        /// Binary package.
        name: String,
        /// Architecture.
        architecture: String,
        /// The locked version.
        locked: String,
    },
    /// The same version is listed with a different file checksum: it was rebuilt.
    Rebuilt {
        /// Binary package.
        name: String,
        /// Architecture.
        architecture: String,
        /// The version.
        version: String,
    },
    /// The essential set or the alternatives of a dependency changed, so the resolver may choose
    /// differently even though no locked package moved.
    SelectionChanged,
}

impl LockChange {
    /// The binary package the change is about; `None` for a selection change.
    pub fn package(&self) -> Option<&str> {
        match self {
            Self::Newer { name, .. }
            | Self::Older { name, .. }
            | Self::Vanished { name, .. }
            | Self::Rebuilt { name, .. } => Some(name),
            Self::SelectionChanged => None,
        }
    }
}

impl fmt::Display for LockChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Newer {
                name,
                architecture,
                locked,
                available,
                suite,
            } => write!(f, "{name}:{architecture} {locked} → {available} ({suite})"),
            Self::Older {
                name,
                architecture,
                locked,
                available,
            } => write!(
                f,
                "{name}:{architecture} {locked} was withdrawn; {available} is the highest left"
            ),
            Self::Vanished {
                name,
                architecture,
                locked,
            } => write!(f, "{name}:{architecture} {locked} is no longer listed"),
            Self::Rebuilt {
                name,
                architecture,
                version,
            } => write!(
                f,
                "{name}:{architecture} {version} was rebuilt (new checksum)"
            ),
            Self::SelectionChanged => f.write_str(
                "the essential set or a dependency's alternatives changed in the repositories",
            ),
        }
    }
}

/// The result of checking a lock against the current indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockCheck {
    /// Every reason the lock is out of date; empty when a compose now would install the same packages.
    pub changes: Vec<LockChange>,
}

impl LockCheck {
    /// True when nothing changed.
    pub fn unchanged(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Checks every entry of `lock` against `index`, and the lock's selection hash against the one the index
/// gives now, for a recipe of mmdebstrap `variant` on `architecture`.
pub fn check_lock(lock: &Lock, index: &PackageIndex, variant: &str) -> LockCheck {
    let scheme = index.scheme();
    let mut changes = Vec::new();
    for locked in &lock.packages {
        let Some(candidate) = index.candidate(&locked.name, &locked.architecture) else {
            changes.push(LockChange::Vanished {
                name: locked.name.clone(),
                architecture: locked.architecture.clone(),
                locked: locked.version.clone(),
            });
            continue;
        };
        match compare_versions(scheme, &candidate.package.version, &locked.version) {
            std::cmp::Ordering::Greater => changes.push(LockChange::Newer {
                name: locked.name.clone(),
                architecture: locked.architecture.clone(),
                locked: locked.version.clone(),
                available: candidate.package.version.clone(),
                suite: candidate.suite.to_string(),
            }),
            std::cmp::Ordering::Less => changes.push(LockChange::Older {
                name: locked.name.clone(),
                architecture: locked.architecture.clone(),
                locked: locked.version.clone(),
                available: candidate.package.version.clone(),
            }),
            std::cmp::Ordering::Equal => {
                let listed = &candidate.package.sha256;
                if let Some(recorded) = &locked.sha256 {
                    if !listed.is_empty() && listed != recorded.as_str() {
                        changes.push(LockChange::Rebuilt {
                            name: locked.name.clone(),
                            architecture: locked.architecture.clone(),
                            version: locked.version.clone(),
                        });
                    }
                }
            }
        }
    }
    let architecture = lock_architecture(lock);
    if lock.selection_hash.as_deref()
        != Some(selection_hash(lock, index, variant, &architecture).as_str())
    {
        changes.push(LockChange::SelectionChanged);
    }
    LockCheck { changes }
}

/// The architecture of a lock: that of its first architecture-specific package (`amd64` when it has none).
fn lock_architecture(lock: &Lock) -> String {
    lock.packages
        .iter()
        .map(|p| p.architecture.as_str())
        .find(|a| *a != "all" && *a != "noarch")
        .unwrap_or("amd64")
        .to_string()
}

/// The priorities an mmdebstrap variant installs besides the essential set.
fn variant_priorities(variant: &str) -> &'static [&'static str] {
    match variant {
        "minbase" | "buildd" | "required" | "debootstrap" | "-" | "" => &["required"],
        "important" => &["required", "important"],
        "standard" => &["required", "important", "standard"],
        _ => &[],
    }
}

/// The hash of the repository facts that decided which packages `lock` holds, beyond their versions; see
/// the module documentation. Record it in the lock when the lock is made.
pub fn selection_hash(
    lock: &Lock,
    index: &PackageIndex,
    variant: &str,
    architecture: &str,
) -> String {
    let mut lines: Vec<String> = Vec::new();
    let priorities = variant_priorities(variant);
    let mut selected: Vec<&str> = index
        .all()
        .filter(|f| crate::index::arch_matches(&f.package.architecture, architecture))
        .filter(|f| f.package.essential || priorities.contains(&f.package.priority.as_str()))
        .map(|f| f.package.name.as_str())
        .collect();
    selected.sort_unstable();
    selected.dedup();
    lines.push(format!("selected {}", selected.join(" ")));

    for locked in &lock.packages {
        let Some(listed) = index.exact(&locked.name, &locked.architecture, &locked.version) else {
            // A locked version that is no longer listed is reported as a change on its own.
            continue;
        };
        for group in parse_relations(&listed.package.depends) {
            let has_choice = group.len() > 1
                || group
                    .iter()
                    .any(|alt| !index.has_real(&alt.name, architecture));
            if !has_choice {
                continue;
            }
            let alternatives: Vec<String> = group
                .iter()
                .map(|alt| {
                    let real = index.has_real(&alt.name, architecture);
                    format!(
                        "{}{}[{}]",
                        alt.name,
                        if real { "" } else { "?" },
                        index.providers(&alt.name).join(",")
                    )
                })
                .collect();
            lines.push(format!("{}: {}", locked.name, alternatives.join(" | ")));
        }
    }
    sha256_hex(lines.join("\n").as_bytes()).as_str().to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use slipway_model::{LockedPackage, Sha256};

    use super::*;
    use crate::{Package, RepoSnapshot, VersionScheme};

    fn package(name: &str, version: &str, depends: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: name.into(),
            provides: String::new(),
            depends: depends.into(),
            size: 1,
            sha256: sha256_hex(format!("{name}{version}").as_bytes())
                .as_str()
                .to_string(),
            filename: String::new(),
            essential: false,
            priority: String::new(),
        }
    }

    fn index(packages: Vec<Package>) -> PackageIndex {
        PackageIndex::new(vec![Arc::new(RepoSnapshot {
            url: "http://deb.example/debian".into(),
            suite: "bookworm".into(),
            scheme: VersionScheme::Debian,
            digest: "d".into(),
            packages,
        })])
    }

    fn lock_of(index: &PackageIndex, names: &[&str]) -> Lock {
        let mut lock = Lock::new(
            names
                .iter()
                .map(|name| {
                    let found = index.candidate(name, "amd64").expect("listed").package;
                    LockedPackage {
                        name: found.name.clone(),
                        version: found.version.clone(),
                        architecture: found.architecture.clone(),
                        sha256: Some(Sha256::parse(&found.sha256).expect("hex")),
                        source: None,
                        suite: None,
                    }
                })
                .collect(),
        );
        lock.selection_hash = Some(selection_hash(&lock, index, "apt", "amd64"));
        lock
    }

    #[test]
    fn an_unchanged_repository_leaves_the_lock_alone() {
        let repo = index(vec![
            package(
                "cloud-init",
                "22.4",
                "python3, exim4 | mail-transport-agent",
            ),
            package("python3", "3.11", ""),
            package("exim4", "4.96", ""),
        ]);
        let lock = lock_of(&repo, &["cloud-init", "python3", "exim4"]);
        assert!(check_lock(&lock, &repo, "apt").unchanged());
    }

    #[test]
    fn every_kind_of_move_is_reported() {
        let before = index(vec![
            package("a", "1.0", ""),
            package("b", "2.0", ""),
            package("c", "3.0", ""),
            package("d", "4.0", ""),
        ]);
        let lock = lock_of(&before, &["a", "b", "c", "d"]);
        let mut rebuilt = package("d", "4.0", "");
        rebuilt.sha256 = sha256_hex(b"other").as_str().to_string();
        let after = index(vec![
            package("a", "1.1", ""),
            package("b", "1.9", ""),
            rebuilt,
        ]);
        let check = check_lock(&lock, &after, "apt");
        let kinds: Vec<String> = check.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            kinds,
            vec![
                "a:amd64 1.0 → 1.1 (bookworm)",
                "b:amd64 2.0 was withdrawn; 1.9 is the highest left",
                "c:amd64 3.0 is no longer listed",
                "d:amd64 4.0 was rebuilt (new checksum)",
            ]
        );
    }

    #[test]
    fn a_new_alternative_or_essential_package_changes_the_selection() {
        let before = index(vec![
            package("cloud-init", "22.4", "default-mta | mail-transport-agent"),
            package("postfix", "3.7", ""),
        ]);
        let lock = lock_of(&before, &["cloud-init", "postfix"]);
        // default-mta now exists: apt would take it first.
        let with_alternative = index(vec![
            package("cloud-init", "22.4", "default-mta | mail-transport-agent"),
            package("postfix", "3.7", ""),
            package("default-mta", "1", ""),
        ]);
        assert_eq!(
            check_lock(&lock, &with_alternative, "apt").changes,
            vec![LockChange::SelectionChanged]
        );
        let mut essential = package("newutils", "1", "");
        essential.essential = true;
        let with_essential = index(vec![
            package("cloud-init", "22.4", "default-mta | mail-transport-agent"),
            package("postfix", "3.7", ""),
            essential,
        ]);
        assert_eq!(
            check_lock(&lock, &with_essential, "apt").changes,
            vec![LockChange::SelectionChanged]
        );
        // An unrelated new package changes nothing.
        let unrelated = index(vec![
            package("cloud-init", "22.4", "default-mta | mail-transport-agent"),
            package("postfix", "3.7", ""),
            package("vim", "9", ""),
        ]);
        assert!(check_lock(&lock, &unrelated, "apt").unchanged());
    }

    #[test]
    fn a_lock_without_a_selection_hash_is_rebuilt_once() {
        let repo = index(vec![package("a", "1", "")]);
        let mut lock = lock_of(&repo, &["a"]);
        lock.selection_hash = None;
        assert_eq!(
            check_lock(&lock, &repo, "apt").changes,
            vec![LockChange::SelectionChanged]
        );
    }
}
