//! Releases and their date versions.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ComposeId;

/// A release version, `YYYYMMDD.N`: the UTC date of the release and its number on that day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version {
    date: String,
    n: u32,
}

/// A string that is not a `YYYYMMDD.N` version.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a release version of the form YYYYMMDD.N")]
pub struct VersionError(pub String);

impl Version {
    /// The `n`th version on the UTC day of `at`.
    pub fn new(at: Timestamp, n: u32) -> Self {
        Self {
            date: at.strftime("%Y%m%d").to_string(),
            n,
        }
    }

    /// The `YYYYMMDD` part.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// The `YYYY` part: the releases index is split by it.
    pub fn year(&self) -> &str {
        &self.date[..4]
    }

    /// The `YYYYMM` part: the current releases index holds the newest month's releases.
    pub fn month(&self) -> &str {
        &self.date[..6]
    }

    /// The number within the day.
    pub fn n(&self) -> u32 {
        self.n
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError(s.to_string());
        let (date, n) = s.split_once('.').ok_or_else(err)?;
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let n = n.parse().map_err(|_| err())?;
        Ok(Self {
            date: date.to_string(),
            n,
        })
    }
}

impl TryFrom<String> for Version {
    type Error = VersionError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Version> for String {
    fn from(v: Version) -> Self {
        v.to_string()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.date, self.n)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.date, self.n).cmp(&(&other.date, other.n))
    }
}

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Chosen, with its version; the public tree is being written.
    Pending,
    /// In the public tree and the newest of its stream.
    Published,
    /// In the public tree, with a newer release after it.
    Superseded,
    /// Withdrawn as bad.
    Revoked,
    /// Past the stream's retention (`keep-releases`): withdrawn from the tree and from the stream, kept in
    /// the releases index; its compose may have been deleted.
    Expired,
}

impl ReleaseState {
    /// Every state but [`ReleaseState::Revoked`]: the releases a stream still counts as made.
    pub const NOT_REVOKED: [ReleaseState; 4] = [
        Self::Pending,
        Self::Published,
        Self::Superseded,
        Self::Expired,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Published => "published",
            Self::Superseded => "superseded",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

impl FromStr for ReleaseState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "published" => Self::Published,
            "superseded" => Self::Superseded,
            "revoked" => Self::Revoked,
            "expired" => Self::Expired,
            other => return Err(format!("unknown release state {other:?}")),
        })
    }
}

/// A compose published in a stream under a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The stream.
    pub stream: String,
    /// The version.
    pub version: Version,
    /// The compose released.
    pub compose: ComposeId,
    /// Its state.
    pub state: ReleaseState,
    /// When the release was made.
    pub created_at: Timestamp,
    /// When it was first published.
    pub published_at: Option<Timestamp>,
    /// Why, by whom and when it was revoked, while it is revoked. An unrevoked release has none here; the
    /// store keeps every revocation and unrevocation in its history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationNote>,
}

/// The record of a release's revocation: the reason people are told, who decided it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationNote {
    /// Why the release must not be used.
    pub reason: String,
    /// Who revoked it.
    pub author: String,
    /// When.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_print_and_order() {
        let a: Version = "20261121.0".parse().expect("valid");
        let b: Version = "20261121.10".parse().expect("valid");
        let c: Version = "20261122.0".parse().expect("valid");
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "20261121.10");
        assert!("2026112.0".parse::<Version>().is_err());
        assert!("20261121".parse::<Version>().is_err());
        let at: Timestamp = "2026-11-21T23:59:00Z".parse().expect("timestamp");
        assert_eq!(Version::new(at, 3).to_string(), "20261121.3");
    }

    #[test]
    fn releases_written_before_revocation_notes_still_read() {
        let old = r#"{"stream":"s","version":"20261121.0","compose":"c","state":"published",
            "created_at":"2026-11-21T00:00:00Z","published_at":null}"#;
        let release: Release = serde_json::from_str(old).expect("old release JSON");
        assert_eq!(release.revocation, None);
        let text = serde_json::to_string(&release).expect("serialize");
        assert!(!text.contains("revocation"), "{text}");
        let revoked = Release {
            state: ReleaseState::Revoked,
            revocation: Some(RevocationNote {
                reason: "boots to a black screen".into(),
                author: "alice".into(),
                at: "2026-11-22T00:00:00Z".parse().expect("timestamp"),
            }),
            ..release
        };
        let back: Release =
            serde_json::from_str(&serde_json::to_string(&revoked).expect("serialize"))
                .expect("read");
        assert_eq!(back, revoked);
    }
}
