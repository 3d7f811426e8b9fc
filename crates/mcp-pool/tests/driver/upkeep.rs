//! Checks and upkeep: failed and hung checks, idle time, lifetimes, prewarming.

use super::*;

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
