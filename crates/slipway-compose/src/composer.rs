//! Runs a compose: rootfs → customize → assemble → formats.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use slipway_exec::{require_programs, CommandRunner, ExecError};
use slipway_model::{ComposeId, InputHash, Lock, OutputFormat, Recipe, Sha256, BUILDER_VERSION};

use crate::cache::{CachePolicy, CacheUse};
use crate::customize::{self, CustomizeError};
use crate::disk::{self, AssembleRequest, DiskError, DiskIds};
use crate::formats::{self, FormatError, WrittenFile};
use crate::rootfs::{self, RootfsError};

/// Programs a compose runs; checked before anything starts so a missing one fails in a second, not after
/// a minute of package installation.
pub const REQUIRED_PROGRAMS: &[&str] = &[
    "mmdebstrap",
    "dpkg-query",
    "chroot",
    "mkfs.ext4",
    "mkfs.vfat",
    "mcopy",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct ComposeRequest {
    /// The recipe.
    pub recipe: Recipe,
    /// The compose's id, which names the output files.
    pub compose_id: ComposeId,
    /// A directory the composer may use; it leaves only the output files in it.
    pub work_dir: PathBuf,
    /// The timestamp builds are pinned to (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: i64,
    /// CPU threads each output format may use; formats are written at the same time.
    pub threads: usize,
    /// Where the compose caches live (downloaded packages, installed trees, compressed chunks), shared by
    /// composes; `None` builds everything cold. A cache never changes the bytes of a result.
    pub cache_dir: Option<PathBuf>,
    /// The lock the caller expects this compose to install, from the last compose of the recipe when no
    /// package in it has changed since; lets an installed tree be reused. The lock actually installed is
    /// still what the output reports.
    pub expected_lock: Option<Lock>,
}

/// One output image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// Its format.
    pub format: OutputFormat,
    /// Its file name, `<compose_id>.<extension>`.
    pub file_name: String,
    /// Where it is (inside the request's work directory).
    pub path: PathBuf,
    /// Its sha256.
    pub sha256: Sha256,
    /// Its size in bytes.
    pub size: u64,
}

/// How long one step took.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTiming {
    /// The step: `rootfs`, `customize`, `assemble`, or a format's extension (`raw.xz`, `qcow2`).
    pub step: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What a compose produced.
#[derive(Debug, Clone)]
pub struct ComposeOutput {
    /// The installed packages.
    pub lock: Lock,
    /// The input hash: recipe, lock and builder version.
    pub input_hash: InputHash,
    /// The output images, in the recipe's order.
    pub images: Vec<BuiltImage>,
    /// How long each step took.
    pub timings: Vec<StepTiming>,
    /// What the caches saved (a reused tree, package files not downloaded).
    pub cache: CacheUse,
}

/// Why a compose failed. Each variant names the step; the inner error's text, including a failing tool's
/// stderr tail, is part of the message (and so is not also given as `source()`, which would print it twice
/// in a `{:#}` chain).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// A program the compose needs is not installed; the message names the package to install.
    #[error("cannot compose: {0}")]
    MissingTools(ExecError),
    /// The root filesystem step failed.
    #[error("rootfs step failed: {0}")]
    Rootfs(RootfsError),
    /// The customize step failed.
    #[error("customize step failed: {0}")]
    Customize(CustomizeError),
    /// The disk assembly step failed.
    #[error("assemble step failed: {0}")]
    Assemble(DiskError),
    /// Writing an output format failed.
    #[error("{format} step failed: {error}")]
    Format {
        /// The format.
        format: OutputFormat,
        /// What went wrong.
        error: FormatError,
    },
    /// Preparing or cleaning the work directory failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("{step} step did not finish: {message}")]
    Task {
        /// The step.
        step: String,
        /// What the runtime reported.
        message: String,
    },
}

/// Builds images from recipes.
#[derive(Debug, Clone)]
pub struct Composer {
    runner: Arc<dyn CommandRunner>,
    cache_policy: CachePolicy,
}

impl Composer {
    /// A composer that runs its tools through `runner`.
    pub fn new(runner: Arc<dyn CommandRunner>) -> Self {
        Self {
            runner,
            cache_policy: CachePolicy::default(),
        }
    }

