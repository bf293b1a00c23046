//! Building a generation of the public tree and switching it in atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;
use slipway_model::{ArtifactKind, Release, ReleaseState, Sha256};

use crate::feed;
use crate::fsutil::{self, Durability, Placed};
use crate::html::{self, StreamView};
use crate::metadata::{
    self, archive_path, is_served, year_index_path, IndexPart, PoolPlace, PublishedIndex,
};
use crate::sign::{SignError, Signer};

/// Everything one publish writes: the site's streams and all their releases.
#[derive(Debug, Clone)]
pub struct SiteInput {
    /// The public path. It becomes (or already is) a symbolic link to the current generation directory,
    /// `<parent>/.<name>.generations/<n>/`; release directories live in `<parent>/.<name>.pool/`.
    pub publish_dir: PathBuf,
    /// The URL the site is served under, such as `https://images.example.org/pub`; locations in the JSON
    /// documents are absolute under it. Without it they are paths relative to the site root.
    pub base_url: Option<String>,
    /// The download page's title.
    pub title: String,
    /// The streams, in the order the page lists them.
    pub streams: Vec<StreamInput>,
    /// When this publish happens; written into the metadata.
    pub generated_at: Timestamp,
    /// Whether every file and directory is flushed to disk before the switch makes it public, so that a
    /// machine's crash never leaves a published name without its bytes. False only for a throwaway tree,
    /// such as a simulation's.
    pub durable: bool,
    /// Fingerprints an earlier publish returned ([`PublishSummary::fingerprints`]) for streams whose
    /// input is exactly the one they were computed from: taken as they are instead of hashing those
    /// streams' whole history again. Empty is always correct; a wrong one makes the publish keep that
    /// stream's old documents.
    pub known_fingerprints: BTreeMap<String, String>,
}

/// One stream of the site.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInput {
    /// The stream's name, also a directory name in the tree.
    pub name: String,
    /// One line for the download page.
    pub description: String,
    /// The Debian architecture name, such as `amd64` (mapped to `x86_64` in stream metadata).
    pub architecture: String,
    /// Every release of the stream, in any state, newest first.
    pub releases: Vec<ReleaseInput>,
    /// Set while the stream is stale: a release day passed with no compose good enough to release, so it
    /// still offers its previous release.
    pub stale: Option<StaleInfo>,
    /// Set once the stream has reached its end of life: it gets no new releases.
    pub eol: Option<EolInfo>,
}

/// Why a stream is stale and where people can follow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleInfo {
    /// The release day since which the stream has had nothing new to release.
    pub since: Timestamp,
    /// The incident that tracks the failures, if one is open.
    pub incident_url: Option<String>,
}

/// A stream's end of life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EolInfo {
    /// When it ended; its date names the archived releases index.
    pub at: Timestamp,
    /// The stream users should move to, by name; it should be a stream of the same site.
    pub successor: Option<String>,
}

/// One release and the files it publishes.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseInput {
    /// The release.
    pub release: Release,
    /// Its files.
    pub files: Vec<PublishFile>,
}

/// One file of a release.
#[derive(Debug, Clone, Serialize)]
pub struct PublishFile {
    /// What the file is; images appear in the stream metadata.
    pub kind: ArtifactKind,
    /// The name it is published under.
    pub file_name: String,
    /// Its SHA-256, checked against the bytes before anything is signed.
    pub sha256: Sha256,
    /// Its size in bytes, checked likewise.
    pub size: u64,
    /// The blob file to hard-link (or, across filesystems, copy) from.
    pub source: PathBuf,
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct PublishSummary {
    /// The public path, now a link to the new generation.
    pub publish_dir: PathBuf,
    /// The new generation's number.
    pub generation: u64,
    /// The download page, through the public path.
    pub index_html: PathBuf,
    /// Files written, linked or copied anew: images, signatures, CHECKSUMs of new releases, keys and
    /// metadata. Files carried over unchanged from the previous generation are not counted.
    pub files_written: usize,
    /// The fingerprint of each stream's input, by stream: a later publish of the same input may pass it
    /// back in [`SiteInput::known_fingerprints`].
    pub fingerprints: BTreeMap<String, String>,
}

/// Why a publish failed. When it does, the public path still shows the previous tree, untouched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The input contradicts itself or names something that cannot be a file name.
    #[error("cannot publish: {0}")]
    Invalid(String),
    /// The public path holds something slipway did not put there.
    #[error("refusing to publish to {}: {reason}", .path.display())]
    Occupied {
        /// The public path.
        path: PathBuf,
        /// What is there.
        reason: String,
    },
    /// A release's file is not where the blob store should have it.
    #[error("file {file_name} of release {release} is missing: there is no {}; nothing was published", .path.display())]
    MissingSource {
        /// `<stream> <version>`.
        release: String,
        /// The file's published name.
        file_name: String,
        /// The source path looked at.
        path: PathBuf,
    },
    /// A release's file does not have the size or SHA-256 the release says.
    #[error("file {file_name} of release {release} ({}) does not match the release: {detail}; nothing was published", .path.display())]
    SourceMismatch {
        /// `<stream> <version>`.
        release: String,
        /// The file's published name.
        file_name: String,
        /// The source path.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// A release already in the tree would change; published releases never do.
    #[error("release {release} is already published in {} with other content ({detail}); published releases never change, so release a new version instead", .dir.display())]
    Immutable {
        /// `<stream> <version>`.
        release: String,
        /// Its directory in the current generation.
        dir: PathBuf,
        /// What differs.
        detail: String,
    },
    /// Signing failed, so nothing was published.
    #[error("could not sign {what}; nothing was published")]
    Sign {
        /// What was being signed.
        what: String,
        /// Why (boxed: gpg's error carries its stderr and keeps the common error small).
        #[source]
        source: Box<SignError>,
    },
    /// A JSON document could not be made.
    #[error("could not write {what}")]
    Metadata {
        /// The document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A file operation failed.
    #[error("could not {action} {}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PublishError {
    let path = path.to_path_buf();
    move |source| PublishError::Io {
        action,
        path,
        source,
    }
}

/// Runs file-system work off the async threads, where flushes to disk may block for long; on a tree that is
/// never flushed (a simulation's) the work only touches the page cache and runs where it is, since handing it
/// to another thread and back costs more than the work.
async fn blocking<T, F>(durability: Durability, work: F) -> Result<T, PublishError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PublishError> + Send + 'static,
{
    if !durability.sync {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PublishError::Io {
            action: "finish background file work for",
            path: PathBuf::from("the publish tree"),
            source: io::Error::other(e.to_string()),
        })?
}

/// Writes the public tree's metadata as a new generation, adds new releases to the release pool, and switches
/// the public path to the new generation.
///
/// The cost follows what changed, not the history: release directories live in a pool beside the
/// generations (`.<name>.pool/<stream>/<version>/`), which every generation reaches through one symbolic link
/// per stream, so a publish writes the metadata (stream JSON, releases index, page, feed, keys) and the new
/// releases only. The guarantees:
///
/// - **Readers never see metadata naming a missing file.** A new release is placed, checked against its
///   size and SHA-256, signed (`<file>.sig`) and listed in a clearsigned `CHECKSUM` in a staging directory
///   that nothing public reaches; it enters the pool only after the whole generation is built, just before
///   the switch. A revoked release leaves the pool (to `.withdrawn/`, so an unrevocation restores it
///   without signing anything again) only after the switch, when no current metadata names it any more.
/// - **No published file is rewritten in place.** A release directory never changes once in the pool; a
///   release that comes back with other files is refused ([`PublishError::Immutable`]). Every generation's
///   metadata is written fresh into its own directory.
/// - **The switch is atomic:** one `rename(2)` of the public symbolic link.
/// - **A failed publish leaves the old tree:** a failure before the switch removes the staging directory
///   and the unfinished generation, and moves back any release directory it had moved.
///
/// Release directories already in the pool are checked against the releases index of the current generation
/// (the files, sizes and SHA-256 it promised) rather than read again. The generation the public path pointed
/// at is kept for readers still inside it; older ones are deleted.
///
/// Callers must not run two publishes of the same `publish_dir` at once.
pub async fn publish(
    input: &SiteInput,
    signer: &dyn Signer,
) -> Result<PublishSummary, PublishError> {
    let plan = Plan::new(input)?;
    let layout = Layout::new(
        &input.publish_dir,
        Durability {
            sync: input.durable,
        },
    )?;
    let prepared = {
        let layout = layout.clone();
        blocking(layout.durability, move || layout.prepare()).await?
    };
    tracing::info!(
        publish_dir = %layout.public.display(),
        generation = prepared.next,
        "building a generation of the public tree"
    );

    let built = match build(input, &plan, signer, &layout, &prepared).await {
        Ok(built) => built,
        Err(e) => {
            let (layout, prepared) = (layout.clone(), prepared.clone());
            let _ = blocking(layout.durability, move || {
                layout.discard(&prepared);
                Ok(())
            })
            .await;
            return Err(e);
        }
    };

    let generation = prepared.next;
    let files_written = built.files_written;
    let keep = if prepared.interrupted {
        plan.keep(&BTreeSet::new())
    } else {
        plan.keep(
            &built
                .carried
                .union(&built.pools_unchanged)
                .cloned()
                .collect(),
        )
    };
    let fingerprints = built.fingerprints.clone();
    let sets = built.sets.clone();
    {
        let (layout, prepared) = (layout.clone(), prepared.clone());
        blocking(layout.durability, move || {
            let switched = layout.switch(&prepared, &built.moves);
            if switched.is_err() {
                layout.discard(&prepared);
            }
            switched
        })
        .await?;
    }
    {
        let (layout, prepared) = (layout.clone(), prepared.clone());
        blocking(layout.durability, move || {
            layout.tidy(&prepared, &keep, &sets);
            Ok(())
        })
        .await?;
    }
    tracing::info!(publish_dir = %layout.public.display(), generation, files_written, "published");
    Ok(PublishSummary {
        index_html: layout.public.join("index.html"),
        publish_dir: layout.public,
        generation,
        files_written,
        fingerprints,
    })
}

/// One stream's releases, newest first, and the one it points at.
struct StreamPlan<'a> {
    stream: &'a StreamInput,
    releases: Vec<&'a ReleaseInput>,
    latest: Option<&'a ReleaseInput>,
}

struct Plan<'a> {
    streams: Vec<StreamPlan<'a>>,
}

