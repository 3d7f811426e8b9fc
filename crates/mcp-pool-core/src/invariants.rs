//! The invariants visible in a single state, by their ids in `specs/SPEC.md`.

use std::fmt;

use crate::pool::{Pool, PoolKey};
use crate::session::{Entry, Phase};

/// A broken invariant: its id in `specs/SPEC.md` and what was seen.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    /// The invariant's id and name, e.g. `"I6 capacity"`.
    pub invariant: &'static str,
    /// What was observed.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}

macro_rules! ensure {
    ($cond:expr, $inv:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Violation { invariant: $inv, detail: format!($($fmt)+) });
        }
    };
}

/// The name of every invariant of `specs/SPEC.md`, as a [`Violation`]
/// reports it; the auditor, `check_invariants` and the model checker all
/// use these constants, so a property and a report can never disagree.
pub mod ids {
    /// I1: a session holds at most its lease limit (`max_leases_per_session`,
    /// or what its connect said) leases, each once.
    pub const I1: &str = "I1 bounded leasing";
    /// I2: only connected, serving sessions are granted or checked.
    pub const I2: &str = "I2 only serving sessions are granted";
    /// I3: a session released with a transport error is never granted again.
    pub const I3: &str = "I3 transport error never granted again";
    /// I4: a session whose transport closed is never granted again.
    pub const I4: &str = "I4 transport closed never granted again";
    /// I5: a session is granted only to acquires of its own key.
    pub const I5: &str = "I5 key isolation";
    /// I6: the per-key, total, key-count and queue limits hold at every step.
    pub const I6: &str = "I6 capacity";
    /// I7: every connected session is closed exactly once, and only when free.
    pub const I7: &str = "I7 every session closed exactly once";
    /// I8: waiters of a key are served in the order they came.
    pub const I8: &str = "I8 FIFO waiters";
    /// I9: no grant at or after an acquire's deadline, no early timeout, and a
    /// timer covers every deadline.
    pub const I9: &str = "I9 deadlines honoured";
    /// I10: no session is granted past its lifetime.
    pub const I10: &str = "I10 no grant past max lifetime";
    /// I11: no session is granted stale or after a timed-out or cancelled use
    /// without passing a check first.
    pub const I11: &str = "I11 no stale grant without a check";
    /// I12: every acquire gets exactly one answer (or is cancelled).
    pub const I12: &str = "I12 one answer per acquire";
    /// I13: while callers wait, nothing ready stays idle and something is under way.
    pub const I13: &str = "I13 waiters make progress";
    /// I14: connects start only while the key's breaker allows them.
    pub const I14: &str = "I14 breaker gates connects";
    /// I15: after shutdown nothing is granted or connected and nothing waits.
    pub const I15: &str = "I15 shutdown stops service";
    /// I16: the pool's counters and indexes agree with its sessions, and it
    /// accepts every input that answers an action it emitted.
    pub const I16: &str = "I16 bookkeeping consistent";
    /// I17: a live server's definite refusal of a connect reaches, in the
    /// same step, every caller of the key that asked before the connect
    /// began.
    pub const I17: &str = "I17 definite refusals answered at once";
    /// I18: a key's lane queues callers only while every session of the key
    /// is lent, none recalled, the key is at its limit and nothing else is
    /// under way for it; callers waiting in the pool never wait behind
    /// sessions their key's lane may still hand out.
    pub const I18: &str = "I18 lanes queue only when the pool has nothing to add";
}

use ids::*;

