//! `slipway compose`: inspect composes.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use slipway_engine::LogProgress;
use slipway_model::{ComposeId, ComposeState};

use crate::output::{open_engine, print_json};

/// Inspect composes.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List recent composes, newest first.
    List {
        /// Only this stream's composes.
        #[arg(long)]
        stream: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one compose: state, artifacts, lock, latest results.
    Show {
        /// The compose id, such as bookworm-cloud-20261121.0.
        compose: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Path, command: Command) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let store = engine.store();
    match command {
        Command::List {
            stream,
            limit,
            json,
        } => {
            let composes = store.composes(stream.as_deref(), limit).await?;
            if json {
                print_json(&composes)?;
            } else {
                for c in composes {
                    println!(
                        "{}  {:<8}  {}  {}",
                        c.id,
                        c.state.name(),
                        c.stream,
                        c.created_at.strftime("%Y-%m-%d %H:%M")
                    );
                }
            }
        }
        Command::Show { compose, json } => {
            let id = ComposeId(compose);
            let found = store
                .compose(&id)
                .await?
                .with_context(|| format!("no compose {id}; `slipway compose list` shows them"))?;
            let results = store.latest_results(&id, jiff::Timestamp::now()).await?;
            if json {
                print_json(&serde_json::json!({ "compose": found, "results": results }))?;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "compose {}  ({} in stream {})",
                found.id,
                found.state.name(),
                found.stream
            );
            if let ComposeState::Failed { reason } = &found.state {
                println!("reason:\n{reason}");
            }
            println!("recipe hash {}", found.recipe_hash);
            if let Some(hash) = &found.input_hash {
                println!("input hash  {hash}");
            }
            for a in &found.artifacts {
                println!(
                    "artifact {:<10} {}  {} bytes  sha256:{}",
                    a.kind.name(),
                    a.file_name,
                    a.size,
                    a.sha256
                );
            }
            if let Some(lock) = &found.lock {
                println!(
                    "lock: {} packages (hash {})",
                    lock.packages.len(),
                    lock.hash()
                );
            }
            if let Some(diff) = &found.pkgdiff {
                print_pkgdiff(diff);
            }
            for r in results {
                println!(
                    "result {:<26} {:<8} {}",
                    r.testcase,
                    r.outcome.as_str(),
                    r.note.lines().next().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a package diff: a summary line, then every change, security upgrades marked.
fn print_pkgdiff(diff: &slipway_model::PkgDiff) {
    match &diff.previous {
        Some(previous) => println!("packages since {previous}: {}", diff.summary()),
        None => {
            println!(
                "packages: first compose of the recipe ({} added)",
                diff.added.len()
            );
            return;
        }
    }
    for change in &diff.upgraded {
        println!(
            "  upgraded {}:{} {} → {}{}",
            change.name,
            change.architecture,
            change.old_version,
            change.new_version,
            if change.security {
                format!("  [security: {}]", change.suite.as_deref().unwrap_or("?"))
            } else {
                String::new()
            }
        );
    }
    for change in &diff.downgraded {
        println!(
            "  downgraded {}:{} {} → {}",
            change.name, change.architecture, change.old_version, change.new_version
        );
    }
    for change in &diff.rebuilt {
        println!(
            "  rebuilt {}:{} {}",
            change.name, change.architecture, change.new_version
        );
    }
    for p in &diff.added {
        println!("  added {}:{} {}", p.name, p.architecture, p.version);
    }
    for p in &diff.removed {
        println!("  removed {}:{} {}", p.name, p.architecture, p.version);
    }
}
