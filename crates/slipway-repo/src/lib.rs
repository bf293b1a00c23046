//! Package repositories: what is in them now, and what that means for the images built from them.
//!
//! This crate owns apt and rpm-md repository metadata. It fetches a source's signed index (`InRelease`, or
//! `repomd.xml`), checks the signature and every checksum, keeps the last good copy in a local cache, and
//! parses the package lists into [`Package`] values. On top of those it answers the change questions of a
//! release pipeline: has anything in a compose's lock moved ([`check_lock`]), which recipes hold a package
//! ([`ReverseIndex`]), and what changed between two composes ([`pkgdiff`]).
//!
//! Like every capability crate it takes model values in and gives model values back; it never touches the
//! store.

mod apt;
mod changes;
pub mod deb822;
mod error;
#[cfg(feature = "fixture")]
pub mod fixture;
mod gpgv;
pub mod http;
mod index;
pub mod inrelease;
mod pkgdiff;
mod relation;
pub mod rpmmd;
mod state;
mod version;

pub use apt::{AptRepo, AptSource};
pub use changes::{check_lock, selection_hash, LockChange, LockCheck};
pub use deb822::{parse_packages, parse_packages_from};
pub use error::RepoError;
pub use http::{Fetched, Fetcher};
pub use index::{
    Affected, AffectedPackage, Found, MatchedBy, PackageIndex, RecipeLock, ReverseIndex,
};
pub use inrelease::{Release as AptRelease, ReleaseFile};
pub use pkgdiff::pkgdiff;
pub use relation::{parse_relations, Relation, RelationOp};
pub use rpmmd::{parse_primary, parse_repomd, RpmRepo, RpmSource};
pub use version::{compare_versions, VersionScheme};

/// One package as a repository index lists it: a stanza of an apt `Packages` file, or a `<package>` of an
/// rpm-md `primary.xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Binary package name.
    pub name: String,
    /// Full version: `[epoch:]upstream[-revision]` for Debian, `[epoch:]version-release` for rpm.
    pub version: String,
    /// Architecture (`amd64`, `all`, `x86_64`, `noarch`).
    pub architecture: String,
    /// The source package it was built from; the binary's own name when the index omits it.
    pub source: String,
    /// What it provides, in Debian relation syntax (`mail-transport-agent, libfoo (= 1.2)`); rpm provides are
    /// written the same way.
    pub provides: String,
    /// What it depends on, `Pre-Depends` first, in Debian relation syntax (`a (>= 1) | b, c`).
    pub depends: String,
    /// Size of the package file in bytes.
    pub size: u64,
    /// sha256 of the package file, lowercase hex; empty when the index lists no sha256.
    pub sha256: String,
    /// Path of the package file relative to the repository's base URL.
    pub filename: String,
    /// Debian's `Essential: yes`: installed by every variant, so it is part of every lock.
    pub essential: bool,
    /// Debian's `Priority` (`required`, `important`, …); empty when absent.
    pub priority: String,
}

/// The parsed, verified contents of one source at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSnapshot {
    /// The source's base URL.
    pub url: String,
    /// Its suite (apt) or repository id (rpm-md).
    pub suite: String,
    /// How versions in it compare.
    pub scheme: VersionScheme,
    /// sha256 of the signed index it was read from (`InRelease` or `repomd.xml`): equal digests mean equal
    /// contents, so nothing needs parsing again.
    pub digest: String,
    /// Every package of every component and architecture fetched.
    pub packages: Vec<Package>,
}

/// The result of a successful refresh of an apt or rpm-md source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// sha256 of the signed index (InRelease or repomd.xml) the source's good state now comes from,
    /// lowercase hex.
    pub digest: String,
    /// Whether `digest` differs from that of the previous good state (true for the first refresh).
    pub changed: bool,
}
