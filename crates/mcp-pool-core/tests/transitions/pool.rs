//! The pool's own transitions: reuse, poisoning, checks, keys and limits,
//! deadlines, the breaker, lifetimes, drain and shutdown, bad input.

use super::*;

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
