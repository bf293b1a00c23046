//! `slipway status`: streams, latest composes with their decisions, releases.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;
use slipway_engine::LogProgress;
use slipway_model::{Compose, Decision, Incident, MirrorStep, Release};
use slipway_store::Notification;

use crate::output::{open_engine, print_json};

/// Show every stream with its latest composes, their gate decisions, and its releases.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many composes to show per stream.
    #[arg(long, default_value_t = 5)]
    composes: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct StreamStatus {
    stream: String,
    recipe: String,
    composes: Vec<ComposeStatus>,
    releases: Vec<Release>,
    sources: Vec<slipway_engine::SourceStatus>,
    /// Announcements of the stream not sent yet (the mail server was down, say), oldest first.
    pending_notifications: Vec<Notification>,
    /// Since when the stream has been stale (a release day passed with nothing to release).
    stale_since: Option<jiff::Timestamp>,
    /// The stream's end of life, if it reached it.
    end_of_life: Option<slipway_engine::EndOfLife>,
    /// The stream's open incident.
    open_incident: Option<Incident>,
    /// Changes to its incidents the external tracker has not received yet, oldest first.
    pending_incident_mirrors: Vec<MirrorStep>,
}

#[derive(Serialize)]
struct ComposeStatus {
    compose: Compose,
    decision: Option<Decision>,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let store = engine.store();
    let statuses = engine.source_statuses().await?;
    let pending = engine.pending_notifications().await?;
    let mirrors = engine.pending_incident_mirrors().await?;
    let mut streams = Vec::new();
    for stream in &engine.config().streams {
        let recipe = engine.config().recipe(stream)?;
        let sources = statuses
            .iter()
            .filter(|s| {
                recipe.sources.iter().any(|r| {
                    r.url.trim_end_matches('/') == s.url.trim_end_matches('/') && r.suite == s.suite
                })
            })
            .cloned()
            .collect();
        let mut composes = Vec::new();
        for compose in store.composes(Some(&stream.name), args.composes).await? {
            let decision = store.latest_decision(&compose.id, &stream.name).await?;
            composes.push(ComposeStatus { compose, decision });
        }
        streams.push(StreamStatus {
            stream: stream.name.clone(),
            recipe: stream.recipe.display().to_string(),
            composes,
            releases: store.releases(&stream.name).await?,
            sources,
            pending_notifications: pending
                .iter()
                .filter(|n| n.announcement.stream == stream.name)
                .cloned()
                .collect(),
            stale_since: engine.cadence_state(&stream.name).await?.stale_since,
            end_of_life: engine.end_of_life_of(&stream.name).await?,
            open_incident: store.open_incident(&stream.name).await?,
            pending_incident_mirrors: mirrors
                .iter()
                .filter(|m| m.stream == stream.name)
                .cloned()
                .collect(),
        });
    }
    if args.json {
        print_json(&streams)?;
        return Ok(ExitCode::SUCCESS);
    }
    for stream in &streams {
        println!("stream {} (recipe {})", stream.stream, stream.recipe);
        match stream.releases.first() {
            Some(latest) => println!(
                "  latest release: {} ({}) from {}",
                latest.version,
                latest.state.as_str(),
                latest.compose
            ),
            None => println!("  no release yet"),
        }
        for source in &stream.sources {
            let checked = source.checked_at.strftime("%Y-%m-%d %H:%M");
            match &source.error {
                None => println!(
                    "  source {} {}: ok (checked {checked})",
                    source.url, source.suite
                ),
                Some(error) => println!(
                    "  source {} {}: FAILING ({} in a row, last good {}): {error}",
                    source.url,
                    source.suite,
                    source.failures,
                    source.good_at.map_or("never".to_string(), |t| t
                        .strftime("%Y-%m-%d %H:%M")
                        .to_string()),
                ),
            }
        }
        if let Some(ended) = &stream.end_of_life {
            println!(
                "  END OF LIFE since {}{}",
                ended.at.strftime("%Y-%m-%d %H:%M"),
                ended
                    .successor
                    .as_ref()
                    .map(|s| format!("; successor {s}"))
                    .unwrap_or_default()
            );
        } else if let Some(since) = stream.stale_since {
            println!(
                "  STALE since the release day {}: nothing passed to release",
                since.strftime("%Y-%m-%d %H:%M")
            );
        }
        if let Some(incident) = &stream.open_incident {
            println!(
                "  incident {} open since {}: {}{}",
                incident.id,
                incident.opened_at.strftime("%Y-%m-%d %H:%M"),
                incident.title,
                incident
                    .external
                    .as_ref()
                    .map(|e| format!(" ({})", e.url))
                    .unwrap_or_default()
            );
        }
        for step in &stream.pending_incident_mirrors {
            println!(
                "  incident {} {} not yet in the {} tracker ({} attempt(s){})",
                step.incident,
                step.action.as_str(),
                step.tracker,
                step.attempts,
                step.last_error
                    .as_ref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            );
        }
        for notification in &stream.pending_notifications {
            crate::cmd::outbox::print_pending(notification, "  ");
        }
        if stream.composes.is_empty() {
            println!("  no composes yet");
        }
        for entry in &stream.composes {
            let gate = match &entry.decision {
                Some(d) if d.passed => "gate PASSED".to_string(),
                Some(d) => format!("gate FAILED: {}", d.summary),
                None => "gate undecided".to_string(),
            };
            println!(
                "  compose {}  {:<8}  {}  {gate}",
                entry.compose.id,
                entry.compose.state.name(),
                entry.compose.created_at.strftime("%Y-%m-%d %H:%M"),
            );
        }
        for release in stream.releases.iter().skip(1).take(5) {
            println!(
                "  release {} ({}) from {}",
                release.version,
                release.state.as_str(),
                release.compose
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
