//! Acquire + release throughput of mcp-pool, deadpool and bb8 in the same
//! run: no-op connectors, one key, pool size 16, 1 / 16 / 64 concurrent tasks
//! on a 2-worker tokio runtime. Each operation acquires a session, yields
//! once while holding it (a use that awaits), and gives it back.
//!
//! Criterion measures each pool and concurrency in turn; then the three
//! pools take turns in short batches and the table at the end (ops/s and the
//! ratios mcp-pool/deadpool and mcp-pool/bb8) is computed from those, so that
//! load from elsewhere on the machine cannot favour one pool. Last, the parts
//! of an operation the driver cannot avoid are timed alone (the core's input
//! and a clock read).
//!
//! `cargo bench -p mcp-pool` (release).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

const POOL_SIZE: usize = 16;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
const POOLS: [&str; 3] = ["mcp-pool", "deadpool", "bb8"];

#[derive(Debug, thiserror::Error)]
#[error("never happens")]
struct Never;

/// mcp-pool's no-op connector.
struct Noop;

impl mcp_pool::Connector for Noop {
    type Key = &'static str;
    type Session = u64;
    type Error = Never;

    async fn connect(&self, _key: &&'static str) -> Result<u64, Never> {
        Ok(0)
    }
    async fn check(&self, _session: &u64) -> Result<(), Never> {
        Ok(())
    }
    fn is_closed(&self, _session: &u64) -> bool {
        false
    }
    fn classify(&self, _error: &Never) -> mcp_pool::Outcome {
        mcp_pool::Outcome::TransportError
    }
    async fn close(&self, _session: u64) {}
}

/// deadpool's no-op manager.
struct DeadpoolNoop;

impl deadpool::managed::Manager for DeadpoolNoop {
    type Type = u64;
    type Error = Never;

    async fn create(&self) -> Result<u64, Never> {
        Ok(0)
    }
    async fn recycle(
        &self,
        _conn: &mut u64,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Never> {
        Ok(())
    }
}

/// bb8's no-op manager.
struct Bb8Noop;

impl bb8::ManageConnection for Bb8Noop {
    type Connection = u64;
    type Error = Never;

    async fn connect(&self) -> Result<u64, Never> {
        Ok(0)
    }
    async fn is_valid(&self, _conn: &mut u64) -> Result<(), Never> {
        Ok(())
    }
    fn has_broken(&self, _conn: &mut u64) -> bool {
        false
    }
}

/// (pool, tasks) -> (operations, time) over every measured batch.
type Tally = Arc<Mutex<BTreeMap<(&'static str, usize), (u64, Duration)>>>;

/// Runs `iters` operations (rounded up to a multiple of `tasks`) spread over
/// `tasks` tasks and returns the time `iters` of them took.
fn batch<F, Fut>(
    rt: &tokio::runtime::Runtime,
    tally: &Tally,
    pool: &'static str,
    tasks: usize,
    iters: u64,
    op: F,
) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(tasks as u64).max(1);
    let ops = per_task * tasks as u64;
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let op = op.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        op().await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    });
    let mut t = tally.lock().unwrap();
    let entry = t.entry((pool, tasks)).or_default();
    entry.0 += ops;
    entry.1 += elapsed;
    elapsed.mul_f64(iters as f64 / ops as f64)
}

/// The three pools under test, built on `rt`.
struct Pools {
    ours: mcp_pool::Pool<Noop>,
    deadpool: deadpool::managed::Pool<DeadpoolNoop>,
    bb8: bb8::Pool<Bb8Noop>,
}

