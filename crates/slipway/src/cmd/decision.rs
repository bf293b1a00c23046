//! `slipway decision`: the gate's answer on a compose.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use slipway_engine::LogProgress;
use slipway_model::ComposeId;

use crate::output::{open_engine, print_json};

/// Show the gate's decision on a compose, with every unmet requirement.
///
/// Exits 0 when the compose passes the gate and 3 when it does not, so scripts can branch on it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The compose id.
    compose: String,
    /// The stream whose gate decides; defaults to the compose's own stream.
    #[arg(long)]
    stream: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let id = ComposeId(args.compose);
    let compose = engine
        .store()
        .compose(&id)
        .await?
        .with_context(|| format!("no compose {id}; `slipway compose list` shows them"))?;
    let stream = args.stream.unwrap_or(compose.stream);
    let decision = engine.decide(&stream, &id).await?;
    if args.json {
        print_json(&decision)?;
    } else {
        println!(
            "{} in {}: {} ({})",
            decision.compose,
            decision.stream,
            if decision.passed { "PASSED" } else { "FAILED" },
            decision.summary
        );
        for unmet in &decision.unsatisfied {
            println!("  - {}", unmet.detail);
        }
        for (testcase, outcome) in &decision.results_used {
            println!("  {testcase}: {outcome}");
        }
    }
    Ok(if decision.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
