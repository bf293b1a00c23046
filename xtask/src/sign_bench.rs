//! The signing benchmark: the in-process signer against gpg, with the same key, on the work a publish does:
//! clearsigning CHECKSUM texts and making detached signatures of files, one after another.
//!
//! The key is made as `slipway keys init` makes it (Ed25519, through gpg). Both signers sign the very same
//! texts and files, whose bytes are in the page cache before either is timed; a sample of each signer's
//! output is checked with gpgv afterwards, so a fast signer that signs wrongly cannot win.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use slipway_exec::{Command, CommandRunner, SystemRunner};
use slipway_publish::{GpgSigner, InProcessSigner, Signer};

/// CHECKSUM texts clearsigned per signer.
const TEXTS: usize = 200;

/// Files signed (detached) per signer.
const FILES: usize = 200;

/// The size of each file.
const FILE_BYTES: usize = 1 << 20;

/// Lines of a CHECKSUM: the formats of a typical release (qcow2, raw.xz, box, OCI archive).
const CHECKSUM_LINES: usize = 4;

/// Seconds each signer took for each kind of signature.
struct Timings {
    clearsign: f64,
    detach: f64,
}

/// Runs the section and returns its markdown.
pub async fn sign_bench(work: &Path) -> anyhow::Result<String> {
    let dir = work.join("sign");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
    let key = dir.join("release.key");
    drop(
        GpgSigner::generate(
            Arc::clone(&runner),
            &key,
            "Bench Releases <bench@example.org>",
        )
        .await?,
    );
    let gpg = GpgSigner::load(Arc::clone(&runner), &key).await?;
    let ours = InProcessSigner::load(&key).await?;
    if gpg.fingerprint() != ours.fingerprint() {
        bail!("the signers disagree on the key's fingerprint");
    }

    let load_before = load_average();
    let texts: Vec<String> = (0..TEXTS).map(checksum_text).collect();
    let files = write_files(&dir)?;
    eprintln!("gpg …");
    let by_gpg = run(&gpg, &texts, &files, &dir.join("gpg")).await?;
    eprintln!("in process …");
    let in_process = run(&ours, &texts, &files, &dir.join("in-process")).await?;
    verify_samples(&runner, &gpg, &dir, &files).await?;

    let per_ms = |seconds: f64, n: usize| seconds * 1e3 / n as f64;
    let row = |what: &str, n: usize, g: f64, o: f64| {
        format!(
            "| {what} | {g:.3} | {o:.3} | {:.2} | {:.3} | {:.0}× |\n",
            per_ms(g, n),
            per_ms(o, n),
            g / o
        )
    };
    let mut doc = String::from("## Signing\n\n");
    doc.push_str(&format!(
        "{TEXTS} clearsigned CHECKSUM texts ({CHECKSUM_LINES} lines, {} bytes each) and {FILES} detached signatures of \
{} MiB files, made one after another as a publish makes them, with the Ed25519 key `slipway keys init` makes. \
Run on {}.\n\n",
        texts[0].len(),
        FILE_BYTES >> 20,
        jiff::Timestamp::now().strftime("%Y-%m-%d")
    ));
    doc.push_str("| signatures | gpg (s) | in process (s) | gpg, each (ms) | in process, each (ms) | gpg / in process |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
    doc.push_str(&row(
        &format!("{TEXTS} clearsigned CHECKSUMs"),
        TEXTS,
        by_gpg.clearsign,
        in_process.clearsign,
    ));
    doc.push_str(&row(
        &format!("{FILES} detached, {} MiB each", FILE_BYTES >> 20),
        FILES,
        by_gpg.detach,
        in_process.detach,
    ));
    doc.push_str(&row(
        "all",
        TEXTS + FILES,
        by_gpg.clearsign + by_gpg.detach,
        in_process.clearsign + in_process.detach,
    ));
    doc.push_str(&format!(
        "\nLoad average (1 min) {load_before} before and {} after the run; the machine is shared, which \
slows gpg's process starts more than in-process hashing, so compare ratios from runs at a similar load.\n\n\
For every signature gpg pays a gpg process, a gpg-agent start (`GpgSigner` stops the agent after each \
operation so that none outlives it) and a gpgconf call to stop it; the in-process signer keeps the parsed \
key and only hashes and signs. A detached signature is otherwise SHA-256 over the file, which both do at \
the speed of the same hardware, so that ratio shrinks as files grow; a CHECKSUM is a few hundred bytes, so \
there the ratio is the per-signature overhead alone. A sample of both signers' output is checked with gpgv \
after the timing.\n",
        load_average()
    ));
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(doc)
}

/// The one-minute load average, as /proc/loadavg gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// A CHECKSUM in `sha256sum` format for release `n`: distinct hashes, the usual file names.
fn checksum_text(n: usize) -> String {
    ["box", "oci.tar", "qcow2", "raw.xz"]
        .iter()
        .enumerate()
        .map(|(i, ext)| {
            let sha = slipway_model::sha256_hex(format!("{n}/{i}").as_bytes());
            format!("{sha}  bookworm-cloud-2026{:04}.0.{ext}\n", n % 10_000)
        })
        .collect()
}

/// Writes the files to sign, each different, and reads them once so both signers find them cached.
fn write_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let files_dir = dir.join("files");
    std::fs::create_dir_all(&files_dir)?;
    let mut state: u64 = 0x5eed;
    let mut files = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let mut bytes = vec![0u8; FILE_BYTES];
        for chunk in bytes.chunks_mut(8) {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let path = files_dir.join(format!("image-{i:03}.raw"));
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    for path in &files {
        std::fs::read(path)?;
    }
    Ok(files)
}

/// Signs every text and every file with `signer`, in order, writing signatures under `out`.
async fn run(
    signer: &dyn Signer,
    texts: &[String],
    files: &[PathBuf],
    out: &Path,
) -> anyhow::Result<Timings> {
    std::fs::create_dir_all(out)?;
    let start = Instant::now();
    for (i, text) in texts.iter().enumerate() {
        let signed = signer.clearsign(text.as_bytes()).await?;
        // Kept for the check afterwards; writing a few hundred bytes is part of what a publish does too.
        std::fs::write(out.join(format!("CHECKSUM-{i:03}")), signed)?;
    }
    let clearsign = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for file in files {
        let name = file.file_name().context("file name")?.to_string_lossy();
        signer
            .detach_sign(file, &out.join(format!("{name}.sig")))
            .await?;
    }
    let detach = start.elapsed().as_secs_f64();
    Ok(Timings { clearsign, detach })
}

/// Checks the first and last CHECKSUM and signature of each signer with gpgv.
async fn verify_samples(
    runner: &Arc<dyn CommandRunner>,
    gpg: &GpgSigner,
    dir: &Path,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    let ring = dir.join("release-key.gpg");
    let home = dir.join("gnupg-verify");
    std::fs::create_dir_all(&home)?;
    let dearmored = runner
        .run(
            Command::new("gpg")
                .env("GNUPGHOME", home.as_os_str())
                .args(["--batch", "--dearmor"])
                .stdin(gpg.public_key_armored().as_bytes().to_vec()),
        )
        .await?;
    std::fs::write(&ring, dearmored.stdout)?;
    let gpgv = |args: Vec<PathBuf>| {
        let mut command = Command::new("gpgv")
            .env("GNUPGHOME", home.as_os_str())
            .arg("--keyring")
            .arg(ring.as_os_str());
        for a in args {
            command = command.arg(a.as_os_str());
        }
        command
    };
    for signer in ["gpg", "in-process"] {
        let out = dir.join(signer);
        for i in [0, TEXTS - 1] {
            runner
                .run(gpgv(vec![out.join(format!("CHECKSUM-{i:03}"))]))
                .await
                .with_context(|| format!("gpgv on CHECKSUM {i} signed by {signer}"))?;
        }
        for file in [&files[0], &files[FILES - 1]] {
            let name = file.file_name().context("file name")?.to_string_lossy();
            runner
                .run(gpgv(vec![out.join(format!("{name}.sig")), file.clone()]))
                .await
                .with_context(|| format!("gpgv on {name}.sig by {signer}"))?;
        }
    }
    Ok(())
}
