//! The long random runs and the races of real threads, audited throughout.

use super::*;

/// 10,000 acquire/release cycles by concurrent callers over three keys with
/// random outcomes, dropped calls and acquires, dying transports, failing
/// connects and checks, all audited: at the end every connect is closed or
/// still live, no lease or waiter is left, and shutdown closes everything.
#[tokio::test(start_paused = true)]
async fn ten_thousand_random_cycles_leak_nothing() {
    random_cycles(Fake::blind(), 7).await;
}

/// The same with transports that report their death (`is_closed` and
/// closed-notifications).
#[tokio::test(start_paused = true)]
async fn ten_thousand_random_cycles_with_closed_notifications() {
    random_cycles(Fake::seeing(true), 11).await;
}

async fn random_cycles(fake: Fake, seed: u64) {
    const TASKS: u64 = 8;
    const CYCLES: u64 = 10_000;
    fake.set_flaky(seed, 10, 10);
    fake.set_connect_delay(ms(2));
    let pool = build(&fake, |b| {
        b.max_sessions_per_key(3)
            .max_sessions_total(7)
            .acquire_timeout(ms(50))
            .connect_timeout(ms(20))
            .check_timeout(ms(20))
            .check_interval(ms(40))
            .idle_timeout(Some(ms(100)))
            .max_lifetime(Some(ms(400)))
            .lifetime_jitter(ms(50))
            .breaker_failure_threshold(3)
            .breaker_base_cooldown(ms(5))
            .breaker_max_cooldown(ms(40))
            .shutdown_timeout(Duration::from_secs(1))
    });
    let failed: Arc<Mutex<std::collections::HashSet<u64>>> = Arc::default();
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let (pool, fake, failed) = (pool.clone(), fake.clone(), failed.clone());
        tasks.spawn(async move {
            let mut rng = Rng::new(seed * 100 + t);
            for _ in 0..CYCLES / TASKS {
                let key: &'static str = ["a", "b", "c"][rng.below(3) as usize];
                if rng.chance(2) {
                    fake.kill_one(rng.next());
                }
                if rng.chance(2) {
                    // Stay away long enough for idle sessions to expire.
                    tokio::time::sleep(ms(150)).await;
                }
                let acquire = pool.acquire(&key);
                let lease = if rng.chance(5) {
                    // Give up early, maybe mid-wait.
                    match tokio::time::timeout(ms(rng.below(3)), acquire).await {
                        Ok(r) => r,
                        Err(_) => continue,
                    }
                } else {
                    acquire.await
                };
                let Ok(lease) = lease else { continue };
                assert_eq!(lease.key, key, "a session of another key");
                assert!(
                    !failed.lock().unwrap().contains(&lease.id),
                    "session {} failed a call and was granted again",
                    lease.id
                );
                let result = lease.call().await;
                if result.is_err() {
                    failed.lock().unwrap().insert(lease.id);
                }
                if rng.chance(3) {
                    // Hold long enough for others' deadlines to pass.
                    tokio::time::sleep(ms(60)).await;
                } else if !rng.chance(20) {
                    tokio::time::sleep(ms(rng.below(4))).await;
                }
                let outcome = match (result, rng.below(10)) {
                    (Err(_), _) => Outcome::TransportError,
                    (Ok(_), 0) => Outcome::ApplicationError,
                    (Ok(_), 1) => Outcome::Timeout,
                    (Ok(_), 2) => {
                        drop(lease);
                        continue;
                    }
                    (Ok(_), _) => Outcome::Ok,
                };
                lease.release(outcome);
            }
        });
    }
    tasks.join_all().await;
    settle().await;

    let m = pool.metrics();
    let counts = fake.counts();
    eprintln!("{m:#?}\n{counts:?}");
    assert_eq!(
        m.stats.acquires,
        m.stats.grants - m.stats.grants_closed + m.stats.rejects() + m.stats.cancelled
    );
    assert!(m.stats.grants > 5_000, "{m:?}");
    assert_eq!((m.leased(), m.waiting), (0, 0), "no lease or waiter leaked");
    let alive: usize = m
        .keys
        .iter()
        .map(|k| k.gauges.idle + k.gauges.validating + k.gauges.poisoned)
        .sum();
    assert_eq!(m.stats.connected, m.stats.closes + alive as u64, "{m:?}");
    assert_eq!(counts.connects, counts.closes + fake.open() as u64);
    assert_eq!(counts.connects, m.stats.connected);
    assert!(!failed.lock().unwrap().is_empty(), "some transports died");

    let report = pool.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    let m = pool.metrics();
    assert_eq!(m.stats.connected, m.stats.closes);
    assert_eq!(fake.open(), 0);
    assert_eq!(fake.counts().connects, fake.counts().closes);
}

