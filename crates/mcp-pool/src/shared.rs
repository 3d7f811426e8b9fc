//! The driver's state and its one rule: lock, make one input to the core,
//! carry out every action it emitted, unlock, then start the tasks those
//! actions asked for. No decision is made here.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::AbortHandle;
use mcp_pool_core::{
    AcquireId, Action, Config, LaneReturn, LeaseId, RejectReason, SessionId, Time,
};
use tokio::sync::Notify;

use crate::reply;
use tokio::time::Instant;

use crate::cell::{Cell, CellRef};
use crate::core::Core;
use crate::guard::Watch;
pub(crate) use crate::lane::LaneEntry;
use crate::lane::{GiveBack, Lane, LaneWaiter};
use crate::{ConnectError, Connector, KeyHash};

/// What one pool shares between its handles, leases and tasks.
pub(crate) struct Shared<C: Connector> {
    /// Shared with the lanes, so the hot path reaches it without the pool.
    pub(crate) connector: Arc<C>,
    state: Mutex<State<C>>,
    /// Where the core's `Time` starts, on tokio's clock.
    origin: Instant,
    /// The runtime the pool was built on: tasks run there when the pool is
    /// used from outside any runtime.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) name: Arc<str>,
    pub(crate) config: Config,
    pub(crate) close_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// Wakes the upkeep task: the next deadline moved earlier, a watch is
    /// waiting, or the pool stopped.
    pub(crate) wake: Notify,
    /// Signalled when a shutting-down pool has closed its last session.
    pub(crate) settled: Notify,
    /// Whether an upkeep task is running (cleared when it ends, however).
    pub(crate) upkeep_alive: AtomicBool,
    /// Set when the last [`Pool`](crate::Pool) handle is gone.
    pub(crate) stopped: AtomicBool,
    /// Closed-notifications not yet taken by the upkeep task.
    pub(crate) new_watches: Mutex<Vec<Watch>>,
    /// Each key's lane, read without any lock; replaced (under the pool's
    /// lock) when a key gets its first lane.
    pub(crate) lanes: ArcSwap<LaneMap<C>>,
    /// Whether the pool lends sessions to lanes at all.
    pub(crate) lanes_on: bool,
}

/// Every key's lane, hashed with a per-process random key (as a key may be
/// chosen by whoever the pool serves) by a hash cheaper than std's.
pub(crate) type LaneMap<C> = HashMap<<C as Connector>::Key, LaneEntry<C>, ahash::RandomState>;

pub(crate) struct State<C: Connector> {
    pub(crate) core: Core<C::Key>,
    /// Every connected session not yet handed to its close.
    pub(crate) sessions: IdMap<SessionId, Live<C>>,
    /// Acquires waiting for their answer.
    pub(crate) waiters: IdMap<AcquireId, Waiter<C>>,
    /// The cause of the connect failure being reported in this step.
    pub(crate) cause: Option<(SessionId, Arc<ConnectError<C::Error>>)>,
    /// Each key's last connect failure, until a connect of the key succeeds.
    pub(crate) failures: Failures<C::Error>,
    /// The deadline the upkeep task sleeps until.
    pub(crate) timer: Option<Time>,
    /// Every session lent to a lane and not back yet.
    pub(crate) lent: IdMap<SessionId, CellRef<C>>,
    /// Takes from lanes of the cells no longer lent (each lent cell counts
    /// its own).
    pub(crate) retired_takes: u64,
    /// Callers who waited in a lane that closed: their token and the
    /// pool's acquire they became.
    pub(crate) adopted: IdMap<u64, AcquireId>,
}

/// One live session as the driver holds it.
pub(crate) struct Live<C: Connector> {
    pub(crate) session: Arc<C::Session>,
    pub(crate) key: KeyHash,
    pub(crate) watch: Option<AbortHandle>,
    /// Its key's lane, if the pool lends sessions.
    pub(crate) lane: Option<Arc<Lane<C>>>,
}

