//! The root filesystem, built from real packages with mmdebstrap into a directory, and its lock.
//!
//! Package files go through the package cache and installed trees through the tree cache (see
//! [`crate::cache`]); the lock records the sha256 of every package file that was installed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use slipway_exec::{Command, CommandRunner, ExecError};
use slipway_model::{Lock, Recipe, Sha256};

use crate::cache::debs::sha256_file;
use crate::cache::{
    blocking, deb_file_name, tree_key, CacheError, CachePolicy, CacheUse, DebCache, DebPrunePolicy,
    TreeCache,
};

/// How long mmdebstrap may take before it is killed: generous, since a slow mirror is not a hang.
pub const MMDEBSTRAP_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Why building the root filesystem failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootfsError {
    /// A tool failed; the message carries its stderr tail (for mmdebstrap, apt's complaint).
    #[error("{action}: {error}")]
    Exec {
        /// What was being done.
        action: &'static str,
        /// The tool's error.
        error: ExecError,
    },
    /// The target directory could not be prepared.
    #[error("preparing {}: {error}", path.display())]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The tree has no packages recorded.
    #[error("the tree at {} has no installed packages", .0.display())]
    EmptyLock(std::path::PathBuf),
    /// A cache failed in a way that lost the tree.
    #[error("{0}")]
    Cache(CacheError),
}

impl From<CacheError> for RootfsError {
    fn from(error: CacheError) -> Self {
        Self::Cache(error)
    }
}

/// The one-line apt source of each recipe source, as mmdebstrap takes them for mirrors.
pub fn source_lines(recipe: &Recipe) -> Vec<String> {
    recipe
        .sources
        .iter()
        .map(|source| {
            let mut options = Vec::new();
            if let Some(keyring) = &source.keyring {
                options.push(format!("signed-by={}", keyring.display()));
            }
            if source.trusted {
                options.push("trusted=yes".to_string());
            }
            let options = if options.is_empty() {
                String::new()
            } else {
                format!("[{}] ", options.join(" "))
            };
            format!(
                "deb {options}{} {} {}",
                source.url,
                source.suite,
                source.components.join(" ")
            )
        })
        .collect()
}

/// dpkg options that keep documentation and translations out of the tree. They are written into the
/// tree's dpkg configuration too, so packages installed later follow the same rules.
pub fn dpkg_options(recipe: &Recipe) -> Vec<String> {
    let mut opts = Vec::new();
    if recipe.exclude_docs {
        opts.extend(
            [
                "path-exclude=/usr/share/doc/*",
                // Copyright files are kept: licences require shipping them with the binaries.
                "path-include=/usr/share/doc/*/copyright",
                "path-exclude=/usr/share/man/*",
                "path-exclude=/usr/share/info/*",
                "path-exclude=/usr/share/lintian/*",
            ]
            .map(String::from),
        );
    }
    if recipe.exclude_locales {
        opts.extend(
            [
                "path-exclude=/usr/share/locale/*",
                "path-include=/usr/share/locale/locale.alias",
                "path-include=/usr/share/locale/en*",
            ]
            .map(String::from),
        );
    }
    opts
}

/// The mmdebstrap command that builds `recipe` into `target`, without the package cache hooks.
pub fn mmdebstrap_command(recipe: &Recipe, target: &Path, source_date_epoch: i64) -> Command {
    mmdebstrap_run(recipe, target, source_date_epoch, Vec::new())
}

/// mmdebstrap with `extra` options, building `recipe` into `target`.
fn mmdebstrap_run(
    recipe: &Recipe,
    target: &Path,
    source_date_epoch: i64,
    extra: Vec<String>,
) -> Command {
    mmdebstrap_args(recipe, extra)
        .arg(&recipe.suite)
        .arg(target)
        .args(source_lines(recipe))
        .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string())
        // apt and debconf must never wait for an answer nobody can give.
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8")
        .timeout(MMDEBSTRAP_TIMEOUT)
        .discard_stdout()
}

