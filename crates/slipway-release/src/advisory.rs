//! Security advisories: where they come from, and which of them a compose's package upgrades fix.
//!
//! Two sources feed the same [`Advisory`] values: local advisory files (parsed by
//! [`slipway_model::load_advisory_file`]) and Debian's security tracker JSON, fetched with a conditional
//! request and cached on disk. An advisory of a local file replaces the tracker's entries with the same id,
//! so a site can rate a CVE itself. The tracker being down is a warning, never an error: the last good copy
//! (if any) and the local files still apply.
//!
//! [`advisories_for`] matches advisories against a [`PkgDiff`]; [`emergency_due`] says whether a match
//! makes a release urgent under a stream's [`SecurityThreshold`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use slipway_model::{
    compare_versions, load_advisory_file, Advisory, AdvisoryConfig, AdvisoryPackage,
    MatchedAdvisory, PackageChange, PkgDiff, SecurityThreshold, Severity, VersionScheme,
};

/// Why advisories from the tracker could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdvisoryError {
    /// The tracker could not be reached, or the download broke off or timed out.
    #[error("cannot fetch the security tracker data from {url}: {reason}")]
    Unreachable {
        /// The tracker URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The tracker answered with an error status.
    #[error("the security tracker at {url} answered HTTP {status}")]
    Status {
        /// The tracker URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The data is not in the tracker's JSON shape.
    #[error("the security tracker data from {url} is not in the expected shape: {reason}")]
    Format {
        /// Where it came from.
        url: String,
        /// What the parser found.
        reason: String,
    },
    /// A cache file could not be written or read.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

// ----- matching -----

/// The advisories a package diff fixes: each upgrade of a source package from an affected version to a
/// fixed one (`old < fixed-version <= new`, in Debian's version order) matches every advisory that names
/// that source package. Binary packages of one source count once per advisory (the one from a security
/// suite preferred). Most severe first, then by id and source.
///
/// `advisories` should already be narrowed to the compose's release ([`Advisory::for_release`]).
pub fn advisories_for(pkgdiff: &PkgDiff, advisories: &[Advisory]) -> Vec<MatchedAdvisory> {
    let mut by_source: HashMap<&str, Vec<(&Advisory, &AdvisoryPackage)>> = HashMap::new();
    for advisory in advisories {
        for package in &advisory.packages {
            by_source
                .entry(package.source.as_str())
                .or_default()
                .push((advisory, package));
        }
    }
    let mut matched: BTreeMap<(String, String), MatchedAdvisory> = BTreeMap::new();
    for change in &pkgdiff.upgraded {
        let Some(candidates) = by_source.get(change.source.as_str()) else {
            continue;
        };
        for (advisory, package) in candidates {
            if !fixes(change, &package.fixed_version) {
                continue;
            }
            let key = (advisory.id.clone(), change.source.clone());
            let better = matched.get(&key).is_none_or(|seen| {
                (change.security && !seen.security) || advisory.severity > seen.severity
            });
            if better {
                matched.insert(key, matched_advisory(advisory, package, change));
            }
        }
    }
    let mut out: Vec<MatchedAdvisory> = matched.into_values().collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.source.cmp(&b.source))
    });
    out
}

/// Whether moving from `old` to `new` crosses `fixed`: `old < fixed <= new`.
fn fixes(change: &PackageChange, fixed: &str) -> bool {
    use std::cmp::Ordering::{Greater, Less};
    compare_versions(VersionScheme::Debian, &change.old_version, fixed) == Less
        && compare_versions(VersionScheme::Debian, fixed, &change.new_version) != Greater
}

fn matched_advisory(
    advisory: &Advisory,
    package: &AdvisoryPackage,
    change: &PackageChange,
) -> MatchedAdvisory {
    MatchedAdvisory {
        id: advisory.id.clone(),
        severity: advisory.severity,
        summary: advisory.summary.clone(),
        url: advisory.url.clone(),
        source: change.source.clone(),
        fixed_version: package.fixed_version.clone(),
        old_version: change.old_version.clone(),
        new_version: change.new_version.clone(),
        suite: change.suite.clone(),
        security: change.security,
    }
}

