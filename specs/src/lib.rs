//! # mcp-pool-spec
//!
//! A stateright model of the real `mcp-pool-core`: the model's state holds
//! the core's [`Pool`](mcp_pool_core::Pool) and its
//! [`Auditor`](mcp_pool_core::Auditor), and its actions are the core's
//! inputs. The environment (callers, network, clock, operator) is explored
//! exhaustively within [`Bounds`]; after every input each emitted action is
//! polled, handed to the environment, and audited, and every invariant of
//! `specs/SPEC.md` is an `always` property named by its id.
//!
//! ```no_run
//! use mcp_pool_spec::{check, configs, PoolSpec};
//!
//! let report = check::run(PoolSpec::new(configs::ci_timers()).unwrap(), None);
//! println!("{report}");
//! assert!(report.all_hold());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod configs;
mod model;
pub mod properties;

pub use model::{
    Bounds, Budget, Caller, Key, OpenSession, PoolSpec, Seen, State, Step, Transition, PANIC,
};
