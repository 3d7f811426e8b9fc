//! The three ways of making calls the loadtest compares, all over the same
//! rmcp client settings: `pool` (mcp-pool), `naive` (the pool with the known
//! bug) and `none` (a fresh session per call).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mcp_pool::{Outcome, Pool, RunError};
use mcp_pool_naive::{Counted, NaiveError, NaivePool};
use mcp_pool_rmcp::{KeyError, McpConnector, McpPool, SessionKey};
use rmcp::model::{CallToolRequestParams, JsonObject};
use serde::Serialize;
use serde_json::Value;

use super::ceiling::DELAY_ARGUMENT;
use super::era::{EraSeen, EraTally};
use super::record::{Cause, Failure};
use super::run::{CallFuture, Mode};
pub use crate::calls::{acquire_cause, cause_of, pool_counters, relayed};

/// The modes the loadtest can run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    /// mcp-pool: error-aware release, transport-aware health, breaker.
    Pool,
    /// A pool with the known bug: every session goes back, dead or alive.
    Naive,
    /// No pool: connect, call and close for every call.
    None,
}

impl ModeName {
    /// The mode's name in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ModeName::Pool => "pool",
            ModeName::Naive => "naive",
            ModeName::None => "none",
        }
    }
}

impl fmt::Display for ModeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tool call every user makes.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// The tool's name.
    pub tool: String,
    /// Fixed arguments; `None` sends the echo tool's `{message, delay_ms}`.
    pub args: Option<JsonObject>,
    /// The echo tool's delay.
    pub delay: Duration,
    /// Each call's delay is drawn uniformly from `delay ± jitter`.
    pub jitter: Duration,
}

impl ToolCall {
    /// The delay of call `seq` of `user`: `delay ± jitter`, the same for the
    /// same call in every mode.
    pub fn delay_of(&self, user: usize, seq: u64) -> Duration {
        if self.jitter.is_zero() {
            return self.delay;
        }
        let spread = self.jitter.as_micros() as u64;
        let draw = splitmix64((user as u64) << 40 ^ seq) % (2 * spread + 1);
        let micros = (self.delay.as_micros() as u64 + draw).saturating_sub(spread);
        Duration::from_micros(micros)
    }

    /// The delay the calls ask the tool for, in their `delay_ms` argument
    /// (its mean, with a jitter); `None` when the fixed arguments carry no
    /// `delay_ms` a number of milliseconds. Whether the server waits it is
    /// another matter (see [`super::ceiling`]).
    pub fn asked_delay(&self) -> Option<Duration> {
        match &self.args {
            None => Some(self.delay),
            Some(args) => args
                .get(DELAY_ARGUMENT)
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
        }
    }

    /// The request of call `seq` of `user`.
    pub fn params(&self, user: usize, seq: u64) -> CallToolRequestParams {
        let args = match &self.args {
            Some(args) => args.clone(),
            None => {
                let mut args = JsonObject::new();
                args.insert("message".into(), Value::from(format!("u{user}-{seq}")));
                let delay_ms = self.delay_of(user, seq).as_millis() as u64;
                args.insert(DELAY_ARGUMENT.into(), Value::from(delay_ms));
                args
            }
        };
        CallToolRequestParams::new(self.tool.clone()).with_arguments(args)
    }
}

/// A fixed pseudo-random permutation of `u64` (SplitMix64's finalizer).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The timeouts every mode's rmcp client and pool use.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    /// Longest wait for one call, and for a session from a pool.
    pub call_timeout: Duration,
}

impl ClientSettings {
    /// The connector every mode uses: the same TCP, initialize, request,
    /// check and close timeouts.
    pub fn connector(&self) -> Result<McpConnector, mcp_pool_rmcp::Error> {
        McpConnector::builder()
            .connect_timeout(Duration::from_secs(2))
            .initialize_timeout(Duration::from_secs(3))
            .request_timeout(self.call_timeout)
            .check_timeout(Duration::from_secs(1))
            .close_timeout(Duration::from_secs(1))
            .build()
    }

