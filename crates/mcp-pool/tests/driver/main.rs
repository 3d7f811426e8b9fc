//! The driver's behaviour over a scripted fake connector, on tokio's paused
//! clock. The tests run with the `checking` feature: every input is audited
//! against the core's invariants.

#[path = "../support/mod.rs"]
mod support;

mod breaker;
mod builder;
mod cancellation;
mod key_pool;
mod known_bug;
mod order_and_time;
mod random;
mod run;
mod shutdown;
mod upkeep;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use mcp_pool::{
    AcquireError, BreakerState, BuildError, ConfigError, ConnectError, EvictReason, KeyHash,
    Outcome, Pool, RunError, SessionState,
};
use support::{Fake, FakeError, Rng, Step};
use tokio::task::JoinSet;
use tokio::time::Instant;

type Builder = mcp_pool::Builder<Fake>;

fn build(fake: &Fake, configure: impl FnOnce(Builder) -> Builder) -> Pool<Fake> {
    configure(Pool::builder(fake.clone()))
        .build()
        .expect("valid pool")
}

/// Lets every task run until it waits on something (the paused clock only
/// moves when all are idle).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Polls `fut` once, so an acquire registers with the pool.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *fut).poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
