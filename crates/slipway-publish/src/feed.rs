//! `feed.xml`: an Atom feed (RFC 4287) of what happened to the site's streams: releases, revocations, stale
//! streams and ends of life, newest first.

use std::fmt::Write as _;

use jiff::Timestamp;
use slipway_model::{ReleaseState, RevocationNote};

use crate::html::{escape, StreamView};
use crate::metadata::{archive_path, is_served, location, release_dir, rfc3339};
use crate::site::{EolInfo, ReleaseInput, StaleInfo};

/// How many entries the feed carries; readers poll it, so older ones only make it bigger.
const ENTRIES: usize = 100;

struct Entry {
    id: String,
    title: String,
    updated: Timestamp,
    author: Option<String>,
    link: String,
    summary: String,
}

/// Renders the feed. `base_url` makes links absolute; without it they are relative to the feed, which Atom
/// allows.
pub(crate) fn feed_xml(
    title: &str,
    generated_at: Timestamp,
    base_url: Option<&str>,
    streams: &[StreamView<'_>],
) -> String {
    // Every happening is listed cheaply first; only those that can make the cut are written out, since a
    // long-lived site has thousands of releases and the feed carries a hundred.
    let mut happenings = Vec::new();
    for view in streams {
        happenings_of(&mut happenings, view, generated_at, ENTRIES);
    }
    // The hundredth newest time is found without sorting the whole history. Entries as new as it may tie
    // with the last one kept and win on their id, so all of them are written.
    let cutoff = (happenings.len() > ENTRIES).then(|| {
        let (_, nth, _) =
            happenings.select_nth_unstable_by_key(ENTRIES - 1, |h| std::cmp::Reverse(h.updated()));
        nth.updated()
    });
    let mut entries: Vec<Entry> = happenings
        .iter()
        .filter(|h| cutoff.is_none_or(|cutoff| h.updated() >= cutoff))
        .map(|h| h.entry(base_url))
        .collect();
    // Newest first; ties keep a stable order by id.
    entries.sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| a.id.cmp(&b.id)));
    entries.truncate(ENTRIES);

    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    xml.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    let feed_id = match base_url {
        Some(_) => location(base_url, "feed.xml"),
        None => "urn:slipway:feed".to_string(),
    };
    let _ = writeln!(xml, "  <id>{}</id>", escape(&feed_id));
    let _ = writeln!(xml, "  <title>{}</title>", escape(title));
    let _ = writeln!(xml, "  <updated>{}</updated>", rfc3339(generated_at));
    let _ = writeln!(xml, "  <author><name>{}</name></author>", escape(title));
    let _ = writeln!(
        xml,
        "  <generator version=\"{}\">slipway</generator>",
        env!("CARGO_PKG_VERSION")
    );
    if base_url.is_some() {
        let _ = writeln!(
            xml,
            "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>",
            escape(&location(base_url, "feed.xml"))
        );
    }
    let _ = writeln!(
        xml,
        "  <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
        escape(&location(base_url, "index.html"))
    );
    for e in &entries {
        xml.push_str("  <entry>\n");
        let _ = writeln!(xml, "    <id>{}</id>", escape(&e.id));
        let _ = writeln!(xml, "    <title>{}</title>", escape(&e.title));
        let _ = writeln!(xml, "    <updated>{}</updated>", rfc3339(e.updated));
        if let Some(author) = &e.author {
            let _ = writeln!(xml, "    <author><name>{}</name></author>", escape(author));
        }
        let _ = writeln!(
            xml,
            "    <link rel=\"alternate\" href=\"{}\"/>",
            escape(&e.link)
        );
        let _ = writeln!(
            xml,
            "    <summary type=\"text\">{}</summary>",
            escape(&e.summary)
        );
        xml.push_str("  </entry>\n");
    }
    xml.push_str("</feed>\n");
    xml
}

/// Something the feed may tell, before it is written out.
enum Happening<'v, 'a> {
    Released {
        view: &'v StreamView<'a>,
        release: &'a ReleaseInput,
        at: Timestamp,
    },
    Revoked {
        view: &'v StreamView<'a>,
        release: &'a ReleaseInput,
        note: &'a RevocationNote,
    },
    Stale {
        view: &'v StreamView<'a>,
        stale: &'a StaleInfo,
    },
    Eol {
        view: &'v StreamView<'a>,
        eol: &'a EolInfo,
    },
}

