//! The builder, the logs and the metrics.

use super::*;

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