/// What the pool should hold once a publish is switched in, by stream: the versions served and the versions
/// revoked (kept aside, withdrawn). Anything else in the pool (expired releases among it) is gone from the
/// site and deleted.
/// A stream carried over unchanged, or one none of whose releases left the served ones, came back or was
/// dropped, has `None`: its pool is as the previous publish left it, plus this publish's new releases
/// (unless an earlier publish was interrupted, when every stream is tidied).
#[derive(Debug, Clone, Default)]
struct Keep {
    streams: BTreeMap<String, Option<PoolVersions>>,
}

/// The versions of a stream to keep in the pool: served, and revoked (withdrawn).
type PoolVersions = (BTreeSet<String>, BTreeSet<String>);

impl Plan<'_> {
    fn keep(&self, carried: &BTreeSet<String>) -> Keep {
        let mut keep = Keep::default();
        for sp in &self.streams {
            let entry = keep.streams.entry(sp.stream.name.clone()).or_default();
            if carried.contains(&sp.stream.name) {
                continue;
            }
            let (served, revoked) = entry.get_or_insert_default();
            for r in &sp.releases {
                let version = r.release.version.to_string();
                if is_served(r.release.state) {
                    served.insert(version);
                } else if r.release.state == ReleaseState::Revoked {
                    revoked.insert(version);
                }
                // An expired release is in neither: its directory leaves the pool for good, so garbage
                // collection frees its files.
            }
        }
        keep
    }
}

/// Reserved names at the site root, which a stream directory must not shadow.
const RESERVED: [&str; 6] = [
    "streams",
    "releases",
    "keys",
    "archive",
    "index.html",
    "feed.xml",
];

fn check_name(what: &str, name: &str, extra: &str) -> Result<(), PublishError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.as_bytes().contains(&b));
    if ok {
        Ok(())
    } else {
        Err(PublishError::Invalid(format!(
            "{what} {name:?} must be non-empty, must not start with a dot, and may hold only ASCII letters, digits and {extra:?}"
        )))
    }
}

/// Checks one release of a stream's input: it names the stream, its version is not listed twice (`versions`
/// holds those seen), and its files have names that fit in a release directory, once each, with at most
/// one image per format.
fn check_release<'r>(
    stream: &str,
    r: &'r ReleaseInput,
    versions: &mut BTreeSet<&'r slipway_model::Version>,
) -> Result<(), PublishError> {
    // Made only for an error: a long-lived stream has thousands of releases to check.
    let label = || format!("{stream} {}", r.release.version);
    if r.release.stream != stream {
        return Err(PublishError::Invalid(format!(
            "release {} says it belongs to stream {:?}",
            label(),
            r.release.stream
        )));
    }
    if !versions.insert(&r.release.version) {
        return Err(PublishError::Invalid(format!(
            "release {} is listed twice",
            label()
        )));
    }
    let mut files = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for f in &r.files {
        check_name("file name", &f.file_name, "._+~-")?;
        if f.file_name == "CHECKSUM" || f.file_name.ends_with(".sig") {
            return Err(PublishError::Invalid(format!(
                "file name {:?} of release {} would collide with a signature file",
                f.file_name,
                label()
            )));
        }
        if !files.insert(f.file_name.as_str()) {
            return Err(PublishError::Invalid(format!(
                "file {:?} is listed twice in release {}",
                f.file_name,
                label()
            )));
        }
        // Stream metadata has one slot per image format.
        if matches!(f.kind, ArtifactKind::Image(_)) && !kinds.insert(f.kind) {
            return Err(PublishError::Invalid(format!(
                "release {} has two {} images",
                label(),
                f.kind.name()
            )));
        }
    }
    Ok(())
}

impl<'a> Plan<'a> {
    fn new(input: &'a SiteInput) -> Result<Self, PublishError> {
        let mut names = BTreeSet::new();
        let mut streams = Vec::new();
        for stream in &input.streams {
            check_name("stream name", &stream.name, "._-")?;
            if RESERVED.contains(&stream.name.as_str()) {
                return Err(PublishError::Invalid(format!(
                    "stream name {:?} is reserved for the site's own files",
                    stream.name
                )));
            }
            if !names.insert(stream.name.as_str()) {
                return Err(PublishError::Invalid(format!(
                    "stream {:?} is listed twice",
                    stream.name
                )));
            }
            if stream.architecture.trim().is_empty() {
                return Err(PublishError::Invalid(format!(
                    "stream {:?} has no architecture",
                    stream.name
                )));
            }
            let mut releases: Vec<&ReleaseInput> = stream.releases.iter().collect();
            // The caller gives them newest first; sorting anyway makes "newest" mean the version order. A
            // stable sort of a long history costs a buffer of half its length even when it is in order,
            // which it nearly always is.
            if !releases.is_sorted_by(|a, b| a.release.version >= b.release.version) {
                releases.sort_by(|a, b| b.release.version.cmp(&a.release.version));
            }
            // Releases under a fingerprint the caller passed back were checked when it was computed, and a
            // publish carries their documents over without placing anything: only the others are checked,
            // so that a publish does not cost the length of the history. The current index is always
            // checked; an earlier part whose key is known is passed over in one step.
            if !input.known_fingerprints.contains_key(&stream.name) {
                let known_parts: BTreeSet<&str> =
                    part_fingerprints_in(&input.known_fingerprints, &stream.name)
                        .map(|(key, _)| key)
                        .collect();
                let mut versions = BTreeSet::new();
                let parts = year_parts(&releases);
                let unknown = parts
                    .iter()
                    .enumerate()
                    .filter(|(index, part)| *index == 0 || !known_parts.contains(part.key.as_str()))
                    .flat_map(|(_, part)| part.releases.iter().copied());
                for r in unknown {
                    check_release(&stream.name, r, &mut versions)?;
                }
            }
            // The stream points at its newest release that is not revoked: after a revocation that is the
            // release before it, whatever state the caller still gives it (the store agrees: it makes that
            // release the published one).
            let latest = releases
                .iter()
                .copied()
                .find(|r| is_served(r.release.state));
            streams.push(StreamPlan {
                stream,
                releases,
                latest,
            });
        }
        Ok(Self { streams })
    }
}

/// Where the public path, its generations and the release pool live.
#[derive(Debug, Clone)]
struct Layout {
    public: PathBuf,
    parent: PathBuf,
    /// `.<name>.generations`, as the symbolic link names it (relative, so the tree can move).
    generations_name: String,
    generations: PathBuf,
    /// `.<name>.pool`, as a generation's stream links name it (relative, likewise).
    pool_name: String,
    /// Release directories by stream and version, shared by every generation.
    pool: PathBuf,
    /// Revoked releases' directories, kept out of the site so that an unrevocation need not sign again.
    withdrawn: PathBuf,
    tmp_link: PathBuf,
    durability: Durability,
}

/// What the public path is now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Current {
    Absent,
    EmptyDir,
    Generation { n: u64, dir: PathBuf },
}

#[derive(Debug, Clone)]
struct Prepared {
    current: Current,
    next: u64,
    /// The new generation's metadata, until the switch.
    building: PathBuf,
    /// New releases' directories, until they enter the pool.
    staging: PathBuf,
    /// The fingerprint of each stream's input as the current generation was built from it (empty for a
    /// tree written before fingerprints were kept).
    previous_inputs: BTreeMap<String, String>,
    /// Whether an earlier publish was interrupted (it left a build or staging area): it may have moved
    /// release directories into the pool that no generation names, so every stream's pool is tidied.
    interrupted: bool,
}

