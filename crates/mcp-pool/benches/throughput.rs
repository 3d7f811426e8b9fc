//! Acquire + release throughput of mcp-pool, deadpool and bb8 in the same
//! run, with no-op connectors and pool size 16.
//!
//! Every combination of
//! - workload: `bare` (get, touch the session, give it back) and `yield`
//!   (get, yield to the runtime once while holding it, give it back);
//! - tasks: 1, 16 and 64 running operations concurrently;
//! - keys: one key, or 1,000 keys chosen at random per operation (mcp-pool
//!   holds them all in one pool; each peer gets one pool per key);
//! - mcp-pool acquired two ways, each on a pool of its own: by key
//!   (`Pool::acquire(&key)`), and through the key's `KeyPool`
//!   (`Pool::key`, found once before the run: a task picks its key's
//!   handle as it picks a peer's pool, by index);
//! - runtime: tokio multi-thread with 2 workers, and current-thread.
//!
//! Each task holds its own handle of the pool for its whole run, as a
//! caller does. Beside the pools, `no pool` runs the same tasks doing
//! everything but the pool: its throughput is the ceiling of any pool's,
//! and `no pool / deadpool` the highest ratio to deadpool a pool that cost
//! nothing could show.
//!
//! Before a combination's rounds, each pool runs it for `WARM_MS`,
//! unmeasured: with 1,000 keys a key gets another session only when two
//! callers want it at once, so how many sessions each key has (and how
//! often two workers share one) settles over millions of operations (on 2
//! workers, mcp-pool's 16 bare tasks ran 13.0 M ops/s after 1 M operations,
//! 15.4 M after 10 M); the rounds measure the settled pools.
//!
//! Criterion measures each combination in turn. Then, for the table, the
//! pools take turns (order rotated each round), with one key and with 1,000
//! keys, for `ROUNDS` rounds of `OPS` operations per combination, so load
//! from elsewhere on the machine, and the runtime's own changes of pace,
//! fall on all alike; the table shows the median ops/s of each pool
//! and the ratios mcp-pool / peer of those medians, in markdown. Last, the
//! core's own cycle (its inputs alone, no driver) is timed.
//!
//! `cargo bench -p mcp-pool` (release). `MCP_POOL_BENCH_ROUNDS` (default 7)
//! and `MCP_POOL_BENCH_OPS` (default 200000) size the table's rounds,
//! `MCP_POOL_BENCH_WARM_MS` (default 1000) the warm-up before them;
//! `MCP_POOL_BENCH_TABLE_ONLY=1` skips criterion's part;
//! `MCP_POOL_BENCH_FILTER=text` keeps the combinations whose label (as in
//! `2 workers/yield/1 key/64`) contains `text` (`text$`: ends with `text`,
//! so `1 key/1$` leaves out `1 key/16`); `MCP_POOL_BENCH_POOLS=mcp-pool`
//! (names, comma-separated) runs only those pools' rounds, for a profile.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

const POOL_SIZE: usize = 16;
const KEYS: u32 = 1_000;
const TASKS: [usize; 3] = [1, 16, 64];
/// The pools measured (mcp-pool acquired by key, mcp-pool acquired through
/// its keys' `KeyPool`s, deadpool, bb8), and `no pool`: the same tasks doing
/// everything but the pool (the key, the touch, the yield), the ceiling any
/// pool's throughput stays under.
const POOLS: [&str; 5] = ["mcp-pool", "KeyPool", "deadpool", "bb8", "no pool"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Bare,
    Yield,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Keys {
    One,
    Many,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Runtime {
    MultiThread,
    CurrentThread,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Bare => "bare",
            Workload::Yield => "yield",
        }
    }
}