impl<K: PoolKey> Pool<K> {
    /// Checks every single-state invariant (I1, I4, I6, I7, I8, I9, I12,
    /// I13, I14, I15, I16, I18 of `specs/SPEC.md`) by recounting from scratch. Costs
    /// O(sessions + waiters + keys); meant for tests and checking modes.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let cfg = &self.config;
        let mut per_key = vec![Counts::default(); self.key_states.len()];
        let mut sessions_alive = 0u64;
        let mut connecting_total = 0u64;
        let mut held_poisoned = 0usize;
        let mut armed = 0usize;
        let mut lent_total = 0usize;
        let mut recalled_total = 0usize;
        for (sid, entry) in self.slots.iter() {
            match entry {
                Entry::Connecting { key, .. } => {
                    connecting_total += 1;
                    ensure!(
                        self.key_states
                            .get(*key as usize)
                            .is_some_and(|k| k.is_some()),
                        I16,
                        "connect {sid:?} names a missing key"
                    );
                    per_key[*key as usize].connecting += 1;
                }
                Entry::Session(s) => {
                    sessions_alive += 1;
                    let k = s.key as usize;
                    ensure!(
                        self.key_states.get(k).is_some_and(|k| k.is_some()),
                        I16,
                        "session {sid:?} names a missing key"
                    );
                    let c = &mut per_key[k];
                    c.sessions += 1;
                    ensure!(
                        s.leases.len() <= s.max_leases && s.max_leases >= 1,
                        I1,
                        "{sid:?} holds {} leases, max {}",
                        s.leases.len(),
                        s.max_leases
                    );
                    let mut seqs: Vec<u32> = s.leases.iter().map(|h| h.seq).collect();
                    seqs.sort_unstable();
                    seqs.dedup();
                    ensure!(
                        seqs.len() == s.leases.len(),
                        I1,
                        "{sid:?} holds a lease twice"
                    );
                    if s.recall_sent {
                        recalled_total += 1;
                        ensure!(s.lane_held, I16, "{sid:?} recalled but not lent");
                    }
                    if s.lane_held {
                        ensure!(
                            matches!(s.phase, Phase::Lent | Phase::Poisoned),
                            I16,
                            "{sid:?} held by its lane while {:?}",
                            s.phase
                        );
                        ensure!(
                            s.recall_sent || (s.phase == Phase::Lent && !self.shutting_down),
                            I4,
                            "{sid:?} takeable in its lane while poisoned or shutting down"
                        );
                    }
                    if s.phase == Phase::Lent {
                        let due = if s.recall_sent {
                            crate::Time::MAX
                        } else {
                            self.lent_due(s)
                        };
                        ensure!(
                            s.due == due,
                            I9,
                            "lent {sid:?}: timer due {:?}, should be {due:?}",
                            s.due
                        );
                        if s.due != crate::Time::MAX {
                            armed += 1;
                            ensure!(
                                self.timers.has_idle(s.due, sid),
                                I9,
                                "no timer for lent {sid:?} due at {:?}",
                                s.due
                            );
                        }
                    } else if s.phase == Phase::Idle {
                        ensure!(
                            s.due == self.idle_due(s),
                            I9,
                            "idle {sid:?}: timer due {:?}, should be {:?}",
                            s.due,
                            self.idle_due(s)
                        );
                        if s.due != crate::Time::MAX {
                            armed += 1;
                            ensure!(
                                self.timers.has_idle(s.due, sid),
                                I9,
                                "no timer for idle {sid:?} due at {:?}",
                                s.due
                            );
                        }
                    } else {
                        ensure!(
                            s.due == crate::Time::MAX && !s.idle_kept,
                            I16,
                            "{sid:?} is not parked but has an idle timer"
                        );
                    }
                    match s.phase {
                        Phase::Lent => {
                            c.lent += 1;
                            lent_total += 1;
                            ensure!(
                                s.leases.is_empty() && !s.checking && s.lane_held,
                                I16,
                                "lent {sid:?} holds leases, is checked, or is not held by its lane"
                            );
                        }
                        Phase::Idle => {
                            c.idle += 1;
                            ensure!(s.leases.is_empty(), I1, "idle {sid:?} holds leases");
                            ensure!(
                                !s.checking && !s.retire && !s.close_sent,
                                I16,
                                "idle {sid:?} is checking, retiring or closing"
                            );
                        }
                        Phase::Leased => {
                            c.leased += 1;
                            ensure!(!s.leases.is_empty(), I16, "leased {sid:?} holds no lease");
                            ensure!(!s.checking, I16, "leased {sid:?} is under a check");
                        }
                        Phase::Validating => {
                            c.validating += 1;
                            ensure!(s.leases.is_empty(), I1, "validating {sid:?} holds leases");
                            ensure!(s.checking, I16, "validating {sid:?} has no check in flight");
                        }
                        Phase::Poisoned => {
                            c.poisoned += 1;
                            ensure!(s.evicted.is_some(), I16, "poisoned {sid:?} has no reason");
                            let free = s.leases.is_empty() && !s.checking && !s.lane_held;
                            ensure!(
                                s.close_sent == free,
                                I7,
                                "poisoned {sid:?}: close issued {} while free {}",
                                s.close_sent,
                                free
                            );
                            if !s.close_sent {
                                held_poisoned += 1;
                            }
                        }
                    }
                    if s.close_sent {
                        ensure!(
                            s.phase == Phase::Poisoned,
                            I7,
                            "{sid:?} closing but not poisoned"
                        );
                    }
                }
            }
        }
        ensure!(
            armed == self.timers.idle_len(),
            I16,
            "{} idle timers armed for {armed} parked sessions",
            self.timers.idle_len()
        );
        // I7: every connected session is closed exactly once or still here.
        let st = &self.stats;
        ensure!(
            st.connected == st.closes + sessions_alive,
            I7,
            "connected {} != closes {} + alive {}",
            st.connected,
            st.closes,
            sessions_alive
        );
        ensure!(
            st.connects == st.connected + st.connect_failures + connecting_total,
            I7,
            "connects {} != connected {} + failed {} + in flight {}",
            st.connects,
            st.connected,
            st.connect_failures,
            connecting_total
        );
        // I12: a grant found closed took its answer back.
        let answered =
            st.grants - st.grants_closed + st.rejects() + st.cancelled + st.moved_to_lane;
        ensure!(
            st.acquires == answered + self.waiters.len() as u64,
            I12,
            "acquires {} != answered {} + waiting {}",
            st.acquires,
            answered,
            self.waiters.len()
        );
        ensure!(
            self.waiters.indexes_agree(),
            I16,
            "the deadline index disagrees with the waiters"
        );