impl Prepared {
    fn current_dir(&self) -> Option<&Path> {
        match &self.current {
            Current::Generation { dir, .. } => Some(dir),
            _ => None,
        }
    }
}

/// Names inside the pool that are not streams (stream names never start with a dot).
const STAGING: &str = ".staging";
const WITHDRAWN: &str = ".withdrawn";
/// The sets of streams' earlier index parts: `.index/<stream>/<set>/<YYYY>.json`.
const INDEX: &str = ".index";

impl Layout {
    fn new(publish_dir: &Path, durability: Durability) -> Result<Self, PublishError> {
        let public = std::path::absolute(publish_dir)
            .map_err(io_err("resolve the publish directory", publish_dir))?;
        let (Some(parent), Some(name)) = (public.parent(), public.file_name()) else {
            return Err(PublishError::Invalid(format!(
                "the publish directory {} must be a path with a final component",
                publish_dir.display()
            )));
        };
        let name = name.to_str().ok_or_else(|| {
            PublishError::Invalid(format!(
                "the publish directory {} must have a UTF-8 name",
                publish_dir.display()
            ))
        })?;
        let generations_name = format!(".{name}.generations");
        let pool_name = format!(".{name}.pool");
        let pool = parent.join(&pool_name);
        Ok(Self {
            generations: parent.join(&generations_name),
            tmp_link: parent.join(format!(".{name}.tmp-link")),
            parent: parent.to_path_buf(),
            generations_name,
            withdrawn: pool.join(WITHDRAWN),
            pool,
            pool_name,
            public,
            durability,
        })
    }

    /// Where a stream's set of earlier index parts named `id` is ([`index_set_id`]).
    fn index_set(&self, stream: &str, id: &str) -> PathBuf {
        self.pool.join(INDEX).join(stream).join(id)
    }

    /// Where the fingerprints of generation `n`'s stream inputs are kept: beside the generation, not in
    /// it, so they are never served.
    fn inputs_file(&self, n: u64) -> PathBuf {
        self.generations.join(format!("{n}.inputs"))
    }

    fn occupied(&self, reason: impl Into<String>) -> PublishError {
        PublishError::Occupied {
            path: self.public.clone(),
            reason: reason.into(),
        }
    }

    fn inspect(&self) -> Result<Current, PublishError> {
        let meta = match fs::symlink_metadata(&self.public) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Current::Absent),
            Err(e) => return Err(io_err("inspect", &self.public)(e)),
        };
        if meta.file_type().is_symlink() {
            let target =
                fs::read_link(&self.public).map_err(io_err("read the link", &self.public))?;
            let n = target
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok());
            let parent_ok = target
                .parent()
                .is_some_and(|p| p == Path::new(&self.generations_name) || p == self.generations);
            return match n {
                Some(n) if parent_ok => Ok(Current::Generation {
                    n,
                    dir: self.generations.join(n.to_string()),
                }),
                _ => Err(self.occupied(format!(
                    "it is a symbolic link to {}, which is not one of slipway's generations; remove the link or choose another publish directory",
                    target.display()
                ))),
            };
        }
        if meta.is_dir() {
            let mut entries = fs::read_dir(&self.public).map_err(io_err("list", &self.public))?;
            return if entries.next().is_none() {
                Ok(Current::EmptyDir)
            } else {
                Err(self.occupied(
                    "it is a directory with files slipway did not publish; empty or move it, or choose another publish directory",
                ))
            };
        }
        Err(self.occupied("it exists and is not a directory"))
    }

    /// Finds the current generation, clears leftovers of interrupted runs and creates the directories the
    /// new generation and its new releases are built in.
    fn prepare(&self) -> Result<Prepared, PublishError> {
        fs::create_dir_all(&self.parent).map_err(io_err("create", &self.parent))?;
        let current = self.inspect()?;
        for dir in [&self.generations, &self.pool, &self.withdrawn] {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        let mut highest = match &current {
            Current::Generation { n, .. } => *n,
            _ => 0,
        };
        let mut interrupted = false;
        for entry in fs::read_dir(&self.generations).map_err(io_err("list", &self.generations))? {
            let entry = entry.map_err(io_err("list", &self.generations))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".building-") {
                // A build interrupted before its switch: it was never public.
                interrupted = true;
                let path = entry.path();
                fs::remove_dir_all(&path)
                    .map_err(io_err("remove the unfinished generation", &path))?;
            } else if let Ok(n) = name.parse::<u64>() {
                highest = highest.max(n);
            }
        }
        // Releases staged by an interrupted run were never public either.
        let staging_root = self.pool.join(STAGING);
        match fs::remove_dir_all(&staging_root) {
            Ok(()) => interrupted = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io_err("remove the unfinished staging area", &staging_root)(
                    e,
                ))
            }
        }
        let next = highest + 1;
        let building = self.generations.join(format!(".building-{next}"));
        fs::create_dir(&building).map_err(io_err("create", &building))?;
        let staging = staging_root.join(next.to_string());
        fs::create_dir_all(&staging).map_err(io_err("create", &staging))?;
        // Unreadable fingerprints only cost a full rewrite of every stream's documents.
        let previous_inputs = match &current {
            Current::Generation { n, .. } => fs::read(self.inputs_file(*n))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        Ok(Prepared {
            current,
            next,
            building,
            staging,
            previous_inputs,
            interrupted,
        })
    }

    /// Removes what a failed publish built. Nothing of it was public.
    fn discard(&self, prepared: &Prepared) {
        let _ = fs::remove_file(self.inputs_file(prepared.next));
        for dir in [&prepared.building, &self.pool.join(STAGING)] {
            match fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "could not remove what a failed publish built")
                }
            }
        }
    }

    /// Moves the new and restored release directories into the pool, then the finished generation into
    /// place, and points the public path at it in one rename. On failure, everything moved is moved back.
    fn switch(
        &self,
        prepared: &Prepared,
        moves: &[(PathBuf, PathBuf)],
    ) -> Result<(), PublishError> {
        let mut done: Vec<(&Path, &Path)> = Vec::new();
        let finished = self.generations.join(prepared.next.to_string());
        let mut renamed = false;
        let result = (|| {
            let mut touched = BTreeSet::new();
            for (from, to) in moves {
                // The directory's own entries (files, signatures, CHECKSUM) must be durable before a name
                // in the pool vouches for them.
                self.durability.sync(from).map_err(io_err("sync", from))?;
                fs::rename(from, to).map_err(io_err("move into the release pool", from))?;
                done.push((from, to));
                if let Some(dir) = to.parent() {
                    touched.insert(dir.to_path_buf());
                }
            }
            for dir in &touched {
                self.durability.sync(dir).map_err(io_err("sync", dir))?;
            }
            fs::rename(&prepared.building, &finished)
                .map_err(io_err("rename", &prepared.building))?;
            renamed = true;
            self.durability
                .sync(&self.generations)
                .map_err(io_err("sync", &self.generations))?;

            match fs::symlink_metadata(&self.tmp_link) {
                Ok(_) => {
                    fs::remove_file(&self.tmp_link).map_err(io_err("remove", &self.tmp_link))?
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("inspect", &self.tmp_link)(e)),
            }
            let target = Path::new(&self.generations_name).join(prepared.next.to_string());
            std::os::unix::fs::symlink(&target, &self.tmp_link)
                .map_err(io_err("create the link", &self.tmp_link))?;
            if prepared.current == Current::EmptyDir {
                // rename(2) cannot replace a directory with a link; the directory was empty, so nobody loses
                // a file in the moment the name is missing.
                fs::remove_dir(&self.public)
                    .map_err(io_err("take over the empty directory", &self.public))?;
            }
            fs::rename(&self.tmp_link, &self.public)
                .map_err(io_err("switch the link", &self.public))
        })();
        if let Err(e) = result {
            if renamed {
                if let Err(undo) = fs::rename(&finished, &prepared.building) {
                    tracing::warn!(error = %undo, "could not set the unfinished generation aside");
                }
            }
            for (from, to) in done.iter().rev() {
                if let Err(undo) = fs::rename(to, from) {
                    tracing::warn!(path = %to.display(), error = %undo, "could not move a release directory back out of the pool");
                }
            }
            let _ = fs::remove_file(&self.tmp_link);
            return Err(e);
        }
        if let Err(e) = self.durability.sync(&self.parent) {
            tracing::warn!(path = %self.parent.display(), error = %e, "could not sync the switch");
        }
        Ok(())
    }

    /// After the switch: withdraws from the pool the releases the new metadata no longer names (revoked ones
    /// to `.withdrawn/`, the rest deleted), deletes withdrawn releases that are no longer listed at all, the
    /// staging area, generations older than the one just replaced and the index sets only those showed.
    /// Failing here leaves disk used or an unnamed directory reachable, never a broken site, so it only
    /// warns; the next publish tidies again.
    fn tidy(&self, prepared: &Prepared, keep: &Keep, sets: &BTreeMap<String, String>) {
        let warn = |what: &str, path: &Path, e: io::Error| {
            tracing::warn!(path = %path.display(), error = %e, "could not {what}");
        };
        let remove = |path: &Path| {
            if let Err(e) = fs::remove_dir_all(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn("delete", path, e);
                }
            }
        };
        for (stream, kept) in &keep.streams {
            let Some((served, revoked)) = kept else {
                continue;
            };
            let pooled = self.pool.join(stream);
            let withdrawn = self.withdrawn.join(stream);
            for version in dir_names(&pooled) {
                if served.contains(&version) {
                    continue;
                }
                let from = pooled.join(&version);
                let to = withdrawn.join(&version);
                if revoked.contains(&version) && !to.exists() {
                    let moved =
                        fs::create_dir_all(&withdrawn).and_then(|()| fs::rename(&from, &to));
                    if let Err(e) = moved {
                        warn("withdraw", &from, e);
                    }
                } else {
                    remove(&from);
                }
            }
            for version in dir_names(&withdrawn) {
                if !revoked.contains(&version) || served.contains(&version) {
                    remove(&withdrawn.join(&version));
                }
            }
        }
        // Streams no longer on the site.
        for name in dir_names(&self.pool) {
            if !name.starts_with('.') && !keep.streams.contains_key(&name) {
                remove(&self.pool.join(&name));
            }
        }
        for name in dir_names(&self.withdrawn) {
            if !keep.streams.contains_key(&name) {
                remove(&self.withdrawn.join(&name));
            }
        }
        remove(&self.pool.join(STAGING));

        // The index sets the two generations kept show; the others go with the generations that showed
        // them, or all at once after an interrupted publish, which may have made sets no generation shows.
        let shown = |stream: &str| {
            let current = prepared
                .current_dir()
                .and_then(|dir| shown_index_set(dir, stream));
            [sets.get(stream).cloned(), current]
        };
        let index = self.pool.join(INDEX);
        for stream in dir_names(&index) {
            let dir = index.join(&stream);
            if !keep.streams.contains_key(&stream) {
                remove(&dir);
            } else if prepared.interrupted {
                let shown = shown(&stream);
                for set in dir_names(&dir) {
                    if !shown.contains(&Some(set.clone())) {
                        remove(&dir.join(set));
                    }
                }
            }
        }

        let keep_generations: BTreeSet<u64> = match &prepared.current {
            Current::Generation { n, .. } => [*n, prepared.next].into(),
            _ => [prepared.next].into(),
        };
        self.prune(&keep_generations, |generation| {
            for (stream, set) in shown_index_sets(generation) {
                if !shown(&stream).contains(&Some(set.clone())) {
                    remove(&index.join(&stream).join(set));
                }
            }
        });
    }

    /// Deletes generations not in `keep`, calling `before_delete` with each one's directory first.
    fn prune(&self, keep: &BTreeSet<u64>, mut before_delete: impl FnMut(&Path)) {
        let Ok(entries) = fs::read_dir(&self.generations) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".inputs")
                .and_then(|n| n.parse::<u64>().ok())
            {
                if !keep.contains(&n) {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            let Ok(n) = name.parse::<u64>() else {
                continue;
            };
            if !keep.contains(&n) {
                before_delete(&entry.path());
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not delete an old generation");
                }
            }
        }
    }
}

