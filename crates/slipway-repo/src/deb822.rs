//! deb822 control files: apt's `Packages` lists and `Release` files.
//!
//! Two parsers live here. [`parse_packages`] (bytes in memory) and [`parse_packages_from`] (a reader) are
//! the fast one: they turn a `Packages` file into [`Package`] values, scanning bytes with `memchr`, keeping
//! only byte ranges of the dozen fields a package needs and allocating nothing for the rest (`Description`,
//! `Maintainer`, checksums other than sha256, …). Large inputs are cut at stanza boundaries and parsed on
//! several threads. [`stanzas`] is the general one, for small files such as `Release`: it yields every
//! field of every stanza.
//!
//! Both follow deb822: stanzas are separated by blank lines (lines of only spaces and tabs count as blank),
//! a line starting with a space or tab continues the previous field, `#` starts a comment line, field names
//! compare case-insensitively, and values are trimmed. CRLF line ends and a missing final newline are
//! tolerated.

use std::borrow::Cow;
use std::io::Read;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};

use memchr::memchr;

use crate::error::RepoError;
use crate::Package;

/// Below this size a `Packages` file is parsed on the calling thread: starting threads would cost more than
/// they save.
const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// Each thread gets at least this much of the file, so small files use few threads.
const BYTES_PER_THREAD: usize = 2 << 20;

/// More threads than this do not help: the parse is bound by memory bandwidth and allocation by then.
const MAX_THREADS: usize = 8;

/// Parses a whole apt `Packages` file into packages, in file order.
///
/// `file` names the file in errors (a URL or a path). A stanza without `Package` or `Version`, a line that
/// is neither a field, a continuation, a comment nor blank, and a `Size` that is not a number are errors
/// naming the line and the field.
pub fn parse_packages(data: &[u8], file: &str) -> Result<Vec<Package>, RepoError> {
    let threads = if data.len() < PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .min(MAX_THREADS)
            .min(data.len() / BYTES_PER_THREAD)
            .max(1)
    };
    parse_with_threads(data, file, threads)
}

/// [`parse_packages`] on `threads` threads (1: on the calling thread).
fn parse_with_threads(data: &[u8], file: &str, threads: usize) -> Result<Vec<Package>, RepoError> {
    if threads <= 1 {
        let mut out = Vec::with_capacity(estimate_stanzas(data.len()));
        return parse_range(data, 0, data.len(), &mut out)
            .map(|_| out)
            .map_err(|fault| fault.into_error(0, file));
    }

    let bounds = split_points(data, threads);
    let results: Vec<RangeResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .skip(1)
            .map(|w| {
                let (start, end) = (w[0], w[1]);
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(estimate_stanzas(end - start));
                    parse_range(data, start, end, &mut out).map(|lines| (out, lines))
                })
            })
            .collect();
        // The first chunk is parsed here rather than idling while the others work.
        let mut first = Vec::with_capacity(estimate_stanzas(bounds[1]));
        let first = parse_range(data, 0, bounds[1], &mut first).map(|lines| (first, lines));
        let mut results = vec![first];
        for handle in handles {
            match handle.join() {
                Ok(result) => results.push(result),
                // A panic in a parser thread is a bug; carry it on rather than hide it.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    });

    concatenate(results, file)
}

/// What parsing one range of the input gives: its packages and its number of lines, or a fault.
type RangeResult = Result<(Vec<Package>, usize), Fault>;

/// The packages of consecutive ranges of a file as one list, or the error of the first range that has
/// one, its line counted from the start of the file.
fn concatenate(results: Vec<RangeResult>, file: &str) -> Result<Vec<Package>, RepoError> {
    let mut lines_before = 0;
    let mut lists = Vec::with_capacity(results.len());
    for result in results {
        let (packages, lines) = result.map_err(|fault| fault.into_error(lines_before, file))?;
        lines_before += lines;
        lists.push(packages);
    }
    let mut out = Vec::with_capacity(lists.iter().map(Vec::len).sum());
    for packages in lists {
        out.extend(packages);
    }
    Ok(out)
}

/// Bytes read per chunk by [`parse_packages_from`]: small enough to stay in the CPU cache between being
/// read and being parsed, large enough that the per-chunk overhead does not matter.
const READ_CHUNK: usize = 1 << 20;

/// Parses an apt `Packages` file from a reader, in file order, as [`parse_packages`] does for bytes in
/// memory.
///
/// The input is read in chunks cut at stanza boundaries, and the chunks are parsed on several threads
/// while the next ones are read. Memory use stays at a few chunks plus the result instead of the whole
/// file, and each chunk is parsed while it is still in the CPU cache the read left it in.
pub fn parse_packages_from(reader: impl Read, file: &str) -> Result<Vec<Package>, RepoError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_THREADS);
    parse_reader_with_threads(reader, file, threads, READ_CHUNK)
}

/// One chunk of input on its way to a parser thread.
struct Chunk {
    index: usize,
    /// Complete stanzas only.
    data: Vec<u8>,
}

