//! Installed root trees, reused when a compose's packages did not change.
//!
//! Layout: `<dir>/<recipe name>/<key>/` holds `tree/` (the tree as mmdebstrap left it, after
//! [`crate::rootfs::normalize`]), `lock` (the packages installed in it) and `used` (whose modification
//! time is the entry's last use, for least-recently-used eviction). `<dir>/<recipe name>/.lock` is held
//! shared while a tree is copied out and exclusive while entries are added or evicted. An entry is built
//! under `.tmp-*` and renamed into place, so an entry that exists is complete; a `.tmp-*` found while
//! holding the exclusive lock belongs to a compose that died, and is removed.
//!
//! A tree is always copied out (`cp -a --reflink=auto`, which keeps hard links, owners, modes, times,
//! device nodes and extended attributes such as file capabilities), never used in place, since the
//! compose changes it. A cold compose moves its fresh tree into the cache and copies it back the same way,
//! so cold and warm composes hand the same kind of tree to the next steps.

use std::path::{Path, PathBuf};

use slipway_exec::{Command, CommandRunner};
use slipway_model::{Lock, LockedPackage, Recipe, Sha256, BUILDER_VERSION};

use super::{blocking, io_err, remove_tree, unique_suffix, CacheError, FileLock};
use crate::rootfs;

/// Bumped whenever the way slipway builds or normalizes a tree changes, so trees made the old way are
/// never reused.
pub const TREE_FORMAT: u32 = 2;

const LOCK_FILE: &str = ".lock";
const TMP_PREFIX: &str = ".tmp-";

/// The key of an installed tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TreeKey(pub Sha256);

impl std::fmt::Display for TreeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// The key of the tree that `recipe` installs with the packages of `lock`: a hash of everything that
/// decides which packages mmdebstrap installs and how (distribution, suite, architecture, variant,
/// sources, packages, dpkg path filters), the `SOURCE_DATE_EPOCH` the maintainer scripts ran with (it
/// reaches into generated files, such as the password change dates in `/etc/shadow`, and into the clamped
/// file times), the lock's hash, and the tree format. Settings applied after the tree is built
/// (hostname, locale, timezone, kernel command line, files, units, disk layout, outputs) are not in it.
pub fn tree_key(recipe: &Recipe, source_date_epoch: i64, lock: &Lock) -> TreeKey {
    let mut text = format!(
        "slipway installed tree {TREE_FORMAT}\nbuilder {BUILDER_VERSION}\ndistribution {}\nsuite {}\narchitecture {}\nvariant {}\n",
        recipe.distribution, recipe.suite, recipe.architecture, recipe.variant
    );
    for line in rootfs::source_lines(recipe) {
        text.push_str(&format!("source {line}\n"));
    }
    let mut packages: Vec<&String> = recipe.packages.iter().collect();
    packages.sort();
    packages.dedup();
    for package in packages {
        text.push_str(&format!("package {package}\n"));
    }
    for option in rootfs::dpkg_options(recipe) {
        text.push_str(&format!("dpkgopt {option}\n"));
    }
    text.push_str(&format!(
        "source-date-epoch {source_date_epoch}\nlock {}\n",
        lock.hash().as_str()
    ));
    TreeKey(slipway_model::sha256_hex(text.as_bytes()))
}

/// The directory name of a recipe's entries: its name with anything but letters, digits, `.`, `_` and `-`
/// replaced.
fn group_name(recipe_name: &str) -> String {
    let name: String = recipe_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A leading dot would make the group look like one of the cache's own hidden files.
    match name.trim_start_matches('.') {
        "" => "_unnamed".to_string(),
        trimmed => trimmed.to_string(),
    }
}

/// A lock as text: one package a line, tab-separated name, version, architecture, sha256, source and
/// suite, `-` for an unknown field.
fn render_lock(lock: &Lock) -> String {
    let mut out = String::new();
    for p in &lock.packages {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            p.name,
            p.version,
            p.architecture,
            p.sha256.as_ref().map_or("-", Sha256::as_str),
            p.source.as_deref().unwrap_or("-"),
            p.suite.as_deref().unwrap_or("-"),
        ));
    }
    out
}

