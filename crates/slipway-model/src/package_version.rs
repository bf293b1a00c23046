//! Version comparison, Debian's and rpm's, following dpkg's and rpm's own rules exactly: a pipeline that
//! calls a newer version "older" would miss the update it exists to catch.

use std::cmp::Ordering;

/// How a repository's versions compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionScheme {
    /// dpkg's `[epoch:]upstream[-revision]` ordering.
    Debian,
    /// rpm's `[epoch:]version-release` ordering (rpmvercmp).
    Rpm,
}

/// Compares two versions under a scheme.
pub fn compare_versions(scheme: VersionScheme, a: &str, b: &str) -> Ordering {
    match scheme {
        VersionScheme::Debian => compare_debian(a, b),
        VersionScheme::Rpm => compare_rpm(a, b),
    }
}

/// Splits `[epoch:]rest` into the numeric epoch (0 when absent or unparsable) and the rest.
fn split_epoch(version: &str) -> (u64, &str) {
    match version.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, version),
    }
}

fn compare_debian(a: &str, b: &str) -> Ordering {
    let (epoch_a, rest_a) = split_epoch(a);
    let (epoch_b, rest_b) = split_epoch(b);
    // The revision is everything after the last hyphen; the upstream part may itself contain hyphens.
    let (up_a, rev_a) = rest_a.rsplit_once('-').unwrap_or((rest_a, ""));
    let (up_b, rev_b) = rest_b.rsplit_once('-').unwrap_or((rest_b, ""));
    epoch_a
        .cmp(&epoch_b)
        .then_with(|| dpkg_verrevcmp(up_a.as_bytes(), up_b.as_bytes()))
        .then_with(|| dpkg_verrevcmp(rev_a.as_bytes(), rev_b.as_bytes()))
}

/// The weight dpkg gives a character in the non-digit part: `~` sorts before everything, even the end of
/// the string; letters sort before other characters.
fn dpkg_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn dpkg_verrevcmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefixes, character by character.
        while a.first().is_some_and(|c| !c.is_ascii_digit())
            || b.first().is_some_and(|c| !c.is_ascii_digit())
        {
            let order_a = dpkg_order(a.first().copied());
            let order_b = dpkg_order(b.first().copied());
            if order_a != order_b {
                return order_a.cmp(&order_b);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        // Digit runs, numerically.
        let (digits_a, rest_a) = take_digits(a);
        let (digits_b, rest_b) = take_digits(b);
        match compare_numeric(digits_a, digits_b) {
            Ordering::Equal => {}
            other => return other,
        }
        a = rest_a;
        b = rest_b;
    }
    Ordering::Equal
}

