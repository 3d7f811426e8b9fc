//! The driver's behaviour over a scripted fake connector, on tokio's paused
//! clock. The tests run with the `checking` feature: every input is audited
//! against the core's invariants.

mod support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use mcp_pool::{
    AcquireError, BreakerState, BuildError, ConfigError, ConnectError, EvictReason, KeyHash,
    Outcome, Pool, RunError, SessionState,
};
use support::{Fake, FakeError, Rng, Step};
use tokio::task::JoinSet;
use tokio::time::Instant;

type Builder = mcp_pool::Builder<Fake>;

fn build(fake: &Fake, configure: impl FnOnce(Builder) -> Builder) -> Pool<Fake> {
    configure(Pool::builder(fake.clone()))
        .build()
        .expect("valid pool")
}

/// Lets every task run until it waits on something (the paused clock only
/// moves when all are idle).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Polls `fut` once, so an acquire registers with the pool.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *fut).poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ------------------------------------------------------- the known bug

/// The regression test of the seed bug: sessions are in use, the server
/// restarts and nothing tells the pool (the transport looks open). Each dead
/// session fails exactly one call, is never handed out again, and every
/// later call gets a working session.
#[tokio::test(start_paused = true)]
async fn a_broken_session_is_never_handed_out_twice() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.max_sessions_per_key(10));

    // Ten callers at once: ten sessions.
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let (pool, barrier) = (pool.clone(), barrier.clone());
        tasks.spawn(async move {
            pool.run(&"srv", async |s| {
                barrier.wait().await;
                s.call().await
            })
            .await
            .unwrap()
        });
    }
    tasks.join_all().await;
    assert_eq!(fake.counts().connects, 10);

    fake.kill_all();

    // Ten callers keep calling, twenty calls each.
    let calls: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let (pool, calls) = (pool.clone(), calls.clone());
        tasks.spawn(async move {
            for _ in 0..20 {
                let _ = pool
                    .run(&"srv", async |s| {
                        let r = s.call().await;
                        calls.lock().unwrap().push((s.id, r.is_ok()));
                        r
                    })
                    .await;
            }
        });
    }
    tasks.join_all().await;

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 200, "every call got a session");
    for dead in 0..10u64 {
        let uses: Vec<bool> = calls.iter().filter(|c| c.0 == dead).map(|c| c.1).collect();
        assert!(
            uses.len() <= 1,
            "dead session {dead} was handed out {} times: {uses:?}",
            uses.len()
        );
    }
    let failures: Vec<_> = calls.iter().filter(|c| !c.1).collect();
    assert!(failures.len() <= 10, "{} calls failed", failures.len());
    assert!(failures.iter().all(|c| c.0 < 10), "a new session failed");
    settle().await;
    let stats = pool.metrics().stats;
    assert_eq!(
        stats.evictions(EvictReason::TransportError),
        failures.len() as u64
    );
    assert_eq!(fake.counts().closes, failures.len() as u64);
}

/// A transport that says it died (closed-notification) is poisoned and
/// closed while idle, before any caller picks it.
#[tokio::test(start_paused = true)]
async fn a_closed_notification_retires_an_idle_session() {
    let fake = Fake::seeing(true);
    let pool = build(&fake, |b| b);
    let first = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    fake.kill(first);
    settle().await;
    assert_eq!(fake.counts().closes, 1);
    assert!(!fake.is_open(first));
    let stats = pool.metrics().stats;
    assert_eq!(stats.evictions(EvictReason::TransportClosed), 1);
    let second = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    assert_ne!(first, second);
}

/// Without notifications, `is_closed` is read before a grant: a dead idle
/// session is never handed out, the caller gets a new one.
#[tokio::test(start_paused = true)]
async fn a_session_seen_closed_is_never_granted() {
    let fake = Fake::seeing(false);
    let pool = build(&fake, |b| b);
    let first = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    fake.kill(first);
    let lease = pool.acquire(&"srv").await.unwrap();
    assert_ne!(lease.id, first);
    assert!(lease.call().await.is_ok());
    lease.release(Outcome::Ok);
    settle().await;
    assert_eq!(fake.counts().closes, 1);
    // And a lease whose transport died under it goes out of service
    // whatever the caller reports.
    let lease = pool.acquire(&"srv").await.unwrap();
    let id = lease.id;
    fake.kill(id);
    lease.release(Outcome::Ok);
    settle().await;
    assert!(!fake.is_open(id));
}

