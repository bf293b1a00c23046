//! The public tree: release files, signed `CHECKSUM`s and detached signatures, Fedora CoreOS-shaped stream
//! metadata, the releases index, public keys and the download page, written as a complete new generation and
//! switched in with one atomic rename of a symbolic link.
//!
//! ```text
//! <publish> -> .<publish>.generations/<n>/
//!   <stream>/<version>/           the release's files, <file>.sig each, CHECKSUM (clearsigned sha256sum lines)
//!   streams/<stream>.json         newest live release, coreos-stream-metadata shape
//!   releases/<stream>.json        every release, newest first
//!   keys/<fingerprint>.asc        the public key (and earlier ones), also as keys/release-key.asc
//!   index.html                    the download page
//! ```
//!
//! Signing sits behind the [`Signer`] trait. [`InProcessSigner`] signs in process with rPGP and is what
//! publishing uses ([`load_signer`]); [`GpgSigner`] runs gpg(1) through [`slipway_exec::CommandRunner`],
//! makes keys, and signs with the keys the in-process signer does not take. This crate takes plain values
//! in ([`SiteInput`]) and never reads the store; the engine decides which releases exist and in which
//! state.

mod cleartext;
mod fsutil;
mod html;
mod in_process;
mod metadata;
mod notes;
mod sign;
mod site;

pub use in_process::{load_signer, InProcessSigner, LoadedSigner};
pub use notes::{release_notes, RELEASE_NOTES};
pub use sign::{GpgSigner, SignError, Signer};
pub use site::{
    publish, PublishError, PublishFile, PublishSummary, ReleaseInput, SiteInput, StreamInput,
};
