//! Shared helpers for the integration tests: a key, fake images in a fake blob store, site inputs, and
//! verification with Debian's gpgv.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use slipway_exec::{Command, CommandRunner, SystemRunner};
use slipway_model::{
    sha256_hex, ArtifactKind, ComposeId, OutputFormat, Release, ReleaseState, Version,
};
use slipway_publish::{
    GpgSigner, InProcessSigner, PublishFile, ReleaseInput, SiteInput, StreamInput,
};

pub const STREAM: &str = "bookworm-cloud";
pub const BASE_URL: &str = "https://images.example.org/pub";

pub fn runner() -> Arc<dyn CommandRunner> {
    Arc::new(SystemRunner)
}

pub async fn new_signer(dir: &Path) -> GpgSigner {
    GpgSigner::generate(
        runner(),
        &dir.join("release.key"),
        "Slipway Test Releases <releases@example.org>",
    )
    .await
    .expect("key generation")
}

/// A key made by gpg as `slipway keys init` makes it, loaded by the in-process signer publishing uses.
pub async fn new_in_process_signer(dir: &Path) -> InProcessSigner {
    let made = new_signer(dir).await;
    InProcessSigner::load(made.key_file())
        .await
        .expect("the in-process signer loads the key gpg made")
}

pub fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// Writes a fake image into the blob dir and describes it.
pub fn blob(blobs: &Path, kind: ArtifactKind, file_name: &str, content: &[u8]) -> PublishFile {
    std::fs::create_dir_all(blobs).expect("blob dir");
    let sha256 = sha256_hex(content);
    let source = blobs.join(sha256.as_str());
    std::fs::write(&source, content).expect("blob");
    PublishFile {
        kind,
        file_name: file_name.to_string(),
        sha256,
        size: content.len() as u64,
        source,
    }
}

/// A release of [`STREAM`] with a qcow2 and a raw.xz image of distinct fake content.
pub fn release(blobs: &Path, version: &str, state: ReleaseState, fill: usize) -> ReleaseInput {
    let version: Version = version.parse().expect("version");
    let day = format!(
        "{}-{}-{}T12:00:00Z",
        &version.date()[0..4],
        &version.date()[4..6],
        &version.date()[6..8]
    );
    let qcow2 = vec![b'q'; 1000 + fill];
    let raw = format!("raw image {version} ").repeat(200 + fill);
    ReleaseInput {
        release: Release {
            stream: STREAM.into(),
            version: version.clone(),
            compose: ComposeId(format!("bookworm-cloud-{}.0", version.date())),
            state,
            created_at: at(&day),
            published_at: (state != ReleaseState::Pending).then(|| at(&day)),
            revocation: None,
        },
        files: vec![
            blob(
                blobs,
                ArtifactKind::Image(OutputFormat::Qcow2),
                &format!("{STREAM}-{version}.qcow2"),
                &qcow2,
            ),
            blob(
                blobs,
                ArtifactKind::Image(OutputFormat::RawXz),
                &format!("{STREAM}-{version}.raw.xz"),
                raw.as_bytes(),
            ),
        ],
    }
}

pub fn site(publish_dir: &Path, releases: Vec<ReleaseInput>) -> SiteInput {
    SiteInput {
        publish_dir: publish_dir.to_path_buf(),
        base_url: Some(format!("{BASE_URL}/")),
        title: "Example <Images> & more".into(),
        streams: vec![StreamInput {
            name: STREAM.into(),
            description: "Debian 12 cloud image, \"every two weeks\"".into(),
            architecture: "amd64".into(),
            releases,
            stale: None,
            eol: None,
        }],
        generated_at: at("2026-11-21T13:14:15Z"),
        durable: true,
        known_fingerprints: Default::default(),
    }
}

/// Dearmors the published key into a keyring gpgv reads, in a scratch GNUPGHOME.
pub async fn keyring(site: &Path, scratch: &Path) -> PathBuf {
    let home = scratch.join("gnupg-verify");
    std::fs::create_dir_all(&home).expect("home");
    let armored = std::fs::read(site.join("keys/release-key.asc")).expect("published key");
    let out = runner()
        .run(
            Command::new("gpg")
                .env("GNUPGHOME", home.as_os_str())
                .args(["--batch", "--dearmor"])
                .stdin(armored),
        )
        .await
        .expect("gpg --dearmor");
    let ring = scratch.join("release-key.gpg");
    std::fs::write(&ring, out.stdout).expect("keyring");
    ring
}

/// Runs `gpg --verify` in a fresh GNUPGHOME under `scratch` that holds only `public_key`; Ok when the
/// signature is good.
pub async fn gpg_verify(public_key: &str, scratch: &Path, args: &[&Path]) -> Result<(), String> {
    let home = scratch.join("gnupg-gpg-verify");
    if !home.exists() {
        std::fs::create_dir_all(&home).expect("home");
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        runner()
            .run(
                Command::new("gpg")
                    .env("GNUPGHOME", home.as_os_str())
                    .args(["--batch", "--import"])
                    .stdin(public_key.as_bytes().to_vec()),
            )
            .await
            .expect("gpg --import");
    }
    let mut cmd = Command::new("gpg")
        .env("GNUPGHOME", home.as_os_str())
        .args(["--batch", "--verify"]);
    for a in args {
        cmd = cmd.arg(a.as_os_str());
    }
    let result = runner()
        .run(cmd)
        .await
        .map(drop)
        .map_err(|e| format!("{e}"));
    // Importing and verifying start an agent for the home; do not leave it behind.
    let _ = runner()
        .run(
            Command::new("gpgconf")
                .env("GNUPGHOME", home.as_os_str())
                .args(["--kill", "all"]),
        )
        .await;
    result
}

/// Runs gpgv; Ok when the signature is good.
pub async fn gpgv(ring: &Path, args: &[&Path]) -> Result<(), String> {
    let home = ring.parent().expect("parent").join("gnupg-verify");
    let mut cmd = Command::new("gpgv")
        .env("GNUPGHOME", home.as_os_str())
        .arg("--keyring")
        .arg(ring.as_os_str());
    for a in args {
        cmd = cmd.arg(a.as_os_str());
    }
    runner()
        .run(cmd)
        .await
        .map(drop)
        .map_err(|e| format!("{e}"))
}

/// Every regular file under `root` (following links, as a web server does) with its bytes, for before/after
/// checks.
pub fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            if std::fs::metadata(&path).expect("metadata").is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("prefix").to_path_buf();
                out.push((rel, std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}
