//! Which signer the engine publishes with: in process for the key `slipway keys init` makes, gpg for a key
//! the in-process signer does not take, said once.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use slipway_exec::{Command, CommandRunner, SystemRunner};
use slipway_model::{Config, SystemClock};
use slipway_store::SqliteStore;

use crate::{Engine, LogProgress};

const CONFIG: &str = r#"
[signing]
key = "keys/release.key"

[gate.default]
required = ["boot.multi-user"]

[[stream]]
name = "cloud"
recipe = "cloud.toml"
gate = "default"
"#;

const RECIPE: &str = r#"
distribution = "debian"
suite = "bookworm"
packages = ["systemd"]
outputs = ["qcow2"]

[[source]]
url = "http://deb.debian.org/debian"
suite = "bookworm"
"#;

fn engine(dir: &Path) -> Engine {
    std::fs::write(dir.join("slipway.toml"), CONFIG).expect("config");
    std::fs::write(dir.join("cloud.toml"), RECIPE).expect("recipe");
    std::fs::create_dir_all(dir.join("keys")).expect("key dir");
    let config = Config::load(&dir.join("slipway.toml")).expect("valid config");
    Engine::with_parts(
        config,
        Arc::new(SqliteStore::open_in_memory().expect("store")),
        Arc::new(SystemClock),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    )
}

/// Everything logged while it is the thread's default subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn the_key_keys_init_makes_is_signed_with_in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let key = engine.config().signing.key.clone();
    let made = slipway_publish::GpgSigner::generate(
        Arc::new(SystemRunner),
        &key,
        "test key <test@example.org>",
    )
    .await
    .expect("key");
    let (logs, _guard) = capture_logs();
    let signer = engine.signer().await.expect("signer");
    assert!(
        format!("{signer:?}").starts_with("InProcessSigner"),
        "{signer:?}"
    );
    assert_eq!(
        signer.fingerprint(),
        slipway_publish::Signer::fingerprint(&made)
    );
    assert!(!logs.text().contains("gpg"), "{}", logs.text());
}

#[tokio::test]
async fn a_loaded_key_is_kept_until_its_file_changes_and_a_new_key_is_loaded_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let key = engine.config().signing.key.clone();
    let generate = || {
        slipway_publish::GpgSigner::generate(
            Arc::new(SystemRunner),
            &key,
            "test key <test@example.org>",
        )
    };
    let first = generate().await.expect("key");
    let loaded = engine.signer().await.expect("signer");
    let again = engine.signer().await.expect("signer");
    assert!(
        Arc::ptr_eq(&loaded, &again),
        "the same file gives the signer already loaded"
    );
    assert_eq!(
        loaded.fingerprint(),
        slipway_publish::Signer::fingerprint(&first)
    );

    std::fs::remove_file(&key).expect("remove the old key");
    let second = generate().await.expect("another key");
    let reloaded = engine.signer().await.expect("signer");
    assert_eq!(
        reloaded.fingerprint(),
        slipway_publish::Signer::fingerprint(&second),
        "a rotated key signs from the next publish on"
    );
    assert_ne!(reloaded.fingerprint(), loaded.fingerprint());

    std::fs::remove_file(&key).expect("remove the key");
    assert!(
        engine.signer().await.is_err(),
        "a key file gone is an error, not the key kept in memory"
    );
}

#[tokio::test]
async fn a_key_the_in_process_signer_does_not_take_is_signed_with_through_gpg_said_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let key = engine.config().signing.key.clone();
    brainpool_key(dir.path(), &key).await;
    let (logs, _guard) = capture_logs();
    for _ in 0..3 {
        let signer = engine.signer().await.expect("gpg signs with it");
        assert!(format!("{signer:?}").starts_with("GpgSigner"), "{signer:?}");
        let signed = signer.clearsign(b"hello\n").await.expect("clearsign");
        assert!(signed.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"));
    }
    let said = logs.text();
    assert_eq!(said.matches("signing through gpg").count(), 1, "{said}");
    assert!(said.contains("ECDSA"), "{said}");
}

/// A brainpoolP256r1 signing key, which gpg uses and the in-process signer does not, exported to `key`.
async fn brainpool_key(dir: &Path, key: &Path) {
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .env("GNUPGHOME", home.as_os_str())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args.iter().copied())
    };
    let runner = SystemRunner;
    let uid = "brainpool <brainpool@example.org>";
    runner
        .run(gpg(&[
            "--quick-gen-key",
            uid,
            "brainpoolP256r1",
            "sign",
            "never",
        ]))
        .await
        .expect("gpg key");
    let secret = runner
        .run(gpg(&["--armor", "--export-secret-keys", uid]))
        .await
        .expect("export");
    let _ = runner
        .run(
            Command::new("gpgconf")
                .env("GNUPGHOME", home.as_os_str())
                .args(["--kill", "all"]),
        )
        .await;
    std::fs::write(key, secret.stdout).expect("key");
    std::fs::set_permissions(key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
}
