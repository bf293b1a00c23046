//! Round trips of the raw.xz and qcow2 writers through the real tools: `xz -t`/`xz -dc` and
//! `qemu-img check`/`compare`/`info`, on small synthetic disks (random and compressible data, zeros
//! written out, holes, sizes that are not a multiple of a cluster or a sector).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use slipway_compose::formats::qcow2::write_qcow2;
use slipway_compose::formats::raw_xz::write_raw_xz;
use slipway_compose::formats::{sha256_file, WrittenFile};

const MIB: u64 = 1 << 20;

/// One stretch of a synthetic disk.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// Incompressible bytes.
    Random(u64),
    /// Compressible, text-like bytes.
    Text(u64),
    /// Zeros written to disk.
    Zeros(u64),
    /// A hole (nothing written).
    Hole(u64),
}

/// A small, seeded generator so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn make_disk(path: &Path, parts: &[Part], seed: u64) -> u64 {
    let file = File::create(path).expect("create raw");
    let mut rng = Rng(seed | 1);
    let words: [&[u8]; 8] = [
        b"kernel ",
        b"systemd ",
        b"/usr/lib ",
        b"ext4 ",
        b"0000 ",
        b"cloud-init ",
        b"\n",
        b"GPT ",
    ];
    let mut offset = 0u64;
    for part in parts {
        let (len, bytes) = match *part {
            Part::Random(n) => (n, (0..n).map(|_| rng.next() as u8).collect::<Vec<_>>()),
            Part::Text(n) => {
                let mut v = Vec::with_capacity(n as usize + 16);
                while (v.len() as u64) < n {
                    v.extend_from_slice(words[rng.below(8) as usize]);
                }
                v.truncate(n as usize);
                (n, v)
            }
            Part::Zeros(n) => (n, vec![0u8; n as usize]),
            Part::Hole(n) => (n, Vec::new()),
        };
        if !bytes.is_empty() {
            file.write_all_at(&bytes, offset).expect("write raw");
        }
        offset += len;
    }
    file.set_len(offset).expect("set raw size");
    offset
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn check_written(written: &WrittenFile, out: &Path) {
    assert_eq!(written.path, out);
    let (sha, size) = sha256_file(out).expect("hash output");
    assert_eq!(written.sha256, sha, "sha256 computed while writing");
    assert_eq!(written.size, size, "size computed while writing");
    // Only the final file is left: no temp file.
    let dir = out.parent().expect("dir");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

fn check_xz(raw: &Path, threads: usize) -> WrittenFile {
    let out = raw.with_extension("raw.xz");
    let written = write_raw_xz(raw, &out, threads).expect("write raw.xz");
    check_written(&written, &out);
    let (ok, text) = run(Command::new("xz").arg("-t").arg(&out));
    assert!(ok, "xz -t: {text}");
    // Stream the decompressed bytes into cmp rather than into memory: the sparse disks are large.
    let mut xz = Command::new("xz")
        .arg("-dc")
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("xz -dc");
    let decoded = xz.stdout.take().expect("xz stdout");
    let (same, text) = run(Command::new("cmp").arg("-").arg(raw).stdin(decoded));
    assert!(xz.wait().expect("xz -dc").success());
    assert!(same, "xz -d gives back the raw bytes: {text}");
    written
}

fn check_qcow2(raw: &Path, threads: usize) -> WrittenFile {
    let out = raw.with_extension("qcow2");
    let written = write_qcow2(raw, &out, threads).expect("write qcow2");
    check_written(&written, &out);
    let (ok, text) = run(Command::new("qemu-img").arg("check").arg(&out));
    assert!(ok, "qemu-img check: {text}");
    assert!(text.contains("No errors were found"), "{text}");
    assert!(!text.contains("leaked"), "{text}");
    let (ok, text) = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(raw)
        .arg(&out));
    assert!(ok, "qemu-img compare: {text}");
    let (ok, info) = run(Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&out));
    assert!(ok, "qemu-img info: {info}");
    let raw_size = std::fs::metadata(raw).expect("raw size").len();
    let virtual_size = raw_size.div_ceil(512) * 512;
    assert!(
        info.contains(&format!("\"virtual-size\": {virtual_size},")),
        "{info}"
    );
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");
    assert!(info.contains("\"compat\": \"1.1\""), "{info}");
    assert!(info.contains("\"compression-type\": \"zlib\""), "{info}");
    written
}

fn check_both(name: &str, parts: &[Part], seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join(format!("{name}.raw"));
    make_disk(&raw, parts, seed);
    check_xz(&raw, 2);
    check_qcow2(&raw, 2);
}

#[test]
fn mixed_disk_with_odd_size() {
    check_both(
        "mixed",
        &[
            Part::Text(MIB + 12345),
            Part::Random(100_007),
            Part::Zeros(2 * MIB + 512),
            Part::Hole(3 * MIB),
            Part::Text(70_001),
            Part::Random(65536),
            Part::Zeros(1000),
        ],
        7,
    );
}

