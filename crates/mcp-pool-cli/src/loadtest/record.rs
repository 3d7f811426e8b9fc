//! What one call did, and the summary of a mode's calls.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::era::EraSeen;

pub use crate::calls::Cause;

/// A failed call: its cause and the error's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Why it failed.
    pub cause: Cause,
    /// The error as its source described it.
    pub message: String,
}

impl Failure {
    /// A failure of `cause` described by `error`.
    pub fn new(cause: Cause, error: impl fmt::Display) -> Failure {
        Failure {
            cause,
            message: error.to_string(),
        }
    }
}

/// One finished call: when it started (from the mode's start), how long it
/// took, and how it ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// Start of the call, from the start of the mode.
    pub start: Duration,
    /// Time to the answer or the error.
    pub latency: Duration,
    /// `Ok`, or why it failed.
    pub result: Result<(), Cause>,
}

impl CallRecord {
    /// When the call finished, from the start of the mode.
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }
}

/// The outage a mode went through, from the mode's start.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct Outage {
    /// When the backend went down, in seconds from the mode's start.
    pub down_at_s: f64,
    /// When it was back, in seconds from the mode's start.
    pub back_at_s: f64,
}

impl Outage {
    /// How long the backend was down, in seconds.
    pub fn length_s(&self) -> f64 {
        (self.back_at_s - self.down_at_s).max(0.0)
    }
}

/// One second of a mode's run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Second {
    /// Seconds from the mode's start.
    pub t: u64,
    /// Calls that finished in this second.
    pub calls: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Of which failed, by cause.
    pub errors: BTreeMap<&'static str, u64>,
}

impl Second {
    /// Calls of this second that failed.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Everything a mode's run produced, before it is summarised.
#[derive(Clone, Debug, Default)]
pub struct ModeRun {
    /// `pool`, `naive` or `none`.
    pub mode: String,
    /// Every finished call, in any order.
    pub records: Vec<CallRecord>,
    /// How long users kept starting calls.
    pub duration: Duration,
    /// The outage, if one was injected or declared.
    pub outage: Option<Outage>,
    /// The pool's own counters, for the modes that have them.
    pub counters: BTreeMap<String, u64>,
    /// The first error message seen for each cause.
    pub error_samples: BTreeMap<&'static str, String>,
    /// The last error message seen for each cause.
    pub last_error_samples: BTreeMap<&'static str, String>,
    /// Wall-clock start of the mode, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// The eras of the sessions the calls ran on, the most calls first.
    pub eras: Vec<EraSeen>,
}

/// Everything a mode's run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModeReport {
    /// `pool`, `naive` or `none`.
    pub mode: String,
    /// The protocol era of the sessions the mode's calls ran on, as the
    /// client detected it (`modern`, `legacy-stateful` or
    /// `legacy-stateless`): the era of the most calls when the sessions were
    /// of more than one (see `eras`); `None` when no call got a session.
    pub era: Option<String>,
    /// The protocol version of those sessions (`2026-07-28`, or the version
    /// `initialize` agreed), with the same rule as `era`.
    pub protocol_version: Option<String>,
    /// Every era and protocol version the mode's sessions had, with the
    /// calls that ran on each, the most calls first.
    pub eras: Vec<EraSeen>,
    /// Wall-clock start of the mode, in milliseconds since the Unix epoch
    /// (to line the timeline up with faults injected from outside).
    pub started_at_unix_ms: u64,
    /// How long users kept starting calls, in seconds (calls in flight at
    /// the end were awaited and are counted).
    pub duration_s: f64,
    /// Calls finished.
    pub calls: u64,
    /// Calls that succeeded.
    pub ok: u64,
    /// Failed calls, by cause.
    pub errors: BTreeMap<&'static str, u64>,
    /// The first error message seen for each cause.
    pub error_samples: BTreeMap<&'static str, String>,
    /// The last error message seen for each cause: after an outage, what
    /// the failures still going on were (a naive pool's dead sessions).
    pub last_error_samples: BTreeMap<&'static str, String>,
    /// Failed calls that started once the backend was back, other than the
    /// server's own error answers (cause `application`). Without an outage
    /// the backend was up for the whole run, so every such failed call
    /// counts.
    pub errors_after_recovery: u64,
    /// Successful calls per second over the whole run.
    pub throughput: f64,
    /// Successful calls that finished outside the outage window (before the
    /// backend went down or after it was back), per second outside it.
    pub throughput_outside_outage: f64,
    /// The most any mode can do, calls per second, when it is known (see
    /// [`CeilingBasis`](super::ceiling::CeilingBasis) for how it was
    /// derived).
    pub ceiling: Option<f64>,
    /// Latency percentiles of successful calls, in milliseconds; `None`
    /// (JSON `null`) when no call succeeded.
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// The slowest successful call, ms; `None` when no call succeeded.
    pub max_ms: Option<f64>,
    /// The slowest failed call, ms (a call that waited for its timeout
    /// shows here); `None` when no call failed.
    pub max_failed_ms: Option<f64>,
    /// The outage, if one was injected or declared.
    pub outage: Option<Outage>,
    /// The pool's own counters, for the modes that have them.
    pub counters: BTreeMap<String, u64>,
    /// Calls per second, by the second they finished in, from the mode's
    /// start.
    pub timeline: Vec<Second>,
}

