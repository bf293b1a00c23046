//! Times the output writers against the standard tools on one raw disk:
//! single-threaded `xz -6 -k -T1` (and `xz -6 -T2` for reference) against `write_raw_xz`, and
//! `qemu-img convert -c -O qcow2` against `write_qcow2`, and prints a markdown table.
//!
//! `cargo bench -p slipway-compose --bench formats`. The disk is `$SLIPWAY_BENCH_RAW`, or else a synthetic
//! 512 MiB sparse disk made of this machine's own binaries and text, some random bytes, written zeros
//! and holes. `$SLIPWAY_BENCH_THREADS` sets the writers' threads (default: all cores).
//! `SLIPWAY_BENCH_NO_T2=1` skips the `xz -T2` reference run. `SLIPWAY_BENCH_MAKE=path` only writes the synthetic disk to `path`, to reuse it across runs.
//!
//! Besides wall time the table shows CPU seconds (user + system, all threads), which stay meaningful on
//! a machine shared with other work, where wall time of a two-thread writer is not.
//!
//! A second table times the writers with a chunk cache: cold with an empty cache, then warm, from the
//! cache the cold write filled, on the same disk, on a copy with a few bytes edited in one extent, and
//! on each disk named in `SLIPWAY_BENCH_RAW_CHANGED` (`label=path,...`: the same image rebuilt after a
//! recipe change, say), as ratios to the cold write without a cache. `SLIPWAY_BENCH_CACHE_ONLY=1` skips
//! the tool baselines (single-threaded xz takes minutes).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use slipway_compose::formats::chunk_cache::{CacheStats, ChunkCache};
use slipway_compose::formats::qcow2::{write_qcow2, write_qcow2_cached};
use slipway_compose::formats::raw_xz::{write_raw_xz, write_raw_xz_cached};
use slipway_compose::formats::{FormatError, WrittenFile};

const MIB: u64 = 1 << 20;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful either: ignore args.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(p) = std::env::var_os("SLIPWAY_BENCH_MAKE") {
        make_synthetic(Path::new(&p), 512 * MIB);
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("slipway-bench-")
        .tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))
        .expect("temp dir");
    let raw = match std::env::var_os("SLIPWAY_BENCH_RAW") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = dir.path().join("synthetic.raw");
            make_synthetic(&p, 512 * MIB);
            p
        }
    };
    let threads = std::env::var("SLIPWAY_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let meta = std::fs::metadata(&raw).expect("raw disk");
    let allocated = allocated_bytes(&raw);
    println!(
        "raw disk: {} ({:.0} MiB virtual, {:.0} MiB allocated), {threads} writer threads\n",
        raw.display(),
        meta.len() as f64 / MIB as f64,
        allocated as f64 / MIB as f64
    );

    if std::env::var_os("SLIPWAY_BENCH_CACHE_ONLY").is_none() {
        tool_table(&raw, dir.path(), threads);
    }
    cache_table(&raw, dir.path(), threads);
}

