//! The report table: one row per scenario and subject, over all seeds.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::oracle;
use crate::plan::Scenario;
use crate::run::{failures_by_cause, Cause, RunReport, Subject};

/// One row of the report: a scenario through one subject against one
/// backend era (or one change of era), summed over seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// The backend's era, or its eras in order (see [`Plan::era_label`](crate::Plan::era_label)).
    pub era: String,
    /// The pool.
    pub subject: Subject,
    /// Seeds run.
    pub runs: usize,
    /// Calls issued.
    pub calls: usize,
    /// Calls that succeeded.
    pub ok: usize,
    /// Calls that failed (given-up calls excluded).
    pub failures: usize,
    /// Calls issued after recovery that failed.
    pub failures_after_recovery: usize,
    /// Failures by cause.
    pub causes: BTreeMap<Cause, u64>,
    /// Median simulated latency of successful calls.
    pub p50: Option<Duration>,
    /// 99th percentile simulated latency of successful calls.
    pub p99: Option<Duration>,
    /// Runs in which an oracle did not hold.
    pub violated_runs: usize,
    /// The longest time, over the seeds, from the backend being reachable
    /// again to the first success of a call issued after that: `None` for a
    /// scenario without a fault it recovers from, `Some(None)` when some
    /// seed never recovered.
    pub recovery: Option<Option<Duration>>,
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

/// Sums `reports` into rows, in scenario, subject, then era order.
pub fn rows(reports: &[RunReport]) -> Vec<Row> {
    let mut groups: BTreeMap<(Scenario, Subject, String), Vec<&RunReport>> = BTreeMap::new();
    for report in reports {
        groups
            .entry((
                report.plan.scenario,
                report.subject,
                report.plan.era_label(),
            ))
            .or_default()
            .push(report);
    }
    groups
        .into_iter()
        .map(|((scenario, subject, era), group)| {
            let mut latencies: Vec<Duration> = group
                .iter()
                .flat_map(|r| r.calls.iter())
                .filter(|c| c.result.is_ok())
                .map(|c| c.latency())
                .collect();
            latencies.sort();
            let mut causes = BTreeMap::new();
            for report in &group {
                for (cause, n) in failures_by_cause(&report.calls) {
                    *causes.entry(cause).or_insert(0) += n;
                }
            }
            Row {
                scenario,
                era,
                subject,
                runs: group.len(),
                calls: group.iter().map(|r| r.calls.len()).sum(),
                ok: latencies.len(),
                failures: group
                    .iter()
                    .map(|r| r.calls.iter().filter(|c| c.failed()).count())
                    .sum(),
                failures_after_recovery: group
                    .iter()
                    .map(|r| oracle::failures_after_recovery(r).len())
                    .sum(),
                causes,
                p50: percentile(&latencies, 0.50),
                p99: percentile(&latencies, 0.99),
                violated_runs: group
                    .iter()
                    .filter(|r| !oracle::check(r).is_empty())
                    .count(),
                recovery: group
                    .iter()
                    .filter_map(|r| oracle::recovery_time(r))
                    .reduce(|a, b| match (a, b) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    }),
            }
        })
        .collect()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".to_owned(), |d| format!("{} ms", d.as_millis()))
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | pool | era | seeds | calls | failures | after recovery | causes | p50 | p99 | recovery | oracles |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let causes = if row.causes.is_empty() {
            "—".to_owned()
        } else {
            row.causes
                .iter()
                .map(|(cause, n)| format!("{cause} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let oracles = if row.violated_runs == 0 {
            "hold".to_owned()
        } else {
            format!("violated in {} runs", row.violated_runs)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.subject,
            row.era,
            row.runs,
            row.calls,
            row.failures,
            row.failures_after_recovery,
            causes,
            ms(row.p50),
            ms(row.p99),
            match row.recovery {
                None => "—".to_owned(),
                Some(None) => "never".to_owned(),
                Some(d) => ms(d),
            },
            oracles
        );
    }
    out
}
