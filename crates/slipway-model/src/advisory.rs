//! Security advisories: what was fixed in which source package version, and how urgent it is.
//!
//! Advisories come from local files (the format below, documented in `docs/advisories.md`) and from
//! Debian's security tracker. Matched against a compose's package diff they say which upgrades are
//! security fixes, which the release notes list and which can make a release urgent.
//!
//! ```toml
//! [[advisory]]
//! id = "DSA-5555-1"
//! severity = "high"
//! summary = "openssl: denial of service"
//! url = "https://www.debian.org/security/2023/dsa-5555"
//!
//! [[advisory.package]]
//! source = "openssl"
//! fixed-version = "3.0.11-1~deb12u2"
//! release = "bookworm"
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::toml_file::{read_toml, ConfigError};

/// How urgent a security fix is, from least to most: `unimportant < low < medium < high < critical`.
///
/// Names are read case-insensitively. Besides the five names, the words other sources use are accepted:
/// Debian's tracker urgencies (`not yet assigned` is [`Severity::Medium`]: the fix is real but nobody has
/// rated it, so it counts as the middle level, below the default threshold `high`; `end-of-life` is
/// [`Severity::Unimportant`]; a trailing `*` or `**`, which the tracker adds to some urgencies, is
/// ignored), and Red Hat's (`negligible`, `moderate`, `important`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Severity {
    /// Not worth a fix of its own (Debian's `unimportant`).
    Unimportant,
    /// Low.
    Low,
    /// Medium; also what an unrated fix counts as.
    Medium,
    /// High.
    High,
    /// Critical: the most urgent.
    Critical,
}

/// A word that names no severity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a severity: use unimportant, low, medium, high or critical")]
pub struct SeverityError(pub String);

impl Severity {
    /// Every severity, least urgent first.
    pub const ALL: [Severity; 5] = [
        Self::Unimportant,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    /// The severity's name as written and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unimportant => "unimportant",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = SeverityError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let word = text
            .trim()
            .trim_end_matches('*')
            .trim()
            .to_ascii_lowercase();
        Ok(match word.as_str() {
            "unimportant" | "negligible" | "end-of-life" => Self::Unimportant,
            "low" => Self::Low,
            "medium" | "moderate" | "not yet assigned" => Self::Medium,
            "high" | "important" => Self::High,
            "critical" => Self::Critical,
            _ => return Err(SeverityError(text.to_string())),
        })
    }
}

impl TryFrom<String> for Severity {
    type Error = SeverityError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Severity> for String {
    fn from(severity: Severity) -> String {
        severity.as_str().to_string()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream's `security-threshold`: the least severity of a security upgrade that releases a passing
/// compose at once, or `none` to never release out of cycle automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecurityThreshold {
    /// Security upgrades never release automatically.
    Never,
    /// Upgrades fixing an advisory of this severity or above do.
    AtLeast(Severity),
}

impl SecurityThreshold {
    /// The threshold as a severity; `None` for `none`.
    pub fn severity(self) -> Option<Severity> {
        match self {
            Self::Never => None,
            Self::AtLeast(severity) => Some(severity),
        }
    }

    /// Whether an advisory of `severity` reaches the threshold.
    pub fn reached_by(self, severity: Severity) -> bool {
        self.severity().is_some_and(|least| severity >= least)
    }
}

impl Default for SecurityThreshold {
    /// `high`: urgent fixes go out at once, routine ones wait for the cadence.
    fn default() -> Self {
        Self::AtLeast(Severity::High)
    }
}

impl TryFrom<String> for SecurityThreshold {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("none") {
            return Ok(Self::Never);
        }
        text.parse().map(Self::AtLeast).map_err(|_| {
            format!(
                "{text:?} is not a security threshold: use unimportant, low, medium, high, critical or none"
            )
        })
    }
}

impl From<SecurityThreshold> for String {
    fn from(threshold: SecurityThreshold) -> String {
        match threshold {
            SecurityThreshold::Never => "none".to_string(),
            SecurityThreshold::AtLeast(severity) => severity.to_string(),
        }
    }
}

/// One security advisory: a DSA, a CVE, or a site's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Advisory {
    /// Its identifier: `DSA-5555-1`, `CVE-2024-1234`, or any name a site gives its own.
    pub id: String,
    /// How urgent its fix is.
    pub severity: Severity,
    /// One line saying what it is about.
    #[serde(default)]
    pub summary: String,
    /// Where to read more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The source packages it fixes and the version that fixes each.
    #[serde(rename = "package")]
    pub packages: Vec<AdvisoryPackage>,
}

