//! A one-shot reply: how an answer reaches a waiting caller. Like tokio's
//! oneshot channel, but its slot is recycled (a thread keeps the slots its
//! callers finished with), so waiting allocates nothing in a steady state.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

const EMPTY: u8 = 0;
const FULL: u8 = 1;
/// The receiver went away (or closed): a send fails.
const CLOSED: u8 = 2;
/// The sender went away without sending.
const DROPPED: u8 = 3;

struct Slot<T> {
    state: AtomicU8,
    value: Mutex<Option<T>>,
    waker: AtomicWaker,
}

impl<T> Slot<T> {
    fn new() -> Slot<T> {
        Slot {
            state: AtomicU8::new(EMPTY),
            value: Mutex::new(None),
            waker: AtomicWaker::new(),
        }
    }

    fn take(&self) -> Option<T> {
        self.value.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The sending half: consumed by [`Sender::send`].
pub(crate) struct Sender<T: Send + 'static> {
    slot: Option<Arc<Slot<T>>>,
}

/// The receiving half: a future of the answer (`Err` if the sender went
/// away without one).
pub(crate) struct Receiver<T: Send + 'static> {
    slot: Option<Arc<Slot<T>>>,
}

/// Sending a reply to a receiver that went away gives the value back.
pub(crate) struct Gone<T>(pub(crate) T);

/// The sender went away without a reply.
#[derive(Debug)]
pub(crate) struct NoReply;

type AnySlot = Arc<dyn std::any::Any + Send + Sync>;

thread_local! {
    /// Slots this thread's receivers finished with, ready for reuse (of any
    /// answer type; a slot is found by its type).
    static SPARE: RefCell<Vec<AnySlot>> = const { RefCell::new(Vec::new()) };
}

const SPARE_LIMIT: usize = 64;

/// A new reply channel, reusing a slot this thread has spare.
pub(crate) fn channel<T: Send + 'static>() -> (Sender<T>, Receiver<T>) {
    let slot = SPARE
        .with(|spare| {
            let mut spare = spare.borrow_mut();
            let at = spare.iter().rposition(|s| s.is::<Slot<T>>())?;
            spare.swap_remove(at).downcast::<Slot<T>>().ok()
        })
        .unwrap_or_else(|| Arc::new(Slot::new()));
    (
        Sender {
            slot: Some(slot.clone()),
        },
        Receiver { slot: Some(slot) },
    )
}

impl<T: Send + 'static> Sender<T> {
    /// Delivers `value`, or gives it back if the receiver went away.
    pub(crate) fn send(mut self, value: T) -> Result<(), Gone<T>> {
        let slot = self.slot.take().expect("sends once");
        if slot.state.load(Ordering::Acquire) == CLOSED {
            return Err(Gone(value));
        }
        *slot.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        match slot
            .state
            .compare_exchange(EMPTY, FULL, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                slot.waker.wake();
                Ok(())
            }
            // Closed meanwhile: take it back.
            Err(_) => Err(Gone(slot.take().expect("just put"))),
        }
    }
}

impl<T: Send + 'static> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            if slot
                .state
                .compare_exchange(EMPTY, DROPPED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.waker.wake();
            }
        }
    }
}

impl<T: Send + 'static> Receiver<T> {
    /// From now on a send fails (and gives its value back).
    pub(crate) fn close(&mut self) {
        if let Some(slot) = &self.slot {
            let _ = slot
                .state
                .compare_exchange(EMPTY, CLOSED, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The reply, if it came.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let slot = self.slot.as_ref()?;
        if slot.state.load(Ordering::Acquire) == FULL {
            let value = slot.take();
            slot.state.store(CLOSED, Ordering::Release);
            return value;
        }
        None
    }
}

impl<T: Send + 'static> Future for Receiver<T> {
    type Output = Result<T, NoReply>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(slot) = self.slot.as_ref() else {
            return Poll::Ready(Err(NoReply));
        };
        let ready = |slot: &Slot<T>| match slot.state.load(Ordering::Acquire) {
            FULL => {
                let value = slot.take();
                slot.state.store(CLOSED, Ordering::Release);
                Some(value.ok_or(NoReply))
            }
            DROPPED | CLOSED => Some(Err(NoReply)),
            _ => None,
        };
        if let Some(r) = ready(slot) {
            return Poll::Ready(r);
        }
        slot.waker.register(cx.waker());
        match ready(slot) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl<T: Send + 'static> Drop for Receiver<T> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        // Reusable once nobody else holds it: the sender sent (or went).
        if Arc::strong_count(&slot) == 1 {
            slot.state.store(EMPTY, Ordering::Relaxed);
            drop(slot.take());
            drop(slot.waker.take());
            let _ = SPARE.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < SPARE_LIMIT {
                    spare.push(slot as AnySlot);
                }
            });
        }
    }
}
