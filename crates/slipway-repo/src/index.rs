//! Lookup of packages by name across sources, and the reverse index from packages to recipes.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use slipway_model::{ComposeId, Lock};

use crate::relation::parse_relations;
use crate::version::{compare_versions, VersionScheme};
use crate::{Package, RepoSnapshot};

/// Every package of a set of sources (one recipe's), by name: what apt would see with all of them in its
/// sources list at equal priority.
#[derive(Debug, Default)]
pub struct PackageIndex {
    snapshots: Vec<Arc<RepoSnapshot>>,
    /// Package name → (snapshot, package) positions.
    by_name: HashMap<String, Vec<(u32, u32)>>,
    /// Virtual package name → names of real packages that provide it, sorted.
    providers: HashMap<String, Vec<String>>,
}

/// A package found in an index, with the suite it came from.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// The package.
    pub package: &'a Package,
    /// The suite of the source listing it.
    pub suite: &'a str,
}

impl PackageIndex {
    /// Indexes the packages of some snapshots.
    pub fn new(snapshots: Vec<Arc<RepoSnapshot>>) -> Self {
        let mut by_name: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
        let mut providers: HashMap<String, Vec<String>> = HashMap::new();
        for (s, snapshot) in snapshots.iter().enumerate() {
            for (p, package) in snapshot.packages.iter().enumerate() {
                by_name
                    .entry(package.name.clone())
                    .or_default()
                    .push((s as u32, p as u32));
                if !package.provides.is_empty() {
                    for group in parse_relations(&package.provides) {
                        for provided in group {
                            providers
                                .entry(provided.name)
                                .or_default()
                                .push(package.name.clone());
                        }
                    }
                }
            }
        }
        for names in providers.values_mut() {
            names.sort();
            names.dedup();
        }
        Self {
            snapshots,
            by_name,
            providers,
        }
    }

    /// The version scheme of the indexed sources (Debian when there are none).
    pub fn scheme(&self) -> VersionScheme {
        self.snapshots
            .first()
            .map_or(VersionScheme::Debian, |s| s.scheme)
    }

    /// Every listed package of a name for an architecture (its own or `all`/`noarch`).
    pub fn versions<'a>(
        &'a self,
        name: &str,
        architecture: &str,
    ) -> impl Iterator<Item = Found<'a>> + 'a {
        let architecture = architecture.to_owned();
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(move |&(s, p)| {
                let snapshot = &self.snapshots[s as usize];
                let package = &snapshot.packages[p as usize];
                arch_matches(&package.architecture, &architecture).then_some(Found {
                    package,
                    suite: &snapshot.suite,
                })
            })
    }

    /// The version apt would install: the highest listed for the architecture. Among equal versions the
    /// first source wins, as in apt.
    pub fn candidate(&self, name: &str, architecture: &str) -> Option<Found<'_>> {
        let scheme = self.scheme();
        self.versions(name, architecture)
            .fold(None, |best, found| match best {
                Some(best)
                    if compare_versions(scheme, &found.package.version, &best.package.version)
                        != std::cmp::Ordering::Greater =>
                {
                    Some(best)
                }
                _ => Some(found),
            })
    }

    /// One exact version of a package, if any source lists it; prefers a listing in a security suite, so
    /// that a fix published in both places is attributed to the security suite.
    pub fn exact(&self, name: &str, architecture: &str, version: &str) -> Option<Found<'_>> {
        let mut matches = self
            .versions(name, architecture)
            .filter(|f| f.package.version == version);
        let first = matches.next()?;
        if slipway_model::is_security_suite(first.suite) {
            return Some(first);
        }
        Some(
            matches
                .find(|f| slipway_model::is_security_suite(f.suite))
                .unwrap_or(first),
        )
    }

    /// True when some source lists a real package of this name for the architecture.
    pub fn has_real(&self, name: &str, architecture: &str) -> bool {
        self.versions(name, architecture).next().is_some()
    }

    /// Names of the packages that provide a virtual package.
    pub fn providers(&self, name: &str) -> &[String] {
        self.providers.get(name).map_or(&[], Vec::as_slice)
    }

    /// All packages, for whole-index questions (the essential set).
    pub fn all(&self) -> impl Iterator<Item = Found<'_>> {
        self.snapshots.iter().flat_map(|snapshot| {
            snapshot.packages.iter().map(move |package| Found {
                package,
                suite: &snapshot.suite,
            })
        })
    }

    /// The number of indexed packages.
    pub fn len(&self) -> usize {
        self.snapshots.iter().map(|s| s.packages.len()).sum()
    }

    /// True when no package is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// True when a package of `package_arch` installs on `wanted`.
