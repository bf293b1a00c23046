//! The raw.xz writer: the raw disk compressed as one standard `.xz` stream (LZMA2 preset 6, CRC64 check)
//! that `xz -t`/`xz -d` accept and that decompresses to the identical raw bytes.
//!
//! Why not liblzma's own multi-threaded encoder (`MtStreamBuilder`)? It compresses every byte it is fed,
//! and LZMA2 at preset 6 pushes zeros through its match finder at only ~75 MB/s — a 2 GB disk image with
//! 600 MB of data spends most of its time on zeros. So this writer does what the multi-threaded encoder
//! does (cut the input into independent blocks, compress blocks in parallel with liblzma's raw LZMA2
//! encoder at preset 6, write them in order and then the index) and adds two things it cannot:
//! - a run of all-zero MiB (a hole in the sparse file, or zeros on disk) becomes blocks whose compressed
//!   form is computed once per size and then reused;
//! - a MiB that is already compressed or random (kernel, initramfs, compressed files: order-0 entropy
//!   near 8 bits per byte) becomes uncompressed LZMA2 chunks straight away. That is what LZMA2 emits
//!   for such data anyway, after spending its slowest path (~1.7 MB/s) finding nothing to match.
//!
//! Everything else goes through LZMA2 preset 6 exactly as `xz -6` would, in blocks of 4 to 16 MiB whose
//! ends are chosen by content (see [`MIN_BLOCK`]). The container (stream header, block headers, index,
//! footer) follows the `.xz` file format specification, so any xz decoder reads it, and block headers
//! carry both sizes so xz's multi-threaded decoder can decode the blocks in parallel too. The output
//! depends only on the input, never on thread timing.
//!
//! With a [`ChunkCache`], a data block whose bytes were compressed by an earlier write is copied from the
//! cache instead. Block ends chosen by content are what makes that pay: when a file in an ext4 image
//! grows, everything `mkfs.ext4 -d` writes after it moves by whole 4 KiB blocks, and block ends at fixed
//! offsets would then cut every later block differently, while content-chosen ends move along with it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};

use liblzma::stream::{Action, Filters, LzmaOptions, Status, Stream};
use sha2::Digest as _;
use slipway_model::Sha256;

use super::chunk_cache::{fingerprint, fingerprint_sample, ChunkCache, ChunkKeyer};
use super::{FormatError, WrittenFile};

/// xz preset; 6 is the `xz` tool's default level.
const PRESET: u32 = 6;
/// Dictionary size of preset 6, set explicitly so the block header's filter properties match it.
const DICT_SIZE: u32 = 8 << 20;
/// Granularity of zero detection: a MiB that is entirely zero is never given to LZMA2.
const UNIT: usize = 1 << 20;
/// Largest block. Blocks are compressed independently (each restarts the dictionary), so larger blocks
/// compress slightly better; smaller ones balance two threads better at the end of the input, and are
/// what a cache can reuse after a small change. 16 MiB (2× the dictionary) loses well under 1% against
/// xz's 24 MiB default.
const BLOCK_SIZE: usize = 16 << 20;
/// Smallest data block that ends by content rather than at a zero or incompressible MiB or the end of
/// the input. Past it, a data block ends after any 4 KiB piece (counted from the block's start) whose
/// hash picks it, with odds of one in [`CUT_ODDS`], or at [`BLOCK_SIZE`]. The choice depends only on the
/// bytes, so the same data moved by whole 4 KiB blocks (the unit ext4 allocates in) is cut in the same
/// places. On an ext4 image with 765 MiB of data, rebuilt by `mkfs.ext4 -d` after one file early in it
/// grew by 9 KB, the share of data compressed again (and the output size against fixed 16 MiB blocks,
/// on 128 MiB of it) was: 2 MiB + 1 in 256 (blocks of 3.1 MiB on average): 7.2% (+6.6%); 2 MiB + 1 in
/// 512 (3.9 MiB): 9.8% (+3.4%); 4 MiB + 1 in 512 (6.1 MiB): 13.4% (+0.9%); 4 MiB + 1 in 1024: 16.2%.
/// Fixed offsets, at any block size: 100%. An image is downloaded many times and rebuilt once, so the
/// ratio decides between close hit rates.
const MIN_BLOCK: usize = 4 << 20;
/// The granule in which block ends are considered: ext4's block size.
const CUT_GRANULE: usize = 4096;
/// One granule in this many ends a data block past [`MIN_BLOCK`]: 512 granules, 2 MiB on average.
const CUT_ODDS: u64 = 512;
/// Zero runs are emitted as blocks of `UNIT << k` bytes for `k` up to this, each encoded once per call.
/// LZMA2 output for zeros grows linearly anyway (~150 bytes per MiB, chunk headers), so bigger zero
/// blocks would save almost no space but cost more to encode the first time (zeros run at ~75 MB/s).
const MAX_ZERO_SHIFT: usize = 3;
/// Order-0 entropy (bits per byte) from which a 64 KiB piece counts as incompressible. Random data of
/// that length measures ~7.997; gzip, xz or zstd output 7.99 and more; executables and text 5 to 6.5.
const MIN_STORED_ENTROPY: f64 = 7.97;
/// Check type id for CRC64 in the stream flags.
const CHECK_CRC64: u8 = 0x04;
/// LZMA2 filter id.
const FILTER_LZMA2: u8 = 0x21;

