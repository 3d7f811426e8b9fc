//! `echo-server --port PORT [--era ERA]`: the echo MCP server as a separate
//! OS process, so the end-to-end tests can kill it with SIGKILL and restart
//! it on the same port. Binds 127.0.0.1 only, prints `listening on ADDR`
//! and then a line naming the era once bound, then serves until killed.
//! ERA is `legacy` (the default), `legacy-stateless`, `modern` or `dual`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use mcp_pool_echo::{serve_tcp, EchoApp, EchoConfig, Era, ServerControl};

const USAGE: &str = "usage: echo-server --port PORT [--era legacy|legacy-stateless|modern|dual]";

/// The port and era from the command line, or the one-line reason why not.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(u16, Era), String> {
    let mut port = None;
    let mut era = Era::default();
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--port" => {
                port = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--port {value}: not a port number"))?,
                );
            }
            "--era" => era = value.parse().map_err(|e| format!("--era: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((port.ok_or("--port is required")?, era))
}

fn main() -> ExitCode {
    let (port, era) = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("echo-server: {e} ({USAGE})");
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
            eprintln!("echo-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("echo-server: cannot bind {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let bound = listener.local_addr().unwrap_or(addr);
        // One write for both lines: the tests read the first line and close
        // the pipe, which must not fail a later write (and stop the server).
        let banner = format!("listening on {bound}\n{}\n", era.summary());
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(banner.as_bytes())
            .and_then(|()| stdout.flush());
        drop(stdout);
        serve_tcp(
            listener,
            EchoApp::new(&EchoConfig::default().with_era(era)),
            ServerControl::new(),
        )
        .await;
        ExitCode::SUCCESS
    })
}
