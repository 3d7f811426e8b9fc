//! Connects and the breaker: probes, fast refusals, connects that hang or panic.

use super::*;

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