/// Writes `raw` to `out` as a raw.xz using `threads` compression threads (at least one), and returns the
/// output's sha256 and size, computed while writing. The file appears under `out` only once complete.
pub fn write_raw_xz(raw: &Path, out: &Path, threads: usize) -> Result<WrittenFile, FormatError> {
    write_raw_xz_cached(raw, out, threads, None)
}

/// Like [`write_raw_xz`], reusing compressed blocks from `cache` and adding the ones it compresses. The
/// output is byte for byte the same with or without a cache.
pub fn write_raw_xz_cached(
    raw: &Path,
    out: &Path,
    threads: usize,
    cache: Option<&ChunkCache>,
) -> Result<WrittenFile, FormatError> {
    let threads = threads.max(1);
    let mut reader = SparseReader::open(raw)?;
    let temp = TempOutput::create(out)?;
    let writer = HashingWriter::new(temp.file()?, temp.path());
    let zero_cache: ZeroCache = Default::default();
    let cache = match cache {
        Some(cache) => Some((
            cache,
            ChunkKeyer::new(&namespace().map_err(|m| compress_error(out, &m))?),
        )),
        None => None,
    };
    let cache = cache.as_ref().map(|(c, k)| (*c, k));

    // Bounded hand-offs keep memory at a few blocks: a data job needs a token, and the writer returns
    // the token once the block is on disk, however long another block takes to compress. Zero blocks
    // hold no memory of their own (they are shared from the cache), so they need no token: a long run of
    // them must not keep the threads from the data blocks behind it.
    let in_flight = threads * 2 + 2;
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Job)>(threads);
    let (result_tx, result_rx) = mpsc::channel::<Done>();
    let (token_tx, token_rx) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        token_tx
            .send(())
            .map_err(|_| compress_error(out, "token channel closed"))?;
    }
    // Shared by the workers only: when the last one stops, sending fails instead of blocking.
    let job_rx = Arc::new(Mutex::new(job_rx));

    let (read_result, write_result) = std::thread::scope(|scope| {
        for _ in 0..threads {
            let result_tx = result_tx.clone();
            let (job_rx, zero_cache) = (Arc::clone(&job_rx), &zero_cache);
            scope.spawn(move || compress_worker(&job_rx, result_tx, zero_cache, cache));
        }
        drop(result_tx);
        drop(job_rx);
        let writer_thread = scope.spawn(move || write_blocks(writer, result_rx, token_tx, out));
        let read_result = read_jobs(&mut reader, job_tx, &token_rx);
        let write_result = writer_thread
            .join()
            .unwrap_or_else(|_| Err(compress_error(out, "writer thread panicked")));
        (read_result, write_result)
    });
    // A read error explains a short write, so it comes first.
    read_result?;
    let (sha256, size) = write_result?;
    let path = temp.commit(out)?;
    Ok(WrittenFile { path, sha256, size })
}

