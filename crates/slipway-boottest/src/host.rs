//! Host tests: scripts that run on the host against the booted guest, over SSH.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use slipway_exec::{Command, CommandRunner, ExecError};

use crate::results::{AttemptEnd, AttemptRecord};
use crate::seed::SSH_USER;
use crate::testdef::TestDef;

/// Attempts per host test.
pub(crate) type HostResults = BTreeMap<String, Vec<AttemptRecord>>;

/// Captures a script's stdout and stderr up to a cap, drains and counts the rest, and keeps the script's
/// own exit status in a file (a pipeline's status is its last command's). Arguments: script, status
/// file, capture file, overflow-count file, cap.
const CAPTURE: &str =
    r#"( "$0" </dev/null 2>&1; echo $? >"$1" ) | { head -c "$4" >"$2"; cat | wc -c >"$3"; }"#;

/// The host tests of one boot and what they need to reach the guest.
#[derive(Debug)]
pub(crate) struct HostJob {
    pub runner: Arc<dyn CommandRunner>,
    pub tests: Vec<TestDef>,
    /// Scratch space: scripts, state directories, captures.
    pub dir: PathBuf,
    pub ssh_port: u16,
    pub ssh_key: PathBuf,
    pub reruns: u32,
    pub output_cap: u64,
}

impl HostJob {
    /// Runs every test in order, each attempt under its timeout, rerunning one that does not pass.
    pub async fn run(self) -> HostResults {
        let mut results = HostResults::new();
        for test in &self.tests {
            let attempts = match self.run_test(test).await {
                Ok(attempts) => attempts,
                Err(err) => vec![AttemptRecord {
                    end: AttemptEnd::Failed,
                    status: -1,
                    seconds: 0.0,
                    output: format!("the host test could not be run: {err}").into_bytes(),
                    truncated: false,
                }],
            };
            results.insert(test.name.clone(), attempts);
        }
        results
    }

    async fn run_test(&self, test: &TestDef) -> std::io::Result<Vec<AttemptRecord>> {
        use std::os::unix::fs::PermissionsExt;
        let state = self.dir.join("state").join(&test.name);
        tokio::fs::create_dir_all(&state).await?;
        let script = self.dir.join("tests").join(&test.name);
        tokio::fs::create_dir_all(self.dir.join("tests")).await?;
        tokio::fs::write(&script, &test.script).await?;
        tokio::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).await?;
        let mut attempts = Vec::new();
        for attempt in 1..=self.reruns + 1 {
            let capture = self.dir.join(format!("{}.{attempt}.out", test.name));
            let status_file = capture.with_extension("status");
            let extra_file = capture.with_extension("extra");
            let started = Instant::now();
            let command = Command::new("sh")
                .arg("-c")
                .arg(CAPTURE)
                .arg(&script)
                .arg(&status_file)
                .arg(&capture)
                .arg(&extra_file)
                .arg(self.output_cap.to_string())
                .current_dir(&state)
                .env("SLIPWAY_SSH_HOST", "127.0.0.1")
                .env("SLIPWAY_SSH_PORT", self.ssh_port.to_string())
                .env("SLIPWAY_SSH_USER", SSH_USER)
                .env("SLIPWAY_SSH_KEY", self.ssh_key.as_os_str())
                .env("SLIPWAY_ATTEMPT", attempt.to_string())
                .env("SLIPWAY_STATE", state.as_os_str())
                .timeout(test.timeout)
                .discard_stdout();
            let result = self.runner.run(command).await;
            let seconds = started.elapsed().as_secs_f64();
            let mut output = tokio::fs::read(&capture).await.unwrap_or_default();
            output.truncate(self.output_cap as usize);
            let extra: u64 = tokio::fs::read_to_string(&extra_file)
                .await
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            let status: Option<i64> = tokio::fs::read_to_string(&status_file)
                .await
                .ok()
                .and_then(|t| t.trim().parse().ok());
            let (end, status) = match (&result, status) {
                (Err(ExecError::TimedOut { .. }), _) => (AttemptEnd::TimedOut, 124),
                (_, Some(0)) => (AttemptEnd::Passed, 0),
                (_, Some(77)) => (AttemptEnd::Skipped, 77),
                (_, Some(status)) => (AttemptEnd::Failed, status),
                (Err(err), None) => {
                    output.extend_from_slice(format!("\n{err}\n").as_bytes());
                    (AttemptEnd::Failed, -1)
                }
                (Ok(_), None) => (AttemptEnd::Failed, -1),
            };
            for file in [&capture, &status_file, &extra_file] {
                let _ = tokio::fs::remove_file(file).await;
            }
            attempts.push(AttemptRecord {
                end,
                status,
                seconds,
                output,
                truncated: extra > 0,
            });
            if !matches!(end, AttemptEnd::Failed | AttemptEnd::TimedOut) {
                break;
            }
        }
        Ok(attempts)
    }
}