/// A caller waiting for the answer to its acquire.
pub(crate) struct Waiter<C: Connector> {
    pub(crate) tx: reply::Sender<Answer<C>>,
    pub(crate) key: KeyHash,
    /// Its token, if it first waited in a lane.
    pub(crate) token: Option<u64>,
}

/// The core's answer to one acquire.
pub(crate) enum Answer<C: Connector> {
    Granted {
        acquire: AcquireId,
        lease: LeaseId,
        session: Arc<C::Session>,
        key: KeyHash,
    },
    /// A session from the key's lane.
    GrantedLane { cell: CellRef<C> },
    /// Its answer comes on `rx` from now on: to the caller of a step, the
    /// pool moved its acquire to its key's lane; to a caller waiting in a
    /// lane, the lane's reaper ended early (`Lane::reaper_gone`) and it waits
    /// on with a timer of its own.
    InLane { rx: reply::Receiver<Answer<C>> },
    Rejected {
        reason: RejectReason,
        cause: Option<Arc<ConnectError<C::Error>>>,
    },
}

/// The acquire made by the caller of a step, whose answer the step returns
/// instead of sending it.
pub(crate) struct Mine<'a, K> {
    pub(crate) id: AcquireId,
    pub(crate) key: &'a K,
}

/// Work an action asked for, started once the lock is released.
pub(crate) enum Job<C: Connector> {
    /// Hand an answer to its waiter (waking it outside the lock).
    Deliver {
        tx: reply::Sender<Answer<C>>,
        answer: Answer<C>,
    },
    Connect {
        session: SessionId,
        key: C::Key,
        deadline: Time,
    },
    Check {
        session: SessionId,
        handle: Arc<C::Session>,
        key: KeyHash,
        deadline: Time,
    },
    Close {
        session: SessionId,
        handle: Arc<C::Session>,
        key: KeyHash,
        reason: mcp_pool_core::EvictReason,
    },
    /// Start reaper `id` of `lane` (registered by a caller moved there).
    StartReaper { lane: Arc<Lane<C>>, id: u64 },
}

/// The jobs of one step; the first is kept inline (most steps have at most
/// one), so a step allocates nothing.
pub(crate) struct Jobs<C: Connector> {
    first: Option<Job<C>>,
    rest: Vec<Job<C>>,
}

impl<C: Connector> Jobs<C> {
    pub(crate) fn new() -> Self {
        Jobs {
            first: None,
            rest: Vec::new(),
        }
    }

    fn push(&mut self, job: Job<C>) {
        if self.first.is_none() {
            self.first = Some(job);
        } else {
            self.rest.push(job);
        }
    }
}

/// The last connect failure of each key that is failing, so a caller
/// refused for the key learns why. At most `limit` keys are remembered (the
/// oldest is forgotten first); a key's entry goes when one of its connects
/// succeeds.
pub(crate) struct Failures<E: std::error::Error + 'static> {
    by_key: IdMap<KeyHash, Arc<ConnectError<E>>>,
    order: VecDeque<KeyHash>,
    limit: usize,
}

