//! The public tree: release files, signed `CHECKSUM`s and detached signatures, Fedora CoreOS-shaped stream
//! metadata, the releases index, public keys, the download page and an Atom feed. The metadata is written as
//! a new generation and switched in with one atomic rename of a symbolic link; release directories live in a
//! pool that every generation reaches through a link per stream, so a publish costs what changed.
//!
//! ```text
//! <publish> -> .<publish>.generations/<n>/
//!   <stream> -> ../../.<publish>.pool/<stream>
//!   <stream>/<version>/           the release's files, <file>.sig each, CHECKSUM (clearsigned sha256sum lines)
//!   streams/<stream>.json         the newest release not revoked, coreos-stream-metadata shape, with the
//!                                 stale and end-of-life markers under metadata.x-slipway-stale / -eol
//!   releases/<stream>.json        the newest month's releases, newest first, revoked ones with their
//!                                 revocation, and the earlier years' parts (`earlier`)
//!   releases/<stream>/<YYYY>.json a year's earlier releases (for the newest year, those before the
//!                                 current index's month), in the same shape; releases/<stream> is a
//!                                 link to the stream's set of these parts in the pool
//!   archive/<stream>/releases-<YYYYMMDD>.json
//!                                 every release as it was when the stream reached its end of life
//!   keys/<fingerprint>.asc        the public key (and earlier ones), also as keys/release-key.asc
//!   index.html                    the download page
//!   feed.xml                      Atom feed: releases, revocations, stale streams, ends of life
//! .<publish>.pool/
//!   <stream>/<version>/           release directories, shared by the generations, never changed
//!   .withdrawn/<stream>/<version>/  revoked releases, out of the site, restored on unrevocation
//!   .staging/<n>/                 new releases being signed, out of the site until the switch
//!   .index/<stream>/<set>/        a stream's earlier index parts, named by their fingerprints, shared
//! ```
//!
//! Mirrors that copy the tree with rsync must resolve the stream links (`--copy-unsafe-links`, or `-L`).
//!
//! Signing sits behind the [`Signer`] trait. [`InProcessSigner`] signs in process with rPGP and is what
//! publishing uses ([`load_signer`]); [`GpgSigner`] runs gpg(1) through [`slipway_exec::CommandRunner`],
//! makes keys, and signs with the keys the in-process signer does not take. This crate takes plain values
//! in ([`SiteInput`]) and never reads the store; the engine decides which releases exist and in which
//! state.

mod cleartext;
mod feed;
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
    part_holds, publish, EolInfo, PublishError, PublishFile, PublishSummary, ReleaseInput,
    SiteInput, StaleInfo, StreamInput,
};
