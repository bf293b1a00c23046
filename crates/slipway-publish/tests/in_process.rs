//! The in-process signer against gpg: the same key, fingerprint and public key; cleartext messages identical
//! to gpg's but for the signature; signatures that gpgv and `gpg --verify` accept; and the fall-back to gpg
//! for keys it does not take.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use slipway_exec::Command;
use slipway_publish::{load_signer, GpgSigner, InProcessSigner, SignError, Signer};

/// Texts that exercise every rule of the cleartext framework.
const TEXTS: &[&[u8]] = &[
    b"-----BEGIN PGP SIGNATURE-----\n- already looks escaped\n--\n-\nFrom the start of a line\nFrom\nfrom lower case\nFromage\ntrailing spaces   \ntrailing tab\t\n\n  \n\t\nin the middle  of a line\nlast line without a final newline  ",
    b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  bookworm-cloud-20261121.0.qcow2\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  bookworm-cloud-20261121.0.raw.xz\n",
    b"two final newlines\n\n",
    b"a carriage\rreturn inside, and a CR LF line\r\nend\n",
    b"no newline",
    b"\n",
    b"",
];

/// Writes `bytes` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

/// The part of a cleartext-signed message before its signature block.
fn cleartext_part(message: &[u8]) -> &[u8] {
    let marker = b"\n-----BEGIN PGP SIGNATURE-----\n";
    let at = message
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("a signature block");
    &message[..=at]
}

/// What gpgv says the signed text is (`--output -`), after checking the signature.
async fn gpgv_text(ring: &Path, message: &Path) -> Result<Vec<u8>, String> {
    let home = ring.parent().expect("parent").join("gnupg-verify");
    runner()
        .run(
            Command::new("gpgv")
                .env("GNUPGHOME", home.as_os_str())
                .arg("--keyring")
                .arg(ring.as_os_str())
                .args(["--output", "-"])
                .arg(message.as_os_str()),
        )
        .await
        .map(|out| out.stdout)
        .map_err(|e| format!("{e}"))
}

#[tokio::test]
async fn the_key_gpg_made_gives_the_same_fingerprint_and_public_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gpg = new_signer(tmp.path()).await;
    let ours = InProcessSigner::load(gpg.key_file()).await.expect("load");
    assert_eq!(ours.fingerprint(), gpg.fingerprint());
    // Byte for byte, so switching signers never changes the published keys/*.asc.
    assert_eq!(ours.public_key_armored(), gpg.public_key_armored());
    assert_eq!(ours.key_file(), gpg.key_file());

    // A binary key file reads the same.
    let binary = tmp.path().join("release.key.gpg");
    let dearmored = runner()
        .run(
            Command::new("gpg")
                .args(["--batch", "--dearmor"])
                .env("GNUPGHOME", tmp.path().join("no-home").as_os_str())
                .stdin(std::fs::read(gpg.key_file()).expect("key")),
        )
        .await
        .expect("dearmor");
    std::fs::write(&binary, dearmored.stdout).expect("write");
    let from_binary = InProcessSigner::load(&binary).await.expect("binary key");
    assert_eq!(from_binary.fingerprint(), gpg.fingerprint());
    assert_eq!(from_binary.public_key_armored(), gpg.public_key_armored());
}

