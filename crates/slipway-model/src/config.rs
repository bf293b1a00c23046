//! The project config, `slipway.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::announce::{check_mailbox, AnnounceConfig};
use crate::cadence::{Cadence, OnMissed, Promotion, StreamPolicy};
use crate::testing::{DenylistEntry, PlanConfig, DEFAULT_PLAN};
use crate::toml_file::{read_toml, ConfigError, Location};
use crate::{Recipe, Requirement, SecurityThreshold};

/// The project config: where state, blobs and the public tree live, the signing key, gates and streams.
/// Relative paths are resolved against the config file's directory, so a copied project works anywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Database, job state and work directories.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Content-addressed artifact store; defaults to `<state-dir>/blobs`.
    #[serde(default)]
    pub blob_dir: Option<PathBuf>,
    /// The public tree served to users.
    #[serde(default = "default_publish_dir")]
    pub publish_dir: PathBuf,
    /// The URL the public tree is served at; artifact locations in stream metadata are made absolute with
    /// it. Without it they are relative to the site root.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Prefix of event topics on the bus, such as `org.example.slipway`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// The release signing key.
    pub signing: SigningConfig,
    /// Boot test settings.
    #[serde(default)]
    pub boottest: BootTestConfig,
    /// How the daemon watches package sources and recipes.
    #[serde(default)]
    pub watch: WatchConfig,
    /// Gates by name.
    #[serde(default, rename = "gate")]
    pub gates: BTreeMap<String, GateConfig>,
    /// Release streams.
    #[serde(rename = "stream")]
    pub streams: Vec<StreamConfig>,
    /// Test plans by name, besides the built-in `default`.
    #[serde(default, rename = "plan")]
    pub plans: BTreeMap<String, PlanConfig>,
    /// Known failures whose results are SKIPPED until their snooze date.
    #[serde(default)]
    pub denylist: Vec<DenylistEntry>,
    /// Where security advisories come from.
    #[serde(default)]
    pub advisories: AdvisoryConfig,
    /// Where incidents are mirrored besides the store.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// Who announcements come from, who they go to, and how they are sent.
    #[serde(default)]
    pub announce: AnnounceConfig,
    /// The directory of the config file; every relative path was resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself.
    #[serde(skip)]
    pub path: PathBuf,
}

/// The OpenPGP key that signs CHECKSUM files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SigningConfig {
    /// The armored secret key file; `slipway keys init` creates it.
    pub key: PathBuf,
    /// The user id given to a key that `slipway keys init` creates.
    #[serde(default = "default_user_id")]
    pub user_id: String,
}

/// How boot tests run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BootTestConfig {
    /// Guest memory in MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    /// Guest CPUs.
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// Seconds a VM may take to boot and settle. Its deadline is this plus its tests' timeouts (times
    /// one plus the reruns) plus a margin; a VM still running then is killed and its missing results are
    /// ERROR.
    #[serde(default = "default_deadline")]
    pub deadline_secs: u64,
    /// Virtual disk size in GiB for the boot, larger than the image so growing the root is exercised.
    #[serde(default = "default_disk_gib")]
    pub disk_gib: u32,
    /// Directories of user tests (one `*.toml` per test, searched recursively), relative to the config
    /// file.
    #[serde(default)]
    pub test_dirs: Vec<PathBuf>,
    /// How many times a failed test is run again; a pass on a rerun is PASSED and flaky.
    #[serde(default = "default_reruns")]
    pub reruns: u32,
    /// The memory, in MiB, all VMs of one test run may use together; VMs wait for room.
    #[serde(default = "default_memory_budget")]
    pub memory_budget_mib: u32,
    /// The guest CPUs all VMs of one test run may use together.
    #[serde(default = "default_cpu_budget")]
    pub cpu_budget: u32,
}

impl Default for BootTestConfig {
    fn default() -> Self {
        Self {
            memory_mib: default_memory(),
            cpus: default_cpus(),
            deadline_secs: default_deadline(),
            disk_gib: default_disk_gib(),
            test_dirs: Vec::new(),
            reruns: default_reruns(),
            memory_budget_mib: default_memory_budget(),
            cpu_budget: default_cpu_budget(),
        }
    }
}

/// How the daemon (`slipway run` without `--once`) notices work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WatchConfig {
    /// Seconds between polls of every package source and recipe file.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            poll_interval_secs: default_poll_interval(),
        }
    }
}

/// Where security advisories come from: local files, and Debian's security tracker when configured and
/// reachable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AdvisoryConfig {
    /// Local advisory files (see `docs/advisories.md`), relative to the config file. They are checked when
    /// the config loads and read again whenever advisories are needed.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// The URL of Debian's security tracker JSON, such as
    /// `https://security-tracker.debian.org/tracker/data/json`. Without it only the local files apply.
    #[serde(default)]
    pub debian_tracker: Option<String>,
    /// The distribution release (codename, such as `bookworm`) whose fixes apply to every stream. Without
    /// it each stream uses its recipe's suite.
    #[serde(default)]
    pub release: Option<String>,
    /// Seconds the tracker may take to answer, download included.
    #[serde(default = "default_advisory_tracker_timeout")]
    pub tracker_timeout_secs: u64,
}

impl Default for AdvisoryConfig {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            debian_tracker: None,
            release: None,
            tracker_timeout_secs: default_advisory_tracker_timeout(),
        }
    }
}

impl AdvisoryConfig {
    /// The release a stream's advisories are matched for: the configured one, else the recipe's suite
    /// without a `-security`/`-updates` suffix.
    pub fn release_for(&self, recipe: &Recipe) -> String {
        match &self.release {
            Some(release) => release.clone(),
            None => recipe
                .suite
                .split(['-', '/'])
                .next()
                .unwrap_or(&recipe.suite)
                .to_string(),
        }
    }
}

/// Which tracker holds incidents besides the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    /// Only the store: `slipway incidents` shows them.
    #[default]
    Embedded,
    /// Mirrored to a GitLab project's issues through its REST API (v4).
    Gitlab,
}

/// `[tracker]`: where incidents are mirrored. The store always holds them; an external tracker gets a
/// copy (issue, comments, close), retried until it succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrackerConfig {
    /// `embedded` (the default) or `gitlab`.
    #[serde(default)]
    pub kind: TrackerKind,
    /// The tracker's base URL, such as `https://gitlab.example.org`.
    #[serde(default)]
    pub url: Option<String>,
    /// The project: GitLab's numeric id or its path (`group/project`).
    #[serde(default)]
    pub project: Option<String>,
    /// The name of the environment variable that holds the access token; the token itself is never
    /// written in the config.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Labels given to the issues it opens.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Seconds a request to the tracker may take before it counts as failed (and is retried later).
    #[serde(default = "default_tracker_timeout")]
    pub timeout_secs: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            kind: TrackerKind::Embedded,
            url: None,
            project: None,
            token_env: None,
            labels: Vec::new(),
            timeout_secs: default_tracker_timeout(),
        }
    }
}

