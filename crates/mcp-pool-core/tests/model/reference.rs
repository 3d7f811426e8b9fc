//! The reference model: each session's state, derived by the rules of the
//! state table in `specs/SPEC.md` from the inputs and actions alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mcp_pool_core::{
    AcquireId, Action, Applied, CheckFailure, ConnectFailure, Input, InputError, LaneReturn,
    LeaseId, Outcome, RejectReason, SessionId, SessionState, Time,
};

use crate::common::{Harness, Key};
use crate::Op;

/// The reference: each session's state derived only from the inputs and the
/// actions, by the rules of the state table in `specs/SPEC.md`.
#[derive(Default, Debug)]
pub(super) struct Reference {
    pub(super) connecting: BTreeSet<SessionId>,
    pub(super) sessions: BTreeMap<SessionId, RefSession>,
    pub(super) waiting: BTreeSet<AcquireId>,
    pub(super) dead_leases: Vec<LeaseId>,
    pub(super) dead_sessions: Vec<SessionId>,
    pub(super) answered: Vec<AcquireId>,
    /// The latest acquire issued so far.
    pub(super) last_acquire: Option<AcquireId>,
    /// For each connect, the latest acquire issued when it began: only
    /// callers up to it may learn of its failure.
    pub(super) connect_began_after: BTreeMap<SessionId, Option<AcquireId>>,
    /// The acquire each held lease answered.
    pub(super) granted: BTreeMap<LeaseId, AcquireId>,
    /// Sessions lent to their lanes, as the lanes see them.
    pub(super) lanes: BTreeMap<SessionId, RefLane>,
    /// Callers waiting in each key's lane (their deadlines), in order.
    pub(super) lane_waiters: BTreeMap<Key, Vec<Time>>,
    /// Acquires the lanes must hand back to the pool (their lane closed).
    pub(super) adopt: Vec<(Key, Time)>,
    /// The key of every session connected.
    pub(super) session_keys: BTreeMap<SessionId, Key>,
}

/// One lent session as its lane sees it.
#[derive(Debug)]
pub(super) struct RefLane {
    pub(super) key: Key,
    pub(super) until: Time,
    pub(super) renew: Duration,
    pub(super) hard_end: Time,
    pub(super) taken: bool,
    pub(super) recalled: bool,
    pub(super) last_used: Option<Time>,
}

#[derive(Debug)]
pub(super) struct RefSession {
    pub(super) state: SessionState,
    pub(super) leases: BTreeSet<LeaseId>,
    pub(super) checking: bool,
    pub(super) closing: bool,
}