/// Lists a stream's happenings into `happenings`: every revocation, the stale and end-of-life markers, and
/// the releases that can be among the `keep` newest entries of the feed.
///
/// Releases come newest first, and are published in about that order: once `keep` of them are listed, a
/// release published before the oldest of those has `keep` newer entries in this stream alone and is
/// passed over, so that a long history costs a comparison per release rather than an entry to sort.
fn happenings_of<'v, 'a>(
    happenings: &mut Vec<Happening<'v, 'a>>,
    view: &'v StreamView<'a>,
    generated_at: Timestamp,
    keep: usize,
) {
    let mut listed = 0;
    let mut floor = Timestamp::MAX;
    for r in view.releases {
        let release = &r.release;
        // A pending release is published by the very switch that makes this feed readable.
        let published = match release.state {
            ReleaseState::Pending => Some(generated_at),
            _ => release.published_at,
        };
        if let Some(at) = published {
            if listed < keep {
                floor = floor.min(at);
                listed += 1;
            }
            if listed < keep || at >= floor {
                happenings.push(Happening::Released {
                    view,
                    release: r,
                    at,
                });
            }
        }
        if release.state == ReleaseState::Revoked {
            if let Some(note) = &release.revocation {
                happenings.push(Happening::Revoked {
                    view,
                    release: r,
                    note,
                });
            }
        }
    }
    if let Some(stale) = &view.stream.stale {
        happenings.push(Happening::Stale { view, stale });
    }
    if let Some(eol) = &view.stream.eol {
        happenings.push(Happening::Eol { view, eol });
    }
}

impl Happening<'_, '_> {
    fn updated(&self) -> Timestamp {
        match self {
            Self::Released { at, .. } => *at,
            Self::Revoked { note, .. } => note.at,
            Self::Stale { stale, .. } => stale.since,
            Self::Eol { eol, .. } => eol.at,
        }
    }

