//! The naive pool reproduces the known failure: after the backend restarts,
//! its dead sessions keep failing calls, while new sessions would work.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use mcp_pool::{Connector, Outcome};
use mcp_pool_naive::{NaiveError, NaivePool};

/// Sessions carry the backend generation they were opened on; a restart
/// bumps the generation and every older session fails from then on.
#[derive(Clone, Default)]
struct Backend {
    generation: Arc<AtomicU32>,
    down: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("transport failed")]
struct Broken;

impl Connector for Backend {
    type Key = u8;
    type Session = u32;
    type Error = Broken;
    async fn connect(&self, _key: &u8) -> Result<u32, Broken> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Broken);
        }
        Ok(self.generation.load(Ordering::SeqCst))
    }
    async fn check(&self, session: &u32) -> Result<(), Broken> {
        self.call(*session)
    }
    fn is_closed(&self, _session: &u32) -> bool {
        false
    }
    fn classify(&self, _error: &Broken) -> Outcome {
        Outcome::TransportError
    }
    async fn close(&self, _session: u32) {}
}

impl Backend {
    fn call(&self, session: u32) -> Result<(), Broken> {
        if self.down.load(Ordering::SeqCst) || session != self.generation.load(Ordering::SeqCst) {
            Err(Broken)
        } else {
            Ok(())
        }
    }
    /// A call that holds its session for 10 ms.
    async fn slow_call(&self, session: u32) -> Result<(), Broken> {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        self.call(session)
    }
    fn restart(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Warms four sessions: four callers at once, each of which must succeed.
async fn warm_four<F, Fut, T, E>(call: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let (a, b, c, d) = tokio::join!(call(), call(), call(), call());
    for r in [a, b, c, d] {
        r.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn dead_sessions_go_back_and_keep_failing_after_the_backend_returns() {
    let backend = Backend::default();
    let pool = NaivePool::new(backend.clone(), 4);
    warm_four(|| pool.run(&1, async |s: &u32| backend.slow_call(*s).await)).await;
    assert_eq!(pool.stats().idle, 4);
    backend.restart();
    // The backend is up again, yet every call lands on a dead session that
    // goes straight back: 100 calls, 100 failures.
    let mut failures = 0;
    for _ in 0..100 {
        if let Err(NaiveError::Call(_)) = pool.run(&1, async |s: &u32| backend.call(*s)).await {
            failures += 1;
        }
    }
    assert_eq!(failures, 100);
    assert_eq!(
        pool.stats().idle,
        4,
        "the dead sessions are all still pooled"
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_restart_through_mcp_pool_heals_after_one_failure_per_dead_session() {
    let backend = Backend::default();
    let pool = mcp_pool::Pool::builder(backend.clone())
        .max_sessions_per_key(4)
        .build()
        .unwrap();
    warm_four(|| pool.run(&1, async |s: &u32| backend.slow_call(*s).await)).await;
    backend.restart();
    let mut failures = Vec::new();
    for i in 0..100 {
        if pool
            .run(&1, async |s: &u32| backend.call(*s))
            .await
            .is_err()
        {
            failures.push(i);
        }
    }
    // Each dead session fails one call, is poisoned, and is never seen again.
    assert!(failures.len() <= 4, "{failures:?}");
    assert!(
        failures.iter().all(|&i| i < 4),
        "failures after recovery: {failures:?}"
    );
    pool.shutdown().await;
}
