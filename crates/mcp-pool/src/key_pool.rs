//! One key of a pool, found once: [`KeyPool`].

use tokio::time::Instant;

use crate::pool::run_on;
use crate::shared::LaneEntry;
use crate::{AcquireError, Connector, KeyHash, Lease, Pool, RunError};

/// One key of a [`Pool`], found once ([`Pool::key`]).
///
/// Acquires through it are the pool's acquires for that key, with the same
/// sessions, limits, waiting callers and decisions, and the same errors;
/// only the key's lane is not looked up again (the key hashed, the pool's
/// map of lanes searched): the common acquire, a fresh session parked in
/// that lane, goes straight to it. For a caller that uses one upstream
/// server over and over (a gateway's route, an agent's client), as a peer
/// pool's caller keeps one pool per server.
///
/// It keeps the pool alive as a [`Pool`] handle does, and keeps the key's
/// lane in the pool's map of lanes while it lives. Cloning it is cheap.
/// Its `Debug` shows the key's hash, never the key.
pub struct KeyPool<C: Connector> {
    pool: Pool<C>,
    key: C::Key,
    lane: Option<LaneEntry<C>>,
}

impl<C: Connector> KeyPool<C> {
    /// `key` of `pool`, its lane found (or made) now.
    pub(crate) fn new(pool: Pool<C>, key: C::Key) -> KeyPool<C> {
        let lane = pool.shared().lane_entry(&key);
        KeyPool { pool, key, lane }
    }

    /// A session for this key, waiting up to `acquire_timeout`: as
    /// [`Pool::acquire`] with this key.
    pub async fn acquire(&self) -> Result<Lease<C>, AcquireError<C::Error>> {
        self.pool
            .shared()
            .acquire(&self.key, None, self.lane.as_ref())
            .await
    }

    /// As [`Pool::acquire_until`] with this key.
    pub async fn acquire_until(
        &self,
        deadline: Instant,
    ) -> Result<Lease<C>, AcquireError<C::Error>> {
        self.pool
            .shared()
            .acquire(&self.key, Some(deadline), self.lane.as_ref())
            .await
    }

    /// As [`Pool::run`] with this key.
    pub async fn run<T, F>(&self, f: F) -> Result<T, RunError<C::Error>>
    where
        F: AsyncFnOnce(&C::Session) -> Result<T, C::Error>,
    {
        let lease = self.acquire().await?;
        run_on(&*self.pool.shared().connector, lease, f).await
    }

    /// The key.
    pub fn key(&self) -> &C::Key {
        &self.key
    }

    /// The pool it is a key of.
    pub fn pool(&self) -> &Pool<C> {
        &self.pool
    }
}

impl<C: Connector> Clone for KeyPool<C> {
    fn clone(&self) -> Self {
        KeyPool {
            pool: self.pool.clone(),
            key: self.key.clone(),
            lane: self.lane.clone(),
        }
    }
}

impl<C: Connector> std::fmt::Debug for KeyPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPool")
            .field("pool", &self.pool.name())
            .field("key", &KeyHash::of(&self.key))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::test_connector::Nothing;
    use crate::Pool;

    /// The map of lanes drops the lanes of keys the core forgot once it
    /// holds twice `max_keys`; a lane a `KeyPool` holds stays (its acquires
    /// take from it), and goes with the next such pruning after the
    /// `KeyPool` is gone.
    #[tokio::test]
    async fn a_key_pools_lane_stays_in_the_map_while_it_lives() {
        let pool = Pool::builder(Nothing).max_keys(1).build().unwrap();
        let held = pool.key(7);
        let lane = held.lane.clone().expect("lanes are on");
        let in_map = |key: u32| pool.shared().lanes.load().get(&key).map(|e| e.lane.clone());
        // Keys the core never saw, their lanes made and their handles
        // dropped at once: each new lane prunes the map first.
        for key in 0..4 {
            drop(pool.key(key));
        }
        assert!(
            in_map(0).is_none(),
            "a forgotten key's idle lane was dropped"
        );
        let kept = in_map(7).expect("the held key's lane stays");
        assert!(
            Arc::ptr_eq(&kept, &lane.lane),
            "the very lane the handle takes from"
        );
        drop(held);
        drop((lane, kept));
        for key in 10..12 {
            drop(pool.key(key));
        }
        assert!(in_map(7).is_none(), "dropped once nothing holds it");
    }
}
