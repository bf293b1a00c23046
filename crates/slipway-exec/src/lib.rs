//! Every subprocess slipway starts goes through a [`CommandRunner`].
//!
//! The runner logs the argv, keeps the tail of stderr for the error message, kills the child's whole process
//! group when its deadline passes or when the caller gives up on it, and asks the kernel to kill the child if
//! slipway itself dies (through util-linux's `setpriv --pdeathsig`), so no QEMU or mmdebstrap outlives us.
//! As root, the child also runs as the first process of its own PID namespace (`unshare --pid
//! --kill-child`): when it dies, the kernel kills everything it started, so even apt and dpkg under a killed
//! mmdebstrap are gone, and mounts a tool made in its private mount namespace disappear with it.
//! A missing tool is reported with the Debian package that provides it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How many bytes of stderr are kept for error messages.
pub const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// A command to run.
#[derive(Debug, Clone)]
pub struct Command {
    program: String,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    capture_stdout: bool,
}

impl Command {
    /// A command running `program`, found on `PATH`.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: None,
            capture_stdout: true,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the child in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Feeds `input` to the child's stdin.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Kills the child (and its process group) after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Discards stdout instead of keeping it, for chatty tools whose output nobody reads.
    pub fn discard_stdout(mut self) -> Self {
        self.capture_stdout = false;
        self
    }

    /// The program name.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The command line as one readable string, for logs and errors.
    pub fn display(&self) -> String {
        let mut out = self.program.clone();
        for arg in &self.args {
            out.push(' ');
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                out.push_str(&format!("'{arg}'"));
            } else {
                out.push_str(&arg);
            }
        }
        out
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything written to stdout (empty when discarded).
    pub stdout: Vec<u8>,
    /// The last [`STDERR_TAIL_BYTES`] of stderr.
    pub stderr_tail: String,
}

impl Output {
    /// stdout as text, lossily.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The program is not installed.
    #[error("{program} is not installed{}", package_hint(.package))]
    NotFound {
        /// The program that was looked for.
        program: String,
        /// The Debian package(s) that provide it, when known.
        package: Option<String>,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}){}", tail_hint(.stderr_tail))]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// The tail of its stderr.
        stderr_tail: String,
        /// Its stdout, for callers that need to look at it.
        stdout: Vec<u8>,
    },
    /// The deadline passed and the program was killed.
    #[error("`{command}` did not finish within {}s and was killed{}", .after.as_secs(), tail_hint(.stderr_tail))]
    TimedOut {
        /// The command line.
        command: String,
        /// The deadline.
        after: Duration,
        /// The tail of its stderr.
        stderr_tail: String,
    },
    /// Starting or talking to the child failed.
    #[error("running `{command}`: {source}")]
    Io {
        /// The command line.
        command: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ExecError {
    /// The stderr tail, if the error has one.
    pub fn stderr_tail(&self) -> Option<&str> {
        match self {
            Self::Failed { stderr_tail, .. } | Self::TimedOut { stderr_tail, .. } => {
                Some(stderr_tail)
            }
            _ => None,
        }
    }
}

fn package_hint(package: &Option<String>) -> String {
    match package {
        Some(package) => format!(": install it with `apt-get install {package}`"),
        None => String::new(),
    }
}

fn tail_hint(tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr ends with:\n{tail}")
    }
}

/// The Debian package that provides a program slipway runs.
pub fn package_for(program: &str) -> Option<&'static str> {
    Some(match program {
        "mmdebstrap" => "mmdebstrap",
        "qemu-system-x86_64" => "qemu-system-x86",
        "qemu-img" => "qemu-utils",
        "mkfs.ext4" | "e2fsck" | "resize2fs" | "debugfs" => "e2fsprogs",
        "mkfs.vfat" | "mkfs.fat" | "fsck.fat" => "dosfstools",
        "mcopy" | "mmd" | "mdir" => "mtools",
        "sfdisk" | "fdisk" => "fdisk",
        "xz" => "xz-utils",
        "gpg" | "gpgconf" => "gpg",
        "gpgv" => "gpgv",
        "setpriv" => "util-linux",
        "dpkg-query" | "dpkg-deb" => "dpkg",
        "chroot" => "coreutils",
        _ => return None,
    })
}

