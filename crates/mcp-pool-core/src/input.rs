//! Inputs: what happened, as told by the driver.

use std::fmt;

use crate::{AcquireId, LeaseId, SessionId, Time};

/// How one use of a leased session ended, decided from the caller's result.
/// The pool never ignores it: it decides whether the session is reused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Outcome {
    /// The server answered and the call succeeded: reusable.
    Ok,
    /// The server answered with an error (JSON-RPC error, tool error): the
    /// transport is proven healthy, so the session is reusable.
    ApplicationError,
    /// Sending or receiving failed, the transport closed, or the session
    /// expired: the session is Poisoned and never granted again.
    TransportError,
    /// The caller's deadline passed mid-call: the session is checked before
    /// any reuse.
    Timeout,
    /// The caller gave up or the lease was dropped mid-call: the session is
    /// checked before any reuse.
    Cancelled,
}

impl Outcome {
    /// Every outcome, in a fixed order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::ApplicationError,
        Outcome::TransportError,
        Outcome::Timeout,
        Outcome::Cancelled,
    ];

    /// True for outcomes that prove the transport carried a round trip.
    pub fn proves_health(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::ApplicationError)
    }

    /// True for outcomes after which the session must be checked before reuse.
    pub fn needs_check(self) -> bool {
        matches!(self, Outcome::Timeout | Outcome::Cancelled)
    }
}

/// Why a connect did not produce a session. The kind decides who waits: a
/// server that cannot be reached may be restarting, so callers wait for the
/// next attempt; a live server that answered "no" is unlikely to say yes a
/// moment later, so callers learn its answer at once.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnectFailure {
    /// The server could not be reached or said it is temporarily unavailable
    /// (connection refused or reset, HTTP 502/503/504): it may be
    /// restarting.
    Failed,
    /// The connect did not finish by its deadline.
    TimedOut,
    /// A live server gave a definite answer that is not a session (an HTTP
    /// error status, a body that is not MCP, a JSON-RPC error).
    Rejected,
}

/// Why a health check did not pass.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckFailure {
    /// The check got a wrong answer or an error.
    Failed,
    /// The check did not finish by its deadline.
    TimedOut,
}

/// How a lent session comes back from its lane (see
/// [`Action::Lend`](crate::Action::Lend)).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LaneReturn {
    /// It was parked in the lane (taken back by a recall, or found stale by
    /// a caller). `last_used`: when its last use in the lane ended `Ok` or
    /// `ApplicationError`, if it was used there.
    Parked {
        /// The end of its last use in the lane.
        last_used: Option<Time>,
    },
    /// A caller used it, and the use ended with `outcome` at `at`: an
    /// outcome the lane does not take back itself (`Timeout`, `Cancelled`,
    /// `TransportError`), or any outcome while a recall was pending.
    Released {
        /// How the use ended.
        outcome: Outcome,
        /// When.
        at: Time,
    },
    /// A caller found its transport closed before using it.
    Closed,
}

/// Every input of the pool as a value, for replay, recording and model
/// checking. [`Pool::apply`](crate::Pool::apply) feeds one to the pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input<K> {
    /// See [`Pool::acquire`](crate::Pool::acquire).
    Acquire {
        /// The key to serve.
        key: K,
        /// The caller's deadline, or `None` for `acquire_timeout` from now.
        deadline: Option<Time>,
    },
    /// See [`Pool::cancel_acquire`](crate::Pool::cancel_acquire).
    CancelAcquire(AcquireId),
    /// See [`Pool::connected`](crate::Pool::connected).
    Connected {
        /// The connect being answered.
        session: SessionId,
        /// Whether it produced a session.
        result: Result<(), ConnectFailure>,
    },
    /// See [`Pool::connected_with_leases`](crate::Pool::connected_with_leases).
    ConnectedWithLeases {
        /// The connect being answered.
        session: SessionId,
        /// Most leases the new session carries at once.
        max_leases: usize,
    },
    /// See [`Pool::release`](crate::Pool::release).
    Release {
        /// The lease being returned.
        lease: LeaseId,
        /// How the use ended.
        outcome: Outcome,
    },
    /// See [`Pool::release_unused`](crate::Pool::release_unused).
    ReleaseUnused(LeaseId),
    /// See [`Pool::grant_closed`](crate::Pool::grant_closed).
    GrantClosed(LeaseId),
    /// See [`Pool::lane_returned`](crate::Pool::lane_returned).
    LaneReturned {
        /// The lent session coming back.
        session: SessionId,
        /// In what state.
        back: LaneReturn,
    },
    /// See [`Pool::checked`](crate::Pool::checked).
    Checked {
        /// The session that was checked.
        session: SessionId,
        /// Whether it passed.
        result: Result<(), CheckFailure>,
    },
    /// See [`Pool::transport_closed`](crate::Pool::transport_closed).
    TransportClosed(SessionId),
    /// See [`Pool::closed`](crate::Pool::closed).
    Closed(SessionId),
    /// See [`Pool::handle_timeout`](crate::Pool::handle_timeout).
    HandleTimeout,
    /// See [`Pool::drain`](crate::Pool::drain).
    Drain,
    /// See [`Pool::shutdown`](crate::Pool::shutdown).
    Shutdown,
}

/// An input the pool refused. A refused input changes nothing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum InputError {
    /// `acquire` was given a deadline that is not after `now`.
    DeadlineNotInFuture,
    /// A session was said to carry zero leases.
    ZeroLeases(SessionId),
    /// No such acquire is waiting (already answered, cancelled, or never made).
    UnknownAcquire(AcquireId),
    /// No such lease is held (already released, or never granted).
    UnknownLease(LeaseId),
    /// No such session or connect (already closed, or never made).
    UnknownSession(SessionId),
    /// The session exists but is not in the state this input reports on (for
    /// example `checked` for a session no check was asked for).
    WrongState {
        /// The session named.
        session: SessionId,
        /// What the input expected.
        expected: &'static str,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::DeadlineNotInFuture => write!(f, "acquire deadline is not in the future"),
            InputError::ZeroLeases(id) => write!(f, "session {id} said to carry zero leases"),
            InputError::UnknownAcquire(id) => write!(f, "no waiting acquire {id}"),
            InputError::UnknownLease(id) => write!(f, "no held lease {id}"),
            InputError::UnknownSession(id) => write!(f, "no session or connect {id}"),
            InputError::WrongState { session, expected } => {
                write!(f, "session {session} is not {expected}")
            }
        }
    }
}

impl std::error::Error for InputError {}

/// What a successfully applied [`Input`] returned.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Applied {
    /// An acquire was registered under this id.
    Acquire(AcquireId),
    /// Any other input was applied.
    Done,
}
