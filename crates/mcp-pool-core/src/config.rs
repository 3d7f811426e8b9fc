//! Policies as data: every limit and deadline the pool obeys, validated once.

use std::fmt;
use std::time::Duration;

/// Every policy of a pool. Build one from [`Config::default`] and change the
/// fields you need; [`Pool::new`](crate::Pool::new) refuses any configuration
/// that cannot work, with a [`ConfigError`] naming the field.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// Most sessions (live or being connected) for one key. At least 1.
    pub max_sessions_per_key: usize,
    /// Most sessions (live or being connected) across all keys. At least 1.
    /// When it is reached and a key needs a session, the least recently used
    /// idle session of another key is evicted to make room.
    pub max_sessions_total: usize,
    /// Most keys tracked at once. At least 1. A key with no session, no
    /// connect and no waiter is forgotten when room is needed.
    pub max_keys: usize,
    /// Most leases one session holds at once, unless its connect says
    /// otherwise ([`Pool::connected_with_leases`](crate::Pool::connected_with_leases)):
    /// 1 (the default) makes sessions exclusive; more lets a stateless
    /// server's session serve several callers.
    pub max_leases_per_session: usize,
    /// Sessions each known key keeps idle or on the way (pre-warm). At most
    /// `max_sessions_per_key`.
    pub min_idle_per_key: usize,
    /// Most callers waiting for one key at once. At least 1. An acquire that
    /// would wait beyond it is refused at once with
    /// [`RejectReason::QueueFull`](crate::RejectReason::QueueFull), so an
    /// outage under load cannot build an unbounded queue.
    pub max_waiters_per_key: usize,
    /// Whether fresh exclusive sessions are lent to their key's lane, where
    /// callers take and return them without the pool's decisions on every
    /// use (see [`Action::Lend`](crate::Action::Lend)). Default true.
    pub lanes: bool,
    /// How long an acquire waits when the caller gives no deadline. Non-zero.
    pub acquire_timeout: Duration,
    /// How long a connect may take; the driver must report by then. Non-zero.
    pub connect_timeout: Duration,
    /// How long a health check may take; the driver must report by then. Non-zero.
    pub check_timeout: Duration,
    /// An idle session unused this long is closed (never below
    /// `min_idle_per_key`). `None` keeps idle sessions forever. Non-zero.
    pub idle_timeout: Option<Duration>,
    /// A session older than this is never granted again and is closed once
    /// returned. `None` means no limit. Non-zero.
    pub max_lifetime: Option<Duration>,
    /// Each session's lifetime is shortened by a random amount below this,
    /// drawn from `seed`, so sessions made together do not expire together.
    /// Must be below `max_lifetime`.
    pub lifetime_jitter: Duration,
    /// A session whose last evidence of health (connect, check, or a use that
    /// the server answered) is older than this is checked before it is granted,
    /// and idle sessions are checked in the background at this interval.
    /// Zero means check on every reuse.
    pub check_interval: Duration,
    /// The per-key circuit breaker.
    pub breaker: BreakerConfig,
    /// Seed of the jitter source: the same seed and inputs give the same run.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_sessions_per_key: 8,
            max_sessions_total: 256,
            max_keys: 1024,
            max_leases_per_session: 1,
            min_idle_per_key: 0,
            max_waiters_per_key: 1024,
            lanes: true,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            check_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(240)),
            max_lifetime: Some(Duration::from_secs(1800)),
            lifetime_jitter: Duration::from_secs(60),
            check_interval: Duration::from_secs(30),
            breaker: BreakerConfig::default(),
            seed: 0x6d63_702d_706f_6f6c,
        }
    }
}

/// The per-key circuit breaker: after `failure_threshold` consecutive connect
/// failures the key opens; after a cool-down one probe connect is let through
/// (half-open); its success closes the breaker, its failure reopens it with the
/// cool-down doubled, up to `max_cooldown`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BreakerConfig {
    /// Consecutive connect failures that open the breaker. At least 1; use
    /// `u32::MAX` to never open it.
    pub failure_threshold: u32,
    /// The first cool-down. Non-zero.
    pub base_cooldown: Duration,
    /// The longest cool-down. At least `base_cooldown`.
    pub max_cooldown: Duration,
    /// When true, acquires for an open key are rejected at once; when false
    /// (the default) they wait for the probe up to their own deadline, so a
    /// call made after the backend returns succeeds as soon as the probe does.
    pub fail_fast: bool,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            base_cooldown: Duration::from_millis(100),
            max_cooldown: Duration::from_secs(2),
            fail_fast: false,
        }
    }
}

