//! The package difference between two composes of one recipe.

use serde::{Deserialize, Serialize};

use crate::{ComposeId, LockedPackage};

/// What changed in the package set since the previous compose of the same recipe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkgDiff {
    /// The compose this one is compared with; `None` for a recipe's first compose, where every package
    /// counts as added.
    pub previous: Option<ComposeId>,
    /// Packages that were not installed before.
    pub added: Vec<LockedPackage>,
    /// Packages that are no longer installed.
    pub removed: Vec<LockedPackage>,
    /// Packages whose version went up.
    pub upgraded: Vec<PackageChange>,
    /// Packages whose version went down (a version pulled from the archive, or a source removed).
    pub downgraded: Vec<PackageChange>,
    /// Packages whose version stayed but whose file changed (a rebuild under the same version).
    pub rebuilt: Vec<PackageChange>,
}

/// One package present in both composes with a different version or file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageChange {
    /// Binary package name.
    pub name: String,
    /// Architecture.
    pub architecture: String,
    /// The source package it was built from.
    pub source: String,
    /// The version before.
    pub old_version: String,
    /// The version now.
    pub new_version: String,
    /// The suite the new version came from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// True when the new version came from a security suite (a suite named `*-security`, or `*/updates`).
    pub security: bool,
}

impl PkgDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.upgraded.is_empty()
            && self.downgraded.is_empty()
            && self.rebuilt.is_empty()
    }

    /// The upgrades that came from a security suite.
    pub fn security_upgrades(&self) -> impl Iterator<Item = &PackageChange> {
        self.upgraded.iter().filter(|c| c.security)
    }

    /// A one-line summary such as `3 upgraded (1 security), 1 added, 0 removed`.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} upgraded ({} security), {} added, {} removed",
            self.upgraded.len(),
            self.security_upgrades().count(),
            self.added.len(),
            self.removed.len()
        );
        if !self.downgraded.is_empty() {
            text.push_str(&format!(", {} downgraded", self.downgraded.len()));
        }
        if !self.rebuilt.is_empty() {
            text.push_str(&format!(", {} rebuilt", self.rebuilt.len()));
        }
        text
    }
}

/// True when a suite name is a security suite: Debian's `bookworm-security`, or the older `*/updates` form.
pub fn is_security_suite(suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates")
}
