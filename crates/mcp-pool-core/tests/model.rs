//! Property test: long random input sequences against the real core, with a
//! small, separate reference model of every session's state that must agree
//! with the core after every step, plus the auditor and `check_invariants`.
//! Covers every invariant id of `specs/SPEC.md` (I1..I16) on random runs.

mod common;
#[path = "model/reference.rs"]
mod reference;

use std::time::Duration;

use common::{Harness, Key};
use mcp_pool_core::{BreakerConfig, Config, Input, LaneReturn, Outcome};
use proptest::prelude::*;
use reference::Reference;

#[derive(Clone, Debug)]
enum Op {
    Acquire {
        key: Key,
        wait_ms: Option<u16>,
    },
    Release {
        pick: usize,
        outcome: Outcome,
    },
    Cancel {
        pick: usize,
    },
    Connect {
        pick: usize,
        ok: bool,
        kind: u8,
    },
    /// The driver found a grant's session closed before handing it over.
    GrantClosed {
        pick: usize,
    },
    /// A grant came back unused (its caller had gone).
    ReleaseUnused {
        pick: usize,
    },
    /// A caller takes a session parked in its lane (if one is fresh).
    LaneTake {
        pick: usize,
    },
    /// A caller gives back a session it took from a lane.
    LaneRelease {
        pick: usize,
        outcome: Outcome,
    },
    /// A caller finds a lent session closed (or stale) in its lane.
    LaneBroken {
        pick: usize,
        closed: bool,
    },
    Check {
        pick: usize,
        ok: bool,
    },
    TransportClosed {
        pick: usize,
    },
    Close {
        pick: usize,
    },
    Advance {
        ms: u16,
    },
    ToNextTimeout,
    Drain,
    Shutdown,
    /// An input naming an id that is no longer valid (or in the wrong state).
    Stale {
        pick: usize,
        kind: u8,
    },
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop::sample::select(Outcome::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0u8..3, prop::option::of(1u16..3000)).prop_map(|(key, wait_ms)| Op::Acquire { key, wait_ms }),
        12 => (any::<usize>(), outcome()).prop_map(|(pick, outcome)| Op::Release { pick, outcome }),
        2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        10 => (any::<usize>(), prop::bool::weighted(0.8), 0u8..3).prop_map(|(pick, ok, kind)| Op::Connect { pick, ok, kind }),
        2 => any::<usize>().prop_map(|pick| Op::GrantClosed { pick }),
        2 => any::<usize>().prop_map(|pick| Op::ReleaseUnused { pick }),
        8 => any::<usize>().prop_map(|pick| Op::LaneTake { pick }),
        8 => (any::<usize>(), outcome()).prop_map(|(pick, outcome)| Op::LaneRelease { pick, outcome }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, closed)| Op::LaneBroken { pick, closed }),
        6 => (any::<usize>(), prop::bool::weighted(0.7)).prop_map(|(pick, ok)| Op::Check { pick, ok }),
        2 => any::<usize>().prop_map(|pick| Op::TransportClosed { pick }),
        6 => any::<usize>().prop_map(|pick| Op::Close { pick }),
        4 => (1u16..2000).prop_map(|ms| Op::Advance { ms }),
        4 => Just(Op::ToNextTimeout),
        1 => Just(Op::Drain),
        1 => Just(Op::Shutdown),
        3 => (any::<usize>(), 0u8..5).prop_map(|(pick, kind)| Op::Stale { pick, kind }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        (1usize..=3, 1usize..=5, 1usize..=3, 1usize..=2, 0usize..=1),
        (
            prop::sample::select(vec![0u64, 50, 1000, 3_600_000]),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            1u32..=3,
            any::<bool>(),
            any::<u64>(),
            1usize..=4,
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (per_key, total, keys, leases, min_idle),
                (interval, idle, lifetime),
                (threshold, fail_fast, seed, waiters, lanes),
            )| Config {
                lanes,
                max_sessions_per_key: per_key,
                max_sessions_total: total,
                max_keys: keys,
                max_leases_per_session: leases,
                min_idle_per_key: min_idle.min(per_key),
                max_waiters_per_key: if waiters == 4 { 1024 } else { waiters },
                acquire_timeout: Duration::from_millis(1500),
                connect_timeout: Duration::from_millis(500),
                check_timeout: Duration::from_millis(200),
                idle_timeout: idle.then_some(Duration::from_millis(2500)),
                max_lifetime: lifetime.then_some(Duration::from_millis(6000)),
                lifetime_jitter: Duration::from_millis(if lifetime { 1000 } else { 0 }),
                check_interval: Duration::from_millis(interval),
                breaker: BreakerConfig {
                    failure_threshold: threshold,
                    base_cooldown: Duration::from_millis(100),
                    max_cooldown: Duration::from_millis(800),
                    fail_fast,
                },
                seed,
            },
        )
}