/// Looks a program up on `PATH` (and in the sbin directories, which root's PATH may lack).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.exists().then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Checks that every program is installed, naming the packages to install for those that are not.
pub fn require_programs(programs: &[&str]) -> Result<(), ExecError> {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().filter_map(|p| package_for(p)).collect();
    packages.sort_unstable();
    packages.dedup();
    Err(ExecError::NotFound {
        program: missing.join(", "),
        package: (!packages.is_empty()).then(|| packages.join(" ")),
    })
}

/// Runs commands. The one implementation used outside tests is [`SystemRunner`].
#[async_trait]
pub trait CommandRunner: Send + Sync + std::fmt::Debug {
    /// Runs a command to completion; a non-zero exit is an error carrying the stderr tail.
    async fn run(&self, command: Command) -> Result<Output, ExecError>;
}

/// Runs commands as real child processes of this one.
#[derive(Debug, Default, Clone)]
pub struct SystemRunner;

#[async_trait]
impl CommandRunner for SystemRunner {
    async fn run(&self, command: Command) -> Result<Output, ExecError> {
        let shown = command.display();
        let program = find_program(&command.program).ok_or_else(|| ExecError::NotFound {
            program: command.program.clone(),
            package: package_for(&command.program).map(str::to_string),
        })?;
        tracing::debug!(command = %shown, "running");

        let mut child_command = wrapped(&program);
        child_command
            .args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(if command.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if command.capture_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &command.cwd {
            child_command.current_dir(dir);
        }
        let io_err = |source| ExecError::Io {
            command: shown.clone(),
            source,
        };
        let mut child = child_command.spawn().map_err(io_err)?;
        let group = child.id();
        let _group_guard = ProcessGroupGuard(group);

        if let (Some(input), Some(mut stdin)) = (command.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                // A child that exits without reading its input is not an error here; its status tells.
                let _ = stdin.write_all(&input).await;
            });
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let stdout_task = tokio::spawn(read_all(stdout));
        let stderr_task = tokio::spawn(read_tail(stderr, STDERR_TAIL_BYTES));

        let status = match command.timeout {
            Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
                Ok(status) => status.map_err(io_err)?,
                Err(_) => {
                    kill_group(group);
                    let _ = child.kill().await;
                    let stderr_tail = stderr_task.await.unwrap_or_default();
                    tracing::warn!(command = %shown, "killed at its deadline");
                    return Err(ExecError::TimedOut {
                        command: shown,
                        after: limit,
                        stderr_tail,
                    });
                }
            },
            None => child.wait().await.map_err(io_err)?,
        };
        let stdout = stdout_task.await.unwrap_or_default();
        let stderr_tail = stderr_task.await.unwrap_or_default();
        if status.success() {
            Ok(Output {
                status,
                stdout,
                stderr_tail,
            })
        } else {
            Err(ExecError::Failed {
                command: shown,
                status,
                stderr_tail,
                stdout,
            })
        }
    }
}

