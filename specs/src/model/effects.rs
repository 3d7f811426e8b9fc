//! How the environment answers: a lane's own work, what it does before an
//! input and after the pool's actions (sessions connected, checked and
//! closed, callers answered), and the predicates the properties read.

use super::*;

impl PoolSpec {
    /// A lane's own work; returns what it sends the pool, if anything.
    pub(super) fn lane_step(&self, s: &mut State, step: &LaneStep) -> Option<Input<Key>> {
        let now = s.now;
        match *step {
            LaneStep::Take { key } => {
                let id = Self::takeable(s, key).expect("offered only when takeable");
                s.budget.acquires -= 1;
                let l = s.lanes.iter_mut().find(|l| l.id == id).expect("lent");
                l.held = true;
                s.callers.push(Caller::LaneHolding(id));
                s.seen.lane_taken = true;
                None
            }
            LaneStep::Wait { key } => {
                s.budget.acquires -= 1;
                s.callers.push(Caller::LaneWaiting(key));
                None
            }
            LaneStep::Release { session, outcome } => {
                let pos = s
                    .callers
                    .iter()
                    .position(|c| *c == Caller::LaneHolding(session))
                    .expect("offered only to its holder");
                s.callers.remove(pos);
                let i = s.lanes.iter().position(|l| l.id == session).expect("lent");
                let fast = matches!(outcome, Outcome::Ok | Outcome::ApplicationError);
                if fast && !s.lanes[i].recalled {
                    let l = &mut s.lanes[i];
                    l.last_used = Some(now);
                    l.until = l.hard_end.min(now + l.renew);
                    let key = l.key;
                    match s
                        .callers
                        .iter()
                        .position(|c| *c == Caller::LaneWaiting(key))
                    {
                        Some(w) => {
                            // Straight to the first caller waiting in the lane.
                            s.callers[w] = Caller::LaneHolding(session);
                            s.seen.lane_handoff = true;
                        }
                        None => s.lanes[i].held = false,
                    }
                    return None;
                }
                s.lanes.remove(i);
                Some(Input::LaneReturned {
                    session,
                    back: LaneReturn::Released { outcome, at: now },
                })
            }
            LaneStep::Stale { session } => {
                let i = s.lanes.iter().position(|l| l.id == session).expect("lent");
                let l = s.lanes.remove(i);
                Some(Input::LaneReturned {
                    session,
                    back: LaneReturn::Parked {
                        last_used: l.last_used,
                    },
                })
            }
            LaneStep::Broken { session } => {
                s.budget.transport_deaths -= 1;
                s.open.retain(|o| o.id != session);
                s.lanes.retain(|l| l.id != session);
                Some(Input::LaneReturned {
                    session,
                    back: LaneReturn::Closed,
                })
            }
        }
    }

    /// Confirms every pending close, one `closed` input each, auditing each.
    pub(super) fn confirm_closes(
        &self,
        s: &mut State,
        done: &mut Vec<(Input<Key>, Vec<Action<Key>>)>,
        todo: &mut std::collections::VecDeque<Todo>,
    ) {
        while let Some(session) = s.closes.pop() {
            s.open.retain(|o| o.id != session);
            let input = Input::Closed(session);
            let (_, emitted) = self.feed(s, input.clone(), false, todo);
            done.push((input, emitted));
            if s.violation.is_some() {
                return;
            }
        }
    }

    pub(super) fn breakers(&self, pool: &Pool<Key>) -> Vec<Option<BreakerState>> {
        (0..self.bounds.keys)
            .map(|k| pool.key_snapshot(&k).map(|s| s.breaker))
            .collect()
    }