/// [`parse_packages_from`] on `threads` parser threads (1: all on the calling thread), reading about
/// `chunk_size` bytes at a time.
fn parse_reader_with_threads(
    mut reader: impl Read,
    file: &str,
    threads: usize,
    chunk_size: usize,
) -> Result<Vec<Package>, RepoError> {
    let read_error = |e: std::io::Error| RepoError::Io {
        action: "read",
        path: PathBuf::from(file),
        source: e,
    };
    let mut chunks = ChunkReader::new(&mut reader, chunk_size);

    if threads <= 1 {
        let mut out = Vec::new();
        let mut lines_before = 0;
        let mut buffer = Vec::new();
        while let Some(chunk) = chunks.next_chunk(buffer).map_err(read_error)? {
            lines_before += parse_range(&chunk.data, 0, chunk.data.len(), &mut out)
                .map_err(|fault| fault.into_error(lines_before, file))?;
            buffer = chunk.data;
        }
        return Ok(out);
    }

    // Bounded, so reading never runs far ahead of parsing.
    let (work_tx, work_rx) = mpsc::sync_channel::<Chunk>(threads);
    let work_rx = Mutex::new(work_rx);
    type Done = (usize, RangeResult);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    // Parsed chunks' buffers come back for the next reads, so the same memory is reused rather than
    // fresh pages being faulted in for every chunk.
    let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (work_rx, done_tx, spare_tx) = (&work_rx, done_tx.clone(), spare_tx.clone());
            scope.spawn(move || loop {
                let next = work_rx.lock().map(|rx| rx.recv());
                let Ok(Ok(chunk)) = next else { break };
                let mut out = Vec::with_capacity(estimate_stanzas(chunk.data.len()));
                let result = parse_range(&chunk.data, 0, chunk.data.len(), &mut out)
                    .map(|lines| (out, lines));
                let _ = done_tx.send((chunk.index, result));
                let _ = spare_tx.send(chunk.data);
            });
        }
        drop((done_tx, spare_tx));

        let mut sent = 0;
        let mut failure = None;
        loop {
            let spare = spare_rx.try_recv().unwrap_or_default();
            match chunks.next_chunk(spare) {
                Ok(Some(chunk)) => {
                    if work_tx.send(chunk).is_err() {
                        break;
                    }
                    sent += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(read_error(e));
                    break;
                }
            }
        }
        // Closing the queue lets the parser threads finish.
        drop(work_tx);

        let mut parsed: Vec<Option<RangeResult>> = (0..sent).map(|_| None).collect();
        for (index, result) in done_rx {
            if let Some(slot) = parsed.get_mut(index) {
                *slot = Some(result);
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        concatenate(parsed.into_iter().flatten().collect(), file)
    })
}

/// Cuts a reader's bytes into chunks of whole stanzas.
struct ChunkReader<'r, R: Read> {
    reader: &'r mut R,
    chunk_size: usize,
    /// Bytes read past the last chunk's final stanza boundary.
    carry: Vec<u8>,
    index: usize,
    eof: bool,
}

impl<'r, R: Read> ChunkReader<'r, R> {
    fn new(reader: &'r mut R, chunk_size: usize) -> Self {
        Self {
            reader,
            chunk_size: chunk_size.max(1),
            carry: Vec::new(),
            index: 0,
            eof: false,
        }
    }

    /// The next chunk, read into `buffer` (whose contents are discarded); `None` at the end of input.
    fn next_chunk(&mut self, mut buffer: Vec<u8>) -> std::io::Result<Option<Chunk>> {
        buffer.clear();
        buffer.extend_from_slice(&self.carry);
        self.carry.clear();
        let mut searched: usize = 0;
        let end = loop {
            if !self.eof {
                let want = self
                    .chunk_size
                    .saturating_sub(buffer.len())
                    .max(self.chunk_size / 4)
                    .max(1) as u64;
                if self.reader.by_ref().take(want).read_to_end(&mut buffer)? == 0 {
                    self.eof = true;
                }
            }
            if self.eof {
                break buffer.len();
            }
            // Only the bytes read since the last look can hold a new boundary, except that a blank line may
            // start just before them.
            if let Some(end) = last_boundary(&buffer, searched.saturating_sub(2)) {
                break end;
            }
            // A stanza longer than a chunk: read on until it ends.
            searched = buffer.len();
        };
        if end == 0 && buffer.is_empty() {
            return Ok(None);
        }
        self.carry.extend_from_slice(&buffer[end..]);
        buffer.truncate(end);
        let chunk = Chunk {
            index: self.index,
            data: buffer,
        };
        self.index += 1;
        Ok(Some(chunk))
    }
}

/// The offset just past the last blank line of `data` that ends at or after `from` (a line terminated by a
/// newline, so the line is known to be complete); `None` when there is none.
fn last_boundary(data: &[u8], from: usize) -> Option<usize> {
    let mut end = memchr::memrchr(b'\n', data)?;
    while end >= from {
        let start = memchr::memrchr(b'\n', &data[..end]).map_or(0, |i| i + 1);
        if is_blank(&data[start..end]) {
            return Some(end + 1);
        }
        if start == 0 {
            return None;
        }
        end = start - 1;
    }
    None
}

/// A guess at the number of stanzas in `bytes` of a Packages file (Debian's average about 800 bytes), so
/// the output vector is allocated about once.
fn estimate_stanzas(bytes: usize) -> usize {
    bytes / 700 + 1
}

