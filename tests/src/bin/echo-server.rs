//! `echo-server --port PORT`: the echo MCP server as a separate OS process,
//! so the end-to-end tests can kill it with SIGKILL and restart it on the
//! same port. Binds 127.0.0.1 only, prints `listening on ADDR` once bound,
//! then serves until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use mcp_pool_echo::{serve_tcp, EchoApp, EchoConfig, ServerControl};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let port: u16 = match (args.next().as_deref(), args.next().map(|p| p.parse())) {
        (Some("--port"), Some(Ok(port))) => port,
        _ => {
            eprintln!("usage: echo-server --port PORT");
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
        println!("listening on {bound}");
        let _ = std::io::stdout().flush();
        serve_tcp(
            listener,
            EchoApp::new(&EchoConfig::default()),
            ServerControl::new(),
        )
        .await;
        ExitCode::SUCCESS
    })
}
