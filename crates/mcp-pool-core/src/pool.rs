//! The pool: every decision about sessions, waiters and capacity.
//!
//! Inputs are methods that take `now`; outputs are polled with
//! [`Pool::poll_action`] and [`Pool::poll_timeout`]. Every input ends with
//! the pool *settled*: no waiter waits while something could be done for it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

use crate::breaker::Breaker;
use crate::rng::Rng;
use crate::{
    AcquireId, Action, Applied, CheckFailure, Config, ConfigError, ConnectFailure, EvictReason,
    Input, InputError, KeySnapshot, LeaseId, Outcome, RejectReason, SessionId, Stats, Time,
};

/// The bound every key type meets: cheap to compare, ordered (so no decision
/// depends on hash order), printable for diagnostics.
pub trait PoolKey: Clone + Eq + Hash + Ord + Debug {}
impl<K: Clone + Eq + Hash + Ord + Debug> PoolKey for K {}

/// The state of one session, as the pool sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Healthy, parked, may be granted (after a check if stale).
    Idle,
    /// Held by one caller (or up to `max_leases_per_session` callers).
    Leased,
    /// A health check is in flight; nobody holds it.
    Validating,
    /// Known or suspected broken: never granted again; closed once free.
    Poisoned,
    /// Gone: its `Close` was carried out.
    Closed,
}

