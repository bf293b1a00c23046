//! Boots an image in QEMU, runs the default test battery inside it, and reports one outcome per testcase.
//!
//! # KVM probe
//!
//! [`probe_kvm`] boots a 512-byte BIOS boot sector (`finit; mov al,1; out 0xf4,al; hlt; jmp $`) under
//! `-accel kvm -machine pc` with the boot test's CPU model, QEMU's `isa-debug-exit` device on port 0xf4
//! and a 10 s timeout. When the guest really ran, QEMU exits with status 3; anything else (no `/dev/kvm`,
//! a KVM that opens and then hangs, a QEMU error) gives [`Accel::Tcg`]. The `finit` matters: under some
//! nested KVMs integer code runs but the first x87/SSE instruction stops the VM with an emulation
//! failure, which OVMF and every kernel hit at once. The CPU model is `host,arch-capabilities=off`
//! because QEMU 7.2 aborts on nested KVM setting the ARCH_CAPABILITIES MSR of plain `-cpu host`.
//!
//! # The VM
//!
//! The artifact is never written. Each run creates, in the request's `work_dir`, a throwaway qcow2
//! overlay backed by the image and sized to `disk_gib` (at least the image's own size), so the guest's
//! first-boot root-filesystem growth is exercised, and a private copy of the OVMF variable store. QEMU
//! runs a q35 machine with UEFI, the host CPU under KVM or `-cpu max` under multi-threaded TCG, the
//! overlay and the seed on virtio, virtio-net (without the iPXE ROM) with user networking, a virtio RNG
//! and no display.
//! The first serial port (the guest's `ttyS0` console) goes to `serial.log` and the second (`ttyS1`) to
//! `results.jsonl`: that second port is the results channel. `-no-reboot` turns a guest that reboots
//! (after a panic, say) into a VM that stops. The overlay and variable store are deleted after the run;
//! the seed, serial log and results file stay for inspection.
//!
//! # The seed and the guest side
//!
//! slipway writes its own NoCloud seed: a 1 MiB FAT image labelled `CIDATA` (`mkfs.vfat` + `mcopy`)
//! holding `meta-data` (a fresh `instance-id` and a random `local-hostname`, `slipway-test-<8 hex>`, for
//! every run) and a `#cloud-config` `user-data`. The user-data writes the battery script
//! (`/usr/local/libexec/slipway-battery`, POSIX sh, see `src/battery.sh`) and
//! `slipway-battery.service`, ordered after `multi-user.target`, `cloud-init.target` and
//! `cloud-final.service`, and starts it with `systemctl start --no-block` from `runcmd`. The unit is
//! `Type=exec`, not `oneshot`: a oneshot start job would keep the boot unfinished while the script runs,
//! so `systemctl is-system-running --wait` would wait on itself and `systemd-analyze` would not answer.
//!
//! The script waits for cloud-init's `result.json` (not `cloud-init status`: Python starts slowly under TCG)
//! and for the boot to settle (`systemctl is-system-running --wait`), then writes one JSON line
//! per guest-decided testcase to `/dev/ttyS1` (`{"testcase":…,"outcome":"PASSED|FAILED","note":…}`),
//! fact lines for what the host decides (`{"fact":"hostname","value":…}`, and
//! `{"fact":"dpkg-query","b64":…}` carrying the base64 of `dpkg-query -W -f
//! '${Package}\t${Version}\t${Architecture}\n'` limited to installed packages), when asked for
//! ([`BootTester::with_boot_timing`]) a `boot-timing` fact (`systemd-analyze` and its blame, gathered
//! beside the tests) that is logged for people,
//! then `{"done":true}`, and powers off.
//!
//! # The battery
//!
//! [`DEFAULT_BATTERY`], in order: `boot.multi-user`, `cloud-init.finished` (status done, no errors in
//! `/run/cloud-init/result.json`), `cloud-init.hostname` (the host compares the guest's hostname with the
//! name it put in meta-data), `sshd.active`, `rootfs.grown` (the root filesystem
//! fills at least 90% of the disk the guest booted with), `systemd.no-failed-units`, `packages.match-lock` (the host
//! parses the guest's package list with [`Lock::from_dpkg_query`] and compares it with the request's lock
//! with [`Lock::differences`]).
//!
//! # Waiting, deadlines, and what counts as an error
//!
//! QEMU runs through the [`CommandRunner`] with the request's deadline as its timeout, so the runner kills
//! its whole process group at the deadline (and the kernel kills it if slipway dies). While it runs, the
//! results file is read every 0.5 s (at most 1 MiB of it); once `done` arrives the guest gets a few
//! seconds to power off and is then stopped by dropping the run, which kills the process group too.
//! Results are parsed forgivingly: lines that are not JSON objects are ignored and malformed objects are
//! skipped with a warning. A testcase whose line never arrived is ERROR, with a note saying why (the
//! deadline passed, or the VM stopped early, with the last serial console lines). Results that did arrive
//! before a VM hung are kept: they are facts the guest established. [`BootTester::run`] returns `Err`
//! only when the test could not be set up (a missing tool or firmware, an unreadable image).
//!
//! `seconds` in the report runs from QEMU's start to the `done` line (or to the VM's end without it).

