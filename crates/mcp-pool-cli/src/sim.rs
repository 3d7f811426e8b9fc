//! `mcp-pool sim`: the simulation sweep, or the replay of one seed.

use std::process::ExitCode;
use std::time::Instant;

use mcp_pool_sim::oracle;
use mcp_pool_sim::report::{rows, table};
use mcp_pool_sim::{Plan, Scenario, Subject, Sweep};

/// Seeds per scenario when neither `--seeds` nor `MCP_POOL_SIM_SEEDS` says.
const DEFAULT_SEEDS: u64 = 5;

/// `mcp-pool sim`: the options, each also read from an `MCP_POOL_*`
/// environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Seeds per scenario in a sweep (seeds 0..N, at least 1). Default 5.
    #[arg(long, env = "MCP_POOL_SIM_SEEDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: Option<u64>,
    /// Run only this scenario: steady, crash-bounce, crash-forever,
    /// partition, hold, flaky, slow-checks, breaker, cancel, shutdown,
    /// identities, era-swap. Default: all. Each seed draws the backend's
    /// era (legacy stateful, modern, legacy stateless, in turn).
    #[arg(long, env = "MCP_POOL_SIM_SCENARIO")]
    pub scenario: Option<Scenario>,
    /// Replay this one seed (of `--scenario`, or of every scenario) instead
    /// of sweeping.
    #[arg(long, env = "MCP_POOL_SIM_SEED")]
    pub seed: Option<u64>,
    /// With `--seed`: run the naive pool (the known bug) instead of mcp-pool.
    #[arg(long, env = "MCP_POOL_SIM_NAIVE",
          value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub naive: bool,
    /// With `--seed`: print the run's event log (the same, byte for byte, on
    /// every replay).
    #[arg(long, env = "MCP_POOL_SIM_LOG",
          value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub log: bool,
}

/// Sweeps (or replays one seed), prints the report table and every
/// failing run with its replay command; exits 1 if an oracle failed.
pub fn run(args: &SimArgs) -> ExitCode {
    let scenarios: Vec<Scenario> = match args.scenario {
        Some(s) => vec![s],
        None => Scenario::ALL.to_vec(),
    };
    match args.seed {
        Some(seed) => replay(&scenarios, seed, args),
        None => sweep(&scenarios, args.seeds.unwrap_or(DEFAULT_SEEDS)),
    }
}

fn replay(scenarios: &[Scenario], seed: u64, args: &SimArgs) -> ExitCode {
    let subject = if args.naive {
        Subject::Naive
    } else {
        Subject::Pool
    };
    let mut failed = false;
    let mut reports = Vec::new();
    for &scenario in scenarios {
        let report = mcp_pool_sim::run(&Plan::new(scenario, seed), subject);
        if args.log {
            for line in &report.log {
                println!("{line}");
            }
        }
        let violations = oracle::check(&report);
        let era = report.plan.era_label();
        if violations.is_empty() {
            println!("{scenario} seed {seed} ({subject}, {era}): every oracle holds");
        } else {
            failed = true;
            println!("{scenario} seed {seed} ({subject}, {era}):");
            for v in violations {
                println!("  {v}");
            }
        }
        reports.push(report);
    }
    println!("\n{}", table(&rows(&reports)));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn sweep(scenarios: &[Scenario], seeds: u64) -> ExitCode {
    println!(
        "simulating {} scenarios x {seeds} seeds (real driver, rmcp client and echo server on a turmoil network)",
        scenarios.len()
    );
    let started = Instant::now();
    let mut sweep = Sweep::default();
    for &scenario in scenarios {
        let before = sweep.failures.len();
        sweep.scenario(scenario, 0..seeds, true, &mut |_| {});
        let failed = sweep.failures.len() - before;
        println!(
            "  {scenario:<14} {}",
            if failed == 0 {
                "every oracle holds".to_owned()
            } else {
                format!("{failed} runs failed")
            }
        );
    }
    println!(
        "\n{}\n{} runs in {:.1} s",
        table(&rows(&sweep.reports)),
        sweep.reports.len(),
        started.elapsed().as_secs_f64()
    );
    if sweep.failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    for failure in &sweep.failures {
        println!("{failure}");
    }
    ExitCode::FAILURE
}
