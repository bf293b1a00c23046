//! Small synchronous file helpers, called from `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use slipway_model::Sha256;

/// How a file got to its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed {
    /// A hard link to the source: no bytes moved.
    Linked,
    /// A copy, because the source is on another filesystem or may not be linked.
    Copied,
}

/// Puts `src` at `dst` (which must not exist), as a hard link when the filesystem allows it, else as a
/// durable copy. A missing source is an error, never a reason to copy.
pub(crate) fn link_or_copy(src: &Path, dst: &Path) -> io::Result<Placed> {
    match fs::hard_link(src, dst) {
        Ok(()) => Ok(Placed::Linked),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(e) => {
            // EXDEV across filesystems, EPERM under fs.protected_hardlinks, or a filesystem without links.
            tracing::debug!(src = %src.display(), error = %e, "hard link refused, copying");
            let mut from = File::open(src)?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dst)?;
            io::copy(&mut from, &mut to)?;
            to.sync_all()?;
            Ok(Placed::Copied)
        }
    }
}

/// Whether what is written is flushed to disk before anything names it. Only a throwaway tree, such as a
/// simulation's, goes without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Durability {
    pub(crate) sync: bool,
}

impl Durability {
    /// Writes a new file and, when durable, flushes it to disk.
    pub(crate) fn write_new(self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        file.write_all(bytes)?;
        if self.sync {
            file.sync_all()?;
        }
        Ok(())
    }

    /// Flushes a file, or a directory's entries so that a renamed or linked name survives a crash.
    pub(crate) fn sync(self, path: &Path) -> io::Result<()> {
        if self.sync {
            File::open(path)?.sync_all()?;
        }
        Ok(())
    }

    /// Flushes every directory under (and including) `root`, deepest first.
    pub(crate) fn sync_tree_dirs(self, root: &Path) -> io::Result<()> {
        if !self.sync {
            return Ok(());
        }
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                self.sync_tree_dirs(&entry.path())?;
            }
        }
        self.sync(root)
    }
}

/// The size and SHA-256 of a file's content.
pub(crate) fn hash_file(path: &Path) -> io::Result<(u64, Sha256)> {
    let (sum, size) = slipway_model::sha256_file(path)?;
    Ok((size, sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        Durability { sync: true }
            .write_new(&a, b"abc")
            .expect("write");
        let (size, sum) = hash_file(&a).expect("hash");
        assert_eq!(size, 3);
        assert_eq!(
            sum.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let b = dir.path().join("b");
        assert_eq!(link_or_copy(&a, &b).expect("link"), Placed::Linked);
        let missing = link_or_copy(&dir.path().join("nope"), &dir.path().join("c"));
        assert_eq!(
            missing.expect_err("missing").kind(),
            io::ErrorKind::NotFound
        );
        Durability { sync: true }
            .sync_tree_dirs(dir.path())
            .expect("sync");
    }
}
