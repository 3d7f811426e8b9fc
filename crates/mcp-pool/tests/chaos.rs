//! The driver against connectors and runtimes that misbehave: a connector
//! that panics in each of its methods, a pool whose runtime is dropped, an
//! upkeep task that never runs. Nothing hangs (every wait is bounded here),
//! nothing leaks (`connects == closes + live`, counted on the connector's
//! side and the pool's), nothing aborts (the test process survives).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mcp_pool::{AcquireError, ConnectError, ConnectFailure, Connector, Outcome, Pool, RunError};

/// Where the connector panics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Panics {
    Nowhere,
    Connect,
    Check,
    IsClosed,
    Classify,
    ClassifyConnect,
    Close,
    Notification,
    NotificationFuture,
    Abort,
}

const EVERY_METHOD: [Panics; 9] = [
    Panics::Connect,
    Panics::Check,
    Panics::IsClosed,
    Panics::Classify,
    Panics::ClassifyConnect,
    Panics::Close,
    Panics::Notification,
    Panics::NotificationFuture,
    Panics::Abort,
];

#[derive(Debug, thiserror::Error)]
#[error("chaos: {0}")]
struct ChaosError(&'static str);

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    attempts: AtomicU64,
    connects: AtomicU64,
    closes: AtomicU64,
    panics: AtomicU64,
}

/// A connector whose every third call of one method panics, whose every
/// fifth connect fails, and whose every seventh session dies after a while.
struct Chaos {
    panics_in: Panics,
    counts: Arc<Counts>,
    connect_delay: Duration,
}

struct Session {
    id: u64,
    dead: Arc<AtomicBool>,
}

impl Chaos {
    fn new(panics_in: Panics) -> (Chaos, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        let chaos = Chaos {
            panics_in,
            counts: counts.clone(),
            connect_delay: Duration::from_millis(1),
        };
        (chaos, counts)
    }

    /// Panics on every third call of `method`, if it is the chosen one.
    fn maybe_panic(&self, method: Panics) {
        if self.panics_in == method {
            let n = self.counts.calls.fetch_add(1, Ordering::SeqCst);
            if n % 3 == 1 {
                self.counts.panics.fetch_add(1, Ordering::SeqCst);
                panic!("chaos: {method:?} panics");
            }
        }
    }
}

impl Connector for Chaos {
    type Key = u8;
    type Session = Session;
    type Error = ChaosError;

    async fn connect(&self, _key: &u8) -> Result<Session, ChaosError> {
        tokio::time::sleep(self.connect_delay).await;
        self.maybe_panic(Panics::Connect);
        let id = self.counts.attempts.fetch_add(1, Ordering::SeqCst);
        if id % 5 == 4 {
            return Err(ChaosError("refused"));
        }
        self.counts.connects.fetch_add(1, Ordering::SeqCst);
        Ok(Session {
            id,
            dead: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn check(&self, session: &Session) -> Result<(), ChaosError> {
        self.maybe_panic(Panics::Check);
        if session.dead.load(Ordering::SeqCst) {
            return Err(ChaosError("dead"));
        }
        Ok(())
    }

    fn is_closed(&self, session: &Session) -> bool {
        self.maybe_panic(Panics::IsClosed);
        session.dead.load(Ordering::SeqCst)
    }

    fn classify(&self, _error: &ChaosError) -> Outcome {
        self.maybe_panic(Panics::Classify);
        Outcome::ApplicationError
    }

    fn classify_connect(&self, _error: &ChaosError) -> ConnectFailure {
        self.maybe_panic(Panics::ClassifyConnect);
        ConnectFailure::Failed
    }

    async fn close(&self, _session: Session) {
        self.counts.closes.fetch_add(1, Ordering::SeqCst);
        self.maybe_panic(Panics::Close);
    }

    fn closed_notification(
        &self,
        session: &Session,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.maybe_panic(Panics::Notification);
        let dead = session.dead.clone();
        let dies = session.id % 7 == 6;
        let panics = self.panics_in == Panics::NotificationFuture && session.id % 3 == 1;
        let counts = self.counts.clone();
        Some(async move {
            if dies || panics {
                tokio::time::sleep(Duration::from_millis(20)).await;
                dead.store(true, Ordering::SeqCst);
                if panics {
                    counts.panics.fetch_add(1, Ordering::SeqCst);
                    panic!("chaos: the closed-notification panics");
                }
                return;
            }
            std::future::pending::<()>().await
        })
    }

    fn abort(&self, session: &Session) {
        session.dead.store(true, Ordering::SeqCst);
        self.maybe_panic(Panics::Abort);
    }
}

/// Keeps the expected panics of the chaos connector out of the test output
/// (any other panic is reported as usual).
fn quiet_chaos_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !text.starts_with("chaos:") {
                default(info);
            }
        }));
    });
}