        let mut live_total = 0usize;
        let mut idle_total = 0usize;
        let mut waiting_total = 0usize;
        ensure!(
            self.keys.len() <= cfg.max_keys,
            I6,
            "{} keys, max {}",
            self.keys.len(),
            cfg.max_keys
        );
        ensure!(
            self.keys.len() == self.key_states.iter().flatten().count(),
            I16,
            "key map and key table disagree"
        );
        for (k, ks) in self.key_states.iter().enumerate() {
            let Some(ks) = ks else { continue };
            ensure!(
                self.keys.get(&ks.key) == Some(&(k as u32)),
                I16,
                "key {:?} not indexed at {k}",
                ks.key
            );
            let c = &per_key[k];
            let live = c.connecting + c.idle + c.leased + c.validating + c.lent;
            ensure!(
                ks.live == live,
                I16,
                "key {:?}: live {} counted {}",
                ks.key,
                ks.live,
                live
            );
            ensure!(
                ks.connecting == c.connecting
                    && ks.lent == c.lent
                    && ks.leased == c.leased
                    && ks.validating == c.validating
                    && ks.poisoned == c.poisoned,
                I16,
                "key {:?}: gauges disagree with sessions",
                ks.key
            );
            ensure!(
                ks.idle.len() == c.idle,
                I16,
                "key {:?}: {} parked, {} idle",
                ks.key,
                ks.idle.len(),
                c.idle
            );
            ensure!(
                ks.sessions.len() == c.sessions,
                I16,
                "key {:?}: session list has {}, table {}",
                ks.key,
                ks.sessions.len(),
                c.sessions
            );
            for &sid in &ks.idle {
                let ok = matches!(self.slots.get(sid), Some(Entry::Session(s)) if s.phase == Phase::Idle && s.key == k as u32);
                ensure!(
                    ok,
                    I16,
                    "key {:?}: parked {sid:?} is not its idle session",
                    ks.key
                );
            }
            ensure!(
                live <= cfg.max_sessions_per_key,
                I6,
                "key {:?}: {live} live, max {}",
                ks.key,
                cfg.max_sessions_per_key
            );
            ensure!(
                ks.waiters.len() <= cfg.max_waiters_per_key,
                I6,
                "key {:?}: {} waiters, max {}",
                ks.key,
                ks.waiters.len(),
                cfg.max_waiters_per_key
            );
            live_total += live;
            idle_total += c.idle;
            for id in ks.waiters.iter() {
                let w = self.waiters.get(id);
                ensure!(
                    w.is_some_and(|w| w.key == k as u32),
                    I16,
                    "waiter {id:?} not indexed"
                );
                // I9: every input acts on the deadlines due by its time first,
                // so no waiter is left past its deadline.
                let deadline = w.expect("checked").deadline;
                ensure!(
                    deadline > self.now,
                    I9,
                    "waiter {id:?} still waits at {:?}, past its deadline {deadline:?}",
                    self.now
                );
            }
            waiting_total += ks.waiters.len();
            if ks.lane_open {
                ensure!(
                    ks.waiters.is_empty() && self.lane_may_open(k as u32),
                    I18,
                    "key {:?}: lane open while the pool has work for it",
                    ks.key
                );
            }
            if !ks.waiters.is_empty() {
                // Callers waiting in the pool get the key's lent sessions back.
                for &sid in &ks.sessions {
                    let s = self.sess(sid);
                    ensure!(
                        s.phase != Phase::Lent || s.recall_sent,
                        I18,
                        "key {:?}: callers wait while its lane may still hand out {sid:?}",
                        ks.key
                    );
                }
                // I13: nothing ready is left idle, and something is under way.
                for &sid in &ks.idle {
                    let Some(Entry::Session(s)) = self.slots.get(sid) else {
                        continue;
                    };
                    ensure!(
                        !self.fresh(s, self.now),
                        I13,
                        "key {:?}: {sid:?} idle and fresh while callers wait",
                        ks.key
                    );
                }
                let under_way = ks.connecting + ks.validating + ks.leased + ks.lent > 0
                    || ks.breaker.open_until().is_some()
                    || ks.blocked;
                ensure!(
                    under_way,
                    I13,
                    "key {:?}: {} callers wait and nothing is under way",
                    ks.key,
                    ks.waiters.len()
                );
                ensure!(!self.shutting_down, I15, "waiters remain after shutdown");
            }
            if let Some(until) = ks.breaker.open_until() {
                ensure!(
                    self.timers.has_breaker(until, k as u32),
                    I9,
                    "no timer for the breaker of {:?}",
                    ks.key
                );
            }
            if let Some(probe) = ks.breaker.probe() {
                ensure!(
                    matches!(self.slots.get(probe), Some(Entry::Connecting { .. })),
                    I14,
                    "key {:?}: half-open with no probe in flight",
                    ks.key
                );
            }
            ensure!(!ks.dirty, I16, "key {:?} left unsettled", ks.key);
        }
        ensure!(self.dirty.is_empty(), I16, "dispatch queue not drained");
        ensure!(
            waiting_total == self.waiters.len(),
            I16,
            "waiting index has {} entries, queues {}",
            self.waiters.len(),
            waiting_total
        );
        ensure!(
            live_total == self.live_total,
            I16,
            "live total {} counted {}",
            self.live_total,
            live_total
        );
        ensure!(
            held_poisoned == self.held_poisoned,
            I16,
            "held poisoned {} counted {}",
            self.held_poisoned,
            held_poisoned
        );
        ensure!(
            idle_total == self.idle_total,
            I16,
            "idle total {} counted {}",
            self.idle_total,
            idle_total
        );
        let open = live_total + held_poisoned;
        ensure!(
            open <= cfg.max_sessions_total,
            I6,
            "{open} open sessions (live and held poisoned), max {}",
            cfg.max_sessions_total
        );
        if !self.blocked.is_empty() {
            ensure!(
                open >= cfg.max_sessions_total && idle_total == 0,
                I13,
                "keys blocked while the pool has room"
            );
            ensure!(
                lent_total == 0 || recalled_total > 0,
                I13,
                "keys blocked while lent sessions could be recalled and none is"
            );
        }
        if self.shutting_down {
            ensure!(idle_total == 0, I15, "idle sessions remain after shutdown");
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Counts {
    connecting: usize,
    sessions: usize,
    idle: usize,
    leased: usize,
    validating: usize,
    poisoned: usize,
    lent: usize,
}
