//! The root filesystem, built from real packages with mmdebstrap into a directory, and its lock.

use std::path::Path;
use std::time::Duration;

use slipway_exec::{Command, CommandRunner, ExecError};
use slipway_model::{Lock, Recipe};

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

/// The mmdebstrap command that builds `recipe` into `target`.
pub fn mmdebstrap_command(recipe: &Recipe, target: &Path, source_date_epoch: i64) -> Command {
    let mut cmd = Command::new("mmdebstrap")
        .arg(format!("--variant={}", recipe.variant))
        .arg("--mode=root")
        .arg("--format=directory")
        .arg(format!("--architectures={}", recipe.architecture))
        .arg(format!("--include={}", recipe.packages.join(",")));
    for opt in dpkg_options(recipe) {
        cmd = cmd.arg(format!("--dpkgopt={opt}"));
    }
    cmd = cmd
        .arg(&recipe.suite)
        .arg(target)
        .args(source_lines(recipe))
        .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string())
        // apt and debconf must never wait for an answer nobody can give.
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8")
        .timeout(MMDEBSTRAP_TIMEOUT)
        .discard_stdout();
    cmd
}

/// Builds the tree into `target` (which must not exist or be empty) and returns its lock.
pub async fn build(
    runner: &dyn CommandRunner,
    recipe: &Recipe,
    target: &Path,
    source_date_epoch: i64,
) -> Result<Lock, RootfsError> {
    std::fs::create_dir_all(target).map_err(|error| RootfsError::Io {
        path: target.to_path_buf(),
        error,
    })?;
    runner
        .run(mmdebstrap_command(recipe, target, source_date_epoch))
        .await
        .map_err(|error| RootfsError::Exec {
            action: "installing packages with mmdebstrap",
            error,
        })?;
    read_lock(runner, target).await
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