impl Reference {
    pub(super) fn step(
        &mut self,
        input: &Input<Key>,
        result: &Result<Applied, InputError>,
        actions: &[Action<Key>],
    ) {
        if result.is_err() {
            assert!(actions.is_empty());
            return;
        }
        match input {
            Input::Acquire { .. } => {
                if let Ok(Applied::Acquire(id)) = result {
                    self.waiting.insert(*id);
                    self.last_acquire = Some(*id);
                }
            }
            Input::CancelAcquire(id) => {
                assert!(
                    self.waiting.remove(id),
                    "cancel accepted for a non-waiting acquire"
                );
                self.answered.push(*id);
            }
            Input::LaneReturned { session, .. } => {
                let l = self.lanes.remove(session).expect("returned from its lane");
                let r = self.sessions.get_mut(session).expect("lent session known");
                match input {
                    Input::LaneReturned {
                        back: LaneReturn::Closed,
                        ..
                    }
                    | Input::LaneReturned {
                        back:
                            LaneReturn::Released {
                                outcome: Outcome::TransportError,
                                ..
                            },
                        ..
                    } => r.state = SessionState::Poisoned,
                    _ if r.state == SessionState::Lent => r.state = SessionState::Idle,
                    _ => {}
                }
                let _ = l;
            }
            Input::ConnectedWithLeases { session, .. } => {
                assert!(self.connecting.remove(session));
                self.sessions.insert(
                    *session,
                    RefSession {
                        state: SessionState::Idle,
                        leases: BTreeSet::new(),
                        checking: false,
                        closing: false,
                    },
                );
            }
            Input::Connected { session, result } => {
                assert!(self.connecting.remove(session));
                if result.is_ok() {
                    self.sessions.insert(
                        *session,
                        RefSession {
                            state: SessionState::Idle,
                            leases: BTreeSet::new(),
                            checking: false,
                            closing: false,
                        },
                    );
                } else {
                    self.dead_sessions.push(*session);
                }
            }
            Input::ReleaseUnused(lease) | Input::GrantClosed(lease) => {
                let r = self
                    .sessions
                    .get_mut(&lease.session())
                    .expect("returned session known");
                assert!(
                    r.leases.remove(lease),
                    "grant returned for a lease not held"
                );
                self.dead_leases.push(*lease);
                let acquire = self.granted.remove(lease).expect("a granted lease");
                if matches!(input, Input::GrantClosed(_)) {
                    // The session is dead; its caller goes back in line.
                    r.state = SessionState::Poisoned;
                    self.answered.retain(|a| *a != acquire);
                    self.waiting.insert(acquire);
                } else if r.state == SessionState::Leased && r.leases.is_empty() {
                    r.state = SessionState::Idle;
                }
            }
            Input::Release { lease, outcome } => {
                let r = self
                    .sessions
                    .get_mut(&lease.session())
                    .expect("released session known");
                assert!(
                    r.leases.remove(lease),
                    "release accepted for a lease not held"
                );
                self.dead_leases.push(*lease);
                self.granted.remove(lease);
                if *outcome == Outcome::TransportError {
                    r.state = SessionState::Poisoned;
                } else if r.state == SessionState::Leased && r.leases.is_empty() {
                    r.state = SessionState::Idle;
                }
            }
            Input::Checked { session, result } => {
                let r = self
                    .sessions
                    .get_mut(session)
                    .expect("checked session known");
                assert!(r.checking, "check result accepted with no check in flight");
                r.checking = false;
                if r.state == SessionState::Validating {
                    r.state = if result.is_ok() {
                        SessionState::Idle
                    } else {
                        SessionState::Poisoned
                    };
                }
            }
            Input::TransportClosed(session) => {
                self.sessions.get_mut(session).expect("known session").state =
                    SessionState::Poisoned;
            }
            Input::Closed(session) => {
                let r = self.sessions.remove(session).expect("closed session known");
                assert!(r.closing, "closed accepted without a Close");
                self.dead_sessions.push(*session);
            }
            Input::HandleTimeout | Input::Drain | Input::Shutdown => {}
        }
        for action in actions {
            match action {
                Action::WaitInLane {
                    acquire,
                    key,
                    deadline,
                } => {
                    assert!(self.waiting.remove(acquire), "moved a non-waiting acquire");
                    self.answered.push(*acquire);
                    self.lane_waiters.entry(*key).or_default().push(*deadline);
                }
                Action::Lend {
                    session,
                    until,
                    renew,
                    hard_end,
                } => {
                    let key = self.session_keys[session];
                    let r = self.sessions.get_mut(session).expect("lent session known");
                    assert!(
                        r.state == SessionState::Idle && r.leases.is_empty() && !r.checking,
                        "lent a {:?} session",
                        r.state
                    );
                    r.state = SessionState::Lent;
                    // Straight to the first caller waiting in the lane.
                    let waiter = self.lane_waiters.get_mut(&key).filter(|w| !w.is_empty());
                    let taken = waiter.map(|w| w.remove(0)).is_some();
                    let fresh = self.lanes.insert(
                        *session,
                        RefLane {
                            key,
                            until: *until,
                            renew: *renew,
                            hard_end: *hard_end,
                            taken,
                            recalled: false,
                            last_used: None,
                        },
                    );
                    assert!(fresh.is_none(), "lent twice");
                }
                Action::Recall { session } => {
                    let l = self
                        .lanes
                        .get_mut(session)
                        .expect("recalled a lent session");
                    assert!(!l.recalled, "recalled twice");
                    l.recalled = true;
                }
                Action::LaneOpen { key, open: false } => {
                    for deadline in self.lane_waiters.remove(key).unwrap_or_default() {
                        self.adopt.push((*key, deadline));
                    }
                }
                Action::LaneOpen { .. } => {}
                Action::Connect { session, key, .. } => {
                    self.session_keys.insert(*session, *key);
                    assert!(self.connecting.insert(*session));
                    self.connect_began_after.insert(*session, self.last_acquire);
                }
                Action::Grant { acquire, lease } => {
                    assert!(
                        self.waiting.remove(acquire),
                        "grant to a non-waiting acquire"
                    );
                    self.answered.push(*acquire);
                    let r = self
                        .sessions
                        .get_mut(&lease.session())
                        .expect("granted session known");
                    assert!(
                        matches!(r.state, SessionState::Idle | SessionState::Leased),
                        "granted a {:?} session",
                        r.state
                    );
                    r.state = SessionState::Leased;
                    assert!(r.leases.insert(*lease));
                    self.granted.insert(*lease, *acquire);
                }
                Action::Reject { acquire, reason } => {
                    assert!(
                        self.waiting.remove(acquire),
                        "reject of a non-waiting acquire"
                    );
                    if let RejectReason::ConnectFailed { attempt } = reason {
                        let began_after = self.connect_began_after.get(attempt).copied();
                        assert!(
                            began_after.flatten().is_some_and(|last| *acquire <= last),
                            "{acquire:?} failed by connect {attempt:?}, begun before it was issued"
                        );
                    }
                    self.answered.push(*acquire);
                }
                Action::Validate { session, .. } => {
                    let r = self
                        .sessions
                        .get_mut(session)
                        .expect("validated session known");
                    assert_eq!(
                        r.state,
                        SessionState::Idle,
                        "check of a session that is not free"
                    );
                    r.state = SessionState::Validating;
                    r.checking = true;
                }
                Action::Close { session, .. } => {
                    assert!(!self.lanes.contains_key(session), "closed while lent");
                    let r = self
                        .sessions
                        .get_mut(session)
                        .expect("closed session known");
                    assert!(r.leases.is_empty() && !r.checking && !r.closing);
                    r.state = SessionState::Poisoned;
                    r.closing = true;
                }
            }
        }
    }