// ------------------------------------------------------- cancellation

/// A caller dropped mid-call returns its session as cancelled: it is
/// checked before anyone gets it again.
#[tokio::test(start_paused = true)]
async fn dropping_a_call_midway_checks_the_session_before_reuse() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.max_sessions_per_key(1));
    let hung = tokio::time::timeout(
        ms(100),
        pool.run(&"srv", async |s| {
            s.call().await?;
            std::future::pending::<Result<(), FakeError>>().await
        }),
    )
    .await;
    assert!(hung.is_err(), "the call hung until dropped");
    settle().await;
    assert_eq!(fake.counts().checks, 1, "the session was checked");
    let lease = pool.acquire(&"srv").await.unwrap();
    assert_eq!(lease.id, 0, "the check passed: same session");
    drop(lease);

    // The same with a check that fails: the session is replaced.
    settle().await;
    assert_eq!(fake.counts().checks, 2);
    fake.script_checks([Step::Fail]);
    let lease = pool.acquire(&"srv").await.unwrap();
    drop(lease);
    settle().await;
    assert_eq!(fake.counts().checks, 3);
    let lease = pool.acquire(&"srv").await.unwrap();
    assert_eq!(lease.id, 1, "a failed check poisoned session 0");
    assert_eq!(fake.counts().closes, 1);
}

/// Dropping an acquire while it waits withdraws it: no slot and no session
/// is lost, and the next caller is served at once.
#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_acquire_loses_nothing() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.max_sessions_per_key(1));
    let held = pool.acquire(&"srv").await.unwrap();
    let gave_up = tokio::time::timeout(ms(10), pool.acquire(&"srv")).await;
    assert!(gave_up.is_err());
    let m = pool.metrics();
    assert_eq!((m.waiting, m.stats.cancelled), (0, 1));
    held.release(Outcome::Ok);
    let lease = pool.acquire(&"srv").await.unwrap();
    assert_eq!(lease.id, 0);
    assert_eq!(fake.counts().connects, 1);
    assert_eq!(pool.metrics().stats.checks, 0);
}

/// A session granted to an acquire that is dropped before it looks at the
/// answer goes back to the pool unused: nothing happened to it, so it is
/// not checked.
#[tokio::test(start_paused = true)]
async fn a_grant_to_a_dropped_acquire_goes_back() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.max_sessions_per_key(1));
    let held = pool.acquire(&"srv").await.unwrap();
    let mut waiter = Box::pin(pool.acquire(&"srv"));
    assert!(poll_once(&mut waiter).await.is_none(), "waits");
    held.release(Outcome::Ok);
    // The grant is in the waiter's channel; the waiter never takes it.
    drop(waiter);
    settle().await;
    let m = pool.metrics();
    assert_eq!((m.leased(), m.idle(), m.waiting), (0, 1, 0));
    assert_eq!(m.stats.grants, 2);
    assert_eq!(m.stats.returned_unused, 1);
    assert_eq!(fake.counts().checks, 0, "no needless check");
    let lease = pool.acquire(&"srv").await.unwrap();
    assert_eq!(lease.id, 0);
}

// ------------------------------------------------------- order and time

/// Waiters of a key are served in the order they came.
#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.max_sessions_per_key(1));
    let held = pool.acquire(&"srv").await.unwrap();
    let order: Arc<Mutex<Vec<usize>>> = Arc::default();
    let mut tasks = JoinSet::new();
    for i in 0..6 {
        let (pool, order) = (pool.clone(), order.clone());
        tasks.spawn(async move {
            let lease = pool.acquire(&"srv").await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(ms(5)).await;
            lease.release(Outcome::Ok);
        });
        settle().await;
    }
    assert_eq!(pool.metrics().waiting, 6);
    held.release(Outcome::Ok);
    tasks.join_all().await;
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(fake.counts().connects, 1);
}

