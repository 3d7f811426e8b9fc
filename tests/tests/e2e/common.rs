//! Helpers: the echo server as a separate process, pools, tool calls.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mcp_pool::{Metrics, Pool};
use mcp_pool_rmcp::{Error, McpConnector, McpPool, McpSession};
use rmcp::model::{CallToolRequestParams, CallToolResult};

/// The echo server running as its own OS process (the `echo-server` binary of
/// this package), killed with SIGKILL by [`EchoProcess::kill`] or on drop.
pub struct EchoProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl EchoProcess {
    /// Starts the server on 127.0.0.1:`port` (0 picks a free port) and waits
    /// until it listens. A port just freed by a kill may take a moment to be
    /// bindable again: retries for up to 5 s.
    pub fn start(port: u16) -> EchoProcess {
        EchoProcess::start_era(port, "legacy")
    }

    /// [`EchoProcess::start`] serving `era` (`legacy`, `legacy-stateless`,
    /// `modern` or `dual`).
    pub fn start_era(port: u16, era: &str) -> EchoProcess {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut child = Command::new(env!("CARGO_BIN_EXE_echo-server"))
                .args(["--port", &port.to_string(), "--era", era])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("the echo-server binary starts");
            let stdout = child.stdout.take().expect("stdout is piped");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                return EchoProcess {
                    addr: addr.parse().expect("the server prints its address"),
                    child: Some(child),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "the echo server could not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// SIGKILL, then reap: the kernel closes every socket of the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the echo server");
            let _ = child.wait();
        }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A connector with short, test-sized timeouts.
pub fn connector() -> McpConnector {
    McpConnector::builder()
        .connect_timeout(Duration::from_secs(2))
        .initialize_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
        .check_timeout(Duration::from_secs(1))
        .close_timeout(Duration::from_secs(1))
        .build()
        .expect("the connector builds")
}

/// A pool over `connector` with test-sized limits and timeouts.
pub fn pool_with(connector: McpConnector, per_key: usize) -> McpPool {
    Pool::builder(connector)
        .max_sessions_per_key(per_key)
        .acquire_timeout(Duration::from_secs(8))
        .connect_timeout(Duration::from_secs(3))
        .check_timeout(Duration::from_secs(2))
        .close_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(2))
        .breaker_max_cooldown(Duration::from_millis(500))
        .build()
        .expect("the pool builds")
}

/// [`pool_with`] over [`connector`].
pub fn pool(per_key: usize) -> McpPool {
    pool_with(connector(), per_key)
}

/// `echo {message, delay_ms}`.
pub fn echo(message: &str, delay_ms: u64) -> CallToolRequestParams {
    let args = rmcp::serde_json::json!({ "message": message, "delay_ms": delay_ms });
    CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap_or_default())
}

/// The first text content of a result.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// Calls `echo` and returns the echoed text.
pub async fn call_echo(
    session: &McpSession,
    message: &str,
    delay_ms: u64,
) -> Result<String, Error> {
    Ok(text(&session.call_tool(echo(message, delay_ms)).await?))
}

/// Calls `whoami`: the server-side id of the session serving the call.
pub async fn whoami(session: &McpSession) -> Result<String, Error> {
    Ok(text(
        &session
            .call_tool(CallToolRequestParams::new("whoami"))
            .await?,
    ))
}

/// Polls the pool's metrics until `done` holds, for at most `within`.
pub async fn wait_for(
    pool: &McpPool,
    within: Duration,
    done: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let metrics = pool.metrics();
        if done(&metrics) || tokio::time::Instant::now() >= deadline {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