/// Offsets that cut `data` into about `parts` pieces, each starting at the beginning of a stanza: right
/// after a blank line. The first is 0 and the last is `data.len()`.
fn split_points(data: &[u8], parts: usize) -> Vec<usize> {
    let mut points = vec![0];
    for i in 1..parts {
        let target = data.len() / parts * i;
        let last = points.last().copied().unwrap_or(0);
        let point = after_blank_line(data, target.max(last));
        if point > last && point < data.len() {
            points.push(point);
        }
    }
    points.push(data.len());
    points
}

/// The offset just past the first blank line that starts after `from` (or the end of the data).
fn after_blank_line(data: &[u8], from: usize) -> usize {
    // Move to the start of the next line: `from` may be in the middle of one.
    let mut pos = match memchr(b'\n', &data[from..]) {
        Some(i) => from + i + 1,
        None => return data.len(),
    };
    while pos < data.len() {
        let line_end = memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
        if is_blank(&data[pos..line_end]) {
            return (line_end + 1).min(data.len());
        }
        pos = line_end + 1;
    }
    data.len()
}

/// A line of only spaces, tabs and a CR is a stanza separator.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// The fields of a stanza that a [`Package`] keeps.
#[derive(Clone, Copy)]
enum Slot {
    Package,
    Version,
    Architecture,
    Source,
    Provides,
    PreDepends,
    Depends,
    Size,
    Sha256,
    Filename,
    Essential,
    Priority,
}

const SLOTS: usize = 12;

impl Slot {
    const NAMES: [&'static str; SLOTS] = [
        "Package",
        "Version",
        "Architecture",
        "Source",
        "Provides",
        "Pre-Depends",
        "Depends",
        "Size",
        "SHA256",
        "Filename",
        "Essential",
        "Priority",
    ];

    fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Which kept field `name` is, if any.
    #[inline]
    fn of(name: &[u8]) -> Option<Slot> {
        // Archives write the names in their canonical case. Matching those literally compiles to a switch
        // on the length and a few integer comparisons; other spellings take the slower way.
        match name {
            b"Package" => Some(Slot::Package),
            b"Version" => Some(Slot::Version),
            b"Architecture" => Some(Slot::Architecture),
            b"Source" => Some(Slot::Source),
            b"Provides" => Some(Slot::Provides),
            b"Pre-Depends" => Some(Slot::PreDepends),
            b"Depends" => Some(Slot::Depends),
            b"Size" => Some(Slot::Size),
            b"SHA256" => Some(Slot::Sha256),
            b"Filename" => Some(Slot::Filename),
            b"Essential" => Some(Slot::Essential),
            b"Priority" => Some(Slot::Priority),
            _ => Self::of_any_case(name),
        }
    }

    /// [`Slot::of`] for names not in canonical case. Dispatching on the length first rejects most names
    /// that are not kept without comparing a byte.
    #[cold]
    fn of_any_case(name: &[u8]) -> Option<Slot> {
        let candidates: &[Slot] = match name.len() {
            4 => &[Slot::Size],
            6 => &[Slot::Source, Slot::Sha256],
            7 => &[Slot::Package, Slot::Version, Slot::Depends],
            8 => &[Slot::Provides, Slot::Filename, Slot::Priority],
            9 => &[Slot::Essential],
            11 => &[Slot::PreDepends],
            12 => &[Slot::Architecture],
            _ => return None,
        };
        candidates
            .iter()
            .copied()
            .find(|slot| name.eq_ignore_ascii_case(slot.name().as_bytes()))
    }
}

/// A parse failure inside one range of the input, by its line in that range; ranges are parsed apart (and
/// in parallel), so the line in the file is known only once the ranges before it are counted.
#[derive(Debug)]
struct Fault {
    /// 1-based line within the range.
    line: usize,
    field: String,
    reason: String,
}

impl Fault {
    /// The error for this fault in a range that follows `lines_before` lines of `file`.
    fn into_error(self, lines_before: usize, file: &str) -> RepoError {
        let line = lines_before + self.line;
        RepoError::Parse {
            file: file.to_string(),
            line,
            field: self.field,
            reason: self.reason,
        }
    }
}

/// The bytes being parsed, with the part being parsed as text when it is valid UTF-8.
///
/// Checking the whole range once is much cheaper than checking each kept value on its own: the check is
/// fast per byte and slow per call. Values are then sliced out of the text, which only needs their ends to
/// be character boundaries, and they are: every value starts and ends next to an ASCII byte.
#[derive(Clone, Copy)]
struct Input<'a> {
    data: &'a [u8],
    /// The offset in `data` where the text starts, and the text.
    text: Option<(usize, &'a str)>,
}

impl Input<'_> {
    /// `bytes` (a slice of `data`, or a folded copy) as a string.
    fn string(&self, bytes: &[u8]) -> String {
        if let Some((base, text)) = self.text {
            let offset = (bytes.as_ptr() as usize)
                .wrapping_sub(self.data.as_ptr() as usize)
                .wrapping_sub(base);
            if let Some(value) = offset
                .checked_add(bytes.len())
                .and_then(|end| text.get(offset..end))
            {
                // The same bytes, not merely bytes at the same offset of another buffer.
                if value.as_ptr() == bytes.as_ptr() {
                    return value.to_owned();
                }
            }
        }
        to_string(bytes)
    }
}

