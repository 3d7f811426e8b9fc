//! One session's record, and the slot table that gives every session and
//! connect its id.

use crate::{AcquireId, EvictReason, SessionId, Time};

/// The state of one session, as the pool sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Healthy, parked, may be granted (after a check if stale).
    Idle,
    /// Held by one caller (or up to its lease limit of callers).
    Leased,
    /// A health check is in flight; nobody holds it.
    Validating,
    /// Lent to its key's lane: parked there or in use by a caller who took
    /// it there.
    Lent,
    /// Known or suspected broken: never granted again; closed once free.
    Poisoned,
    /// Gone: its `Close` was carried out.
    Closed,
}

/// A read-only view of one live session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo<'a, K> {
    /// The key it was created for; it is never granted to another.
    pub key: &'a K,
    /// Its state.
    pub state: SessionState,
    /// Leases held on it.
    pub leases: usize,
    /// When its connect finished.
    pub created_at: Time,
    /// When its (jittered) lifetime ends, if there is a limit.
    pub expires_at: Option<Time>,
    /// Its last evidence of health (connect, passed check, or answered use).
    pub verified_at: Time,
    /// Whether it must pass a check before any reuse.
    pub needs_check: bool,
    /// Whether a health check on it is in flight.
    pub checking: bool,
    /// Whether it will be closed when returned (drain or shutdown).
    pub retiring: bool,
    /// Why it was poisoned, once it is.
    pub evicted: Option<EvictReason>,
    /// Whether its `Close` was emitted.
    pub close_issued: bool,
    /// Whether it has proved itself since its connect (a use the server
    /// answered, or a passed check).
    pub proven: bool,
    /// Most leases it carries at once.
    pub max_leases: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    Idle,
    Leased,
    Validating,
    Lent,
    Poisoned,
}

impl Phase {
    pub(crate) fn public(self) -> SessionState {
        match self {
            Phase::Idle => SessionState::Idle,
            Phase::Leased => SessionState::Leased,
            Phase::Validating => SessionState::Validating,
            Phase::Lent => SessionState::Lent,
            Phase::Poisoned => SessionState::Poisoned,
        }
    }
}

/// One lease held on a session: its sequence number, and the acquire it
/// answered (so a grant found closed can put that acquire back in line).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Held {
    pub(crate) seq: u32,
    pub(crate) acquire: AcquireId,
    pub(crate) deadline: Time,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Session {
    pub(crate) key: u32,
    pub(crate) phase: Phase,
    /// Most leases it carries at once.
    pub(crate) max_leases: usize,
    /// The leases held.
    pub(crate) leases: Vec<Held>,
    pub(crate) next_lease: u32,
    pub(crate) needs_check: bool,
    pub(crate) checking: bool,
    pub(crate) retire: bool,
    pub(crate) close_sent: bool,
    pub(crate) evicted: Option<EvictReason>,
    pub(crate) created_at: Time,
    /// `Time::MAX` when there is no lifetime limit.
    pub(crate) expires_at: Time,
    pub(crate) verified_at: Time,
    pub(crate) idle_since: Time,
    /// Proved itself since its connect (answered use or passed check).
    pub(crate) proven: bool,
    /// Just connected or just passed a check, and not released since: it
    /// may be handed over without another check.
    pub(crate) unused_since_proof: bool,
    /// While parked: when its idle timer is due (`Time::MAX`: none).
    pub(crate) due: Time,
    /// Parked past its idle timeout, kept for `min_idle_per_key`.
    pub(crate) idle_kept: bool,
    /// The lane holds it (lent, or poisoned while lent and not yet back).
    pub(crate) lane_held: bool,
    /// Its `Recall` was emitted (while the lane holds it).
    pub(crate) recall_sent: bool,
    /// When it was last lent.
    pub(crate) lent_at: Time,
}

impl Session {
    /// A session that has just connected at `now`.
    pub(crate) fn connected(
        key: u32,
        max_leases: usize,
        retire: bool,
        now: Time,
        expires_at: Time,
    ) -> Session {
        Session {
            key,
            phase: Phase::Idle,
            max_leases,
            leases: Vec::new(),
            next_lease: 0,
            needs_check: false,
            checking: false,
            retire,
            close_sent: false,
            evicted: None,
            created_at: now,
            expires_at,
            verified_at: now,
            idle_since: now,
            proven: false,
            unused_since_proof: true,
            due: Time::MAX,
            idle_kept: false,
            lane_held: false,
            recall_sent: false,
            lent_at: now,
        }
    }

    /// The position of lease `seq` among the leases held.
    pub(crate) fn lease_position(&self, seq: u32) -> Option<usize> {
        self.leases.iter().position(|held| held.seq == seq)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Entry {
    /// A reserved slot: a connect is in flight.
    Connecting {
        key: u32,
        retire: bool,
        /// The acquires issued before the connect began (ids below this):
        /// only their callers may learn of its failure.
        acquires_before: u64,
    },
    Session(Session),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    pub(crate) generation: u32,
    pub(crate) entry: Option<Entry>,
}

/// Every session and connect, addressed by [`SessionId`]: a slot index and
/// the slot's generation, bumped each time the slot is freed, so a stale id
/// never reaches a newer occupant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Slots {
    pub(crate) slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slots {
    pub(crate) fn get(&self, sid: SessionId) -> Option<&Entry> {
        let slot = self.slots.get(sid.index())?;
        if slot.generation != sid.generation() {
            return None;
        }
        slot.entry.as_ref()
    }

    pub(crate) fn get_mut(&mut self, sid: SessionId) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(sid.index())?;
        if slot.generation != sid.generation() {
            return None;
        }
        slot.entry.as_mut()
    }

    pub(crate) fn alloc(&mut self, entry: Entry) -> SessionId {
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.entry = Some(entry);
                SessionId::new(index as usize, slot.generation)
            }
            None => {
                let index = self.slots.len();
                self.slots.push(Slot {
                    generation: 0,
                    entry: Some(entry),
                });
                SessionId::new(index, 0)
            }
        }
    }

    pub(crate) fn free(&mut self, sid: SessionId) {
        let slot = &mut self.slots[sid.index()];
        slot.entry = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(sid.index() as u32);
    }

    /// Every occupied slot with its id, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SessionId, &Entry)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, slot)| {
            slot.entry
                .as_ref()
                .map(|entry| (SessionId::new(i, slot.generation), entry))
        })
    }

    /// The state of `sid`: `None` while it is a connect or was never issued,
    /// `Closed` once its slot moved on.
    pub(crate) fn state(&self, sid: SessionId) -> Option<SessionState> {
        let slot = self.slots.get(sid.index())?;
        if sid.generation() < slot.generation {
            return Some(SessionState::Closed);
        }
        if sid.generation() > slot.generation {
            return None;
        }
        match &slot.entry {
            Some(Entry::Session(s)) => Some(s.phase.public()),
            Some(Entry::Connecting { .. }) | None => None,
        }
    }
}
