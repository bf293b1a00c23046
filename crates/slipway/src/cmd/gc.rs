//! `slipway gc`: apply the streams' retention and free the disk it allows.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use slipway_engine::{BlobReason, GcReport};

use crate::output::{open_engine, print_json, TerminalProgress};

/// Delete what the streams' retention no longer keeps.
///
/// Per stream, `retention = { keep-releases = N, keep-days = D }`: releases beyond the newest N that are
/// not revoked expire (they leave the public tree and the stream and stay in the releases index; the
/// current release never expires), and composes older than D days are deleted unless a listed release,
/// a revoked release that may still be unrevoked, an incident naming them, or their being the newest (or
/// newest passing) compose keeps them. Blobs are deleted when no remaining compose names them, and so are files in the blob store
/// that nothing names (left by an interrupted run). Without retention settings nothing is deleted.
///
/// Fails while `slipway run` is in the middle of a cycle; --dry-run never does.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Report what would be deleted and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let progress = Arc::new(TerminalProgress::new());
    let engine = open_engine(config, progress.clone()).await?;
    let report = engine.gc(args.dry_run).await;
    progress.finish();
    let report = report?;
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &GcReport) {
    let (would, verb) = if report.dry_run {
        ("would be ", "would free")
    } else {
        ("", "freed")
    };
    for release in &report.expired_releases {
        println!(
            "release {} {} {would}expired (compose {})",
            release.stream, release.version, release.compose
        );
    }
    for compose in &report.deleted_composes {
        println!("compose {compose} {would}deleted");
    }
    for blob in &report.deleted_blobs {
        let why = match blob.reason {
            BlobReason::Planned => "of deleted composes",
            BlobReason::Unreferenced => "named by no compose",
            BlobReason::Partial => "an interrupted write",
        };
        println!(
            "blob {} ({} bytes, {why}) {would}deleted",
            blob.name, blob.size
        );
    }
    for kept in &report.kept {
        let reasons: Vec<String> = kept.reasons.iter().map(ToString::to_string).collect();
        println!("compose {} kept: {}", kept.compose, reasons.join("; "));
    }
    if report.republished {
        println!("public tree published again without the expired releases");
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    println!(
        "{} release(s) expired, {} compose(s) and {} blob(s) deleted: {verb} {} bytes",
        report.expired_releases.len(),
        report.deleted_composes.len(),
        report.deleted_blobs.len(),
        report.bytes_freed
    );
}
