//! A session lent to its key's lane ([`Cell`]), and the counted handle each
//! of its holders has ([`CellRef`]).
//!
//! A `CellRef` is an `Arc` cut down to what a cell needs: one strong count
//! and no weak one, kept on the cell's first cache line beside the state a
//! take claims. (`Arc` keeps its counts before the value: for a value
//! aligned to a cache line, a whole line before it, so every clone and drop
//! touched a line of its own, a miss per give-back with many keys.) The
//! count follows `Arc`'s rules: a clone adds one (relaxed: the cloner
//! already holds a handle), a drop takes one away with release ordering,
//! and the drop that takes the last one acquires every earlier drop before
//! it frees the cell.

use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mcp_pool_core::{SessionId, Time};

use crate::lane::Lane;
use crate::slots::Owned;
use crate::Connector;

/// The cell is parked in its lane's slots and may be taken.
const PARKED: u8 = 0;
/// A caller holds it.
const TAKEN: u8 = 1;
/// The pool recalled it (a flag, with `PARKED` or `TAKEN`).
const RECALLED: u8 = 2;
/// It went back to the pool.
const GONE: u8 = 4;

/// `last_used` of a cell never used in its lane.
const NEVER: u64 = u64::MAX;

/// More handles than this to one cell aborts the process, as `Arc` does (a
/// cell has a handful: its slot's or holder's, the pool's, a give-back's).
const MAX_REFS: u32 = u32::MAX / 2;

/// One lent session, as its lane holds it.
///
/// Laid out in the order of use, all that a take and a give-back touch on
/// its first cache line: the handles' count and the state a take claims,
/// the bound it checks and the count of takes, then what the caller and the
/// give-back read and write. Aligned to a cache line, so no two cells share
/// one: two threads each using its own session never pass a line between
/// their cores.
#[repr(C, align(64))]
pub(crate) struct Cell<C: Connector> {
    /// Handles ([`CellRef`]s) to it.
    refs: AtomicU32,
    state: AtomicU8,
    /// Callers may take it while the time is before this (nanoseconds).
    until: AtomicU64,
    /// Times callers took it from its lane (written only by the caller that
    /// just claimed it, so a plain load and store, no read-modify-write).
    takes: AtomicU64,
    pub(crate) session: Arc<C::Session>,
    pub(crate) lane: Arc<Lane<C>>,
    renew: u64,
    hard_end: u64,
    /// The end of its last use in the lane, or [`NEVER`].
    last_used: AtomicU64,
    pub(crate) id: SessionId,
}

impl<C: Connector> Cell<C> {
    /// A cell for session `id` just lent to `lane`, held by the lender,
    /// which may take it until `until`; a use ending well at `t` renews
    /// that to `t + renew`, never past `hard_end`.
    pub(crate) fn new(
        id: SessionId,
        session: Arc<C::Session>,
        lane: Arc<Lane<C>>,
        until: Time,
        renew: Duration,
        hard_end: Time,
    ) -> Cell<C> {
        Cell {
            refs: AtomicU32::new(1),
            id,
            session,
            lane,
            state: AtomicU8::new(TAKEN),
            until: AtomicU64::new(until.as_nanos()),
            last_used: AtomicU64::new(NEVER),
            renew: u64::try_from(renew.as_nanos()).unwrap_or(u64::MAX),
            hard_end: hard_end.as_nanos(),
            takes: AtomicU64::new(0),
        }
    }

    /// Times callers took it from its lane.
    pub(crate) fn takes(&self) -> u64 {
        self.takes.load(Ordering::Relaxed)
    }

    /// When its last use in the lane ended well, if it was used there.
    pub(crate) fn last_used(&self) -> Option<Time> {
        match self.last_used.load(Ordering::Acquire) {
            NEVER => None,
            t => Some(Time::from_nanos(t)),
        }
    }

    /// Whether callers may take it at `now` (its bound is after `now`).
    pub(crate) fn fresh_at(&self, now: Time) -> bool {
        now.as_nanos() < self.until.load(Ordering::Acquire)
    }