/// The mmdebstrap command that builds `recipe` into `target` with package files going through two
/// directories: a setup hook hard links everything in `debs_in` into the tree's apt archive before apt
/// runs (apt verifies each against the repository and downloads only what is missing or different), and
/// a customize hook hard links every package file in the archive into `debs_out` before mmdebstrap's
/// cleanup deletes them. Essential packages stay in the archive for that (`--skip=essential/unlink`).
/// Both directories must be on the filesystem of `target` (the hooks link, never copy).
pub fn mmdebstrap_command_with_deb_dirs(
    recipe: &Recipe,
    target: &Path,
    source_date_epoch: i64,
    debs_in: &Path,
    debs_out: &Path,
) -> Command {
    let hooks = vec![
        "--skip=essential/unlink".to_string(),
        format!(
            "--setup-hook=mkdir -p \"$1/var/cache/apt/archives\" && cp -al {}/. \"$1/var/cache/apt/archives/\"",
            sh_quote(debs_in)
        ),
        format!(
            "--customize-hook=find \"$1/var/cache/apt/archives\" -maxdepth 1 -type f -name '*.deb' -exec cp -l -t {} {{}} +",
            sh_quote(debs_out)
        ),
    ];
    mmdebstrap_run(recipe, target, source_date_epoch, hooks)
}

/// The options of an mmdebstrap run, before the suite, target and sources.
fn mmdebstrap_args(recipe: &Recipe, extra: Vec<String>) -> Command {
    let mut cmd = Command::new("mmdebstrap")
        .arg(format!("--variant={}", recipe.variant))
        .arg("--mode=root")
        .arg("--format=directory")
        .arg(format!("--architectures={}", recipe.architecture))
        .arg(format!("--include={}", recipe.packages.join(",")));
    for opt in dpkg_options(recipe) {
        cmd = cmd.arg(format!("--dpkgopt={opt}"));
    }
    cmd.args(extra)
}

/// A path as one shell word.
fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

/// What to build, and which caches may help.
#[derive(Debug, Clone, Copy)]
pub struct RootfsRequest<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Where the tree goes; it must not exist or be empty. Scratch directories are made beside it.
    pub target: &'a Path,
    /// `SOURCE_DATE_EPOCH` for the package installation and the clamped file times.
    pub source_date_epoch: i64,
    /// The root of the compose caches (`debs/` and `trees/` are used), or `None` to build cold.
    pub cache_dir: Option<&'a Path>,
    /// The lock this compose is expected to install; with a cache, a tree stored under it is reused.
    pub expected_lock: Option<&'a Lock>,
    /// How much the caches keep.
    pub policy: &'a CachePolicy,
}

/// A built tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRootfs {
    /// The installed packages, with the sha256 of each package file where it was found.
    pub lock: Lock,
    /// What the caches did.
    pub cache: CacheUse,
}

/// Builds the tree into `req.target` and returns its lock.
///
/// With a cache and an expected lock whose tree is cached, the tree is copied from the cache and
/// mmdebstrap does not run. Otherwise mmdebstrap builds it with the package cache; the lock gets the
/// sha256 of every package file, the tree is [`normalize`]d, and (with a cache) moved into the tree cache
/// under the lock it actually got and copied back, so a cold and a warm compose continue from the same
/// kind of copy. A cache that fails is logged and skipped; it never fails the compose unless the tree
/// itself is lost.
pub async fn build(
    runner: &dyn CommandRunner,
    req: &RootfsRequest<'_>,
) -> Result<BuiltRootfs, RootfsError> {
    let debs = req.cache_dir.map(|dir| DebCache::new(dir.join("debs")));
    let trees = req
        .cache_dir
        .filter(|_| req.policy.trees_per_recipe > 0)
        .map(|dir| TreeCache::new(dir.join("trees")));
    prepare_target(req.target)?;

    if let (Some(trees), Some(expected)) = (&trees, req.expected_lock) {
        let key = tree_key(req.recipe, req.source_date_epoch, expected);
        match trees
            .restore(runner, &req.recipe.name, &key, req.target)
            .await
        {
            Ok(Some(lock)) => {
                tracing::info!(%key, "reusing the installed tree from the cache");
                if let Some(debs) = debs {
                    let names: Vec<String> = lock.packages.iter().map(deb_file_name).collect();
                    let policy = req.policy.debs.clone();
                    if let Err(error) = blocking("recording package use", move || {
                        debs.record_use(&names, &policy)
                    })
                    .await
                    {
                        tracing::warn!(%error, "could not record the packages used");
                    }
                }
                return Ok(BuiltRootfs {
                    lock,
                    cache: CacheUse {
                        tree_reused: true,
                        ..CacheUse::default()
                    },
                });
            }
            Ok(None) => tracing::info!(%key, "no cached tree for the expected lock"),
            Err(error) => {
                tracing::warn!(%error, "could not reuse the cached tree; building it");
                prepare_target(req.target)?;
            }
        }
    }

    let staging = Staging::beside(req.target);
    staging.remove()?;
    let built = build_cold(runner, req, &staging, debs, trees).await;
    let removed = staging.remove();
    let built = built?;
    removed?;
    Ok(built)
}

