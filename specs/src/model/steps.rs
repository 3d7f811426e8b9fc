//! What the environment may do next: every step offered in a state, in a
//! fixed order (callers, lanes, the network, the clock, the operator).

use super::*;

impl PoolSpec {
    /// Whether a caller waits, in the pool or in a lane.
    pub(super) fn someone_waits(state: &State) -> bool {
        state
            .callers
            .iter()
            .any(|c| matches!(c, Caller::Waiting(_) | Caller::LaneWaiting(_)))
    }

    /// The session a caller would take from `key`'s lane now, if any.
    pub(super) fn takeable(s: &State, key: Key) -> Option<SessionId> {
        s.lanes
            .iter()
            .find(|l| l.key == key && !l.held && !l.recalled && s.now < l.until)
            .map(|l| l.id)
    }

    /// Every step the environment may take in `state`, in a fixed order.
    pub(super) fn steps(&self, s: &State, out: &mut Vec<Step>) {
        if s.violation.is_some() {
            return;
        }
        let b = &self.bounds;
        let due = s.pool.poll_timeout();
        if !b.inputs_race_timers && due.is_some_and(|t| t <= s.now) {
            out.push(Step::Apply(Input::HandleTimeout));
            return;
        }
        let apply = |out: &mut Vec<Step>, input| out.push(Step::Apply(input));
        // Callers.
        if s.budget.acquires > 0 && s.callers.len() < b.callers as usize {
            for key in 0..b.keys {
                // A caller tries its key's lane first.
                if Self::takeable(s, key).is_some() {
                    out.push(Step::Lane(LaneStep::Take { key }));
                    continue;
                }
                if s.lanes_open.contains(&key) {
                    out.push(Step::Lane(LaneStep::Wait { key }));
                    continue;
                }
                for d in &b.deadlines {
                    let deadline = d.map(|d| s.now + d);
                    apply(out, Input::Acquire { key, deadline });
                }
            }
        }
        for c in &s.callers {
            if let Caller::Holding(lease, _) = c {
                for &outcome in &b.outcomes {
                    apply(
                        out,
                        Input::Release {
                            lease: *lease,
                            outcome,
                        },
                    );
                }
                if s.budget.unused_returns > 0 {
                    apply(out, Input::ReleaseUnused(*lease));
                }
                if s.budget.grant_closures > 0 {
                    apply(out, Input::GrantClosed(*lease));
                }
            }
            if let Caller::LaneHolding(session) = c {
                for &outcome in &b.outcomes {
                    out.push(Step::Lane(LaneStep::Release {
                        session: *session,
                        outcome,
                    }));
                }
            }
        }
        for l in &s.lanes {
            if !l.held && !l.recalled {
                if s.now >= l.until {
                    out.push(Step::Lane(LaneStep::Stale { session: l.id }));
                }
                if s.budget.transport_deaths > 0 {
                    out.push(Step::Lane(LaneStep::Broken { session: l.id }));
                }
            }
        }
        // Network: connects, checks, closes, dying transports.
        for &session in &s.connects {
            if b.connect_leases.is_empty() {
                apply(
                    out,
                    Input::Connected {
                        session,
                        result: Ok(()),
                    },
                );
            }
            for &max_leases in &b.connect_leases {
                apply(
                    out,
                    Input::ConnectedWithLeases {
                        session,
                        max_leases,
                    },
                );
            }
            if s.budget.connect_failures > 0 {
                for &e in &b.connect_failure_kinds {
                    apply(
                        out,
                        Input::Connected {
                            session,
                            result: Err(e),
                        },
                    );
                }
            }
        }
        for &session in &s.checks {
            apply(
                out,
                Input::Checked {
                    session,
                    result: Ok(()),
                },
            );
            if s.budget.check_failures > 0 {
                for &e in &b.check_failure_kinds {
                    apply(
                        out,
                        Input::Checked {
                            session,
                            result: Err(e),
                        },
                    );
                }
            }
        }
        for &session in &s.closes {
            apply(out, Input::Closed(session));
        }
        if s.budget.transport_deaths > 0 {
            for o in &s.open {
                apply(out, Input::TransportClosed(o.id));
            }
        }
        // The clock: a due timer fires before the clock moves on.
        if due.is_some_and(|t| t <= s.now) {
            apply(out, Input::HandleTimeout);
        } else if s.budget.ticks > 0 || Self::someone_waits(s) {
            let horizon = Time::ZERO + b.horizon;
            if let Some(q) = b.time_quantum {
                let step = s.now + q;
                if due.is_none_or(|t| step < t) && step <= horizon {
                    out.push(Step::AdvanceTime(step));
                }
            }
            if let Some(t) = due.filter(|&t| t <= horizon) {
                out.push(Step::AdvanceTime(t));
            }
        }
        // Operator.
        if s.budget.drains > 0 && !s.pool.is_shutting_down() {
            apply(out, Input::Drain);
        }
        if b.shutdown && !s.pool.is_shutting_down() {
            apply(out, Input::Shutdown);
        }
        // A caller may give up while the system is still moving; a caller
        // left waiting with nothing else possible is a liveness failure,
        // not something a cancel may hide.
        if s.budget.cancels > 0 && !out.is_empty() {
            for c in &s.callers {
                if let Caller::Waiting(id) = c {
                    apply(out, Input::CancelAcquire(*id));
                }
            }
        }
    }
}
