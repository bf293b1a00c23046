use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A SHA-256 digest in lower-case hex, the identity of every artifact and the unit of every checksum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

impl Sha256 {
    /// Parses 64 hex digits (either case); anything else is refused.
    pub fn parse(hex_digits: &str) -> Result<Self, String> {
        if hex_digits.len() == 64 && hex_digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(hex_digits.to_ascii_lowercase()))
        } else {
            Err(format!("not a sha256 hex digest: {hex_digits:?}"))
        }
    }

    /// Wraps the 32 raw bytes of a finished digest.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(hex::encode(bytes))
    }

    /// The digest as 64 lower-case hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256 {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sha256> for String {
    fn from(value: Sha256) -> Self {
        value.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sha256 and size of a file, read in large blocks.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<(Sha256, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = read_buffer_for(&file);
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

/// A buffer for reading `file` through in chunks: a mebibyte, or one byte more than the file when it is
/// smaller, so that hashing a small file does not pay for zeroing a large buffer.
pub fn read_buffer_for(file: &std::fs::File) -> Vec<u8> {
    const CHUNK: usize = 1 << 20;
    let size = file
        .metadata()
        .map_or(CHUNK, |m| usize::try_from(m.len()).unwrap_or(CHUNK));
    vec![0u8; CHUNK.min(size.saturating_add(1))]
}

/// A SHA-256 that bytes are written into, so that a value serialized for hashing need not be held whole
/// in memory first.
#[derive(Debug, Clone, Default)]
pub struct Sha256Writer(sha2::Sha256);

impl Sha256Writer {
    /// Adds `bytes` to what is hashed.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The SHA-256 of everything written.
    pub fn finish(self) -> Sha256 {
        Sha256::from_bytes(self.0.finalize().into())
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The SHA-256 of a byte string, for hashing small values such as normalized recipes.
pub fn sha256_hex(bytes: &[u8]) -> Sha256 {
    Sha256::from_bytes(sha2::Sha256::digest(bytes).into())
}