/// How much of a stream's history is kept. Both limits are optional, and without them nothing is deleted:
/// every release stays listed and every compose stays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetentionConfig {
    /// How many of the newest releases that are not revoked stay listed; older ones expire (they leave the
    /// tree and the stream, and stay in the releases index). The current release never expires. Unset:
    /// no release expires.
    #[serde(default)]
    pub keep_releases: Option<u32>,
    /// Composes younger than this many days are kept whether released or not; older ones are deleted
    /// unless a listed release (or the stream's newest compose) needs them. Unset: no compose is deleted.
    #[serde(default)]
    pub keep_days: Option<u32>,
}

impl TrackerConfig {
    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let at_header = |field: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            location: text
                .find("[tracker]")
                .map(|offset| Location::of_offset(text, offset)),
            field: Some(format!("tracker.{field}")),
            message,
        };
        let at_key = |key: &str, message: String| {
            ConfigError::at_key(path, text, key, &format!("tracker.{key}"), message)
        };
        if self.timeout_secs == 0 {
            return Err(at_key("timeout-secs", "must be at least 1 second".into()));
        }
        match self.kind {
            TrackerKind::Embedded => {
                let set = [
                    ("url", self.url.is_some()),
                    ("project", self.project.is_some()),
                    ("token-env", self.token_env.is_some()),
                    ("labels", !self.labels.is_empty()),
                ];
                if let Some((key, _)) = set.iter().find(|(_, is_set)| *is_set) {
                    return Err(at_key(
                        key,
                        "is only used by an external tracker: set `kind = \"gitlab\"` or remove it"
                            .into(),
                    ));
                }
            }
            TrackerKind::Gitlab => {
                match self.url.as_deref().map(str::trim) {
                    None | Some("") => {
                        return Err(at_header(
                            "url",
                            "kind = \"gitlab\" needs the server's URL: add `url = \"https://gitlab.example.org\"`"
                                .into(),
                        ))
                    }
                    Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                        return Err(at_key("url", "must start with http:// or https://".into()))
                    }
                    Some(_) => {}
                }
                match self.project.as_deref().map(str::trim) {
                    None | Some("") => return Err(at_header(
                        "project",
                        "kind = \"gitlab\" needs the project: its numeric id or its path, such as \
                             `project = \"releng/incidents\"`"
                            .into(),
                    )),
                    Some(_) => {}
                }
                match self.token_env.as_deref() {
                    None => {
                        return Err(at_header(
                            "token-env",
                            "kind = \"gitlab\" needs the name of the environment variable that holds \
                             the access token, such as `token-env = \"SLIPWAY_GITLAB_TOKEN\"`"
                                .into(),
                        ))
                    }
                    Some(name) if !is_env_name(name) => {
                        return Err(at_key(
                            "token-env",
                            format!(
                                "{name:?} is not an environment variable name: use letters, digits \
                                 and '_', not starting with a digit (the token itself never goes in \
                                 the config)"
                            ),
                        ))
                    }
                    Some(_) => {}
                }
                if let Some(i) = self
                    .labels
                    .iter()
                    .position(|l| l.trim().is_empty() || l.contains(','))
                {
                    return Err(at_key(
                        "labels",
                        format!("labels[{i}] {:?} is empty or holds a comma", self.labels[i]),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A time of day in UTC, `HH:MM`, at which a stream's nightly compose is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay {
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
}

impl TimeOfDay {
    /// Seconds after midnight.
    pub fn seconds(self) -> i64 {
        i64::from(self.hour) * 3600 + i64::from(self.minute) * 60
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a UTC time of day such as \"03:00\"");
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 || m.len() != 2 {
            return Err(bad());
        }
        Ok(Self { hour, minute })
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        format!("{:02}:{:02}", t.hour, t.minute)
    }
}

/// A gate policy: what a compose must show before it may be released.
///
/// Written in the config as `[gate.<name>]`, or as a file of its own that a stream names with `policy`.
/// Both forms hold the same keys: `required = ["a", "b"]` (each testcase's latest result must be PASSED)
/// and any number of `[[require]]` tables (`[[gate.<name>.require]]` in the config) with `testcase`,
/// `scenario`, `valid-since`, `valid-until` and `min-count` (see [`Requirement`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GateConfig {
    /// Testcases whose latest result must be PASSED, in every scenario they ran in.
    #[serde(default)]
    pub required: Vec<String>,
    /// Requirements in table form.
    #[serde(default)]
    pub require: Vec<Requirement>,
}

impl GateConfig {
    /// Every requirement, the short `required` list first.
    pub fn requirements(&self) -> Vec<Requirement> {
        self.required
            .iter()
            .map(Requirement::testcase)
            .chain(self.require.iter().cloned())
            .collect()
    }

    /// Reads, parses and checks a policy file. Errors name the file, line, column and field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (policy, text): (GateConfig, String) = read_toml(path)?;
        if let Some(i) = policy.required.iter().position(|t| t.trim().is_empty()) {
            return Err(ConfigError::at_key(
                path,
                &text,
                "required",
                &format!("required[{i}]"),
                "an empty testcase name",
            ));
        }
        if policy.requirements().is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                location: None,
                field: None,
                message: "the policy requires nothing: add `required = [...]` or a [[require]] \
                          table (a gate that requires nothing would pass every compose)"
                    .into(),
            });
        }
        Ok(policy)
    }
}

