//! `slipway simulate`: the project's streams, cadences, gates and release policies run over months of a
//! virtual clock, with a seeded random builder and tester.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use slipway_engine::{Engine, LogProgress, SeededWorld, SimulationOptions, SimulationReport};
use slipway_exec::SystemRunner;
use slipway_model::VirtualClock;
use slipway_publish::GpgSigner;
use slipway_store::SqliteStore;

use crate::output::{load_config, print_json};

/// Simulate the project's streams over many days on a virtual clock.
///
/// Everything the engine does for real runs here too (the store, events, gates, cadences, stale and
/// retry rules, promotions, publishing) except building, booting and reading package sources: those are
/// replaced by a random world fixed by --seed, where a nightly compose fails to build at
/// --build-failure-rate, a built compose fails a test at --test-failure-rate, and inputs change on most
/// days. A stream without a `nightly` time composes at 03:00 UTC.
///
/// The simulation never touches the project's state: it works in a directory of its own (a temporary one,
/// removed at the end, unless --dir is given) with a signing key made for it. It prints a timeline and a
/// summary: composes, failures, releases, stale spells, incidents, revocations, emergency releases. After
/// every step it checks the engine's promises against the store and the public tree (no release of a
/// compose that failed its gate, no stream metadata pointing at a revoked release, at most one open
/// incident per stream, every failed nightly on an incident, every release day released or stale,
/// versions that only grow) and exits with code 5 if one broke.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many days to simulate.
    #[arg(long, default_value_t = 180)]
    days: u32,
    /// The random seed: the same seed gives the same history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The chance, from 0 to 1, that a compose fails to build.
    #[arg(long, default_value_t = 0.1, value_parser = rate)]
    build_failure_rate: f64,
    /// The chance, from 0 to 1, that a built compose fails one of its tests.
    #[arg(long, default_value_t = 0.1, value_parser = rate)]
    test_failure_rate: f64,
    /// The chance, from 0 to 1, that a release turns out bad the day it is made and is revoked (as with
    /// `slipway revoke`), so the stream falls back to its previous good release.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    revoke_rate: f64,
    /// The first simulated day, YYYY-MM-DD (UTC); defaults to today.
    #[arg(long)]
    start: Option<jiff::civil::Date>,
    /// Work in this directory (created; must be empty) and keep it, to inspect the store and public tree.
    /// The store runs in memory and is written to state/slipway.db when the run ends.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print only the summary, not the timeline.
    #[arg(long)]
    quiet: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn rate(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a rate between 0 and 1"))
    }
}

pub async fn run(config_path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let mut config = load_config(config_path)?;
    let temporary;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            if std::fs::read_dir(dir)?.next().is_some() {
                anyhow::bail!(
                    "{} is not empty; give --dir a new or empty directory",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("slipway-simulate-")
                .tempdir()
                .context("creating a directory for the simulation")?;
            temporary.path().to_path_buf()
        }
    };
    config.state_dir = dir.join("state");
    config.publish_dir = dir.join("public");
    config.blob_dir = None;
    config.signing.key = dir.join("keys/simulation.asc");
    // A simulation must reach nobody: incidents stay in its store, announcements in its outbox, and
    // advisories come from the simulated world.
    config.tracker = Default::default();
    config.announce.smtp = None;
    config.announce.outbox_dir = Some(dir.join("outbox"));
    config.advisories = Default::default();
    std::fs::create_dir_all(dir.join("keys"))?;
    GpgSigner::generate(
        Arc::new(SystemRunner),
        &config.signing.key,
        "slipway simulation <simulation@localhost>",
    )
    .await
    .context("creating the simulation's signing key")?;
    // The simulation's store is thrown away (or only inspected) afterwards: it lives in memory, and
    // `--dir` gets a copy at the end.
    let store = Arc::new(SqliteStore::open_scratch().context("opening the simulation's store")?);
    let saved_db = config.state_dir.join("slipway.db");
    let start = args.start.unwrap_or_else(|| {
        jiff::Zoned::now()
            .with_time_zone(jiff::tz::TimeZone::UTC)
            .date()
    });
    let clock = Arc::new(VirtualClock::new(
        start
            .to_zoned(jiff::tz::TimeZone::UTC)
            .context("the start date")?
            .timestamp(),
    ));
    let mut world = SeededWorld::new(args.seed, args.build_failure_rate, args.test_failure_rate);
    world.revoke_rate = args.revoke_rate;
    let engine = Engine::with_parts(
        config,
        store.clone(),
        clock.clone(),
        Arc::new(SystemRunner),
        Arc::new(LogProgress),
    )
    .with_world(Arc::new(world));

    let bar = crate::output::counter_bar(u64::from(args.days), "simulated days");
    let report = engine
        .simulate(
            &clock,
            &SimulationOptions {
                days: args.days,
                start,
            },
            |days| {
                if let Some(bar) = &bar {
                    bar.set_position(u64::from(days));
                }
            },
        )
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.dir.is_some() {
        store
            .save_to(&saved_db)
            .await
            .with_context(|| format!("saving the simulation's store to {}", saved_db.display()))?;
    }
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report, args.quiet);
        if args.dir.is_some() {
            println!("state and public tree kept in {}", dir.display());
        }
    }
    Ok(if report.summary.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(5)
    })
}

fn print_report(report: &SimulationReport, quiet: bool) {
    if !quiet {
        for entry in &report.timeline {
            println!(
                "{}  {:<20} {}",
                entry.at.strftime("%Y-%m-%d %H:%M"),
                entry.stream,
                entry.what
            );
        }
        println!();
    }
    let s = &report.summary;
    println!("{} days, {} streams", s.days, s.streams);
    println!("  composes            {}", s.composes);
    println!("  failed builds       {}", s.failed_builds);
    println!("  failed gates        {}", s.failed_gates);
    println!("  releases            {}", s.releases);
    println!("  stale cycles        {}", s.stale_cycles);
    println!("  recovered from stale {}", s.recovered);
    println!("  incidents opened    {}", s.incidents_opened);
    println!("  incidents closed    {}", s.incidents_closed);
    println!("  revocations         {}", s.revocations);
    println!("  emergency releases  {}", s.emergency_releases);
    if s.violations.is_empty() {
        println!("  every invariant held");
    } else {
        println!("  broken invariants   {}", s.violations.len());
        for violation in &s.violations {
            println!("    {violation}");
        }
    }
}
