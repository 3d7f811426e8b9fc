//! Lanes: the per-key hot path the core decides and the driver carries out.
//!
//! The core lends a fresh exclusive session to its key's lane with a
//! freshness bound and the rule that renews it (`Action::Lend`). Here a lane
//! keeps its lent sessions ([`Cell`](crate::cell::Cell)s) parked in a bag
//! of slots (one region of whole cache lines, room for `max_sessions`, per
//! group of threads, where each thread looks first, so two threads rarely
//! touch the same memory, and a take or a park touches one cache line of
//! the lane's), and callers take and give them back without the pool's
//! lock:
//!
//! - take: pop a parked cell (own region first), claim it with one
//!   compare-and-swap of its state, and check its bound against the clock;
//! - give back after `Ok` or `ApplicationError`: renew its bound by the
//!   published rule, then hand it to the first caller waiting in the lane,
//!   or park it again;
//! - anything else (another outcome, a stale or closed session, a recall
//!   racing the caller) goes to the core as `lane_returned`.
//!
//! A recall (`Action::Recall`, carried out under the pool's lock) sets the
//! cell's recall flag in the same atomic word a take claims: if the cell was
//! parked, the recall wins and the session goes back at once; if a caller
//! holds it, the caller finds the flag when it gives it back. A giver that
//! marked the cell parked just before the recall, and puts it in a slot just
//! after, looks at the flag again after its push and takes the cell out
//! again, so no handle of a recalled cell stays in a slot (where it would
//! keep the session from its close). Nothing else is decided here: which
//! sessions are lent, until when, when they come back, and whether callers
//! may wait in a lane are the core's decisions.
//!
//! Callers who find nothing parked wait in the lane only while the core
//! keeps it open (every session of the key lent and the key at its limit);
//! when the core closes it, they become the pool's acquires, in order.
//!
//! No session stays parked while a caller waits, by two rules:
//! - a giver parks, then looks at the count of waiting callers; if any, it
//!   takes the queue's lock and hands its session to the first of them
//!   (out of its slot again, unless a caller took it meanwhile);
//! - the first caller to wait in an empty queue counts itself, then (after
//!   a fence) looks through the slots once more; a caller queued behind
//!   others does not look: whatever was parked before the first one came, it
//!   found, and whatever was parked since, its giver saw someone waiting and
//!   hands over (under the lock this caller held while queueing).
//!
//! Of a giver and the first waiter, at least one sees the other. The
//! giver's push into its slot and its look at the count are sequentially
//! consistent (`Slots::push`), as is the waiter's count; the waiter's
//! look at the slots follows a sequentially consistent fence. If the giver
//! saw no waiter, its look came before the waiter's count in the single
//! order of such operations, hence so did its push; the waiter's look
//! follows its fence, which follows its count, so it sees that push (or a
//! later take of it). The giver needs no fence of its own: its give-back,
//! the common path, makes no more than its exchanges.

use std::cell::Cell as ThreadCell;
use std::collections::VecDeque;
use std::sync::atomic::fence;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::reply;
use crate::slots::{prefetch, Slots, PER_LINE};
use mcp_pool_core::Time;

use crate::cell::CellRef;

use crate::shared::{Answer, Shared};
use crate::Connector;

/// A caller waiting in a lane.
pub(crate) struct LaneWaiter<C: Connector> {
    pub(crate) token: u64,
    pub(crate) deadline: Time,
    pub(crate) tx: reply::Sender<Answer<C>>,
}

struct Queue<C: Connector> {
    open: bool,
    waiters: VecDeque<LaneWaiter<C>>,
    /// What happened to callers here (counted under the lock, which every
    /// one of these takes anyway).
    waits: u64,
    handoffs: u64,
    timeouts: u64,
    cancels: u64,
    adopted: u64,
    /// Callers refused because `max_waiters_per_key` already waited here.
    full: u64,
    /// The reaper (see [`Lane::after_queueing`]) refusing waiters here
    /// at their deadlines, while one runs: registered and unregistered
    /// under this lock only, so a caller queueing here either finds one
    /// registered (which sees the caller before it ends) or registers one.
    reaper: Option<u64>,
    /// Reapers registered so far (numbers them).
    reapers: u64,
}

