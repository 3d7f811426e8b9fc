//! The properties checked on every state: one `always` per invariant of
//! `specs/SPEC.md`, the liveness promises L1 and L2, and examples that show
//! the interesting states are reachable.

use stateright::Property;

use crate::model::{PoolSpec, State, PANIC};

pub use mcp_pool_core::ids::{
    I1, I10, I11, I12, I13, I14, I15, I16, I17, I18, I2, I3, I4, I5, I6, I7, I8, I9,
};

/// Every invariant id, in order.
pub const INVARIANTS: [&str; 18] = [
    I1, I2, I3, I4, I5, I6, I7, I8, I9, I10, I11, I12, I13, I14, I15, I16, I17, I18,
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
/// Example: a caller whose grant was found closed got another session.
pub const REQUEUED_SERVED: &str = "a caller served after its grant was found closed";
/// Example: a caller took a session from its key's lane.
pub const LANE_TAKEN: &str = "a caller took a session from its lane";
/// Example: a session given back in its lane went to a caller waiting there.
pub const LANE_HANDOFF: &str = "a lane handed a session to a caller waiting there";
/// Example: a live server's definite refusal answered a waiting caller.
pub const REFUSAL_ANSWERED: &str = "a definite refusal answered a waiting caller";

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
        invariant!(16),
        invariant!(17),
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
        Property::sometimes(REQUEUED_SERVED, |_, s: &State| s.seen.requeued_then_served),
        Property::sometimes(REFUSAL_ANSWERED, |_, s: &State| {
            s.seen.refusal_answered_waiter
        }),
        Property::sometimes(LANE_TAKEN, |_, s: &State| s.seen.lane_taken),
        Property::sometimes(LANE_HANDOFF, |_, s: &State| s.seen.lane_handoff),
    ]
}
