//! Builds images from recipes.
//!
//! A compose runs in four steps, each in its own module:
//! 1. [`rootfs`]: the root filesystem from real packages with mmdebstrap, and its lock;
//! 2. [`customize`]: the recipe's settings, files and units, plus what a cloud image needs (fstab, an
//!    empty machine-id, cloud-init datasources, a bootloader);
//! 3. [`disk`]: a GPT disk with an EFI system partition and an ext4 root, written without loop devices or
//!    mounts;
//! 4. [`formats`]: the output files (raw.xz, qcow2).
//!
//! The compose caches (downloaded packages, installed trees) are in [`cache`].
//!
//! [`Composer::compose`] runs them in order and returns the files with their digests; the engine moves the
//! files into the blob store.

pub mod cache;
mod composer;
pub mod customize;
pub mod disk;
pub mod formats;
pub mod rootfs;

pub use composer::{
    BuiltImage, ComposeError, ComposeOutput, ComposeRequest, Composer, StepTiming,
    REQUIRED_PROGRAMS,
};