/// Whether the matched advisories make a release due at once: some upgrade came from a security suite and
/// fixes an advisory at or above the stream's threshold. A threshold of `none` never is.
pub fn emergency_due(matched: &[MatchedAdvisory], threshold: SecurityThreshold) -> bool {
    matched
        .iter()
        .any(|m| m.security && threshold.reached_by(m.severity))
}

// ----- loading -----

/// The advisories that apply, and what went wrong on the way (each a warning: a broken file or an
/// unreachable tracker never stops a release).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedAdvisories {
    /// Every advisory from the local files and the tracker, local ones replacing the tracker's entries of
    /// the same id.
    pub advisories: Vec<Advisory>,
    /// What could not be read, one message each.
    pub warnings: Vec<String>,
}

/// Reads the configured advisories: every local file, and Debian's tracker if configured (for `releases`,
/// the codenames to keep from it, with its cache in `cache_dir`). A file that does not load is skipped
/// with a warning naming file, line, column and field; an unreachable tracker is a warning and the last
/// good copy, if any, is used.
pub async fn load_advisories(
    config: &AdvisoryConfig,
    releases: &BTreeSet<String>,
    cache_dir: &Path,
) -> LoadedAdvisories {
    let mut warnings = Vec::new();
    let mut local = Vec::new();
    for file in &config.files {
        let path = file.clone();
        match tokio::task::spawn_blocking(move || load_advisory_file(&path)).await {
            Ok(Ok(advisories)) => local.extend(advisories),
            Ok(Err(err)) => warnings.push(format!("advisory file skipped: {err}")),
            Err(err) => warnings.push(format!("advisory file {} skipped: {err}", file.display())),
        }
    }
    let mut tracker = Vec::new();
    if let Some(url) = &config.debian_tracker {
        let timeout = Duration::from_secs(config.tracker_timeout_secs.max(1));
        let fetched = DebianTracker::new(url, cache_dir, timeout)
            .fetch(releases)
            .await;
        tracker = fetched.advisories;
        warnings.extend(fetched.warning);
    }
    for message in &warnings {
        tracing::warn!("{message}");
    }
    let local_ids: BTreeSet<&str> = local.iter().map(|a| a.id.as_str()).collect();
    tracker.retain(|a| !local_ids.contains(a.id.as_str()));
    tracker.extend(local);
    LoadedAdvisories {
        advisories: tracker,
        warnings,
    }
}

// ----- Debian's security tracker -----

/// What a tracker fetch gave: its advisories (fresh, or the cached copy), and a warning when it fell back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerAdvisories {
    /// The advisories; empty when neither the tracker nor a cache had any.
    pub advisories: Vec<Advisory>,
    /// Whether they came from the cache (the tracker answered 304, or could not be reached).
    pub from_cache: bool,
    /// Why the tracker could not be used, when it could not.
    pub warning: Option<String>,
}

/// Debian's security tracker JSON (`https://security-tracker.debian.org/tracker/data/json`) with a disk
/// cache of what was kept from it.
///
/// The document is about 50 MB: `{source package: {CVE id: {description, scope, releases: {codename:
/// {status, fixed_version, urgency, repositories}}}}}`. It is downloaded to a file and parsed from there
/// one CVE at a time, keeping only resolved fixes (`fixed_version` other than `0`, which means the release
/// was never affected) of the requested releases. The cache holds those, with the response's `ETag` and
/// `Last-Modified` and the releases they were kept for; the next fetch sends them back, and a 304 reuses
/// the cache.
#[derive(Debug, Clone)]
pub struct DebianTracker {
    url: String,
    cache_dir: PathBuf,
    timeout: Duration,
}

/// The cache file: what was kept from the tracker, and how to ask whether it changed.
#[derive(Debug, Serialize, Deserialize)]
struct TrackerCache {
    url: String,
    releases: BTreeSet<String>,
    etag: Option<String>,
    last_modified: Option<String>,
    advisories: Vec<Advisory>,
}

const CACHE_FILE: &str = "debian-tracker.json";

