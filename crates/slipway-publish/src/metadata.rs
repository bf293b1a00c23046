//! The JSON documents of the public tree: stream metadata in Fedora CoreOS's shape and the releases index.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use slipway_model::{ArtifactKind, OutputFormat, ReleaseState, RevocationNote};

use crate::site::{EolInfo, ReleaseInput, StaleInfo, StreamInput};

/// The architecture name CoreOS stream metadata uses (RPM/GNU names) for a Debian architecture name.
/// Names that are the same in both, and ones this table does not know, pass through unchanged.
pub(crate) fn coreos_arch(debian: &str) -> &str {
    match debian {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "ppc64el" => "ppc64le",
        "i386" => "i686",
        "armhf" => "armv7hl",
        other => other,
    }
}

/// The CoreOS platform and format names an image kind is listed under. Only images appear in stream
/// metadata; logs and locks do not.
pub(crate) fn platform_for(kind: ArtifactKind) -> Option<(&'static str, &'static str)> {
    match kind {
        // qcow2 is what QEMU/libvirt users download; CoreOS calls that platform `qemu`.
        ArtifactKind::Image(OutputFormat::Qcow2) => Some(("qemu", "qcow2")),
        // A raw disk written to a real machine's disk is CoreOS's `metal`.
        ArtifactKind::Image(OutputFormat::RawXz) => Some(("metal", "raw.xz")),
        _ => None,
    }
}

/// Where a file of the tree is reached: an absolute URL under `base_url`, or a path relative to the site root.
pub(crate) fn location(base_url: Option<&str>, rel: &str) -> String {
    match base_url {
        Some(base) => format!("{}/{rel}", base.trim_end_matches('/')),
        None => rel.to_string(),
    }
}

/// A timestamp as RFC 3339 in UTC, to the second, as CoreOS metadata writes it.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The directory of a release relative to the site root.
pub(crate) fn release_dir(stream: &str, release: &ReleaseInput) -> String {
    format!("{stream}/{}", release.release.version)
}

/// Whether a release is served: its directory is in the tree. Revoked releases are withdrawn, and expired
/// ones (past their stream's retention) too; the releases index keeps both.
pub(crate) fn is_served(state: ReleaseState) -> bool {
    !matches!(state, ReleaseState::Revoked | ReleaseState::Expired)
}

/// The archived releases index of a stream that reached its end of life, relative to the site root. The
/// date is the end of life's, so the name stays the same on every later publish.
pub(crate) fn archive_path(stream: &str, eol: &EolInfo) -> String {
    format!(
        "archive/{stream}/releases-{}.json",
        eol.at.strftime("%Y%m%d")
    )
}

/// The stale marker, in stream metadata and the releases index.
#[derive(Serialize)]
struct StaleDoc {
    since: String,
    incident: Option<String>,
}

impl StaleDoc {
    fn new(stale: &StaleInfo) -> Self {
        Self {
            since: rfc3339(stale.since),
            incident: stale.incident_url.clone(),
        }
    }
}

/// The end-of-life marker, in stream metadata and the releases index.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct EolDoc {
    at: String,
    successor: Option<String>,
    /// The successor's stream metadata.
    successor_stream: Option<String>,
    /// The archived releases index.
    archive: String,
}

impl EolDoc {
    fn new(stream: &str, eol: &EolInfo, base_url: Option<&str>) -> Self {
        Self {
            at: rfc3339(eol.at),
            successor: eol.successor.clone(),
            successor_stream: eol
                .successor
                .as_ref()
                .map(|s| location(base_url, &format!("streams/{s}.json"))),
            archive: location(base_url, &archive_path(stream, eol)),
        }
    }
}

#[derive(Serialize)]
struct StreamDoc<'a> {
    stream: &'a str,
    metadata: StreamMetadata,
    architectures: BTreeMap<&'a str, ArchDoc>,
}

/// CoreOS metadata has `last-modified` (and `generator`) here; readers of the format ignore other keys, so
/// slipway's own markers live beside them under an `x-slipway-` prefix that no future CoreOS key takes.
#[derive(Serialize)]
struct StreamMetadata {
    #[serde(rename = "last-modified")]
    last_modified: String,
    generator: &'static str,
    #[serde(rename = "x-slipway-stale", skip_serializing_if = "Option::is_none")]
    stale: Option<StaleDoc>,
    #[serde(rename = "x-slipway-eol", skip_serializing_if = "Option::is_none")]
    eol: Option<EolDoc>,
}

