//! The seed sweep: every scenario over `MCP_POOL_SIM_SEEDS` seeds (a
//! CI-sized default), every oracle checked on every run, every scenario
//! meeting its fault and every backend era it claims (seeds take the eras
//! in turn), and the naive baseline's cascade shown on the reported
//! scenario.

use mcp_pool_sim::report::{rows, table};
use mcp_pool_sim::sweep::{eras_met, exercised, seeds_from_env};
use mcp_pool_sim::{Scenario, Sweep};

/// Seeds per scenario when `MCP_POOL_SIM_SEEDS` is not set.
const CI_SEEDS: u64 = 10;

fn sweep(scenario: Scenario) {
    let seeds = seeds_from_env(CI_SEEDS);
    let mut sweep = Sweep::default();
    sweep.scenario(scenario, 0..seeds, true, &mut |_| {});
    println!("{}", table(&rows(&sweep.reports)));
    if let Err(what) = exercised(scenario, &sweep.reports) {
        panic!("{scenario} did not exercise its fault over {seeds} seeds: {what}");
    }
    if let Err(what) = eras_met(scenario, &sweep.reports) {
        panic!("{scenario} did not meet every era it claims over {seeds} seeds: {what}");
    }
    let failures: Vec<String> = sweep.failures.iter().map(|f| f.to_string()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        sweep.reports.len(),
        failures.join("\n")
    );
}

#[test]
fn steady() {
    sweep(Scenario::Steady);
}

#[test]
fn crash_bounce_with_the_naive_baseline() {
    sweep(Scenario::CrashBounce);
}

#[test]
fn crash_forever() {
    sweep(Scenario::CrashForever);
}

#[test]
fn partition() {
    sweep(Scenario::Partition);
}

#[test]
fn hold() {
    sweep(Scenario::Hold);
}

#[test]
fn flaky() {
    sweep(Scenario::Flaky);
}

#[test]
fn slow_checks() {
    sweep(Scenario::SlowChecks);
}

#[test]
fn breaker() {
    sweep(Scenario::Breaker);
}

#[test]
fn cancel() {
    sweep(Scenario::Cancel);
}

#[test]
fn shutdown() {
    sweep(Scenario::Shutdown);
}

#[test]
fn identities() {
    sweep(Scenario::Identities);
}

#[test]
fn era_swap() {
    sweep(Scenario::EraSwap);
}
