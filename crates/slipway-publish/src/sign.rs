//! Signing: the [`Signer`] trait and [`GpgSigner`], its implementation with gpg(1). The in-process
//! implementation is in `in_process`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use slipway_exec::{Command, CommandRunner, ExecError};
use tokio::io::AsyncWriteExt;

/// How long one gpg call may take. Detached signatures read the whole image, which can be gigabytes on a
/// slow disk, so this is generous; it exists so that a gpg waiting for a pinentry nobody sees cannot hang a
/// publish forever.
const GPG_TIMEOUT: Duration = Duration::from_secs(600);

/// How long stopping the agent may take.
const GPGCONF_TIMEOUT: Duration = Duration::from_secs(30);

/// What `slipway keys init` is, for error messages that tell the user what to do.
const INIT_HINT: &str = "run `slipway keys init` to create a signing key";

/// Makes OpenPGP signatures for the public tree.
#[async_trait]
pub trait Signer: Send + Sync + fmt::Debug {
    /// Returns `text` wrapped in an OpenPGP cleartext signature (`-----BEGIN PGP SIGNED MESSAGE-----`).
    async fn clearsign(&self, text: &[u8]) -> Result<Vec<u8>, SignError>;

    /// Writes a binary detached signature of `file` to `signature_out`, replacing it if it exists.
    async fn detach_sign(&self, file: &Path, signature_out: &Path) -> Result<(), SignError>;

    /// The ASCII-armored public key that verifies this signer's signatures.
    fn public_key_armored(&self) -> &str;

    /// The key's fingerprint: 40 upper-case hex digits for an OpenPGP v4 key.
    fn fingerprint(&self) -> &str;
}

/// Why a key could not be made or loaded, or a signature could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// `generate` was asked to write a key file that already exists.
    #[error(
        "refusing to overwrite the existing key file {}: move it away first to make a new key, or use the one that is there",
        .path.display()
    )]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is missing, unreadable, not an OpenPGP key, or holds no usable secret key.
    #[error("cannot use the signing key {}: {reason}; {INIT_HINT}", .path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The user id given to `generate` cannot be used.
    #[error("{0:?} cannot be a key's user id: give a name and e-mail address such as \"Example Releases <releases@example.org>\"")]
    UserId(String),
    /// gpg failed.
    #[error("gpg could not {action}")]
    Gpg {
        /// What slipway asked gpg to do.
        action: String,
        /// How it failed, with gpg's stderr.
        #[source]
        source: ExecError,
    },
    /// The in-process signer cannot use this key (a key type or shape it does not handle, a passphrase, more
    /// than one key, no secret key); gpg may still be able to, or will say what is wrong with it.
    #[error("the in-process signer cannot use the signing key {}: {reason}", .path.display())]
    Unsupported {
        /// The key file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The in-process signer failed to make a signature.
    #[error("could not {action}: {reason}")]
    Sign {
        /// What was being signed.
        action: String,
        /// The OpenPGP library's error.
        reason: String,
    },
    /// gpg succeeded but its output was not what slipway expects.
    #[error("gpg gave an unexpected answer when asked to {action}: {detail}")]
    Unexpected {
        /// What slipway asked gpg to do.
        action: String,
        /// What was wrong.
        detail: String,
    },
    /// A file operation failed.
    #[error("could not {action} {}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// A [`Signer`] that runs gpg(1) against a private, temporary GNUPGHOME holding one secret key.
///
/// The key lives in an armored key file (written by [`GpgSigner::generate`], read by [`GpgSigner::load`]);
/// the temporary home is deleted when the signer is dropped. Every operation stops the home's gpg-agent when
/// it is done, so no agent outlives the work it was started for.
pub struct GpgSigner {
    runner: Arc<dyn CommandRunner>,
    home: tempfile::TempDir,
    key_file: PathBuf,
    fingerprint: String,
    public_key: String,
    /// One gpg-agent serves the whole home and each operation ends by stopping it, so operations take turns
    /// rather than one stopping the agent under another.
    turn: tokio::sync::Mutex<()>,
}

impl fmt::Debug for GpgSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpgSigner")
            .field("key_file", &self.key_file)
            .field("fingerprint", &self.fingerprint)
            .field("home", &self.home.path())
            .finish_non_exhaustive()
    }
}

