//! The `mcp-pool` command: `loadtest` reproduces the dead-session cascade of
//! a naive pool and shows mcp-pool's recovery beside it, `serve-echo` serves
//! the echo MCP server alone, `check` model-checks the pool's core, `sim`
//! runs the simulations, `gateway` serves upstream MCP servers to downstream
//! clients through one pool.
#![forbid(unsafe_code)]

mod calls;
mod check;
mod gateway;
mod loadtest;
mod serve_echo;
mod sim;

use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// A session pool for MCP clients over Streamable HTTP that never hands out
/// a broken session.
///
/// Every option can also be set with the environment variable named in its
/// help (MCP_POOL_*); a flag on the command line wins.
#[derive(Debug, Parser)]
#[command(name = "mcp-pool", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the same load through mcp-pool, a naive pool and no pool, kills
    /// the embedded echo backend in the middle of each, and compares how
    /// they fail and recover. Exits 1 when mcp-pool failed calls once the
    /// backend was up, or when some mode had no successful call.
    Loadtest(Box<loadtest::args::LoadtestArgs>),
    /// Serves the echo MCP server (tools `echo`, `fail`, `whoami`) at
    /// http://HOST:PORT/mcp until interrupted.
    ServeEcho(serve_echo::ServeEchoArgs),
    /// Model-checks the pool's core: explores every interleaving of bounded
    /// configurations and checks each invariant of specs/SPEC.md; exits 1
    /// with a counterexample if one is violated.
    Check(check::CheckArgs),
    /// Runs the simulations: the real pool, rmcp client and echo server on a
    /// simulated network under crashes, partitions, held and flaky links,
    /// slow checks, cancellations and shutdowns, over many seeds, with every
    /// oracle checked; or replays one seed exactly. Exits 1 if an oracle
    /// fails, printing the command that replays the run.
    Sim(sim::SimArgs),
    /// Serves upstream MCP servers to downstream MCP clients through one
    /// pool: each --upstream NAME=URL at /mcp/NAME (Streamable HTTP, both
    /// protocol eras), Prometheus metrics at /metrics; drains on SIGTERM or
    /// Ctrl-C. Logs to stderr (RUST_LOG).
    Gateway(Box<gateway::GatewayArgs>),
}

/// A setting that cannot work, in one line; the command exits with code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

/// Parses a duration written like `500ms`, `20s` or `1m30s`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("expected a duration such as 500ms, 20s or 1m30s ({e})"))
}

/// clap's error in one line, without the usage block.
fn one_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    format!("{} (see --help)", parts.join("; "))
}

fn usage(message: &str) -> ExitCode {
    eprintln!("mcp-pool: {message}");
    ExitCode::from(2)
}

fn failure(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("mcp-pool: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => return usage(&one_line(&e)),
        },
    };
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Sim(args) => sim::run(&args),
        Command::Loadtest(args) => {
            let plan = match args.plan() {
                Ok(plan) => plan,
                Err(UsageError(message)) => return usage(&message),
            };
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(e) => return failure(e),
            };
            runtime.block_on(async {
                // One run, or one per era with `--era all`, each table
                // printed as soon as its run ends.
                let mut reports = Vec::new();
                for run in plan.runs() {
                    let report = match loadtest::run(&run).await {
                        Ok(report) => report,
                        Err(e) => return failure(e),
                    };
                    println!("\n{}", loadtest::table::render(&report));
                    reports.push(report);
                }
                let written = loadtest::write_outputs(&plan, &reports);
                // The tables and the report are out first; then why the run
                // failed, in one line.
                let mut code = ExitCode::SUCCESS;
                if let Err(e) = written {
                    code = failure(e);
                }
                if let Some(reason) = loadtest::verdict_of(&reports).reason() {
                    code = failure(reason);
                }
                code
            })
        }
        Command::Gateway(args) => serve(args.config(), gateway::run),
        Command::ServeEcho(args) => serve(args.config(), serve_echo::run),
    }
}

/// Runs a server subcommand: a usage error exits 2 with its one line; the
/// server runs on a new runtime until it stops, and its error exits 1.
fn serve<C, F, E>(config: Result<C, UsageError>, run: impl FnOnce(C) -> F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let config = match config {
        Ok(config) => config,
        Err(UsageError(message)) => return usage(&message),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return failure(e),
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(e),
    }
}

/// Resolves at the first SIGTERM or Ctrl-C (Ctrl-C alone where SIGTERM
/// cannot be watched).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(args: &[&str]) -> String {
        let e = Cli::try_parse_from(std::iter::once("mcp-pool").chain(args.iter().copied()))
            .expect_err("refused");
        one_line(&e)
    }

    #[test]
    fn clap_errors_fit_on_one_line() {
        let e = error(&["loadtest", "--duration", "soon"]);
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.starts_with("invalid value 'soon' for '--duration <DURATION>'"),
            "{e}"
        );
        assert!(e.contains("500ms, 20s"), "{e}");
        let e = error(&["loadtest", "--user", "3"]);
        assert!(!e.contains('\n') && e.contains("--users"), "{e}");
        let e = error(&["frobnicate"]);
        assert!(e.contains("unrecognized subcommand 'frobnicate'"), "{e}");
    }

    #[test]
    fn durations_read_like_humans_write_them() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(duration("5").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