    /// mcp-pool over `connector`, `per_key` sessions for each of `keys`
    /// keys. The breaker opens after 5 failed connects and cools down for
    /// 50 ms at first and never longer than 100 ms, so a backend that is
    /// back is found within a tenth of a second (a probe of a loopback
    /// server costs next to nothing); callers wait for the probe rather than
    /// fail (the default).
    pub fn pool(
        &self,
        connector: McpConnector,
        per_key: usize,
        keys: usize,
    ) -> Result<McpPool, mcp_pool::BuildError> {
        Pool::builder(connector)
            .name("loadtest")
            .max_sessions_per_key(per_key.max(1))
            .max_sessions_total((per_key * keys).max(1))
            .max_keys(keys.max(1))
            .acquire_timeout(self.call_timeout)
            .connect_timeout(Duration::from_secs(4))
            .check_timeout(Duration::from_secs(2))
            .breaker_base_cooldown(Duration::from_millis(50))
            .breaker_max_cooldown(Duration::from_millis(100))
            .close_timeout(Duration::from_secs(2))
            .shutdown_timeout(Duration::from_secs(2))
            .checking(false)
            .build()
    }
}

/// One key per identity: the same URL, header `x-tenant-id: tenant-N`.
pub fn keys(url: &str, identities: usize) -> Result<Vec<SessionKey>, KeyError> {
    (0..identities.max(1))
        .map(|i| {
            SessionKey::builder(url)
                .header("x-tenant-id", &format!("tenant-{i}"))
                .build()
        })
        .collect()
}

/// What a failed [`Pool::run`] says about the call (see [`acquire_cause`]).
/// A failure an mcp-pool gateway relayed is described by the gateway's own
/// words (`via the gateway: upstream ...`), which say what the upstream
/// did.
pub fn pool_failure(error: RunError<mcp_pool_rmcp::Error>) -> Failure {
    if let RunError::Call(e) = &error {
        if let Some((cause, message)) = relayed(e) {
            return Failure::new(cause, format!("via the gateway: {message}"));
        }
    }
    let cause = match &error {
        RunError::Acquire(e) => acquire_cause(e),
        RunError::Call(e) => cause_of(e),
    };
    Failure::new(cause, error)
}

/// Mode `pool`: each call runs on a session of mcp-pool, released with the
/// outcome of its result, and, like [`mcp_pool_rmcp::run_with_retry`], a
/// request the server provably never saw (HTTP 404 on a forgotten session,
/// a refused connection) runs again on another session; the failed one was
/// poisoned on release.
pub struct PoolMode {
    pool: McpPool,
    keys: Vec<SessionKey>,
    call: ToolCall,
    eras: EraTally,
}

impl PoolMode {
    /// Calls `call` through `pool`, with one key per identity.
    pub fn new(pool: McpPool, keys: Vec<SessionKey>, call: ToolCall) -> PoolMode {
        PoolMode {
            pool,
            keys,
            call,
            eras: EraTally::default(),
        }
    }

    /// The eras of the sessions the pool leased, with the calls made on
    /// each.
    pub fn eras(&self) -> Vec<EraSeen> {
        self.eras.snapshot()
    }

    /// hits, misses, evictions (all reasons), checks and more, from the
    /// pool's core counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        pool_counters(&self.pool.metrics().stats)
    }

    /// Shuts the pool down, closing its sessions.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
    }
}

impl PoolMode {
    /// One run on a leased session, released with the outcome of its
    /// result, as [`Pool::run`] does.
    async fn run_once(
        &self,
        key: &SessionKey,
        params: CallToolRequestParams,
    ) -> Result<(), RunError<mcp_pool_rmcp::Error>> {
        let lease = self.pool.acquire(key).await?;
        self.eras.saw(&lease);
        match lease.call_tool(params).await {
            Ok(_) => {
                lease.release(Outcome::Ok);
                Ok(())
            }
            Err(e) => {
                lease.release(e.outcome());
                Err(RunError::Call(e))
            }
        }
    }
}

