//! The pool's one background task: the core's timers and the transports'
//! closed-notifications. It only turns them into inputs.
//!
//! It cannot die silently: it runs on the runtime the pool was built on (or
//! the one using it), and when it ends for any reason but the pool stopping
//! (its runtime shut down, a panic) it says so, and the next acquire starts
//! a new one on its own runtime, watching every live session again.
//! Meanwhile every waiting caller keeps its own deadline.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use crate::guard::{self, Watch};
use crate::shared::Shared;
use crate::Connector;

impl<C: Connector> Shared<C> {
    /// Starts the upkeep task if none runs (at build, and whenever the last
    /// one ended while the pool is in use), on the caller's runtime.
    #[inline]
    pub(crate) fn ensure_upkeep(self: &Arc<Self>) {
        if self.upkeep_alive.load(Ordering::Acquire) || self.is_stopped() {
            return;
        }
        self.start_upkeep();
    }

    #[cold]
    #[inline(never)]
    fn start_upkeep(self: &Arc<Self>) {
        if self
            .upkeep_alive
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let mut watches = Vec::new();
        if let Some(mut st) = self.lock() {
            // The old task's watches are gone with it: watch again.
            for (&session, live) in st.sessions.iter_mut() {
                if let Some(old) = live.watch.take() {
                    old.abort();
                }
                if let Some((handle, watch)) =
                    guard::watch(&*self.connector, &live.session, session)
                {
                    live.watch = Some(handle);
                    watches.push(watch);
                }
            }
            // The new task must sleep until the core's next deadline.
            st.timer = None;
        }
        for watch in watches {
            self.add_watch(watch);
        }
        let alive = Alive {
            shared: Arc::downgrade(self),
        };
        self.spawn(run(alive));
    }

    /// The last handle is gone: the upkeep task ends.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Marks the upkeep task alive for as long as it exists; when it ends
/// without the pool stopping, that is logged and a new one is started by
/// the next acquire.
struct Alive<C: Connector> {
    shared: Weak<Shared<C>>,
}

impl<C: Connector> Drop for Alive<C> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.upkeep_alive.store(false, Ordering::Release);
            if !shared.is_stopped() {
                tracing::error!(pool = %shared.name, "the pool's upkeep task ended (its runtime shut down or it panicked); the next acquire starts a new one");
            }
        }
    }
}

/// Runs until the pool stops or is gone.
async fn run<C: Connector>(alive: Alive<C>) {
    let mut watching: FuturesUnordered<Watch> = FuturesUnordered::new();
    loop {
        let target = {
            let Some(shared) = alive.shared.upgrade() else {
                return;
            };
            if shared.is_stopped() {
                return;
            }
            let added =
                std::mem::take(&mut *shared.new_watches.lock().unwrap_or_else(|e| e.into_inner()));
            watching.extend(added);
            let Some(mut st) = shared.lock() else {
                return;
            };
            st.timer = st.core.poll_timeout();
            st.timer.map(|t| shared.instant(t))
        };
        let wake = async {
            match alive.shared.upgrade() {
                Some(shared) => shared.wake.notified().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match target {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = wake => {}
            Some(fired) = watching.next(), if !watching.is_empty() => {
                // `Err`: the session was closed and its watch aborted.
                if let (Ok(session), Some(shared)) = (fired, alive.shared.upgrade()) {
                    shared.transport_closed(session);
                }
            }
            () = timer => {
                let Some(shared) = alive.shared.upgrade() else {
                    return;
                };
                shared.step(|st, now| st.core.handle_timeout(now));
            }
        }
    }
}
