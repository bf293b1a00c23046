//! The chunk cache of the format writers: a write from a warm cache gives the very bytes of a cold write,
//! after small changes to the raw disk (bytes changed in place, data moved by 4 KiB as when a file in an
//! ext4 image grows), and after cache entries were damaged. Outputs are checked with the real tools
//! (`xz -t`/`xz -dc`, `qemu-img check`/`compare`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use slipway_compose::formats::chunk_cache::{CacheStats, ChunkCache};
use slipway_compose::formats::qcow2::{write_qcow2, write_qcow2_cached};
use slipway_compose::formats::raw_xz::{write_raw_xz, write_raw_xz_cached};
use slipway_compose::formats::WrittenFile;

const MIB: u64 = 1 << 20;

/// A small, seeded generator so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Text-like words, different on every call.
fn words(rng: &mut Rng, len: usize) -> Vec<u8> {
    let words: [&[u8]; 10] = [
        b"kernel ",
        b"systemd ",
        b"/usr/lib/x86_64-linux-gnu ",
        b"ext4 ",
        b"cloud-init ",
        b"\n",
        b"GPT ",
        b"initramfs ",
        b"console=ttyS0 ",
        b"debian ",
    ];
    let mut v = Vec::with_capacity(len + 32);
    while v.len() < len {
        let r = rng.next();
        v.extend_from_slice(words[(r % 10) as usize]);
        if r % 7 == 1 {
            v.extend_from_slice(format!("{:x} ", r >> 40).as_bytes());
        }
    }
    v.truncate(len);
    v
}

/// File-system-like data: every 4 KiB page starts with its own words and goes on with one of a few
/// shared pages. Each page differs, so content-chosen block ends fall as they do on real data, while
/// the long repeats keep LZMA2 fast enough for a test.
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let shared: Vec<Vec<u8>> = (0..8).map(|_| words(rng, 4096)).collect();
    let mut v = Vec::with_capacity(len + 4096);
    while v.len() < len {
        v.extend_from_slice(&words(rng, 128));
        v.extend_from_slice(&shared[(rng.next() % 8) as usize][..4096 - 128]);
    }
    v.truncate(len);
    v
}

/// A sparse disk shaped like a small image: a GPT-ish first MiB, an incompressible "kernel", a hole,
/// a 28 MiB run of file-system data (long enough for several content-cut blocks), zeros written out, a
/// hole, and a short data tail that is not a whole MiB.
fn make_disk(path: &Path) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let file = File::create(path).expect("create raw");
    let mut offset = 0u64;
    let put = |bytes: &[u8], offset: &mut u64| {
        file.write_all_at(bytes, *offset).expect("write raw");
        *offset += bytes.len() as u64;
    };
    put(&text(&mut rng, MIB as usize), &mut offset);
    let random: Vec<u8> = (0..3 * MIB).map(|_| rng.next() as u8).collect();
    put(&random, &mut offset);
    offset += 4 * MIB;
    put(&text(&mut rng, 28 * MIB as usize), &mut offset);
    put(&vec![0u8; 2 * MIB as usize], &mut offset);
    offset += 3 * MIB;
    put(&text(&mut rng, 300_007), &mut offset);
    file.set_len(offset).expect("size");
}

/// A copy of `from` with a few bytes changed at `at`, as when a file is edited in place.
fn edited(from: &Path, to: &Path, at: u64) {
    std::fs::copy(from, to).expect("copy raw");
    let file = File::options().write(true).open(to).expect("open copy");
    file.write_all_at(b"console=ttyS1 quiet", at)
        .expect("edit copy");
}

/// A copy of `from` with 4 KiB inserted at `at` and the data after it moved up to `end`, as when a file
/// in an ext4 image grows by a block and everything written after it moves along.
fn grown(from: &Path, to: &Path, at: u64, end: u64) {
    std::fs::copy(from, to).expect("copy raw");
    let src = File::open(from).expect("open raw");
    let file = File::options().write(true).open(to).expect("open copy");
    let mut moved = vec![0u8; (end - at - 4096) as usize];
    src.read_exact_at(&mut moved, at).expect("read raw");
    file.write_all_at(&moved, at + 4096).expect("move data");
    file.write_all_at(&[0x5a; 4096], at).expect("insert block");
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

fn check_xz(out: &Path, raw: &Path) {
    let (ok, text) = run(Command::new("xz").arg("-t").arg(out));
    assert!(ok, "xz -t: {text}");
    let mut xz = Command::new("xz")
        .arg("-dc")
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("xz -dc");
    let decoded = xz.stdout.take().expect("xz stdout");
    let (same, text) = run(Command::new("cmp").arg("-").arg(raw).stdin(decoded));
    assert!(xz.wait().expect("xz -dc").success());
    assert!(same, "xz -d gives back the raw bytes: {text}");
}

fn check_qcow2(out: &Path, raw: &Path) {
    let (ok, text) = run(Command::new("qemu-img").arg("check").arg(out));
    assert!(ok && text.contains("No errors were found"), "{text}");
    let (ok, text) = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(raw)
        .arg(out));
    assert!(ok, "qemu-img compare: {text}");
}