/// A release stream: a recipe and the gate its composes must pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StreamConfig {
    /// The stream's name, used in paths and URLs.
    pub name: String,
    /// The recipe file.
    pub recipe: PathBuf,
    /// The name of the gate in `[gate.<name>]`. A stream names a gate, a policy file, or both (then
    /// both apply).
    #[serde(default)]
    pub gate: Option<String>,
    /// A policy file (same keys as a `[gate.<name>]` table), read again at every decision so edits apply
    /// without a restart. A file that cannot be read or parsed fails that stream's decisions, naming the
    /// error.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// A one-line description for the website.
    #[serde(default)]
    pub description: String,
    /// The UTC time of day of the nightly compose, such as `"03:00"`. The daemon composes the stream then
    /// (if its inputs changed) even when no poll noticed a change. Without it, only changes trigger.
    #[serde(default)]
    pub nightly: Option<TimeOfDay>,
    /// The test plan its composes run: a `[plan.<name>]` or `default`. Without it, the recipe's
    /// `[tests] plan`, else `default`.
    #[serde(default)]
    pub plan: Option<String>,
    /// The least severity of an advisory fixed by a security-suite upgrade that releases a passing compose
    /// at once instead of waiting for the cadence; `"none"` never does. Default `"high"`.
    #[serde(default)]
    pub security_threshold: SecurityThreshold,
    /// What garbage collection keeps of the stream: `{ keep-releases = 10, keep-days = 30 }`.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// When the stream releases: `"on-pass"` (the default: every compose that passes its gate), `{ every
    /// = "14d", anchor = "2026-01-06", at = "12:00" }` or `{ cron = "0 12 * * 2" }`, all in UTC.
    #[serde(default)]
    pub cadence: Cadence,
    /// What a release day that finds nothing to release leads to: `skip` (the default) or
    /// `retry-nightly`.
    #[serde(default)]
    pub on_missed: OnMissed,
    /// Take candidates from another stream's releases after a soak instead of from this stream's
    /// composes: `{ stream = "testing", soak = "14d" }`.
    #[serde(default)]
    pub promote_from: Option<Promotion>,
}

