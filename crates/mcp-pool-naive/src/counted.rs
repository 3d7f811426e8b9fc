//! A connector wrapper that counts what a pool asks of its connector.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use mcp_pool::{Connector, Outcome};

/// Wraps a [`Connector`] and counts, from the connector's side, what a pool
/// (mcp-pool or [`NaivePool`](crate::NaivePool)) asks of it: connects tried
/// and succeeded, checks, and closes. Whatever the pool's own counters say,
/// `opened() - closes()` is the number of sessions not closed yet.
pub struct Counted<C> {
    inner: C,
    connects: AtomicU64,
    opened: AtomicU64,
    checks: AtomicU64,
    closes: AtomicU64,
}

impl<C> Counted<C> {
    /// Counts the calls made through `inner`, from zero.
    pub fn new(inner: C) -> Counted<C> {
        Counted {
            inner,
            connects: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            closes: AtomicU64::new(0),
        }
    }

    /// The wrapped connector.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Connects started.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Connects that returned a session.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Checks started.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Closes started (each closes one session handed over for good).
    pub fn closes(&self) -> u64 {
        self.closes.load(Ordering::Relaxed)
    }
}

impl<C: Connector> Connector for Counted<C> {
    type Key = C::Key;
    type Session = C::Session;
    type Error = C::Error;

    async fn connect(&self, key: &C::Key) -> Result<C::Session, C::Error> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        let session = self.inner.connect(key).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(session)
    }

    async fn check(&self, session: &C::Session) -> Result<(), C::Error> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.inner.check(session).await
    }

    fn is_closed(&self, session: &C::Session) -> bool {
        self.inner.is_closed(session)
    }

    fn classify(&self, error: &C::Error) -> Outcome {
        self.inner.classify(error)
    }

    async fn close(&self, session: C::Session) {
        self.closes.fetch_add(1, Ordering::Relaxed);
        self.inner.close(session).await;
    }

    fn closed_notification(
        &self,
        session: &C::Session,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.inner.closed_notification(session)
    }

    fn abort(&self, session: &C::Session) {
        self.inner.abort(session);
    }
}
