//! The model: the real [`Pool`] driven by an exhaustive environment.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pool_core::{
    AcquireId, Action, Applied, Auditor, BreakerState, CheckFailure, Config, ConfigError,
    ConnectFailure, Input, InputError, LeaseId, Outcome, Pool, SessionId, SessionState, Time,
    Violation,
};
use stateright::{Model, Property};

use crate::properties;

/// The key type of the modelled pool: keys are `0..Bounds::keys`.
pub type Key = u8;

/// What the environment may do, and how often: every bound is finite, so
/// every path of the model ends (the graph is acyclic, which `eventually`
/// properties need).
///
/// Callers are interchangeable: at most `callers` acquires are outstanding
/// (waiting or holding a lease) at once, and `acquires` acquires are made in
/// all, spread over the callers in every possible way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// A short name for reports.
    pub name: &'static str,
    /// Number of keys; acquires name keys `0..keys`.
    pub keys: u8,
    /// Most acquires outstanding at once (callers acting concurrently).
    pub callers: u8,
    /// Acquires made in all.
    pub acquires: u8,
    /// Deadlines an acquire may carry, relative to its `now`; `None` leaves
    /// the pool's `acquire_timeout`.
    pub deadlines: Vec<Option<Duration>>,
    /// Acquires a caller may give up on before they are answered.
    pub cancels: u8,
    /// Outcomes a caller may release a lease with.
    pub outcomes: Vec<Outcome>,
    /// Lease limits a successful connect reports for its session
    /// (`connected_with_leases`); empty: a plain `connected`.
    pub connect_leases: Vec<usize>,
    /// Kinds of failed connect the environment may report.
    pub connect_failure_kinds: Vec<ConnectFailure>,
    /// Connects that may fail, in all.
    pub connect_failures: u8,
    /// Kinds of failed health check the environment may report.
    pub check_failure_kinds: Vec<CheckFailure>,
    /// Health checks that may fail, in all.
    pub check_failures: u8,
    /// Transports that may die under a connected session, in all.
    pub transport_deaths: u8,
    /// Grants the driver may find closed before their caller gets them
    /// (the acquire goes back in line), in all.
    pub grant_closures: u8,
    /// Grants that may come back unused (their caller had gone), in all.
    pub unused_returns: u8,
    /// Times the clock may advance while no caller waits. While a caller
    /// waits the clock may always advance: its deadline bounds how often.
    pub ticks: u8,
    /// If true, inputs may arrive at a deadline that has come before the
    /// timer fires (a driver that stamps each event with the current time
    /// and polls its timer among other events). If false, the driver fires
    /// a due timer before anything else.
    pub inputs_race_timers: bool,
    /// The clock never moves past this time. A caller still waiting at the
    /// end of a path then has a deadline past the horizon (and I9 checks
    /// that a timer covers it).
    pub horizon: Duration,
    /// If set, the clock may also advance by this much when the next
    /// deadline is further away (so events can fall between deadlines).
    pub time_quantum: Option<Duration>,
    /// `drain` calls, in all.
    pub drains: u8,
    /// Whether the pool may be shut down. If so, every path ends shut down.
    pub shutdown: bool,
    /// If true, the environment confirms each `Close` in the step that
    /// emitted it, instead of at any later point (fewer interleavings).
    pub closes_confirmed_at_once: bool,
    /// The pool's own configuration.
    pub pool: Config,
}

/// A caller with an outstanding acquire.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Caller {
    /// Waiting for the answer to this acquire.
    Waiting(AcquireId),
    /// Holding this lease, granted to this acquire.
    Holding(LeaseId, AcquireId),
}

/// A connected session whose transport the environment keeps alive.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpenSession {
    /// The session.
    pub id: SessionId,
    /// Whether it was ever granted.
    pub granted: bool,
}

/// What remains of each bound of [`Bounds`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Acquires still to make.
    pub acquires: u8,
    /// Cancels still allowed.
    pub cancels: u8,
    /// Connect failures still allowed.
    pub connect_failures: u8,
    /// Check failures still allowed.
    pub check_failures: u8,
    /// Transport deaths still allowed.
    pub transport_deaths: u8,
    /// Grants found closed still allowed.
    pub grant_closures: u8,
    /// Unused returns still allowed.
    pub unused_returns: u8,
    /// Clock advances still allowed while nobody waits.
    pub ticks: u8,
    /// Drains still allowed.
    pub drains: u8,
}