/// Asserts that `err` is a time-out, refused `deadline` after `start`:
/// not before, and at most 2 ms after.
fn timed_out_at(err: &AcquireError<FakeError>, start: Instant, deadline: Duration) {
    let waited = start.elapsed();
    assert!(matches!(err, AcquireError::TimedOut { .. }), "{err}");
    assert!(
        waited >= deadline && waited <= deadline + ms(2),
        "refused at {waited:?}, not at its deadline ({deadline:?})"
    );
}

/// An acquire that finds nothing gives up at its deadline, not before and
/// not much after.
#[tokio::test(start_paused = true)]
async fn an_acquire_times_out_at_its_deadline() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.max_sessions_per_key(1).acquire_timeout(ms(2000))
    });
    let _held = pool.acquire(&"srv").await.unwrap();

    let start = Instant::now();
    let err = pool.acquire(&"srv").await.unwrap_err();
    timed_out_at(&err, start, ms(2000));
    assert!(err.to_string().contains("timed out after"), "{err}");

    let start = Instant::now();
    let err = pool
        .acquire_until(&"srv", start + ms(300))
        .await
        .unwrap_err();
    timed_out_at(&err, start, ms(300));

    let err = pool
        .acquire_until(&"srv", Instant::now())
        .await
        .unwrap_err();
    assert!(matches!(err, AcquireError::TimedOut { .. }));
    assert_eq!(pool.metrics().waiting, 0);
}

/// Callers waiting in a lane are each refused at their own deadline, also
/// one with a short deadline queued behind one with a long deadline (the
/// lane's reaper, asleep until the first deadline it saw, wakes for the
/// earlier one).
#[tokio::test(start_paused = true)]
async fn callers_waiting_in_a_lane_time_out_at_their_own_deadlines() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.max_sessions_per_key(1).acquire_timeout(ms(10_000))
    });
    let _held = pool.acquire(&"srv").await.unwrap();
    let start = Instant::now();
    let mut patient = Box::pin(pool.acquire(&"srv"));
    assert!(poll_once(&mut patient).await.is_none(), "waits");
    settle().await;
    let err = pool
        .acquire_until(&"srv", start + ms(300))
        .await
        .unwrap_err();
    timed_out_at(&err, start, ms(300));
    timed_out_at(&patient.await.unwrap_err(), start, ms(10_000));
}

/// Runs `test` on a current-thread runtime, beside a second runtime
/// (`doomed`, one worker) that the test shuts down under it.
fn beside_a_doomed_runtime<F: Future<Output = ()>>(
    test: impl FnOnce(tokio::runtime::Runtime) -> F,
) {
    let home = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    home.block_on(test(doomed));
}

/// A pool of one session per key, that session of `"srv"` held, and a
/// caller on `doomed` waiting in the key's lane: the first to wait, so the
/// lane's reaper runs on `doomed`. Returns the pool, the held session and
/// the far caller's task.
async fn a_lane_reaped_on(
    doomed: &tokio::runtime::Runtime,
    fake: &Fake,
) -> (
    Pool<Fake>,
    mcp_pool::Lease<Fake>,
    tokio::task::JoinHandle<Result<(), AcquireError<FakeError>>>,
) {
    let pool = build(fake, |b| {
        b.max_sessions_per_key(1).acquire_timeout(ms(60_000))
    });
    let held = pool.acquire(&"srv").await.unwrap();
    let far = pool.clone();
    let far = doomed.spawn(async move { far.acquire(&"srv").await.map(drop) });
    for _ in 0..5_000 {
        if pool.metrics().waiting == 1 {
            break;
        }
        tokio::time::sleep(ms(1)).await;
    }
    assert_eq!(pool.metrics().waiting, 1, "the far caller waits");
    (pool, held, far)
}

