//! `cargo xtask bench`: measures the example compose and its boot test against a naive baseline run on the
//! same machine in the same command, and writes the figures to `docs/benchmarks.md`.
//!
//! The baseline produces the same outputs step by step with the plain tools: mmdebstrap, `mkfs.ext4 -d`,
//! `qemu-img convert -c` for the qcow2 and single-threaded `xz` for the raw.xz. The format writers are also
//! timed on the baseline's own raw file, so each format's speed is compared on identical input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use slipway_boottest::{Accel, BootTestRequest, BootTester};
use slipway_compose::{ComposeRequest, Composer};
use slipway_exec::{Command, CommandRunner, SystemRunner};
use slipway_model::{ComposeId, OutputFormat, Recipe};

mod lifecycle_bench;
mod publish_bench;
mod repo_bench;
mod sections;
mod sign_bench;

const USAGE: &str = "usage: cargo xtask bench [SECTION…]

Sections (all when none is named):
  compose   compose and boot test of examples/debian-cloud against a naive baseline (root, Debian mirror)
  parse     parsing Debian's bookworm main amd64 Packages against python3-apt (Debian mirror)
  affected  `affected` over 1,000 synthetic locks of 500 packages against a scan of every lock
  noop      `slipway run --once` when nothing changed, against the compose of the same project (root, mirror)
  warm      a compose after a kernel-cmdline-only recipe change, against a cold one (root, mirror)
  boottest  boot-to-first-test, per-test overhead and the default plan of the example image (root, mirror)
  publish   republishing a stream of 500 releases after a revocation, against a stream of one release
  sign      200 clearsigned CHECKSUMs and 200 detached signatures of 1 MiB files, in process against gpg
  simulate  `slipway simulate` of 20 streams over 3650 days, against one stream over 365 days
  revoke    `slipway revoke` on a stream of 500 releases, command to republished tree, against one of 2

