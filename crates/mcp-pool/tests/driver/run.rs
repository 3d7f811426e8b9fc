//! `Pool::run`: outcomes classified, panics, isolation of keys, shared sessions.

use super::*;

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
