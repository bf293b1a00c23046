//! The package diff between two locks.

use slipway_model::PkgDiff;

/// The difference between two locks.
pub fn pkgdiff() -> PkgDiff {
    PkgDiff::default()
}
