//! The errors of the pool's public operations.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mcp_pool_core::ConfigError;

/// Why [`Pool::acquire`](crate::Pool::acquire) gave no session. Every variant
/// says what happened and what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError<E: std::error::Error + 'static> {
    /// No session became available before the caller's deadline. The pool is
    /// at its limits or its sessions are slow to come back: retry later, or
    /// raise `max_sessions_per_key` / `acquire_timeout`. If the key's last
    /// connect failed, `last_failure` says why.
    #[error("timed out after {waited:?} waiting for a session{}", last_failure_text(.last_failure, " (the pool is at capacity or sessions are slow to return)"))]
    TimedOut {
        /// How long the caller waited.
        waited: Duration,
        /// The key's last connect failure, if its last connect failed.
        #[source]
        last_failure: Option<Arc<ConnectError<E>>>,
    },
    /// Recent connects to this key's server failed and its circuit breaker
    /// is open. `last_failure` is the server's last answer (or why it could
    /// not be reached). Retry after a back-off.
    #[error("circuit open after recent connects to this server failed (waited {waited:?}){}", last_failure_text(.last_failure, "; the server is probably down"))]
    CircuitOpen {
        /// How long the caller waited (zero when refused at once).
        waited: Duration,
        /// The key's last connect failure.
        #[source]
        last_failure: Option<Arc<ConnectError<E>>>,
    },
    /// The pool is shutting down and hands out no more sessions.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// The connect made for this caller failed; `cause` says why (shared
    /// by every caller the same connect answered).
    #[error("connecting a new session failed: {cause}")]
    ConnectFailed {
        /// Why the connect failed.
        #[source]
        cause: Arc<ConnectError<E>>,
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
    /// The connect's task was dropped before it finished: the runtime it
    /// was spawned on shut down.
    #[error("the connect never finished: the runtime running it shut down")]
    Abandoned,
}

impl<E: std::error::Error + 'static> AcquireError<E> {
    /// The connect failure behind this error, if any: the cause of
    /// [`AcquireError::ConnectFailed`], or the key's last failure carried by
    /// [`AcquireError::CircuitOpen`] and [`AcquireError::TimedOut`].
    pub fn connect_failure(&self) -> Option<&ConnectError<E>> {
        match self {
            AcquireError::ConnectFailed { cause } => Some(cause),
            AcquireError::CircuitOpen { last_failure, .. }
            | AcquireError::TimedOut { last_failure, .. } => last_failure.as_deref(),
            _ => None,
        }
    }
}

/// `; the last connect failed: CAUSE`, or `otherwise` with no failure.
fn last_failure_text<E: fmt::Display>(failure: &Option<Arc<E>>, otherwise: &'static str) -> String {
    match failure {
        Some(cause) => format!("; the last connect failed: {cause}"),
        None => otherwise.to_owned(),
    }
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
