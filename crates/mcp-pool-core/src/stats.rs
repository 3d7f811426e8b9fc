//! Counters and per-key gauges.

use crate::EvictReason;

/// Monotonic counters since the pool was made. Every field only grows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stats {
    /// Acquires accepted (each ends in one grant or one reject).
    pub acquires: u64,
    /// Acquires granted at once from a ready session.
    pub hits: u64,
    /// Acquires that had to wait (for a connect, a check or a release).
    pub misses: u64,
    /// Grants (including those after waiting, and those later found
    /// closed: see `grants_closed`).
    pub grants: u64,
    /// Rejects: deadline passed.
    pub rejected_timed_out: u64,
    /// Rejects: circuit open.
    pub rejected_circuit_open: u64,
    /// Rejects: the connect made for the caller failed.
    pub rejected_connect_failed: u64,
    /// Rejects: shutting down.
    pub rejected_shutting_down: u64,
    /// Rejects: too many keys.
    pub rejected_too_many_keys: u64,
    /// Rejects: too many callers waiting for the key.
    pub rejected_queue_full: u64,
    /// Grants whose session the driver found closed before its caller got
    /// it: the acquire went back to the head of its key's queue (or was
    /// answered at once, if it could not wait).
    pub grants_closed: u64,
    /// Grants that came back unused (their caller had gone).
    pub returned_unused: u64,
    /// Sessions lent to their key's lane.
    pub lends: u64,
    /// Waiting acquires moved to their key's lane when it opened (answered
    /// there, not here).
    pub moved_to_lane: u64,
    /// Recalls of lent sessions.
    pub recalls: u64,
    /// Lent sessions that came back from their lane.
    pub lane_returns: u64,
    /// Acquires withdrawn by the caller before an answer.
    pub cancelled: u64,
    /// Connects started.
    pub connects: u64,
    /// Connects that produced a session.
    pub connected: u64,
    /// Connects that failed or timed out.
    pub connect_failures: u64,
    /// Sessions closed (reported by the driver after a `Close`).
    pub closes: u64,
    /// Health checks started.
    pub checks: u64,
    /// Health checks passed.
    pub checks_passed: u64,
    /// Health checks failed or timed out.
    pub checks_failed: u64,
    /// Times a circuit breaker opened.
    pub breaker_trips: u64,
    /// Sessions taken out of service, by reason (indexed like [`EvictReason::ALL`]).
    pub evictions: [u64; 8],
}

impl Stats {
    /// Evictions for one reason.
    pub fn evictions(&self, reason: EvictReason) -> u64 {
        self.evictions[reason as usize]
    }

    /// All rejects, whatever the reason.
    pub fn rejects(&self) -> u64 {
        self.rejected_timed_out
            + self.rejected_circuit_open
            + self.rejected_connect_failed
            + self.rejected_shutting_down
            + self.rejected_too_many_keys
            + self.rejected_queue_full
    }
}

/// The state of one key's circuit breaker, as seen from outside.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Connects allowed.
    Closed,
    /// No connects until the cool-down ends.
    Open,
    /// One probe connect allowed (or in flight).
    HalfOpen,
}

/// A gauge of one key at one moment.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeySnapshot {
    /// Sessions parked and grantable (after a check if stale).
    pub idle: usize,
    /// Sessions lent to the key's lane (parked there or in use).
    pub lent: usize,
    /// Whether the key's lane queues callers (see
    /// [`Action::LaneOpen`](crate::Action::LaneOpen)).
    pub lane_open: bool,
    /// Sessions held by callers.
    pub leased: usize,
    /// Sessions under a health check.
    pub validating: usize,
    /// Sessions out of service, waiting for their close.
    pub poisoned: usize,
    /// Connects in flight.
    pub connecting: usize,
    /// Acquires waiting.
    pub waiting: usize,
    /// The key's circuit breaker.
    pub breaker: BreakerState,
    /// Whether the breaker's last counted failure was a live server's
    /// definite answer ([`ConnectFailure::Rejected`](crate::ConnectFailure::Rejected)):
    /// while the breaker is open, acquires are then refused at once.
    pub definite_failure: bool,
}
