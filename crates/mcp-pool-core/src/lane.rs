//! Lanes: the per-key hot path, decided here and carried out by the driver
//! without the pool on every use.
//!
//! A fresh exclusive session parked with nobody waiting for its key is *lent*
//! to the key's lane ([`Action::Lend`]): callers take it there while its
//! freshness bound holds, and give it back there when a use ends `Ok` or
//! `ApplicationError`, which renews the bound by a rule the pool published
//! with the lend. Everything else comes back to the pool
//! ([`Pool::lane_returned`]): a use that ended any other way, a session a
//! caller found stale or closed, and every session the pool recalls
//! ([`Action::Recall`]) because its timer came (keepalive, idle timeout,
//! lifetime), its transport died, the pool drains or shuts down, another key
//! needs its slot, or callers wait for its key in the pool. A recall racing
//! a take is settled by the driver in one atomic step: either the caller
//! took the session first (it comes back when released) or the recall did
//! (it comes back at once).
//!
//! A key whose every session is lent and which can have no more opens its
//! lane ([`Action::LaneOpen`]): callers who find nothing parked then wait in
//! the lane, first come first served, and a session given back goes to the
//! first of them. When the key needs the pool again the lane closes and its
//! waiting callers become the pool's acquires, in order.

use crate::pool::{Pool, PoolKey};
use crate::session::{Entry, Phase, Session};
use crate::{AcquireId, Action, EvictReason, InputError, LaneReturn, SessionId, Time};

impl<K: PoolKey> Pool<K> {
    /// A lent session comes back from its lane (see [`LaneReturn`]). The
    /// pool then decides as for any session that comes back: reuse (lend it
    /// again, or serve a waiter), check, or close. Refused with
    /// [`InputError::WrongState`] unless the lane holds the session.
    pub fn lane_returned(
        &mut self,
        session: SessionId,
        back: LaneReturn,
        now: Time,
    ) -> Result<(), InputError> {
        let now = self.clamp(now);
        match self.slots.get(session) {
            Some(Entry::Session(s)) if s.lane_held => {}
            Some(_) => {
                return Err(InputError::WrongState {
                    session,
                    expected: "lent to its lane",
                })
            }
            None => return Err(InputError::UnknownSession(session)),
        }
        self.begin(now);
        self.stats.lane_returns += 1;
        let k = self.sess(session).key;
        self.unlend(session);
        match back {
            LaneReturn::Parked { last_used } => {
                if let Some(t) = last_used {
                    let s = self.sess_mut(session);
                    // Used in the lane: no longer just proven (I11).
                    s.unused_since_proof = false;
                    s.proven = true;
                    s.verified_at = s.verified_at.max(t);
                    s.idle_since = s.idle_since.max(t);
                    self.ks_mut(k).breaker.on_proof();
                }
                if self.sess(session).phase == Phase::Poisoned {
                    self.maybe_close(session);
                } else {
                    self.back_from_lane(session, now);
                }
            }
            LaneReturn::Released { outcome, at } => {
                let at = at.min(now);
                // Used in the lane: no longer just proven (I11).
                self.sess_mut(session).unused_since_proof = false;
                let poisoned = self.sess(session).phase == Phase::Poisoned;
                match crate::pool::decide_release(outcome) {
                    crate::pool::ReleaseDecision::Poison => {
                        if !poisoned {
                            self.poison(session, EvictReason::TransportError);
                        }
                    }
                    crate::pool::ReleaseDecision::Check => {
                        self.sess_mut(session).needs_check = true
                    }
                    crate::pool::ReleaseDecision::Reuse => {
                        let s = self.sess_mut(session);
                        s.proven = true;
                        s.verified_at = s.verified_at.max(at);
                        self.ks_mut(k).breaker.on_proof();
                    }
                }
                let s = self.sess_mut(session);
                if s.phase == Phase::Poisoned {
                    self.maybe_close(session);
                } else {
                    s.idle_since = s.idle_since.max(at);
                    self.back_from_lane(session, now);
                }
            }
            LaneReturn::Closed => {
                let unproven = !self.sess(session).proven;
                if self.sess(session).phase == Phase::Poisoned {
                    self.maybe_close(session);
                } else {
                    self.poison(session, EvictReason::TransportClosed);
                }
                if unproven {
                    self.count_failure(k, None, None, now);
                }
            }
        }
        self.mark_dirty(k);
        self.settle(now);
        Ok(())
    }

    /// Whether parked session `s` of key `k` may be lent now.
    pub(crate) fn lendable(&self, s: &Session, now: Time) -> bool {
        self.config.lanes
            && s.max_leases == 1
            && !s.retire
            && !self.shutting_down
            && self.ks(s.key).waiters.is_empty()
            // A key waiting for room in a full pool may take this one.
            && self.blocked.is_empty()
            && self.fresh(s, now)
    }

    /// Lends session `sid` (held by nobody, not parked) to its lane.
    pub(crate) fn lend(&mut self, sid: SessionId, now: Time) {
        let check_interval = self.config.check_interval;
        let s = self.sess_mut(sid);
        s.phase = Phase::Lent;
        s.lane_held = true;
        s.recall_sent = false;
        s.lent_at = now;
        let until = s.expires_at.min(s.verified_at + check_interval);
        let hard_end = s.expires_at;
        let k = s.key;
        self.ks_mut(k).lent += 1;
        self.stats.lends += 1;
        let due = self.lent_due(self.sess(sid));
        self.sess_mut(sid).due = due;
        self.timers.arm_idle(due, sid);
        self.actions.push_back(Action::Lend {
            session: sid,
            until,
            renew: check_interval,
            hard_end,
        });
        // Its lane may open now.
        self.mark_dirty(k);
    }

