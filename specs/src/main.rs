//! `mcp-pool-spec check [--deep]` explores every configuration of the CI (or
//! deep) suite, prints the counts and each property's result, and exits
//! non-zero if a property fails; `mcp-pool-spec explore [--deep] [--config
//! NAME] [--port N]` serves stateright's Explorer for one configuration on
//! 127.0.0.1.

use std::process::ExitCode;

use mcp_pool_spec::{check, configs, PoolSpec};
use stateright::Model;

const USAGE: &str =
    "usage: mcp-pool-spec check [--deep] | explore [--deep] [--config NAME] [--port N]";

fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let deep = args.iter().any(|a| a == "--deep") || configs::deep_requested();
    let suite = if deep { configs::deep() } else { configs::ci() };
    match args.first().map(String::as_str) {
        Some("check") => {
            for bounds in &suite {
                println!("configuration {bounds:#?}");
            }
            check::run_and_print(suite, deep)
        }
        Some("explore") => {
            let bounds = match option(&args, "--config") {
                Some(name) => suite.into_iter().find(|b| b.name == name),
                None => suite.into_iter().next(),
            };
            let Some(bounds) = bounds else {
                eprintln!("no such configuration; {USAGE}");
                return ExitCode::from(2);
            };
            let port = match option(&args, "--port").map(str::parse::<u16>) {
                None => 3000,
                Some(Ok(port)) => port,
                Some(Err(_)) => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            };
            let spec = match PoolSpec::new(bounds) {
                Ok(spec) => spec,
                Err(e) => {
                    eprintln!("invalid pool configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            let address = format!("127.0.0.1:{port}");
            println!("Explorer for {} on http://{address}/", spec.bounds().name);
            spec.every_violation_fails(true).checker().serve(address);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
