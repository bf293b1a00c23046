//! `slipway changes`: what in each recipe's lock has moved in the repositories.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use slipway_engine::LogProgress;

use crate::output::{open_engine, print_json};

/// List, per recipe, the packages of its current lock that have newer (or withdrawn, or rebuilt) versions
/// in the repositories right now.
///
/// Refreshes every package source first (conditional requests, so an unchanged mirror costs little). A
/// source that cannot be reached is reported on stderr and its last good metadata is used. Exit code 0
/// when every lock is current, 4 when some recipe would be rebuilt.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let changes = engine.pending_changes().await?;
    for source in engine.source_statuses().await? {
        if let Some(error) = &source.error {
            eprintln!(
                "warning: {} {} could not be refreshed ({} in a row); using its last good metadata: {error}",
                source.url, source.suite, source.failures
            );
        }
    }
    let any = changes.iter().any(|c| !c.changes.is_empty());
    if args.json {
        print_json(&changes)?;
    } else {
        if changes.is_empty() {
            println!("no recipe has a complete compose yet");
        }
        for recipe in &changes {
            if recipe.changes.is_empty() {
                println!("{}: current (compose {})", recipe.recipe, recipe.compose);
                continue;
            }
            println!(
                "{}: {} change(s) since compose {} (streams: {})",
                recipe.recipe,
                recipe.changes.len(),
                recipe.compose,
                recipe.streams.join(", ")
            );
            for change in &recipe.changes {
                println!("  {change}");
            }
        }
    }
    Ok(if any {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    })
}