/// Byte ranges of the kept fields of the stanza being read.
struct RawStanza {
    /// Line of the first field.
    line: usize,
    /// Line of the `Size` field, the one field whose value can be wrong.
    size_line: usize,
    spans: [(usize, usize); SLOTS],
    /// Bit `i`: slot `i` is present.
    present: u16,
    /// Bit `i`: slot `i` has continuation lines and must be folded.
    folded: u16,
}

impl RawStanza {
    fn new(line: usize) -> Self {
        Self {
            line,
            size_line: line,
            spans: [(0, 0); SLOTS],
            present: 0,
            folded: 0,
        }
    }

    fn get<'a>(&self, input: &Input<'a>, slot: Slot) -> Option<Cow<'a, [u8]>> {
        let bit = 1u16 << slot as usize;
        if self.present & bit == 0 {
            return None;
        }
        let (start, end) = self.spans[slot as usize];
        let raw = &input.data[start..end];
        Some(if self.folded & bit == 0 {
            Cow::Borrowed(trim(raw))
        } else {
            Cow::Owned(fold(raw))
        })
    }

    fn text(&self, input: &Input<'_>, slot: Slot) -> String {
        self.get(input, slot)
            .map(|v| input.string(&v))
            .unwrap_or_default()
    }

    fn build(&self, input: &Input<'_>) -> Result<Package, Fault> {
        let missing = |slot: Slot, what: String| Fault {
            line: self.line,
            field: slot.name().to_string(),
            reason: format!("{what} has no {} field", slot.name()),
        };
        let name = match self.get(input, Slot::Package) {
            Some(v) if !v.is_empty() => input.string(&v),
            _ => return Err(missing(Slot::Package, "the stanza starting here".into())),
        };
        let version = match self.get(input, Slot::Version) {
            Some(v) if !v.is_empty() => input.string(&v),
            _ => return Err(missing(Slot::Version, format!("package {name}"))),
        };
        let source = match self.get(input, Slot::Source) {
            Some(v) => {
                // `Source: name (version)` when the binary's version differs from the source's.
                let end = v
                    .iter()
                    .position(|&b| b == b' ' || b == b'(')
                    .unwrap_or(v.len());
                input.string(trim(&v[..end]))
            }
            None => String::new(),
        };
        let source = if source.is_empty() {
            name.clone()
        } else {
            source
        };
        let pre = self.text(input, Slot::PreDepends);
        let depends = self.text(input, Slot::Depends);
        let depends = match (pre.is_empty(), depends.is_empty()) {
            (true, _) => depends,
            (false, true) => pre,
            (false, false) => format!("{pre}, {depends}"),
        };
        let size = match self.get(input, Slot::Size) {
            Some(v) => parse_u64(&v).ok_or_else(|| Fault {
                line: self.size_line,
                field: "Size".into(),
                reason: format!(
                    "package {name}: {:?} is not a size in bytes",
                    String::from_utf8_lossy(&v)
                ),
            })?,
            None => 0,
        };
        let essential = self
            .get(input, Slot::Essential)
            .is_some_and(|v| v.eq_ignore_ascii_case(b"yes"));
        Ok(Package {
            architecture: self.text(input, Slot::Architecture),
            provides: self.text(input, Slot::Provides),
            sha256: {
                let mut sha256 = self.text(input, Slot::Sha256);
                sha256.make_ascii_lowercase();
                sha256
            },
            filename: self.text(input, Slot::Filename),
            priority: self.text(input, Slot::Priority),
            name,
            version,
            source,
            depends,
            size,
            essential,
        })
    }
}

/// Parses the stanzas in `data[start..end]`, which begins at a stanza boundary, appending to `out`.
/// Returns the number of lines in the range: ranges after the first end with a newline, so that is also
/// the number of newlines, and the next range's first line follows.
fn parse_range(
    data: &[u8],
    start: usize,
    end: usize,
    out: &mut Vec<Package>,
) -> Result<usize, Fault> {
    let input = Input {
        data,
        text: std::str::from_utf8(&data[start..end])
            .ok()
            .map(|text| (start, text)),
    };
    let mut pos = start;
    let mut stanza: Option<RawStanza> = None;
    // The kept field that a continuation line extends; `None` inside a field that is not kept.
    let mut current: Option<Slot> = None;
    // Counted as the loop goes (nearly free) rather than by a separate pass over the bytes, for errors.
    let mut line_no = 0;
    while pos < end {
        line_no += 1;
        let line_end = memchr(b'\n', &data[pos..end]).map_or(end, |i| pos + i);
        let line = &data[pos..line_end];
        match line.first() {
            None => {
                if let Some(done) = stanza.take() {
                    out.push(done.build(&input)?);
                }
            }
            Some(b' ' | b'\t' | b'\r') if is_blank(line) => {
                if let Some(done) = stanza.take() {
                    out.push(done.build(&input)?);
                }
            }
            Some(b' ' | b'\t') => match (&mut stanza, current) {
                (Some(raw), Some(slot)) => {
                    raw.spans[slot as usize].1 = line_end;
                    raw.folded |= 1 << slot as usize;
                }
                (Some(_), None) => {}
                (None, _) => {
                    return Err(Fault {
                        line: line_no,
                        field: "continuation".into(),
                        reason: "a continuation line (starting with a space) outside any field"
                            .into(),
                    })
                }
            },
            Some(b'#') => {}
            Some(_) => {
                // Field names are short: a plain loop finds the colon sooner than a vectorized search
                // gets going.
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    return Err(Fault {
                        line: line_no,
                        field: String::from_utf8_lossy(trim(line)).into_owned(),
                        reason: "a line that is not `Field: value`, a continuation, nor blank"
                            .into(),
                    });
                };
                let raw = stanza.get_or_insert_with(|| RawStanza::new(line_no));
                current = Slot::of(&line[..colon]);
                if let Some(slot) = current {
                    if let Slot::Size = slot {
                        raw.size_line = line_no;
                    }
                    raw.spans[slot as usize] = (pos + colon + 1, line_end);
                    raw.present |= 1 << slot as usize;
                    raw.folded &= !(1 << slot as usize);
                }
            }
        }
        pos = line_end + 1;
    }
    if let Some(done) = stanza.take() {
        out.push(done.build(&input)?);
    }
    Ok(line_no)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// A value spread over continuation lines, as one line: the pieces trimmed and joined by single spaces.
