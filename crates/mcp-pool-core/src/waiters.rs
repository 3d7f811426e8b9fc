//! Who waits, for which key, until when: every operation in O(log n), with
//! no scan of a queue.
//!
//! A key's queue is ordered by acquire id, which is the order callers asked
//! in. An acquire put back in line (its grant was found closed) keeps its
//! id, so it goes back to the head: every acquire still queued was issued
//! after it, since grants go to the head of the queue.

use std::collections::{BTreeMap, BTreeSet};

use crate::{AcquireId, Time};

/// One waiting acquire.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Waiter {
    pub(crate) key: u32,
    pub(crate) deadline: Time,
}

/// One key's queue of waiting acquires, first come first served.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Queue {
    ids: BTreeSet<AcquireId>,
}

impl Queue {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The acquire served next.
    pub(crate) fn head(&self) -> Option<AcquireId> {
        self.ids.first().copied()
    }

    /// The acquire that asked last.
    pub(crate) fn tail(&self) -> Option<AcquireId> {
        self.ids.last().copied()
    }

    /// In the order they will be served.
    pub(crate) fn iter(&self) -> impl Iterator<Item = AcquireId> + '_ {
        self.ids.iter().copied()
    }

    /// The acquires issued before `bound` (ids below it), in order.
    pub(crate) fn before(&self, bound: u64) -> Vec<AcquireId> {
        self.ids.range(..AcquireId(bound)).copied().collect()
    }
}

/// Every waiting acquire: by id (its key and deadline) and by deadline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Waiters {
    by_id: BTreeMap<AcquireId, Waiter>,
    by_deadline: BTreeSet<(Time, AcquireId)>,
}

impl Waiters {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: AcquireId) -> Option<&Waiter> {
        self.by_id.get(&id)
    }

    /// Enqueues `id` on `queue` (the queue of `waiter.key`).
    pub(crate) fn push(&mut self, queue: &mut Queue, id: AcquireId, waiter: Waiter) {
        queue.ids.insert(id);
        self.by_deadline.insert((waiter.deadline, id));
        self.by_id.insert(id, waiter);
    }

    /// Takes `id` out of `queue` and the indexes; `None` if it was not waiting.
    pub(crate) fn remove(&mut self, queue: &mut Queue, id: AcquireId) -> Option<Waiter> {
        let waiter = self.by_id.remove(&id)?;
        queue.ids.remove(&id);
        self.by_deadline.remove(&(waiter.deadline, id));
        Some(waiter)
    }

    /// The key `id` waits on.
    pub(crate) fn key_of(&self, id: AcquireId) -> Option<u32> {
        self.by_id.get(&id).map(|w| w.key)
    }

    /// The earliest deadline of any waiter.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.by_deadline.first().map(|&(t, _)| t)
    }

    /// The waiter with the earliest deadline, if it is at or before `now`.
    pub(crate) fn first_due(&self, now: Time) -> Option<AcquireId> {
        self.by_deadline
            .first()
            .filter(|&&(t, _)| t <= now)
            .map(|&(_, id)| id)
    }

    /// Whether the deadline index holds exactly the waiters (for
    /// `check_invariants`).
    pub(crate) fn indexes_agree(&self) -> bool {
        self.by_deadline.len() == self.by_id.len()
            && self
                .by_deadline
                .iter()
                .all(|&(t, id)| self.by_id.get(&id).is_some_and(|w| w.deadline == t))
    }
}
