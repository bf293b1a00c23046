//! Announcements: what a mailing list is told about a stream, the facts a text is made from, and where it is
//! sent (`[announce]` in the config).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{PkgDiff, Sha256, Version};

/// What an announcement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnnouncementKind {
    /// A release on the stream's cadence.
    Release,
    /// A release was withdrawn as bad.
    Revocation,
    /// A release day passed with no good compose; the stream keeps its previous release.
    Stale,
    /// A stale stream released again.
    Unstale,
    /// The stream reached its end of life.
    Eol,
    /// A release out of cycle, for a security fix.
    Emergency,
}

impl AnnouncementKind {
    /// Every kind, in declaration order.
    pub const ALL: [AnnouncementKind; 6] = [
        Self::Release,
        Self::Revocation,
        Self::Stale,
        Self::Unstale,
        Self::Eol,
        Self::Emergency,
    ];

    /// The kind's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Revocation => "revocation",
            Self::Stale => "stale",
            Self::Unstale => "unstale",
            Self::Eol => "eol",
            Self::Emergency => "emergency",
        }
    }
}

impl fmt::Display for AnnouncementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AnnouncementKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown announcement kind {s:?}"))
    }
}

/// One message for the stream's mailing list, rendered and ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// What it is about.
    pub kind: AnnouncementKind,
    /// The stream it concerns.
    pub stream: String,
    /// The release it concerns, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// The mail's subject, such as `[bookworm-cloud] 20261121.0 released`.
    pub subject: String,
    /// The mail's plain-text body.
    pub body: String,
    /// When it was made.
    pub created_at: Timestamp,
}

/// One file of a release as a reader downloads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadLink {
    /// Where it is served.
    pub url: String,
    /// Its file name.
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, as the signed CHECKSUM lists it.
    pub sha256: Sha256,
}

/// A security advisory a release fixes, as much of it as an announcement names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvisoryRef {
    /// The advisory's id, such as `DSA-5678-1`.
    pub id: String,
    /// Its severity in the source's own words (`critical`, `high`, ...).
    pub severity: String,
    /// The packages it concerns.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Where to read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What a release announcement is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseNotice {
    /// The stream.
    pub stream: String,
    /// The version released.
    pub version: Version,
    /// When it was released.
    pub released_at: Timestamp,
    /// Its image files.
    pub downloads: Vec<DownloadLink>,
    /// Where the signed CHECKSUM of the release is served.
    pub checksum_url: String,
    /// The package changes since the compose before it, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkgdiff: Option<PkgDiff>,
    /// The advisories it fixes.
    #[serde(default)]
    pub advisories: Vec<AdvisoryRef>,
    /// Set for a release out of cycle: why it could not wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_reason: Option<String>,
}

/// What a revocation announcement is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationNotice {
    /// The stream.
    pub stream: String,
    /// The release withdrawn.
    pub version: Version,
    /// Why it was withdrawn.
    pub reason: String,
    /// Who withdrew it.
    pub author: String,
    /// When.
    pub revoked_at: Timestamp,
    /// The release the stream points at now; `None` when no good release is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Version>,
    /// Where the stream's releases are listed (its download page or releases index), when served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_url: Option<String>,
}

/// What a stale (or back-to-fresh) announcement is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleNotice {
    /// The stream.
    pub stream: String,
    /// True when the stream became stale; false when a release ended the stale spell.
    pub stale: bool,
    /// When the stream became stale.
    pub since: Timestamp,
    /// The release users keep (stale) or the release that ended the spell (unstale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Version>,
    /// The incident that tracks why no good compose was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_url: Option<String>,
    /// When the announcement is made (the release day that was missed, or the release that ended it).
    pub at: Timestamp,
}

/// What an end-of-life announcement is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EolNotice {
    /// The stream that ends.
    pub stream: String,
    /// Its last release, if it had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_release: Option<Version>,
    /// The stream users should move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
    /// When it ended.
    pub at: Timestamp,
}

/// The sender and recipients of announcements, as a mailer needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailSettings {
    /// The `From:` mailbox, `Name <addr@domain>` or `addr@domain`.
    pub from: String,
    /// The `To:` mailboxes; at least one.
    pub recipients: Vec<String>,
}

