//! # mcp-pool-sim
//!
//! Deterministic simulations of mcp-pool: the real driver (with its checking
//! mode on), the real rmcp connector and the real echo server run inside
//! [turmoil] hosts over a simulated network, against backends of every
//! protocol era (and backends that change era), under crashes, restarts,
//! partitions, held and flaky links, slow checks, cancellations and
//! shutdowns, over many seeds.
//!
//! - [`plan`]: the [`Scenario`]s, and the [`Plan`] each draws from a seed.
//! - [`run()`]: carries out one plan against mcp-pool or the naive baseline
//!   and records a [`RunReport`] with an event log that replays byte for
//!   byte.
//! - [`oracle`]: what must hold in every run (O1–O7, O9 for invariant C1
//!   of the connector's result cache).
//! - [`sweep`] and [`report`]: many seeds, and the table of results.
//! - [`net`]: HTTP over the simulated network, for both sides.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod net;
pub mod oracle;
mod panics;
pub mod plan;
pub mod report;
pub mod run;
pub mod sweep;

pub use plan::{Plan, Scenario};
pub use run::{run, RunReport, Subject};
pub use sweep::Sweep;
