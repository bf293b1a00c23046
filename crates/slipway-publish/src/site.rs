//! Building a generation of the public tree and switching it in atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use slipway_model::{ArtifactKind, Release, Sha256};

use crate::fsutil::{self, Placed};
use crate::html::{self, StreamView};
use crate::metadata::{self, is_live, is_served, release_dir};
use crate::sign::{SignError, Signer};

/// Everything one publish writes: the site's streams and all their releases.
#[derive(Debug, Clone)]
pub struct SiteInput {
    /// The public path. It becomes (or already is) a symbolic link to the current generation directory,
    /// `<parent>/.<name>.generations/<n>/`.
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
}

/// One stream of the site.
#[derive(Debug, Clone)]
pub struct StreamInput {
    /// The stream's name, also a directory name in the tree.
    pub name: String,
    /// One line for the download page.
    pub description: String,
    /// The Debian architecture name, such as `amd64` (mapped to `x86_64` in stream metadata).
    pub architecture: String,
    /// Every release of the stream, in any state, newest first.
    pub releases: Vec<ReleaseInput>,
}

/// One release and the files it publishes.
#[derive(Debug, Clone)]
pub struct ReleaseInput {
    /// The release.
    pub release: Release,
    /// Its files.
    pub files: Vec<PublishFile>,
}

/// One file of a release.
#[derive(Debug, Clone)]
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

/// Runs file-system work off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, PublishError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PublishError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PublishError::Io {
            action: "finish background file work for",
            path: PathBuf::from("the publish tree"),
            source: io::Error::other(e.to_string()),
        })?
}

/// Writes the whole public tree as a new generation and switches the public path to it.
///
/// Every release directory already in the current generation is carried over by hard links (never
/// re-signed or rewritten, and checked to list the same files); new releases get their files linked or
/// copied from `source`, checked against their size and SHA-256, signed (`<file>.sig`) and listed in a
/// clearsigned `CHECKSUM`. Revoked releases are withdrawn from the tree but stay in the releases index.
/// Metadata, keys and the page are written fresh. Only when all of that succeeded does the public symbolic
/// link move, in one `rename(2)`; the generation it pointed at is kept for readers still inside it, older
/// ones are deleted.
///
/// Callers must not run two publishes of the same `publish_dir` at once.
pub async fn publish(
    input: &SiteInput,
    signer: &dyn Signer,
) -> Result<PublishSummary, PublishError> {
    let plan = Plan::new(input)?;
    let layout = Layout::new(&input.publish_dir)?;
    let prepared = {
        let layout = layout.clone();
        blocking(move || layout.prepare()).await?
    };
    tracing::info!(
        publish_dir = %layout.public.display(),
        generation = prepared.next,
        "building a generation of the public tree"
    );

    let built = build(input, &plan, signer, &prepared).await;
    let files_written = match built {
        Ok(n) => n,
        Err(e) => {
            let building = prepared.building.clone();
            let _ = blocking(move || {
                fs::remove_dir_all(&building).map_err(io_err("remove", &building))
            })
            .await
            .map_err(|cleanup| tracing::warn!(error = %cleanup, "could not remove the failed generation"));
            return Err(e);
        }
    };

    let generation = prepared.next;
    {
        let layout = layout.clone();
        blocking(move || layout.switch(&prepared)).await?;
    }
    tracing::info!(publish_dir = %layout.public.display(), generation, files_written, "published");
    Ok(PublishSummary {
        index_html: layout.public.join("index.html"),
        publish_dir: layout.public,
        generation,
        files_written,
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

/// Reserved names at the site root, which a stream directory must not shadow.
const RESERVED: [&str; 5] = ["streams", "releases", "keys", "index.html", "feed.xml"];

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
            let mut versions = BTreeSet::new();
            for r in &stream.releases {
                let label = format!("{} {}", stream.name, r.release.version);
                if r.release.stream != stream.name {
                    return Err(PublishError::Invalid(format!(
                        "release {label} says it belongs to stream {:?}",
                        r.release.stream
                    )));
                }
                if !versions.insert(&r.release.version) {
                    return Err(PublishError::Invalid(format!(
                        "release {label} is listed twice"
                    )));
                }
                let mut files = BTreeSet::new();
                let mut kinds = BTreeSet::new();
                for f in &r.files {
                    check_name("file name", &f.file_name, "._+~-")?;
                    if f.file_name == "CHECKSUM" || f.file_name.ends_with(".sig") {
                        return Err(PublishError::Invalid(format!(
                            "file name {:?} of release {label} would collide with a signature file",
                            f.file_name
                        )));
                    }
                    if !files.insert(f.file_name.as_str()) {
                        return Err(PublishError::Invalid(format!(
                            "file {:?} is listed twice in release {label}",
                            f.file_name
                        )));
                    }
                    // Stream metadata has one slot per image format.
                    if matches!(f.kind, ArtifactKind::Image(_)) && !kinds.insert(f.kind) {
                        return Err(PublishError::Invalid(format!(
                            "release {label} has two {} images",
                            f.kind.name()
                        )));
                    }
                }
            }
            let mut releases: Vec<&ReleaseInput> = stream.releases.iter().collect();
            // The caller gives them newest first; sorting anyway makes "newest" mean the version order.
            releases.sort_by(|a, b| b.release.version.cmp(&a.release.version));
            let latest = releases.iter().copied().find(|r| is_live(r.release.state));
            streams.push(StreamPlan {
                stream,
                releases,
                latest,
            });
        }
        Ok(Self { streams })
    }
}

