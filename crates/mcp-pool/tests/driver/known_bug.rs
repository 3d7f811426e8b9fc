//! The regression test of the known bug, and the transports that report
//! their death.

use super::*;

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
