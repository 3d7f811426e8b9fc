//! The oracles: what must hold in every run, whatever the faults.
//!
//! | id | oracle |
//! |---|---|
//! | O1 | the run completes: no panic (the driver's checking mode audits the core's invariants I1–I16 after every input and panics on a violation), no failed host, no run past its time limit |
//! | O2 | no call issued once the backend is reachable again fails |
//! | O3 | no call takes longer than two full runs (acquire and request each, with grace; see `Settings::call_bound`) |
//! | O4 | every session opened is closed by the end |
//! | O5 | no upstream session serves two identities (or two affinity ids) |
//! | O6 | after shutdown begins, every new call fails with `ShuttingDown`, and the shutdown ends within its timeout |
//! | O7 | while the backend is unreachable, the breaker trips and bounds the connects |
//! | O9 | no private cached result is ever served to an identity other than the one it was fetched for: invariant [`C1`] of `mcp_pool_rmcp::invariants`, from the connector's cache audit |
//!
//! O1 holds for both subjects; the others are what mcp-pool promises and
//! are checked on mcp-pool's runs. The naive baseline is instead expected
//! to show the cascade ([`shows_cascade`]) where it has one: against a
//! legacy stateful backend (O8). Against a backend without sessions
//! (modern, legacy stateless) a restart forgets nothing the naive pool's
//! sessions rely on, and the table reports what it does there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use mcp_pool_rmcp::invariants::C1;
use mcp_pool_rmcp::CacheEvent;

use crate::plan::{Era, Scenario};
use crate::run::{Call, Cause, RunReport, Subject};

/// One oracle that did not hold in one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The oracle's id (`O1`..`O7`, `O9`, or `O8` for a baseline that did
    /// not show the cascade).
    pub oracle: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.oracle, self.detail)
    }
}

/// Whether `call` failed although it was issued after the backend was
/// reachable for good. In the `Shutdown` scenario a call still running at
/// the shutdown may fail (its session is aborted after the grace period),
/// and later calls are judged by O6 instead.
pub fn failed_after_recovery(report: &RunReport, call: &Call) -> bool {
    if !call.failed() || !report.plan.recovered_by(call.start) {
        return false;
    }
    match report.plan.shutdown_at {
        Some(at) => call.end < at,
        None => true,
    }
}

/// The calls that failed after recovery (see [`failed_after_recovery`]).
pub fn failures_after_recovery(report: &RunReport) -> Vec<&Call> {
    report
        .calls
        .iter()
        .filter(|call| failed_after_recovery(report, call))
        .collect()
}

/// How long after the backend became reachable again (after a fault) the
/// first call issued from then on succeeded: `None` when the plan has no
/// fault it recovers from, `Some(None)` when no such call ever succeeded.
pub fn recovery_time(report: &RunReport) -> Option<Option<Duration>> {
    let at = report.plan.recovered_at.filter(|at| !at.is_zero())?;
    Some(
        report
            .calls
            .iter()
            .filter(|c| c.start >= at && c.result.is_ok())
            .map(|c| c.end - at)
            .min(),
    )
}

/// Whether the naive baseline shows the cascade: calls keep failing after
/// the backend is back.
pub fn shows_cascade(report: &RunReport) -> bool {
    !failures_after_recovery(report).is_empty()
}

fn describe(call: &Call) -> String {
    format!(
        "caller {} call {} issued at {:?} ended at {:?}: {:?}",
        call.caller, call.n, call.start, call.end, call.result
    )
}

