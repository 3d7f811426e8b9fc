//! The errors of the pool's public operations.

use std::time::Duration;

use mcp_pool_core::ConfigError;

/// Why [`Pool::acquire`](crate::Pool::acquire) gave no session. Every variant
/// says what happened and what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError<E: std::error::Error + 'static> {
    /// No session became available before the caller's deadline. The pool is
    /// at its limits or its sessions are slow to come back: retry later, or
    /// raise `max_sessions_per_key` / `acquire_timeout`.
    #[error("timed out after {waited:?} waiting for a session (the pool is at capacity or sessions are slow to return)")]
    TimedOut {
        /// How long the caller waited.
        waited: Duration,
    },
    /// Recent connects to this key's server failed and its circuit breaker
    /// is open: the server is probably down. Retry after a back-off.
    #[error("circuit open: recent connects to this server failed (waited {waited:?}); the server is probably down")]
    CircuitOpen {
        /// How long the caller waited (zero with fail-fast).
        waited: Duration,
    },
    /// The pool is shutting down and hands out no more sessions.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// The connect made for this caller failed; `cause` says why.
    #[error("connecting a new session failed: {cause}")]
    ConnectFailed {
        /// Why the connect failed.
        #[source]
        cause: ConnectError<E>,
    },
    /// The pool tracks `max_keys` keys and every one holds sessions or
    /// waiters, so a new key cannot be admitted. Raise `max_keys`.
    #[error("too many distinct keys in the pool: `max_keys` is reached and every key is in use")]
    TooManyKeys,
    /// `max_waiters_per_key` callers already wait for this key: the pool
    /// refuses more rather than build an unbounded queue. Retry after a
    /// back-off, or raise `max_waiters_per_key` / `max_sessions_per_key`.
    #[error("too many callers already wait for a session of this key (`max_waiters_per_key`)")]
    QueueFull,
}

/// Why a connect did not produce a session.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError<E: std::error::Error + 'static> {
    /// [`Connector::connect`](crate::Connector::connect) returned this error.
    #[error(transparent)]
    Failed(E),
    /// The connect was still running at the pool's `connect_timeout`.
    #[error("the connect did not finish within {0:?} (connect_timeout)")]
    TimedOut(Duration),
    /// [`Connector::connect`](crate::Connector::connect) panicked.
    #[error("the connector panicked while connecting")]
    Panicked,
}

/// Why [`Pool::run`](crate::Pool::run) failed: no session, or the closure's
/// own error (after the session was released with the outcome the connector
/// classified from it).
#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::error::Error + 'static> {
    /// No session could be acquired.
    #[error(transparent)]
    Acquire(AcquireError<E>),
    /// The closure ran and returned this error.
    #[error(transparent)]
    Call(E),
}

impl<E: std::error::Error + 'static> From<AcquireError<E>> for RunError<E> {
    fn from(e: AcquireError<E>) -> Self {
        RunError::Acquire(e)
    }
}

/// Why [`Builder::build`](crate::Builder::build) refused to make a pool.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// A core policy cannot work; the message names the field.
    #[error("invalid pool configuration: {0}")]
    Config(#[from] ConfigError),
    /// `close_timeout` is zero, so no close could ever finish.
    #[error("`close_timeout` is zero; closes need time to run")]
    ZeroCloseTimeout,
    /// `build` was called outside a tokio runtime; the pool's tasks need one.
    #[error("no tokio runtime: build the pool from inside a tokio runtime")]
    NoRuntime,
}