impl DebianTracker {
    /// A tracker at `url`, caching in `cache_dir` (created when first written), giving up on a request
    /// after `timeout` (the download included).
    pub fn new(url: &str, cache_dir: &Path, timeout: Duration) -> Self {
        Self {
            url: url.to_string(),
            cache_dir: cache_dir.to_path_buf(),
            timeout,
        }
    }

    /// Fetches the tracker's fixes for `releases`; never fails. When the tracker cannot be used, the cached
    /// copy (if it was kept for the same URL and releases) stands in and `warning` says why.
    pub async fn fetch(&self, releases: &BTreeSet<String>) -> TrackerAdvisories {
        let cache = self.read_cache(releases).await;
        match self.download(releases, cache.as_ref()).await {
            Ok(Fresh::NotModified) => TrackerAdvisories {
                advisories: cache.map(|c| c.advisories).unwrap_or_default(),
                from_cache: true,
                warning: None,
            },
            Ok(Fresh::Body(advisories)) => TrackerAdvisories {
                advisories,
                from_cache: false,
                warning: None,
            },
            Err(err) => {
                let warning = match &cache {
                    Some(_) => format!("{err}; using the copy fetched before"),
                    None => format!("{err}; only local advisory files apply"),
                };
                TrackerAdvisories {
                    advisories: cache.map(|c| c.advisories).unwrap_or_default(),
                    from_cache: true,
                    warning: Some(warning),
                }
            }
        }
    }

    /// The cached copy, if it is one for this URL and these releases.
    async fn read_cache(&self, releases: &BTreeSet<String>) -> Option<TrackerCache> {
        let path = self.cache_dir.join(CACHE_FILE);
        let bytes = tokio::fs::read(&path).await.ok()?;
        match serde_json::from_slice::<TrackerCache>(&bytes) {
            Ok(cache) if cache.url == self.url && &cache.releases == releases => Some(cache),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable tracker cache: {err}");
                None
            }
        }
    }

    async fn download(
        &self,
        releases: &BTreeSet<String>,
        cache: Option<&TrackerCache>,
    ) -> Result<Fresh, AdvisoryError> {
        let unreachable = |reason: String| AdvisoryError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.timeout.min(Duration::from_secs(15)))
            .timeout(self.timeout)
            .build()
            .map_err(|e| unreachable(error_chain(&e)))?;
        let mut request = client.get(&self.url);
        if let Some(cache) = cache {
            if let Some(etag) = &cache.etag {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &cache.last_modified {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
            }
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED && cache.is_some() {
            tracing::debug!(url = %self.url, "security tracker data not modified");
            return Ok(Fresh::NotModified);
        }
        if !status.is_success() {
            return Err(AdvisoryError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
            });
        }
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);

        // The body goes to a file and is parsed from there, so 50 MB of JSON is never held in memory.
        self.create_cache_dir().await?;
        let download = self.cache_dir.join("debian-tracker.download");
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| AdvisoryError::Io {
                action,
                path,
                source,
            }
        };
        {
            use tokio::io::AsyncWriteExt;
            let mut file = tokio::fs::File::create(&download)
                .await
                .map_err(io("creating", &download))?;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| unreachable(error_chain(&e)))?
            {
                file.write_all(&chunk)
                    .await
                    .map_err(io("writing", &download))?;
            }
            file.flush().await.map_err(io("writing", &download))?;
        }
        let parsed = {
            let (download, releases, url) = (download.clone(), releases.clone(), self.url.clone());
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&download).map_err(io("reading", &download))?;
                parse_debian_tracker(std::io::BufReader::new(file), &releases, &url)
            })
            .await
            .map_err(|e| unreachable(e.to_string()))?
        };
        let _ = tokio::fs::remove_file(&download).await;
        let advisories = parsed?;
        tracing::info!(
            url = %self.url,
            advisories = advisories.len(),
            "fetched the security tracker data"
        );
        let cache = TrackerCache {
            url: self.url.clone(),
            releases: releases.clone(),
            etag,
            last_modified,
            advisories,
        };
        self.write_cache(&cache).await?;
        Ok(Fresh::Body(cache.advisories))
    }

    async fn create_cache_dir(&self) -> Result<(), AdvisoryError> {
        tokio::fs::create_dir_all(&self.cache_dir)
            .await
            .map_err(|source| AdvisoryError::Io {
                action: "creating",
                path: self.cache_dir.clone(),
                source,
            })
    }

    /// Replaces the cache file in one rename, so a crash leaves the old copy or the new, never half.
    async fn write_cache(&self, cache: &TrackerCache) -> Result<(), AdvisoryError> {
        let path = self.cache_dir.join(CACHE_FILE);
        let partial = self.cache_dir.join(format!(".{CACHE_FILE}.partial"));
        let bytes = serde_json::to_vec(cache).map_err(|e| AdvisoryError::Io {
            action: "encoding",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        tokio::fs::write(&partial, bytes)
            .await
            .map_err(|source| AdvisoryError::Io {
                action: "writing",
                path: partial.clone(),
                source,
            })?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|source| AdvisoryError::Io {
                action: "replacing",
                path,
                source,
            })
    }
}

