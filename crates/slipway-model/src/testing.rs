//! Test plans and the denylist: which tests a stream runs, and which failures are known and snoozed.
//!
//! Both speak in testcase patterns: a glob over testcase names (`boot.*`, `*.grown`, `packages.match-lock`;
//! `*` matches any run of characters, `?` one character) or `tag:<name>`, which matches every test that
//! carries the tag.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// The name of the plan that runs every built-in test; it always exists.
pub const DEFAULT_PLAN: &str = "default";

/// A test plan from `[plan.<name>]`: which tests it takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlanConfig {
    /// Patterns of the tests it takes; empty takes nothing.
    #[serde(default)]
    pub include: Vec<String>,
    /// Patterns of tests it leaves out even when included.
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl PlanConfig {
    /// Whether the plan takes a test of this name and these tags.
    pub fn selects(&self, testcase: &str, tags: &[String]) -> bool {
        let hit = |pattern: &String| pattern_matches(pattern, testcase, tags);
        self.include.iter().any(hit) && !self.exclude.iter().any(hit)
    }
}

/// One `[[denylist]]` entry: a known failure. A denylisted test still runs; while the entry is active
/// its failure or error is recorded as SKIPPED with the reason and tracker in the note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DenylistEntry {
    /// The testcases it covers (a glob or `tag:<name>`).
    pub pattern: String,
    /// Why the failure is expected.
    pub reason: String,
    /// Where the failure is tracked (a URL).
    #[serde(default)]
    pub tracker: String,
    /// The last day (UTC, `YYYY-MM-DD`) the entry applies; after it the test counts again.
    #[serde(deserialize_with = "date_or_string")]
    pub snooze_until: Date,
    /// The streams it applies to; empty means all.
    #[serde(default)]
    pub streams: Vec<String>,
    /// The architectures it applies to (`x86_64` or Debian's `amd64` both name the same); empty means all.
    #[serde(default)]
    pub arches: Vec<String>,
}

impl DenylistEntry {
    /// Whether the entry covers this testcase in this stream on this architecture on `today`.
    pub fn applies(
        &self,
        testcase: &str,
        tags: &[String],
        stream: &str,
        arch: &str,
        today: Date,
    ) -> bool {
        today <= self.snooze_until
            && pattern_matches(&self.pattern, testcase, tags)
            && (self.streams.is_empty() || self.streams.iter().any(|s| s == stream))
            && (self.arches.is_empty()
                || self
                    .arches
                    .iter()
                    .any(|a| canonical_arch(a) == canonical_arch(arch)))
    }

    /// The note a skipped result carries: why, where it is tracked, until when.
    pub fn note(&self) -> String {
        let mut note = format!("denylisted until {}: {}", self.snooze_until, self.reason);
        if !self.tracker.is_empty() {
            note.push_str(&format!(" ({})", self.tracker));
        }
        note
    }
}

/// A date written as a TOML date (`2026-12-01`) or as a string (`"2026-12-01"`).
fn date_or_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Toml(toml::value::Datetime),
    }
    let text = match Written::deserialize(deserializer)? {
        Written::Text(text) => text,
        Written::Toml(datetime) => datetime.to_string(),
    };
    text.parse::<Date>()
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a date such as 2026-12-01")))
}

/// The kernel's name of an architecture (`x86_64`) for Debian's (`amd64`); other names pass through.
pub fn canonical_arch(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "i386" => "i686",
        other => other,
    }
}

/// Whether a testcase pattern (a glob or `tag:<name>`) matches a test.
pub fn pattern_matches(pattern: &str, testcase: &str, tags: &[String]) -> bool {
    match pattern.strip_prefix("tag:") {
        Some(tag) => tags.iter().any(|t| t == tag),
        None => glob_matches(pattern, testcase),
    }
}

/// A glob with `*` (any run of characters) and `?` (one character); everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point: linear in practice, no recursion on hostile patterns.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs_match_names() {
        assert!(glob_matches("boot.*", "boot.multi-user"));
        assert!(!glob_matches("boot.*", "cloud-init.finished"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*.grown", "rootfs.grown"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "abbc"));
        assert!(glob_matches("*a*b*", "xxaxxbxx"));
        assert!(!glob_matches("*a*b", "xxaxxbxx"));
        assert!(glob_matches("sshd.active", "sshd.active"));
        assert!(!glob_matches("sshd.active", "sshd.activeX"));
    }

    #[test]
    fn tag_patterns_match_tags() {
        assert!(pattern_matches("tag:smoke", "x", &tags(&["slow", "smoke"])));
        assert!(!pattern_matches("tag:smoke", "smoke", &[]));
    }

    #[test]
    fn plans_include_then_exclude() {
        let plan = PlanConfig {
            include: vec!["boot.*".into(), "tag:smoke".into()],
            exclude: vec!["boot.slow".into()],
        };
        assert!(plan.selects("boot.multi-user", &[]));
        assert!(!plan.selects("boot.slow", &tags(&["smoke"])));
        assert!(plan.selects("net.up", &tags(&["smoke"])));
        assert!(!plan.selects("net.up", &[]));
        assert!(!PlanConfig::default().selects("boot.multi-user", &[]));
    }

    #[test]
    fn denylist_entries_apply_by_name_stream_arch_and_date() {
        let entry = DenylistEntry {
            pattern: "time.*".into(),
            reason: "no NTP in the lab".into(),
            tracker: "https://bugs.example.org/1".into(),
            snooze_until: Date::constant(2026, 12, 1),
            streams: vec!["cloud".into()],
            arches: vec!["amd64".into()],
        };
        let day = Date::constant(2026, 11, 21);
        assert!(entry.applies("time.synchronized", &[], "cloud", "x86_64", day));
        assert!(entry.applies(
            "time.synchronized",
            &[],
            "cloud",
            "x86_64",
            Date::constant(2026, 12, 1)
        ));
        assert!(!entry.applies(
            "time.synchronized",
            &[],
            "cloud",
            "x86_64",
            Date::constant(2026, 12, 2)
        ));
        assert!(!entry.applies("time.synchronized", &[], "edge", "x86_64", day));
        assert!(!entry.applies("time.synchronized", &[], "cloud", "aarch64", day));
        assert!(!entry.applies("boot.multi-user", &[], "cloud", "x86_64", day));
        let open = DenylistEntry {
            streams: vec![],
            arches: vec![],
            ..entry.clone()
        };
        assert!(open.applies("time.synchronized", &[], "edge", "aarch64", day));
        assert_eq!(
            entry.note(),
            "denylisted until 2026-12-01: no NTP in the lab (https://bugs.example.org/1)"
        );
    }
}
