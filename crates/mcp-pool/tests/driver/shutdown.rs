//! Drain and shutdown, with leases out and returning.

use super::*;

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