impl StreamConfig {
    /// The stream's release policy: cadence, missed-day rule and promotion.
    pub fn release_policy(&self) -> StreamPolicy {
        StreamPolicy {
            cadence: self.cadence.clone(),
            on_missed: self.on_missed,
            promote_from: self.promote_from.clone(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    "state".into()
}
fn default_publish_dir() -> PathBuf {
    "public".into()
}
fn default_topic_prefix() -> String {
    "org.example.slipway".into()
}
fn default_user_id() -> String {
    "slipway release signing key <releng@localhost>".into()
}
fn default_memory() -> u32 {
    1024
}
fn default_cpus() -> u32 {
    2
}
fn default_deadline() -> u64 {
    600
}
fn default_advisory_tracker_timeout() -> u64 {
    // The tracker's document is about 50 MB.
    120
}
fn default_poll_interval() -> u64 {
    900
}
fn default_tracker_timeout() -> u64 {
    30
}
fn default_disk_gib() -> u32 {
    4
}
fn default_reruns() -> u32 {
    1
}
fn default_memory_budget() -> u32 {
    4096
}
fn default_cpu_budget() -> u32 {
    // Guest CPUs beyond the host's only make the VMs fight over them.
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
}

impl Config {
    /// Reads, parses and validates a config file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (mut config, text): (Config, String) = read_toml(path)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        config.path = base.join(path.file_name().unwrap_or_default());
        config.state_dir = base.join(&config.state_dir);
        config.blob_dir = Some(match &config.blob_dir {
            Some(dir) => base.join(dir),
            None => config.state_dir.join("blobs"),
        });
        config.publish_dir = base.join(&config.publish_dir);
        config.signing.key = base.join(&config.signing.key);
        for stream in &mut config.streams {
            stream.recipe = base.join(&stream.recipe);
            if let Some(policy) = &mut stream.policy {
                *policy = base.join(&*policy);
            }
        }
        for dir in &mut config.boottest.test_dirs {
            *dir = base.join(&*dir);
        }
        for file in &mut config.advisories.files {
            *file = base.join(&*file);
        }
        config.announce.outbox_dir = Some(match &config.announce.outbox_dir {
            Some(dir) => base.join(dir),
            None => config.state_dir.join("outbox"),
        });
        config.base_dir = base;
        config.validate(path, &text)?;
        Ok(config)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        if self.streams.is_empty() {
            return Err(ConfigError::at_key(
                path,
                text,
                "name",
                "stream",
                "define at least one [[stream]]",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, stream) in self.streams.iter().enumerate() {
            if stream.name.is_empty()
                || !stream
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(ConfigError::at_key(
                    path,
                    text,
                    "name",
                    &format!("stream[{i}].name"),
                    format!(
                        "{:?} is not a stream name: use letters, digits, '-', '_' and '.'",
                        stream.name
                    ),
                ));
            }
            if !seen.insert(&stream.name) {
                return Err(ConfigError::at_key(
                    path,
                    text,
                    "name",
                    &format!("stream[{i}].name"),
                    format!("stream {:?} is defined twice", stream.name),
                ));
            }
            match &stream.gate {
                Some(gate) if !self.gates.contains_key(gate) => {
                    let known: Vec<_> = self.gates.keys().cloned().collect();
                    return Err(ConfigError::at_key(
                        path,
                        text,
                        "gate",
                        &format!("stream[{i}].gate"),
                        format!(
                            "no [gate.{gate}] is defined (known gates: {})",
                            known.join(", ")
                        ),
                    ));
                }
                None if stream.policy.is_none() => {
                    return Err(ConfigError::at_key(
                        path,
                        text,
                        "name",
                        &format!("stream[{i}].gate"),
                        format!(
                            "stream {:?} names no gate: add `gate = \"<name>\"` or `policy = \"<file>\"`",
                            stream.name
                        ),
                    ));
                }
                _ => {}
            }
        }
        for (name, gate) in &self.gates {
            if let Some(i) = gate.required.iter().position(|t| t.trim().is_empty()) {
                return Err(ConfigError::at_key(
                    path,
                    text,
                    "required",
                    &format!("gate.{name}.required[{i}]"),
                    "an empty testcase name",
                ));
            }
            if gate.requirements().is_empty() {
                let header = format!("[gate.{name}]");
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    location: text
                        .find(&header)
                        .map(|offset| Location::of_offset(text, offset)),
                    field: Some(format!("gate.{name}")),
                    message: "the gate requires nothing: add `required = [...]` or a \
                              [[gate.<name>.require]] table (a gate that requires nothing would pass \
                              every compose)"
                        .into(),
                });
            }
        }
        for (i, stream) in self.streams.iter().enumerate() {
            if let Some(plan) = &stream.plan {
                if !self.has_plan(plan) {
                    return Err(ConfigError::at_key(
                        path,
                        text,
                        "plan",
                        &format!("stream[{i}].plan"),
                        self.unknown_plan(plan),
                    ));
                }
            } else {
                self.check_recipe_plan(stream)?;
            }
        }
        self.check_promotions(path, text)?;
        if let Some(name) = self.plans.keys().find(|n| n.as_str() == DEFAULT_PLAN) {
            return Err(ConfigError::at_key(
                path,
                text,
                "include",
                &format!("plan.{name}"),
                "`default` is the built-in plan of every built-in test; give this plan another name",
            ));
        }
        for (i, stream) in self.streams.iter().enumerate() {
            if stream.retention.keep_releases == Some(0) {
                return Err(ConfigError::at_key(
                    path,
                    text,
                    "retention",
                    &format!("stream[{i}].retention.keep-releases"),
                    "keep at least 1 release (the current release is always kept); leave it out to \
                     keep every release",
                ));
            }
        }
        if let Some(url) = &self.advisories.debian_tracker {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::at_key(
                    path,
                    text,
                    "debian-tracker",
                    "advisories.debian-tracker",
                    "must start with http:// or https://",
                ));
            }
        }
        for file in &self.advisories.files {
            crate::load_advisory_file(file)?;
        }
        self.tracker.validate(path, text)?;
        if let Some(url) = &self.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::at_key(
                    path,
                    text,
                    "base-url",
                    "base-url",
                    "must start with http:// or https://",
                ));
            }
        }
        self.validate_announce(path, text)
    }

    /// Addresses are checked now, so a typo in a recipient is found at load and not at the first release.
    fn validate_announce(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let announce = &self.announce;
        if let Err(message) = check_mailbox(&announce.from) {
            return Err(ConfigError::at_key(
                path,
                text,
                "from",
                "announce.from",
                message,
            ));
        }
        if announce.recipients.is_empty() {
            return Err(ConfigError::at_key(
                path,
                text,
                "recipients",
                "announce.recipients",
                "name at least one recipient",
            ));
        }
        for (i, recipient) in announce.recipients.iter().enumerate() {
            if let Err(message) = check_mailbox(recipient) {
                return Err(ConfigError::at_key(
                    path,
                    text,
                    "recipients",
                    &format!("announce.recipients[{i}]"),
                    message,
                ));
            }
        }
        let Some(smtp) = &announce.smtp else {
            return Ok(());
        };
        if smtp.host.trim().is_empty() || smtp.host.contains(char::is_whitespace) {
            return Err(ConfigError::at_key(
                path,
                text,
                "host",
                "announce.smtp.host",
                format!("{:?} is not a host name", smtp.host),
            ));
        }
        if smtp.port == Some(0) {
            return Err(ConfigError::at_key(
                path,
                text,
                "port",
                "announce.smtp.port",
                "port 0 is not a port",
            ));
        }
        if smtp.timeout_secs == 0 {
            return Err(ConfigError::at_key(
                path,
                text,
                "timeout-secs",
                "announce.smtp.timeout-secs",
                "a timeout of 0 seconds fails every send; give at least 1",
            ));
        }
        match (&smtp.username, &smtp.password_env) {
            (Some(_), None) => Err(ConfigError::at_key(
                path,
                text,
                "username",
                "announce.smtp.password-env",
                "a username needs `password-env`, the environment variable that holds its password",
            )),
            (None, Some(_)) => Err(ConfigError::at_key(
                path,
                text,
                "password-env",
                "announce.smtp.username",
                "`password-env` needs a `username` to log in with",
            )),
            (Some(_), Some(var)) if var.is_empty() || var.contains(['=', '\0']) => {
                Err(ConfigError::at_key(
                    path,
                    text,
                    "password-env",
                    "announce.smtp.password-env",
                    format!("{var:?} is not an environment variable name"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Where announcements are written as `.eml` files when no SMTP server is configured.
    pub fn outbox_dir(&self) -> PathBuf {
        self.announce
            .outbox_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("outbox"))
    }

    /// Each `promote-from` must name another configured stream, and following them must never come
    /// back to where it started: a cycle would have every stream in it wait for the others forever.
    fn check_promotions(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let at = |i: usize, message: String| {
            ConfigError::in_table(
                path,
                text,
                ("[[stream]]", i),
                "promote-from",
                &format!("stream[{i}].promote-from"),
                message,
            )
        };
        for (i, stream) in self.streams.iter().enumerate() {
            let Some(promotion) = &stream.promote_from else {
                continue;
            };
            if promotion.stream == stream.name {
                return Err(at(
                    i,
                    format!(
                        "stream {:?} promotes from itself: name the stream its releases come from",
                        stream.name
                    ),
                ));
            }
            if self.stream(&promotion.stream).is_none() {
                let known: Vec<_> = self.streams.iter().map(|s| s.name.as_str()).collect();
                return Err(at(
                    i,
                    format!(
                        "no stream {:?} is defined (known streams: {})",
                        promotion.stream,
                        known.join(", ")
                    ),
                ));
            }
        }
        for (i, stream) in self.streams.iter().enumerate() {
            let mut chain = vec![stream.name.as_str()];
            let mut current = stream;
            while let Some(source) = current
                .promote_from
                .as_ref()
                .and_then(|p| self.stream(&p.stream))
            {
                if source.name == stream.name {
                    chain.push(&source.name);
                    return Err(at(
                        i,
                        format!(
                            "promotion cycle {}: a stream cannot, through others, promote from itself",
                            chain.join(" -> ")
                        ),
                    ));
                }
                if chain.contains(&source.name.as_str()) {
                    // A cycle that does not pass through this stream: reported at a stream inside it.
                    break;
                }
                chain.push(&source.name);
                current = source;
            }
        }
        Ok(())
    }

    /// The blob directory.
    pub fn blob_dir(&self) -> PathBuf {
        self.blob_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("blobs"))
    }

    /// Whether a plan of this name exists (`default` always does).
    pub fn has_plan(&self, name: &str) -> bool {
        name == DEFAULT_PLAN || self.plans.contains_key(name)
    }

    fn unknown_plan(&self, name: &str) -> String {
        let mut known = vec![DEFAULT_PLAN.to_string()];
        known.extend(self.plans.keys().cloned());
        format!(
            "no [plan.{name}] is defined (known plans: {})",
            known.join(", ")
        )
    }

    /// A recipe's `[tests] plan` must name a plan too. A recipe that does not load is left for the
    /// compose to report; only its plan is checked here.
    fn check_recipe_plan(&self, stream: &StreamConfig) -> Result<(), ConfigError> {
        let Ok(text) = std::fs::read_to_string(&stream.recipe) else {
            return Ok(());
        };
        let Ok(recipe) = crate::toml_file::parse_toml::<Recipe>(&stream.recipe, &text) else {
            return Ok(());
        };
        match &recipe.tests.plan {
            Some(plan) if !self.has_plan(plan) => Err(ConfigError::at_key(
                &stream.recipe,
                &text,
                "plan",
                "tests.plan",
                self.unknown_plan(plan),
            )),
            _ => Ok(()),
        }
    }

    /// The plan a stream's composes run: the stream's own, else its recipe's, else `default`.
    pub fn plan_name(&self, stream: &StreamConfig, recipe: &Recipe) -> String {
        stream
            .plan
            .clone()
            .or_else(|| recipe.tests.plan.clone())
            .unwrap_or_else(|| DEFAULT_PLAN.to_string())
    }

    /// The stream of a given name.
    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// Loads the recipe of a stream.
    pub fn recipe(&self, stream: &StreamConfig) -> Result<Recipe, ConfigError> {
        Recipe::load(&stream.recipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
publish-dir = "site"

[signing]
key = "keys/signing.asc"

[gate.default]
required = ["boot.multi-user"]

[[stream]]
name = "cloud"
recipe = "recipes/cloud.toml"
gate = "default"
"#;

    #[test]
    fn paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, GOOD).expect("write");
        let config = Config::load(&path).expect("valid config");
        assert_eq!(config.publish_dir, dir.path().join("site"));
        assert_eq!(config.state_dir, dir.path().join("state"));
        assert_eq!(config.blob_dir(), dir.path().join("state/blobs"));
        assert_eq!(config.signing.key, dir.path().join("keys/signing.asc"));
        assert_eq!(
            config.streams[0].recipe,
            dir.path().join("recipes/cloud.toml")
        );
    }

    #[test]
    fn a_stream_naming_an_unknown_gate_is_refused_at_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            GOOD.replace("gate = \"default\"", "gate = \"strict\""),
        )
        .expect("write");
        let message = Config::load(&path).expect_err("must fail").to_string();
        assert!(
            message.contains("slipway.toml:13:1: field `stream[0].gate`"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_section_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            GOOD.replace("[signing]\nkey = \"keys/signing.asc\"\n", ""),
        )
        .expect("write");
        let message = Config::load(&path).expect_err("must fail").to_string();
        assert!(message.contains("signing"), "{message}");
    }

    #[test]
    fn plans_denylist_and_test_dirs_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        let text = GOOD.replace(
            "gate = \"default\"\n",
            "gate = \"default\"\nplan = \"smoke\"\n",
        ) + r#"
[boottest]
test-dirs = ["tests"]
reruns = 2

[plan.smoke]
include = ["boot.*", "tag:smoke"]
exclude = ["boot.slow"]

[[denylist]]
pattern = "time.*"
reason = "no NTP"
tracker = "https://bugs.example.org/1"
snooze-until = 2026-12-01
arches = ["x86_64"]
"#;
        std::fs::write(&path, text).expect("write");
        let config = Config::load(&path).expect("valid config");
        assert_eq!(config.boottest.test_dirs, vec![dir.path().join("tests")]);
        assert_eq!(config.boottest.reruns, 2);
        assert_eq!(config.streams[0].plan.as_deref(), Some("smoke"));
        assert!(config.plans["smoke"].selects("boot.multi-user", &[]));
        assert_eq!(
            config.denylist[0].snooze_until,
            jiff::civil::Date::constant(2026, 12, 1)
        );
    }

    #[test]
    fn an_unknown_plan_is_refused_at_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            GOOD.replace(
                "gate = \"default\"\n",
                "gate = \"default\"\nplan = \"nightly\"\n",
            ),
        )
        .expect("write");
        let message = Config::load(&path).expect_err("must fail").to_string();
        assert!(
            message.contains("slipway.toml:14:1: field `stream[0].plan`: no [plan.nightly]"),
            "{message}"
        );
    }

    #[test]
    fn a_recipe_naming_an_unknown_plan_is_refused_at_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, GOOD).expect("write");
        std::fs::create_dir_all(dir.path().join("recipes")).expect("mkdir");
        let recipe = "distribution = \"debian\"\nsuite = \"bookworm\"\npackages = []\n\
                      outputs = [\"qcow2\"]\n[[source]]\nurl = \"http://deb.debian.org/debian\"\n\
                      suite = \"bookworm\"\n[system]\nhostname = \"h\"\n[tests]\nplan = \"smoke\"\n";
        std::fs::write(dir.path().join("recipes/cloud.toml"), recipe).expect("write");
        let message = Config::load(&path).expect_err("must fail").to_string();
        assert!(
            message.contains("cloud.toml:11:1: field `tests.plan`: no [plan.smoke]"),
            "{message}"
        );
    }

    #[test]
    fn a_malformed_snooze_date_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        let text = GOOD.to_string()
            + "\n[[denylist]]\npattern = \"x\"\nreason = \"y\"\nsnooze-until = \"soon\"\n";
        std::fs::write(&path, text).expect("write");
        let message = Config::load(&path).expect_err("must fail").to_string();
        assert!(message.contains("denylist"), "{message}");
        assert!(message.contains("\"soon\" is not a date"), "{message}");
    }
}

