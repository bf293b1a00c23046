//! The benchmark sections besides the compose one, and the upkeep of docs/benchmarks.md.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use slipway_compose::{ComposeRequest, Composer};
use slipway_exec::{CommandRunner, SystemRunner};
use slipway_model::{ComposeId, Lock, LockedPackage, Recipe};
use slipway_repo::{RecipeLock, ReverseIndex};

/// Every section, in the order they appear in the document.
pub const ALL: &[&str] = &[
    "compose", "parse", "affected", "noop", "warm", "boottest", "publish", "sign", "simulate",
    "revoke",
];

const HEADER: &str = "# Benchmarks

Measured by `cargo xtask bench [SECTION…]` (the compose, no-op and warm sections need root and the Debian
mirror). Every figure is from one run on this project's CI machine kind (2 cores, 24 GiB, Debian 12); each
baseline runs in the same command, so the ratios compare like with like even when absolute times move with
the mirror and the machine. Each section is replaced on its own when it is run again.
";

/// Replaces (or adds) the section `name` of the benchmarks document.
pub fn update_doc(path: &Path, name: &str, fragment: &str) -> anyhow::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let mut parts: Vec<(String, String)> = Vec::new();
    for section in ALL {
        let begin = format!("<!-- bench:{section} -->");
        let end = format!("<!-- /bench:{section} -->");
        let body = if *section == name {
            fragment.to_string()
        } else if let (Some(b), Some(e)) = (existing.find(&begin), existing.find(&end)) {
            existing[b + begin.len()..e].trim().to_string()
        } else {
            continue;
        };
        parts.push((section.to_string(), body));
    }
    let mut doc = String::from(HEADER);
    for (section, body) in parts {
        doc.push_str(&format!(
            "\n<!-- bench:{section} -->\n{}\n<!-- /bench:{section} -->\n",
            body.trim()
        ));
    }
    std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("updated section {name} of {}", path.display());
    Ok(())
}

/// A deterministic pseudo-random sequence, so every run measures the same synthetic locks.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

