//! Where the gateway's upstream sessions come from: mcp-pool, or, so that
//! `loadtest --via-gateway` can put the reported failure beside the fix in
//! the same topology, the naive pool or a new session per request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use mcp_pool::{AcquireError, Pool, RunError, ShutdownReport};
use mcp_pool_naive::{NaiveError, NaivePool};
use mcp_pool_rmcp::Error;

use super::args::UpstreamSessions;
use super::metrics::MeteredConnector;
use crate::calls::{acquire_cause, cause_of, pool_counters, Cause};

/// The gateway's source of upstream sessions, over its one metered
/// connector.
pub enum Upstreams {
    /// mcp-pool: every upstream and identity in one pool.
    Pool(Pool<MeteredConnector>),
    /// The naive pool: every session goes back, dead or alive; `runs`
    /// counts the requests it ran.
    Naive {
        /// The pool.
        pool: NaivePool<MeteredConnector>,
        /// Requests run on it.
        runs: AtomicU64,
    },
    /// A new session per request, closed after it.
    PerRequest(MeteredConnector),
}

/// Why a forwarded request got no result from its upstream session.
#[derive(Debug)]
pub enum Failed {
    /// No session: the pool refused the acquire.
    Acquire(AcquireError<Error>),
    /// No session: opening one failed (naive pool, or per request).
    Connect(Error),
    /// The request failed on its session.
    Call(Error),
}

impl From<RunError<Error>> for Failed {
    fn from(error: RunError<Error>) -> Failed {
        match error {
            RunError::Acquire(e) => Failed::Acquire(e),
            RunError::Call(e) => Failed::Call(e),
        }
    }
}

impl From<NaiveError<Error>> for Failed {
    fn from(error: NaiveError<Error>) -> Failed {
        match error {
            NaiveError::Connect(e) => Failed::Connect(e),
            NaiveError::Call(e) => Failed::Call(e),
        }
    }
}

impl Failed {
    /// The failure's kind, as the loadtest names it (`data.reason` of the
    /// JSON-RPC error it becomes).
    pub fn cause(&self) -> Cause {
        match self {
            Failed::Acquire(e) => acquire_cause(e),
            Failed::Connect(_) => Cause::Connect,
            Failed::Call(e) => cause_of(e),
        }
    }

    /// Whether the upstream provably never took the request: no session at
    /// all, or a failure [`Error::is_safe_to_retry`] says so of.
    pub fn is_safe_to_retry(&self) -> bool {
        match self {
            Failed::Acquire(_) | Failed::Connect(_) => true,
            Failed::Call(e) => e.is_safe_to_retry(),
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failed::Acquire(e) => write!(f, "no session: {e}"),
            Failed::Connect(e) => write!(f, "no session: {e}"),
            Failed::Call(e) => e.fmt(f),
        }
    }
}

impl Upstreams {
    /// `sessions` over `connector`; `pool` builds mcp-pool when asked for;
    /// the naive pool keeps `per_key` sessions per key.
    pub fn new(
        sessions: UpstreamSessions,
        connector: MeteredConnector,
        per_key: usize,
        pool: impl FnOnce(MeteredConnector) -> Result<Pool<MeteredConnector>, mcp_pool::BuildError>,
    ) -> Result<Upstreams, mcp_pool::BuildError> {
        Ok(match sessions {
            UpstreamSessions::Pool => Upstreams::Pool(pool(connector)?),
            UpstreamSessions::Naive => Upstreams::Naive {
                pool: NaivePool::new(connector, per_key),
                runs: AtomicU64::new(0),
            },
            UpstreamSessions::PerRequest => Upstreams::PerRequest(connector),
        })
    }

    /// The connector every session is opened with.
    pub fn connector(&self) -> &MeteredConnector {
        match self {
            Upstreams::Pool(pool) => pool.connector(),
            Upstreams::Naive { pool, .. } => pool.connector(),
            Upstreams::PerRequest(connector) => connector,
        }
    }

    /// The pool, when the sessions come from mcp-pool.
    pub fn pool(&self) -> Option<&Pool<MeteredConnector>> {
        match self {
            Upstreams::Pool(pool) => Some(pool),
            _ => None,
        }
    }

    /// Closes every upstream session: mcp-pool's shutdown (its report),
    /// or the naive pool's parked sessions.
    pub async fn shutdown(&self) -> Option<ShutdownReport> {
        match self {
            Upstreams::Pool(pool) => Some(pool.shutdown().await),
            Upstreams::Naive { pool, .. } => {
                pool.close_all().await;
                None
            }
            Upstreams::PerRequest(_) => None,
        }
    }

    /// The counters the loadtest's table shows: mcp-pool's own, or, for the
    /// others, as the loadtest counts them around its direct modes (a
    /// connect a miss, a close an eviction).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let counted = |pick: fn(&super::metrics::KeyCounts) -> u64| -> u64 {
            self.connector().counts().values().map(pick).sum()
        };
        let pairs: Vec<(&str, u64)> = match self {
            Upstreams::Pool(pool) => return pool_counters(&pool.metrics().stats),
            Upstreams::Naive { runs, .. } => {
                let misses = counted(|c| c.connects);
                vec![
                    ("hits", runs.load(Ordering::Relaxed).saturating_sub(misses)),
                    ("misses", misses),
                    ("connects", misses),
                    ("evictions", counted(|c| c.closes)),
                ]
            }
            Upstreams::PerRequest(_) => vec![("connects", counted(|c| c.connects))],
        };
        pairs
            .into_iter()
            .map(|(name, n)| (name.to_string(), n))
            .collect()
    }
}
