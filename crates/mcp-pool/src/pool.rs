//! The pool handle and its builder.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use mcp_pool_core::{Config, Outcome, SessionId, SessionState};
use tokio::time::Instant;

use crate::core::Core;
use crate::lane::LaneCounts;
use crate::shared::Shared;
use crate::{AcquireError, BuildError, Connector, KeyHash, KeyPool, Lease, Metrics, RunError};

/// An async pool of sessions made by a [`Connector`], grouped by key.
///
/// Every decision (which session a caller gets, when to connect, check,
/// evict or close, who waits and who is refused) is the core's
/// ([`mcp_pool_core::Pool`]); this handle only turns calls, task results and
/// timers into the core's inputs and carries out its actions. Hence the
/// core's guarantees hold here: a session released with
/// [`Outcome::TransportError`], reported dead by the connector, or failing a
/// check is never handed out again; a session is only handed to callers of
/// the key it was made for; limits hold at every moment; waiters of a key are
/// served first come, first served, and never past their deadline.
///
/// Cloning the handle is cheap and shares the pool. Connects, checks and
/// closes run on tasks of the pool's own (each under its deadline), timers
/// and closed-notifications on one background task per pool; none of them
/// runs on a caller's path. Dropping the last handle stops the background
/// task (leases still out can be released); call [`Pool::shutdown`] to close
/// everything in order.
pub struct Pool<C: Connector> {
    inner: Arc<Handle<C>>,
}

struct Handle<C: Connector> {
    shared: Arc<Shared<C>>,
}

impl<C: Connector> Drop for Handle<C> {
    /// The last handle is gone: the background task stops.
    fn drop(&mut self) {
        self.shared.stop();
    }
}