/// Where the public path and its generations live.
#[derive(Debug, Clone)]
struct Layout {
    public: PathBuf,
    parent: PathBuf,
    /// `.<name>.generations`, as the symbolic link names it (relative, so the tree can move).
    generations_name: String,
    generations: PathBuf,
    tmp_link: PathBuf,
}

/// What the public path is now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Current {
    Absent,
    EmptyDir,
    Generation { n: u64, dir: PathBuf },
}

#[derive(Debug)]
struct Prepared {
    current: Current,
    next: u64,
    building: PathBuf,
}

impl Prepared {
    fn current_dir(&self) -> Option<&Path> {
        match &self.current {
            Current::Generation { dir, .. } => Some(dir),
            _ => None,
        }
    }
}

impl Layout {
    fn new(publish_dir: &Path) -> Result<Self, PublishError> {
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
        Ok(Self {
            generations: parent.join(&generations_name),
            tmp_link: parent.join(format!(".{name}.tmp-link")),
            parent: parent.to_path_buf(),
            generations_name,
            public,
        })
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

    /// Finds the current generation, clears leftovers of interrupted runs and creates the directory the new
    /// generation is built in.
    fn prepare(&self) -> Result<Prepared, PublishError> {
        fs::create_dir_all(&self.parent).map_err(io_err("create", &self.parent))?;
        let current = self.inspect()?;
        fs::create_dir_all(&self.generations).map_err(io_err("create", &self.generations))?;
        let mut highest = match &current {
            Current::Generation { n, .. } => *n,
            _ => 0,
        };
        for entry in fs::read_dir(&self.generations).map_err(io_err("list", &self.generations))? {
            let entry = entry.map_err(io_err("list", &self.generations))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".building-") {
                // A build interrupted before its switch: it was never public.
                let path = entry.path();
                fs::remove_dir_all(&path)
                    .map_err(io_err("remove the unfinished generation", &path))?;
            } else if let Ok(n) = name.parse::<u64>() {
                highest = highest.max(n);
            }
        }
        let next = highest + 1;
        let building = self.generations.join(format!(".building-{next}"));
        fs::create_dir(&building).map_err(io_err("create", &building))?;
        Ok(Prepared {
            current,
            next,
            building,
        })
    }

