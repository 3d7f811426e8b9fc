//! `mcp-pool check`: the model checker over the pool's real core.

use std::process::ExitCode;

use mcp_pool_spec::{check, configs};

/// `mcp-pool check`: the options, each also read from an `MCP_POOL_*`
/// environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct CheckArgs {
    /// Explore the deep suite instead of the CI one: closes confirmed at any
    /// later point, more clock moves, short deadlines, a drain (takes
    /// minutes). `MCP_POOL_SPEC=deep` asks for it too.
    #[arg(long, env = "MCP_POOL_DEEP",
          value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub deep: bool,
}

/// Runs the suite (the deep one with `--deep`), prints states, depth, time and each property's result
/// (with any counterexample), and exits 1 if a property fails, 2 if a
/// configuration of the suite is invalid.
pub fn run(args: &CheckArgs) -> ExitCode {
    let deep = args.deep || configs::deep_requested();
    let suite = if deep { configs::deep() } else { configs::ci() };
    let names: Vec<&str> = suite.iter().map(|b| b.name).collect();
    println!(
        "model-checking the core against specs/SPEC.md: {} suite ({})",
        if deep { "deep" } else { "CI" },
        names.join(", ")
    );
    // The CI suite's configurations are small enough to explore at once;
    // the deep ones one at a time, to hold one exploration in memory.
    check::run_and_print(suite, deep)
}
