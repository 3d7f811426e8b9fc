//! Read-only views of the pool: counters, gauges, sessions, waiters.

use crate::pool::{Pool, PoolKey};
use crate::session::{Entry, Session};
use crate::{
    AcquireId, Config, KeySnapshot, LeaseId, SessionId, SessionInfo, SessionState, Stats, Time,
};

impl<K: PoolKey> Pool<K> {
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
        self.shutting_down && self.slots.iter().next().is_none()
    }

    /// Sessions and connects that count toward a key's capacity (not
    /// Poisoned).
    pub fn live(&self) -> usize {
        self.live_total
    }

    /// What counts toward `max_sessions_total`: [`Pool::live`] plus the
    /// poisoned sessions whose close is not yet issued (still held).
    pub fn open(&self) -> usize {
        self.open_total()
    }

    /// Acquires waiting for an answer.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
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
            lent: ks.lent,
            lane_open: ks.lane_open,
            leased: ks.leased,
            validating: ks.validating,
            poisoned: ks.poisoned,
            connecting: ks.connecting,
            waiting: ks.waiters.len(),
            breaker: ks.breaker.public(),
            definite_failure: ks.breaker.definite(),
        })
    }

    /// The probe connect in flight for `key`, while its breaker is half-open.
    pub fn breaker_probe(&self, key: &K) -> Option<SessionId> {
        self.ks(*self.keys.get(key)?).breaker.probe()
    }

    /// The state of a session: `None` while it is still a connect (or was
    /// never issued), `Closed` once gone.
    pub fn session_state(&self, session: SessionId) -> Option<SessionState> {
        self.slots.state(session)
    }

    /// A view of a session that is not yet closed.
    pub fn session(&self, session: SessionId) -> Option<SessionInfo<'_, K>> {
        match self.slots.get(session)? {
            Entry::Session(s) => Some(self.info(s)),
            Entry::Connecting { .. } => None,
        }
    }

    /// Every session not yet closed, in id order of their slots.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, SessionInfo<'_, K>)> + '_ {
        self.slots.iter().filter_map(|(sid, entry)| match entry {
            Entry::Session(s) => Some((sid, self.info(s))),
            Entry::Connecting { .. } => None,
        })
    }

    /// Every connect in flight and its key.
    pub fn connects(&self) -> impl Iterator<Item = (SessionId, &K)> + '_ {
        self.slots.iter().filter_map(|(sid, entry)| match entry {
            Entry::Connecting { key, .. } => Some((sid, &self.ks(*key).key)),
            Entry::Session(_) => None,
        })
    }

    /// Every lease held, with its session.
    pub fn leases(&self) -> impl Iterator<Item = LeaseId> + '_ {
        self.slots.iter().flat_map(|(session, entry)| {
            let held: &[crate::session::Held] = match entry {
                Entry::Session(s) => &s.leases,
                Entry::Connecting { .. } => &[],
            };
            held.iter().map(move |h| LeaseId {
                session,
                seq: h.seq,
            })
        })
    }

    /// The acquire a held lease answered.
    pub fn lease_acquire(&self, lease: LeaseId) -> Option<AcquireId> {
        match self.slots.get(lease.session)? {
            Entry::Session(s) => s
                .leases
                .iter()
                .find(|h| h.seq == lease.seq)
                .map(|h| h.acquire),
            Entry::Connecting { .. } => None,
        }
    }

    /// Acquires waiting on `key`, in the order they will be served.
    pub fn waiters(&self, key: &K) -> Vec<AcquireId> {
        self.keys
            .get(key)
            .map(|&k| self.ks(k).waiters.iter().collect())
            .unwrap_or_default()
    }

    /// Whether a session could be granted right now without a check: not
    /// marked for a check, within `check_interval` of its last evidence of
    /// health, and within its lifetime.
    pub fn is_fresh(&self, session: SessionId) -> bool {
        match self.slots.get(session) {
            Some(Entry::Session(s)) => self.fresh(s, self.now),
            _ => false,
        }
    }

    fn info<'a>(&'a self, s: &Session) -> SessionInfo<'a, K> {
        SessionInfo {
            key: &self.ks(s.key).key,
            state: s.phase.public(),
            leases: s.leases.len(),
            created_at: s.created_at,
            expires_at: (s.expires_at != Time::MAX).then_some(s.expires_at),
            verified_at: s.verified_at,
            needs_check: s.needs_check,
            checking: s.checking,
            retiring: s.retire,
            evicted: s.evicted,
            close_issued: s.close_sent,
            proven: s.proven,
            max_leases: s.max_leases,
        }
    }
}
