//! `slipway results`: test runs and results of a compose, and JUnit reports of runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use slipway_engine::LogProgress;
use slipway_model::{ComposeId, RunId, TestResult, TestRun};
use slipway_server::junit::{self, Counts};

use crate::output::{open_engine, print_json};

/// Show the test runs of a compose with their results, flaky ones marked and counted; or write the JUnit
/// XML report of one run.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["compose", "junit"])))]
pub struct Args {
    /// The compose whose runs to show.
    compose: Option<String>,
    /// Write the JUnit XML report of this test run (its id, as `slipway results COMPOSE` lists it).
    #[arg(long, value_name = "RUN-ID", conflicts_with = "json")]
    junit: Option<String>,
    /// Where to write the JUnit report; stdout by default.
    #[arg(long, short, value_name = "FILE", requires = "junit")]
    output: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// One run as `--json` prints it.
#[derive(Debug, Serialize)]
struct RunReport {
    run: TestRun,
    counts: CountsReport,
    results: Vec<TestResult>,
}

#[derive(Debug, Serialize)]
struct CountsReport {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    flaky: usize,
}

impl From<Counts> for CountsReport {
    fn from(c: Counts) -> Self {
        Self {
            tests: c.tests,
            failures: c.failures,
            errors: c.errors,
            skipped: c.skipped,
            flaky: c.flaky,
        }
    }
}

/// What `--json` prints for a compose.
#[derive(Debug, Serialize)]
struct ComposeReport {
    compose: ComposeId,
    /// Flaky results over all runs.
    flaky: usize,
    runs: Vec<RunReport>,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let store = engine.store();
    if let Some(run_id) = args.junit {
        let id = RunId(run_id);
        let (run, results) = store
            .test_run(&id)
            .await?
            .with_context(|| format!("no test run {id}; `slipway results COMPOSE` lists them"))?;
        let xml = junit::render(&run, &results);
        match args.output {
            Some(path) => {
                std::fs::write(&path, xml).with_context(|| format!("writing {}", path.display()))?
            }
            None => print!("{xml}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(compose) = args.compose else {
        anyhow::bail!("name a compose, or a test run with --junit");
    };
    let id = ComposeId(compose);
    store
        .compose(&id)
        .await?
        .with_context(|| format!("no compose {id}; `slipway compose list` shows them"))?;
    let mut runs = Vec::new();
    for run in store.test_runs(&id).await? {
        let (run, results) = store
            .test_run(&run.id)
            .await?
            .with_context(|| format!("test run {} vanished while reading it", run.id))?;
        runs.push(RunReport {
            counts: Counts::of(&results).into(),
            run,
            results,
        });
    }
    let flaky = runs.iter().map(|r| r.counts.flaky).sum();
    if args.json {
        print_json(&ComposeReport {
            compose: id,
            flaky,
            runs,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("{id}: no test runs");
        return Ok(ExitCode::SUCCESS);
    }
    for report in &runs {
        let run = &report.run;
        println!(
            "run {}  {}  plan {}  {}",
            run.id, run.description, run.plan, run.started_at
        );
        for result in &report.results {
            let scenario = if result.scenario.is_empty() {
                String::new()
            } else {
                format!(" [{}]", result.scenario)
            };
            let flaky = if result.flaky {
                let attempts: Vec<&str> =
                    result.attempts.iter().map(|a| a.outcome.as_str()).collect();
                format!("  FLAKY ({})", attempts.join(" → "))
            } else {
                String::new()
            };
            println!(
                "  {:<16} {}{scenario}{flaky}",
                result.outcome.as_str(),
                result.testcase
            );
        }
        let c = &report.counts;
        println!(
            "  {} results: {} failed, {} errors, {} skipped, {} flaky",
            c.tests, c.failures, c.errors, c.skipped, c.flaky
        );
    }
    println!("{id}: {} runs, {flaky} flaky results", runs.len());
    Ok(ExitCode::SUCCESS)
}
