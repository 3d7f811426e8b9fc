//! Callers who give up: a dropped call, a dropped acquire, a grant to one
//! who left.

use super::*;

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
