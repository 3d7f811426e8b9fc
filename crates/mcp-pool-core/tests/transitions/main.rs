//! One test per transition, named by the invariant it exercises (ids from
//! `specs/SPEC.md`). Every step also runs the auditor and `check_invariants`.

#[path = "../common/mod.rs"]
mod common;

mod edges;
mod lanes;
mod pool;

use std::time::Duration;

use common::*;
use mcp_pool_core::{
    AcquireId, Action, BreakerConfig, Config, ConnectFailure, EvictReason, Input, InputError,
    LaneReturn, LeaseId, Outcome, Pool, RejectReason, SessionId, SessionState, Time,
};

/// A breaker that opens after two failures and cools down for 100 ms to 1 s
/// (refusing at once while open if `fail_fast`).
fn breaker_config(fail_fast: bool) -> Config {
    Config {
        breaker: BreakerConfig {
            failure_threshold: 2,
            base_cooldown: ms(100),
            max_cooldown: ms(1000),
            fail_fast,
        },
        ..quiet()
    }
}

/// One session per key.
fn one_per_key() -> Config {
    Config {
        max_sessions_per_key: 1,
        ..quiet()
    }
}