impl<E: std::error::Error + 'static> Failures<E> {
    fn new(limit: usize) -> Self {
        Failures {
            by_key: IdMap::default(),
            order: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    pub(crate) fn record(&mut self, key: KeyHash, cause: Arc<ConnectError<E>>) {
        if self.by_key.insert(key, cause).is_none() {
            self.order.push_back(key);
            while self.by_key.len() > self.limit {
                match self.order.pop_front() {
                    Some(old) => {
                        self.by_key.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    pub(crate) fn clear(&mut self, key: KeyHash) {
        if self.by_key.remove(&key).is_some() {
            self.order.retain(|k| *k != key);
        }
    }

    fn get(&self, key: KeyHash) -> Option<Arc<ConnectError<E>>> {
        self.by_key.get(&key).cloned()
    }
}

impl<C: Connector> Shared<C> {
    pub(crate) fn new(
        connector: C,
        core: Core<C::Key>,
        runtime: tokio::runtime::Handle,
        name: Arc<str>,
        close_timeout: Duration,
        shutdown_timeout: Duration,
    ) -> Shared<C> {
        let config = core.pool().config().clone();
        let lanes_on = config.lanes && !config.check_interval.is_zero();
        Shared {
            connector: Arc::new(connector),
            state: Mutex::new(State {
                core,
                sessions: IdMap::default(),
                waiters: IdMap::default(),
                cause: None,
                failures: Failures::new(config.max_keys),
                timer: None,
                lent: IdMap::default(),
                retired_takes: 0,
                adopted: IdMap::default(),
            }),
            origin: Instant::now(),
            runtime,
            name,
            config,
            close_timeout,
            shutdown_timeout,
            wake: Notify::new(),
            settled: Notify::new(),
            upkeep_alive: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            new_watches: Mutex::new(Vec::new()),
            lanes: ArcSwap::from_pointee(LaneMap::<C>::default()),
            lanes_on,
        }
    }

    /// The lane of `key`, made if it has none (under the pool's lock, so
    /// only one is ever made per key). Lanes of keys the core forgot are
    /// dropped when the map grows past twice `max_keys`, unless idle lanes
    /// have other holders than the maps ([`KeyPool`](crate::KeyPool)s).
    pub(crate) fn lane_for(self: &Arc<Self>, st: &State<C>, key: &C::Key) -> Arc<Lane<C>> {
        if let Some(lane) = self.lanes.load().get(key) {
            return lane.lane.clone();
        }
        let mut map = LaneMap::<C>::clone(&self.lanes.load());
        if map.len() >= self.config.max_keys.saturating_mul(2) {
            // A lane a `KeyPool` holds stays, since it takes from it: more
            // handles than the two maps' (the current one, and this copy).
            map.retain(|k, lane| {
                st.core.pool().key_snapshot(k).is_some()
                    || !lane.is_idle()
                    || Arc::strong_count(&lane.lane) > 2
            });
        }
        let lane = Arc::new(Lane::new(
            Arc::downgrade(self),
            self.connector.clone(),
            self.config.max_sessions_per_key,
        ));
        map.insert(key.clone(), LaneEntry::new(lane.clone()));
        self.lanes.store(Arc::new(map));
        lane
    }

    /// The lane of `key` as the map of lanes holds it, made if it has none;
    /// `None` if the pool lends no sessions to lanes.
    pub(crate) fn lane_entry(self: &Arc<Self>, key: &C::Key) -> Option<LaneEntry<C>> {
        if !self.lanes_on {
            return None;
        }
        if let Some(entry) = self.lanes.load().get(key) {
            return Some(entry.clone());
        }
        // Held before the lock is let go, so no pruning of the map can
        // drop the lane meanwhile (see `lane_for`).
        let st = self.lock()?;
        Some(LaneEntry::new(self.lane_for(&st, key)))
    }

    /// The core's clock: nanoseconds since the pool was built, on tokio's clock.
    pub(crate) fn now(&self) -> Time {
        self.time(Instant::now())
    }

    pub(crate) fn time(&self, at: Instant) -> Time {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        Time::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    pub(crate) fn instant(&self, t: Time) -> Instant {
        self.origin
            .checked_add(t.since_origin())
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365 * 30))
    }

    /// Locks the state. A panic while it was held (a checking-mode violation;
    /// connector calls are guarded and never panic under it) poisons it for
    /// good; during another unwinding this returns `None` rather than
    /// panicking twice.
    pub(crate) fn lock(&self) -> Option<MutexGuard<'_, State<C>>> {
        match self.state.lock() {
            Ok(guard) => Some(guard),
            Err(_) if std::thread::panicking() => None,
            Err(_) => panic!("mcp-pool: the pool's state was poisoned by an earlier panic"),
        }
    }

    /// Makes one input (`f`), carries out every action it led to, then
    /// starts the tasks they asked for. Returns what `f` returned.
    pub(crate) fn step<R>(self: &Arc<Self>, f: impl FnOnce(&mut State<C>, Time) -> R) -> Option<R> {
        let mut jobs = Jobs::new();
        // Read before locking, to keep the lock short; the core treats a
        // `now` earlier than one it has seen as the latest seen.
        let now = self.now();
        let r = {
            let mut st = self.lock()?;
            let r = f(&mut st, now);
            self.execute(&mut st, now, &mut jobs, None);
            self.settle(&mut st);
            r
        };
        self.start(jobs);
        Some(r)
    }

    /// Carries out the core's actions in order until it has none left.
    /// Grants and rejects go to their waiters (or, for `mine`, are returned);
    /// connects, checks and closes become jobs. A grant whose caller has gone
    /// goes back to the core unused.
    pub(crate) fn execute(
        &self,
        st: &mut State<C>,
        now: Time,
        jobs: &mut Jobs<C>,
        mine: Option<Mine<'_, C::Key>>,
    ) -> Option<Answer<C>> {
        let mut own = None;
        while let Some(action) = st.core.poll_action() {
            match action {
                Action::Connect {
                    session,
                    key,
                    deadline,
                } => jobs.push(Job::Connect {
                    session,
                    key,
                    deadline,
                }),
                Action::Validate { session, deadline } => {
                    let live = st
                        .sessions
                        .get(&session)
                        .expect("a checked session is live");
                    tracing::debug!(pool = %self.name, key = %live.key, %session, "checking session");
                    jobs.push(Job::Check {
                        session,
                        handle: live.session.clone(),
                        key: live.key,
                        deadline,
                    });
                }
                Action::Grant { acquire, lease } => {
                    let live = st
                        .sessions
                        .get(&lease.session())
                        .expect("a granted session is live");
                    tracing::trace!(pool = %self.name, key = %live.key, session = %lease.session(), %acquire, "granted");
                    let answer = Answer::Granted {
                        acquire,
                        lease,
                        session: live.session.clone(),
                        key: live.key,
                    };
                    if mine.as_ref().is_some_and(|m| m.id == acquire) {
                        own = Some(answer);
                        continue;
                    }
                    match st.waiters.remove(&acquire) {
                        Some(waiter) => {
                            if let Some(token) = waiter.token {
                                st.adopted.remove(&token);
                            }
                            jobs.push(Job::Deliver {
                                tx: waiter.tx,
                                answer,
                            })
                        }
                        None => {
                            // Nobody to take it: it comes straight back unused.
                            drop(answer);
                            report(st.core.release_unused(lease, now));
                        }
                    }
                }
                Action::Reject { acquire, reason } => {
                    let waiter = if mine.as_ref().is_some_and(|m| m.id == acquire) {
                        None
                    } else {
                        match st.waiters.remove(&acquire) {
                            Some(waiter) => Some(waiter),
                            None => continue,
                        }
                    };
                    let cause = match reason {
                        RejectReason::ConnectFailed { attempt } => st
                            .cause
                            .as_ref()
                            .filter(|(s, _)| *s == attempt)
                            .map(|(_, cause)| cause.clone()),
                        RejectReason::CircuitOpen | RejectReason::TimedOut => {
                            let key = match (&waiter, &mine) {
                                (Some(w), _) => w.key,
                                (None, Some(m)) => KeyHash::of(m.key),
                                (None, None) => unreachable!("a reject has a caller"),
                            };
                            st.failures.get(key)
                        }
                        _ => None,
                    };
                    tracing::debug!(pool = %self.name, %acquire, %reason, "rejected");
                    let answer = Answer::Rejected { reason, cause };
                    match waiter {
                        Some(waiter) => {
                            if let Some(token) = waiter.token {
                                st.adopted.remove(&token);
                            }
                            jobs.push(Job::Deliver {
                                tx: waiter.tx,
                                answer,
                            })
                        }
                        None => own = Some(answer),
                    }
                }
                Action::Lend {
                    session,
                    until,
                    renew,
                    hard_end,
                } => {
                    let live = st.sessions.get(&session).expect("a lent session is live");
                    let lane = live.lane.clone().expect("lanes are on");
                    let cell = CellRef::new(Cell::new(
                        session,
                        live.session.clone(),
                        lane.clone(),
                        until,
                        renew,
                        hard_end,
                    ));
                    st.lent.insert(session, cell.clone());
                    match lane.lend(cell, now) {
                        GiveBack::Done => {}
                        GiveBack::Handoff(tx, cell) => jobs.push(Job::Deliver {
                            tx,
                            answer: Answer::GrantedLane { cell },
                        }),
                        GiveBack::ToPool(_) => unreachable!("a session just lent is not recalled"),
                    }
                }
                Action::Recall { session } => {
                    let cell = st
                        .lent
                        .get(&session)
                        .cloned()
                        .expect("a recalled session is lent");
                    if cell.lane.recall(&cell) {
                        // It was parked: back at once.
                        st.parked_back(cell, now);
                    }
                }
                Action::WaitInLane {
                    acquire,
                    key,
                    deadline,
                } => {
                    let lane = self.lanes.load().get(&key).map(|e| e.lane.clone());
                    let lane = lane.expect("a lane that opened exists");
                    let tx = if mine.as_ref().is_some_and(|m| m.id == acquire) {
                        let (tx, rx) = reply::channel();
                        own = Some(Answer::InLane { rx });
                        tx
                    } else {
                        match st.waiters.remove(&acquire) {
                            Some(waiter) => waiter.tx,
                            None => continue,
                        }
                    };
                    let found = lane.enqueue(
                        LaneWaiter {
                            token: acquire.as_u64(),
                            deadline,
                            tx,
                        },
                        now,
                    );
                    if let Some((tx, cell)) = found.handoff {
                        jobs.push(Job::Deliver {
                            tx,
                            answer: Answer::GrantedLane { cell },
                        });
                    }
                    for cell in found.stale {
                        st.parked_back(cell, now);
                    }
                    match found.reaper {
                        // Spawned once the lock is released: a spawn onto a
                        // runtime that shut down drops the reaper at once,
                        // and its end may need the lock.
                        Some(id) => jobs.push(Job::StartReaper { lane, id }),
                        None => lane.wake_reaper_for(deadline),
                    }
                }
                Action::LaneOpen { key, open } => {
                    let lane = self.lanes.load().get(&key).map(|e| e.lane.clone());
                    let Some(lane) = lane else { continue };
                    if open {
                        lane.open();
                        continue;
                    }
                    // Its callers become the pool's acquires, in order.
                    let hash = KeyHash::of(&key);
                    for w in lane.close() {
                        let deadline = w.deadline.max(now + Duration::from_nanos(1));
                        match st.core.acquire(&key, deadline, now) {
                            Ok(id) => {
                                st.adopted.insert(w.token, id);
                                st.waiters.insert(
                                    id,
                                    Waiter {
                                        tx: w.tx,
                                        key: hash,
                                        token: Some(w.token),
                                    },
                                );
                            }
                            Err(e) => unreachable!("an adopted acquire refused: {e}"),
                        }
                    }
                }
                Action::Close { session, reason } => {
                    let live = st
                        .sessions
                        .remove(&session)
                        .expect("a closed session is live");
                    if let Some(watch) = live.watch {
                        watch.abort();
                    }
                    jobs.push(Job::Close {
                        session,
                        handle: live.session,
                        key: live.key,
                        reason,
                    });
                }
            }
        }
        st.cause = None;
        own
    }

    /// Wakes the upkeep task if the next deadline moved earlier, and
    /// shutdown waiters once the pool is closed.
    pub(crate) fn settle(&self, st: &mut State<C>) {
        if let Some(t) = st.core.poll_timeout() {
            if st.timer.is_none_or(|current| t < current) {
                st.timer = Some(t);
                self.wake.notify_one();
            }
        }
        if st.core.pool().is_shutting_down() && st.core.pool().is_closed() {
            self.settled.notify_waiters();
        }
    }

    /// Hands answers to their waiters and starts the other jobs as tasks.
    pub(crate) fn start(self: &Arc<Self>, jobs: Jobs<C>) {
        for job in jobs.first.into_iter().chain(jobs.rest) {
            match job {
                Job::Deliver { tx, answer } => match tx.send(answer) {
                    // The waiter was dropped meanwhile (it closed its channel
                    // first, so this send is the only way back).
                    Err(reply::Gone(Answer::Granted { lease, session, .. })) => {
                        drop(session);
                        self.step(|st, now| report(st.core.release_unused(lease, now)));
                    }
                    Err(reply::Gone(Answer::GrantedLane { cell })) => self.lane_unused(cell),
                    _ => {}
                },
                Job::StartReaper { lane, id } => lane.start_reaper(id),
                job => self.spawn_job(job),
            }
        }
    }

    /// Registers a closed-notification with the upkeep task.
    pub(crate) fn add_watch(&self, watch: Watch) {
        self.new_watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(watch);
        self.wake.notify_one();
    }

    /// Runs `fut` on the runtime of the caller, or on the pool's own when
    /// called from outside any runtime.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(here) => drop(here.spawn(fut)),
            Err(_) => drop(self.runtime.spawn(fut)),
        }
    }
}

/// Logs an input the core refused. The driver only reports what the core
/// asked for, so a refusal is a driver bug; the checking mode has already
/// audited it.
pub(crate) fn report(result: Result<(), mcp_pool_core::InputError>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "the core refused an input");
        debug_assert!(false, "the core refused an input: {e}");
    }
}