#[tokio::test]
async fn cleartext_signatures_read_like_gpgs_and_verify_with_gpgv_and_gpg() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gpg = new_signer(tmp.path()).await;
    let ours = InProcessSigner::load(gpg.key_file()).await.expect("load");
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("keys")).expect("mkdir");
    std::fs::write(site.join("keys/release-key.asc"), ours.public_key_armored()).expect("key");
    let ring = keyring(&site, tmp.path()).await;

    for (i, text) in TEXTS.iter().enumerate() {
        let label = String::from_utf8_lossy(text);
        let by_gpg = gpg.clearsign(text).await.expect("gpg clearsign");
        let by_us = ours.clearsign(text).await.expect("in-process clearsign");
        // Header, dash-escaping, trailing whitespace, final newline: all as gpg writes them.
        assert_eq!(
            String::from_utf8_lossy(cleartext_part(&by_us)),
            String::from_utf8_lossy(cleartext_part(&by_gpg)),
            "text {label:?}"
        );
        assert!(by_us.ends_with(b"-----END PGP SIGNATURE-----\n"));

        let ours_path = write(tmp.path(), &format!("ours-{i}.asc"), &by_us);
        let gpgs_path = write(tmp.path(), &format!("gpgs-{i}.asc"), &by_gpg);
        let read_ours = gpgv_text(&ring, &ours_path)
            .await
            .unwrap_or_else(|e| panic!("gpgv rejects our signature of {label:?}: {e}"));
        let read_gpgs = gpgv_text(&ring, &gpgs_path).await.expect("gpg's verifies");
        assert_eq!(read_ours, read_gpgs, "text {label:?}");
        gpg_verify(ours.public_key_armored(), tmp.path(), &[&ours_path])
            .await
            .unwrap_or_else(|e| panic!("gpg --verify rejects {label:?}: {e}"));

        // The framework ignores trailing whitespace, so adding some keeps the signature good ...
        let padded = String::from_utf8_lossy(&by_us).replacen(
            "\n-----BEGIN PGP SIGNATURE-----",
            " \t \n-----BEGIN PGP SIGNATURE-----",
            1,
        );
        let padded_path = write(tmp.path(), &format!("padded-{i}.asc"), padded.as_bytes());
        if !label.contains('\r') {
            gpgv_text(&ring, &padded_path)
                .await
                .unwrap_or_else(|e| panic!("trailing blanks broke {label:?}: {e}"));
        }
    }

    // ... while a changed character breaks it: the checks above are real checks.
    let by_us = ours.clearsign(TEXTS[1]).await.expect("clearsign");
    let forged = String::from_utf8(by_us)
        .expect("text")
        .replacen("0123", "0124", 1);
    let forged_path = write(tmp.path(), "forged.asc", forged.as_bytes());
    assert!(gpgv(&ring, &[&forged_path]).await.is_err());
    assert!(
        gpg_verify(ours.public_key_armored(), tmp.path(), &[&forged_path])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn detached_signatures_verify_with_gpgv_and_gpg_and_replace_old_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ours = new_in_process_signer(tmp.path()).await;
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("keys")).expect("mkdir");
    std::fs::write(site.join("keys/release-key.asc"), ours.public_key_armored()).expect("key");
    let ring = keyring(&site, tmp.path()).await;

    // Larger than one read, not a multiple of it, with every byte value; and an empty file.
    let big: Vec<u8> = (0..(2 * 1024 * 1024 + 12345u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (name, content) in [("image.raw", &big[..]), ("empty", &[][..])] {
        let file = write(tmp.path(), name, content);
        let sig = tmp.path().join(format!("{name}.sig"));
        std::fs::write(&sig, b"a leftover from an interrupted run").expect("leftover");
        ours.detach_sign(&file, &sig).await.expect("detach_sign");
        let bytes = std::fs::read(&sig).expect("sig");
        // Binary, old-format signature packet, as gpg writes it.
        assert_eq!(bytes[0], 0x88, "{name}");
        gpgv(&ring, &[&sig, &file])
            .await
            .unwrap_or_else(|e| panic!("gpgv rejects the signature of {name}: {e}"));
        gpg_verify(ours.public_key_armored(), tmp.path(), &[&sig, &file])
            .await
            .unwrap_or_else(|e| panic!("gpg --verify rejects the signature of {name}: {e}"));
    }

    // A changed byte fails.
    let mut changed = big.clone();
    changed[1_500_000] ^= 1;
    let file = write(tmp.path(), "image.raw", &changed);
    assert!(gpgv(&ring, &[&tmp.path().join("image.raw.sig"), &file])
        .await
        .is_err());

    let err = ours
        .detach_sign(&tmp.path().join("missing"), &tmp.path().join("missing.sig"))
        .await
        .expect_err("missing file");
    assert!(matches!(err, SignError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

/// Makes a key with gpg directly, with `args` after `--quick-gen-key UID`, and exports its secret key to
/// `dir/<name>.key`. Extra gpg options (a faked time, a passphrase) go in `options`.
async fn gpg_key(dir: &Path, name: &str, options: &[&str], args: &[&str]) -> PathBuf {
    let home = dir.join(format!("gnupg-{name}"));
    std::fs::create_dir_all(&home).expect("home");
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let gpg = |extra: Vec<String>| {
        Command::new("gpg")
            .env("GNUPGHOME", home.as_os_str())
            .args(["--batch", "--pinentry-mode", "loopback"])
            .args(options.iter().copied())
            .args(extra)
    };
    let uid = format!("{name} <{name}@example.org>");
    let mut generate = vec!["--quick-gen-key".to_string(), uid.clone()];
    generate.extend(args.iter().map(|a| a.to_string()));
    runner().run(gpg(generate)).await.expect("gpg key");
    let secret = runner()
        .run(gpg(vec![
            "--armor".into(),
            "--export-secret-keys".into(),
            uid,
        ]))
        .await
        .expect("export");
    let _ = runner()
        .run(
            Command::new("gpgconf")
                .env("GNUPGHOME", home.as_os_str())
                .args(["--kill", "all"]),
        )
        .await;
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&key, secret.stdout).expect("write key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    key
}

#[tokio::test]
async fn an_rsa_key_is_signed_with_in_process_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = gpg_key(
        tmp.path(),
        "rsa",
        &["--passphrase", ""],
        &["rsa2048", "sign", "never"],
    )
    .await;
    let loaded = load_signer(runner(), &key).await.expect("load");
    assert_eq!(loaded.gpg_fallback, None);
    let gpg = GpgSigner::load(runner(), &key).await.expect("gpg load");
    assert_eq!(loaded.signer.fingerprint(), gpg.fingerprint());
    assert_eq!(loaded.signer.public_key_armored(), gpg.public_key_armored());
    let signed = loaded.signer.clearsign(TEXTS[0]).await.expect("sign");
    let message = write(tmp.path(), "rsa.asc", &signed);
    gpg_verify(gpg.public_key_armored(), tmp.path(), &[&message])
        .await
        .expect("gpg --verify");
}

#[tokio::test]
async fn keys_it_does_not_take_fall_back_to_gpg_which_signs_or_explains() {
    let tmp = tempfile::tempdir().expect("tempdir");

    // Brainpool ECDSA: gpg signs with it, the in-process signer does not.
    let brainpool = gpg_key(
        tmp.path(),
        "brainpool",
        &["--passphrase", ""],
        &["brainpoolP256r1", "sign", "never"],
    )
    .await;
    let err = InProcessSigner::load(&brainpool)
        .await
        .expect_err("brainpool is not signed with in process");
    assert!(matches!(err, SignError::Unsupported { .. }), "{err}");
    let loaded = load_signer(runner(), &brainpool)
        .await
        .expect("gpg takes it");
    let reason = loaded.gpg_fallback.as_deref().expect("gpg signs");
    assert!(reason.contains("ECDSA"), "{reason}");
    let signed = loaded.signer.clearsign(TEXTS[1]).await.expect("gpg signs");
    let message = write(tmp.path(), "brainpool.asc", &signed);
    gpg_verify(loaded.signer.public_key_armored(), tmp.path(), &[&message])
        .await
        .expect("gpg --verify");

    // Keys neither signer can use give gpg's error, the one slipway gave before.
    let protected = gpg_key(
        tmp.path(),
        "protected",
        &["--passphrase", "secret"],
        &["ed25519", "sign", "never"],
    )
    .await;
    let err = InProcessSigner::load(&protected)
        .await
        .expect_err("protected");
    assert!(matches!(err, SignError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("passphrase"), "{err}");
    let err = load_signer(runner(), &protected)
        .await
        .expect_err("no signer without the passphrase");
    assert_names_file_and_fix(&err, &protected);
    let gpgs = GpgSigner::load(runner(), &protected)
        .await
        .expect_err("gpg");
    assert_eq!(err.to_string(), gpgs.to_string());

    // Made in 2020 to expire a day later.
    let expired = gpg_key(
        tmp.path(),
        "expired",
        &[
            "--passphrase",
            "",
            "--faked-system-time",
            "20200101T000000!",
        ],
        &["ed25519", "sign", "1d"],
    )
    .await;
    let err = InProcessSigner::load(&expired).await.expect_err("expired");
    assert!(err.to_string().contains("expired"), "{err}");
    let err = load_signer(runner(), &expired).await.expect_err("expired");
    assert_names_file_and_fix(&err, &expired);
    let gpgs = GpgSigner::load(runner(), &expired).await.expect_err("gpg");
    assert_eq!(err.to_string(), gpgs.to_string());
}

fn assert_names_file_and_fix(err: &SignError, file: &Path) {
    let text = err.to_string();
    assert!(matches!(err, SignError::KeyFile { .. }), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("slipway keys init"), "{text}");
}

#[tokio::test]
async fn bad_key_files_give_the_errors_they_always_gave() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let made = new_signer(tmp.path()).await;

    let missing = tmp.path().join("missing.key");
    let empty = write(tmp.path(), "empty.key", b"");
    let garbage = write(tmp.path(), "garbage.key", b"this is not a key\n");
    let public_only = write(
        tmp.path(),
        "public.asc",
        made.public_key_armored().as_bytes(),
    );
    for (file, says) in [
        (&missing, "does not exist"),
        (&empty, "empty"),
        (&garbage, "OpenPGP"),
        (&public_only, "no secret key"),
    ] {
        let ours = load_signer(runner(), file).await.expect_err("no signer");
        let gpgs = GpgSigner::load(runner(), file)
            .await
            .expect_err("no signer");
        assert_names_file_and_fix(&ours, file);
        assert!(ours.to_string().contains(says), "{ours}");
        assert_eq!(ours.to_string(), gpgs.to_string());
    }
}

#[tokio::test]
async fn publishing_loads_the_in_process_signer_for_the_key_keys_init_makes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let made = new_signer(tmp.path()).await;
    let loaded = load_signer(runner(), made.key_file()).await.expect("load");
    assert_eq!(loaded.gpg_fallback, None);
    assert!(
        format!("{:?}", loaded.signer).starts_with("InProcessSigner"),
        "{:?}",
        loaded.signer
    );
    assert_eq!(loaded.signer.fingerprint(), made.fingerprint());
}