Each section replaces its own part of docs/benchmarks.md.";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("bench") {
        bail!("{USAGE}");
    }
    let mut wanted: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    if wanted.is_empty() {
        wanted = sections::ALL.to_vec();
    }
    for name in &wanted {
        if !sections::ALL.contains(name) {
            bail!("unknown section {name:?}\n\n{USAGE}");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let root = workspace_root();
    let work = PathBuf::from("/var/tmp/slipway-bench");
    std::fs::create_dir_all(&work)?;
    for name in wanted {
        eprintln!("== {name}");
        let fragment = match name {
            "compose" => runtime.block_on(bench())?,
            "parse" => format!(
                "## Packages parsing\n\n{}\nGoal: faster than python3-apt.\n",
                repo_bench::parse_bench(&work)?
            ),
            "affected" => sections::affected_bench()?,
            "noop" => runtime.block_on(sections::noop_bench(&root, &work))?,
            "warm" => runtime.block_on(sections::warm_bench(&root, &work))?,
            "boottest" => runtime.block_on(sections::boottest_bench(&root, &work))?,
            "publish" => runtime.block_on(publish_bench::publish_bench(&work))?,
            "sign" => runtime.block_on(sign_bench::sign_bench(&work))?,
            "simulate" => lifecycle_bench::simulate_bench(&root, &work)?,
            "revoke" => runtime.block_on(lifecycle_bench::revoke_bench(&root, &work))?,
            other => bail!("unknown section {other:?}"),
        };
        print!("{fragment}");
        sections::update_doc(&root.join("docs/benchmarks.md"), name, &fragment)?;
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn timed<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    let start = Instant::now();
    let value = future.await?;
    Ok((value, start.elapsed().as_secs_f64()))
}

async fn bench() -> anyhow::Result<String> {
    let root = workspace_root();
    let recipe = Recipe::load(&root.join("examples/debian-cloud/recipes/bookworm-cloud.toml"))?;
    let scratch = PathBuf::from("/var/tmp/slipway-bench");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)?;
    let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let epoch = jiff::Timestamp::now().as_second() / 86_400 * 86_400;

    // slipway's compose.
    eprintln!("slipway compose …");
    let compose_dir = scratch.join("slipway");
    std::fs::create_dir_all(&compose_dir)?;
    let request = ComposeRequest {
        recipe: recipe.clone(),
        compose_id: ComposeId("bench-20260101.0".into()),
        work_dir: compose_dir.clone(),
        source_date_epoch: epoch,
        threads,
        cache_dir: None,
        expected_lock: None,
    };
    let composer = Composer::new(Arc::clone(&runner));
    let (output, compose_total) = timed(async {
        composer
            .compose(&request, &|step: &str| eprintln!("  {step}"))
            .await
            .context("slipway compose")
    })
    .await?;

    // The boot test of slipway's qcow2, under TCG as the goal demands, and under KVM when it works.
    let qcow2 = output
        .images
        .iter()
        .find(|i| i.format == OutputFormat::Qcow2)
        .context("the example recipe writes a qcow2")?;
    let tester = BootTester::new(Arc::clone(&runner));
    let mut boots = Vec::new();
    let kvm = slipway_boottest::probe_kvm(runner.as_ref(), &scratch).await;
    let accels: Vec<Accel> = if kvm == Accel::Kvm {
        vec![Accel::Tcg, Accel::Kvm]
    } else {
        vec![Accel::Tcg]
    };
    for accel in accels {
        eprintln!("boot test under {accel} …");
        let work_dir = scratch.join(format!("boot-{accel}"));
        std::fs::create_dir_all(&work_dir)?;
        let report = tester
            .run(&BootTestRequest {
                compose: request.compose_id.clone(),
                image: qcow2.path.clone(),
                tests: slipway_boottest::builtin_tests(),
                lock: output.lock.clone(),
                exclude_docs: recipe.exclude_docs,
                exclude_locales: recipe.exclude_locales,
                work_dir,
                memory_mib: 1024,
                cpus: 2,
                boot_allowance: Duration::from_secs(600),
                disk_gib: 4,
                accel,
                reruns: 1,
                memory_budget_mib: 4096,
                cpu_budget: 2,
                tuning: slipway_boottest::VmTuning::default(),
            })
            .await?;
        let passed = report
            .cases
            .iter()
            .filter(|c| c.outcome == slipway_model::Outcome::Passed)
            .count();
        boots.push((accel, report.seconds, passed, report.cases.len()));
    }

    // The naive baseline, step by step.
    eprintln!("baseline …");
    let base = scratch.join("baseline");
    std::fs::create_dir_all(&base)?;
    let tree = base.join("root");
    let mut mmdebstrap = Command::new("mmdebstrap")
        .arg(format!("--variant={}", recipe.variant))
        .arg("--mode=root")
        .arg(format!("--include={}", recipe.packages.join(",")))
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .arg(&recipe.suite)
        .arg(&tree);
    for source in &recipe.sources {
        mmdebstrap = mmdebstrap.arg(format!(
            "deb {} {} {}",
            source.url,
            source.suite,
            source.components.join(" ")
        ));
    }
    let (_, base_rootfs) = timed(async { Ok(runner.run(mmdebstrap).await?) }).await?;
    let raw = base.join("root.img");
    let size_mib = directory_mib(&tree)? * 12 / 10 + u64::from(recipe.disk.headroom_mib);
    let (_, base_mkfs) = timed(async {
        Ok(runner
            .run(
                Command::new("mkfs.ext4")
                    .args(["-q", "-d"])
                    .arg(&tree)
                    .arg(&raw)
                    .arg(format!("{size_mib}M")),
            )
            .await?)
    })
    .await?;
    let (_, base_qcow2) = timed(async {
        Ok(runner
            .run(
                Command::new("qemu-img")
                    .args(["convert", "-c", "-O", "qcow2"])
                    .arg(&raw)
                    .arg(base.join("root.qcow2")),
            )
            .await?)
    })
    .await?;
    let (_, base_xz) = timed(async {
        Ok(runner
            .run(Command::new("xz").args(["-T1", "-6", "-k"]).arg(&raw))
            .await?)
    })
    .await?;
    let baseline_total = base_rootfs + base_mkfs + base_qcow2 + base_xz;

    // slipway's writers on the very same raw file.
    let raw_for_ours = raw.clone();
    let ours_xz_out = base.join("ours.raw.xz");
    let ours_qcow2_out = base.join("ours.qcow2");
    let (ours_xz, ours_xz_secs) = timed(async {
        let (raw, out) = (raw_for_ours.clone(), ours_xz_out.clone());
        Ok(tokio::task::spawn_blocking(move || {
            slipway_compose::formats::raw_xz::write_raw_xz(&raw, &out, threads)
        })
        .await??)
    })
    .await?;
    let (ours_qcow2, ours_qcow2_secs) = timed(async {
        let (raw, out) = (raw_for_ours.clone(), ours_qcow2_out.clone());
        Ok(tokio::task::spawn_blocking(move || {
            slipway_compose::formats::qcow2::write_qcow2(&raw, &out, threads)
        })
        .await??)
    })
    .await?;
    let base_xz_size = std::fs::metadata(base.join("root.img.xz"))?.len();
    let base_qcow2_size = std::fs::metadata(base.join("root.qcow2"))?.len();

    let step = |name: &str| {
        output
            .timings
            .iter()
            .find(|t| t.step == name)
            .map_or(0.0, |t| t.seconds)
    };
    let mut doc = String::new();
    doc.push_str(&format!(
        "Compose and boot test, run on {} for `examples/debian-cloud` ({} packages).\n\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d"),
        output.lock.packages.len()
    ));
    doc.push_str(
        "## Compose\n\n| step | slipway (s) | naive baseline (s) |\n| --- | ---: | ---: |\n",
    );
    doc.push_str(&format!(
        "| root filesystem (mmdebstrap) | {:.1} | {:.1} |\n",
        step("rootfs"),
        base_rootfs
    ));
    doc.push_str(&format!("| customize | {:.1} | — |\n", step("customize")));
    doc.push_str(&format!(
        "| assemble disk (GPT, ESP, ext4) | {:.1} | {:.1} (`mkfs.ext4 -d`) |\n",
        step("assemble"),
        base_mkfs
    ));
    doc.push_str(&format!(
        "| qcow2 | {:.1} | {:.1} (`qemu-img convert -c`) |\n",
        step("qcow2"),
        base_qcow2
    ));
    doc.push_str(&format!(
        "| raw.xz | {:.1} | {:.1} (`xz -T1 -6`) |\n",
        step("raw.xz"),
        base_xz
    ));
    doc.push_str(&format!(
        "| **total (wall)** | **{compose_total:.1}** | **{baseline_total:.1}** |\n\nslipway writes the two formats at the same time, so its total is less than the sum of its steps.\n**Compose ratio: {:.2}× the baseline's time** (goal ≤ 0.5×).\n\n",
        compose_total / baseline_total
    ));
    doc.push_str("## Formats on identical input (the baseline's raw file)\n\n| format | tool (s) | slipway (s) | speed-up | tool size (MiB) | slipway size (MiB) |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
    let mib = |b: u64| b as f64 / 1048576.0;
    doc.push_str(&format!(
        "| raw.xz | {base_xz:.1} | {ours_xz_secs:.1} | {:.2}× | {:.1} | {:.1} |\n",
        base_xz / ours_xz_secs,
        mib(base_xz_size),
        mib(ours_xz.size)
    ));
    doc.push_str(&format!(
        "| qcow2 | {base_qcow2:.1} | {ours_qcow2_secs:.1} | {:.2}× | {:.1} | {:.1} |\n\nGoal: each format ≥ 2× its single-threaded tool.\n\n",
        base_qcow2 / ours_qcow2_secs,
        mib(base_qcow2_size),
        mib(ours_qcow2.size)
    ));
    doc.push_str("## Boot test\n\n| accelerator | seconds (QEMU start to last result) | testcases passed |\n| --- | ---: | ---: |\n");
    for (accel, seconds, passed, total) in &boots {
        doc.push_str(&format!("| {accel} | {seconds:.1} | {passed}/{total} |\n"));
    }
    doc.push_str("\nGoal: ≤ 60 s under TCG on 2 cores.\n");
    doc.push_str(READING);
    std::fs::remove_dir_all(&scratch)?;
    Ok(doc)
}

/// What the figures mean and where the time goes; kept with every run's tables.
const READING: &str = "
## Reading the figures

- A compose is mmdebstrap (the mirror and dpkg) plus compression; everything else takes seconds. xz at
  preset 6 dominates, so slipway compresses independent blocks (4–16 MiB, cut where the content says, so a
  warm rebuild can reuse them) on every core, skips holes and zero
  MiB, stores already-compressed MiB (initramfs, compressed files) without spending LZMA time on them, and
  gives both writers all cores at once: qcow2 is done in seconds and xz then has the whole machine.
- The rootfs step differs from plain mmdebstrap by the lock read (dpkg-query) and the dpkg path filters that
  drop documentation and translations; its time moves with the mirror from run to run.
- The formats table compares each writer with its tool on the very same raw file; slipway's outputs are a
  few percent larger than single-threaded xz and qemu-img, because blocks and clusters are compressed
  independently so that cores can share the work (and, for xz, so that unchanged blocks can be reused).
- Under TCG the boot test's time is mostly cloud-init's four Python stages; firmware, GRUB and the kernel
  take about 20 s before userspace. KVM is used whenever the probe says it can run a guest; on the nested
  hosts of this project's CI it cannot, so the figure above is the software-emulated one.
";

fn directory_mib(dir: &Path) -> anyhow::Result<u64> {
    let out = std::process::Command::new("du")
        .args(["-s", "-m", "--apparent-size"])
        .arg(dir)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0))
}
