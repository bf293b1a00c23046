//! The qcow2 writer: a compressed qcow2 version 3 image ("compat 1.1"), written directly.
//!
//! Layout (64 KiB clusters, 16-bit refcounts, deflate compression so every qemu since 2.x reads it):
//!
//! ```text
//! header | L1 table | refcount table | refcount blocks | L2 tables | uncompressed clusters | compressed data
//! ```
//!
//! All-zero clusters (holes, or zeros on disk) stay unallocated and read as zeros. Every other cluster is
//! deflated (raw deflate with a 4 KiB window, the window qemu inflates with) by `threads` worker threads;
//! a cluster that does not shrink is stored as it is, and so is one that looks random (already
//! compressed data: order-0 entropy of at least 7.99 bits per byte) without trying deflate on it. Compressed clusters are packed back to back at byte
//! granularity, as the compressed-cluster descriptor allows.
//!
//! The metadata at the front describes where everything after it lies, so it can only be written once
//! every cluster is compressed. To hash the file while writing it, in file order and without reading it
//! back, the compressed clusters are kept in memory until the end: memory use is about the size of the
//! output file (for a disk with 600 MB of data, a few hundred MB). Streaming them to disk instead would
//! mean metadata after the data and a header written last, and then the file could only be hashed by
//! reading it back: a second pass over the output, to save memory a build machine has plenty of.
//!
//! With a [`ChunkCache`], each batch of [`BATCH_CLUSTERS`] clusters is looked up by its bytes, and a
//! batch compressed by an earlier write is copied from the cache. The tables are rebuilt as always, so
//! the output is the same with or without a cache.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::Digest as _;

use super::chunk_cache::{fingerprint, fingerprint_sample, ChunkCache, ChunkKeyer};
use super::raw_xz::{entropy_bits, is_zero, HashingWriter, SparseReader, TempOutput};
use super::{FormatError, WrittenFile};

/// log2 of the cluster size.
const CLUSTER_BITS: u32 = 16;
/// Cluster size: 64 KiB, qemu's default.
const CLUSTER: usize = 1 << CLUSTER_BITS;
const CLUSTER_U64: u64 = CLUSTER as u64;
/// 8-byte entries per L2 table (one cluster).
const L2_ENTRIES: u64 = CLUSTER_U64 / 8;
/// log2 of the refcount width in bits: 16-bit refcounts, qemu's default.
const REFCOUNT_ORDER: u32 = 4;
/// 16-bit refcounts per refcount block (one cluster).
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_U64 / 2;
/// Clusters read and compressed as one job, and cached as one entry: large enough to amortize
/// hand-offs and cache files, small enough to balance threads and to keep a small change from
/// invalidating much. Batches start at fixed offsets: a qcow2 cluster maps a fixed virtual offset, so
/// data that moved is different clusters anyway.
const BATCH_CLUSTERS: usize = 64;
/// The entropy from which the first 4 KiB of a cluster send it on to a full-cluster entropy check.
const SAMPLE_RAW_ENTROPY: f64 = 7.8;
/// zlib level 6, the level qemu-img uses.
const DEFLATE_LEVEL: u32 = 6;
/// qemu inflates compressed clusters with a 4 KiB window (`inflateInit2(-12)`), so deflate must not
/// refer further back than that.
const WINDOW_BITS: u8 = 12;
/// Order-0 entropy (bits per byte) from which a cluster is stored without trying deflate. Deflate could
/// save at most ~0.1% on such a cluster (already compressed or random data), and it is at its slowest
/// there: about 1.5 times its time on binaries and text.
const MIN_RAW_ENTROPY: f64 = 7.99;
/// The sector size of the compressed cluster descriptor and of qemu's virtual disk size.
const SECTOR: u64 = 512;
/// L1/L2 entry flag: the cluster's refcount is exactly one.
const COPIED: u64 = 1 << 63;
/// L2 entry flag: the cluster is compressed.
const COMPRESSED: u64 = 1 << 62;
/// Bit position of the sector count in a compressed cluster descriptor: `62 - (cluster_bits - 8)`.
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
/// Size of the version 3 header without optional fields; the compression type is then deflate.
const HEADER_LENGTH: u32 = 104;

