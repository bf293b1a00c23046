//! `slipway affected`: which recipes and streams a batch of package updates touches.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use slipway_engine::LogProgress;

use crate::output::{open_engine, print_json};

/// List the recipes and streams whose current lock holds any of the given packages.
///
/// A name matches a binary package in a lock, or every binary built from a source package of that name
/// (`openssl` matches `libssl3`). The answer comes from the locks of each recipe's newest complete
/// compose; nothing is fetched.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Binary or source package names, comma-separated, such as `openssl,libc6`.
    #[arg(long, value_delimiter = ',', required = true)]
    packages: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let packages: Vec<String> = args
        .packages
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let affected = engine.affected(&packages).await?;
    if args.json {
        print_json(&affected)?;
        return Ok(ExitCode::SUCCESS);
    }
    if affected.is_empty() {
        println!("no recipe's current lock holds {}", packages.join(", "));
    }
    for recipe in &affected {
        println!(
            "{} (streams: {}; compose {})",
            recipe.recipe,
            recipe.streams.join(", "),
            recipe.compose
        );
        for p in &recipe.packages {
            let via = match p.matched_by {
                slipway_repo::MatchedBy::Binary => String::new(),
                slipway_repo::MatchedBy::Source => format!("  (from source {})", p.query),
            };
            println!("  {}:{} {}{via}", p.package, p.architecture, p.version);
        }
    }
    Ok(ExitCode::SUCCESS)
}