/// The index set a generation shows for a stream: the name its `releases/<stream>` link points at.
fn shown_index_set(generation: &Path, stream: &str) -> Option<String> {
    let target = fs::read_link(generation.join("releases").join(stream)).ok()?;
    Some(target.file_name()?.to_str()?.to_string())
}

/// Every index set a generation shows, as `(stream, set)`.
fn shown_index_sets(generation: &Path) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(generation.join("releases")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .filter_map(|e| {
            let stream = e.file_name().to_str()?.to_string();
            let set = shown_index_set(generation, &stream)?;
            Some((stream, set))
        })
        .collect()
}

/// The names of the directories in `dir` (none if it cannot be read).
fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

/// What building a generation produced: the count of files written anew and the release directories to move
/// into the pool at the switch, `(from, to)`.
struct Built {
    files_written: usize,
    moves: Vec<(PathBuf, PathBuf)>,
    /// The streams whose documents and releases were carried over from the current generation.
    carried: BTreeSet<String>,
    /// The other streams whose pool has nothing to tidy: no release left the served ones or came back.
    pools_unchanged: BTreeSet<String>,
    /// Each stream's input fingerprint.
    fingerprints: BTreeMap<String, String>,
    /// The index set (see [`index_set_id`]) each stream with earlier parts shows.
    sets: BTreeMap<String, String>,
}

/// `(file name, sha256, size)` of one file a release lists.
type ExpectedFile = (String, Sha256, u64);

/// Where a release directory to serve comes from.
enum Source {
    /// Already in the pool, checked.
    Pooled,
    /// Withdrawn earlier (revoked) and checked: it goes back into the pool at the switch.
    Withdrawn(PathBuf),
    /// Nowhere yet: placed and signed in staging.
    New,
}

