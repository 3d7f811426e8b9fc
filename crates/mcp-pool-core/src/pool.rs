//! The pool and its inputs: every decision about sessions, waiters and
//! capacity starts here.
//!
//! Inputs are methods that take `now`; outputs are polled with
//! [`Pool::poll_action`] and [`Pool::poll_timeout`]. Each input is first
//! checked (a refused input changes nothing), then the pool rejects the
//! waiters whose deadline has come by `now` and half-opens the breakers
//! whose cool-down ended, then acts on the input itself, and ends
//! *settled*: no waiter waits while something could be done for it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

use crate::keys::KeyState;
use crate::rng::Rng;
use crate::session::{Entry, Phase, Session, Slots};
use crate::timers::Timers;
use crate::waiters::{Waiter, Waiters};
use crate::{
    AcquireId, Action, Applied, CheckFailure, Config, ConfigError, ConnectFailure, EvictReason,
    Input, InputError, LeaseId, Outcome, RejectReason, SessionId, Stats, Time,
};

/// The bound every key type meets: cheap to compare, ordered (so no decision
/// depends on hash order), printable for diagnostics.
pub trait PoolKey: Clone + Eq + Hash + Ord + Debug {}
impl<K: Clone + Eq + Hash + Ord + Debug> PoolKey for K {}

/// A sans-IO pool of sessions grouped by key `K`.
///
/// Guarantees (numbered as in `specs/SPEC.md`, checked by
/// [`Pool::check_invariants`] and the [`Auditor`](crate::Auditor)):
/// a Poisoned or Closed session is never granted; a session released with
/// [`Outcome::TransportError`] or reported by [`Pool::transport_closed`] is
/// never granted again; a session is only granted for the key it was created
/// for; capacity and queue limits hold at every step; waiters are served in
/// FIFO order and never past their deadline; every successful connect ends
/// in exactly one `Close`; a live server's definite refusal reaches every
/// caller that waited for it at once.
///
/// The same inputs always give the same actions: the state is plain ordered
/// data (`Clone + Eq + Hash`), and time only enters through `now`. A `now`
/// earlier than one already seen is treated as the latest seen.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pool<K> {
    pub(crate) config: Config,
    pub(crate) now: Time,
    pub(crate) slots: Slots,
    pub(crate) keys: BTreeMap<K, u32>,
    pub(crate) key_states: Vec<Option<KeyState<K>>>,
    pub(crate) free_keys: Vec<u32>,
    pub(crate) waiters: Waiters,
    pub(crate) timers: Timers,
    pub(crate) dirty: VecDeque<u32>,
    /// Keys whose waiters need a slot and found the whole pool full.
    pub(crate) blocked: VecDeque<u32>,
    pub(crate) actions: VecDeque<Action<K>>,
    pub(crate) next_acquire: u64,
    /// Connects in flight and Idle, Leased and Validating sessions.
    pub(crate) live_total: usize,
    pub(crate) idle_total: usize,
    /// Poisoned sessions whose `Close` is not yet issued (still held by a
    /// lease or a check): they still count toward `max_sessions_total`.
    pub(crate) held_poisoned: usize,
    pub(crate) shutting_down: bool,
    pub(crate) rng: Rng,
    pub(crate) stats: Stats,
    #[cfg(feature = "mutants")]
    pub(crate) mutation: Option<crate::mutants::Mutation>,
}

impl<K: PoolKey> Pool<K> {
    /// A pool with `config`, or the reason the configuration cannot work.
    pub fn new(config: Config) -> Result<Pool<K>, ConfigError> {
        config.validate()?;
        Ok(Pool {
            rng: Rng::new(config.seed),
            config,
            now: Time::ZERO,
            slots: Slots::default(),
            keys: BTreeMap::new(),
            key_states: Vec::new(),
            free_keys: Vec::new(),
            waiters: Waiters::default(),
            timers: Timers::default(),
            dirty: VecDeque::new(),
            blocked: VecDeque::new(),
            actions: VecDeque::new(),
            next_acquire: 0,
            live_total: 0,
            idle_total: 0,
            held_poisoned: 0,
            shutting_down: false,
            stats: Stats::default(),
            #[cfg(feature = "mutants")]
            mutation: None,
        })
    }

    // ----------------------------------------------------------------- inputs