impl Keys {
    fn name(self) -> &'static str {
        match self {
            Keys::One => "1 key",
            Keys::Many => "1,000 keys",
        }
    }
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::MultiThread => "2 workers",
            Runtime::CurrentThread => "current thread",
        }
    }

    fn build(self) -> tokio::runtime::Runtime {
        match self {
            Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never happens")]
struct Never;

/// mcp-pool's no-op connector.
struct Noop;

impl mcp_pool::Connector for Noop {
    type Key = u32;
    type Session = u64;
    type Error = Never;

    async fn connect(&self, _key: &u32) -> Result<u64, Never> {
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

/// A task's key sequence: the same for every pool (xorshift, seeded by the
/// task's index).
#[derive(Clone, Copy)]
struct KeyPicker {
    keys: Keys,
    state: u64,
}

impl KeyPicker {
    fn new(keys: Keys, task: usize) -> KeyPicker {
        KeyPicker {
            keys,
            state: 0x9E37_79B9_7F4A_7C15 ^ (task as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        }
    }

    fn next(&mut self) -> u32 {
        match self.keys {
            Keys::One => 0,
            Keys::Many => {
                let mut x = self.state;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.state = x;
                (x % KEYS as u64) as u32
            }
        }
    }
}

/// The three pools under test for one runtime and key count.
struct Pools {
    ours: mcp_pool::Pool<Noop>,
    /// Every key's `KeyPool`, of a pool of their own.
    keyed: Arc<Vec<mcp_pool::KeyPool<Noop>>>,
    deadpool: Arc<Vec<deadpool::managed::Pool<DeadpoolNoop>>>,
    bb8: Arc<Vec<bb8::Pool<Bb8Noop>>>,
}

impl Pools {
    fn new(rt: &tokio::runtime::Runtime, keys: Keys) -> Pools {
        let n = match keys {
            Keys::One => 1,
            Keys::Many => KEYS as usize,
        };
        rt.block_on(async {
            let mut bb8 = Vec::with_capacity(n);
            for _ in 0..n {
                bb8.push(
                    bb8::Pool::builder()
                        .max_size(POOL_SIZE as u32)
                        .build(Bb8Noop)
                        .await
                        .unwrap(),
                );
            }
            let ours = || {
                mcp_pool::Pool::builder(Noop)
                    .max_sessions_per_key(POOL_SIZE)
                    .max_sessions_total(POOL_SIZE * n)
                    .max_keys(n)
                    // A crate's tests turn the `checking` feature on for its
                    // benchmarks too: measure the product path.
                    .checking(false)
                    .build()
                    .unwrap()
            };
            let keyed = ours();
            Pools {
                ours: ours(),
                keyed: Arc::new((0..n as u32).map(|key| keyed.key(key)).collect()),
                deadpool: Arc::new(
                    (0..n)
                        .map(|_| {
                            deadpool::managed::Pool::<DeadpoolNoop>::builder(DeadpoolNoop)
                                .max_size(POOL_SIZE)
                                .build()
                                .unwrap()
                        })
                        .collect(),
                ),
                bb8: Arc::new(bb8),
            }
        })
    }
}

/// One measured combination.
#[derive(Clone, Copy, Debug)]
struct Case {
    workload: Workload,
    tasks: usize,
    keys: Keys,
}

/// A pool under test, as one task holds it: one operation is an acquire,
/// a touch of the session, a yield if `yielding`, and a release.
///
/// Each task holds its own handle for the whole batch, as a caller holds
/// its pool, so an operation bumps no reference count shared by every
/// task (which, on 2 workers, would measure that count's cache line passing
/// between the cores rather than the pool).
trait Under: Clone + Send + Sync + 'static {
    fn op(&self, key: u32, yielding: bool) -> impl Future<Output = ()> + Send + '_;
}

impl Under for mcp_pool::Pool<Noop> {
    async fn op(&self, key: u32, yielding: bool) {
        let lease = self.acquire(&key).await.unwrap();
        std::hint::black_box(*lease);
        if yielding {
            tokio::task::yield_now().await;
        }
        lease.release(mcp_pool::Outcome::Ok);
    }
}

impl Under for Arc<Vec<mcp_pool::KeyPool<Noop>>> {
    async fn op(&self, key: u32, yielding: bool) {
        let lease = self[key as usize].acquire().await.unwrap();
        std::hint::black_box(*lease);
        if yielding {
            tokio::task::yield_now().await;
        }
        lease.release(mcp_pool::Outcome::Ok);
    }
}

impl Under for Arc<Vec<deadpool::managed::Pool<DeadpoolNoop>>> {
    async fn op(&self, key: u32, yielding: bool) {
        let conn = self[key as usize].get().await.unwrap();
        std::hint::black_box(*conn);
        if yielding {
            tokio::task::yield_now().await;
        }
        drop(conn);
    }
}

impl Under for Arc<Vec<bb8::Pool<Bb8Noop>>> {
    async fn op(&self, key: u32, yielding: bool) {
        let conn = self[key as usize].get().await.unwrap();
        std::hint::black_box(*conn);
        if yielding {
            tokio::task::yield_now().await;
        }
        drop(conn);
    }
}

/// No pool at all: the key is picked and the yield made, nothing acquired.
#[derive(Clone)]
struct NoPool;

impl Under for NoPool {
    async fn op(&self, key: u32, yielding: bool) {
        std::hint::black_box(key);
        if yielding {
            tokio::task::yield_now().await;
        }
    }
}

/// Runs `ops` operations (rounded up to a multiple of `tasks`) on `pool`,
/// spread over `tasks` tasks; returns the operations run and the time they
/// took.
fn batch<P: Under>(
    rt: &tokio::runtime::Runtime,
    case: Case,
    ops: u64,
    pool: &P,
) -> (u64, Duration) {
    let per_task = ops.div_ceil(case.tasks as u64).max(1);
    let yielding = case.workload == Workload::Yield;
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..case.tasks)
            .map(|task| {
                let pool = pool.clone();
                let mut picker = KeyPicker::new(case.keys, task);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        pool.op(picker.next(), yielding).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    });
    (per_task * case.tasks as u64, elapsed)
}

impl Pools {
    /// Runs `ops` operations of `case` on pool `name`.
    fn run(
        &self,
        rt: &tokio::runtime::Runtime,
        name: &str,
        case: Case,
        ops: u64,
    ) -> (u64, Duration) {
        match name {
            "mcp-pool" => batch(rt, case, ops, &self.ours),
            "KeyPool" => batch(rt, case, ops, &self.keyed),
            "deadpool" => batch(rt, case, ops, &self.deadpool),
            "bb8" => batch(rt, case, ops, &self.bb8),
            "no pool" => batch(rt, case, ops, &NoPool),
            _ => unreachable!("unknown pool {name}"),
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// Whether `MCP_POOL_BENCH_FILTER` keeps this combination.
fn selected(runtime: Runtime, case: Case) -> bool {
    let label = format!(
        "{}/{}/{}/{}",
        runtime.name(),
        case.workload.name(),
        case.keys.name(),
        case.tasks
    );
    std::env::var("MCP_POOL_BENCH_FILTER").map_or(true, |f| match f.strip_suffix('$') {
        Some(whole) => label.ends_with(whole),
        None => label.contains(&f),
    })
}

/// Whether `MCP_POOL_BENCH_POOLS` (comma-separated names; all if unset)
/// keeps this pool in the table's rounds (for profiling one pool alone).
fn pool_selected(name: &str) -> bool {
    std::env::var("MCP_POOL_BENCH_POOLS").map_or(true, |f| f.split(',').any(|p| p.trim() == name))
}

fn cases(keys: Keys) -> impl Iterator<Item = Case> {
    [Workload::Bare, Workload::Yield]
        .into_iter()
        .flat_map(move |workload| {
            TASKS.into_iter().map(move |tasks| Case {
                workload,
                tasks,
                keys,
            })
        })
}

/// One row of the table: a combination and each pool's median ops/s.
struct Row {
    runtime: Runtime,
    case: Case,
    median: [f64; 5],
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Criterion's part, then the interleaved rounds of every combination on
/// this runtime.
/// How much the table runs of each combination.
#[derive(Clone, Copy)]
struct Sizes {
    /// Measured rounds per pool.
    rounds: u64,
    /// Operations per round.
    ops: u64,
    /// How long each pool runs the combination, unmeasured, before its
    /// rounds.
    warm: Duration,
}

fn measure(c: &mut Criterion, runtime: Runtime, criterion: bool, sizes: Sizes) -> Vec<Row> {
    let Sizes { rounds, ops, warm } = sizes;
    let rt = runtime.build();
    let sets: Vec<(Keys, Pools)> = [Keys::One, Keys::Many]
        .into_iter()
        .map(|keys| (keys, Pools::new(&rt, keys)))
        .collect();
    for (keys, pools) in &sets {
        // Warm every key of every pool once, so no round pays for connects.
        for name in POOLS {
            let case = Case {
                workload: Workload::Bare,
                tasks: 16,
                keys: *keys,
            };
            pools.run(&rt, name, case, 20_000);
        }
        if criterion {
            for case in cases(*keys).filter(|&case| selected(runtime, case)) {
                let mut group = c.benchmark_group(format!(
                    "{}/{}/tasks={}/{}",
                    runtime.name().replace(' ', "-"),
                    case.workload.name(),
                    case.tasks,
                    keys.name().replace([' ', ','], "")
                ));
                group.throughput(Throughput::Elements(1));
                for name in POOLS {
                    group.bench_function(name, |b| {
                        b.iter_custom(|iters| {
                            let (ran, time) = pools.run(&rt, name, case, iters);
                            time.mul_f64(iters as f64 / ran as f64)
                        })
                    });
                }
                group.finish();
            }
        }
    }
    // A combination's one-key and 1,000-key rounds take turns too, so a
    // change of the runtime's pace during the run falls on both alike
    // (the ratio of the two is in the table).
    let mut rows: Vec<Vec<Row>> = sets.iter().map(|_| Vec::new()).collect();
    for base in cases(Keys::One) {
        let turns: Vec<(usize, Case, usize)> = sets
            .iter()
            .enumerate()
            .map(|(set, (keys, _))| {
                (
                    set,
                    Case {
                        keys: *keys,
                        ..base
                    },
                )
            })
            .filter(|&(_, case)| selected(runtime, case))
            .flat_map(|(set, case)| {
                (0..POOLS.len())
                    .filter(|&at| pool_selected(POOLS[at]))
                    .map(move |at| (set, case, at))
            })
            .collect();
        if turns.is_empty() {
            continue;
        }
        // Until the pools settle: with 1,000 keys a key gets another
        // session only when two callers want it at once.
        for &(set, case, at) in &turns {
            let mut warmed = Duration::ZERO;
            while warmed < warm {
                warmed += sets[set].1.run(&rt, POOLS[at], case, ops).1;
            }
        }
        let mut rates: Vec<[Vec<f64>; 5]> = sets.iter().map(|_| Default::default()).collect();
        for round in 0..rounds as usize {
            for i in 0..turns.len() {
                let (set, case, at) = turns[(round + i) % turns.len()];
                let (ran, time) = sets[set].1.run(&rt, POOLS[at], case, ops);
                rates[set][at].push(ran as f64 / time.as_secs_f64());
            }
        }
        for (set, rates) in rates.into_iter().enumerate() {
            if turns.iter().any(|&(s, _, _)| s == set) {
                rows[set].push(Row {
                    runtime,
                    case: Case {
                        keys: sets[set].0,
                        ..base
                    },
                    median: rates.map(median),
                });
            }
        }
    }
    for (keys, pools) in &sets {
        let m = pools.ours.metrics();
        eprintln!(
            "mcp-pool on {}, {}: {} acquires, {} granted at once, {} after waiting, {} connects",
            runtime.name(),
            keys.name(),
            m.stats.acquires,
            m.stats.hits,
            m.stats.misses,
            m.stats.connects
        );
        rt.block_on(pools.ours.shutdown());
        if let Some(keyed) = pools.keyed.first() {
            rt.block_on(keyed.pool().shutdown());
        }
    }
    rows.into_iter().flatten().collect()
}

/// The core's own cycle, single-threaded, no driver: a warm hit (acquire,
/// grant, release) and a release that grants the head of 48 queued callers
/// followed by one more acquire; in ns per cycle.
fn core_cycle() -> (f64, f64) {
    use mcp_pool_core::{Action, Config, Outcome, Pool, Time};
    const N: u64 = 300_000;
    let config = Config {
        max_sessions_per_key: POOL_SIZE,
        max_sessions_total: POOL_SIZE,
        lanes: false,
        ..Config::default()
    };
    let per_op = |start: Instant| start.elapsed().as_nanos() as f64 / N as f64;

    let mut pool: Pool<u32> = Pool::new(config.clone()).unwrap();
    let mut now = Time::ZERO;
    pool.acquire(&0, None, now).unwrap();
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
        pool.acquire(&0, None, now).unwrap();
        let Some(Action::Grant { lease, .. }) = pool.poll_action() else {
            panic!("a grant")
        };
        pool.release(std::hint::black_box(lease), Outcome::Ok, now)
            .unwrap();
    }
    let hit = per_op(start);

    let mut pool: Pool<u32> = Pool::new(config).unwrap();
    let mut leases = std::collections::VecDeque::new();
    for _ in 0..POOL_SIZE {
        pool.acquire(&0, None, now).unwrap();
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
        pool.acquire(&0, None, now).unwrap();
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
        pool.acquire(&0, None, now).unwrap();
    }
    (hit, per_op(start))
}

fn table(rows: &[Row], rounds: u64, ops: u64) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "acquire + release, no-op connectors, pool size {POOL_SIZE} per key, {cores} cores; \
         median of {rounds} interleaved rounds of {ops} operations per pool"
    );
    println!();
    println!(
        "| runtime | workload | keys | tasks | mcp-pool ops/s | deadpool ops/s | bb8 ops/s | vs deadpool | vs bb8 | KeyPool ops/s | KeyPool vs deadpool | KeyPool vs bb8 | no pool ops/s | no pool vs deadpool |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let [ours, keyed, dp, b8, none] = row.median;
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} |",
            row.runtime.name(),
            row.case.workload.name(),
            row.case.keys.name(),
            row.case.tasks,
            ours,
            dp,
            b8,
            ours / dp,
            ours / b8,
            keyed,
            keyed / dp,
            keyed / b8,
            none,
            none / dp
        );
    }
    println!();
    println!("mcp-pool with 1,000 keys / with one key (same runtime, workload, tasks):");
    println!();
    println!("| runtime | workload | tasks | by key | KeyPool |");
    println!("|---|---|---|---|---|");
    for many in rows.iter().filter(|r| r.case.keys == Keys::Many) {
        if let Some(one) = rows.iter().find(|r| {
            r.case.keys == Keys::One
                && r.runtime == many.runtime
                && r.case.workload == many.case.workload
                && r.case.tasks == many.case.tasks
        }) {
            println!(
                "| {} | {} | {} | {:.3} | {:.3} |",
                many.runtime.name(),
                many.case.workload.name(),
                many.case.tasks,
                many.median[0] / one.median[0],
                many.median[1] / one.median[1]
            );
        }
    }
    let (hit, queued) = core_cycle();
    println!();
    println!(
        "core cycle (inputs alone, no driver): {hit:.0} ns per warm acquire + release; \
         {queued:.0} ns per release granting the head of 48 queued callers + one acquire"
    );
}

fn main() {
    let rounds = env_u64("MCP_POOL_BENCH_ROUNDS", 7);
    let ops = env_u64("MCP_POOL_BENCH_OPS", 200_000);
    let criterion = std::env::var_os("MCP_POOL_BENCH_TABLE_ONLY").is_none();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let sizes = Sizes {
        rounds,
        ops,
        warm: Duration::from_millis(env_u64("MCP_POOL_BENCH_WARM_MS", 1_000)),
    };
    let mut rows = measure(&mut c, Runtime::MultiThread, criterion, sizes);
    rows.extend(measure(&mut c, Runtime::CurrentThread, criterion, sizes));
    if criterion {
        c.final_summary();
    }
    table(&rows, rounds, ops);
}
