//! The callers' side: acquiring a session, waiting for it, giving it back.
//!
//! A waiting caller is its own timer: at its deadline it drives the core's
//! timer itself, so an answer arrives at the deadline even if the upkeep
//! task is gone (its runtime shut down, or it died), and never later than
//! [`DEADLINE_GRACE`] after it whatever happens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::atomic::Ordering;

use crate::reply;
use mcp_pool_core::{AcquireId, InputError, LaneReturn, LeaseId, Outcome, RejectReason, Time};
use tokio::time::Instant;

use crate::cell::CellRef;
use crate::lane::{GiveBack, Lane, LaneEntry, LaneLines, Take, Wait};
use crate::shared::{report, Answer, Jobs, Mine, Shared, Waiter};
use crate::{guard, AcquireError, Connector, KeyHash, Lease};

/// How long past its deadline a waiting caller waits for the core's answer
/// before it gives up on its own (a bound, never reached while the core
/// answers at the deadline as it promises).
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_millis(100);

/// Marks the tokens of callers who queued in a lane by themselves (the
/// others are acquire ids, far below).
const LANE_TOKEN: u64 = 1 << 63;

/// How an acquire went on its first try.
enum Started<'a, C: Connector> {
    Answered(Answer<C>),
    Waiting(Waiting<'a, C>),
}

/// A token for a caller queueing in a lane by itself: unique in the pool
/// (a thread's number and its own count), with no shared counter to bump.
fn lane_token() -> u64 {
    use std::cell::Cell;
    use std::sync::atomic::AtomicU64;
    static THREADS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NEXT: Cell<u64> = const { Cell::new(u64::MAX) };
    }
    NEXT.with(|next| {
        let mut n = next.get();
        if n == u64::MAX {
            // 2^20 threads, 2^42 tokens each.
            n = (THREADS.fetch_add(1, Ordering::Relaxed) % (1 << 20)) << 42;
        }
        next.set(n.wrapping_add(1) & !LANE_TOKEN);
        LANE_TOKEN | n
    })
}