    /// A caller wants a session for `key` before `deadline` (default: now +
    /// `acquire_timeout`). The answer is one `Grant` or one `Reject` with the
    /// returned id, emitted now or later. Fails only if the deadline is not
    /// after `now`.
    pub fn acquire(
        &mut self,
        key: &K,
        deadline: Option<Time>,
        now: Time,
    ) -> Result<AcquireId, InputError> {
        let now = self.clamp(now);
        let deadline = deadline.unwrap_or_else(|| now + self.config.acquire_timeout);
        if deadline <= now {
            return Err(InputError::DeadlineNotInFuture);
        }
        self.begin(now);
        let id = AcquireId(self.next_acquire);
        self.next_acquire += 1;
        self.stats.acquires += 1;
        self.admit(id, key, deadline, now);
        self.settle(now);
        Ok(id)
    }

    /// The caller of a still-waiting acquire gave up; it gets no answer.
    /// Fails with [`InputError::UnknownAcquire`] if the acquire is not waiting
    /// (already answered: the driver then returns any grant it got with
    /// [`Pool::release_unused`]). The cancel takes effect before any
    /// deadline due at `now`.
    pub fn cancel_acquire(&mut self, acquire: AcquireId, now: Time) -> Result<(), InputError> {
        let now = self.clamp(now);
        let k = self
            .waiters
            .key_of(acquire)
            .ok_or(InputError::UnknownAcquire(acquire))?;
        let ks = self.key_states[k as usize]
            .as_mut()
            .expect("key of a waiter");
        self.waiters.remove(&mut ks.waiters, acquire);
        self.stats.cancelled += 1;
        self.mark_dirty(k);
        self.begin(now);
        self.settle(now);
        Ok(())
    }

    /// A `Connect` succeeded with a session that carries at most
    /// `max_leases` leases at once, whatever `max_leases_per_session` says
    /// (1 for a session holding per-caller server state; more for one whose
    /// server keeps none). Otherwise as [`Pool::connected`] with `Ok`.
    pub fn connected_with_leases(
        &mut self,
        session: SessionId,
        max_leases: usize,
        now: Time,
    ) -> Result<(), InputError> {
        if max_leases == 0 {
            return Err(InputError::ZeroLeases(session));
        }
        self.finish_connect(session, Ok(max_leases), now)
    }

    /// A `Connect` finished: with a live session, or not.
    ///
    /// A failure of kind [`ConnectFailure::Rejected`] (a live server's
    /// definite answer) rejects every caller of the key that asked before
    /// the connect began, with its cause, and once it opens the breaker,
    /// every other waiter too; other failures answer at most the head
    /// waiter (callers wait for the next attempt: the server may be
    /// restarting).
    pub fn connected(
        &mut self,
        session: SessionId,
        result: Result<(), ConnectFailure>,
        now: Time,
    ) -> Result<(), InputError> {
        let leases = self.config.max_leases_per_session;
        self.finish_connect(session, result.map(|()| leases), now)
    }