pub(crate) fn arch_matches(package_arch: &str, wanted: &str) -> bool {
    package_arch == wanted || package_arch == "all" || package_arch == "noarch"
}

/// One recipe's current lock, as the reverse index takes it.
#[derive(Debug, Clone)]
pub struct RecipeLock {
    /// The recipe.
    pub recipe: String,
    /// The streams built from it.
    pub streams: Vec<String>,
    /// The compose the lock is from.
    pub compose: ComposeId,
    /// The lock.
    pub lock: Lock,
}

/// How a queried name matched a package of a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchedBy {
    /// The binary package itself.
    Binary,
    /// A binary built from the queried source package.
    Source,
}

/// One package of a lock that a query matched. The texts are shared with the index, so a batch touching
/// thousands of locked packages costs no string copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffectedPackage {
    /// The name that was asked about.
    pub query: Arc<str>,
    /// The binary package in the lock.
    pub package: Arc<str>,
    /// Its version in the lock.
    pub version: Arc<str>,
    /// Its architecture.
    pub architecture: Arc<str>,
    /// Whether it matched as a binary or as a binary of a source package.
    pub matched_by: MatchedBy,
}

/// A recipe whose current lock holds some of the queried packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Affected {
    /// The recipe.
    pub recipe: String,
    /// The streams built from it.
    pub streams: Vec<String>,
    /// The compose whose lock matched.
    pub compose: ComposeId,
    /// The matching packages, in query order.
    pub packages: Vec<AffectedPackage>,
}

/// From package and source package names to the locks that hold them, so "which images does this batch
/// of updates touch?" is a few hash lookups instead of a scan of every lock.
#[derive(Debug, Default)]
pub struct ReverseIndex {
    locks: Vec<RecipeLock>,
    /// Binary name → the locked packages of that name.
    by_binary: HashMap<String, Vec<Entry>>,
    /// Source name → the locked packages built from it.
    by_source: HashMap<String, Vec<Entry>>,
}

/// One locked package, as the reverse index keeps it.
#[derive(Debug, Clone)]
struct Entry {
    lock: u32,
    name: Arc<str>,
    version: Arc<str>,
    architecture: Arc<str>,
}

impl ReverseIndex {
    /// Builds the index from the current lock of each recipe.
    pub fn new(locks: Vec<RecipeLock>) -> Self {
        let mut by_binary: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut by_source: HashMap<String, Vec<Entry>> = HashMap::new();
        // Most locks of a distribution share most packages: one copy of each text serves them all.
        let mut texts: std::collections::HashSet<Arc<str>> = std::collections::HashSet::new();
        let mut intern = |text: &str| -> Arc<str> {
            if let Some(found) = texts.get(text) {
                return Arc::clone(found);
            }
            let shared: Arc<str> = Arc::from(text);
            texts.insert(Arc::clone(&shared));
            shared
        };
        for (l, recipe_lock) in locks.iter().enumerate() {
            for package in &recipe_lock.lock.packages {
                let entry = Entry {
                    lock: l as u32,
                    name: intern(&package.name),
                    version: intern(&package.version),
                    architecture: intern(&package.architecture),
                };
                by_source
                    .entry(package.source_name().to_string())
                    .or_default()
                    .push(entry.clone());
                by_binary
                    .entry(package.name.clone())
                    .or_default()
                    .push(entry);
            }
        }
        Self {
            locks,
            by_binary,
            by_source,
        }
    }

