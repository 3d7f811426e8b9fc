//! The one trait a transport implements to be pooled.

use std::future::Future;

use mcp_pool_core::{ConnectFailure, Outcome, PoolKey};

/// How the pool opens, checks, reads and closes sessions of one kind.
///
/// The pool calls these methods and reports what they returned to the core;
/// it never looks inside a session. Every async method runs on a task of the
/// pool's own, never on a caller's path, and under a deadline the pool
/// enforces itself (a method still running at its deadline is dropped and
/// counted as failed), so an implementation need not add timeouts of its own.
/// Every method is guarded: one that panics counts as the failure it could
/// have reported (`connect` and `check` failed, `is_closed` true, `classify`
/// a transport error, `classify_connect` `Failed`, a panicking
/// `closed_notification` or notification future a dead transport, `abort`
/// done), so no panic leaks a lease or a slot, poisons the pool, or aborts
/// the process from a `Drop`.
///
/// An implementation can write the async methods as `async fn`.
pub trait Connector: Send + Sync + 'static {
    /// Who may share a session: sessions are created for one key and only
    /// ever granted to callers of that key. Put into it everything that must
    /// isolate callers (server URL, transport, a hash of the caller's
    /// credentials, an affinity id); never raw credentials if the pool's logs
    /// may be read by others (the pool logs only a [`KeyHash`](crate::KeyHash)).
    type Key: PoolKey + Send + Sync + 'static;
    /// One open session (for MCP: an initialized client over one transport).
    type Session: Send + Sync + 'static;
    /// What connecting, checking or using a session fails with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new session for `key`. Runs under the pool's `connect_timeout`.
    fn connect(
        &self,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Self::Session, Self::Error>> + Send;

    /// Proves the session still carries a round trip (for MCP: a `ping`).
    /// Runs under the pool's `check_timeout`, with nobody else holding the
    /// session. `Ok` puts the session back in service; an error poisons it.
    fn check(
        &self,
        session: &Self::Session,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether the session's transport is known to be dead, read from the
    /// transport's real state without any I/O. The pool asks before handing a
    /// session out and when one comes back; `true` takes the session out of
    /// service for good. Return `false` when the transport cannot tell.
    fn is_closed(&self, session: &Self::Session) -> bool;

    /// How a use that failed with `error` ended: decides whether the session
    /// is reused ([`Outcome::ApplicationError`]: the server answered), checked
    /// first ([`Outcome::Timeout`], [`Outcome::Cancelled`]) or poisoned
    /// ([`Outcome::TransportError`]). [`Pool::run`](crate::Pool::run) releases
    /// every lease with this answer; when unsure, answer `TransportError`.
    fn classify(&self, error: &Self::Error) -> Outcome;

    /// How many callers may hold this session at once, if the session knows
    /// better than the pool's `max_leases_per_session` (for MCP: 1 for a
    /// session that holds per-caller server state, several for a server
    /// that keeps none). Asked once, just after `connect` succeeds. The
    /// default (`None`) leaves the pool's setting. `Some(0)` counts as 1.
    fn max_leases(&self, session: &Self::Session) -> Option<usize> {
        let _ = session;
        None
    }

    /// Labels describing `key` in [`Pool::metrics`](crate::Pool::metrics)
    /// (for MCP: the server's protocol era and version), as `(name, value)`
    /// pairs. Values must not carry credentials: they are exported as they
    /// are. The default has none.
    fn key_labels(&self, key: &Self::Key) -> Vec<(&'static str, String)> {
        let _ = key;
        Vec::new()
    }

    /// What a failed [`Connector::connect`] says about the server:
    /// [`ConnectFailure::Rejected`] when a live server gave a definite answer
    /// (an HTTP error status, a body that is not MCP, a JSON-RPC error), so
    /// every caller waiting for that connect learns the answer at once;
    /// [`ConnectFailure::Failed`] when the server could not be reached or is
    /// temporarily unavailable, so callers wait for the next attempt (the
    /// server may be restarting). The default answers `Failed`. Never
    /// answer [`ConnectFailure::TimedOut`]: the pool reports its own
    /// deadline.
    fn classify_connect(&self, error: &Self::Error) -> ConnectFailure {
        let _ = error;
        ConnectFailure::Failed
    }

    /// Closes the session for good (for MCP: ends the server's session). Runs
    /// on a task of the pool's under its `close_timeout`; the session is
    /// dropped when this returns or the timeout passes.
    fn close(&self, session: Self::Session) -> impl Future<Output = ()> + Send;

    /// A future that resolves when the session's transport dies, so the pool
    /// poisons an idle session before any caller picks it. Called just after
    /// `connect` succeeds, and again for every live session if the pool's
    /// background task had to be restarted; the pool drops the future when
    /// the session is closed. It must resolve at once if the transport is
    /// already dead.
    /// The default (`None`) means the transport cannot tell.
    fn closed_notification(
        &self,
        session: &Self::Session,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let _ = session;
        None::<std::future::Pending<()>>
    }

    /// Cuts the session's transport at once, without waiting and from a
    /// shared reference, so that whoever holds it fails fast and returns it.
    /// Called by [`Pool::shutdown`](crate::Pool::shutdown) on sessions still
    /// held when its grace period ends; they are still closed with
    /// [`Connector::close`] when they come back. It runs while the pool's
    /// state is locked, so it must not call into the pool (no acquire, no
    /// release); it should only flip the transport's state. The default does
    /// nothing.
    fn abort(&self, session: &Self::Session) {
        let _ = session;
    }
}