/// One unit of work for a compression thread.
enum Job {
    /// Data to compress as one block.
    Data(Vec<u8>),
    /// A block of `UNIT << shift` zero bytes.
    Zero(usize),
    /// Incompressible data to store in uncompressed LZMA2 chunks.
    Stored(Vec<u8>),
}

/// One finished `.xz` block: header, compressed data, padding and check, ready to write.
struct Block {
    bytes: Vec<u8>,
    /// Size without block padding, as the index records it.
    unpadded_size: u64,
    uncompressed_size: u64,
}

/// Zero blocks of each size, encoded on first use by whichever thread needs one.
/// A finished job: its place in the output, whether it holds a token, and its block.
struct Done {
    seq: u64,
    token: bool,
    block: Result<Arc<Block>, String>,
}

type ZeroCache = [OnceLock<Result<Arc<Block>, String>>; MAX_ZERO_SHIFT + 1];

/// Reads the raw disk MiB by MiB, sorts each MiB into zeros, incompressible data or data, gathers
/// runs of the same kind into blocks, and hands them to the compression threads in order.
fn read_jobs(
    reader: &mut SparseReader,
    job_tx: SyncSender<(u64, Job)>,
    tokens: &Receiver<()>,
) -> Result<(), FormatError> {
    let mut seq = 0u64;
    // Sending fails only when the other side stopped, which means it has an error to report.
    let mut send = |job: Job| -> bool {
        if !matches!(job, Job::Zero(_)) && tokens.recv().is_err() {
            return false;
        }
        let ok = job_tx.send((seq, job)).is_ok();
        seq += 1;
        ok
    };
    let size = reader.size;
    let mut unit = vec![0u8; UNIT];
    // The block being gathered: at most one of `block` and `zero_units` is non-empty at a time.
    let mut block: Vec<u8> = Vec::with_capacity(BLOCK_SIZE + UNIT);
    let mut block_stored = false;
    // Where in a data block the search for its content-chosen end goes on.
    let mut cut_from = MIN_BLOCK;
    let mut zero_units = 0u64;
    let mut offset = 0u64;
    let flush = |block: &mut Vec<u8>, stored: bool| {
        let data = std::mem::replace(block, Vec::with_capacity(BLOCK_SIZE + UNIT));
        if stored {
            Job::Stored(data)
        } else {
            Job::Data(data)
        }
    };
    while offset < size {
        let len = usize::try_from((size - offset).min(UNIT as u64)).unwrap_or(UNIT);
        // A short tail is always data: zero and stored blocks come only in whole MiB.
        let full = len == UNIT;
        let kind = if full && reader.is_hole(offset, len as u64) {
            Kind::Zero
        } else {
            reader.read_at(&mut unit[..len], offset)?;
            if full && is_zero(&unit) {
                Kind::Zero
            } else if full && looks_incompressible(&unit) {
                Kind::Stored
            } else {
                Kind::Data
            }
        };
        offset += len as u64;
        if kind == Kind::Zero {
            if !block.is_empty() && !send(flush(&mut block, block_stored)) {
                return Ok(());
            }
            zero_units += 1;
            continue;
        }
        if !send_zero_run(&mut send, &mut zero_units) {
            return Ok(());
        }
        let stored = kind == Kind::Stored;
        if !block.is_empty() && stored != block_stored && !send(flush(&mut block, block_stored)) {
            return Ok(());
        }
        if block.is_empty() {
            cut_from = MIN_BLOCK;
        }
        block_stored = stored;
        block.extend_from_slice(&unit[..len]);
        if stored {
            if block.len() >= BLOCK_SIZE && !send(flush(&mut block, true)) {
                return Ok(());
            }
            continue;
        }
        while let Some(end) = find_cut(&block, &mut cut_from) {
            let mut rest = Vec::with_capacity(BLOCK_SIZE + UNIT);
            rest.extend_from_slice(&block[end..]);
            block.truncate(end);
            if !send(Job::Data(std::mem::replace(&mut block, rest))) {
                return Ok(());
            }
            cut_from = MIN_BLOCK;
        }
    }
    if send_zero_run(&mut send, &mut zero_units) && !block.is_empty() {
        send(flush(&mut block, block_stored));
    }
    Ok(())
}

