//! The invariants that need a run's history, checked step by step.

use std::collections::BTreeMap;

use crate::invariants::ids::*;
use crate::{
    AcquireId, Action, Applied, ConnectFailure, Input, InputError, LaneReturn, LeaseId, Outcome,
    Pool, PoolKey, RejectReason, SessionId, SessionState, Time, Violation,
};

macro_rules! ensure {
    ($cond:expr, $inv:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Violation { invariant: $inv, detail: format!($($fmt)+) });
        }
    };
}

/// Watches a run of a [`Pool`] from outside and checks the invariants of
/// `specs/SPEC.md` that need history (I2, I3, I4, I5, I7, I8, I9, I10, I11,
/// I12, I14, I15, I17), then [`Pool::check_invariants`] for the rest.
///
/// It keeps only what those invariants need, forgets closed sessions and
/// answered acquires, and is `Clone + Eq + Hash` so a model checker can hold
/// it in its state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Auditor<K> {
    sessions: BTreeMap<SessionId, SessionHistory<K>>,
    pending: BTreeMap<AcquireId, PendingAcquire<K>>,
    /// The acquire each held lease answered.
    leases: BTreeMap<LeaseId, (AcquireId, PendingAcquire<K>)>,
    /// One more than the latest acquire id issued.
    next_acquire: u64,
    shutdown: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SessionHistory<K> {
    key: K,
    connected: bool,
    transport_failed: bool,
    transport_closed: bool,
    poisoned: bool,
    needs_check: bool,
    /// Proven healthy (connect or check) and not released since.
    handoff: bool,
    verified_at: Time,
    close_issued: bool,
    /// The acquires issued before its connect began (ids below this).
    acquires_before: u64,
    /// Lent to its lane and not back yet.
    lent: bool,
    /// Its recall was emitted while lent.
    recalled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PendingAcquire<K> {
    key: K,
    deadline: Time,
}

impl<K: PoolKey> Default for Auditor<K> {
    fn default() -> Self {
        Auditor {
            sessions: BTreeMap::new(),
            pending: BTreeMap::new(),
            leases: BTreeMap::new(),
            next_acquire: 0,
            shutdown: false,
        }
    }
}

impl<K: PoolKey> Auditor<K> {
    /// An auditor for a pool that has seen no input yet.
    pub fn new() -> Auditor<K> {
        Auditor::default()
    }

    /// Checks one step: `input` was just applied to `pool` with `result`, and
    /// `actions` are every action it emitted, in order (poll them all after
    /// each input, before the next one).
    pub fn observe(
        &mut self,
        pool: &Pool<K>,
        input: &Input<K>,
        result: &Result<Applied, InputError>,
        actions: &[Action<K>],
    ) -> Result<(), Violation> {
        let now = pool.now();
        if result.is_err() {
            ensure!(
                actions.is_empty(),
                I16,
                "refused input {input:?} emitted {actions:?}"
            );
            return pool.check_invariants();
        }
        let refused = self.apply_input(pool, input, result, now)?;
        for action in actions {
            self.apply_action(pool, action, now)?;
        }
        if let Some((key, before)) = refused {
            let left = self
                .pending
                .range(..AcquireId(before))
                .find(|(_, p)| p.key == key);
            ensure!(
                left.is_none(),
                I17,
                "{:?} of {key:?} still waits after a connect begun after it was refused by the server",
                left.map(|l| l.0)
            );
        }
        for (sid, info) in pool.sessions() {
            if info.state == SessionState::Poisoned {
                if let Some(h) = self.sessions.get_mut(&sid) {
                    h.poisoned = true;
                }
            }
        }
        for (sid, h) in &self.sessions {
            if h.lent && !h.recalled {
                // A lent session stays takeable in its lane until recalled.
                ensure!(
                    !h.transport_closed && !h.poisoned,
                    I4,
                    "{sid:?} is broken and still takeable in its lane"
                );
                ensure!(
                    !self.shutdown,
                    I15,
                    "{sid:?} still takeable in its lane after shutdown"
                );
            }
        }
        pool.check_invariants()
    }

    /// Takes the input's side of a step. Returns the key and the
    /// `acquires_before` of a connect a live server refused (for I17).
    fn apply_input(
        &mut self,
        pool: &Pool<K>,
        input: &Input<K>,
        result: &Result<Applied, InputError>,
        now: Time,
    ) -> Result<Option<(K, u64)>, Violation> {
        match input {
            Input::Acquire { key, deadline } => {
                if let Ok(Applied::Acquire(id)) = result {
                    self.next_acquire = self.next_acquire.max(id.as_u64() + 1);
                    let deadline = deadline.unwrap_or(now + pool.config().acquire_timeout);
                    let fresh = self.pending.insert(
                        *id,
                        PendingAcquire {
                            key: key.clone(),
                            deadline,
                        },
                    );
                    ensure!(fresh.is_none(), I12, "acquire id {id:?} issued twice");
                }
            }
            Input::CancelAcquire(id) => {
                ensure!(
                    self.pending.remove(id).is_some(),
                    I12,
                    "cancelled {id:?}, which was not pending"
                );
            }
            Input::Connected { session, result } => {
                let h = self.history(*session)?;
                match result {
                    Ok(()) => {
                        h.connected = true;
                        h.handoff = true;
                        h.verified_at = now;
                    }
                    Err(kind) => {
                        let h = self.sessions.remove(session).expect("checked");
                        if *kind == ConnectFailure::Rejected {
                            return Ok(Some((h.key, h.acquires_before)));
                        }
                    }
                }
            }
            Input::ConnectedWithLeases { session, .. } => {
                let h = self.history(*session)?;
                h.connected = true;
                h.handoff = true;
                h.verified_at = now;
            }
            Input::LaneReturned { session, back } => {
                let h = self.history(*session)?;
                ensure!(
                    h.lent,
                    I16,
                    "{session:?} returned from a lane it was not lent to"
                );
                h.lent = false;
                h.recalled = false;
                match back {
                    LaneReturn::Parked { last_used: None } => {}
                    LaneReturn::Parked { last_used: Some(t) } => {
                        h.handoff = false;
                        h.verified_at = h.verified_at.max(*t);
                    }
                    LaneReturn::Released { outcome, at } => {
                        h.handoff = false;
                        match outcome {
                            Outcome::TransportError => h.transport_failed = true,
                            Outcome::Timeout | Outcome::Cancelled => h.needs_check = true,
                            Outcome::Ok | Outcome::ApplicationError => {
                                h.verified_at = h.verified_at.max((*at).min(now))
                            }
                        }
                    }
                    LaneReturn::Closed => {
                        h.handoff = false;
                        h.transport_closed = true;
                    }
                }
            }
            Input::ReleaseUnused(lease) => {
                // Nothing happened to the session: its evidence stands.
                self.history(lease.session())?;
                self.leases.remove(lease);
            }
            Input::GrantClosed(lease) => {
                let h = self.history(lease.session())?;
                h.transport_closed = true;
                h.handoff = false;
                let (id, acquire) = self.leases.remove(lease).ok_or_else(|| Violation {
                    invariant: I16,
                    detail: format!("{lease:?} reported closed, never granted"),
                })?;
                self.pending.insert(id, acquire);
            }
            Input::Release { lease, outcome } => {
                self.leases.remove(lease);
                let h = self.history(lease.session())?;
                h.handoff = false;
                match outcome {
                    Outcome::TransportError => h.transport_failed = true,
                    Outcome::Timeout | Outcome::Cancelled => h.needs_check = true,
                    Outcome::Ok | Outcome::ApplicationError => h.verified_at = now,
                }
            }
            Input::Checked { session, result } => {
                if result.is_ok() {
                    let h = self.history(*session)?;
                    h.needs_check = false;
                    h.handoff = true;
                    h.verified_at = now;
                }
            }
            Input::TransportClosed(session) => self.history(*session)?.transport_closed = true,
            Input::Closed(session) => {
                let h = self.history(*session)?;
                ensure!(
                    h.close_issued,
                    I7,
                    "{session:?} reported closed without a Close"
                );
                self.sessions.remove(session);
            }
            Input::Shutdown => self.shutdown = true,
            Input::HandleTimeout | Input::Drain => {}
        }
        Ok(None)
    }

    fn apply_action(
        &mut self,
        pool: &Pool<K>,
        action: &Action<K>,
        now: Time,
    ) -> Result<(), Violation> {
        match action {
            Action::Connect { session, key, .. } => {
                ensure!(!self.shutdown, I15, "connect {session:?} after shutdown");
                let snapshot = pool.key_snapshot(key);
                let probe_or_closed = snapshot.is_some_and(|s| match s.breaker {
                    crate::BreakerState::Closed => true,
                    crate::BreakerState::HalfOpen => pool.breaker_probe(key) == Some(*session),
                    crate::BreakerState::Open => false,
                });
                ensure!(
                    probe_or_closed,
                    I14,
                    "connect {session:?} for {key:?} while its breaker is {:?}",
                    snapshot.map(|s| s.breaker)
                );
                let fresh = self.sessions.insert(
                    *session,
                    SessionHistory {
                        key: key.clone(),
                        connected: false,
                        transport_failed: false,
                        transport_closed: false,
                        poisoned: false,
                        needs_check: false,
                        handoff: false,
                        verified_at: now,
                        close_issued: false,
                        acquires_before: self.next_acquire,
                        lent: false,
                        recalled: false,
                    },
                );
                ensure!(fresh.is_none(), I16, "session id {session:?} reused");
            }
            Action::Lend {
                session,
                until,
                renew,
                hard_end,
            } => {
                ensure!(!self.shutdown, I15, "lend of {session:?} after shutdown");
                let interval = pool.config().check_interval;
                let expires = pool
                    .session(*session)
                    .and_then(|s| s.expires_at)
                    .unwrap_or(Time::MAX);
                let h = self.history(*session)?;
                ensure!(
                    h.connected && !h.poisoned,
                    I2,
                    "lent {session:?}, which is not serving"
                );
                ensure!(
                    !h.transport_failed,
                    I3,
                    "lent {session:?} after a transport error"
                );
                ensure!(
                    !h.transport_closed,
                    I4,
                    "lent {session:?} after its transport closed"
                );
                ensure!(!h.lent, I16, "lent {session:?} twice");
                ensure!(
                    !h.needs_check,
                    I11,
                    "lent {session:?} after a timed-out or cancelled use, without a check"
                );
                ensure!(
                    *renew <= interval && !interval.is_zero() && *until <= h.verified_at + interval,
                    I11,
                    "lent {session:?} fresh until {until:?} (renewed by {renew:?}), last proven {:?}",
                    h.verified_at
                );
                ensure!(
                    *hard_end <= expires && *until <= *hard_end,
                    I10,
                    "lent {session:?} until {until:?} / {hard_end:?}, lifetime ends {expires:?}"
                );
                h.lent = true;
                h.recalled = false;
            }
            Action::Recall { session } => {
                let h = self.history(*session)?;
                ensure!(
                    h.lent && !h.recalled,
                    I16,
                    "recall of {session:?}, which is not lent"
                );
                h.recalled = true;
            }
            Action::LaneOpen { .. } => {}
            Action::WaitInLane { acquire, key, .. } => {
                let a = self.pending.remove(acquire);
                ensure!(
                    a.as_ref().is_some_and(|a| a.key == *key),
                    I12,
                    "{acquire:?} moved to the lane of {key:?}, which it does not wait for"
                );
                ensure!(
                    pool.key_snapshot(key).is_some_and(|s| s.lane_open),
                    I18,
                    "{acquire:?} moved to the closed lane of {key:?}"
                );
            }
            Action::Grant { acquire, lease } => {
                let sid = lease.session();
                let a = self.pending.remove(acquire);
                ensure!(
                    a.is_some(),
                    I12,
                    "grant to {acquire:?}, which is not pending"
                );
                let a = a.expect("checked");
                self.leases.insert(*lease, (*acquire, a.clone()));
                ensure!(!self.shutdown, I15, "grant to {acquire:?} after shutdown");
                ensure!(
                    now < a.deadline,
                    I9,
                    "grant to {acquire:?} at {now:?}, deadline {:?}",
                    a.deadline
                );
                let earlier = self.pending.range(..*acquire).find(|(_, p)| p.key == a.key);
                ensure!(
                    earlier.is_none(),
                    I8,
                    "grant to {acquire:?} while earlier {:?} of the same key waits",
                    earlier.map(|e| e.0)
                );
                let h = self.sessions.get(&sid);
                ensure!(
                    h.is_some_and(|h| h.connected),
                    I2,
                    "granted {sid:?}, never connected"
                );
                let h = h.expect("checked");
                ensure!(!h.lent, I2, "granted {sid:?}, which its lane holds");
                ensure!(
                    h.key == a.key,
                    I5,
                    "{sid:?} of {:?} granted to an acquire of {:?}",
                    h.key,
                    a.key
                );
                ensure!(
                    !h.transport_failed,
                    I3,
                    "{sid:?} granted after a release with TransportError"
                );
                ensure!(
                    !h.transport_closed,
                    I4,
                    "{sid:?} granted after its transport closed"
                );
                ensure!(!h.poisoned, I2, "{sid:?} granted after it was poisoned");
                let state = pool.session_state(sid);
                ensure!(
                    state == Some(SessionState::Leased),
                    I2,
                    "granted {sid:?} is {state:?} after the step"
                );
                let expires = pool.session(sid).and_then(|s| s.expires_at);
                ensure!(
                    expires.is_none_or(|e| now < e),
                    I10,
                    "{sid:?} granted at {now:?}, lifetime ended {expires:?}"
                );
                let interval = pool.config().check_interval;
                let recent = !interval.is_zero() && now < h.verified_at + interval;
                ensure!(
                    !h.needs_check,
                    I11,
                    "{sid:?} granted after a timed-out or cancelled use, without a check"
                );
                ensure!(
                    h.handoff || recent,
                    I11,
                    "{sid:?} granted at {now:?} without a check, last proven {:?}",
                    h.verified_at
                );
            }
            Action::Reject { acquire, reason } => {
                let a = self.pending.remove(acquire);
                ensure!(
                    a.is_some(),
                    I12,
                    "reject of {acquire:?}, which is not pending"
                );
                let a = a.expect("checked");
                // A caller is refused for time only at its deadline; an open
                // breaker may refuse it sooner with fail-fast, or when the
                // breaker opened on a live server's definite answer.
                let early_allowed = match reason {
                    RejectReason::TimedOut => false,
                    RejectReason::CircuitOpen => {
                        pool.config().breaker.fail_fast
                            || pool
                                .key_snapshot(&a.key)
                                .is_some_and(|k| k.definite_failure)
                    }
                    _ => true,
                };
                ensure!(
                    early_allowed || now >= a.deadline,
                    I9,
                    "{acquire:?} rejected as {reason:?} before its deadline"
                );
            }
            Action::Validate { session, .. } => {
                let h = self.history(*session)?;
                ensure!(
                    !h.poisoned && h.connected,
                    I2,
                    "check of {session:?}, which is not serving"
                );
            }
            Action::Close { session, .. } => {
                let h = self.history(*session)?;
                ensure!(!h.close_issued, I7, "{session:?} closed twice");
                h.close_issued = true;
                let free = pool
                    .session(*session)
                    .is_some_and(|s| s.leases == 0 && !s.checking);
                ensure!(
                    free,
                    I7,
                    "close of {session:?} while a lease or check holds it"
                );
            }
        }
        Ok(())
    }

    fn history(&mut self, session: SessionId) -> Result<&mut SessionHistory<K>, Violation> {
        self.sessions.get_mut(&session).ok_or_else(|| Violation {
            invariant: I16,
            detail: format!("{session:?} accepted by the pool but never issued"),
        })
    }
}