impl<C: Connector> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Connector> Pool<C> {
    /// Starts configuring a pool over `connector`, with the core's default
    /// policies ([`Config::default`]).
    pub fn builder(connector: C) -> Builder<C> {
        Builder {
            connector,
            config: Config::default(),
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            name: Arc::from("mcp-pool"),
            checking: cfg!(feature = "checking"),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<C>> {
        &self.inner.shared
    }

    /// A session for `key`, waiting up to `acquire_timeout` for one.
    ///
    /// Answers with a fresh session (never one known or suspected broken),
    /// or a typed error. Cancellation-safe: dropping the future at any point
    /// withdraws the caller from the queue, and a session granted meanwhile
    /// goes back to the pool (as [`Outcome::Cancelled`], so it is checked
    /// before reuse); no slot and no session is lost.
    pub async fn acquire(&self, key: &C::Key) -> Result<Lease<C>, AcquireError<C::Error>> {
        self.shared().acquire(key, None, None).await
    }

    /// Like [`Pool::acquire`], waiting until `deadline` instead of
    /// `acquire_timeout`. A deadline already passed fails with
    /// [`AcquireError::TimedOut`] at once.
    pub async fn acquire_until(
        &self,
        key: &C::Key,
        deadline: Instant,
    ) -> Result<Lease<C>, AcquireError<C::Error>> {
        self.shared().acquire(key, Some(deadline), None).await
    }

    /// Runs `f` on a session for `key` and releases it with the outcome of
    /// `f`'s result: [`Outcome::Ok`] on success, else what
    /// [`Connector::classify`] says about the error. The normal way to use
    /// the pool: a failed transport can never go back as healthy.
    ///
    /// `f` is an async closure (`async |session| ...`), so its future may
    /// borrow the session. If `f` panics, the session is poisoned (never
    /// reused) and the panic propagates. If the returned future is dropped mid-call, the session is
    /// released as [`Outcome::Cancelled`] and checked before reuse.
    pub async fn run<T, F>(&self, key: &C::Key, f: F) -> Result<T, RunError<C::Error>>
    where
        F: AsyncFnOnce(&C::Session) -> Result<T, C::Error>,
    {
        let lease = self.acquire(key).await?;
        run_on(&*self.shared().connector, lease, f).await
    }

    /// One key of this pool, found once: see [`KeyPool`]. Makes the key's
    /// lane if it has none (under the pool's lock, once).
    pub fn key(&self, key: C::Key) -> KeyPool<C> {
        KeyPool::new(self.clone(), key)
    }

    /// Retires every session that exists now: idle ones close at once,
    /// leased and checked ones when they come back. The pool stays usable:
    /// later acquires get new sessions (after a backend rotation, say).
    pub fn drain(&self) {
        self.shared().step(|st, now| st.core.drain(now));
    }

    /// Stops the pool: waiting and later acquires fail with
    /// [`AcquireError::ShuttingDown`], idle sessions close at once, leased
    /// ones as they come back. Waits for that up to `shutdown_timeout`; then
    /// [`Connector::abort`]s every session still held and stops waiting
    /// (those still close through [`Connector::close`] when released). The
    /// report says what was still held. Calling it again is harmless.
    pub async fn shutdown(&self) -> ShutdownReport {
        let shared = self.shared();
        let started = Instant::now();
        let deadline = started + shared.shutdown_timeout;
        let closes_before = shared.lock().map_or(0, |st| st.core.pool().stats().closes);
        shared.step(|st, now| st.core.shutdown(now));
        loop {
            let settled = shared.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if shared.lock().is_none_or(|st| st.core.pool().is_closed()) {
                break;
            }
            tokio::select! {
                _ = settled => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let Some(st) = shared.lock() else {
            return ShutdownReport::default();
        };
        let core = st.core.pool();
        let mut force_closed = Vec::new();
        for (session, info) in core.sessions() {
            if matches!(
                info.state,
                SessionState::Leased | SessionState::Validating | SessionState::Lent
            ) || (info.state == SessionState::Poisoned && !info.close_issued)
            {
                let live = st.sessions.get(&session).expect("a held session is live");
                crate::guard::abort(&*shared.connector, &live.session);
                tracing::warn!(pool = %shared.name, key = %live.key, %session, state = ?info.state, "still held at shutdown; aborted");
                force_closed.push(ForceClosed {
                    session,
                    key: live.key,
                    state: info.state,
                });
            }
        }
        ShutdownReport {
            closed: core.stats().closes - closes_before,
            force_closed,
            closing: core
                .sessions()
                .filter(|(_, info)| info.close_issued)
                .count(),
            connects_in_flight: core.connects().count(),
            waited: started.elapsed(),
        }
    }

    /// A snapshot of the core's counters and every key's gauges.
    pub fn metrics(&self) -> Metrics {
        let Some(st) = self.shared().lock() else {
            return Metrics::default();
        };
        let shared = self.shared();
        let mut lanes = shared
            .lanes
            .load()
            .values()
            .map(|lane| lane.counts())
            .fold(LaneCounts::default(), LaneCounts::add);
        lanes.takes = st.lane_takes();
        let map = shared.lanes.load();
        Metrics::of(
            st.core.pool(),
            lanes,
            |key| map.get(key).map_or(0, |lane| lane.parked()),
            |key| crate::guard::key_labels(&*shared.connector, key),
        )
    }

    /// Records [`Pool::metrics`] through the `metrics` crate, labelled with
    /// this pool's name (see [`Metrics::export`]). Call it on your scrape or
    /// reporting cadence.
    #[cfg(feature = "metrics")]
    pub fn export_metrics(&self) {
        self.metrics().export(&self.shared().name);
    }

    /// The core policies in force.
    pub fn config(&self) -> &Config {
        &self.shared().config
    }

    /// The connector the pool was built with.
    pub fn connector(&self) -> &C {
        &self.shared().connector
    }

    /// Whether this pool audits every input (see [`Builder::checking`]).
    pub fn is_checking(&self) -> bool {
        self.shared().lock().is_some_and(|st| st.core.is_checking())
    }

    /// The pool's name, as it appears in logs and metrics labels.
    pub fn name(&self) -> &str {
        &self.shared().name
    }
}

/// What [`Pool::shutdown`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions closed while the shutdown waited.
    pub closed: u64,
    /// Sessions still held (leased, under a check, or poisoned but not yet
    /// returned) when the grace period ended: each was
    /// [aborted](Connector::abort) and closes when it comes back.
    pub force_closed: Vec<ForceClosed>,
    /// Sessions whose close was still running at the end.
    pub closing: usize,
    /// Connects still running at the end; each is closed as soon as it
    /// finishes (or fails at its `connect_timeout`).
    pub connects_in_flight: usize,
    /// How long the shutdown waited.
    pub waited: Duration,
}

impl ShutdownReport {
    /// True when every session was closed within the grace period.
    pub fn is_clean(&self) -> bool {
        self.force_closed.is_empty() && self.closing == 0 && self.connects_in_flight == 0
    }
}

/// A session [`Pool::shutdown`] had to abort.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ForceClosed {
    /// The session.
    pub session: SessionId,
    /// Its key's hash.
    pub key: KeyHash,
    /// Its state at the end of the grace period.
    pub state: SessionState,
}

/// Configures and builds a [`Pool`]: every core policy (see [`Config`]) and
/// the driver's own timeouts. [`Builder::build`] validates them all.
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<C: Connector> {
    connector: C,
    config: Config,
    close_timeout: Duration,
    shutdown_timeout: Duration,
    name: Arc<str>,
    checking: bool,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $($field:ident).+;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$($field).+ = value;
                self
            }
        )*
    };
}