/// Writes `raw` to `out` as a compressed qcow2 v3 image using `threads` compression threads (at least
/// one), and returns the output's sha256 and size, computed while writing. The virtual size is the raw
/// size rounded up to a 512-byte sector (qemu sees disks in whole sectors; a disk image always is one).
/// The file appears under `out` only once complete.
pub fn write_qcow2(raw: &Path, out: &Path, threads: usize) -> Result<WrittenFile, FormatError> {
    write_qcow2_cached(raw, out, threads, None)
}

/// Like [`write_qcow2`], reusing compressed batches of clusters from `cache` and adding the ones it
/// compresses. The output is byte for byte the same with or without a cache.
pub fn write_qcow2_cached(
    raw: &Path,
    out: &Path,
    threads: usize,
    cache: Option<&ChunkCache>,
) -> Result<WrittenFile, FormatError> {
    let threads = threads.max(1);
    let mut reader = SparseReader::open(raw)?;
    let virtual_size = reader.size.div_ceil(SECTOR) * SECTOR;
    // Created first so an unwritable destination fails before the compression work.
    let temp = TempOutput::create(out)?;
    let keyer = match cache {
        Some(_) => Some(ChunkKeyer::new(&namespace().map_err(|message| {
            FormatError::Compress {
                path: out.to_path_buf(),
                message,
            }
        })?)),
        None => None,
    };
    let cache = cache.zip(keyer.as_ref());
    let packed = compress_all(&mut reader, threads, out, cache)?;
    let mut writer = HashingWriter::new(temp.file()?, temp.path());
    write_image(&mut writer, virtual_size, &packed, out)?;
    let (sha256, size) = writer.finish()?;
    let path = temp.commit(out)?;
    Ok(WrittenFile { path, sha256, size })
}

/// Where a stored cluster's bytes are, relative to the start of their region.
#[derive(Debug, Clone, Copy)]
enum Stored {
    /// The n-th uncompressed cluster.
    Raw(u64),
    /// Compressed bytes at this offset in the compressed region.
    Compressed { offset: u64, len: u32 },
}

/// Every non-zero cluster, compressed and kept in memory until the layout is known.
#[derive(Default)]
struct Packed {
    /// (virtual cluster number, where it is stored), in increasing cluster order.
    entries: Vec<(u64, Stored)>,
    raw: Vec<Vec<u8>>,
    raw_clusters: u64,
    compressed: Vec<Vec<u8>>,
    compressed_len: u64,
}

/// What a worker made of one batch of clusters.
struct BatchOut {
    first_cluster: u64,
    clusters: Vec<ClusterOut>,
    /// The compressed clusters of the batch, back to back.
    compressed: Vec<u8>,
    /// The clusters stored uncompressed, back to back.
    raw: Vec<u8>,
}

enum ClusterOut {
    Zero,
    Compressed(u32),
    Raw,
}

type BatchResult = Result<BatchOut, String>;

/// Reads the disk in batches (skipping holes), compresses them on `threads` threads, and collects the
/// results in disk order so the layout, and so the output bytes, never depend on thread timing.
fn compress_all(
    reader: &mut SparseReader,
    threads: usize,
    out: &Path,
    cache: Option<(&ChunkCache, &ChunkKeyer)>,
) -> Result<Packed, FormatError> {
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, u64, Vec<u8>)>(threads * 2);
    let (result_tx, result_rx) = mpsc::channel::<(u64, BatchResult)>();
    // Shared by the workers only: when the last one stops, the reader's send fails instead of blocking.
    let job_rx = Arc::new(Mutex::new(job_rx));

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let result_tx = result_tx.clone();
            scope.spawn(move || compress_worker(&job_rx, &result_tx, cache));
        }
        drop(result_tx);
        drop(job_rx);
        let reader_thread = scope.spawn(move || read_batches(reader, &job_tx));

        let collected = collect(result_rx, out);
        let read = reader_thread.join().unwrap_or_else(|_| {
            Err(FormatError::Compress {
                path: out.to_path_buf(),
                message: "reader thread panicked".to_owned(),
            })
        });
        // A read error explains missing results, so it comes first.
        read?;
        collected
    })
}