    /// A caller claims it from its slot: fails if the pool recalled it.
    pub(crate) fn claim(&self) -> bool {
        self.state
            .compare_exchange(PARKED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Counts a take by the caller that just claimed it (only that caller
    /// writes the count, and each claim follows the previous holder's
    /// release of it).
    pub(crate) fn count_take(&self) {
        let takes = self.takes.load(Ordering::Relaxed);
        self.takes.store(takes + 1, Ordering::Relaxed);
    }

    /// Its holder parks it: fails if the pool recalled it meanwhile.
    pub(crate) fn park(&self) -> bool {
        self.state
            .compare_exchange(TAKEN, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The pool recalls it: true if it was parked (no caller holds it, and
    /// none can claim it any more).
    pub(crate) fn recall(&self) -> bool {
        self.state.fetch_or(RECALLED, Ordering::SeqCst) == PARKED
    }

    /// Whether the pool recalled it (sequentially consistent: a giver looks
    /// after its push, see `Lane::park`).
    pub(crate) fn is_recalled(&self) -> bool {
        self.state.load(Ordering::SeqCst) & RECALLED != 0
    }

    /// The caller holding it gives it up to the pool: no one takes it from
    /// the lane again.
    pub(crate) fn leave_lane(&self) {
        self.state.store(GONE, Ordering::Release);
    }

    /// A use ending well at `t` renews its bound by the published rule.
    pub(crate) fn renew_at(&self, t: Time) {
        let t = t.as_nanos();
        self.last_used.store(t, Ordering::Release);
        let until = t.saturating_add(self.renew).min(self.hard_end);
        self.until.store(until, Ordering::Release);
    }

    /// Claims a cell its holder is handing to a waiting caller: fails if
    /// the pool recalled it meanwhile.
    pub(crate) fn still_held(&self) -> bool {
        self.state
            .compare_exchange(TAKEN, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[cfg(test)]
impl<C: Connector> Cell<C> {
    /// Where the fields a take and a give-back touch end (bytes from the
    /// cell's start).
    pub(crate) fn first_line_ends() -> usize {
        std::mem::offset_of!(Cell<C>, last_used) + std::mem::size_of::<AtomicU64>()
    }
}

/// A counted handle to a [`Cell`], as `Arc<Cell>` would be (see the module
/// comment): the cell lives while any handle does.
pub(crate) struct CellRef<C: Connector> {
    ptr: NonNull<Cell<C>>,
    owns: PhantomData<Cell<C>>,
}

// SAFETY: handles share their cell between threads as `Arc` does, so they
// may cross threads when the cell may be shared between them, and it always
// may: every field is an atomic, a plain number, or an `Arc` of something
// `Send + Sync` (a `Connector`'s session, and the lane, made of such parts).
unsafe impl<C: Connector> Send for CellRef<C> {}
// SAFETY: as above.
unsafe impl<C: Connector> Sync for CellRef<C> {}

impl<C: Connector> CellRef<C> {
    /// The first handle to `cell` (whose count [`Cell::new`] set to one).
    pub(crate) fn new(cell: Cell<C>) -> CellRef<C> {
        debug_assert_eq!(cell.refs.load(Ordering::Relaxed), 1);
        CellRef {
            ptr: NonNull::from(Box::leak(Box::new(cell))),
            owns: PhantomData,
        }
    }

    /// Handles to the cell now (a snapshot).
    #[cfg(test)]
    pub(crate) fn count(&self) -> u32 {
        self.refs.load(Ordering::Relaxed)
    }
}

impl<C: Connector> Clone for CellRef<C> {
    fn clone(&self) -> Self {
        // Relaxed as in `Arc`: this handle keeps the cell alive, and a new
        // handle reaches another thread only through a synchronising send.
        if self.refs.fetch_add(1, Ordering::Relaxed) > MAX_REFS {
            std::process::abort();
        }
        CellRef {
            ptr: self.ptr,
            owns: PhantomData,
        }
    }
}

impl<C: Connector> Drop for CellRef<C> {
    fn drop(&mut self) {
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other handle's uses happen before the cell is freed.
        fence(Ordering::Acquire);
        // SAFETY: this was the last handle, so nothing else can reach the
        // cell; it was boxed in `CellRef::new`.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}

impl<C: Connector> Deref for CellRef<C> {
    type Target = Cell<C>;

    fn deref(&self) -> &Cell<C> {
        // SAFETY: the cell lives while this handle does.
        unsafe { self.ptr.as_ref() }
    }
}

// SAFETY: `into_raw` gives up the handle without touching the count and
// `from_raw` takes it back; the pointer is the cell's, as `as_ptr` gives.
unsafe impl<C: Connector> Owned for CellRef<C> {
    type Target = Cell<C>;

    fn into_raw(self) -> *mut Cell<C> {
        let ptr = self.ptr.as_ptr();
        std::mem::forget(self);
        ptr
    }

    unsafe fn from_raw(raw: *mut Cell<C>) -> CellRef<C> {
        CellRef {
            // SAFETY: by the caller's contract, `raw` came from `into_raw`,
            // which is never null.
            ptr: unsafe { NonNull::new_unchecked(raw) },
            owns: PhantomData,
        }
    }

    fn as_ptr(&self) -> *const Cell<C> {
        self.ptr.as_ptr()
    }
}

/// Compiles only while every cell may be shared between threads, which the
/// `Send` and `Sync` of [`CellRef`] rely on.
#[allow(dead_code)]
fn cells_are_send_and_sync<C: Connector>() {
    fn shared<T: Send + Sync>() {}
    shared::<Cell<C>>();
}