/// Why a [`Config`] was refused. The message names the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A size that must be at least 1 is 0.
    ZeroSize(&'static str),
    /// A duration that must be positive is zero.
    ZeroDuration(&'static str),
    /// `min_idle_per_key` exceeds `max_sessions_per_key`.
    MinIdleAboveMax {
        /// The configured minimum.
        min_idle: usize,
        /// The configured maximum per key.
        max: usize,
    },
    /// `lifetime_jitter` is not below `max_lifetime`.
    JitterNotBelowLifetime,
    /// `breaker.base_cooldown` exceeds `breaker.max_cooldown`.
    CooldownOrder,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroSize(field) => write!(f, "`{field}` is 0; it must be at least 1"),
            ConfigError::ZeroDuration(field) => {
                write!(f, "`{field}` is zero; a deadline must lie in the future")
            }
            ConfigError::MinIdleAboveMax { min_idle, max } => write!(
                f,
                "`min_idle_per_key` ({min_idle}) exceeds `max_sessions_per_key` ({max})"
            ),
            ConfigError::JitterNotBelowLifetime => {
                write!(f, "`lifetime_jitter` must be below `max_lifetime`")
            }
            ConfigError::CooldownOrder => {
                write!(f, "`breaker.base_cooldown` exceeds `breaker.max_cooldown`")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks that the configuration can work; see [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [
            ("max_sessions_per_key", self.max_sessions_per_key),
            ("max_sessions_total", self.max_sessions_total),
            ("max_keys", self.max_keys),
            ("max_leases_per_session", self.max_leases_per_session),
            ("max_waiters_per_key", self.max_waiters_per_key),
            (
                "breaker.failure_threshold",
                self.breaker.failure_threshold as usize,
            ),
        ];
        for (field, value) in sizes {
            if value == 0 {
                return Err(ConfigError::ZeroSize(field));
            }
        }
        let durations = [
            ("acquire_timeout", Some(self.acquire_timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("check_timeout", Some(self.check_timeout)),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("breaker.base_cooldown", Some(self.breaker.base_cooldown)),
        ];
        for (field, value) in durations {
            if value == Some(Duration::ZERO) {
                return Err(ConfigError::ZeroDuration(field));
            }
        }
        if self.min_idle_per_key > self.max_sessions_per_key {
            return Err(ConfigError::MinIdleAboveMax {
                min_idle: self.min_idle_per_key,
                max: self.max_sessions_per_key,
            });
        }
        if let Some(lifetime) = self.max_lifetime {
            if self.lifetime_jitter >= lifetime {
                return Err(ConfigError::JitterNotBelowLifetime);
            }
        }
        if self.breaker.base_cooldown > self.breaker.max_cooldown {
            return Err(ConfigError::CooldownOrder);
        }
        Ok(())
    }

    /// The cool-down after the `trips`-th consecutive opening (1-based):
    /// `base_cooldown * 2^(trips-1)`, capped at `max_cooldown`.
    pub fn cooldown(&self, trips: u32) -> Duration {
        let shift = trips.saturating_sub(1).min(30);
        self.breaker
            .base_cooldown
            .saturating_mul(1u32 << shift)
            .min(self.breaker.max_cooldown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    fn with(change: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        change(&mut c);
        c
    }

    #[test]
    fn refuses_what_cannot_work() {
        let c = with(|c| c.max_sessions_per_key = 0);
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroSize("max_sessions_per_key"))
        );

        let c = with(|c| c.max_leases_per_session = 0);
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroSize("max_leases_per_session"))
        );

        let c = with(|c| c.max_waiters_per_key = 0);
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroSize("max_waiters_per_key"))
        );

        let c = with(|c| c.acquire_timeout = Duration::ZERO);
        let err = c.validate().unwrap_err();
        assert_eq!(err, ConfigError::ZeroDuration("acquire_timeout"));
        assert!(err.to_string().contains("acquire_timeout"));

        let c = with(|c| c.min_idle_per_key = 9);
        assert_eq!(
            c.validate(),
            Err(ConfigError::MinIdleAboveMax {
                min_idle: 9,
                max: 8
            })
        );

        let c = with(|c| c.lifetime_jitter = Duration::from_secs(1800));
        assert_eq!(c.validate(), Err(ConfigError::JitterNotBelowLifetime));

        let c = with(|c| c.breaker.base_cooldown = Duration::from_secs(5));
        assert_eq!(c.validate(), Err(ConfigError::CooldownOrder));
    }

    #[test]
    fn cooldown_backs_off_and_caps() {
        let c = Config::default();
        assert_eq!(c.cooldown(1), Duration::from_millis(100));
        assert_eq!(c.cooldown(2), Duration::from_millis(200));
        assert_eq!(c.cooldown(4), Duration::from_millis(800));
        assert_eq!(c.cooldown(10), Duration::from_secs(2));
        assert_eq!(c.cooldown(u32::MAX), Duration::from_secs(2));
    }
}