    /// The same composer keeping as much in the caches as `policy` says.
    pub fn with_cache_policy(mut self, policy: CachePolicy) -> Self {
        self.cache_policy = policy;
        self
    }

    /// Builds the recipe's images into the work directory. Intermediate files (the tree, the ESP staging
    /// directory, the raw disk) are removed whether the compose succeeds or fails.
    pub async fn compose(
        &self,
        request: &ComposeRequest,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ComposeOutput, ComposeError> {
        require_programs(REQUIRED_PROGRAMS).map_err(ComposeError::MissingTools)?;
        let scratch = Scratch::new(request)?;
        let result = self.run_steps(request, &scratch, progress).await;
        let cleaned = scratch.remove();
        let output = result?;
        cleaned?;
        Ok(output)
    }

    async fn run_steps(
        &self,
        request: &ComposeRequest,
        scratch: &Scratch,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ComposeOutput, ComposeError> {
        let recipe = &request.recipe;
        let runner = self.runner.as_ref();
        let mut timings = Vec::new();

        progress("installing packages into the root filesystem (mmdebstrap)");
        let started = Instant::now();
        let rootfs = rootfs::build(
            runner,
            &rootfs::RootfsRequest {
                recipe,
                target: &scratch.tree,
                source_date_epoch: request.source_date_epoch,
                cache_dir: request.cache_dir.as_deref(),
                expected_lock: request.expected_lock.as_ref(),
                policy: &self.cache_policy,
            },
        )
        .await
        .map_err(ComposeError::Rootfs)?;
        let lock = rootfs.lock;
        timings.push(timing("rootfs", started));
        let input_hash = InputHash::compute(&recipe.hash(), Some(&lock.hash()), BUILDER_VERSION);

        progress("customizing the root filesystem and installing the bootloader");
        let started = Instant::now();
        customize::apply(runner, recipe, &scratch.tree, &scratch.esp)
            .await
            .map_err(ComposeError::Customize)?;
        timings.push(timing("customize", started));

        progress("assembling the GPT disk (ESP and ext4 root)");
        let started = Instant::now();
        disk::assemble(
            runner,
            &AssembleRequest {
                recipe,
                tree: &scratch.tree,
                esp_dir: &scratch.esp,
                out: &scratch.raw,
                ids: DiskIds::for_packages(&recipe.name, &lock),
                source_date_epoch: request.source_date_epoch,
            },
        )
        .await
        .map_err(ComposeError::Assemble)?;
        timings.push(timing("assemble", started));
        // The tree is no longer needed; free its space before the outputs are written.
        remove_dir(&scratch.tree)?;

        let mut formats = recipe.outputs.clone();
        formats.dedup();
        for format in &formats {
            progress(&format!("writing {}", format.extension()));
        }
        let written = write_formats(request, &scratch.raw, &formats).await?;
        let mut images = Vec::new();
        for (format, file, seconds) in written {
            timings.push(StepTiming {
                step: format.extension().to_string(),
                seconds,
            });
            images.push(BuiltImage {
                format,
                file_name: file_name(&request.compose_id, format),
                path: file.path,
                sha256: file.sha256,
                size: file.size,
            });
        }
        Ok(ComposeOutput {
            lock,
            input_hash,
            images,
            timings,
            cache: rootfs.cache,
        })
    }
}

/// The output file name of a format: `<compose_id>.<extension>`.
fn file_name(id: &ComposeId, format: OutputFormat) -> String {
    format!("{id}.{}", format.extension())
}

async fn write_formats(
    request: &ComposeRequest,
    raw: &Path,
    formats: &[OutputFormat],
) -> Result<Vec<(OutputFormat, WrittenFile, f64)>, ComposeError> {
    // Every writer gets every thread. Splitting the cores between formats leaves the slow one (xz) with a
    // fraction of the machine for its whole run after the fast one (qcow2, seconds) has finished;
    // oversubscribing for those seconds costs far less.
    let threads = request.threads.max(1);
    // Compressed chunks of earlier composes, shared by both writers; a hit never changes the output.
    let chunks = request.cache_dir.as_ref().map(|dir| {
        Arc::new(formats::chunk_cache::ChunkCache::new(
            dir.join("chunks"),
            formats::chunk_cache::DEFAULT_MAX_BYTES,
        ))
    });
    let mut tasks = Vec::new();
    for &format in formats {
        let raw = raw.to_path_buf();
        let chunks = chunks.clone();
        let out = request
            .work_dir
            .join(file_name(&request.compose_id, format));
        tasks.push((
            format,
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                // A leftover from an earlier failed attempt would make some writers refuse or append.
                let _ = std::fs::remove_file(&out);
                let chunks = chunks.as_deref();
                let result = match format {
                    OutputFormat::RawXz => {
                        formats::raw_xz::write_raw_xz_cached(&raw, &out, threads, chunks)
                    }
                    OutputFormat::Qcow2 => {
                        formats::qcow2::write_qcow2_cached(&raw, &out, threads, chunks)
                    }
                };
                result.map(|file| (file, started.elapsed().as_secs_f64()))
            }),
        ));
    }
    let mut out = Vec::new();
    let mut first_error = None;
    // Every task is awaited even after a failure, so no writer is still running when the raw disk goes.
    for (format, task) in tasks {
        match task.await {
            Ok(Ok((file, seconds))) => out.push((format, file, seconds)),
            Ok(Err(error)) => {
                first_error.get_or_insert(ComposeError::Format { format, error });
            }
            Err(join) => {
                first_error.get_or_insert(ComposeError::Task {
                    step: format.extension().to_string(),
                    message: join.to_string(),
                });
            }
        }
    }
    if let Some(chunks) = chunks {
        tracing::info!(stats = ?chunks.stats(), "chunk cache");
        // After both writers, so this compose's chunks are the most recently used and stay.
        match tokio::task::spawn_blocking(move || chunks.prune()).await {
            Ok(Ok(pruned)) => tracing::debug!(?pruned, "pruned the chunk cache"),
            Ok(Err(error)) => tracing::warn!(%error, "cannot prune the chunk cache"),
            Err(join) => tracing::warn!(%join, "pruning the chunk cache did not finish"),
        }
    }
    match first_error {
        Some(error) => {
            for (_, file, _) in &out {
                let _ = std::fs::remove_file(&file.path);
            }
            Err(error)
        }
        None => Ok(out),
    }
}