/// What every take and give-back reads, together on one cache line and
/// alone on it (away from the lane's reference count and its lock): for a
/// pool of many keys, a take touches the key's map entry, this line, one
/// line of slots and the cell.
#[repr(align(128))]
struct Hot<C: Connector> {
    /// Callers in the queue (read without the lock).
    waiting: AtomicUsize,
    /// Mirrors `queue.open` (read without the lock).
    open: AtomicBool,
    /// Parked cells: [`regions`] regions of `region` slots.
    parked: Slots<CellRef<C>>,
    region: usize,
    connector: Arc<C>,
}

/// The callers a lane served or refused, for [`Metrics`](crate::Metrics).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LaneCounts {
    /// Counted on the cells, not the lane: [`Lane::counts`] leaves it 0 and
    /// the pool fills it in from its lent and retired cells.
    pub(crate) takes: u64,
    pub(crate) waits: u64,
    pub(crate) handoffs: u64,
    pub(crate) timeouts: u64,
    pub(crate) cancels: u64,
    pub(crate) adopted: u64,
    pub(crate) full: u64,
    pub(crate) unused: u64,
    pub(crate) waiting: usize,
}

impl LaneCounts {
    pub(crate) fn add(self, o: LaneCounts) -> LaneCounts {
        LaneCounts {
            takes: self.takes + o.takes,
            waits: self.waits + o.waits,
            handoffs: self.handoffs + o.handoffs,
            timeouts: self.timeouts + o.timeouts,
            cancels: self.cancels + o.cancels,
            adopted: self.adopted + o.adopted,
            full: self.full + o.full,
            unused: self.unused + o.unused,
            waiting: self.waiting + o.waiting,
        }
    }
}

/// One key's lane.
pub(crate) struct Lane<C: Connector> {
    hot: Hot<C>,
    queue: Mutex<Queue<C>>,
    pub(crate) shared: Weak<Shared<C>>,
    pub(crate) unused: AtomicU64,
    /// The deadline the reaper sleeps until (nanoseconds), or `u64::MAX`
    /// while it looks at the queue (or none sleeps).
    reap_at: AtomicU64,
    /// Wakes the reaper before its time, for a caller queued with an
    /// earlier deadline than the one it sleeps until.
    rearm: tokio::sync::Notify,
}

/// What a take found.
pub(crate) enum Take<C: Connector> {
    /// A fresh session, now held by the caller.
    Hit(CellRef<C>),
    /// A session whose bound passed, now owned by the caller, who gives it
    /// back to the pool.
    Stale(CellRef<C>),
    /// Nothing parked is fresh.
    Miss,
}

/// What giving a session back to its lane led to.
pub(crate) enum GiveBack<C: Connector> {
    /// Parked (or nothing to do).
    Done,
    /// Hand it to this waiting caller (outside any lock).
    Handoff(reply::Sender<Answer<C>>, CellRef<C>),
    /// The pool recalled it: give it back to the pool.
    ToPool(CellRef<C>),
}

/// What queueing a caller the pool moved to a lane found.
pub(crate) struct Enqueued<C: Connector> {
    /// A session parked before the caller came, for it (sent outside any
    /// lock).
    pub(crate) handoff: Option<(reply::Sender<Answer<C>>, CellRef<C>)>,
    /// Sessions found past their bound on the way, taken out of the lane:
    /// they go back to the pool.
    pub(crate) stale: Vec<CellRef<C>>,
    /// The number of the reaper to start (registered for this caller), if
    /// any (the caller keeps its own timer whatever this says).
    pub(crate) reaper: Option<u64>,
}

/// What asking to wait in a lane found.
pub(crate) enum Wait<C: Connector> {
    Take(Take<C>),
    /// Queued as `token`, its answer to come on the receiver; start the
    /// reaper of this number (registered for it) if any.
    Queued(u64, reply::Receiver<Answer<C>>, Option<u64>),
    /// The lane does not queue callers: ask the pool.
    Closed,
    /// `max_waiters_per_key` callers already wait here.
    Full,
}