#[cfg(test)]
mod advisory_and_retention_tests {
    use super::*;
    use crate::Severity;

    const BASE: &str = r#"
[signing]
key = "k.asc"

[gate.g]
required = ["boot"]

[[stream]]
name = "cloud"
recipe = "cloud.toml"
gate = "g"
"#;

    fn load(dir: &Path, text: &str) -> Result<Config, String> {
        let path = dir.join("slipway.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_keep_everything_and_release_on_high() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load(dir.path(), BASE).expect("valid");
        let stream = &config.streams[0];
        assert_eq!(stream.retention, RetentionConfig::default());
        assert_eq!(stream.retention.keep_releases, None);
        assert_eq!(stream.retention.keep_days, None);
        assert_eq!(
            stream.security_threshold,
            SecurityThreshold::AtLeast(Severity::High)
        );
        assert!(config.advisories.files.is_empty());
        assert_eq!(config.advisories.debian_tracker, None);
        assert_eq!(config.advisories.tracker_timeout_secs, 120);
    }

    #[test]
    fn advisories_retention_and_threshold_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("local.toml"),
            "[[advisory]]\nid = \"X-1\"\nseverity = \"low\"\n[[advisory.package]]\n\
             source = \"a\"\nfixed-version = \"1\"\n",
        )
        .expect("write");
        let text = BASE.replace(
            "gate = \"g\"\n",
            "gate = \"g\"\nsecurity-threshold = \"none\"\n\
             retention = { keep-releases = 10, keep-days = 30 }\n",
        ) + "\n[advisories]\nfiles = [\"local.toml\"]\n\
               debian-tracker = \"https://security-tracker.debian.org/tracker/data/json\"\n\
               release = \"bookworm\"\n";
        let config = load(dir.path(), &text).expect("valid");
        let stream = &config.streams[0];
        assert_eq!(stream.security_threshold, SecurityThreshold::Never);
        assert_eq!(
            stream.retention,
            RetentionConfig {
                keep_releases: Some(10),
                keep_days: Some(30)
            }
        );
        assert_eq!(config.advisories.files, vec![dir.path().join("local.toml")]);
        assert_eq!(config.advisories.release.as_deref(), Some("bookworm"));
    }

    #[test]
    fn bad_values_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let message = load(
            dir.path(),
            &BASE.replace(
                "gate = \"g\"\n",
                "gate = \"g\"\nsecurity-threshold = \"severe\"\n",
            ),
        )
        .expect_err("bad threshold");
        assert!(message.contains("slipway.toml:12:22"), "{message}");
        assert!(
            message.contains("stream[0].security-threshold"),
            "{message}"
        );

        let message = load(
            dir.path(),
            &BASE.replace(
                "gate = \"g\"\n",
                "gate = \"g\"\nretention = { keep-releases = 0 }\n",
            ),
        )
        .expect_err("zero releases");
        assert!(
            message.contains("slipway.toml:12:1: field `stream[0].retention.keep-releases`"),
            "{message}"
        );

        let message = load(
            dir.path(),
            &BASE.replace(
                "gate = \"g\"\n",
                "gate = \"g\"\nretention = { keep-release = 3 }\n",
            ),
        )
        .expect_err("misspelt key");
        assert!(message.contains("keep-release"), "{message}");

        std::fs::write(
            dir.path().join("broken.toml"),
            "[[advisory]]\nid = \"X\"\nseverity = \"dire\"\n",
        )
        .expect("write");
        let message = load(
            dir.path(),
            &(BASE.to_string() + "\n[advisories]\nfiles = [\"broken.toml\"]\n"),
        )
        .expect_err("broken advisory file");
        assert!(message.contains("broken.toml:3:12"), "{message}");
    }

    #[test]
    fn the_release_defaults_to_the_recipes_suite() {
        let recipe: Recipe = crate::toml_file::parse_toml(
            Path::new("r.toml"),
            "distribution = \"debian\"\nsuite = \"trixie\"\npackages = []\noutputs = [\"qcow2\"]\n\
             [[source]]\nurl = \"http://deb.debian.org/debian\"\nsuite = \"trixie\"\n\
             [system]\nhostname = \"h\"\n",
        )
        .expect("recipe");
        assert_eq!(AdvisoryConfig::default().release_for(&recipe), "trixie");
        let fixed = AdvisoryConfig {
            release: Some("bookworm".into()),
            ..AdvisoryConfig::default()
        };
        assert_eq!(fixed.release_for(&recipe), "bookworm");
    }
}