pub(crate) fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// `affected` for a 200-package batch over 1,000 locks of 500 packages, against a scan of every lock.
pub fn affected_bench() -> anyhow::Result<String> {
    const LOCKS: usize = 1_000;
    const PER_LOCK: usize = 500;
    const POOL: usize = 8_000;
    const BATCH: usize = 200;
    let mut rng = Lcg(0x5eed);
    // Binaries come from sources in groups of four, as libraries and their tools do.
    let name = |i: usize| format!("pkg{i}");
    let source = |i: usize| format!("src{}", i / 4);
    let locks: Vec<RecipeLock> = (0..LOCKS)
        .map(|l| {
            let mut picked = HashSet::new();
            while picked.len() < PER_LOCK {
                picked.insert(rng.next(POOL));
            }
            RecipeLock {
                recipe: format!("recipe{l:04}"),
                streams: vec![format!("stream{l:04}")],
                compose: ComposeId(format!("recipe{l:04}-20261121.0")),
                lock: Lock::new(
                    picked
                        .into_iter()
                        .map(|i| LockedPackage {
                            name: name(i),
                            version: format!("1.{}", i % 7),
                            architecture: "amd64".into(),
                            sha256: None,
                            source: Some(source(i)),
                            suite: None,
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    let batch: Vec<String> = (0..BATCH)
        .map(|i| {
            let p = rng.next(POOL);
            if i % 4 == 0 {
                source(p)
            } else {
                name(p)
            }
        })
        .collect();

    let start = Instant::now();
    let index = ReverseIndex::new(locks.clone());
    let build = start.elapsed().as_secs_f64();
    let mut ours = Vec::new();
    let mut hits = 0;
    for _ in 0..31 {
        let start = Instant::now();
        let found = index.affected(&batch);
        ours.push(start.elapsed().as_secs_f64());
        hits = found.len();
    }
    // The baseline: look at every package of every lock.
    let wanted: HashSet<&str> = batch.iter().map(String::as_str).collect();
    let mut scans = Vec::new();
    let mut scan_hits = 0;
    for _ in 0..5 {
        let start = Instant::now();
        scan_hits = locks
            .iter()
            .filter(|l| {
                l.lock
                    .packages
                    .iter()
                    .any(|p| wanted.contains(p.name.as_str()) || wanted.contains(p.source_name()))
            })
            .count();
        scans.push(start.elapsed().as_secs_f64());
    }
    if hits != scan_hits {
        bail!("the index found {hits} recipes and the scan {scan_hits}");
    }
    let ours = median(ours);
    let scan = median(scans);
    Ok(format!(
        "## Affected\n\n`affected` for a batch of {BATCH} names (a quarter of them source packages) over {LOCKS} locks of \
{PER_LOCK} packages each ({hits} recipes match).\n\n\
| | milliseconds |\n| --- | ---: |\n\
| reverse index, query (median of 31) | {:.3} |\n\
| scan of every lock (median of 5) | {:.3} |\n\
| building the index once | {:.1} |\n\n\
**The query takes {:.4}× the scan** (goal: ≤ 10 ms).\n",
        ours * 1e3,
        scan * 1e3,
        build * 1e3,
        ours / scan
    ))
}

/// Builds the CLI in release mode and returns its path.
pub(crate) fn slipway_binary(root: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "slipway"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("building slipway failed");
    }
    let binary = root.join("target/release/slipway");
    // A freshly linked binary is read from disk on its first start, which would be charged to whichever
    // run comes first; one untimed start puts it in the page cache.
    Command::new(&binary).arg("--help").output()?;
    Ok(binary)
}

pub(crate) fn copy_example(root: &Path, to: &Path) -> anyhow::Result<PathBuf> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to.join("recipes"))?;
    let example = root.join("examples/debian-cloud");
    std::fs::copy(example.join("slipway.toml"), to.join("slipway.toml"))?;
    for entry in std::fs::read_dir(example.join("recipes"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join("recipes").join(entry.file_name()))?;
    }
    Ok(to.to_path_buf())
}

pub(crate) fn run_slipway(
    binary: &Path,
    project: &Path,
    args: &[&str],
) -> anyhow::Result<(String, f64)> {
    let start = Instant::now();
    let out = Command::new(binary)
        .arg("--config")
        .arg(project.join("slipway.toml"))
        .args(args)
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "slipway {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((text, seconds))
}

/// `slipway run --once` when nothing changed, against the compose it skips.
pub async fn noop_bench(root: &Path, work: &Path) -> anyhow::Result<String> {
    let binary = slipway_binary(root)?;
    let project = copy_example(root, &work.join("noop-project"))?;
    run_slipway(&binary, &project, &["keys", "init"])?;
    eprintln!("first run (compose, boot test, release) …");
    run_slipway(&binary, &project, &["run", "--once"])?;
    let (list, _) = run_slipway(&binary, &project, &["status", "--json"])?;
    let status: serde_json::Value = serde_json::from_str(&list)?;
    let compose = &status[0]["composes"][0]["compose"];
    let started: jiff::Timestamp = compose["created_at"]
        .as_str()
        .context("compose start")?
        .parse()?;
    let finished: jiff::Timestamp = compose["finished_at"]
        .as_str()
        .context("compose end")?
        .parse()?;
    let compose_secs = (finished - started).total(jiff::Unit::Second)?;
    let mut runs = Vec::new();
    for _ in 0..5 {
        let (out, seconds) = run_slipway(&binary, &project, &["run", "--once"])?;
        if !out.contains("unchanged since compose") {
            bail!("the no-op run built something: {out}");
        }
        runs.push(seconds);
    }
    let noop = median(runs);
    Ok(format!(
        "## No-op cycle\n\n`slipway run --once` (release build, process start to exit) on the example project when nothing \
changed: every source is asked for its InRelease with its validators (the Debian mirror answers 304), the \
lock check is skipped because the recorded metadata digests are unchanged, and `compose.skipped` is \
recorded.\n\n| | seconds |\n| --- | ---: |\n| no-op cycle (median of 5) | {noop:.2} |\n| the compose it skips | {compose_secs:.1} |\n\n\
**The no-op cycle takes {:.4}× a compose** (goals: ≤ 2 s and ≤ 1/20 = 0.05×).\n",
        noop / compose_secs
    ))
}

/// A compose after a kernel-cmdline-only recipe change, against the cold compose before it.
pub async fn warm_bench(root: &Path, work: &Path) -> anyhow::Result<String> {
    let recipe = Recipe::load(&root.join("examples/debian-cloud/recipes/bookworm-cloud.toml"))?;
    let scratch = work.join("warm");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let cache = scratch.join("cache");
    let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
    let composer = Composer::new(Arc::clone(&runner));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let epoch = jiff::Timestamp::now().as_second() / 86_400 * 86_400;
    let request = |recipe: Recipe, name: &str, expected_lock: Option<Lock>| ComposeRequest {
        recipe,
        compose_id: ComposeId(format!("bench-{name}")),
        work_dir: scratch.join(name),
        source_date_epoch: epoch,
        threads,
        cache_dir: Some(cache.clone()),
        expected_lock,
    };
    eprintln!("cold compose …");
    let cold_request = request(recipe.clone(), "cold", None);
    std::fs::create_dir_all(&cold_request.work_dir)?;
    let start = Instant::now();
    let cold = composer
        .compose(&cold_request, &|step: &str| eprintln!("  {step}"))
        .await?;
    let cold_secs = start.elapsed().as_secs_f64();

    let mut changed = recipe.clone();
    changed.system.kernel_cmdline.push_str(" quiet");
    eprintln!("warm compose after a kernel command line change …");
    let warm_request = request(changed, "warm", Some(cold.lock.clone()));
    std::fs::create_dir_all(&warm_request.work_dir)?;
    let start = Instant::now();
    let warm = composer
        .compose(&warm_request, &|step: &str| eprintln!("  {step}"))
        .await?;
    let warm_secs = start.elapsed().as_secs_f64();
    if warm.lock != cold.lock {
        bail!("the warm compose installed other packages than the cold one");
    }
    let steps = |timings: &[slipway_compose::StepTiming]| {
        timings
            .iter()
            .map(|t| format!("{} {:.1}", t.step, t.seconds))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let doc = format!(
        "## Warm rebuild\n\nThe example recipe composed cold (empty caches), then again after adding ` quiet` to its \
kernel command line, with the first compose's lock as the expected one: the installed tree and every \
unchanged compressed chunk come from the caches.\n\n| compose | seconds | steps (s) |\n| --- | ---: | --- |\n\
| cold | {cold_secs:.1} | {} |\n| warm (cmdline changed) | {warm_secs:.1} | {} |\n\n\
**The warm rebuild takes {:.2}× the cold compose** (goal ≤ 0.3×).\n",
        steps(&cold.timings),
        steps(&warm.timings),
        warm_secs / cold_secs
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(doc)
}

/// A trivial guest test for the boot test benchmark.
fn trivial_test(name: String) -> slipway_boottest::TestDef {
    slipway_boottest::TestDef {
        name,
        description: "does nothing".into(),
        script: b"#!/bin/sh\necho ok\n".to_vec(),
        origin: "bench".into(),
        timeout: std::time::Duration::from_secs(30),
        tags: vec![],
        needs_network: false,
        exclusive: false,
        formats: vec![],
        streams: vec![],
        min_memory_mib: 0,
        runs_on: slipway_boottest::RunsOn::Guest,
        builtin: false,
    }
}

/// The boot test of the example image: the time from QEMU's start to the first test, the cost of each
/// further shared test (20 trivial tests against 1), and the whole default plan against a boot with a
/// single trivial test.
pub async fn boottest_bench(root: &Path, work: &Path) -> anyhow::Result<String> {
    use slipway_boottest::{BootTestRequest, BootTester};
    let recipe = Recipe::load(&root.join("examples/debian-cloud/recipes/bookworm-cloud.toml"))?;
    let scratch = work.join("boottest");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)?;
    let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
    let composer = Composer::new(Arc::clone(&runner));
    eprintln!("compose …");
    let request = ComposeRequest {
        recipe: recipe.clone(),
        compose_id: ComposeId("bench-boottest".into()),
        work_dir: scratch.join("compose"),
        source_date_epoch: jiff::Timestamp::now().as_second() / 86_400 * 86_400,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        cache_dir: None,
        expected_lock: None,
    };
    std::fs::create_dir_all(&request.work_dir)?;
    let output = composer
        .compose(&request, &|step: &str| eprintln!("  {step}"))
        .await?;
    let qcow2 = output
        .images
        .iter()
        .find(|i| i.format == slipway_model::OutputFormat::Qcow2)
        .context("the example recipe writes a qcow2")?;
    let accel = slipway_boottest::probe_kvm(runner.as_ref(), &scratch).await;
    let tester = BootTester::new(Arc::clone(&runner));
    let boot = |name: &str,
                tests: Vec<slipway_boottest::TestDef>,
                tuning: slipway_boottest::VmTuning| BootTestRequest {
        compose: request.compose_id.clone(),
        image: qcow2.path.clone(),
        tests,
        lock: output.lock.clone(),
        exclude_docs: recipe.exclude_docs,
        exclude_locales: recipe.exclude_locales,
        work_dir: scratch.join(name),
        memory_mib: 1024,
        cpus: 2,
        boot_allowance: std::time::Duration::from_secs(600),
        disk_gib: 4,
        accel,
        reruns: 0,
        memory_budget_mib: 4096,
        cpu_budget: 2,
        tuning,
    };
    let mut rows = Vec::new();
    for (name, tests) in [
        ("one trivial test", vec![trivial_test("bench.0".into())]),
        (
            "20 trivial tests",
            (0..20)
                .map(|i| trivial_test(format!("bench.{i}")))
                .collect(),
        ),
        ("default plan", slipway_boottest::builtin_tests()),
    ] {
        eprintln!("boot: {name} …");
        let report = tester
            .run(&boot(
                &name.replace(' ', "-"),
                tests,
                slipway_boottest::VmTuning::default(),
            ))
            .await?;
        let passed = report
            .cases
            .iter()
            .filter(|c| c.outcome == slipway_model::Outcome::Passed)
            .count();
        let settled = report.boots[0].settled_after.unwrap_or(f64::NAN);
        rows.push((name, report.seconds, settled, passed, report.cases.len()));
    }
    let (one, twenty, full) = (rows[0].1, rows[1].1, rows[2].1);
    let mut doc = format!(
        "## Boot test plans\n\nThe example image booted under {accel} three times: with one trivial shared test, with 20, \
and with the default plan (every built-in test, including `ssh.login` over SSH). Seconds run from QEMU's \
start to the end of the run; \"first test\" is when the guest reported it had settled and began its tests.\n\n\
| boot | seconds | first test after (s) | passed |\n| --- | ---: | ---: | ---: |\n"
    );
    for (name, seconds, settled, passed, total) in &rows {
        doc.push_str(&format!(
            "| {name} | {seconds:.1} | {settled:.1} | {passed}/{total} |\n"
        ));
    }
    doc.push_str(&format!(
        "\n**Each further shared test costs {:.2} s** ((20 tests − 1 test) / 19); **the default plan takes {:.2}× \
a boot with a single trivial test.**\n",
        (twenty - one) / 19.0,
        full / one
    ));

    // The machine's tuning: each variant boots the same image with one trivial test, against the default.
    let default_tuning = slipway_boottest::VmTuning::default();
    let variants = [
        (
            "`-cpu max`",
            slipway_boottest::VmTuning {
                tcg_cpu: "max".into(),
                ..default_tuning.clone()
            },
        ),
        (
            "`tb-size=1024`",
            slipway_boottest::VmTuning {
                tb_size_mib: Some(1024),
                ..default_tuning.clone()
            },
        ),
        (
            "no virtio-rng",
            slipway_boottest::VmTuning {
                rng: false,
                ..default_tuning.clone()
            },
        ),
    ];
    doc.push_str(&format!(
        "\n### Tuning the emulated machine\n\nThe same image with one trivial test, booted with one knob changed \
from the defaults (`-cpu qemu64`, QEMU's translation cache size, a virtio RNG, `-nodefaults`). The image, disk, \
firmware and devices the tests look at stay the same.\n\n| machine | seconds | first test after (s) | \
ratio to the defaults |\n| --- | ---: | ---: | ---: |\n| defaults | {one:.1} | {:.1} | 1.00 |\n",
        rows[0].2
    ));
    for (name, tuning) in variants {
        eprintln!("boot: {name} …");
        let dir = format!(
            "tuning-{}",
            name.replace(|c: char| !c.is_alphanumeric(), "")
        );
        let report = tester
            .run(&boot(&dir, vec![trivial_test("bench.0".into())], tuning))
            .await?;
        let passed = report
            .cases
            .iter()
            .all(|c| c.outcome == slipway_model::Outcome::Passed);
        let settled = report.boots[0].settled_after.unwrap_or(f64::NAN);
        doc.push_str(&format!(
            "| {name}{} | {:.1} | {settled:.1} | {:.2} |\n",
            if passed { "" } else { " (test failed)" },
            report.seconds,
            report.seconds / one
        ));
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(doc)
}
