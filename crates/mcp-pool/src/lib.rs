//! # mcp-pool
//!
//! An async pool of MCP client sessions (or any sessions a [`Connector`]
//! makes) that never hands out a broken session: the tokio driver of
//! [`mcp_pool_core`], the sans-IO state machine that makes every decision.
//!
//! ```
//! use mcp_pool::{Connector, Outcome, Pool};
//!
//! /// A connector whose sessions are numbers; a real one opens MCP sessions.
//! struct Numbers;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("the server answered with an error")]
//! struct Refused;
//!
//! impl Connector for Numbers {
//!     type Key = &'static str;
//!     type Session = u32;
//!     type Error = Refused;
//!     async fn connect(&self, _key: &&'static str) -> Result<u32, Refused> { Ok(7) }
//!     async fn check(&self, _session: &u32) -> Result<(), Refused> { Ok(()) }
//!     fn is_closed(&self, _session: &u32) -> bool { false }
//!     fn classify(&self, _error: &Refused) -> Outcome { Outcome::ApplicationError }
//!     async fn close(&self, _session: u32) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pool = Pool::builder(Numbers).max_sessions_per_key(4).build().unwrap();
//! // The normal way: the lease is released with the outcome of the result.
//! let doubled = pool.run(&"server-a", async |n: &u32| Ok(n * 2)).await.unwrap();
//! assert_eq!(doubled, 14);
//! // By hand: say how the use went.
//! let lease = pool.acquire(&"server-a").await.unwrap();
//! assert_eq!(*lease, 7);
//! lease.release(Outcome::Ok);
//! // A key used over and over (a gateway's route): found once.
//! let server_a = pool.key("server-a");
//! assert_eq!(server_a.run(async |n: &u32| Ok(n + 1)).await.unwrap(), 8);
//! assert!(pool.shutdown().await.is_clean());
//! # }
//! ```
//!
//! ## How it works
//!
//! The core sits behind a mutex that is held only for synchronous calls into
//! it, never across an await. A caller's `acquire` makes one input; the
//! actions it emits are carried out by whoever made the input: grants and
//! rejects are handed to the waiting callers through one-shot channels,
//! connects, health checks and closes are started as tasks of the pool's own,
//! each under its deadline, and report back when done. One background task
//! per pool feeds the core its timers (acquire deadlines, idle and lifetime
//! expiry, keepalive checks, breaker cool-downs) and the transports'
//! closed-notifications. Nothing else decides anything.
//!
//! ## Keys in logs
//!
//! Keys say who may share a session and may be built from credentials. The
//! pool never logs or exports a key, nor its `Debug` text: spans, events and
//! metrics carry a [`KeyHash`], a per-process keyed hash of the key's `Hash`.
//! (The `checking` feature, for tests only, prints keys in its violation
//! reports.)
//!
//! ## Features
//!
//! - `checking`: every pool feeds every input through the core's
//!   [`Auditor`](mcp_pool_core::Auditor) and
//!   [`check_invariants`](mcp_pool_core::Pool::check_invariants), and panics
//!   with the violation and the recent inputs. Costs a clone per input and a
//!   full recount per step: for tests and simulations. The feature sets the
//!   default of [`Builder::checking`], which can still turn it off per pool
//!   (benchmarks do, since a crate's tests enabling the feature also enable
//!   it for its benchmarks).
//! - `metrics`: [`Metrics::export`] and [`Pool::export_metrics`] record the
//!   snapshot through the `metrics` crate.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod acquire;
mod connector;
mod core;
mod error;
mod guard;
mod key_hash;
mod key_pool;
mod lane;
mod lease;
mod metrics;
mod pool;
// The three modules with `unsafe`: a waiting caller's reply slot, whose two
// cells are handed between sender and receiver by one atomic word (see its
// comment); the bag a lane parks its sessions in, whose slots each hold
// one counted reference as a raw pointer (and which asks the processor to
// prefetch a line, a hint that reads nothing); and the counted handle of a
// lent session, an `Arc` with its count on the session's first cache line.
// Their tests race every operation against the others.
#[allow(unsafe_code)]
mod cell;
#[allow(unsafe_code)]
mod reply;
mod shared;
#[allow(unsafe_code)]
mod slots;
mod tasks;
#[cfg(test)]
mod test_connector;
mod upkeep;

pub use connector::Connector;
pub use error::{AcquireError, BuildError, ConnectError, RunError};
pub use key_hash::KeyHash;
pub use key_pool::KeyPool;
pub use lease::Lease;
pub use metrics::{KeyMetrics, Metrics};
pub use pool::{Builder, ForceClosed, Pool, ShutdownReport};

pub use mcp_pool_core::{
    BreakerConfig, BreakerState, Config, ConfigError, ConnectFailure, EvictReason, KeySnapshot,
    LeaseId, Outcome, PoolKey, SessionId, SessionState, Stats,
};
