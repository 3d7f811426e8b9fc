//! The guard a caller holds while it uses a session.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use mcp_pool_core::{LaneReturn, LeaseId, Outcome, SessionId, Time};

use crate::cell::CellRef;
use crate::lane::{GiveBack, LaneLines};
use crate::shared::{Answer, Shared};
use crate::slots::{self, Owned};
use crate::{guard, Connector};

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
    held: Held<C>,
}

enum Held<C: Connector> {
    /// Granted by the pool.
    Pool {
        shared: Arc<Shared<C>>,
        session: Arc<C::Session>,
        lease: LeaseId,
    },
    /// Taken from its key's lane at `at`; `lines` are where that lane's
    /// lines are, if known.
    Lane {
        cell: CellRef<C>,
        at: Time,
        lines: LaneLines,
    },
    Released,
}

impl<C: Connector> Lease<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, lease: LeaseId, session: Arc<C::Session>) -> Self {
        Lease {
            held: Held::Pool {
                shared,
                session,
                lease,
            },
        }
    }

    pub(crate) fn lane(cell: CellRef<C>, at: Time, lines: LaneLines) -> Self {
        Lease {
            held: Held::Lane { cell, at, lines },
        }
    }

    /// Gives the session back with the outcome of its use (see [`Outcome`]).
    /// If the connector reports the transport closed
    /// ([`Connector::is_closed`]), the session is poisoned whatever the outcome.
    pub fn release(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    /// This lease's id (for logs; stable for the pool's life), or `None`
    /// for a session taken from its key's lane, which the pool lent out
    /// without a lease of its own.
    pub fn id(&self) -> Option<LeaseId> {
        match &self.held {
            Held::Pool { lease, .. } => Some(*lease),
            _ => None,
        }
    }

    /// The id of the session held (for logs; stable for the pool's life).
    pub fn session_id(&self) -> SessionId {
        match &self.held {
            Held::Pool { lease, .. } => lease.session(),
            Held::Lane { cell, .. } => cell.id,
            Held::Released => unreachable!("a lease holds its session until released"),
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        match std::mem::replace(&mut self.held, Held::Released) {
            Held::Released => {}
            Held::Pool {
                shared,
                session,
                lease,
            } => {
                let dead = guard::is_closed(&*shared.connector, &session);
                // The close this release may lead to needs the only reference.
                drop(session);
                shared.release(lease, outcome, dead);
            }
            Held::Lane { cell, at, lines } => {
                // The cell's line, the lane's hot line and this thread's
                // slots are asked for at once, not each found through the
                // one before: after a wait, with many keys, none is near.
                slots::prefetch(Owned::as_ptr(&cell) as usize);
                lines.prefetch();
                give_back(cell, at, outcome)
            }
        }
    }
}

/// Gives a session taken at `at` from its lane back after a use that ended
/// with `outcome`: to the lane if it ended well, else to the pool.
fn give_back<C: Connector>(cell: CellRef<C>, at: Time, outcome: Outcome) {
    let dead = guard::is_closed(cell.lane.connector(), &cell.session);
    let well = matches!(outcome, Outcome::Ok | Outcome::ApplicationError) && !dead;
    let pool = |cell: &CellRef<C>| {
        let shared = cell.lane.shared.upgrade();
        if shared.is_none() {
            // The pool is gone; so is the session.
            cell.leave_lane();
        }
        shared
    };
    if !well {
        let Some(shared) = pool(&cell) else { return };
        let outcome = if dead {
            Outcome::TransportError
        } else {
            outcome
        };
        cell.leave_lane();
        let now = shared.now();
        return shared.lane_return(cell, LaneReturn::Released { outcome, at: now });
    }
    // This handle keeps the cell, and through it the lane, alive through
    // the give-back, as a clone of the lane's would, without touching the
    // lane's count (the slot, or the answer, gets a handle of its own).
    let back = cell.lane.give_back(&cell, at);
    // The close a return to the pool may lead to needs the only reference.
    drop(cell);
    match back {
        GiveBack::Done => {}
        GiveBack::Handoff(tx, cell) => {
            if let Err(crate::reply::Gone(Answer::GrantedLane { cell })) =
                tx.send(Answer::GrantedLane { cell })
            {
                if let Some(shared) = pool(&cell) {
                    shared.lane_unused(cell);
                }
            }
        }
        GiveBack::ToPool(cell) => {
            let Some(shared) = pool(&cell) else { return };
            cell.leave_lane();
            shared.lane_return(cell, LaneReturn::Released { outcome, at });
        }
    }
}

impl<C: Connector> Deref for Lease<C> {
    type Target = C::Session;

    fn deref(&self) -> &C::Session {
        match &self.held {
            Held::Pool { session, .. } => session,
            Held::Lane { cell, .. } => &cell.session,
            Held::Released => unreachable!("a lease holds its session until released"),
        }
    }
}

impl<C: Connector> Drop for Lease<C> {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

impl<C: Connector> fmt::Debug for Lease<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.held {
            Held::Pool { lease, .. } => f
                .debug_struct("Lease")
                .field("lease", lease)
                .finish_non_exhaustive(),
            Held::Lane { cell, .. } => f
                .debug_struct("Lease")
                .field("session", &cell.id)
                .field("from", &"lane")
                .finish_non_exhaustive(),
            Held::Released => f.write_str("Lease(released)"),
        }
    }
}
