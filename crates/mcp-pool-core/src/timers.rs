//! The pool's timers other than waiter deadlines: each parked session's next
//! due time (lifetime end, idle timeout, keepalive check) and each open
//! breaker's cool-down end, ordered by time so the next one is found and
//! the due ones are taken without a scan.

use std::collections::BTreeSet;

use crate::{SessionId, Time};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Timers {
    /// One entry per parked session with a due time, removed when it is
    /// unparked: `Session::due` names the entry.
    idle: BTreeSet<(Time, SessionId)>,
    /// Cool-down ends of open breakers, by key index. An entry may outlive
    /// its breaker (the key was forgotten or the breaker moved on); it is
    /// then skipped when taken.
    breakers: BTreeSet<(Time, u32)>,
}

impl Timers {
    pub(crate) fn arm_idle(&mut self, due: Time, sid: SessionId) {
        if due != Time::MAX {
            self.idle.insert((due, sid));
        }
    }

    pub(crate) fn disarm_idle(&mut self, due: Time, sid: SessionId) {
        if due != Time::MAX {
            self.idle.remove(&(due, sid));
        }
    }

    /// Takes the earliest idle timer due at or before `now`.
    pub(crate) fn take_idle_due(&mut self, now: Time) -> Option<(Time, SessionId)> {
        let &(t, sid) = self.idle.first()?;
        (t <= now).then(|| {
            self.idle.pop_first();
            (t, sid)
        })
    }

    pub(crate) fn arm_breaker(&mut self, until: Time, key: u32) {
        self.breakers.insert((until, key));
    }

    /// Takes the earliest cool-down end at or before `now`.
    pub(crate) fn take_breaker_due(&mut self, now: Time) -> Option<(Time, u32)> {
        let &(t, key) = self.breakers.first()?;
        (t <= now).then(|| {
            self.breakers.pop_first();
            (t, key)
        })
    }

    /// The earliest timer of either kind.
    pub(crate) fn next(&self) -> Option<Time> {
        let idle = self.idle.first().map(|&(t, _)| t);
        let breaker = self.breakers.first().map(|&(t, _)| t);
        match (idle, breaker) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn has_idle(&self, due: Time, sid: SessionId) -> bool {
        self.idle.contains(&(due, sid))
    }

    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }

    pub(crate) fn has_breaker(&self, until: Time, key: u32) -> bool {
        self.breakers.contains(&(until, key))
    }
}