impl Pools {
    fn new(rt: &tokio::runtime::Runtime) -> Pools {
        rt.block_on(async {
            Pools {
                ours: mcp_pool::Pool::builder(Noop)
                    .max_sessions_per_key(POOL_SIZE)
                    .max_sessions_total(POOL_SIZE)
                    // A crate's tests turn the `checking` feature on for its
                    // benchmarks too: measure the product path.
                    .checking(false)
                    .build()
                    .unwrap(),
                deadpool: deadpool::managed::Pool::<DeadpoolNoop>::builder(DeadpoolNoop)
                    .max_size(POOL_SIZE)
                    .build()
                    .unwrap(),
                bb8: bb8::Pool::builder()
                    .max_size(POOL_SIZE as u32)
                    .build(Bb8Noop)
                    .await
                    .unwrap(),
            }
        })
    }

    /// Runs `iters` operations on pool `name` with `tasks` tasks.
    fn run(
        &self,
        rt: &tokio::runtime::Runtime,
        tally: &Tally,
        name: &'static str,
        tasks: usize,
        iters: u64,
    ) -> Duration {
        match name {
            "mcp-pool" => {
                let pool = self.ours.clone();
                batch(rt, tally, name, tasks, iters, move || {
                    let pool = pool.clone();
                    async move {
                        let lease = pool.acquire(&"server").await.unwrap();
                        tokio::task::yield_now().await;
                        lease.release(mcp_pool::Outcome::Ok);
                    }
                })
            }
            "deadpool" => {
                let pool = self.deadpool.clone();
                batch(rt, tally, name, tasks, iters, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.get().await.unwrap();
                        tokio::task::yield_now().await;
                        drop(conn);
                    }
                })
            }
            "bb8" => {
                let pool = self.bb8.clone();
                batch(rt, tally, name, tasks, iters, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.get().await.unwrap();
                        tokio::task::yield_now().await;
                        drop(conn);
                    }
                })
            }
            _ => unreachable!("unknown pool {name}"),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Criterion's measurement: one benchmark per pool and concurrency.
fn throughput(c: &mut Criterion, rt: &tokio::runtime::Runtime, pools: &Pools) {
    let tally = Tally::default();
    for tasks in CONCURRENCY {
        let mut group = c.benchmark_group(format!("acquire_release/tasks={tasks}"));
        group.throughput(Throughput::Elements(1));
        for name in POOLS {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| pools.run(rt, &tally, name, tasks, iters))
            });
        }
        group.finish();
    }
}

/// The table's measurement: the three pools take turns in short batches
/// (order rotated each round), so load from elsewhere on the machine falls
/// on all three alike and the ratios stay meaningful.
fn interleaved(rt: &tokio::runtime::Runtime, pools: &Pools) -> Tally {
    const ROUNDS: usize = 15;
    const OPS_PER_BATCH: u64 = 40_000;
    let tally = Tally::default();
    for tasks in CONCURRENCY {
        for round in 0..ROUNDS {
            for i in 0..POOLS.len() {
                let name = POOLS[(round + i) % POOLS.len()];
                pools.run(rt, &tally, name, tasks, OPS_PER_BATCH);
            }
        }
    }
    tally
}

fn summary(tally: &Tally) {
    let t = tally.lock().unwrap();
    let rate = |pool: &'static str, tasks: usize| {
        t.get(&(pool, tasks))
            .map(|(ops, time)| *ops as f64 / time.as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "acquire+release throughput, pool size {POOL_SIZE}, no-op connectors, \
         tokio multi-thread (2 workers), {cores} cores; pools interleaved in \
         batches of 40,000 operations, 15 rounds"
    );
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>10} {:>10}",
        "tasks", "mcp-pool/s", "deadpool/s", "bb8/s", "/deadpool", "/bb8"
    );
    for tasks in CONCURRENCY {
        let [ours, dp, b8] = POOLS.map(|p| rate(p, tasks));
        println!(
            "{tasks:>6} {ours:>14.0} {dp:>14.0} {b8:>14.0} {:>10.2} {:>10.2}",
            ours / dp,
            ours / b8
        );
    }
}

