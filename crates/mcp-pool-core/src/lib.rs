//! # mcp-pool-core
//!
//! The sans-IO heart of mcp-pool: a deterministic state machine that decides
//! everything a pool of MCP sessions decides (which session a caller gets,
//! when to connect, check, evict or close, who waits and who is refused),
//! with no async, no clock and no I/O.
//!
//! A driver feeds it inputs, each stamped with `now`, and carries out the
//! [`Action`]s it polls:
//!
//! ```
//! use mcp_pool_core::{Action, Config, Outcome, Pool, Time};
//!
//! let mut pool: Pool<&str> = Pool::new(Config::default()).unwrap();
//! let now = Time::ZERO;
//! let acquire = pool.acquire(&"server-a", None, now).unwrap();
//! // Nothing is idle yet: the pool asks for a connect.
//! let Some(Action::Connect { session, .. }) = pool.poll_action() else { panic!() };
//! pool.connected(session, Ok(()), now).unwrap();
//! let Some(Action::Grant { acquire: a, lease }) = pool.poll_action() else { panic!() };
//! assert_eq!(a, acquire);
//! // The call failed on the transport: the session is never granted again.
//! pool.release(lease, Outcome::TransportError, now).unwrap();
//! assert!(matches!(pool.poll_action(), Some(Action::Close { .. })));
//! ```
//!
//! Per-session states are exactly [`SessionState`]'s: Idle, Leased,
//! Validating, Poisoned, Closed; a connect in flight is a reserved slot that
//! counts toward capacity. The invariants this crate keeps are numbered in
//! `specs/SPEC.md`; [`Pool::check_invariants`] checks those visible in one
//! state, and [`Auditor`] those that need the history of a run.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod action;
mod audit;
mod breaker;
mod config;
mod decide;
mod id;
mod input;
mod invariants;
mod keys;
mod lane;
#[cfg(feature = "mutants")]
#[doc(hidden)]
pub mod mutants;
mod pool;
mod rng;
mod session;
mod stats;
mod time;
mod timers;
mod view;
mod waiters;

pub use action::{Action, EvictReason, RejectReason};
pub use audit::Auditor;
pub use config::{BreakerConfig, Config, ConfigError};
pub use id::{AcquireId, LeaseId, SessionId};
pub use input::{Applied, CheckFailure, ConnectFailure, Input, InputError, LaneReturn, Outcome};
pub use invariants::{ids, Violation};
pub use pool::{Pool, PoolKey};
pub use session::{SessionInfo, SessionState};
pub use stats::{BreakerState, KeySnapshot, Stats};
pub use time::Time;