/// Sends every batch that is not entirely a hole, zero-padded to whole clusters.
fn read_batches(
    reader: &mut SparseReader,
    jobs: &mpsc::SyncSender<(u64, u64, Vec<u8>)>,
) -> Result<(), FormatError> {
    let batch_bytes = (BATCH_CLUSTERS * CLUSTER) as u64;
    let mut seq = 0u64;
    let mut offset = 0u64;
    while offset < reader.size {
        let len = (reader.size - offset).min(batch_bytes);
        if !reader.is_hole(offset, len) {
            let mut buf = vec![0u8; (len.div_ceil(CLUSTER_U64) * CLUSTER_U64) as usize];
            reader.read_at(&mut buf[..len as usize], offset)?;
            if jobs.send((seq, offset / CLUSTER_U64, buf)).is_err() {
                // The workers stopped: the collector reports why.
                return Ok(());
            }
            seq += 1;
        }
        offset += len;
    }
    Ok(())
}

/// Compresses batches until the job channel closes.
fn compress_worker(
    jobs: &Mutex<mpsc::Receiver<(u64, u64, Vec<u8>)>>,
    results: &mpsc::Sender<(u64, BatchResult)>,
    cache: Option<(&ChunkCache, &ChunkKeyer)>,
) {
    // One deflate state per thread, reset per cluster: each cluster is its own deflate stream.
    let mut deflate =
        Compress::new_with_window_bits(Compression::new(DEFLATE_LEVEL), false, WINDOW_BITS);
    loop {
        let next = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, first_cluster, buf)) = next else {
            return;
        };
        // A panic becomes an error for this batch rather than a batch the collector never gets.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cache {
            Some((cache, keyer)) => cached_batch(&mut deflate, cache, keyer, first_cluster, &buf),
            None => compress_batch(&mut deflate, first_cluster, &buf),
        }))
        .unwrap_or_else(|_| Err("compression thread panicked".to_owned()));
        if results.send((seq, out)).is_err() {
            return;
        }
    }
}

fn compress_batch(deflate: &mut Compress, first_cluster: u64, buf: &[u8]) -> BatchResult {
    let mut out = BatchOut {
        first_cluster,
        clusters: Vec::with_capacity(buf.len() / CLUSTER),
        compressed: Vec::with_capacity(buf.len() / 2),
        raw: Vec::new(),
    };
    // One byte less than a cluster: deflate output that does not fit did not shrink the cluster.
    let mut scratch = vec![0u8; CLUSTER - 1];
    for cluster in buf.chunks(CLUSTER) {
        if is_zero(cluster) {
            out.clusters.push(ClusterOut::Zero);
            continue;
        }
        if looks_random(cluster) {
            out.raw.extend_from_slice(cluster);
            out.clusters.push(ClusterOut::Raw);
            continue;
        }
        deflate.reset();
        let status = deflate
            .compress(cluster, &mut scratch, FlushCompress::Finish)
            .map_err(|e| format!("deflate: {e}"))?;
        let used = deflate.total_out() as usize;
        if status == Status::StreamEnd && used < CLUSTER {
            out.compressed.extend_from_slice(&scratch[..used]);
            out.clusters.push(ClusterOut::Compressed(used as u32));
        } else {
            out.raw.extend_from_slice(cluster);
            out.clusters.push(ClusterOut::Raw);
        }
    }
    Ok(out)
}

/// The batch for `buf`: from the cache if it holds one, else compressed and added to it. The key
/// covers the non-zero clusters only, each after a marker, so zeros cost no hashing. An entry holds one
/// little-endian u32 per cluster (0: zero, [`RAW_MARK`]: stored as it is, else the compressed length)
/// followed by the compressed clusters; stored clusters come from the input again.
fn cached_batch(
    deflate: &mut Compress,
    cache: &ChunkCache,
    keyer: &ChunkKeyer,
    first_cluster: u64,
    buf: &[u8],
) -> BatchResult {
    let zero: Vec<bool> = buf.chunks(CLUSTER).map(is_zero).collect();
    if zero.iter().all(|&z| z) {
        return compress_batch(deflate, first_cluster, buf);
    }
    let mut hasher = keyer.hasher();
    hasher.update((zero.len() as u64).to_le_bytes());
    for (cluster, &zero) in buf.chunks(CLUSTER).zip(&zero) {
        if zero {
            hasher.update([0u8]);
        } else {
            hasher.update([1u8]);
            hasher.update(cluster);
        }
    }
    let key = ChunkKeyer::finish(hasher);
    let decode = |payload: Vec<u8>| decode_cached(payload, first_cluster, buf, &zero);
    if let Some(batch) = cache.load(&key, decode) {
        return Ok(batch);
    }
    let batch = compress_batch(deflate, first_cluster, buf)?;
    let mut lengths = Vec::with_capacity(batch.clusters.len() * 4);
    for cluster in &batch.clusters {
        let code = match *cluster {
            ClusterOut::Zero => 0,
            ClusterOut::Raw => RAW_MARK,
            ClusterOut::Compressed(len) => len,
        };
        lengths.extend_from_slice(&code.to_le_bytes());
    }
    cache.store(&key, &[&lengths, &batch.compressed]);
    Ok(batch)
}

