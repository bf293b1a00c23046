//! The Packages parsing benchmark: slipway's deb822 parser against python3-apt's `apt_pkg.TagFile` on the
//! real Debian bookworm main amd64 package list (about 50 MB, 63,000 stanzas).
//!
//! Both sides are timed the same way: from opening the file to having walked every stanza, best of five,
//! inside the process (Python's interpreter start-up and import are outside the timing). python3-apt reads
//! only `Package` and `Version` of each stanza; slipway builds the complete [`slipway_repo::Package`] of
//! twelve fields, so the comparison favours the baseline.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};

/// The file measured. bookworm is a stable release, so the file changes only with point releases.
const PACKAGES_URL: &str =
    "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz";

/// Runs per side; the best counts, as the least disturbed by other work on the machine.
const RUNS: usize = 5;

/// The baseline: python3-apt walking every section and reading Package and Version. Prints the stanza count
/// and the best time in seconds.
const PYTHON_BASELINE: &str = r#"
import sys, time
import apt_pkg
best = None
count = 0
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    count = 0
    with apt_pkg.TagFile(sys.argv[1]) as tagfile:
        for section in tagfile:
            section["Package"]
            section["Version"]
            count += 1
    elapsed = time.perf_counter() - start
    best = elapsed if best is None or elapsed < best else best
print(count, best)
"#;

/// Downloads (once, cached under `work`) and decompresses the bookworm Packages file, times slipway's
/// parser and python3-apt's on it, and returns a markdown table fragment with both times, the stanza counts
/// (which must agree) and the ratio.
pub fn parse_bench(work: &Path) -> anyhow::Result<String> {
    let dir = work.join("repo-bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let packages = dir.join("bookworm-main-amd64-Packages");
    if !packages.is_file() {
        let compressed = download(&dir)?;
        let mut text = Vec::with_capacity(compressed.len() * 6);
        std::io::Read::read_to_end(
            &mut liblzma::read::XzDecoder::new(&compressed[..]),
            &mut text,
        )
        .context("decompressing the bookworm Packages.xz")?;
        let partial = dir.join("bookworm-main-amd64-Packages.partial");
        std::fs::write(&partial, &text)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &packages)
            .with_context(|| format!("renaming {} into place", partial.display()))?;
    }
    let size = std::fs::metadata(&packages)?.len();

    let mut ours = f64::INFINITY;
    let mut our_count = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        // Reading the file is part of the measurement, as it is for TagFile.
        let file = std::fs::File::open(&packages)
            .with_context(|| format!("opening {}", packages.display()))?;
        let parsed = slipway_repo::parse_packages_from(file, &packages.display().to_string())?;
        let elapsed = start.elapsed().as_secs_f64();
        our_count = parsed.len();
        ours = ours.min(elapsed);
        // Freeing the result is not part of parsing.
        drop(parsed);
    }

    let output = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PYTHON_BASELINE)
        .arg(&packages)
        .arg(RUNS.to_string())
        .output()
        .context("running /usr/bin/python3 (install python3-apt: scripts/install-deps)")?;
    if !output.status.success() {
        bail!(
            "the python3-apt baseline failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut fields = stdout.split_whitespace();
    let (Some(count), Some(seconds)) = (fields.next(), fields.next()) else {
        bail!("unexpected output from the python3-apt baseline: {stdout:?}");
    };
    let their_count: usize = count.parse().context("python3-apt stanza count")?;
    let theirs: f64 = seconds.parse().context("python3-apt time")?;
    if their_count != our_count {
        bail!("the parsers disagree: python3-apt saw {their_count} stanzas, slipway {our_count}");
    }

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ratio = theirs / ours;
    let verdict = if ratio >= 1.0 {
        format!("{ratio:.2}× faster")
    } else {
        format!("{:.2}× slower", 1.0 / ratio)
    };
    Ok(format!(
        "Packages parsing: Debian bookworm main amd64 ({:.1} MB, {our_count} stanzas), best of {RUNS}, \
         file read included, {threads} hardware threads\n\n\
         | parser | stanzas | time | python3-apt time / this |\n\
         | --- | ---: | ---: | ---: |\n\
         | python3-apt `apt_pkg.TagFile` (Package, Version) | {their_count} | {theirs:.3} s | 1.00 |\n\
         | slipway `parse_packages_from` (all 12 fields of `Package`) | {our_count} | {ours:.3} s | \
         {ratio:.2} ({verdict}) |\n",
        size as f64 / 1e6,
    ))
}

/// Downloads the Packages.xz, or returns the copy from an earlier run.
fn download(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let cached = dir.join("bookworm-main-amd64-Packages.xz");
    if let Ok(bytes) = std::fs::read(&cached) {
        return Ok(bytes);
    }
    eprintln!("downloading {PACKAGES_URL} …");
    let cache = dir.join("http");
    // A thread of its own with its own runtime: this function is synchronous, and its caller may already
    // be inside a tokio runtime, where blocking on another one is not allowed.
    let bytes = std::thread::spawn(move || -> anyhow::Result<Vec<u8>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let fetcher = slipway_repo::Fetcher::new(cache)?;
            Ok(fetcher.fetch(PACKAGES_URL).await?.bytes)
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the download thread panicked"))??;
    let partial = dir.join("bookworm-main-amd64-Packages.xz.partial");
    std::fs::write(&partial, &bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &cached)
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    Ok(bytes)
}
