//! The per-key circuit breaker: consecutive connect failures open it, a
//! backed-off cool-down lets one probe through, the probe's result decides.

use crate::{BreakerState, Config, SessionId, Time};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Breaker {
    /// Consecutive connect failures while closed.
    failures: u32,
    /// Consecutive openings without a success (drives the back-off).
    trips: u32,
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

    /// Moves Open to HalfOpen once the cool-down is over.
    pub(crate) fn poll(&mut self, now: Time) {
        if let State::Open { until } = self.state {
            if now >= until {
                self.state = State::HalfOpen { probe: None };
            }
        }
    }

    /// Whether a connect may start now (call [`Breaker::poll`] first).
    pub(crate) fn admits(&self) -> bool {
        matches!(self.state, State::Closed | State::HalfOpen { probe: None })
    }

    /// Whether a fail-fast acquire is refused: open, or a probe is in flight.
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

    /// Any successful connect proves the server is back.
    pub(crate) fn on_success(&mut self) {
        *self = Breaker::default();
    }

    /// Records a failed connect; returns whether the breaker opened now.
    pub(crate) fn on_failure(&mut self, session: SessionId, now: Time, config: &Config) -> bool {
        match self.state {
            State::Closed => {
                self.failures += 1;
                if self.failures >= config.breaker.failure_threshold {
                    self.trips = 1;
                    self.state = State::Open {
                        until: now + config.cooldown(1),
                    };
                    return true;
                }
                false
            }
            State::HalfOpen { probe: Some(p) } if p == session => {
                self.trips = self.trips.saturating_add(1);
                self.state = State::Open {
                    until: now + config.cooldown(self.trips),
                };
                true
            }
            // A connect started before the breaker opened: already counted.
            _ => false,
        }
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

    #[test]
    fn opens_after_threshold_then_probes_with_backoff() {
        let c = config(2);
        let mut b = Breaker::default();
        let s = |n| SessionId::new(n, 0);
        assert!(!b.on_failure(s(0), Time::ZERO, &c));
        assert!(b.admits());
        assert!(b.on_failure(s(1), Time::ZERO, &c));
        assert_eq!(b.public(), BreakerState::Open);
        assert!(!b.admits());
        let t1 = Time::ZERO + Duration::from_millis(100);
        assert_eq!(b.open_until(), Some(t1));
        b.poll(t1);
        assert_eq!(b.public(), BreakerState::HalfOpen);
        assert!(b.admits());
        b.on_connect_started(s(2));
        assert!(!b.admits(), "only one probe at a time");
        // A late failure of an older connect changes nothing.
        assert!(!b.on_failure(s(1), t1, &c));
        assert!(b.on_failure(s(2), t1, &c));
        assert_eq!(b.open_until(), Some(t1 + Duration::from_millis(200)));
        b.on_success();
        assert!(b.is_pristine());
    }
}