    fn finish_connect(
        &mut self,
        session: SessionId,
        result: Result<usize, ConnectFailure>,
        now: Time,
    ) -> Result<(), InputError> {
        let now = self.clamp(now);
        let (k, retire, acquires_before) = match self.slots.get(session) {
            Some(Entry::Connecting {
                key,
                retire,
                acquires_before,
            }) => (*key, *retire, *acquires_before),
            Some(Entry::Session(_)) => {
                return Err(InputError::WrongState {
                    session,
                    expected: "connecting",
                })
            }
            None => return Err(InputError::UnknownSession(session)),
        };
        self.begin(now);
        self.ks_mut(k).connecting -= 1;
        match result {
            Ok(max_leases) => {
                self.stats.connected += 1;
                let ks = self.ks_mut(k);
                ks.breaker.on_connected();
                ks.lease_hint = max_leases;
                ks.sessions.push(session);
                let expires_at = match self.config.max_lifetime {
                    Some(lifetime) => {
                        let jitter = self.config.lifetime_jitter.as_nanos() as u64;
                        let cut = self.rng.below(jitter);
                        (now + lifetime).saturating_sub(std::time::Duration::from_nanos(cut))
                    }
                    None => Time::MAX,
                };
                *self.slots.get_mut(session).expect("the connect's slot") =
                    Entry::Session(Session::connected(k, max_leases, retire, now, expires_at));
                self.handoff(session, now);
            }
            Err(kind) => {
                self.stats.connect_failures += 1;
                self.slots.free(session);
                self.live_total -= 1;
                let ks = self.ks_mut(k);
                ks.live -= 1;
                let was_closed = !ks.breaker.is_tripped();
                let tripped = self.count_failure(k, Some(session), Some(kind), now);
                let reason = RejectReason::ConnectFailed { attempt: session };
                let queue = &self.ks(k).waiters;
                #[cfg(feature = "mutants")]
                let kind = match self.mutation {
                    Some(crate::mutants::Mutation::RefusalAnswersHeadOnly) => {
                        ConnectFailure::Failed
                    }
                    _ => kind,
                };
                if kind == ConnectFailure::Rejected {
                    // A live server said no: everyone who asked before the
                    // connect began learns it now.
                    for id in queue.before(acquires_before) {
                        self.take_waiter(k, id);
                        self.reject(id, reason);
                    }
                } else if let Some(head) = queue.head() {
                    // The caller at the head learns the cause, if it was
                    // already waiting when the connect began: a caller is
                    // never failed by an attempt older than its request.
                    // While the breaker is open, callers wait for the probe.
                    if was_closed && head.0 < acquires_before {
                        self.take_waiter(k, head);
                        self.reject(head, reason);
                    }
                }
                if tripped && (self.config.breaker.fail_fast || kind == ConnectFailure::Rejected) {
                    self.reject_all_waiters(k, RejectReason::CircuitOpen);
                }
                self.mark_dirty(k);
            }
        }
        self.settle(now);
        Ok(())
    }

    /// A lease comes back with the outcome of its use. The outcome decides the
    /// session's fate: reused, checked first, or poisoned.
    pub fn release(
        &mut self,
        lease: LeaseId,
        outcome: Outcome,
        now: Time,
    ) -> Result<(), InputError> {
        let now = self.clamp(now);
        #[cfg(feature = "mutants")]
        let outcome = match self.mutation {
            Some(crate::mutants::Mutation::ReleaseIgnoresFailure) => Outcome::Ok,
            _ => outcome,
        };
        let pos = self.lease_position(lease)?;
        self.begin(now);
        let sid = lease.session;
        let s = self.sess_mut(sid);
        s.leases.swap_remove(pos);
        s.unused_since_proof = false;
        let k = s.key;
        match decide_release(outcome) {
            ReleaseDecision::Poison => {
                if s.phase != Phase::Poisoned {
                    self.poison(sid, EvictReason::TransportError);
                }
            }
            ReleaseDecision::Check => s.needs_check = true,
            ReleaseDecision::Reuse => {
                s.proven = true;
                if now > s.verified_at {
                    s.verified_at = now;
                }
                self.ks_mut(k).breaker.on_proof();
            }
        }
        let s = self.sess_mut(sid);
        if s.phase == Phase::Poisoned {
            self.maybe_close(sid);
        } else if s.leases.is_empty() {
            // Idleness is measured from the last use; checks do not reset it.
            s.idle_since = now;
            self.return_to_service(sid, now, false);
        }
        let ks = self.ks(k);
        if !ks.waiters.is_empty() || ks.lane_open {
            self.mark_dirty(k);
        }
        self.settle(now);
        Ok(())
    }

    /// A granted lease comes back unused: its caller had gone before it
    /// could take the session. Nothing happened to the session, so it goes
    /// back as it was: no check, and no new evidence of health (a session
    /// just connected or checked is handed on as such).
    pub fn release_unused(&mut self, lease: LeaseId, now: Time) -> Result<(), InputError> {
        let now = self.clamp(now);
        let pos = self.lease_position(lease)?;
        self.begin(now);
        let sid = lease.session;
        self.stats.returned_unused += 1;
        let s = self.sess_mut(sid);
        s.leases.swap_remove(pos);
        let k = s.key;
        if s.phase == Phase::Poisoned {
            self.maybe_close(sid);
        } else if s.leases.is_empty() {
            let handed_fresh = s.unused_since_proof;
            self.return_to_service(sid, now, handed_fresh);
        }
        let ks = self.ks(k);
        if !ks.waiters.is_empty() || ks.lane_open {
            self.mark_dirty(k);
        }
        self.settle(now);
        Ok(())
    }