#[derive(Serialize)]
struct ArchDoc {
    artifacts: BTreeMap<&'static str, PlatformDoc>,
}

#[derive(Serialize)]
struct PlatformDoc {
    release: String,
    formats: BTreeMap<&'static str, BTreeMap<&'static str, DiskDoc>>,
}

#[derive(Serialize)]
struct DiskDoc {
    location: String,
    signature: String,
    sha256: String,
}

/// `streams/<stream>.json`: the stream's current release (never a revoked one), in the shape
/// `coreos-stream-metadata` reads, with the stale and end-of-life markers under `metadata`.
pub(crate) fn stream_json(
    stream: &StreamInput,
    latest: Option<&ReleaseInput>,
    base_url: Option<&str>,
    generated_at: Timestamp,
) -> serde_json::Result<Vec<u8>> {
    let mut architectures = BTreeMap::new();
    if let Some(latest) = latest {
        let dir = release_dir(&stream.name, latest);
        let version = latest.release.version.to_string();
        let mut artifacts: BTreeMap<&'static str, PlatformDoc> = BTreeMap::new();
        for file in &latest.files {
            let Some((platform, format)) = platform_for(file.kind) else {
                continue;
            };
            let rel = format!("{dir}/{}", file.file_name);
            let disk = DiskDoc {
                location: location(base_url, &rel),
                signature: location(base_url, &format!("{rel}.sig")),
                sha256: file.sha256.to_string(),
            };
            artifacts
                .entry(platform)
                .or_insert_with(|| PlatformDoc {
                    release: version.clone(),
                    formats: BTreeMap::new(),
                })
                .formats
                .insert(format, BTreeMap::from([("disk", disk)]));
        }
        architectures.insert(coreos_arch(&stream.architecture), ArchDoc { artifacts });
    }
    let doc = StreamDoc {
        stream: &stream.name,
        metadata: StreamMetadata {
            last_modified: rfc3339(generated_at),
            generator: concat!("slipway ", env!("CARGO_PKG_VERSION")),
            stale: stream.stale.as_ref().map(StaleDoc::new),
            eol: stream
                .eol
                .as_ref()
                .map(|eol| EolDoc::new(&stream.name, eol, base_url)),
        },
        architectures,
    };
    pretty(&doc)
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ReleasesDoc<'a> {
    stream: &'a str,
    architecture: &'a str,
    generated_at: String,
    /// The year whose releases an earlier part lists; absent from the current index and an archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    year: Option<&'a str>,
    /// The month (`YYYYMM`) whose releases the current index lists; absent from the other documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    month: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<StaleDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eol: Option<EolDoc>,
    /// The earlier years' parts of the index, newest first; only in the current index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    earlier: Vec<EarlierDoc>,
    releases: Vec<ReleaseDoc<'a>>,
}

/// Where an earlier year's part of the releases index is.
#[derive(Serialize)]
struct EarlierDoc {
    year: String,
    location: String,
    releases: usize,
}

/// Which part of a stream's releases index a document is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IndexPart<'a> {
    /// `releases/<stream>.json`: the releases of the newest month, and a list of the earlier years' parts
    /// (year and number of releases).
    Current {
        month: &'a str,
        earlier: &'a [(&'a str, usize)],
    },
    /// `releases/<stream>/<year>.json`: the releases of a year that the current index does not hold.
    Year(&'a str),
    /// Every release in one document: the archive written at the end of life.
    Whole,
}

/// The path of an earlier year's part of a stream's releases index, relative to the site root.
pub(crate) fn year_index_path(stream: &str, year: &str) -> String {
    format!("releases/{stream}/{year}.json")
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ReleaseDoc<'a> {
    version: String,
    compose: &'a str,
    state: &'static str,
    created_at: String,
    published_at: Option<String>,
    /// The release's directory; absent once it is revoked and withdrawn.
    location: Option<String>,
    checksum: Option<String>,
    /// Why, by whom and when it was revoked; only on revoked releases.
    #[serde(skip_serializing_if = "Option::is_none")]
    revocation: Option<RevocationDoc<'a>>,
    files: Vec<FileDoc<'a>>,
}