/// Ends a lane's reaper: when its task ends early (its runtime shut
/// down), unregisters it and moves the callers waiting in the lane, who
/// counted on it, to timers of their own.
struct Reaping<C: Connector> {
    lane: Weak<Lane<C>>,
    id: u64,
    armed: bool,
}

impl<C: Connector> Drop for Reaping<C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(lane) = self.lane.upgrade() {
            lane.reaper_gone(self.id);
        }
    }
}

/// Registers a reaper for a caller just queued, unless one runs (under
/// the queue's lock): the number of the reaper to start, if any.
fn register_reaper<C: Connector>(q: &mut Queue<C>) -> Option<u64> {
    if q.reaper.is_some() {
        return None;
    }
    q.reapers += 1;
    q.reaper = Some(q.reapers);
    q.reaper
}

fn lane_shared<C: Connector>(lane: &Weak<Lane<C>>) -> Option<Arc<Shared<C>>> {
    lane.upgrade()?.shared.upgrade()
}

/// How many regions of slots every lane has: one per thread the machine
/// runs at once, from 2 to 16 (fixed for the process).
fn regions() -> usize {
    static REGIONS: OnceLock<usize> = OnceLock::new();
    *REGIONS
        .get_or_init(|| std::thread::available_parallelism().map_or(4, |n| n.get().clamp(2, 16)))
}

/// How many slots a region of a lane of at most `max_sessions` sessions
/// has: every lent session of the key fits in any one region, and a region
/// is whole cache lines, so two threads' regions never share one.
#[inline]
fn region(max_sessions: usize) -> usize {
    max_sessions.max(1).next_multiple_of(PER_LINE)
}

thread_local! {
    static HOME: ThreadCell<usize> = const { ThreadCell::new(usize::MAX) };
}

/// The region of slots of this thread (threads are spread over the
/// regions round-robin, once).
#[inline]
fn home() -> usize {
    match HOME.with(ThreadCell::get) {
        usize::MAX => first_home(),
        v => v,
    }
}

/// This thread's region, chosen on its first take or park.
#[cold]
fn first_home() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % regions();
    HOME.with(|h| h.set(n));
    n
}

/// A key's lane as the pool's map of lanes holds it: the lane, and where
/// its slots are, so a caller can ask for the lines a take reads before it
/// reads any of them.
pub(crate) struct LaneEntry<C: Connector> {
    pub(crate) lane: Arc<Lane<C>>,
    /// The address of the lane's first slot (a hint, never read through).
    slots: usize,
}

impl<C: Connector> LaneEntry<C> {
    pub(crate) fn new(lane: Arc<Lane<C>>) -> LaneEntry<C> {
        let slots = lane.hot.parked.address();
        LaneEntry { lane, slots }
    }

    /// Where the lines a take or a give-back reads first are, for a lane of
    /// at most `max_sessions` sessions: the lane's hot line and its regions
    /// of slots.
    #[inline]
    pub(crate) fn lines(&self, max_sessions: usize) -> LaneLines {
        LaneLines {
            hot: std::ptr::from_ref(&self.lane.hot) as usize,
            slots: self.slots,
            stride: region(max_sessions) * std::mem::size_of::<usize>(),
        }
    }
}

/// Where a lane's hot line and its regions of slots are (hints, never read
/// through).
#[derive(Clone, Copy, Default)]
pub(crate) struct LaneLines {
    hot: usize,
    slots: usize,
    stride: usize,
}

impl LaneLines {
    /// Asks for the lane's hot line and the start of this thread's region
    /// of slots (reading neither); nothing if where they are is not known.
    #[inline]
    pub(crate) fn prefetch(self) {
        if self.hot == 0 {
            return;
        }
        prefetch(self.hot);
        prefetch(self.slots + home() * self.stride);
    }
}

impl<C: Connector> Clone for LaneEntry<C> {
    fn clone(&self) -> Self {
        LaneEntry {
            lane: self.lane.clone(),
            slots: self.slots,
        }
    }
}

impl<C: Connector> std::ops::Deref for LaneEntry<C> {
    type Target = Arc<Lane<C>>;

