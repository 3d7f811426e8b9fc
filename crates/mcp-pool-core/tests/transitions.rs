//! One test per transition, named by the invariant it exercises (ids from
//! `specs/SPEC.md`). Every step also runs the auditor and `check_invariants`.

mod common;

use std::time::Duration;

use common::*;
use mcp_pool_core::{
    AcquireId, Action, BreakerConfig, Config, ConnectFailure, EvictReason, Input, InputError,
    LaneReturn, LeaseId, Outcome, Pool, RejectReason, SessionId, SessionState, Time,
};

#[test]
fn i1_i2_warm_session_is_reused_without_connect() {
    let mut h = Harness::new(quiet());
    let lease = h.lease_new(1);
    let s = lease.session();
    assert_eq!(h.state(s), Some(SessionState::Leased));
    assert!(h.release(lease, Outcome::Ok).is_empty());
    assert_eq!(h.state(s), Some(SessionState::Idle));
    let (id, actions) = h.acquire(1);
    let again = grant_of(&actions, id);
    assert_eq!(again.session(), s, "the warm session is reused");
    assert!(connects(&actions).is_empty());
    assert_eq!(h.pool.stats().hits, 1);
    assert_eq!(h.pool.stats().connects, 1);
}

#[test]
fn i3_transport_error_poisons_and_the_next_caller_gets_a_new_session() {
    let mut h = Harness::new(quiet());
    let lease = h.lease_new(1);
    let dead = lease.session();
    let actions = h.release(lease, Outcome::TransportError);
    assert_eq!(closes(&actions), vec![dead]);
    assert_eq!(h.state(dead), Some(SessionState::Poisoned));
    let (id, actions) = h.acquire(1);
    let fresh = connect_of(&actions);
    assert_ne!(fresh, dead);
    let actions = h.connected(fresh, true);
    assert_eq!(grant_of(&actions, id).session(), fresh);
    h.closed(dead);
    assert_eq!(h.state(dead), Some(SessionState::Closed));
    assert_eq!(h.pool.stats().evictions(EvictReason::TransportError), 1);
}

#[test]
fn i3_application_error_keeps_the_session() {
    let mut h = Harness::new(quiet());
    let lease = h.lease_new(1);
    assert!(h.release(lease, Outcome::ApplicationError).is_empty());
    assert_eq!(h.state(lease.session()), Some(SessionState::Idle));
}

#[test]
fn i4_transport_closed_idle_session_is_closed_before_any_caller_sees_it() {
    let mut h = Harness::new(quiet());
    let lease = h.lease_new(1);
    h.release(lease, Outcome::Ok);
    let (r, actions) = h.step(Input::TransportClosed(lease.session()));
    r.unwrap();
    assert_eq!(closes(&actions), vec![lease.session()]);
    let (_, actions) = h.acquire(1);
    assert_ne!(connect_of(&actions), lease.session());
}

#[test]
fn i4_i7_transport_closed_while_leased_closes_only_after_release() {
    let mut h = Harness::new(quiet());
    let lease = h.lease_new(1);
    let (_, actions) = h.step(Input::TransportClosed(lease.session()));
    assert!(
        closes(&actions).is_empty(),
        "a held session is not closed under its caller"
    );
    assert_eq!(h.state(lease.session()), Some(SessionState::Poisoned));
    let actions = h.release(lease, Outcome::Ok);
    assert_eq!(closes(&actions), vec![lease.session()]);
}

#[test]
fn i11_timeout_and_cancel_are_checked_before_reuse() {
    for outcome in [Outcome::Timeout, Outcome::Cancelled] {
        let mut h = Harness::new(quiet());
        let lease = h.lease_new(1);
        let s = lease.session();
        let actions = h.release(lease, outcome);
        assert_eq!(validate_of(&actions), s);
        assert_eq!(h.state(s), Some(SessionState::Validating));
        // A caller arriving meanwhile waits for the check, no new connect.
        let (id, actions) = h.acquire(1);
        assert!(actions.is_empty(), "{actions:?}");
        let actions = h.checked(s, true);
        assert_eq!(grant_of(&actions, id).session(), s);
    }
}

#[test]
fn i11_failed_check_poisons() {
    let mut h = Harness::new(quiet());
    let lease = h.lease_new(1);
    let s = lease.session();
    h.release(lease, Outcome::Timeout);
    let actions = h.checked(s, false);
    assert_eq!(closes(&actions), vec![s]);
    assert_eq!(h.pool.stats().checks_failed, 1);
}

#[test]
fn i11_stale_session_is_checked_before_grant() {
    let config = Config {
        check_interval: Duration::from_secs(10),
        ..quiet()
    };
    let mut h = Harness::new(config);
    let lease = h.lease_new(1);
    h.release(lease, Outcome::Ok);
    h.now = h.now + Duration::from_secs(11);
    let (id, actions) = h.acquire(1);
    assert_eq!(validate_of(&actions), lease.session());
    assert!(grants(&actions).is_empty());
    let actions = h.checked(lease.session(), true);
    assert_eq!(grant_of(&actions, id).session(), lease.session());
}

