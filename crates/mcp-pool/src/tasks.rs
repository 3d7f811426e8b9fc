//! The pool's own tasks: connects, health checks and closes, each under its
//! deadline, each reporting its result to the core. A task that never
//! finishes (its runtime shut down and dropped it) still reports: its guard
//! tells the core the job failed, so no slot and no session is lost.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use mcp_pool_core::{CheckFailure, ConnectFailure, EvictReason, SessionId, Time};
use tokio::time::Instant;
use tracing::Instrument;

use crate::shared::{report, Job, Live, Shared};
use crate::{guard, ConnectError, Connector, KeyHash};

/// A job not yet reported to the core. Dropping it unreported (the task was
/// dropped before it finished) reports the job as failed.
struct Unreported<C: Connector> {
    shared: Arc<Shared<C>>,
    job: Option<Pending>,
}

#[derive(Copy, Clone)]
enum Pending {
    Connect { session: SessionId, key: KeyHash },
    Check { session: SessionId },
    Close { session: SessionId },
}

impl<C: Connector> Unreported<C> {
    fn new(shared: Arc<Shared<C>>, job: Pending) -> Self {
        Unreported {
            shared,
            job: Some(job),
        }
    }

    /// The job reports for itself from here on.
    fn done(mut self) -> Arc<Shared<C>> {
        self.job = None;
        self.shared.clone()
    }
}

impl<C: Connector> Drop for Unreported<C> {
    fn drop(&mut self) {
        let Some(job) = self.job.take() else {
            return;
        };
        tracing::warn!(pool = %self.shared.name, "a task of the pool was dropped before it finished (its runtime shut down); reported as failed");
        match job {
            Pending::Connect { session, key } => {
                let cause = Arc::new(ConnectError::Abandoned);
                self.shared.step(|st, now| {
                    st.failures.record(key, cause.clone());
                    st.cause = Some((session, cause));
                    report(st.core.connected(session, Err(ConnectFailure::Failed), now));
                });
            }
            Pending::Check { session } => {
                self.shared.step(|st, now| {
                    report(st.core.checked(session, Err(CheckFailure::Failed), now))
                });
            }
            Pending::Close { session } => {
                self.shared
                    .step(|st, now| report(st.core.closed(session, now)));
            }
        }
    }
}

impl<C: Connector> Shared<C> {
    /// Starts the task a connect, check or close job asked for.
    pub(crate) fn spawn_job(self: &Arc<Self>, job: Job<C>) {
        let shared = self.clone();
        match job {
            Job::Deliver { .. } | Job::StartReaper { .. } => {
                unreachable!("answers and reapers are handled inline")
            }
            Job::Connect {
                session,
                key,
                deadline,
            } => {
                let hash = KeyHash::of(&key);
                let span = tracing::debug_span!("mcp_pool.connect", pool = %self.name, key = %hash, %session);
                let guard = Unreported::new(shared, Pending::Connect { session, key: hash });
                self.spawn(connect(guard, session, key, hash, deadline).instrument(span));
            }
            Job::Check {
                session,
                handle,
                key,
                deadline,
            } => {
                let span =
                    tracing::debug_span!("mcp_pool.check", pool = %self.name, %key, %session);
                let guard = Unreported::new(shared, Pending::Check { session });
                self.spawn(check(guard, session, handle, deadline).instrument(span));
            }
            Job::Close {
                session,
                handle,
                key,
                reason,
            } => {
                let span = tracing::debug_span!("mcp_pool.close", pool = %self.name, %key, %session, %reason);
                let guard = Unreported::new(shared, Pending::Close { session });
                self.spawn(close(guard, session, handle, reason).instrument(span));
            }
        }
    }
}