impl<C: Connector> Builder<C> {
    setters! {
        /// Most sessions (live or being connected) for one key; at least 1.
        max_sessions_per_key: usize => max_sessions_per_key;
        /// Most sessions across all keys; at least 1. When reached, a key in
        /// need evicts another key's least recently used idle session.
        max_sessions_total: usize => max_sessions_total;
        /// Most keys tracked at once; at least 1.
        max_keys: usize => max_keys;
        /// Most callers holding one session at once: 1 (the default) makes
        /// sessions exclusive; more shares a stateless server's sessions.
        max_leases_per_session: usize => max_leases_per_session;
        /// Sessions each known key keeps idle or on the way (pre-warm); at
        /// most `max_sessions_per_key`.
        min_idle_per_key: usize => min_idle_per_key;
        /// Most callers waiting for one key at once; at least 1 (default
        /// 1,024). An acquire that would wait beyond it is refused at once
        /// with [`AcquireError::QueueFull`].
        max_waiters_per_key: usize => max_waiters_per_key;
        /// How long [`Pool::acquire`] waits; non-zero.
        acquire_timeout: Duration => acquire_timeout;
        /// How long a connect may take; non-zero.
        connect_timeout: Duration => connect_timeout;
        /// How long a health check may take; non-zero.
        check_timeout: Duration => check_timeout;
        /// An idle session unused this long is closed (never below
        /// `min_idle_per_key`); `None` keeps idle sessions. Non-zero.
        idle_timeout: Option<Duration> => idle_timeout;
        /// A session older than this is never granted again; `None` means no
        /// limit. Non-zero.
        max_lifetime: Option<Duration> => max_lifetime;
        /// Random shortening of each session's lifetime, below `max_lifetime`.
        lifetime_jitter: Duration => lifetime_jitter;
        /// A session with no evidence of health for this long is checked
        /// before it is granted, and idle ones are checked at this interval;
        /// zero checks on every reuse.
        check_interval: Duration => check_interval;
        /// Consecutive connect failures that open a key's circuit breaker; at
        /// least 1.
        breaker_failure_threshold: u32 => breaker.failure_threshold;
        /// The breaker's first cool-down; non-zero.
        breaker_base_cooldown: Duration => breaker.base_cooldown;
        /// The breaker's longest cool-down; at least the base.
        breaker_max_cooldown: Duration => breaker.max_cooldown;
        /// Whether callers of an open key fail at once (`true`) or wait for
        /// the probe up to their deadline (`false`, the default).
        breaker_fail_fast: bool => breaker.fail_fast;
        /// Seed of the lifetime jitter: same seed and inputs, same run.
        seed: u64 => seed;
        /// Whether fresh exclusive sessions are lent to their key's lane,
        /// where callers take and give them back without the pool's lock
        /// (default true; see [`Config::lanes`]).
        lanes: bool => lanes;
    }

    /// Replaces every core policy at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// How long one [`Connector::close`] may run before the session is
    /// dropped instead (default 5 s); non-zero.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How long [`Pool::shutdown`] waits for leases to come back (default
    /// 30 s); zero aborts them at once.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The pool's name in logs and metrics labels (default `mcp-pool`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Whether every input to the core is audited: the core's
    /// [`Auditor`](mcp_pool_core::Auditor) and
    /// [`check_invariants`](mcp_pool_core::Pool::check_invariants) run after
    /// each one, and a violation panics with the recent inputs. Costs a full
    /// recount of the pool per input: for tests and simulations. The default
    /// is on with the `checking` feature, off without it.
    pub fn checking(mut self, on: bool) -> Self {
        self.checking = on;
        self
    }

    /// Builds the pool and starts its background task on the current tokio
    /// runtime, or says which setting cannot work.
    pub fn build(self) -> Result<Pool<C>, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        if self.close_timeout.is_zero() {
            return Err(BuildError::ZeroCloseTimeout);
        }
        let core = mcp_pool_core::Pool::new(self.config)?;
        let shared = Arc::new(Shared::new(
            self.connector,
            Core::new(core, self.checking),
            runtime,
            self.name,
            self.close_timeout,
            self.shutdown_timeout,
        ));
        shared.ensure_upkeep();
        Ok(Pool {
            inner: Arc::new(Handle { shared }),
        })
    }
}

/// Runs `f` on `lease`'s session and releases it with the outcome of `f`'s
/// result (see [`Pool::run`]).
pub(crate) async fn run_on<C, T, F>(
    connector: &C,
    lease: Lease<C>,
    f: F,
) -> Result<T, RunError<C::Error>>
where
    C: Connector,
    F: AsyncFnOnce(&C::Session) -> Result<T, C::Error>,
{
    let result = std::panic::AssertUnwindSafe(f(&lease)).catch_unwind().await;
    match result {
        Ok(Ok(value)) => {
            lease.release(Outcome::Ok);
            Ok(value)
        }
        Ok(Err(error)) => {
            lease.release(crate::guard::classify(connector, &error));
            Err(RunError::Call(error))
        }
        Err(panic) => {
            lease.release(Outcome::TransportError);
            std::panic::resume_unwind(panic)
        }
    }
}
