//! Edges: the queue limit, closed and unused grants, definite refusals,
//! capacity held by poisoned sessions.

use super::*;

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