#[cfg(test)]
mod cadence_tests {
    use super::*;
    use crate::{Cadence, OnMissed, StreamPolicy};

    const HEAD: &str = "[signing]\nkey = \"k.asc\"\n\n[gate.g]\nrequired = [\"boot\"]\n";

    fn stream(name: &str, extra: &str) -> String {
        format!("\n[[stream]]\nname = \"{name}\"\nrecipe = \"r.toml\"\ngate = \"g\"\n{extra}")
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(&path)
    }

    #[test]
    fn cadence_keys_load_with_their_defaults() {
        let text = HEAD.to_string()
            + &stream(
                "testing",
                "cadence = { every = \"14d\", anchor = \"2026-01-06\", at = \"12:00\" }\n\
                 on-missed = \"retry-nightly\"\n",
            )
            + &stream(
                "stable",
                "cadence = { cron = \"0 12 * * 2\" }\npromote-from = { stream = \"testing\", soak = \"14d\" }\n",
            )
            + &stream("rawhide", "");
        let config = load(&text).expect("valid");
        let testing = config.streams[0].release_policy();
        assert!(matches!(testing.cadence, Cadence::Every(_)));
        assert_eq!(testing.on_missed, OnMissed::RetryNightly);
        assert_eq!(testing.promote_from, None);
        let stable = config.streams[1].release_policy();
        assert!(matches!(stable.cadence, Cadence::Cron(_)));
        assert_eq!(stable.on_missed, OnMissed::Skip);
        let promotion = stable.promote_from.expect("promotes");
        assert_eq!(promotion.stream, "testing");
        assert_eq!(promotion.soak.seconds(), 14 * 86_400);
        let rawhide = config.streams[2].release_policy();
        assert_eq!(rawhide.cadence, Cadence::OnPass);
        assert_eq!(rawhide.on_missed, OnMissed::Skip);
    }

    #[test]
    fn a_cadence_that_does_not_parse_is_named_at_its_place() {
        let text = HEAD.to_string() + &stream("testing", "cadence = { cron = \"0 12 * * 9\" }\n");
        let message = load(&text).expect_err("must fail").to_string();
        assert!(
            message.contains("slipway.toml:11:11: field `stream[0].cadence`"),
            "{message}"
        );
        assert!(
            message.contains("day-of-week field: 9 is out of range"),
            "{message}"
        );
        let text = HEAD.to_string()
            + &stream(
                "testing",
                "cadence = { every = \"14 days\", anchor = \"2026-01-06\" }\n",
            );
        let message = load(&text).expect_err("must fail").to_string();
        assert!(message.contains("slipway.toml:11:"), "{message}");
        assert!(
            message.contains("\"14 days\" is not a duration"),
            "{message}"
        );
        let text = HEAD.to_string() + &stream("testing", "on-missed = \"retry\"\n");
        let message = load(&text).expect_err("must fail").to_string();
        assert!(message.contains("stream[0].on-missed"), "{message}");
    }

    #[test]
    fn a_soak_that_does_not_parse_is_named_at_its_place() {
        let text = HEAD.to_string()
            + &stream("testing", "")
            + &stream(
                "stable",
                "promote-from = { stream = \"testing\", soak = \"two weeks\" }\n",
            );
        let message = load(&text).expect_err("must fail").to_string();
        assert!(message.contains("slipway.toml:16:"), "{message}");
        assert!(message.contains("stream[1].promote-from.soak"), "{message}");
        assert!(
            message.contains("\"two weeks\" is not a duration"),
            "{message}"
        );
    }

    #[test]
    fn promotion_from_an_unknown_stream_or_itself_is_refused() {
        let text = HEAD.to_string()
            + &stream("testing", "")
            + &stream(
                "stable",
                "promote-from = { stream = \"tseting\", soak = \"14d\" }\n",
            );
        let message = load(&text).expect_err("must fail").to_string();
        assert!(
            message.contains(
                "slipway.toml:16:1: field `stream[1].promote-from`: no stream \"tseting\""
            ),
            "{message}"
        );
        assert!(
            message.contains("known streams: testing, stable"),
            "{message}"
        );
        let text = HEAD.to_string()
            + &stream(
                "testing",
                "promote-from = { stream = \"testing\", soak = \"14d\" }\n",
            );
        let message = load(&text).expect_err("must fail").to_string();
        assert!(
            message.contains("slipway.toml:11:1: field `stream[0].promote-from`"),
            "{message}"
        );
        assert!(message.contains("promotes from itself"), "{message}");
    }

