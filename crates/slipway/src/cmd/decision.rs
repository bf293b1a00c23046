//! `slipway decision`: the gate's answer on a compose, now or as of a past time.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use slipway_engine::LogProgress;
use slipway_model::{parse_time, ComposeId, Decision};

use crate::output::{open_engine, print_json};

/// Show the gate's decision on a compose, with every unmet requirement and what each met one rests on.
///
/// Without --at, the decision is made from what is known now and recorded (an event is appended only if
/// it changed). With --at, it is the decision as of that time: results submitted, waivers created or
/// revoked and verdicts given later are ignored, and only requirements valid then apply. It is not
/// recorded.
///
/// Exits 0 when the compose passes the gate and 3 when it does not, so scripts can branch on it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The compose id.
    compose: String,
    /// The stream whose gate decides; defaults to the compose's own stream.
    #[arg(long)]
    stream: Option<String>,
    /// Decide as of this time: a date (2026-11-21, meaning 00:00 UTC) or an RFC 3339 time
    /// (2026-11-21T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let at = args
        .at
        .as_deref()
        .map(parse_time)
        .transpose()
        .map_err(|err| anyhow::anyhow!("--at: {err}"))?;
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let id = ComposeId(args.compose);
    let compose = engine
        .store()
        .compose(&id)
        .await?
        .with_context(|| format!("no compose {id}; `slipway compose list` shows them"))?;
    let stream = args.stream.unwrap_or(compose.stream);
    if engine.config().stream(&stream).is_none() {
        let known: Vec<&str> = engine
            .config()
            .streams
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        anyhow::bail!(
            "no stream {stream} in {} (streams: {})",
            engine.config().path.display(),
            known.join(", ")
        );
    }
    let decision = match at {
        Some(at) => engine.decision_at(&stream, &id, at).await?,
        None => engine.decide(&stream, &id).await?,
    };
    if args.json {
        print_json(&decision)?;
    } else {
        print_text(&decision);
    }
    Ok(if decision.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn print_text(decision: &Decision) {
    let when = decision
        .at
        .map(|at| format!(" as of {at}"))
        .unwrap_or_default();
    println!(
        "{} in {}{when}: {} ({})",
        decision.compose,
        decision.stream,
        if decision.passed { "PASSED" } else { "FAILED" },
        decision.summary
    );
    for unmet in &decision.unsatisfied {
        println!(
            "  unmet: {}{}",
            unmet.detail,
            ids("results", &unmet.results)
        );
    }
    for met in &decision.satisfied {
        let how = if met.waivers.is_empty() {
            "passed"
        } else {
            "waived"
        };
        println!(
            "  {how}: {}{}{}",
            met.requirement,
            ids("results", &met.results),
            ids("waivers", &met.waivers)
        );
    }
    for label in &decision.not_applicable {
        println!("  not applicable then: {label}");
    }
}

fn ids(what: &str, ids: &[u64]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
    format!(" ({what}: {})", list.join(", "))
}