fn timing(step: &str, started: Instant) -> StepTiming {
    StepTiming {
        step: step.to_string(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn remove_dir(path: &Path) -> Result<(), ComposeError> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(ComposeError::Io {
            action: "removing",
            path: path.to_path_buf(),
            error,
        }),
        _ => Ok(()),
    }
}

/// The intermediate paths of one compose inside the work directory.
struct Scratch {
    tree: PathBuf,
    esp: PathBuf,
    raw: PathBuf,
}

impl Scratch {
    fn new(request: &ComposeRequest) -> Result<Self, ComposeError> {
        let id = request.compose_id.as_str();
        let scratch = Self {
            tree: request.work_dir.join(format!("{id}.rootfs")),
            esp: request.work_dir.join(format!("{id}.esp")),
            raw: request.work_dir.join(format!("{id}.raw")),
        };
        std::fs::create_dir_all(&request.work_dir).map_err(|error| ComposeError::Io {
            action: "creating",
            path: request.work_dir.clone(),
            error,
        })?;
        // Leftovers of an interrupted compose with the same id would make mmdebstrap or the disk writer
        // refuse, so they go first.
        scratch.remove()?;
        Ok(scratch)
    }

    fn remove(&self) -> Result<(), ComposeError> {
        remove_dir(&self.tree)?;
        remove_dir(&self.esp)?;
        match std::fs::remove_file(&self.raw) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(ComposeError::Io {
                action: "removing",
                path: self.raw.clone(),
                error,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_after_the_compose() {
        let id = ComposeId("bookworm-cloud-20261121.0".into());
        assert_eq!(
            file_name(&id, OutputFormat::RawXz),
            "bookworm-cloud-20261121.0.raw.xz"
        );
        assert_eq!(
            file_name(&id, OutputFormat::Qcow2),
            "bookworm-cloud-20261121.0.qcow2"
        );
    }
}