/// Builds the new generation's metadata in `prepared.building` and each new release in `prepared.staging`.
async fn build(
    input: &SiteInput,
    plan: &Plan<'_>,
    signer: &dyn Signer,
    layout: &Layout,
    prepared: &Prepared,
) -> Result<Built, PublishError> {
    let root = prepared.building.clone();
    let durability = layout.durability;
    let base_url = input
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let mut written = 0;
    let mut moves = Vec::new();

    // Each stream's index in parts; the fingerprints of the stream and of its earlier years' parts.
    let parts: Vec<Vec<YearPart>> = plan
        .streams
        .iter()
        .map(|sp| year_parts(&sp.releases))
        .collect();
    let mut fingerprints = BTreeMap::new();
    // The current index of each stream whose fingerprint was made from it, to be written as it is.
    let mut current_docs: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (sp, parts) in plan.streams.iter().zip(&parts) {
        let name = &sp.stream.name;
        if let Some(known) = input.known_fingerprints.get(name) {
            fingerprints.insert(name.clone(), known.clone());
            continue;
        }
        let earlier = part_fingerprints(input, base_url, sp.stream, parts)?;
        let current_doc = current_index(sp.stream, parts, base_url, input.generated_at)?;
        let fingerprint = stream_fingerprint(
            base_url,
            sp.stream,
            &current_doc,
            input.generated_at,
            &earlier,
        )?;
        current_docs.insert(name, current_doc);
        fingerprints.extend(earlier);
        fingerprints.insert(name.clone(), fingerprint);
    }
    let carried = {
        let streams: BTreeMap<String, String> = plan
            .streams
            .iter()
            .map(|sp| {
                (
                    sp.stream.name.clone(),
                    fingerprints[&sp.stream.name].clone(),
                )
            })
            .collect();
        let (current, previous) = (
            prepared.current_dir().map(Path::to_path_buf),
            prepared.previous_inputs.clone(),
        );
        blocking(durability, move || {
            Ok(unchanged_streams(current.as_deref(), &previous, &streams))
        })
        .await?
    };
    for (sp, parts) in plan.streams.iter().zip(&parts) {
        let name = &sp.stream.name;
        if carried.contains(name) {
            // Its parts are carried over with it, under the fingerprints they were recorded with.
            fingerprints.extend(
                part_fingerprints_in(&prepared.previous_inputs, name)
                    .map(|(year, value)| (part_key(name, year), value.clone())),
            );
        } else if input.known_fingerprints.contains_key(name) {
            fingerprints.extend(part_fingerprints(input, base_url, sp.stream, parts)?);
        }
    }

    // Per stream that changed, the earlier years' parts whose input did not change: their documents are
    // carried over and their releases not looked at.
    let carried_parts: BTreeMap<String, BTreeSet<String>> = {
        let wanted: Vec<(String, Vec<String>)> = plan
            .streams
            .iter()
            .zip(&parts)
            .filter(|(sp, _)| !carried.contains(&sp.stream.name))
            .map(|(sp, parts)| {
                let name = &sp.stream.name;
                let same: Vec<String> = parts
                    .iter()
                    .skip(1)
                    .filter(|part| {
                        let key = part_key(name, &part.key);
                        prepared.previous_inputs.get(&key) == fingerprints.get(&key)
                    })
                    .map(|part| part.span.to_string())
                    .collect();
                (name.clone(), same)
            })
            .collect();
        let current = prepared.current_dir().map(Path::to_path_buf);
        blocking(durability, move || {
            let Some(current) = current else {
                return Ok(BTreeMap::new());
            };
            Ok(wanted
                .into_iter()
                .map(|(name, years)| {
                    let present = years
                        .into_iter()
                        .filter(|year| current.join(year_index_path(&name, year)).is_file())
                        .collect();
                    (name, present)
                })
                .collect())
        })
        .await?
    };

    let mut pools_unchanged = BTreeSet::new();
    for (sp, parts) in plan.streams.iter().zip(&parts) {
        let name = sp.stream.name.clone();
        if carried.contains(&name) {
            // Its releases are in the pool exactly as the current generation lists them.
            continue;
        }
        let kept_years = carried_parts.get(&name).cloned().unwrap_or_default();
        let pool_stream = layout.pool.join(&name);
        // What the current generation promised about its releases (its current index and the parts of the
        // years looked at now), and where an older tree kept them.
        let (index, legacy_dir) = {
            let (current, pool_stream) = (
                prepared.current_dir().map(Path::to_path_buf),
                pool_stream.clone(),
            );
            let name = name.clone();
            let years: Vec<String> = parts
                .iter()
                .skip(1)
                .map(|part| part.span.to_string())
                .filter(|year| !kept_years.contains(year))
                .collect();
            blocking(durability, move || {
                fs::create_dir_all(&pool_stream).map_err(io_err("create", &pool_stream))?;
                let Some(current) = current else {
                    return Ok((PublishedIndex::default(), None));
                };
                let mut index = PublishedIndex::default();
                let documents = std::iter::once(format!("releases/{name}.json"))
                    .chain(years.iter().map(|year| year_index_path(&name, year)));
                for document in documents {
                    if let Ok(bytes) = fs::read(current.join(document)) {
                        let part = PublishedIndex::parse(&bytes);
                        index.served.extend(part.served);
                        index.listed.extend(part.listed);
                    }
                }
                // Trees written before the pool held each stream's releases in the generation itself.
                let stream_dir = current.join(&name);
                let legacy = fs::symlink_metadata(&stream_dir)
                    .is_ok_and(|m| m.is_dir())
                    .then_some(stream_dir);
                Ok((index, legacy))
            })
            .await?
        };
        // The pool needs tidying only if a release of the parts looked at left (or came back from) the
        // served ones, or was dropped: listing a long history's directories on every publish would cost
        // its length.
        let looked_at = || {
            parts
                .iter()
                .filter(|part| !kept_years.contains(part.span))
                .flat_map(|part| part.releases.iter().copied())
        };
        let mut listed_before = 0;
        // A year whose part the current generation has and this one will not: its releases were dropped.
        let part_gone = part_fingerprints_in(&prepared.previous_inputs, &name).any(|(key, _)| {
            let year = part_key_year(key);
            !parts.iter().skip(1).any(|part| part.span == year)
        });
        let mut moved = prepared.current_dir().is_none() || part_gone;
        for r in looked_at() {
            let now = PoolPlace::of(r.release.state);
            match index.listed.get(&r.release.version.to_string()) {
                Some(before) => {
                    listed_before += 1;
                    moved |= *before != now;
                }
                None => moved |= now != PoolPlace::Served,
            }
        }
        if !moved && listed_before == index.listed.len() {
            pools_unchanged.insert(name.clone());
        }
        // Where each served release of the parts looked at is, found in one pass: a stat per release.
        let served: Vec<&ReleaseInput> = parts
            .iter()
            .filter(|part| !kept_years.contains(part.span))
            .flat_map(|part| part.releases.iter().copied())
            .filter(|r| is_served(r.release.state))
            .collect();
        let wanted: Vec<(String, Vec<ExpectedFile>)> = served
            .iter()
            .map(|r| (r.release.version.to_string(), expected_files(r)))
            .collect();
        let sources = {
            let (pool_stream, withdrawn, name) = (
                pool_stream.clone(),
                layout.withdrawn.join(&name),
                name.clone(),
            );
            // The current generation serves the releases its index lists from the pool, where only a
            // publish puts or takes them: those are found without a stat each, unless that generation's
            // publish was interrupted or it kept its releases in itself (an older layout).
            let trust_index = !prepared.interrupted && legacy_dir.is_none();
            blocking(durability, move || {
                wanted
                    .iter()
                    .map(|(version, expected)| {
                        locate_release(
                            &pool_stream.join(version),
                            &withdrawn.join(version),
                            index.served.get(version),
                            trust_index,
                            expected,
                            &format!("{name} {version}"),
                        )
                    })
                    .collect::<Result<Vec<Source>, PublishError>>()
            })
            .await?
        };
        for (release, found) in served.into_iter().zip(sources) {
            let version = release.release.version.to_string();
            let pooled = pool_stream.join(&version);
            let label = format!("{name} {version}");
            let expected = expected_files(release);
            match found {
                Source::Pooled => {}
                Source::Withdrawn(dir) => moves.push((dir, pooled)),
                Source::New => {
                    let staged = prepared.staging.join(&name).join(&version);
                    let from_legacy = match &legacy_dir {
                        Some(dir) => {
                            let (prev, staged, label) =
                                (dir.join(&version), staged.clone(), label.clone());
                            blocking(durability, move || {
                                reuse_release(&prev, &staged, &expected, &label)
                            })
                            .await?
                        }
                        None => false,
                    };
                    if !from_legacy {
                        written +=
                            place_release(release, &staged, &label, signer, layout.durability)
                                .await?;
                    }
                    moves.push((staged, pooled));
                }
            }
        }
    }

    // Keys: the current one, and every earlier one so that old releases stay verifiable after a rotation.
    let fingerprint = signer.fingerprint().to_string();
    let public_key = signer.public_key_armored().to_string();
    {
        let root = root.clone();
        let old_keys = prepared.current_dir().map(|d| d.join("keys"));
        written += blocking(durability, move || {
            write_keys(
                &root,
                old_keys.as_deref(),
                &fingerprint,
                &public_key,
                durability,
            )
        })
        .await?;
    }

    let mut documents: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut archives: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    // Documents (and stream links) of unchanged streams, hard-linked from the current generation.
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut views = Vec::new();
    // Each stream's earlier parts, by the set of their fingerprints: a directory of the pool that every
    // generation showing those parts reaches through one link, so that a new generation costs a link per
    // stream however many years its history holds. A set is made once, the first time a generation
    // needs it.
    let sets: Vec<(String, String)> = plan
        .streams
        .iter()
        .zip(&parts)
        .filter(|(_, parts)| parts.len() > 1)
        .map(|(sp, parts)| {
            let name = &sp.stream.name;
            (name.clone(), index_set_id(name, parts, &fingerprints))
        })
        .collect();
    // The sets no generation made yet, by stream: where each goes.
    let missing_sets: BTreeMap<String, PathBuf> = {
        let wanted: Vec<(String, PathBuf)> = sets
            .iter()
            .map(|(name, id)| (name.clone(), layout.index_set(name, id)))
            .collect();
        blocking(durability, move || {
            Ok(wanted
                .into_iter()
                .filter(|(_, dir)| !dir.is_dir())
                .collect())
        })
        .await?
    };
    // For each set to make: where it goes, and each part's file from the current generation (linked) or
    // made now.
    let mut new_sets: Vec<(PathBuf, Vec<(String, PartFile)>)> = Vec::new();
    for (sp, parts) in plan.streams.iter().zip(&parts) {
        let name = &sp.stream.name;
        views.push(StreamView {
            stream: sp.stream,
            latest: sp.latest,
            releases: &sp.releases,
        });
        let current = prepared.current_dir();
        if let Some(set_dir) = missing_sets.get(name) {
            let kept_years = carried_parts.get(name);
            let mut files = Vec::new();
            for part in parts.iter().skip(1) {
                let rel = year_index_path(name, part.span);
                let kept = carried.contains(name)
                    || kept_years.is_some_and(|kept| kept.contains(part.span));
                let file = match current {
                    Some(current) if kept => PartFile::Link(current.join(&rel)),
                    _ => PartFile::Made(
                        metadata::releases_json(
                            sp.stream,
                            part.releases,
                            IndexPart::Year(part.span),
                            base_url,
                            input.generated_at,
                        )
                        .map_err(|source| PublishError::Metadata { what: rel, source })?,
                    ),
                };
                files.push((format!("{}.json", part.span), file));
            }
            new_sets.push((set_dir.clone(), files));
        }
        if let (true, Some(current)) = (carried.contains(name), current) {
            for rel in [
                Path::new("streams").join(format!("{name}.json")),
                Path::new("releases").join(format!("{name}.json")),
                PathBuf::from(name),
            ] {
                links.push((current.join(&rel), root.join(rel)));
            }
            continue;
        }
        let stream_doc = metadata::stream_json(sp.stream, sp.latest, base_url, input.generated_at)
            .map_err(|source| PublishError::Metadata {
                what: format!("streams/{name}.json"),
                source,
            })?;
        documents.push((
            root.join("streams").join(format!("{name}.json")),
            stream_doc,
        ));
        let current_doc = match current_docs.remove(name.as_str()) {
            Some(doc) => doc,
            None => current_index(sp.stream, parts, base_url, input.generated_at)?,
        };
        let index_doc = |releases: &[&ReleaseInput], part: IndexPart<'_>, what: String| {
            metadata::releases_json(sp.stream, releases, part, base_url, input.generated_at)
                .map_err(|source| PublishError::Metadata { what, source })
        };
        documents.push((
            root.join("releases").join(format!("{name}.json")),
            current_doc,
        ));
        if let Some(eol) = &sp.stream.eol {
            // Written once, at the first publish after the end of life, and carried over after that.
            let path = archive_path(name, eol);
            let whole = index_doc(&sp.releases, IndexPart::Whole, path.clone())?;
            archives.push((root.join(path), whole));
        }
    }
    let page = html::index_html(
        &input.title,
        input.generated_at,
        signer.fingerprint(),
        &views,
    );
    documents.push((root.join("index.html"), page.into_bytes()));
    let atom = feed::feed_xml(&input.title, input.generated_at, base_url, &views);
    documents.push((root.join("feed.xml"), atom.into_bytes()));
    written += documents.len();

    let streams: Vec<String> = plan
        .streams
        .iter()
        .map(|sp| sp.stream.name.clone())
        .collect();
    let link_base = Path::new("..").join("..").join(&layout.pool_name);
    let old_archive = prepared.current_dir().map(|d| d.join("archive"));
    let inputs_file = layout.inputs_file(prepared.next);
    let inputs = serde_json::to_vec(&fingerprints).map_err(|e| PublishError::Metadata {
        what: "the stream fingerprints".into(),
        source: e,
    })?;
    let carried_streams = carried.clone();
    let set_links: Vec<(PathBuf, PathBuf)> = sets
        .iter()
        .map(|(name, id)| {
            // One level deeper than a stream's link: `releases/` is inside the generation.
            (
                root.join("releases").join(name),
                Path::new("..")
                    .join(&link_base)
                    .join(INDEX)
                    .join(name)
                    .join(id),
            )
        })
        .collect();
    written += blocking(durability, move || {
        let mut written = 0;
        for dir in ["streams", "releases"]
            .into_iter()
            .map(|dir| root.join(dir))
        {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        for (dir, files) in &new_sets {
            written += make_index_set(dir, files, durability)?;
        }
        for (link, target) in &set_links {
            std::os::unix::fs::symlink(target, link).map_err(io_err("create the link", link))?;
        }
        for (path, bytes) in &documents {
            durability
                .write_new(path, bytes)
                .map_err(io_err("write", path))?;
        }
        // A link to a symbolic link links the link itself: the stream's entry is carried over as is.
        for (from, to) in &links {
            fs::hard_link(from, to).map_err(io_err("link", to))?;
        }
        for name in &streams {
            // The stream's releases, reached through the pool; the link is relative so the tree can move.
            let link = root.join(name);
            if !carried.contains(name) {
                std::os::unix::fs::symlink(link_base.join(name), &link)
                    .map_err(io_err("create the link", &link))?;
            }
            if let Some(old) = &old_archive {
                carry_over_dir(&old.join(name), &root.join("archive").join(name))?;
            }
        }
        for (path, bytes) in &archives {
            if !path.exists() {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
                }
                durability
                    .write_new(path, bytes)
                    .map_err(io_err("write", path))?;
                written += 1;
            }
        }
        durability
            .sync_tree_dirs(&root)
            .map_err(io_err("sync", &root))?;
        // Left over by a publish that failed before its switch, the file would stand in the way.
        match fs::remove_file(&inputs_file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &inputs_file)(e)),
        }
        durability
            .write_new(&inputs_file, &inputs)
            .map_err(io_err("write", &inputs_file))?;
        Ok(written)
    })
    .await?;
    Ok(Built {
        files_written: written,
        moves,
        carried: carried_streams,
        pools_unchanged,
        fingerprints,
        sets: sets.into_iter().collect(),
    })
}