/// A generous bound on anything a test waits for.
const HANG: Duration = Duration::from_secs(10);

fn pool_of(chaos: Chaos) -> Pool<Chaos> {
    Pool::builder(chaos)
        .max_sessions_per_key(3)
        .max_sessions_total(6)
        .acquire_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(200))
        .check_timeout(Duration::from_millis(50))
        .check_interval(Duration::from_millis(30))
        .breaker_failure_threshold(u32::MAX)
        .close_timeout(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_millis(50))
        .build()
        .expect("a valid pool")
}

/// Many calls with every outcome by 8 callers on 2 keys; every call ends.
async fn churn(pool: &Pool<Chaos>, rounds: u64) {
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..8u64 {
        let pool = pool.clone();
        tasks.spawn(async move {
            for round in 0..rounds {
                if caller == 0 && round % 8 == 7 {
                    // New sessions now and then, so connects keep happening.
                    pool.drain();
                }
                let key = (caller % 2) as u8;
                let pick = (caller * 31 + round * 7) % 6;
                let call = pool.run(&key, async |s: &Session| {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    match pick {
                        0 => Err(ChaosError("the tool failed")),
                        _ if s.dead.load(Ordering::SeqCst) => Err(ChaosError("transport")),
                        _ => Ok(()),
                    }
                });
                if pick == 5 {
                    // Give up mid-call: the lease is dropped as Cancelled.
                    let _ = tokio::time::timeout(Duration::from_micros(500), call).await;
                } else {
                    let _ = tokio::time::timeout(HANG, call).await.expect("a call hung");
                }
            }
        });
    }
    tokio::time::timeout(HANG * 3, tasks.join_all())
        .await
        .expect("the callers hung");
}

/// The pool's and the connector's counts agree and nothing is left open.
async fn assert_nothing_leaks(pool: &Pool<Chaos>, counts: &Counts, what: Panics) {
    let report = tokio::time::timeout(HANG, pool.shutdown())
        .await
        .expect("shutdown hung");
    // Closes still running after the grace period finish on their own.
    for _ in 0..200 {
        let m = pool.metrics();
        if m.stats.connected == m.stats.closes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = pool.metrics();
    assert_eq!(
        m.stats.connected, m.stats.closes,
        "{what:?}: {m:?} {report:?}"
    );
    assert_eq!(m.live, 0, "{what:?}: {m:?}");
    assert_eq!(
        counts.connects.load(Ordering::SeqCst),
        counts.closes.load(Ordering::SeqCst),
        "{what:?}: the connector saw a session never closed"
    );
    assert_eq!(counts.connects.load(Ordering::SeqCst), m.stats.connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_panics_in_any_method_loses_nothing() {
    quiet_chaos_panics();
    for what in EVERY_METHOD {
        let (chaos, counts) = Chaos::new(what);
        let pool = pool_of(chaos);
        churn(&pool, 40).await;
        if what == Panics::Abort {
            // Leases still out when the grace period ends are aborted.
            let mut held = Vec::new();
            for key in [0, 1, 1, 0] {
                let lease = tokio::time::timeout(HANG, pool.acquire(&key))
                    .await
                    .expect("acquire hung");
                held.extend(lease.ok());
            }
            assert!(held.len() >= 3, "{} leases", held.len());
            let report = pool.shutdown().await;
            assert_eq!(report.force_closed.len(), held.len(), "{report:?}");
            drop(held);
        }
        assert!(
            counts.panics.load(Ordering::SeqCst) > 0,
            "{what:?} never panicked: the test proves nothing"
        );
        assert_nothing_leaks(&pool, &counts, what).await;
        // The pool is still sound: no earlier panic poisoned it.
        let _ = pool.metrics();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_behaves_loses_nothing_either() {
    let (chaos, counts) = Chaos::new(Panics::Nowhere);
    let pool = pool_of(chaos);
    churn(&pool, 40).await;
    assert_eq!(counts.panics.load(Ordering::SeqCst), 0);
    assert_nothing_leaks(&pool, &counts, Panics::Nowhere).await;
}

/// A connect whose task is dropped with its runtime is reported as failed:
/// its slot comes back, and callers in another runtime are served.
#[test]
fn a_pool_whose_runtime_is_dropped_keeps_serving_from_another() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut chaos, counts) = Chaos::new(Panics::Nowhere);
    chaos.connect_delay = Duration::from_secs(30);
    let pool = first.block_on(async {
        let pool = pool_of(chaos);
        // A connect starts and hangs on this runtime; its caller gives up.
        let _ = tokio::time::timeout(Duration::from_millis(20), pool.acquire(&0)).await;
        assert_eq!(pool.metrics().stats.connects, 1);
        pool
    });
    drop(first);
    let m = pool.metrics();
    assert_eq!(
        m.stats.connect_failures, 1,
        "the connect that never finished was reported failed: {m:?}"
    );
    assert_eq!(m.live, 0, "its slot came back: {m:?}");

    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        // A failed connect is answered promptly, not at the connect timeout:
        // the connector is still the slow one, so time it out quickly.
        let started = tokio::time::Instant::now();
        let r = pool
            .acquire_until(&1, tokio::time::Instant::now() + Duration::from_millis(250))
            .await;
        assert!(r.is_err(), "the slow connect cannot succeed in time");
        assert!(started.elapsed() < Duration::from_secs(5), "acquire hung");
        let report = tokio::time::timeout(HANG, pool.shutdown())
            .await
            .expect("shutdown hung");
        let _ = report;
    });
    let _ = counts;
}

/// The upkeep task is gone with its runtime: the next acquire starts a new
/// one on its own runtime, which watches every live session again.
#[test]
fn an_upkeep_task_that_died_is_restarted_and_watches_again() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (chaos, counts) = Chaos::new(Panics::Nowhere);
    let (pool, dead) = first.block_on(async {
        let pool = pool_of(chaos);
        let lease = pool.acquire(&0).await.unwrap();
        let dead = lease.dead.clone();
        lease.release(Outcome::Ok);
        (pool, dead)
    });
    drop(first);
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        // Another key's acquire restarts the upkeep task.
        let other = tokio::time::timeout(HANG, pool.acquire(&1))
            .await
            .expect("acquire hung")
            .expect("served");
        other.release(Outcome::Ok);
        // The idle session of key 0 dies: the new task sees it.
        dead.store(true, Ordering::SeqCst);
        // The chaos notification only fires for sessions it chose to kill;
        // a keepalive check finds this one dead instead.
        for _ in 0..200 {
            if pool.metrics().stats.checks_failed > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let m = pool.metrics();
        assert!(
            m.stats.checks_failed > 0,
            "the restarted upkeep task runs keepalive checks: {m:?}"
        );
        assert_nothing_leaks(&pool, &counts, Panics::Nowhere).await;
    });
}

