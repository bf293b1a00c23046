//! Boots an image in QEMU and runs a test plan in it: scripts with metadata, in shared and exclusive
//! boots, with reruns, reporting one outcome per testcase with every attempt's output.
//!
//! # Tests
//!
//! A test is a script plus a TOML metadata file. A test repository is a directory; every `*.toml` in it
//! (searched recursively) describes one test ([`load_test_dirs`]). Keys (unknown keys are errors, and
//! every error names file:line:col and the field):
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `name` | the testcase name (letters, digits, `.`, `-`, `_`) | the file's stem |
//! | `description` | what it checks | empty |
//! | `script` | the script, relative to the TOML file; must exist and be executable | `<stem>.sh` |
//! | `timeout` | per attempt: integer seconds or `"30s"`, `"2m"`, `"1h"` | `"2m"` |
//! | `tags` | words plans and the denylist select by (`tag:<word>`) | none |
//! | `needs-network` | the guest must reach beyond the host | false |
//! | `exclusive` | the test gets a boot of its own | false |
//! | `formats`, `streams` | where it applies; empty means everywhere | empty |
//! | `min-memory-mib` | the guest memory it needs at least | 0 |
//! | `runs-on` | `"guest"` (as root in the VM) or `"host"` (on the host, over SSH) | `"guest"` |
//!
//! A script's exit status decides its attempt: 0 is PASSED, 77 is SKIPPED (the test does not apply), a
//! kill at the timeout is ERROR, anything else FAILED. Its last non-empty output line is the result's note.
//! Guest tests run as root with the working directory `$SLIPWAY_STATE` (kept between attempts, so a test
//! can tell a rerun), `$SLIPWAY_ATTEMPT` (1, 2, …) and `$SLIPWAY_DATA`, which holds what the host knows:
//! `hostname` (the name the seed gave), `lock.tsv` (the compose's lock, `name TAB version TAB
//! architecture`) and `recipe.env` (`EXCLUDE_DOCS=0|1`, `EXCLUDE_LOCALES=0|1`). Host tests get
//! `SLIPWAY_SSH_HOST`, `SLIPWAY_SSH_PORT`, `SLIPWAY_SSH_USER` and `SLIPWAY_SSH_KEY` to reach the guest.
//!
//! The built-in tests ([`builtin_tests`], files under `builtin/` compiled in) are the `default` plan:
//! `boot.multi-user`, `cloud-init.finished`, `cloud-init.hostname`, `sshd.active`, `rootfs.grown`,
//! `systemd.no-failed-units`, `packages.match-lock`, `journal.no-kernel-oops`, `time.synchronized`,
//! `image.no-docs-locales` and `ssh.login` (a host test).
//!
//! # Boots
//!
//! [`plan_boots`] groups a plan's tests: shared guest tests that need no network in one boot whose user
//! networking has `restrict=on` (the SSH forward still works), those that need network in another, and
//! every exclusive test in a boot of its own; host tests join the first shared boot. A VM gets the
//! configured memory or the most its tests ask for, and a deadline of the boot allowance plus each
//! test's timeout × (1 + reruns) plus a margin. VMs run in parallel as far as the memory and CPU budget
//! allows ([`Budget`]).
//!
//! # One boot
//!
//! The artifact is never written: each boot has, in its own directory under the request's `work_dir`, a
//! throwaway qcow2 overlay (sized to `disk_gib`, so the first-boot growth of the root is exercised), a
//! private copy of the OVMF variable store and a NoCloud seed. QEMU runs q35 with UEFI, virtio disk and
//! network, a virtio RNG, no display, and `-no-reboot`. The first serial port (`ttyS0`, the console) goes
//! to `serial.log`, the second (`ttyS1`) to `results.jsonl`: the results channel.
//!
//! The seed (`meta-data` with a fresh instance id and hostname, `#cloud-config` `user-data`) creates the
//! test user `slipway` with the run's ephemeral ed25519 public key, and writes the runner
//! (`src/runner.sh`), its manifest, the tests, their data and `slipway-runner.service`, started from
//! `runcmd`. The runner waits for cloud-init's `result.json` and `systemctl is-system-running --wait`,
//! reports `{"event":"settled"}`, then runs each test under `timeout -k 5`, capturing stdout and stderr
//! up to [`OUTPUT_CAP`] (the rest is drained and counted, the test's own exit status kept in a file), and
//! reports each attempt as base64 output chunks and an outcome line. A test that fails or times out is run
//! again up to `reruns` times; a pass on a rerun is PASSED and flaky, and every attempt is kept. Then it
//! reports `{"done":true}` and powers off, unless host tests run: those start once the guest has
//! settled, and the VM is stopped when the runner is done and the host tests are too.
//!
//! # Waiting, deadlines, and what counts as an error
//!
//! QEMU runs through the [`CommandRunner`] with the boot's deadline as its timeout, so the runner kills
//! its whole process group at the deadline. The results file is read incrementally every 0.5 s; the
//! serial log is watched for a kernel panic, which ends the boot at once. Until the guest settles, a boot
//! that writes nothing to its console or results for [`VmTuning::silent_boot_limit`] (5 minutes) is stuck:
//! its console log is kept as `serial-stalled-<n>.log` and the VM is booted once more from fresh files,
//! rather than waited for until a deadline that leaves room for every test. A test without a result when
//! the boot ends is ERROR, with a note saying why (the deadline passed, the guest panicked, stopped, or
//! stalled twice) and the last serial console lines. [`BootTester::run`] returns `Err` only when the test
//! could not be set up (a missing tool or firmware, an unreadable image).
//!
//! # KVM probe
//!
//! [`probe_kvm`] boots a 512-byte BIOS boot sector (`finit; mov al,1; out 0xf4,al; hlt; jmp $`) under
//! `-accel kvm -machine pc` with the boot test's CPU model, QEMU's `isa-debug-exit` device on port 0xf4
//! and a 10 s timeout. When the guest really ran, QEMU exits with status 3; anything else gives
//! [`Accel::Tcg`]. The `finit` matters: under some nested KVMs integer code runs but the first x87/SSE
//! instruction stops the VM with an emulation failure, which OVMF and every kernel hit at once. The CPU
//! model is `host,arch-capabilities=off` because QEMU 7.2 aborts on nested KVM setting the
//! ARCH_CAPABILITIES MSR of plain `-cpu host`.

