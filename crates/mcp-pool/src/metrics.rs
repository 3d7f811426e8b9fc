//! Snapshots of the pool's counters and gauges.

use mcp_pool_core::{KeySnapshot, Pool, PoolKey, Stats};

use crate::lane::LaneCounts;
use crate::KeyHash;

/// The pool's counters and gauges at one moment, from
/// [`Pool::metrics`](crate::Pool::metrics). Counters only grow over the
/// pool's life; gauges are current.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// The core's monotonic counters.
    pub stats: Stats,
    /// Sessions and connects that count toward capacity.
    pub live: usize,
    /// Acquires waiting for an answer.
    pub waiting: usize,
    /// Every tracked key's gauges, in the core's key order.
    pub keys: Vec<KeyMetrics>,
}

/// One key's gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMetrics {
    /// The key's hash (never the key itself).
    pub key: KeyHash,
    /// Its sessions by state, its waiters and its breaker.
    pub gauges: KeySnapshot,
    /// What the connector says about the key ([`Connector::key_labels`](crate::Connector::key_labels)).
    pub labels: Vec<(&'static str, String)>,
}

impl KeyMetrics {
    /// The value of label `name`, if the connector gave one.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Metrics {
    /// The core's counters and gauges with what the lanes served on their
    /// own folded in: a take from a lane counts as an acquire granted at
    /// once, a caller that waited in a lane as an acquire that waited, and
    /// its end as a grant, a time-out or a cancel; a caller moved between
    /// the pool and a lane counts once. So
    /// `acquires = grants - grants_closed + rejects + cancelled + waiting`
    /// holds as it does for the core.
    ///
    /// Per key, sessions parked in its lane count as idle and the other
    /// lent ones as leased.
    pub(crate) fn of<K: PoolKey>(
        pool: &Pool<K>,
        lanes: LaneCounts,
        parked: impl Fn(&K) -> usize,
        labels: impl Fn(&K) -> Vec<(&'static str, String)>,
    ) -> Metrics {
        let mut stats = pool.stats().clone();
        // A caller the pool takes back from a lane that closed asks it
        // again: count it once.
        stats.acquires =
            (stats.acquires + lanes.takes + lanes.waits + lanes.full).saturating_sub(lanes.adopted);
        stats.hits += lanes.takes;
        stats.misses = (stats.misses + lanes.waits).saturating_sub(lanes.adopted);
        stats.grants += lanes.takes + lanes.handoffs;
        stats.rejected_timed_out += lanes.timeouts;
        stats.rejected_queue_full += lanes.full;
        stats.cancelled += lanes.cancels;
        stats.returned_unused += lanes.unused;
        Metrics {
            stats,
            live: pool.live(),
            waiting: pool.waiting() + lanes.waiting,
            keys: pool
                .keys()
                .filter_map(|key| {
                    let mut gauges = pool.key_snapshot(key)?;
                    let parked = parked(key).min(gauges.lent);
                    gauges.idle += parked;
                    gauges.leased += gauges.lent - parked;
                    Some(KeyMetrics {
                        key: KeyHash::of(key),
                        gauges,
                        labels: labels(key),
                    })
                })
                .collect(),
        }
    }

    /// Sessions held by callers, over all keys.
    pub fn leased(&self) -> usize {
        self.keys.iter().map(|k| k.gauges.leased).sum()
    }

    /// Sessions parked and grantable, over all keys.
    pub fn idle(&self) -> usize {
        self.keys.iter().map(|k| k.gauges.idle).sum()
    }

    /// Records this snapshot through the `metrics` crate's global recorder:
    /// counters `mcp_pool_<counter>_total` (absolute values), gauges
    /// `mcp_pool_live` and `mcp_pool_waiting`, and per key
    /// `mcp_pool_key_sessions{state=idle|leased|validating|poisoned|connecting}`,
    /// `mcp_pool_key_waiting` and `mcp_pool_key_breaker_open` (0, 1 half-open
    /// as 0.5). Every series carries `pool`; per-key ones also `key`, the
    /// key's hash, and the key's [labels](KeyMetrics::labels).
    #[cfg(feature = "metrics")]
    pub fn export(&self, pool: &str) {
        use metrics::{counter, gauge};
        let s = &self.stats;
        let counters = [
            ("acquires", s.acquires),
            ("hits", s.hits),
            ("misses", s.misses),
            ("grants", s.grants),
            ("rejected_timed_out", s.rejected_timed_out),
            ("rejected_circuit_open", s.rejected_circuit_open),
            ("rejected_connect_failed", s.rejected_connect_failed),
            ("rejected_shutting_down", s.rejected_shutting_down),
            ("rejected_too_many_keys", s.rejected_too_many_keys),
            ("rejected_queue_full", s.rejected_queue_full),
            ("grants_closed", s.grants_closed),
            ("returned_unused", s.returned_unused),
            ("cancelled", s.cancelled),
            ("connects", s.connects),
            ("connected", s.connected),
            ("connect_failures", s.connect_failures),
            ("closes", s.closes),
            ("checks", s.checks),
            ("checks_passed", s.checks_passed),
            ("checks_failed", s.checks_failed),
            ("breaker_trips", s.breaker_trips),
        ];
        for (name, value) in counters {
            counter!(format!("mcp_pool_{name}_total"), "pool" => pool.to_owned()).absolute(value);
        }
        for reason in mcp_pool_core::EvictReason::ALL {
            counter!("mcp_pool_evictions_total", "pool" => pool.to_owned(), "reason" => reason.as_str())
                .absolute(s.evictions(reason));
        }
        gauge!("mcp_pool_live", "pool" => pool.to_owned()).set(self.live as f64);
        gauge!("mcp_pool_waiting", "pool" => pool.to_owned()).set(self.waiting as f64);
        for k in &self.keys {
            let mut labels = vec![
                metrics::Label::new("pool", pool.to_owned()),
                metrics::Label::new("key", k.key.to_string()),
            ];
            labels.extend(
                k.labels
                    .iter()
                    .map(|(name, value)| metrics::Label::new(*name, value.clone())),
            );
            let g = &k.gauges;
            let states = [
                ("idle", g.idle),
                ("leased", g.leased),
                ("validating", g.validating),
                ("poisoned", g.poisoned),
                ("connecting", g.connecting),
            ];
            for (state, n) in states {
                let mut with_state = labels.clone();
                with_state.push(metrics::Label::new("state", state));
                gauge!("mcp_pool_key_sessions", with_state).set(n as f64);
            }
            gauge!("mcp_pool_key_waiting", labels.clone()).set(g.waiting as f64);
            let open = match g.breaker {
                mcp_pool_core::BreakerState::Closed => 0.0,
                mcp_pool_core::BreakerState::HalfOpen => 0.5,
                mcp_pool_core::BreakerState::Open => 1.0,
            };
            gauge!("mcp_pool_key_breaker_open", labels).set(open);
        }
    }
}
