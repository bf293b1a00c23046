//! `slipway waive` and `slipway waivers`: a person's word that an unmet requirement does not block a
//! compose, and the list of such words.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use slipway_engine::LogProgress;
use slipway_model::{ComposeId, Waiver};

use crate::cmd::verdict::default_author;
use crate::output::{open_engine, print_json};

/// Waive a testcase of a compose, or revoke a waiver.
///
/// A waiver makes an unmet requirement on the testcase (in the scenario, if given, or in every scenario)
/// count as satisfied; the decision cites it. A revoked waiver is kept, marked revoked.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The compose id, such as bookworm-cloud-20261121.0.
    #[arg(required_unless_present = "revoke")]
    compose: Option<String>,
    /// The testcase to waive, such as sshd.active.
    #[arg(required_unless_present = "revoke")]
    testcase: Option<String>,
    /// Waive the testcase only in this scenario.
    #[arg(long, conflicts_with = "revoke")]
    scenario: Option<String>,
    /// Why; required when waiving, optional when revoking.
    #[arg(long)]
    reason: Option<String>,
    /// Who says so; defaults to $SUDO_USER, $USER, $LOGNAME or "unknown".
    #[arg(long)]
    author: Option<String>,
    /// Revoke the waiver with this id (see `slipway waivers`) instead of waiving.
    #[arg(long, value_name = "WAIVER_ID", conflicts_with_all = ["compose", "testcase"])]
    revoke: Option<u64>,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let author = args.author.unwrap_or_else(default_author);
    let reason = args.reason.unwrap_or_default();
    if let Some(id) = args.revoke {
        let engine = open_engine(config, Arc::new(LogProgress)).await?;
        let (waiver, decision) = engine.revoke_waiver(id, &author, &reason).await?;
        println!(
            "waiver {id} ({} {}) revoked by {author}; gate now {}",
            waiver.compose,
            waiver.testcase,
            if decision.passed { "PASSED" } else { "FAILED" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(compose), Some(testcase)) = (args.compose, args.testcase) else {
        anyhow::bail!("give a compose and a testcase to waive, or --revoke WAIVER_ID");
    };
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must say why the testcase is waived");
    }
    if testcase.trim().is_empty() {
        anyhow::bail!("the testcase name is empty");
    }
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let id = ComposeId(compose);
    let (waiver, decision) = engine
        .waive(&id, &testcase, args.scenario.as_deref(), &author, &reason)
        .await?;
    println!(
        "waiver {} for {} {}{} by {author}; gate now {}",
        waiver.id,
        id,
        testcase,
        waiver
            .scenario
            .as_deref()
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default(),
        if decision.passed { "PASSED" } else { "FAILED" }
    );
    Ok(ExitCode::SUCCESS)
}

/// List waivers, revoked ones included.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only the waivers of this compose.
    compose: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn list(config: &Path, args: ListArgs) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let compose = args.compose.map(ComposeId);
    if let Some(id) = &compose {
        if engine.store().compose(id).await?.is_none() {
            anyhow::bail!("no compose {id}; `slipway compose list` shows them");
        }
    }
    let waivers = engine.store().waivers(compose.as_ref()).await?;
    if args.json {
        print_json(&waivers)?;
    } else if waivers.is_empty() {
        println!("no waivers");
    } else {
        for waiver in &waivers {
            println!("{}", line(waiver));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn line(waiver: &Waiver) -> String {
    let scenario = waiver
        .scenario
        .as_deref()
        .map(|s| format!(" [{s}]"))
        .unwrap_or_default();
    let state = match &waiver.revoked {
        Some(r) if r.reason.is_empty() => format!("revoked by {} at {}", r.author, r.at),
        Some(r) => format!("revoked by {} at {}: {}", r.author, r.at, r.reason),
        None => "active".into(),
    };
    format!(
        "#{} {} {}{scenario} by {} at {}: {} ({state})",
        waiver.id,
        waiver.compose,
        waiver.testcase,
        waiver.author,
        waiver.created_at,
        waiver.comment
    )
}
