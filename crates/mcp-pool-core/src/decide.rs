//! The decisions every input leads to: who is served, which session is
//! granted, checked, parked or poisoned, when to connect, what expires.

use crate::pool::{Pool, PoolKey};
use crate::session::{Entry, Held, Phase, Session};
use crate::{AcquireId, Action, EvictReason, LeaseId, RejectReason, SessionId, Time};

impl<K: PoolKey> Pool<K> {
    // ------------------------------------------------------------- deadlines

    /// Acts on the deadlines at or before `now` that every input honours
    /// first: waiters past their deadline are rejected, breakers whose
    /// cool-down ended let a probe through. Touches only what is due.
    pub(crate) fn expire(&mut self, now: Time) {
        while let Some(id) = self.waiters.first_due(now) {
            let k = self.waiters.key_of(id).expect("a waiter's key");
            self.take_waiter(k, id);
            let reason = self.expiry_reason(k);
            self.reject(id, reason);
            self.mark_dirty(k);
        }
        while let Some((until, k)) = self.timers.take_breaker_due(now) {
            let Some(ks) = self.key_states.get_mut(k as usize).and_then(Option::as_mut) else {
                continue;
            };
            if ks.breaker.open_until() == Some(until) && ks.breaker.poll(now) {
                self.mark_dirty(k);
            }
        }
    }

    /// Acts on the parked sessions' timers due at or before `now` (only
    /// [`Pool::handle_timeout`] does): sessions past their lifetime or idle
    /// timeout are closed, those due a keepalive are checked.
    pub(crate) fn expire_idle(&mut self, now: Time) {
        while let Some((due, sid)) = self.timers.take_idle_due(now) {
            let s = self.sess_mut(sid);
            debug_assert!(matches!(s.phase, Phase::Idle | Phase::Lent) && s.due == due);
            s.due = Time::MAX;
            if s.phase == Phase::Lent {
                // Its bound, idle timeout or lifetime came: the pool must
                // see it again to decide.
                self.recall(sid);
            } else {
                self.idle_timer_fired(sid, now);
            }
        }
    }

    /// Why a waiter of `k` whose deadline came is rejected.
    pub(crate) fn expiry_reason(&self, k: u32) -> RejectReason {
        if self.ks(k).breaker.is_tripped() {
            RejectReason::CircuitOpen
        } else {
            RejectReason::TimedOut
        }
    }

    /// A parked session's timer fired (its entry is already taken).
    fn idle_timer_fired(&mut self, sid: SessionId, now: Time) {
        let s = self.sess(sid);
        let k = s.key;
        if now >= s.expires_at {
            self.poison(sid, EvictReason::MaxLifetime);
            return;
        }
        let idle_expired = !s.idle_kept
            && self
                .config
                .idle_timeout
                .is_some_and(|t| now >= s.idle_since + t);
        if idle_expired {
            if self.ks(k).idle.len() > self.config.min_idle_per_key {
                self.poison(sid, EvictReason::IdleTimeout);
                return;
            }
            // Kept for `min_idle_per_key`, until another session parks.
            self.sess_mut(sid).idle_kept = true;
        }
        if self.keepalive_due(self.sess(sid), now) {
            self.unpark(sid);
            self.start_check(sid, now);
            self.mark_dirty(k);
        } else {
            self.arm_idle(sid);
        }
    }

    /// When a parked session's timer is next due: its lifetime end, its idle
    /// timeout (unless kept for `min_idle_per_key`), its keepalive.
    pub(crate) fn idle_due(&self, s: &Session) -> Time {
        let mut due = s.expires_at;
        if let Some(t) = self.config.idle_timeout {
            if !s.idle_kept {
                due = due.min(s.idle_since + t);
            }
        }
        if !self.config.check_interval.is_zero() {
            due = due.min(s.verified_at + self.config.check_interval);
        }
        due
    }

    /// Arms the timer of parked session `sid` (which has none armed).
    fn arm_idle(&mut self, sid: SessionId) {
        let due = self.idle_due(self.sess(sid));
        self.sess_mut(sid).due = due;
        self.timers.arm_idle(due, sid);
    }

    // ----------------------------------------------------------------- waiters

    /// Takes `id` out of `k`'s queue; returns its deadline.
    pub(crate) fn take_waiter(&mut self, k: u32, id: AcquireId) -> Time {
        let ks = self.key_states[k as usize]
            .as_mut()
            .expect("live key index");
        self.waiters
            .remove(&mut ks.waiters, id)
            .expect("a queued waiter")
            .deadline
    }

