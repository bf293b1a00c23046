//! `publish`: the public tree of a stream with 500 releases, republished after a revocation, against a
//! stream of one release.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use jiff::{Timestamp, ToSpan};
use slipway_exec::{CommandRunner, SystemRunner};
use slipway_model::{
    sha256_hex, ArtifactKind, ComposeId, OutputFormat, Release, ReleaseState, RevocationNote,
    Version,
};
use slipway_publish::{GpgSigner, PublishFile, ReleaseInput, SiteInput, StreamInput};

const RELEASES: usize = 500;

/// The same benchmark measured on 2026-11-21, before release directories moved into a pool, when every
/// publish built a generation holding a hard link to every file of every release and synced each directory.
/// Kept in the section so that the change it made stays visible when the figures above are measured again.
const BEFORE: &str = "\
Before the release pool (every publish hard-linked every file of every release into a new generation and \
synced each directory), the same run measured:

| publish | ms | ÷ 1-release publish |
| --- | ---: | ---: |
| 1 release, first publish | 344 | 1.00× |
| 1 release, republished unchanged | 65 | 0.19× |
| 500 releases, first publish (all signed, once) | 238901 | 694.38× |
| 500 releases, after revoking an older one | 1248 | 3.63× |
| 500 releases, after revoking the newest | 637 | 1.85× |
| 500 releases, republished unchanged | 1218 | 3.54× |
| 500 releases + 1 new release (signed) | 2264 | 6.58× |

Republishing grew with the history (about 2.3 ms per release); it now writes the metadata and the new \
releases only: the stream JSON, releases index, page and feed (unchanged keys are linked), a stat per \
release and one link per stream. A stream whose input did not change has its documents and link linked \
from the current generation, so a republish with nothing new writes the page and feed alone. What was \
then left growing with the history, a changed stream's releases index (about 600 bytes per release, read \
back to check the carried-over releases and written anew), is now split by the release version: a publish \
reads, writes and checks the current index, which holds the newest month, and the year parts whose releases \
changed; the year parts are a set in the pool shared by the generations that show them, one link per stream.
";
/// How many times each fast figure is measured; the median is reported.
const ROUNDS: usize = 5;

/// One release of the benchmark stream: two small images of distinct content, as blobs.
fn release(blobs: &Path, index: usize, start: Timestamp) -> anyhow::Result<ReleaseInput> {
    let at = start.checked_add((index as i64 * 24).hours())?;
    let version = Version::new(at, 0);
    let mut files = Vec::new();
    for (format, suffix) in [
        (OutputFormat::Qcow2, "qcow2"),
        (OutputFormat::RawXz, "raw.xz"),
    ] {
        let content = format!("{suffix} image of release {version}\n").repeat(40);
        let sha256 = sha256_hex(content.as_bytes());
        let source = blobs.join(sha256.as_str());
        std::fs::write(&source, &content)?;
        files.push(PublishFile {
            kind: ArtifactKind::Image(format),
            file_name: format!("bench-{version}.{suffix}"),
            sha256,
            size: content.len() as u64,
            source,
        });
    }
    Ok(ReleaseInput {
        release: Release {
            stream: "bench".into(),
            version: version.clone(),
            compose: ComposeId(format!("bench-{version}")),
            state: ReleaseState::Superseded,
            created_at: at,
            published_at: Some(at),
            revocation: None,
        },
        files,
    })
}

/// Sets the states as the store keeps them: the newest release that is not revoked is published.
fn settle(releases: &mut [ReleaseInput]) {
    let mut current_seen = false;
    for r in releases.iter_mut() {
        if r.release.state == ReleaseState::Revoked {
            continue;
        }
        r.release.state = if current_seen {
            ReleaseState::Superseded
        } else {
            ReleaseState::Published
        };
        current_seen = true;
    }
}

fn site(public: &Path, mut releases: Vec<ReleaseInput>, at: Timestamp) -> SiteInput {
    releases.sort_by(|a, b| b.release.version.cmp(&a.release.version));
    settle(&mut releases);
    SiteInput {
        publish_dir: public.to_path_buf(),
        base_url: Some("https://images.example.org/pub".into()),
        title: "benchmark".into(),
        streams: vec![StreamInput {
            name: "bench".into(),
            description: "a stream with a long history".into(),
            architecture: "amd64".into(),
            releases,
            stale: None,
            eol: None,
        }],
        generated_at: at,
        durable: true,
        known_fingerprints: Default::default(),
    }
}

async fn timed_publish(input: &SiteInput, signer: &GpgSigner) -> anyhow::Result<f64> {
    let start = Instant::now();
    slipway_publish::publish(input, signer).await?;
    Ok(start.elapsed().as_secs_f64())
}

fn revoke(r: &mut ReleaseInput, at: Timestamp) {
    r.release.state = ReleaseState::Revoked;
    r.release.revocation = Some(RevocationNote {
        reason: "benchmark".into(),
        author: "xtask".into(),
        at,
    });
}