/// Real threads on the lanes' lock-free path: 16 tasks on 4 worker threads
/// take and give back sessions of two keys for 20,000 cycles, while short
/// idle timeouts, checks and lifetimes make the core recall lent sessions
/// under them and some transports die: no session is ever held by two
/// callers at once, and after shutdown every session made is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_threads_never_share_an_exclusive_session() {
    let m = racing_threads(Race::default()).await;
    assert_eq!(m.stats.rejects() + m.stats.cancelled, 0, "{m:?}");
    // The lanes lent sessions, recalled them, and queued callers.
    assert!(
        m.stats.lends > 100 && m.stats.recalls > 100 && m.stats.moved_to_lane > 100,
        "{m:?}"
    );
}

/// The same with connects and checks that fail, callers who give up while
/// they wait (racing the lanes' hand-offs) or drop their lease, and every
/// outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_threads_with_faults_and_callers_who_give_up() {
    let m = racing_threads(Race {
        faults: true,
        ..Race::default()
    })
    .await;
    assert!(m.stats.cancelled > 0 && m.stats.checks > 0, "{m:?}");
}

/// The same with sessions shared by two callers (no lanes: they lend
/// exclusive sessions only).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_threads_with_shared_sessions() {
    let m = racing_threads(Race {
        faults: true,
        shared: true,
    })
    .await;
    assert_eq!(m.stats.lends, 0, "{m:?}");
}

#[derive(Default)]
struct Race {
    /// Failing connects and checks, callers who give up, every outcome.
    faults: bool,
    /// Two leases per session.
    shared: bool,
}

/// 16 tasks on the runtime's threads make 20,000 acquires of two keys, as
/// `race` says; checks that exclusive sessions are never held twice, that
/// the counters add up, and that shutdown closes every session; returns the
/// metrics from before the shutdown.
async fn racing_threads(race: Race) -> mcp_pool::Metrics {
    const TASKS: u64 = 16;
    const CYCLES: u64 = 20_000;
    let fake = Fake::seeing(true);
    if race.faults {
        fake.set_flaky(3, 10, 10);
        fake.set_connect_delay(ms(1));
    }
    let leases = if race.shared { 2 } else { 1 };
    let pool = build(&fake, |b| {
        b.max_sessions_per_key(4)
            .max_leases_per_session(leases)
            .max_sessions_total(8)
            .acquire_timeout(Duration::from_secs(10))
            .check_interval(ms(2))
            .idle_timeout(Some(ms(5)))
            .max_lifetime(Some(ms(20)))
            .lifetime_jitter(ms(5))
            .shutdown_timeout(Duration::from_secs(5))
    });
    let held: Arc<Mutex<std::collections::HashSet<u64>>> = Arc::default();
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let (pool, fake, held) = (pool.clone(), fake.clone(), held.clone());
        let (faults, exclusive) = (race.faults, !race.shared);
        tasks.spawn(async move {
            let mut rng = Rng::new(100 + t);
            for _ in 0..CYCLES / TASKS {
                let key: &'static str = ["a", "b"][rng.below(2) as usize];
                if rng.chance(1) {
                    fake.kill_one(rng.next());
                }
                let acquire = pool.acquire(&key);
                let lease = if faults && rng.chance(10) {
                    let patience = Duration::from_micros(rng.below(300));
                    match tokio::time::timeout(patience, acquire).await {
                        Ok(lease) => lease,
                        Err(_) => continue,
                    }
                } else {
                    acquire.await
                };
                let Ok(lease) = lease else {
                    assert!(faults, "refused without a fault: {lease:?}");
                    continue;
                };
                assert_eq!(lease.key, key, "a session of another key");
                if exclusive {
                    assert!(
                        held.lock().unwrap().insert(lease.id),
                        "session {} held by two callers at once",
                        lease.id
                    );
                }
                let result = lease.call().await;
                if rng.chance(30) {
                    tokio::task::yield_now().await;
                }
                if exclusive {
                    held.lock().unwrap().remove(&lease.id);
                }
                match (result, faults.then(|| rng.below(10))) {
                    (Err(_), _) => lease.release(Outcome::TransportError),
                    (Ok(_), Some(0)) => lease.release(Outcome::Timeout),
                    (Ok(_), Some(1)) => drop(lease),
                    (Ok(_), Some(2)) => lease.release(Outcome::ApplicationError),
                    (Ok(_), _) => lease.release(Outcome::Ok),
                }
            }
        });
    }
    tasks.join_all().await;
    let m = pool.metrics();
    assert_eq!(
        m.stats.acquires,
        m.stats.grants - m.stats.grants_closed + m.stats.rejects() + m.stats.cancelled,
        "{m:?}"
    );
    assert_eq!((m.leased(), m.waiting), (0, 0), "no lease or waiter leaked");
    let report = pool.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(fake.open(), 0);
    let counts = fake.counts();
    assert_eq!(counts.connects, counts.closes, "{counts:?}");
    m
}