/// The end of the first data block in `block`, if it has one yet: the first granule boundary from
/// `*from` on that [`is_cut`] picks, or [`BLOCK_SIZE`]. Advances `*from` past what it looked at, so
/// every granule is hashed once.
fn find_cut(block: &[u8], from: &mut usize) -> Option<usize> {
    while *from <= block.len() {
        let end = *from;
        *from += CUT_GRANULE;
        if end >= BLOCK_SIZE || is_cut(&block[end - CUT_GRANULE..end]) {
            return Some(end);
        }
    }
    None
}

/// True if a data block may end after `granule`. crc32 is hardware-accelerated and spreads well enough
/// once multiplied by an odd constant; the choice needs no strength, only to depend on the bytes alone.
fn is_cut(granule: &[u8]) -> bool {
    let spread = u64::from(crc32fast::hash(granule)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    spread % CUT_ODDS == 0
}

/// What a MiB of input is, for choosing its block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zero,
    Stored,
    Data,
}

/// True if every 64 KiB of `buf` has an order-0 entropy so close to 8 bits per byte that it is
/// already compressed (kernel, initramfs, compressed files) or random. LZMA2 cannot shrink such data,
/// and trying is its slowest case (~1.7 MB/s at preset 6 against ~7 MB/s on binaries and text), after
/// which it stores the data in uncompressed chunks anyway; this writer stores it so straight away.
fn looks_incompressible(buf: &[u8]) -> bool {
    buf.chunks(1 << 16)
        .all(|piece| entropy_bits(piece) >= MIN_STORED_ENTROPY)
}

/// Order-0 entropy of `bytes` in bits per byte.
pub(super) fn entropy_bits(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    // Four histograms break the store-to-load dependency on runs of equal bytes.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        counts[0][usize::from(q[0])] += 1;
        counts[1][usize::from(q[1])] += 1;
        counts[2][usize::from(q[2])] += 1;
        counts[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        counts[0][usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    (0..256)
        .map(|i| f64::from(counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i]))
        .filter(|&c| c > 0.0)
        .map(|c| {
            let p = c / n;
            -p * p.log2()
        })
        .sum()
}

/// Sends a run of zero MiB as the fewest zero blocks of the cached sizes.
fn send_zero_run(send: &mut impl FnMut(Job) -> bool, units: &mut u64) -> bool {
    while *units > 0 {
        let shift = (63 - units.leading_zeros() as usize).min(MAX_ZERO_SHIFT);
        if !send(Job::Zero(shift)) {
            return false;
        }
        *units -= 1 << shift;
    }
    true
}

/// Compresses jobs until the job channel closes.
fn compress_worker(
    jobs: &Mutex<Receiver<(u64, Job)>>,
    results: mpsc::Sender<Done>,
    zero_cache: &ZeroCache,
    cache: Option<(&ChunkCache, &ChunkKeyer)>,
) {
    loop {
        // The lock is held only while waiting for the next job, never while compressing.
        let next = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, job)) = next else { return };
        let token = !matches!(job, Job::Zero(_));
        // A panic becomes an error for this block: a lost block would leave the writer waiting for it.
        let block = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
            Job::Data(data) => match cache {
                Some((cache, keyer)) => cached_block(cache, keyer, &data),
                None => encode_block(&[&data]),
            }
            .map(Arc::new),
            Job::Stored(data) => Ok(Arc::new(stored_block(&data))),
            Job::Zero(shift) => zero_cache[shift]
                .get_or_init(|| encode_zero_block(UNIT << shift).map(Arc::new))
                .clone(),
        }))
        .unwrap_or_else(|_| Err("compression thread panicked".to_owned()));
        if results.send(Done { seq, token, block }).is_err() {
            return;
        }
    }
}