/// Checks every oracle that applies to `report`.
pub fn check(report: &RunReport) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut violate = |oracle, detail: String| found.push(Violation { oracle, detail });
    for error in &report.errors {
        violate("O1", error.clone());
    }
    if report.subject == Subject::Naive {
        if report.plan.scenario == Scenario::CrashBounce
            && report.plan.era == Era::Legacy
            && !shows_cascade(report)
        {
            violate(
                "O8",
                "the naive baseline recovered after the restart of a legacy stateful backend: the simulation does not reproduce the known bug".into(),
            );
        }
        return found;
    }
    let plan = &report.plan;

    let late = failures_after_recovery(report);
    if let Some(first) = late.first() {
        violate(
            "O2",
            format!(
                "{} calls failed after the backend was reachable again (at {:?}); first: {}",
                late.len(),
                plan.recovered_at.unwrap_or_default(),
                describe(first)
            ),
        );
    }

    let bound = plan.settings.call_bound();
    if let Some(slow) = report.calls.iter().find(|c| c.latency() > bound) {
        violate(
            "O3",
            format!(
                "a call took {:?} (bound {bound:?}): {}",
                slow.latency(),
                describe(slow)
            ),
        );
    }

    if report.opened != report.closed {
        violate(
            "O4",
            format!(
                "{} sessions opened, {} closed by the end",
                report.opened, report.closed
            ),
        );
    }

    let mut tags: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (session, message) in &report.served {
        if let Some(session) = session {
            let tag = message.split('/').next().unwrap_or("");
            tags.entry(session.as_str()).or_default().insert(tag);
        }
    }
    if let Some((_, shared)) = tags.iter().find(|(_, t)| t.len() > 1) {
        violate(
            "O5",
            format!(
                "one upstream session served {} callers' identities: {shared:?}",
                shared.len()
            ),
        );
    }

    if let Some(at) = plan.shutdown_at {
        match report.shutdown {
            None => violate("O6", "the shutdown never ran".into()),
            Some((begun, waited)) => {
                let limit = plan.settings.shutdown_timeout + Duration::from_millis(100);
                if waited > limit {
                    violate(
                        "O6",
                        format!("the shutdown waited {waited:?} (limit {limit:?})"),
                    );
                }
                let after = report
                    .calls
                    .iter()
                    .find(|c| c.start > begun && c.result != Err(Cause::ShuttingDown));
                if let Some(call) = after {
                    violate(
                        "O6",
                        format!("a call issued after the shutdown began at {at:?} did not fail with shutting-down: {}", describe(call)),
                    );
                }
            }
        }
    }

    let crossings: Vec<&CacheEvent> = report
        .cache_events
        .iter()
        .filter(|e| e.crosses_identities())
        .collect();
    if let Some(first) = crossings.first() {
        violate(
            "O9",
            format!(
                "{}: {} cached results crossed identities; first: a {:?} {:?} result of {} fetched for identity {} served to identity {}",
                C1,
                crossings.len(),
                first.scope,
                first.result,
                first.endpoint,
                first.fetched_for.short(),
                first.served_to.short()
            ),
        );
    }

    if plan.scenario == Scenario::Breaker {
        let trips = report.stats.as_ref().map_or(0, |s| s.breaker_trips);
        if trips == 0 {
            violate(
                "O7",
                "the breaker never tripped while the backend was unreachable".into(),
            );
        }
        let outage = plan.recovered_at.unwrap_or(plan.duration);
        let limit = plan.callers as u64 + 2 * outage.as_secs() + 2;
        let connects = report.connects_before_recovery.unwrap_or(0);
        if connects > limit {
            violate(
                "O7",
                format!("{connects} connects during a {outage:?} outage (limit {limit})"),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use mcp_pool_rmcp::{CachedResult, Identity};
    use rmcp::model::CacheScope;

    /// A clean mcp-pool run of the era-swap scenario, with no calls.
    fn clean() -> RunReport {
        RunReport {
            plan: Plan::new(Scenario::EraSwap, 0),
            subject: Subject::Pool,
            calls: Vec::new(),
            log: Vec::new(),
            errors: Vec::new(),
            opened: 0,
            closed: 0,
            connects_before_recovery: None,
            stats: None,
            shutdown: None,
            served: Vec::new(),
            cache_events: Vec::new(),
        }
    }

    fn event(scope: CacheScope, fetched_for: &str, served_to: &str) -> CacheEvent {
        CacheEvent {
            endpoint: "http://backend:80/mcp".into(),
            result: CachedResult::ToolsList,
            scope,
            fetched_for: Identity::supplied(fetched_for),
            served_to: Identity::supplied(served_to),
        }
    }

    #[test]
    fn o9_fails_on_a_private_result_served_to_another_identity() {
        let mut report = clean();
        report.cache_events = vec![
            event(CacheScope::Private, "tenant-0", "tenant-0"),
            event(CacheScope::Public, "tenant-0", "tenant-1"),
        ];
        assert_eq!(check(&report), Vec::new());
        report
            .cache_events
            .push(event(CacheScope::Private, "tenant-1", "tenant-2"));
        let violations = check(&report);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].oracle, "O9");
        assert!(violations[0].detail.starts_with(C1), "{}", violations[0]);
        assert!(
            violations[0]
                .detail
                .contains(&Identity::supplied("tenant-2").short()),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn o5_fails_on_a_session_serving_two_identities() {
        let mut report = clean();
        report.served = vec![
            (Some("s1".into()), "tenant-0/0/0".into()),
            (None, "tenant-1/1/0".into()),
            (Some("s2".into()), "tenant-1/1/1".into()),
        ];
        assert_eq!(check(&report), Vec::new());
        report
            .served
            .push((Some("s1".into()), "tenant-2/2/0".into()));
        let violations = check(&report);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].oracle, "O5");
    }
}
