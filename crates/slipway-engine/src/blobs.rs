//! The content-addressed artifact store on a local directory.

use std::path::{Path, PathBuf};

use slipway_model::Sha256;

/// Artifacts by sha256 under `<root>/sha256/<first two hex digits>/<digest>`. A blob is written once and
/// never changed, so the public tree can hard-link it.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// Whether a blob is flushed to disk before it gets its name; off only for a throwaway store.
    durable: bool,
}

impl BlobStore {
    /// A blob store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            durable: true,
        }
    }

    /// The same store without syncs to disk, for a throwaway one such as a simulation's: a crash of the
    /// machine may leave a blob empty under its name.
    pub fn without_syncs(self) -> Self {
        Self {
            durable: false,
            ..self
        }
    }

    fn sync(&self, path: &Path) -> std::io::Result<()> {
        if self.durable {
            std::fs::File::open(path)?.sync_all()?;
        }
        Ok(())
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
        self.sync(&partial)?;
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
            self.sync(&partial)?;
            std::fs::rename(&partial, &target)?;
            std::fs::remove_file(file)?;
        }
        Ok(target)
    }
}

/// A file found in the blob directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobFile {
    /// Its path.
    pub path: PathBuf,
    /// The digest its name gives; `None` for a file that is no blob (an interrupted write's
    /// `.<digest>.partial`).
    pub digest: Option<Sha256>,
    /// Its size in bytes.
    pub size: u64,
}

impl BlobStore {
    /// Every file under the store, blobs and leftovers of interrupted writes alike, sorted by path. A store
    /// that was never written to is empty.
    pub fn scan(&self) -> std::io::Result<Vec<BlobFile>> {
        let top = self.root.join("sha256");
        let mut out = Vec::new();
        let fans = match std::fs::read_dir(&top) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(err) => return Err(err),
        };
        for fan in fans {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(fan.path())? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if !meta.is_file() {
                    continue;
                }
                let name = entry.file_name();
                let digest = name.to_str().and_then(|n| Sha256::parse(n).ok());
                out.push(BlobFile {
                    path: entry.path(),
                    digest,
                    size: meta.len(),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The size of a blob, if it is stored.
    pub fn size(&self, digest: &Sha256) -> Option<u64> {
        std::fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    /// Deletes a blob; true if it was there. The public tree holds its own links to published files, so
    /// this never takes a file away from readers.
    pub fn remove(&self, digest: &Sha256) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
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

    #[test]
    fn scans_and_removes_blobs_and_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::new(dir.path().join("blobs"));
        assert!(blobs.scan().expect("scan of nothing").is_empty());
        let a = blobs.put_bytes(b"aaa").expect("put");
        let partial = blobs
            .path(&a)
            .with_file_name(format!(".{}.partial", slipway_model::sha256_hex(b"b")));
        std::fs::write(&partial, b"b").expect("write");
        let found = blobs.scan().expect("scan");
        assert_eq!(found.len(), 2);
        let blob = found.iter().find(|f| f.digest.is_some()).expect("the blob");
        assert_eq!((blob.digest.as_ref(), blob.size), (Some(&a), 3));
        assert!(found
            .iter()
            .any(|f| f.path == partial && f.digest.is_none()));
        assert_eq!(blobs.size(&a), Some(3));
        assert!(blobs.remove(&a).expect("remove"));
        assert!(!blobs.remove(&a).expect("remove again"));
        assert_eq!(blobs.size(&a), None);
    }
}