mod probe;
mod results;
mod seed;
mod vm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use slipway_exec::{require_programs, Command, CommandRunner, ExecError, Output};
use slipway_model::{ComposeId, Lock, Outcome};

pub use probe::{probe_kvm, Accel, PROBE_TIMEOUT};

/// The testcases of the default battery, in the order they are reported.
pub const DEFAULT_BATTERY: &[&str] = &[
    "boot.multi-user",
    "cloud-init.finished",
    "cloud-init.hostname",
    "sshd.active",
    "rootfs.grown",
    "systemd.no-failed-units",
    "packages.match-lock",
];

/// How often the results file is read while the VM runs.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long a guest that reported `done` gets to power off before the VM is stopped. The overlay is
/// thrown away, so a clean shutdown buys nothing but time.
const POWEROFF_GRACE: Duration = Duration::from_secs(3);

/// How many serial console lines an ERROR note quotes.
const SERIAL_LINES_IN_NOTE: usize = 8;

/// The programs a boot test runs.
const REQUIRED_PROGRAMS: &[&str] = &["qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy"];

/// One boot test to run.
#[derive(Debug, Clone)]
pub struct BootTestRequest {
    /// The compose being tested, for logs.
    pub compose: ComposeId,
    /// The qcow2 image to boot. It is only ever read.
    pub image: PathBuf,
    /// The compose's lock, which the guest's installed packages must match.
    pub lock: Lock,
    /// A directory for this run's files (overlay, seed, serial log, results); created if missing. Use a
    /// fresh one per run: its serial log is the one the report points to.
    pub work_dir: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// How long the VM may run before it is killed and its missing results become ERROR.
    pub deadline: Duration,
    /// The virtual disk size in GiB (never less than the image's own size).
    pub disk_gib: u32,
    /// How the CPU is provided; see [`probe_kvm`].
    pub accel: Accel,
}

/// The outcome of one testcase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseOutcome {
    /// The testcase's name, one of [`DEFAULT_BATTERY`].
    pub testcase: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why, in a line: the failing check's output, or why there is no result.
    pub note: String,
}

/// What one boot test found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootTestReport {
    /// One outcome per battery testcase, in [`DEFAULT_BATTERY`] order.
    pub cases: Vec<CaseOutcome>,
    /// The guest's serial console log, in the work directory.
    pub serial_log: PathBuf,
    /// The accelerator the VM ran under.
    pub accel: Accel,
    /// Seconds from QEMU's start to the battery's end (or to the VM's end, when the battery never ended).
    pub seconds: f64,
}