/// Interesting events seen on the way to a state (monotonic), for the
/// `sometimes` properties that are about history rather than one state.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seen {
    /// A session was granted a second time.
    pub recycled: bool,
    /// A key's breaker went from open or half-open back to closed.
    pub breaker_closed_again: bool,
    /// A passed health check handed its session to a waiting caller.
    pub waiter_granted_after_check: bool,
    /// A caller whose grant was found closed was granted another session.
    pub requeued_then_served: bool,
    /// A live server's definite refusal answered a caller who was waiting.
    pub refusal_answered_waiter: bool,
    /// Acquires put back in line after a closed grant, not yet granted.
    pub requeued: Option<AcquireId>,
}

/// One state of the model: the real pool, its auditor, and everything the
/// environment (callers, network, clock) has outstanding. Collections are
/// kept sorted, so states that differ only in order are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// The pool under test.
    pub pool: Pool<Key>,
    /// The pool's history checker, fed every step.
    pub auditor: Auditor<Key>,
    /// The environment's clock; every input is applied at this time.
    pub now: Time,
    /// Callers with an outstanding acquire, sorted.
    pub callers: Vec<Caller>,
    /// Connects asked for and not yet answered, sorted.
    pub connects: Vec<SessionId>,
    /// Health checks asked for and not yet answered, sorted.
    pub checks: Vec<SessionId>,
    /// Closes asked for and not yet confirmed, sorted.
    pub closes: Vec<SessionId>,
    /// Connected sessions whose transport is alive and not yet closed, sorted.
    pub open: Vec<OpenSession>,
    /// What the environment may still do.
    pub budget: Budget,
    /// Events seen on the way here.
    pub seen: Seen,
    /// The first broken invariant, if any: the state is then terminal.
    pub violation: Option<Violation>,
}

/// One step of the environment: an input to the pool at the current time,
/// or the clock moving on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Feed this input to the pool at the state's `now`.
    Apply(Input<Key>),
    /// Move the clock to this time (the pool learns of it with the next input).
    AdvanceTime(Time),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AdvanceTime(t) => write!(f, "clock moves to {}", ms(*t)),
            Step::Apply(input) => match input {
                Input::Acquire { key, deadline } => match deadline {
                    Some(d) => write!(f, "acquire key {key}, deadline {}", ms(*d)),
                    None => write!(f, "acquire key {key}"),
                },
                Input::CancelAcquire(id) => write!(f, "cancel {id}"),
                Input::Connected { session, result } => match result {
                    Ok(()) => write!(f, "connect {session} succeeds"),
                    Err(e) => write!(f, "connect {session} fails ({e:?})"),
                },
                Input::ConnectedWithLeases {
                    session,
                    max_leases,
                } => write!(f, "connect {session} succeeds, {max_leases} leases at once"),
                Input::Release { lease, outcome } => write!(f, "release {lease} with {outcome:?}"),
                Input::ReleaseUnused(lease) => write!(f, "{lease} comes back unused"),
                Input::GrantClosed(lease) => {
                    write!(f, "{lease} is found closed before its caller gets it")
                }
                Input::Checked { session, result } => match result {
                    Ok(()) => write!(f, "check of {session} passes"),
                    Err(e) => write!(f, "check of {session} fails ({e:?})"),
                },
                Input::TransportClosed(s) => write!(f, "transport of {s} dies"),
                Input::Closed(s) => write!(f, "close of {s} done"),
                Input::HandleTimeout => write!(f, "timer fires (handle_timeout)"),
                Input::Drain => write!(f, "drain"),
                Input::Shutdown => write!(f, "shutdown"),
            },
        }
    }
}