impl ModeReport {
    /// Summarises a mode's run. Its ceiling is unknown until
    /// [`ModeReport::with_ceiling`] sets it (a measured ceiling needs every
    /// mode's latencies).
    pub fn new(run: ModeRun) -> ModeReport {
        let ModeRun {
            mode,
            records,
            duration,
            outage,
            counters,
            error_samples,
            last_error_samples,
            started_at_unix_ms,
            eras,
        } = run;
        let secs = duration.as_secs_f64().max(f64::EPSILON);
        let last_end = records
            .iter()
            .map(CallRecord::end)
            .max()
            .unwrap_or_default();
        let seconds = duration.as_secs().max(last_end.as_secs() + 1).max(1);
        let mut timeline: Vec<Second> = (0..seconds)
            .map(|t| Second {
                t,
                ..Second::default()
            })
            .collect();
        let mut errors = BTreeMap::new();
        let mut ok_latencies = Vec::new();
        let mut max_failed: Option<Duration> = None;
        let mut errors_after_recovery = 0;
        let mut ok_outside = 0u64;
        for r in &records {
            let end = r.end();
            let slot = &mut timeline[end.as_secs() as usize];
            slot.calls += 1;
            match r.result {
                Ok(()) => {
                    slot.ok += 1;
                    ok_latencies.push(r.latency);
                    let ended = end.as_secs_f64();
                    if outage.is_none_or(|o| ended < o.down_at_s || ended >= o.back_at_s) {
                        ok_outside += 1;
                    }
                }
                Err(cause) => {
                    *slot.errors.entry(cause.as_str()).or_insert(0) += 1;
                    *errors.entry(cause.as_str()).or_insert(0) += 1;
                    max_failed = max_failed.max(Some(r.latency));
                    let backend_up = outage.is_none_or(|o| r.start.as_secs_f64() >= o.back_at_s);
                    if backend_up && cause.is_session_failure() {
                        errors_after_recovery += 1;
                    }
                }
            }
        }
        ok_latencies.sort_unstable();
        let pct = |p: f64| -> Option<f64> {
            if ok_latencies.is_empty() {
                return None;
            }
            let rank = (ok_latencies.len() as f64 * p).ceil() as usize;
            Some(ms(ok_latencies[rank.clamp(1, ok_latencies.len()) - 1]))
        };
        let outside_secs = match outage {
            Some(o) => (secs - o.length_s()).max(f64::EPSILON),
            None => secs,
        };
        let ok = ok_latencies.len() as u64;
        ModeReport {
            mode,
            era: eras.first().map(|e| e.era.clone()),
            protocol_version: eras.first().map(|e| e.protocol_version.clone()),
            eras,
            started_at_unix_ms,
            duration_s: secs,
            calls: records.len() as u64,
            ok,
            errors,
            error_samples,
            last_error_samples,
            errors_after_recovery,
            throughput: ok as f64 / secs,
            throughput_outside_outage: ok_outside as f64 / outside_secs,
            ceiling: None,
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            max_ms: ok_latencies.last().copied().map(ms),
            max_failed_ms: max_failed.map(ms),
            outage,
            counters,
            timeline,
        }
    }

    /// The same report with `ceiling` as its ceiling.
    pub fn with_ceiling(self, ceiling: Option<f64>) -> ModeReport {
        ModeReport { ceiling, ..self }
    }

