//! Signature checks with gpgv, shared by apt (clear-signed `InRelease`) and rpm-md (`repomd.xml` with a
//! detached `repomd.xml.asc`).
//!
//! The signed data always goes to gpgv on stdin, so what is checked is exactly the bytes about to be used.
//! A signature counts only when gpgv reports `VALIDSIG` and no expired or revoked key or signature: gpgv
//! exits 0 for a good signature by an expired or revoked key, and apt and dnf both refuse those.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use slipway_exec::{Command, CommandRunner, ExecError};

use crate::error::RepoError;

/// How long gpgv may take to check one signed index.
const GPGV_TIMEOUT: Duration = Duration::from_secs(60);

/// Status lines that refuse a signature even though gpgv exits 0.
const REFUSED: [&str; 3] = ["EXPKEYSIG", "REVKEYSIG", "EXPSIG"];

/// One gpgv check of the signed index at `url` against `keyring`.
pub(crate) struct Gpgv<'a> {
    /// The URL of the signed index, for errors.
    pub url: &'a str,
    /// The keyring as the source names it; errors report it as given.
    pub keyring: &'a Path,
    /// What the check is for, for an error running gpgv (`verify the InRelease signature with gpgv`).
    pub action: &'static str,
}

impl Gpgv<'_> {
    /// A [`RepoError::BadSignature`] for this check.
    pub fn bad(&self, detail: impl Into<String>) -> RepoError {
        RepoError::BadSignature {
            url: self.url.to_string(),
            keyring: Some(self.keyring.to_path_buf()),
            detail: detail.into(),
        }
    }

    /// The keyring as an absolute path gpgv can read: refused when it cannot be read or is ASCII-armored.
    pub async fn readable_keyring(&self) -> Result<PathBuf, RepoError> {
        let keyring =
            std::path::absolute(self.keyring).unwrap_or_else(|_| self.keyring.to_path_buf());
        match tokio::fs::read(&keyring).await {
            Ok(head) if head.starts_with(b"-----BEGIN PGP") => Err(self.bad(
                "the keyring is ASCII-armored, and gpgv reads binary keyrings only: convert it with \
                 `gpg --dearmor`",
            )),
            Ok(_) => Ok(keyring),
            Err(e) => Err(self.bad(format!("the keyring cannot be read: {e}"))),
        }
    }

    /// Runs `gpgv --status-fd 2 --keyring <keyring> <args>` with `signed` on stdin and returns its stdout
    /// once the status lines show a valid signature by a key that is neither expired nor revoked. `keyring`
    /// is what [`Gpgv::readable_keyring`] returned.
    pub async fn run(
        &self,
        runner: &dyn CommandRunner,
        keyring: &Path,
        args: &[&OsStr],
        signed: &[u8],
    ) -> Result<Vec<u8>, RepoError> {
        let command = Command::new("gpgv")
            .arg("--status-fd")
            .arg("2")
            .arg("--keyring")
            .arg(keyring.as_os_str())
            .args(args.iter().copied())
            .stdin(signed.to_vec())
            .timeout(GPGV_TIMEOUT);
        match runner.run(command).await {
            Ok(output) => {
                let status = output.stderr_tail;
                let refused = REFUSED
                    .iter()
                    .any(|r| status.contains(&format!("[GNUPG:] {r}")));
                if refused || !status.contains("[GNUPG:] VALIDSIG") {
                    return Err(self.bad(summarize_gpgv(&status)));
                }
                Ok(output.stdout)
            }
            Err(ExecError::Failed { stderr_tail, .. }) => {
                Err(self.bad(summarize_gpgv(&stderr_tail)))
            }
            Err(error) => Err(RepoError::Exec {
                action: self.action,
                source: error,
            }),
        }
    }
}

/// gpgv's complaint without the machine-readable status lines, on one line.
fn summarize_gpgv(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("[GNUPG:]"))
        .collect();
    if lines.is_empty() {
        "gpgv found no valid signature".into()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpgv_summary_drops_status_lines() {
        let stderr = "[GNUPG:] NEWSIG\ngpgv: Signature made today\n[GNUPG:] ERRSIG 1\ngpgv: Can't check signature: No public key\n";
        assert_eq!(
            summarize_gpgv(stderr),
            "gpgv: Signature made today; gpgv: Can't check signature: No public key"
        );
        assert_eq!(summarize_gpgv(""), "gpgv found no valid signature");
    }
}
