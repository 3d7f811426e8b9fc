//! The per-key circuit breaker: consecutive failures open it, a backed-off
//! cool-down lets one probe through, the probe's result decides.
//!
//! A failure is a failed connect, or a session that died before it ever
//! proved itself (found closed at its first grant). A connect that succeeds
//! closes the breaker, but only a session that proves itself (a use the
//! server answered, or a passed check) forgets the failures: a server whose
//! sessions die right after connecting still opens its breaker.

use crate::{BreakerState, Config, ConnectFailure, SessionId, Time};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Breaker {
    /// Consecutive failures since a session last proved itself.
    failures: u32,
    /// Consecutive openings since a session last proved itself (drives the
    /// back-off).
    trips: u32,
    /// Whether the last counted failure was a live server's definite answer.
    definite: bool,
    state: State,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
enum State {
    #[default]
    Closed,
    Open {
        until: Time,
    },
    HalfOpen {
        probe: Option<SessionId>,
    },
}

impl Breaker {
    /// No history at all: forgetting the key loses nothing.
    pub(crate) fn is_pristine(&self) -> bool {
        *self == Breaker::default()
    }

    pub(crate) fn public(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The end of the cool-down, while open.
    pub(crate) fn open_until(&self) -> Option<Time> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// The probe connect in flight, while half-open.
    pub(crate) fn probe(&self) -> Option<SessionId> {
        match self.state {
            State::HalfOpen { probe } => probe,
            _ => None,
        }
    }

    /// Whether the last counted failure was a definite answer of a live
    /// server ([`ConnectFailure::Rejected`]).
    pub(crate) fn definite(&self) -> bool {
        self.definite
    }

    /// Moves Open to HalfOpen once the cool-down is over. Returns whether it
    /// did.
    pub(crate) fn poll(&mut self, now: Time) -> bool {
        if let State::Open { until } = self.state {
            if now >= until {
                self.state = State::HalfOpen { probe: None };
                return true;
            }
        }
        false
    }

    /// Whether a connect may start now (call [`Breaker::poll`] first).
    pub(crate) fn admits(&self) -> bool {
        matches!(self.state, State::Closed | State::HalfOpen { probe: None })
    }

    /// Whether an acquire that must not wait is refused: open, or a probe
    /// is in flight.
    pub(crate) fn refuses_fast(&self) -> bool {
        matches!(
            self.state,
            State::Open { .. } | State::HalfOpen { probe: Some(_) }
        )
    }

    /// Whether waiters are held back by the breaker (for reject reasons).
    pub(crate) fn is_tripped(&self) -> bool {
        !matches!(self.state, State::Closed)
    }

    pub(crate) fn on_connect_started(&mut self, session: SessionId) {
        if let State::HalfOpen { probe: None } = self.state {
            self.state = State::HalfOpen {
                probe: Some(session),
            };
        }
    }

    /// A connect succeeded: the server answers again, connects may go on.
    /// The failures are forgotten only once a session proves itself.
    pub(crate) fn on_connected(&mut self) {
        self.state = State::Closed;
    }

    /// A session proved itself (a use the server answered, a passed check).
    pub(crate) fn on_proof(&mut self) {
        if !self.is_pristine() {
            *self = Breaker::default();
        }
    }

    /// Records a failed connect `session` of `kind`, or (with `None`) a
    /// session that died before it proved itself; returns the end of the
    /// cool-down if the breaker opened now.
    pub(crate) fn on_failure(
        &mut self,
        session: Option<SessionId>,
        kind: Option<ConnectFailure>,
        now: Time,
        config: &Config,
    ) -> Option<Time> {
        let definite = kind == Some(ConnectFailure::Rejected);
        match self.state {
            State::Closed => {
                self.failures = self.failures.saturating_add(1);
                self.definite = definite;
                if self.failures < config.breaker.failure_threshold {
                    return None;
                }
            }
            State::HalfOpen { probe: Some(p) } if session == Some(p) => {
                self.definite = definite;
            }
            // A connect started before the breaker opened: already counted.
            _ => return None,
        }
        self.trips = self.trips.saturating_add(1);
        let until = now + config.cooldown(self.trips);
        self.state = State::Open { until };
        Some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(threshold: u32) -> Config {
        let mut c = Config::default();
        c.breaker.failure_threshold = threshold;
        c
    }

    const FAILED: Option<ConnectFailure> = Some(ConnectFailure::Failed);

    #[test]
    fn opens_after_threshold_then_probes_with_backoff() {
        let c = config(2);
        let mut b = Breaker::default();
        let s = |n| Some(SessionId::new(n, 0));
        assert_eq!(b.on_failure(s(0), FAILED, Time::ZERO, &c), None);
        assert!(b.admits());
        let t1 = Time::ZERO + Duration::from_millis(100);
        assert_eq!(b.on_failure(s(1), FAILED, Time::ZERO, &c), Some(t1));
        assert_eq!(b.public(), BreakerState::Open);
        assert!(!b.admits());
        assert_eq!(b.open_until(), Some(t1));
        assert!(b.poll(t1));
        assert_eq!(b.public(), BreakerState::HalfOpen);
        assert!(b.admits());
        b.on_connect_started(SessionId::new(2, 0));
        assert!(!b.admits(), "only one probe at a time");
        // A late failure of an older connect changes nothing.
        assert_eq!(b.on_failure(s(1), FAILED, t1, &c), None);
        assert_eq!(
            b.on_failure(s(2), FAILED, t1, &c),
            Some(t1 + Duration::from_millis(200))
        );
        b.on_proof();
        assert!(b.is_pristine());
    }

    #[test]
    fn a_connect_closes_it_but_only_a_proof_forgets_the_failures() {
        let c = config(2);
        let mut b = Breaker::default();
        assert!(b
            .on_failure(None, Some(ConnectFailure::Rejected), Time::ZERO, &c)
            .is_none());
        assert!(b.definite());
        b.on_connected();
        // The new session died before it proved itself: the second failure
        // in a row opens the breaker.
        assert!(b.on_failure(None, None, Time::ZERO, &c).is_some());
        assert!(!b.definite());
        assert!(b.poll(Time::ZERO + Duration::from_secs(1)));
        b.on_connected();
        assert_eq!(b.public(), BreakerState::Closed);
        assert!(!b.is_pristine(), "failures are kept until a proof");
        b.on_proof();
        assert!(b.is_pristine());
    }
}
