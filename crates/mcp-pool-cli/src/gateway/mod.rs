//! `mcp-pool gateway`: downstream MCP clients, one pool, upstream MCP
//! servers.
//!
//! Each upstream NAME is served at `/mcp/NAME` over Streamable HTTP, both
//! protocol eras downstream (rmcp's server with legacy sessions on, which
//! also serves 2026-07-28 requests sessionless). `tools/list`, `tools/call`,
//! `resources/list`, `resources/read`, `prompts/list` and `prompts/get` are
//! forwarded through ONE pool, keyed by the upstream URL, the downstream
//! request's identity headers (forwarded upstream) and, for legacy stateful
//! upstreams under `--affinity per-session`, the downstream session id.
//! Upstream failures become JSON-RPC errors that say what happened; tool
//! errors pass through as results. `GET /metrics` serves the pool's series
//! in the Prometheus text format. SIGTERM or Ctrl-C drains.
//!
//! - [`args`]: the options and the checked configuration;
//! - [`server`]: the HTTP server, the pool, the drain;
//! - [`handler`]: the MCP server each downstream client talks to;
//! - [`forward`]: one request forwarded through the pool;
//! - [`metrics`]: `/metrics` and the per-key counters;
//! - [`upstreams`]: where upstream sessions come from (the pool, or, for
//!   `loadtest --via-gateway`, the naive pool or none).

pub mod args;
pub mod forward;
pub mod handler;
pub mod metrics;
pub mod server;
pub mod upstreams;

use tracing_subscriber::EnvFilter;

pub use args::{Affinity, GatewayArgs, GatewayConfig, UpstreamSessions};
pub use server::{Gateway, StartError};

/// Logs to stderr, filtered by `RUST_LOG` (default `info,rmcp=warn`),
/// coloured only on a terminal.
fn init_logs() {
    use std::io::IsTerminal;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Serves until SIGTERM or Ctrl-C, then drains within `config.grace` (a
/// second signal cuts the wait short). Prints `listening on http://ADDR`
/// once bound, then one line per upstream: `NAME http://ADDR/mcp/NAME ->
/// URL` (the URL's query values redacted).
pub async fn run(config: GatewayConfig) -> Result<(), StartError> {
    init_logs();
    let gateway = Gateway::start(&config).await?;
    let addr = gateway.addr();
    println!("listening on http://{addr}");
    for (name, url) in &config.upstreams {
        let shown = mcp_pool_rmcp::SessionKey::anonymous(url.as_str())
            .map(|k| k.redacted_url())
            .unwrap_or_default();
        println!("{name} http://{addr}/mcp/{name} -> {shown}");
    }
    tracing::info!(%addr, upstreams = config.upstreams.len(), "gateway started");
    crate::stop_signal().await;
    tracing::info!(grace = ?config.grace, "stopping: draining requests in flight (again to cut the wait short)");
    let report = tokio::select! {
        report = gateway.drain(config.grace) => report,
        () = crate::stop_signal() => {
            tracing::warn!("second signal: exiting without waiting");
            return Ok(());
        }
    };
    let (closed, force_closed) = report
        .pool
        .map_or((0, 0), |pool| (pool.closed, pool.force_closed.len()));
    tracing::info!(
        cut_off = report.cut_off,
        sessions_closed = closed,
        force_closed,
        "gateway stopped"
    );
    Ok(())
}