impl Mode for PoolMode {
    fn call(&self, user: usize, identity: usize, seq: u64) -> CallFuture<'_> {
        Box::pin(async move {
            let params = self.call.params(user, seq);
            let key = &self.keys[identity % self.keys.len()];
            // What `run_with_retry` does (its future is not `Send`, which
            // this boxed future must be): a request the server provably
            // never saw runs again on another session, at most
            // `max_sessions_per_key` more times.
            let mut retries = self.pool.config().max_sessions_per_key;
            loop {
                match self.run_once(key, params.clone()).await {
                    Err(RunError::Call(e)) if e.is_safe_to_retry() && retries > 0 => retries -= 1,
                    other => return other.map_err(pool_failure),
                }
            }
        })
    }
}

/// Mode `naive`: each call runs on a session of [`NaivePool`], which puts
/// every session back whatever happened to it.
pub struct NaiveMode {
    pool: NaivePool<Counted<McpConnector>>,
    keys: Vec<SessionKey>,
    call: ToolCall,
    runs: AtomicU64,
    eras: EraTally,
}

impl NaiveMode {
    /// Calls `call` through a naive pool of `per_key` sessions per key over
    /// `connector`.
    pub fn new(
        connector: McpConnector,
        per_key: usize,
        keys: Vec<SessionKey>,
        call: ToolCall,
    ) -> NaiveMode {
        NaiveMode {
            pool: NaivePool::new(Counted::new(connector), per_key),
            keys,
            call,
            runs: AtomicU64::new(0),
            eras: EraTally::default(),
        }
    }

    /// The eras of the sessions the naive pool handed out, with the calls
    /// made on each.
    pub fn eras(&self) -> Vec<EraSeen> {
        self.eras.snapshot()
    }

    /// The same counters as mode `pool` reports, counted around the naive
    /// pool: a miss is a connect, a hit a run that reused a parked session,
    /// an eviction a close (it never closes a session it holds), a check
    /// one made on a session idle for a minute.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let c = self.pool.connector();
        let misses = c.connects();
        let runs = self.runs.load(Ordering::Relaxed);
        [
            ("hits", runs.saturating_sub(misses)),
            ("misses", misses),
            ("connects", misses),
            ("evictions", c.closes()),
            ("checks", c.checks()),
        ]
        .into_iter()
        .map(|(name, n)| (name.to_string(), n))
        .collect()
    }

    /// Closes the parked sessions.
    pub async fn shutdown(&self) {
        self.pool.close_all().await;
    }
}

impl Mode for NaiveMode {
    fn call(&self, user: usize, identity: usize, seq: u64) -> CallFuture<'_> {
        Box::pin(async move {
            let params = self.call.params(user, seq);
            let key = &self.keys[identity % self.keys.len()];
            self.runs.fetch_add(1, Ordering::Relaxed);
            self.pool
                .run(key, async |session| {
                    self.eras.saw(session);
                    session.call_tool(params).await.map(drop)
                })
                .await
                .map_err(|e| match e {
                    NaiveError::Connect(e) => Failure::new(Cause::Connect, e),
                    NaiveError::Call(e) => Failure::new(cause_of(&e), e),
                })
        })
    }
}

/// Mode `none`: every call opens a session, calls, and closes it.
pub struct NoneMode {
    connector: McpConnector,
    keys: Vec<SessionKey>,
    call: ToolCall,
    connects: AtomicU64,
    eras: EraTally,
}

impl NoneMode {
    /// Calls `call` on a fresh session of `connector` each time.
    pub fn new(connector: McpConnector, keys: Vec<SessionKey>, call: ToolCall) -> NoneMode {
        NoneMode {
            connector,
            keys,
            call,
            connects: AtomicU64::new(0),
            eras: EraTally::default(),
        }
    }

    /// The eras of the sessions opened, with the calls made on each.
    pub fn eras(&self) -> Vec<EraSeen> {
        self.eras.snapshot()
    }

    /// Sessions opened (one per call).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        BTreeMap::from([(
            "connects".to_string(),
            self.connects.load(Ordering::Relaxed),
        )])
    }
}