/// The block for `data`: from the cache if it holds one, else compressed and added to it. Only data
/// blocks go through the cache: zero and stored blocks cost less to make than to look up.
fn cached_block(cache: &ChunkCache, keyer: &ChunkKeyer, data: &[u8]) -> Result<Block, String> {
    let key = keyer.key(data);
    if let Some(block) = cache.load(&key, |payload| decode_cached(payload, data.len())) {
        return Ok(block);
    }
    let block = encode_block(&[data])?;
    cache.store(
        &key,
        &[
            &block.unpadded_size.to_le_bytes(),
            &block.uncompressed_size.to_le_bytes(),
            &block.bytes,
        ],
    );
    Ok(block)
}

/// A block from a cache entry: unpadded size, uncompressed size, then the block as written. Checks
/// that the sizes fit together; the entry's checksum has already vouched for the bytes.
fn decode_cached(mut payload: Vec<u8>, uncompressed: usize) -> Option<Block> {
    if payload.len() < 16 {
        return None;
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&payload[..8]);
    let unpadded_size = u64::from_le_bytes(word);
    word.copy_from_slice(&payload[8..16]);
    let uncompressed_size = u64::from_le_bytes(word);
    payload.drain(..16);
    let padded = payload.len() as u64;
    let fits = uncompressed_size == uncompressed as u64
        && padded & 3 == 0
        && unpadded_size <= padded
        && padded - unpadded_size < 4;
    fits.then_some(Block {
        bytes: payload,
        unpadded_size,
        uncompressed_size,
    })
}

/// Everything besides a block's bytes that shapes its encoding, for the cache key: the block layout,
/// the LZMA2 settings, and a fingerprint of what this build's liblzma makes of a fixed sample.
fn namespace() -> Result<String, String> {
    let sample = encode_block(&[&fingerprint_sample()])?;
    Ok(format!(
        "raw.xz block v1: header with both sizes, lzma2 preset {PRESET} dict {DICT_SIZE}, crc64 check; encoder {}",
        fingerprint(&sample.bytes)
    ))
}

/// Encodes `len` zero bytes as a block, feeding a small zero buffer repeatedly.
fn encode_zero_block(len: usize) -> Result<Block, String> {
    let zeros = vec![0u8; UNIT.min(len)];
    let pieces: Vec<&[u8]> = (0..len / zeros.len()).map(|_| zeros.as_slice()).collect();
    encode_block(&pieces)
}

/// Compresses the concatenation of `pieces` into one complete `.xz` block.
fn encode_block(pieces: &[&[u8]]) -> Result<Block, String> {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut options = LzmaOptions::new_preset(PRESET).map_err(|e| e.to_string())?;
    options.dict_size(DICT_SIZE);
    let mut filters = Filters::new();
    filters.lzma2(&options);
    let mut stream = Stream::new_raw_encoder(&filters).map_err(|e| e.to_string())?;

    let mut compressed = Vec::with_capacity(total / 2 + 4096);
    let mut crc = Crc64::new();
    for piece in pieces {
        crc.update(piece);
        let mut rest: &[u8] = piece;
        while !rest.is_empty() {
            reserve_some(&mut compressed);
            let before = stream.total_in();
            stream
                .process_vec(rest, &mut compressed, Action::Run)
                .map_err(|e| e.to_string())?;
            let used = usize::try_from(stream.total_in() - before).unwrap_or(rest.len());
            rest = &rest[used..];
        }
    }
    loop {
        reserve_some(&mut compressed);
        let status = stream
            .process_vec(&[], &mut compressed, Action::Finish)
            .map_err(|e| e.to_string())?;
        if status == Status::StreamEnd {
            break;
        }
    }

    Ok(finish_block(&compressed, crc.finish(), total as u64))
}

