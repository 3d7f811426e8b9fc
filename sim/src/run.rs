//! One simulated run: a [`Plan`] carried out against a [`Subject`] on a
//! turmoil network, recorded as a [`RunReport`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use mcp_pool::Outcome;
use mcp_pool::{AcquireError, Pool, RunError, Stats};
use mcp_pool_echo::{serve, CallRecord, EchoApp, EchoConfig, ServerControl, SessionRegistry};
use mcp_pool_naive::{Counted, NaiveError, NaivePool};
use mcp_pool_rmcp::{run_with_retry, CacheEvent, McpConnector, McpSession, SessionKey};
use rmcp::model::CallToolRequestParams;

use crate::net::{SimHttpClient, SimListener};
use crate::plan::{Draw, Era, Fault, Plan, Scenario};

/// The era of a session as the connector detected it (the server's era as
/// the client saw it).
pub use mcp_pool_rmcp::Era as SessionEra;

/// The backend's host name on the simulated network.
pub const BACKEND: &str = "backend";
/// The gateway's (the pool's) host name on the simulated network.
pub const GATEWAY: &str = "gateway";
const PORT: u16 = 80;
/// The least a caller waits after a failed call before the next one.
const FAILURE_BACKOFF: Duration = Duration::from_millis(20);

/// Which pool the callers go through.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// mcp-pool, with its checking mode on, through `run_with_retry`.
    Pool,
    /// The naive pool with the known bug (`mcp-pool-naive`).
    Naive,
}

impl Subject {
    /// The subject's name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Pool => "pool",
            Subject::Naive => "naive",
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a call failed, as the caller saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// No session within the acquire timeout.
    AcquireTimedOut,
    /// The key's breaker was open.
    CircuitOpen,
    /// The pool was shutting down.
    ShuttingDown,
    /// Opening a session failed.
    ConnectFailed,
    /// The request provably never reached the server (HTTP 404 on the
    /// session, no connection, transport known dead).
    Refused,
    /// The transport broke under the request.
    Transport,
    /// The request got no answer in time.
    TimedOut,
    /// rmcp cancelled the request.
    Cancelled,
    /// The server answered with an error.
    Application,
    /// The caller itself gave up (dropped the call); not a failure.
    GaveUp,
}

impl Cause {
    /// The cause's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Cause::AcquireTimedOut => "acquire-timeout",
            Cause::CircuitOpen => "circuit-open",
            Cause::ShuttingDown => "shutting-down",
            Cause::ConnectFailed => "connect",
            Cause::Refused => "refused",
            Cause::Transport => "transport",
            Cause::TimedOut => "timeout",
            Cause::Cancelled => "cancelled",
            Cause::Application => "application",
            Cause::GaveUp => "gave-up",
        }
    }

    fn of_error(error: &mcp_pool_rmcp::Error) -> Cause {
        match error.outcome() {
            Outcome::TransportError if error.is_safe_to_retry() => Cause::Refused,
            Outcome::TransportError => Cause::Transport,
            Outcome::Timeout => Cause::TimedOut,
            Outcome::Cancelled => Cause::Cancelled,
            Outcome::Ok | Outcome::ApplicationError => Cause::Application,
        }
    }

    fn of_run(error: &RunError<mcp_pool_rmcp::Error>) -> Cause {
        match error {
            RunError::Acquire(AcquireError::TimedOut { .. }) => Cause::AcquireTimedOut,
            RunError::Acquire(AcquireError::CircuitOpen { .. }) => Cause::CircuitOpen,
            RunError::Acquire(AcquireError::ShuttingDown) => Cause::ShuttingDown,
            RunError::Acquire(_) => Cause::ConnectFailed,
            RunError::Call(e) => Cause::of_error(e),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One call as a caller saw it, in simulated time since the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The caller.
    pub caller: usize,
    /// The caller's call number, from 0.
    pub n: u64,
    /// When it was issued.
    pub start: Duration,
    /// When it ended.
    pub end: Duration,
    /// Its result: on success, the era of the session that served it.
    pub result: Result<SessionEra, Cause>,
}

impl Call {
    /// How long it took.
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    /// Whether it failed (a call the caller gave up on did not).
    pub fn failed(&self) -> bool {
        matches!(self.result, Err(cause) if cause != Cause::GaveUp)
    }

    /// The era of the session that served it, if it succeeded.
    pub fn era(&self) -> Option<SessionEra> {
        self.result.ok()
    }
}

/// Everything one run produced, for the oracles and the report.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// What was run.
    pub plan: Plan,
    /// Through which pool.
    pub subject: Subject,
    /// Every call, in the order they ended.
    pub calls: Vec<Call>,
    /// The event log: one line per plan, fault, call and end-of-run fact,
    /// in simulated time. The same scenario, seed and subject give the same
    /// log, byte for byte. No session id appears in it.
    pub log: Vec<String>,
    /// Errors of the simulation itself: a panic (the checking mode panics on
    /// an invariant violation), a host that failed, a run that never ended.
    pub errors: Vec<String>,
    /// Sessions the connector opened.
    pub opened: u64,
    /// Sessions the connector closed.
    pub closed: u64,
    /// Connects started before the backend was reachable again.
    pub connects_before_recovery: Option<u64>,
    /// The pool's counters at the end (mcp-pool only).
    pub stats: Option<Stats>,
    /// When the shutdown began and how long it waited (the `Shutdown`
    /// scenario, mcp-pool only).
    pub shutdown: Option<(Duration, Duration)>,
    /// Every call the backend served: (server session, message).
    pub served: Vec<(Option<String>, String)>,
    /// Every result the connector served from its cache of
    /// `server/discover` and `tools/list` results (its audit log).
    pub cache_events: Vec<CacheEvent>,
}

