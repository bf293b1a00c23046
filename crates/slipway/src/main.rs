//! The `slipway` command: parses arguments, loads the config, and calls the engine.
//!
//! Exit codes: 0 success; 1 error (the message says what and where); 2 bad usage; 3 `run --once` finished
//! but some stream produced no good compose (failed build or failed gate); 4 `changes` found a recipe whose
//! lock has moved.

mod cmd;
mod output;

/// Every command allocates in many small pieces (store rows, JSON, paths); mimalloc serves them faster
/// than the system allocator (see the simulation benchmark in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Continuous delivery for operating-system images.
///
/// slipway composes images from recipes, boots and tests every image, gates it on the results, releases
/// it under a date version, signs it and publishes it with stream metadata and a download page.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, propagate_version = true)]
struct Cli {
    /// The project config. Relative paths inside it are relative to its directory.
    #[arg(
        long,
        short,
        global = true,
        env = "SLIPWAY_CONFIG",
        default_value = "slipway.toml"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline: compose → test → gate → release → publish for every stream.
    Run(cmd::run::Args),
    /// Show streams, their latest composes with decisions, releases, and announcements not sent yet.
    Status(cmd::status::Args),
    /// Show the event log.
    Events(cmd::events::Args),
    /// Inspect composes.
    #[command(subcommand)]
    Compose(cmd::compose::Command),
    /// Show the gate's decision on a compose.
    Decision(cmd::decision::Args),
    /// Veto a compose: it will not be released even if its tests pass.
    MarkFailed(cmd::verdict::MarkArgs),
    /// Withdraw a veto given with mark-failed.
    UnmarkFailed(cmd::verdict::MarkArgs),
    /// Waive a testcase of a compose (its unmet requirement counts as satisfied), or revoke a waiver.
    Waive(cmd::waive::Args),
    /// List waivers, revoked ones included.
    Waivers(cmd::waive::ListArgs),
    /// Manage the release signing key.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
    /// List the recipes and streams whose current lock holds given packages.
    Affected(cmd::affected::Args),
    /// List, per recipe, the packages with newer versions in the repositories now.
    Changes(cmd::changes::Args),
    /// Show a compose's test runs and results, or write a run's JUnit report.
    Results(cmd::results::Args),
    /// Serve test results over HTTP (ResultsDB 2.0 API, JUnit reports).
    Serve(cmd::serve::Args),
    /// Expire releases and delete composes and blobs past the streams' retention.
    Gc(cmd::gc::Args),
    /// Simulate the streams over many days with a seeded random builder and tester.
    Simulate(cmd::simulate::Args),
    /// List incidents: streams whose nightly produced no good compose.
    ///
    /// A stream's incident is opened when a nightly compose fails to build or fails its gate, gets a
    /// comment for each further failure, and is closed by the next good compose. Only open incidents are
    /// listed unless --all is given. When an external tracker is configured ([tracker] in the config), each
    /// incident shows its issue there, and the changes the tracker has not received yet are listed as
    /// pending.
    Incidents(cmd::incidents::Args),
    /// Withdraw a bad release; the stream falls back to the newest good release before it.
    Revoke(cmd::lifecycle::RevokeArgs),
    /// Take a revocation back.
    Unrevoke(cmd::lifecycle::UnrevokeArgs),
    /// Release a stream out of cycle (an emergency security release, or another reason that cannot wait).
    Release(cmd::lifecycle::ReleaseArgs),
    /// End a stream: no more composes or releases, marked end of life with a successor, announced.
    Eol(cmd::lifecycle::EolArgs),
    /// Show announcements waiting to be sent and those sent recently; --send sends what is due.
    ///
    /// Announcements (releases, and revocations, stale streams and end of life where those are made) are
    /// queued when they happen and sent by `slipway run` after each cycle and each daemon poll: to the
    /// `[announce.smtp]` server, or without one as `.eml` files into `[announce] outbox-dir` (default
    /// `<state-dir>/outbox`). A send that fails (the mail server is down) leaves the announcement pending
    /// with its error; it is retried one minute later, then after twice as long each time, at most six
    /// hours apart. `slipway status` shows each stream's pending announcements too.
    Outbox(cmd::outbox::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Command::Run(args) => cmd::run::run(&config, args).await,
        Command::Status(args) => cmd::status::run(&config, args).await,
        Command::Events(args) => cmd::events::run(&config, args).await,
        Command::Compose(command) => cmd::compose::run(&config, command).await,
        Command::Decision(args) => cmd::decision::run(&config, args).await,
        Command::MarkFailed(args) => cmd::verdict::run(&config, args, true).await,
        Command::UnmarkFailed(args) => cmd::verdict::run(&config, args, false).await,
        Command::Waive(args) => cmd::waive::run(&config, args).await,
        Command::Waivers(args) => cmd::waive::list(&config, args).await,
        Command::Keys(command) => cmd::keys::run(&config, command).await,
        Command::Affected(args) => cmd::affected::run(&config, args).await,
        Command::Changes(args) => cmd::changes::run(&config, args).await,
        Command::Results(args) => cmd::results::run(&config, args).await,
        Command::Serve(args) => cmd::serve::run(&config, args).await,
        Command::Gc(args) => cmd::gc::run(&config, args).await,
        Command::Simulate(args) => cmd::simulate::run(&config, args).await,
        Command::Incidents(args) => cmd::incidents::run(&config, args).await,
        Command::Outbox(args) => cmd::outbox::run(&config, args).await,
        Command::Revoke(args) => cmd::lifecycle::revoke(&config, args).await,
        Command::Unrevoke(args) => cmd::lifecycle::unrevoke(&config, args).await,
        Command::Release(args) => cmd::lifecycle::release(&config, args).await,
        Command::Eol(args) => cmd::lifecycle::eol(&config, args).await,
    }
}
