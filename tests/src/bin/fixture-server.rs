//! `fixture-server NAME [--port PORT] [--forget-after N]`: serves one fixture
//! of `mcp_pool_tests` (see `Fixture::ALL` for the names) on
//! 127.0.0.1:PORT (default 0, a free port) until killed, and prints its MCP
//! URL once bound. `--forget-after` sets how many tool calls a forgetful
//! server serves on a session before forgetting it (default 3).

use std::io::Write;
use std::process::ExitCode;

use mcp_pool_tests::{Fixture, FixtureServer};

const USAGE: &str = "usage: fixture-server NAME [--port PORT] [--forget-after N]";

struct Args {
    fixture: Fixture,
    port: u16,
    forget_after: u64,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let name = args.next().ok_or(USAGE)?;
    let fixture = name.parse::<Fixture>().map_err(|e| e.to_string())?;
    let mut parsed = Args {
        fixture,
        port: 0,
        forget_after: 3,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => parsed.port = value.parse().map_err(|e| format!("--port {value}: {e}"))?,
            "--forget-after" => {
                parsed.forget_after = value
                    .parse()
                    .map_err(|e| format!("--forget-after {value}: {e}"))?
            }
            other => return Err(format!("unknown option {other}; {USAGE}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fixture-server: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fixture-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let router = args.fixture.router(args.forget_after);
        let server = match FixtureServer::spawn(router, args.port).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("fixture-server: cannot bind 127.0.0.1:{}: {e}", args.port);
                return ExitCode::FAILURE;
            }
        };
        println!("{}", server.url());
        let _ = std::io::stdout().flush();
        // Serves until the process is killed.
        std::future::pending::<()>().await;
        ExitCode::SUCCESS
    })
}