type SimConnector = Counted<McpConnector<SimHttpClient>>;

enum Gateway {
    Pool(Pool<SimConnector>),
    Naive(NaivePool<SimConnector>),
}

impl Gateway {
    fn counted(&self) -> &SimConnector {
        match self {
            Gateway::Pool(pool) => pool.connector(),
            Gateway::Naive(pool) => pool.connector(),
        }
    }

    /// Calls the echo tool on a session of `key` (after listing the tools
    /// if `list_tools`), and returns the era of the session that served it.
    async fn call(
        &self,
        key: &SessionKey,
        message: String,
        delay: Duration,
        list_tools: bool,
    ) -> Result<SessionEra, Cause> {
        let args = rmcp::serde_json::json!({
            "message": message,
            "delay_ms": delay.as_millis() as u64,
        });
        let params = CallToolRequestParams::new("echo")
            .with_arguments(args.as_object().cloned().unwrap_or_default());
        let use_session = async |session: &McpSession| {
            if list_tools {
                session.list_all_tools().await?;
            }
            session.call_tool(params.clone()).await?;
            Ok(session.era())
        };
        match self {
            Gateway::Pool(pool) => run_with_retry(pool, key, use_session)
                .await
                .map_err(|e| Cause::of_run(&e)),
            Gateway::Naive(pool) => pool.run(key, use_session).await.map_err(|e| match e {
                NaiveError::Connect(_) => Cause::ConnectFailed,
                NaiveError::Call(e) => Cause::of_error(&e),
            }),
        }
    }
}

/// What the gateway host and the outer loop share (one thread: turmoil runs
/// every host on the caller's thread).
#[derive(Default)]
struct Shared {
    log: Vec<String>,
    calls: Vec<Call>,
    opened: u64,
    closed: u64,
    connects_before_recovery: Option<u64>,
    stats: Option<Stats>,
    shutdown: Option<(Duration, Duration)>,
    cache_events: Vec<CacheEvent>,
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn stamp(t: Duration) -> String {
    format!("{:>5}.{:03}", t.as_secs(), t.subsec_millis())
}

fn note(shared: &Rc<RefCell<Shared>>, line: String) {
    shared
        .borrow_mut()
        .log
        .push(format!("{} {line}", stamp(now())));
}

/// Runs `plan` against `subject` and reports what happened. Deterministic:
/// the same arguments give the same report (the event log byte for byte).
pub fn run(plan: &Plan, subject: Subject) -> RunReport {
    let panics = crate::panics::Capture::start();
    let shared = Rc::new(RefCell::new(Shared::default()));
    let registry = SessionRegistry::default();
    let mut errors = Vec::new();

    let mut sim = turmoil::Builder::new()
        .rng_seed(plan.seed)
        .simulation_duration(plan.duration + Duration::from_secs(60))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(plan.latency.0)
        .max_message_latency(plan.latency.1)
        .repair_rate(plan.repair_rate)
        .build();

    // The era the backend starts in next; a swap changes it and bounces it.
    let era = Rc::new(Cell::new(plan.era));
    let backend_registry = registry.clone();
    let backend_era = era.clone();
    let cache_hint = plan.cache_hint;
    sim.host(BACKEND, move || {
        let registry = backend_registry.clone();
        let era = backend_era.get();
        async move {
            // Keep-alive timers read the real clock (see `EchoConfig`).
            let mut cfg = EchoConfig::default()
                .with_allowed_host(BACKEND)
                .with_era(era)
                .with_sse_keep_alive(None);
            if let Some((ttl_ms, scope)) = cache_hint {
                cfg = cfg.with_cache_hint(ttl_ms, scope);
            }
            let listener = SimListener::bind(PORT).await?;
            serve(
                listener,
                EchoApp::with_registry(&cfg, registry),
                ServerControl::new(),
            )
            .await;
            Ok(())
        }
    });

    shared.borrow_mut().log.push(format!(
        "{} plan {plan:?} subject {subject}",
        stamp(Duration::ZERO)
    ));
    sim.client(GATEWAY, gateway(plan.clone(), subject, shared.clone()));

    let mut faults = plan.faults.iter().peekable();
    loop {
        while let Some((at, fault)) = faults.peek() {
            if sim.elapsed() < *at {
                break;
            }
            apply(&mut sim, fault, &era);
            shared
                .borrow_mut()
                .log
                .push(format!("{} fault {fault}", stamp(sim.elapsed())));
            faults.next();
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                errors.push(format!("simulation failed: {e}"));
                break;
            }
        }
    }
    drop(sim);
    errors.extend(panics.finish());

