//! `slipway revoke`, `unrevoke`, `release` and `eol`: a person's decisions about a stream's releases.
//!
//! Each command records its change in the store (with its event) and then, unless a running
//! `slipway run` holds the state directory, carries out the reactions at once: the public tree is
//! republished and announcements are queued and sent. A running daemon does the same at its next poll.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use slipway_engine::{Engine, OutOfCycleRequest, RevocationOutcome};
use slipway_model::ComposeId;

use crate::cmd::verdict::default_author;
use crate::output::{open_engine, print_json, TerminalProgress};

/// Withdraw a release as bad.
///
/// The release is marked revoked with the reason and author; the stream falls back to the newest
/// release before it that is not revoked, and the stream metadata never points at a revoked release.
/// The releases index keeps the entry with the reason, the download page warns that it must not be
/// used, a `release.revoked` event is recorded and the revocation is announced. Revoking the only
/// release leaves the stream empty, with a banner saying so. `slipway unrevoke` takes it back.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The stream, as named in the config.
    stream: String,
    /// The release's version, such as 20261121.0.
    #[arg(value_name = "VERSION")]
    release: String,
    /// Why it is bad; published next to the release and in the announcement.
    #[arg(long)]
    reason: String,
    /// Who revokes it; defaults to $SUDO_USER, $USER, $LOGNAME or "unknown".
    #[arg(long)]
    author: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// Take a revocation back: the release is served again (and is current again if it is the newest good
/// one). The revocation stays in the release's history.
#[derive(Debug, clap::Args)]
pub struct UnrevokeArgs {
    /// The stream, as named in the config.
    stream: String,
    /// The release's version, such as 20261121.0.
    #[arg(value_name = "VERSION")]
    release: String,
    /// Why the revocation was a mistake; kept in the history.
    #[arg(long)]
    reason: String,
    /// Who takes it back; defaults to $SUDO_USER, $USER, $LOGNAME or "unknown".
    #[arg(long)]
    author: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// Release out of cycle: now, without waiting for the stream's release day.
///
/// Releases the newest compose of the stream that passed its gate and is not released yet (or the one
/// given with --compose). With --emergency it is a security release: name the advisories it fixes with
/// --advisory; they are listed in the announcement and the release notes with the reason. Streams
/// release security fixes at or above their `security-threshold` on their own; this command is for
/// everything else that cannot wait.
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The stream, as named in the config.
    stream: String,
    /// Why it cannot wait; given in the announcement and the release notes.
    #[arg(long)]
    reason: String,
    /// A security emergency; needs --advisory.
    #[arg(long, requires = "advisory")]
    emergency: bool,
    /// An advisory the release fixes, such as DSA-5678-1 or CVE-2026-1234; repeat for several.
    #[arg(long = "advisory", value_name = "ID", requires = "emergency")]
    advisory: Vec<String>,
    /// The compose to release instead of the newest that passed.
    #[arg(long)]
    compose: Option<String>,
    /// Who asks; defaults to $SUDO_USER, $USER, $LOGNAME or "unknown".
    #[arg(long)]
    author: Option<String>,
    /// Print the release as JSON.
    #[arg(long)]
    json: bool,
}

/// End a stream's life.
///
/// One command: the stream composes and releases no more, its stream metadata and download page mark it
/// end of life with a pointer to the successor stream, its releases index is archived under
/// `archive/<stream>/`, and the end is announced. Its releases stay listed for whoever still needs them.
#[derive(Debug, clap::Args)]
pub struct EolArgs {
    /// The stream that ends.
    stream: String,
    /// The stream its users should move to.
    #[arg(long)]
    successor: Option<String>,
    /// Who ends it; defaults to $SUDO_USER, $USER, $LOGNAME or "unknown".
    #[arg(long)]
    author: Option<String>,
}

pub async fn revoke(config: &Path, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let author = args.author.unwrap_or_else(default_author);
    let (engine, progress) = open(config).await?;
    let outcome = engine
        .revoke(&args.stream, &args.release, &args.reason, &author)
        .await?;
    let settled = finish(&engine, &progress).await?;
    report_revocation(&outcome, "revoked", settled, args.json)
}

pub async fn unrevoke(config: &Path, args: UnrevokeArgs) -> anyhow::Result<ExitCode> {
    let author = args.author.unwrap_or_else(default_author);
    let (engine, progress) = open(config).await?;
    let outcome = engine
        .unrevoke(&args.stream, &args.release, &args.reason, &author)
        .await?;
    let settled = finish(&engine, &progress).await?;
    report_revocation(&outcome, "restored", settled, args.json)
}

pub async fn release(config: &Path, args: ReleaseArgs) -> anyhow::Result<ExitCode> {
    let request = OutOfCycleRequest {
        compose: args.compose.map(ComposeId),
        emergency: args.emergency,
        advisories: args.advisory,
        reason: args.reason,
        author: args.author.unwrap_or_else(default_author),
    };
    let (engine, progress) = open(config).await?;
    let release = engine.release_out_of_cycle(&args.stream, &request).await?;
    let settled = finish(&engine, &progress).await?;
    if args.json {
        let release = engine
            .store()
            .releases(&release.stream)
            .await?
            .into_iter()
            .find(|r| r.version == release.version)
            .unwrap_or(release);
        print_json(&release)?;
    } else {
        println!(
            "{} {} released out of cycle (compose {})",
            release.stream, release.version, release.compose
        );
        print_pending(settled);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn eol(config: &Path, args: EolArgs) -> anyhow::Result<ExitCode> {
    let author = args.author.unwrap_or_else(default_author);
    let (engine, progress) = open(config).await?;
    let ended = engine
        .end_of_life(&args.stream, args.successor.as_deref(), &author)
        .await?;
    let settled = finish(&engine, &progress).await?;
    println!(
        "{} reached its end of life{}{}",
        args.stream,
        ended
            .last_release
            .map(|v| format!("; its last release is {v}"))
            .unwrap_or_default(),
        ended
            .successor
            .map(|s| format!("; users are pointed to {s}"))
            .unwrap_or_default()
    );
    print_pending(settled);
    Ok(ExitCode::SUCCESS)
}

async fn open(config: &Path) -> anyhow::Result<(Engine, Arc<TerminalProgress>)> {
    let progress = Arc::new(TerminalProgress::new());
    let engine = open_engine(config, progress.clone()).await?;
    Ok((engine, progress))
}

/// Republishes and announces now when no daemon holds the state directory; returns whether it did.
async fn finish(engine: &Engine, progress: &TerminalProgress) -> anyhow::Result<bool> {
    let settled = engine.settle().await;
    if matches!(settled, Ok(true)) {
        let report = engine.deliver_notifications().await;
        for error in &report.errors {
            eprintln!("warning: {error}");
        }
    }
    progress.finish();
    Ok(settled?)
}

fn print_pending(settled: bool) {
    if settled {
        println!("public tree republished; announcements sent or queued (see `slipway outbox`)");
    } else {
        println!(
            "a running `slipway run` holds the state directory: it republishes and announces at its next poll"
        );
    }
}

fn report_revocation(
    outcome: &RevocationOutcome,
    verb: &str,
    settled: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        print_json(outcome)?;
        return Ok(ExitCode::SUCCESS);
    }
    let release = &outcome.release;
    println!("{} {} {verb}", release.stream, release.version);
    match &outcome.current {
        Some(current) => println!(
            "current release of {}: {} (compose {})",
            release.stream, current.version, current.compose
        ),
        None => println!(
            "{} has no good release left: its stream metadata lists none",
            release.stream
        ),
    }
    print_pending(settled);
    Ok(ExitCode::SUCCESS)
}
