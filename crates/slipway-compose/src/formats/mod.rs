//! Output formats. Each writer reads the assembled raw disk and writes one output file, returning its
//! digest and size. Writers are blocking and CPU-bound: call them from `spawn_blocking`.

pub mod qcow2;
pub mod raw_xz;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::Digest as _;
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

/// The sha256 and size of a file, read in large blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<(Sha256, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((Sha256::from_bytes(hasher.finalize().into()), size))
}