#[test]
fn incompressible_data_is_stored() {
    // Whole random MiB become stored LZMA2 chunks in the xz, and uncompressed clusters in the qcow2.
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("random.raw");
    let parts = [
        Part::Random(3 * MIB),
        Part::Text(MIB),
        Part::Random(MIB + 1000),
    ];
    make_disk(&raw, &parts, 17);
    let xz = check_xz(&raw, 2);
    let random = 4 * MIB + 1000;
    assert!(
        xz.size > random && xz.size < random + 160 * 1024,
        "{}",
        xz.size
    );
    check_qcow2(&raw, 2);
}

#[test]
fn all_zero_file_written_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("zeros.raw");
    make_disk(&raw, &[Part::Zeros(9 * MIB + 4096)], 1);
    let xz = check_xz(&raw, 2);
    assert!(
        xz.size < 4096,
        "zeros compress to almost nothing: {}",
        xz.size
    );
    let qcow2 = check_qcow2(&raw, 2);
    // Header, L1, refcount table and one refcount block: no data cluster, no L2 table.
    assert_eq!(qcow2.size, 4 * 65536);
}

#[test]
fn sparse_disk_across_l2_tables() {
    // 520 MiB of virtual disk, mostly holes, with data around the first L2 table boundary (512 MiB)
    // and at the very end; the holes are never read. qcow2 only: the xz side of holes is below.
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("sparse.raw");
    make_disk(
        &raw,
        &[
            Part::Text(100_000),
            Part::Hole(512 * MIB - 100_000 - 40_000),
            Part::Text(80_000),
            Part::Hole(8 * MIB),
            Part::Random(3 * 65536 + 1),
        ],
        11,
    );
    check_qcow2(&raw, 2);
}

#[test]
fn sparse_disk_with_holes() {
    check_both(
        "holes",
        &[
            Part::Hole(3 * MIB + 5),
            Part::Text(300_000),
            Part::Hole(6 * MIB),
            Part::Random(70_000),
            Part::Hole(2 * MIB),
        ],
        13,
    );
}

#[test]
fn empty_and_tiny_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, parts) in [
        ("empty", vec![]),
        ("one", vec![Part::Random(1)]),
        ("sector", vec![Part::Text(511)]),
        ("hole", vec![Part::Hole(3 * MIB)]),
    ] {
        let raw = dir.path().join(format!("{name}.raw"));
        make_disk(&raw, &parts, 3);
        check_xz(&raw, 1);
        check_qcow2(&raw, 1);
    }
}

#[test]
fn output_is_deterministic_across_thread_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("d.raw");
    make_disk(
        &raw,
        &[
            Part::Text(MIB + 3),
            Part::Hole(2 * MIB),
            Part::Random(100_000),
            Part::Text(300_000),
        ],
        5,
    );
    let a = write_raw_xz(&raw, &dir.path().join("a.raw.xz"), 1).expect("xz 1");
    let b = write_raw_xz(&raw, &dir.path().join("b.raw.xz"), 3).expect("xz 3");
    assert_eq!(a.sha256, b.sha256);
    let a = write_qcow2(&raw, &dir.path().join("a.qcow2"), 1).expect("qcow2 1");
    let b = write_qcow2(&raw, &dir.path().join("b.qcow2"), 3).expect("qcow2 3");
    assert_eq!(a.sha256, b.sha256);
}

#[test]
fn replaces_an_existing_output_and_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("r.raw");
    make_disk(&raw, &[Part::Text(200_000)], 9);
    let out = dir.path().join("r.qcow2");
    std::fs::File::create(&out)
        .and_then(|mut f| f.write_all(b"old"))
        .expect("old output");
    check_qcow2(&raw, 2);

    let missing = dir.path().join("missing.raw");
    let err = write_raw_xz(&missing, &dir.path().join("m.raw.xz"), 2).expect_err("no input");
    assert!(err.to_string().contains("missing.raw"), "{err}");
    assert!(write_qcow2(&missing, &dir.path().join("m.qcow2"), 2).is_err());
    assert!(!dir.path().join("m.raw.xz").exists());
    assert!(!dir.path().join("m.qcow2").exists());
}

/// Property-style: seeded random layouts of every part kind with odd lengths.
#[test]
fn random_layouts_round_trip() {
    for seed in 1..=4u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let parts: Vec<Part> = (0..1 + rng.below(5))
            .map(|_| {
                // Lengths around cluster and MiB boundaries, plus arbitrary ones.
                let len = match rng.below(4) {
                    0 => 65536 * (1 + rng.below(8)) + rng.below(3) * 512 - rng.below(2),
                    1 => MIB + rng.below(100),
                    _ => 1 + rng.below(200_000),
                };
                match rng.below(4) {
                    0 => Part::Random(len),
                    1 => Part::Text(len),
                    2 => Part::Zeros(len),
                    _ => Part::Hole(len),
                }
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("p.raw");
        make_disk(&raw, &parts, seed);
        let threads = 1 + (seed as usize % 3);
        check_xz(&raw, threads);
        check_qcow2(&raw, threads);
    }
}