    /// The driver found the session of a grant closed before its caller got
    /// it. The session is poisoned (as [`Pool::transport_closed`]), and the
    /// acquire goes back to the head of its key's queue with its deadline,
    /// where it is served next (or answered at once if its deadline has
    /// come, the pool is shutting down, or the breaker refuses it). A
    /// session that died before it ever proved itself counts as a failure
    /// of its key's breaker, so a server whose sessions die right after
    /// connecting opens it.
    pub fn grant_closed(&mut self, lease: LeaseId, now: Time) -> Result<(), InputError> {
        let now = self.clamp(now);
        let pos = self.lease_position(lease)?;
        self.begin(now);
        let sid = lease.session;
        self.stats.grants_closed += 1;
        let s = self.sess_mut(sid);
        let held = s.leases.swap_remove(pos);
        s.unused_since_proof = false;
        let k = s.key;
        let unproven = !s.proven;
        if s.phase == Phase::Poisoned {
            self.maybe_close(sid);
        } else {
            self.poison(sid, EvictReason::TransportClosed);
        }
        if unproven {
            self.count_failure(k, None, None, now);
        }
        #[cfg(feature = "mutants")]
        if self.mutation == Some(crate::mutants::Mutation::ClosedGrantDropsCaller) {
            self.mark_dirty(k);
            self.settle(now);
            return Ok(());
        }
        self.admit_waiting(held.acquire, k, held.deadline, now);
        self.mark_dirty(k);
        self.settle(now);
        Ok(())
    }

    /// A `Validate` finished. A passed check hands the session to the next
    /// waiter or parks it; a failed one poisons it.
    pub fn checked(
        &mut self,
        session: SessionId,
        result: Result<(), CheckFailure>,
        now: Time,
    ) -> Result<(), InputError> {
        let now = self.clamp(now);
        match self.slots.get(session) {
            Some(Entry::Session(s)) if s.checking => {}
            Some(_) => {
                return Err(InputError::WrongState {
                    session,
                    expected: "under a health check",
                })
            }
            None => return Err(InputError::UnknownSession(session)),
        }
        self.begin(now);
        self.sess_mut(session).checking = false;
        if result.is_ok() {
            self.stats.checks_passed += 1;
        } else {
            self.stats.checks_failed += 1;
        }
        let s = self.sess_mut(session);
        if s.phase == Phase::Poisoned {
            self.maybe_close(session);
        } else {
            let k = s.key;
            match result {
                Ok(()) => {
                    s.phase = Phase::Idle;
                    s.needs_check = false;
                    s.proven = true;
                    s.unused_since_proof = true;
                    if now > s.verified_at {
                        s.verified_at = now;
                    }
                    let ks = self.ks_mut(k);
                    ks.validating -= 1;
                    ks.breaker.on_proof();
                    self.handoff(session, now);
                }
                Err(_) => self.poison(session, EvictReason::CheckFailed),
            }
        }
        self.settle(now);
        Ok(())
    }

    /// The driver saw the session's transport die: it is poisoned at once,
    /// and closed as soon as no lease or check holds it.
    pub fn transport_closed(&mut self, session: SessionId, now: Time) -> Result<(), InputError> {
        let now = self.clamp(now);
        #[cfg(feature = "mutants")]
        if self.mutation == Some(crate::mutants::Mutation::IgnoreTransportClosed) {
            return match self.slots.get(session) {
                Some(_) => Ok(()),
                None => Err(InputError::UnknownSession(session)),
            };
        }
        match self.slots.get(session) {
            Some(Entry::Session(_)) => {}
            Some(Entry::Connecting { .. }) => {
                return Err(InputError::WrongState {
                    session,
                    expected: "connected",
                })
            }
            None => return Err(InputError::UnknownSession(session)),
        }
        self.begin(now);
        if self.sess(session).phase != Phase::Poisoned {
            self.poison(session, EvictReason::TransportClosed);
        }
        self.settle(now);
        Ok(())
    }