mod host;
mod plan;
mod probe;
mod results;
mod seed;
mod testdef;
mod vm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use slipway_exec::{require_programs, Command, CommandRunner, ExecError, Output};
use slipway_model::{ComposeId, Lock, Outcome};

pub use plan::{plan_boots, select_tests, BootPlan, Budget, DEADLINE_MARGIN};
pub use probe::{probe_kvm, Accel, PROBE_TIMEOUT};
pub use testdef::{
    builtin_tests, load_test_dirs, load_test_file, BrokenTest, RunsOn, TestDef, TestRepository,
    DEFAULT_TEST_TIMEOUT,
};
pub use vm::VmTuning;

/// The most of one attempt's output (stdout and stderr together) that is kept.
///
/// 256 KiB: it travels base64-encoded over an emulated UART, which under TCG moves well under a MiB a
/// second, and a test's useful output is its end anyway.
pub const OUTPUT_CAP: u64 = 256 * 1024;

/// How often the results file and serial log are read while a VM runs.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long a guest that reported `done` gets to power off before the VM is stopped. The overlay is
/// thrown away, so a clean shutdown buys nothing but time.
const POWEROFF_GRACE: Duration = Duration::from_secs(3);

/// How many times a VM is booted when its guest stalls before settling (see
/// [`VmTuning::silent_boot_limit`]).
const BOOT_ATTEMPTS: u32 = 2;

/// How many serial console lines an ERROR note quotes.
const SERIAL_LINES_IN_NOTE: usize = 8;

/// What the kernel prints when it panics; the boot ends there.
const PANIC_MARKER: &str = "Kernel panic - not syncing";

/// The programs a boot test runs.
const REQUIRED_PROGRAMS: &[&str] = &[
    "qemu-system-x86_64",
    "qemu-img",
    "mkfs.vfat",
    "mcopy",
    "ssh-keygen",
];