    /// The environment's side of an input, before it is applied.
    pub(super) fn before(&self, s: &mut State, input: &Input<Key>, adopted: bool) {
        let budget = &mut s.budget;
        match input {
            Input::Acquire { .. } if adopted => {}
            Input::Acquire { .. } => budget.acquires -= 1,
            Input::LaneReturned { .. } => {}
            Input::CancelAcquire(id) => {
                budget.cancels -= 1;
                s.callers.retain(|c| *c != Caller::Waiting(*id));
            }
            Input::Connected { session, result } => {
                s.connects.retain(|c| c != session);
                match result {
                    Ok(()) => s.open.push(OpenSession {
                        id: *session,
                        granted: false,
                    }),
                    Err(_) => budget.connect_failures -= 1,
                }
            }
            Input::ConnectedWithLeases { session, .. } => {
                s.connects.retain(|c| c != session);
                s.open.push(OpenSession {
                    id: *session,
                    granted: false,
                });
            }
            Input::Release { lease, .. } => s
                .callers
                .retain(|c| !matches!(c, Caller::Holding(l, _) if l == lease)),
            Input::ReleaseUnused(lease) => {
                budget.unused_returns -= 1;
                s.callers
                    .retain(|c| !matches!(c, Caller::Holding(l, _) if l == lease));
            }
            Input::GrantClosed(lease) => {
                // The driver saw the transport dead; its caller waits again.
                budget.grant_closures -= 1;
                s.open.retain(|o| o.id != lease.session());
                for c in s.callers.iter_mut() {
                    if let Caller::Holding(l, acquire) = *c {
                        if l == *lease {
                            *c = Caller::Waiting(acquire);
                            s.seen.requeued = Some(acquire);
                        }
                    }
                }
            }
            Input::Checked { session, result } => {
                s.checks.retain(|c| c != session);
                if result.is_err() {
                    budget.check_failures -= 1;
                }
            }
            Input::TransportClosed(session) => {
                budget.transport_deaths -= 1;
                s.open.retain(|o| o.id != *session);
            }
            Input::Closed(session) => {
                s.closes.retain(|c| c != session);
                s.open.retain(|o| o.id != *session);
            }
            Input::Drain => budget.drains -= 1,
            Input::HandleTimeout | Input::Shutdown => {}
        }
    }