    let shared = Rc::try_unwrap(shared)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| std::mem::take(&mut *rc.borrow_mut()));
    let served = registry
        .calls()
        .into_iter()
        .filter_map(
            |CallRecord {
                 session_id,
                 message,
                 ..
             }| Some((session_id, message?)),
        )
        .collect();
    RunReport {
        plan: plan.clone(),
        subject,
        calls: shared.calls,
        log: shared.log,
        errors,
        opened: shared.opened,
        closed: shared.closed,
        connects_before_recovery: shared.connects_before_recovery,
        stats: shared.stats,
        shutdown: shared.shutdown,
        served,
        cache_events: shared.cache_events,
    }
}

fn apply(sim: &mut turmoil::Sim<'_>, fault: &Fault, era: &Cell<Era>) {
    match *fault {
        Fault::Swap(next) => {
            era.set(next);
            sim.bounce(BACKEND);
        }
        Fault::Crash => sim.crash(BACKEND),
        Fault::Bounce => sim.bounce(BACKEND),
        Fault::Partition => sim.partition(GATEWAY, BACKEND),
        Fault::Repair => sim.repair(GATEWAY, BACKEND),
        Fault::Hold => sim.hold(GATEWAY, BACKEND),
        Fault::Release => sim.release(GATEWAY, BACKEND),
        Fault::Latency(d) => sim.set_link_latency(GATEWAY, BACKEND, d),
        Fault::FailRate(p) => sim.set_fail_rate(p),
    }
}

/// The key of caller `c`: its identity, and its own affinity id if the plan
/// says so.
fn key_of(plan: &Plan, c: usize) -> (SessionKey, String) {
    let identity = c % plan.identities;
    let mut builder = SessionKey::builder(format!("http://{BACKEND}:{PORT}/mcp"))
        .bearer(&format!("token-of-tenant-{identity}"));
    let mut tag = format!("tenant-{identity}");
    if plan.affinity {
        builder = builder.affinity(format!("downstream-{c}"));
        tag.push_str(&format!("+downstream-{c}"));
    }
    (builder.build().expect("the simulated URL is valid"), tag)
}

