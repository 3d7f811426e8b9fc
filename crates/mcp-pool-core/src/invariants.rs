//! The invariants visible in a single state, by their ids in `specs/SPEC.md`.

use std::fmt;

use crate::pool::{Entry, Phase, Pool, PoolKey};

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
    /// I1: a session holds at most `max_leases_per_session` leases, each once.
    pub const I1: &str = "I1 bounded leasing";
    /// I2: only connected, serving sessions are granted or checked.
    pub const I2: &str = "I2 only serving sessions are granted";
    /// I3: a session released with a transport error is never granted again.
    pub const I3: &str = "I3 transport error never granted again";
    /// I4: a session whose transport closed is never granted again.
    pub const I4: &str = "I4 transport closed never granted again";
    /// I5: a session is granted only to acquires of its own key.
    pub const I5: &str = "I5 key isolation";
    /// I6: the per-key, total and key-count limits hold at every step.
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
}

use ids::*;

impl<K: PoolKey> Pool<K> {
    /// Checks every single-state invariant (I1, I6, I7, I8, I9, I13, I15,
    /// I16 of `specs/SPEC.md`) by recounting from scratch. Costs
    /// O(sessions + waiters + keys); meant for tests and checking modes.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let cfg = &self.config;
        let mut per_key = vec![Counts::default(); self.key_states.len()];
        let mut sessions_alive = 0u64;
        let mut connecting_total = 0u64;
        for (index, slot) in self.slots.iter().enumerate() {
            match &slot.entry {
                None => {}
                Some(Entry::Connecting { key, .. }) => {
                    connecting_total += 1;
                    ensure!(
                        self.key_states
                            .get(*key as usize)
                            .is_some_and(|k| k.is_some()),
                        I16,
                        "connect in slot {index} names a missing key"
                    );
                    per_key[*key as usize].connecting += 1;
                }
                Some(Entry::Session(s)) => {
                    sessions_alive += 1;
                    let k = s.key as usize;
                    ensure!(
                        self.key_states.get(k).is_some_and(|k| k.is_some()),
                        I16,
                        "session in slot {index} names a missing key"
                    );
                    let c = &mut per_key[k];
                    c.sessions += 1;
                    ensure!(
                        s.leases.len() <= cfg.max_leases_per_session,
                        I1,
                        "slot {index} holds {} leases, max {}",
                        s.leases.len(),
                        cfg.max_leases_per_session
                    );
                    let mut seqs = s.leases.clone();
                    seqs.sort_unstable();
                    seqs.dedup();
                    ensure!(
                        seqs.len() == s.leases.len(),
                        I1,
                        "slot {index} holds a lease twice"
                    );
                    match s.phase {
                        Phase::Idle => {
                            c.idle += 1;
                            ensure!(s.leases.is_empty(), I1, "idle slot {index} holds leases");
                            ensure!(
                                !s.checking && !s.retire && !s.close_sent,
                                I16,
                                "idle slot {index} is checking, retiring or closing"
                            );
                        }
                        Phase::Leased => {
                            c.leased += 1;
                            ensure!(
                                !s.leases.is_empty(),
                                I16,
                                "leased slot {index} holds no lease"
                            );
                            ensure!(!s.checking, I16, "leased slot {index} is under a check");
                        }
                        Phase::Validating => {
                            c.validating += 1;
                            ensure!(
                                s.leases.is_empty(),
                                I1,
                                "validating slot {index} holds leases"
                            );
                            ensure!(
                                s.checking,
                                I16,
                                "validating slot {index} has no check in flight"
                            );
                        }
                        Phase::Poisoned => {
                            c.poisoned += 1;
                            ensure!(
                                s.evicted.is_some(),
                                I16,
                                "poisoned slot {index} has no reason"
                            );
                            let free = s.leases.is_empty() && !s.checking;
                            ensure!(
                                s.close_sent == free,
                                I7,
                                "poisoned slot {index}: close issued {} while free {}",
                                s.close_sent,
                                free
                            );
                        }
                    }
                    if s.close_sent {
                        ensure!(
                            s.phase == Phase::Poisoned,
                            I7,
                            "slot {index} closing but not poisoned"
                        );
                    }
                }
            }
        }
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
        let answered = st.grants + st.rejects() + st.cancelled;
        ensure!(
            st.acquires == answered + self.waiting.len() as u64,
            I12,
            "acquires {} != answered {} + waiting {}",
            st.acquires,
            answered,
            self.waiting.len()
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
            let live = c.connecting + c.idle + c.leased + c.validating;
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
                let ok = matches!(self.entry(sid), Some(Entry::Session(s)) if s.phase == Phase::Idle && s.key == k as u32);
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
            live_total += live;
            idle_total += c.idle;
            // I8: FIFO order and the waiting index.
            let mut last = None;
            for w in &ks.waiters {
                ensure!(
                    last.is_none_or(|l| l < w.id),
                    I8,
                    "key {:?}: waiters out of order",
                    ks.key
                );
                last = Some(w.id);
                ensure!(
                    self.waiting.get(&w.id) == Some(&(k as u32)),
                    I16,
                    "waiter {:?} not indexed",
                    w.id
                );
                // I9: a timer covers every waiter, so it is rejected by the
                // handle_timeout of its deadline (grants past it: Auditor).
                ensure!(
                    self.next_timeout.is_some_and(|t| t <= w.deadline),
                    I9,
                    "no timer for waiter {:?}",
                    w.id
                );
            }
            waiting_total += ks.waiters.len();
            if !ks.waiters.is_empty() {
                // I13: nothing ready is left idle, and something is under way.
                for &sid in &ks.idle {
                    let Some(Entry::Session(s)) = self.entry(sid) else {
                        continue;
                    };
                    ensure!(
                        !self.fresh(s, self.now),
                        I13,
                        "key {:?}: {sid:?} idle and fresh while callers wait",
                        ks.key
                    );
                }
                let under_way = ks.connecting + ks.validating + ks.leased > 0
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
                    self.next_timeout.is_some_and(|t| t <= until),
                    I9,
                    "no timer for the breaker of {:?}",
                    ks.key
                );
            }
            if let Some(probe) = ks.breaker.probe() {
                ensure!(
                    matches!(self.entry(probe), Some(Entry::Connecting { .. })),
                    I14,
                    "key {:?}: half-open with no probe in flight",
                    ks.key
                );
            }
            ensure!(!ks.dirty, I16, "key {:?} left unsettled", ks.key);
        }
        ensure!(self.dirty.is_empty(), I16, "dispatch queue not drained");
        ensure!(
            waiting_total == self.waiting.len(),
            I16,
            "waiting index has {} entries, queues {}",
            self.waiting.len(),
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
            idle_total == self.idle_total,
            I16,
            "idle total {} counted {}",
            self.idle_total,
            idle_total
        );
        ensure!(
            live_total <= cfg.max_sessions_total,
            I6,
            "{live_total} live sessions, max {}",
            cfg.max_sessions_total
        );
        if !self.blocked.is_empty() {
            ensure!(
                live_total >= cfg.max_sessions_total && idle_total == 0,
                I13,
                "keys blocked while the pool has room"
            );
        }
        if self.shutting_down {
            ensure!(idle_total == 0, I15, "idle sessions remain after shutdown");
        }
        // I9: every idle session's lifetime and keepalive are covered by the timer.
        for slot in &self.slots {
            if let Some(Entry::Session(s)) = &slot.entry {
                if s.phase == Phase::Idle {
                    let mut due = s.expires_at;
                    if !cfg.check_interval.is_zero() {
                        due = due.min(s.verified_at + cfg.check_interval);
                    }
                    if due != crate::Time::MAX {
                        ensure!(
                            self.next_timeout.is_some_and(|t| t <= due),
                            I9,
                            "no timer for an idle session due at {due:?}"
                        );
                    }
                }
            }
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
}
