//! Many seeds of many scenarios, with the oracles checked on each run.

use std::ops::Range;

use crate::oracle::{self, Violation};
use crate::plan::{Plan, Scenario};
use crate::run::{self, RunReport, Subject};

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
                report.served = Vec::new();
                self.reports.push(report);
            }
        }
    }
}
