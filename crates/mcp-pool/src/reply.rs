//! A one-shot reply: how an answer reaches a waiting caller. Like tokio's
//! oneshot channel, but its slot is recycled (a thread keeps the slots its
//! callers finished with), so waiting allocates nothing in a steady state.
//!
//! The slot's one atomic word says who may touch its two cells:
//! - the value cell: the sender writes it before it sets `SENT` (and only
//!   while `CLOSED` is not set: the send and the close are ordered by the
//!   word), the receiver reads it only after it saw `SENT`;
//! - the waker cell: the receiver writes it only while `WAKER` is clear
//!   (clearing it only while `SENT`/`DROPPED` are not set), and sets
//!   `WAKER` after; the sender reads it (by reference, as the receiver may
//!   too) only after setting `SENT` or `DROPPED` in a word that had `WAKER`
//!   set, after which the receiver never writes it again.
//!
//! A slot is reused only by a receiver holding its last reference.

use std::cell::{RefCell, UnsafeCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// The receiver stored a waker.
const WAKER: u8 = 1;
/// The sender wrote the value.
const SENT: u8 = 2;
/// The receiver closed: a send from now on fails.
const CLOSED: u8 = 4;
/// The sender went away without sending.
const DROPPED: u8 = 8;

struct Slot<T> {
    state: AtomicU8,
    value: UnsafeCell<Option<T>>,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the cells are only touched as the module comment says, each by
// one side at a time, ordered by `state` (acquire/release).
unsafe impl<T: Send> Sync for Slot<T> {}
unsafe impl<T: Send> Send for Slot<T> {}

impl<T> Slot<T> {
    fn new() -> Slot<T> {
        Slot {
            state: AtomicU8::new(0),
            value: UnsafeCell::new(None),
            waker: UnsafeCell::new(None),
        }
    }

    /// Takes the value; only after seeing `SENT` (acquire).
    fn take_value(&self) -> Option<T> {
        // SAFETY: `SENT` was seen: the sender wrote the value and never
        // touches it again; only the receiver reads it.
        unsafe { (*self.value.get()).take() }
    }

    /// Wakes the receiver; only after setting `SENT` or `DROPPED` in a word
    /// that had `WAKER` set.
    fn wake(&self) {
        // SAFETY: the receiver stored the waker before setting `WAKER` and
        // never writes it once `SENT` or `DROPPED` is set; a read it makes
        // meanwhile is shared, like this one.
        if let Some(waker) = unsafe { (*self.waker.get()).as_ref() } {
            waker.wake_by_ref();
        }
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
        .try_with(|spare| {
            let mut spare = spare.borrow_mut();
            let at = spare.iter().rposition(|s| s.is::<Slot<T>>())?;
            spare.swap_remove(at).downcast::<Slot<T>>().ok()
        })
        .ok()
        .flatten()
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
        let mut state = slot.state.load(Ordering::Acquire);
        if state & CLOSED != 0 {
            return Err(Gone(value));
        }
        // SAFETY: `SENT` is not set, so the receiver does not read the
        // value cell; only this sender writes it, once.
        unsafe { *slot.value.get() = Some(value) };
        loop {
            if state & CLOSED != 0 {
                // Closed before the send: the receiver never reads it.
                let value = unsafe { (*slot.value.get()).take() };
                return Err(Gone(value.expect("just written")));
            }
            match slot.state.compare_exchange_weak(
                state,
                state | SENT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        if state & WAKER != 0 {
            slot.wake();
        }
        Ok(())
    }
}

impl<T: Send + 'static> Drop for Sender<T> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        let before = slot.state.fetch_or(DROPPED, Ordering::AcqRel);
        if before & WAKER != 0 && before & CLOSED == 0 {
            slot.wake();
        }
    }
}

impl<T: Send + 'static> Receiver<T> {
    /// From now on a send fails (and gives its value back).
    pub(crate) fn close(&mut self) {
        if let Some(slot) = &self.slot {
            slot.state.fetch_or(CLOSED, Ordering::AcqRel);
        }
    }

    /// The reply, if it came (before a close).
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let slot = self.slot.as_ref()?;
        if slot.state.load(Ordering::Acquire) & SENT != 0 {
            return slot.take_value();
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
        let ready = |state: u8| {
            if state & SENT != 0 {
                Some(slot.take_value().ok_or(NoReply))
            } else if state & (DROPPED | CLOSED) != 0 {
                Some(Err(NoReply))
            } else {
                None
            }
        };
        let mut state = slot.state.load(Ordering::Acquire);
        if let Some(r) = ready(state) {
            return Poll::Ready(r);
        }
        if state & WAKER != 0 {
            // SAFETY: `WAKER` is set: nobody writes the cell; the sender may
            // read it at the same time (by reference too).
            let same =
                unsafe { (*slot.waker.get()).as_ref() }.is_some_and(|w| w.will_wake(cx.waker()));
            if same {
                return Poll::Pending;
            }
            // Take the cell back before writing it.
            loop {
                match slot.state.compare_exchange_weak(
                    state,
                    state & !WAKER,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(now) => {
                        if let Some(r) = ready(now) {
                            return Poll::Ready(r);
                        }
                        state = now;
                    }
                }
            }
        }
        // SAFETY: `WAKER` is clear: the sender never reads the cell now.
        unsafe { *slot.waker.get() = Some(cx.waker().clone()) };
        let before = slot.state.fetch_or(WAKER, Ordering::AcqRel);
        match ready(before) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl<T: Send + 'static> Drop for Receiver<T> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        // Reusable once nobody else holds it: the sender sent (or went).
        if Arc::strong_count(&slot) != 1 {
            return;
        }
        // Pairs with the release of the sender's reference.
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: the last reference: nobody else can touch the cells.
        unsafe {
            drop((*slot.value.get()).take());
            drop((*slot.waker.get()).take());
        }
        slot.state.store(0, Ordering::Relaxed);
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_LIMIT {
                spare.push(slot as AnySlot);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A value that counts its drops, so a lost or doubled value shows.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_sent_value_arrives_once_and_slots_are_reused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            for i in 0..200 {
                let (tx, rx) = channel::<Counted>();
                if i % 2 == 0 {
                    tx.send(Counted(drops.clone())).ok().unwrap();
                    drop(rx.await.unwrap());
                } else {
                    drop(tx);
                    assert!(rx.await.is_err());
                }
            }
        });
        assert_eq!(drops.load(Ordering::SeqCst), 100);
        let slot_of = |tx: &Sender<Counted>| Arc::as_ptr(tx.slot.as_ref().unwrap());
        let (tx, rx) = channel::<Counted>();
        let first = slot_of(&tx);
        drop(tx);
        drop(rx);
        let (tx, _rx) = channel::<Counted>();
        assert_eq!(slot_of(&tx), first, "a finished slot is reused");
        let spare = SPARE.with(|s| s.borrow().len());
        assert!((0..=SPARE_LIMIT).contains(&spare), "slots kept: {spare}");
    }

    #[test]
    fn a_send_after_close_comes_back_and_one_before_is_kept() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = channel::<Counted>();
        rx.close();
        let Err(Gone(back)) = tx.send(Counted(drops.clone())) else {
            panic!("a send after close must fail")
        };
        drop(back);
        assert!(rx.try_recv().is_none());
        let (tx, mut rx) = channel::<Counted>();
        assert!(tx.send(Counted(drops.clone())).is_ok());
        rx.close();
        assert!(rx.try_recv().is_some());
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    /// Senders on other threads race receivers that close, poll and drop:
    /// every value is either received or given back, exactly once.
    #[test]
    fn racing_sends_and_closes_lose_and_double_nothing() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let made = 20_000;
        rt.block_on(async {
            let mut handles = Vec::new();
            for i in 0..made {
                let (tx, mut rx) = channel::<Counted>();
                let value = Counted(drops.clone());
                let sender = tokio::spawn(async move {
                    if let Err(Gone(v)) = tx.send(value) {
                        drop(v);
                    }
                });
                handles.push(tokio::spawn(async move {
                    if i % 3 == 0 {
                        rx.close();
                        drop(rx.try_recv());
                    } else {
                        drop(rx.await);
                    }
                }));
                handles.push(sender);
            }
            for h in handles {
                h.await.unwrap();
            }
        });
        assert_eq!(drops.load(Ordering::SeqCst), made);
    }
}
