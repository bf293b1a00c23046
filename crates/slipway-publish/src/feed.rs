//! `feed.xml`: an Atom feed (RFC 4287) of what happened to the site's streams: releases, revocations, stale
//! streams and ends of life, newest first.

use std::fmt::Write as _;

use jiff::Timestamp;
use slipway_model::ReleaseState;

use crate::html::{escape, StreamView};
use crate::metadata::{archive_path, is_served, location, release_dir, rfc3339};

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
    let mut entries = Vec::new();
    for view in streams {
        collect(&mut entries, view, base_url, generated_at);
    }
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

fn collect(
    entries: &mut Vec<Entry>,
    view: &StreamView<'_>,
    base_url: Option<&str>,
    generated_at: Timestamp,
) {
    let stream = &view.stream.name;
    let page = location(base_url, &format!("index.html#stream-{stream}"));
    for r in view.releases {
        let release = &r.release;
        let version = release.version.to_string();
        // A pending release is published by the very switch that makes this feed readable.
        let published = match release.state {
            ReleaseState::Pending => Some(generated_at),
            _ => release.published_at,
        };
        if let Some(at) = published {
            let link = if is_served(release.state) {
                location(base_url, &format!("{}/", release_dir(stream, r)))
            } else {
                page.clone()
            };
            entries.push(Entry {
                id: format!("urn:slipway:{stream}:{version}:released"),
                title: format!("{stream} {version} released"),
                updated: at,
                author: None,
                link,
                summary: format!(
                    "Release {version} of {stream}, compose {}, with {} file{}.",
                    release.compose,
                    r.files.len(),
                    if r.files.len() == 1 { "" } else { "s" }
                ),
            });
        }
        if release.state == ReleaseState::Revoked {
            if let Some(note) = &release.revocation {
                entries.push(Entry {
                    id: format!(
                        "urn:slipway:{stream}:{version}:revoked:{}",
                        note.at.strftime("%Y%m%dT%H%M%SZ")
                    ),
                    title: format!("{stream} {version} revoked: do not use it"),
                    updated: note.at,
                    author: Some(note.author.clone()),
                    link: page.clone(),
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
                });
            }
        }
    }
    if let Some(stale) = &view.stream.stale {
        let mut summary = format!(
            "No compose of {stream} has passed its tests since {}; the stream still offers its previous \
release.",
            stale.since.strftime("%Y-%m-%d")
        );
        if let Some(url) = &stale.incident_url {
            let _ = write!(summary, " Incident: {url}");
        }
        entries.push(Entry {
            id: format!(
                "urn:slipway:{stream}:stale:{}",
                stale.since.strftime("%Y%m%dT%H%M%SZ")
            ),
            title: format!("{stream} is stale"),
            updated: stale.since,
            author: None,
            link: page.clone(),
            summary,
        });
    }
    if let Some(eol) = &view.stream.eol {
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
        entries.push(Entry {
            id: format!("urn:slipway:{stream}:eol"),
            title: format!("{stream} reached its end of life"),
            updated: eol.at,
            author: None,
            link: page,
            summary,
        });
    }
}