async fn build_cold(
    runner: &dyn CommandRunner,
    req: &RootfsRequest<'_>,
    staging: &Staging,
    debs: Option<DebCache>,
    trees: Option<TreeCache>,
) -> Result<BuiltRootfs, RootfsError> {
    for dir in [&staging.debs_in, &staging.debs_out] {
        std::fs::create_dir_all(dir).map_err(|error| RootfsError::Io {
            path: dir.clone(),
            error,
        })?;
    }
    if let Some(debs) = debs.clone() {
        let into = staging.debs_in.clone();
        match blocking("staging cached packages", move || debs.stage(&into)).await {
            Ok(count) => tracing::info!(count, "staged cached package files"),
            Err(error) => tracing::warn!(%error, "could not stage cached package files"),
        }
    }
    runner
        .run(mmdebstrap_command_with_deb_dirs(
            req.recipe,
            req.target,
            req.source_date_epoch,
            &staging.debs_in,
            &staging.debs_out,
        ))
        .await
        .map_err(|error| RootfsError::Exec {
            action: "installing packages with mmdebstrap",
            error,
        })?;
    let mut lock = read_lock(runner, req.target).await?;

    let names: Vec<String> = lock.packages.iter().map(deb_file_name).collect();
    let sums = {
        let debs_out = staging.debs_out.clone();
        let names = names.clone();
        let policy = req.policy.debs.clone();
        blocking("hashing package files", move || {
            package_sums(debs.as_ref(), &debs_out, &names, &policy)
        })
        .await?
    };
    let mut cache = CacheUse::default();
    for (package, name) in lock.packages.iter_mut().zip(&names) {
        package.sha256 = sums.get(name).cloned();
        if package.sha256.is_none() {
            tracing::warn!(
                package = %package.name,
                file = %name,
                "the installed package's file was not found; its checksum stays unknown"
            );
        }
        match (
            std::fs::symlink_metadata(staging.debs_out.join(name)),
            std::fs::symlink_metadata(staging.debs_in.join(name)),
        ) {
            (Ok(out), Ok(staged)) if out.dev() == staged.dev() && out.ino() == staged.ino() => {
                cache.debs_from_cache += 1
            }
            (Ok(_), _) => cache.debs_downloaded += 1,
            _ => {}
        }
    }
    tracing::info!(
        from_cache = cache.debs_from_cache,
        downloaded = cache.debs_downloaded,
        "installed packages"
    );

    let (target, epoch) = (req.target.to_path_buf(), req.source_date_epoch);
    blocking("normalizing the tree", move || {
        normalize(&target, epoch).map_err(|error| CacheError::Io {
            action: "normalizing",
            path: target,
            error,
        })
    })
    .await?;

    if let Some(trees) = trees {
        let key = tree_key(req.recipe, req.source_date_epoch, &lock);
        if let Err(error) = trees
            .store_and_restore(
                runner,
                &req.recipe.name,
                &key,
                req.target,
                &lock,
                req.policy.trees_per_recipe,
            )
            .await
        {
            // Failing before the move leaves the fresh tree where it was, which is as good as a cold
            // compose without a cache; failing after it leaves nothing to continue with.
            if !req.target.is_dir() {
                return Err(RootfsError::Cache(error));
            }
            tracing::warn!(%error, "could not store the installed tree in the cache");
        }
    }
    Ok(BuiltRootfs { lock, cache })
}