    #[test]
    fn the_example_releases_on_pass_and_its_commented_cadences_load() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/debian-cloud/slipway.toml");
        let config = Config::load(&example).expect("the example loads");
        assert_eq!(config.streams.len(), 1);
        assert_eq!(config.streams[0].release_policy(), StreamPolicy::default());

        let text = std::fs::read_to_string(&example).expect("read");
        let mut in_stable = false;
        let uncommented: String = text
            .lines()
            .map(|line| {
                in_stable |= line.starts_with("# [[stream]]");
                let wanted = in_stable
                    || line.starts_with("# cadence = { every")
                    || line.starts_with("# on-missed");
                match line.strip_prefix("# ") {
                    Some(rest) if wanted => format!("{rest}\n"),
                    _ => format!("{line}\n"),
                }
            })
            .collect();
        let config = load(&uncommented).expect("the commented keys load");
        assert!(matches!(config.streams[0].cadence, Cadence::Every(_)));
        assert!(matches!(config.streams[1].cadence, Cadence::Cron(_)));
        assert_eq!(
            config.streams[1]
                .promote_from
                .as_ref()
                .map(|p| p.stream.as_str()),
            Some("bookworm-cloud")
        );
    }

    #[test]
    fn promotion_cycles_are_named() {
        let from = |s: &str| format!("promote-from = {{ stream = \"{s}\", soak = \"1d\" }}\n");
        let text = HEAD.to_string() + &stream("a", &from("b")) + &stream("b", &from("a"));
        let message = load(&text).expect_err("must fail").to_string();
        assert!(
            message.contains(
                "slipway.toml:11:1: field `stream[0].promote-from`: promotion cycle a -> b -> a"
            ),
            "{message}"
        );
        let text = HEAD.to_string()
            + &stream("head", &from("a"))
            + &stream("a", &from("b"))
            + &stream("b", &from("c"))
            + &stream("c", &from("a"));
        let message = load(&text).expect_err("must fail").to_string();
        assert!(
            message.contains("field `stream[1].promote-from`: promotion cycle a -> b -> c -> a"),
            "{message}"
        );
        let text = HEAD.to_string()
            + &stream("a", "")
            + &stream("b", &from("a"))
            + &stream("c", &from("b"));
        load(&text).expect("a chain without a cycle is fine");
    }
}

#[cfg(test)]
mod tracker_tests {
    use super::*;

    const BASE: &str = "[signing]\nkey = \"k.asc\"\n[gate.g]\nrequired = [\"boot\"]\n\
                        [[stream]]\nname = \"cloud\"\nrecipe = \"cloud.toml\"\ngate = \"g\"\n";

    fn load(tracker: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, format!("{BASE}{tracker}")).expect("write");
        Config::load(&path)
    }

    #[test]
    fn the_embedded_tracker_is_the_default() {
        let config = load("").expect("valid");
        assert_eq!(config.tracker.kind, TrackerKind::Embedded);
        assert_eq!(config.tracker.timeout_secs, 30);
    }

    #[test]
    fn a_gitlab_tracker_loads() {
        let config = load(
            "[tracker]\nkind = \"gitlab\"\nurl = \"https://gitlab.example.org\"\n\
             project = \"releng/images\"\ntoken-env = \"SLIPWAY_GITLAB_TOKEN\"\n\
             labels = [\"slipway\", \"incident\"]\n",
        )
        .expect("valid");
        let tracker = &config.tracker;
        assert_eq!(tracker.kind, TrackerKind::Gitlab);
        assert_eq!(tracker.project.as_deref(), Some("releng/images"));
        assert_eq!(tracker.token_env.as_deref(), Some("SLIPWAY_GITLAB_TOKEN"));
        assert_eq!(tracker.labels, ["slipway", "incident"]);
    }

    #[test]
    fn a_gitlab_tracker_without_a_token_variable_is_refused_naming_the_field() {
        let message = load(
            "[tracker]\nkind = \"gitlab\"\nurl = \"https://gitlab.example.org\"\nproject = \"7\"\n",
        )
        .expect_err("must fail")
        .to_string();
        assert!(
            message.contains("slipway.toml:9:1: field `tracker.token-env`"),
            "{message}"
        );
        let message = load(
            "[tracker]\nkind = \"gitlab\"\nurl = \"https://gitlab.example.org\"\nproject = \"7\"\n\
             token-env = \"glpat-abc.def\"\n",
        )
        .expect_err("must fail")
        .to_string();
        assert!(
            message.contains("slipway.toml:13:1: field `tracker.token-env`"),
            "{message}"
        );
        assert!(
            message.contains("not an environment variable name"),
            "{message}"
        );
    }

    #[test]
    fn a_gitlab_tracker_needs_a_url_and_a_project() {
        let message = load("[tracker]\nkind = \"gitlab\"\nproject = \"7\"\ntoken-env = \"T\"\n")
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("field `tracker.url`"), "{message}");
        let message = load(
            "[tracker]\nkind = \"gitlab\"\nurl = \"gitlab.example.org\"\nproject = \"7\"\n\
             token-env = \"T\"\n",
        )
        .expect_err("must fail")
        .to_string();
        assert!(
            message.contains("slipway.toml:11:1: field `tracker.url`: must start with"),
            "{message}"
        );
        let message =
            load("[tracker]\nkind = \"gitlab\"\nurl = \"https://g\"\ntoken-env = \"T\"\n")
                .expect_err("must fail")
                .to_string();
        assert!(message.contains("field `tracker.project`"), "{message}");
    }

    #[test]
    fn unknown_kinds_and_settings_without_a_tracker_are_refused() {
        let message = load("[tracker]\nkind = \"bugzilla\"\n")
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("slipway.toml:10:8"), "{message}");
        assert!(
            message.contains("`embedded`, `gitlab`") || message.contains("gitlab"),
            "{message}"
        );
        let message = load("[tracker]\nurl = \"https://gitlab.example.org\"\n")
            .expect_err("must fail")
            .to_string();
        assert!(
            message.contains("field `tracker.url`: is only used"),
            "{message}"
        );
    }
}

#[cfg(test)]
mod announce_tests {
    use super::*;

    const BASE: &str = "[signing]\nkey = \"k.asc\"\n[gate.g]\nrequired = [\"boot\"]\n\
                        [[stream]]\nname = \"cloud\"\nrecipe = \"cloud.toml\"\ngate = \"g\"\n";