/// Runs `ops` against a pool built from `config`; panics on any disagreement
/// or violated invariant.
fn run(config: Config, ops: &[Op]) {
    let mut h = Harness::new(config);
    let mut reference = Reference::default();
    let mut steps = 0usize;
    for op in ops {
        match op {
            Op::Advance { ms } => h.now = h.now + Duration::from_millis(*ms as u64),
            Op::ToNextTimeout => {
                if let Some(t) = h.pool.poll_timeout() {
                    h.now = h.now.max(t);
                }
            }
            _ => {}
        }
        steps += 1;
        let input = match reference.lane_op(op, h.now) {
            // The lane did its own work; nothing reached the pool.
            Some(None) => {
                settle_lanes(&mut h, &mut reference);
                continue;
            }
            Some(Some(input)) => Some(input),
            // An op with nothing to act on becomes a timer tick: every op is a step.
            None => reference.input_for(op, &h),
        };
        if let (Op::Stale { .. }, Some(input)) = (op, &input) {
            let (result, _) = h.step(input.clone());
            assert!(result.is_err(), "stale {input:?} was accepted");
            continue;
        }
        let input = input.unwrap_or(Input::HandleTimeout);
        let (result, actions) = h.step(input.clone());
        assert!(
            result.is_ok() || matches!(input, Input::Acquire { .. }),
            "environment input {input:?} refused: {result:?}"
        );
        reference.step(&input, &result, &actions);
        reference.agrees_with(&h);
        settle_lanes(&mut h, &mut reference);
    }
    assert!(steps >= 200, "only {steps} steps");
    // Wind down: everything answered, shut down, every session closed (I7).
    let (result, actions) = h.step(Input::Shutdown);
    reference.step(&Input::Shutdown, &result, &actions);
    reference.agrees_with(&h);
    settle_lanes(&mut h, &mut reference);
    for _ in 0..64 {
        let mut progressed = false;
        let connecting: Vec<_> = reference.connecting.iter().copied().collect();
        let checking: Vec<_> = reference
            .sessions
            .iter()
            .filter(|(_, r)| r.checking)
            .map(|(s, _)| *s)
            .collect();
        let leases: Vec<_> = reference
            .sessions
            .values()
            .flat_map(|r| r.leases.iter().copied())
            .collect();
        let closing: Vec<_> = reference
            .sessions
            .iter()
            .filter(|(_, r)| r.closing)
            .map(|(s, _)| *s)
            .collect();
        let inputs = connecting
            .into_iter()
            .map(|session| Input::Connected {
                session,
                result: Ok(()),
            })
            .chain(checking.into_iter().map(|session| Input::Checked {
                session,
                result: Ok(()),
            }))
            .chain(leases.into_iter().map(|lease| Input::Release {
                lease,
                outcome: Outcome::Ok,
            }))
            .chain(closing.into_iter().map(Input::Closed))
            .chain(
                reference
                    .lanes
                    .iter()
                    .filter(|(_, l)| l.taken)
                    .map(|(s, _)| Input::LaneReturned {
                        session: *s,
                        back: LaneReturn::Released {
                            outcome: Outcome::Ok,
                            at: h.now,
                        },
                    })
                    .collect::<Vec<_>>(),
            );
        for input in inputs.collect::<Vec<_>>() {
            let (result, actions) = h.step(input.clone());
            reference.step(&input, &result, &actions);
            reference.agrees_with(&h);
            settle_lanes(&mut h, &mut reference);
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    assert!(
        h.pool.is_closed(),
        "pool not closed after shutdown: {:?}",
        h.pool.sessions().collect::<Vec<_>>()
    );
    let st = h.pool.stats();
    assert_eq!(
        st.connected, st.closes,
        "every connected session closed exactly once"
    );
}

/// Recalled sessions parked in their lanes come back at once, as the
/// driver returns them while it carries out the recall.
fn settle_lanes(h: &mut Harness, reference: &mut Reference) {
    while let Some(input) = reference.recall_due(h.now) {
        let (result, actions) = h.step(input.clone());
        assert!(result.is_ok(), "lane return {input:?} refused: {result:?}");
        reference.step(&input, &result, &actions);
        reference.agrees_with(h);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MCP_POOL_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_runs_keep_every_invariant(config in config(), ops in prop::collection::vec(op(), 200..=320)) {
        run(config, &ops);
    }
}