/// The fix of an advisory in one source package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AdvisoryPackage {
    /// The source package's name.
    pub source: String,
    /// The first version with the fix; earlier versions are affected.
    pub fixed_version: String,
    /// The distribution release (`bookworm`) the fix is for; `None` means every release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

impl Advisory {
    /// The advisory narrowed to the fixes that apply to a release: those for it and those for every
    /// release. `None` when nothing is left.
    pub fn for_release(&self, release: &str) -> Option<Advisory> {
        let packages: Vec<AdvisoryPackage> = self
            .packages
            .iter()
            .filter(|p| p.release.as_deref().is_none_or(|r| r == release))
            .cloned()
            .collect();
        (!packages.is_empty()).then(|| Advisory {
            packages,
            ..self.clone()
        })
    }
}

/// An advisory whose fix a compose brings: one source package upgraded from an affected version to a
/// fixed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedAdvisory {
    /// The advisory's identifier.
    pub id: String,
    /// Its severity.
    pub severity: Severity,
    /// Its summary.
    pub summary: String,
    /// Where to read more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The source package fixed.
    pub source: String,
    /// The version the advisory names as fixed.
    pub fixed_version: String,
    /// The installed version before (affected).
    pub old_version: String,
    /// The installed version now (fixed).
    pub new_version: String,
    /// The suite the new version came from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Whether the new version came from a security suite.
    pub security: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct AdvisoryFile {
    #[serde(default)]
    advisory: Vec<Advisory>,
}