/// What one operation costs in the parts the driver cannot avoid, measured
/// alone, single-threaded: the core's input for a warm hit (acquire, grant, release), the
/// core's input with 48 callers queued behind 16 leased sessions (release
/// grants the head waiter, acquire queues one more), and one read of tokio's
/// clock (the driver reads it once per input).
fn limits(rt: &tokio::runtime::Runtime) {
    use mcp_pool_core::{Action, Config, Outcome, Pool, Time};
    const N: u64 = 300_000;
    let config = Config {
        max_sessions_per_key: POOL_SIZE,
        max_sessions_total: POOL_SIZE,
        ..Config::default()
    };
    let per_op = |start: Instant| start.elapsed().as_nanos() as f64 / N as f64;

    let mut pool: Pool<&'static str> = Pool::new(config.clone()).unwrap();
    let mut now = Time::ZERO;
    pool.acquire(&"server", None, now).unwrap();
    let Some(Action::Connect { session, .. }) = pool.poll_action() else {
        panic!("a connect")
    };
    pool.connected(session, Ok(()), now).unwrap();
    let Some(Action::Grant { lease, .. }) = pool.poll_action() else {
        panic!("a grant")
    };
    pool.release(lease, Outcome::Ok, now).unwrap();
    let start = Instant::now();
    for _ in 0..N {
        now = now + Duration::from_nanos(500);
        pool.acquire(&"server", None, now).unwrap();
        let Some(Action::Grant { lease, .. }) = pool.poll_action() else {
            panic!("a grant")
        };
        pool.release(std::hint::black_box(lease), Outcome::Ok, now)
            .unwrap();
    }
    let hit = per_op(start);

    let mut pool: Pool<&'static str> = Pool::new(config).unwrap();
    let mut leases = std::collections::VecDeque::new();
    for _ in 0..POOL_SIZE {
        pool.acquire(&"server", None, now).unwrap();
    }
    while let Some(action) = pool.poll_action() {
        if let Action::Connect { session, .. } = action {
            pool.connected(session, Ok(()), now).unwrap();
        }
        if let Action::Grant { lease, .. } = action {
            leases.push_back(lease);
        }
    }
    for _ in 0..48 {
        pool.acquire(&"server", None, now).unwrap();
    }
    let start = Instant::now();
    for _ in 0..N {
        now = now + Duration::from_nanos(500);
        let lease = leases.pop_front().unwrap();
        pool.release(lease, Outcome::Ok, now).unwrap();
        let Some(Action::Grant { lease, .. }) = pool.poll_action() else {
            panic!("the head waiter is granted")
        };
        leases.push_back(lease);
        pool.acquire(&"server", None, now).unwrap();
    }
    let queued = per_op(start);

    let clock = rt.block_on(async {
        let start = Instant::now();
        let mut sink = tokio::time::Instant::now();
        for _ in 0..N {
            sink = std::hint::black_box(tokio::time::Instant::now());
        }
        std::hint::black_box(sink);
        per_op(start)
    });
    let start = Instant::now();
    let mut sink = Instant::now();
    for _ in 0..N {
        sink = std::hint::black_box(Instant::now());
    }
    std::hint::black_box(sink);
    let std_clock = per_op(start);
    println!(
        "limits, per operation: core hit cycle {hit:.0} ns; core cycle with 48 queued \
         callers {queued:.0} ns; one clock read {clock:.0} ns on tokio's clock \
         ({std_clock:.0} ns on std's); the driver reads the clock once per input, \
         twice per acquire+release"
    );
}

fn main() {
    let rt = runtime();
    let pools = Pools::new(&rt);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    throughput(&mut c, &rt, &pools);
    c.final_summary();
    let tally = interleaved(&rt, &pools);
    summary(&tally);
    let m = pools.ours.metrics();
    println!(
        "mcp-pool over the run: {} grants ({} at once, {} after waiting), {} connects, {} checks",
        m.stats.grants, m.stats.hits, m.stats.misses, m.stats.connects, m.stats.checks
    );
    limits(&rt);
}