/// `data` as a block of uncompressed LZMA2 chunks: what the LZMA2 encoder itself emits for data it
/// cannot shrink, at the cost of a copy.
fn stored_block(data: &[u8]) -> Block {
    const CHUNK: usize = 1 << 16;
    let mut chunks = Vec::with_capacity(data.len() + data.len().div_ceil(CHUNK) * 3 + 1);
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        // 1: uncompressed chunk resetting the dictionary (a block must start so); 2: without reset.
        chunks.push(if i == 0 { 1 } else { 2 });
        chunks.extend_from_slice(&((chunk.len() - 1) as u16).to_be_bytes());
        chunks.extend_from_slice(chunk);
    }
    chunks.push(0); // end of LZMA2 data
    let mut crc = Crc64::new();
    crc.update(data);
    finish_block(&chunks, crc.finish(), data.len() as u64)
}

/// Wraps LZMA2 data in a block: header, data, padding to four bytes, CRC64 of the uncompressed data.
fn finish_block(compressed: &[u8], check: u64, total: u64) -> Block {
    let header = block_header(compressed.len() as u64, total);
    let padding = (4 - (header.len() + compressed.len()) % 4) % 4;
    let mut bytes = Vec::with_capacity(header.len() + compressed.len() + padding + 8);
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(compressed);
    bytes.resize(bytes.len() + padding, 0);
    bytes.extend_from_slice(&check.to_le_bytes());
    Block {
        unpadded_size: (header.len() + compressed.len() + 8) as u64,
        uncompressed_size: total,
        bytes,
    }
}

/// Makes room in `v` for the encoder to write into.
fn reserve_some(v: &mut Vec<u8>) {
    if v.capacity() - v.len() < 4096 {
        v.reserve(v.capacity().max(1 << 16));
    }
}