    fn deref(&self) -> &Arc<Lane<C>> {
        &self.lane
    }
}

impl<C: Connector> Lane<C> {
    /// A lane for a key with at most `max_sessions` sessions.
    pub(crate) fn new(shared: Weak<Shared<C>>, connector: Arc<C>, max_sessions: usize) -> Lane<C> {
        let regions = regions();
        let region = region(max_sessions);
        Lane {
            hot: Hot {
                waiting: AtomicUsize::new(0),
                open: AtomicBool::new(false),
                parked: Slots::new(regions * region),
                region,
                connector,
            },
            queue: Mutex::new(Queue {
                open: false,
                waiters: VecDeque::new(),
                waits: 0,
                handoffs: 0,
                timeouts: 0,
                cancels: 0,
                adopted: 0,
                full: 0,
                reaper: None,
                reapers: 0,
            }),
            shared,
            unused: AtomicU64::new(0),
            reap_at: AtomicU64::new(u64::MAX),
            rearm: tokio::sync::Notify::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<C>> {
        // Only plain queue operations happen under it: never inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool's connector.
    pub(crate) fn connector(&self) -> &C {
        &self.hot.connector
    }

    /// Whether callers wait here now (a hint, read without the lock).
    pub(crate) fn has_waiters(&self) -> bool {
        self.hot.waiting.load(Ordering::Relaxed) > 0
    }

    /// Whether callers who find nothing parked may wait here.
    pub(crate) fn is_open(&self) -> bool {
        self.hot.open.load(Ordering::Acquire)
    }

    /// Where this thread's region of slots starts.
    #[inline]
    fn home(&self) -> usize {
        home() * self.hot.region
    }

    /// Takes a parked session fresh at `now`, this thread's region first.
    pub(crate) fn take(&self, now: Time) -> Take<C> {
        let me = self.home();
        while let Some(cell) = self.hot.parked.pop(me) {
            // A recalled cell belongs to the pool now: skip it.
            if !cell.claim() {
                continue;
            }
            if !cell.fresh_at(now) {
                cell.leave_lane();
                return Take::Stale(cell);
            }
            cell.count_take();
            return Take::Hit(cell);
        }
        Take::Miss
    }

    /// Parks `cell` (held by the caller, whose handle it keeps until this
    /// returns) in this thread's region, then makes sure no caller waits in
    /// the lane while a session fresh at `now` is parked.
    fn park(&self, cell: &CellRef<C>, now: Time) -> GiveBack<C> {
        // Parked only if the pool did not recall it meanwhile.
        if !cell.park() {
            return GiveBack::ToPool(cell.clone());
        }
        #[cfg(test)]
        tests::between_park_and_push();
        if let Err(cell) = self.hot.parked.push(cell.clone(), self.home()) {
            // Only if every pass found the slots full while others took and
            // parked (there are twice as many slots as the key's sessions, or
            // more); the pool takes it back rather than lose it.
            cell.leave_lane();
            return GiveBack::ToPool(cell);
        }
        // A recall that came after the park and before the push found the
        // cell parked, and the pool took it back: out of its slot again, so
        // no handle outlives its close (a caller who popped it meanwhile
        // skips it). The push and this look are sequentially consistent,
        // and the recall makes a fence between flagging the cell and
        // looking through the slots, so a recall either finds the cell in
        // its slot or is seen here.
        if cell.is_recalled() {
            self.hot.parked.remove(cell);
            return GiveBack::Done;
        }
        // A caller who registered to wait after looking at the queues, and
        // before this push, is served now: this load and the push before it
        // are sequentially consistent, and the waiter makes a fence between
        // counting itself and looking, so one of the two sees the other
        // (see the module's comment).
        if self.hot.waiting.load(Ordering::SeqCst) == 0 {
            return GiveBack::Done;
        }
        let mut q = self.queue();
        if q.waiters.is_empty() {
            return GiveBack::Done;
        }
        // Someone waits: this giver hands over its own session, unless a
        // caller took it from its slot meanwhile (any other parked session
        // is its own giver's to hand over, or the first waiter's to find).
        // Out of its slot again, it is claimed back, unless the pool
        // recalled it meanwhile (then the pool has it). A handoff, counted
        // as one, not also as a take.
        if !self.hot.parked.remove(cell) || !cell.claim() {
            return GiveBack::Done;
        }
        if !cell.fresh_at(now) {
            cell.leave_lane();
            return GiveBack::ToPool(cell.clone());
        }
        GiveBack::Handoff(self.hand_over(&mut q), cell.clone())
    }

    /// Takes the first caller waiting in `q` (locked, and not empty) out of
    /// the queue, to be handed a session: where to send it.
    fn hand_over(&self, q: &mut Queue<C>) -> reply::Sender<Answer<C>> {
        let w = q.waiters.pop_front().expect("a caller waits");
        self.hot.waiting.fetch_sub(1, Ordering::SeqCst);
        q.handoffs += 1;
        w.tx
    }

    /// Gives back a session whose use ended well at `at`: renews its bound
    /// and hands it to the first waiting caller, or parks it. The caller
    /// keeps its handle `cell` until this returns (the lane's slots, or the
    /// answer, get one of their own), which keeps the cell and its lane
    /// alive meanwhile; it drops it after.
    pub(crate) fn give_back(&self, cell: &CellRef<C>, at: Time) -> GiveBack<C> {
        cell.renew_at(at);
        self.give_back_as_is(cell, at)
    }

    /// Gives back a session nobody used (its caller had gone): nothing
    /// happened to it, so its bound stays. Handed to a waiting caller only
    /// while fresh at `now`. The caller keeps its handle as for
    /// [`Self::give_back`].
    pub(crate) fn give_back_as_is(&self, cell: &CellRef<C>, now: Time) -> GiveBack<C> {
        let fresh = cell.fresh_at(now);
        if fresh && self.hot.waiting.load(Ordering::SeqCst) > 0 {
            let mut q = self.queue();
            if !q.waiters.is_empty() {
                if !cell.still_held() {
                    return GiveBack::ToPool(cell.clone());
                }
                return GiveBack::Handoff(self.hand_over(&mut q), cell.clone());
            }
        }
        self.park(cell, now)
    }

    /// A session the pool just lent at `now`: to the first waiting caller,
    /// or parked.
    pub(crate) fn lend(&self, cell: CellRef<C>, now: Time) -> GiveBack<C> {
        self.give_back_as_is(&cell, now)
    }

    /// The pool recalls `cell`: returns true if it was parked (it is taken
    /// out of its stack and goes back to the pool at once), false if a
    /// caller holds it (the caller gives it back to the pool).
    pub(crate) fn recall(&self, cell: &CellRef<C>) -> bool {
        if !cell.recall() {
            return false;
        }
        // A giver that parked the cell and pushes it after this look sees
        // the flag just set (see `park`).
        fence(Ordering::SeqCst);
        // Out of its slot, so no reference outlives its close (a taker
        // that popped it meanwhile skips it: it is recalled).
        self.hot.parked.remove(cell);
        true
    }

    /// Asks to wait for a session: queued if the lane is open and nothing
    /// is parked for this caller, else what a take finds, or `Closed`.
    pub(crate) fn wait(&self, now: Time, deadline: Time, token: u64, limit: usize) -> Wait<C> {
        let mut q = self.queue();
        if !q.open {
            return Wait::Closed;
        }
        self.hot.waiting.fetch_add(1, Ordering::SeqCst);
        // Only the first to wait looks (see the module's comment).
        if q.waiters.is_empty() {
            fence(Ordering::SeqCst);
            match self.take(now) {
                Take::Miss => {}
                found => {
                    self.hot.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Wait::Take(found);
                }
            }
        }
        if q.waiters.len() >= limit {
            self.hot.waiting.fetch_sub(1, Ordering::SeqCst);
            q.full += 1;
            return Wait::Full;
        }
        let (tx, rx) = reply::channel();
        q.waiters.push_back(LaneWaiter {
            token,
            deadline,
            tx,
        });
        q.waits += 1;
        let reaper = register_reaper(&mut q);
        Wait::Queued(token, rx, reaper)
    }

    /// Queues a caller the pool moved here (the lane is open), behind those
    /// already waiting. The first to wait looks through the slots, as a
    /// caller queueing itself does (see the module's comment), for a
    /// session parked at `now` before it came: a fresh one goes to it.
    pub(crate) fn enqueue(&self, waiter: LaneWaiter<C>, now: Time) -> Enqueued<C> {
        let mut q = self.queue();
        debug_assert!(q.open, "the pool moves callers to open lanes only");
        let first = q.waiters.is_empty();
        q.waiters.push_back(waiter);
        self.hot.waiting.fetch_add(1, Ordering::SeqCst);
        let mut found = Enqueued {
            handoff: None,
            stale: Vec::new(),
            reaper: register_reaper(&mut q),
        };
        if !first {
            return found;
        }
        fence(Ordering::SeqCst);
        loop {
            match self.take(now) {
                Take::Hit(cell) => {
                    found.handoff = Some((self.hand_over(&mut q), cell));
                    return found;
                }
                Take::Stale(cell) => found.stale.push(cell),
                Take::Miss => return found,
            }
        }
    }

    /// The caller `token` stops waiting (`timed_out`: at its deadline);
    /// false if it was no longer in the lane (handed a session, or handed
    /// to the pool).
    pub(crate) fn leave(&self, token: u64, timed_out: bool) -> bool {
        let mut q = self.queue();
        let Some(pos) = q.waiters.iter().position(|w| w.token == token) else {
            return false;
        };
        q.waiters.remove(pos);
        self.hot.waiting.fetch_sub(1, Ordering::SeqCst);
        if timed_out {
            q.timeouts += 1;
        } else {
            q.cancels += 1;
        }
        true
    }

    /// Refuses, at their deadline, the callers waiting here whose deadline
    /// is at or before `now` (as the pool refuses its waiters); returns the
    /// earliest deadline still waiting, or `None` when nobody waits: then
    /// reaper `id` is unregistered (in the same critical section) and ends.
    fn expire(&self, now: Time, id: u64) -> Option<Time> {
        let mut expired = Vec::new();
        let next = {
            let mut q = self.queue();
            let mut i = 0;
            while i < q.waiters.len() {
                if q.waiters[i].deadline <= now {
                    expired.extend(q.waiters.remove(i));
                } else {
                    i += 1;
                }
            }
            self.hot.waiting.fetch_sub(expired.len(), Ordering::SeqCst);
            q.timeouts += expired.len() as u64;
            let next = q.waiters.iter().map(|w| w.deadline).min();
            if next.is_none() && q.reaper == Some(id) {
                q.reaper = None;
            }
            next
        };
        for w in expired {
            // A caller that went meanwhile is not there to hear it.
            let _ = w.tx.send(Answer::Rejected {
                reason: mcp_pool_core::RejectReason::TimedOut,
                cause: None,
            });
        }
        next
    }

    /// Makes sure a caller just queued with `deadline` is refused at it:
    /// starts reaper `start` if queueing registered one, else wakes the
    /// running one if it sleeps past `deadline`.
    ///
    /// One task per lane refuses its waiters at their deadlines, instead
    /// of one timer per waiting caller: it sleeps until the earliest
    /// deadline, re-armed when it fires, or sooner when a caller queues
    /// with an earlier deadline than the one it sleeps until. It runs on
    /// the runtime of the caller that started it, and ends when nobody
    /// waits; the next caller to queue starts another. If its runtime
    /// shuts down first, the callers still waiting (from other runtimes)
    /// are moved to timers of their own ([`Lane::reaper_gone`]).
    pub(crate) fn after_queueing(self: &Arc<Self>, start: Option<u64>, deadline: Time) {
        match start {
            Some(id) => self.start_reaper(id),
            None => self.wake_reaper_for(deadline),
        }
    }

    /// Wakes the running reaper if it sleeps past `deadline`, that of a
    /// caller just queued.
    pub(crate) fn wake_reaper_for(&self, deadline: Time) {
        // The reaper stores the deadline it sleeps until after the look at
        // the queue that this caller's queueing followed (or came before:
        // then this reads `u64::MAX`, and wakes it once for nothing).
        if deadline.as_nanos() < self.reap_at.load(Ordering::Acquire) {
            self.rearm.notify_one();
        }
    }

    /// Reaper `id` ended while callers waited (its runtime shut down): it
    /// is unregistered, and each caller waiting here gets a new channel
    /// (its place in the queue kept) and, on its old one, that channel's
    /// receiver (`Answer::InLane`), so it waits on with a timer of its
    /// own. The next caller to queue registers another reaper.
    fn reaper_gone(&self, id: u64) {
        let mut moved = Vec::new();
        {
            let mut q = self.queue();
            if q.reaper != Some(id) {
                return;
            }
            q.reaper = None;
            for w in &mut q.waiters {
                let (tx, rx) = reply::channel();
                moved.push((w.token, std::mem::replace(&mut w.tx, tx), rx));
            }
        }
        for (token, tx, rx) in moved {
            if let Err(reply::Gone(Answer::InLane { mut rx })) = tx.send(Answer::InLane { rx }) {
                // The caller went meanwhile: what came for it on the new
                // channel goes back as it would have.
                if let Some(shared) = self.shared.upgrade() {
                    shared.abandon(None, token, &mut rx);
                }
            }
        }
    }

    /// Starts reaper `id` (just registered) on the caller's runtime.
    pub(crate) fn start_reaper(self: &Arc<Self>, id: u64) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let lane = Arc::downgrade(self);
        let guard = Reaping {
            lane: lane.clone(),
            id,
            armed: true,
        };
        shared.spawn(async move {
            // The whole guard lives in the task, and ends with it.
            let mut guard = guard;
            loop {
                let (Some(lane), Some(shared)) = (lane.upgrade(), lane_shared(&lane)) else {
                    return;
                };
                // Callers queueing from here on wake it (see above).
                lane.reap_at.store(u64::MAX, Ordering::Release);
                let Some(next) = lane.expire(shared.now(), id) else {
                    // Unregistered: a caller queueing from now on starts
                    // another.
                    guard.armed = false;
                    return;
                };
                lane.reap_at.store(next.as_nanos(), Ordering::Release);
                let at = shared.instant(next);
                drop(shared);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = lane.rearm.notified() => {}
                }
            }
        });
    }

    /// Opens the lane (the core says callers may wait here).
    pub(crate) fn open(&self) {
        let mut q = self.queue();
        q.open = true;
        self.hot.open.store(true, Ordering::Release);
    }

    /// Closes the lane: returns its waiting callers, in order, for the pool.
    pub(crate) fn close(&self) -> Vec<LaneWaiter<C>> {
        let mut q = self.queue();
        q.open = false;
        self.hot.open.store(false, Ordering::Release);
        let waiters: Vec<_> = q.waiters.drain(..).collect();
        self.hot.waiting.fetch_sub(waiters.len(), Ordering::SeqCst);
        q.adopted += waiters.len() as u64;
        waiters
    }

    /// Drops everything parked and queued (the pool is gone), so no cell
    /// keeps its lane alive.
    pub(crate) fn clear(&self) {
        self.hot.parked.clear();
        self.queue().waiters.clear();
        self.hot.waiting.store(0, Ordering::SeqCst);
    }

    /// What the lane served and refused (`takes` aside: each cell counts
    /// its own, see [`Cell::takes`](crate::cell::Cell::takes)).
    pub(crate) fn counts(&self) -> LaneCounts {
        let q = self.queue();
        LaneCounts {
            takes: 0,
            waits: q.waits,
            handoffs: q.handoffs,
            timeouts: q.timeouts,
            cancels: q.cancels,
            adopted: q.adopted,
            full: q.full,
            unused: self.unused.load(Ordering::Relaxed),
            waiting: self.hot.waiting.load(Ordering::Relaxed),
        }
    }

    /// Sessions parked in the lane now.
    pub(crate) fn parked(&self) -> usize {
        self.hot.parked.len()
    }

    /// Whether nothing is lent to or waiting in this lane.
    pub(crate) fn is_idle(&self) -> bool {
        self.hot.waiting.load(Ordering::Relaxed) == 0 && self.hot.parked.is_empty()
    }
}

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;
