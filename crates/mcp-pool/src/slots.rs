//! A bounded, lock-free bag of counted references ([`Owned`]: `Arc`s, or
//! the lanes' cell handles): where a lane parks its cells.
//!
//! Each slot is one atomic pointer: null when empty, else the raw form
//! ([`Owned::into_raw`]) of one reference the bag owns. Every change
//! of a slot is one atomic instruction that moves that reference whole:
//! - [`Slots::push`] turns a null slot into the pointer (compare-and-swap);
//! - [`Slots::pop`] and [`Slots::remove`] turn a pointer into null (swap or
//!   compare-and-swap) and take the reference it stood for.
//!
//! So a reference is owned by exactly one slot or by one caller at any
//! time, and never read after it left its slot: the pointer a taker swaps
//! out is the reference it gets, whoever put it there (a slot emptied and
//! refilled with the same pointer between a taker's look and its swap still
//! holds one reference to that value). Nothing else reads through a
//! pointer in a slot. Dropping the bag drops what it still holds.
//!
//! Compared with a queue (a head, a tail and a separate buffer), a take or
//! a park touches the slot's cache line alone: a bag of 16 fits in two.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

/// Asks the processor to bring the cache line at `at` near (a hint: it
/// reads nothing the program sees, and any address may be given).
#[inline(always)]
pub(crate) fn prefetch(at: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory, whatever the
    // address; the pointer is never read through.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// A counted reference that can leave its type as a raw pointer and come
/// back.
///
/// # Safety
///
/// `into_raw` gives up the reference without dropping it and returns the
/// value's address, the same `as_ptr` returns for any reference to that
/// value (and never null); `from_raw` of that pointer is that reference
/// again.
pub(crate) unsafe trait Owned: Sized {
    /// What it refers to.
    type Target;
    /// Gives up the reference, as a raw pointer that owns it.
    fn into_raw(self) -> *mut Self::Target;
    /// The reference `raw` owns.
    ///
    /// # Safety
    ///
    /// `raw` came from `into_raw` and was not taken back since.
    unsafe fn from_raw(raw: *mut Self::Target) -> Self;
    /// Where the value is (never read through here).
    fn as_ptr(&self) -> *const Self::Target;
}

// SAFETY: `Arc`'s own raw conversions, which keep these promises.
unsafe impl<T> Owned for Arc<T> {
    type Target = T;

    fn into_raw(self) -> *mut T {
        Arc::into_raw(self).cast_mut()
    }

    unsafe fn from_raw(raw: *mut T) -> Arc<T> {
        // SAFETY: by the caller's contract.
        unsafe { Arc::from_raw(raw) }
    }

    fn as_ptr(&self) -> *const T {
        Arc::as_ptr(self)
    }
}

/// How many times a push looks at every slot before it gives up.
const PASSES: usize = 3;

/// Slots in a cache line (64 bytes).
pub(crate) const PER_LINE: usize = 64 / std::mem::size_of::<usize>();

/// One cache line of slots, alone on it: the slots of different threads'
/// regions (whole lines each, see `lane`) never share a line.
#[repr(C, align(64))]
struct Line<T>([AtomicPtr<T>; PER_LINE]);

/// A bag of references `P`, in whole cache lines of slots.
pub(crate) struct Slots<P: Owned> {
    lines: Box<[Line<P::Target>]>,
}

// SAFETY: the bag holds references `P` and hands them between threads
// whole: it may cross or be shared between threads when `P` may cross them.
unsafe impl<P: Owned + Send> Send for Slots<P> {}
// SAFETY: as above.
unsafe impl<P: Owned + Send> Sync for Slots<P> {}

impl<P: Owned> Slots<P> {
    /// An empty bag of at least `capacity` slots (at least 1), rounded up
    /// to whole cache lines of their own.
    pub(crate) fn new(capacity: usize) -> Slots<P> {
        Slots {
            lines: (0..capacity.max(1).div_ceil(PER_LINE))
                .map(|_| {
                    Line(std::array::from_fn(
                        |_| AtomicPtr::new(std::ptr::null_mut()),
                    ))
                })
                .collect(),
        }
    }

    /// The address of the first slot (for prefetching; the slots never
    /// move, and slot `i` is `i` pointers further).
    pub(crate) fn address(&self) -> usize {
        self.lines.as_ptr() as usize
    }

    /// Every slot.
    fn all(&self) -> impl Iterator<Item = &AtomicPtr<P::Target>> {
        self.lines.iter().flat_map(|line| line.0.iter())
    }

    /// Every slot, from the start of the line holding slot `start` (modulo
    /// their number), wrapping: line by line, each line's slots in order.
    fn from(&self, start: usize) -> impl Iterator<Item = &AtomicPtr<P::Target>> {
        let first = (start / PER_LINE) % self.lines.len();
        self.lines[first..]
            .iter()
            .chain(self.lines[..first].iter())
            .flat_map(|line| line.0.iter())
    }

    /// Puts `value` in the first empty slot from the line of `start`; gives
    /// it back if it found every slot full on each of [`PASSES`] passes (an
    /// empty slot can move behind a pass while others take and park: give
    /// the bag room to spare). The exchange that fills the slot is
    /// sequentially consistent, so a lane's giver can order its push before
    /// its look at the waiting callers without a fence (see `lane`).
    pub(crate) fn push(&self, value: P, start: usize) -> Result<(), P> {
        let raw = value.into_raw();
        for slot in (0..PASSES).flat_map(|_| self.from(start)) {
            if slot.load(Ordering::Relaxed).is_null()
                && slot
                    .compare_exchange(
                        std::ptr::null_mut(),
                        raw,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return Ok(());
            }
        }
        // SAFETY: `raw` came from `into_raw` above and went into no slot,
        // so its reference is still this function's.
        Err(unsafe { P::from_raw(raw) })
    }

    /// Takes a value from the first full slot from the line of `start`, if
    /// any.
    pub(crate) fn pop(&self, start: usize) -> Option<P> {
        for slot in self.from(start) {
            if slot.load(Ordering::Relaxed).is_null() {
                continue;
            }
            let raw = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !raw.is_null() {
                // SAFETY: a non-null slot owns one reference made by
                // `into_raw` in `push`; the swap moved it out whole.
                return Some(unsafe { P::from_raw(raw) });
            }
        }
        None
    }

    /// Takes `value` out of the bag if it is there (the reference the bag
    /// held is dropped; the caller keeps its own).
    pub(crate) fn remove(&self, value: &P) -> bool {
        let raw = value.as_ptr().cast_mut();
        for slot in self.all() {
            if slot.load(Ordering::Relaxed) == raw
                && slot
                    .compare_exchange(
                        raw,
                        std::ptr::null_mut(),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                // SAFETY: the slot held `raw`, one reference from `push`,
                // and the exchange moved it out whole.
                drop(unsafe { P::from_raw(raw) });
                return true;
            }
        }
        false
    }

    /// Values in the bag now (a snapshot).
    pub(crate) fn len(&self) -> usize {
        self.all()
            .filter(|s| !s.load(Ordering::Relaxed).is_null())
            .count()
    }

    /// Whether the bag is empty now (a snapshot).
    pub(crate) fn is_empty(&self) -> bool {
        self.all().all(|s| s.load(Ordering::Relaxed).is_null())
    }

    /// Drops everything in the bag.
    pub(crate) fn clear(&self) {
        while self.pop(0).is_some() {}
    }
}

impl<P: Owned> Drop for Slots<P> {
    fn drop(&mut self) {
        for slot in self.lines.iter_mut().flat_map(|line| line.0.iter_mut()) {
            let raw = std::mem::replace(slot.get_mut(), std::ptr::null_mut());
            if !raw.is_null() {
                // SAFETY: as in `pop`; `&mut self` rules out any other
                // access.
                drop(unsafe { P::from_raw(raw) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn values_go_in_and_out_whole() {
        // Room for 3, rounded up to a line.
        let bag = Slots::new(3);
        let a = Arc::new(1);
        let b = Arc::new(2);
        assert!(bag.push(a.clone(), 0).is_ok());
        assert!(bag.push(b.clone(), 0).is_ok());
        assert_eq!(bag.len(), 2);
        assert_eq!(Arc::strong_count(&a), 2);
        assert!(bag.remove(&a));
        assert!(!bag.remove(&a), "removed once");
        assert_eq!(Arc::strong_count(&a), 1);
        // With `b`, these fill the line.
        let more = 3..=PER_LINE as i32 + 1;
        for n in more.clone() {
            assert!(bag.push(Arc::new(n), n as usize).is_ok());
        }
        let full = bag.push(Arc::new(0), 0).unwrap_err();
        assert_eq!(*full, 0, "a full bag gives the value back");
        let mut got: Vec<i32> = std::iter::from_fn(|| bag.pop(1)).map(|v| *v).collect();
        got.sort();
        assert_eq!(got, std::iter::once(2).chain(more).collect::<Vec<_>>());
        assert!(bag.is_empty());
        assert_eq!(Arc::strong_count(&b), 1);
        assert!(bag.pop(0).is_none());
    }

    #[test]
    fn dropping_the_bag_drops_what_it_holds() {
        let a = Arc::new(());
        let bag = Slots::new(2);
        bag.push(a.clone(), 0).unwrap();
        drop(bag);
        assert_eq!(Arc::strong_count(&a), 1);
    }

    /// Four threads take values, park them again and remove some, for a
    /// while, in a bag with room for twice the values (as a lane has): no
    /// value is lost or held twice, whether a push finds room or not.
    #[test]
    fn racing_takes_parks_and_removals_lose_nothing() {
        const VALUES: usize = 8;
        let values: Vec<Arc<AtomicUsize>> =
            (0..VALUES).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let bag = Arc::new(Slots::new(2 * VALUES));
        for v in &values {
            bag.push(v.clone(), 0).unwrap();
        }
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let bag = bag.clone();
                let values = values.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..50_000usize {
                        if let Some(v) = bag.pop(t * VALUES / 2 + i) {
                            // Held by this thread alone.
                            assert_eq!(v.fetch_add(1, Ordering::SeqCst) % 2, 0, "held twice");
                            v.fetch_add(1, Ordering::SeqCst);
                            if let Err(v) = bag.push(v, t * VALUES / 2) {
                                held.push(v);
                            }
                        }
                        if i % 97 == 0 {
                            let v = &values[(t + i) % VALUES];
                            if bag.remove(v) {
                                held.push(v.clone());
                            }
                        }
                        if i % 101 == 0 {
                            if let Some(v) = held.pop() {
                                if let Err(v) = bag.push(v, 0) {
                                    held.push(v);
                                }
                            }
                        }
                    }
                    drop(values);
                    held
                })
            })
            .collect();
        let mut held = Vec::new();
        for t in threads {
            held.extend(t.join().unwrap());
        }
        assert_eq!(bag.len() + held.len(), VALUES, "a value lost or doubled");
        drop(held);
        for v in &values {
            assert_eq!(
                Arc::strong_count(v),
                1 + usize::from(bag.remove(v)),
                "a reference leaked"
            );
        }
        assert!(bag.is_empty());
    }
}