/// A read-only view of one live session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo<'a, K> {
    /// The key it was created for; it is never granted to another.
    pub key: &'a K,
    /// Its state.
    pub state: SessionState,
    /// Leases held on it.
    pub leases: usize,
    /// When its connect finished.
    pub created_at: Time,
    /// When its (jittered) lifetime ends, if there is a limit.
    pub expires_at: Option<Time>,
    /// Its last evidence of health (connect, passed check, or answered use).
    pub verified_at: Time,
    /// Whether it must pass a check before any reuse.
    pub needs_check: bool,
    /// Whether a health check on it is in flight.
    pub checking: bool,
    /// Whether it will be closed when returned (drain or shutdown).
    pub retiring: bool,
    /// Why it was poisoned, once it is.
    pub evicted: Option<EvictReason>,
    /// Whether its `Close` was emitted.
    pub close_issued: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    Idle,
    Leased,
    Validating,
    Poisoned,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Session {
    pub(crate) key: u32,
    pub(crate) phase: Phase,
    /// Sequence numbers of the leases held.
    pub(crate) leases: Vec<u32>,
    pub(crate) next_lease: u32,
    pub(crate) needs_check: bool,
    pub(crate) checking: bool,
    pub(crate) retire: bool,
    pub(crate) close_sent: bool,
    pub(crate) evicted: Option<EvictReason>,
    pub(crate) created_at: Time,
    /// `Time::MAX` when there is no lifetime limit.
    pub(crate) expires_at: Time,
    pub(crate) verified_at: Time,
    pub(crate) idle_since: Time,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Entry {
    /// A reserved slot: a connect is in flight.
    Connecting {
        key: u32,
        retire: bool,
        /// The acquires issued before the connect began (ids below this):
        /// only their callers may learn of its failure.
        acquires_before: u64,
    },
    Session(Session),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    pub(crate) generation: u32,
    pub(crate) entry: Option<Entry>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Waiter {
    pub(crate) id: AcquireId,
    pub(crate) deadline: Time,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyState<K> {
    pub(crate) key: K,
    /// Parked sessions, most recently parked last (granted first).
    pub(crate) idle: Vec<SessionId>,
    /// Every session of the key that is not yet closed, in creation order.
    pub(crate) sessions: Vec<SessionId>,
    pub(crate) waiters: VecDeque<Waiter>,
    /// Connecting plus Idle, Leased and Validating sessions: what capacity counts.
    pub(crate) live: usize,
    pub(crate) connecting: usize,
    pub(crate) validating: usize,
    pub(crate) leased: usize,
    pub(crate) poisoned: usize,
    pub(crate) breaker: Breaker,
    pub(crate) dirty: bool,
    pub(crate) blocked: bool,
}

/// A sans-IO pool of sessions grouped by key `K`.
///
/// Guarantees (numbered as in `specs/SPEC.md`, checked by
/// [`Pool::check_invariants`] and the [`Auditor`](crate::Auditor)):
/// a Poisoned or Closed session is never granted; a session released with
/// [`Outcome::TransportError`] or reported by [`Pool::transport_closed`] is
/// never granted again; a session is only granted for the key it was created
/// for; capacity limits hold at every step; waiters are served in FIFO order
/// and never past their deadline; every successful connect ends in exactly
/// one `Close`.
///
/// The same inputs always give the same actions: the state is plain ordered
/// data (`Clone + Eq + Hash`), and time only enters through `now`. A `now`
/// earlier than one already seen is treated as the latest seen.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pool<K> {
    pub(crate) config: Config,
    pub(crate) now: Time,
    pub(crate) slots: Vec<Slot>,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) keys: BTreeMap<K, u32>,
    pub(crate) key_states: Vec<Option<KeyState<K>>>,
    pub(crate) free_keys: Vec<u32>,
    /// Waiting acquires and the key each waits on.
    pub(crate) waiting: BTreeMap<AcquireId, u32>,
    pub(crate) dirty: VecDeque<u32>,
    /// Keys whose waiters need a slot and found the whole pool full.
    pub(crate) blocked: VecDeque<u32>,
    pub(crate) actions: VecDeque<Action<K>>,
    pub(crate) next_acquire: u64,
    /// A lower bound of the next deadline (exact after `handle_timeout`).
    pub(crate) next_timeout: Option<Time>,
    pub(crate) live_total: usize,
    pub(crate) idle_total: usize,
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
            slots: Vec::new(),
            free_slots: Vec::new(),
            keys: BTreeMap::new(),
            key_states: Vec::new(),
            free_keys: Vec::new(),
            waiting: BTreeMap::new(),
            dirty: VecDeque::new(),
            blocked: VecDeque::new(),
            actions: VecDeque::new(),
            next_acquire: 0,
            next_timeout: None,
            live_total: 0,
            idle_total: 0,
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
        self.now = now;
        let id = AcquireId(self.next_acquire);
        self.next_acquire += 1;
        self.stats.acquires += 1;
        if self.shutting_down {
            self.reject(id, RejectReason::ShuttingDown);
            return Ok(id);
        }
        let k = match self.keys.get(key) {
            Some(&k) => k,
            None => match self.create_key(key) {
                Some(k) => k,
                None => {
                    self.reject(id, RejectReason::TooManyKeys);
                    return Ok(id);
                }
            },
        };
        if self.ks(k).waiters.is_empty() {
            if let Some(sid) = self.take_ready(k, now) {
                self.stats.hits += 1;
                self.grant(id, sid);
                if self.config.min_idle_per_key > 0 {
                    self.replenish(k, now);
                }
                return Ok(id);
            }
        }
        self.ks_mut(k).breaker.poll(now);
        if self.config.breaker.fail_fast && self.ks(k).breaker.refuses_fast() {
            self.reject(id, RejectReason::CircuitOpen);
            return Ok(id);
        }
        self.stats.misses += 1;
        self.ks_mut(k).waiters.push_back(Waiter { id, deadline });
        self.waiting.insert(id, k);
        self.note_deadline(deadline);
        self.dispatch(k, now);
        self.settle(now);
        Ok(id)
    }

    /// The caller of a still-waiting acquire gave up; it gets no answer.
    /// Fails with [`InputError::UnknownAcquire`] if the acquire is not waiting
    /// (already answered: the driver then releases any grant it got).
    pub fn cancel_acquire(&mut self, acquire: AcquireId, now: Time) -> Result<(), InputError> {
        let now = self.clamp(now);
        let k = self
            .waiting
            .remove(&acquire)
            .ok_or(InputError::UnknownAcquire(acquire))?;
        self.now = now;
        let ks = self.ks_mut(k);
        if let Some(pos) = ks.waiters.iter().position(|w| w.id == acquire) {
            ks.waiters.remove(pos);
        }
        self.stats.cancelled += 1;
        self.mark_dirty(k);
        self.settle(now);
        Ok(())
    }

    /// A `Connect` finished: with a live session, or not.
    pub fn connected(
        &mut self,
        session: SessionId,
        result: Result<(), ConnectFailure>,
        now: Time,
    ) -> Result<(), InputError> {
        let now = self.clamp(now);
        let (k, retire, acquires_before) = match self.entry(session) {
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
        self.now = now;
        self.ks_mut(k).connecting -= 1;
        match result {
            Ok(()) => {
                self.stats.connected += 1;
                let ks = self.ks_mut(k);
                ks.breaker.on_success();
                ks.sessions.push(session);
                let expires_at = match self.config.max_lifetime {
                    Some(lifetime) => {
                        let jitter = self.config.lifetime_jitter.as_nanos() as u64;
                        let cut = self.rng.below(jitter);
                        (now + lifetime).saturating_sub(std::time::Duration::from_nanos(cut))
                    }
                    None => Time::MAX,
                };
                self.slots[session.index()].entry = Some(Entry::Session(Session {
                    key: k,
                    phase: Phase::Idle,
                    leases: Vec::new(),
                    next_lease: 0,
                    needs_check: false,
                    checking: false,
                    retire,
                    close_sent: false,
                    evicted: None,
                    created_at: now,
                    expires_at,
                    verified_at: now,
                    idle_since: now,
                }));
                self.handoff(session, now);
            }
            Err(_) => {
                self.stats.connect_failures += 1;
                self.free_slot(session);
                self.live_total -= 1;
                let config = &self.config;
                let ks = self.key_states[k as usize]
                    .as_mut()
                    .expect("key of a connect");
                ks.live -= 1;
                let was_closed = !ks.breaker.is_tripped();
                let tripped = ks.breaker.on_failure(session, now, config);
                if tripped {
                    self.stats.breaker_trips += 1;
                    if let Some(until) = self.ks(k).breaker.open_until() {
                        self.note_deadline(until);
                    }
                }
                // The caller at the head learns the cause, if it was already
                // waiting when the connect began: a caller never fails because
                // of an attempt older than its request (it waits for the next
                // one). While the breaker is open, callers wait for the probe.
                let head = self.ks(k).waiters.front().map(|w| w.id);
                if was_closed && head.is_some_and(|id| id.0 < acquires_before) {
                    if let Some(w) = self.ks_mut(k).waiters.pop_front() {
                        self.waiting.remove(&w.id);
                        self.reject(w.id, RejectReason::ConnectFailed { attempt: session });
                    }
                }
                if tripped && self.config.breaker.fail_fast {
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
        let sid = lease.session;
        let pos = match self.entry(sid) {
            Some(Entry::Session(s)) => s.leases.iter().position(|&seq| seq == lease.seq),
            _ => None,
        }
        .ok_or(InputError::UnknownLease(lease))?;
        self.now = now;
        let s = self.sess_mut(sid);
        s.leases.swap_remove(pos);
        let k = s.key;
        match decide_release(outcome) {
            ReleaseDecision::Poison => {
                if s.phase != Phase::Poisoned {
                    self.poison(sid, EvictReason::TransportError);
                }
            }
            ReleaseDecision::Check => s.needs_check = true,
            ReleaseDecision::Reuse => {
                if now > s.verified_at {
                    s.verified_at = now;
                }
            }
        }
        let s = self.sess(sid);
        if s.phase == Phase::Poisoned {
            self.maybe_close(sid);
        } else if s.leases.is_empty() {
            self.ks_mut(k).leased -= 1;
            let s = self.sess_mut(sid);
            s.phase = Phase::Idle;
            // Idleness is measured from the last use; checks do not reset it.
            s.idle_since = now;
            let s = self.sess(sid);
            if let Some(reason) = self.retirement(s, now) {
                self.poison(sid, reason);
            } else if s.needs_check {
                self.start_check(sid, now);
            } else {
                self.park(sid);
            }
        }
        if !self.ks(k).waiters.is_empty() {
            self.mark_dirty(k);
        }
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
        match self.entry_mut(session) {
            Some(Entry::Session(s)) if s.checking => {}
            Some(_) => {
                return Err(InputError::WrongState {
                    session,
                    expected: "under a health check",
                })
            }
            None => return Err(InputError::UnknownSession(session)),
        }
        self.now = now;
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
            s.phase = Phase::Idle;
            match result {
                Ok(()) => {
                    s.needs_check = false;
                    if now > s.verified_at {
                        s.verified_at = now;
                    }
                    self.ks_mut(k).validating -= 1;
                    self.handoff(session, now);
                }
                Err(_) => {
                    // Back to Validating's bookkeeping so poison counts it once.
                    s.phase = Phase::Validating;
                    self.poison(session, EvictReason::CheckFailed);
                }
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
            return match self.entry(session) {
                Some(_) => Ok(()),
                None => Err(InputError::UnknownSession(session)),
            };
        }
        let poisoned = match self.entry(session) {
            Some(Entry::Session(s)) => s.phase == Phase::Poisoned,
            Some(Entry::Connecting { .. }) => {
                return Err(InputError::WrongState {
                    session,
                    expected: "connected",
                })
            }
            None => return Err(InputError::UnknownSession(session)),
        };
        self.now = now;
        if !poisoned {
            self.poison(session, EvictReason::TransportClosed);
        }
        self.settle(now);
        Ok(())
    }

    /// A `Close` was carried out: the session is gone for good.
    pub fn closed(&mut self, session: SessionId, now: Time) -> Result<(), InputError> {
        let now = self.clamp(now);
        let k = match self.entry(session) {
            Some(Entry::Session(s)) if s.close_sent => s.key,
            Some(_) => {
                return Err(InputError::WrongState {
                    session,
                    expected: "closing",
                })
            }
            None => return Err(InputError::UnknownSession(session)),
        };
        self.now = now;
        self.free_slot(session);
        self.stats.closes += 1;
        let ks = self.ks_mut(k);
        ks.poisoned -= 1;
        ks.sessions.retain(|&s| s != session);
        self.mark_dirty(k);
        self.settle(now);
        Ok(())
    }

    /// Acts on every deadline that has passed: rejects late waiters, ends
    /// breaker cool-downs, closes idle and expired sessions, starts keepalive
    /// checks. Cheap when nothing is due.
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.clamp(now);
        self.now = now;
        match self.next_timeout {
            Some(t) if t <= now => {}
            _ => return,
        }
        // `next_timeout` stays due while the tick runs, so every dispatch
        // below sees that deadlines may have passed; recomputed at the end.
        for k in 0..self.key_states.len() as u32 {
            let Some(ks) = self.key_states[k as usize].as_mut() else {
                continue;
            };
            let was_open = ks.breaker.open_until().is_some();
            ks.breaker.poll(now);
            let cooled_down = was_open && ks.breaker.admits();
            if cooled_down || ks.waiters.iter().any(|w| w.deadline <= now) {
                self.mark_dirty(k);
            }
        }
        for index in 0..self.slots.len() {
            let sid = SessionId::new(index, self.slots[index].generation);
            let Some(Entry::Session(s)) = &self.slots[index].entry else {
                continue;
            };
            if s.phase != Phase::Idle {
                continue;
            }
            let idle_expired = self
                .config
                .idle_timeout
                .is_some_and(|t| now >= s.idle_since + t)
                && self.ks(s.key).idle.len() > self.config.min_idle_per_key;
            if now >= s.expires_at {
                self.poison(sid, EvictReason::MaxLifetime);
            } else if idle_expired {
                self.poison(sid, EvictReason::IdleTimeout);
            } else if self.keepalive_due(s, now) {
                self.unpark(sid);
                self.start_check(sid, now);
            }
        }
        self.settle(now);
        self.recompute_timeout(now);
    }

    /// Retires every session that exists now: idle ones close at once, leased
    /// and validating ones when they come back. The pool stays usable: new
    /// acquires get new sessions.
    pub fn drain(&mut self, now: Time) {
        let now = self.clamp(now);
        self.now = now;
        self.retire_all(EvictReason::Drained);
        self.settle(now);
    }

    /// Stops the pool: waiters and new acquires are rejected, idle sessions
    /// close at once, the rest close when they come back. [`Pool::is_closed`]
    /// turns true when the last session is closed.
    pub fn shutdown(&mut self, now: Time) {
        let now = self.clamp(now);
        self.now = now;
        self.shutting_down = true;
        for k in 0..self.key_states.len() as u32 {
            if self.key_states[k as usize].is_some() {
                self.reject_all_waiters(k, RejectReason::ShuttingDown);
                self.ks_mut(k).blocked = false;
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
            Input::Release { lease, outcome } => self.release(lease, outcome, now)?,
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

    /// When [`Pool::handle_timeout`] should next be called, if ever. It may be
    /// early (then the call does nothing), never late.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_timeout
    }

    // ------------------------------------------------------------ observation

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The latest `now` the pool has seen.
    pub fn now(&self) -> Time {
        self.now
    }

    /// True once `shutdown` was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// True once shut down and every session and connect is gone.
    pub fn is_closed(&self) -> bool {
        self.shutting_down && self.slots.iter().all(|s| s.entry.is_none())
    }

    /// Sessions and connects that count toward capacity (not Poisoned).
    pub fn live(&self) -> usize {
        self.live_total
    }

    /// Acquires waiting for an answer.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The keys the pool tracks, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.keys()
    }

    /// Gauges of one key, if the pool tracks it.
    pub fn key_snapshot(&self, key: &K) -> Option<KeySnapshot> {
        let ks = self.ks(*self.keys.get(key)?);
        Some(KeySnapshot {
            idle: ks.idle.len(),
            leased: ks.leased,
            validating: ks.validating,
            poisoned: ks.poisoned,
            connecting: ks.connecting,
            waiting: ks.waiters.len(),
            breaker: ks.breaker.public(),
        })
    }

    /// The probe connect in flight for `key`, while its breaker is half-open.
    pub fn breaker_probe(&self, key: &K) -> Option<SessionId> {
        self.ks(*self.keys.get(key)?).breaker.probe()
    }

    /// The state of a session: `None` while it is still a connect (or was
    /// never issued), `Closed` once gone.
    pub fn session_state(&self, session: SessionId) -> Option<SessionState> {
        let slot = self.slots.get(session.index())?;
        if session.generation() < slot.generation {
            return Some(SessionState::Closed);
        }
        if session.generation() > slot.generation {
            return None;
        }
        match &slot.entry {
            Some(Entry::Session(s)) => Some(public_state(s.phase)),
            Some(Entry::Connecting { .. }) | None => None,
        }
    }

    /// A view of a session that is not yet closed.
    pub fn session(&self, session: SessionId) -> Option<SessionInfo<'_, K>> {
        match self.entry(session)? {
            Entry::Session(s) => Some(self.info(s)),
            Entry::Connecting { .. } => None,
        }
    }

    /// Every session not yet closed, in id order of their slots.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, SessionInfo<'_, K>)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match &slot.entry {
                Some(Entry::Session(s)) => Some((SessionId::new(i, slot.generation), self.info(s))),
                _ => None,
            })
    }

    /// Every connect in flight and its key.
    pub fn connects(&self) -> impl Iterator<Item = (SessionId, &K)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match &slot.entry {
                Some(Entry::Connecting { key, .. }) => {
                    Some((SessionId::new(i, slot.generation), &self.ks(*key).key))
                }
                _ => None,
            })
    }

    /// Every lease held, with its session.
    pub fn leases(&self) -> impl Iterator<Item = LeaseId> + '_ {
        self.slots.iter().enumerate().flat_map(|(i, slot)| {
            let session = SessionId::new(i, slot.generation);
            let seqs: &[u32] = match &slot.entry {
                Some(Entry::Session(s)) => &s.leases,
                _ => &[],
            };
            seqs.iter().map(move |&seq| LeaseId { session, seq })
        })
    }

    /// Acquires waiting on `key`, in the order they will be served.
    pub fn waiters(&self, key: &K) -> Vec<AcquireId> {
        self.keys
            .get(key)
            .map(|&k| self.ks(k).waiters.iter().map(|w| w.id).collect())
            .unwrap_or_default()
    }

    /// Whether a session could be granted right now without a check: not
    /// marked for a check, within `check_interval` of its last evidence of
    /// health, and within its lifetime.
    pub fn is_fresh(&self, session: SessionId) -> bool {
        match self.entry(session) {
            Some(Entry::Session(s)) => self.fresh(s, self.now),
            _ => false,
        }
    }

    // -------------------------------------------------------------- internals

    fn info<'a>(&'a self, s: &Session) -> SessionInfo<'a, K> {
        SessionInfo {
            key: &self.ks(s.key).key,
            state: public_state(s.phase),
            leases: s.leases.len(),
            created_at: s.created_at,
            expires_at: (s.expires_at != Time::MAX).then_some(s.expires_at),
            verified_at: s.verified_at,
            needs_check: s.needs_check,
            checking: s.checking,
            retiring: s.retire,
            evicted: s.evicted,
            close_issued: s.close_sent,
        }
    }

    /// `now`, or the latest time seen if `now` is earlier: time never runs
    /// backwards. Stored (`self.now = now`) only once an input is accepted.
    fn clamp(&self, now: Time) -> Time {
        now.max(self.now)
    }

    pub(crate) fn fresh(&self, s: &Session, now: Time) -> bool {
        #[cfg(feature = "mutants")]
        if self.mutation == Some(crate::mutants::Mutation::SkipCheckAfterUse) {
            return !s.retire && now < s.expires_at;
        }
        !s.needs_check
            && !s.retire
            && now < s.expires_at
            && now < s.verified_at + self.config.check_interval
    }

    fn keepalive_due(&self, s: &Session, now: Time) -> bool {
        !self.config.check_interval.is_zero() && now >= s.verified_at + self.config.check_interval
    }

    fn retirement(&self, s: &Session, now: Time) -> Option<EvictReason> {
        if self.shutting_down {
            Some(EvictReason::Shutdown)
        } else if s.retire {
            Some(EvictReason::Drained)
        } else if now >= s.expires_at {
            Some(EvictReason::MaxLifetime)
        } else {
            None
        }
    }

    pub(crate) fn ks(&self, k: u32) -> &KeyState<K> {
        self.key_states[k as usize]
            .as_ref()
            .expect("live key index")
    }

    fn ks_mut(&mut self, k: u32) -> &mut KeyState<K> {
        self.key_states[k as usize]
            .as_mut()
            .expect("live key index")
    }

    pub(crate) fn entry(&self, sid: SessionId) -> Option<&Entry> {
        let slot = self.slots.get(sid.index())?;
        if slot.generation != sid.generation() {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry_mut(&mut self, sid: SessionId) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(sid.index())?;
        if slot.generation != sid.generation() {
            return None;
        }
        slot.entry.as_mut()
    }

    fn sess(&self, sid: SessionId) -> &Session {
        match self.entry(sid) {
            Some(Entry::Session(s)) => s,
            _ => unreachable!("{sid:?} is a live session"),
        }
    }

    fn sess_mut(&mut self, sid: SessionId) -> &mut Session {
        match self.entry_mut(sid) {
            Some(Entry::Session(s)) => s,
            _ => unreachable!("{sid:?} is a live session"),
        }
    }

    fn alloc_slot(&mut self, entry: Entry) -> SessionId {
        match self.free_slots.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.entry = Some(entry);
                SessionId::new(index as usize, slot.generation)
            }
            None => {
                let index = self.slots.len();
                self.slots.push(Slot {
                    generation: 0,
                    entry: Some(entry),
                });
                SessionId::new(index, 0)
            }
        }
    }

    fn free_slot(&mut self, sid: SessionId) {
        let slot = &mut self.slots[sid.index()];
        slot.entry = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free_slots.push(sid.index() as u32);
    }

    fn create_key(&mut self, key: &K) -> Option<u32> {
        if self.keys.len() >= self.config.max_keys && !self.forget_one_key() {
            return None;
        }
        let state = KeyState {
            key: key.clone(),
            idle: Vec::new(),
            sessions: Vec::new(),
            waiters: VecDeque::new(),
            live: 0,
            connecting: 0,
            validating: 0,
            leased: 0,
            poisoned: 0,
            breaker: Breaker::default(),
            dirty: false,
            blocked: false,
        };
        let k = match self.free_keys.pop() {
            Some(k) => {
                self.key_states[k as usize] = Some(state);
                k
            }
            None => {
                self.key_states.push(Some(state));
                (self.key_states.len() - 1) as u32
            }
        };
        self.keys.insert(key.clone(), k);
        Some(k)
    }

    /// Forgets the first key that holds nothing (its breaker history goes too).
    fn forget_one_key(&mut self) -> bool {
        let found = self.key_states.iter().position(|ks| {
            ks.as_ref().is_some_and(|ks| {
                ks.live == 0
                    && ks.poisoned == 0
                    && ks.waiters.is_empty()
                    && !ks.dirty
                    && !ks.blocked
            })
        });
        match found {
            Some(k) => {
                self.remove_key(k as u32);
                true
            }
            None => false,
        }
    }

    fn remove_key(&mut self, k: u32) {
        let ks = self.key_states[k as usize].take().expect("live key index");
        self.keys.remove(&ks.key);
        self.free_keys.push(k);
    }

    fn maybe_forget_key(&mut self, k: u32) {
        let ks = self.ks(k);
        if ks.live == 0
            && ks.poisoned == 0
            && ks.waiters.is_empty()
            && !ks.dirty
            && !ks.blocked
            && ks.breaker.is_pristine()
        {
            self.remove_key(k);
        }
    }

    fn mark_dirty(&mut self, k: u32) {
        let ks = self.ks_mut(k);
        if !ks.dirty {
            ks.dirty = true;
            self.dirty.push_back(k);
        }
    }

    fn note_deadline(&mut self, t: Time) {
        if self.next_timeout.is_none_or(|n| t < n) {
            self.next_timeout = Some(t);
        }
    }

    fn reject(&mut self, acquire: AcquireId, reason: RejectReason) {
        let counter = match reason {
            RejectReason::TimedOut => &mut self.stats.rejected_timed_out,
            RejectReason::CircuitOpen => &mut self.stats.rejected_circuit_open,
            RejectReason::ConnectFailed { .. } => &mut self.stats.rejected_connect_failed,
            RejectReason::ShuttingDown => &mut self.stats.rejected_shutting_down,
            RejectReason::TooManyKeys => &mut self.stats.rejected_too_many_keys,
        };
        *counter += 1;
        self.actions.push_back(Action::Reject { acquire, reason });
    }

    fn reject_all_waiters(&mut self, k: u32, reason: RejectReason) {
        while let Some(w) = self.ks_mut(k).waiters.pop_front() {
            self.waiting.remove(&w.id);
            self.reject(w.id, reason);
        }
    }

    /// Rejects every waiter of `k` whose deadline has come.
    fn expire_waiters(&mut self, k: u32, now: Time) {
        let ks = self.ks(k);
        if !ks.waiters.iter().any(|w| w.deadline <= now) {
            return;
        }
        let reason = if ks.breaker.is_tripped() {
            RejectReason::CircuitOpen
        } else {
            RejectReason::TimedOut
        };
        let waiters = std::mem::take(&mut self.ks_mut(k).waiters);
        for w in waiters {
            if w.deadline <= now {
                self.waiting.remove(&w.id);
                self.reject(w.id, reason);
            } else {
                self.ks_mut(k).waiters.push_back(w);
            }
        }
    }

    /// Leases `sid` (unparked, not Poisoned) to `acquire`.
    fn grant(&mut self, acquire: AcquireId, sid: SessionId) {
        let s = self.sess_mut(sid);
        let seq = s.next_lease;
        s.next_lease = s.next_lease.wrapping_add(1);
        s.leases.push(seq);
        let was_leased = s.phase == Phase::Leased;
        s.phase = Phase::Leased;
        let k = s.key;
        if !was_leased {
            self.ks_mut(k).leased += 1;
        }
        self.stats.grants += 1;
        self.actions.push_back(Action::Grant {
            acquire,
            lease: LeaseId { session: sid, seq },
        });
    }

    /// Takes a session that can be granted without a check: the most recently
    /// parked fresh idle one, else (shared mode) the least loaded fresh leased one.
    fn take_ready(&mut self, k: u32, now: Time) -> Option<SessionId> {
        let found = self
            .ks(k)
            .idle
            .iter()
            .rposition(|&sid| self.fresh(self.sess(sid), now));
        if let Some(pos) = found {
            let sid = self.ks_mut(k).idle.remove(pos);
            self.idle_total -= 1;
            return Some(sid);
        }
        #[cfg(feature = "mutants")]
        if self.mutation == Some(crate::mutants::Mutation::GrantAcrossKeys) {
            let other = self.key_states.iter().flatten().find_map(|ks| {
                ks.idle
                    .iter()
                    .copied()
                    .find(|&sid| self.fresh(self.sess(sid), now))
            });
            if let Some(sid) = other {
                self.unpark(sid);
                return Some(sid);
            }
        }
        if self.config.max_leases_per_session > 1 {
            return self
                .ks(k)
                .sessions
                .iter()
                .copied()
                .filter(|&sid| {
                    let s = self.sess(sid);
                    s.phase == Phase::Leased
                        && s.leases.len() < self.config.max_leases_per_session
                        && self.fresh(s, now)
                })
                .min_by_key(|&sid| self.sess(sid).leases.len());
        }
        None
    }

    /// Takes the most recently parked idle session that needs a check first.
    fn take_stale(&mut self, k: u32) -> Option<SessionId> {
        let pos = self.ks(k).idle.len().checked_sub(1)?;
        let sid = self.ks_mut(k).idle.remove(pos);
        self.idle_total -= 1;
        Some(sid)
    }

    fn unpark(&mut self, sid: SessionId) {
        let k = self.sess(sid).key;
        let ks = self.ks_mut(k);
        if let Some(pos) = ks.idle.iter().rposition(|&s| s == sid) {
            ks.idle.remove(pos);
            self.idle_total -= 1;
        }
    }

    fn park(&mut self, sid: SessionId) {
        let idle_timeout = self.config.idle_timeout;
        let check_interval = self.config.check_interval;
        let s = self.sess_mut(sid);
        s.phase = Phase::Idle;
        let mut due = s.expires_at;
        if let Some(t) = idle_timeout {
            due = due.min(s.idle_since + t);
        }
        if !check_interval.is_zero() {
            due = due.min(s.verified_at + check_interval);
        }
        let k = s.key;
        self.ks_mut(k).idle.push(sid);
        self.idle_total += 1;
        if due != Time::MAX {
            self.note_deadline(due);
        }
    }

    fn start_check(&mut self, sid: SessionId, now: Time) {
        let s = self.sess_mut(sid);
        s.phase = Phase::Validating;
        s.checking = true;
        let k = s.key;
        self.ks_mut(k).validating += 1;
        self.stats.checks += 1;
        let deadline = now + self.config.check_timeout;
        self.actions.push_back(Action::Validate {
            session: sid,
            deadline,
        });
    }

    /// A session just proven healthy (connected, or passed a check) and held
    /// by nobody: hand it to the waiters at the head, or park it.
    fn handoff(&mut self, sid: SessionId, now: Time) {
        if let Some(reason) = self.retirement(self.sess(sid), now) {
            self.poison(sid, reason);
            return;
        }
        let k = self.sess(sid).key;
        self.expire_waiters(k, now);
        while self.sess(sid).leases.len() < self.config.max_leases_per_session {
            let Some(w) = self.ks_mut(k).waiters.pop_front() else {
                break;
            };
            self.waiting.remove(&w.id);
            self.grant(w.id, sid);
        }
        if self.sess(sid).leases.is_empty() {
            self.park(sid);
        }
        self.mark_dirty(k);
    }

    /// Takes the session out of service for good.
    fn poison(&mut self, sid: SessionId, reason: EvictReason) {
        let s = self.sess_mut(sid);
        let prev = s.phase;
        debug_assert_ne!(prev, Phase::Poisoned);
        s.phase = Phase::Poisoned;
        s.evicted = Some(reason);
        let k = s.key;
        match prev {
            Phase::Idle => self.unpark(sid),
            Phase::Leased => self.ks_mut(k).leased -= 1,
            Phase::Validating => self.ks_mut(k).validating -= 1,
            Phase::Poisoned => {}
        }
        let ks = self.ks_mut(k);
        ks.live -= 1;
        ks.poisoned += 1;
        self.live_total -= 1;
        self.stats.evictions[reason as usize] += 1;
        self.mark_dirty(k);
        self.maybe_close(sid);
    }

    fn maybe_close(&mut self, sid: SessionId) {
        let s = self.sess_mut(sid);
        if s.phase == Phase::Poisoned && s.leases.is_empty() && !s.checking && !s.close_sent {
            s.close_sent = true;
            let reason = s.evicted.expect("a poisoned session has a reason");
            self.actions.push_back(Action::Close {
                session: sid,
                reason,
            });
        }
    }

    fn retire_all(&mut self, reason: EvictReason) {
        for index in 0..self.slots.len() {
            let sid = SessionId::new(index, self.slots[index].generation);
            match &mut self.slots[index].entry {
                Some(Entry::Connecting { retire, .. }) => {
                    *retire |= reason == EvictReason::Shutdown;
                }
                Some(Entry::Session(s)) => match s.phase {
                    Phase::Idle => self.poison(sid, reason),
                    Phase::Leased | Phase::Validating => s.retire = true,
                    Phase::Poisoned => {}
                },
                None => {}
            }
        }
    }

    /// Starts a connect for `k` if the breaker, the key's limit and the
    /// pool's limit allow. With `for_waiters`, a full pool evicts another
    /// key's least recently used idle session, or marks `k` blocked.
    fn try_connect(&mut self, k: u32, now: Time, for_waiters: bool) -> bool {
        if self.shutting_down {
            return false;
        }
        let ks = self.ks_mut(k);
        ks.breaker.poll(now);
        if !ks.breaker.admits() || ks.live >= self.config.max_sessions_per_key {
            return false;
        }
        if self.live_total >= self.config.max_sessions_total {
            if !for_waiters {
                return false;
            }
            if !self.evict_lru_idle(k) {
                let ks = self.ks_mut(k);
                if !ks.blocked {
                    ks.blocked = true;
                    self.blocked.push_back(k);
                }
                return false;
            }
        }
        let sid = self.alloc_slot(Entry::Connecting {
            key: k,
            retire: false,
            acquires_before: self.next_acquire,
        });
        let ks = self.ks_mut(k);
        ks.live += 1;
        ks.connecting += 1;
        ks.breaker.on_connect_started(sid);
        let key = ks.key.clone();
        self.live_total += 1;
        self.stats.connects += 1;
        self.actions.push_back(Action::Connect {
            session: sid,
            key,
            deadline: now + self.config.connect_timeout,
        });
        true
    }

    /// Evicts the least recently used idle session of a key other than `k`.
    fn evict_lru_idle(&mut self, k: u32) -> bool {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match &slot.entry {
                Some(Entry::Session(s)) if s.phase == Phase::Idle && s.key != k => {
                    Some((s.idle_since, SessionId::new(i, slot.generation)))
                }
                _ => None,
            })
            .min();
        match victim {
            Some((_, sid)) => {
                self.poison(sid, EvictReason::Capacity);
                true
            }
            None => false,
        }
    }

    /// Serves `k`'s waiters with everything available, then keeps its
    /// pre-warm level.
    fn dispatch(&mut self, k: u32, now: Time) {
        // Every waiter deadline and idle lifetime end is at or after
        // `next_timeout` (I9): nothing can have expired before it.
        if self.next_timeout.is_some_and(|t| t <= now) {
            self.expire_due(k, now);
        }
        loop {
            if self.ks(k).waiters.is_empty() {
                break;
            }
            if let Some(sid) = self.take_ready(k, now) {
                let w = self.ks_mut(k).waiters.pop_front().expect("a waiter");
                self.waiting.remove(&w.id);
                self.grant(w.id, sid);
                continue;
            }
            let ks = self.ks(k);
            let supply = (ks.connecting + ks.validating) * self.config.max_leases_per_session;
            if ks.waiters.len() <= supply {
                break;
            }
            if let Some(sid) = self.take_stale(k) {
                self.start_check(sid, now);
                continue;
            }
            if !self.try_connect(k, now, true) {
                break;
            }
        }
        self.replenish(k, now);
        self.maybe_forget_key(k);
    }

    /// Rejects `k`'s waiters past their deadline and poisons its idle
    /// sessions past their lifetime.
    fn expire_due(&mut self, k: u32, now: Time) {
        self.expire_waiters(k, now);
        let expired: Vec<SessionId> = self
            .ks(k)
            .idle
            .iter()
            .copied()
            .filter(|&sid| now >= self.sess(sid).expires_at)
            .collect();
        for sid in expired {
            self.poison(sid, EvictReason::MaxLifetime);
        }
    }

    /// Keeps `min_idle_per_key` sessions idle or on their way, beyond the waiters.
    fn replenish(&mut self, k: u32, now: Time) {
        let min_idle = self.config.min_idle_per_key;
        if min_idle == 0 {
            return;
        }
        loop {
            let ks = self.ks(k);
            let spare = ks.idle.len() + ks.connecting + ks.validating;
            if spare >= min_idle + ks.waiters.len() || !self.try_connect(k, now, false) {
                break;
            }
        }
    }

    /// Runs every pending dispatch until nothing more can be done.
    fn settle(&mut self, now: Time) {
        loop {
            if let Some(k) = self.dirty.pop_front() {
                self.ks_mut(k).dirty = false;
                self.dispatch(k, now);
                continue;
            }
            let room = self.live_total < self.config.max_sessions_total || self.idle_total > 0;
            if room {
                if let Some(k) = self.blocked.pop_front() {
                    self.ks_mut(k).blocked = false;
                    self.dispatch(k, now);
                    continue;
                }
            }
            break;
        }
    }

    fn recompute_timeout(&mut self, now: Time) {
        let mut next: Option<Time> = None;
        let mut consider = |t: Time| {
            if t > now && t != Time::MAX && next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        for ks in self.key_states.iter().flatten() {
            for w in &ks.waiters {
                consider(w.deadline);
            }
            if let Some(until) = ks.breaker.open_until() {
                consider(until);
            }
        }
        for slot in &self.slots {
            if let Some(Entry::Session(s)) = &slot.entry {
                if s.phase == Phase::Idle {
                    consider(s.expires_at);
                    if let Some(t) = self.config.idle_timeout {
                        consider(s.idle_since + t);
                    }
                    if !self.config.check_interval.is_zero() {
                        consider(s.verified_at + self.config.check_interval);
                    }
                }
            }
        }
        self.next_timeout = next;
    }
}

/// What a release with `outcome` does to the session. The one place the
/// outcome decides reuse; see [`Outcome`].
fn decide_release(outcome: Outcome) -> ReleaseDecision {
    match outcome {
        Outcome::TransportError => ReleaseDecision::Poison,
        Outcome::Timeout | Outcome::Cancelled => ReleaseDecision::Check,
        Outcome::Ok | Outcome::ApplicationError => ReleaseDecision::Reuse,
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ReleaseDecision {
    Reuse,
    Check,
    Poison,
}

fn public_state(phase: Phase) -> SessionState {
    match phase {
        Phase::Idle => SessionState::Idle,
        Phase::Leased => SessionState::Leased,
        Phase::Validating => SessionState::Validating,
        Phase::Poisoned => SessionState::Poisoned,
    }
}