impl Mode for NoneMode {
    fn call(&self, user: usize, identity: usize, seq: u64) -> CallFuture<'_> {
        Box::pin(async move {
            let params = self.call.params(user, seq);
            let key = &self.keys[identity % self.keys.len()];
            self.connects.fetch_add(1, Ordering::Relaxed);
            let session = self
                .connector
                .open(key)
                .await
                .map_err(|e| Failure::new(Cause::Connect, e))?;
            self.eras.saw(&session);
            let result = session.call_tool(params).await;
            session.close().await;
            result.map(drop).map_err(|e| Failure::new(cause_of(&e), e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_pool::AcquireError;

    fn echo(jitter_ms: u64) -> ToolCall {
        ToolCall {
            tool: "echo".into(),
            args: None,
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(jitter_ms),
        }
    }

    #[test]
    fn echo_arguments_carry_the_message_and_the_delay() {
        let params = echo(0).params(3, 7);
        assert_eq!(params.name, "echo");
        let args = params.arguments.unwrap();
        assert_eq!(args["message"], "u3-7");
        assert_eq!(args["delay_ms"], 100);
    }

    #[test]
    fn jitter_spreads_the_delay_around_its_mean() {
        let call = echo(50);
        let delays: Vec<Duration> = (0..2000).map(|seq| call.delay_of(1, seq)).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_millis(50) && *d <= Duration::from_millis(150)));
        let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
        assert!(
            mean > Duration::from_millis(95) && mean < Duration::from_millis(105),
            "{mean:?}"
        );
        assert_eq!(call.delay_of(1, 5), call.delay_of(1, 5), "deterministic");
    }

    #[test]
    fn fixed_arguments_are_sent_as_given() {
        let mut args = JsonObject::new();
        args.insert("q".into(), Value::from("x"));
        let call = ToolCall {
            tool: "search".into(),
            args: Some(args.clone()),
            ..echo(0)
        };
        assert_eq!(call.params(0, 0).arguments, Some(args));
        assert_eq!(call.asked_delay(), None, "no delay_ms in the arguments");
        let mut args = JsonObject::new();
        args.insert("delay_ms".into(), Value::from(300));
        let call = ToolCall {
            args: Some(args),
            ..call
        };
        assert_eq!(call.asked_delay(), Some(Duration::from_millis(300)));
        assert_eq!(echo(50).asked_delay(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn each_identity_gets_its_own_key() {
        let keys = keys("http://127.0.0.1:1/mcp", 3).unwrap();
        assert_eq!(keys.len(), 3);
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1].identity(), keys[2].identity());
        assert!(super::keys("ftp://nowhere", 1).is_err());
    }

    #[test]
    fn errors_map_to_causes() {
        let timed_out = mcp_pool_rmcp::Error::TimedOut {
            method: "tools/call",
            after: Duration::from_secs(1),
        };
        assert_eq!(cause_of(&timed_out), Cause::Timeout);
        let dead = mcp_pool_rmcp::Error::TransportClosed {
            method: "tools/call",
            reason: "connection refused".into(),
            sent: false,
        };
        assert_eq!(cause_of(&dead), Cause::Transport);
        let failure = pool_failure(RunError::Acquire(AcquireError::CircuitOpen {
            waited: Duration::ZERO,
            last_failure: None,
        }));
        assert_eq!(failure.cause, Cause::CircuitOpen);
        assert!(!failure.message.is_empty());
        let failure = pool_failure(RunError::Call(dead));
        assert_eq!(failure.cause, Cause::Transport);
        assert!(failure.message.contains("connection refused"));
        let lost = mcp_pool_rmcp::Error::SessionLost {
            method: "tools/call",
            said: "HTTP 400: error -32000: Bad Request: No valid session ID provided".into(),
        };
        assert_eq!(cause_of(&lost), Cause::SessionLost);
        let failure = pool_failure(RunError::Call(lost));
        assert_eq!(failure.cause, Cause::SessionLost);
        assert!(
            failure.message.contains("No valid session ID"),
            "{}",
            failure.message
        );
        let failure = pool_failure(RunError::Acquire(AcquireError::ConnectFailed {
            cause: std::sync::Arc::new(mcp_pool::ConnectError::TimedOut(Duration::from_secs(4))),
        }));
        assert_eq!(failure.cause, Cause::Connect);
        assert!(
            failure.message.contains("connect_timeout"),
            "{}",
            failure.message
        );
        let failure = pool_failure(RunError::Acquire(AcquireError::QueueFull));
        assert_eq!(failure.cause, Cause::QueueFull);
        assert!(failure.message.contains("max_waiters_per_key"));
    }
}