/// A caller waiting in a lane is refused at its deadline even when the
/// lane's reaper ran on another runtime that shut down meanwhile (a pool
/// shared between runtimes): the reaper's end moves the callers still
/// waiting to timers of their own. Real time, as two runtimes do not
/// share a paused clock; the deadline is short and the bound on the wait
/// generous.
#[test]
fn a_lane_waiter_is_refused_at_its_deadline_after_the_reapers_runtime_shut_down() {
    beside_a_doomed_runtime(|doomed| async move {
        let (pool, held, far) = a_lane_reaped_on(&doomed, &Fake::blind()).await;
        let start = Instant::now();
        let mut near = Box::pin(pool.acquire_until(&"srv", start + ms(200)));
        assert!(poll_once(&mut near).await.is_none(), "waits");
        assert_eq!(pool.metrics().waiting, 2);
        // The doomed runtime ends, and its reaper (and far caller) with it.
        doomed.shutdown_background();
        let answer = tokio::time::timeout(ms(10_000), near)
            .await
            .expect("refused at its deadline, not left waiting");
        let err = answer.unwrap_err();
        assert!(matches!(err, AcquireError::TimedOut { .. }), "{err}");
        assert!(start.elapsed() >= ms(200), "not before its deadline");
        assert!(far.await.unwrap_err().is_cancelled());
        assert_eq!(pool.metrics().waiting, 0);
        drop(held);
    });
}

/// A caller whose lane's reaper ended with its runtime is moved to a new
/// channel; if it goes before it ever looks there, a session handed to it
/// there meanwhile goes back to the lane, not lost with the channel.
#[test]
fn a_caller_gone_after_its_lanes_reaper_ended_gives_back_what_came_for_it() {
    beside_a_doomed_runtime(|doomed| async move {
        let fake = Fake::blind();
        let (pool, held, far) = a_lane_reaped_on(&doomed, &fake).await;
        let mut near = Box::pin(pool.acquire(&"srv"));
        assert!(poll_once(&mut near).await.is_none(), "waits");
        // Dropping the runtime waits for its tasks to be dropped, the
        // reaper's among them: the near caller is moved to a new channel.
        std::thread::spawn(move || drop(doomed)).join().unwrap();
        assert!(far.await.unwrap_err().is_cancelled());
        // The session goes to the near caller, on its new channel ...
        held.release(Outcome::Ok);
        // ... which it never reads.
        drop(near);
        let again = tokio::time::timeout(ms(5_000), pool.acquire(&"srv"))
            .await
            .expect("the session is back, not lost");
        assert!(again.is_ok());
        assert_eq!(fake.counts().connect_attempts, 1, "the same session");
    });
}

// ------------------------------------------------------- connects and the breaker

/// Failed connects reach the caller with their cause; after the threshold
/// the breaker opens, callers wait for the probe, and the probe's success
/// serves them and closes the breaker. A failed probe backs off.
#[tokio::test(start_paused = true)]
async fn the_breaker_opens_then_probes_half_open() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.breaker_failure_threshold(2)
            .breaker_base_cooldown(ms(100))
            .breaker_max_cooldown(ms(1000))
    });
    fake.script_connects([Step::Fail, Step::Fail, Step::Fail, Step::Ok]);
    for _ in 0..2 {
        let err = pool.acquire(&"srv").await.unwrap_err();
        match err.connect_failure() {
            Some(ConnectError::Failed(FakeError::Refused)) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(err, AcquireError::ConnectFailed { .. }), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
    }
    let m = pool.metrics();
    assert_eq!(m.keys[0].gauges.breaker, BreakerState::Open);
    assert_eq!(m.keys[0].key, KeyHash::of(&"srv"));

    // The probe at 100 ms fails (3rd scripted failure): re-opened for
    // 200 ms; the probe at 300 ms succeeds and serves the waiter.
    let start = Instant::now();
    let lease = pool.acquire(&"srv").await.unwrap();
    let waited = start.elapsed();
    assert!(waited >= ms(300) && waited <= ms(303), "{waited:?}");
    assert_eq!(fake.counts().connect_attempts, 4);
    assert_eq!(pool.metrics().keys[0].gauges.breaker, BreakerState::Closed);
    assert_eq!(pool.metrics().stats.breaker_trips, 2);
    drop(lease);
}