#[derive(Serialize)]
struct RevocationDoc<'a> {
    reason: &'a str,
    author: &'a str,
    at: String,
}

impl<'a> RevocationDoc<'a> {
    fn new(note: &'a RevocationNote) -> Self {
        Self {
            reason: &note.reason,
            author: &note.author,
            at: rfc3339(note.at),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct FileDoc<'a> {
    name: &'a str,
    kind: String,
    size: u64,
    sha256: &'a str,
    location: Option<String>,
    signature: Option<String>,
}

/// A part of the releases index (see [`IndexPart`]): the releases given, newest first, with their state and
/// files; revoked ones stay, with their revocation, and without locations since their files are withdrawn.
/// The index is split so that a publish rewrites only its newest month, and the year part that month
/// leaves when the next one begins, however long the stream's history.
pub(crate) fn releases_json(
    stream: &StreamInput,
    releases: &[&ReleaseInput],
    part: IndexPart<'_>,
    base_url: Option<&str>,
    generated_at: Timestamp,
) -> serde_json::Result<Vec<u8>> {
    let (year, month, earlier) = match part {
        IndexPart::Current { month, earlier } => (None, Some(month), earlier),
        IndexPart::Year(year) => (Some(year), None, &[][..]),
        IndexPart::Whole => (None, None, &[][..]),
    };
    let earlier = earlier
        .iter()
        .map(|(year, releases)| EarlierDoc {
            year: (*year).to_string(),
            location: location(base_url, &year_index_path(&stream.name, year)),
            releases: *releases,
        })
        .collect();
    let releases = releases
        .iter()
        .map(|r| {
            let served = is_served(r.release.state);
            let dir = release_dir(&stream.name, r);
            let at = |rel: String| served.then(|| location(base_url, &rel));
            // A pending release becomes published by the very switch that makes this file readable, so no
            // reader can ever see it pending.
            let (state, published_at) = match r.release.state {
                ReleaseState::Pending => (
                    ReleaseState::Published,
                    Some(r.release.published_at.unwrap_or(generated_at)),
                ),
                state => (state, r.release.published_at),
            };
            ReleaseDoc {
                version: r.release.version.to_string(),
                compose: r.release.compose.as_str(),
                state: state.as_str(),
                created_at: rfc3339(r.release.created_at),
                published_at: published_at.map(rfc3339),
                location: at(format!("{dir}/")),
                checksum: at(format!("{dir}/CHECKSUM")),
                revocation: (r.release.state == ReleaseState::Revoked)
                    .then_some(r.release.revocation.as_ref())
                    .flatten()
                    .map(RevocationDoc::new),
                files: r
                    .files
                    .iter()
                    .map(|f| FileDoc {
                        name: &f.file_name,
                        kind: f.kind.name(),
                        size: f.size,
                        sha256: f.sha256.as_str(),
                        location: at(format!("{dir}/{}", f.file_name)),
                        signature: at(format!("{dir}/{}.sig", f.file_name)),
                    })
                    .collect(),
            }
        })
        .collect();
    pretty(&ReleasesDoc {
        stream: &stream.name,
        architecture: &stream.architecture,
        generated_at: rfc3339(generated_at),
        year,
        month,
        stale: stream.stale.as_ref().map(StaleDoc::new),
        eol: stream
            .eol
            .as_ref()
            .map(|eol| EolDoc::new(&stream.name, eol, base_url)),
        earlier,
        releases,
    })
}

/// What the releases index of the current generation says a release directory holds, read back so that a
/// publish can check a carried-over release against it without opening every directory.
#[derive(Debug, Default)]
pub(crate) struct PublishedIndex {
    /// Served releases by version: `(file name, sha256, size)` of each file.
    pub served: BTreeMap<String, Vec<(String, String, u64)>>,
    /// Every release listed, by version, with where its directory was.
    pub listed: BTreeMap<String, PoolPlace>,
}

/// Where a release's directory is kept, by its state: what tidying the pool acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolPlace {
    /// In the pool, served.
    Served,
    /// Revoked: kept aside among the withdrawn releases.
    Withdrawn,
    /// Nowhere: expired, its directory deleted.
    Gone,
}

impl PoolPlace {
    /// Where a release in `state` is kept.
    pub(crate) fn of(state: ReleaseState) -> Self {
        if is_served(state) {
            Self::Served
        } else if state == ReleaseState::Revoked {
            Self::Withdrawn
        } else {
            Self::Gone
        }
    }
}

#[derive(Deserialize)]
struct IndexIn {
    releases: Vec<ReleaseIn>,
}

#[derive(Deserialize)]
struct ReleaseIn {
    version: String,
    #[serde(default)]
    state: String,
    location: Option<String>,
    #[serde(default)]
    files: Vec<FileIn>,
}

#[derive(Deserialize)]
struct FileIn {
    name: String,
    sha256: String,
    size: u64,
}

impl PublishedIndex {
    /// Reads a releases index. Anything it cannot read (no file, another format) gives an empty index, which
    /// only means every directory is checked from its own CHECKSUM instead.
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        let Ok(index) = serde_json::from_slice::<IndexIn>(bytes) else {
            return Self::default();
        };
        let listed = index
            .releases
            .iter()
            .map(|r| {
                let place = if r.location.is_some() {
                    PoolPlace::Served
                } else if r.state == ReleaseState::Revoked.as_str() {
                    PoolPlace::Withdrawn
                } else {
                    PoolPlace::Gone
                };
                (r.version.clone(), place)
            })
            .collect();
        let served = index
            .releases
            .into_iter()
            .filter(|r| r.location.is_some())
            .map(|r| {
                let files = r
                    .files
                    .into_iter()
                    .map(|f| (f.name, f.sha256.to_ascii_lowercase(), f.size))
                    .collect();
                (r.version, files)
            })
            .collect();
        Self { served, listed }
    }
}

