//! slipway's HTTP API: test results in the shape of ResultsDB's API 2.0, read-only, and JUnit reports of
//! test runs.
//!
//! A test run is a ResultsDB *group* (its id is the group's uuid), each result of a run a ResultsDB
//! *result*, and the testcases are the distinct testcase names. Existing ResultsDB clients (Greenwave,
//! `resultsdb_api`, dashboards) can read slipway's results without knowing slipway. The server only reads
//! the [`Store`]; results are written by the engine.
//!
//! Endpoints, all `GET`, under `/api/v2.0`: `/`, `/results`, `/results/latest`, `/results/<id>`,
//! `/testcases`, `/testcases/<name>`, `/testcases/<name>/results`, `/groups`, `/groups/<uuid>`,
//! `/groups/<uuid>/results` and `/groups/<uuid>/junit`. See [`api`] for parameters and shapes.

pub mod api;
pub mod junit;

use std::future::Future;
use std::sync::Arc;

use slipway_store::Store;
use tokio::net::TcpListener;

pub use api::router;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ServerState {
    /// Where results are read.
    pub store: Arc<dyn Store>,
    /// The scheme, host and path prefix clients reach the server at, such as `https://ci.example.org`,
    /// used in the links of responses. `None`: `http://` and the request's `Host` header.
    pub public_url: Option<String>,
}

/// Serves the API on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
