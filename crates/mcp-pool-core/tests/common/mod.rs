//! A test harness: applies inputs, collects actions, audits every step.
#![allow(dead_code)]

use std::time::Duration;

use mcp_pool_core::{
    AcquireId, Action, Applied, Auditor, CheckFailure, Config, ConnectFailure, Input, InputError,
    LeaseId, Outcome, Pool, SessionId, SessionState, Time,
};

pub type Key = u8;

pub struct Harness {
    pub pool: Pool<Key>,
    pub auditor: Auditor<Key>,
    pub now: Time,
    pub steps: Vec<(Time, Input<Key>)>,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        Harness {
            pool: Pool::new(config).expect("valid config"),
            auditor: Auditor::new(),
            now: Time::ZERO,
            steps: Vec::new(),
        }
    }

    /// Applies one input, drains its actions and audits the step. A refused
    /// input must leave the pool exactly as it was.
    pub fn step(&mut self, input: Input<Key>) -> (Result<Applied, InputError>, Vec<Action<Key>>) {
        let before = self.pool.clone();
        self.steps.push((self.now, input.clone()));
        let result = self.pool.apply(input.clone(), self.now);
        let mut actions = Vec::new();
        while let Some(a) = self.pool.poll_action() {
            actions.push(a);
        }
        if result.is_err() {
            assert_eq!(before, self.pool, "refused {input:?} changed the pool");
        }
        if let Err(v) = self.auditor.observe(&self.pool, &input, &result, &actions) {
            panic!(
                "{v}\nafter {input:?} -> {result:?}, actions {actions:?}\nsteps: {:#?}",
                self.steps
            );
        }
        (result, actions)
    }

    pub fn acquire(&mut self, key: Key) -> (AcquireId, Vec<Action<Key>>) {
        self.acquire_until(key, None)
    }

    pub fn acquire_until(
        &mut self,
        key: Key,
        deadline: Option<Time>,
    ) -> (AcquireId, Vec<Action<Key>>) {
        let (r, actions) = self.step(Input::Acquire { key, deadline });
        match r {
            Ok(Applied::Acquire(id)) => (id, actions),
            other => panic!("acquire refused: {other:?}"),
        }
    }

    pub fn connected(&mut self, session: SessionId, ok: bool) -> Vec<Action<Key>> {
        let result = if ok {
            Ok(())
        } else {
            Err(ConnectFailure::Failed)
        };
        let (r, actions) = self.step(Input::Connected { session, result });
        r.expect("connected accepted");
        actions
    }

    pub fn release(&mut self, lease: LeaseId, outcome: Outcome) -> Vec<Action<Key>> {
        let (r, actions) = self.step(Input::Release { lease, outcome });
        r.expect("release accepted");
        actions
    }

    pub fn checked(&mut self, session: SessionId, ok: bool) -> Vec<Action<Key>> {
        let result = if ok {
            Ok(())
        } else {
            Err(CheckFailure::Failed)
        };
        let (r, actions) = self.step(Input::Checked { session, result });
        r.expect("checked accepted");
        actions
    }

    pub fn closed(&mut self, session: SessionId) -> Vec<Action<Key>> {
        let (r, actions) = self.step(Input::Closed(session));
        r.expect("closed accepted");
        actions
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Action<Key>> {
        self.now = self.now + d;
        self.step(Input::HandleTimeout).1
    }

    /// Acquires on an empty key and answers the connect: returns the lease.
    pub fn lease_new(&mut self, key: Key) -> LeaseId {
        let (id, actions) = self.acquire(key);
        let session = connect_of(&actions);
        let actions = self.connected(session, true);
        grant_of(&actions, id)
    }

    pub fn state(&self, session: SessionId) -> Option<SessionState> {
        self.pool.session_state(session)
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every value `f` picks out of `actions`, in order.
pub fn pick<T>(actions: &[Action<Key>], f: impl Fn(&Action<Key>) -> Option<T>) -> Vec<T> {
    actions.iter().filter_map(f).collect()
}

pub fn connect_of(actions: &[Action<Key>]) -> SessionId {
    connects(actions)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no Connect in {actions:?}"))
}

pub fn connects(actions: &[Action<Key>]) -> Vec<SessionId> {
    pick(actions, |a| match a {
        Action::Connect { session, .. } => Some(*session),
        _ => None,
    })
}

pub fn grant_of(actions: &[Action<Key>], acquire: AcquireId) -> LeaseId {
    grants(actions)
        .into_iter()
        .find_map(|(a, lease)| (a == acquire).then_some(lease))
        .unwrap_or_else(|| panic!("no Grant for {acquire:?} in {actions:?}"))
}

pub fn validate_of(actions: &[Action<Key>]) -> SessionId {
    let validated = pick(actions, |a| match a {
        Action::Validate { session, .. } => Some(*session),
        _ => None,
    });
    validated
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no Validate in {actions:?}"))
}

pub fn closes(actions: &[Action<Key>]) -> Vec<SessionId> {
    pick(actions, |a| match a {
        Action::Close { session, .. } => Some(*session),
        _ => None,
    })
}

pub fn grants(actions: &[Action<Key>]) -> Vec<(AcquireId, LeaseId)> {
    pick(actions, |a| match a {
        Action::Grant { acquire, lease } => Some((*acquire, *lease)),
        _ => None,
    })
}

pub fn rejects(actions: &[Action<Key>]) -> Vec<(AcquireId, mcp_pool_core::RejectReason)> {
    pick(actions, |a| match a {
        Action::Reject { acquire, reason } => Some((*acquire, *reason)),
        _ => None,
    })
}

/// A small config: no background timers unless a test asks for them, and
/// no lanes (sessions stay with the pool; the lane tests turn them on).
pub fn quiet() -> Config {
    Config {
        lanes: false,
        max_sessions_per_key: 2,
        max_sessions_total: 4,
        max_keys: 4,
        idle_timeout: None,
        max_lifetime: None,
        lifetime_jitter: Duration::ZERO,
        check_interval: Duration::from_secs(3600),
        ..Config::default()
    }
}