/// Publishes 500 releases, then measures republishing after revoking one, publishing one more, and the same
/// operations on a stream of one release.
pub async fn publish_bench(work: &Path) -> anyhow::Result<String> {
    let scratch = work.join("publish");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let blobs = scratch.join("blobs");
    std::fs::create_dir_all(&blobs)?;
    let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
    let signer = GpgSigner::generate(
        runner,
        &scratch.join("release.key"),
        "Benchmark Releases <bench@example.org>",
    )
    .await?;
    let start: Timestamp = "2020-01-01T12:00:00Z".parse()?;
    let now: Timestamp = "2026-11-21T12:00:00Z".parse()?;

    // A stream of one release: its first publish (one release signed), then republishing it unchanged.
    let mut single_first = Vec::new();
    let mut single_again = Vec::new();
    for round in 0..ROUNDS {
        let public = scratch.join(format!("single-{round}")).join("public");
        std::fs::create_dir_all(public.parent().unwrap_or(&scratch))?;
        let one = vec![release(&blobs, 0, start)?];
        single_first.push(timed_publish(&site(&public, one.clone(), now), &signer).await?);
        single_again.push(timed_publish(&site(&public, one, now), &signer).await?);
    }

    // 500 releases, published at once (every one signed).
    eprintln!("publishing {RELEASES} releases …");
    let public = scratch.join("history").join("public");
    std::fs::create_dir_all(public.parent().unwrap_or(&scratch))?;
    let mut history = (0..RELEASES)
        .map(|i| release(&blobs, i, start))
        .collect::<anyhow::Result<Vec<_>>>()?;
    history.reverse();
    let full = timed_publish(&site(&public, history.clone(), now), &signer).await?;

    // Revoking an older release, one at a time, republishing after each.
    let mut revoke_older = Vec::new();
    for round in 0..ROUNDS {
        revoke(&mut history[10 + round * 7], now);
        revoke_older.push(timed_publish(&site(&public, history.clone(), now), &signer).await?);
    }
    // Revoking the newest: the stream falls back to the one before.
    revoke(&mut history[0], now);
    let revoke_newest = timed_publish(&site(&public, history.clone(), now), &signer).await?;
    // Republishing with nothing changed.
    let mut unchanged = Vec::new();
    for _ in 0..ROUNDS {
        unchanged.push(timed_publish(&site(&public, history.clone(), now), &signer).await?);
    }
    // One new release on top of the history.
    let mut add_one = Vec::new();
    for round in 0..ROUNDS {
        let mut next = release(&blobs, RELEASES + round, start)?;
        next.release.state = ReleaseState::Pending;
        history.insert(0, next);
        add_one.push(timed_publish(&site(&public, history.clone(), now), &signer).await?);
    }

    let first = crate::sections::median(single_first);
    let again = crate::sections::median(single_again);
    let older = crate::sections::median(revoke_older);
    let unchanged = crate::sections::median(unchanged);
    let add = crate::sections::median(add_one);
    let ms = |s: f64| format!("{:.0}", s * 1000.0);
    let ratio = |s: f64, base: f64| format!("{:.2}×", s / base);
    Ok(format!(
        "## Publish\n\n\
A stream of {RELEASES} releases (two small images each), republished; run on {}. Medians of {ROUNDS} runs \
except where one figure is given. Baselines: the first publish of a stream with one release (its two \
images and CHECKSUM signed) and republishing that stream unchanged.\n\n\
| publish | ms | ÷ 1-release publish | ÷ 1-release republish |\n\
| --- | ---: | ---: | ---: |\n\
| 1 release, first publish | {} | 1.00× | {} |\n\
| 1 release, republished unchanged | {} | {} | 1.00× |\n\
| {RELEASES} releases, first publish (all signed, once) | {} | {} | {} |\n\
| {RELEASES} releases, after revoking an older one | {} | {} | {} |\n\
| {RELEASES} releases, after revoking the newest | {} | {} | {} |\n\
| {RELEASES} releases, republished unchanged | {} | {} | {} |\n\
| {RELEASES} releases + 1 new release (signed) | {} | {} | {} |\n\n\
Goal: republishing after a revocation with {RELEASES} releases well under 1 s (the revocation end to end, \
command to republished tree, ≤ 2 s).\n\n{BEFORE}",
        Timestamp::now().strftime("%Y-%m-%d"),
        ms(first),
        ratio(first, again),
        ms(again),
        ratio(again, first),
        ms(full),
        ratio(full, first),
        ratio(full, again),
        ms(older),
        ratio(older, first),
        ratio(older, again),
        ms(revoke_newest),
        ratio(revoke_newest, first),
        ratio(revoke_newest, again),
        ms(unchanged),
        ratio(unchanged, first),
        ratio(unchanged, again),
        ms(add),
        ratio(add, first),
        ratio(add, again),
    ))
}
