//! Deliberately broken variants of the pool, compiled only with the
//! `mutants` feature, which exists so the model checker and the tests can
//! prove that they catch each known bug. Never enable it in a product: it
//! adds nothing unless [`Pool::set_mutation`](crate::Pool::set_mutation) is
//! called, and calling it breaks the pool on purpose.

use crate::{Pool, PoolKey};

/// One known bug, re-introduced on purpose.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Release treats every outcome as `Ok` (the dead session goes back).
    ReleaseIgnoresFailure,
    /// A recently used session is granted without the check its outcome or
    /// age calls for.
    SkipCheckAfterUse,
    /// `transport_closed` is accepted and ignored.
    IgnoreTransportClosed,
    /// A waiter may be given an idle session of another key.
    GrantAcrossKeys,
    /// A live server's definite refusal answers only the head waiter.
    RefusalAnswersHeadOnly,
    /// A grant found closed drops its caller instead of putting it back.
    ClosedGrantDropsCaller,
    /// Callers queue in the pool while its lane keeps the key's sessions.
    WaitersLeaveLanesAlone,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 7] = [
        Mutation::ReleaseIgnoresFailure,
        Mutation::SkipCheckAfterUse,
        Mutation::IgnoreTransportClosed,
        Mutation::GrantAcrossKeys,
        Mutation::RefusalAnswersHeadOnly,
        Mutation::ClosedGrantDropsCaller,
        Mutation::WaitersLeaveLanesAlone,
    ];
}

impl<K: PoolKey> Pool<K> {
    /// Breaks the pool on purpose (see [`Mutation`]).
    pub fn set_mutation(&mut self, mutation: Option<Mutation>) {
        self.mutation = mutation;
    }
}
