//! The properties checked on every state: one `always` per invariant of
//! `specs/SPEC.md`, the liveness promises L1 and L2, and examples that show
//! the interesting states are reachable.

use stateright::Property;

use crate::model::{PoolSpec, State, PANIC};

/// I1: a session holds at most `max_leases_per_session` leases, each once.
pub const I1: &str = "I1 bounded leasing";
/// I2: only connected, serving sessions are granted or checked.
pub const I2: &str = "I2 only serving sessions are granted";
/// I3: a session released with a transport error is never granted again.
pub const I3: &str = "I3 transport error never granted again";
/// I4: a session whose transport closed is never granted again.
pub const I4: &str = "I4 transport closed never granted again";
/// I5: a session is granted only to acquires of its own key.
pub const I5: &str = "I5 key isolation";
/// I6: the per-key, total and key-count limits hold at every step.
pub const I6: &str = "I6 capacity";
/// I7: every connected session is closed exactly once, and only when free.
pub const I7: &str = "I7 every session closed exactly once";
/// I8: waiters of a key are served in the order they came.
pub const I8: &str = "I8 FIFO waiters";
/// I9: no grant at or after an acquire's deadline, no early timeout, and a
/// timer covers every deadline.
pub const I9: &str = "I9 deadlines honoured";
/// I10: no session is granted past its lifetime.
pub const I10: &str = "I10 no grant past max lifetime";
/// I11: no session is granted stale or after a timed-out or cancelled use
/// without passing a check first.
pub const I11: &str = "I11 no stale grant without a check";
/// I12: every acquire gets exactly one answer (or is cancelled).
pub const I12: &str = "I12 one answer per acquire";
/// I13: while callers wait, nothing ready stays idle and something is under way.
pub const I13: &str = "I13 waiters make progress";
/// I14: connects start only while the key's breaker allows them.
pub const I14: &str = "I14 breaker gates connects";
/// I15: after shutdown nothing is granted or connected and nothing waits.
pub const I15: &str = "I15 shutdown stops service";
/// I16: the pool's counters and indexes agree with its sessions, and it
/// accepts every input that answers an action it emitted.
pub const I16: &str = "I16 bookkeeping consistent";

/// Every invariant id, in order.
pub const INVARIANTS: [&str; 16] = [
    I1, I2, I3, I4, I5, I6, I7, I8, I9, I10, I11, I12, I13, I14, I15, I16,
];

/// Any violation the core reports names one of [`INVARIANTS`].
pub const KNOWN: &str = "every violation names a known invariant";
/// L1: every acquire ends in a grant or a reject (unless its caller cancels
/// it while it waits). A path may end with a caller still waiting only when
/// the clock has reached the configuration's horizon, nothing is in flight
/// for it, and the pool's timer is armed beyond the horizon.
pub const L1: &str = "L1 every acquire ends in a grant or a reject";
/// L2: after shutdown (and every lease released) every connected session is
/// eventually closed and the pool reports itself closed.
pub const L2: &str = "L2 after shutdown every session is eventually closed";
/// Example: two sessions leased at once.
pub const TWO_LEASED: &str = "two sessions leased at once";
/// Example: a session granted a second time.
pub const RECYCLED: &str = "a session recycled";
/// Example: a breaker opened, then closed again.
pub const BREAKER_CYCLED: &str = "a breaker opened and closed again";
/// Example: a passed check handed its session to a waiting caller.
pub const WAITER_AFTER_CHECK: &str = "a waiter granted after a check";

macro_rules! invariant {
    ($i:literal) => {
        Property::always(INVARIANTS[$i], |m: &PoolSpec, s: &State| {
            !m.violates(INVARIANTS[$i], s)
        })
    };
}

/// Every property of the model, in report order.
pub fn all() -> Vec<Property<PoolSpec>> {
    vec![
        invariant!(0),
        invariant!(1),
        invariant!(2),
        invariant!(3),
        invariant!(4),
        invariant!(5),
        invariant!(6),
        invariant!(7),
        invariant!(8),
        invariant!(9),
        invariant!(10),
        invariant!(11),
        invariant!(12),
        invariant!(13),
        invariant!(14),
        invariant!(15),
        Property::always(PANIC, |m: &PoolSpec, s: &State| !m.violates(PANIC, s)),
        Property::always(KNOWN, |_, s: &State| {
            s.violation
                .as_ref()
                .is_none_or(|v| v.invariant == PANIC || INVARIANTS.contains(&v.invariant))
        }),
        Property::eventually(L1, |m: &PoolSpec, s: &State| {
            s.violation.is_some() || m.callers_done(s)
        }),
        Property::eventually(L2, |m: &PoolSpec, s: &State| {
            s.violation.is_some() || !m.bounds().shutdown || PoolSpec::all_closed(s)
        }),
        Property::sometimes(TWO_LEASED, |_, s: &State| PoolSpec::leased_sessions(s) >= 2),
        Property::sometimes(RECYCLED, |_, s: &State| s.seen.recycled),
        Property::sometimes(BREAKER_CYCLED, |_, s: &State| s.seen.breaker_closed_again),
        Property::sometimes(WAITER_AFTER_CHECK, |_, s: &State| {
            s.seen.waiter_granted_after_check
        }),
    ]
}
