//! Lanes: sessions lent, taken back, recalled and returned.

use super::*;

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