fn take_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Compares two digit strings as numbers of any length.
fn compare_numeric(a: &[u8], b: &[u8]) -> Ordering {
    let trim = |s: &[u8]| -> Vec<u8> { s.iter().copied().skip_while(|c| *c == b'0').collect() };
    let (a, b) = (trim(a), trim(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

fn compare_rpm(a: &str, b: &str) -> Ordering {
    let (epoch_a, rest_a) = split_epoch(a);
    let (epoch_b, rest_b) = split_epoch(b);
    let (ver_a, rel_a) = rest_a.rsplit_once('-').unwrap_or((rest_a, ""));
    let (ver_b, rel_b) = rest_b.rsplit_once('-').unwrap_or((rest_b, ""));
    epoch_a
        .cmp(&epoch_b)
        .then_with(|| rpmvercmp(ver_a.as_bytes(), ver_b.as_bytes()))
        .then_with(|| rpmvercmp(rel_a.as_bytes(), rel_b.as_bytes()))
}

/// rpm's segment comparison: alphanumeric segments compared numerically or lexically, a numeric segment
/// newer than an alphabetic one, `~` older than anything and `^` newer than the end but older than more.
fn rpmvercmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    loop {
        while a.first().is_some_and(separator) {
            a = &a[1..];
        }
        while b.first().is_some_and(separator) {
            b = &b[1..];
        }
        match (a.first(), b.first()) {
            (Some(b'~'), Some(b'~')) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            (Some(b'^'), Some(b'^')) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (Some(b'^'), None) => return Ordering::Greater,
            (None, Some(b'^')) => return Ordering::Less,
            (Some(b'^'), _) => return Ordering::Less,
            (_, Some(b'^')) => return Ordering::Greater,
            (None, _) | (_, None) => break,
            _ => {}
        }
        let numeric = a[0].is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let len_a = a.iter().position(|c| !class(c)).unwrap_or(a.len());
        let len_b = b.iter().position(|c| !class(c)).unwrap_or(b.len());
        let (seg_a, rest_a) = a.split_at(len_a);
        let (seg_b, rest_b) = b.split_at(len_b);
        if seg_b.is_empty() {
            // The segments are of different kinds: numeric is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let order = if numeric {
            compare_numeric(seg_a, seg_b)
        } else {
            seg_a.cmp(seg_b)
        };
        if order != Ordering::Equal {
            return order;
        }
        a = rest_a;
        b = rest_b;
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn debian_versions_order_like_dpkg() {
        // Cases from dpkg's own test suite and Debian policy.
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0-1", "1.0-1", Equal),
            ("1:1.0", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0-1", "1.0-1+b1", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("1.2.3", "1.2.10", Less),
            ("a", "b", Less),
            ("1.0a", "1.0+", Less),
            ("0001.0", "1.0", Equal),
            ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1", Greater),
            ("3.0.15-1~deb12u1", "3.0.11-1~deb12u2", Greater),
            ("2.36-9+deb12u10", "2.36-9+deb12u9", Greater),
            ("252.38-1~deb12u1", "252.39-1~deb12u1", Less),
            ("1.0-1-1", "1.0-1", Greater),
            ("9", "10", Less),
            ("1.0", "1.0-0", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                compare_versions(VersionScheme::Debian, a, b),
                want,
                "{a} vs {b}"
            );
            assert_eq!(
                compare_versions(VersionScheme::Debian, b, a),
                want.reverse(),
                "{b} vs {a}"
            );
        }
    }

    #[test]
    fn rpm_versions_order_like_rpmvercmp() {
        // Cases from rpm's rpmvercmp tests.
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0", "2.0a", Less),
            ("2.0a", "2.0.1", Less),
            ("1.0a", "1.0b", Less),
            ("10", "9", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1:1.0-1", "2.0-1", Greater),
            ("5.5p1", "5.5p10", Less),
            ("xyz.4", "8", Less),
            ("1.0.0", "1.0", Greater),
            ("1.el9", "1.fc40", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                compare_versions(VersionScheme::Rpm, a, b),
                want,
                "{a} vs {b}"
            );
            assert_eq!(
                compare_versions(VersionScheme::Rpm, b, a),
                want.reverse(),
                "{b} vs {a}"
            );
        }
    }

    #[test]
    fn debian_order_agrees_with_dpkg_itself() {
        // dpkg --compare-versions is the authority; check a spread of tricky pairs against it.
        let pairs = [
            ("1.0~rc1", "1.0"),
            ("1:0.9", "1.0"),
            ("1.0+dfsg-1", "1.0-1"),
            ("1.0.0~beta", "1.0.0~alpha"),
            ("7.88.1-10+deb12u8", "7.88.1-10+deb12u12"),
            ("2.0-1", "2.0-1.1"),
            ("0.0~git20230101.abc-1", "0.0~git20221231.fff-2"),
        ];
        for (a, b) in pairs {
            let ours = compare_versions(VersionScheme::Debian, a, b);
            let status = |op: &str| {
                std::process::Command::new("dpkg")
                    .args(["--compare-versions", a, op, b])
                    .status()
                    .expect("dpkg runs")
                    .success()
            };
            let theirs = if status("lt") {
                Less
            } else if status("gt") {
                Greater
            } else {
                Equal
            };
            assert_eq!(ours, theirs, "{a} vs {b}");
        }
    }
}