/// Our writers against the standard tools on the same disk.
fn tool_table(raw: &Path, dir: &Path, threads: usize) {
    let mut rows = Vec::new();

    let xz_t1 = dir.join("xz-t1.raw.xz");
    let (t_xz1, s_xz1) = time_tool(
        Command::new("xz").args(["-6", "-k", "-T1", "-c"]).arg(raw),
        &xz_t1,
    );
    let xz_t2 = dir.join("xz-t2.raw.xz");
    let t2 = std::env::var_os("SLIPWAY_BENCH_NO_T2").is_none().then(|| {
        time_tool(
            Command::new("xz").args(["-6", "-k", "-T2", "-c"]).arg(raw),
            &xz_t2,
        )
    });
    let ours_xz = dir.join("slipway.raw.xz");
    let (t_ours_xz, written) =
        time_self(|| write_raw_xz(raw, &ours_xz, threads).expect("write_raw_xz"));
    rows.push((
        "raw.xz",
        "xz -6 -k -T1",
        t_xz1,
        s_xz1,
        t_ours_xz,
        written.size,
    ));
    if let Some((t_xz2, s_xz2)) = t2 {
        rows.push((
            "raw.xz",
            "xz -6 -k -T2 (ref)",
            t_xz2,
            s_xz2,
            t_ours_xz,
            written.size,
        ));
    }
    check(Command::new("xz").arg("-t").arg(&ours_xz), "xz -t");

    let qemu_out = dir.join("qemu.qcow2");
    let before = cpu_seconds();
    let start = Instant::now();
    check(
        Command::new("qemu-img")
            .args(["convert", "-c", "-O", "qcow2"])
            .arg(raw)
            .arg(&qemu_out),
        "qemu-img convert",
    );
    let t_qemu = Times {
        wall: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds().children - before.children,
    };
    let s_qemu = std::fs::metadata(&qemu_out).expect("qemu output").len();
    let ours_qcow2 = dir.join("slipway.qcow2");
    let (t_ours_qcow2, written) =
        time_self(|| write_qcow2(raw, &ours_qcow2, threads).expect("write_qcow2"));
    rows.push((
        "qcow2",
        "qemu-img convert -c -O qcow2",
        t_qemu,
        s_qemu,
        t_ours_qcow2,
        written.size,
    ));
    check(
        Command::new("qemu-img").arg("check").arg(&ours_qcow2),
        "qemu-img check",
    );
    check(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(raw)
            .arg(&ours_qcow2),
        "qemu-img compare",
    );

    println!(
        "| format | baseline | baseline s (cpu s) | slipway s (cpu s) | speedup | baseline size | slipway size |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (format, baseline, tb, sb, to, so) in rows {
        println!(
            "| {format} | `{baseline}` | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2}× | {:.1} MiB | {:.1} MiB ({:+.1}%) |",
            tb.wall,
            tb.cpu,
            to.wall,
            to.cpu,
            tb.wall / to.wall,
            sb as f64 / MIB as f64,
            so as f64 / MIB as f64,
            (so as f64 / sb as f64 - 1.0) * 100.0
        );
    }
}

type Writer = fn(&Path, &Path, usize, Option<&ChunkCache>) -> Result<WrittenFile, FormatError>;

/// Cold and warm writes with a chunk cache, as ratios to a cold write without one.
fn cache_table(raw: &Path, dir: &Path, threads: usize) {
    let edited = dir.join("edited.raw");
    // Sparse like the original, so the warm write skips the same holes.
    check(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(raw)
            .arg(&edited),
        "cp",
    );
    // A few bytes in the middle of the first data extent past 64 MiB (or of the disk, if smaller).
    let size = std::fs::metadata(raw).expect("raw").len();
    let at = if size > 66 * MIB {
        65 * MIB + 12345
    } else {
        size / 2
    };
    File::options()
        .write(true)
        .open(&edited)
        .expect("edited")
        .write_all_at(b"console=ttyS1", at)
        .expect("edit");
    let mut changed = vec![
        ("same disk".to_owned(), raw.to_path_buf()),
        ("edited".to_owned(), edited),
    ];
    if let Ok(list) = std::env::var("SLIPWAY_BENCH_RAW_CHANGED") {
        for item in list.split(',').filter(|i| !i.is_empty()) {
            let (label, path) = item.split_once('=').unwrap_or((item, item));
            changed.push((label.to_owned(), PathBuf::from(path)));
        }
    }
    let writers: [(&str, Writer); 2] = [
        ("raw.xz", write_raw_xz_cached),
        ("qcow2", write_qcow2_cached),
    ];
    println!("\n| format | write | s (cpu s) | × cold | cpu × cold | hits / misses | size |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (format, write) in writers {
        let out = dir.join(format!("cache-bench.{format}"));
        let cache_dir = dir.join(format!("chunks-{format}"));
        let (cold, written) = time_self(|| write(raw, &out, threads, None).expect("cold write"));
        let row = |what: &str, t: Times, stats: Option<CacheStats>, size: u64| {
            let stats = stats.map_or("—".to_owned(), |s| format!("{} / {}", s.hits, s.misses));
            println!(
                "| {format} | {what} | {:.2} ({:.2}) | {:.3} | {:.3} | {stats} | {:.1} MiB |",
                t.wall,
                t.cpu,
                t.wall / cold.wall,
                t.cpu / cold.cpu.max(0.01),
                size as f64 / MIB as f64
            );
        };
        row("cold, no cache", cold, None, written.size);
        let cache = ChunkCache::new(&cache_dir, u64::MAX);
        let (t, w) = time_self(|| write(raw, &out, threads, Some(&cache)).expect("cold cached"));
        assert_eq!(
            w.sha256, written.sha256,
            "a cache must not change the output"
        );
        row("cold, empty cache", t, Some(cache.stats()), w.size);
        let entries = cache.prune().expect("cache size");
        for (label, changed_raw) in &changed {
            let cache = ChunkCache::new(&cache_dir, u64::MAX);
            let (t, w) =
                time_self(|| write(changed_raw, &out, threads, Some(&cache)).expect("warm write"));
            row(&format!("warm, {label}"), t, Some(cache.stats()), w.size);
        }
        println!(
            "| {format} | cache after the cold write | | | | {} entries | {:.1} MiB |",
            entries.kept_entries,
            entries.kept_bytes as f64 / MIB as f64
        );
    }
}