/// One test run: an image and the tests to run on it.
#[derive(Debug, Clone)]
pub struct BootTestRequest {
    /// The compose being tested, for logs.
    pub compose: ComposeId,
    /// The qcow2 image to boot. It is only ever read.
    pub image: PathBuf,
    /// The tests, in the order their results are reported (see [`select_tests`]).
    pub tests: Vec<TestDef>,
    /// The compose's lock, given to the guest as `lock.tsv`.
    pub lock: Lock,
    /// The recipe drops documentation (given to the guest in `recipe.env`).
    pub exclude_docs: bool,
    /// The recipe drops translations (given to the guest in `recipe.env`).
    pub exclude_locales: bool,
    /// A directory for this run's files (one subdirectory per boot); created if missing. Use a fresh one
    /// per run.
    pub work_dir: PathBuf,
    /// Guest memory in MiB (tests may ask for more).
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// How long a VM may take to boot and settle; its deadline adds its tests' time to this.
    pub boot_allowance: Duration,
    /// The virtual disk size in GiB (never less than the image's own size).
    pub disk_gib: u32,
    /// How the CPU is provided; see [`probe_kvm`].
    pub accel: Accel,
    /// How many times a test that does not pass is run again.
    pub reruns: u32,
    /// The memory all VMs of the run may use together, in MiB.
    pub memory_budget_mib: u32,
    /// The guest CPUs all VMs of the run may use together.
    pub cpu_budget: u32,
    /// How the emulated machine is tuned for speed.
    pub tuning: VmTuning,
}

/// A VM of a run has started: its tests are now running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootStarted {
    /// The boot's index in [`BootTestReport::boots`].
    pub index: usize,
    /// The boot's name (see [`BootPlan::name`]).
    pub name: String,
    /// The testcases it runs, guest and host.
    pub testcases: Vec<String>,
}

/// One attempt at a testcase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptReport {
    /// What the attempt gave (a timeout is ERROR).
    pub outcome: Outcome,
    /// Seconds it ran.
    pub seconds: f64,
    /// Its captured output, in the boot's directory; `None` when it printed nothing.
    pub output: Option<PathBuf>,
    /// The output was cut at [`OUTPUT_CAP`].
    pub truncated: bool,
}

/// The outcome of one testcase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseOutcome {
    /// The testcase's name.
    pub testcase: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why, in a line: the test's last output line, or why there is no result.
    pub note: String,
    /// An attempt failed and a later one passed.
    pub flaky: bool,
    /// Every attempt, in order; empty when the test never reported.
    pub attempts: Vec<AttemptReport>,
    /// The index in [`BootTestReport::boots`] of the boot it ran in.
    pub boot: usize,
}

/// One boot of a test run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootReport {
    /// The boot's name (`shared`, `shared-network`, `exclusive-<test>`).
    pub name: String,
    /// The guest's serial console log.
    pub serial_log: PathBuf,
    /// Seconds from QEMU's start to the runner's end (or to the VM's end without it).
    pub seconds: f64,
    /// Seconds from QEMU's start until the guest settled and started its tests, when it did.
    pub settled_after: Option<f64>,
}

/// What one test run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootTestReport {
    /// One outcome per requested test, in request order.
    pub cases: Vec<CaseOutcome>,
    /// The boots, in plan order.
    pub boots: Vec<BootReport>,
    /// The accelerator the VMs ran under.
    pub accel: Accel,
    /// Seconds from the first VM's start to the last one's end.
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
}

/// How a VM's run ended.
enum VmEnd {
    /// QEMU exited (or failed to) by itself or at its deadline.
    Exited(Result<Output, ExecError>),
    /// The runner and the host tests finished and the VM was stopped.
    Stopped,
    /// The serial console showed a kernel panic.
    Panicked,
    /// The runner let the VM run well past its deadline (a runner that ignores timeouts); stopped.
    Overran,
    /// The guest printed nothing for [`VmTuning::silent_boot_limit`] before it settled; stopped.
    Stalled,
}

/// What every boot of a run shares.
#[derive(Debug)]
struct RunContext {
    image: ImageInfo,
    request: BootTestRequest,
    ssh_key: PathBuf,
    ssh_public_key: String,
    lock_tsv: Vec<u8>,
}

/// What one boot gave.
struct BootOutcome {
    index: usize,
    report: BootReport,
    cases: Vec<CaseOutcome>,
}

