//! The texts of announcements: a subject and a plain-text body a mailing list takes as it is.
//!
//! Bodies are wrapped at 72 columns (URLs and checksums are never broken, since a reader copies them), use
//! only the facts in the notice, and so render the same bytes for the same notice: a retried send mails the
//! same text.

use std::fmt::Write as _;

use slipway_model::{
    AdvisoryRef, Announcement, AnnouncementKind, EolNotice, PkgDiff, ReleaseNotice,
    RevocationNotice, StaleNotice,
};

/// The width prose is wrapped at.
const WIDTH: usize = 72;

/// The announcement of a release: its version, where to download each image with its size and sha256, the
/// signed CHECKSUM, the package changes with the security upgrades, and the advisories it fixes. A notice
/// with an emergency reason is announced as an emergency release.
pub fn release_announcement(notice: &ReleaseNotice) -> Announcement {
    let stream = &notice.stream;
    let version = &notice.version;
    let mut body = String::new();
    let kind = match &notice.emergency_reason {
        Some(reason) => {
            paragraph(
                &mut body,
                &format!(
                    "{stream} {version} is released out of its regular cycle, as an emergency \
                     release: {reason}"
                ),
            );
            AnnouncementKind::Emergency
        }
        None => {
            paragraph(&mut body, &format!("{stream} {version} is released."));
            AnnouncementKind::Release
        }
    };
    let _ = writeln!(
        body,
        "Released: {}",
        notice.released_at.strftime("%Y-%m-%d %H:%M UTC")
    );

    let _ = writeln!(body, "\nDownloads:");
    if notice.downloads.is_empty() {
        let _ = writeln!(body, "  none");
    }
    for link in &notice.downloads {
        let _ = writeln!(body, "  {}", link.url);
        let _ = writeln!(body, "    {} bytes", link.size);
    }
    let _ = writeln!(body, "\nChecksums (sha256):");
    for link in &notice.downloads {
        let _ = writeln!(body, "  {}  {}", link.sha256, link.file_name);
    }
    let _ = writeln!(
        body,
        "Verify them against the signed CHECKSUM:\n  {}",
        notice.checksum_url
    );

    let _ = writeln!(body);
    package_changes(&mut body, notice.pkgdiff.as_ref());
    let _ = writeln!(body);
    advisories(&mut body, &notice.advisories);

    let subject = match kind {
        AnnouncementKind::Emergency if !notice.advisories.is_empty() => {
            let ids: Vec<&str> = notice.advisories.iter().map(|a| a.id.as_str()).collect();
            format!(
                "[{stream}] {version} released (emergency: {})",
                ids.join(", ")
            )
        }
        AnnouncementKind::Emergency => format!("[{stream}] {version} released (emergency)"),
        _ => format!("[{stream}] {version} released"),
    };
    Announcement {
        kind,
        stream: stream.clone(),
        version: Some(version.clone()),
        subject,
        body: finish(body),
        created_at: notice.released_at,
    }
}