    /// Moves the finished generation into place and points the public path at it in one rename, then deletes
    /// generations older than the one just replaced.
    fn switch(&self, prepared: &Prepared) -> Result<(), PublishError> {
        let finished = self.generations.join(prepared.next.to_string());
        fs::rename(&prepared.building, &finished).map_err(io_err("rename", &prepared.building))?;
        fsutil::sync_dir(&self.generations).map_err(io_err("sync", &self.generations))?;

        match fs::symlink_metadata(&self.tmp_link) {
            Ok(_) => fs::remove_file(&self.tmp_link).map_err(io_err("remove", &self.tmp_link))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &self.tmp_link)(e)),
        }
        let target = Path::new(&self.generations_name).join(prepared.next.to_string());
        std::os::unix::fs::symlink(&target, &self.tmp_link)
            .map_err(io_err("create the link", &self.tmp_link))?;
        if prepared.current == Current::EmptyDir {
            // rename(2) cannot replace a directory with a link; the directory was empty, so nobody loses a
            // file in the moment the name is missing.
            fs::remove_dir(&self.public)
                .map_err(io_err("take over the empty directory", &self.public))?;
        }
        fs::rename(&self.tmp_link, &self.public)
            .map_err(io_err("switch the link", &self.public))?;
        fsutil::sync_dir(&self.parent).map_err(io_err("sync", &self.parent))?;

        let keep: BTreeSet<u64> = match &prepared.current {
            Current::Generation { n, .. } => [*n, prepared.next].into(),
            _ => [prepared.next].into(),
        };
        self.prune(&keep);
        Ok(())
    }

    /// Deletes generations not in `keep`. Failing here leaves disk used, not a broken site, so it only warns.
    fn prune(&self, keep: &BTreeSet<u64>) {
        let Ok(entries) = fs::read_dir(&self.generations) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if !keep.contains(&n) {
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not delete an old generation");
                }
            }
        }
    }
}

/// Builds the whole new generation in `prepared.building`; returns how many files it wrote anew.
async fn build(
    input: &SiteInput,
    plan: &Plan<'_>,
    signer: &dyn Signer,
    prepared: &Prepared,
) -> Result<usize, PublishError> {
    let root = prepared.building.clone();
    let base_url = input
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let mut written = 0;

    for sp in &plan.streams {
        for release in sp.releases.iter().copied() {
            if !is_served(release.release.state) {
                continue;
            }
            let rel = release_dir(&sp.stream.name, release);
            let dst = root.join(&rel);
            let label = format!("{} {}", sp.stream.name, release.release.version);
            let previous = prepared.current_dir().map(|dir| dir.join(&rel));
            let reused = match previous {
                Some(prev) => {
                    let expected = expected_files(release);
                    let (dst, label) = (dst.clone(), label.clone());
                    blocking(move || reuse_release(&prev, &dst, &expected, &label)).await?
                }
                None => false,
            };
            if !reused {
                written += place_release(release, &dst, &label, signer).await?;
            }
        }
    }

    // Keys: the current one, and every earlier one so that old releases stay verifiable after a rotation.
    let fingerprint = signer.fingerprint().to_string();
    let public_key = signer.public_key_armored().to_string();
    {
        let root = root.clone();
        let old_keys = prepared.current_dir().map(|d| d.join("keys"));
        written +=
            blocking(move || write_keys(&root, old_keys.as_deref(), &fingerprint, &public_key))
                .await?;
    }

    let mut documents: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut views = Vec::new();
    for sp in &plan.streams {
        let name = &sp.stream.name;
        let stream_doc = metadata::stream_json(sp.stream, sp.latest, base_url, input.generated_at)
            .map_err(|source| PublishError::Metadata {
                what: format!("streams/{name}.json"),
                source,
            })?;
        documents.push((
            root.join("streams").join(format!("{name}.json")),
            stream_doc,
        ));
        let releases_doc =
            metadata::releases_json(sp.stream, &sp.releases, base_url, input.generated_at)
                .map_err(|source| PublishError::Metadata {
                    what: format!("releases/{name}.json"),
                    source,
                })?;
        documents.push((
            root.join("releases").join(format!("{name}.json")),
            releases_doc,
        ));
        views.push(StreamView {
            stream: sp.stream,
            latest: sp.latest,
            total: sp.releases.len(),
        });
    }
    let page = html::index_html(
        &input.title,
        input.generated_at,
        signer.fingerprint(),
        &views,
    );
    documents.push((root.join("index.html"), page.into_bytes()));
    written += documents.len();

    blocking(move || {
        for dir in ["streams", "releases"] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        for (path, bytes) in &documents {
            fsutil::write_synced(path, bytes).map_err(io_err("write", path))?;
        }
        fsutil::sync_tree_dirs(&root).map_err(io_err("sync", &root))
    })
    .await?;
    Ok(written)
}