async fn gateway(plan: Plan, subject: Subject, shared: Rc<RefCell<Shared>>) -> turmoil::Result {
    let s = plan.settings;
    let connector = Counted::new(
        McpConnector::builder()
            .request_timeout(s.request_timeout)
            .check_timeout(s.check_timeout)
            .initialize_timeout(s.connect_timeout)
            .cache_audit(true)
            .build_with_client(SimHttpClient::new(s.tcp_connect_timeout)),
    );
    let gateway = Rc::new(match subject {
        Subject::Pool => Gateway::Pool(
            Pool::builder(connector)
                .max_sessions_per_key(s.max_sessions_per_key)
                .max_sessions_total(s.max_sessions_per_key * plan.callers)
                .acquire_timeout(s.acquire_timeout)
                .connect_timeout(s.connect_timeout)
                .check_timeout(s.check_timeout)
                .check_interval(s.check_interval)
                .shutdown_timeout(s.shutdown_timeout)
                .seed(plan.seed)
                .checking(true)
                .build()?,
        ),
        Subject::Naive => Gateway::Naive(NaivePool::new(connector, s.max_sessions_per_key)),
    });

    if let Some(at) = plan.recovered_at.filter(|at| !at.is_zero()) {
        let gateway = gateway.clone();
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(at.saturating_sub(now())).await;
            shared.borrow_mut().connects_before_recovery = Some(gateway.counted().connects());
        });
    }
    if let (Some(at), Gateway::Pool(_)) = (plan.shutdown_at, &*gateway) {
        let gateway = gateway.clone();
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(at.saturating_sub(now())).await;
            let Gateway::Pool(pool) = &*gateway else {
                return;
            };
            note(&shared, "shutdown begins".into());
            let begun = now();
            let report = pool.shutdown().await;
            shared.borrow_mut().shutdown = Some((begun, report.waited));
            note(
                &shared,
                format!(
                    "shutdown done: {} closed, {} force-closed, {} closing, {} connects in flight",
                    report.closed,
                    report.force_closed.len(),
                    report.closing,
                    report.connects_in_flight
                ),
            );
        });
    }

    let callers: Vec<_> = (0..plan.callers)
        .map(|c| tokio::task::spawn_local(caller(plan.clone(), c, gateway.clone(), shared.clone())))
        .collect();
    for handle in callers {
        if let Err(e) = handle.await {
            note(&shared, format!("a caller failed: {e}"));
            return Err(format!("a caller task failed: {e}").into());
        }
    }

    let counted = gateway.counted();
    match &*gateway {
        Gateway::Pool(pool) => {
            pool.shutdown().await;
        }
        Gateway::Naive(pool) => pool.close_all().await,
    }
    // Closes run on the pool's tasks; wait for them, boundedly.
    for _ in 0..1000 {
        if counted.closes() >= counted.opened() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = {
        let mut sh = shared.borrow_mut();
        sh.opened = counted.opened();
        sh.closed = counted.closes();
        if let Gateway::Pool(pool) = &*gateway {
            sh.stats = Some(pool.metrics().stats);
        }
        sh.cache_events = counted.inner().cache_events();
        sh.calls.len()
    };
    let (cached, private) = {
        let sh = shared.borrow();
        let private = sh
            .cache_events
            .iter()
            .filter(|e| e.scope == rmcp::model::CacheScope::Private)
            .count();
        (sh.cache_events.len(), private)
    };
    let era = counted
        .inner()
        .era_of(key_of(&plan, 0).0.url())
        .map_or("unknown".to_owned(), |(era, version)| {
            format!("{era} {version}")
        });
    note(
        &shared,
        format!(
            "end: {calls} calls, {} sessions opened, {} closed, {} connects, {cached} cached results served ({private} private), era {era}",
            counted.opened(),
            counted.closes(),
            counted.connects()
        ),
    );
    Ok(())
}

async fn caller(plan: Plan, c: usize, gateway: Rc<Gateway>, shared: Rc<RefCell<Shared>>) {
    let mut draw = Draw::new(plan.seed.wrapping_mul(1_000_003).wrapping_add(c as u64));
    let (key, tag) = key_of(&plan, c);
    // Callers start a little apart, as real traffic does.
    tokio::time::sleep(draw.between(Duration::ZERO, Duration::from_millis(100))).await;
    for n in 0.. {
        let start = now();
        if start >= plan.duration {
            break;
        }
        let delay = draw.within(plan.delay);
        let give_up = plan.give_up.map(|range| draw.within(range));
        let list_tools = plan.list_tools_every.is_some_and(|every| n % every == 0);
        let call = gateway.call(&key, format!("{tag}/{c}/{n}"), delay, list_tools);
        let result = match give_up {
            Some(after) => tokio::time::timeout(after, call)
                .await
                .unwrap_or(Err(Cause::GaveUp)),
            None => call.await,
        };
        let end = now();
        let outcome = match result {
            Ok(era) => format!("ok {}ms {era}", (end - start).as_millis()),
            Err(cause) => format!("failed {cause} after {}ms", (end - start).as_millis()),
        };
        {
            let mut sh = shared.borrow_mut();
            sh.log.push(format!(
                "{} caller {c} call {n} issued {} {outcome}",
                stamp(end),
                stamp(start).trim_start()
            ));
            sh.calls.push(Call {
                caller: c,
                n,
                start,
                end,
                result,
            });
        }
        if result == Err(Cause::ShuttingDown) {
            break;
        }
        let mut pause = draw.within(plan.think);
        if result.is_err() {
            // A caller backs off a little after a failure; a failure that
            // takes no time (a session known dead) must not spin forever at
            // one simulated instant.
            pause = pause.max(FAILURE_BACKOFF);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Per-cause failure counts of `calls` (calls given up on excluded).
pub fn failures_by_cause(calls: &[Call]) -> BTreeMap<Cause, u64> {
    let mut counts = BTreeMap::new();
    for call in calls.iter().filter(|c| c.failed()) {
        if let Err(cause) = call.result {
            *counts.entry(cause).or_insert(0) += 1;
        }
    }
    counts
}

impl RunReport {
    /// The one command that replays this run and prints its event log.
    pub fn replay_command(&self) -> String {
        replay_command(self.plan.scenario, self.plan.seed, self.subject)
    }
}

/// The one command that replays `scenario` at `seed` through `subject` and
/// prints its event log.
pub fn replay_command(scenario: Scenario, seed: u64, subject: Subject) -> String {
    let naive = if subject == Subject::Naive {
        " --naive"
    } else {
        ""
    };
    format!("cargo run -p mcp-pool-cli -- sim --scenario {scenario} --seed {seed}{naive} --log")
}
