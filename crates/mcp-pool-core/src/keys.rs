//! The key table: each key's sessions, waiters, gauges and breaker, and
//! when a key is made or forgotten.

use crate::breaker::Breaker;
use crate::pool::{Pool, PoolKey};
use crate::waiters::Queue;
use crate::SessionId;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyState<K> {
    pub(crate) key: K,
    /// Parked sessions, most recently parked last (granted first).
    pub(crate) idle: Vec<SessionId>,
    /// Every session of the key that is not yet closed, in creation order.
    pub(crate) sessions: Vec<SessionId>,
    pub(crate) waiters: Queue,
    /// Connecting plus Idle, Leased and Validating sessions: what capacity counts.
    pub(crate) live: usize,
    pub(crate) connecting: usize,
    pub(crate) validating: usize,
    pub(crate) leased: usize,
    pub(crate) poisoned: usize,
    /// Sessions lent to the key's lane.
    pub(crate) lent: usize,
    /// Whether the key's lane queues callers (the last `LaneOpen` said so).
    pub(crate) lane_open: bool,
    pub(crate) breaker: Breaker,
    /// The lease limit of the key's latest connected session (at first the
    /// pool's `max_leases_per_session`): what a connect in flight is
    /// expected to carry.
    pub(crate) lease_hint: usize,
    pub(crate) dirty: bool,
    pub(crate) blocked: bool,
}

impl<K> KeyState<K> {
    fn new(key: K, lease_hint: usize) -> KeyState<K> {
        KeyState {
            key,
            idle: Vec::new(),
            sessions: Vec::new(),
            waiters: Queue::default(),
            live: 0,
            connecting: 0,
            validating: 0,
            leased: 0,
            poisoned: 0,
            lent: 0,
            lane_open: false,
            breaker: Breaker::default(),
            lease_hint,
            dirty: false,
            blocked: false,
        }
    }

    /// Holds nothing: no session, connect or waiter, and nothing pending.
    fn is_empty(&self) -> bool {
        self.live == 0
            && self.poisoned == 0
            && self.waiters.is_empty()
            && !self.dirty
            && !self.blocked
    }
}

impl<K: PoolKey> Pool<K> {
    pub(crate) fn ks(&self, k: u32) -> &KeyState<K> {
        self.key_states[k as usize]
            .as_ref()
            .expect("live key index")
    }

    pub(crate) fn ks_mut(&mut self, k: u32) -> &mut KeyState<K> {
        self.key_states[k as usize]
            .as_mut()
            .expect("live key index")
    }

    /// Tracks a new key, forgetting an empty one if `max_keys` are tracked;
    /// `None` if every key is in use.
    pub(crate) fn create_key(&mut self, key: &K) -> Option<u32> {
        if self.keys.len() >= self.config.max_keys && !self.forget_one_key() {
            return None;
        }
        let state = KeyState::new(key.clone(), self.config.max_leases_per_session);
        let k = match self.free_keys.pop() {
            Some(k) => {
                self.key_states[k as usize] = Some(state);
                k
            }
            None => {
                self.key_states.push(Some(state));
                (self.key_states.len() - 1) as u32
            }
        };
        self.keys.insert(key.clone(), k);
        Some(k)
    }

    /// Forgets the first key that holds nothing (its breaker history goes
    /// too). Scans the key table, which is bounded by `max_keys`, and only
    /// when it is full.
    fn forget_one_key(&mut self) -> bool {
        let found = self
            .key_states
            .iter()
            .position(|ks| ks.as_ref().is_some_and(KeyState::is_empty));
        match found {
            Some(k) => {
                self.remove_key(k as u32);
                true
            }
            None => false,
        }
    }

    fn remove_key(&mut self, k: u32) {
        let ks = self.key_states[k as usize].take().expect("live key index");
        self.keys.remove(&ks.key);
        self.free_keys.push(k);
    }

    /// Forgets `k` if it holds nothing and its breaker has no history.
    pub(crate) fn maybe_forget_key(&mut self, k: u32) {
        let ks = self.ks(k);
        if ks.is_empty() && ks.breaker.is_pristine() {
            self.remove_key(k);
        }
    }

    pub(crate) fn mark_dirty(&mut self, k: u32) {
        let ks = self.ks_mut(k);
        if !ks.dirty {
            ks.dirty = true;
            self.dirty.push_back(k);
        }
    }
}