impl<C: Connector> Shared<C> {
    /// Acquires a session for `key` before `deadline`; see
    /// [`crate::Pool::acquire`]. `known` is the key's lane if the caller
    /// found it before ([`crate::KeyPool`]): then it is not looked up.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        key: &C::Key,
        deadline: Option<Instant>,
        known: Option<&LaneEntry<C>>,
    ) -> Result<Lease<C>, AcquireError<C::Error>> {
        self.ensure_upkeep();
        // The key's lane is found, and the lines a take reads are asked
        // for, before the clock is read: with many keys they are rarely in
        // the nearest cache, and they arrive while the clock is read. A
        // lease from the lane keeps where they are, for its give-back.
        let lanes = (known.is_none() && self.lanes_on).then(|| self.lanes.load());
        let lane = known.or_else(|| lanes.as_ref().and_then(|lanes| lanes.get(key)));
        let lines = lane.map_or_else(LaneLines::default, |lane| {
            lane.lines(self.config.max_sessions_per_key)
        });
        lines.prefetch();
        let started = self.now();
        let deadline = match deadline {
            Some(at) => self.time(at),
            None => started + self.config.acquire_timeout,
        };
        if deadline <= started {
            return Err(AcquireError::TimedOut {
                waited: Duration::ZERO,
                last_failure: None,
            });
        }
        // The common acquire: a fresh session parked in the key's lane is
        // the lease at once, with no answer built and matched on the way
        // (that cost a tenth of a warm acquire and release). One the
        // connector finds closed is handled below, as any such grant is.
        let mut state = match lane.and_then(|lane| self.take_parked(lane, started)) {
            Some(cell) if !guard::is_closed(&*self.connector, &cell.session) => {
                drop(lanes);
                return Ok(Lease::lane(cell, started, lines));
            }
            Some(cell) => Started::Answered(Answer::GrantedLane { cell }),
            None => self.after_lane_miss(lane, key, deadline, started),
        };
        drop(lanes);
        loop {
            let answer = match state {
                Started::Answered(answer) => answer,
                Started::Waiting(waiting) => waiting.until(deadline).await,
            };
            match answer {
                Answer::GrantedLane { cell } => {
                    if guard::is_closed(&*self.connector, &cell.session) {
                        cell.leave_lane();
                        self.lane_return(cell, LaneReturn::Closed);
                        let now = self.now();
                        if deadline <= now {
                            return Err(AcquireError::TimedOut {
                                waited: now.saturating_duration_since(started),
                                last_failure: None,
                            });
                        }
                        state = self.attempt_again(key, deadline, now);
                        continue;
                    }
                    // Its use starts no earlier than the acquire (one clock
                    // read per acquire; an earlier start only makes the
                    // renewed bound earlier).
                    return Ok(Lease::lane(cell, started, LaneLines::default()));
                }
                Answer::Granted {
                    acquire,
                    lease,
                    session,
                    key: hash,
                } => {
                    if guard::is_closed(&*self.connector, &session) {
                        tracing::info!(pool = %self.name, key = %hash, session = %lease.session(), "granted session is closed; back in line");
                        drop(session);
                        state = self.grant_closed(acquire, key, lease);
                        continue;
                    }
                    return Ok(Lease::new(self.clone(), lease, session));
                }
                Answer::InLane { .. } => unreachable!("turned into a wait by its step"),
                Answer::Rejected { reason, cause } => {
                    let waited = self.now().saturating_duration_since(started);
                    return Err(match reason {
                        RejectReason::TimedOut => AcquireError::TimedOut {
                            waited,
                            last_failure: cause,
                        },
                        RejectReason::CircuitOpen => AcquireError::CircuitOpen {
                            waited,
                            last_failure: cause,
                        },
                        RejectReason::ShuttingDown => AcquireError::ShuttingDown,
                        RejectReason::TooManyKeys => AcquireError::TooManyKeys,
                        RejectReason::QueueFull => AcquireError::QueueFull,
                        RejectReason::ConnectFailed { attempt } => AcquireError::ConnectFailed {
                            // The core rejects a connect's waiters in the very
                            // input that reports the failure, where the cause
                            // is kept.
                            cause: cause.unwrap_or_else(|| {
                                unreachable!("no cause kept for the failed connect {attempt}")
                            }),
                        },
                    });
                }
            }
        }
    }

    /// Another attempt of an acquire at `now`, after the session it was
    /// handed proved closed: finds the key's lane, then as [`Self::attempt`].
    fn attempt_again<'a>(
        self: &'a Arc<Self>,
        key: &C::Key,
        deadline: Time,
        now: Time,
    ) -> Started<'a, C> {
        if !self.lanes_on {
            return self.attempt(None, key, deadline, now);
        }
        let lanes = self.lanes.load();
        self.attempt(lanes.get(key), key, deadline, now)
    }

    /// One attempt of an acquire at `now`: `lane` (the key's, if it has
    /// one), then the pool.
    fn attempt<'a>(
        self: &'a Arc<Self>,
        lane: Option<&LaneEntry<C>>,
        key: &C::Key,
        deadline: Time,
        now: Time,
    ) -> Started<'a, C> {
        match lane.and_then(|lane| self.take_parked(lane, now)) {
            Some(cell) => Started::Answered(Answer::GrantedLane { cell }),
            None => self.after_lane_miss(lane, key, deadline, now),
        }
    }

    /// A session fresh at `now` parked in `lane`, now the caller's, unless
    /// callers already wait there (behind them there is nothing parked to
    /// find) or nothing fresh is parked. Takes no lock of the pool's unless
    /// a stale session it finds must go back.
    #[inline]
    fn take_parked(self: &Arc<Self>, lane: &Arc<Lane<C>>, now: Time) -> Option<CellRef<C>> {
        while !(lane.is_open() && lane.has_waiters()) {
            match lane.take(now) {
                Take::Hit(cell) => return Some(cell),
                Take::Stale(cell) => {
                    let last_used = cell.last_used();
                    self.lane_return(cell, LaneReturn::Parked { last_used });
                }
                Take::Miss => break,
            }
        }
        None
    }

    /// An attempt whose take from `lane` (the key's, if it has one) found
    /// nothing: a place in the lane's queue, or the pool.
    fn after_lane_miss<'a>(
        self: &'a Arc<Self>,
        lane: Option<&LaneEntry<C>>,
        key: &C::Key,
        deadline: Time,
        now: Time,
    ) -> Started<'a, C> {
        if let Some(lane) = lane {
            if let Some(started) = self.queue_in_lane(lane, key, deadline, now) {
                return started;
            }
        }
        match self.start_acquire(key, deadline, now) {
            Ok(started) => started,
            Err(e) => unreachable!("acquire refused: {e}"),
        }
    }

    /// A place in `key`'s lane's queue (or a session parked meanwhile, or
    /// a refusal when the queue is full); `None` if the lane does not
    /// queue callers (ask the pool).
    fn queue_in_lane<'a>(
        self: &'a Arc<Self>,
        lane: &Arc<Lane<C>>,
        key: &C::Key,
        deadline: Time,
        now: Time,
    ) -> Option<Started<'a, C>> {
        if !lane.is_open() {
            return None;
        }
        loop {
            // Tokens of callers queued in a lane by themselves; those the
            // pool moves to a lane keep their acquire's number.
            let token = lane_token();
            match lane.wait(now, deadline, token, self.config.max_waiters_per_key) {
                Wait::Take(Take::Hit(cell)) => {
                    return Some(Started::Answered(Answer::GrantedLane { cell }))
                }
                Wait::Take(Take::Stale(cell)) => {
                    let last_used = cell.last_used();
                    self.lane_return(cell, LaneReturn::Parked { last_used });
                }
                Wait::Take(Take::Miss) | Wait::Closed => return None,
                Wait::Full => {
                    return Some(Started::Answered(Answer::Rejected {
                        reason: RejectReason::QueueFull,
                        cause: None,
                    }))
                }
                Wait::Queued(token, rx, reaper) => {
                    lane.after_queueing(reaper, deadline);
                    return Some(Started::Waiting(Waiting {
                        shared: self,
                        id: None,
                        token,
                        key: key.clone(),
                        rx,
                        own_timer: false,
                        done: false,
                    }));
                }
            }
        }
    }

    /// A session leaves its lane for the pool, in the state `back` says (its
    /// cell already marked as gone from the lane).
    pub(crate) fn lane_return(self: &Arc<Self>, cell: CellRef<C>, back: LaneReturn) {
        let session = cell.id;
        // The close this may lead to needs the only reference.
        drop(cell);
        self.step(|st, now| st.lane_returned(session, back, now));
    }

    /// A session handed to a caller who had gone: back to its lane as it
    /// was, or to the pool if recalled meanwhile.
    pub(crate) fn lane_unused(self: &Arc<Self>, cell: CellRef<C>) {
        cell.lane
            .unused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cell = cell;
        loop {
            let back = cell.lane.give_back_as_is(&cell, self.now());
            // The close a return to the pool may lead to needs the only
            // reference.
            drop(cell);
            match back {
                GiveBack::Done => return,
                GiveBack::Handoff(tx, next) => match tx.send(Answer::GrantedLane { cell: next }) {
                    Ok(()) => return,
                    Err(reply::Gone(Answer::GrantedLane { cell: back })) => cell = back,
                    Err(_) => unreachable!("sent a lane grant"),
                },
                GiveBack::ToPool(next) => {
                    next.leave_lane();
                    let last_used = next.last_used();
                    return self.lane_return(next, LaneReturn::Parked { last_used });
                }
            }
        }
    }

    /// Makes the acquire input at `now` (read by the caller, once).
    fn start_acquire<'a>(
        self: &'a Arc<Self>,
        key: &C::Key,
        deadline: Time,
        now: Time,
    ) -> Result<Started<'a, C>, InputError> {
        let mut jobs = Jobs::new();
        let started = {
            let Some(mut st) = self.lock() else {
                unreachable!("no unwinding on an acquire")
            };
            let id = st.core.acquire(key, deadline, now)?;
            let started = self.answer_or_wait(&mut st, now, &mut jobs, id, key);
            self.settle(&mut st);
            started
        };
        self.start(jobs);
        Ok(started)
    }

    /// The driver found the session of `lease` closed before handing it to
    /// the caller of `id`: the core poisons it and puts `id` back at the
    /// head of its queue.
    fn grant_closed<'a>(
        self: &'a Arc<Self>,
        id: AcquireId,
        key: &C::Key,
        lease: LeaseId,
    ) -> Started<'a, C> {
        let mut jobs = Jobs::new();
        let now = self.now();
        let started = {
            let Some(mut st) = self.lock() else {
                unreachable!("no unwinding on an acquire")
            };
            report(st.core.grant_closed(lease, now));
            let started = self.answer_or_wait(&mut st, now, &mut jobs, id, key);
            self.settle(&mut st);
            started
        };
        self.start(jobs);
        started
    }

    /// Carries out the actions of the input just made for acquire `id`:
    /// its answer if it came, else a channel to wait on.
    fn answer_or_wait<'a>(
        self: &'a Arc<Self>,
        st: &mut crate::shared::State<C>,
        now: Time,
        jobs: &mut Jobs<C>,
        id: AcquireId,
        key: &C::Key,
    ) -> Started<'a, C> {
        match self.execute(st, now, jobs, Some(Mine { id, key })) {
            Some(Answer::InLane { rx }) => Started::Waiting(Waiting {
                shared: self,
                id: None,
                token: id.as_u64(),
                key: key.clone(),
                rx,
                own_timer: true,
                done: false,
            }),
            Some(answer) => Started::Answered(answer),
            None => {
                let (tx, rx) = reply::channel();
                st.waiters.insert(
                    id,
                    Waiter {
                        tx,
                        key: KeyHash::of(key),
                        token: None,
                    },
                );
                Started::Waiting(Waiting {
                    shared: self,
                    id: Some(id),
                    token: id.as_u64(),
                    key: key.clone(),
                    rx,
                    own_timer: true,
                    done: false,
                })
            }
        }
    }

    /// Gives a lease back; `dead` says the transport was seen closed.
    pub(crate) fn release(self: &Arc<Self>, lease: LeaseId, outcome: Outcome, dead: bool) {
        self.step(|st, now| {
            if dead {
                let key = st.sessions.get(&lease.session()).map(|l| l.key);
                tracing::info!(pool = %self.name, key = ?key, session = %lease.session(), "transport closed under a lease");
                report(st.core.transport_closed(lease.session(), now));
            }
            tracing::trace!(pool = %self.name, %lease, ?outcome, "released");
            report(st.core.release(lease, outcome, now));
        });
    }

    /// A closed-notification fired.
    pub(crate) fn transport_closed(self: &Arc<Self>, session: mcp_pool_core::SessionId) {
        self.step(|st, now| {
            if let Some(live) = st.sessions.get(&session) {
                tracing::info!(pool = %self.name, key = %live.key, %session, "transport closed");
                report(st.core.transport_closed(session, now));
            }
        });
    }

    /// A waiting caller was dropped before its answer was taken (and is no
    /// longer in a lane's queue): withdraws its acquire, wherever the pool
    /// has it, or gives back what it was handed.
    pub(crate) fn abandon(
        self: &Arc<Self>,
        id: Option<AcquireId>,
        token: u64,
        rx: &mut reply::Receiver<Answer<C>>,
    ) {
        // From here on a delivery fails and gives its grant back itself; one
        // that came before is in the channel.
        rx.close();
        let unused = self
            .step(|st, now| {
                let adopted = st.adopted.remove(&token);
                for id in id.into_iter().chain(adopted) {
                    if st.waiters.remove(&id).is_some() {
                        report(st.core.cancel_acquire(id, now));
                        return None;
                    }
                }
                let mut answer = rx.try_recv();
                // A receiver its lane moved it to (`Lane::reaper_gone`),
                // with whatever came there.
                while let Some(Answer::InLane { rx: mut moved }) = answer {
                    moved.close();
                    answer = moved.try_recv();
                }
                match answer {
                    Some(Answer::Granted { lease, session, .. }) => {
                        drop(session);
                        report(st.core.release_unused(lease, now));
                        None
                    }
                    Some(Answer::GrantedLane { cell }) => Some(cell),
                    _ => None,
                }
            })
            .flatten();
        if let Some(cell) = unused {
            self.lane_unused(cell);
        }
    }

    /// Takes caller `token` out of `key`'s lane queue; false if it is not
    /// there.
    fn leave_lane(&self, key: &C::Key, token: u64, timed_out: bool) -> bool {
        self.lanes_on
            && self
                .lanes
                .load()
                .get(key)
                .is_some_and(|lane| lane.leave(token, timed_out))
    }
}

