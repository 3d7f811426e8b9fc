//! The core behind one door: every input the driver makes goes through here,
//! so the checking mode can audit each one.

use std::collections::VecDeque;
use std::fmt::Write;

use mcp_pool_core::{
    AcquireId, Action, Applied, Auditor, CheckFailure, ConnectFailure, Input, InputError,
    LaneReturn, LeaseId, Outcome, Pool, PoolKey, SessionId, Time,
};

/// The core pool and, in checking mode, its auditor.
pub(crate) struct Core<K: PoolKey> {
    pool: Pool<K>,
    check: Option<Box<Checker<K>>>,
}

impl<K: PoolKey> Core<K> {
    /// With `checking`, every input is audited (see [`Checker`]).
    pub(crate) fn new(pool: Pool<K>, checking: bool) -> Core<K> {
        Core {
            pool,
            check: checking.then(Box::default),
        }
    }

    pub(crate) fn acquire(
        &mut self,
        key: &K,
        deadline: Time,
        now: Time,
    ) -> Result<AcquireId, InputError> {
        let Some(check) = &mut self.check else {
            return self.pool.acquire(key, Some(deadline), now);
        };
        let input = Input::Acquire {
            key: key.clone(),
            deadline: Some(deadline),
        };
        match check.apply(&mut self.pool, input, now)? {
            Applied::Acquire(id) => Ok(id),
            Applied::Done => unreachable!("an acquire answers with its id"),
        }
    }

    pub(crate) fn cancel_acquire(&mut self, id: AcquireId, now: Time) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.cancel_acquire(id, now),
            Some(c) => c.input(&mut self.pool, Input::CancelAcquire(id), now),
        }
    }

    pub(crate) fn connected(
        &mut self,
        session: SessionId,
        result: Result<(), ConnectFailure>,
        now: Time,
    ) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.connected(session, result, now),
            Some(c) => c.input(&mut self.pool, Input::Connected { session, result }, now),
        }
    }

    pub(crate) fn release(
        &mut self,
        lease: LeaseId,
        outcome: Outcome,
        now: Time,
    ) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.release(lease, outcome, now),
            Some(c) => c.input(&mut self.pool, Input::Release { lease, outcome }, now),
        }
    }

    pub(crate) fn connected_with_leases(
        &mut self,
        session: SessionId,
        max_leases: usize,
        now: Time,
    ) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.connected_with_leases(session, max_leases, now),
            Some(c) => c.input(
                &mut self.pool,
                Input::ConnectedWithLeases {
                    session,
                    max_leases,
                },
                now,
            ),
        }
    }

    pub(crate) fn lane_returned(
        &mut self,
        session: SessionId,
        back: LaneReturn,
        now: Time,
    ) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.lane_returned(session, back, now),
            Some(c) => c.input(&mut self.pool, Input::LaneReturned { session, back }, now),
        }
    }

    pub(crate) fn release_unused(&mut self, lease: LeaseId, now: Time) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.release_unused(lease, now),
            Some(c) => c.input(&mut self.pool, Input::ReleaseUnused(lease), now),
        }
    }

    pub(crate) fn grant_closed(&mut self, lease: LeaseId, now: Time) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.grant_closed(lease, now),
            Some(c) => c.input(&mut self.pool, Input::GrantClosed(lease), now),
        }
    }

    pub(crate) fn checked(
        &mut self,
        session: SessionId,
        result: Result<(), CheckFailure>,
        now: Time,
    ) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.checked(session, result, now),
            Some(c) => c.input(&mut self.pool, Input::Checked { session, result }, now),
        }
    }

    pub(crate) fn transport_closed(
        &mut self,
        session: SessionId,
        now: Time,
    ) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.transport_closed(session, now),
            Some(c) => c.input(&mut self.pool, Input::TransportClosed(session), now),
        }
    }

    pub(crate) fn closed(&mut self, session: SessionId, now: Time) -> Result<(), InputError> {
        match &mut self.check {
            None => self.pool.closed(session, now),
            Some(c) => c.input(&mut self.pool, Input::Closed(session), now),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Time) {
        match &mut self.check {
            None => self.pool.handle_timeout(now),
            Some(c) => {
                let _ = c.input(&mut self.pool, Input::HandleTimeout, now);
            }
        }
    }

    pub(crate) fn drain(&mut self, now: Time) {
        match &mut self.check {
            None => self.pool.drain(now),
            Some(c) => {
                let _ = c.input(&mut self.pool, Input::Drain, now);
            }
        }
    }

    pub(crate) fn shutdown(&mut self, now: Time) {
        match &mut self.check {
            None => self.pool.shutdown(now),
            Some(c) => {
                let _ = c.input(&mut self.pool, Input::Shutdown, now);
            }
        }
    }

    /// The next action to carry out.
    pub(crate) fn poll_action(&mut self) -> Option<Action<K>> {
        match &mut self.check {
            None => self.pool.poll_action(),
            Some(c) => c.actions.pop_front(),
        }
    }

    pub(crate) fn is_checking(&self) -> bool {
        self.check.is_some()
    }

    /// The core, for reading.
    pub(crate) fn pool(&self) -> &Pool<K> {
        &self.pool
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        self.pool.poll_timeout()
    }
}

/// How many inputs a violation report shows.
const RECENT: usize = 64;

/// The checking mode: applies each input as an [`Input`] value, takes every
/// action it emitted, has the [`Auditor`] check the step (which ends with
/// `check_invariants`), and panics with the violation and the recent inputs.
struct Checker<K: PoolKey> {
    auditor: Auditor<K>,
    recent: VecDeque<(Time, Input<K>)>,
    /// Actions taken from the core and audited, not yet carried out.
    actions: VecDeque<Action<K>>,
}

impl<K: PoolKey> Default for Checker<K> {
    fn default() -> Self {
        Checker {
            auditor: Auditor::new(),
            recent: VecDeque::with_capacity(RECENT),
            actions: VecDeque::new(),
        }
    }
}

impl<K: PoolKey> Checker<K> {
    fn input(&mut self, pool: &mut Pool<K>, input: Input<K>, now: Time) -> Result<(), InputError> {
        self.apply(pool, input, now).map(|_| ())
    }

    fn apply(
        &mut self,
        pool: &mut Pool<K>,
        input: Input<K>,
        now: Time,
    ) -> Result<Applied, InputError> {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((now, input.clone()));
        let result = pool.apply(input.clone(), now);
        let mut actions = Vec::new();
        while let Some(action) = pool.poll_action() {
            actions.push(action);
        }
        if let Err(violation) = self.auditor.observe(pool, &input, &result, &actions) {
            let mut report = String::new();
            for (at, input) in &self.recent {
                let _ = writeln!(report, "  at {at:?}: {input:?}");
            }
            panic!(
                "mcp-pool checking mode: invariant violated: {violation}\n\
                 input {input:?} -> {result:?}, actions {actions:?}\n\
                 last {} inputs, oldest first:\n{report}",
                self.recent.len()
            );
        }
        self.actions.extend(actions);
        result
    }
}