/// A time as milliseconds, for reports.
pub(crate) fn ms(t: Time) -> String {
    let nanos = t.as_nanos();
    if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else {
        format!("{nanos}ns")
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|m| m.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Formats an action the pool emitted, for reports.
pub(crate) fn action_text(action: &Action<Key>) -> String {
    match action {
        Action::Connect { session, key, .. } => format!("Connect {session} for key {key}"),
        Action::Validate { session, .. } => format!("Validate {session}"),
        Action::Grant { acquire, lease } => format!("Grant {lease} to {acquire}"),
        Action::Reject { acquire, reason } => format!("Reject {acquire} ({reason})"),
        Action::Close { session, reason } => format!("Close {session} ({reason})"),
    }
}

/// What one step did: the state after it, what the pool returned and the
/// actions it emitted (for counterexample reports).
#[derive(Clone, Debug)]
pub struct Transition {
    /// The state after the step.
    pub next: State,
    /// The pool's answer to the input (`None` for a clock move or a panic).
    pub result: Option<Result<Applied, InputError>>,
    /// Every action the pool emitted for the input, in order.
    pub emitted: Vec<Action<Key>>,
    /// Inputs the environment applied at once after it (close
    /// confirmations, with [`Bounds::closes_confirmed_at_once`]), each with
    /// the actions it emitted.
    pub followups: Vec<(Input<Key>, Vec<Action<Key>>)>,
}

/// The name under which a panic of the core is recorded.
pub const PANIC: &str = "the core never panics";

/// The stateright model of the real pool under [`Bounds`].
///
/// Each step is one core input (or a clock move); after it every emitted
/// action is polled and handed to the environment, and the [`Auditor`]
/// checks every invariant. The first violation is stored in the state,
/// which then has no successor.
pub struct PoolSpec {
    bounds: Bounds,
    initial: Pool<Key>,
    shortest_only: bool,
    first: Arc<Mutex<HashMap<&'static str, u64>>>,
}

impl PoolSpec {
    /// A model of a fresh pool built from `bounds.pool`.
    pub fn new(bounds: Bounds) -> Result<PoolSpec, ConfigError> {
        let pool = Pool::new(bounds.pool.clone())?;
        Ok(PoolSpec::with_pool(bounds, pool))
    }

    /// A model that starts from `pool` (which should be fresh and built from
    /// `bounds.pool`): lets tests check a deliberately broken pool.
    pub fn with_pool(bounds: Bounds, pool: Pool<Key>) -> PoolSpec {
        PoolSpec {
            bounds,
            initial: pool,
            shortest_only: true,
            first: Arc::default(),
        }
    }

    /// By default an `always` property fails only at the first violating
    /// state the checker visits, so a breadth-first checker keeps the
    /// shortest counterexample instead of overwriting it. With `false`,
    /// every violating state fails (for the Explorer).
    pub fn every_violation_fails(mut self, every: bool) -> PoolSpec {
        self.shortest_only = !every;
        self
    }

    /// The bounds explored.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Whether the state violates the invariant named `name` and must be
    /// reported as such (see [`PoolSpec::every_violation_fails`]).
    pub(crate) fn violates(&self, name: &'static str, state: &State) -> bool {
        match &state.violation {
            Some(v) if v.invariant == name => {
                if !self.shortest_only {
                    return true;
                }
                let mut hasher = DefaultHasher::new();
                state.hash(&mut hasher);
                let fingerprint = hasher.finish();
                let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
                *first.entry(name).or_insert(fingerprint) == fingerprint
            }
            _ => false,
        }
    }

    fn initial_state(&self) -> State {
        let b = &self.bounds;
        State {
            pool: self.initial.clone(),
            auditor: Auditor::new(),
            now: self.initial.now(),
            callers: Vec::new(),
            connects: Vec::new(),
            checks: Vec::new(),
            closes: Vec::new(),
            open: Vec::new(),
            budget: Budget {
                acquires: b.acquires,
                cancels: b.cancels,
                connect_failures: b.connect_failures,
                check_failures: b.check_failures,
                transport_deaths: b.transport_deaths,
                grant_closures: b.grant_closures,
                unused_returns: b.unused_returns,
                ticks: b.ticks,
                drains: b.drains,
            },
            seen: Seen::default(),
            violation: None,
        }
    }

    fn someone_waits(state: &State) -> bool {
        state
            .callers
            .iter()
            .any(|c| matches!(c, Caller::Waiting(_)))
    }

    /// Every step the environment may take in `state`, in a fixed order.
    fn steps(&self, s: &State, out: &mut Vec<Step>) {
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

    /// Takes `step` from `state`: applies the input, polls every action,
    /// audits the step and updates the environment.
    pub fn transition(&self, state: &State, step: &Step) -> Transition {
        let mut s = state.clone();
        let input = match step {
            Step::AdvanceTime(t) => {
                if !Self::someone_waits(&s) {
                    s.budget.ticks = s.budget.ticks.saturating_sub(1);
                }
                s.now = *t;
                return Transition {
                    next: s,
                    result: None,
                    emitted: Vec::new(),
                    followups: Vec::new(),
                };
            }
            Step::Apply(input) => input.clone(),
        };
        self.before(&mut s, &input);
        let breakers_before = self.breakers(&s.pool);
        let now = s.now;
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            let result = s.pool.apply(input.clone(), now);
            let mut emitted = Vec::new();
            while let Some(a) = s.pool.poll_action() {
                emitted.push(a);
            }
            let audit = s.auditor.observe(&s.pool, &input, &result, &emitted);
            (result, emitted, audit)
        }));
        let (result, emitted, audit) = match stepped {
            Ok(r) => r,
            Err(payload) => {
                s.violation = Some(Violation {
                    invariant: PANIC,
                    detail: format!("panicked on {input:?}: {}", panic_text(&*payload)),
                });
                return Transition {
                    next: s,
                    result: None,
                    emitted: Vec::new(),
                    followups: Vec::new(),
                };
            }
        };
        if let Err(v) = audit {
            s.violation = Some(v);
        } else if let Err(e) = &result {
            s.violation = Some(Violation {
                invariant: properties::I16,
                detail: format!("the pool refused {input:?}, which answers what it asked: {e}"),
            });
        }
        if let Ok(Applied::Acquire(id)) = result {
            s.callers.push(Caller::Waiting(id));
        }
        self.after(&mut s, &input, &emitted);
        let mut followups = Vec::new();
        if self.bounds.closes_confirmed_at_once && s.violation.is_none() {
            let confirmed = catch_unwind(AssertUnwindSafe(|| {
                self.confirm_closes(&mut s, &mut followups)
            }));
            if let Err(payload) = confirmed {
                s.violation = Some(Violation {
                    invariant: PANIC,
                    detail: format!("panicked confirming a close: {}", panic_text(&*payload)),
                });
            }
        }
        let breakers_after = self.breakers(&s.pool);
        let reclosed = breakers_before.iter().zip(&breakers_after).any(|(b, a)| {
            matches!(b, Some(BreakerState::Open | BreakerState::HalfOpen))
                && *a == Some(BreakerState::Closed)
        });
        s.seen.breaker_closed_again |= reclosed;
        s.callers.sort_unstable();
        s.connects.sort_unstable();
        s.checks.sort_unstable();
        s.closes.sort_unstable();
        s.open.sort_unstable();
        Transition {
            next: s,
            result: Some(result),
            emitted,
            followups,
        }
    }

    /// Confirms every pending close, one `closed` input each, auditing each.
    fn confirm_closes(&self, s: &mut State, done: &mut Vec<(Input<Key>, Vec<Action<Key>>)>) {
        while let Some(session) = s.closes.pop() {
            s.open.retain(|o| o.id != session);
            let input = Input::Closed(session);
            let now = s.now;
            let result = s.pool.apply(input.clone(), now);
            let mut emitted = Vec::new();
            while let Some(a) = s.pool.poll_action() {
                emitted.push(a);
            }
            let audit = s.auditor.observe(&s.pool, &input, &result, &emitted);
            let refused = result.err().map(|e| Violation {
                invariant: properties::I16,
                detail: format!("the pool refused {input:?}, which answers what it asked: {e}"),
            });
            if let Some(v) = audit.err().or(refused) {
                s.violation = Some(v);
                done.push((input, emitted));
                return;
            }
            self.after(s, &input, &emitted);
            done.push((input, emitted));
        }
    }

    fn breakers(&self, pool: &Pool<Key>) -> Vec<Option<BreakerState>> {
        (0..self.bounds.keys)
            .map(|k| pool.key_snapshot(&k).map(|s| s.breaker))
            .collect()
    }

    /// The environment's side of an input, before it is applied.
    fn before(&self, s: &mut State, input: &Input<Key>) {
        let budget = &mut s.budget;
        match input {
            Input::Acquire { .. } => budget.acquires -= 1,
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
    fn after(&self, s: &mut State, input: &Input<Key>, emitted: &[Action<Key>]) {
        for action in emitted {
            match action {
                Action::Connect { session, .. } => s.connects.push(*session),
                Action::Validate { session, .. } => s.checks.push(*session),
                Action::Close { session, .. } => s.closes.push(*session),
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

impl Model for PoolSpec {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        vec![self.initial_state()]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Step>) {
        self.steps(state, actions);
    }

    fn next_state(&self, state: &State, step: Step) -> Option<State> {
        Some(self.transition(state, &step).next)
    }

    fn format_action(&self, step: &Step) -> String {
        step.to_string()
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties::all()
    }
}
