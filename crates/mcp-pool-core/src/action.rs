//! Outputs: what the pool asks its driver to do.

use std::fmt;

use std::time::Duration;

use crate::{AcquireId, LeaseId, SessionId, Time};

/// One thing the driver must carry out, polled with
/// [`Pool::poll_action`](crate::Pool::poll_action) in the order emitted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action<K> {
    /// Open a new session for `key`, then report it with
    /// [`Pool::connected`](crate::Pool::connected) no later than `deadline`
    /// (a connect still running then is reported as a timed-out failure).
    Connect {
        /// The id the session will have if the connect succeeds.
        session: SessionId,
        /// The key the session is for; it will only ever be granted to it.
        key: K,
        /// When the driver must give up and report failure.
        deadline: Time,
    },
    /// Check the session's health, then report with
    /// [`Pool::checked`](crate::Pool::checked) no later than `deadline`.
    Validate {
        /// The session to check; nobody holds it meanwhile.
        session: SessionId,
        /// When the driver must give up and report failure.
        deadline: Time,
    },
    /// Hand the session to the caller of `acquire`.
    Grant {
        /// Which acquire this answers.
        acquire: AcquireId,
        /// The lease to release when the caller is done.
        lease: LeaseId,
    },
    /// Answer the acquire with an error.
    Reject {
        /// Which acquire this answers.
        acquire: AcquireId,
        /// Why.
        reason: RejectReason,
    },
    /// Lend the session to its key's lane: from now on callers may take it
    /// from there without the pool while the time is before `until`, and
    /// give it back there when a use ends `Ok` or `ApplicationError` at `t`,
    /// which moves `until` to `min(t + renew, hard_end)`. It comes back to
    /// the pool with [`Pool::lane_returned`](crate::Pool::lane_returned):
    /// after a [`Action::Recall`], when a use ends any other way, when a
    /// caller finds it stale or closed.
    Lend {
        /// The session lent (it holds no lease of the pool's).
        session: SessionId,
        /// Callers may take it while the time is before this.
        until: Time,
        /// How far a use ending `Ok` or `ApplicationError` moves `until`.
        renew: Duration,
        /// `until` never moves past this (the session's lifetime end).
        hard_end: Time,
    },
    /// Take a lent session back: at once if it is parked in its lane (report
    /// `LaneReturn::Parked`), else when its caller gives it back (report how
    /// the use ended). From now on no caller may take it from the lane.
    Recall {
        /// The session to take back.
        session: SessionId,
    },
    /// Whether callers of `key` who find no session in its lane wait there
    /// for one (`true`: every session of the key is lent and the key can
    /// have no more) or ask the pool (`false`). When it turns false, every
    /// caller waiting in the lane becomes an `acquire` of the pool, in the
    /// order they came.
    LaneOpen {
        /// The key.
        key: K,
        /// Whether its lane queues callers.
        open: bool,
    },
    /// The caller of `acquire` waits in `key`'s lane from now on (emitted
    /// just after the lane opened, in the order callers came): its answer
    /// comes from the lane, or from the pool again if the lane closes first
    /// (then it becomes a new acquire with the same `deadline`).
    WaitInLane {
        /// The acquire moved.
        acquire: AcquireId,
        /// Its key.
        key: K,
        /// Its deadline.
        deadline: Time,
    },
    /// Close the session, then report with
    /// [`Pool::closed`](crate::Pool::closed). Emitted once per session, only
    /// when no lease and no check holds it.
    Close {
        /// The session to close.
        session: SessionId,
        /// Why it was taken out of service.
        reason: EvictReason,
    },
}

/// Why an acquire was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The deadline passed while waiting.
    TimedOut,
    /// The key's circuit breaker was open: at the deadline, or at once with
    /// fail-fast or when the breaker opened on a live server's definite
    /// answer ([`ConnectFailure::Rejected`](crate::ConnectFailure::Rejected)).
    CircuitOpen,
    /// The connect made for this caller failed; the driver holds the cause
    /// under this connect's session id.
    ConnectFailed {
        /// The failed connect.
        attempt: SessionId,
    },
    /// The pool is shutting down.
    ShuttingDown,
    /// `max_keys` keys are in use and none can be forgotten.
    TooManyKeys,
    /// `max_waiters_per_key` callers already wait for this key.
    QueueFull,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TimedOut => write!(f, "timed out waiting for a session"),
            RejectReason::CircuitOpen => {
                write!(f, "circuit open: recent connects to this server failed")
            }
            RejectReason::ConnectFailed { attempt } => write!(f, "connect {attempt} failed"),
            RejectReason::ShuttingDown => write!(f, "the pool is shutting down"),
            RejectReason::TooManyKeys => write!(f, "too many distinct keys in the pool"),
            RejectReason::QueueFull => {
                write!(f, "too many callers already wait for this key")
            }
        }
    }
}

/// Why a session was taken out of service (it became Poisoned).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EvictReason {
    /// Released with [`Outcome::TransportError`](crate::Outcome::TransportError).
    TransportError,
    /// The driver saw the transport die.
    TransportClosed,
    /// A health check failed or timed out.
    CheckFailed,
    /// Idle longer than `idle_timeout`.
    IdleTimeout,
    /// Older than its (jittered) `max_lifetime`.
    MaxLifetime,
    /// Retired by `drain`.
    Drained,
    /// Closed by `shutdown`.
    Shutdown,
    /// Idle, and its slot was needed by another key.
    Capacity,
}

impl EvictReason {
    /// Every reason, in a fixed order (for counters and reports).
    pub const ALL: [EvictReason; 8] = [
        EvictReason::TransportError,
        EvictReason::TransportClosed,
        EvictReason::CheckFailed,
        EvictReason::IdleTimeout,
        EvictReason::MaxLifetime,
        EvictReason::Drained,
        EvictReason::Shutdown,
        EvictReason::Capacity,
    ];

    /// A short snake_case name, stable for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::TransportError => "transport_error",
            EvictReason::TransportClosed => "transport_closed",
            EvictReason::CheckFailed => "check_failed",
            EvictReason::IdleTimeout => "idle_timeout",
            EvictReason::MaxLifetime => "max_lifetime",
            EvictReason::Drained => "drained",
            EvictReason::Shutdown => "shutdown",
            EvictReason::Capacity => "capacity",
        }
    }
}

impl fmt::Display for EvictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
