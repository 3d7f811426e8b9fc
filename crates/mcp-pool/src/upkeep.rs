//! The pool's one background task: the core's timers and the transports'
//! closed-notifications. It only turns them into inputs.

use std::sync::{Arc, Weak};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::shared::{Shared, Watch};
use crate::Connector;

/// Runs until `stop` fires or is dropped (the last `Pool` handle is gone).
pub(crate) async fn run<C: Connector>(
    shared: Weak<Shared<C>>,
    wake: Arc<Notify>,
    mut stop: oneshot::Receiver<()>,
    mut watches: mpsc::UnboundedReceiver<Watch>,
) {
    let mut watching = FuturesUnordered::new();
    loop {
        let target = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let Some(mut st) = shared.lock() else {
                return;
            };
            st.timer = st.core.poll_timeout();
            st.timer.map(|t| shared.instant(t))
        };
        let timer = async {
            match target {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut stop => return,
            _ = wake.notified() => {}
            Some(watch) = watches.recv() => watching.push(watch),
            Some(fired) = watching.next(), if !watching.is_empty() => {
                // `Err`: the session was closed and its watch aborted.
                if let (Ok(session), Some(shared)) = (fired, shared.upgrade()) {
                    shared.transport_closed(session);
                }
            }
            _ = timer => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                shared.step(|st, now| st.core.handle_timeout(now));
            }
        }
    }
}