    /// When the pool must hear about a lent session again: its freshness
    /// bound as lent, its idle timeout counted from the lend, its lifetime
    /// end. The timer recalls it; it comes back with what happened since.
    pub(crate) fn lent_due(&self, s: &Session) -> Time {
        let mut due = s.expires_at.min(s.verified_at + self.config.check_interval);
        if let Some(t) = self.config.idle_timeout {
            due = due.min(s.lent_at.max(s.idle_since) + t);
        }
        due
    }

    /// Emits the recall of lent session `sid`, once.
    pub(crate) fn recall(&mut self, sid: SessionId) {
        let s = self.sess_mut(sid);
        if !s.lane_held || s.recall_sent {
            return;
        }
        s.recall_sent = true;
        let (due, k) = (s.due, s.key);
        s.due = Time::MAX;
        self.timers.disarm_idle(due, sid);
        self.stats.recalls += 1;
        self.actions.push_back(Action::Recall { session: sid });
        self.mark_dirty(k);
    }

    /// Recalls every session `k` has lent (callers wait for it in the pool,
    /// so its sessions must serve them in order). Scans the key's sessions,
    /// bounded by `max_sessions_per_key`.
    pub(crate) fn recall_lent(&mut self, k: u32) {
        if self.ks(k).lent == 0 {
            return;
        }
        #[cfg(feature = "mutants")]
        if self.mutation == Some(crate::mutants::Mutation::WaitersLeaveLanesAlone) {
            return;
        }
        let lent: Vec<SessionId> = self
            .ks(k)
            .sessions
            .iter()
            .copied()
            .filter(|&sid| {
                let s = self.sess(sid);
                s.phase == Phase::Lent && !s.recall_sent
            })
            .collect();
        for sid in lent {
            self.recall(sid);
        }
    }

    /// The lane no longer holds `sid`: undoes the lend's bookkeeping. The
    /// session stays in its phase (`Idle` once it was `Lent`, or Poisoned).
    pub(crate) fn unlend(&mut self, sid: SessionId) {
        let s = self.sess_mut(sid);
        s.lane_held = false;
        s.recall_sent = false;
        let (due, k, was_lent) = (s.due, s.key, s.phase == Phase::Lent);
        s.due = Time::MAX;
        if was_lent {
            s.phase = Phase::Idle;
        }
        self.timers.disarm_idle(due, sid);
        if was_lent {
            self.ks_mut(k).lent -= 1;
        }
    }

    /// A session back from its lane, not poisoned and held by nobody:
    /// retired, closed for capacity or idleness, checked, or parked (and so
    /// lent again if it may be, or handed to a waiter by the dispatch).
    fn back_from_lane(&mut self, sid: SessionId, now: Time) {
        let s = self.sess(sid);
        let k = s.key;
        let ks = self.ks(k);
        let idle_expired = self
            .config
            .idle_timeout
            .is_some_and(|t| now >= s.idle_since + t)
            && ks.idle.len() + ks.lent >= self.config.min_idle_per_key;
        let pool_full =
            !self.blocked.is_empty() && self.open_total() >= self.config.max_sessions_total;
        if let Some(reason) = self.retirement(s, now) {
            self.poison(sid, reason);
        } else if pool_full {
            self.poison(sid, EvictReason::Capacity);
        } else if idle_expired {
            self.poison(sid, EvictReason::IdleTimeout);
        } else if s.needs_check {
            self.start_check(sid, now);
        } else {
            self.park(sid);
        }
    }

    /// Opens or closes `k`'s lane as its state says: open exactly while
    /// every session of the key is lent, the key is at its limit, and
    /// nothing else is under way for it (I18). While it is open, the key's
    /// callers wait in it, not here: those waiting when it opens, and one
    /// that comes back while it is open (a grant found closed), in order.
    pub(crate) fn update_lane(&mut self, k: u32) {
        let open = self.lane_may_open(k);
        let ks = self.ks(k);
        if open != ks.lane_open {
            let key = ks.key.clone();
            self.ks_mut(k).lane_open = open;
            self.actions.push_back(Action::LaneOpen { key, open });
        }
        if open {
            while let Some(id) = self.ks(k).waiters.head() {
                let deadline = self.take_waiter(k, id);
                self.wait_in_lane(k, id, deadline);
            }
        }
    }

    /// Acquire `id` of `k` waits in the key's (open) lane until `deadline`.
    pub(crate) fn wait_in_lane(&mut self, k: u32, id: AcquireId, deadline: Time) {
        self.stats.moved_to_lane += 1;
        let key = self.ks(k).key.clone();
        self.actions.push_back(Action::WaitInLane {
            acquire: id,
            key,
            deadline,
        });
    }

    /// Whether `k`'s lane may queue callers (I18): the key is at its limit,
    /// every session of it is lent or leased and will be lent when given
    /// back (exclusive), none is recalled, and nothing else (a connect, a
    /// check, a parked session, an open breaker, a shutdown) is under way.
    pub(crate) fn lane_may_open(&self, k: u32) -> bool {
        let ks = self.ks(k);
        self.config.lanes
            && !self.config.check_interval.is_zero()
            && !self.shutting_down
            && !ks.breaker.is_tripped()
            && ks.connecting == 0
            && ks.validating == 0
            && ks.idle.is_empty()
            && ks.lent + ks.leased == ks.live
            && ks.live >= self.config.max_sessions_per_key
            && ks.sessions.iter().all(|&sid| {
                let s = self.sess(sid);
                !s.recall_sent && (s.phase != Phase::Leased || s.max_leases == 1)
            })
    }
}
