//! The model: the real [`Pool`] driven by an exhaustive environment.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pool_core::{
    AcquireId, Action, Applied, Auditor, BreakerState, CheckFailure, Config, ConfigError,
    ConnectFailure, Input, InputError, LaneReturn, LeaseId, Outcome, Pool, SessionId, SessionState,
    Time, Violation,
};
use stateright::{Model, Property};

use crate::properties;

mod effects;
mod steps;

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
    /// Holding this session, taken from its key's lane.
    LaneHolding(SessionId),
    /// Waiting in this key's lane.
    LaneWaiting(Key),
}

/// A session lent to its key's lane, as the lane sees it (what the driver
/// keeps in its atomics).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LaneSession {
    /// The session.
    pub id: SessionId,
    /// Its key.
    pub key: Key,
    /// Callers may take it while the clock is before this.
    pub until: Time,
    /// How far a use ending well moves `until`.
    pub renew: Duration,
    /// `until` never moves past this.
    pub hard_end: Time,
    /// A caller holds it.
    pub held: bool,
    /// The pool recalled it while a caller held it.
    pub recalled: bool,
    /// When its last use in the lane ended well.
    pub last_used: Option<Time>,
}

/// What the lanes do on their own, without the pool: callers take and give
/// back lent sessions, wait for them, and find them stale or closed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LaneStep {
    /// A caller takes a fresh session from `key`'s lane.
    Take {
        /// The key.
        key: Key,
    },
    /// A caller waits in `key`'s open lane.
    Wait {
        /// The key.
        key: Key,
    },
    /// A caller gives back the session it took from its lane.
    Release {
        /// The session.
        session: SessionId,
        /// How the use ended.
        outcome: Outcome,
    },
    /// A caller finds a parked session stale (its bound passed).
    Stale {
        /// The session.
        session: SessionId,
    },
    /// A caller finds a parked session's transport closed.
    Broken {
        /// The session.
        session: SessionId,
    },
}

/// Work the environment does at once after a step, as the driver does while
/// it carries out the pool's actions.
enum Todo {
    Input(Input<Key>),
    /// A caller waiting in a lane that closed asks the pool.
    Adopt(Key),
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
    /// A caller took a session from its lane.
    pub lane_taken: bool,
    /// A session given back in its lane went straight to a caller waiting there.
    pub lane_handoff: bool,
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
    /// Sessions lent to lanes, sorted.
    pub lanes: Vec<LaneSession>,
    /// Keys whose lane queues callers, sorted.
    pub lanes_open: Vec<Key>,
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
    /// A lane acts on its own.
    Lane(LaneStep),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AdvanceTime(t) => write!(f, "clock moves to {}", ms(*t)),
            Step::Lane(step) => match step {
                LaneStep::Take { key } => {
                    write!(f, "a caller takes a session from key {key}'s lane")
                }
                LaneStep::Wait { key } => write!(f, "a caller waits in key {key}'s lane"),
                LaneStep::Release { session, outcome } => {
                    write!(
                        f,
                        "the caller of {session} gives it back to its lane with {outcome:?}"
                    )
                }
                LaneStep::Stale { session } => {
                    write!(f, "a caller finds {session} stale in its lane")
                }
                LaneStep::Broken { session } => {
                    write!(f, "a caller finds {session} closed in its lane")
                }
            },
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
                Input::LaneReturned { session, back } => {
                    write!(f, "{session} comes back from its lane ({back:?})")
                }
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
        Action::Lend { session, until, .. } => format!("Lend {session} until {}", ms(*until)),
        Action::Recall { session } => format!("Recall {session}"),
        Action::LaneOpen { key, open } => format!("LaneOpen key {key}: {open}"),
        Action::WaitInLane { acquire, key, .. } => format!("{acquire} waits in key {key}'s lane"),
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
            lanes: Vec::new(),
            lanes_open: Vec::new(),
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

    /// Takes `step` from `state`: applies the input (or the lane's own
    /// work and what it sends the pool), polls every action, audits the
    /// step, updates the environment, then does what the driver does at
    /// once (lane returns on recall, callers of a closing lane, closes).
    pub fn transition(&self, state: &State, step: &Step) -> Transition {
        let mut s = state.clone();
        let mut todo = std::collections::VecDeque::new();
        let breakers_before = self.breakers(&s.pool);
        let (result, emitted) = match step {
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
            Step::Apply(input) => self.feed(&mut s, input.clone(), false, &mut todo),
            Step::Lane(lane) => match self.lane_step(&mut s, lane) {
                Some(input) => self.feed(&mut s, input, false, &mut todo),
                None => (None, Vec::new()),
            },
        };
        let mut followups = Vec::new();
        loop {
            while let Some(next) = todo.pop_front() {
                if s.violation.is_some() {
                    break;
                }
                let input = match next {
                    Todo::Input(input) => input,
                    Todo::Adopt(key) => {
                        let pos = s
                            .callers
                            .iter()
                            .position(|c| *c == Caller::LaneWaiting(key));
                        let Some(pos) = pos else { continue };
                        s.callers.remove(pos);
                        let input = Input::Acquire {
                            key,
                            deadline: None,
                        };
                        let (_, emitted) = self.feed(&mut s, input.clone(), true, &mut todo);
                        followups.push((input, emitted));
                        continue;
                    }
                };
                let (_, emitted) = self.feed(&mut s, input.clone(), false, &mut todo);
                followups.push((input, emitted));
            }
            if self.bounds.closes_confirmed_at_once && s.violation.is_none() && !s.closes.is_empty()
            {
                let confirmed = catch_unwind(AssertUnwindSafe(|| {
                    self.confirm_closes(&mut s, &mut followups, &mut todo)
                }));
                if let Err(payload) = confirmed {
                    s.violation = Some(Violation {
                        invariant: PANIC,
                        detail: format!("panicked confirming a close: {}", panic_text(&*payload)),
                    });
                }
                continue;
            }
            break;
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
        s.lanes.sort_unstable();
        Transition {
            next: s,
            result,
            emitted,
            followups,
        }
    }

    /// Applies one input to the pool (`adopted`: an acquire of a caller who
    /// waited in a lane that closed), audits it and updates the environment.
    fn feed(
        &self,
        s: &mut State,
        input: Input<Key>,
        adopted: bool,
        todo: &mut std::collections::VecDeque<Todo>,
    ) -> (Option<Result<Applied, InputError>>, Vec<Action<Key>>) {
        self.before(s, &input, adopted);
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
                return (None, Vec::new());
            }
        };
        if let Err(v) = audit {
            s.violation.get_or_insert(v);
        } else if let Err(e) = &result {
            s.violation.get_or_insert(Violation {
                invariant: properties::I16,
                detail: format!("the pool refused {input:?}, which answers what it asked: {e}"),
            });
        }
        if let Ok(Applied::Acquire(id)) = result {
            s.callers.push(Caller::Waiting(id));
        }
        self.after(s, &input, &emitted, todo);
        (Some(result), emitted)
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
