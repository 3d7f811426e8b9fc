//! The driver's state and its one rule: lock, make one input to the core,
//! carry out every action it emitted, unlock, then start the tasks those
//! actions asked for. No decision is made here.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{AbortHandle, Abortable};
use futures_util::FutureExt;
use mcp_pool_core::{
    AcquireId, Action, CheckFailure, Config, ConnectFailure, EvictReason, InputError, LeaseId,
    Outcome, RejectReason, SessionId, Time,
};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tracing::Instrument;

use crate::core::Core;
use crate::{AcquireError, ConnectError, Connector, KeyHash, Lease};

/// A closed-notification on its way to the upkeep task: resolves with the
/// session's id when its transport dies, or `Err` once the session is closed.
pub(crate) type Watch = Abortable<Pin<Box<dyn Future<Output = SessionId> + Send + 'static>>>;

/// What one pool shares between its handles, leases and tasks.
pub(crate) struct Shared<C: Connector> {
    pub(crate) connector: C,
    state: Mutex<State<C>>,
    /// Where the core's `Time` starts, on tokio's clock.
    origin: Instant,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) name: Arc<str>,
    pub(crate) config: Config,
    pub(crate) close_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// Wakes the upkeep task when the next deadline moved earlier.
    pub(crate) upkeep: Arc<Notify>,
    /// Signalled when a shutting-down pool has closed its last session.
    pub(crate) settled: Notify,
    watches: mpsc::UnboundedSender<Watch>,
}

pub(crate) struct State<C: Connector> {
    pub(crate) core: Core<C::Key>,
    /// Every connected session not yet handed to its close.
    pub(crate) sessions: IdMap<SessionId, Live<C>>,
    /// Acquires waiting for their answer.
    waiters: IdMap<AcquireId, oneshot::Sender<Answer<C>>>,
    /// The cause of the connect failure being reported in this step.
    cause: Option<(SessionId, ConnectError<C::Error>)>,
    /// The deadline the upkeep task sleeps until.
    pub(crate) timer: Option<Time>,
}

/// One live session as the driver holds it.
pub(crate) struct Live<C: Connector> {
    pub(crate) session: Arc<C::Session>,
    pub(crate) key: KeyHash,
    watch: Option<AbortHandle>,
}

/// The core's answer to one acquire.
pub(crate) enum Answer<C: Connector> {
    Granted {
        lease: LeaseId,
        session: Arc<C::Session>,
        key: KeyHash,
    },
    Rejected {
        reason: RejectReason,
        cause: Option<ConnectError<C::Error>>,
    },
}

/// Work an action asked for, started once the lock is released.
enum Job<C: Connector> {
    /// Hand an answer to its waiter (waking it outside the lock).
    Deliver {
        tx: oneshot::Sender<Answer<C>>,
        answer: Answer<C>,
    },
    Connect {
        session: SessionId,
        key: C::Key,
        deadline: Time,
    },
    Check {
        session: SessionId,
        handle: Arc<C::Session>,
        key: KeyHash,
        deadline: Time,
    },
    Close {
        session: SessionId,
        handle: Arc<C::Session>,
        key: KeyHash,
        reason: EvictReason,
    },
}

/// The jobs of one step; the first is kept inline (most steps have at most
/// one), so a step allocates nothing.
struct Jobs<C: Connector> {
    first: Option<Job<C>>,
    rest: Vec<Job<C>>,
}

impl<C: Connector> Jobs<C> {
    fn new() -> Self {
        Jobs {
            first: None,
            rest: Vec::new(),
        }
    }

    fn push(&mut self, job: Job<C>) {
        if self.first.is_none() {
            self.first = Some(job);
        } else {
            self.rest.push(job);
        }
    }
}

/// How an acquire went on the first try.
enum Started<C: Connector> {
    Answered(Answer<C>),
    Waiting(Waiting<C>),
}

