//! `slipway run`: the pipeline.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::output::{open_engine, print_json, TerminalProgress};

/// Run the pipeline for every stream.
///
/// With --once, runs one cycle (compose, boot test, gate, release, publish) and exits. It first finishes
/// whatever an interrupted earlier run left, so running again after a kill never releases twice. Without
/// --once, runs a cycle every --interval until stopped.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run one cycle and exit.
    #[arg(long)]
    once: bool,
    /// Time between cycles when running as a daemon, such as 24h or 90m.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    interval: Duration,
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
    loop {
        let report = engine.run_once().await;
        progress.finish();
        let report = report?;
        if args.json {
            print_json(&report)?;
        } else {
            for stream in &report.streams {
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
        }
        if args.once {
            return Ok(if report.all_good() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
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