/// Wall and CPU seconds of one run.
#[derive(Clone, Copy)]
struct Times {
    wall: f64,
    cpu: f64,
}

/// CPU seconds (user + system) of this process (all threads) and of its waited-for children, from
/// `/proc/self/stat` (fields 14–17, in clock ticks of 1/100 s on Linux).
struct Cpu {
    own: f64,
    children: f64,
}

fn cpu_seconds() -> Cpu {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    Cpu {
        own: get(0) + get(1),
        children: get(2) + get(3),
    }
}

fn time_self<T>(f: impl FnOnce() -> T) -> (Times, T) {
    let before = cpu_seconds();
    let start = Instant::now();
    let value = f();
    let times = Times {
        wall: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds().own - before.own,
    };
    (times, value)
}

/// Runs a tool writing to stdout into `out`; returns its times and output size.
fn time_tool(cmd: &mut Command, out: &Path) -> (Times, u64) {
    let file = File::create(out).expect("tool output");
    let before = cpu_seconds();
    let start = Instant::now();
    let status = cmd.stdout(Stdio::from(file)).status().expect("run tool");
    let times = Times {
        wall: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds().children - before.children,
    };
    assert!(status.success(), "{cmd:?} failed");
    (times, std::fs::metadata(out).expect("tool output").len())
}

fn check(cmd: &mut Command, what: &str) {
    let out = cmd.output().expect(what);
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// A disk shaped like a small cloud image: a GPT header, an ESP with a kernel-sized blob, and a root
/// file system whose used blocks are spread over the disk with holes between them. The data is this
/// machine's own executables, libraries and text, so it compresses like a real root file system.
fn make_synthetic(path: &Path, size: u64) {
    let corpus = corpus(96 * MIB as usize);
    let file = File::create(path).expect("synthetic raw");
    file.set_len(size).expect("size");
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // GPT: protective MBR and header, otherwise zeros written out.
    let mut gpt = vec![0u8; MIB as usize];
    gpt[510] = 0x55;
    gpt[511] = 0xAA;
    gpt[512..520].copy_from_slice(b"EFI PART");
    file.write_all_at(&gpt, 0).expect("gpt");
    // ESP at 1 MiB: 24 MiB of already-compressed-looking data (kernel, initrd) and 8 MiB of zeros.
    let random: Vec<u8> = (0..24 * MIB).map(|_| next() as u8).collect();
    file.write_all_at(&random, MIB).expect("esp");
    file.write_all_at(&vec![0u8; 8 * MIB as usize], 25 * MIB)
        .expect("esp zeros");
    // Root from 64 MiB: extents of 1–8 MiB of corpus every ~12 MiB on average, ~40% of the disk.
    let mut offset = 64 * MIB;
    let mut pos = 0usize;
    while offset < size - 8 * MIB {
        let len = (1 + next() % 8) * MIB;
        let start = pos % (corpus.len() - len as usize);
        file.write_all_at(&corpus[start..start + len as usize], offset)
            .expect("root extent");
        pos += len as usize + 4096;
        offset += len + (next() % 12) * MIB;
    }
}

/// Concatenated binaries, libraries and text from this machine, up to `limit` bytes.
fn corpus(limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    let mut stack: Vec<PathBuf> = [
        "/usr/bin",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/share/doc",
        "/usr/share/perl5",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    while let Some(p) = stack.pop() {
        if out.len() >= limit {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                let mut v: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                v.sort();
                stack.extend(v.into_iter().rev());
            }
        } else if meta.is_file() && meta.len() < 32 * MIB {
            if let Ok(bytes) = std::fs::read(&p) {
                out.extend_from_slice(&bytes);
            }
        }
    }
    out.truncate(limit);
    assert!(out.len() > 16 * MIB as usize, "not enough corpus files");
    out
}
