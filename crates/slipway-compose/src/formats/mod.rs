//! Output formats. Each writer reads the assembled raw disk and writes one output file, returning its
//! digest and size. Writers are blocking and CPU-bound: call them from `spawn_blocking`. Given a
//! [`chunk_cache::ChunkCache`], they reuse compressed chunks of earlier writes; the output is the same.

pub mod chunk_cache;
pub mod qcow2;
pub mod raw_xz;

use std::path::PathBuf;

use slipway_model::Sha256;

/// A file a format writer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its sha256.
    pub sha256: Sha256,
    /// Its size in bytes.
    pub size: u64,
}

/// Why writing a format failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Reading the input or writing the output failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The compressor reported an error.
    #[error("compressing {path}: {message}")]
    Compress {
        /// The output file.
        path: PathBuf,
        /// The compressor's message.
        message: String,
    },
}

pub use slipway_model::sha256_file;