    fn load(extra: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, format!("{BASE}{extra}")).expect("write");
        Config::load(&path)
    }

    #[test]
    fn without_an_announce_table_announcements_go_to_the_outbox_in_the_state_dir() {
        let config = load("").expect("valid");
        assert!(config.announce.smtp.is_none());
        assert_eq!(config.outbox_dir(), config.state_dir.join("outbox"));
        assert_eq!(config.announce.recipients, ["announce@localhost"]);
    }

    #[test]
    fn smtp_and_outbox_settings_load() {
        let config = load(
            "[announce]\nfrom = \"Release Team <releng@example.org>\"\n\
             recipients = [\"cloud-announce@lists.example.org\", \"ops@example.org\"]\n\
             outbox-dir = \"mail\"\n\
             smtp = { host = \"smtp.example.org\", port = 2525, starttls = false, \
             username = \"releng\", password-env = \"SLIPWAY_SMTP_PASSWORD\" }\n",
        )
        .expect("valid");
        let smtp = config.announce.smtp.as_ref().expect("smtp");
        assert_eq!(smtp.host, "smtp.example.org");
        assert_eq!(smtp.port(), 2525);
        assert!(!smtp.starttls);
        assert_eq!(smtp.password_env.as_deref(), Some("SLIPWAY_SMTP_PASSWORD"));
        assert_eq!(smtp.timeout_secs, 30);
        assert_eq!(config.outbox_dir(), config.base_dir.join("mail"));
        assert_eq!(config.announce.mail_settings().recipients.len(), 2);
    }

    #[test]
    fn a_bad_address_is_refused_naming_the_field_and_line() {
        let message = load("[announce]\nfrom = \"releng@example.org\"\nrecipients = [\"ok@example.org\", \"not-an-address\"]\n")
            .expect_err("must fail")
            .to_string();
        assert!(
            message.contains("slipway.toml:11:1: field `announce.recipients[1]`"),
            "{message}"
        );
        assert!(
            message.contains("\"not-an-address\" is not a mail address"),
            "{message}"
        );
        let message = load("[announce]\nfrom = \"Release Team releng@example.org\"\n")
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("field `announce.from`"), "{message}");
    }

    #[test]
    fn smtp_mistakes_are_named() {
        let message = load("[announce]\nrecipients = []\n")
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("announce.recipients"), "{message}");
        let message = load("[announce.smtp]\nhost = \"mail\"\nusername = \"releng\"\n")
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("announce.smtp.password-env"), "{message}");
        let message = load("[announce.smtp]\nhost = \"mail\"\npasword-env = \"X\"\n")
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("pasword-env"), "{message}");
        let message = load("[announce.smtp]\nhost = \"\"\n")
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("announce.smtp.host"), "{message}");
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    const BASE: &str = r#"
[signing]
key = "k.asc"

[gate.strict]
required = ["boot"]

[[gate.strict.require]]
testcase = "ssh"
scenario = "qcow2.x86_64.uefi"
min-count = 2
valid-since = 2026-01-01
valid-until = "2026-06-01T12:00:00Z"

[[stream]]
name = "cloud"
recipe = "cloud.toml"
gate = "strict"
policy = "policies/extra.toml"
"#;

    #[test]
    fn short_and_table_requirements_combine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::load(&write(dir.path(), "slipway.toml", BASE)).expect("valid");
        let reqs = config.gates["strict"].requirements();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0], Requirement::testcase("boot"));
        assert_eq!(reqs[1].scenario.as_deref(), Some("qcow2.x86_64.uefi"));
        assert_eq!(reqs[1].min_count, 2);
        assert_eq!(
            reqs[1].valid_since,
            Some("2026-01-01T00:00:00Z".parse().expect("ts"))
        );
        assert_eq!(
            reqs[1].valid_until,
            Some("2026-06-01T12:00:00Z".parse().expect("ts"))
        );
        assert_eq!(
            config.streams[0].policy.as_deref(),
            Some(dir.path().join("policies/extra.toml").as_path())
        );
    }

    #[test]
    fn a_bad_min_count_is_refused_at_its_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "slipway.toml",
            &BASE.replace("min-count = 2", "min-count = 0"),
        );
        let message = Config::load(&path).expect_err("must fail").to_string();
        assert!(message.contains("slipway.toml:11:13"), "{message}");
        assert!(message.contains("min-count"), "{message}");
    }

    #[test]
    fn a_bad_time_or_reversed_window_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "slipway.toml",
            &BASE.replace("valid-since = 2026-01-01", "valid-since = \"soon\""),
        );
        let message = Config::load(&path).expect_err("must fail").to_string();
        assert!(message.contains("slipway.toml:12:"), "{message}");
        assert!(message.contains("\"soon\" is not a time"), "{message}");
        let path = write(
            dir.path(),
            "slipway.toml",
            &BASE.replace("valid-since = 2026-01-01", "valid-since = 2027-01-01"),
        );
        let message = Config::load(&path).expect_err("must fail").to_string();
        assert!(
            message.contains("must be before `valid-until`"),
            "{message}"
        );
        assert!(message.contains("gate.strict.require[0]"), "{message}");
    }

    #[test]
    fn a_gate_that_requires_nothing_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text =
            "[signing]\nkey = \"k\"\n[gate.empty]\nrequired = []\n[[stream]]\nname = \"c\"\n\
                    recipe = \"c.toml\"\ngate = \"empty\"\n";
        let message = Config::load(&write(dir.path(), "slipway.toml", text))
            .expect_err("must fail")
            .to_string();
        assert!(
            message.contains("slipway.toml:3:1: field `gate.empty`"),
            "{message}"
        );
    }

    #[test]
    fn a_stream_needs_a_gate_or_a_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = BASE
            .replace("gate = \"strict\"\n", "")
            .replace("policy = \"policies/extra.toml\"\n", "");
        let message = Config::load(&write(dir.path(), "slipway.toml", &text))
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("names no gate"), "{message}");
    }

    #[test]
    fn policy_files_load_and_name_their_mistakes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = write(
            dir.path(),
            "good.toml",
            "required = [\"boot\"]\n[[require]]\ntestcase = \"ssh\"\n",
        );
        assert_eq!(
            GateConfig::load(&good).expect("valid").requirements().len(),
            2
        );
        let bad = write(
            dir.path(),
            "bad.toml",
            "required = [\"boot\"]\n[[require]]\ntestcase = \"ssh\"\nmin-cont = 2\n",
        );
        let message = GateConfig::load(&bad).expect_err("must fail").to_string();
        assert!(message.contains("bad.toml:4:1"), "{message}");
        assert!(message.contains("min-cont"), "{message}");
        let empty = write(dir.path(), "empty.toml", "# nothing\n");
        let message = GateConfig::load(&empty).expect_err("must fail").to_string();
        assert!(message.contains("requires nothing"), "{message}");
    }
}
