//! An echo MCP server over Streamable HTTP, built on rmcp, for exercising MCP
//! clients and session pools: integration tests, network simulations and
//! load tests.
//!
//! - [`EchoServer`] is the MCP handler, with the tools `echo` (optionally
//!   delayed, optionally reporting progress and log lines in steps), `fail`
//!   (a tool-level error) and `whoami` (the serving session).
//! - [`EchoApp`] builds the axum router for the `/mcp` endpoint from an
//!   [`EchoConfig`], independent of any listener, and a [`SessionRegistry`]
//!   recording which sessions the server created, which session and
//!   protocol version served each call, and how many `initialize` and
//!   `server/discover` requests arrived.
//! - [`Era`] picks the protocol revisions served: legacy (before
//!   2026-07-28, stateful or stateless), modern (2026-07-28 only) or dual.
//! - [`serve`] runs an app on any `axum::serve::Listener`, under a
//!   [`ServerControl`] that stops it gracefully or kills it abruptly;
//!   [`spawn_local_server`] does all of it on a loopback TCP port and returns
//!   an [`EchoServerHandle`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mcp_pool_echo::{spawn_local_server, EchoConfig};
//! let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default()).await?;
//! println!("MCP endpoint: {}", server.url());
//! // ... run clients against it, inspect server.registry() ...
//! server.kill().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod app;
mod era;
mod inspect;
mod registry;
mod serve;
mod server;
mod sessions;

pub use app::{EchoApp, EchoConfig, MCP_PATH};
pub use era::{Era, UnknownEra};
pub use registry::{CallRecord, SessionRegistry, DEFAULT_CALL_LOG_LIMIT};
pub use serve::{
    serve, serve_tcp, spawn_local_app, spawn_local_server, EchoServerHandle, KillableIo,
    KillableListener, ServerControl,
};
pub use server::{
    EchoArgs, EchoServer, FailArgs, ECHO_LOGGER, MAX_ECHO_STEPS, SESSION_ID_META_KEY,
};
