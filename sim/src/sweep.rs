//! Many seeds of many scenarios, with the oracles checked on each run.

use std::ops::Range;
use std::time::Duration;

use crate::oracle::{self, Violation};
use crate::plan::{Era, Plan, Scenario, ERAS, SWAPS};
use crate::run::{self, Cause, RunReport, SessionEra, Subject};

/// The environment variable that sets how many seeds a sweep runs per
/// scenario.
pub const SEEDS_VAR: &str = "MCP_POOL_SIM_SEEDS";

/// Seeds per scenario: `MCP_POOL_SIM_SEEDS` if set to a number, else
/// `default`.
pub fn seeds_from_env(default: u64) -> u64 {
    std::env::var(SEEDS_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A run in which an oracle did not hold.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// The pool.
    pub subject: Subject,
    /// The backend's era, or its eras in order (see [`Plan::era_label`]).
    pub era: String,
    /// What did not hold.
    pub violations: Vec<Violation>,
    /// The command that replays the run exactly and prints its event log.
    pub replay: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} seed {} ({}, {}):",
            self.scenario, self.seed, self.subject, self.era
        )?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        write!(f, "  replay: {}", self.replay)
    }
}

/// Whether the runs of `scenario` in `reports` (mcp-pool's, over all seeds)
/// met the fault the scenario is about, so that its oracles were not held
/// vacuously: the crash failed calls in flight, the forever-crash and the
/// unreachable backend tripped the breaker, the partition and the flaky
/// link failed calls, the held link timed calls out, the slow checks timed
/// out, callers gave up and their sessions were checked, the shutdown
/// refused calls, the identities were served by several sessions and
/// private cached results by several identities, the swapped backend
/// served calls issued after the swap. `Err` says what was not met.
pub fn exercised(scenario: Scenario, reports: &[RunReport]) -> Result<(), String> {
    let runs: Vec<&RunReport> = reports
        .iter()
        .filter(|r| r.plan.scenario == scenario && r.subject == Subject::Pool)
        .collect();
    let calls = || runs.iter().flat_map(|r| r.calls.iter());
    let failed_with = |cause: Cause| calls().filter(|c| c.result == Err(cause)).count();
    let stat = |f: fn(&mcp_pool::Stats) -> u64| {
        runs.iter()
            .filter_map(|r| r.stats.as_ref())
            .map(f)
            .sum::<u64>()
    };
    let need = |met: bool, what: &str| if met { Ok(()) } else { Err(what.to_owned()) };
    match scenario {
        Scenario::Steady => need(calls().count() > 0, "no call was made"),
        Scenario::CrashBounce | Scenario::Partition | Scenario::Flaky => {
            need(calls().any(|c| c.failed()), "the fault failed no call")
        }
        Scenario::CrashForever | Scenario::Breaker => {
            need(stat(|s| s.breaker_trips) > 0, "the breaker never tripped")
        }
        Scenario::Hold => need(
            failed_with(Cause::TimedOut) > 0,
            "no call timed out on the held link",
        ),
        Scenario::SlowChecks => need(stat(|s| s.checks_failed) > 0, "no check failed"),
        Scenario::Cancel => {
            need(failed_with(Cause::GaveUp) > 0, "no caller gave up")?;
            need(
                stat(|s| s.checks) > 0,
                "no session was checked after a give-up",
            )
        }
        Scenario::Shutdown => need(
            failed_with(Cause::ShuttingDown) > 0,
            "no call was refused by the shutdown",
        ),
        Scenario::Identities => {
            let sessions: std::collections::BTreeSet<_> = runs
                .iter()
                .flat_map(|r| r.served.iter().filter_map(|(s, _)| s.as_ref()))
                .collect();
            need(sessions.len() > 1, "one session served every call")?;
            need(
                runs.iter().any(|r| private_identities(r) > 1),
                "no run served private cached results to several identities",
            )
        }
        Scenario::EraSwap => {
            for run in &runs {
                let after = run.plan.recovered_at.unwrap_or_default();
                need(
                    run.calls
                        .iter()
                        .any(|c| c.start >= after && c.era().is_some()),
                    &format!(
                        "seed {} ({}): no call issued after the swap succeeded",
                        run.plan.seed,
                        run.plan.era_label()
                    ),
                )?;
            }
            need(
                runs.iter().any(|r| private_identities(r) > 1),
                "no run served private cached results to several identities",
            )
        }
    }
}

