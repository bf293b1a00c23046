//! The content-addressed artifact store on a local directory.

use std::path::{Path, PathBuf};

use slipway_model::Sha256;

/// Artifacts by sha256 under `<root>/sha256/<first two hex digits>/<digest>`. A blob is written once and
/// never changed, so the public tree can hard-link it.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// A blob store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the blob with this digest lives (whether or not it exists yet).
    pub fn path(&self, digest: &Sha256) -> PathBuf {
        let hex = digest.as_str();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    /// Stores bytes (small texts such as release notes) and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> std::io::Result<Sha256> {
        let digest = slipway_model::sha256_hex(bytes);
        let target = self.path(&digest);
        if target.exists() {
            return Ok(digest);
        }
        let dir = target.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let partial = dir.join(format!(".{}.partial", digest.as_str()));
        std::fs::write(&partial, bytes)?;
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, &target)?;
        Ok(digest)
    }

    /// Moves `file`, whose digest the caller computed while writing it, into the store. A rename when on
    /// the same filesystem, otherwise a copy to a temporary name and a rename, so a crash never leaves a
    /// partial blob under a digest's name.
    pub fn put_file(&self, file: &Path, digest: &Sha256) -> std::io::Result<PathBuf> {
        let target = self.path(digest);
        if target.exists() {
            std::fs::remove_file(file)?;
            return Ok(target);
        }
        let dir = target.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        if std::fs::rename(file, &target).is_err() {
            let partial = dir.join(format!(".{}.partial", digest.as_str()));
            std::fs::copy(file, &partial)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, &target)?;
            std::fs::remove_file(file)?;
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_files_under_their_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::new(dir.path().join("blobs"));
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"hello").expect("write");
        let digest = slipway_model::sha256_hex(b"hello");
        let stored = blobs.put_file(&file, &digest).expect("put");
        assert_eq!(std::fs::read(&stored).expect("read"), b"hello");
        assert!(!file.exists());
        assert!(stored.ends_with(format!("sha256/{}/{}", &digest.as_str()[..2], digest)));
        // The same content again is a no-op that still consumes the source file.
        std::fs::write(&file, b"hello").expect("write");
        assert_eq!(blobs.put_file(&file, &digest).expect("put again"), stored);
        assert!(!file.exists());
    }
}
