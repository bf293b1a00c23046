//! `slipway serve`: the HTTP API over the project's store.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use slipway_engine::LogProgress;
use slipway_server::ServerState;

use crate::output::open_engine;

/// Serve test results over HTTP in the shape of the ResultsDB 2.0 API, and JUnit reports of test runs,
/// until interrupted (Ctrl-C or SIGTERM).
///
/// Prints `listening on http://ADDR` on stdout once it accepts connections. Set SLIPWAY_LOG=info to log
/// every request.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address and port to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL clients reach the server at, for the links in responses (such as
    /// `https://results.example.org`); by default `http://` and the request's Host header.
    #[arg(long)]
    public_url: Option<String>,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener
        .local_addr()
        .context("reading the address listened on")?;
    let state = ServerState {
        store: Arc::clone(engine.store()),
        public_url: args.public_url,
    };
    tracing::info!(%address, "serving the ResultsDB API");
    println!("listening on http://{address}");
    std::io::stdout().flush().context("writing to stdout")?;
    slipway_server::serve(listener, state, shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped serving");
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot watch for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