/// The command that starts `program` so that it cannot outlive us: setpriv makes the kernel kill it when
/// this process dies, and as root unshare puts it at the root of a PID namespace, so its descendants die
/// with it. Both ship in util-linux, which every Debian system has.
fn wrapped(program: &Path) -> tokio::process::Command {
    let mut prefix: Vec<std::ffi::OsString> = Vec::new();
    if let Some(setpriv) = find_program("setpriv") {
        prefix.push(setpriv.into());
        prefix.extend(["--pdeathsig", "KILL", "--"].map(Into::into));
    }
    if is_root() {
        if let Some(unshare) = find_program("unshare") {
            prefix.push(unshare.into());
            prefix.extend(
                [
                    "--pid",
                    "--fork",
                    "--kill-child=SIGKILL",
                    "--mount-proc",
                    "--",
                ]
                .map(Into::into),
            );
        }
    }
    prefix.push(program.into());
    let mut command = tokio::process::Command::new(&prefix[0]);
    command.args(&prefix[1..]);
    command
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Kills the child's process group when the run ends early (deadline, or the future being dropped), so
/// grandchildren such as mmdebstrap's apt or QEMU's helpers go too.
struct ProcessGroupGuard(Option<u32>);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

fn kill_group(group: Option<u32>) {
    if let Some(pid) = group {
        // `kill -KILL -PGID` through the kill(1) binary keeps this crate free of unsafe code; after a normal
        // exit the group is usually gone and kill fails quietly.
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn read_all<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut reader) = reader {
        let _ = reader.read_to_end(&mut out).await;
    }
    out
}

async fn read_tail<R: AsyncRead + Unpin>(reader: Option<R>, keep: usize) -> String {
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(keep);
    if let Some(mut reader) = reader {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.extend(&buf[..n]);
            while tail.len() > keep {
                tail.pop_front();
            }
        }
    }
    String::from_utf8_lossy(tail.make_contiguous()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_stdout_and_feeds_stdin() {
        let out = SystemRunner
            .run(Command::new("cat").stdin("hello"))
            .await
            .expect("cat runs");
        assert_eq!(out.stdout_text(), "hello");
    }

    #[tokio::test]
    async fn a_failure_carries_the_stderr_tail() {
        let err = SystemRunner
            .run(Command::new("sh").args(["-c", "echo first >&2; echo boom >&2; exit 3"]))
            .await
            .expect_err("exit 3 is a failure");
        let text = err.to_string();
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.ends_with("first\nboom"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_program_names_its_package() {
        let err = SystemRunner
            .run(Command::new("definitely-not-a-program-slipway"))
            .await
            .expect_err("missing");
        assert!(matches!(err, ExecError::NotFound { .. }));
        assert_eq!(package_for("mkfs.vfat"), Some("dosfstools"));
        let err = require_programs(&["sh", "no-such-tool-xyz"]).expect_err("missing");
        assert!(err.to_string().contains("no-such-tool-xyz"));
    }

    /// Command lines of running processes that are exactly `command` (zombies excluded: they have none).
    fn processes_running(command: &str) -> Vec<String> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.trim() == command)
            .collect()
    }

    fn wait_until_gone(command: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !processes_running(command).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        processes_running(command)
    }

    #[tokio::test]
    async fn the_deadline_kills_the_whole_process_group() {
        let err = SystemRunner
            .run(
                Command::new("sh")
                    .args(["-c", "sleep 302 & wait"])
                    .timeout(Duration::from_millis(500)),
            )
            .await
            .expect_err("must time out");
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err}");
        assert_eq!(wait_until_gone("sleep 302"), Vec::<String>::new());
    }

    /// Runs only as the child of `a_killed_parent_leaves_no_descendants`: starts a command with a
    /// grandchild and waits, until the parent test kills this process.
    #[tokio::test]
    async fn child_mode_for_parent_death() {
        let Ok(marker) = std::env::var("SLIPWAY_EXEC_PARENT_DEATH_MARKER") else {
            return;
        };
        let script = format!("sleep 301 & echo $! > {marker}; wait");
        let _ = SystemRunner
            .run(Command::new("sh").args(["-c", &script]))
            .await;
    }

    #[test]
    fn a_killed_parent_leaves_no_descendants() {
        let dir = std::env::temp_dir().join(format!("slipway-exec-death-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let marker = dir.join("grandchild.pid");
        let mut parent = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "tests::child_mode_for_parent_death",
                "--nocapture",
            ])
            .env("SLIPWAY_EXEC_PARENT_DEATH_MARKER", &marker)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn parent");
        let started = std::time::Instant::now();
        let pid = loop {
            if let Ok(pid) = std::fs::read_to_string(&marker) {
                if !pid.trim().is_empty() {
                    break pid.trim().to_string();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "grandchild never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        parent.kill().expect("kill parent");
        parent.wait().expect("reap parent");
        // Inside a PID namespace the recorded pid means nothing out here, so look for the command line.
        let survivors = wait_until_gone("sleep 301");
        assert!(
            survivors.is_empty(),
            "grandchild {pid} outlived its killed parent: {survivors:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
