//! The bounded configurations the checker explores, grouped in suites: each
//! configuration must satisfy every `always` and `eventually` property, and
//! every `sometimes` property must be reached by at least one configuration
//! of the suite.

use std::time::Duration;

use mcp_pool_core::{BreakerConfig, CheckFailure, Config, ConnectFailure, Outcome};

use crate::model::Bounds;

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The pool configuration the models use: small limits and short, distinct
/// durations so that every timer (keepalive check 20 ms, breaker cool-down
/// 20 ms, acquire deadline 40 ms, idle timeout 50 ms, lifetime 70 ms) is
/// reachable in a few clock moves.
pub fn pool_config() -> Config {
    Config {
        max_sessions_per_key: 2,
        max_sessions_total: 3,
        max_keys: 2,
        max_leases_per_session: 1,
        min_idle_per_key: 0,
        max_waiters_per_key: 8,
        lanes: false,
        acquire_timeout: millis(40),
        connect_timeout: millis(10),
        check_timeout: millis(10),
        idle_timeout: Some(millis(50)),
        max_lifetime: Some(millis(70)),
        lifetime_jitter: Duration::ZERO,
        check_interval: millis(20),
        breaker: BreakerConfig {
            failure_threshold: 1,
            base_cooldown: millis(20),
            max_cooldown: millis(40),
            fail_fast: false,
        },
        seed: 7,
    }
}

/// The environment both CI configurations share: 2 keys, every release
/// outcome, one failed connect, one failed check, one dying transport, one
/// cancel, and a shutdown that may come at any point. Closes are confirmed
/// in the step that asks for them: the pool decides nothing on a close's
/// timing (a Poisoned session no longer counts toward capacity), and it
/// divides the state space by five.
fn ci_base(name: &'static str) -> Bounds {
    Bounds {
        name,
        keys: 2,
        callers: 2,
        acquires: 2,
        deadlines: vec![None],
        cancels: 1,
        outcomes: Outcome::ALL.to_vec(),
        connect_leases: Vec::new(),
        connect_failure_kinds: vec![ConnectFailure::Failed],
        connect_failures: 1,
        check_failure_kinds: vec![CheckFailure::Failed],
        check_failures: 1,
        transport_deaths: 1,
        grant_closures: 0,
        unused_returns: 0,
        ticks: 1,
        inputs_race_timers: true,
        horizon: millis(1000),
        time_quantum: None,
        drains: 0,
        shutdown: true,
        closes_confirmed_at_once: true,
        pool: pool_config(),
    }
}

/// CI, timers: 2 concurrent callers making 2 acquires, one free clock move
/// and any number while a caller waits (deadlines, keepalive checks, idle
/// and lifetime expiry, breaker cool-down and probe).
pub fn ci_timers() -> Bounds {
    ci_base("ci-timers")
}

/// CI, contention: 3 concurrent callers making 3 acquires over 2 keys with
/// the clock stopped, so capacity, FIFO order, isolation, cross-key
/// eviction and shutdown meet every interleaving of the faults.
pub fn ci_contention() -> Bounds {
    Bounds {
        callers: 3,
        acquires: 3,
        ticks: 0,
        horizon: Duration::ZERO,
        ..ci_base("ci-contention")
    }
}

/// CI, policies: the other branches of the configuration space, with the
/// driver's two reports about grants (found closed, returned unused) and
/// closes confirmed at any later point. Each connect reports a session that
/// two callers may share (its own limit, above the pool's default of one),
/// each key keeps one idle session warm, one key is tracked at a time (a
/// second key evicts the first, or is refused while the first is in use),
/// the pool holds two sessions and each key one waiter.
pub fn ci_policies() -> Bounds {
    Bounds {
        grant_closures: 1,
        unused_returns: 1,
        closes_confirmed_at_once: false,
        outcomes: vec![Outcome::Ok, Outcome::TransportError],
        connect_failure_kinds: vec![ConnectFailure::Rejected],
        check_failures: 0,
        cancels: 0,
        ticks: 0,
        horizon: Duration::ZERO,
        connect_leases: vec![2],
        pool: Config {
            min_idle_per_key: 1,
            max_keys: 1,
            max_sessions_total: 2,
            max_waiters_per_key: 1,
            ..pool_config()
        },
        ..ci_base("ci-policies")
    }
}

