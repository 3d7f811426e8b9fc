//! Every call into a [`Connector`], guarded: a method that panics counts as
//! the failure it could have reported, so no panic of a connector can leak
//! a lease or a slot, poison the pool's lock, or abort the process in a
//! `Drop`. The async methods are guarded where they run (`tasks.rs`).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;

use futures_util::future::{AbortHandle, Abortable};
use futures_util::FutureExt;
use mcp_pool_core::{ConnectFailure, Outcome, SessionId};

use crate::Connector;

/// A closed-notification on its way to the upkeep task: resolves with the
/// session's id when its transport dies (or its notification panicked), or
/// `Err` once the session is closed and its watch aborted.
pub(crate) type Watch = Abortable<Pin<Box<dyn Future<Output = SessionId> + Send + 'static>>>;

/// [`Connector::is_closed`]; a panic means closed.
pub(crate) fn is_closed<C: Connector>(connector: &C, session: &C::Session) -> bool {
    catch_unwind(AssertUnwindSafe(|| connector.is_closed(session))).unwrap_or_else(|_| {
        tracing::warn!("the connector panicked in is_closed; the session counts as closed");
        true
    })
}

/// [`Connector::classify`]; a panic means a transport error.
pub(crate) fn classify<C: Connector>(connector: &C, error: &C::Error) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| connector.classify(error))).unwrap_or_else(|_| {
        tracing::warn!("the connector panicked in classify; the use counts as a transport error");
        Outcome::TransportError
    })
}

/// [`Connector::classify_connect`]; a panic (or an answer of `TimedOut`,
/// which only the pool's own deadline reports) means `Failed`.
pub(crate) fn classify_connect<C: Connector>(connector: &C, error: &C::Error) -> ConnectFailure {
    match catch_unwind(AssertUnwindSafe(|| connector.classify_connect(error))) {
        Ok(ConnectFailure::TimedOut) | Err(_) => ConnectFailure::Failed,
        Ok(kind) => kind,
    }
}

/// [`Connector::max_leases`]; a panic means the pool's setting.
pub(crate) fn max_leases<C: Connector>(connector: &C, session: &C::Session) -> Option<usize> {
    catch_unwind(AssertUnwindSafe(|| connector.max_leases(session)))
        .unwrap_or(None)
        .map(|n| n.max(1))
}

/// [`Connector::key_labels`]; a panic means none.
pub(crate) fn key_labels<C: Connector>(connector: &C, key: &C::Key) -> Vec<(&'static str, String)> {
    catch_unwind(AssertUnwindSafe(|| connector.key_labels(key))).unwrap_or_default()
}

/// [`Connector::abort`]; a panic is logged.
pub(crate) fn abort<C: Connector>(connector: &C, session: &C::Session) {
    if catch_unwind(AssertUnwindSafe(|| connector.abort(session))).is_err() {
        tracing::warn!("the connector panicked in abort");
    }
}

/// The session's [`Connector::closed_notification`] as a [`Watch`] and its
/// abort handle, or `None` if the transport cannot tell. A panic, in the
/// call or later in the future it returned, counts as the transport dying.
pub(crate) fn watch<C: Connector>(
    connector: &C,
    session: &C::Session,
    id: SessionId,
) -> Option<(AbortHandle, Watch)> {
    let notification = catch_unwind(AssertUnwindSafe(|| connector.closed_notification(session)));
    let fut: Pin<Box<dyn Future<Output = SessionId> + Send>> = match notification {
        Ok(None) => return None,
        Ok(Some(fut)) => Box::pin(async move {
            if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
                tracing::warn!(session = %id, "the connector's closed-notification panicked; the transport counts as dead");
            }
            id
        }),
        Err(_) => {
            tracing::warn!(session = %id, "the connector panicked in closed_notification; the transport counts as dead");
            Box::pin(std::future::ready(id))
        }
    };
    let (handle, registration) = AbortHandle::new_pair();
    Some((handle, Abortable::new(fut, registration)))
}