/// Marks a cluster stored uncompressed in a cache entry; no compressed cluster is that long.
const RAW_MARK: u32 = u32::MAX;

/// A batch from a cache entry (see [`cached_batch`]), checked against the input: the right number of
/// clusters, zero exactly where the input is, and lengths that add up to the compressed bytes.
fn decode_cached(
    payload: Vec<u8>,
    first_cluster: u64,
    buf: &[u8],
    zero: &[bool],
) -> Option<BatchOut> {
    let table_len = zero.len() * 4;
    if payload.len() < table_len {
        return None;
    }
    let mut clusters = Vec::with_capacity(zero.len());
    let mut raw = Vec::new();
    let mut compressed_len = 0usize;
    for ((code, &zero), cluster) in payload[..table_len]
        .chunks_exact(4)
        .zip(zero)
        .zip(buf.chunks(CLUSTER))
    {
        let code = u32::from_le_bytes([code[0], code[1], code[2], code[3]]);
        let out = match code {
            0 => ClusterOut::Zero,
            RAW_MARK => {
                raw.extend_from_slice(cluster);
                ClusterOut::Raw
            }
            len if (len as usize) < CLUSTER => {
                compressed_len += len as usize;
                ClusterOut::Compressed(len)
            }
            _ => return None,
        };
        if matches!(out, ClusterOut::Zero) != zero {
            return None;
        }
        clusters.push(out);
    }
    if payload.len() - table_len != compressed_len {
        return None;
    }
    let mut compressed = payload;
    compressed.drain(..table_len);
    Some(BatchOut {
        first_cluster,
        clusters,
        compressed,
        raw,
    })
}

/// Everything besides a batch's bytes that shapes its result, for the cache key: cluster size, deflate
/// settings, when a cluster is stored as it is, and a fingerprint of what this build's deflate makes of a
/// fixed sample.
fn namespace() -> Result<String, String> {
    let mut deflate =
        Compress::new_with_window_bits(Compression::new(DEFLATE_LEVEL), false, WINDOW_BITS);
    let sample = fingerprint_sample();
    let mut compressed = vec![0u8; sample.len() * 2];
    deflate
        .compress(&sample, &mut compressed, FlushCompress::Finish)
        .map_err(|e| format!("deflate: {e}"))?;
    compressed.truncate(deflate.total_out() as usize);
    Ok(format!(
        "qcow2 batch v1: {BATCH_CLUSTERS} clusters of 2^{CLUSTER_BITS}, raw deflate level {DEFLATE_LEVEL} window 2^{WINDOW_BITS}, \
         stored at entropy {SAMPLE_RAW_ENTROPY}/{MIN_RAW_ENTROPY} or when not shrunk; encoder {}",
        fingerprint(&compressed)
    ))
}

/// True if `cluster` is already compressed or random data. Its first 4 KiB are looked at first, so
/// ordinary data costs a sixteenth of a full histogram (a 4 KiB sample of random data measures ~7.95).
fn looks_random(cluster: &[u8]) -> bool {
    entropy_bits(&cluster[..cluster.len().min(4096)]) >= SAMPLE_RAW_ENTROPY
        && entropy_bits(cluster) >= MIN_RAW_ENTROPY
}