enum Fresh {
    NotModified,
    Body(Vec<Advisory>),
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The tracker's page of an issue: `<tracker>/<id>` beside the `data/json` document.
fn issue_url(tracker_url: &str, id: &str) -> String {
    let base = tracker_url
        .trim_end_matches('/')
        .trim_end_matches("/data/json")
        .trim_end_matches('/');
    format!("{base}/{id}")
}

/// Parses the tracker's JSON from `reader`, one CVE at a time, keeping the resolved fixes of `releases`.
/// Each kept (source package, CVE) pair becomes an advisory with the CVE's id, its description as the
/// summary, the release's urgency as the severity (unknown words count as `not yet assigned`, that is
/// medium) and the tracker's page as the URL.
pub fn parse_debian_tracker<R: Read>(
    reader: R,
    releases: &BTreeSet<String>,
    tracker_url: &str,
) -> Result<Vec<Advisory>, AdvisoryError> {
    let mut out = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let seed = TopSeed {
        releases,
        tracker_url,
        out: &mut out,
    };
    seed.deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| AdvisoryError::Format {
            url: tracker_url.to_string(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// One CVE as the tracker lists it under a package; fields not named here are skipped.
#[derive(Deserialize)]
struct TrackerIssue {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    releases: BTreeMap<String, TrackerRelease>,
}

/// One release's state of a CVE.
#[derive(Deserialize)]
struct TrackerRelease {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
}

struct TopSeed<'a> {
    releases: &'a BTreeSet<String>,
    tracker_url: &'a str,
    out: &'a mut Vec<Advisory>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of source packages")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(package) = map.next_key::<String>()? {
            map.next_value_seed(PackageSeed {
                package: &package,
                releases: self.releases,
                tracker_url: self.tracker_url,
                out: self.out,
            })?;
        }
        Ok(())
    }
}

struct PackageSeed<'a> {
    package: &'a str,
    releases: &'a BTreeSet<String>,
    tracker_url: &'a str,
    out: &'a mut Vec<Advisory>,
}

impl<'de> DeserializeSeed<'de> for PackageSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PackageSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of issues")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(id) = map.next_key::<String>()? {
            let issue: TrackerIssue = map.next_value()?;
            for (release, state) in issue.releases {
                if !self.releases.contains(&release) || state.status.as_deref() != Some("resolved")
                {
                    continue;
                }
                let Some(fixed) = state.fixed_version.filter(|v| !v.is_empty() && v != "0") else {
                    continue;
                };
                let severity = state
                    .urgency
                    .as_deref()
                    .and_then(|u| u.parse().ok())
                    .unwrap_or(Severity::Medium);
                self.out.push(Advisory {
                    url: Some(issue_url(self.tracker_url, &id)),
                    id: id.clone(),
                    severity,
                    summary: issue.description.clone().unwrap_or_default(),
                    packages: vec![AdvisoryPackage {
                        source: self.package.to_string(),
                        fixed_version: fixed,
                        release: Some(release),
                    }],
                });
            }
        }
        Ok(())
    }
    // Anything but an object under a package name is not an issue list; it is skipped rather than fatal, so
    // one odd entry does not lose the whole document.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}
