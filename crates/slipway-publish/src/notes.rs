//! Release notes: what a release is, its files, and what changed in its packages.

use std::fmt::Write as _;

use slipway_model::{MatchedAdvisory, PkgDiff, Release};

use crate::PublishFile;

/// The file name release notes are published under, beside the images.
pub const RELEASE_NOTES: &str = "RELEASE-NOTES.txt";

/// The release notes of a release: version, compose, why it was released out of cycle (when it was), image
/// files with checksums, the security advisories
/// its upgrades fix (most severe first, as given), and the package diff against the compose before it,
/// security upgrades first. The text depends only on facts that never change for a release (not its
/// state), so every publish writes the same bytes and the signed CHECKSUM of a published release stays
/// valid: callers must pass the advisories recorded when the release was made, not ones matched anew.
pub fn release_notes(
    release: &Release,
    pkgdiff: Option<&PkgDiff>,
    advisories: &[MatchedAdvisory],
    out_of_cycle: Option<&str>,
    images: &[PublishFile],
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{} {}", release.stream, release.version);
    let _ = writeln!(text, "compose {}", release.compose);
    let _ = writeln!(
        text,
        "released {}",
        release.created_at.strftime("%Y-%m-%d %H:%M UTC")
    );
    if let Some(why) = out_of_cycle {
        let _ = writeln!(text, "released out of cycle: {why}");
    }
    let _ = writeln!(text, "\nFiles (verify with the signed CHECKSUM):");
    let mut files: Vec<&PublishFile> = images.iter().collect();
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    for file in files {
        let _ = writeln!(
            text,
            "  {}  {} bytes  sha256 {}",
            file.file_name, file.size, file.sha256
        );
    }
    if !advisories.is_empty() {
        let _ = writeln!(text, "\nSecurity advisories fixed:");
        for a in advisories {
            let _ = write!(
                text,
                "  {} ({}) {} {} -> {}",
                a.id, a.severity, a.source, a.old_version, a.new_version
            );
            if !a.summary.trim().is_empty() {
                let _ = write!(text, ": {}", a.summary.trim());
            }
            let _ = writeln!(text);
            if let Some(url) = &a.url {
                let _ = writeln!(text, "    {url}");
            }
        }
    }
    match pkgdiff {
        None => {
            let _ = writeln!(text, "\nPackages: not recorded for this compose.");
        }
        Some(diff) if diff.previous.is_none() => {
            let _ = writeln!(
                text,
                "\nPackages: the first compose of its recipe, with {} packages.",
                diff.added.len()
            );
        }
        Some(diff) => {
            let previous = diff.previous.as_ref().map(|p| p.as_str()).unwrap_or("-");
            let _ = writeln!(text, "\nPackages since {previous}: {}", diff.summary());
            let security: Vec<_> = diff.security_upgrades().collect();
            if !security.is_empty() {
                let _ = writeln!(text, "\nSecurity upgrades:");
                for c in security {
                    let _ = writeln!(
                        text,
                        "  {} {} -> {} ({}, source {})",
                        c.name,
                        c.old_version,
                        c.new_version,
                        c.suite.as_deref().unwrap_or("?"),
                        c.source
                    );
                }
            }
            let other: Vec<_> = diff.upgraded.iter().filter(|c| !c.security).collect();
            if !other.is_empty() {
                let _ = writeln!(text, "\nUpgraded:");
                for c in other {
                    let _ = writeln!(text, "  {} {} -> {}", c.name, c.old_version, c.new_version);
                }
            }
            for (title, changes) in [("Downgraded", &diff.downgraded), ("Rebuilt", &diff.rebuilt)] {
                if !changes.is_empty() {
                    let _ = writeln!(text, "\n{title}:");
                    for c in changes {
                        let _ =
                            writeln!(text, "  {} {} -> {}", c.name, c.old_version, c.new_version);
                    }
                }
            }
            for (title, packages) in [("Added", &diff.added), ("Removed", &diff.removed)] {
                if !packages.is_empty() {
                    let _ = writeln!(text, "\n{title}:");
                    for p in packages {
                        let _ = writeln!(text, "  {} {}", p.name, p.version);
                    }
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_model::{
        sha256_hex, ArtifactKind, ComposeId, OutputFormat, PackageChange, ReleaseState, Severity,
    };

    #[test]
    fn notes_list_files_and_security_upgrades_first_and_ignore_the_state() {
        let mut release = Release {
            stream: "cloud".into(),
            version: "20261121.0".parse().expect("version"),
            compose: ComposeId("cloud-20261121.0".into()),
            state: ReleaseState::Pending,
            created_at: "2026-11-21T10:00:00Z".parse().expect("time"),
            published_at: None,
            revocation: None,
        };
        let diff = PkgDiff {
            previous: Some(ComposeId("cloud-20261120.0".into())),
            upgraded: vec![
                PackageChange {
                    name: "tzdata".into(),
                    architecture: "all".into(),
                    source: "tzdata".into(),
                    old_version: "2024a".into(),
                    new_version: "2025b".into(),
                    suite: Some("bookworm-updates".into()),
                    security: false,
                },
                PackageChange {
                    name: "libssl3".into(),
                    architecture: "amd64".into(),
                    source: "openssl".into(),
                    old_version: "3.0.11-1~deb12u2".into(),
                    new_version: "3.0.15-1~deb12u1".into(),
                    suite: Some("bookworm-security".into()),
                    security: true,
                },
            ],
            ..PkgDiff::default()
        };
        let image = PublishFile {
            kind: ArtifactKind::Image(OutputFormat::Qcow2),
            file_name: "cloud-20261121.0.qcow2".into(),
            sha256: sha256_hex(b"image"),
            size: 5,
            source: "/nonexistent".into(),
        };
        let notes = release_notes(
            &release,
            Some(&diff),
            &[],
            None,
            std::slice::from_ref(&image),
        );
        assert!(notes.starts_with("cloud 20261121.0\ncompose cloud-20261121.0\n"));
        assert!(notes.contains(&format!(
            "cloud-20261121.0.qcow2  5 bytes  sha256 {}",
            image.sha256
        )));
        let security = notes.find("Security upgrades:").expect("security section");
        let upgraded = notes.find("Upgraded:").expect("other upgrades");
        assert!(security < upgraded);
        assert!(notes.contains(
            "libssl3 3.0.11-1~deb12u2 -> 3.0.15-1~deb12u1 (bookworm-security, source openssl)"
        ));
        assert!(notes.contains("2 upgraded (1 security)"));
        assert!(
            !notes.contains("advisories"),
            "no advisory section without advisories"
        );
        release.state = ReleaseState::Superseded;
        release.published_at = Some("2026-11-22T10:00:00Z".parse().expect("time"));
        assert_eq!(
            release_notes(
                &release,
                Some(&diff),
                &[],
                None,
                std::slice::from_ref(&image)
            ),
            notes,
            "the notes of a release never change"
        );
    }

    #[test]
    fn notes_list_the_advisories_fixed() {
        let release = Release {
            stream: "cloud".into(),
            version: "20261121.0".parse().expect("version"),
            compose: ComposeId("cloud-20261121.0".into()),
            state: ReleaseState::Pending,
            created_at: "2026-11-21T10:00:00Z".parse().expect("time"),
            published_at: None,
            revocation: None,
        };
        let advisory = |id: &str, severity, url: Option<&str>| MatchedAdvisory {
            id: id.into(),
            severity,
            summary: "openssl: denial of service ".into(),
            url: url.map(str::to_string),
            source: "openssl".into(),
            fixed_version: "3.0.13-1~deb12u1".into(),
            old_version: "3.0.11-1~deb12u2".into(),
            new_version: "3.0.13-1~deb12u1".into(),
            suite: Some("bookworm-security".into()),
            security: true,
        };
        let advisories = [
            advisory(
                "DSA-5555-1",
                Severity::High,
                Some("https://www.debian.org/security/2023/dsa-5555"),
            ),
            advisory("CVE-2023-5678", Severity::Medium, None),
        ];
        let notes = release_notes(&release, None, &advisories, None, &[]);
        let section = notes
            .split("\nSecurity advisories fixed:\n")
            .nth(1)
            .expect("an advisory section");
        assert!(section.starts_with(
            "  DSA-5555-1 (high) openssl 3.0.11-1~deb12u2 -> 3.0.13-1~deb12u1: openssl: denial of service\n    \
             https://www.debian.org/security/2023/dsa-5555\n  CVE-2023-5678 (medium) openssl \
             3.0.11-1~deb12u2 -> 3.0.13-1~deb12u1: openssl: denial of service\n"
        ), "{notes}");
        assert!(
            notes.find("Security advisories fixed:") < notes.find("Packages:"),
            "advisories come before the package list"
        );
    }
}
