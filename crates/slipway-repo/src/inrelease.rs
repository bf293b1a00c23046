//! apt `Release` files: what a suite contains, until when, and the sha256 of every index file in it.
//!
//! An `InRelease` is a `Release` wrapped in an OpenPGP clear signature. [`Release::parse`] reads the text
//! *after* the signature has been verified (gpgv's `--output`), so nothing outside the signed part is ever
//! looked at; [`cleartext`] unwraps the text without verifying, for sources marked trusted.

use jiff::Timestamp;

use crate::deb822::stanzas;
use crate::error::RepoError;

/// A parsed `Release` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `Suite` (`stable`, `bookworm-updates`); empty when absent.
    pub suite: String,
    /// `Codename` (`bookworm`); empty when absent.
    pub codename: String,
    /// `Date`: when the archive was last updated.
    pub date: Option<Timestamp>,
    /// `Valid-Until`: after this the file must not be trusted any more, which stops a mirror (or an attacker)
    /// from serving an old, validly signed state forever.
    pub valid_until: Option<Timestamp>,
    /// `Architectures`.
    pub architectures: Vec<String>,
    /// `Components` as listed (Debian's security archive says `updates/main` for files under `main/`).
    pub components: Vec<String>,
    /// `Acquire-By-Hash: yes`: index files can also be fetched by their hash, which stays consistent while a
    /// mirror updates.
    pub acquire_by_hash: bool,
    /// The `SHA256` list: every index file of the suite with its size and hash.
    pub sha256: Vec<ReleaseFile>,
}

/// One entry of a Release file's `SHA256` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    /// The file's sha256, lowercase hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its path relative to `dists/<suite>/`, such as `main/binary-amd64/Packages.xz`.
    pub path: String,
}

impl Release {
    /// Parses the text of a Release file (or of a verified InRelease). `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Release, RepoError> {
        let stanza = stanzas(text, file)
            .next()
            .transpose()?
            .ok_or_else(|| RepoError::Parse {
                file: file.to_string(),
                line: 1,
                field: "Release".into(),
                reason: "the file has no fields".into(),
            })?;
        let words = |name: &str| -> Vec<String> {
            stanza
                .value(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let date = |name: &str| -> Result<Option<Timestamp>, RepoError> {
            match stanza.get(name) {
                None => Ok(None),
                Some(field) => {
                    parse_date(&field.value())
                        .map(Some)
                        .ok_or_else(|| RepoError::Parse {
                            file: file.to_string(),
                            line: field.line,
                            field: name.to_string(),
                            reason: format!(
                                "{:?} is not a date like `Sat, 04 May 2024 08:17:01 UTC`",
                                field.value()
                            ),
                        })
                }
            }
        };

        let mut sha256 = Vec::new();
        if let Some(field) = stanza.get("SHA256") {
            for (i, line) in field.raw.split('\n').enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let bad = |reason: String| RepoError::Parse {
                    file: file.to_string(),
                    line: field.line + i,
                    field: "SHA256".into(),
                    reason,
                };
                let parts: Vec<&str> = line.split_whitespace().collect();
                let [hash, size, path] = parts[..] else {
                    return Err(bad(format!("{line:?} is not `<sha256> <size> <path>`")));
                };
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!("{hash:?} is not a sha256")));
                }
                let size = size
                    .parse()
                    .map_err(|_| bad(format!("{size:?} is not a size in bytes")))?;
                sha256.push(ReleaseFile {
                    sha256: hash.to_ascii_lowercase(),
                    size,
                    path: path.to_string(),
                });
            }
        }

        Ok(Release {
            suite: stanza.value("Suite").unwrap_or_default().into_owned(),
            codename: stanza.value("Codename").unwrap_or_default().into_owned(),
            date: date("Date")?,
            valid_until: date("Valid-Until")?,
            architectures: words("Architectures"),
            components: words("Components"),
            acquire_by_hash: stanza
                .value("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
        })
    }

    /// Fails with [`RepoError::Expired`] when `Valid-Until` is before `now`. `file` names the Release file.
    pub fn check_valid(&self, now: Timestamp, file: &str) -> Result<(), RepoError> {
        match self.valid_until {
            Some(until) if until < now => Err(RepoError::Expired {
                file: file.to_string(),
                valid_until: format_date(until),
            }),
            _ => Ok(()),
        }
    }

    /// The `SHA256` entry for `path` (relative to `dists/<suite>/`), if listed.
    pub fn file(&self, path: &str) -> Option<&ReleaseFile> {
        self.sha256.iter().find(|f| f.path == path)
    }
}