/// With fail-fast, callers of an open key are refused at once; a caller
/// whose deadline passes while the breaker is open learns it.
#[tokio::test(start_paused = true)]
async fn an_open_breaker_refuses_fast_or_at_the_deadline() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.breaker_failure_threshold(1)
            .breaker_base_cooldown(ms(100))
            .breaker_fail_fast(true)
    });
    fake.script_connects([Step::Fail]);
    assert!(matches!(
        pool.acquire(&"srv").await,
        Err(AcquireError::ConnectFailed { .. })
    ));
    let start = Instant::now();
    let err = pool.acquire(&"srv").await.unwrap_err();
    assert!(matches!(err, AcquireError::CircuitOpen { .. }), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    // Just after the cool-down (at exactly its end the answer depends on
    // whether the pool's timer ran first: see tests/core_bugs.rs).
    tokio::time::sleep(ms(101)).await;
    let r = pool.acquire(&"srv").await;
    assert!(r.is_ok(), "the probe succeeded: {r:?}");

    // Waiting mode: the deadline comes while the breaker is open.
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.breaker_failure_threshold(1)
            .breaker_base_cooldown(ms(1000))
    });
    fake.script_connects([Step::Fail]);
    assert!(pool.acquire(&"srv").await.is_err());
    let err = pool
        .acquire_until(&"srv", Instant::now() + ms(50))
        .await
        .unwrap_err();
    assert!(matches!(err, AcquireError::CircuitOpen { .. }), "{err}");
}

/// A connect that hangs is cut at `connect_timeout`; one that panics is a
/// failure; both reach the caller as typed causes.
#[tokio::test(start_paused = true)]
async fn connects_that_hang_or_panic_fail_with_their_cause() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.connect_timeout(ms(1000)));
    fake.script_connects([Step::Hang, Step::Panic]);
    let start = Instant::now();
    match pool.acquire(&"srv").await {
        Err(AcquireError::ConnectFailed { cause }) => match *cause {
            ConnectError::TimedOut(after) => {
                assert!(after >= ms(1000) && after <= ms(1002), "{after:?}")
            }
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() <= ms(1002));
    match pool.acquire(&"srv").await {
        Err(AcquireError::ConnectFailed { cause }) => {
            assert!(matches!(*cause, ConnectError::Panicked), "{cause:?}")
        }
        other => panic!("{other:?}"),
    }
    let lease = pool.acquire(&"srv").await.unwrap();
    assert_eq!(lease.id, 0);
    assert_eq!(pool.metrics().stats.connect_failures, 2);
}

// ------------------------------------------------------- checks and upkeep

/// With `check_interval` zero every reuse is checked; a failed or hung
/// check poisons the session and the caller gets a new one.
#[tokio::test(start_paused = true)]
async fn failed_and_hung_checks_replace_the_session() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.check_interval(Duration::ZERO).check_timeout(ms(500))
    });
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    assert_eq!(id, 0);
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    assert_eq!((id, fake.counts().checks), (0, 1), "checked, then reused");

    fake.script_checks([Step::Fail]);
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    assert_eq!(id, 1);

    fake.script_checks([Step::Hang]);
    let start = Instant::now();
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    assert_eq!(id, 2);
    assert!(start.elapsed() >= ms(500));
    settle().await;
    assert_eq!(pool.metrics().stats.evictions(EvictReason::CheckFailed), 2);
    assert_eq!(fake.counts().closes, 2);
}

/// The background task checks idle sessions on the check interval (a dead
/// one is replaced before any caller sees it) and retires them at their
/// max lifetime.
#[tokio::test(start_paused = true)]
async fn upkeep_checks_idle_sessions_and_ends_their_lifetime() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.check_interval(Duration::from_secs(10))
            .idle_timeout(None)
            .max_lifetime(Some(Duration::from_secs(35)))
            .lifetime_jitter(Duration::ZERO)
    });
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10) + ms(5)).await;
    assert_eq!(fake.counts().checks, 1, "a keepalive check ran");
    fake.kill(id);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(fake.counts().checks, 2);
    assert_eq!(
        fake.counts().closes,
        1,
        "the dead session was closed while idle"
    );

    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    assert_eq!(id, 1);
    tokio::time::sleep(Duration::from_secs(36)).await;
    assert!(!fake.is_open(id), "closed at its max lifetime");
    assert_eq!(pool.metrics().stats.evictions(EvictReason::MaxLifetime), 1);
}