async fn connect<C: Connector>(
    guard: Unreported<C>,
    session: SessionId,
    key: C::Key,
    hash: KeyHash,
    deadline: Time,
) {
    let this = &guard.shared;
    let started = Instant::now();
    let attempt = AssertUnwindSafe(this.connector.connect(&key)).catch_unwind();
    let result = match tokio::time::timeout_at(this.instant(deadline), attempt).await {
        Ok(Ok(Ok(connected))) => Ok(connected),
        Ok(Ok(Err(e))) => Err(ConnectError::Failed(e)),
        Ok(Err(_panic)) => Err(ConnectError::Panicked),
        Err(_elapsed) => Err(ConnectError::TimedOut(started.elapsed())),
    };
    match result {
        Ok(connected) => {
            let connected = Arc::new(connected);
            let leases = guard::max_leases(&*this.connector, &connected);
            let watch = guard::watch(&*this.connector, &connected, session);
            let (handle, watch) = match watch {
                Some((handle, watch)) => (Some(handle), Some(watch)),
                None => (None, None),
            };
            tracing::debug!(elapsed = ?started.elapsed(), "connected");
            let this = guard.done();
            this.step(|st, now| {
                st.failures.clear(hash);
                let lane = this.lanes_on.then(|| this.lane_for(st, &key));
                st.sessions.insert(
                    session,
                    Live {
                        session: connected,
                        key: hash,
                        watch: handle,
                        lane,
                    },
                );
                report(match leases {
                    Some(n) => st.core.connected_with_leases(session, n, now),
                    None => st.core.connected(session, Ok(()), now),
                });
            });
            if let Some(watch) = watch {
                this.add_watch(watch);
            }
        }
        Err(cause) => {
            tracing::warn!(error = %cause, elapsed = ?started.elapsed(), "connect failed");
            let failure = match &cause {
                ConnectError::TimedOut(_) => ConnectFailure::TimedOut,
                ConnectError::Failed(e) => guard::classify_connect(&*this.connector, e),
                ConnectError::Panicked | ConnectError::Abandoned => ConnectFailure::Failed,
            };
            let cause = Arc::new(cause);
            let this = guard.done();
            this.step(|st, now| {
                st.failures.record(hash, cause.clone());
                st.cause = Some((session, cause));
                report(st.core.connected(session, Err(failure), now));
            });
        }
    }
}

async fn check<C: Connector>(
    guard: Unreported<C>,
    session: SessionId,
    handle: Arc<C::Session>,
    deadline: Time,
) {
    let this = &guard.shared;
    let attempt = AssertUnwindSafe(this.connector.check(&handle)).catch_unwind();
    let result = match tokio::time::timeout_at(this.instant(deadline), attempt).await {
        Ok(Ok(Ok(()))) if !guard::is_closed(&*this.connector, &handle) => Ok(()),
        Ok(Ok(Ok(()))) => Err(CheckFailure::Failed),
        Ok(Ok(Err(e))) => {
            tracing::info!(error = %e, "check failed");
            Err(CheckFailure::Failed)
        }
        Ok(Err(_panic)) => {
            tracing::warn!("the connector panicked while checking");
            Err(CheckFailure::Failed)
        }
        Err(_elapsed) => Err(CheckFailure::TimedOut),
    };
    tracing::debug!(?result, "checked");
    // The close that may follow needs the only reference.
    drop(handle);
    let this = guard.done();
    this.step(|st, now| report(st.core.checked(session, result, now)));
}

async fn close<C: Connector>(
    guard: Unreported<C>,
    session: SessionId,
    handle: Arc<C::Session>,
    reason: EvictReason,
) {
    let this = &guard.shared;
    tracing::debug!("closing");
    // A caller that took the session from its lane may still be letting go
    // of its last reference (it gave the session back a moment ago).
    for attempt in 0..50u32 {
        if Arc::strong_count(&handle) == 1 {
            break;
        }
        if attempt < 10 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    match Arc::try_unwrap(handle) {
        Ok(owned) => {
            let closing = AssertUnwindSafe(this.connector.close(owned)).catch_unwind();
            match tokio::time::timeout(this.close_timeout, closing).await {
                Ok(Ok(())) => {}
                Ok(Err(_panic)) => tracing::warn!("the connector panicked while closing"),
                Err(_elapsed) => {
                    tracing::warn!(timeout = ?this.close_timeout, "close timed out; session dropped")
                }
            }
        }
        Err(_still_shared) => {
            tracing::error!(%reason, "session still referenced at its close; dropped instead");
        }
    }
    let this = guard.done();
    this.step(|st, now| report(st.core.closed(session, now)));
}