    fn entry(&self, base_url: Option<&str>) -> Entry {
        let view = match self {
            Self::Released { view, .. }
            | Self::Revoked { view, .. }
            | Self::Stale { view, .. }
            | Self::Eol { view, .. } => view,
        };
        let stream = &view.stream.name;
        let page = location(base_url, &format!("index.html#stream-{stream}"));
        match self {
            Self::Released { release: r, at, .. } => {
                let release = &r.release;
                let version = release.version.to_string();
                let link = if is_served(release.state) {
                    location(base_url, &format!("{}/", release_dir(stream, r)))
                } else {
                    page
                };
                Entry {
                    id: format!("urn:slipway:{stream}:{version}:released"),
                    title: format!("{stream} {version} released"),
                    updated: *at,
                    author: None,
                    link,
                    summary: format!(
                        "Release {version} of {stream}, compose {}, with {} file{}.",
                        release.compose,
                        r.files.len(),
                        if r.files.len() == 1 { "" } else { "s" }
                    ),
                }
            }
            Self::Revoked {
                release: r, note, ..
            } => {
                let version = r.release.version.to_string();
                Entry {
                    id: format!(
                        "urn:slipway:{stream}:{version}:revoked:{}",
                        note.at.strftime("%Y%m%dT%H%M%SZ")
                    ),
                    title: format!("{stream} {version} revoked: do not use it"),
                    updated: note.at,
                    author: Some(note.author.clone()),
                    link: page,
                    summary: format!(
                        "Release {version} of {stream} was revoked by {}: {}. It was bad and must not be \
used; its files are withdrawn and the stream points at {}.",
                        note.author,
                        note.reason,
                        view.latest.map_or_else(
                            || "no release".to_string(),
                            |l| format!("release {}", l.release.version)
                        )
                    ),
                }
            }
            Self::Stale { stale, .. } => {
                let mut summary = format!(
                    "No compose of {stream} has passed its tests since {}; the stream still offers its \
previous release.",
                    stale.since.strftime("%Y-%m-%d")
                );
                if let Some(url) = &stale.incident_url {
                    let _ = write!(summary, " Incident: {url}");
                }
                Entry {
                    id: format!(
                        "urn:slipway:{stream}:stale:{}",
                        stale.since.strftime("%Y%m%dT%H%M%SZ")
                    ),
                    title: format!("{stream} is stale"),
                    updated: stale.since,
                    author: None,
                    link: page,
                    summary,
                }
            }
            Self::Eol { eol, .. } => {
                let mut summary = format!(
                    "{stream} reached its end of life on {} and gets no more releases.",
                    eol.at.strftime("%Y-%m-%d")
                );
                if let Some(successor) = &eol.successor {
                    let _ = write!(summary, " Move to {successor}.");
                }
                let _ = write!(
                    summary,
                    " Its releases index is archived at {}.",
                    location(base_url, &archive_path(stream, eol))
                );
                Entry {
                    id: format!("urn:slipway:{stream}:eol"),
                    title: format!("{stream} reached its end of life"),
                    updated: eol.at,
                    author: None,
                    link: page,
                    summary,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::StreamInput;
    use slipway_model::{ComposeId, Release, Version};

    /// A release whose publication time repeats every three versions, so that entries tie on the cut; the
    /// eighth is published long after the others, out of version order.
    fn release(stream: &str, n: u32, state: ReleaseState) -> ReleaseInput {
        let at: Timestamp = "2027-01-01T00:00:00Z".parse().expect("time");
        let at = at + jiff::SignedDuration::from_hours(i64::from(n / 3));
        let published = if n == 7 {
            at + jiff::SignedDuration::from_hours(1000)
        } else {
            at
        };
        ReleaseInput {
            release: Release {
                stream: stream.into(),
                version: Version::new(at, n),
                compose: ComposeId(format!("c-{n}")),
                state,
                created_at: at,
                published_at: Some(published),
                revocation: (state == ReleaseState::Revoked).then(|| RevocationNote {
                    reason: "bad".into(),
                    author: "alice".into(),
                    at: at + jiff::SignedDuration::from_hours(200),
                }),
            },
            files: Vec::new(),
        }
    }

    fn ids(xml: &str) -> Vec<String> {
        xml.lines()
            .filter_map(|l| l.trim().strip_prefix("<id>urn:slipway:"))
            .map(|l| l.trim_end_matches("</id>").to_string())
            .filter(|id| id != "feed")
            .collect()
    }

    #[test]
    fn the_feed_holds_the_newest_hundred_entries_in_order_however_many_there_are() {
        let streams: Vec<StreamInput> = ["a", "b"]
            .iter()
            .map(|name| StreamInput {
                name: name.to_string(),
                description: String::new(),
                architecture: "amd64".into(),
                releases: (0..150)
                    .rev()
                    .map(|n| {
                        let state = if n == 20 {
                            ReleaseState::Revoked
                        } else {
                            ReleaseState::Superseded
                        };
                        release(name, n, state)
                    })
                    .collect(),
                stale: None,
                eol: None,
            })
            .collect();
        let releases: Vec<Vec<&ReleaseInput>> = streams
            .iter()
            .map(|s| s.releases.iter().collect())
            .collect();
        let views: Vec<StreamView<'_>> = streams
            .iter()
            .zip(&releases)
            .map(|(stream, releases)| StreamView {
                stream,
                latest: None,
                releases,
            })
            .collect();
        let at: Timestamp = "2027-03-01T00:00:00Z".parse().expect("time");
        let feed = ids(&feed_xml("t", at, None, &views));

        // Every entry written out, sorted, cut: what the feed must equal.
        let mut all = Vec::new();
        for view in &views {
            happenings_of(&mut all, view, at, usize::MAX);
        }
        let mut expected: Vec<Entry> = all.iter().map(|h| h.entry(None)).collect();
        expected.sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| a.id.cmp(&b.id)));
        expected.truncate(ENTRIES);
        let expected: Vec<String> = expected
            .iter()
            .map(|e| e.id.trim_start_matches("urn:slipway:").to_string())
            .collect();
        assert_eq!(feed.len(), ENTRIES);
        assert_eq!(feed, expected);
        assert!(
            feed.iter().any(|id| id.contains(":revoked:")),
            "a late revocation of an old release is among the newest: {feed:?}"
        );
        let late = release("a", 7, ReleaseState::Superseded).release.version;
        assert!(
            feed.contains(&format!("a:{late}:released")),
            "an old release published late is among the newest: {feed:?}"
        );
    }
}
