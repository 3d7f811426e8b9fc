//! `Pool::key`: a key found once, whose acquires are the pool's.

use super::*;

/// Sessions acquired through a `KeyPool` are its pool's, for its key: the
/// same session comes back through either, from the key's lane once lent
/// there, and outcomes decide reuse as for the pool (a transport error
/// retires the session; `run` classifies).
#[tokio::test(start_paused = true)]
async fn a_key_pool_shares_its_pools_sessions_and_decisions() {
    for lanes in [true, false] {
        let fake = Fake::blind();
        let pool = build(&fake, |b| b.lanes(lanes));
        let srv = pool.key("srv");
        assert_eq!(srv.key(), &"srv");

        let first = srv.acquire().await.unwrap();
        let id = first.session_id();
        first.release(Outcome::Ok);
        settle().await;
        let by_key = pool.acquire(&"srv").await.unwrap();
        assert_eq!(by_key.session_id(), id, "lanes {lanes}");
        by_key.release(Outcome::Ok);
        settle().await;
        let again = srv.acquire().await.unwrap();
        assert_eq!(again.session_id(), id, "lanes {lanes}");
        assert_eq!(
            again.id().is_none(),
            lanes,
            "taken from the key's lane when the pool lends to lanes"
        );
        again.release(Outcome::TransportError);
        settle().await;
        assert_eq!(fake.counts().closes, 1, "lanes {lanes}: retired");

        let err = srv
            .run(async |_s| Err::<(), _>(FakeError::Transport))
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::Call(FakeError::Transport)));
        settle().await;
        assert_eq!(fake.counts().closes, 2, "lanes {lanes}: run classified it");
        assert_eq!(fake.counts().connects, 2, "lanes {lanes}");
        let other = pool.key("other").acquire().await.unwrap();
        assert_ne!(other.session_id(), id, "keys keep their own sessions");
        assert_eq!(fake.counts().connects, 3, "lanes {lanes}");
    }
}

/// A `KeyPool`'s acquires wait, time out and are refused as the pool's
/// do: a full key makes it wait until its deadline.
#[tokio::test(start_paused = true)]
async fn a_key_pool_waits_and_times_out_as_its_pool_does() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b.max_sessions_per_key(1));
    let srv = pool.key("srv");
    let held = srv.acquire().await.unwrap();
    let start = Instant::now();
    let err = srv
        .acquire_until(start + ms(250))
        .await
        .expect_err("the key's one session is held");
    assert!(matches!(err, AcquireError::TimedOut { .. }), "{err:?}");
    assert_eq!(start.elapsed(), ms(250));
    held.release(Outcome::Ok);
    assert!(srv.acquire().await.is_ok());
}

/// Its `Debug` names the key by its hash, never the key itself (a key may
/// hold a credential's hash, a tenant, a URL).
#[tokio::test(start_paused = true)]
async fn a_key_pools_debug_shows_the_keys_hash_only() {
    let fake = Fake::blind();
    let pool = build(&fake, |b| b);
    let shown = format!("{:?}", pool.key("tenant-secret"));
    assert!(!shown.contains("tenant-secret"), "{shown}");
    assert!(
        shown.contains(&KeyHash::of(&"tenant-secret").to_string()),
        "{shown}"
    );
}