/// A file of an index set to make: linked from the current generation, or made by this publish.
enum PartFile {
    Link(PathBuf),
    Made(Vec<u8>),
}

/// The name of the set of a stream's earlier parts: a digest of their keys and fingerprints, so that equal
/// names hold equal documents.
fn index_set_id(
    stream: &str,
    parts: &[YearPart<'_>],
    fingerprints: &BTreeMap<String, String>,
) -> String {
    let mut hasher = slipway_model::Sha256Writer::default();
    for part in parts.iter().skip(1) {
        let key = part_key(stream, &part.key);
        let fingerprint = fingerprints.get(&key).map_or("", String::as_str);
        hasher.update(format!("{key}={fingerprint}\n").as_bytes());
    }
    hasher.finish().as_str()[..32].to_string()
}

/// Makes an index set directory: its files are put in a directory beside it that is then renamed into
/// place, so that a set that exists is complete. Returns how many files were written anew.
fn make_index_set(
    dir: &Path,
    files: &[(String, PartFile)],
    durability: Durability,
) -> Result<usize, PublishError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PublishError::Invalid(format!("bad index set {}", dir.display())))?;
    let parent = dir
        .parent()
        .ok_or_else(|| PublishError::Invalid(format!("bad index set {}", dir.display())))?;
    let building = parent.join(format!(".building-{name}"));
    match fs::remove_dir_all(&building) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &building)(e)),
    }
    fs::create_dir_all(&building).map_err(io_err("create", &building))?;
    let mut written = 0;
    for (file, content) in files {
        let path = building.join(file);
        match content {
            PartFile::Link(from) => {
                fsutil::link_or_copy(from, &path).map_err(io_err("link", &path))?;
            }
            PartFile::Made(bytes) => {
                durability
                    .write_new(&path, bytes)
                    .map_err(io_err("write", &path))?;
                written += 1;
            }
        }
    }
    durability
        .sync(&building)
        .map_err(io_err("sync", &building))?;
    fs::rename(&building, dir).map_err(io_err("rename", &building))?;
    // The set's name, and those of `.index/<stream>` and `.index` should this publish have made them,
    // must be durable before a generation links to the set.
    for dir in parent.ancestors().take(3) {
        durability.sync(dir).map_err(io_err("sync", dir))?;
    }
    Ok(written)
}

/// A part of a stream's releases index: some of its releases, newest first.
struct YearPart<'a> {
    /// The first part, the current index, holds the newest month's releases and is named by that month
    /// (`YYYYMM`); each other part holds a year's releases and is named by the year (`YYYY`).
    span: &'a str,
    /// Names an earlier part's content in the fingerprints ([`part_key`]): its year, and for the newest
    /// year's part, which lacks the months from the current index's on, `<` and that month. A new month
    /// moves releases into that part, and so gives it another key: a fingerprint recorded before can
    /// never be taken for it.
    key: String,
    releases: &'a [&'a ReleaseInput],
}

/// A stream's releases (newest first, in version order) split into the parts of its index: the current index, with the
/// newest month's releases, then the earlier releases year by year, newest year first.
///
/// The current index is a month so that a publish, which writes it anew whenever the stream changed,
/// costs what a month holds rather than what a year does; the earlier years' parts are rewritten only
/// when a release in them changes, or once a month for the newest year's.
fn year_parts<'a>(releases: &'a [&'a ReleaseInput]) -> Vec<YearPart<'a>> {
    let Some(newest) = releases.first() else {
        return Vec::new();
    };
    let month = newest.release.version.month();
    let in_month = releases
        .iter()
        .take_while(|r| r.release.version.month() == month)
        .count();
    let (current, mut earlier) = releases.split_at(in_month);
    let mut parts = vec![YearPart {
        span: month,
        key: month.to_string(),
        releases: current,
    }];
    // The releases are in version order, so each year's end is found by a binary search: a stream's
    // history is thousands of releases, and it is split on every publish.
    while let Some(first) = earlier.first() {
        let year = first.release.version.year();
        let (releases, rest) =
            earlier.split_at(earlier.partition_point(|r| r.release.version.year() == year));
        let key = if month.starts_with(year) {
            format!("{year}<{month}")
        } else {
            year.to_string()
        };
        parts.push(YearPart {
            span: year,
            key,
            releases,
        });
        earlier = rest;
    }
    parts
}

/// The key under which the fingerprint of an earlier part of a stream's index is recorded and passed:
/// `<stream>/<part key>` ([`YearPart::key`]). Stream names hold no `/`, so it never names a stream.
pub(crate) fn part_key(stream: &str, part: &str) -> String {
    format!("{stream}/{part}")
}

/// The year of the releases a part's key (the text after `<stream>/`) stands for.
fn part_key_year(part: &str) -> &str {
    part.split_once('<').map_or(part, |(year, _)| year)
}

/// Whether the part of an index named by `part` (a key's text after `<stream>/`) holds `version` if the
/// stream has it: a caller that touched none of the versions a part holds may pass its fingerprint back.
pub fn part_holds(part: &str, version: &slipway_model::Version) -> bool {
    match part.split_once('<') {
        Some((year, before)) => version.year() == year && version.month() < before,
        None => version.year() == part,
    }
}

/// The part fingerprints of `stream` in a map of fingerprints by key, as `(part key, fingerprint)`.
fn part_fingerprints_in<'m>(
    fingerprints: &'m BTreeMap<String, String>,
    stream: &str,
) -> impl Iterator<Item = (&'m str, &'m String)> + 'm {
    let prefix = part_key(stream, "");
    fingerprints
        .range(prefix.clone()..)
        .map_while(move |(key, value)| Some((key.strip_prefix(&prefix)?, value)))
}