/// `[announce]`: who announcements come from, who they go to, and how they leave.
///
/// Without `smtp`, every announcement is written as an RFC 5322 `.eml` file into `outbox-dir`, which a
/// person or another tool can send on; with it, announcements are sent over SMTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AnnounceConfig {
    /// The sender.
    #[serde(default = "default_from")]
    pub from: String,
    /// The recipients, such as the stream's announce list.
    #[serde(default = "default_recipients")]
    pub recipients: Vec<String>,
    /// The SMTP server; without it, the outbox.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Where `.eml` files are written when there is no SMTP server; defaults to `<state-dir>/outbox`.
    #[serde(default)]
    pub outbox_dir: Option<PathBuf>,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            from: default_from(),
            recipients: default_recipients(),
            smtp: None,
            outbox_dir: None,
        }
    }
}

impl AnnounceConfig {
    /// The sender and recipients.
    pub fn mail_settings(&self) -> MailSettings {
        MailSettings {
            from: self.from.clone(),
            recipients: self.recipients.clone(),
        }
    }
}

/// `[announce.smtp]`: the SMTP server announcements are sent through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's host name or address.
    pub host: String,
    /// Its port; 587 with STARTTLS, 25 without.
    #[serde(default)]
    pub port: Option<u16>,
    /// Upgrade the connection with STARTTLS before anything is sent (and refuse a server that cannot).
    #[serde(default = "default_starttls")]
    pub starttls: bool,
    /// The user name to log in with; without it, no login.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable that holds the password, so no secret sits in the config file.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Seconds a connection or one command may take before the attempt counts as failed.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
}

impl SmtpConfig {
    /// The port to connect to: the configured one, else 587 with STARTTLS and 25 without.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.starttls { 587 } else { 25 })
    }
}

fn default_from() -> String {
    "slipway <slipway@localhost>".into()
}
fn default_recipients() -> Vec<String> {
    vec!["announce@localhost".into()]
}
fn default_starttls() -> bool {
    true
}
fn default_smtp_timeout() -> u64 {
    30
}

/// Checks a mailbox as `From:` and `To:` take it: `addr@domain` or `Display Name <addr@domain>`. The
/// error says what is wrong. Deliberately strict (no comments, no groups, no quoted local parts): an
/// announce list's address never needs them, and a typo is better refused at config load than at the first
/// release.
pub fn check_mailbox(text: &str) -> Result<(), String> {
    let text = text.trim();
    let address = match text.rfind('<') {
        Some(open) => {
            let Some(inner) = text[open + 1..].strip_suffix('>') else {
                return Err(format!(
                    "{text:?} opens `<` but does not end with `>`: write `Name <addr@domain>`"
                ));
            };
            let name = text[..open].trim();
            if name.contains(['<', '>', '\r', '\n']) {
                return Err(format!("{text:?} has a malformed display name"));
            }
            inner
        }
        None => text,
    };
    check_address(address).map_err(|why| format!("{text:?} is not a mail address: {why}"))
}

fn check_address(address: &str) -> Result<(), String> {
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| "it has no `@`".to_string())?;
    const LOCAL_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    if local.is_empty()
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || LOCAL_SPECIALS.contains(c))
    {
        return Err(format!("{local:?} is not a valid local part"));
    }
    let labels_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !labels_ok {
        return Err(format!("{domain:?} is not a valid domain"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in AnnouncementKind::ALL {
            assert_eq!(kind.as_str().parse::<AnnouncementKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                serde_json::json!(kind.as_str())
            );
        }
        assert!("party".parse::<AnnouncementKind>().is_err());
    }

    #[test]
    fn mailboxes_with_and_without_names() {
        for good in [
            "releng@example.org",
            "Release Engineering <releng@example.org>",
            "<announce+cloud@lists.example.org>",
            "a.b-c@localhost",
        ] {
            assert_eq!(check_mailbox(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("releng.example.org", "no `@`"),
            ("releng@", "not a valid domain"),
            ("@example.org", "not a valid local part"),
            ("a..b@example.org", "not a valid local part"),
            ("Name <releng@example.org", "does not end with `>`"),
            ("re leng@example.org", "not a valid local part"),
            ("releng@exa_mple.org", "not a valid domain"),
        ] {
            let err = check_mailbox(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn smtp_port_follows_starttls_unless_given() {
        let smtp = SmtpConfig {
            host: "mail".into(),
            port: None,
            starttls: true,
            username: None,
            password_env: None,
            timeout_secs: 30,
        };
        assert_eq!(smtp.port(), 587);
        assert_eq!(
            SmtpConfig {
                starttls: false,
                ..smtp.clone()
            }
            .port(),
            25
        );
        assert_eq!(
            SmtpConfig {
                port: Some(2525),
                ..smtp
            }
            .port(),
            2525
        );
    }
}