    /// The environment's side of the actions the pool emitted.
    pub(super) fn after(
        &self,
        s: &mut State,
        input: &Input<Key>,
        emitted: &[Action<Key>],
        todo: &mut std::collections::VecDeque<Todo>,
    ) {
        for action in emitted {
            match action {
                Action::Connect { session, .. } => s.connects.push(*session),
                Action::Validate { session, .. } => s.checks.push(*session),
                Action::Close { session, .. } => {
                    if s.lanes.iter().any(|l| l.id == *session) && s.violation.is_none() {
                        s.violation = Some(Violation {
                            invariant: properties::I7,
                            detail: format!("close of {session}, which its lane still holds"),
                        });
                    }
                    s.closes.push(*session);
                }
                Action::Lend {
                    session,
                    until,
                    renew,
                    hard_end,
                } => {
                    let key = *s.pool.session(*session).expect("a lent session").key;
                    let waiter = s
                        .callers
                        .iter()
                        .position(|c| *c == Caller::LaneWaiting(key));
                    if let Some(w) = waiter {
                        s.callers[w] = Caller::LaneHolding(*session);
                        s.seen.lane_handoff = true;
                    }
                    s.lanes.push(LaneSession {
                        id: *session,
                        key,
                        until: *until,
                        renew: *renew,
                        hard_end: *hard_end,
                        held: waiter.is_some(),
                        recalled: false,
                        last_used: None,
                    });
                }
                Action::Recall { session } => {
                    let i = s.lanes.iter().position(|l| l.id == *session);
                    let Some(i) = i else {
                        s.violation.get_or_insert(Violation {
                            invariant: properties::I16,
                            detail: format!("recall of {session}, which no lane holds"),
                        });
                        continue;
                    };
                    if s.lanes[i].held {
                        s.lanes[i].recalled = true;
                    } else {
                        let l = s.lanes.remove(i);
                        todo.push_back(Todo::Input(Input::LaneReturned {
                            session: *session,
                            back: LaneReturn::Parked {
                                last_used: l.last_used,
                            },
                        }));
                    }
                }
                Action::WaitInLane { acquire, key, .. } => {
                    match s
                        .callers
                        .iter_mut()
                        .find(|c| **c == Caller::Waiting(*acquire))
                    {
                        Some(c) => *c = Caller::LaneWaiting(*key),
                        None => {
                            s.violation.get_or_insert(Violation {
                                invariant: properties::I12,
                                detail: format!(
                                    "{acquire} moved to a lane, no caller waits for it"
                                ),
                            });
                        }
                    }
                }
                Action::LaneOpen { key, open } => {
                    s.lanes_open.retain(|k| k != key);
                    if *open {
                        s.lanes_open.push(*key);
                        s.lanes_open.sort_unstable();
                    } else {
                        let waiting = s
                            .callers
                            .iter()
                            .filter(|c| **c == Caller::LaneWaiting(*key))
                            .count();
                        for _ in 0..waiting {
                            todo.push_back(Todo::Adopt(*key));
                        }
                    }
                }
                Action::Reject { acquire, reason } => {
                    let waited = s.callers.contains(&Caller::Waiting(*acquire))
                        && !matches!(input, Input::Acquire { .. });
                    if waited
                        && matches!(reason, mcp_pool_core::RejectReason::ConnectFailed { .. })
                        && matches!(
                            input,
                            Input::Connected {
                                result: Err(ConnectFailure::Rejected),
                                ..
                            }
                        )
                    {
                        s.seen.refusal_answered_waiter = true;
                    }
                    s.callers.retain(|c| *c != Caller::Waiting(*acquire));
                }
                Action::Grant { acquire, lease } => {
                    match s
                        .callers
                        .iter_mut()
                        .find(|c| **c == Caller::Waiting(*acquire))
                    {
                        Some(c) => *c = Caller::Holding(*lease, *acquire),
                        None => {
                            if s.violation.is_none() {
                                s.violation = Some(Violation {
                                    invariant: properties::I12,
                                    detail: format!(
                                        "grant to {acquire}, which no caller waits for"
                                    ),
                                });
                            }
                        }
                    }
                    if let Some(o) = s.open.iter_mut().find(|o| o.id == lease.session()) {
                        s.seen.recycled |= o.granted;
                        o.granted = true;
                    }
                    if matches!(input, Input::Checked { result: Ok(()), .. }) {
                        s.seen.waiter_granted_after_check = true;
                    }
                    if s.seen.requeued == Some(*acquire) {
                        s.seen.requeued_then_served = true;
                    }
                }
            }
        }
    }

    /// Sessions leased right now.
    pub(crate) fn leased_sessions(state: &State) -> usize {
        state
            .pool
            .sessions()
            .filter(|(_, info)| info.state == SessionState::Leased)
            .count()
    }

    /// Whether the environment has nothing outstanding and the pool holds no
    /// session or connect.
    pub(crate) fn all_closed(state: &State) -> bool {
        state.pool.is_closed()
            && state.connects.is_empty()
            && state.checks.is_empty()
            && state.closes.is_empty()
            && state.lanes.is_empty()
    }

    /// Whether every acquire was made and none can be left unanswered: no
    /// caller waits, or (when the horizon stops the clock) the environment
    /// has nothing in flight and the pool has a timer armed past the horizon
    /// for those that do (I9 checks that it is no later than their deadline).
    pub(crate) fn callers_done(&self, state: &State) -> bool {
        if state.budget.acquires > 0 {
            return false;
        }
        if !Self::someone_waits(state) {
            return true;
        }
        let horizon = Time::ZERO + self.bounds.horizon;
        state.connects.is_empty()
            && state.checks.is_empty()
            && state.pool.poll_timeout().is_some_and(|t| t > horizon)
    }
}