    pub(super) fn agrees_with(&self, h: &Harness) {
        let pool = &h.pool;
        let sessions: BTreeMap<_, _> = pool
            .sessions()
            .map(|(s, i)| (s, (i.state, i.checking, i.close_issued)))
            .collect();
        let expected: BTreeMap<_, _> = self
            .sessions
            .iter()
            .map(|(s, r)| (*s, (r.state, r.checking, r.closing)))
            .collect();
        assert_eq!(sessions, expected, "session states disagree");
        let connects: BTreeSet<_> = pool.connects().map(|(s, _)| s).collect();
        assert_eq!(connects, self.connecting, "connects disagree");
        let leases: BTreeSet<_> = pool.leases().collect();
        let expected: BTreeSet<_> = self
            .sessions
            .values()
            .flat_map(|r| r.leases.iter().copied())
            .collect();
        assert_eq!(leases, expected, "leases disagree");
        assert_eq!(
            pool.waiting(),
            self.waiting.len(),
            "waiting callers disagree"
        );
        for s in &self.dead_sessions {
            assert!(
                matches!(pool.session_state(*s), Some(SessionState::Closed)),
                "{s:?} should be gone"
            );
        }
    }

    /// Carries out a lane operation: the lane's own work changes no state of
    /// the pool's; what must go back to the pool comes back as an input.
    pub(super) fn lane_op(&mut self, op: &Op, now: Time) -> Option<Option<Input<Key>>> {
        let of = |f: &dyn Fn(&RefLane) -> bool| -> Vec<SessionId> {
            self.lanes
                .iter()
                .filter(|(_, l)| f(l))
                .map(|(s, _)| *s)
                .collect()
        };
        Some(match *op {
            Op::LaneTake { pick: i } => {
                let parked = of(&|l| !l.taken && !l.recalled && now < l.until);
                if let Some(s) = pick(&parked, i) {
                    self.lanes.get_mut(&s).expect("picked").taken = true;
                }
                None
            }
            Op::LaneRelease { pick: i, outcome } => {
                let taken = of(&|l| l.taken);
                let s = pick(&taken, i)?;
                let l = self.lanes.get_mut(&s).expect("picked");
                if !l.recalled && matches!(outcome, Outcome::Ok | Outcome::ApplicationError) {
                    l.last_used = Some(now);
                    l.until = l.hard_end.min(now + l.renew);
                    // Straight to the first caller waiting in the lane, or parked.
                    let waiters = self.lane_waiters.get_mut(&l.key).filter(|w| !w.is_empty());
                    l.taken = waiters.map(|w| w.remove(0)).is_some();
                    None
                } else {
                    Some(Input::LaneReturned {
                        session: s,
                        back: LaneReturn::Released { outcome, at: now },
                    })
                }
            }
            Op::LaneBroken { pick: i, closed } => {
                let parked = of(&|l| !l.taken && !l.recalled);
                let s = pick(&parked, i)?;
                let l = &self.lanes[&s];
                if !closed && now < l.until {
                    return Some(None);
                }
                Some(Input::LaneReturned {
                    session: s,
                    back: if closed {
                        LaneReturn::Closed
                    } else {
                        LaneReturn::Parked {
                            last_used: l.last_used,
                        }
                    },
                })
            }
            _ => return None,
        })
    }