/// The sha256 of each package file in `debs_out` named in `names`: through the package cache, which adds
/// them and knows the ones it already had, or by reading the files when there is no cache or it fails.
fn package_sums(
    debs: Option<&DebCache>,
    debs_out: &Path,
    names: &[String],
    policy: &DebPrunePolicy,
) -> Result<HashMap<String, Sha256>, CacheError> {
    let mut sums = match debs {
        Some(debs) => debs.add(debs_out, names, policy).unwrap_or_else(|error| {
            tracing::warn!(%error, "could not add package files to the cache");
            HashMap::new()
        }),
        None => HashMap::new(),
    };
    for name in names {
        let path = debs_out.join(name);
        if !sums.contains_key(name) && path.is_file() {
            let sha = sha256_file(&path).map_err(|error| CacheError::Io {
                action: "hashing",
                path,
                error,
            })?;
            sums.insert(name.clone(), sha);
        }
    }
    Ok(sums)
}

/// Removes what records the build rather than the packages, and clamps modification times to
/// `source_date_epoch`, so two builds of the same lock on the same day give the same tree: logs, caches
/// that carry build times, backup files, random seeds, the build host's resolver configuration and
/// hostname, and secrets that must differ per instance (SSH host keys, the D-Bus machine id). mmdebstrap's
/// own cleanup already removes some of these; this list repeats them so the tree does not depend on its
/// version.
pub fn normalize(root: &Path, source_date_epoch: i64) -> std::io::Result<()> {
    for file in BUILD_RECORDS {
        remove_file_if_present(&inside(root, file))?;
    }
    let ssh = inside(root, "/etc/ssh");
    if let Ok(entries) = std::fs::read_dir(&ssh) {
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                remove_file_if_present(&entry.path())?;
            }
        }
    }
    for dir in BUILD_RECORD_DIRS {
        remove_files_under(&inside(root, dir))?;
    }
    crate::disk::clamp_mtimes(root, source_date_epoch)?;
    // Clamping is not enough for these directories: whether the build wrote into them depends on the
    // build, not on the packages (apt writes into archives/partial only when it downloads, so a build
    // from the package cache leaves its time as the package shipped it). They all get the epoch.
    for dir in BUILD_RECORD_DIRS.iter().chain(APT_WORK_DIRS) {
        set_dir_times_under(&inside(root, dir), source_date_epoch)?;
    }
    Ok(())
}

/// apt's working directories, whose files mmdebstrap removes after the build.
pub const APT_WORK_DIRS: &[&str] = &["/var/lib/apt/lists"];

/// Sets the modification time of `dir` and every directory under it to `epoch`.
fn set_dir_times_under(dir: &Path, epoch: i64) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            set_dir_times_under(&entry.path(), epoch)?;
        }
    }
    let time = Timespec {
        tv_sec: epoch,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, dir, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(std::io::Error::from)
}

/// Files that record the build, not the packages (see [`normalize`]).
pub const BUILD_RECORDS: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hostname",
    "/etc/machine-id",
    "/var/lib/dbus/machine-id",
    "/var/lib/systemd/random-seed",
    "/var/lib/urandom/random-seed",
    "/var/cache/ldconfig/aux-cache",
    "/var/cache/apt/pkgcache.bin",
    "/var/cache/apt/srcpkgcache.bin",
    "/var/cache/debconf/config.dat-old",
    "/var/cache/debconf/templates.dat-old",
    "/var/cache/debconf/passwords.dat-old",
    "/var/lib/dpkg/status-old",
    "/var/lib/dpkg/diversions-old",
    "/var/lib/dpkg/statoverride-old",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/subuid-",
    "/etc/subgid-",
    "/root/.bash_history",
];

/// Directories whose files record the build (their directories are kept: packages expect them).
pub const BUILD_RECORD_DIRS: &[&str] = &["/var/log", "/tmp", "/var/tmp", "/var/cache/apt/archives"];

fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn remove_file_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_files_under(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_files_under(&entry.path())?;
        } else {
            remove_file_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// Makes `target` an empty directory.
fn prepare_target(target: &Path) -> Result<(), RootfsError> {
    let io = |error| RootfsError::Io {
        path: target.to_path_buf(),
        error,
    };
    match std::fs::remove_dir_all(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    std::fs::create_dir_all(target).map_err(io)
}

/// The scratch directories of a cold build, beside the target so the hooks can hard link between them
/// and the tree.
struct Staging {
    debs_in: PathBuf,
    debs_out: PathBuf,
}

impl Staging {
    fn beside(target: &Path) -> Self {
        let sibling = |suffix: &str| {
            let mut name = target.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Self {
            debs_in: sibling(".debs-in"),
            debs_out: sibling(".debs-out"),
        }
    }

    fn remove(&self) -> Result<(), RootfsError> {
        for dir in [&self.debs_in, &self.debs_out] {
            match std::fs::remove_dir_all(dir) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RootfsError::Io {
                        path: dir.clone(),
                        error,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The packages installed in a tree, read from its dpkg database.
pub async fn read_lock(runner: &dyn CommandRunner, root: &Path) -> Result<Lock, RootfsError> {
    let admindir = root.join("var/lib/dpkg");
    let out = runner
        .run(
            Command::new("dpkg-query")
                .arg(format!("--admindir={}", admindir.display()))
                .args(["-W", "-f", Lock::DPKG_QUERY_FORMAT]),
        )
        .await
        .map_err(|error| RootfsError::Exec {
            action: "reading the installed packages",
            error,
        })?;
    let lock = Lock::from_dpkg_query(&out.stdout_text());
    if lock.packages.is_empty() {
        return Err(RootfsError::EmptyLock(root.to_path_buf()));
    }
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mtime(path: &Path, secs: i64) {
        let time = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("utimensat");
    }

    #[test]
    fn normalizing_removes_build_records_and_pins_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in [
            "etc/ssh",
            "var/log/apt",
            "var/cache/apt/archives/partial",
            "usr/bin",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        for f in [
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/sshd_config",
            "var/log/apt/history.log",
            "var/cache/ldconfig/aux-cache",
            "usr/bin/old",
            "usr/bin/new",
        ] {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, f).expect("write");
        }
        let epoch = 1_700_000_000;
        // Shipped by a package, untouched by this build: older than the epoch, kept as it is.
        set_mtime(&root.join("usr/bin/old"), epoch - 1000);
        set_mtime(&root.join("var/cache/apt/archives/partial"), epoch - 1000);

        normalize(root, epoch).expect("normalize");

        assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(root.join("etc/ssh/sshd_config").exists());
        assert!(!root.join("var/log/apt/history.log").exists());
        assert!(root.join("var/log/apt").is_dir());
        assert!(!root.join("var/cache/ldconfig/aux-cache").exists());
        let mtime = |p: &str| {
            std::fs::symlink_metadata(root.join(p))
                .expect("stat")
                .mtime()
        };
        assert_eq!(mtime("usr/bin/old"), epoch - 1000);
        assert_eq!(mtime("usr/bin/new"), epoch);
        // Whether apt wrote here depends on the build (a download), not on the packages.
        assert_eq!(mtime("var/cache/apt/archives/partial"), epoch);
        assert_eq!(mtime("var/log/apt"), epoch);
    }

    #[test]
    fn hooks_link_package_files_in_and_out() {
        let recipe = Recipe::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/compose_bookworm-cloud.toml"),
        )
        .expect("recipe");
        let cmd = mmdebstrap_command_with_deb_dirs(
            &recipe,
            Path::new("/w/t"),
            1,
            Path::new("/w/t.debs-in"),
            Path::new("/w/it's"),
        );
        let line = cmd.display();
        assert!(line.contains("--skip=essential/unlink"), "{line}");
        assert!(line.contains("cp -al '/w/t.debs-in'/. "), "{line}");
        assert!(line.contains(r"cp -l -t '/w/it'\''s' {} +"), "{line}");
        // Options come before the suite, target and sources.
        let suite = line.find(" bookworm /w/t ").expect("suite and target");
        assert!(
            line.find("--customize-hook").expect("hook") < suite,
            "{line}"
        );
    }
}