/// `(file name, sha256, size)` of each file a release lists.
fn expected_files(release: &ReleaseInput) -> Vec<(String, Sha256, u64)> {
    release
        .files
        .iter()
        .map(|f| (f.file_name.clone(), f.sha256.clone(), f.size))
        .collect()
}

/// The text of a release's CHECKSUM, in `sha256sum` format, sorted by file name.
fn checksum_text(files: &[(String, Sha256, u64)]) -> String {
    let mut sorted: Vec<&(String, Sha256, u64)> = files.iter().collect();
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

/// Carries a release directory over from the current generation by hard links, after checking that it lists
/// exactly the files the release has. Returns false when the current generation does not have it.
fn reuse_release(
    prev: &Path,
    dst: &Path,
    expected: &[(String, Sha256, u64)],
    label: &str,
) -> Result<bool, PublishError> {
    let immutable = |detail: String| PublishError::Immutable {
        release: label.to_string(),
        dir: prev.to_path_buf(),
        detail,
    };
    match fs::symlink_metadata(prev) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(immutable("it is not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("inspect", prev)(e)),
    }
    let checksum = fs::read_to_string(prev.join("CHECKSUM"))
        .map_err(|e| immutable(format!("its CHECKSUM cannot be read: {e}")))?;
    let listed = parse_checksum(&checksum);
    let wanted: BTreeMap<String, String> = expected
        .iter()
        .map(|(name, sha, _)| (name.clone(), sha.to_string()))
        .collect();
    if listed != wanted {
        let mut diffs = Vec::new();
        for (name, sha) in &wanted {
            match listed.get(name) {
                None => diffs.push(format!("{name} is new")),
                Some(old) if old != sha => diffs.push(format!("{name} has another sha256")),
                Some(_) => {}
            }
        }
        for name in listed.keys().filter(|n| !wanted.contains_key(*n)) {
            diffs.push(format!("{name} is gone"));
        }
        return Err(immutable(diffs.join(", ")));
    }
    for (name, _, size) in expected {
        let file = prev.join(name);
        let len = fs::metadata(&file)
            .map_err(|e| immutable(format!("{name} cannot be read: {e}")))?
            .len();
        if len != *size {
            return Err(immutable(format!(
                "{name} has {len} bytes, the release says {size}"
            )));
        }
        if !prev.join(format!("{name}.sig")).is_file() {
            return Err(immutable(format!("{name}.sig is missing")));
        }
    }
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
) -> Result<usize, PublishError> {
    let files: Vec<(PublishFile, PathBuf)> = release
        .files
        .iter()
        .map(|f| (f.clone(), dst.join(&f.file_name)))
        .collect();
    {
        let (files, dst, label) = (files.clone(), dst.to_path_buf(), label.to_string());
        blocking(move || {
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
    blocking(move || {
        // gpg does not fsync what it writes.
        for sig in &sigs {
            fs::File::open(sig)
                .and_then(|f| f.sync_all())
                .map_err(io_err("sync", sig))?;
        }
        fsutil::write_synced(&checksum, &signed).map_err(io_err("write", &checksum))
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

/// Writes `keys/<fingerprint>.asc` and `keys/release-key.asc`, and carries over earlier keys.
fn write_keys(
    root: &Path,
    old_keys: Option<&Path>,
    fingerprint: &str,
    public_key: &str,
) -> Result<usize, PublishError> {
    let keys = root.join("keys");
    fs::create_dir_all(&keys).map_err(io_err("create", &keys))?;
    let own = format!("{fingerprint}.asc");
    let mut written = 0;
    for name in [own.as_str(), "release-key.asc"] {
        let path = keys.join(name);
        fsutil::write_synced(&path, public_key.as_bytes()).map_err(io_err("write", &path))?;
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