/// Why a boot test could not be set up. A VM that fails to boot is not an error: it is a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootTestError {
    /// A tool is not installed; the message names the Debian package to install.
    #[error("cannot run boot tests: {0}")]
    MissingTool(#[source] ExecError),
    /// The UEFI firmware is not installed.
    #[error("cannot run boot tests: UEFI firmware {path} is missing: install it with `apt-get install ovmf`")]
    MissingFirmware {
        /// The firmware file looked for.
        path: PathBuf,
    },
    /// The image cannot be read.
    #[error("cannot read the image {path}: {source}")]
    Image {
        /// The image.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The image is not a usable qcow2 file.
    #[error("{path} is not a usable qcow2 image: {reason}")]
    NotQcow2 {
        /// The image.
        path: PathBuf,
        /// What `qemu-img info` said.
        reason: String,
    },
    /// A file in the work directory could not be written.
    #[error("preparing {path}: {source}")]
    WorkDir {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A tool preparing the VM (qemu-img, mkfs.vfat, mcopy) failed, or QEMU could not be started.
    #[error("preparing the boot test: {0}")]
    Tool(#[from] ExecError),
}

/// Runs boot tests.
#[derive(Debug, Clone)]
pub struct BootTester {
    runner: Arc<dyn CommandRunner>,
    boot_timing: bool,
}

/// How the VM's run ended.
enum VmEnd {
    /// QEMU exited (or failed to) by itself or at its deadline.
    Exited(Result<Output, ExecError>),
    /// The battery finished and the VM was stopped after its grace period.
    Stopped,
    /// The runner let the VM run well past its deadline (a runner that ignores timeouts); stopped.
    Overran,
}

impl BootTester {
    /// A tester that runs QEMU and its helpers through `runner`.
    pub fn new(runner: Arc<dyn CommandRunner>) -> Self {
        Self {
            runner,
            boot_timing: false,
        }
    }

    /// Also has the guest report where its boot time went (`systemd-analyze` and its blame), logged at
    /// info level and kept in the work directory's `results.jsonl`. Off by default: under TCG it adds
    /// seconds to every run.
    pub fn with_boot_timing(mut self, on: bool) -> Self {
        self.boot_timing = on;
        self
    }

    /// Boots `request.image`, runs [`DEFAULT_BATTERY`] and reports. Only setup failures are `Err`; see
    /// the crate documentation for what becomes ERROR.
    pub async fn run(&self, request: &BootTestRequest) -> Result<BootTestReport, BootTestError> {
        require_programs(REQUIRED_PROGRAMS).map_err(BootTestError::MissingTool)?;
        for firmware in [vm::OVMF_CODE, vm::OVMF_VARS] {
            if !Path::new(firmware).is_file() {
                return Err(BootTestError::MissingFirmware {
                    path: firmware.into(),
                });
            }
        }
        let image = self.check_image(&request.image).await?;
        let work_dir = &request.work_dir;
        tokio::fs::create_dir_all(work_dir)
            .await
            .map_err(|source| BootTestError::WorkDir {
                path: work_dir.clone(),
                source,
            })?;
        let files = vm::VmFiles::in_dir(work_dir);
        for stale in [
            &files.overlay,
            &files.vars,
            &files.serial_log,
            &files.results,
        ] {
            remove_if_present(stale).await?;
        }
        tokio::fs::copy(vm::OVMF_VARS, &files.vars)
            .await
            .map_err(|source| BootTestError::WorkDir {
                path: files.vars.clone(),
                source,
            })?;
        let size = image
            .virtual_size
            .max(u64::from(request.disk_gib) * 1024 * 1024 * 1024);
        self.runner
            .run(
                Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                    .arg(&image.path)
                    .arg(&files.overlay)
                    .arg(size.to_string()),
            )
            .await?;
        let identity = seed::SeedIdentity::random();
        seed::build_seed(self.runner.as_ref(), work_dir, &identity, self.boot_timing).await?;

        tracing::info!(compose = %request.compose, accel = %request.accel, image = %image.path.display(),
            hostname = %identity.hostname, "booting");
        let (end, seconds) = self.boot(request, &files).await;

        // The overlay can hold hundreds of MiB after first boot; it has served its purpose.
        for scratch in [&files.overlay, &files.vars] {
            if let Err(err) = remove_if_present(scratch).await {
                tracing::warn!(%err, "cleaning up the boot test");
            }
        }

        let report = results::parse(&results::read_capped(&files.results).await);
        if let Some(timing) = &report.boot_timing {
            tracing::info!(compose = %request.compose, "guest boot timing:\n{timing}");
        }
        let missing_note = self
            .missing_note(end, report.done, request.deadline, &files.serial_log)
            .await?;
        let cases = results::evaluate(&report, &identity.hostname, &request.lock, &missing_note);
        tracing::info!(compose = %request.compose, seconds, failed = cases.iter().filter(|c| c.outcome != Outcome::Passed).count(),
            "boot test finished");
        Ok(BootTestReport {
            cases,
            serial_log: files.serial_log,
            accel: request.accel,
            seconds,
        })
    }

    /// Runs the VM until it exits, its deadline passes, or the battery is done; returns how it ended and
    /// the seconds from start to `done` (or to the end).
    async fn boot(&self, request: &BootTestRequest, files: &vm::VmFiles) -> (VmEnd, f64) {
        let command = vm::qemu_command(files, request.accel, request.memory_mib, request.cpus)
            .timeout(request.deadline);
        let start = Instant::now();
        let mut vm = self.runner.run(command);
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        let mut done_after: Option<Duration> = None;
        // Past the deadline plus this, the VM is stopped here even if the runner has not done it.
        let hard_limit = request.deadline + Duration::from_secs(30);
        let end = loop {
            tokio::select! {
                result = &mut vm => break VmEnd::Exited(result),
                _ = ticker.tick() => {
                    if done_after.is_none()
                        && results::parse(&results::read_capped(&files.results).await).done
                    {
                        done_after = Some(start.elapsed());
                        tracing::debug!("the battery is done; waiting for the guest to power off");
                    }
                    if let Some(after) = done_after {
                        if start.elapsed() >= after + POWEROFF_GRACE {
                            break VmEnd::Stopped;
                        }
                    }
                    if start.elapsed() >= hard_limit {
                        break VmEnd::Overran;
                    }
                }
            }
        };
        // Dropping the run kills QEMU's process group when it is still running.
        drop(vm);
        let seconds = done_after.unwrap_or_else(|| start.elapsed()).as_secs_f64();
        (end, seconds)
    }

    /// The note for testcases that never got a result.
    async fn missing_note(
        &self,
        end: VmEnd,
        done: bool,
        deadline: Duration,
        serial_log: &Path,
    ) -> Result<String, BootTestError> {
        if done {
            return Ok("the guest finished its battery without reporting this testcase".into());
        }
        let serial = || vm::serial_tail(serial_log, SERIAL_LINES_IN_NOTE);
        Ok(match end {
            VmEnd::Exited(Err(ExecError::TimedOut { .. })) | VmEnd::Overran => format!(
                "deadline of {}s passed; last serial lines: {}",
                deadline.as_secs(),
                serial().await
            ),
            VmEnd::Exited(Ok(_)) => format!(
                "the VM stopped before the battery finished; last serial lines: {}",
                serial().await
            ),
            VmEnd::Exited(Err(ExecError::Failed {
                status,
                stderr_tail,
                ..
            })) => format!(
                "QEMU exited ({status}) before the battery finished{}; last serial lines: {}",
                last_line(&stderr_tail).map_or(String::new(), |l| format!(": {l}")),
                serial().await
            ),
            // QEMU never started: that is a broken setup, not a result about the image.
            VmEnd::Exited(Err(err @ ExecError::NotFound { .. })) => {
                return Err(BootTestError::MissingTool(err))
            }
            VmEnd::Exited(Err(err)) => format!("running QEMU failed: {err}"),
            VmEnd::Stopped => "the battery never reported done".into(),
        })
    }

    /// Checks that the image can be read and is qcow2; returns its absolute path and virtual size.
    async fn check_image(&self, path: &Path) -> Result<ImageInfo, BootTestError> {
        let image_err = |source| BootTestError::Image {
            path: path.to_path_buf(),
            source,
        };
        // Absolute, because the overlay's backing path is resolved relative to the overlay.
        let absolute = tokio::fs::canonicalize(path).await.map_err(image_err)?;
        tokio::fs::File::open(&absolute).await.map_err(image_err)?;
        let output = self
            .runner
            .run(
                Command::new("qemu-img")
                    .args(["info", "--output=json"])
                    .arg(&absolute),
            )
            .await
            .map_err(|err| match err {
                ExecError::NotFound { .. } => BootTestError::MissingTool(err),
                other => BootTestError::NotQcow2 {
                    path: path.to_path_buf(),
                    reason: other.to_string(),
                },
            })?;
        let info: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(|err| BootTestError::NotQcow2 {
                path: path.to_path_buf(),
                reason: format!("unreadable `qemu-img info` output: {err}"),
            })?;
        let format = info.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != "qcow2" {
            return Err(BootTestError::NotQcow2 {
                path: path.to_path_buf(),
                reason: format!("qemu-img says its format is {format:?}"),
            });
        }
        let virtual_size = info
            .get("virtual-size")
            .and_then(|s| s.as_u64())
            .unwrap_or(0);
        Ok(ImageInfo {
            path: absolute,
            virtual_size,
        })
    }
}

struct ImageInfo {
    path: PathBuf,
    virtual_size: u64,
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

async fn remove_if_present(path: &Path) -> Result<(), BootTestError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BootTestError::WorkDir {
            path: path.to_path_buf(),
            source,
        }),
    }
}
