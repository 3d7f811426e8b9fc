//! The guard a caller holds while it uses a session.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use mcp_pool_core::{LeaseId, Outcome, SessionId};

use crate::shared::Shared;
use crate::Connector;

/// One session, held by one caller until released.
///
/// Derefs to the session. Give it back with [`Lease::release`] and the
/// outcome of the use: that outcome decides whether the session is reused,
/// checked first or poisoned. Dropping a lease without releasing it reports
/// [`Outcome::Cancelled`] (the holder may have been dropped mid-call), so the
/// session passes a health check before anyone gets it again. Releasing is
/// synchronous and cheap: any close or check it leads to runs on the pool's
/// own tasks.
pub struct Lease<C: Connector> {
    shared: Arc<Shared<C>>,
    /// `None` once released.
    session: Option<Arc<C::Session>>,
    lease: LeaseId,
}

impl<C: Connector> Lease<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, lease: LeaseId, session: Arc<C::Session>) -> Self {
        Lease {
            shared,
            session: Some(session),
            lease,
        }
    }

    /// Gives the session back with the outcome of its use (see [`Outcome`]).
    /// If the connector reports the transport closed
    /// ([`Connector::is_closed`]), the session is poisoned whatever the outcome.
    pub fn release(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    /// This lease's id (for logs; stable for the pool's life).
    pub fn id(&self) -> LeaseId {
        self.lease
    }

    /// The id of the session held (for logs; stable for the pool's life).
    pub fn session_id(&self) -> SessionId {
        self.lease.session()
    }

    fn finish(&mut self, outcome: Outcome) {
        let Some(session) = self.session.take() else {
            return;
        };
        let dead = crate::guard::is_closed(&self.shared.connector, &session);
        // The close this release may lead to needs the only reference.
        drop(session);
        self.shared.release(self.lease, outcome, dead);
    }
}

impl<C: Connector> Deref for Lease<C> {
    type Target = C::Session;

    fn deref(&self) -> &C::Session {
        self.session
            .as_deref()
            .expect("a lease holds its session until released")
    }
}

impl<C: Connector> Drop for Lease<C> {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

impl<C: Connector> fmt::Debug for Lease<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}
