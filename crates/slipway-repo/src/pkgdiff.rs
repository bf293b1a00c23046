//! The package diff between two locks.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use slipway_model::{is_security_suite, ComposeId, Lock, LockedPackage, PackageChange, PkgDiff};

use crate::version::{compare_versions, VersionScheme};

/// What changed from `previous` (the last compose of the same recipe, if any) to `current`. An upgrade is
/// marked as a security one when the lock records that its new version came from a security suite.
pub fn pkgdiff(
    previous: Option<(&ComposeId, &Lock)>,
    current: &Lock,
    scheme: VersionScheme,
) -> PkgDiff {
    let key = |p: &LockedPackage| (p.name.clone(), p.architecture.clone());
    let before: BTreeMap<_, _> = previous
        .map(|(_, lock)| lock.packages.iter().map(|p| (key(p), p)).collect())
        .unwrap_or_default();
    let now: BTreeMap<_, _> = current.packages.iter().map(|p| (key(p), p)).collect();
    let mut diff = PkgDiff {
        previous: previous.map(|(id, _)| id.clone()),
        ..PkgDiff::default()
    };
    for (k, new) in &now {
        let Some(old) = before.get(k) else {
            diff.added.push((*new).clone());
            continue;
        };
        let change = || PackageChange {
            name: new.name.clone(),
            architecture: new.architecture.clone(),
            source: new.source_name().to_string(),
            old_version: old.version.clone(),
            new_version: new.version.clone(),
            suite: new.suite.clone(),
            security: new.suite.as_deref().is_some_and(is_security_suite),
        };
        match compare_versions(scheme, &new.version, &old.version) {
            Ordering::Greater => diff.upgraded.push(change()),
            Ordering::Less => diff.downgraded.push(change()),
            Ordering::Equal => {
                if old.sha256.is_some() && new.sha256.is_some() && old.sha256 != new.sha256 {
                    diff.rebuilt.push(change());
                }
            }
        }
    }
    for (k, old) in &before {
        if !now.contains_key(k) {
            diff.removed.push((*old).clone());
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(name: &str, version: &str, suite: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            sha256: None,
            source: None,
            suite: Some(suite.into()),
        }
    }

    #[test]
    fn diff_sorts_packages_into_added_removed_and_upgraded() {
        let old = Lock::new(vec![
            locked("libssl3", "3.0.11-1~deb12u2", "bookworm"),
            locked("tzdata", "2024a-0+deb12u1", "bookworm"),
            locked("nano", "7.2-1", "bookworm"),
        ]);
        let new = Lock::new(vec![
            locked("libssl3", "3.0.15-1~deb12u1", "bookworm-security"),
            locked("tzdata", "2025b-0+deb12u1", "bookworm-updates"),
            locked("vim-tiny", "2:9.0.1378-2", "bookworm"),
        ]);
        let id = ComposeId("cloud-20261120.0".into());
        let diff = pkgdiff(Some((&id, &old)), &new, VersionScheme::Debian);
        assert_eq!(diff.previous, Some(id));
        assert_eq!(diff.added.len(), 1);
        assert_eq!(diff.added[0].name, "vim-tiny");
        assert_eq!(diff.removed[0].name, "nano");
        assert_eq!(diff.upgraded.len(), 2);
        let security: Vec<_> = diff.security_upgrades().map(|c| c.name.as_str()).collect();
        assert_eq!(security, ["libssl3"]);
        assert_eq!(
            diff.summary(),
            "2 upgraded (1 security), 1 added, 1 removed"
        );
        let first = pkgdiff(None, &new, VersionScheme::Debian);
        assert_eq!(first.added.len(), 3);
        assert!(first.previous.is_none());
        assert!(pkgdiff(
            Some((&ComposeId("x".into()), &new)),
            &new,
            VersionScheme::Debian
        )
        .is_empty());
    }
}