/// An idle session unused for `idle_timeout` is closed, even though its
/// keepalive checks keep passing.
#[tokio::test(start_paused = true)]
async fn idle_sessions_expire_despite_keepalive_checks() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.check_interval(Duration::from_secs(10))
            .idle_timeout(Some(Duration::from_secs(25)))
    });
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(!fake.is_open(id), "idle for 100 s with idle_timeout 25 s");
    assert_eq!(pool.metrics().stats.evictions(EvictReason::IdleTimeout), 1);
}

/// Without keepalive checks getting in the way, idle sessions expire.
#[tokio::test(start_paused = true)]
async fn idle_sessions_expire() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.check_interval(Duration::from_secs(3600))
            .idle_timeout(Some(Duration::from_secs(25)))
    });
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    tokio::time::sleep(Duration::from_secs(24)).await;
    assert!(fake.is_open(id));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!fake.is_open(id));
    assert_eq!(pool.metrics().stats.evictions(EvictReason::IdleTimeout), 1);
}

/// `min_idle_per_key` pre-warms a key once it is known.
#[tokio::test(start_paused = true)]
async fn keys_are_prewarmed_to_min_idle() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.min_idle_per_key(2));
    let lease = pool.acquire(&"srv").await.unwrap();
    settle().await;
    let m = pool.metrics();
    assert_eq!(m.keys[0].gauges.idle, 2, "{m:?}");
    lease.release(Outcome::Ok);
    assert_eq!(fake.counts().connects, 3);
}

// ------------------------------------------------------- run

/// `run` releases with the classified outcome: an application error keeps
/// the session, a transport error retires it.
#[tokio::test(start_paused = true)]
async fn run_releases_with_the_classified_outcome() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b);
    let err = pool
        .run(&"srv", async |s| s.call_failing().await)
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Call(FakeError::Application)));
    assert_eq!(err.to_string(), "the tool returned an error");
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    assert_eq!(id, 0, "reused after an application error");
    assert_eq!(pool.metrics().stats.checks, 0);

    let err = pool
        .run(&"srv", async |_s| Err::<(), _>(FakeError::Timeout))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Call(FakeError::Timeout)));
    settle().await;
    assert_eq!(fake.counts().checks, 1, "checked after a timeout");

    pool.run(&"srv", async |_s| Err::<(), _>(FakeError::Transport))
        .await
        .unwrap_err();
    settle().await;
    assert_eq!(fake.counts().closes, 1, "retired after a transport error");
}

/// A panic in the closure poisons the session and reaches the caller.
#[tokio::test(start_paused = true)]
async fn a_panic_in_run_poisons_the_session_and_propagates() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b);
    let p = pool.clone();
    let joined = tokio::spawn(async move {
        p.run(&"srv", async |_s| -> Result<(), FakeError> {
            panic!("tool handler bug")
        })
        .await
    })
    .await;
    let panic = joined.unwrap_err().into_panic();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"tool handler bug"));
    settle().await;
    assert_eq!(
        pool.metrics().stats.evictions(EvictReason::TransportError),
        1
    );
    assert_eq!(fake.counts().closes, 1);
}

/// `run` futures can be spawned on a multi-threaded runtime, and sessions
/// are only ever handed to callers of their own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_send_and_keys_stay_isolated() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.max_sessions_per_key(2).max_sessions_total(3));
    let mut tasks = JoinSet::new();
    for i in 0..8 {
        let pool = pool.clone();
        let key: &'static str = ["a", "b", "c"][i % 3];
        tasks.spawn(async move {
            for _ in 0..50 {
                pool.run(&key, async |s| {
                    assert_eq!(s.key, key);
                    s.call().await
                })
                .await
                .unwrap();
            }
        });
    }
    tasks.join_all().await;
    let m = pool.metrics();
    assert_eq!(m.stats.grants, 400);
    assert!(m.live <= 3);
}

/// Several callers share one session when `max_leases_per_session` allows.
#[tokio::test(start_paused = true)]
async fn sessions_are_shared_when_allowed() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.max_leases_per_session(2).max_sessions_per_key(1)
    });
    let a = pool.acquire(&"srv").await.unwrap();
    let b = pool.acquire(&"srv").await.unwrap();
    assert_eq!((a.id, b.id), (0, 0));
    assert_eq!(a.session_id(), b.session_id());
    assert_ne!(a.id(), b.id());
}