/// A pool whose upkeep task exists but never runs (its runtime is alive
/// and blocked): a waiting caller is answered at its deadline all the same.
#[test]
fn a_caller_is_answered_at_its_deadline_when_the_upkeep_task_cannot_run() {
    let (built_tx, built_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let blocked = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (chaos, _counts) = Chaos::new(Panics::Nowhere);
        let pool = rt.block_on(async {
            Pool::builder(chaos)
                .max_sessions_per_key(1)
                .build()
                .expect("a valid pool")
        });
        built_tx.send(pool).unwrap();
        // The runtime stays alive but never runs again until released.
        let _ = release_rx.recv();
        drop(rt);
    });
    let pool = built_rx.recv().unwrap();
    let other = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    other.block_on(async {
        let held = tokio::time::timeout(HANG, pool.acquire(&0))
            .await
            .expect("acquire hung")
            .expect("served");
        let started = tokio::time::Instant::now();
        let waited = tokio::time::timeout(
            HANG,
            pool.acquire_until(&0, tokio::time::Instant::now() + Duration::from_millis(200)),
        )
        .await
        .expect("a waiting caller outlived its deadline");
        assert!(
            matches!(waited, Err(AcquireError::TimedOut { .. })),
            "{waited:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(pool.metrics().waiting, 0, "the waiter is gone");
        held.release(Outcome::Ok);
    });
    release_tx.send(()).unwrap();
    blocked.join().unwrap();
}

/// The errors a refused connect produces name its cause, for every caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_errors_carry_the_connect_cause() {
    let (chaos, _counts) = Chaos::new(Panics::Nowhere);
    let pool = pool_of(chaos);
    let mut saw = false;
    for _ in 0..20 {
        if let Err(RunError::Acquire(e)) = pool
            .run(&0, async |_s: &Session| Ok::<_, ChaosError>(()))
            .await
        {
            if let Some(ConnectError::Failed(cause)) = e.connect_failure() {
                assert!(e.to_string().contains(&cause.to_string()), "{e}");
                saw = true;
            }
        }
        // Use up the pooled sessions so connects keep happening.
        pool.drain();
    }
    assert!(saw, "no connect failed in 20 tries");
}