fn parse_lock(text: &str) -> Option<Lock> {
    let optional = |s: &str| (s != "-").then(|| s.to_string());
    let mut packages = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, version, architecture, sha, source, suite] = f[..] else {
            return None;
        };
        packages.push(LockedPackage {
            name: name.to_string(),
            version: version.to_string(),
            architecture: architecture.to_string(),
            sha256: match sha {
                "-" => None,
                sha => Some(Sha256::parse(sha).ok()?),
            },
            source: optional(source),
            suite: optional(suite),
        });
    }
    (!packages.is_empty()).then(|| Lock::new(packages))
}

/// The installed-tree cache in one directory.
#[derive(Debug, Clone)]
pub struct TreeCache {
    dir: PathBuf,
}

impl TreeCache {
    /// The cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of an entry, which exists only when the entry does.
    pub fn entry_dir(&self, recipe_name: &str, key: &TreeKey) -> PathBuf {
        self.dir.join(group_name(recipe_name)).join(key.to_string())
    }

    /// The keys a recipe has entries for, most recently used first.
    pub fn keys(&self, recipe_name: &str) -> Result<Vec<TreeKey>, CacheError> {
        Ok(entries_by_use(&self.dir.join(group_name(recipe_name)))?
            .into_iter()
            .filter_map(|(path, _)| {
                let name = path.file_name()?.to_str()?;
                Sha256::parse(name).ok().map(TreeKey)
            })
            .collect())
    }

    /// Copies the tree of an entry to `dest` (which must not exist, or be an empty directory) and returns
    /// its lock; `None` when there is no such entry.
    pub async fn restore(
        &self,
        runner: &dyn CommandRunner,
        recipe_name: &str,
        key: &TreeKey,
        dest: &Path,
    ) -> Result<Option<Lock>, CacheError> {
        let entry = self.entry_dir(recipe_name, key);
        if !entry.is_dir() {
            return Ok(None);
        }
        let group_lock = entry.with_file_name(LOCK_FILE);
        let _lock = blocking("waiting for the tree cache", move || {
            FileLock::shared(&group_lock)
        })
        .await?;
        // Evicted while this compose waited for the lock.
        if !entry.is_dir() {
            return Ok(None);
        }
        let lock_path = entry.join("lock");
        let Some(lock) = std::fs::read_to_string(&lock_path)
            .ok()
            .and_then(|text| parse_lock(&text))
        else {
            tracing::warn!(entry = %entry.display(), "tree cache entry without a readable lock; not using it");
            return Ok(None);
        };
        touch(&entry.join("used"))?;
        copy_tree(runner, &entry.join("tree"), dest).await?;
        Ok(Some(lock))
    }

    /// Moves `tree` (a freshly built tree with `lock` installed) into the cache under `key`, evicts the
    /// recipe's least recently used entries beyond `keep`, and copies the entry back to `tree`. When
    /// another compose stored the same key meanwhile, that entry is used and this tree dropped: equal
    /// keys mean equal inputs.
    pub async fn store_and_restore(
        &self,
        runner: &dyn CommandRunner,
        recipe_name: &str,
        key: &TreeKey,
        tree: &Path,
        lock: &Lock,
        keep: usize,
    ) -> Result<(), CacheError> {
        let entry = self.entry_dir(recipe_name, key);
        let group = self.dir.join(group_name(recipe_name));
        let group_lock = group.join(LOCK_FILE);
        let _lock = blocking("waiting for the tree cache", move || {
            FileLock::exclusive(&group_lock)
        })
        .await?;
        {
            let group = group.clone();
            blocking("cleaning the tree cache", move || {
                remove_temporaries(&group)
            })
            .await?;
        }
        if entry.is_dir() {
            let tree = tree.to_path_buf();
            blocking("removing a tree", move || remove_tree(&tree)).await?;
        } else {
            let tmp = group.join(format!("{TMP_PREFIX}{}", unique_suffix()));
            std::fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
            let tmp_tree = tmp.join("tree");
            match std::fs::rename(tree, &tmp_tree) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                    // The cache is on another filesystem: copy, then drop the original.
                    copy_tree(runner, tree, &tmp_tree).await?;
                    let tree = tree.to_path_buf();
                    blocking("removing a tree", move || remove_tree(&tree)).await?;
                }
                Err(e) => return Err(io_err("moving into the tree cache", tree)(e)),
            }
            let lock_path = tmp.join("lock");
            std::fs::write(&lock_path, render_lock(lock)).map_err(io_err("writing", &lock_path))?;
            touch(&tmp.join("used"))?;
            // Everything in the entry reaches the disk before the entry's name does, so a power loss
            // never leaves a complete-looking entry with missing data.
            let sync_dir = tmp.clone();
            blocking("syncing the tree cache", move || {
                let dir = std::fs::File::open(&sync_dir).map_err(io_err("opening", &sync_dir))?;
                rustix::fs::syncfs(&dir).map_err(|e| io_err("syncing", &sync_dir)(e.into()))
            })
            .await?;
            std::fs::rename(&tmp, &entry).map_err(io_err("renaming into place", &entry))?;
            tracing::info!(entry = %entry.display(), "stored the installed tree");
        }
        touch(&entry.join("used"))?;
        {
            let group = group.clone();
            let entry = entry.clone();
            blocking("evicting from the tree cache", move || {
                evict(&group, &entry, keep)
            })
            .await?;
        }
        copy_tree(runner, &entry.join("tree"), tree).await
    }
}

