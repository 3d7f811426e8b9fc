//! Opaque identifiers handed out by the pool.

use std::fmt;

/// Identifies one session (or the connect attempt that may become it) for its
/// whole life. An id is never reused by the same pool, so a stale id can
/// never address a newer session: inputs naming it get a typed error.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionId(pub(crate) u64);

impl SessionId {
    /// Slot index inside the pool's table (low 32 bits).
    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    /// Generation of the slot (high 32 bits); bumped each time the slot is reused.
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub(crate) fn new(index: usize, generation: u32) -> SessionId {
        SessionId(((generation as u64) << 32) | index as u64)
    }
    /// The raw value, stable for the pool's life; useful as a log field.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}.{}", self.index(), self.generation())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One grant of a session to one caller. Releasing it is the only way to give
/// the session back, and a lease can be released exactly once.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LeaseId {
    pub(crate) session: SessionId,
    pub(crate) seq: u32,
}

impl LeaseId {
    /// The session this lease holds.
    pub fn session(self) -> SessionId {
        self.session
    }
}

impl fmt::Debug for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/l{}", self.session, self.seq)
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One call to `acquire`. Every acquire is answered by exactly one
/// [`Action::Grant`](crate::Action::Grant) or
/// [`Action::Reject`](crate::Action::Reject) carrying this id.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AcquireId(pub(crate) u64);

impl AcquireId {
    /// The raw value: acquire ids increase in the order acquires were made.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for AcquireId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

impl fmt::Display for AcquireId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
