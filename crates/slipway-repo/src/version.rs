//! Version comparison lives in the model, so that every crate compares package versions the same way
//! (advisory matching needs it as much as change detection does); it is re-exported here unchanged.

pub use slipway_model::{compare_versions, VersionScheme};
