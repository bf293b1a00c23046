//! `slipway incidents`: the embedded tracker's incidents, with their comments and external links.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;
use slipway_engine::LogProgress;
use slipway_model::{Incident, IncidentState, MirrorStep};

use crate::output::{open_engine, print_json};

/// The options of `slipway incidents` (its help text is on the subcommand in `main.rs`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this stream's incidents.
    #[arg(long)]
    stream: Option<String>,
    /// Closed incidents too.
    #[arg(long)]
    all: bool,
    /// Every comment in full (by default, the first line of each).
    #[arg(long)]
    full: bool,
    /// Print JSON instead of text: a list of incidents, each with its comments, external issue and
    /// pending mirror steps.
    #[arg(long)]
    json: bool,
}

/// One incident as `--json` prints it.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    incident: Incident,
    pending_mirror: Vec<MirrorStep>,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    if let Some(stream) = &args.stream {
        if engine.config().stream(stream).is_none() {
            let known: Vec<&str> = engine
                .config()
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            anyhow::bail!(
                "no stream {stream:?} in {} (streams: {})",
                engine.config().path.display(),
                known.join(", ")
            );
        }
    }
    let incidents = engine
        .store()
        .incidents(args.stream.as_deref(), args.all)
        .await?;
    let pending = engine.pending_incident_mirrors().await?;
    let listed: Vec<Listed> = incidents
        .into_iter()
        .map(|incident| Listed {
            pending_mirror: pending
                .iter()
                .filter(|s| s.incident == incident.id)
                .cloned()
                .collect(),
            incident,
        })
        .collect();
    if args.json {
        print_json(&listed)?;
        return Ok(ExitCode::SUCCESS);
    }
    if listed.is_empty() {
        let which = if args.all {
            "no incidents"
        } else {
            "no open incidents"
        };
        match &args.stream {
            Some(stream) => println!("{which} for {stream}"),
            None => println!("{which}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (i, entry) in listed.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_incident(entry, args.full);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_incident(entry: &Listed, full: bool) {
    let incident = &entry.incident;
    let when = |t: jiff::Timestamp| t.strftime("%Y-%m-%d %H:%M").to_string();
    let state = match (incident.state, incident.closed_at) {
        (IncidentState::Closed, Some(closed)) => format!("CLOSED {}", when(closed)),
        (IncidentState::Closed, None) => "CLOSED".to_string(),
        (IncidentState::Open, _) => "OPEN".to_string(),
    };
    println!(
        "incident {}  {}  {state}  opened {}",
        incident.id,
        incident.stream,
        when(incident.opened_at)
    );
    println!("  {}", incident.title);
    println!("  first failing compose: {}", incident.compose);
    match &incident.external {
        Some(issue) => println!("  {} issue {}: {}", issue.tracker, issue.id, issue.url),
        None if entry.pending_mirror.is_empty() => println!("  no external issue"),
        None => println!("  no external issue yet"),
    }
    for step in &entry.pending_mirror {
        let error = step
            .last_error
            .as_deref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default();
        println!(
            "  pending {} {} (comment {}, {} attempt{}{error})",
            step.tracker,
            step.action,
            step.comment,
            step.attempts,
            if step.attempts == 1 { "" } else { "s" }
        );
    }
    for comment in &incident.comments {
        let about = comment
            .compose
            .as_ref()
            .map(|c| format!("  [{c}]"))
            .unwrap_or_default();
        println!(
            "  - {} {}{about} (comment {})",
            when(comment.at),
            comment.author,
            comment.id
        );
        if full {
            for line in comment.body.lines() {
                println!("      {line}");
            }
        } else if let Some(line) = comment.body.lines().find(|l| !l.trim().is_empty()) {
            println!("      {line}");
        }
    }
}