    /// All failed calls.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Outside-the-outage throughput as a fraction of the ceiling, when the
    /// ceiling is known.
    pub fn share_of_ceiling(&self) -> Option<f64> {
        self.ceiling
            .filter(|c| *c > 0.0)
            .map(|c| self.throughput_outside_outage / c)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(start_ms: u64, latency_ms: u64, result: Result<(), Cause>) -> CallRecord {
        CallRecord {
            start: Duration::from_millis(start_ms),
            latency: Duration::from_millis(latency_ms),
            result,
        }
    }

    #[test]
    fn summarises_errors_after_recovery_and_throughput_outside_the_outage() {
        let outage = Outage {
            down_at_s: 2.0,
            back_at_s: 3.0,
        };
        let records = vec![
            call(0, 100, Ok(())),
            call(1000, 100, Ok(())),
            call(1950, 100, Err(Cause::Transport)), // in flight at the outage
            call(2500, 10, Err(Cause::Connect)),    // during the outage
            call(2900, 200, Ok(())),                // waited, finished after
            call(3100, 100, Err(Cause::Transport)), // after recovery: counted
            call(3200, 300, Ok(())),
            call(1900, 200, Ok(())), // finished inside the outage: not outside
        ];
        let r = ModeReport::new(ModeRun {
            mode: "pool".into(),
            records,
            duration: Duration::from_secs(4),
            outage: Some(outage),
            ..ModeRun::default()
        })
        .with_ceiling(Some(10.0));
        assert_eq!(r.calls, 8);
        assert_eq!(r.ok, 5);
        assert_eq!(r.failed(), 3);
        assert_eq!(r.errors_after_recovery, 1);
        assert_eq!(r.errors.get("transport"), Some(&2));
        assert!((r.throughput - 1.25).abs() < 1e-9);
        assert!(
            (r.throughput_outside_outage - 4.0 / 3.0).abs() < 1e-9,
            "4 ok finished in the 3 s outside"
        );
        assert!((r.share_of_ceiling().unwrap() - 4.0 / 30.0).abs() < 1e-9);
        assert_eq!(r.p50_ms, Some(200.0));
        assert_eq!(r.p99_ms, Some(300.0));
        assert_eq!(r.max_ms, Some(300.0));
        assert_eq!(r.max_failed_ms, Some(100.0));
        assert_eq!(r.timeline.len(), 4);
        assert_eq!(r.timeline[2].errors.get("connect"), Some(&1));
        assert_eq!(r.timeline[2].failed(), 2);
    }

    #[test]
    fn the_timeline_covers_calls_finishing_after_the_run() {
        let r = ModeReport::new(ModeRun {
            mode: "none".into(),
            records: vec![call(1900, 1500, Ok(()))],
            duration: Duration::from_secs(2),
            ..ModeRun::default()
        });
        assert_eq!(r.timeline.len(), 4);
        assert_eq!(r.timeline[3].ok, 1);
        assert_eq!(r.errors_after_recovery, 0);
        assert_eq!(r.share_of_ceiling(), None);
        assert!((r.throughput_outside_outage - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_mode_without_a_success_has_no_latency() {
        let r = ModeReport::new(ModeRun {
            mode: "pool".into(),
            records: vec![
                call(0, 30, Err(Cause::Connect)),
                call(100, 10_000, Err(Cause::Timeout)),
            ],
            duration: Duration::from_secs(11),
            ..ModeRun::default()
        });
        assert_eq!(
            (r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms),
            (None, None, None, None)
        );
        assert_eq!(r.max_failed_ms, Some(10_000.0));
        let json = serde_json::to_value(&r).unwrap();
        assert!(
            json["p50_ms"].is_null() && json["max_ms"].is_null(),
            "{json}"
        );
        assert_eq!(json["max_failed_ms"], 10_000.0);
        let clean = ModeReport::new(ModeRun {
            records: vec![call(0, 30, Ok(()))],
            duration: Duration::from_secs(1),
            ..ModeRun::default()
        });
        assert_eq!(clean.max_failed_ms, None);
    }

    #[test]
    fn without_an_outage_every_failure_but_the_tools_own_counts_after_recovery() {
        let r = ModeReport::new(ModeRun {
            mode: "pool".into(),
            records: vec![
                call(0, 10, Err(Cause::SessionLost)),
                call(100, 10, Err(Cause::Application)),
                call(200, 10, Err(Cause::QueueFull)),
                call(300, 10, Ok(())),
            ],
            duration: Duration::from_secs(1),
            ..ModeRun::default()
        });
        assert_eq!(r.failed(), 3);
        assert_eq!(
            r.errors_after_recovery, 2,
            "the tool's own error is not the pool's"
        );
        assert_eq!(r.errors.get("session_lost"), Some(&1));
        assert_eq!(r.errors.get("queue_full"), Some(&1));
    }

    #[test]
    fn every_cause_has_its_own_name() {
        let names: std::collections::BTreeSet<&str> =
            Cause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Cause::ALL.len());
        for cause in Cause::ALL {
            let json = serde_json::to_value(cause).unwrap();
            assert_eq!(json, cause.as_str());
        }
    }
}