/// For the kept fields (relations, names, numbers) a line break means no more than a space.
fn fold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for piece in raw
        .split(|&b| b == b'\n')
        .map(trim)
        .filter(|p| !p.is_empty())
    {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(piece);
    }
    out
}

fn to_string(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        // Old archives have the odd Latin-1 byte; a replacement character is better than refusing the file.
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// One field of a stanza, as the general parser [`stanzas`] yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name as written.
    pub name: &'a str,
    /// Everything after the colon up to the end of the field's last continuation line, untrimmed.
    pub raw: &'a str,
    /// The 1-based line the field starts on.
    pub line: usize,
}

impl<'a> Field<'a> {
    /// The value on one line: trimmed, with continuation lines joined by single spaces.
    pub fn value(&self) -> Cow<'a, str> {
        if self.raw.contains('\n') {
            Cow::Owned(self.lines().collect::<Vec<_>>().join(" "))
        } else {
            Cow::Borrowed(self.raw.trim())
        }
    }

    /// The non-empty lines of the value, trimmed: for multi-line fields such as `SHA256` in a Release file,
    /// whose first line is empty and whose entries follow one per line.
    pub fn lines(&self) -> impl Iterator<Item = &'a str> {
        self.raw
            .split('\n')
            .map(str::trim)
            .filter(|line| !line.is_empty())
    }
}

/// One stanza (paragraph) of a deb822 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza<'a> {
    /// The 1-based line of its first field.
    pub line: usize,
    /// Its fields, in file order.
    pub fields: Vec<Field<'a>>,
}

impl<'a> Stanza<'a> {
    /// The field called `name` (compared case-insensitively), if the stanza has it.
    pub fn get(&self, name: &str) -> Option<&Field<'a>> {
        self.fields
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(name))
    }

    /// The one-line value of the field called `name`, if present.
    pub fn value(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).map(Field::value)
    }
}

/// The stanzas of a deb822 text, in order; `file` names it in errors.
pub fn stanzas<'a>(text: &'a str, file: &'a str) -> Stanzas<'a> {
    Stanzas {
        text,
        file,
        pos: 0,
        line: 1,
    }
}