// ------------------------------------------------------- drain, shutdown

/// `drain` closes idle sessions now and leased ones when they return; the
/// pool keeps serving with new sessions.
#[tokio::test(start_paused = true)]
async fn drain_retires_every_session_and_keeps_serving() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b);
    let held = pool.acquire(&"srv").await.unwrap();
    pool.run(&"srv", async |s| s.call().await).await.unwrap();
    pool.drain();
    settle().await;
    assert_eq!(fake.counts().closes, 1, "the idle one");
    held.release(Outcome::Ok);
    settle().await;
    assert_eq!(fake.counts().closes, 2, "the leased one, once back");
    let id = pool.run(&"srv", async |s| s.call().await).await.unwrap();
    assert_eq!(id, 2);
    assert_eq!(pool.metrics().stats.evictions(EvictReason::Drained), 2);
}

/// Shutdown refuses waiters and new callers, closes idle sessions at once
/// and returned ones as they come, and after its grace period aborts and
/// reports the sessions still held.
#[tokio::test(start_paused = true)]
async fn shutdown_with_leases_out() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| {
        b.max_sessions_per_key(2)
            .shutdown_timeout(Duration::from_secs(5))
    });
    let first = pool.acquire(&"srv").await.unwrap();
    let second = pool.acquire(&"srv").await.unwrap();
    let idle = pool.run(&"other", async |s| s.call().await).await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire(&"srv").await.map(|_| ()) }
    });
    settle().await;

    let shutdown = tokio::spawn({
        let pool = pool.clone();
        async move { pool.shutdown().await }
    });
    settle().await;
    assert!(matches!(
        waiter.await.unwrap(),
        Err(AcquireError::ShuttingDown)
    ));
    assert!(matches!(
        pool.acquire(&"srv").await,
        Err(AcquireError::ShuttingDown)
    ));
    assert!(!fake.is_open(idle), "idle closed at once");

    first.release(Outcome::Ok);
    settle().await;
    assert_eq!(fake.counts().closes, 2, "returned and closed");

    let report = shutdown.await.unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.closed, 2);
    assert_eq!(report.force_closed.len(), 1);
    assert_eq!(report.force_closed[0].session, second.session_id());
    assert_eq!(report.force_closed[0].state, SessionState::Leased);
    assert_eq!(report.force_closed[0].key, KeyHash::of(&"srv"));
    assert!(report.waited >= Duration::from_secs(5));
    assert_eq!(fake.counts().aborts, 1);
    assert!(second.call().await.is_err(), "aborted under its holder");

    drop(second);
    settle().await;
    assert_eq!(fake.open(), 0, "the last one closed when it came back");
    assert_eq!(fake.counts().closes, 3);
}

/// A shutdown whose leases come back in time is clean and does not wait
/// out its grace period.
#[tokio::test(start_paused = true)]
async fn shutdown_is_clean_when_leases_return() {
    let fake = Fake::blind();
    fake.set_close_delay(ms(20));
    let pool = build(&fake, |b| b.shutdown_timeout(Duration::from_secs(5)));
    let lease = pool.acquire(&"srv").await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(ms(100)).await;
        lease.release(Outcome::Ok);
    });
    let report = pool.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.closed, 1);
    assert!(
        report.waited >= ms(120) && report.waited < ms(200),
        "{report:?}"
    );
    assert_eq!(fake.open(), 0);
    let again = pool.shutdown().await;
    assert!(again.is_clean());
}

// ------------------------------------------------------- builder, logs, metrics