/// Entries of a group (directories not starting with `.`) with the time of their last use, newest first.
fn entries_by_use(group: &Path) -> Result<Vec<(PathBuf, std::time::SystemTime)>, CacheError> {
    let read = match std::fs::read_dir(group) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("reading", group)(e)),
    };
    let mut entries = Vec::new();
    for item in read {
        let item = item.map_err(io_err("reading", group))?;
        let path = item.path();
        if item.file_name().to_string_lossy().starts_with('.') || !path.is_dir() {
            continue;
        }
        let used = std::fs::metadata(path.join("used"))
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        entries.push((path, used));
    }
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(entries)
}

/// Removes all but the `keep` most recently used entries, never `current`. An entry is renamed to a
/// temporary name before it is deleted, so a crash in the middle leaves no partial entry behind.
fn evict(group: &Path, current: &Path, keep: usize) -> Result<(), CacheError> {
    let mut kept = 1;
    for (path, _) in entries_by_use(group)? {
        if path == current {
            continue;
        }
        if kept < keep {
            kept += 1;
            continue;
        }
        let doomed = group.join(format!("{TMP_PREFIX}evict-{}", unique_suffix()));
        std::fs::rename(&path, &doomed).map_err(io_err("evicting", &path))?;
        remove_tree(&doomed)?;
        tracing::info!(entry = %path.display(), "evicted an installed tree");
    }
    Ok(())
}

/// Removes `.tmp-*` entries, which only a compose that died can have left while the caller holds the
/// group's exclusive lock.
fn remove_temporaries(group: &Path) -> Result<(), CacheError> {
    let read = match std::fs::read_dir(group) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("reading", group)(e)),
    };
    for item in read {
        let item = item.map_err(io_err("reading", group))?;
        if item.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            tracing::info!(path = %item.path().display(), "removing an interrupted tree cache entry");
            remove_tree(&item.path())?;
        }
    }
    Ok(())
}

/// Creates `path` or sets its modification time to now.
fn touch(path: &Path) -> Result<(), CacheError> {
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("touching", path))?;
    file.set_modified(std::time::SystemTime::now())
        .map_err(io_err("touching", path))
}