/// CI, breaker: a threshold of two consecutive failures, where a failure
/// is a connect that failed (unreachable, or refused by a live server) or a
/// session found closed at its first grant; and the same with fail-fast.
pub fn ci_breaker(fail_fast: bool) -> Bounds {
    Bounds {
        keys: 1,
        acquires: 3,
        connect_failure_kinds: vec![ConnectFailure::Failed, ConnectFailure::Rejected],
        connect_failures: 2,
        grant_closures: 1,
        outcomes: vec![Outcome::Ok, Outcome::TransportError],
        check_failures: 0,
        transport_deaths: 0,
        cancels: 0,
        shutdown: false,
        pool: Config {
            max_sessions_per_key: 1,
            breaker: BreakerConfig {
                failure_threshold: if fail_fast { 1 } else { 2 },
                fail_fast,
                ..pool_config().breaker
            },
            ..pool_config()
        },
        ..ci_base(if fail_fast {
            "ci-fail-fast"
        } else {
            "ci-breaker"
        })
    }
}

/// CI, lanes: one key with one session, lent to its lane, where callers
/// take them, give them back, wait for them, and find them stale or closed,
/// while the pool recalls them (keepalive, idle timeout and lifetime timers,
/// a dying transport, callers waiting in the pool, shutdown) and opens and
/// closes the lane.
pub fn ci_lanes() -> Bounds {
    Bounds {
        keys: 1,
        callers: 2,
        acquires: 4,
        cancels: 0,
        outcomes: vec![Outcome::Ok, Outcome::TransportError, Outcome::Timeout],
        check_failures: 0,
        pool: Config {
            lanes: true,
            max_sessions_per_key: 1,
            ..pool_config()
        },
        ..ci_base("ci-lanes")
    }
}

/// CI, lanes with a grant found closed: the lanes' configuration with 3
/// acquires and a grant whose session died before its caller got it, while
/// the lane may be open (its caller must then wait in the lane, I18).
pub fn ci_lanes_closed() -> Bounds {
    Bounds {
        name: "ci-lanes-closed",
        acquires: 3,
        grant_closures: 1,
        ..ci_lanes()
    }
}

/// The suite checked in CI (`cargo test`).
pub fn ci() -> Vec<Bounds> {
    vec![
        ci_timers(),
        ci_contention(),
        ci_policies(),
        ci_breaker(false),
        ci_breaker(true),
        ci_lanes(),
        ci_lanes_closed(),
    ]
}

/// The deep suite (`MCP_POOL_SPEC=deep`, or `check --deep`; build with
/// `--release`; each configuration takes minutes and a few GiB, so they run
/// one after the other): every close confirmed at any later point, a drain,
/// short and default deadlines, a contention configuration with two
/// failing connects, and the policies configuration with every outcome, a
/// cancel, a failing check and a moving clock.
pub fn deep() -> Vec<Bounds> {
    let faithful = |name| Bounds {
        closes_confirmed_at_once: false,
        drains: 1,
        ..ci_base(name)
    };
    vec![
        Bounds {
            deadlines: vec![None, Some(millis(10))],
            ..faithful("deep-timers")
        },
        Bounds {
            name: "deep-lanes",
            callers: 3,
            acquires: 4,
            pool: Config {
                max_sessions_per_key: 2,
                ..ci_lanes().pool
            },
            ..ci_lanes()
        },
        Bounds {
            name: "deep-policies",
            outcomes: Outcome::ALL.to_vec(),
            connect_failure_kinds: vec![ConnectFailure::Failed, ConnectFailure::Rejected],
            cancels: 1,
            check_failures: 1,
            ticks: 1,
            horizon: millis(1000),
            ..ci_policies()
        },
        Bounds {
            callers: 3,
            acquires: 3,
            ticks: 0,
            horizon: Duration::ZERO,
            connect_failures: 2,
            ..faithful("deep-contention")
        },
    ]
}

/// True if the environment asks for the deep suite (`MCP_POOL_SPEC=deep`).
pub fn deep_requested() -> bool {
    std::env::var("MCP_POOL_SPEC").is_ok_and(|v| v == "deep")
}

/// The suite chosen by the environment: [`deep`] if `MCP_POOL_SPEC=deep`,
/// else [`ci`].
pub fn from_env() -> Vec<Bounds> {
    if deep_requested() {
        deep()
    } else {
        ci()
    }
}
