//! Making and loading signing keys, and leaving no gpg-agent behind.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use slipway_publish::{GpgSigner, SignError, Signer};

fn assert_names_file_and_fix(err: &SignError, file: &std::path::Path) {
    let text = err.to_string();
    assert!(matches!(err, SignError::KeyFile { .. }), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("slipway keys init"), "{text}");
}

#[tokio::test]
async fn keys_are_generated_once_loaded_and_bad_files_are_explained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key_file = tmp.path().join("release.key");
    let made = new_signer(tmp.path()).await;
    assert_eq!(made.fingerprint().len(), 40);
    let mode = std::fs::metadata(&key_file)
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let armored = std::fs::read_to_string(&key_file).expect("key");
    assert!(armored.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));

    let err = GpgSigner::generate(runner(), &key_file, "Another <a@example.org>")
        .await
        .expect_err("no overwrite");
    assert!(matches!(err, SignError::Exists { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&key_file).expect("key"), armored);

    let loaded = GpgSigner::load(runner(), &key_file).await.expect("load");
    assert_eq!(loaded.fingerprint(), made.fingerprint());
    assert_eq!(loaded.public_key_armored(), made.public_key_armored());
    let signed = loaded.clearsign(b"hello\n").await.expect("clearsign");
    assert!(signed.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"));

    let missing = tmp.path().join("missing.key");
    let err = GpgSigner::load(runner(), &missing)
        .await
        .expect_err("missing");
    assert_names_file_and_fix(&err, &missing);
    assert!(err.to_string().contains("does not exist"), "{err}");

    let garbage = tmp.path().join("garbage.key");
    std::fs::write(&garbage, "this is not a key\n").expect("write");
    let err = GpgSigner::load(runner(), &garbage)
        .await
        .expect_err("garbage");
    assert_names_file_and_fix(&err, &garbage);

    let empty = tmp.path().join("empty.key");
    std::fs::write(&empty, "").expect("write");
    let err = GpgSigner::load(runner(), &empty).await.expect_err("empty");
    assert_names_file_and_fix(&err, &empty);

    let public_only = tmp.path().join("public.asc");
    std::fs::write(&public_only, made.public_key_armored()).expect("write");
    let err = GpgSigner::load(runner(), &public_only)
        .await
        .expect_err("public only");
    assert_names_file_and_fix(&err, &public_only);
    assert!(err.to_string().contains("no secret key"), "{err}");

    drop((made, loaded));
    // Each operation stops its agent; none may be left (zombies waiting for a reaper do not count).
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if cmdline.contains("gpg-agent")
            && cmdline.contains("slipway-gpg-")
            && !stat.contains(") Z ")
        {
            alive.push(cmdline);
        }
    }
    assert!(alive.is_empty(), "gpg-agents left behind: {alive:?}");
}