/// Copies a tree with everything a root filesystem needs kept: hard links, owners, modes, times, device
/// nodes, extended attributes. `dest` must not exist; an empty directory there is removed first.
async fn copy_tree(runner: &dyn CommandRunner, from: &Path, dest: &Path) -> Result<(), CacheError> {
    match std::fs::remove_dir(dest) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err("clearing the place for a tree at", dest)(e))
        }
        _ => {}
    }
    let result = runner
        .run(
            Command::new("cp")
                .args(["-a", "--reflink=auto", "--no-target-directory"])
                .arg(from)
                .arg(dest),
        )
        .await;
    if let Err(error) = result {
        let partial = dest.to_path_buf();
        let _ = blocking("removing a partial copy", move || remove_tree(&partial)).await;
        return Err(CacheError::Exec {
            action: format!("copying the tree {} to {}", from.display(), dest.display()),
            error,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_survive_the_text_form() {
        let lock =
            Lock::from_dpkg_query("bash\t5.2.15-2+b2\tamd64\t\nlibc6\t2.36-9\tamd64\tglibc\n");
        let mut lock = lock;
        lock.packages[0].sha256 = Some(slipway_model::sha256_hex(b"bash"));
        lock.packages[1].suite = Some("bookworm-security".into());
        let back = parse_lock(&render_lock(&lock)).expect("parses");
        assert_eq!(back, lock);
        assert!(parse_lock("").is_none());
        assert!(parse_lock("bash\t1\n").is_none());
    }

    fn recipe() -> Recipe {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/compose_bookworm-cloud.toml");
        Recipe::load(&path).expect("the example recipe loads")
    }

    type Change = Box<dyn Fn(&mut Recipe)>;

    #[test]
    fn the_key_follows_what_decides_the_tree_and_nothing_else() {
        let base = recipe();
        let lock = Lock::from_dpkg_query("bash\t5.2.15-2+b2\tamd64\t\n");
        let epoch = 1_763_683_200;
        let key = |r: &Recipe| tree_key(r, epoch, &lock);
        let original = key(&base);

        let changes: Vec<(&str, Change)> = vec![
            ("packages", Box::new(|r| r.packages.push("vim".into()))),
            ("variant", Box::new(|r| r.variant = "minbase".into())),
            ("suite", Box::new(|r| r.suite = "trixie".into())),
            (
                "architecture",
                Box::new(|r| r.architecture = "arm64".into()),
            ),
            (
                "distribution",
                Box::new(|r| r.distribution = "ubuntu".into()),
            ),
            (
                "source url",
                Box::new(|r| r.sources[0].url = "http://mirror.example/debian".into()),
            ),
            (
                "source suite",
                Box::new(|r| r.sources[0].suite = "bookworm-backports".into()),
            ),
            (
                "components",
                Box::new(|r| r.sources[0].components.push("contrib".into())),
            ),
            (
                "sources",
                Box::new(|r| {
                    r.sources.pop();
                }),
            ),
            (
                "exclude-docs",
                Box::new(|r| r.exclude_docs = !r.exclude_docs),
            ),
            (
                "exclude-locales",
                Box::new(|r| r.exclude_locales = !r.exclude_locales),
            ),
        ];
        for (what, change) in &changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(
                key(&changed),
                original,
                "changing {what} must change the key"
            );
        }

        let same: Vec<(&str, Change)> = vec![
            ("hostname", Box::new(|r| r.system.hostname = "web1".into())),
            (
                "kernel command line",
                Box::new(|r| r.system.kernel_cmdline = "quiet".into()),
            ),
            (
                "locale",
                Box::new(|r| r.system.locale = "en_US.UTF-8".into()),
            ),
            (
                "timezone",
                Box::new(|r| r.system.timezone = "Europe/Berlin".into()),
            ),
            ("files", Box::new(|r| r.files.clear())),
            (
                "units",
                Box::new(|r| r.units.enable.push("foo.service".into())),
            ),
            ("disk", Box::new(|r| r.disk.headroom_mib += 100)),
            (
                "outputs",
                Box::new(|r| {
                    r.outputs.pop();
                }),
            ),
            ("package order", Box::new(|r| r.packages.reverse())),
        ];
        for (what, change) in &same {
            let mut changed = base.clone();
            change(&mut changed);
            assert_eq!(
                key(&changed),
                original,
                "changing {what} must not change the key"
            );
        }

        assert_ne!(
            tree_key(&base, epoch + 86_400, &lock),
            original,
            "the epoch is in the key"
        );
        let mut other = lock.clone();
        other.packages[0].sha256 = Some(slipway_model::sha256_hex(b"rebuilt"));
        assert_ne!(
            tree_key(&base, epoch, &other),
            original,
            "the lock is in the key"
        );
    }

    #[test]
    fn group_names_are_safe_directory_names() {
        assert_eq!(group_name("bookworm-cloud"), "bookworm-cloud");
        assert_eq!(group_name("../x y"), "_x_y");
        assert_eq!(group_name(""), "_unnamed");
        assert_eq!(group_name(".."), "_unnamed");
    }

    #[test]
    fn eviction_keeps_the_most_recent_and_the_current_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let group = dir.path();
        let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            std::fs::create_dir(group.join(name)).expect("mkdir");
            let used = std::fs::File::create(group.join(name).join("used")).expect("touch");
            used.set_modified(base + std::time::Duration::from_secs(i as u64))
                .expect("set mtime");
        }
        std::fs::create_dir(group.join(".tmp-dead")).expect("mkdir");
        remove_temporaries(group).expect("clean");
        assert!(!group.join(".tmp-dead").exists());
        // "old" is the entry just stored (current), though its stamp is the oldest.
        evict(group, &group.join("old"), 2).expect("evict");
        assert!(group.join("old").exists());
        assert!(group.join("new").exists());
        assert!(!group.join("mid").exists());
    }
}