fn same_file(a: &WrittenFile, b: &WrittenFile) {
    assert_eq!(
        a.sha256,
        b.sha256,
        "{} and {}",
        a.path.display(),
        b.path.display()
    );
    assert_eq!(a.size, b.size);
    let (x, y) = (
        std::fs::read(&a.path).expect("read a"),
        std::fs::read(&b.path).expect("read b"),
    );
    assert!(
        x == y,
        "{} and {} differ",
        a.path.display(),
        b.path.display()
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Xz,
    Qcow2,
}

impl Format {
    fn write(self, raw: &Path, out: &Path, cache: Option<&ChunkCache>) -> WrittenFile {
        match self {
            Format::Xz => write_raw_xz_cached(raw, out, 2, cache).expect("write raw.xz"),
            Format::Qcow2 => write_qcow2_cached(raw, out, 2, cache).expect("write qcow2"),
        }
    }

    fn write_cold(self, raw: &Path, out: &Path) -> WrittenFile {
        match self {
            Format::Xz => write_raw_xz(raw, out, 2).expect("write raw.xz"),
            Format::Qcow2 => write_qcow2(raw, out, 2).expect("write qcow2"),
        }
    }

    fn check(self, out: &Path, raw: &Path) {
        match self {
            Format::Xz => check_xz(out, raw),
            Format::Qcow2 => check_qcow2(out, raw),
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    raw: PathBuf,
    cache_dir: PathBuf,
}

/// A disk, written once with an empty cache (which must then hold entries) and once without; the two
/// outputs must be the same.
fn cold(format: Format) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("a.raw");
    make_disk(&raw);
    let cache_dir = dir.path().join("cache").join("chunks");
    let cache = ChunkCache::new(&cache_dir, u64::MAX);
    let with = format.write(&raw, &dir.path().join("a-cached.out"), Some(&cache));
    let without = format.write_cold(&raw, &dir.path().join("a.out"));
    same_file(&with, &without);
    format.check(&with.path, &raw);
    let stats = cache.stats();
    assert_eq!(stats.hits, 0, "{stats:?}");
    assert!(stats.stored >= 4, "{stats:?}");
    assert_eq!(stats.stored, stats.misses, "{stats:?}");
    Setup {
        dir,
        raw,
        cache_dir,
    }
}

/// Writes `changed` from the warm cache and cold, checks both are the same and valid, and returns the
/// warm write's cache counters.
fn warm(format: Format, setup: &Setup, changed: &Path, name: &str) -> CacheStats {
    let cache = ChunkCache::new(&setup.cache_dir, u64::MAX);
    let with = format.write(
        changed,
        &setup.dir.path().join(format!("{name}-cached.out")),
        Some(&cache),
    );
    let without = format.write_cold(changed, &setup.dir.path().join(format!("{name}.out")));
    same_file(&with, &without);
    format.check(&with.path, changed);
    cache.stats()
}

fn edited_in_place(format: Format) {
    let setup = cold(format);
    let changed = setup.dir.path().join("edited.raw");
    // Inside the 28 MiB data run.
    edited(&setup.raw, &changed, 20 * MIB + 12345);
    let stats = warm(format, &setup, &changed, "edited");
    assert_eq!(stats.corrupt, 0, "{stats:?}");
    assert!(
        stats.misses >= 1,
        "the edited chunk is compressed: {stats:?}"
    );
    assert!(
        stats.hits > 2 * stats.misses,
        "most chunks are reused: {stats:?}"
    );
}

#[test]
fn xz_from_a_warm_cache_after_an_edit_is_the_cold_output() {
    edited_in_place(Format::Xz);
}

#[test]
fn qcow2_from_a_warm_cache_after_an_edit_is_the_cold_output() {
    edited_in_place(Format::Qcow2);
}

#[test]
fn xz_reuses_blocks_after_data_moved_by_a_block() {
    let setup = cold(Format::Xz);
    let changed = setup.dir.path().join("grown.raw");
    // The data run is 8 MiB..36 MiB; grow "a file" 3 MiB into it.
    grown(&setup.raw, &changed, 11 * MIB, 36 * MIB);
    let stats = warm(Format::Xz, &setup, &changed, "grown");
    // Blocks after the next content-chosen end are the old ones, moved.
    assert!(stats.hits >= 3, "{stats:?}");
}

#[test]
fn qcow2_after_data_moved_is_still_the_cold_output() {
    // Moved data is new to a cluster-aligned cache; what matters is that the output stays right.
    let setup = cold(Format::Qcow2);
    let changed = setup.dir.path().join("grown.raw");
    grown(&setup.raw, &changed, 11 * MIB, 36 * MIB);
    warm(Format::Qcow2, &setup, &changed, "grown");
}

/// Damages every entry of the cache in one of three ways; a warm write must notice each, compress
/// instead, and still give the cold output.
fn damaged_entries(format: Format) {
    let setup = cold(format);
    let mut entries: Vec<PathBuf> = Vec::new();
    for sub in std::fs::read_dir(&setup.cache_dir).expect("cache dir") {
        for file in std::fs::read_dir(sub.expect("sub").path()).expect("sub dir") {
            entries.push(file.expect("entry").path());
        }
    }
    entries.sort();
    assert!(entries.len() >= 3, "{entries:?}");
    for (i, path) in entries.iter().enumerate() {
        let mut bytes = std::fs::read(path).expect("entry");
        match i % 3 {
            // A flipped bit in the payload.
            0 => {
                let at = bytes.len() - 1 - i % 7;
                bytes[at] ^= 0x10;
            }
            // Torn by a crash.
            1 => bytes.truncate(bytes.len() / 2),
            // Emptied.
            _ => bytes.clear(),
        }
        std::fs::write(path, &bytes).expect("damage entry");
    }
    let stats = warm(format, &setup, &setup.raw, "damaged");
    assert_eq!(stats.corrupt, entries.len() as u64, "{stats:?}");
    assert_eq!(stats.hits, 0, "{stats:?}");
    assert_eq!(
        stats.stored,
        entries.len() as u64,
        "damaged entries are replaced: {stats:?}"
    );
    // And the replacements serve the next write.
    let stats = warm(format, &setup, &setup.raw, "repaired");
    assert_eq!(
        (stats.hits, stats.corrupt),
        (entries.len() as u64, 0),
        "{stats:?}"
    );
}

#[test]
fn damaged_xz_entries_are_detected_and_do_not_change_the_output() {
    damaged_entries(Format::Xz);
}

#[test]
fn damaged_qcow2_entries_are_detected_and_do_not_change_the_output() {
    damaged_entries(Format::Qcow2);
}

#[test]
fn an_unwritable_cache_does_not_fail_the_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("a.raw");
    make_disk(&raw);
    // A file where the cache directory should be: every store fails.
    let blocked = dir.path().join("chunks");
    std::fs::write(&blocked, b"not a directory").expect("block");
    for format in [Format::Xz, Format::Qcow2] {
        let cache = ChunkCache::new(&blocked, u64::MAX);
        let with = format.write(&raw, &dir.path().join("a-cached.out"), Some(&cache));
        let without = format.write_cold(&raw, &dir.path().join("a.out"));
        same_file(&with, &without);
        let stats = cache.stats();
        assert!(stats.store_failures > 0 && stats.stored == 0, "{stats:?}");
    }
}

#[test]
fn prune_keeps_the_cache_under_its_limit() {
    let setup = cold(Format::Xz);
    let cache = ChunkCache::new(&setup.cache_dir, u64::MAX);
    let all = cache.prune().expect("prune");
    assert_eq!(all.removed_entries, 0);
    let limit = all.kept_bytes / 2;
    let small = ChunkCache::new(&setup.cache_dir, limit);
    let pruned = small.prune().expect("prune");
    assert!(pruned.kept_bytes <= limit, "{pruned:?}");
    assert!(pruned.removed_entries > 0, "{pruned:?}");
    assert_eq!(
        pruned.kept_entries + pruned.removed_entries,
        all.kept_entries
    );
    // What is left still serves, and the output is unchanged.
    let stats = warm(Format::Xz, &setup, &setup.raw, "after-prune");
    assert_eq!(stats.hits, pruned.kept_entries, "{stats:?}");
}