#[test]
fn i11_interval_zero_checks_every_reuse() {
    let config = Config {
        check_interval: Duration::ZERO,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let lease = h.lease_new(1);
    h.release(lease, Outcome::Ok);
    let (id, actions) = h.acquire(1);
    assert_eq!(validate_of(&actions), lease.session());
    let actions = h.checked(lease.session(), true);
    grant_of(&actions, id);
}

#[test]
fn i11_idle_sessions_get_keepalive_checks() {
    let config = Config {
        check_interval: Duration::from_secs(10),
        ..quiet()
    };
    let mut h = Harness::new(config);
    let lease = h.lease_new(1);
    h.release(lease, Outcome::Ok);
    assert_eq!(h.pool.poll_timeout(), Some(h.now + Duration::from_secs(10)));
    let actions = h.advance(Duration::from_secs(10));
    assert_eq!(validate_of(&actions), lease.session());
    // The dead idle session is found before any caller picks it.
    let actions = h.checked(lease.session(), false);
    assert_eq!(closes(&actions), vec![lease.session()]);
}

#[test]
fn i5_sessions_never_cross_keys() {
    let mut h = Harness::new(quiet());
    let a = h.lease_new(1);
    h.release(a, Outcome::Ok);
    let (_, actions) = h.acquire(2);
    assert!(grants(&actions).is_empty());
    assert_ne!(connect_of(&actions), a.session());
}

#[test]
fn i6_i8_per_key_limit_and_fifo() {
    let mut h = Harness::new(quiet()); // 2 per key
    let l1 = h.lease_new(1);
    let l2 = h.lease_new(1);
    let (w1, a1) = h.acquire(1);
    let (w2, a2) = h.acquire(1);
    assert!(
        a1.is_empty() && a2.is_empty(),
        "at the key limit callers wait"
    );
    assert_eq!(h.pool.waiters(&1), vec![w1, w2]);
    let actions = h.release(l2, Outcome::Ok);
    assert_eq!(grant_of(&actions, w1).session(), l2.session());
    let actions = h.release(l1, Outcome::Ok);
    assert_eq!(grant_of(&actions, w2).session(), l1.session());
}

#[test]
fn i6_full_pool_evicts_the_least_recently_used_idle_session_of_another_key() {
    let config = Config {
        max_sessions_total: 2,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let a = h.lease_new(1);
    let b = h.lease_new(2);
    h.release(a, Outcome::Ok);
    h.now = h.now + ms(1);
    h.release(b, Outcome::Ok);
    let (_, actions) = h.acquire(3);
    assert_eq!(closes(&actions), vec![a.session()], "LRU idle evicted");
    connect_of(&actions);
    assert_eq!(h.pool.stats().evictions(EvictReason::Capacity), 1);
}

#[test]
fn i6_i13_full_pool_with_everything_leased_blocks_then_serves() {
    let config = Config {
        max_sessions_total: 1,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let a = h.lease_new(1);
    let (w, actions) = h.acquire(2);
    assert!(actions.is_empty());
    // Releasing key 1's session lets key 2 evict it and connect.
    let actions = h.release(a, Outcome::Ok);
    assert_eq!(closes(&actions), vec![a.session()]);
    let s = connect_of(&actions);
    let actions = h.connected(s, true);
    grant_of(&actions, w);
}

#[test]
fn i9_waiter_rejected_at_its_deadline_never_granted_after() {
    let config = Config {
        max_sessions_per_key: 1,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let l = h.lease_new(1);
    let deadline = h.now + ms(100);
    let (w, _) = h.acquire_until(1, Some(deadline));
    assert!(h.pool.poll_timeout().is_some_and(|t| t <= deadline));
    let actions = h.advance(ms(100));
    assert_eq!(rejects(&actions), vec![(w, RejectReason::TimedOut)]);
    let actions = h.release(l, Outcome::Ok);
    assert!(grants(&actions).is_empty());
    assert_eq!(h.pool.stats().rejected_timed_out, 1);
}

#[test]
fn i9_deadline_in_the_past_is_a_typed_error() {
    let mut h = Harness::new(quiet());
    h.now = Time::from_millis(10);
    let (r, _) = h.step(Input::Acquire {
        key: 1,
        deadline: Some(Time::from_millis(10)),
    });
    assert_eq!(r, Err(InputError::DeadlineNotInFuture));
}

#[test]
fn i12_connect_failure_answers_the_head_caller_with_its_cause() {
    let mut h = Harness::new(quiet());
    let (id, actions) = h.acquire(1);
    let s = connect_of(&actions);
    let actions = h.connected(s, false);
    assert_eq!(
        rejects(&actions),
        vec![(id, RejectReason::ConnectFailed { attempt: s })]
    );
    assert_eq!(h.pool.stats().connect_failures, 1);
}

#[test]
fn i12_a_caller_is_never_failed_by_a_connect_older_than_its_request() {
    let mut h = Harness::new(Config {
        max_sessions_per_key: 1,
        ..quiet()
    });
    let (first, actions) = h.acquire(1);
    let s = connect_of(&actions);
    // The first caller gives up; a second arrives while the connect is
    // still in flight, and waits for it (the key is at its limit).
    h.step(Input::CancelAcquire(first)).0.unwrap();
    let (second, actions) = h.acquire(1);
    assert!(connects(&actions).is_empty());
    let actions = h.connected(s, false);
    assert!(
        rejects(&actions).is_empty(),
        "the second caller was failed by a connect begun before it asked: {actions:?}"
    );
    // It waits for the next attempt, which the pool starts at once.
    let retry = connect_of(&actions);
    let actions = h.connected(retry, true);
    assert_eq!(grants(&actions).len(), 1);
    assert_eq!(grants(&actions)[0].0, second);
}

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

#[test]
fn i14_breaker_opens_probes_backs_off_and_closes() {
    let mut h = Harness::new(breaker_config(false));
    for _ in 0..2 {
        let (_, actions) = h.acquire(1);
        let s = connect_of(&actions);
        h.connected(s, false);
    }
    assert_eq!(h.pool.stats().breaker_trips, 1);
    assert_eq!(
        h.pool.key_snapshot(&1).unwrap().breaker,
        mcp_pool_core::BreakerState::Open
    );
    // While open, a caller waits: no connect.
    let (w, actions) = h.acquire(1);
    assert!(actions.is_empty(), "{actions:?}");
    // Cool-down over: one probe.
    let actions = h.advance(ms(100));
    let probe = connect_of(&actions);
    assert_eq!(connects(&actions).len(), 1);
    h.connected(probe, false);
    // Backed off: nothing at +100ms, a probe at +200ms.
    assert!(connects(&h.advance(ms(100))).is_empty());
    let actions = h.advance(ms(100));
    let probe = connect_of(&actions);
    let actions = h.connected(probe, true);
    assert_eq!(
        grant_of(&actions, w).session(),
        probe,
        "the waiter gets the probe's session"
    );
    assert_eq!(
        h.pool.key_snapshot(&1).unwrap().breaker,
        mcp_pool_core::BreakerState::Closed
    );
}

#[test]
fn i14_fail_fast_rejects_while_open() {
    let mut h = Harness::new(breaker_config(true));
    for _ in 0..2 {
        let (_, actions) = h.acquire(1);
        h.connected(connect_of(&actions), false);
    }
    let (id, actions) = h.acquire(1);
    assert_eq!(rejects(&actions), vec![(id, RejectReason::CircuitOpen)]);
}

#[test]
fn i10_expired_sessions_are_never_granted() {
    let config = Config {
        max_lifetime: Some(Duration::from_secs(60)),
        lifetime_jitter: Duration::from_secs(10),
        ..quiet()
    };
    let mut h = Harness::new(config);
    let lease = h.lease_new(1);
    let expires = h.pool.session(lease.session()).unwrap().expires_at.unwrap();
    assert!(
        expires > Time::ZERO + Duration::from_secs(50)
            && expires <= Time::ZERO + Duration::from_secs(60)
    );
    h.now = expires;
    let actions = h.release(lease, Outcome::Ok);
    assert_eq!(closes(&actions), vec![lease.session()]);
    assert_eq!(h.pool.stats().evictions(EvictReason::MaxLifetime), 1);
}

#[test]
fn idle_timeout_keeps_min_idle() {
    let config = Config {
        idle_timeout: Some(Duration::from_secs(30)),
        min_idle_per_key: 1,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let a = h.lease_new(1);
    // Pre-warm: the key keeps one more session on its way.
    let (_, actions) = h.step(Input::HandleTimeout);
    assert!(actions.is_empty());
    let warm = h.pool.connects().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(warm.len(), 1, "min idle 1 pre-warms one session");
    h.connected(warm[0], true);
    h.release(a, Outcome::Ok);
    let actions = h.advance(Duration::from_secs(31));
    assert_eq!(
        closes(&actions).len(),
        1,
        "idle timeout closes down to min idle"
    );
    assert_eq!(h.pool.key_snapshot(&1).unwrap().idle, 1);
}

#[test]
fn drain_closes_idle_now_and_leased_on_return_and_stays_usable() {
    let mut h = Harness::new(quiet());
    let a = h.lease_new(1);
    let b = h.lease_new(1);
    h.release(b, Outcome::Ok);
    let (_, actions) = h.step(Input::Drain);
    assert_eq!(closes(&actions), vec![b.session()]);
    let (id, actions) = h.acquire(1);
    let s = connect_of(&actions);
    grant_of(&h.connected(s, true), id);
    let actions = h.release(a, Outcome::Ok);
    assert_eq!(closes(&actions), vec![a.session()]);
}

#[test]
fn i15_shutdown_rejects_waiters_and_closes_everything_once_returned() {
    let config = Config {
        max_sessions_per_key: 1,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let a = h.lease_new(1);
    let b = h.lease_new(2);
    h.release(b, Outcome::Ok);
    let (w, _) = h.acquire(1);
    let (_, pending) = h.acquire(3);
    let connecting = connect_of(&pending);
    let (_, actions) = h.step(Input::Shutdown);
    assert!(rejects(&actions).contains(&(w, RejectReason::ShuttingDown)));
    assert_eq!(closes(&actions), vec![b.session()]);
    let (late, actions) = h.acquire(1);
    assert_eq!(rejects(&actions), vec![(late, RejectReason::ShuttingDown)]);
    assert_eq!(closes(&h.connected(connecting, true)), vec![connecting]);
    assert_eq!(closes(&h.release(a, Outcome::Ok)), vec![a.session()]);
    for s in [a.session(), b.session(), connecting] {
        assert!(!h.pool.is_closed());
        h.closed(s);
    }
    assert!(h.pool.is_closed());
}

#[test]
fn i1_shared_sessions_serve_several_callers() {
    let config = Config {
        max_leases_per_session: 2,
        max_sessions_per_key: 1,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let a = h.lease_new(1);
    let (id, actions) = h.acquire(1);
    assert_eq!(grant_of(&actions, id).session(), a.session());
    let (third, actions) = h.acquire(1);
    assert!(actions.is_empty(), "at most two leases per session");
    let actions = h.release(a, Outcome::Ok);
    grant_of(&actions, third);
}

#[test]
fn i12_cancelled_waiter_is_never_answered() {
    let config = Config {
        max_sessions_per_key: 1,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let l = h.lease_new(1);
    let (w, _) = h.acquire(1);
    let (r, _) = h.step(Input::CancelAcquire(w));
    r.unwrap();
    assert!(h.release(l, Outcome::Ok).is_empty());
    let (r, _) = h.step(Input::CancelAcquire(w));
    assert_eq!(r, Err(InputError::UnknownAcquire(w)));
}

#[test]
fn i6_too_many_keys_is_refused_and_empty_keys_are_forgotten() {
    let config = Config {
        max_keys: 1,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let a = h.lease_new(1);
    let (id, actions) = h.acquire(2);
    assert_eq!(rejects(&actions), vec![(id, RejectReason::TooManyKeys)]);
    h.release(a, Outcome::TransportError);
    h.closed(a.session());
    // Key 1 holds nothing now: key 2 may take its place.
    let (_, actions) = h.acquire(2);
    connect_of(&actions);
}

#[test]
fn i16_bad_ids_are_typed_errors_and_change_nothing() {
    let mut h = Harness::new(quiet());
    let lease = h.lease_new(1);
    let s = lease.session();
    h.release(lease, Outcome::Ok);
    let (r, _) = h.step(Input::Release {
        lease,
        outcome: Outcome::Ok,
    });
    assert_eq!(r, Err(InputError::UnknownLease(lease)), "double release");
    let (r, _) = h.step(Input::Checked {
        session: s,
        result: Ok(()),
    });
    assert!(matches!(r, Err(InputError::WrongState { .. })));
    let (r, _) = h.step(Input::Closed(s));
    assert!(matches!(r, Err(InputError::WrongState { .. })));
    let (r, _) = h.step(Input::Connected {
        session: s,
        result: Ok(()),
    });
    assert!(matches!(r, Err(InputError::WrongState { .. })));
    // A closed session's id stays dead.
    h.step(Input::TransportClosed(s)).0.unwrap();
    h.closed(s);
    let (r, _) = h.step(Input::TransportClosed(s));
    assert_eq!(r, Err(InputError::UnknownSession(s)));
    let (r, _) = h.step(Input::Release {
        lease,
        outcome: Outcome::Ok,
    });
    assert_eq!(r, Err(InputError::UnknownLease(lease)));
}

#[test]
fn zero_sized_pool_is_refused_at_construction() {
    let config = Config {
        max_sessions_total: 0,
        ..Config::default()
    };
    let err = Pool::<u8>::new(config).unwrap_err();
    assert!(err.to_string().contains("max_sessions_total"), "{err}");
}

#[test]
fn same_inputs_give_the_same_actions() {
    let run = || {
        let mut h = Harness::new(Config {
            max_lifetime: Some(Duration::from_secs(60)),
            lifetime_jitter: Duration::from_secs(30),
            ..quiet()
        });
        let mut log: Vec<Action<Key>> = Vec::new();
        for k in 0..3 {
            let l = h.lease_new(k);
            log.extend(h.release(l, Outcome::Timeout));
            log.push(Action::Close {
                session: l.session(),
                reason: EvictReason::Drained,
            });
        }
        let expiries: Vec<_> = h.pool.sessions().map(|(_, i)| i.expires_at).collect();
        (log, expiries, h.pool)
    };
    let (a, ea, pa) = run();
    let (b, eb, pb) = run();
    assert_eq!(a, b);
    assert_eq!(ea, eb);
    assert_eq!(pa, pb);
}

#[test]
fn i11_keepalive_checks_do_not_reset_the_idle_clock() {
    let config = Config {
        check_interval: Duration::from_secs(10),
        idle_timeout: Some(Duration::from_secs(25)),
        ..quiet()
    };
    let mut h = Harness::new(config);
    let lease = h.lease_new(1);
    h.release(lease, Outcome::Ok);
    let mut closed_at = None;
    for second in 1..=60u64 {
        h.now = Time::from_millis(second * 1000);
        let actions = h.step(Input::HandleTimeout).1;
        for action in actions {
            match action {
                Action::Validate { session, .. } => {
                    h.checked(session, true);
                }
                Action::Close { reason, .. } => closed_at = closed_at.or(Some((second, reason))),
                _ => {}
            }
        }
    }
    assert_eq!(closed_at, Some((25, EvictReason::IdleTimeout)));
    assert_eq!(
        h.pool.stats().checks_passed,
        2,
        "keepalives at 10 s and 20 s"
    );
}

#[test]
fn i14_fail_fast_acquire_after_the_cooldown_starts_the_probe() {
    let mut h = Harness::new(breaker_config(true));
    for _ in 0..2 {
        let (_, actions) = h.acquire(1);
        h.connected(connect_of(&actions), false);
    }
    // The cool-down ends at +100ms; no timer has run yet when the caller comes.
    h.now = h.now + ms(100);
    let (id, actions) = h.acquire(1);
    assert!(rejects(&actions).is_empty(), "{actions:?}");
    let probe = connect_of(&actions);
    grant_of(&h.connected(probe, true), id);
}

// ------------------------------------------------- queue limit, closed and
// unused grants, definite refusals, capacity held by poisoned sessions

fn one_per_key() -> Config {
    Config {
        max_sessions_per_key: 1,
        ..quiet()
    }
}

#[test]
fn i6_a_full_queue_refuses_the_next_caller_at_once() {
    let config = Config {
        max_waiters_per_key: 2,
        ..one_per_key()
    };
    let mut h = Harness::new(config);
    let held = h.lease_new(1);
    let (a, _) = h.acquire(1);
    let (b, _) = h.acquire(1);
    let (c, actions) = h.acquire(1);
    assert_eq!(rejects(&actions), vec![(c, RejectReason::QueueFull)]);
    assert_eq!(h.pool.waiters(&1), vec![a, b]);
    assert_eq!(h.pool.stats().rejected_queue_full, 1);
    // Another key has its own queue.
    let (_, actions) = h.acquire(2);
    assert!(rejects(&actions).is_empty());
    let actions = h.release(held, Outcome::Ok);
    assert_eq!(grant_of(&actions, a).session(), held.session());
}

#[test]
fn i8_a_grant_found_closed_keeps_its_place_at_the_head() {
    let mut h = Harness::new(one_per_key());
    let (a, actions) = h.acquire(1);
    let first = connect_of(&actions);
    let (b, _) = h.acquire(1);
    let lease = grant_of(&h.connected(first, true), a);
    let (r, actions) = h.step(Input::GrantClosed(lease));
    r.unwrap();
    assert_eq!(closes(&actions), vec![first], "the dead session is closed");
    assert_eq!(h.state(first), Some(SessionState::Poisoned));
    assert_eq!(h.pool.waiters(&1), vec![a, b], "a is back at the head");
    let (c, _) = h.acquire(1);
    let second = connect_of(&actions);
    let actions = h.connected(second, true);
    assert_eq!(
        grant_of(&actions, a).session(),
        second,
        "the re-queued caller is served first"
    );
    assert_eq!(h.pool.waiters(&1), vec![b, c]);
    assert_eq!(h.pool.stats().grants_closed, 1);
    assert_eq!(h.pool.stats().evictions(EvictReason::TransportClosed), 1);
}

#[test]
fn i9_a_grant_found_closed_after_its_deadline_is_answered_at_once() {
    let mut h = Harness::new(one_per_key());
    let (a, actions) = h.acquire_until(1, Some(h.now + ms(100)));
    let lease = grant_of(&h.connected(connect_of(&actions), true), a);
    h.now = h.now + ms(100);
    let (_, actions) = h.step(Input::GrantClosed(lease));
    assert_eq!(rejects(&actions), vec![(a, RejectReason::TimedOut)]);
}

#[test]
fn i14_sessions_that_die_before_proving_themselves_open_the_breaker() {
    let config = Config {
        breaker: BreakerConfig {
            failure_threshold: 3,
            ..BreakerConfig::default()
        },
        ..one_per_key()
    };
    let mut h = Harness::new(config);
    let (a, mut actions) = h.acquire(1);
    // Each connect succeeds and each session is dead when its caller gets
    // it: without a proof, the successes do not reset the failures.
    for _ in 0..3 {
        let s = connect_of(&actions);
        let lease = grant_of(&h.connected(s, true), a);
        actions = h.step(Input::GrantClosed(lease)).1;
    }
    assert!(
        connects(&actions).is_empty(),
        "no fourth connect at once: {actions:?}"
    );
    let snap = h.pool.key_snapshot(&1).unwrap();
    assert_eq!(snap.breaker, mcp_pool_core::BreakerState::Open);
    assert_eq!(
        h.pool.waiters(&1),
        vec![a],
        "the caller waits for the probe"
    );
    // The probe's session proves itself: the breaker forgets everything.
    let actions = h.advance(ms(100));
    let probe = connect_of(&actions);
    let lease = grant_of(&h.connected(probe, true), a);
    h.release(lease, Outcome::Ok);
    let (r, _) = h.step(Input::TransportClosed(probe));
    r.unwrap();
    let (b, actions) = h.acquire(1);
    let lease = grant_of(&h.connected(connect_of(&actions), true), b);
    h.step(Input::GrantClosed(lease)).0.unwrap();
    assert_eq!(
        h.pool.key_snapshot(&1).unwrap().breaker,
        mcp_pool_core::BreakerState::Closed,
        "one failure after a proof does not open it"
    );
}

#[test]
fn i11_an_unused_grant_returns_without_a_check_and_without_new_evidence() {
    let config = Config {
        check_interval: Duration::from_secs(30),
        ..one_per_key()
    };
    let mut h = Harness::new(config);
    let (a, actions) = h.acquire(1);
    let s = connect_of(&actions);
    let lease = grant_of(&h.connected(s, true), a);
    let connected_at = h.now;
    h.now = h.now + Duration::from_secs(10);
    let (r, actions) = h.step(Input::ReleaseUnused(lease));
    r.unwrap();
    assert!(actions.is_empty(), "no check: {actions:?}");
    assert_eq!(h.state(s), Some(SessionState::Idle));
    let info = h.pool.session(s).unwrap();
    assert_eq!(info.verified_at, connected_at, "no new evidence of health");
    assert_eq!(h.pool.stats().returned_unused, 1);
    // Its keepalive is still due 30 s after the connect, not after the return.
    let actions = h.advance(Duration::from_secs(20));
    assert_eq!(validate_of(&actions), s);
}

#[test]
fn i11_an_unused_grant_of_a_fresh_session_is_handed_on_without_a_check() {
    // Every reuse is checked; a session that was never used is not reused.
    let config = Config {
        check_interval: Duration::ZERO,
        ..one_per_key()
    };
    let mut h = Harness::new(config);
    let (a, actions) = h.acquire(1);
    let s = connect_of(&actions);
    let (b, _) = h.acquire(1);
    let lease = grant_of(&h.connected(s, true), a);
    let (_, actions) = h.step(Input::ReleaseUnused(lease));
    assert_eq!(grant_of(&actions, b).session(), s);
    assert!(pick(&actions, |a| matches!(a, Action::Validate { .. })
        .then_some(()))
    .is_empty());
    // Once used, it is checked before the next caller gets it.
    let lease = grant_of(&actions, b);
    let (c, _) = h.acquire(1);
    let actions = h.release(lease, Outcome::Ok);
    assert_eq!(validate_of(&actions), s);
    assert_eq!(grant_of(&h.checked(s, true), c).session(), s);
}

#[test]
fn i17_a_definite_refusal_answers_every_caller_that_asked_before() {
    let mut h = Harness::new(one_per_key());
    let held = h.lease_new(1);
    let (a, _) = h.acquire(1);
    let (b, _) = h.acquire(1);
    let (c, _) = h.acquire(1);
    // The held session dies: one connect for the three waiters.
    let actions = h.release(held, Outcome::TransportError);
    let attempt = connect_of(&actions);
    let (late, _) = h.acquire(1);
    let (r, actions) = h.step(Input::Connected {
        session: attempt,
        result: Err(ConnectFailure::Rejected),
    });
    r.unwrap();
    let reason = RejectReason::ConnectFailed { attempt };
    assert_eq!(
        rejects(&actions),
        vec![(a, reason), (b, reason), (c, reason)]
    );
    // A caller who asked after the attempt began waits for the next one.
    assert_eq!(h.pool.waiters(&1), vec![late]);
    assert_eq!(connects(&actions).len(), 1);

    // An unreachable server answers only the head caller: the others wait
    // for the next attempt (the server may be restarting).
    let mut h = Harness::new(one_per_key());
    let (a, actions) = h.acquire(1);
    let attempt = connect_of(&actions);
    let (b, _) = h.acquire(1);
    let actions = h.connected(attempt, false);
    assert_eq!(
        rejects(&actions),
        vec![(a, RejectReason::ConnectFailed { attempt })]
    );
    assert_eq!(h.pool.waiters(&1), vec![b]);
    assert_eq!(connects(&actions).len(), 1, "b gets a new attempt");
}

#[test]
fn i17_a_breaker_opened_by_a_definite_refusal_refuses_at_once_until_a_probe_passes() {
    let config = Config {
        max_sessions_per_key: 1,
        ..breaker_config(false)
    };
    let mut h = Harness::new(config);
    let (a, actions) = h.acquire(1);
    let attempt = connect_of(&actions);
    let (_, actions) = h.step(Input::Connected {
        session: attempt,
        result: Err(ConnectFailure::Rejected),
    });
    assert_eq!(
        rejects(&actions),
        vec![(a, RejectReason::ConnectFailed { attempt })]
    );
    let (b, actions) = h.acquire(1);
    let attempt = connect_of(&actions);
    let (c, _) = h.acquire(1);
    let (_, actions) = h.step(Input::Connected {
        session: attempt,
        result: Err(ConnectFailure::Rejected),
    });
    // b asked before the attempt began and learns its cause; c asked after
    // it, and the breaker it opened refuses c at once.
    assert_eq!(
        rejects(&actions),
        vec![
            (b, RejectReason::ConnectFailed { attempt }),
            (c, RejectReason::CircuitOpen)
        ]
    );
    assert!(h.pool.key_snapshot(&1).unwrap().definite_failure);
    // Open on a definite answer: refused at once, not at the deadline.
    let (d, actions) = h.acquire(1);
    assert_eq!(rejects(&actions), vec![(d, RejectReason::CircuitOpen)]);
    // Cool-down over: the next caller starts the probe and waits for it;
    // one more arriving meanwhile is refused at once.
    h.now = h.now + ms(100);
    let (e, actions) = h.acquire(1);
    let probe = connect_of(&actions);
    let (f, actions) = h.acquire(1);
    assert_eq!(rejects(&actions), vec![(f, RejectReason::CircuitOpen)]);
    let lease = grant_of(&h.connected(probe, true), e);
    h.release(lease, Outcome::Ok);
    assert!(!h.pool.key_snapshot(&1).unwrap().definite_failure);
}

#[test]
fn i6_a_poisoned_session_counts_toward_the_total_until_its_close_is_issued() {
    let config = Config {
        max_sessions_total: 1,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let held = h.lease_new(1);
    let (r, actions) = h.step(Input::TransportClosed(held.session()));
    r.unwrap();
    assert!(closes(&actions).is_empty(), "still held by its caller");
    assert_eq!(h.pool.live(), 0);
    assert_eq!(h.pool.open(), 1);
    let (w, actions) = h.acquire(2);
    assert!(
        connects(&actions).is_empty(),
        "the held dead session still occupies the pool: {actions:?}"
    );
    let actions = h.release(held, Outcome::TransportError);
    assert_eq!(closes(&actions), vec![held.session()]);
    let s = connect_of(&actions);
    grant_of(&h.connected(s, true), w);
}

#[test]
fn i7_drain_retires_connects_in_flight() {
    let mut h = Harness::new(one_per_key());
    let (a, actions) = h.acquire(1);
    let before = connect_of(&actions);
    let (_, actions) = h.step(Input::Drain);
    assert!(actions.is_empty());
    let actions = h.connected(before, true);
    assert_eq!(closes(&actions), vec![before], "retired as it connects");
    let after = connect_of(&actions);
    assert_ne!(after, before);
    grant_of(&h.connected(after, true), a);
    assert_eq!(h.pool.stats().evictions(EvictReason::Drained), 1);
}

#[test]
fn i8_i9_waiters_leave_in_any_order_and_expire_by_deadline_across_keys() {
    let config = Config {
        max_sessions_per_key: 1,
        max_sessions_total: 2,
        ..quiet()
    };
    let mut h = Harness::new(config);
    let one = h.lease_new(1);
    let two = h.lease_new(2);
    let t = h.now;
    let (a, _) = h.acquire_until(1, Some(t + ms(300)));
    let (b, _) = h.acquire_until(2, Some(t + ms(100)));
    let (c, _) = h.acquire_until(1, Some(t + ms(200)));
    let (d, _) = h.acquire_until(1, Some(t + ms(400)));
    assert_eq!(h.pool.poll_timeout(), Some(t + ms(100)));
    h.step(Input::CancelAcquire(c)).0.unwrap();
    assert_eq!(h.pool.waiters(&1), vec![a, d]);
    assert_eq!(h.pool.poll_timeout(), Some(t + ms(100)));
    let actions = h.advance(ms(100));
    assert_eq!(rejects(&actions), vec![(b, RejectReason::TimedOut)]);
    assert_eq!(h.pool.poll_timeout(), Some(t + ms(300)));
    // Any input acts on the deadlines that have come, not only the timer.
    h.now = t + ms(300);
    let actions = h.release(two, Outcome::Ok);
    assert_eq!(rejects(&actions), vec![(a, RejectReason::TimedOut)]);
    let actions = h.release(one, Outcome::Ok);
    assert_eq!(grant_of(&actions, d).session(), one.session());
}

#[test]
fn i1_a_session_carries_the_leases_its_connect_said() {
    // Exclusive by default; a connect may say its session is shared.
    let mut h = Harness::new(quiet());
    let (a, actions) = h.acquire(1);
    let s = connect_of(&actions);
    let (b, _) = h.acquire(1);
    let (c, _) = h.acquire(1);
    let (r, actions) = h.step(Input::ConnectedWithLeases {
        session: s,
        max_leases: 2,
    });
    r.unwrap();
    let granted = grants(&actions);
    assert_eq!(
        granted
            .iter()
            .map(|(id, l)| (*id, l.session()))
            .collect::<Vec<_>>(),
        vec![(a, s), (b, s)],
        "two callers share it, the third waits for another"
    );
    assert_eq!(h.pool.session(s).unwrap().max_leases, 2);
    assert_eq!(h.pool.waiters(&1), vec![c]);
    let (other, _) = h.pool.connects().next().expect("c's connect in flight");
    let (r, _) = h.step(Input::ConnectedWithLeases {
        session: other,
        max_leases: 0,
    });
    assert!(matches!(r, Err(InputError::ZeroLeases(_))), "{r:?}");
}

// ---------------------------------------------------------------- lanes

fn with_lanes() -> Config {
    Config {
        lanes: true,
        check_interval: Duration::from_secs(30),
        max_lifetime: Some(Duration::from_secs(600)),
        ..one_per_key()
    }
}

fn lends(actions: &[Action<Key>]) -> Vec<SessionId> {
    pick(actions, |a| match a {
        Action::Lend { session, .. } => Some(*session),
        _ => None,
    })
}

fn recalls(actions: &[Action<Key>]) -> Vec<SessionId> {
    pick(actions, |a| match a {
        Action::Recall { session } => Some(*session),
        _ => None,
    })
}

fn lane_open(actions: &[Action<Key>]) -> Vec<bool> {
    pick(actions, |a| match a {
        Action::LaneOpen { open, .. } => Some(*open),
        _ => None,
    })
}

fn lane_returned(h: &mut Harness, session: SessionId, back: LaneReturn) -> Vec<Action<Key>> {
    let (r, actions) = h.step(Input::LaneReturned { session, back });
    r.expect("lane return accepted");
    actions
}

#[test]
fn i18_a_fresh_session_nobody_waits_for_is_lent_with_its_bound() {
    let mut h = Harness::new(with_lanes());
    let (a, actions) = h.acquire(1);
    let actions = h.connected(connect_of(&actions), true);
    let lease = grant_of(&actions, a);
    assert_eq!(
        lane_open(&actions),
        vec![true],
        "the key is at its limit and its session will be lent: its lane queues"
    );
    let s = lease.session();
    h.now = h.now + Duration::from_secs(1);
    let actions = h.release(lease, Outcome::Ok);
    let expires = h.pool.session(s).unwrap().expires_at.unwrap();
    assert_eq!(
        actions,
        vec![Action::Lend {
            session: s,
            until: h.now + Duration::from_secs(30),
            renew: Duration::from_secs(30),
            hard_end: expires,
        }],
        "lent with its freshness bound and renewal rule"
    );
    assert_eq!(h.state(s), Some(SessionState::Lent));
    assert_eq!(h.pool.stats().lends, 1);
    // A check on every reuse, or shared sessions, are never lent.
    let mut h = Harness::new(Config {
        check_interval: Duration::ZERO,
        ..with_lanes()
    });
    let lease = h.lease_new(1);
    let actions = h.release(lease, Outcome::Ok);
    assert!(lends(&actions).is_empty(), "{actions:?}");
}

/// With `s` lent to key 1's lane and held there, a caller `a` asks the
/// pool, which recalls `s` and (the key below its limit) connects anew; a
/// second caller `b` waits; 5 ms later `s`'s holder gives it back `Ok`, and
/// `a` gets it. Returns `a`'s grant, `b`, the new session and the give-back's
/// time.
fn given_back_to_a_caller_in_the_pool(
    h: &mut Harness,
    s: SessionId,
) -> (LeaseId, AcquireId, SessionId, Time) {
    let (a, actions) = h.acquire(1);
    assert_eq!(recalls(&actions), vec![s], "{actions:?}");
    let fresh = connect_of(&actions);
    let (b, _) = h.acquire(1);
    h.now = h.now + ms(5);
    let at = h.now;
    let actions = lane_returned(
        h,
        s,
        LaneReturn::Released {
            outcome: Outcome::Ok,
            at,
        },
    );
    (grant_of(&actions, a), b, fresh, at)
}

#[test]
fn i18_callers_waiting_in_the_pool_get_the_lent_sessions_back_in_order() {
    // Below its limit, the key's lane does not queue callers: one who finds
    // nothing parked asks the pool, which connects and takes back what the
    // lane holds.
    let mut h = Harness::new(Config {
        max_sessions_per_key: 2,
        ..with_lanes()
    });
    let lease = h.lease_new(1);
    let s = lease.session();
    let actions = h.release(lease, Outcome::Ok);
    assert_eq!(lends(&actions), vec![s]);
    assert!(
        lane_open(&actions).is_empty(),
        "below the limit: {actions:?}"
    );
    // The lent session was in use; its holder gives it back Ok.
    let (lease, b, fresh, at) = given_back_to_a_caller_in_the_pool(&mut h, s);
    assert_eq!(lease.session(), s);
    assert_eq!(h.pool.session(s).unwrap().verified_at, at);
    let actions = h.connected(fresh, true);
    grant_of(&actions, b);
    // Nobody waits any more: lent again as it comes back.
    let actions = h.release(lease, Outcome::Ok);
    assert_eq!(lends(&actions), vec![s]);
}

#[test]
fn i18_a_key_at_its_limit_moves_its_callers_to_its_lane_in_order() {
    let mut h = Harness::new(with_lanes());
    let lease = h.lease_new(1);
    let s = lease.session();
    // At its limit, with the only session leased: callers wait in the lane.
    let (a, actions) = h.acquire(1);
    assert!(
        matches!(actions.as_slice(), [Action::WaitInLane { acquire, .. }] if *acquire == a),
        "{actions:?}"
    );
    let (b, actions) = h.acquire(1);
    assert!(
        matches!(actions.as_slice(), [Action::WaitInLane { acquire, .. }] if *acquire == b),
        "{actions:?}"
    );
    assert_eq!(h.pool.waiting(), 0, "they wait in the lane, not here");
    assert_eq!(h.pool.stats().moved_to_lane, 2);
    // Given back, the session is lent, and the lane hands it to a.
    let actions = h.release(lease, Outcome::Ok);
    assert_eq!(lends(&actions), vec![s]);
    // A use that ends badly in the lane closes it: its callers come back.
    let actions = lane_returned(
        &mut h,
        s,
        LaneReturn::Released {
            outcome: Outcome::Timeout,
            at: Time::ZERO,
        },
    );
    assert_eq!(lane_open(&actions), vec![false], "{actions:?}");
    assert_eq!(validate_of(&actions), s);
}

#[test]
fn i18_a_grant_found_closed_while_the_lane_is_open_waits_in_the_lane() {
    let mut h = Harness::new(with_lanes());
    // a's session dies before a gets it; a second caller's session takes
    // its place, leased, so the key is at its limit with its lane open.
    let (a, actions) = h.acquire(1);
    let dead = grant_of(&h.connected(connect_of(&actions), true), a);
    h.step(Input::TransportClosed(dead.session())).0.unwrap();
    let (b, actions) = h.acquire(1);
    let lease = grant_of(&h.connected(connect_of(&actions), true), b);
    assert!(h.pool.key_snapshot(&1).unwrap().lane_open);
    // The dead grant comes back: its caller may not wait in the pool while
    // the lane is open (I18), so it waits in the lane.
    let (r, actions) = h.step(Input::GrantClosed(dead));
    r.unwrap();
    assert!(
        actions
            .iter()
            .any(|x| matches!(x, Action::WaitInLane { acquire, .. } if *acquire == a)),
        "{actions:?}"
    );
    assert_eq!(h.pool.waiting(), 0, "nobody waits in the pool");
    // b's session, given back, is lent and handed to that caller there.
    let actions = h.release(lease, Outcome::Ok);
    assert_eq!(lends(&actions), vec![lease.session()]);
}

#[test]
fn i11_a_lent_session_comes_back_at_its_bound_and_is_checked_if_unused() {
    let mut h = Harness::new(with_lanes());
    let lease = h.lease_new(1);
    let s = lease.session();
    h.release(lease, Outcome::Ok);
    let actions = h.advance(Duration::from_secs(30));
    assert_eq!(recalls(&actions), vec![s]);
    // Used in its lane meanwhile: still fresh, lent again.
    let used = h.now.saturating_sub(Duration::from_secs(1));
    let actions = lane_returned(
        &mut h,
        s,
        LaneReturn::Parked {
            last_used: Some(used),
        },
    );
    assert_eq!(lends(&actions), vec![s]);
    // Not used since: stale, so checked before anyone gets it.
    let actions = h.advance(Duration::from_secs(30));
    assert_eq!(recalls(&actions), vec![s]);
    let actions = lane_returned(&mut h, s, LaneReturn::Parked { last_used: None });
    assert!(lends(&actions).is_empty(), "{actions:?}");
    assert_eq!(h.state(s), Some(SessionState::Idle));
    assert_eq!(validate_of(&h.advance(ms(0))), s);
}

#[test]
fn i4_a_lent_session_whose_transport_dies_is_recalled_and_closed_once_back() {
    let mut h = Harness::new(with_lanes());
    let lease = h.lease_new(1);
    let s = lease.session();
    h.release(lease, Outcome::Ok);
    let (r, actions) = h.step(Input::TransportClosed(s));
    r.unwrap();
    assert_eq!(recalls(&actions), vec![s]);
    assert!(closes(&actions).is_empty(), "its lane may still hold it");
    assert_eq!(h.state(s), Some(SessionState::Poisoned));
    let actions = lane_returned(&mut h, s, LaneReturn::Parked { last_used: None });
    assert_eq!(closes(&actions), vec![s]);
}

#[test]
fn i3_i11_uses_that_end_badly_in_a_lane_come_back_to_the_pool() {
    for (outcome, expect) in [
        (Outcome::TransportError, SessionState::Poisoned),
        (Outcome::Timeout, SessionState::Validating),
        (Outcome::Cancelled, SessionState::Validating),
    ] {
        let mut h = Harness::new(with_lanes());
        let lease = h.lease_new(1);
        let s = lease.session();
        h.release(lease, Outcome::Ok);
        let at = h.now;
        let actions = lane_returned(&mut h, s, LaneReturn::Released { outcome, at });
        assert_eq!(h.state(s), Some(expect), "{outcome:?}: {actions:?}");
    }
}

#[test]
fn i14_a_lent_session_found_closed_before_any_use_counts_against_the_breaker() {
    let mut h = Harness::new(Config {
        breaker: BreakerConfig {
            failure_threshold: 1,
            ..BreakerConfig::default()
        },
        ..with_lanes()
    });
    let (a, actions) = h.acquire(1);
    let s = connect_of(&actions);
    // Connected with nobody left waiting (the caller gave up): lent at once.
    h.step(Input::CancelAcquire(a)).0.unwrap();
    let actions = h.connected(s, true);
    assert_eq!(lends(&actions), vec![s]);
    let actions = lane_returned(&mut h, s, LaneReturn::Closed);
    assert_eq!(closes(&actions), vec![s]);
    assert_eq!(
        h.pool.key_snapshot(&1).unwrap().breaker,
        mcp_pool_core::BreakerState::Open
    );
}

#[test]
fn i15_drain_and_shutdown_recall_what_lanes_hold() {
    let mut h = Harness::new(with_lanes());
    let lease = h.lease_new(1);
    let s = lease.session();
    h.release(lease, Outcome::Ok);
    let (_, actions) = h.step(Input::Drain);
    assert_eq!(recalls(&actions), vec![s]);
    assert_eq!(lane_open(&actions), vec![false]);
    let actions = lane_returned(&mut h, s, LaneReturn::Parked { last_used: None });
    assert_eq!(closes(&actions), vec![s], "retired as it comes back");

    let mut h = Harness::new(with_lanes());
    let lease = h.lease_new(1);
    let s = lease.session();
    h.release(lease, Outcome::Ok);
    let (_, actions) = h.step(Input::Shutdown);
    assert_eq!(recalls(&actions), vec![s]);
    let at = h.now;
    let actions = lane_returned(
        &mut h,
        s,
        LaneReturn::Released {
            outcome: Outcome::Ok,
            at,
        },
    );
    assert_eq!(closes(&actions), vec![s]);
    h.closed(s);
    assert!(h.pool.is_closed());
}

#[test]
fn i13_a_key_waiting_for_room_gets_a_session_lent_by_another_key() {
    let mut h = Harness::new(Config {
        max_sessions_total: 1,
        ..with_lanes()
    });
    let lease = h.lease_new(1);
    let s = lease.session();
    h.release(lease, Outcome::Ok);
    let (b, actions) = h.acquire(2);
    assert_eq!(recalls(&actions), vec![s], "{actions:?}");
    let actions = lane_returned(&mut h, s, LaneReturn::Parked { last_used: None });
    assert_eq!(closes(&actions), vec![s], "closed for capacity");
    let other = connect_of(&actions);
    grant_of(&h.connected(other, true), b);
}

#[test]
fn i16_only_a_lent_session_comes_back_from_a_lane() {
    let mut h = Harness::new(with_lanes());
    let lease = h.lease_new(1);
    let (r, _) = h.step(Input::LaneReturned {
        session: lease.session(),
        back: LaneReturn::Closed,
    });
    assert!(matches!(r, Err(InputError::WrongState { .. })), "{r:?}");
}

#[test]
fn i11_a_grant_returned_unused_after_a_use_in_the_lane_is_checked_once_stale() {
    let mut h = Harness::new(Config {
        max_sessions_per_key: 2,
        check_interval: ms(100),
        ..with_lanes()
    });
    let lease = h.lease_new(1);
    let s = lease.session();
    assert_eq!(lends(&h.release(lease, Outcome::Ok)), vec![s]);
    // Unused in its lane until its bound: back, checked, lent again just
    // proven.
    assert_eq!(recalls(&h.advance(ms(100))), vec![s]);
    lane_returned(&mut h, s, LaneReturn::Parked { last_used: None });
    assert_eq!(validate_of(&h.advance(ms(0))), s);
    assert_eq!(lends(&h.checked(s, true)), vec![s]);
    // Used in the lane; a caller in the pool gets it back from its holder.
    let (lease, b, fresh, _) = given_back_to_a_caller_in_the_pool(&mut h, s);
    // a's caller had gone; its grant comes back unused once the last use
    // is older than `check_interval`: not handed to b as just proven (the
    // auditor fails the step if it is), so b gets the new session.
    h.now = h.now + ms(100);
    let (r, actions) = h.step(Input::ReleaseUnused(lease));
    r.unwrap();
    assert!(grants(&actions).is_empty(), "{actions:?}");
    assert_eq!(h.state(s), Some(SessionState::Idle));
    let actions = h.connected(fresh, true);
    assert_eq!(grant_of(&actions, b).session(), fresh);
}