/// A block header with both sizes present and one LZMA2 filter.
fn block_header(compressed: u64, uncompressed: u64) -> Vec<u8> {
    let mut h = vec![0u8, 0x40 | 0x80]; // size placeholder; flags: one filter, both sizes present
    put_varint(&mut h, compressed);
    put_varint(&mut h, uncompressed);
    h.extend_from_slice(&[FILTER_LZMA2, 1, lzma2_dict_property(DICT_SIZE)]);
    while (h.len() + 4) % 4 != 0 {
        h.push(0);
    }
    h[0] = ((h.len() + 4) / 4 - 1) as u8;
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// The LZMA2 dictionary-size property: the smallest encodable size (2 or 3 times a power of two) that
/// is at least `dict`.
fn lzma2_dict_property(dict: u32) -> u8 {
    (0u8..40)
        .find(|&bits| {
            let size = u64::from(2 | (bits & 1)) << (bits / 2 + 11);
            size >= u64::from(dict)
        })
        .unwrap_or(40)
}

/// Appends `value` as an xz multibyte integer (7 bits per byte, little-endian).
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Writes blocks in order as they arrive, then the index and footer; returns the digest and size.
fn write_blocks(
    mut writer: HashingWriter,
    results: Receiver<Done>,
    tokens: SyncSender<()>,
    out: &Path,
) -> Result<(Sha256, u64), FormatError> {
    writer.write(&stream_header())?;
    let mut pending = std::collections::BTreeMap::new();
    let mut next = 0u64;
    let mut records: Vec<(u64, u64)> = Vec::new();
    for done in results {
        pending.insert(done.seq, done);
        while let Some(done) = pending.remove(&next) {
            let block = done
                .block
                .map_err(|message| compress_error(out, &message))?;
            writer.write(&block.bytes)?;
            records.push((block.unpadded_size, block.uncompressed_size));
            next += 1;
            if done.token {
                // The reader may have finished already; a closed token channel is fine then.
                let _ = tokens.send(());
            }
        }
    }
    if !pending.is_empty() {
        return Err(compress_error(out, "a compression thread stopped early"));
    }
    let index = index(&records);
    writer.write(&index)?;
    writer.write(&stream_footer(index.len()))?;
    writer.finish()
}

/// Stream flags: no reserved bits, CRC64 check.
fn stream_flags() -> [u8; 2] {
    [0, CHECK_CRC64]
}

fn stream_header() -> Vec<u8> {
    let mut h = vec![0xFD, b'7', b'z', b'X', b'Z', 0x00];
    h.extend_from_slice(&stream_flags());
    h.extend_from_slice(&crc32fast::hash(&stream_flags()).to_le_bytes());
    h
}

fn index(records: &[(u64, u64)]) -> Vec<u8> {
    let mut x = vec![0u8];
    put_varint(&mut x, records.len() as u64);
    for &(unpadded, uncompressed) in records {
        put_varint(&mut x, unpadded);
        put_varint(&mut x, uncompressed);
    }
    while x.len() % 4 != 0 {
        x.push(0);
    }
    let crc = crc32fast::hash(&x);
    x.extend_from_slice(&crc.to_le_bytes());
    x
}

fn stream_footer(index_len: usize) -> Vec<u8> {
    let mut tail = Vec::with_capacity(6);
    tail.extend_from_slice(&((index_len / 4 - 1) as u32).to_le_bytes());
    tail.extend_from_slice(&stream_flags());
    let mut f = crc32fast::hash(&tail).to_le_bytes().to_vec();
    f.extend_from_slice(&tail);
    f.extend_from_slice(b"YZ");
    f
}

/// CRC64 as xz uses it (ECMA-182 polynomial, reflected), slicing by eight bytes at a time.
struct Crc64(u64);

const CRC64_TABLES: [[u64; 256]; 8] = crc64_tables();

const fn crc64_tables() -> [[u64; 256]; 8] {
    const POLY: u64 = 0xC96C_5795_D787_0F42;
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

impl Crc64 {
    fn new() -> Self {
        Self(!0)
    }

    fn update(&mut self, data: &[u8]) {
        let t = &CRC64_TABLES;
        let mut crc = self.0;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            let v = crc ^ u64::from_le_bytes(word);
            crc = t[7][(v & 0xFF) as usize]
                ^ t[6][((v >> 8) & 0xFF) as usize]
                ^ t[5][((v >> 16) & 0xFF) as usize]
                ^ t[4][((v >> 24) & 0xFF) as usize]
                ^ t[3][((v >> 32) & 0xFF) as usize]
                ^ t[2][((v >> 40) & 0xFF) as usize]
                ^ t[1][((v >> 48) & 0xFF) as usize]
                ^ t[0][(v >> 56) as usize];
        }
        for &b in chunks.remainder() {
            crc = t[0][((crc ^ u64::from(b)) & 0xFF) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
    }

    fn finish(&self) -> u64 {
        !self.0
    }
}

fn compress_error(out: &Path, message: &str) -> FormatError {
    FormatError::Compress {
        path: out.to_path_buf(),
        message: message.to_owned(),
    }
}

// ---- Shared with the qcow2 writer: reading sparse input, hashing output, publishing atomically. ----

/// True if every byte of `buf` is zero.
pub(super) fn is_zero(buf: &[u8]) -> bool {
    // OR-folding fixed-size chunks lets the compiler vectorize, and data fails within the first chunk.
    let mut chunks = buf.chunks_exact(256);
    for chunk in &mut chunks {
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

/// Reads a possibly sparse input file by offset and tells holes apart without reading them.
pub(super) struct SparseReader {
    file: File,
    path: PathBuf,
    /// Input size in bytes.
    pub(super) size: u64,
    /// A range known to be a hole, from the last `SEEK_DATA`.
    hole: std::ops::Range<u64>,
}

impl SparseReader {
    pub(super) fn open(path: &Path) -> Result<Self, FormatError> {
        let file = File::open(path).map_err(|source| io_error("opening", path, source))?;
        let size = file
            .metadata()
            .map_err(|source| io_error("reading metadata of", path, source))?
            .len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            hole: 0..0,
        })
    }

    /// True if `offset..offset + len` lies in a hole, so it reads as zeros and need not be read.
    pub(super) fn is_hole(&mut self, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len);
        if offset >= self.hole.start && end <= self.hole.end {
            return true;
        }
        match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Data(offset)) {
            Ok(data) => {
                if data > offset {
                    self.hole = offset..data;
                }
                data >= end
            }
            // No data after `offset`: the rest of the file is a hole.
            Err(rustix::io::Errno::NXIO) => {
                self.hole = offset..u64::MAX;
                true
            }
            // A file system without SEEK_DATA: read everything, zero detection still applies.
            Err(_) => false,
        }
    }

    /// Fills `buf` from `offset`; the range must lie within the file.
    pub(super) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), FormatError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| io_error("reading", &self.path, source))
    }
}