    /// The recipes whose locks hold any of `names`, as a binary package or as a binary built from a source
    /// package of that name; sorted by recipe.
    pub fn affected<S: AsRef<str>>(&self, names: &[S]) -> Vec<Affected> {
        let mut per_lock: Vec<Vec<AffectedPackage>> = vec![Vec::new(); self.locks.len()];
        for name in names {
            let name = name.as_ref();
            let query: Arc<str> = Arc::from(name);
            let binaries = self
                .by_binary
                .get(name)
                .into_iter()
                .flatten()
                .map(|entry| (entry, MatchedBy::Binary));
            // A binary named like its source matches both ways; it is reported once, as a binary.
            let sources = self
                .by_source
                .get(name)
                .into_iter()
                .flatten()
                .filter(|entry| &*entry.name != name)
                .map(|entry| (entry, MatchedBy::Source));
            for (entry, matched_by) in binaries.chain(sources) {
                per_lock[entry.lock as usize].push(AffectedPackage {
                    query: Arc::clone(&query),
                    package: Arc::clone(&entry.name),
                    version: Arc::clone(&entry.version),
                    architecture: Arc::clone(&entry.architecture),
                    matched_by,
                });
            }
        }
        let mut out: Vec<Affected> = per_lock
            .into_iter()
            .enumerate()
            .filter(|(_, packages)| !packages.is_empty())
            .map(|(l, packages)| {
                let lock = &self.locks[l];
                Affected {
                    recipe: lock.recipe.clone(),
                    streams: lock.streams.clone(),
                    compose: lock.compose.clone(),
                    packages,
                }
            })
            .collect();
        out.sort_by(|a, b| a.recipe.cmp(&b.recipe));
        out
    }

    /// The indexed locks.
    pub fn locks(&self) -> &[RecipeLock] {
        &self.locks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_model::LockedPackage;

    fn locked(name: &str, version: &str, source: Option<&str>) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            sha256: None,
            source: source.map(str::to_string),
            suite: None,
        }
    }

    fn package(name: &str, version: &str, provides: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: name.into(),
            provides: provides.into(),
            depends: String::new(),
            size: 1,
            sha256: String::new(),
            filename: String::new(),
            essential: false,
            priority: String::new(),
        }
    }

    #[test]
    fn affected_finds_binaries_and_binaries_of_sources() {
        let index = ReverseIndex::new(vec![
            RecipeLock {
                recipe: "cloud".into(),
                streams: vec!["cloud-stable".into()],
                compose: ComposeId("cloud-20261121.0".into()),
                lock: Lock::new(vec![
                    locked("libssl3", "3.0.15-1", Some("openssl")),
                    locked("libc6", "2.36-9", Some("glibc")),
                ]),
            },
            RecipeLock {
                recipe: "minimal".into(),
                streams: vec!["minimal".into()],
                compose: ComposeId("minimal-20261121.0".into()),
                lock: Lock::new(vec![locked("bash", "5.2", None)]),
            },
        ]);
        let hits = index.affected(&["openssl", "libc6"]);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].recipe, "cloud");
        let names: Vec<_> = hits[0]
            .packages
            .iter()
            .map(|p| (&*p.package, p.matched_by.clone()))
            .collect();
        assert_eq!(
            names,
            vec![("libssl3", MatchedBy::Source), ("libc6", MatchedBy::Binary)]
        );
        // A binary whose source has its own name is reported once.
        let bash = index.affected(&["bash"]);
        assert_eq!(bash[0].packages.len(), 1);
        assert!(index.affected(&["vim"]).is_empty());
    }

    #[test]
    fn candidate_is_the_highest_version_across_sources() {
        let base = RepoSnapshot {
            url: "http://deb.example/debian".into(),
            suite: "bookworm".into(),
            scheme: VersionScheme::Debian,
            digest: "a".into(),
            packages: vec![
                package("openssl", "3.0.11-1~deb12u2", ""),
                package("exim4", "4.96", "mail-transport-agent"),
            ],
        };
        let security = RepoSnapshot {
            suite: "bookworm-security".into(),
            packages: vec![package("openssl", "3.0.15-1~deb12u1", "")],
            ..base.clone()
        };
        let index = PackageIndex::new(vec![Arc::new(base), Arc::new(security)]);
        let candidate = index.candidate("openssl", "amd64").expect("listed");
        assert_eq!(candidate.package.version, "3.0.15-1~deb12u1");
        assert_eq!(candidate.suite, "bookworm-security");
        assert!(index.candidate("openssl", "arm64").is_none());
        assert_eq!(index.providers("mail-transport-agent"), ["exim4"]);
        assert!(index
            .exact("openssl", "amd64", "3.0.11-1~deb12u2")
            .is_some());
        assert!(index.exact("openssl", "amd64", "3.0.0").is_none());
    }
}