/// Iterator over the stanzas of a deb822 text; see [`stanzas`].
#[derive(Debug, Clone)]
pub struct Stanzas<'a> {
    text: &'a str,
    file: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Iterator for Stanzas<'a> {
    type Item = Result<Stanza<'a>, RepoError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut stanza: Option<Stanza<'a>> = None;
        while self.pos < self.text.len() {
            let rest = &self.text[self.pos..];
            let (line, consumed) = match rest.find('\n') {
                Some(i) => (&rest[..i], i + 1),
                None => (rest, rest.len()),
            };
            let line_no = self.line;
            let line_start = self.pos;
            self.pos += consumed;
            self.line += 1;
            if is_blank(line.as_bytes()) {
                if stanza.is_some() {
                    return stanza.map(Ok);
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                let Some(field) = stanza.as_mut().and_then(|s| s.fields.last_mut()) else {
                    self.pos = self.text.len();
                    return Some(Err(RepoError::Parse {
                        file: self.file.to_string(),
                        line: line_no,
                        field: "continuation".into(),
                        reason: "a continuation line (starting with a space) outside any field"
                            .into(),
                    }));
                };
                // Extend the raw value over this line; both are slices of `text`, so the new raw is the
                // range from its start to this line's end.
                let raw_start = field.raw.as_ptr() as usize - self.text.as_ptr() as usize;
                field.raw = &self.text[raw_start..line_start + line.len()];
                continue;
            }
            let Some(colon) = line.find(':') else {
                self.pos = self.text.len();
                return Some(Err(RepoError::Parse {
                    file: self.file.to_string(),
                    line: line_no,
                    field: line.trim().to_string(),
                    reason: "a line that is not `Field: value`, a continuation, nor blank".into(),
                }));
            };
            stanza
                .get_or_insert_with(|| Stanza {
                    line: line_no,
                    fields: Vec::new(),
                })
                .fields
                .push(Field {
                    name: line[..colon].trim(),
                    raw: &line[colon + 1..],
                    line: line_no,
                });
        }
        stanza.map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Package> {
        parse_packages(text.as_bytes(), "Packages").expect("parses")
    }

    fn parse_err(text: &str) -> String {
        parse_packages(text.as_bytes(), "Packages")
            .expect_err("must fail")
            .to_string()
    }

    const TWO: &str = "\
Package: libc6
Source: glibc (2.36-9)
Version: 2.36-9+deb12u4
Installed-Size: 12000
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Provides: libc6-x32-compat, libc-dev (= 2.36)
Pre-Depends: libgcc-s1
Depends: libc-bin (= 2.36-9)
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 This package includes shared versions of the standard C library.
Priority: optional
Essential: yes
Filename: pool/main/g/glibc/libc6_2.36-9_amd64.deb
Size: 2757356
SHA256: ABCDEF0123

Package: base-files
Version: 12.4
Architecture: amd64
Priority: required
";

    #[test]
    fn keeps_the_fields_a_package_needs() {
        let packages = parse(TWO);
        assert_eq!(packages.len(), 2);
        let libc = &packages[0];
        assert_eq!(libc.name, "libc6");
        assert_eq!(libc.version, "2.36-9+deb12u4");
        assert_eq!(libc.architecture, "amd64");
        assert_eq!(libc.source, "glibc");
        assert_eq!(libc.provides, "libc6-x32-compat, libc-dev (= 2.36)");
        assert_eq!(libc.depends, "libgcc-s1, libc-bin (= 2.36-9)");
        assert_eq!(libc.size, 2_757_356);
        assert_eq!(libc.sha256, "abcdef0123");
        assert_eq!(libc.filename, "pool/main/g/glibc/libc6_2.36-9_amd64.deb");
        assert!(libc.essential);
        assert_eq!(libc.priority, "optional");
        let base = &packages[1];
        assert_eq!(base.source, "base-files", "Source defaults to the package");
        assert_eq!(base.depends, "");
        assert_eq!(base.size, 0);
        assert!(!base.essential);
        assert_eq!(base.priority, "required");
    }

    #[test]
    fn edge_cases_parse_alike() {
        let plain = parse(TWO);
        // Each variant must give exactly the same packages as the plain text.
        let variants: Vec<(&str, String)> = vec![
            ("crlf", TWO.replace('\n', "\r\n")),
            ("no final newline", TWO.trim_end().to_string()),
            ("leading blank lines", format!("\n\n  \n{TWO}")),
            ("trailing blank lines", format!("{TWO}\n\n\t\n")),
            (
                "many separators",
                TWO.replace("\n\nPackage:", "\n\n \n\t\n\nPackage:"),
            ),
            (
                "whitespace separator",
                TWO.replace("\n\nPackage:", "\n \t \nPackage:"),
            ),
            (
                "comments",
                TWO.replace("Priority: required", "# a comment\nPriority: required"),
            ),
            (
                "lowercase names",
                TWO.replace("Package:", "package:")
                    .replace("SHA256:", "sha256:"),
            ),
            (
                "no space after colon",
                TWO.replace("Version: 12.4", "Version:12.4"),
            ),
            (
                "trailing spaces",
                TWO.replace("Version: 12.4", "Version: 12.4  \t"),
            ),
            (
                "folded depends",
                TWO.replace(
                    "Depends: libc-bin (= 2.36-9)",
                    "Depends:\n libc-bin\n   (= 2.36-9)",
                ),
            ),
        ];
        for (what, text) in variants {
            assert_eq!(parse(&text), plain, "{what}");
        }
    }

    #[test]
    fn empty_input_has_no_packages() {
        assert!(parse("").is_empty());
        assert!(parse("\n\n \n").is_empty());
        assert!(parse("# only a comment\n").is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let data =
            b"Package: caf\xe9\nVersion: 1\nDescription: \xff\xfe\n\nPackage: b\nVersion: 2\n";
        let packages = parse_packages(data, "latin1").expect("parses");
        assert_eq!(packages[0].name, "caf\u{fffd}");
        assert_eq!(packages[0].version, "1");
        assert_eq!(packages[1].name, "b");
    }

    /// Checks what one value of a package comes out as: each case gives the stanza fields of package `name`
    /// (besides `Package` and `Version`) and the value `get` must then read from it.
    fn check_value(name: &str, get: fn(&Package) -> &str, cases: &[(&str, &str)]) {
        for (fields, want) in cases {
            let packages = parse(&format!("Package: {name}\nVersion: 1\n{fields}\n"));
            assert_eq!(get(&packages[0]), *want, "{fields:?}");
        }
    }

    #[test]
    fn source_version_suffix_is_stripped() {
        check_value(
            "bar",
            |p| &p.source,
            &[
                ("Source: foo (1.2)", "foo"),
                ("Source: foo(1.2)", "foo"),
                ("Source: foo", "foo"),
                ("Source:   foo   ", "foo"),
                ("Source: (1.2)", "bar"),
            ],
        );
    }

    #[test]
    fn depends_joins_pre_depends_first() {
        check_value(
            "x",
            |p| &p.depends,
            &[
                ("Depends: a", "a"),
                ("Pre-Depends: p", "p"),
                ("Depends: a, b\nPre-Depends: p", "p, a, b"),
                ("", ""),
            ],
        );
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let err = parse_err("Package: a\nVersion: 1\n\nPackage: b\nArchitecture: all\n");
        assert_eq!(err, "Packages:4: Version: package b has no Version field");
        let err = parse_err("Package: a\nVersion: 1\n\n\nVersion: 2\nArchitecture: all\n");
        assert_eq!(
            err,
            "Packages:5: Package: the stanza starting here has no Package field"
        );
        let err = parse_err("Package: a\nVersion: 1\nSize: 12k\n");
        assert!(
            err.starts_with("Packages:3: Size: package a: \"12k\" is not a size"),
            "{err}"
        );
        let err = parse_err("Package: a\nVersion: 1\njunk without colon\n");
        assert!(err.starts_with("Packages:3: junk without colon: "), "{err}");
        let err = parse_err("Package: a\nVersion: 1\n\n continued\n");
        assert!(err.starts_with("Packages:4: continuation: "), "{err}");
        let err = parse_err("Package: a\r\nVersion: 1\r\n\r\nPackage: b\r\n");
        assert!(err.starts_with("Packages:4: Version: package b"), "{err}");
    }

    /// A small deterministic generator, so the randomized test needs no extra crate and fails reproducibly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn word(&mut self) -> String {
            const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789+-.~";
            let len = 1 + self.below(12) as usize;
            let mut word: String = (0..len)
                .map(|_| CHARS[self.below(CHARS.len() as u64) as usize] as char)
                .collect();
            // Names and versions start with an alphanumeric in real archives.
            word.replace_range(0..1, "p");
            word
        }
    }

    fn random_package(rng: &mut Rng) -> Package {
        let name = rng.word();
        let relation = |rng: &mut Rng| -> String {
            (0..rng.below(4))
                .map(|_| rng.word())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let depends = relation(rng);
        Package {
            source: if rng.below(2) == 0 {
                name.clone()
            } else {
                rng.word()
            },
            name,
            version: rng.word(),
            architecture: ["amd64", "all", "arm64"][rng.below(3) as usize].to_string(),
            provides: relation(rng),
            depends,
            size: rng.next() >> 20,
            sha256: hex::encode(rng.next().to_be_bytes()),
            filename: format!("pool/main/{}.deb", rng.word()),
            essential: rng.below(5) == 0,
            priority: ["", "optional", "required"][rng.below(3) as usize].to_string(),
        }
    }

    /// Writes a package as a stanza, shuffling the field order and adding noise that must not change the
    /// result: fields that are not kept, multi-line descriptions, folded relations, odd spacing.
    fn render(rng: &mut Rng, p: &Package, crlf: bool) -> String {
        let mut fields: Vec<String> = vec![
            format!("Package: {}", p.name),
            format!("Version:{}{}", " ".repeat(rng.below(3) as usize), p.version),
            format!("Architecture: {}", p.architecture),
            format!("Size: {}", p.size),
            format!("SHA256: {}", p.sha256),
            format!("Filename: {}", p.filename),
            format!("Maintainer: Someone <x@example.org>"),
            format!("Description: a package\n long text\n .\n more: text"),
        ];
        if p.source != p.name || rng.below(2) == 0 {
            let suffix = if rng.below(2) == 0 { " (9.9-1)" } else { "" };
            fields.push(format!("Source: {}{suffix}", p.source));
        }
        if !p.provides.is_empty() {
            fields.push(format!("Provides: {}", p.provides));
        }
        if !p.depends.is_empty() {
            // Fold at the commas now and then, as deb822 allows.
            let sep = if rng.below(3) == 0 { ",\n " } else { ", " };
            fields.push(format!(
                "Depends: {}",
                p.depends.split(", ").collect::<Vec<_>>().join(sep)
            ));
        }
        if p.essential {
            fields.push("Essential: yes".into());
        } else if rng.below(3) == 0 {
            fields.push("Essential: no".into());
        }
        if !p.priority.is_empty() {
            fields.push(format!("Priority: {}", p.priority));
        }
        for i in (1..fields.len()).rev() {
            fields.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut text = fields.join("\n");
        text.push('\n');
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        text
    }

    /// Writes packages as a Packages file (see [`render`]), separated by varied blank lines, and sometimes
    /// without the final newline.
    fn render_all(rng: &mut Rng, packages: &[Package], crlf: bool) -> String {
        let mut text = String::new();
        for p in packages {
            text.push_str(&render(rng, p, crlf));
            text.push_str(["\n", "\n\n", " \n", "\t\n\n"][rng.below(4) as usize]);
        }
        if rng.below(2) == 0 {
            text = text.trim_end().to_string();
        }
        text
    }

    #[test]
    fn random_stanzas_round_trip() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..200 {
            let count = rng.below(20) as usize;
            let packages: Vec<Package> = (0..count).map(|_| random_package(&mut rng)).collect();
            let crlf = rng.below(4) == 0;
            let text = render_all(&mut rng, &packages, crlf);
            let parsed = parse_packages(text.as_bytes(), "random").unwrap_or_else(|e| {
                panic!("round {round}: {e}\n{text}");
            });
            assert_eq!(parsed, packages, "round {round}:\n{text}");
        }
    }

    #[test]
    fn parallel_parse_equals_serial_parse() {
        let mut rng = Rng(42);
        let packages: Vec<Package> = (0..3_000).map(|_| random_package(&mut rng)).collect();
        let mut text = String::new();
        for p in &packages {
            text.push_str(&render(&mut rng, p, false));
            text.push('\n');
        }
        let parallel = parse_with_threads(text.as_bytes(), "big", 5).expect("parses");
        assert_eq!(split_points(text.as_bytes(), 5).len(), 6, "five chunks");
        let mut serial = Vec::new();
        let lines = parse_range(text.as_bytes(), 0, text.len(), &mut serial).expect("parses");
        assert_eq!(lines, text.lines().count());
        assert_eq!(parallel.len(), packages.len());
        assert_eq!(parallel, serial);
        assert_eq!(parallel, packages);
    }

    #[test]
    fn streaming_parse_equals_in_memory_parse() {
        let mut rng = Rng(7);
        for round in 0..40 {
            let packages: Vec<Package> = (0..rng.below(40))
                .map(|_| random_package(&mut rng))
                .collect();
            let crlf = rng.below(3) == 0;
            let text = render_all(&mut rng, &packages, crlf);
            // Chunks smaller than a stanza, about a stanza, and larger than the input.
            for chunk in [16, 64, 300, 1 << 20] {
                for threads in [1, 3] {
                    let parsed =
                        parse_reader_with_threads(text.as_bytes(), "stream", threads, chunk)
                            .unwrap_or_else(|e| panic!("round {round}, chunk {chunk}: {e}"));
                    assert_eq!(
                        parsed, packages,
                        "round {round}, chunk {chunk}, threads {threads}"
                    );
                }
            }
        }
        assert!(parse_packages_from(&b""[..], "empty")
            .expect("parses")
            .is_empty());
    }

    /// `count` good stanzas (with continuation lines), and the line a stanza appended to them starts on.
    fn many_stanzas(count: usize) -> (String, usize) {
        let mut text = String::new();
        for i in 0..count {
            text.push_str(&format!(
                "Package: p{i}\nVersion: 1\nDescription: x\n more\n\n"
            ));
        }
        let line = text.lines().count() + 1;
        (text, line)
    }

    #[test]
    fn streaming_errors_report_the_global_line() {
        let (mut text, line) = many_stanzas(300);
        text.push_str("Package: broken\nArchitecture: all\n\nPackage: fine\nVersion: 1\n");
        for threads in [1, 2] {
            let err = parse_reader_with_threads(text.as_bytes(), "stream", threads, 100)
                .expect_err("broken");
            assert_eq!(
                err.to_string(),
                format!("stream:{line}: Version: package broken has no Version field"),
                "threads {threads}"
            );
        }
    }

    #[test]
    fn last_boundary_finds_the_last_complete_blank_line() {
        assert_eq!(last_boundary(b"A: 1\n\nB: 2\n", 0), Some(6));
        assert_eq!(last_boundary(b"A: 1\n\nB: 2\n\n", 0), Some(12));
        assert_eq!(last_boundary(b"A: 1\r\n\r\nB: 2", 0), Some(8));
        assert_eq!(last_boundary(b"A: 1\n \t\nB", 0), Some(8));
        assert_eq!(last_boundary(b"A: 1\nB: 2\n", 0), None);
        assert_eq!(last_boundary(b"\nA: 1\n", 0), Some(1));
        // A blank line without its newline yet may still be the start of a continuation... of nothing, but
        // it is not known to be complete.
        assert_eq!(last_boundary(b"A: 1\n", 0), None);
        assert_eq!(last_boundary(b"A: 1\n\nB: 2\nC: 3\n", 11), None);
    }

    #[test]
    fn split_points_fall_on_stanza_starts() {
        let text = "Package: a\nVersion: 1\n\nPackage: b\nVersion: 1\n \nPackage: c\nVersion: 1\n";
        for parts in 1..6 {
            let points = split_points(text.as_bytes(), parts);
            assert_eq!(points.first(), Some(&0));
            assert_eq!(points.last(), Some(&text.len()));
            for &p in &points[1..points.len() - 1] {
                assert!(text[p..].starts_with("Package:"), "{parts}: {p}");
            }
        }
    }

    #[test]
    fn a_parallel_error_reports_the_global_line() {
        let (mut text, line) = many_stanzas(5_000);
        text.push_str("Package: broken\n");
        let err = parse_with_threads(text.as_bytes(), "big", 4).expect_err("broken");
        assert_eq!(
            err.to_string(),
            format!("big:{line}: Version: package broken has no Version field")
        );
    }

    #[test]
    fn general_stanzas_keep_every_field() {
        let text = "Origin: Debian\r\nSHA256:\n abc 12 main/x\n def 3 main/y\n\n# c\nA: 1\nb:  two\n  more \n";
        let all: Vec<Stanza> = stanzas(text, "Release")
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].line, 1);
        assert_eq!(all[0].value("origin").as_deref(), Some("Debian"));
        let sums: Vec<&str> = all[0].get("SHA256").expect("present").lines().collect();
        assert_eq!(sums, ["abc 12 main/x", "def 3 main/y"]);
        assert_eq!(all[1].line, 7);
        assert_eq!(all[1].value("B").as_deref(), Some("two more"));
        assert_eq!(all[1].get("b").map(|f| f.line), Some(8));

        let err = stanzas("A: 1\nbogus\n", "Release")
            .collect::<Result<Vec<_>, _>>()
            .expect_err("bad line");
        assert!(err.to_string().starts_with("Release:2: bogus:"), "{err}");
    }
}
