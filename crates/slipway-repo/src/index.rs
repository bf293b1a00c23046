//! Lookup of packages by name across sources, and the reverse index from packages to recipes.

/// Every package of a set of sources, by name.
#[derive(Debug, Default)]
pub struct PackageIndex {}

/// One recipe's current lock, as the reverse index takes it.
#[derive(Debug, Clone)]
pub struct RecipeLock {}

/// From package and source package names to the recipes whose locks hold them.
#[derive(Debug, Default)]
pub struct ReverseIndex {}