    pub(crate) fn reject(&mut self, acquire: AcquireId, reason: RejectReason) {
        let counter = match reason {
            RejectReason::TimedOut => &mut self.stats.rejected_timed_out,
            RejectReason::CircuitOpen => &mut self.stats.rejected_circuit_open,
            RejectReason::ConnectFailed { .. } => &mut self.stats.rejected_connect_failed,
            RejectReason::ShuttingDown => &mut self.stats.rejected_shutting_down,
            RejectReason::TooManyKeys => &mut self.stats.rejected_too_many_keys,
            RejectReason::QueueFull => &mut self.stats.rejected_queue_full,
        };
        *counter += 1;
        self.actions.push_back(Action::Reject { acquire, reason });
    }

    pub(crate) fn reject_all_waiters(&mut self, k: u32, reason: RejectReason) {
        while let Some(id) = self.ks(k).waiters.head() {
            self.take_waiter(k, id);
            self.reject(id, reason);
        }
    }

    // ---------------------------------------------------------------- sessions

    /// Leases `sid` (unparked, not Poisoned) to `acquire`.
    pub(crate) fn grant(&mut self, acquire: AcquireId, deadline: Time, sid: SessionId) {
        let s = self.sess_mut(sid);
        let seq = s.next_lease;
        s.next_lease = s.next_lease.wrapping_add(1);
        s.leases.push(Held {
            seq,
            acquire,
            deadline,
        });
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
    pub(crate) fn take_ready(&mut self, k: u32, now: Time) -> Option<SessionId> {
        let found = self
            .ks(k)
            .idle
            .iter()
            .rposition(|&sid| self.fresh(self.sess(sid), now));
        if let Some(pos) = found {
            let sid = self.ks(k).idle[pos];
            self.unpark(sid);
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
        if self.ks(k).lease_hint > 1 {
            return self
                .ks(k)
                .sessions
                .iter()
                .copied()
                .filter(|&sid| {
                    let s = self.sess(sid);
                    s.phase == Phase::Leased && s.leases.len() < s.max_leases && self.fresh(s, now)
                })
                .min_by_key(|&sid| self.sess(sid).leases.len());
        }
        None
    }

    /// Takes the most recently parked idle session (it needs a check
    /// first); one past its lifetime is closed instead, and the next one
    /// taken.
    fn take_stale(&mut self, k: u32, now: Time) -> Option<SessionId> {
        loop {
            let sid = *self.ks(k).idle.last()?;
            if now >= self.sess(sid).expires_at {
                self.poison(sid, EvictReason::MaxLifetime);
                continue;
            }
            self.unpark(sid);
            return Some(sid);
        }
    }

    /// Takes a parked session out of its key's idle list and disarms its timer.
    pub(crate) fn unpark(&mut self, sid: SessionId) {
        let s = self.sess_mut(sid);
        let (k, due) = (s.key, s.due);
        s.due = Time::MAX;
        s.idle_kept = false;
        self.timers.disarm_idle(due, sid);
        let ks = self.ks_mut(k);
        if let Some(pos) = ks.idle.iter().rposition(|&s| s == sid) {
            ks.idle.remove(pos);
            self.idle_total -= 1;
        }
    }

    pub(crate) fn park(&mut self, sid: SessionId) {
        let now = self.now;
        if self.lendable(self.sess(sid), now) {
            self.lend(sid, now);
            return;
        }
        let s = self.sess_mut(sid);
        s.phase = Phase::Idle;
        let k = s.key;
        self.ks_mut(k).idle.push(sid);
        self.idle_total += 1;
        self.arm_idle(sid);
        let min_idle = self.config.min_idle_per_key;
        if min_idle > 0 && self.ks(k).idle.len() > min_idle {
            // Above the minimum again: sessions kept past their idle
            // timeout may expire (their timer comes due at once).
            let kept: Vec<SessionId> = self
                .ks(k)
                .idle
                .iter()
                .copied()
                .filter(|&other| self.sess(other).idle_kept)
                .collect();
            for other in kept {
                let s = self.sess_mut(other);
                let due = s.due;
                s.idle_kept = false;
                self.timers.disarm_idle(due, other);
                self.arm_idle(other);
            }
        }
    }

    pub(crate) fn start_check(&mut self, sid: SessionId, now: Time) {
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
    pub(crate) fn handoff(&mut self, sid: SessionId, now: Time) {
        if let Some(reason) = self.retirement(self.sess(sid), now) {
            self.poison(sid, reason);
            return;
        }
        let k = self.sess(sid).key;
        while self.sess(sid).leases.len() < self.sess(sid).max_leases {
            let Some(id) = self.ks(k).waiters.head() else {
                break;
            };
            let deadline = self.take_waiter(k, id);
            self.grant(id, deadline, sid);
        }
        if self.sess(sid).leases.is_empty() {
            self.park(sid);
        }
        self.mark_dirty(k);
    }

    /// A session whose last lease came back (and was not poisoned): retired,
    /// checked, handed on as just proven (`handed_fresh`), or parked.
    pub(crate) fn return_to_service(&mut self, sid: SessionId, now: Time, handed_fresh: bool) {
        let s = self.sess_mut(sid);
        s.phase = Phase::Idle;
        let k = s.key;
        self.ks_mut(k).leased -= 1;
        let s = self.sess(sid);
        if let Some(reason) = self.retirement(s, now) {
            self.poison(sid, reason);
        } else if s.needs_check {
            self.start_check(sid, now);
        } else if handed_fresh {
            self.handoff(sid, now);
        } else {
            self.park(sid);
        }
    }

    /// Takes the session out of service for good.
    pub(crate) fn poison(&mut self, sid: SessionId, reason: EvictReason) {
        let s = self.sess_mut(sid);
        let prev = s.phase;
        debug_assert_ne!(prev, Phase::Poisoned);
        let k = s.key;
        match prev {
            Phase::Idle => self.unpark(sid),
            Phase::Leased => self.ks_mut(k).leased -= 1,
            Phase::Validating => self.ks_mut(k).validating -= 1,
            Phase::Lent => {
                let s = self.sess_mut(sid);
                let due = s.due;
                s.due = Time::MAX;
                self.timers.disarm_idle(due, sid);
                self.ks_mut(k).lent -= 1;
            }
            Phase::Poisoned => {}
        }
        let s = self.sess_mut(sid);
        s.phase = Phase::Poisoned;
        s.evicted = Some(reason);
        let ks = self.ks_mut(k);
        ks.live -= 1;
        ks.poisoned += 1;
        self.live_total -= 1;
        self.held_poisoned += 1;
        self.stats.evictions[reason as usize] += 1;
        self.mark_dirty(k);
        // A lent session must stop being taken from its lane at once.
        self.recall(sid);
        self.maybe_close(sid);
    }

    pub(crate) fn maybe_close(&mut self, sid: SessionId) {
        let s = self.sess_mut(sid);
        if s.phase == Phase::Poisoned
            && s.leases.is_empty()
            && !s.checking
            && !s.lane_held
            && !s.close_sent
        {
            s.close_sent = true;
            let reason = s.evicted.expect("a poisoned session has a reason");
            self.held_poisoned -= 1;
            self.actions.push_back(Action::Close {
                session: sid,
                reason,
            });
        }
    }

    pub(crate) fn retire_all(&mut self, reason: EvictReason) {
        let ids: Vec<SessionId> = self.slots.iter().map(|(sid, _)| sid).collect();
        for sid in ids {
            match self.slots.get_mut(sid) {
                Some(Entry::Connecting { retire, .. }) => *retire = true,
                Some(Entry::Session(s)) => match s.phase {
                    Phase::Idle => self.poison(sid, reason),
                    Phase::Leased | Phase::Validating => s.retire = true,
                    Phase::Lent => {
                        s.retire = true;
                        self.recall(sid);
                    }
                    Phase::Poisoned => {}
                },
                None => {}
            }
        }
    }

    // ---------------------------------------------------------------- capacity

    /// Sessions that hold a server-side resource or a slot: connects in
    /// flight, serving sessions, and poisoned ones whose close is not yet
    /// issued. What `max_sessions_total` bounds.
    pub(crate) fn open_total(&self) -> usize {
        self.live_total + self.held_poisoned
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
        if self.open_total() >= self.config.max_sessions_total {
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
            if self.open_total() >= self.config.max_sessions_total {
                // The evicted session's close is issued, so this does not
                // happen; stay within the limit regardless.
                return false;
            }
        }
        let sid = self.slots.alloc(Entry::Connecting {
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
    /// Scans the idle sessions, and only when the pool is full.
    fn evict_lru_idle(&mut self, k: u32) -> bool {
        let victim = self
            .key_states
            .iter()
            .enumerate()
            .filter(|&(other, _)| other as u32 != k)
            .filter_map(|(_, ks)| ks.as_ref())
            .flat_map(|ks| ks.idle.iter().copied())
            .map(|sid| (self.sess(sid).idle_since, sid))
            .min();
        if let Some((_, sid)) = victim {
            self.poison(sid, EvictReason::Capacity);
            return true;
        }
        // Else the least recently lent session of another key is recalled:
        // it is closed for capacity when it comes back.
        let lent = self
            .slots
            .iter()
            .filter_map(|(sid, entry)| match entry {
                Entry::Session(s) if s.phase == Phase::Lent && s.key != k && !s.recall_sent => {
                    Some((s.lent_at, sid))
                }
                _ => None,
            })
            .min();
        if let Some((_, sid)) = lent {
            self.recall(sid);
        }
        false
    }

    // ---------------------------------------------------------------- dispatch

    /// Serves `k`'s waiters with everything available, then keeps its
    /// pre-warm level.
    pub(crate) fn dispatch(&mut self, k: u32, now: Time) {
        while let Some(head) = self.ks(k).waiters.head() {
            if let Some(sid) = self.take_ready(k, now) {
                let deadline = self.take_waiter(k, head);
                self.grant(head, deadline, sid);
                continue;
            }
            let ks = self.ks(k);
            let supply = (ks.connecting + ks.validating) * ks.lease_hint;
            if ks.waiters.len() <= supply {
                break;
            }
            if let Some(sid) = self.take_stale(k, now) {
                self.start_check(sid, now);
                continue;
            }
            if !self.try_connect(k, now, true) {
                break;
            }
        }
        self.replenish(k, now);
        self.update_lane(k);
        self.maybe_forget_key(k);
    }

    /// Keeps `min_idle_per_key` sessions idle, lent or on their way, beyond
    /// the waiters.
    pub(crate) fn replenish(&mut self, k: u32, now: Time) {
        let min_idle = self.config.min_idle_per_key;
        if min_idle == 0 {
            return;
        }
        loop {
            let ks = self.ks(k);
            // Lent sessions count as spare: the lane serves from them.
            let spare = ks.idle.len() + ks.lent + ks.connecting + ks.validating;
            if spare >= min_idle + ks.waiters.len() || !self.try_connect(k, now, false) {
                break;
            }
        }
    }

    /// Runs every pending dispatch until nothing more can be done.
    pub(crate) fn settle(&mut self, now: Time) {
        loop {
            if let Some(k) = self.dirty.pop_front() {
                self.ks_mut(k).dirty = false;
                self.dispatch(k, now);
                continue;
            }
            let room = self.open_total() < self.config.max_sessions_total || self.idle_total > 0;
            if room {
                if let Some(k) = self.blocked.pop_front() {
                    self.ks_mut(k).blocked = false;
                    self.dispatch(k, now);
                    continue;
                }
            } else if !self.blocked.is_empty() {
                // Keys wait for room in a full pool: a session lent by
                // another key comes back to make it.
                self.recall_for_room();
                if !self.dirty.is_empty() {
                    continue;
                }
            }
            break;
        }
    }

    /// Recalls the least recently lent session of a key that is not
    /// blocked, unless a recall is already on its way. Scans the sessions,
    /// and only while keys wait for room in a full pool.
    fn recall_for_room(&mut self) {
        let mut pending = false;
        let mut oldest: Option<(Time, SessionId)> = None;
        for (sid, entry) in self.slots.iter() {
            if let Entry::Session(s) = entry {
                pending |= s.recall_sent;
                let candidate = s.phase == Phase::Lent && !s.recall_sent && !self.ks(s.key).blocked;
                if candidate && oldest.is_none_or(|(t, _)| s.lent_at < t) {
                    oldest = Some((s.lent_at, sid));
                }
            }
        }
        if !pending {
            if let Some((_, sid)) = oldest {
                self.recall(sid);
            }
        }
    }

    // -------------------------------------------------------------- questions

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

    pub(crate) fn retirement(&self, s: &Session, now: Time) -> Option<EvictReason> {
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

    pub(crate) fn sess(&self, sid: SessionId) -> &Session {
        match self.slots.get(sid) {
            Some(Entry::Session(s)) => s,
            _ => unreachable!("{sid:?} is a live session"),
        }
    }

    pub(crate) fn sess_mut(&mut self, sid: SessionId) -> &mut Session {
        match self.slots.get_mut(sid) {
            Some(Entry::Session(s)) => s,
            _ => unreachable!("{sid:?} is a live session"),
        }
    }
}
