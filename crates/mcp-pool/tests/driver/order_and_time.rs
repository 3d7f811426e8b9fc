//! Waiting: first come first served, deadlines (in the pool and in the
//! lanes, with or without their reapers), and the limit on waiting callers.

use super::*;

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