#[test]
fn the_builder_validates_every_policy() {
    let fake = Fake::blind();
    assert_eq!(
        Pool::builder(fake.clone()).build().err(),
        Some(BuildError::NoRuntime)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let err = Pool::builder(fake.clone())
        .max_sessions_per_key(0)
        .build()
        .err()
        .unwrap();
    assert_eq!(
        err,
        BuildError::Config(ConfigError::ZeroSize("max_sessions_per_key"))
    );
    assert!(err.to_string().contains("max_sessions_per_key"), "{err}");
    let err = Pool::builder(fake.clone())
        .min_idle_per_key(9)
        .max_sessions_per_key(8)
        .build()
        .err();
    assert!(matches!(
        err,
        Some(BuildError::Config(ConfigError::MinIdleAboveMax { .. }))
    ));
    let err = Pool::builder(fake.clone())
        .breaker_base_cooldown(Duration::from_secs(9))
        .build()
        .err();
    assert_eq!(err, Some(BuildError::Config(ConfigError::CooldownOrder)));
    let err = Pool::builder(fake.clone())
        .close_timeout(Duration::ZERO)
        .build()
        .err();
    assert_eq!(err, Some(BuildError::ZeroCloseTimeout));
    let pool = Pool::builder(fake).name("upstream").build().unwrap();
    assert_eq!(pool.name(), "upstream");
    assert_eq!(pool.config().max_sessions_per_key, 8);
}

/// Logs name keys by their hash only, never by the key itself.
#[tokio::test(start_paused = true)]
async fn logs_never_contain_the_raw_key() {
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    const KEY: &str = "https://mcp.example/?token=SECRET-TOKEN";
    let fake = Fake::seeing(true);
    let pool = build(&fake, |b| b.check_interval(Duration::ZERO));
    fake.script_connects([Step::Fail]);
    assert!(pool.acquire(&KEY).await.is_err());
    let id = pool.run(&KEY, async |s| s.call().await).await.unwrap();
    pool.run(&KEY, async |s| s.call().await).await.unwrap();
    fake.kill(id);
    settle().await;
    pool.shutdown().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("connect failed"), "{logs}");
    assert!(logs.contains(&KeyHash::of(&KEY).to_string()), "{logs}");
    assert!(!logs.contains("SECRET"), "{logs}");
    assert!(!logs.contains("mcp.example"), "{logs}");
}

/// The snapshot carries the core's counters and each key's gauges.
#[tokio::test(start_paused = true)]
async fn metrics_snapshot_counts_and_gauges() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b);
    let a = pool.acquire(&"a").await.unwrap();
    pool.run(&"b", async |s| s.call().await).await.unwrap();
    let m = pool.metrics();
    assert_eq!((m.live, m.waiting, m.leased(), m.idle()), (2, 0, 1, 1));
    assert_eq!(m.stats.acquires, 2);
    assert_eq!(m.stats.connects, 2);
    let a_gauges = m.keys.iter().find(|k| k.key == KeyHash::of(&"a")).unwrap();
    assert_eq!(a_gauges.gauges.leased, 1);
    a.release(Outcome::Ok);
    assert_eq!(pool.metrics().idle(), 2);
}

// ------------------------------------------------------- the long random run

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

/// `max_waiters_per_key` callers may wait for a key; the next is refused at
/// once with `QueueFull`, whether they wait in the pool or in the key's
/// lane, and the one waiting still gets the session.
#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_the_next_caller_at_once() {
    for lanes in [false, true] {
        let fake = Fake::blind();
        let pool = build(&fake, |b| {
            b.max_sessions_per_key(1)
                .max_waiters_per_key(1)
                .lanes(lanes)
        });
        let held = pool.acquire(&"srv").await.unwrap();
        let mut waiting = Box::pin(pool.acquire(&"srv"));
        assert!(poll_once(&mut waiting).await.is_none(), "lanes {lanes}");
        let refused = pool.acquire(&"srv").await;
        assert!(
            matches!(refused, Err(AcquireError::QueueFull)),
            "lanes {lanes}: {refused:?}"
        );
        held.release(Outcome::Ok);
        let lease = waiting.await.expect("the waiting caller is served");
        assert_eq!(lease.id, 0, "lanes {lanes}");
        assert_eq!(pool.metrics().stats.rejected_queue_full, 1, "lanes {lanes}");
    }
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

/// The exporter records a snapshot (a no-op without a global recorder).
#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn metrics_export_records_a_snapshot() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.name("exported"));
    pool.run(&"srv", async |s| s.call().await).await.unwrap();
    pool.export_metrics();
    pool.metrics().export("by-hand");
}
