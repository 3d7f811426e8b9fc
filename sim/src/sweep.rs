//! Many seeds of many scenarios, with the oracles checked on each run.

use std::ops::Range;

use crate::oracle::{self, Violation};
use crate::plan::{Plan, Scenario};
use crate::run::{self, Cause, RunReport, Subject};

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
    /// What did not hold.
    pub violations: Vec<Violation>,
    /// The command that replays the run exactly and prints its event log.
    pub replay: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} seed {} ({}):",
            self.scenario, self.seed, self.subject
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
/// refused calls, the identities were served by several sessions. `Err`
/// says what was not met.
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
            need(sessions.len() > 1, "one session served every call")
        }
    }
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
    fn no_run_exercises_any_fault() {
        for scenario in Scenario::ALL {
            assert!(exercised(scenario, &[]).is_err(), "{scenario}");
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
