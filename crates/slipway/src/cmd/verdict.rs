//! `slipway mark-failed` and `slipway unmark-failed`: a person's word on a compose.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use slipway_engine::LogProgress;
use slipway_model::ComposeId;

use crate::output::open_engine;

/// Give a verdict on a compose.
#[derive(Debug, clap::Args)]
pub struct MarkArgs {
    /// The compose id, such as bookworm-cloud-20261121.0.
    compose: String,
    /// Why; kept with the verdict and shown in decisions.
    #[arg(long)]
    reason: String,
    /// Who says so; defaults to $SUDO_USER, $USER, $LOGNAME or "unknown".
    #[arg(long)]
    author: Option<String>,
}

/// The person running the command, from the environment: the user behind sudo first.
pub fn default_author() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub async fn run(config: &Path, args: MarkArgs, failed: bool) -> anyhow::Result<ExitCode> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why");
    }
    let author = args.author.unwrap_or_else(default_author);
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let id = ComposeId(args.compose);
    let decision = engine
        .set_verdict(&id, failed, &author, &args.reason)
        .await?;
    println!(
        "{} {} by {author}; gate now {}",
        id,
        if failed {
            "marked failed"
        } else {
            "veto withdrawn"
        },
        if decision.passed { "PASSED" } else { "FAILED" }
    );
    Ok(ExitCode::SUCCESS)
}