/// How many identities `report`'s connector served private results from
/// its cache to (the oracle of C1 is vacuous in a run where this is below
/// 2).
pub fn private_identities(report: &RunReport) -> usize {
    report
        .cache_events
        .iter()
        .filter(|e| e.scope == rmcp::model::CacheScope::Private)
        .map(|e| e.served_to)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// The era a connector should detect for a backend serving `era` (a dual
/// backend is spoken to in 2026-07-28).
pub fn session_era(era: Era) -> SessionEra {
    match era {
        Era::Legacy => SessionEra::LegacyStateful,
        Era::LegacyStateless => SessionEra::LegacyStateless,
        Era::Modern | Era::Dual => SessionEra::Modern,
    }
}

/// Whether mcp-pool's runs of `scenario` in `reports` met every era the
/// scenario claims, as the connector saw them (the era of the session each
/// successful call ran on), so that no era passed vacuously:
///
/// - a scenario with a fixed backend claims every era of [`ERAS`]: some
///   run against each served successful calls in that era, and no call
///   ever ran in an era other than its backend's;
/// - [`Scenario::EraSwap`] claims every change of [`SWAPS`]: some run of
///   each served calls in the first era before the swap, and calls issued
///   after it in the new era.
///
/// `Err` says what was not met.
pub fn eras_met(scenario: Scenario, reports: &[RunReport]) -> Result<(), String> {
    let runs: Vec<&RunReport> = reports
        .iter()
        .filter(|r| r.plan.scenario == scenario && r.subject == Subject::Pool)
        .collect();
    let served_in = |run: &RunReport, era: Era, from: Duration, to: Duration| {
        run.calls
            .iter()
            .any(|c| c.start >= from && c.start < to && c.era() == Some(session_era(era)))
    };
    if scenario == Scenario::EraSwap {
        for (from, to) in SWAPS {
            let met = runs.iter().any(|run| {
                let at = run.plan.recovered_at.unwrap_or_default();
                run.plan.eras() == [from, to]
                    && served_in(run, from, Duration::ZERO, at)
                    && served_in(run, to, at, Duration::MAX)
            });
            if !met {
                return Err(format!(
                    "no run served calls in {from} before the swap and in {to} after it"
                ));
            }
        }
        return Ok(());
    }
    for run in &runs {
        let expected = session_era(run.plan.era);
        if let Some(call) = run
            .calls
            .iter()
            .find(|c| c.era().is_some_and(|e| e != expected))
        {
            return Err(format!(
                "seed {}: a call to a {} backend ran on a {} session (caller {} call {})",
                run.plan.seed,
                run.plan.era,
                call.era().map_or("?", SessionEra::name),
                call.caller,
                call.n
            ));
        }
    }
    for era in ERAS {
        let met = runs
            .iter()
            .any(|run| run.plan.era == era && served_in(run, era, Duration::ZERO, Duration::MAX));
        if !met {
            return Err(format!("no run served a call in the {era} era"));
        }
    }
    Ok(())
}

/// The result of a sweep: every run's report, and the runs that failed.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Every run, in the order run.
    pub reports: Vec<RunReport>,
    /// The runs in which an oracle did not hold.
    pub failures: Vec<Failure>,
}

impl Sweep {
    /// Runs `seeds` of `scenario` through mcp-pool, and, for the reported
    /// scenario ([`Scenario::CrashBounce`]) when `baseline` is set, the same
    /// seeds through the naive pool. `progress` is called after each run.
    pub fn scenario(
        &mut self,
        scenario: Scenario,
        seeds: Range<u64>,
        baseline: bool,
        progress: &mut dyn FnMut(&RunReport),
    ) {
        let mut subjects = vec![Subject::Pool];
        if baseline && scenario == Scenario::CrashBounce {
            subjects.push(Subject::Naive);
        }
        for seed in seeds {
            let plan = Plan::new(scenario, seed);
            for &subject in &subjects {
                let mut report = run::run(&plan, subject);
                let violations = oracle::check(&report);
                if !violations.is_empty() {
                    self.failures.push(Failure {
                        scenario,
                        seed,
                        subject,
                        era: plan.era_label(),
                        violations,
                        replay: report.replay_command(),
                    });
                }
                progress(&report);
                // Keep the calls for the table, not the event log.
                report.log = Vec::new();
                self.reports.push(report);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_run_exercises_any_fault_or_meets_any_era() {
        for scenario in Scenario::ALL {
            assert!(exercised(scenario, &[]).is_err(), "{scenario}");
            assert!(eras_met(scenario, &[]).is_err(), "{scenario}");
        }
    }

    #[test]
    fn the_seed_count_comes_from_the_environment_or_the_default() {
        // Only the default is checked here: tests share the environment.
        if std::env::var(SEEDS_VAR).is_err() {
            assert_eq!(seeds_from_env(7), 7);
        }
    }
}