impl GpgSigner {
    /// Makes a new ed25519 signing key without a passphrase (`slipway keys init`) and writes its armored
    /// secret key to `key_file` with mode 0600. An existing `key_file` is never overwritten
    /// ([`SignError::Exists`]).
    pub async fn generate(
        runner: Arc<dyn CommandRunner>,
        key_file: &Path,
        user_id: &str,
    ) -> Result<GpgSigner, SignError> {
        if user_id.trim().is_empty() || user_id.chars().any(char::is_control) {
            return Err(SignError::UserId(user_id.to_string()));
        }
        // Checked up front so no key is made for nothing; the exclusive create below is what really guards.
        if tokio::fs::symlink_metadata(key_file).await.is_ok() {
            return Err(SignError::Exists {
                path: key_file.to_path_buf(),
            });
        }
        let home = new_home()?;
        let made = async {
            run_gpg(
                &runner,
                home.path(),
                "generate a signing key",
                ["--quick-gen-key", user_id, "ed25519", "sign", "never"],
                None,
            )
            .await?;
            let fingerprint = signing_fingerprint(&runner, home.path())
                .await?
                .ok_or_else(|| SignError::Unexpected {
                    action: "generate a signing key".into(),
                    detail: "the new key is not in the keyring".into(),
                })?;
            let secret = run_gpg(
                &runner,
                home.path(),
                "export the new secret key",
                ["--armor", "--export-secret-keys", &fingerprint],
                None,
            )
            .await?;
            let public = export_public(&runner, home.path(), &fingerprint).await?;
            Ok::<_, SignError>((fingerprint, secret, public))
        }
        .await;
        stop_agent(&runner, home.path()).await;
        let (fingerprint, secret, public_key) = made?;
        if !secret.starts_with(b"-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            return Err(SignError::Unexpected {
                action: "export the new secret key".into(),
                detail: "the export is not an armored private key block".into(),
            });
        }
        write_key_file(key_file, &secret).await?;
        tracing::info!(key_file = %key_file.display(), %fingerprint, "generated a signing key");
        Ok(GpgSigner {
            runner,
            home,
            key_file: key_file.to_path_buf(),
            fingerprint,
            public_key,
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// Loads the secret key in `key_file` (armored or binary) into a fresh temporary GNUPGHOME and checks
    /// that it can sign without a passphrase, so a bad key is found now rather than halfway through a publish.
    pub async fn load(
        runner: Arc<dyn CommandRunner>,
        key_file: &Path,
    ) -> Result<GpgSigner, SignError> {
        let key_error = |reason: String| SignError::KeyFile {
            path: key_file.to_path_buf(),
            reason,
        };
        let bytes = read_key_file(key_file).await?;

        let home = new_home()?;
        let loaded = async {
            if let Err(e) = run_gpg(
                &runner,
                home.path(),
                "import the signing key",
                ["--import"],
                Some(bytes),
            )
            .await
            {
                let said = match &e {
                    SignError::Gpg { source, .. } => source
                        .stderr_tail()
                        .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
                        .map(|l| format!(" (gpg says: {})", l.trim().trim_start_matches("gpg: ")))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                return Err(key_error(format!(
                    "it does not hold an OpenPGP key that gpg can read{said}"
                )));
            }
            let fingerprint = signing_fingerprint(&runner, home.path())
                .await?
                .ok_or_else(|| {
                    key_error(
                        "it holds no secret key that can sign (only a public key, or an expired or revoked one)"
                            .into(),
                    )
                })?;
            let public = export_public(&runner, home.path(), &fingerprint).await?;
            // A passphrase-protected key imports fine and fails only when used; find that out now.
            if let Err(e) = clearsign_in(&runner, home.path(), &fingerprint, b"slipway key check\n").await
            {
                tracing::debug!(error = %e, "probe signature failed");
                return Err(key_error(
                    "gpg cannot sign with it without a passphrase; slipway needs a key without one".into(),
                ));
            }
            Ok((fingerprint, public))
        }
        .await;
        stop_agent(&runner, home.path()).await;
        let (fingerprint, public_key) = loaded?;
        tracing::debug!(key_file = %key_file.display(), %fingerprint, "loaded the signing key");
        Ok(GpgSigner {
            runner,
            home,
            key_file: key_file.to_path_buf(),
            fingerprint,
            public_key,
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// The key file this signer was made from.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }
}

#[async_trait]
impl Signer for GpgSigner {
    async fn clearsign(&self, text: &[u8]) -> Result<Vec<u8>, SignError> {
        let _turn = self.turn.lock().await;
        let signed = clearsign_in(&self.runner, self.home.path(), &self.fingerprint, text).await;
        stop_agent(&self.runner, self.home.path()).await;
        let signed = signed?;
        if !signed.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
            return Err(SignError::Unexpected {
                action: "make a cleartext signature".into(),
                detail: "the output is not a PGP signed message".into(),
            });
        }
        Ok(signed)
    }

    async fn detach_sign(&self, file: &Path, signature_out: &Path) -> Result<(), SignError> {
        let _turn = self.turn.lock().await;
        let action = format!("sign {}", file.display());
        let local_user = format!("{}!", self.fingerprint);
        let args: Vec<std::ffi::OsString> = vec![
            "--local-user".into(),
            local_user.into(),
            "--digest-algo".into(),
            "SHA256".into(),
            // The caller decides where signatures go; a leftover from an interrupted run is replaced.
            "--yes".into(),
            "--output".into(),
            signature_out.as_os_str().to_owned(),
            "--detach-sign".into(),
            file.as_os_str().to_owned(),
        ];
        let signed = run_gpg(&self.runner, self.home.path(), &action, args, None).await;
        stop_agent(&self.runner, self.home.path()).await;
        signed.map(drop)
    }

    fn public_key_armored(&self) -> &str {
        &self.public_key
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// A private GNUPGHOME. gpg-agent's socket path must fit in a `sockaddr_un` (108 bytes), so a long TMPDIR
/// falls back to /tmp.
fn new_home() -> Result<tempfile::TempDir, SignError> {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > 60 {
        base = PathBuf::from("/tmp");
    }
    let home = tempfile::Builder::new()
        .prefix("slipway-gpg-")
        .tempdir_in(&base)
        .map_err(|source| SignError::Io {
            action: "create a temporary GNUPGHOME in",
            path: base.clone(),
            source,
        })?;
    // gpg warns about, and agents may refuse, a home others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).map_err(
        |source| SignError::Io {
            action: "restrict the permissions of",
            path: home.path().to_path_buf(),
            source,
        },
    )?;
    Ok(home)
}

/// Runs gpg in `home` with the options every call shares, returning stdout.
async fn run_gpg<I, S>(
    runner: &Arc<dyn CommandRunner>,
    home: &Path,
    action: &str,
    args: I,
    stdin: Option<Vec<u8>>,
) -> Result<Vec<u8>, SignError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let mut command = Command::new("gpg")
        .env("GNUPGHOME", home.as_os_str())
        .arg("--homedir")
        .arg(home.as_os_str())
        .args([
            "--batch",
            "--no-tty",
            "--quiet",
            // The trust database is irrelevant to signing and checking it can take long on a big keyring.
            "--no-auto-check-trustdb",
            // The key has no passphrase; loopback keeps gpg from ever looking for a pinentry program.
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .timeout(GPG_TIMEOUT);
    if let Some(input) = stdin {
        command = command.stdin(input);
    }
    runner
        .run(command)
        .await
        .map(|out| out.stdout)
        .map_err(|source| SignError::Gpg {
            action: action.to_string(),
            source,
        })
}

async fn clearsign_in(
    runner: &Arc<dyn CommandRunner>,
    home: &Path,
    fingerprint: &str,
    text: &[u8],
) -> Result<Vec<u8>, SignError> {
    let local_user = format!("{fingerprint}!");
    run_gpg(
        runner,
        home,
        "make a cleartext signature",
        [
            "--local-user",
            local_user.as_str(),
            "--digest-algo",
            "SHA256",
            "--output",
            "-",
            "--clearsign",
        ],
        Some(text.to_vec()),
    )
    .await
}

async fn export_public(
    runner: &Arc<dyn CommandRunner>,
    home: &Path,
    fingerprint: &str,
) -> Result<String, SignError> {
    let action = "export the public key";
    let public = run_gpg(
        runner,
        home,
        action,
        ["--armor", "--export", fingerprint],
        None,
    )
    .await?;
    let public = String::from_utf8(public).map_err(|_| SignError::Unexpected {
        action: action.into(),
        detail: "the armored key is not text".into(),
    })?;
    if !public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return Err(SignError::Unexpected {
            action: action.into(),
            detail: "the export is not an armored public key block".into(),
        });
    }
    Ok(public)
}

/// The fingerprint of the first secret key in `home` that is valid and can sign, if any.
async fn signing_fingerprint(
    runner: &Arc<dyn CommandRunner>,
    home: &Path,
) -> Result<Option<String>, SignError> {
    let listing = run_gpg(
        runner,
        home,
        "list the secret keys",
        ["--with-colons", "--fixed-list-mode", "--list-secret-keys"],
        None,
    )
    .await?;
    Ok(parse_signing_fingerprint(&String::from_utf8_lossy(
        &listing,
    )))
}

/// Reads gpg's `--with-colons` listing: a `sec` record (field 2 validity, field 12 capabilities) followed by
/// its `fpr` record (field 10). Upper-case `S` in the capabilities means the key as a whole can sign.
fn parse_signing_fingerprint(listing: &str) -> Option<String> {
    let mut usable = false;
    let mut in_primary = false;
    for line in listing.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.first().copied() {
            Some("sec") => {
                let validity = fields.get(1).copied().unwrap_or("");
                let caps = fields.get(11).copied().unwrap_or("");
                usable = !matches!(validity, "r" | "e" | "i" | "d") && caps.contains('S');
                in_primary = true;
            }
            Some("fpr") if in_primary => {
                in_primary = false;
                let fpr = fields.get(9).copied().unwrap_or("");
                if usable && !fpr.is_empty() && fpr.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Some(fpr.to_ascii_uppercase());
                }
            }
            Some("ssb") | Some("pub") | Some("sub") => in_primary = false,
            _ => {}
        }
    }
    None
}

/// Stops the gpg-agent (and any other daemon) of `home`. gpg starts its agent in a session of its own, out
/// of reach of the runner's process-group kill, so it has to be asked to go.
async fn stop_agent(runner: &Arc<dyn CommandRunner>, home: &Path) {
    let command = Command::new("gpgconf")
        .env("GNUPGHOME", home.as_os_str())
        .args(["--kill", "all"])
        .timeout(GPGCONF_TIMEOUT);
    if let Err(e) = runner.run(command).await {
        tracing::warn!(home = %home.display(), error = %e, "could not stop gpg-agent");
    }
}

/// Writes the secret key with mode 0600, never replacing an existing file, and makes it durable: losing the
/// only copy of a release key to a crash would be bad.
async fn write_key_file(key_file: &Path, secret: &[u8]) -> Result<(), SignError> {
    let io_err = |action: &'static str| {
        move |source| SignError::Io {
            action,
            path: key_file.to_path_buf(),
            source,
        }
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_file)
        .await
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                SignError::Exists {
                    path: key_file.to_path_buf(),
                }
            } else {
                SignError::Io {
                    action: "create the key file",
                    path: key_file.to_path_buf(),
                    source,
                }
            }
        })?;
    file.write_all(secret)
        .await
        .map_err(io_err("write the key file"))?;
    file.sync_all()
        .await
        .map_err(io_err("flush the key file"))?;
    if let Some(dir) = key_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(dir) = tokio::fs::File::open(dir).await {
            // Best effort: some filesystems refuse fsync on directories.
            let _ = dir.sync_all().await;
        }
    }
    Ok(())
}