/// An output file under a temporary name in the destination's directory, removed unless committed,
/// so the final name only ever holds a complete file.
pub(super) struct TempOutput {
    path: PathBuf,
    file: Option<File>,
    committed: bool,
}

impl TempOutput {
    pub(super) fn create(out: &Path) -> Result<Self, FormatError> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| io_error("creating", &path, source))?;
        Ok(Self {
            path,
            file: Some(file),
            committed: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the file for writing.
    pub(super) fn file(&self) -> Result<File, FormatError> {
        match &self.file {
            Some(f) => f
                .try_clone()
                .map_err(|source| io_error("opening", &self.path, source)),
            None => Err(io_error(
                "opening",
                &self.path,
                std::io::Error::other("already committed"),
            )),
        }
    }

    /// Flushes the file to disk and renames it to `out`: after a crash the final name holds either the
    /// old file or the whole new one.
    pub(super) fn commit(mut self, out: &Path) -> Result<PathBuf, FormatError> {
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|source| io_error("syncing", &self.path, source))?;
        }
        std::fs::rename(&self.path, out).map_err(|source| io_error("renaming to", out, source))?;
        self.committed = true;
        Ok(out.to_path_buf())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover temp file is harmless, and the original error matters more.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes through a buffer while hashing and counting every byte, so no second pass is needed.
pub(super) struct HashingWriter {
    inner: BufWriter<File>,
    path: PathBuf,
    hasher: sha2::Sha256,
    size: u64,
}

impl HashingWriter {
    pub(super) fn new(file: File, path: &Path) -> Self {
        Self {
            inner: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            hasher: sha2::Sha256::new(),
            size: 0,
        }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.inner
            .write_all(bytes)
            .map_err(|source| io_error("writing", &self.path, source))
    }

    /// Writes `count` zero bytes.
    pub(super) fn write_zeros(&mut self, mut count: u64) -> Result<(), FormatError> {
        let zeros = [0u8; 4096];
        while count > 0 {
            let n = count.min(zeros.len() as u64) as usize;
            self.write(&zeros[..n])?;
            count -= n as u64;
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<(Sha256, u64), FormatError> {
        self.inner
            .flush()
            .map_err(|source| io_error("writing", &self.path, source))?;
        Ok((Sha256::from_bytes(self.hasher.finalize().into()), self.size))
    }
}

pub(super) fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> FormatError {
    FormatError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_the_check_value() {
        let mut c = Crc64::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0x995D_C9BB_DF19_39FA);
        let mut split = Crc64::new();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.finish(), 0x995D_C9BB_DF19_39FA);
    }

    #[test]
    fn dict_property_of_eight_mib() {
        assert_eq!(lzma2_dict_property(8 << 20), 22);
        assert_eq!(lzma2_dict_property(4096), 0);
    }

    #[test]
    fn entropy_tells_random_from_text() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let random: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
        let text: Vec<u8> = b"slipway builds images from recipes\n".repeat(30_000);
        assert!(!looks_incompressible(&text));
        let mut half = random.clone();
        half[..1 << 16].fill(7);
        assert!(
            !looks_incompressible(&half),
            "one compressible piece is enough to try"
        );
    }

    #[test]
    fn varints() {
        let mut v = Vec::new();
        put_varint(&mut v, 0x7F);
        put_varint(&mut v, 0x80);
        assert_eq!(v, [0x7F, 0x80, 0x01]);
    }
}