    /// A `Close` was carried out: the session is gone for good.
    pub fn closed(&mut self, session: SessionId, now: Time) -> Result<(), InputError> {
        let now = self.clamp(now);
        let k = match self.slots.get(session) {
            Some(Entry::Session(s)) if s.close_sent => s.key,
            Some(_) => {
                return Err(InputError::WrongState {
                    session,
                    expected: "closing",
                })
            }
            None => return Err(InputError::UnknownSession(session)),
        };
        self.begin(now);
        self.slots.free(session);
        self.stats.closes += 1;
        let ks = self.ks_mut(k);
        ks.poisoned -= 1;
        ks.sessions.retain(|&s| s != session);
        self.mark_dirty(k);
        self.settle(now);
        Ok(())
    }

    /// Acts on every deadline that has come: rejects late waiters, ends
    /// breaker cool-downs, closes idle and expired sessions, starts keepalive
    /// checks. (Every other input rejects late waiters and ends cool-downs
    /// first as well.) Costs nothing when nothing is due, and only what is
    /// due otherwise: no waiter and no session is scanned.
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.clamp(now);
        self.begin(now);
        self.expire_idle(now);
        self.settle(now);
    }

    /// Retires every session and connect that exists now: idle ones close at
    /// once, leased and validating ones when they come back, connects in
    /// flight when they finish. The pool stays usable: new acquires get new
    /// sessions.
    pub fn drain(&mut self, now: Time) {
        let now = self.clamp(now);
        self.begin(now);
        self.retire_all(EvictReason::Drained);
        self.settle(now);
    }

    /// Stops the pool: waiters and new acquires are rejected, idle sessions
    /// close at once, the rest close when they come back. [`Pool::is_closed`]
    /// turns true when the last session is closed.
    pub fn shutdown(&mut self, now: Time) {
        let now = self.clamp(now);
        self.begin(now);
        self.shutting_down = true;
        for k in 0..self.key_states.len() as u32 {
            if self.key_states[k as usize].is_some() {
                self.reject_all_waiters(k, RejectReason::ShuttingDown);
                self.ks_mut(k).blocked = false;
                self.mark_dirty(k);
            }
        }
        self.blocked.clear();
        self.retire_all(EvictReason::Shutdown);
        self.settle(now);
    }

    /// Feeds one [`Input`] to the matching method.
    pub fn apply(&mut self, input: Input<K>, now: Time) -> Result<Applied, InputError> {
        match input {
            Input::Acquire { key, deadline } => {
                return self.acquire(&key, deadline, now).map(Applied::Acquire)
            }
            Input::CancelAcquire(id) => self.cancel_acquire(id, now)?,
            Input::Connected { session, result } => self.connected(session, result, now)?,
            Input::ConnectedWithLeases {
                session,
                max_leases,
            } => self.connected_with_leases(session, max_leases, now)?,
            Input::Release { lease, outcome } => self.release(lease, outcome, now)?,
            Input::ReleaseUnused(lease) => self.release_unused(lease, now)?,
            Input::GrantClosed(lease) => self.grant_closed(lease, now)?,
            Input::LaneReturned { session, back } => self.lane_returned(session, back, now)?,
            Input::Checked { session, result } => self.checked(session, result, now)?,
            Input::TransportClosed(session) => self.transport_closed(session, now)?,
            Input::Closed(session) => self.closed(session, now)?,
            Input::HandleTimeout => self.handle_timeout(now),
            Input::Drain => self.drain(now),
            Input::Shutdown => self.shutdown(now),
        }
        Ok(Applied::Done)
    }

    // ---------------------------------------------------------------- outputs

    /// The next thing for the driver to do, in the order decided.
    pub fn poll_action(&mut self) -> Option<Action<K>> {
        self.actions.pop_front()
    }

    /// When [`Pool::handle_timeout`] should next be called, if ever: the
    /// earliest waiter deadline, breaker cool-down end, or parked session's
    /// lifetime end, idle timeout or keepalive. It may be early (then the
    /// call does nothing), never late.
    pub fn poll_timeout(&self) -> Option<Time> {
        match (self.waiters.next_deadline(), self.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // -------------------------------------------------------------- internals

    /// `now`, or the latest time seen if `now` is earlier: time never runs
    /// backwards. Stored only once an input is accepted.
    pub(crate) fn clamp(&self, now: Time) -> Time {
        now.max(self.now)
    }

    /// The start of every accepted input: time moves to `now`, late waiters
    /// are rejected and breakers whose cool-down ended are half-opened.
    pub(crate) fn begin(&mut self, now: Time) {
        self.now = now;
        self.expire(now);
    }

    /// Where lease `lease` sits among its session's leases.
    fn lease_position(&self, lease: LeaseId) -> Result<usize, InputError> {
        match self.slots.get(lease.session) {
            Some(Entry::Session(s)) => s.lease_position(lease.seq),
            _ => None,
        }
        .ok_or(InputError::UnknownLease(lease))
    }

    /// Answers a new acquire at once, or queues it.
    fn admit(&mut self, id: AcquireId, key: &K, deadline: Time, now: Time) {
        if self.shutting_down {
            self.reject(id, RejectReason::ShuttingDown);
            return;
        }
        let k = match self.keys.get(key) {
            Some(&k) => k,
            None => match self.create_key(key) {
                Some(k) => k,
                None => {
                    self.reject(id, RejectReason::TooManyKeys);
                    return;
                }
            },
        };
        if self.ks(k).waiters.is_empty() {
            if let Some(sid) = self.take_ready(k, now) {
                self.stats.hits += 1;
                self.grant(id, deadline, sid);
                if self.config.min_idle_per_key > 0 {
                    self.replenish(k, now);
                }
                return;
            }
        }
        if self.ks(k).lane_open {
            // Its lane queues callers: it waits there, behind those who came
            // before it.
            self.wait_in_lane(k, id, deadline);
            return;
        }
        if self.admit_waiting(id, k, deadline, now) {
            self.stats.misses += 1;
            self.dispatch(k, now);
        }
    }

    /// Puts `id` in line for key `k` (a new acquire, or one whose grant was
    /// found closed), unless it must be answered at once. Returns whether
    /// `id` waits.
    fn admit_waiting(&mut self, id: AcquireId, k: u32, deadline: Time, now: Time) -> bool {
        if self.shutting_down {
            self.reject(id, RejectReason::ShuttingDown);
            return false;
        }
        if deadline <= now {
            let reason = self.expiry_reason(k);
            self.reject(id, reason);
            return false;
        }
        let fail_fast = self.config.breaker.fail_fast;
        let ks = self.ks_mut(k);
        ks.breaker.poll(now);
        if (fail_fast || ks.breaker.definite()) && ks.breaker.refuses_fast() {
            self.reject(id, RejectReason::CircuitOpen);
            return false;
        }
        let ks = self.key_states[k as usize]
            .as_mut()
            .expect("live key index");
        self.waiters
            .push(&mut ks.waiters, id, Waiter { key: k, deadline });
        let mut waits = true;
        if ks.waiters.len() > self.config.max_waiters_per_key {
            // Full: the caller who asked last is refused (a grant found
            // closed keeps its place at the head).
            let last = ks.waiters.tail().expect("a full queue");
            self.waiters.remove(&mut ks.waiters, last);
            self.reject(last, RejectReason::QueueFull);
            waits = last != id;
        }
        // Callers wait here: the key's sessions must serve them in order,
        // so its lane gives back what it holds.
        self.recall_lent(k);
        waits
    }

    /// Counts a failure (a failed connect `session` of `kind`, or with
    /// `None` a session that died before it proved itself) against `k`'s
    /// breaker; returns whether the breaker opened.
    pub(crate) fn count_failure(
        &mut self,
        k: u32,
        session: Option<SessionId>,
        kind: Option<ConnectFailure>,
        now: Time,
    ) -> bool {
        let config = &self.config;
        let ks = self.key_states[k as usize]
            .as_mut()
            .expect("live key index");
        match ks.breaker.on_failure(session, kind, now, config) {
            Some(until) => {
                self.stats.breaker_trips += 1;
                self.timers.arm_breaker(until, k);
                true
            }
            None => false,
        }
    }
}

/// What a release with `outcome` does to the session. The one place the
/// outcome decides reuse; see [`Outcome`].
pub(crate) fn decide_release(outcome: Outcome) -> ReleaseDecision {
    match outcome {
        Outcome::TransportError => ReleaseDecision::Poison,
        Outcome::Timeout | Outcome::Cancelled => ReleaseDecision::Check,
        Outcome::Ok | Outcome::ApplicationError => ReleaseDecision::Reuse,
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReleaseDecision {
    Reuse,
    Check,
    Poison,
}