/// Reads a secret key file, with the errors both signers give for a file that is missing, unreadable or
/// empty, and a warning when others may read it.
pub(crate) async fn read_key_file(key_file: &Path) -> Result<Vec<u8>, SignError> {
    let key_error = |reason: String| SignError::KeyFile {
        path: key_file.to_path_buf(),
        reason,
    };
    let bytes = tokio::fs::read(key_file).await.map_err(|e| {
        key_error(match e.kind() {
            io::ErrorKind::NotFound => "the file does not exist".to_string(),
            io::ErrorKind::PermissionDenied => {
                "the file is not readable (permission denied)".to_string()
            }
            _ => format!("the file cannot be read ({e})"),
        })
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(key_error("the file is empty".into()));
    }
    warn_if_readable_by_others(key_file).await;
    Ok(bytes)
}

async fn warn_if_readable_by_others(key_file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = tokio::fs::metadata(key_file).await {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                key_file = %key_file.display(),
                mode = format!("{:o}", mode & 0o777),
                "the secret signing key is readable by others; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_signing_key_from_a_colon_listing() {
        let listing = "sec:u:255:22:52E6E80BF9AD86AB:1795260270:::u:::scSC:::+::ed25519:::0:\n\
fpr:::::::::568467331F696C7C3B20EACC52E6E80BF9AD86AB:\n\
grp:::::::::2BB57906F641038E4568CB71B2B26B9CC7531825:\n\
uid:u::::1795260270::230162C5BA27CB835FEFA182F7362D77F77BB1A7::Test <t@example.org>::::::::::0:\n";
        assert_eq!(
            parse_signing_fingerprint(listing).as_deref(),
            Some("568467331F696C7C3B20EACC52E6E80BF9AD86AB")
        );
        let revoked = listing.replacen("sec:u:", "sec:r:", 1);
        assert_eq!(parse_signing_fingerprint(&revoked), None);
        let encrypt_only = listing.replacen("scSC", "eE", 1);
        assert_eq!(parse_signing_fingerprint(&encrypt_only), None);
        assert_eq!(parse_signing_fingerprint(""), None);
    }
}