/// The fingerprints of a stream's earlier years' parts, by [`part_key`]: those the caller passed, the others
/// hashed from the part's releases.
fn part_fingerprints(
    input: &SiteInput,
    base_url: Option<&str>,
    stream: &StreamInput,
    parts: &[YearPart<'_>],
) -> Result<BTreeMap<String, String>, PublishError> {
    parts
        .iter()
        .skip(1)
        .map(|part| {
            let key = part_key(&stream.name, &part.key);
            let fingerprint = match input.known_fingerprints.get(&key) {
                Some(known) => known.clone(),
                None => fingerprint_of(
                    &format!("the fingerprint of {key}"),
                    &(
                        base_url,
                        &stream.name,
                        &stream.architecture,
                        &part.key,
                        part.releases,
                    ),
                )?,
            };
            Ok((key, fingerprint))
        })
        .collect()
}

/// A stream's current releases index: its newest month's releases and the list of its earlier years' parts
/// (every release, when it has none).
fn current_index(
    stream: &StreamInput,
    parts: &[YearPart<'_>],
    base_url: Option<&str>,
    generated_at: Timestamp,
) -> Result<Vec<u8>, PublishError> {
    let earlier: Vec<(&str, usize)> = parts
        .iter()
        .skip(1)
        .map(|part| (part.span, part.releases.len()))
        .collect();
    let (releases, part) = match parts.first() {
        Some(first) => (
            first.releases,
            IndexPart::Current {
                month: first.span,
                earlier: &earlier,
            },
        ),
        None => (&[][..], IndexPart::Whole),
    };
    metadata::releases_json(stream, releases, part, base_url, generated_at).map_err(|source| {
        PublishError::Metadata {
            what: format!("releases/{}.json", stream.name),
            source,
        }
    })
}

/// The fingerprint of what a stream's documents and release directories are made from: equal
/// fingerprints give equal documents, apart from the time they were written.
///
/// The newest month counts by the current index document (`current_doc`), which is made anyway and shows
/// every release of the month as it is served, the time it was written left out; the earlier parts count by
/// their fingerprints. So a fingerprint costs one pass over the bytes of the current month, not a second
/// serialization of its releases.
fn stream_fingerprint(
    base_url: Option<&str>,
    stream: &StreamInput,
    current_doc: &[u8],
    generated_at: Timestamp,
    earlier: &BTreeMap<String, String>,
) -> Result<String, PublishError> {
    let mut hasher = hashed(
        &format!("the fingerprint of stream {}", stream.name),
        &(
            base_url,
            &stream.name,
            &stream.description,
            &stream.architecture,
            &stream.stale,
            &stream.eol,
            earlier,
        ),
    )?;
    let (before, after) = metadata::split_at_generated_at(current_doc, generated_at);
    // Each part with its length, so that bytes moving from one to the other cannot give the same hash.
    for part in [before, after] {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    Ok(hasher.finish().to_string())
}

fn fingerprint_of(what: &str, value: &impl Serialize) -> Result<String, PublishError> {
    Ok(hashed(what, value)?.finish().to_string())
}

/// A hasher that `value`'s JSON was written into, hashed as it is serialized (a year's releases are tens
/// of kilobytes of JSON); `what` names it in an error.
fn hashed(what: &str, value: &impl Serialize) -> Result<slipway_model::Sha256Writer, PublishError> {
    let mut hasher = slipway_model::Sha256Writer::default();
    serde_json::to_writer(&mut hasher, value).map_err(|e| PublishError::Metadata {
        what: what.to_string(),
        source: e,
    })?;
    Ok(hasher)
}

/// The streams whose input is the one the current generation was built from and whose documents it
/// holds: their documents are carried over instead of written again, and their releases are not looked at.
fn unchanged_streams(
    current: Option<&Path>,
    previous: &BTreeMap<String, String>,
    fingerprints: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let Some(current) = current else {
        return BTreeSet::new();
    };
    fingerprints
        .iter()
        .filter(|(name, fingerprint)| previous.get(*name) == Some(*fingerprint))
        .filter(|(name, _)| {
            current
                .join("streams")
                .join(format!("{name}.json"))
                .is_file()
                && current
                    .join("releases")
                    .join(format!("{name}.json"))
                    .is_file()
                && fs::symlink_metadata(current.join(name))
                    .is_ok_and(|m| m.file_type().is_symlink())
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Hard-links every file of `from` (if it exists) into `to`.
fn carry_over_dir(from: &Path, to: &Path) -> Result<(), PublishError> {
    let entries = match fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("list", from)(e)),
    };
    fs::create_dir_all(to).map_err(io_err("create", to))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", from))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let dst = to.join(entry.file_name());
            fsutil::link_or_copy(&entry.path(), &dst).map_err(io_err("link", &dst))?;
        }
    }
    Ok(())
}

/// Finds a release to serve in the pool or among the withdrawn ones and checks that it holds the files the
/// release lists: against the current releases index when it lists the release (cheap), else against the
/// directory's own CHECKSUM, sizes and signatures. With `trust_index`, a release the index lists is in the
/// pool without looking.
fn locate_release(
    pooled: &Path,
    withdrawn: &Path,
    indexed: Option<&Vec<(String, String, u64)>>,
    trust_index: bool,
    expected: &[ExpectedFile],
    label: &str,
) -> Result<Source, PublishError> {
    if (trust_index && indexed.is_some()) || is_dir(pooled)? {
        match indexed {
            Some(listed) => check_against_index(pooled, listed, expected, label)?,
            None => check_release_dir(pooled, expected, label)?,
        }
        return Ok(Source::Pooled);
    }
    if is_dir(withdrawn)? {
        check_release_dir(withdrawn, expected, label)?;
        return Ok(Source::Withdrawn(withdrawn.to_path_buf()));
    }
    Ok(Source::New)
}

fn is_dir(path: &Path) -> Result<bool, PublishError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// What differs between the files a release lists and the files a directory holds, by name and SHA-256.
fn differences(
    wanted: &BTreeMap<String, String>,
    listed: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (name, sha) in wanted {
        match listed.get(name) {
            None => diffs.push(format!("{name} is new")),
            Some(old) if old != sha => diffs.push(format!("{name} has another sha256")),
            Some(_) => {}
        }
    }
    for name in listed.keys().filter(|n| !wanted.contains_key(*n)) {
        diffs.push(format!("{name} is gone"));
    }
    diffs
}

fn wanted_map(expected: &[ExpectedFile]) -> BTreeMap<String, String> {
    expected
        .iter()
        .map(|(name, sha, _)| (name.clone(), sha.to_string()))
        .collect()
}

/// Checks a pooled release against what the current releases index says it holds.
fn check_against_index(
    dir: &Path,
    listed: &[(String, String, u64)],
    expected: &[ExpectedFile],
    label: &str,
) -> Result<(), PublishError> {
    let immutable = |detail: String| PublishError::Immutable {
        release: label.to_string(),
        dir: dir.to_path_buf(),
        detail,
    };
    let listed_map: BTreeMap<String, String> = listed
        .iter()
        .map(|(name, sha, _)| (name.clone(), sha.clone()))
        .collect();
    let diffs = differences(&wanted_map(expected), &listed_map);
    if !diffs.is_empty() {
        return Err(immutable(diffs.join(", ")));
    }
    for (name, _, size) in expected {
        if let Some((_, _, was)) = listed.iter().find(|(n, _, _)| n == name) {
            if was != size {
                return Err(immutable(format!(
                    "{name} was published with {was} bytes, the release says {size}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks a release directory from its own files: the CHECKSUM lists exactly the release's files, each has
/// the release's size and a signature beside it.
fn check_release_dir(
    dir: &Path,
    expected: &[ExpectedFile],
    label: &str,
) -> Result<(), PublishError> {
    let immutable = |detail: String| PublishError::Immutable {
        release: label.to_string(),
        dir: dir.to_path_buf(),
        detail,
    };
    let checksum = fs::read_to_string(dir.join("CHECKSUM"))
        .map_err(|e| immutable(format!("its CHECKSUM cannot be read: {e}")))?;
    let diffs = differences(&wanted_map(expected), &parse_checksum(&checksum));
    if !diffs.is_empty() {
        return Err(immutable(diffs.join(", ")));
    }
    for (name, _, size) in expected {
        let file = dir.join(name);
        let len = fs::metadata(&file)
            .map_err(|e| immutable(format!("{name} cannot be read: {e}")))?
            .len();
        if len != *size {
            return Err(immutable(format!(
                "{name} has {len} bytes, the release says {size}"
            )));
        }
        if !dir.join(format!("{name}.sig")).is_file() {
            return Err(immutable(format!("{name}.sig is missing")));
        }
    }
    Ok(())
}

/// `(file name, sha256, size)` of each file a release lists.
fn expected_files(release: &ReleaseInput) -> Vec<ExpectedFile> {
    release
        .files
        .iter()
        .map(|f| (f.file_name.clone(), f.sha256.clone(), f.size))
        .collect()
}

/// The text of a release's CHECKSUM, in `sha256sum` format, sorted by file name.
fn checksum_text(files: &[ExpectedFile]) -> String {
    let mut sorted: Vec<&ExpectedFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(name, sha, _)| format!("{sha}  {name}\n"))
        .collect()
}

/// The `<hex>  <name>` lines of a (clearsigned) CHECKSUM. Armor and signature lines never have that shape.
fn parse_checksum(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (hex, name) = line.split_once("  ")?;
            let ok =
                hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty();
            ok.then(|| (name.to_string(), hex.to_ascii_lowercase()))
        })
        .collect()
}

/// Carries a release directory over from a tree written before the pool existed, by hard links, after
/// checking that it lists exactly the files the release has. Returns false when that tree does not have it.
fn reuse_release(
    prev: &Path,
    dst: &Path,
    expected: &[ExpectedFile],
    label: &str,
) -> Result<bool, PublishError> {
    match fs::symlink_metadata(prev) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(PublishError::Immutable {
                release: label.to_string(),
                dir: prev.to_path_buf(),
                detail: "it is not a directory".into(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("inspect", prev)(e)),
    }
    check_release_dir(prev, expected, label)?;
    fs::create_dir_all(dst).map_err(io_err("create", dst))?;
    for entry in fs::read_dir(prev).map_err(io_err("list", prev))? {
        let entry = entry.map_err(io_err("list", prev))?;
        if entry
            .file_type()
            .map_err(io_err("inspect", &entry.path()))?
            .is_file()
        {
            let to = dst.join(entry.file_name());
            fsutil::link_or_copy(&entry.path(), &to).map_err(io_err("link", &to))?;
        }
    }
    Ok(true)
}

/// Puts a new release's files in place, checks them, signs each and writes the clearsigned CHECKSUM.
async fn place_release(
    release: &ReleaseInput,
    dst: &Path,
    label: &str,
    signer: &dyn Signer,
    durability: Durability,
) -> Result<usize, PublishError> {
    let files: Vec<(PublishFile, PathBuf)> = release
        .files
        .iter()
        .map(|f| (f.clone(), dst.join(&f.file_name)))
        .collect();
    {
        let (files, dst, label) = (files.clone(), dst.to_path_buf(), label.to_string());
        blocking(durability, move || {
            fs::create_dir_all(&dst).map_err(io_err("create", &dst))?;
            for (file, to) in &files {
                place_file(file, to, &label)?;
            }
            Ok(())
        })
        .await?;
    }

    let mut sigs = Vec::new();
    for (file, placed) in &files {
        let sig = dst.join(format!("{}.sig", file.file_name));
        signer
            .detach_sign(placed, &sig)
            .await
            .map_err(|source| PublishError::Sign {
                what: format!("{} of release {label}", file.file_name),
                source: Box::new(source),
            })?;
        sigs.push(sig);
    }
    let text = checksum_text(&expected_files(release));
    let signed = signer
        .clearsign(text.as_bytes())
        .await
        .map_err(|source| PublishError::Sign {
            what: format!("the CHECKSUM of release {label}"),
            source: Box::new(source),
        })?;
    let checksum = dst.join("CHECKSUM");
    blocking(durability, move || {
        // gpg does not fsync what it writes.
        for sig in &sigs {
            durability.sync(sig).map_err(io_err("sync", sig))?;
        }
        durability
            .write_new(&checksum, &signed)
            .map_err(io_err("write", &checksum))
    })
    .await?;
    tracing::info!(release = label, files = files.len(), "signed a new release");
    Ok(files.len() * 2 + 1)
}

/// Links or copies one file into place and checks its size and SHA-256 before anything vouches for it.
fn place_file(file: &PublishFile, to: &Path, label: &str) -> Result<(), PublishError> {
    let placed = fsutil::link_or_copy(&file.source, to).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound && !file.source.exists() {
            PublishError::MissingSource {
                release: label.to_string(),
                file_name: file.file_name.clone(),
                path: file.source.clone(),
            }
        } else {
            io_err("place", to)(e)
        }
    })?;
    let mismatch = |detail: String| PublishError::SourceMismatch {
        release: label.to_string(),
        file_name: file.file_name.clone(),
        path: file.source.clone(),
        detail,
    };
    if !fs::metadata(to).map_err(io_err("inspect", to))?.is_file() {
        return Err(mismatch("it is not a regular file".into()));
    }
    let (size, sha) = fsutil::hash_file(to).map_err(io_err("read", to))?;
    if size != file.size {
        return Err(mismatch(format!(
            "it has {size} bytes, the release says {}",
            file.size
        )));
    }
    if sha != file.sha256 {
        return Err(mismatch(format!(
            "its sha256 is {sha}, the release says {}",
            file.sha256
        )));
    }
    tracing::debug!(file = %to.display(), copied = placed == Placed::Copied, "placed");
    Ok(())
}

/// Writes `keys/<fingerprint>.asc` and `keys/release-key.asc`, and carries over earlier keys. A key file
/// the current generation already has with the same text is linked, not written again.
fn write_keys(
    root: &Path,
    old_keys: Option<&Path>,
    fingerprint: &str,
    public_key: &str,
    durability: Durability,
) -> Result<usize, PublishError> {
    let keys = root.join("keys");
    fs::create_dir_all(&keys).map_err(io_err("create", &keys))?;
    let own = format!("{fingerprint}.asc");
    let mut written = 0;
    for name in [own.as_str(), "release-key.asc"] {
        let path = keys.join(name);
        if let Some(old) = old_keys.map(|dir| dir.join(name)) {
            if fs::read(&old).is_ok_and(|text| text == public_key.as_bytes()) {
                fs::hard_link(&old, &path).map_err(io_err("link", &path))?;
                continue;
            }
        }
        durability
            .write_new(&path, public_key.as_bytes())
            .map_err(io_err("write", &path))?;
        written += 1;
    }
    if let Some(old) = old_keys {
        if let Ok(entries) = fs::read_dir(old) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name == own || name == "release-key.asc" || !name.ends_with(".asc") {
                    continue;
                }
                let to = keys.join(name);
                fsutil::link_or_copy(&entry.path(), &to).map_err(io_err("link", &to))?;
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_key_holds_its_year_and_the_newest_years_part_only_the_months_before_its_stop() {
        let v = |text: &str| text.parse::<slipway_model::Version>().expect("version");
        assert!(part_holds("2026", &v("20261231.0")));
        assert!(!part_holds("2026", &v("20270101.0")));
        assert!(part_holds("2027<202703", &v("20270228.4")));
        assert!(!part_holds("2027<202703", &v("20270301.0")));
        assert!(!part_holds("2027<202703", &v("20260228.0")));
        assert_eq!(part_key_year("2027<202703"), "2027");
        assert_eq!(part_key_year("2026"), "2026");
    }

    #[test]
    fn checksum_round_trips_through_a_clearsigned_text() {
        let a = Sha256::parse(&"ab".repeat(32)).expect("sha");
        let b = Sha256::parse(&"cd".repeat(32)).expect("sha");
        let text = checksum_text(&[("z.qcow2".into(), a.clone(), 1), ("a.raw.xz".into(), b, 2)]);
        assert!(text.starts_with(&format!("{}  a.raw.xz\n", "cd".repeat(32))));
        let signed = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{text}-----BEGIN PGP SIGNATURE-----\n\niHUEARYIAB0WIQRWhGczH2lsfDsg6sxS5ugL+a2GqwUCawF/bgAKCRBS5ugL+a2G\n=XO28\n-----END PGP SIGNATURE-----\n"
        );
        let parsed = parse_checksum(&signed);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed.get("z.qcow2").map(String::as_str), Some(a.as_str()));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("file name", "a-1.0.qcow2", "._+~-").is_ok());
        assert!(check_name("file name", "../x", "._+~-").is_err());
        assert!(check_name("file name", ".hidden", "._+~-").is_err());
        assert!(check_name("file name", "a b", "._+~-").is_err());
        assert!(check_name("file name", "", "._+~-").is_err());
    }
}