    /// A recalled session parked in its lane comes back at once; callers of
    /// a lane that closed ask the pool, in order.
    pub(super) fn recall_due(&mut self, now: Time) -> Option<Input<Key>> {
        if !self.adopt.is_empty() {
            let (key, deadline) = self.adopt.remove(0);
            return Some(Input::Acquire {
                key,
                deadline: Some(deadline.max(now + Duration::from_nanos(1))),
            });
        }
        self.lanes
            .iter()
            .find(|(_, l)| l.recalled && !l.taken)
            .map(|(s, l)| Input::LaneReturned {
                session: *s,
                back: LaneReturn::Parked {
                    last_used: l.last_used,
                },
            })
    }

    pub(super) fn input_for(&self, op: &Op, h: &Harness) -> Option<Input<Key>> {
        let of_state = |f: &dyn Fn(&RefSession) -> bool| -> Vec<SessionId> {
            self.sessions
                .iter()
                .filter(|(_, r)| f(r))
                .map(|(s, _)| *s)
                .collect()
        };
        Some(match *op {
            Op::Acquire { key, wait_ms } => Input::Acquire {
                key,
                deadline: wait_ms.map(|ms| h.now + Duration::from_millis(ms as u64)),
            },
            Op::Release { pick: i, outcome } => {
                let leases: Vec<_> = self
                    .sessions
                    .values()
                    .flat_map(|r| r.leases.iter().copied())
                    .collect();
                Input::Release {
                    lease: pick(&leases, i)?,
                    outcome,
                }
            }
            Op::Cancel { pick: i } => {
                Input::CancelAcquire(pick(&self.waiting.iter().copied().collect::<Vec<_>>(), i)?)
            }
            Op::Connect {
                pick: i,
                ok: true,
                kind: 2,
            } => Input::ConnectedWithLeases {
                session: pick(&self.connecting.iter().copied().collect::<Vec<_>>(), i)?,
                max_leases: 3,
            },
            Op::Connect { pick: i, ok, kind } => Input::Connected {
                session: pick(&self.connecting.iter().copied().collect::<Vec<_>>(), i)?,
                result: match (ok, kind) {
                    (true, _) => Ok(()),
                    (false, 0) => Err(ConnectFailure::Failed),
                    (false, 1) => Err(ConnectFailure::TimedOut),
                    (false, _) => Err(ConnectFailure::Rejected),
                },
            },
            Op::GrantClosed { pick: i } | Op::ReleaseUnused { pick: i } => {
                // Only a grant its caller has not used yet: the latest lease
                // of each session stands for one.
                let leases: Vec<_> = self.granted.keys().copied().collect();
                let lease = pick(&leases, i)?;
                match op {
                    Op::GrantClosed { .. } => Input::GrantClosed(lease),
                    _ => Input::ReleaseUnused(lease),
                }
            }
            Op::Check { pick: i, ok } => Input::Checked {
                session: pick(&of_state(&|r| r.checking), i)?,
                result: if ok {
                    Ok(())
                } else {
                    Err(CheckFailure::TimedOut)
                },
            },
            Op::TransportClosed { pick: i } => {
                Input::TransportClosed(pick(&of_state(&|r| !r.closing), i)?)
            }
            Op::Close { pick: i } => Input::Closed(pick(&of_state(&|r| r.closing), i)?),
            Op::Advance { .. } | Op::ToNextTimeout => Input::HandleTimeout,
            // A lane operation with nothing to act on.
            Op::LaneTake { .. } | Op::LaneRelease { .. } | Op::LaneBroken { .. } => return None,
            Op::Drain => Input::Drain,
            Op::Shutdown => Input::Shutdown,
            Op::Stale { pick: i, kind } => match kind {
                0 => Input::Release {
                    lease: pick(&self.dead_leases, i)?,
                    outcome: Outcome::Ok,
                },
                1 => Input::Closed(pick(&self.dead_sessions, i)?),
                2 => Input::CancelAcquire(pick(&self.answered, i)?),
                3 => Input::Checked {
                    session: pick(&of_state(&|r| !r.checking), i)?,
                    result: Ok(()),
                },
                _ => Input::Connected {
                    session: pick(&self.sessions.keys().copied().collect::<Vec<_>>(), i)?,
                    result: Ok(()),
                },
            },
        })
    }
}

/// The `i`-th of `items`, counting round (none if there are none).
fn pick<T: Copy>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()])
}
