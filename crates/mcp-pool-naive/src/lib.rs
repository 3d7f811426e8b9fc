//! # mcp-pool-naive
//!
//! The pool that the seed gateways shipped, rebuilt on purpose so its failure
//! can be reproduced and measured beside mcp-pool (in the loadtest and the
//! simulator, with the same [`Connector`]). It is *not* a product: it keeps
//! the three gaps that turn one backend restart into errors that never heal.
//!
//! 1. Release does not know whether the use failed: every session goes back
//!    to the idle list, dead or alive.
//! 2. Health checks run only on sessions idle for longer than
//!    [`NaivePool::CHECK_AFTER_IDLE`] (60 s), so the recently used sessions,
//!    exactly the ones that just failed, are never checked.
//! 3. "Is closed" reads a flag on the pooled entry that nothing ever sets,
//!    instead of the transport's real state.
//!
//! Everything else is an ordinary pool: at most `max_per_key` sessions per
//! key, callers wait for a free one, idle sessions are reused last-in
//! first-out.
//!
//! [`Counted`] wraps any connector and counts connects, checks and closes
//! from the connector's side, so that reports compare pools by the same
//! measure.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod counted;

pub use counted::Counted;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pool::Connector;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

struct Entry<S> {
    session: S,
    last_used: Instant,
    /// Gap 3: read before every reuse, set by nobody.
    closed: AtomicBool,
}

struct PerKey<S> {
    idle: Vec<Entry<S>>,
    permits: Arc<Semaphore>,
}

/// A pool with the known bug: sessions go back after any result. See the
/// crate documentation for the three gaps it keeps.
pub struct NaivePool<C: Connector> {
    connector: C,
    max_per_key: usize,
    keys: Mutex<HashMap<C::Key, PerKey<C::Session>>>,
}

/// Why a naive call failed: the connect, or the use.
#[derive(Debug)]
pub enum NaiveError<E> {
    /// Opening a new session failed.
    Connect(E),
    /// The call on the session failed (the session still went back).
    Call(E),
}

impl<E: std::fmt::Display> std::fmt::Display for NaiveError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NaiveError::Connect(e) => write!(f, "connect failed: {e}"),
            NaiveError::Call(e) => write!(f, "call failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for NaiveError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NaiveError::Connect(e) | NaiveError::Call(e) => Some(e),
        }
    }
}

/// Counters of a naive pool, for side-by-side reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NaiveStats {
    /// Sessions parked now, over all keys.
    pub idle: usize,
}

impl<C: Connector> NaivePool<C> {
    /// Sessions idle longer than this are pinged before reuse; no others.
    pub const CHECK_AFTER_IDLE: Duration = Duration::from_secs(60);

    /// A naive pool of at most `max_per_key` sessions per key (at least 1).
    pub fn new(connector: C, max_per_key: usize) -> NaivePool<C> {
        NaivePool {
            connector,
            max_per_key: max_per_key.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The connector the pool uses.
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// Runs `f` on a session for `key`, then puts the session back whatever
    /// `f` returned (gap 1). Waits while `max_per_key` sessions are in use.
    pub async fn run<T, F>(&self, key: &C::Key, f: F) -> Result<T, NaiveError<C::Error>>
    where
        F: AsyncFnOnce(&C::Session) -> Result<T, C::Error>,
    {
        let permit = self
            .permit(key)
            .acquire_owned()
            .await
            .expect("never closed");
        let entry = match self.take_idle(key).await {
            Some(entry) => entry,
            None => Entry {
                session: self
                    .connector
                    .connect(key)
                    .await
                    .map_err(NaiveError::Connect)?,
                last_used: Instant::now(),
                closed: AtomicBool::new(false),
            },
        };
        let result = f(&entry.session).await;
        self.put_back(key, entry, permit);
        result.map_err(NaiveError::Call)
    }

    /// Counters for reports.
    pub fn stats(&self) -> NaiveStats {
        let keys = self.keys.lock().expect("naive pool lock");
        NaiveStats {
            idle: keys.values().map(|k| k.idle.len()).sum(),
        }
    }

    /// Closes every idle session (sessions in use are dropped when returned).
    pub async fn close_all(&self) {
        let sessions: Vec<C::Session> = {
            let mut keys = self.keys.lock().expect("naive pool lock");
            keys.values_mut()
                .flat_map(|k| k.idle.drain(..))
                .map(|e| e.session)
                .collect()
        };
        for session in sessions {
            self.connector.close(session).await;
        }
    }

    fn permit(&self, key: &C::Key) -> Arc<Semaphore> {
        let mut keys = self.keys.lock().expect("naive pool lock");
        keys.entry(key.clone())
            .or_insert_with(|| PerKey {
                idle: Vec::new(),
                permits: Arc::new(Semaphore::new(self.max_per_key)),
            })
            .permits
            .clone()
    }

    /// Pops the most recently used idle session; pings it only if it sat
    /// idle for over a minute (gap 2); trusts the unset flag (gap 3).
    async fn take_idle(&self, key: &C::Key) -> Option<Entry<C::Session>> {
        loop {
            let entry = {
                let mut keys = self.keys.lock().expect("naive pool lock");
                keys.get_mut(key)?.idle.pop()?
            };
            if entry.closed.load(Ordering::Relaxed) {
                continue;
            }
            if entry.last_used.elapsed() > Self::CHECK_AFTER_IDLE
                && self.connector.check(&entry.session).await.is_err()
            {
                self.connector.close(entry.session).await;
                continue;
            }
            return Some(entry);
        }
    }

    fn put_back(&self, key: &C::Key, mut entry: Entry<C::Session>, permit: OwnedSemaphorePermit) {
        entry.last_used = Instant::now();
        let mut keys = self.keys.lock().expect("naive pool lock");
        if let Some(k) = keys.get_mut(key) {
            k.idle.push(entry);
        }
        drop(permit);
    }
}