/// The announcement that a release was revoked: what, why, by whom, and what the stream offers now.
pub fn revocation_announcement(notice: &RevocationNotice) -> Announcement {
    let stream = &notice.stream;
    let version = &notice.version;
    let mut body = String::new();
    paragraph(
        &mut body,
        &format!("{stream} {version} is revoked: it is bad and must not be used."),
    );
    let _ = writeln!(body, "Reason:");
    indented(&mut body, &notice.reason);
    let _ = writeln!(
        body,
        "\nRevoked by {} at {}.",
        notice.author,
        notice.revoked_at.strftime("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(body);
    match &notice.fallback {
        Some(fallback) => paragraph(
            &mut body,
            &format!(
                "The stream points at {fallback} again. If you run {version}, replace it with \
                 {fallback} or a later release."
            ),
        ),
        None => paragraph(
            &mut body,
            &format!(
                "No good release of {stream} is left: the stream is empty until the next release. \
                 If you run {version}, stop using it."
            ),
        ),
    }
    if let Some(url) = &notice.stream_url {
        let _ = writeln!(body, "Releases of {stream}:\n  {url}");
    }
    Announcement {
        kind: AnnouncementKind::Revocation,
        stream: stream.clone(),
        version: Some(version.clone()),
        subject: format!("[{stream}] {version} revoked"),
        body: finish(body),
        created_at: notice.revoked_at,
    }
}

/// The announcement that a stream went stale (a release day passed with no good compose), or that a
/// release ended its stale spell.
pub fn stale_announcement(notice: &StaleNotice) -> Announcement {
    let stream = &notice.stream;
    let since = notice.since.strftime("%Y-%m-%d");
    let mut body = String::new();
    let (kind, subject) = if notice.stale {
        paragraph(
            &mut body,
            &format!(
                "{stream} is stale since {since}: a release was due and no compose passed its \
                 gate, so no new release was made."
            ),
        );
        match &notice.current {
            Some(current) => paragraph(
                &mut body,
                &format!("The stream keeps offering {current}, its last good release."),
            ),
            None => paragraph(&mut body, "The stream has no release yet."),
        }
        (
            AnnouncementKind::Stale,
            match &notice.current {
                Some(current) => format!("[{stream}] stale since {since}, staying on {current}"),
                None => format!("[{stream}] stale since {since}"),
            },
        )
    } else {
        let current = notice
            .current
            .as_ref()
            .map_or_else(|| "a new release".to_string(), ToString::to_string);
        paragraph(
            &mut body,
            &format!(
                "{stream} is no longer stale: {current} ends the stale spell that began {since}."
            ),
        );
        (
            AnnouncementKind::Unstale,
            format!("[{stream}] no longer stale: {current}"),
        )
    };
    if let Some(url) = &notice.incident_url {
        let _ = writeln!(body, "Incident:\n  {url}");
    }
    Announcement {
        kind,
        stream: stream.clone(),
        version: notice.current.clone(),
        subject,
        body: finish(body),
        created_at: notice.at,
    }
}

/// The announcement that a stream reached its end of life.
pub fn eol_announcement(notice: &EolNotice) -> Announcement {
    let stream = &notice.stream;
    let mut body = String::new();
    paragraph(
        &mut body,
        &format!(
            "{stream} has reached its end of life on {}: it gets no new composes, releases or \
             security fixes.",
            notice.at.strftime("%Y-%m-%d")
        ),
    );
    match &notice.last_release {
        Some(last) => paragraph(&mut body, &format!("Its last release is {last}.")),
        None => paragraph(&mut body, "It never had a release."),
    }
    match &notice.successor {
        Some(successor) => paragraph(&mut body, &format!("Move to {successor}.")),
        None => paragraph(&mut body, "It has no successor stream."),
    }
    Announcement {
        kind: AnnouncementKind::Eol,
        stream: stream.clone(),
        version: notice.last_release.clone(),
        subject: match &notice.successor {
            Some(successor) => format!("[{stream}] end of life, move to {successor}"),
            None => format!("[{stream}] end of life"),
        },
        body: finish(body),
        created_at: notice.at,
    }
}

fn package_changes(body: &mut String, pkgdiff: Option<&PkgDiff>) {
    let Some(diff) = pkgdiff else {
        let _ = writeln!(body, "Package changes: not recorded for this compose.");
        return;
    };
    match &diff.previous {
        None => {
            let _ = writeln!(
                body,
                "Package changes: the first compose of its recipe, {} packages.",
                diff.added.len()
            );
        }
        Some(previous) => {
            let _ = writeln!(body, "Package changes since compose {previous}:");
            let _ = writeln!(body, "  {}", diff.summary());
        }
    }
    let security: Vec<_> = diff.security_upgrades().collect();
    let _ = writeln!(body, "\nSecurity upgrades:");
    if security.is_empty() {
        let _ = writeln!(body, "  none");
    }
    for change in security {
        let _ = write!(
            body,
            "  {} {} -> {}",
            change.name, change.old_version, change.new_version
        );
        match &change.suite {
            Some(suite) => {
                let _ = writeln!(body, " ({suite})");
            }
            None => {
                let _ = writeln!(body);
            }
        }
    }
}

fn advisories(body: &mut String, advisories: &[AdvisoryRef]) {
    if advisories.is_empty() {
        let _ = writeln!(body, "Advisories: none");
        return;
    }
    let _ = writeln!(body, "Advisories:");
    for advisory in advisories {
        let _ = write!(body, "  {} ({})", advisory.id, advisory.severity);
        if !advisory.packages.is_empty() {
            let _ = write!(body, ": {}", advisory.packages.join(", "));
        }
        let _ = writeln!(body);
        if let Some(url) = &advisory.url {
            let _ = writeln!(body, "    {url}");
        }
    }
}

/// The body with exactly one line end after its last line.
fn finish(body: String) -> String {
    format!("{}\n", body.trim_end())
}

/// Appends `text` wrapped at [`WIDTH`], then a blank line.
fn paragraph(body: &mut String, text: &str) {
    for line in wrap(text, WIDTH) {
        let _ = writeln!(body, "{line}");
    }
    let _ = writeln!(body);
}

/// Appends each line of `text` wrapped and indented by two spaces: for text a person typed (a reason).
fn indented(body: &mut String, text: &str) {
    for source in text.trim().lines() {
        for line in wrap(source, WIDTH - 2) {
            let _ = writeln!(body, "  {line}");
        }
    }
}

/// Greedy word wrap. A word longer than the width (a URL) stands on a line of its own, unbroken.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use slipway_model::{ComposeId, DownloadLink, LockedPackage, PackageChange, Sha256, Version};

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn version(text: &str) -> Version {
        text.parse().expect("version")
    }

    fn sha(fill: char) -> Sha256 {
        Sha256::parse(&fill.to_string().repeat(64)).expect("sha")
    }

    fn change(name: &str, old: &str, new: &str, suite: &str) -> PackageChange {
        PackageChange {
            name: name.into(),
            architecture: "amd64".into(),
            source: name.into(),
            old_version: old.into(),
            new_version: new.into(),
            suite: Some(suite.into()),
            security: slipway_model::is_security_suite(suite),
        }
    }

    fn notice() -> ReleaseNotice {
        let base = "https://images.example.org/bookworm-cloud/20261121.0";
        ReleaseNotice {
            stream: "bookworm-cloud".into(),
            version: version("20261121.0"),
            released_at: at("2026-11-21T10:15:00Z"),
            downloads: vec![
                DownloadLink {
                    url: format!("{base}/bookworm-cloud-20261121.0.qcow2"),
                    file_name: "bookworm-cloud-20261121.0.qcow2".into(),
                    size: 412_090_368,
                    sha256: sha('a'),
                },
                DownloadLink {
                    url: format!("{base}/bookworm-cloud-20261121.0.raw.xz"),
                    file_name: "bookworm-cloud-20261121.0.raw.xz".into(),
                    size: 198_344_112,
                    sha256: sha('b'),
                },
            ],
            checksum_url: format!("{base}/CHECKSUM"),
            pkgdiff: Some(PkgDiff {
                previous: Some(ComposeId("bookworm-cloud-20261107.0".into())),
                added: vec![LockedPackage {
                    name: "jq".into(),
                    version: "1.6-2.1".into(),
                    architecture: "amd64".into(),
                    sha256: None,
                    source: None,
                    suite: None,
                }],
                removed: vec![],
                upgraded: vec![
                    change(
                        "openssl",
                        "3.0.14-1~deb12u2",
                        "3.0.15-1~deb12u1",
                        "bookworm-security",
                    ),
                    change(
                        "tzdata",
                        "2024a-0+deb12u1",
                        "2024b-0+deb12u1",
                        "bookworm-updates",
                    ),
                ],
                downgraded: vec![],
                rebuilt: vec![],
            }),
            advisories: vec![AdvisoryRef {
                id: "DSA-5790-1".into(),
                severity: "high".into(),
                packages: vec!["openssl".into()],
                url: Some("https://security-tracker.debian.org/tracker/DSA-5790-1".into()),
            }],
            emergency_reason: None,
        }
    }

    #[test]
    fn a_release_announcement_has_downloads_checksums_changes_and_advisories() {
        let announcement = release_announcement(&notice());
        assert_eq!(announcement.kind, AnnouncementKind::Release);
        assert_eq!(announcement.stream, "bookworm-cloud");
        assert_eq!(announcement.version, Some(version("20261121.0")));
        assert_eq!(announcement.created_at, at("2026-11-21T10:15:00Z"));
        assert_eq!(announcement.subject, "[bookworm-cloud] 20261121.0 released");
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(
            announcement.body,
            format!(
                "bookworm-cloud 20261121.0 is released.

Released: 2026-11-21 10:15 UTC

Downloads:
  https://images.example.org/bookworm-cloud/20261121.0/bookworm-cloud-20261121.0.qcow2
    412090368 bytes
  https://images.example.org/bookworm-cloud/20261121.0/bookworm-cloud-20261121.0.raw.xz
    198344112 bytes

Checksums (sha256):
  {a}  bookworm-cloud-20261121.0.qcow2
  {b}  bookworm-cloud-20261121.0.raw.xz
Verify them against the signed CHECKSUM:
  https://images.example.org/bookworm-cloud/20261121.0/CHECKSUM

Package changes since compose bookworm-cloud-20261107.0:
  2 upgraded (1 security), 1 added, 0 removed

Security upgrades:
  openssl 3.0.14-1~deb12u2 -> 3.0.15-1~deb12u1 (bookworm-security)

Advisories:
  DSA-5790-1 (high): openssl
    https://security-tracker.debian.org/tracker/DSA-5790-1
"
            )
        );
    }

    #[test]
    fn without_advisories_or_a_package_diff_the_body_says_so() {
        let announcement = release_announcement(&ReleaseNotice {
            pkgdiff: None,
            advisories: vec![],
            ..notice()
        });
        assert!(
            announcement
                .body
                .ends_with("Package changes: not recorded for this compose.\n\nAdvisories: none\n"),
            "{}",
            announcement.body
        );
        let first = release_announcement(&ReleaseNotice {
            pkgdiff: Some(PkgDiff {
                previous: None,
                ..notice().pkgdiff.expect("diff")
            }),
            ..notice()
        });
        assert!(first
            .body
            .contains("Package changes: the first compose of its recipe, 1 packages.\n"));
    }

    #[test]
    fn an_emergency_release_says_why_and_names_its_advisories_in_the_subject() {
        let announcement = release_announcement(&ReleaseNotice {
            version: version("20261121.1"),
            emergency_reason: Some("remote code execution in openssl".into()),
            ..notice()
        });
        assert_eq!(announcement.kind, AnnouncementKind::Emergency);
        assert_eq!(
            announcement.subject,
            "[bookworm-cloud] 20261121.1 released (emergency: DSA-5790-1)"
        );
        assert!(announcement.body.starts_with(
            "bookworm-cloud 20261121.1 is released out of its regular cycle, as an\n\
             emergency release: remote code execution in openssl\n\n"
        ));
    }

    #[test]
    fn a_revocation_names_reason_author_and_fallback() {
        let notice = RevocationNotice {
            stream: "bookworm-cloud".into(),
            version: version("20261121.0"),
            reason: "cloud-init fails on the second boot\nsee the incident".into(),
            author: "alice".into(),
            revoked_at: at("2026-11-22T08:00:00Z"),
            fallback: Some(version("20261107.0")),
            stream_url: Some("https://images.example.org/releases/bookworm-cloud.json".into()),
        };
        let announcement = revocation_announcement(&notice);
        assert_eq!(announcement.kind, AnnouncementKind::Revocation);
        assert_eq!(announcement.subject, "[bookworm-cloud] 20261121.0 revoked");
        assert_eq!(
            announcement.body,
            "bookworm-cloud 20261121.0 is revoked: it is bad and must not be used.

Reason:
  cloud-init fails on the second boot
  see the incident

Revoked by alice at 2026-11-22 08:00 UTC.

The stream points at 20261107.0 again. If you run 20261121.0, replace it
with 20261107.0 or a later release.

Releases of bookworm-cloud:
  https://images.example.org/releases/bookworm-cloud.json
"
        );
        let empty = revocation_announcement(&RevocationNotice {
            fallback: None,
            stream_url: None,
            ..notice
        });
        assert!(
            empty
                .body
                .contains("No good release of bookworm-cloud is left"),
            "{}",
            empty.body
        );
    }

    #[test]
    fn stale_and_unstale_announcements() {
        let notice = StaleNotice {
            stream: "bookworm-cloud".into(),
            stale: true,
            since: at("2026-12-05T00:00:00Z"),
            current: Some(version("20261121.0")),
            incident_url: Some("https://bugs.example.org/show_bug.cgi?id=42".into()),
            at: at("2026-12-05T00:00:00Z"),
        };
        let stale = stale_announcement(&notice);
        assert_eq!(stale.kind, AnnouncementKind::Stale);
        assert_eq!(
            stale.subject,
            "[bookworm-cloud] stale since 2026-12-05, staying on 20261121.0"
        );
        assert_eq!(
            stale.body,
            "bookworm-cloud is stale since 2026-12-05: a release was due and no
compose passed its gate, so no new release was made.

The stream keeps offering 20261121.0, its last good release.

Incident:
  https://bugs.example.org/show_bug.cgi?id=42
"
        );
        let fresh = stale_announcement(&StaleNotice {
            stale: false,
            current: Some(version("20261207.0")),
            at: at("2026-12-07T03:00:00Z"),
            ..notice
        });
        assert_eq!(fresh.kind, AnnouncementKind::Unstale);
        assert_eq!(
            fresh.subject,
            "[bookworm-cloud] no longer stale: 20261207.0"
        );
        assert!(fresh
            .body
            .starts_with("bookworm-cloud is no longer stale: 20261207.0 ends the stale spell"));
    }

    #[test]
    fn an_eol_announcement_points_at_the_successor() {
        let announcement = eol_announcement(&EolNotice {
            stream: "bullseye-cloud".into(),
            last_release: Some(version("20260801.0")),
            successor: Some("bookworm-cloud".into()),
            at: at("2026-08-14T12:00:00Z"),
        });
        assert_eq!(announcement.kind, AnnouncementKind::Eol);
        assert_eq!(
            announcement.subject,
            "[bullseye-cloud] end of life, move to bookworm-cloud"
        );
        assert_eq!(
            announcement.body,
            "bullseye-cloud has reached its end of life on 2026-08-14: it gets no new
composes, releases or security fixes.

Its last release is 20260801.0.

Move to bookworm-cloud.
"
        );
    }

    #[test]
    fn wrapping_keeps_long_words_whole() {
        let url = format!("https://example.org/{}", "x".repeat(80));
        let lines = wrap(&format!("see {url} now"), 20);
        assert_eq!(lines, vec!["see".to_string(), url, "now".to_string()]);
        assert_eq!(wrap("", 20), vec![String::new()]);
    }
}