/// Stops a spawned task when dropped, so abandoning a boot stops its host tests too.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl BootTester {
    /// A tester that runs QEMU and its helpers through `runner`.
    pub fn new(runner: Arc<dyn CommandRunner>) -> Self {
        Self { runner }
    }

    /// Boots `request.image` as often as its tests need and runs them. Only setup failures are `Err`;
    /// see the crate documentation for what becomes ERROR.
    pub async fn run(&self, request: &BootTestRequest) -> Result<BootTestReport, BootTestError> {
        self.run_reporting(request, None).await
    }

    /// Like [`BootTester::run`], and sends a [`BootStarted`] on `started` as each VM starts, so a caller
    /// can show which tests are running while the others still wait for the budget.
    pub async fn run_reporting(
        &self,
        request: &BootTestRequest,
        started: Option<tokio::sync::mpsc::UnboundedSender<BootStarted>>,
    ) -> Result<BootTestReport, BootTestError> {
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
        let (ssh_key, ssh_public_key) = self.ssh_key(work_dir).await?;
        let boots = plan_boots(
            &request.tests,
            request.memory_mib,
            request.cpus,
            request.boot_allowance,
            request.reruns,
        );
        let context = Arc::new(RunContext {
            image,
            request: request.clone(),
            ssh_key,
            ssh_public_key,
            lock_tsv: lock_tsv(&request.lock),
        });

        let start = Instant::now();
        let mut budget = Budget::new(request.memory_budget_mib, request.cpu_budget);
        let mut waiting: std::collections::VecDeque<(usize, BootPlan)> =
            boots.iter().cloned().enumerate().collect();
        let mut running = tokio::task::JoinSet::new();
        let mut finished: Vec<Option<BootOutcome>> = boots.iter().map(|_| None).collect();
        loop {
            while let Some((_, boot)) = waiting.front() {
                if !budget.try_start(boot.memory_mib, boot.cpus) {
                    break;
                }
                let Some((index, boot)) = waiting.pop_front() else {
                    break;
                };
                if let Some(started) = &started {
                    // A caller that stopped listening only loses the news, not the run.
                    let _ = started.send(BootStarted {
                        index,
                        name: boot.name.clone(),
                        testcases: boot
                            .guest_tests
                            .iter()
                            .chain(&boot.host_tests)
                            .map(|t| t.name.clone())
                            .collect(),
                    });
                }
                let tester = self.clone();
                let context = Arc::clone(&context);
                running.spawn(async move {
                    let memory_cpus = (boot.memory_mib, boot.cpus);
                    (memory_cpus, tester.run_boot(&context, index, &boot).await)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            // A panicking boot task is a bug here, not a result; dropping the set stops the other VMs.
            let ((memory, cpus), outcome) = joined.map_err(|err| BootTestError::WorkDir {
                path: work_dir.clone(),
                source: std::io::Error::other(format!("a boot task failed: {err}")),
            })?;
            budget.finish(memory, cpus);
            let outcome = outcome?;
            let index = outcome.index;
            finished[index] = Some(outcome);
        }

        let mut by_test: BTreeMap<String, CaseOutcome> = BTreeMap::new();
        let mut reports = Vec::new();
        for outcome in finished.into_iter().flatten() {
            reports.push(outcome.report);
            for case in outcome.cases {
                by_test.insert(case.testcase.clone(), case);
            }
        }
        let cases = request
            .tests
            .iter()
            .filter_map(|test| by_test.remove(&test.name))
            .collect::<Vec<_>>();
        let seconds = start.elapsed().as_secs_f64();
        tracing::info!(compose = %request.compose, boots = reports.len(), seconds,
            failed = cases.iter().filter(|c| c.outcome != Outcome::Passed).count(), "boot test finished");
        Ok(BootTestReport {
            cases,
            boots: reports,
            accel: request.accel,
            seconds,
        })
    }

    /// A fresh ed25519 key pair for this run, without a passphrase: (private key path, public key).
    async fn ssh_key(&self, work_dir: &Path) -> Result<(PathBuf, String), BootTestError> {
        let key = work_dir.join("ssh_key");
        let public = work_dir.join("ssh_key.pub");
        remove_if_present(&key).await?;
        remove_if_present(&public).await?;
        self.runner
            .run(
                Command::new("ssh-keygen")
                    .args([
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        "slipway-boot-test",
                        "-f",
                    ])
                    .arg(&key),
            )
            .await?;
        let text =
            tokio::fs::read_to_string(&public)
                .await
                .map_err(|source| BootTestError::WorkDir {
                    path: public.clone(),
                    source,
                })?;
        Ok((key, text.trim().to_string()))
    }

    /// Boots once and runs `boot`'s tests.
    async fn run_boot(
        &self,
        context: &RunContext,
        index: usize,
        boot: &BootPlan,
    ) -> Result<BootOutcome, BootTestError> {
        let request = &context.request;
        let dir = request.work_dir.join(format!("boot-{index}-{}", boot.name));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| BootTestError::WorkDir {
                path: dir.clone(),
                source,
            })?;
        let files = vm::VmFiles::in_dir(&dir);
        let silent_limit = request.tuning.silent_boot_limit;
        let mut attempt = 1;
        let (run, mut reader) = loop {
            let (run, reader) = self.boot_attempt(context, boot, &files, &dir).await?;
            if !matches!(run.end, VmEnd::Stalled) || attempt == BOOT_ATTEMPTS {
                break (run, reader);
            }
            // Kept beside the next boot's log: why a boot had to be repeated is worth a look.
            let kept = dir.join(format!("serial-stalled-{attempt}.log"));
            let tail = vm::serial_tail(&files.serial_log, SERIAL_LINES_IN_NOTE).await;
            if let Err(err) = tokio::fs::rename(&files.serial_log, &kept).await {
                tracing::warn!(%err, "keeping the serial log of a stalled boot");
            }
            tracing::warn!(compose = %request.compose, boot = %boot.name, attempt,
                silent_secs = silent_limit.as_secs(), serial_log = %kept.display(), last_lines = %tail,
                "the guest printed nothing before settling; booting it again");
            attempt += 1;
        };
        reader.poll().await;
        let report = reader.report();
        let missing_note = missing_note(
            run.end,
            report,
            boot.deadline,
            (silent_limit, attempt),
            &files.serial_log,
        )
        .await?;

        let mut cases = Vec::new();
        let outputs = dir.join("output");
        for test in &boot.guest_tests {
            let attempts = report.attempts.get(&test.name).cloned().unwrap_or_default();
            cases.push(case_from(test, &attempts, &missing_note, &outputs, index).await?);
        }
        for test in &boot.host_tests {
            let attempts = run
                .host
                .as_ref()
                .and_then(|host| host.get(&test.name))
                .cloned()
                .unwrap_or_default();
            let note = if run.host.is_none() && report.settled {
                format!("the VM stopped before the host tests finished; {missing_note}")
            } else {
                missing_note.clone()
            };
            cases.push(case_from(test, &attempts, &note, &outputs, index).await?);
        }
        Ok(BootOutcome {
            index,
            report: BootReport {
                name: boot.name.clone(),
                serial_log: files.serial_log.clone(),
                seconds: run.seconds,
                settled_after: run.settled_after,
            },
            cases,
        })
    }

    /// Boots `boot`'s VM once from fresh files: a new overlay, firmware variables and seed.
    async fn boot_attempt(
        &self,
        context: &RunContext,
        boot: &BootPlan,
        files: &vm::VmFiles,
        dir: &Path,
    ) -> Result<(BootRun, results::ResultsReader), BootTestError> {
        let request = &context.request;
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
        let size = context
            .image
            .virtual_size
            .max(u64::from(request.disk_gib) * 1024 * 1024 * 1024);
        self.runner
            .run(
                Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                    .arg(&context.image.path)
                    .arg(&files.overlay)
                    .arg(size.to_string()),
            )
            .await?;
        let identity = seed::SeedIdentity::random();
        let payload = seed::SeedPayload {
            tests: boot
                .guest_tests
                .iter()
                .map(|t| (t.name.clone(), t.timeout.as_secs().max(1), t.script.clone()))
                .collect(),
            data: vec![
                ("hostname".into(), identity.hostname.clone().into_bytes()),
                ("lock.tsv".into(), context.lock_tsv.clone()),
                (
                    "recipe.env".into(),
                    format!(
                        "EXCLUDE_DOCS={}\nEXCLUDE_LOCALES={}\n",
                        u8::from(request.exclude_docs),
                        u8::from(request.exclude_locales)
                    )
                    .into_bytes(),
                ),
            ],
            reruns: request.reruns,
            output_cap: OUTPUT_CAP,
            hold: !boot.host_tests.is_empty(),
            ssh_public_key: context.ssh_public_key.clone(),
        };
        seed::build_seed(self.runner.as_ref(), dir, &identity, &payload).await?;
        let network = vm::Network {
            open: boot.network,
            ssh_port: vm::free_port().map_err(|source| BootTestError::WorkDir {
                path: dir.to_path_buf(),
                source,
            })?,
        };

        tracing::info!(compose = %request.compose, boot = %boot.name, accel = %request.accel,
            memory_mib = boot.memory_mib, deadline_secs = boot.deadline.as_secs(),
            guest_tests = boot.guest_tests.len(), host_tests = boot.host_tests.len(), "booting");
        let mut reader = results::ResultsReader::new(&files.results);
        let run = self
            .boot(context, boot, files, network, dir, &mut reader)
            .await;

        // The overlay can hold hundreds of MiB after first boot; it has served its purpose.
        for scratch in [&files.overlay, &files.vars] {
            if let Err(err) = remove_if_present(scratch).await {
                tracing::warn!(%err, "cleaning up the boot test");
            }
        }
        Ok((run, reader))
    }

    /// Runs the VM until it exits, panics, reaches its deadline, or its tests are done.
    async fn boot(
        &self,
        context: &RunContext,
        boot: &BootPlan,
        files: &vm::VmFiles,
        network: vm::Network,
        dir: &Path,
        reader: &mut results::ResultsReader,
    ) -> BootRun {
        let request = &context.request;
        let command = vm::qemu_command(
            files,
            request.accel,
            boot.memory_mib,
            boot.cpus,
            network,
            &request.tuning,
        )
        .timeout(boot.deadline);
        let start = Instant::now();
        let mut vm = self.runner.run(command);
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        let mut done_after: Option<Duration> = None;
        let mut settled_after: Option<Duration> = None;
        let mut host_task: Option<AbortOnDrop<host::HostResults>> = None;
        let mut host_results: Option<host::HostResults> = None;
        // Past the deadline plus this, the VM is stopped here even if the runner has not done it.
        let hard_limit = boot.deadline + Duration::from_secs(30);
        // Until the guest settles: how many bytes it has written, and when that last grew.
        let mut output_seen = (0u64, Instant::now());
        let end = loop {
            tokio::select! {
                result = &mut vm => break VmEnd::Exited(result),
                _ = ticker.tick() => {
                    reader.poll().await;
                    let report = reader.report();
                    if report.settled && settled_after.is_none() {
                        settled_after = Some(start.elapsed());
                        if !boot.host_tests.is_empty() {
                            let job = host::HostJob {
                                runner: Arc::clone(&self.runner),
                                tests: boot.host_tests.clone(),
                                dir: dir.join("host"),
                                ssh_port: network.ssh_port,
                                ssh_key: context.ssh_key.clone(),
                                reruns: request.reruns,
                                output_cap: OUTPUT_CAP,
                            };
                            host_task = Some(AbortOnDrop(tokio::spawn(job.run())));
                        }
                    }
                    if let Some(task) = host_task.as_mut() {
                        if task.0.is_finished() {
                            host_results = Some((&mut task.0).await.unwrap_or_default());
                            host_task = None;
                        }
                    }
                    if report.done && done_after.is_none() {
                        done_after = Some(start.elapsed());
                    }
                    let host_done = boot.host_tests.is_empty() || host_results.is_some();
                    if let (Some(after), true) = (done_after, host_done) {
                        // A guest that holds for host tests is stopped at once; others get to power off.
                        if !boot.host_tests.is_empty() || start.elapsed() >= after + POWEROFF_GRACE {
                            break VmEnd::Stopped;
                        }
                    }
                    if serial_shows_panic(&files.serial_log).await {
                        break VmEnd::Panicked;
                    }
                    if start.elapsed() >= hard_limit {
                        break VmEnd::Overran;
                    }
                    if settled_after.is_none() {
                        let written = file_len(&files.serial_log).await + file_len(&files.results).await;
                        if written != output_seen.0 {
                            output_seen = (written, Instant::now());
                        } else if output_seen.1.elapsed() >= request.tuning.silent_boot_limit {
                            break VmEnd::Stalled;
                        }
                    }
                }
            }
        };
        // Dropping the run kills QEMU's process group when it is still running; dropping the host task
        // stops the host tests.
        drop(vm);
        drop(host_task);
        BootRun {
            end,
            seconds: done_after.unwrap_or_else(|| start.elapsed()).as_secs_f64(),
            settled_after: settled_after.map(|d| d.as_secs_f64()),
            host: host_results,
        }
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

/// How a boot's run went.
struct BootRun {
    end: VmEnd,
    seconds: f64,
    settled_after: Option<f64>,
    /// The host tests' attempts, when they finished.
    host: Option<host::HostResults>,
}

/// Whether the serial console's recent output shows a kernel panic.
async fn serial_shows_panic(serial_log: &Path) -> bool {
    // The kernel's last words before it stops; the tail is enough, since the log is checked twice a second.
    match vm::read_tail(serial_log, 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).contains(PANIC_MARKER),
        Err(_) => false,
    }
}

/// The lock as the guest's `lock.tsv`: name, version, architecture, one package a line.
fn lock_tsv(lock: &Lock) -> Vec<u8> {
    lock.packages
        .iter()
        .map(|p| format!("{}\t{}\t{}\n", p.name, p.version, p.architecture))
        .collect::<String>()
        .into_bytes()
}

/// The outcome of one test from its attempts, writing each attempt's output into `outputs`.
async fn case_from(
    test: &TestDef,
    attempts: &[results::AttemptRecord],
    missing_note: &str,
    outputs: &Path,
    boot: usize,
) -> Result<CaseOutcome, BootTestError> {
    let mut reports = Vec::new();
    for (n, attempt) in attempts.iter().enumerate() {
        let output = if attempt.output.is_empty() {
            None
        } else {
            tokio::fs::create_dir_all(outputs)
                .await
                .map_err(|source| BootTestError::WorkDir {
                    path: outputs.to_path_buf(),
                    source,
                })?;
            let path = outputs.join(format!("{}.{}.log", test.name, n + 1));
            tokio::fs::write(&path, &attempt.output)
                .await
                .map_err(|source| BootTestError::WorkDir {
                    path: path.clone(),
                    source,
                })?;
            Some(path)
        };
        reports.push(AttemptReport {
            outcome: attempt.end.outcome(),
            seconds: attempt.seconds,
            output,
            truncated: attempt.truncated,
        });
    }
    let (outcome, flaky, note) = results::decide(&test.name, attempts)
        .unwrap_or_else(|| (Outcome::Error, false, missing_note.to_string()));
    Ok(CaseOutcome {
        testcase: test.name.clone(),
        outcome,
        note,
        flaky,
        attempts: reports,
        boot,
    })
}

/// The note for tests that never got a result.
/// The size of a file the VM writes, 0 while it does not exist.
async fn file_len(path: &Path) -> u64 {
    tokio::fs::metadata(path).await.map_or(0, |m| m.len())
}

/// Why a test has no result, from how the VM ended; `(silent_limit, boots)` is the silence that counts
/// as a stalled boot and how many times the VM was booted.
async fn missing_note(
    end: VmEnd,
    report: &results::GuestReport,
    deadline: Duration,
    (silent_limit, boots): (Duration, u32),
    serial_log: &Path,
) -> Result<String, BootTestError> {
    if report.done {
        return Ok("the runner finished without reporting this test".into());
    }
    let serial = || vm::serial_tail(serial_log, SERIAL_LINES_IN_NOTE);
    Ok(match end {
        VmEnd::Exited(Err(ExecError::TimedOut { .. })) | VmEnd::Overran => format!(
            "deadline of {}s passed; last serial lines: {}",
            deadline.as_secs(),
            serial().await
        ),
        VmEnd::Stalled => format!(
            "the guest printed nothing for {}s before settling, {boots} boot(s) in a row; last serial lines: {}",
            silent_limit.as_secs(),
            serial().await
        ),
        VmEnd::Panicked => format!(
            "the guest kernel panicked; last serial lines: {}",
            serial().await
        ),
        VmEnd::Exited(Ok(_)) => format!(
            "the VM stopped before its tests finished; last serial lines: {}",
            serial().await
        ),
        VmEnd::Exited(Err(ExecError::Failed {
            status,
            stderr_tail,
            ..
        })) => format!(
            "QEMU exited ({status}) before its tests finished{}; last serial lines: {}",
            last_line(&stderr_tail).map_or(String::new(), |l| format!(": {l}")),
            serial().await
        ),
        // QEMU never started: that is a broken setup, not a result about the image.
        VmEnd::Exited(Err(err @ ExecError::NotFound { .. })) => {
            return Err(BootTestError::MissingTool(err))
        }
        VmEnd::Exited(Err(err)) => format!("running QEMU failed: {err}"),
        VmEnd::Stopped => "the runner never reported done".into(),
    })
}

#[derive(Debug)]
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