impl<C: Connector> Shared<C> {
    pub(crate) fn new(
        connector: C,
        core: Core<C::Key>,
        runtime: tokio::runtime::Handle,
        name: Arc<str>,
        close_timeout: Duration,
        shutdown_timeout: Duration,
        watches: mpsc::UnboundedSender<Watch>,
    ) -> Shared<C> {
        let config = core.pool().config().clone();
        Shared {
            connector,
            state: Mutex::new(State {
                core,
                sessions: IdMap::default(),
                waiters: IdMap::default(),
                cause: None,
                timer: None,
            }),
            origin: Instant::now(),
            runtime,
            name,
            config,
            close_timeout,
            shutdown_timeout,
            upkeep: Arc::new(Notify::new()),
            settled: Notify::new(),
            watches,
        }
    }

    /// The core's clock: nanoseconds since the pool was built, on tokio's clock.
    pub(crate) fn now(&self) -> Time {
        self.time(Instant::now())
    }

    pub(crate) fn time(&self, at: Instant) -> Time {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        Time::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    pub(crate) fn instant(&self, t: Time) -> Instant {
        self.origin
            .checked_add(t.since_origin())
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365 * 30))
    }

    /// Locks the state. A panic while it was held (a checking-mode violation)
    /// poisons it for good; during another unwinding this returns `None`
    /// rather than panicking twice.
    pub(crate) fn lock(&self) -> Option<MutexGuard<'_, State<C>>> {
        match self.state.lock() {
            Ok(guard) => Some(guard),
            Err(_) if std::thread::panicking() => None,
            Err(_) => panic!("mcp-pool: the pool's state was poisoned by an earlier panic"),
        }
    }

    /// Makes one input (`f`), carries out every action it led to, then
    /// starts the tasks they asked for. Returns what `f` returned.
    pub(crate) fn step<R>(self: &Arc<Self>, f: impl FnOnce(&mut State<C>, Time) -> R) -> Option<R> {
        let mut jobs = Jobs::new();
        // Read before locking, to keep the lock short; the core treats a
        // `now` earlier than one it has seen as the latest seen.
        let now = self.now();
        let r = {
            let mut st = self.lock()?;
            let r = f(&mut st, now);
            self.execute(&mut st, now, &mut jobs, None);
            self.settle(&mut st);
            r
        };
        self.start(jobs);
        Some(r)
    }

    /// Carries out the core's actions in order until it has none left.
    /// Grants and rejects go to their waiters (or, for `mine`, are returned);
    /// connects, checks and closes become jobs.
    fn execute(
        &self,
        st: &mut State<C>,
        now: Time,
        jobs: &mut Jobs<C>,
        mine: Option<AcquireId>,
    ) -> Option<Answer<C>> {
        let mut own = None;
        while let Some(action) = st.core.poll_action() {
            match action {
                Action::Connect {
                    session,
                    key,
                    deadline,
                } => jobs.push(Job::Connect {
                    session,
                    key,
                    deadline,
                }),
                Action::Validate { session, deadline } => {
                    let live = st
                        .sessions
                        .get(&session)
                        .expect("a checked session is live");
                    tracing::debug!(pool = %self.name, key = %live.key, %session, "checking session");
                    jobs.push(Job::Check {
                        session,
                        handle: live.session.clone(),
                        key: live.key,
                        deadline,
                    });
                }
                Action::Grant { acquire, lease } => {
                    let live = st
                        .sessions
                        .get(&lease.session())
                        .expect("a granted session is live");
                    tracing::trace!(pool = %self.name, key = %live.key, session = %lease.session(), %acquire, "granted");
                    let answer = Answer::Granted {
                        lease,
                        session: live.session.clone(),
                        key: live.key,
                    };
                    if mine == Some(acquire) {
                        own = Some(answer);
                        continue;
                    }
                    match st.waiters.remove(&acquire) {
                        Some(tx) => jobs.push(Job::Deliver { tx, answer }),
                        None => {
                            // Nobody to take it: the lease comes straight
                            // back, unused, as a cancelled one.
                            drop(answer);
                            report(st.core.release(lease, Outcome::Cancelled, now));
                        }
                    }
                }
                Action::Reject { acquire, reason } => {
                    let cause = match reason {
                        RejectReason::ConnectFailed { attempt } => st
                            .cause
                            .take_if(|(s, _)| *s == attempt)
                            .map(|(_, cause)| cause),
                        _ => None,
                    };
                    tracing::debug!(pool = %self.name, %acquire, %reason, "rejected");
                    let answer = Answer::Rejected { reason, cause };
                    if mine == Some(acquire) {
                        own = Some(answer);
                    } else if let Some(tx) = st.waiters.remove(&acquire) {
                        jobs.push(Job::Deliver { tx, answer });
                    }
                }
                Action::Close { session, reason } => {
                    let live = st
                        .sessions
                        .remove(&session)
                        .expect("a closed session is live");
                    if let Some(watch) = live.watch {
                        watch.abort();
                    }
                    jobs.push(Job::Close {
                        session,
                        handle: live.session,
                        key: live.key,
                        reason,
                    });
                }
            }
        }
        st.cause = None;
        own
    }

    /// Wakes the upkeep task if the next deadline moved earlier, and
    /// shutdown waiters once the pool is closed.
    fn settle(&self, st: &mut State<C>) {
        if let Some(t) = st.core.poll_timeout() {
            if st.timer.is_none_or(|current| t < current) {
                st.timer = Some(t);
                self.upkeep.notify_one();
            }
        }
        if st.core.pool().is_shutting_down() && st.core.pool().is_closed() {
            self.settled.notify_waiters();
        }
    }

    fn start(self: &Arc<Self>, jobs: Jobs<C>) {
        for job in jobs.first.into_iter().chain(jobs.rest) {
            let shared = self.clone();
            match job {
                Job::Deliver { tx, answer } => {
                    if let Err(Answer::Granted { lease, session, .. }) = tx.send(answer) {
                        // The waiter was dropped meanwhile (it closed its
                        // channel first, so this send is the only way back).
                        drop(session);
                        self.step(|st, now| {
                            report(st.core.release(lease, Outcome::Cancelled, now))
                        });
                    }
                }
                Job::Connect {
                    session,
                    key,
                    deadline,
                } => {
                    let hash = KeyHash::of(&key);
                    let span = tracing::debug_span!("mcp_pool.connect", pool = %self.name, key = %hash, %session);
                    self.runtime.spawn(
                        shared
                            .connect(session, key, hash, deadline)
                            .instrument(span),
                    );
                }
                Job::Check {
                    session,
                    handle,
                    key,
                    deadline,
                } => {
                    let span =
                        tracing::debug_span!("mcp_pool.check", pool = %self.name, %key, %session);
                    self.runtime
                        .spawn(shared.check(session, handle, deadline).instrument(span));
                }
                Job::Close {
                    session,
                    handle,
                    key,
                    reason,
                } => {
                    let span = tracing::debug_span!("mcp_pool.close", pool = %self.name, %key, %session, %reason);
                    self.runtime
                        .spawn(shared.close(session, handle, reason).instrument(span));
                }
            }
        }
    }

    // ------------------------------------------------------------ the tasks

    async fn connect(
        self: Arc<Self>,
        session: SessionId,
        key: C::Key,
        hash: KeyHash,
        deadline: Time,
    ) {
        let started = Instant::now();
        let attempt = AssertUnwindSafe(self.connector.connect(&key)).catch_unwind();
        let result = match tokio::time::timeout_at(self.instant(deadline), attempt).await {
            Ok(Ok(Ok(connected))) => Ok(connected),
            Ok(Ok(Err(e))) => Err(ConnectError::Failed(e)),
            Ok(Err(_panic)) => Err(ConnectError::Panicked),
            Err(_elapsed) => Err(ConnectError::TimedOut(started.elapsed())),
        };
        match result {
            Ok(connected) => {
                let connected = Arc::new(connected);
                let watch = self.connector.closed_notification(&connected).map(|fut| {
                    let (handle, registration) = AbortHandle::new_pair();
                    let fut: Pin<Box<dyn Future<Output = SessionId> + Send>> =
                        Box::pin(async move {
                            fut.await;
                            session
                        });
                    (handle, Abortable::new(fut, registration))
                });
                let (handle, watch) = match watch {
                    Some((handle, watch)) => (Some(handle), Some(watch)),
                    None => (None, None),
                };
                tracing::debug!(elapsed = ?started.elapsed(), "connected");
                self.step(|st, now| {
                    st.sessions.insert(
                        session,
                        Live {
                            session: connected,
                            key: hash,
                            watch: handle,
                        },
                    );
                    report(st.core.connected(session, Ok(()), now));
                });
                if let Some(watch) = watch {
                    // Fails only when the pool is gone; nothing to watch then.
                    let _ = self.watches.send(watch);
                }
            }
            Err(cause) => {
                tracing::warn!(error = %cause, elapsed = ?started.elapsed(), "connect failed");
                let failure = match &cause {
                    ConnectError::TimedOut(_) => ConnectFailure::TimedOut,
                    ConnectError::Failed(e) => match self.connector.classify_connect(e) {
                        ConnectFailure::TimedOut => ConnectFailure::Failed,
                        kind => kind,
                    },
                    ConnectError::Panicked => ConnectFailure::Failed,
                };
                self.step(|st, now| {
                    st.cause = Some((session, cause));
                    report(st.core.connected(session, Err(failure), now));
                });
            }
        }
    }

    async fn check(self: Arc<Self>, session: SessionId, handle: Arc<C::Session>, deadline: Time) {
        let attempt = AssertUnwindSafe(self.connector.check(&handle)).catch_unwind();
        let result = match tokio::time::timeout_at(self.instant(deadline), attempt).await {
            Ok(Ok(Ok(()))) if !self.connector.is_closed(&handle) => Ok(()),
            Ok(Ok(Ok(()))) => Err(CheckFailure::Failed),
            Ok(Ok(Err(e))) => {
                tracing::info!(error = %e, "check failed");
                Err(CheckFailure::Failed)
            }
            Ok(Err(_panic)) => Err(CheckFailure::Failed),
            Err(_elapsed) => Err(CheckFailure::TimedOut),
        };
        tracing::debug!(?result, "checked");
        // The close that may follow needs the only reference.
        drop(handle);
        self.step(|st, now| report(st.core.checked(session, result, now)));
    }

    async fn close(
        self: Arc<Self>,
        session: SessionId,
        handle: Arc<C::Session>,
        reason: EvictReason,
    ) {
        tracing::debug!("closing");
        match Arc::try_unwrap(handle) {
            Ok(owned) => {
                let closing = AssertUnwindSafe(self.connector.close(owned)).catch_unwind();
                match tokio::time::timeout(self.close_timeout, closing).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_panic)) => tracing::warn!("the connector panicked while closing"),
                    Err(_elapsed) => {
                        tracing::warn!(timeout = ?self.close_timeout, "close timed out; session dropped")
                    }
                }
            }
            Err(_still_shared) => {
                tracing::error!(%reason, "session still referenced at its close; dropped instead");
            }
        }
        self.step(|st, now| report(st.core.closed(session, now)));
    }

    // ------------------------------------------------------------ callers

    /// Acquires a session for `key` before `deadline`; see [`crate::Pool::acquire`].
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        key: &C::Key,
        deadline: Option<Instant>,
    ) -> Result<Lease<C>, AcquireError<C::Error>> {
        let started = self.now();
        let deadline = match deadline {
            Some(at) => self.time(at),
            None => started + self.config.acquire_timeout,
        };
        let mut now = started;
        loop {
            let answer = match self.start_acquire(key, deadline, now) {
                Ok(Started::Answered(answer)) => answer,
                Ok(Started::Waiting(waiting)) => waiting.await,
                Err(InputError::DeadlineNotInFuture) => {
                    return Err(AcquireError::TimedOut {
                        waited: self.now().saturating_duration_since(started),
                    })
                }
                Err(e) => unreachable!("acquire refused: {e}"),
            };
            match answer {
                Answer::Granted {
                    lease,
                    session,
                    key: hash,
                } => {
                    let lease = Lease::new(self.clone(), lease, session);
                    if self.connector.is_closed(&lease) {
                        tracing::info!(pool = %self.name, key = %hash, session = %lease.session_id(), "granted session is closed; asking again");
                        lease.release(Outcome::TransportError);
                        now = self.now();
                        continue;
                    }
                    return Ok(lease);
                }
                Answer::Rejected { reason, cause } => {
                    let waited = self.now().saturating_duration_since(started);
                    return Err(match reason {
                        RejectReason::TimedOut => AcquireError::TimedOut { waited },
                        RejectReason::CircuitOpen => AcquireError::CircuitOpen { waited },
                        RejectReason::ShuttingDown => AcquireError::ShuttingDown,
                        RejectReason::TooManyKeys => AcquireError::TooManyKeys,
                        RejectReason::QueueFull => AcquireError::QueueFull,
                        RejectReason::ConnectFailed { attempt } => AcquireError::ConnectFailed {
                            // The core rejects a connect's waiter in the very
                            // input that reports the failure, where the cause
                            // is stashed.
                            cause: cause.unwrap_or_else(|| {
                                unreachable!("no cause kept for the failed connect {attempt}")
                            }),
                        },
                    });
                }
            }
        }
    }

    /// Makes the acquire input at `now` (read by the caller, once).
    fn start_acquire(
        self: &Arc<Self>,
        key: &C::Key,
        deadline: Time,
        now: Time,
    ) -> Result<Started<C>, InputError> {
        let mut jobs = Jobs::new();
        let started = {
            let Some(mut st) = self.lock() else {
                unreachable!("no unwinding on an acquire")
            };
            let id = st.core.acquire(key, deadline, now)?;
            let started = match self.execute(&mut st, now, &mut jobs, Some(id)) {
                Some(answer) => Started::Answered(answer),
                None => {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.insert(id, tx);
                    Started::Waiting(Waiting {
                        shared: self.clone(),
                        id,
                        rx,
                        done: false,
                    })
                }
            };
            self.settle(&mut st);
            started
        };
        self.start(jobs);
        Ok(started)
    }

    /// Gives a lease back; `dead` says the transport was seen closed.
    pub(crate) fn release(self: &Arc<Self>, lease: LeaseId, outcome: Outcome, dead: bool) {
        self.step(|st, now| {
            if dead {
                let key = st.sessions.get(&lease.session()).map(|l| l.key);
                tracing::info!(pool = %self.name, key = ?key, session = %lease.session(), "transport closed under a lease");
                report(st.core.transport_closed(lease.session(), now));
            }
            tracing::trace!(pool = %self.name, %lease, ?outcome, "released");
            report(st.core.release(lease, outcome, now));
        });
    }

    /// A closed-notification fired.
    pub(crate) fn transport_closed(self: &Arc<Self>, session: SessionId) {
        self.step(|st, now| {
            if let Some(live) = st.sessions.get(&session) {
                tracing::info!(pool = %self.name, key = %live.key, %session, "transport closed");
                report(st.core.transport_closed(session, now));
            }
        });
    }

    /// The acquire `id` was dropped before its answer was taken.
    fn abandon(self: &Arc<Self>, id: AcquireId, rx: &mut oneshot::Receiver<Answer<C>>) {
        // From here on a delivery fails and gives its grant back itself; one
        // that came before is in the channel.
        rx.close();
        self.step(|st, now| {
            if st.waiters.remove(&id).is_some() {
                report(st.core.cancel_acquire(id, now));
            } else if let Ok(Answer::Granted { lease, session, .. }) = rx.try_recv() {
                drop(session);
                report(st.core.release(lease, Outcome::Cancelled, now));
            }
        });
    }
}

/// Logs an input the core refused. The driver only reports what the core
/// asked for, so a refusal is a driver bug; the checking mode has already
/// audited it.
fn report(result: Result<(), InputError>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "the core refused an input");
        debug_assert!(false, "the core refused an input: {e}");
    }
}

/// An acquire waiting for its answer. Dropping it withdraws the acquire, or
/// gives back the session it was granted meanwhile.
struct Waiting<C: Connector> {
    shared: Arc<Shared<C>>,
    id: AcquireId,
    rx: oneshot::Receiver<Answer<C>>,
    done: bool,
}

impl<C: Connector> Future for Waiting<C> {
    type Output = Answer<C>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<C>> {
        let this = &mut *self;
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Ready(answer) => {
                this.done = true;
                Poll::Ready(answer.unwrap_or(Answer::Rejected {
                    reason: RejectReason::ShuttingDown,
                    cause: None,
                }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C: Connector> Drop for Waiting<C> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.abandon(self.id, &mut self.rx);
        }
    }
}

/// A `HashMap` keyed by the pool's ids, with a cheap multiplicative hash
/// (ids are small distinct integers, not attacker-chosen).
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`].
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