/// A `HashMap` keyed by the pool's ids, with a cheap multiplicative hash
/// (ids are small distinct integers, not attacker-chosen).
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`].
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl<C: Connector> State<C> {
    /// `session` is no longer lent: its cell's takes join the retired ones.
    fn unlend(&mut self, session: SessionId) {
        if let Some(cell) = self.lent.remove(&session) {
            self.retired_takes += cell.takes();
        }
    }

    /// `session`'s cell left its lane: the core learns how it came back
    /// (`back`). Every handle to the cell is dropped by now: the close this
    /// may lead to needs the only reference to the session.
    pub(crate) fn lane_returned(&mut self, session: SessionId, back: LaneReturn, now: Time) {
        self.unlend(session);
        report(self.core.lane_returned(session, back, now));
    }

    /// A parked cell taken out of its lane (recalled, or found stale): back
    /// to the core as parked, with its last use.
    pub(crate) fn parked_back(&mut self, cell: CellRef<C>, now: Time) {
        let (session, last_used) = (cell.id, cell.last_used());
        drop(cell);
        self.lane_returned(session, LaneReturn::Parked { last_used }, now);
    }

    /// Takes from lanes so far, of every cell lent now or before.
    pub(crate) fn lane_takes(&self) -> u64 {
        self.retired_takes + self.lent.values().map(|c| c.takes()).sum::<u64>()
    }
}

impl<C: Connector> Drop for Shared<C> {
    /// Cells keep their lane alive; the pool's end breaks the cycle.
    fn drop(&mut self) {
        for lane in self.lanes.load().values() {
            lane.clear();
        }
    }
}

impl<C: Connector> Shared<C> {
    /// Whether the pool was stopped (its last handle dropped).
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}
