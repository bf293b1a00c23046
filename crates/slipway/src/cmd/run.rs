//! `slipway run`: the pipeline.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::output::{open_engine, print_json, TerminalProgress};

/// Run the pipeline for every stream.
///
/// Every cycle first refreshes the package sources (signed indexes, checked checksums) and composes a
/// stream only if its recipe or a package in its last lock changed; otherwise it records
/// `compose.skipped`. What is composed is then boot-tested, gated, released and published.
///
/// With --once, runs one cycle over every stream and exits. It first finishes whatever an interrupted
/// earlier run left, so running again after a kill never releases twice. A stream whose newest compose
/// failed is tried again.
///
/// Without --once, runs as a daemon: polls the sources and recipe files every --interval (default: the
/// config's `[watch] poll-interval-secs`) and runs a cycle for the streams a change touched, plus each
/// stream's nightly (`nightly = "HH:MM"` UTC in its `[[stream]]`) at the first poll after its time.
///
/// After each cycle (and each poll), announcements that are due are sent (see `slipway outbox`) and
/// incident changes an external tracker missed are sent again (see `slipway incidents`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run one cycle and exit.
    #[arg(long)]
    once: bool,
    /// Compose every stream even if nothing changed (with --once).
    #[arg(long, requires = "once")]
    force: bool,
    /// Time between polls when running as a daemon, such as 15m or 1h.
    #[arg(long, value_parser = parse_duration)]
    interval: Option<Duration>,
    /// Print the cycle's report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 24h, 90m or 30s"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit in {text:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let progress = Arc::new(TerminalProgress::new());
    let engine = open_engine(config, progress.clone()).await?;
    if args.once {
        let report = engine
            .run_cycle(&slipway_engine::CycleOptions::manual(args.force))
            .await;
        // Announcements are sent even when the cycle failed: what it queued before failing is due.
        deliver(&engine).await;
        progress.finish();
        let report = report?;
        print_report(&report, args.json)?;
        return Ok(if report.all_good() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        });
    }
    let interval = args.interval.unwrap_or(Duration::from_secs(
        engine.config().watch.poll_interval_secs.max(1),
    ));
    loop {
        match engine.watch_tick().await {
            Ok(Some(report)) => {
                progress.finish();
                print_report(&report, args.json)?;
            }
            Ok(None) => tracing::info!("nothing changed"),
            // A daemon outlives a bad poll: a broken recipe edit or a full disk is reported and retried.
            Err(err) => {
                progress.finish();
                eprintln!("error: {err:#}");
            }
        }
        // Every poll, so a failed announcement is retried when due even when nothing else happens.
        deliver(&engine).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Sends the announcements that are due and the incident changes the external tracker has not received.
/// A mail server or tracker that is down only delays them: each failure is a warning, and what failed
/// stays queued (`slipway outbox` and `slipway status` show it).
async fn deliver(engine: &slipway_engine::Engine) {
    let report = engine.deliver_notifications().await;
    for error in &report.errors {
        eprintln!("warning: {error}");
    }
    match engine.sync_incidents().await {
        Ok(sync) if sync.failed > 0 => eprintln!(
            "warning: the incident tracker took {} change(s) and refused {}; {} stay pending",
            sync.done, sync.failed, sync.pending
        ),
        Ok(_) => {}
        Err(err) => eprintln!("warning: incident changes were not mirrored: {err}"),
    }
}

fn print_report(report: &slipway_engine::CycleReport, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(report);
    }
    for stream in &report.streams {
        if stream.skipped {
            println!(
                "{}: unchanged since compose {}; nothing built",
                stream.stream,
                stream.compose.as_deref().unwrap_or("-")
            );
            if let Some(release) = &stream.release {
                println!(
                    "  current release stays {} (compose {})",
                    release.version, release.compose
                );
            }
            continue;
        }
        match (&stream.release, &stream.problem) {
            (Some(release), None) => println!(
                "{}: released {} (compose {})",
                stream.stream, release.version, release.compose
            ),
            (release, Some(problem)) => {
                println!("{}: no new release: {problem}", stream.stream);
                if let Some(release) = release {
                    println!(
                        "  current release stays {} (compose {})",
                        release.version, release.compose
                    );
                }
            }
            (None, None) => println!("{}: nothing released", stream.stream),
        }
    }
    println!("site: {}", report.index_html.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("soon").is_err());
    }
}
