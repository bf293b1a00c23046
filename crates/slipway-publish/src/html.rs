//! `index.html`: one self-contained download page (inline CSS, no scripts, nothing fetched from elsewhere).

use std::fmt::Write as _;

use jiff::Timestamp;

use slipway_model::ReleaseState;

use crate::metadata::{archive_path, release_dir, rfc3339};
use crate::site::{ReleaseInput, StreamInput};

/// One stream as the page and the feed show it.
pub(crate) struct StreamView<'a> {
    pub stream: &'a StreamInput,
    /// The release the stream points at, if any.
    pub latest: Option<&'a ReleaseInput>,
    /// Every release, newest first, revoked ones included.
    pub releases: &'a [&'a ReleaseInput],
}

impl StreamView<'_> {
    /// The revoked releases, newest first.
    pub(crate) fn revoked(&self) -> impl Iterator<Item = &ReleaseInput> {
        self.releases
            .iter()
            .copied()
            .filter(|r| r.release.state == ReleaseState::Revoked)
    }
}

/// Whether a link target from outside (an incident tracker) may become an `href`: only web addresses, so
/// a `javascript:` or `data:` URL is shown as text and never made clickable.
pub(crate) fn is_web_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A byte count for people: `512 B`, `1.5 KiB`, `2.0 GiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

const STYLE: &str = "
:root { color-scheme: light dark; --fg: #1d232b; --muted: #5b6573; --line: #d8dde3; --accent: #0b5cad; --bg: #ffffff; --code: #f3f5f7; }
@media (prefers-color-scheme: dark) { :root { --fg: #e4e8ed; --muted: #9aa4b1; --line: #38414c; --accent: #6cb0ff; --bg: #15191e; --code: #20262d; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 16px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; }
header, main, footer { max-width: 64rem; margin: 0 auto; padding: 0 1.25rem; }
header { padding-top: 2rem; border-bottom: 1px solid var(--line); }
h1 { margin: 0 0 .25rem; font-size: 1.9rem; }
h2 { margin: 2rem 0 .25rem; font-size: 1.4rem; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.meta { color: var(--muted); margin: .25rem 0 .75rem; }
table { width: 100%; border-collapse: collapse; margin: .5rem 0; }
th, td { text-align: left; padding: .45rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .85rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
td.size { white-space: nowrap; }
code, pre { font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; font-size: .85rem; }
td code { word-break: break-all; }
pre { background: var(--code); padding: .75rem 1rem; overflow-x: auto; border-radius: 6px; }
.links a { margin-right: 1rem; }
.empty { padding: .75rem 1rem; border: 1px dashed var(--line); border-radius: 6px; color: var(--muted); }
.banner { padding: .75rem 1rem; border-radius: 6px; border: 1px solid; margin: .75rem 0; }
.warning { border-color: #b7791f; background: rgba(214, 158, 46, .12); }
.danger { border-color: #c53030; background: rgba(229, 62, 62, .12); }
.eol { border-color: var(--muted); background: var(--code); }
.revoked td { color: var(--muted); }
footer { padding: 2rem 1.25rem; color: var(--muted); font-size: .85rem; }
";

/// Renders the page.
pub(crate) fn index_html(
    title: &str,
    generated_at: Timestamp,
    fingerprint: &str,
    streams: &[StreamView<'_>],
) -> String {
    let mut page = String::new();
    let title = escape(title);
    let fpr = escape(fingerprint);
    let generated = escape(&rfc3339(generated_at));
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title}</title>\n<link rel=\"alternate\" type=\"application/atom+xml\" title=\"{title}\" href=\"feed.xml\">\n\
<style>{STYLE}</style>\n</head>\n<body>\n\
<header>\n<h1>{title}</h1>\n<p class=\"muted\">Updated {generated}</p>\n</header>\n<main>\n"
    );
    if streams.is_empty() {
        page.push_str("<p class=\"empty\">No streams are published here yet.</p>\n");
    }
    for view in streams {
        render_stream(&mut page, view);
    }
    let _ = write!(
        page,
        "<section id=\"verify\">\n<h2>Verifying a download</h2>\n\
<p>Every release is signed with the OpenPGP key <code>{fpr}</code> \
(<a href=\"keys/release-key.asc\">release-key.asc</a>). Each release directory has a <code>CHECKSUM</code> \
file (SHA-256 sums, clearsigned) and a detached signature <code>.sig</code> beside each image.</p>\n\
<p>Check the signature on <code>CHECKSUM</code>, then the files you downloaded against it:</p>\n\
<pre>gpg --dearmor &lt; release-key.asc &gt; release-key.gpg\n\
gpgv --keyring ./release-key.gpg CHECKSUM\n\
sha256sum --ignore-missing -c CHECKSUM</pre>\n\
<p>Or check one image against its own signature:</p>\n\
<pre>gpgv --keyring ./release-key.gpg IMAGE.sig IMAGE</pre>\n\
<p class=\"muted\">Compare the key's fingerprint with one you obtained another way before you trust it.</p>\n\
</section>\n</main>\n<footer>Generated by slipway at {generated}. \
<a href=\"feed.xml\">Atom feed</a> of releases and revocations.</footer>\n</body>\n</html>\n"
    );
    page
}

fn render_stream(page: &mut String, view: &StreamView<'_>) {
    let stream = view.stream;
    let name = escape(&stream.name);
    let _ = write!(page, "<section id=\"stream-{name}\">\n<h2>{name}</h2>\n");
    if !stream.description.trim().is_empty() {
        let _ = writeln!(page, "<p>{}</p>", escape(&stream.description));
    }
    let stream_json = format!("streams/{}.json", stream.name);
    let releases_json = format!("releases/{}.json", stream.name);
    if let Some(eol) = &stream.eol {
        render_eol(page, &stream.name, eol);
    }
    let Some(latest) = view.latest else {
        if view.releases.is_empty() {
            page.push_str("<p class=\"empty\">No release yet.</p>\n");
        } else {
            page.push_str(
                "<p class=\"banner danger\" role=\"alert\"><strong>No release is available: every release \
of this stream has been revoked.</strong> Their images were bad and have been withdrawn; do not use copies \
you downloaded earlier. The stream metadata lists no image until a good release is published.</p>\n",
            );
        }
        if let Some(stale) = &stream.stale {
            render_stale(page, stale);
        }
        let _ = writeln!(
            page,
            "<p class=\"links\"><a href=\"{}\">Stream metadata (JSON)</a><a href=\"{}\">Releases index (JSON)</a></p>",
            escape(&stream_json),
            escape(&releases_json)
        );
        render_revoked(page, view);
        page.push_str("</section>\n");
        return;
    };
    let dir = release_dir(&stream.name, latest);
    let release = &latest.release;
    let when = release.published_at.unwrap_or(release.created_at);
    let _ = writeln!(
        page,
        "<p class=\"meta\">Release <strong>{}</strong> · {} · published {} · compose <code>{}</code></p>",
        escape(&release.version.to_string()),
        escape(&stream.architecture),
        escape(&when.strftime("%Y-%m-%d").to_string()),
        escape(release.compose.as_str()),
    );
    if let Some(stale) = &stream.stale {
        render_stale(page, stale);
    }
    page.push_str(
        "<table>\n<thead><tr><th>File</th><th>Size</th><th>SHA-256</th><th>Signature</th></tr></thead>\n<tbody>\n",
    );
    for file in &latest.files {
        let href = escape(&format!("{dir}/{}", file.file_name));
        let _ = writeln!(
            page,
            "<tr><td><a href=\"{href}\">{}</a></td><td class=\"size\">{}</td><td><code>{}</code></td>\
<td><a href=\"{href}.sig\">signature</a></td></tr>",
            escape(&file.file_name),
            escape(&human_size(file.size)),
            escape(file.sha256.as_str()),
        );
    }
    let _ = write!(
        page,
        "</tbody>\n</table>\n<p class=\"links\"><a href=\"{}\">CHECKSUM</a><a href=\"{}\">Stream metadata (JSON)</a>\
<a href=\"{}\">Releases index (JSON)</a><a href=\"keys/release-key.asc\">Signing key</a></p>\n",
        escape(&format!("{dir}/CHECKSUM")),
        escape(&stream_json),
        escape(&releases_json),
    );
    let total = view.releases.len();
    if total > 1 {
        let older = total - 1;
        let _ = writeln!(
            page,
            "<p class=\"muted\">{older} other release{} listed in <a href=\"{}\">the releases index</a>.</p>",
            if older == 1 { " is" } else { "s are" },
            escape(&releases_json)
        );
    }
    render_revoked(page, view);
    page.push_str("</section>\n");
}

/// The stale warning, shown beside the release the stream still offers.
fn render_stale(page: &mut String, stale: &crate::site::StaleInfo) {
    let since = escape(&stale.since.strftime("%Y-%m-%d").to_string());
    let _ = write!(
        page,
        "<p class=\"banner warning stale\" role=\"status\"><strong>Stale since {since}:</strong> no compose has \
passed its tests since then, so this stream still offers its previous release."
    );
    match stale.incident_url.as_deref() {
        Some(url) if is_web_url(url) => {
            let _ = write!(
                page,
                " The failures are tracked in <a href=\"{}\">the incident</a>.",
                escape(url)
            );
        }
        Some(url) => {
            let _ = write!(page, " The failures are tracked in {}.", escape(url));
        }
        None => {}
    }
    page.push_str("</p>\n");
}

/// The end-of-life banner: the successor, and where the releases index was archived.
fn render_eol(page: &mut String, stream: &str, eol: &crate::site::EolInfo) {
    let date = escape(&eol.at.strftime("%Y-%m-%d").to_string());
    let _ = write!(
        page,
        "<p class=\"banner eol\" role=\"status\"><strong>End of life:</strong> this stream ended on {date} and \
gets no more releases or fixes."
    );
    if let Some(successor) = &eol.successor {
        let s = escape(successor);
        let _ = write!(
            page,
            " Move to <a href=\"#stream-{s}\">{s}</a> (<a href=\"{}\">stream metadata</a>).",
            escape(&format!("streams/{successor}.json"))
        );
    }
    let _ = writeln!(
        page,
        " Its releases index is archived as <a href=\"{}\">{}</a>.</p>",
        escape(&archive_path(stream, eol)),
        escape(&archive_path(stream, eol))
    );
}

/// How many of a stream's revoked releases the page lists, newest first; the releases index lists them all.
/// A stream revokes a release now and then for as long as it lives, and the page is written on every
/// publish: the newest are the ones a reader may still hold.
pub(crate) const REVOKED_ON_PAGE: usize = 20;

/// The newest revoked releases, with the warning and the reason, and where to find the others.
fn render_revoked(page: &mut String, view: &StreamView<'_>) {
    let mut revoked = view.revoked().peekable();
    if revoked.peek().is_none() {
        return;
    }
    page.push_str(
        "<div class=\"banner danger revoked\">\n<p><strong>Revoked releases: these were bad and must not be \
used.</strong> Their files are withdrawn; if you downloaded one, replace it with the current release.</p>\n\
<table>\n<thead><tr><th>Release</th><th>Revoked</th><th>By</th><th>Reason</th></tr></thead>\n<tbody>\n",
    );
    for r in revoked.by_ref().take(REVOKED_ON_PAGE) {
        let (when, by, reason) = match &r.release.revocation {
            Some(note) => (
                note.at.strftime("%Y-%m-%d").to_string(),
                note.author.as_str(),
                note.reason.as_str(),
            ),
            None => (String::new(), "", "no reason recorded"),
        };
        let _ = writeln!(
            page,
            "<tr><td><strong>{}</strong></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.release.version.to_string()),
            escape(&when),
            escape(by),
            escape(reason)
        );
    }
    page.push_str("</tbody>\n</table>\n");
    let older = revoked.count();
    if older > 0 {
        let index = format!("releases/{}.json", view.stream.name);
        let _ = writeln!(
            page,
            "<p>{older} older revoked release(s) are not shown here; the <a href=\"{}\">releases index</a> \
lists every one, with its reason.</p>",
            escape(&index)
        );
    }
    page.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_model::{ComposeId, Release, RevocationNote, Version};

    #[test]
    fn the_page_lists_the_newest_revoked_releases_and_points_to_the_index_for_the_others() {
        let at: Timestamp = "2027-01-01T00:00:00Z".parse().expect("time");
        let releases: Vec<ReleaseInput> = (0..25u32)
            .rev()
            .map(|n| ReleaseInput {
                release: Release {
                    stream: "s".into(),
                    version: Version::new(
                        at + jiff::SignedDuration::from_hours(24 * i64::from(n)),
                        0,
                    ),
                    compose: ComposeId(format!("c-{n}")),
                    state: ReleaseState::Revoked,
                    created_at: at,
                    published_at: Some(at),
                    revocation: Some(RevocationNote {
                        reason: format!("reason {n}"),
                        author: "alice".into(),
                        at,
                    }),
                },
                files: Vec::new(),
            })
            .collect();
        let stream = StreamInput {
            name: "s".into(),
            description: String::new(),
            architecture: "amd64".into(),
            releases,
            stale: None,
            eol: None,
        };
        let refs: Vec<&ReleaseInput> = stream.releases.iter().collect();
        let view = StreamView {
            stream: &stream,
            latest: None,
            releases: &refs,
        };
        let mut page = String::new();
        render_revoked(&mut page, &view);
        // The newest twenty (versions 24 down to 5) are listed with their reasons; 4 down to 0 are not.
        assert!(page.contains("<td>reason 24</td>") && page.contains("<td>reason 5</td>"));
        assert!(!page.contains("<td>reason 4</td>"), "{page}");
        assert_eq!(page.matches("<tr><td>").count(), REVOKED_ON_PAGE);
        assert!(page.contains("5 older revoked release(s) are not shown here"));
        assert!(page.contains("href=\"releases/s.json\""));
    }

    #[test]
    fn escapes_and_sizes() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
