//! Serving a fixture's router on a loopback port.

use std::io;
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A fixture served on 127.0.0.1 by a task of the current runtime; dropping
/// the handle stops it (the task is aborted, the port closes).
#[derive(Debug)]
pub struct FixtureServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FixtureServer {
    /// Serves `router` on 127.0.0.1:`port` (0 picks a free port), with
    /// `TCP_NODELAY` on every accepted socket. Must be called within a tokio
    /// runtime. Fails with the bind error.
    pub async fn spawn(router: Router, port: u16) -> io::Result<FixtureServer> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let addr = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            // A socket that cannot take the option still works, only slower.
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            // Serving a TCP listener only returns on an accept error axum
            // does not retry; the fixture is then down, as if killed.
            let _ = axum::serve(listener, router).await;
        });
        Ok(FixtureServer { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