/// A releases index document (from [`releases_json`]) split around the time it was written, its
/// `"generated-at"` member: the two parts show everything else. A document without that member is all
/// in the first part.
pub(crate) fn split_at_generated_at(doc: &[u8], generated_at: Timestamp) -> (&[u8], &[u8]) {
    let member = format!("\"generated-at\": \"{}\"", rfc3339(generated_at));
    // The member comes third, in the document's first lines.
    match doc
        .windows(member.len())
        .position(|window| window == member.as_bytes())
    {
        Some(start) => (&doc[..start], &doc[start + member.len()..]),
        None => (doc, &[]),
    }
}

fn pretty<T: Serialize>(doc: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(doc)?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_architectures_and_locations() {
        assert_eq!(coreos_arch("amd64"), "x86_64");
        assert_eq!(coreos_arch("arm64"), "aarch64");
        assert_eq!(coreos_arch("s390x"), "s390x");
        assert_eq!(location(None, "s/1/f"), "s/1/f");
        assert_eq!(
            location(Some("https://example.org/pub/"), "s/1/f"),
            "https://example.org/pub/s/1/f"
        );
        let at: Timestamp = "2026-11-21T10:11:12.5Z".parse().expect("timestamp");
        assert_eq!(rfc3339(at), "2026-11-21T10:11:12Z");
    }

    #[test]
    fn an_index_splits_around_its_own_time_and_nothing_else() {
        let at: Timestamp = "2026-11-21T10:11:12Z".parse().expect("timestamp");
        let doc = |time: &str| {
            format!(
                "{{\n  \"stream\": \"s\",\n  \"generated-at\": \"{time}\",\n  \"releases\": [\n    {{\n      \"published-at\": \"2026-11-21T10:11:12Z\"\n    }}\n  ]\n}}\n"
            )
        };
        let written = doc("2026-11-21T10:11:12Z");
        let (before, after) = split_at_generated_at(written.as_bytes(), at);
        assert_eq!(before, b"{\n  \"stream\": \"s\",\n  ");
        // A release published at the same second keeps its time: only the document's own is left out.
        assert!(after.starts_with(b",\n  \"releases\""));
        assert!(
            String::from_utf8_lossy(after).contains("\"published-at\": \"2026-11-21T10:11:12Z\"")
        );
        // Written at another time, the document is whole in the first part.
        let other = doc("2026-11-22T00:00:00Z");
        assert_eq!(
            split_at_generated_at(other.as_bytes(), at),
            (other.as_bytes(), &b""[..])
        );
    }
}