/// Reads a local advisory file (`[[advisory]]` tables, see the module documentation). Errors name the
/// file, line, column and field: a missing or misspelt key, a severity that is not one, an advisory without
/// packages, an empty source or fixed version, an id listed twice.
pub fn load_advisory_file(path: &Path) -> Result<Vec<Advisory>, ConfigError> {
    let (file, text): (AdvisoryFile, String) = read_toml(path)?;
    let mut ids = BTreeSet::new();
    let mut package_index = 0;
    for (i, advisory) in file.advisory.iter().enumerate() {
        if advisory.id.trim().is_empty() {
            return Err(ConfigError::at_key(
                path,
                &text,
                "id",
                &format!("advisory[{i}].id"),
                "an empty advisory id",
            ));
        }
        if !ids.insert(advisory.id.as_str()) {
            return Err(ConfigError::at_key(
                path,
                &text,
                "id",
                &format!("advisory[{i}].id"),
                format!("advisory {:?} is listed twice", advisory.id),
            ));
        }
        if advisory.packages.is_empty() {
            return Err(ConfigError::at_key(
                path,
                &text,
                "id",
                &format!("advisory[{i}].package"),
                format!(
                    "advisory {:?} names no package: add [[advisory.package]] with source and fixed-version",
                    advisory.id
                ),
            ));
        }
        for (j, package) in advisory.packages.iter().enumerate() {
            let field = |name: &str| format!("advisory[{i}].package[{j}].{name}");
            if package.source.trim().is_empty() {
                return Err(ConfigError::at_occurrence(
                    path,
                    &text,
                    "source",
                    package_index,
                    &field("source"),
                    "an empty source package name",
                ));
            }
            let fixed = package.fixed_version.trim();
            if fixed.is_empty() || fixed.chars().any(char::is_whitespace) {
                return Err(ConfigError::at_occurrence(
                    path,
                    &text,
                    "fixed-version",
                    package_index,
                    &field("fixed-version"),
                    format!("{:?} is not a package version", package.fixed_version),
                ));
            }
            package_index += 1;
        }
    }
    Ok(file.advisory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse_any_case() {
        assert!(Severity::Unimportant < Severity::Low);
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
        assert!(Severity::High < Severity::Critical);
        for severity in Severity::ALL {
            assert_eq!(severity.as_str().parse::<Severity>(), Ok(severity));
            assert_eq!(
                severity.as_str().to_uppercase().parse::<Severity>(),
                Ok(severity)
            );
        }
        assert_eq!("Not Yet Assigned".parse(), Ok(Severity::Medium));
        assert_eq!("low**".parse(), Ok(Severity::Low));
        assert_eq!("end-of-life".parse(), Ok(Severity::Unimportant));
        assert_eq!("Important".parse(), Ok(Severity::High));
        assert!("urgent".parse::<Severity>().is_err());
    }

    #[test]
    fn thresholds_parse_and_compare() {
        let high = SecurityThreshold::try_from("HIGH".to_string()).expect("valid");
        assert_eq!(high, SecurityThreshold::default());
        assert!(high.reached_by(Severity::Critical));
        assert!(high.reached_by(Severity::High));
        assert!(!high.reached_by(Severity::Medium));
        let never = SecurityThreshold::try_from("none".to_string()).expect("valid");
        assert!(!never.reached_by(Severity::Critical));
        assert_eq!(String::from(never), "none");
        assert!(SecurityThreshold::try_from("soon".to_string()).is_err());
    }

    #[test]
    fn narrowing_to_a_release_keeps_general_and_matching_fixes() {
        let advisory = Advisory {
            id: "DSA-1".into(),
            severity: Severity::High,
            summary: String::new(),
            url: None,
            packages: vec![
                AdvisoryPackage {
                    source: "a".into(),
                    fixed_version: "1".into(),
                    release: Some("bookworm".into()),
                },
                AdvisoryPackage {
                    source: "b".into(),
                    fixed_version: "1".into(),
                    release: None,
                },
                AdvisoryPackage {
                    source: "c".into(),
                    fixed_version: "1".into(),
                    release: Some("trixie".into()),
                },
            ],
        };
        let sources = |a: Option<Advisory>| -> Vec<String> {
            a.map(|a| a.packages.into_iter().map(|p| p.source).collect())
                .unwrap_or_default()
        };
        assert_eq!(sources(advisory.for_release("bookworm")), ["a", "b"]);
        assert_eq!(sources(advisory.for_release("trixie")), ["b", "c"]);
        let only_trixie = Advisory {
            packages: vec![advisory.packages[2].clone()],
            ..advisory.clone()
        };
        assert_eq!(only_trixie.for_release("bookworm"), None);
    }

    fn load(text: &str) -> Result<Vec<Advisory>, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("advisories.toml");
        std::fs::write(&path, text).expect("write");
        load_advisory_file(&path).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[[advisory]]
id = "DSA-5555-1"
severity = "High"
summary = "openssl: denial of service"
url = "https://www.debian.org/security/2023/dsa-5555"

[[advisory.package]]
source = "openssl"
fixed-version = "3.0.11-1~deb12u2"
release = "bookworm"

[[advisory]]
id = "SITE-7"
severity = "low"

[[advisory.package]]
source = "curl"
fixed-version = "7.88.1-10+deb12u5"
"#;

    #[test]
    fn a_file_loads() {
        let advisories = load(GOOD).expect("valid");
        assert_eq!(advisories.len(), 2);
        assert_eq!(advisories[0].severity, Severity::High);
        assert_eq!(
            advisories[0].packages[0],
            AdvisoryPackage {
                source: "openssl".into(),
                fixed_version: "3.0.11-1~deb12u2".into(),
                release: Some("bookworm".into()),
            }
        );
        assert_eq!(advisories[1].url, None);
        assert_eq!(advisories[1].packages[0].release, None);
    }

    #[test]
    fn mistakes_name_the_line_and_field() {
        let message = load(&GOOD.replace("\"High\"", "\"urgent\"")).expect_err("bad severity");
        assert!(
            message.contains("advisories.toml:4:12: field `advisory[0].severity`"),
            "{message}"
        );
        assert!(
            message.contains("\"urgent\" is not a severity"),
            "{message}"
        );

        let message = load(&GOOD.replace("fixed-version = \"7", "fixed-versoin = \"7"))
            .expect_err("misspelt key");
        assert!(message.contains("advisories.toml:19:1"), "{message}");
        assert!(message.contains("fixed-versoin"), "{message}");

        let message =
            load(&GOOD.replace("source = \"curl\"", "source = \" \"")).expect_err("empty source");
        assert!(
            message.contains("advisories.toml:18:1: field `advisory[1].package[0].source`"),
            "{message}"
        );

        let message = load(&GOOD.replace("SITE-7", "DSA-5555-1")).expect_err("duplicate");
        assert!(
            message.contains("advisories.toml:14:1: field `advisory[1].id`"),
            "{message}"
        );

        let text = "[[advisory]]\nid = \"X-1\"\nseverity = \"low\"\npackage = []\n";
        let message = load(text).expect_err("no packages");
        assert!(
            message.contains("advisories.toml:2:1: field `advisory[0].package`"),
            "{message}"
        );
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/debian-cloud/advisories.toml");
        let advisories = load_advisory_file(&path).expect("the example is valid");
        let ids: Vec<&str> = advisories.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["DSA-5555-1", "EXAMPLE-2026-001"]);
        assert_eq!(advisories[1].severity, Severity::Critical);
    }
}