/// A caller waiting for its answer: in the pool (`id`), or in its key's
/// lane (moved there by the pool, or queued there itself), where `token`
/// names it. Dropping it withdraws it wherever it waits, or gives back the
/// session it was handed meanwhile.
struct Waiting<'a, C: Connector> {
    shared: &'a Arc<Shared<C>>,
    /// Its acquire, if it asked the pool.
    id: Option<AcquireId>,
    /// Its name in a lane (its acquire's number, once moved there).
    token: u64,
    key: C::Key,
    rx: reply::Receiver<Answer<C>>,
    /// Whether it keeps its own deadline (else its lane's reaper does).
    own_timer: bool,
    done: bool,
}

impl<C: Connector> Waiting<'_, C> {
    /// The answer, waiting at most until `deadline` (then the caller drives
    /// the pool's timer itself, or leaves the lane it waits in) plus
    /// [`DEADLINE_GRACE`].
    async fn until(mut self, deadline: Time) -> Answer<C> {
        if !self.own_timer {
            // Its lane's reaper refuses it at its deadline. If that reaper
            // ends first (its runtime shut down), the caller is moved to a
            // timer of its own (see `poll`).
            let answer = std::future::poll_fn(|cx| match Pin::new(&mut self).poll(cx) {
                Poll::Pending if self.own_timer => Poll::Ready(None),
                polled => polled.map(Some),
            })
            .await;
            if let Some(answer) = answer {
                return answer;
            }
        }
        let at = self.shared.instant(deadline);
        tokio::select! {
            biased;
            answer = &mut self => return answer,
            () = tokio::time::sleep_until(at) => {}
        }
        // In a lane, it leaves the queue and is refused like any waiter at
        // its deadline.
        if self.shared.leave_lane(&self.key, self.token, true) {
            self.done = true;
            return Answer::Rejected {
                reason: RejectReason::TimedOut,
                cause: None,
            };
        }
        // In the pool, the core rejects it on any input from now on; make
        // one in case the upkeep task cannot.
        self.shared.step(|st, now| st.core.handle_timeout(now));
        if let Ok(answer) = tokio::time::timeout(DEADLINE_GRACE, &mut self).await {
            return answer;
        }
        tracing::error!(pool = %self.shared.name, "no answer from the pool at the deadline; giving up");
        // Dropping `self` withdraws the acquire.
        Answer::Rejected {
            reason: RejectReason::TimedOut,
            cause: None,
        }
    }
}

// It polls only its receiver (which is `Unpin`); nothing is pinned in place.
impl<C: Connector> Unpin for Waiting<'_, C> {}

impl<C: Connector> Future for Waiting<'_, C> {
    type Output = Answer<C>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<C>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.rx).poll(cx) {
                // Its lane's reaper ended early (`Lane::reaper_gone`): it
                // waits on in its place, on this receiver, keeping its own
                // timer.
                Poll::Ready(Ok(Answer::InLane { rx })) => {
                    this.rx = rx;
                    this.own_timer = true;
                }
                Poll::Ready(answer) => {
                    this.done = true;
                    return Poll::Ready(answer.unwrap_or(Answer::Rejected {
                        reason: RejectReason::ShuttingDown,
                        cause: None,
                    }));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<C: Connector> Drop for Waiting<'_, C> {
    fn drop(&mut self) {
        if self.done || self.shared.leave_lane(&self.key, self.token, false) {
            return;
        }
        self.shared.abandon(self.id, self.token, &mut self.rx);
    }
}
