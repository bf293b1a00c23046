//! `slipway events`: the event log.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use slipway_engine::LogProgress;

use crate::output::open_engine;

/// Show events: every state change slipway recorded, oldest first.
///
/// With --json, one event per line (JSON Lines), with id, seq, topic, time, schema and body.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep waiting for new events and print them as they come.
    #[arg(long, short)]
    follow: bool,
    /// Print JSON Lines instead of text.
    #[arg(long)]
    json: bool,
    /// Show only the last N events (before following).
    #[arg(long, default_value_t = 50)]
    last: usize,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let store = engine.store();
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        all.extend(page);
    }
    let skip = all.len().saturating_sub(args.last);
    for event in &all[skip..] {
        print_event(event, args.json)?;
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        for event in store.events_after(after, 1000).await? {
            after = event.seq;
            print_event(&event, args.json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(event: &slipway_model::Event, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(event)?);
    } else {
        let subject = ["compose", "stream", "version"]
            .iter()
            .filter_map(|key| {
                let value = event.body.get(key)?;
                let text = value
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| value.get("id").and_then(|v| v.as_str()).map(str::to_string))?;
                Some(format!("{key}={text}"))
            })
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:>6}  {}  {:<18}  {subject}",
            event.seq,
            event.time.strftime("%Y-%m-%d %H:%M:%S"),
            event.topic
        );
    }
    Ok(())
}