/// Gathers batch results in order into the packed image.
fn collect(results: mpsc::Receiver<(u64, BatchResult)>, out: &Path) -> Result<Packed, FormatError> {
    let mut packed = Packed::default();
    let mut pending = std::collections::BTreeMap::new();
    let mut next = 0u64;
    for (seq, result) in results {
        pending.insert(seq, result);
        while let Some(result) = pending.remove(&next) {
            let batch = result.map_err(|message| FormatError::Compress {
                path: out.to_path_buf(),
                message,
            })?;
            add_batch(&mut packed, batch);
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(FormatError::Compress {
            path: out.to_path_buf(),
            message: "a compression thread stopped early".to_owned(),
        });
    }
    Ok(packed)
}

fn add_batch(packed: &mut Packed, batch: BatchOut) {
    let mut compressed_pos = packed.compressed_len;
    for (i, cluster) in batch.clusters.iter().enumerate() {
        let number = batch.first_cluster + i as u64;
        match *cluster {
            ClusterOut::Zero => {}
            ClusterOut::Raw => {
                packed
                    .entries
                    .push((number, Stored::Raw(packed.raw_clusters)));
                packed.raw_clusters += 1;
            }
            ClusterOut::Compressed(len) => {
                packed.entries.push((
                    number,
                    Stored::Compressed {
                        offset: compressed_pos,
                        len,
                    },
                ));
                compressed_pos += u64::from(len);
            }
        }
    }
    packed.compressed_len = compressed_pos;
    // Kept until the end: give back the spare capacity the workers reserved.
    let (mut compressed, mut raw) = (batch.compressed, batch.raw);
    if !compressed.is_empty() {
        compressed.shrink_to_fit();
        packed.compressed.push(compressed);
    }
    if !raw.is_empty() {
        raw.shrink_to_fit();
        packed.raw.push(raw);
    }
}

/// Where each part of the file starts, in clusters.
struct Layout {
    l1_size: u64,
    l1: u64,
    refcount_table: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    refcount_block_count: u64,
    l2: u64,
    raw: u64,
    compressed: u64,
    end: u64,
}

impl Layout {
    fn new(virtual_size: u64, l2_tables: u64, packed: &Packed) -> Self {
        let l1_size = virtual_size.div_ceil(CLUSTER_U64).div_ceil(L2_ENTRIES);
        // An empty disk has no L1 table at all (offset 0), as qemu-img makes it.
        let l1_clusters = (l1_size * 8).div_ceil(CLUSTER_U64);
        let compressed_clusters = packed.compressed_len.div_ceil(CLUSTER_U64);
        let others = 1 + l1_clusters + l2_tables + packed.raw_clusters + compressed_clusters;
        // Refcount blocks and the table cover every cluster, themselves included: grow to a fixed point.
        let (mut table, mut blocks) = (1u64, 1u64);
        loop {
            let total = others + table + blocks;
            let need_blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let need_table = (need_blocks * 8).div_ceil(CLUSTER_U64);
            if need_blocks <= blocks && need_table <= table {
                break;
            }
            blocks = blocks.max(need_blocks);
            table = table.max(need_table);
        }
        let l1 = 1;
        let refcount_table = l1 + l1_clusters;
        let refcount_blocks = refcount_table + table;
        let l2 = refcount_blocks + blocks;
        let raw = l2 + l2_tables;
        let compressed = raw + packed.raw_clusters;
        Self {
            l1_size,
            l1,
            refcount_table,
            refcount_table_clusters: table,
            refcount_blocks,
            refcount_block_count: blocks,
            l2,
            raw,
            compressed,
            end: compressed + compressed_clusters,
        }
    }
}

/// Writes the whole file in order: metadata, then the clusters kept in memory.
fn write_image(
    w: &mut HashingWriter,
    virtual_size: u64,
    packed: &Packed,
    out: &Path,
) -> Result<(), FormatError> {
    // The L2 tables in use, in order; an L2 table whose clusters are all zero is not allocated.
    let mut l2_tables: Vec<u64> = packed.entries.iter().map(|(c, _)| c / L2_ENTRIES).collect();
    l2_tables.dedup();
    let layout = Layout::new(virtual_size, l2_tables.len() as u64, packed);
    let compressed_base = layout.compressed * CLUSTER_U64;

    let l2_entry = |stored: Stored| match stored {
        Stored::Raw(n) => ((layout.raw + n) * CLUSTER_U64) | COPIED,
        Stored::Compressed { offset, len } => {
            let host = compressed_base + offset;
            // Additional sectors beyond the one holding the first byte; the last may be shared.
            let sectors = (host + u64::from(len) - 1) / SECTOR - host / SECTOR;
            COMPRESSED | (sectors << CSIZE_SHIFT) | host
        }
    };

    // Refcounts: metadata and uncompressed clusters once each; a compressed cluster adds one to every
    // host cluster its bytes touch, as qemu counts them.
    let mut refcounts = vec![0u16; layout.end as usize];
    for r in refcounts.iter_mut().take(layout.compressed as usize) {
        *r = 1;
    }
    for (_, stored) in &packed.entries {
        if let Stored::Compressed { offset, len } = *stored {
            let host = compressed_base + offset;
            let first = host / CLUSTER_U64;
            let last = (host + u64::from(len) - 1) / CLUSTER_U64;
            for c in first..=last {
                let r = &mut refcounts[c as usize];
                *r = r.checked_add(1).ok_or_else(|| FormatError::Compress {
                    path: out.to_path_buf(),
                    message: format!("refcount overflow in host cluster {c}"),
                })?;
            }
        }
    }

    w.write(&header(virtual_size, &layout))?;

    let mut l1 = vec![0u8; ((layout.refcount_table - layout.l1) * CLUSTER_U64) as usize];
    for (i, table) in l2_tables.iter().enumerate() {
        let at = (*table * 8) as usize;
        let entry = ((layout.l2 + i as u64) * CLUSTER_U64) | COPIED;
        l1[at..at + 8].copy_from_slice(&entry.to_be_bytes());
    }
    w.write(&l1)?;

    let mut table = vec![0u8; (layout.refcount_table_clusters * CLUSTER_U64) as usize];
    for i in 0..layout.refcount_block_count {
        let at = (i * 8) as usize;
        let entry = (layout.refcount_blocks + i) * CLUSTER_U64;
        table[at..at + 8].copy_from_slice(&entry.to_be_bytes());
    }
    w.write(&table)?;

    let mut blocks = vec![0u8; (layout.refcount_block_count * CLUSTER_U64) as usize];
    for (i, r) in refcounts.iter().enumerate() {
        blocks[i * 2..i * 2 + 2].copy_from_slice(&r.to_be_bytes());
    }
    w.write(&blocks)?;

    let mut entries = packed.entries.iter().peekable();
    for table in &l2_tables {
        let mut l2 = vec![0u8; CLUSTER];
        while let Some(&&(cluster, stored)) = entries.peek() {
            if cluster / L2_ENTRIES != *table {
                break;
            }
            let at = ((cluster % L2_ENTRIES) * 8) as usize;
            l2[at..at + 8].copy_from_slice(&l2_entry(stored).to_be_bytes());
            entries.next();
        }
        w.write(&l2)?;
    }

    for chunk in &packed.raw {
        w.write(chunk)?;
    }
    for chunk in &packed.compressed {
        w.write(chunk)?;
    }
    let end = layout.end * CLUSTER_U64;
    let written = compressed_base + packed.compressed_len;
    w.write_zeros(end - written)?;
    Ok(())
}

/// The version 3 header, padded to a cluster; the zeros after it end the (empty) extension list.
fn header(virtual_size: u64, layout: &Layout) -> Vec<u8> {
    let mut h = Vec::with_capacity(CLUSTER);
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&3u32.to_be_bytes()); // version
    h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&virtual_size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    h.extend_from_slice(&(layout.l1_size as u32).to_be_bytes());
    let l1_offset = if layout.l1_size == 0 {
        0
    } else {
        layout.l1 * CLUSTER_U64
    };
    h.extend_from_slice(&l1_offset.to_be_bytes());
    h.extend_from_slice(&(layout.refcount_table * CLUSTER_U64).to_be_bytes());
    h.extend_from_slice(&(layout.refcount_table_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    h.extend_from_slice(&REFCOUNT_ORDER.to_be_bytes());
    h.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
    h.resize(CLUSTER, 0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_104_bytes_of_fields() {
        let packed = Packed::default();
        let layout = Layout::new(1 << 30, 0, &packed);
        let h = header(1 << 30, &layout);
        assert_eq!(h.len(), CLUSTER);
        assert_eq!(&h[100..104], &HEADER_LENGTH.to_be_bytes());
        assert!(h[104..].iter().all(|&b| b == 0));
    }

    #[test]
    fn compressed_descriptor_shift() {
        assert_eq!(CSIZE_SHIFT, 54);
    }
}