/// Parses the dates of Release files: RFC 2822 as apt writes it, `Sat, 04 May 2024 08:17:01 UTC`, where the
/// zone may also be `GMT`, `UT`, `Z` or a numeric offset.
pub fn parse_date(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    let (rest, zone) = text.rsplit_once(' ')?;
    let zone = match zone {
        "UTC" | "GMT" | "UT" | "Z" => "+0000",
        other => other,
    };
    jiff::fmt::rfc2822::parse(&format!("{rest} {zone}"))
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// Formats a date the way Release files write it.
pub fn format_date(at: Timestamp) -> String {
    at.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string()
}

const SIGNED_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_HEADER: &str = "-----BEGIN PGP SIGNATURE-----";

/// Whether `bytes` is an OpenPGP clear-signed message.
pub fn is_clearsigned(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(SIGNED_HEADER.as_bytes())
}

/// The text of an InRelease without checking its signature, for sources marked trusted: the signed text of
/// a clear-signed message (armor headers dropped, dash-escaping undone), or the whole input when it is not
/// signed at all. `None` when the input is not UTF-8 or a clear-signed message is malformed.
pub fn cleartext(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !is_clearsigned(bytes) {
        return Some(text.to_string());
    }
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim() != SIGNED_HEADER)
        .skip(1);
    // Armor headers (`Hash: SHA256`) end at the first empty line.
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
    }
    let mut out = String::new();
    for line in lines {
        if line.trim_end() == SIGNATURE_HEADER {
            return Some(out);
        }
        out.push_str(line.strip_prefix("- ").unwrap_or(line));
        out.push('\n');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "\
Origin: Debian
Label: Debian
Suite: stable
Version: 12.8
Codename: bookworm
Date: Sat, 09 Nov 2024 10:06:11 UTC
Valid-Until: Sat, 16 Nov 2024 10:06:11 UTC
Acquire-By-Hash: yes
No-Support-for-Architecture-all: Packages
Architectures: all amd64 arm64
Components: main contrib
Description: Debian 12.8 Released 09 November 2024
SHA256:
 0ed6d4c8891eb86358b94bb35d9e4da1ca2c3d8de8eefc2b4b7a9b3e1e7f5a01   738242 contrib/Contents-all
 A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90  8790396 main/binary-amd64/Packages.xz
";

    #[test]
    fn parses_the_fields_a_refresh_needs() {
        let release = Release::parse(RELEASE, "InRelease").expect("parses");
        assert_eq!(release.suite, "stable");
        assert_eq!(release.codename, "bookworm");
        assert_eq!(release.architectures, ["all", "amd64", "arm64"]);
        assert_eq!(release.components, ["main", "contrib"]);
        assert!(release.acquire_by_hash);
        assert_eq!(
            release.date.map(format_date).as_deref(),
            Some("Sat, 09 Nov 2024 10:06:11 UTC")
        );
        assert_eq!(release.sha256.len(), 2);
        let packages = release
            .file("main/binary-amd64/Packages.xz")
            .expect("listed");
        assert_eq!(packages.size, 8_790_396);
        assert_eq!(
            packages.sha256,
            "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
        );
    }

    #[test]
    fn an_expired_release_is_rejected_by_name() {
        let release = Release::parse(RELEASE, "http://m/dists/stable/InRelease").expect("parses");
        let before: Timestamp = "2024-11-16T10:06:10Z".parse().expect("timestamp");
        let after: Timestamp = "2024-11-16T10:06:12Z".parse().expect("timestamp");
        release
            .check_valid(before, "http://m/dists/stable/InRelease")
            .expect("still valid");
        let err = release
            .check_valid(after, "http://m/dists/stable/InRelease")
            .expect_err("expired");
        assert!(matches!(err, RepoError::Expired { .. }));
        let text = err.to_string();
        assert!(
            text.starts_with(
                "http://m/dists/stable/InRelease expired at Sat, 16 Nov 2024 10:06:11 UTC"
            ),
            "{text}"
        );
        let forever = Release::parse("Suite: x\n", "Release").expect("parses");
        forever
            .check_valid(after, "Release")
            .expect("no Valid-Until");
    }

    #[test]
    fn dates_in_the_forms_archives_write() {
        let want: Timestamp = "2024-05-04T08:17:01Z".parse().expect("timestamp");
        for text in [
            "Sat, 04 May 2024 08:17:01 UTC",
            "Sat, 04 May 2024 08:17:01 GMT",
            "Sat, 4 May 2024 08:17:01 +0000",
            "Sat, 04 May 2024 10:17:01 +0200",
            " Sat, 04 May 2024 08:17:01 Z ",
        ] {
            assert_eq!(parse_date(text), Some(want), "{text}");
        }
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn malformed_entries_name_line_and_field() {
        let err = Release::parse("Suite: x\nSHA256:\n abc 12 main/x\n", "Release")
            .expect_err("bad hash")
            .to_string();
        assert!(err.starts_with("Release:3: SHA256: \"abc\""), "{err}");
        let text = format!("Suite: x\nSHA256:\n {} 1x main/x\n", "0".repeat(64));
        let err = Release::parse(&text, "Release")
            .expect_err("bad size")
            .to_string();
        assert!(err.starts_with("Release:3: SHA256: \"1x\""), "{err}");
        let err = Release::parse("Suite: x\nValid-Until: soon\n", "Release")
            .expect_err("bad date")
            .to_string();
        assert!(err.starts_with("Release:2: Valid-Until: \"soon\""), "{err}");
        assert!(Release::parse("\n\n", "Release").is_err());
    }

    #[test]
    fn cleartext_unwraps_a_clear_signature() {
        let signed = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n- -----dash line\nCodename: y\n-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        assert!(is_clearsigned(signed.as_bytes()));
        assert_eq!(
            cleartext(signed.as_bytes()).as_deref(),
            Some("Suite: x\n-----dash line\nCodename: y\n")
        );
        assert!(!is_clearsigned(b"Suite: x\n"));
        assert_eq!(cleartext(b"Suite: x\n").as_deref(), Some("Suite: x\n"));
        let cut = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n";
        assert_eq!(cleartext(cut.as_bytes()), None);
    }
}
