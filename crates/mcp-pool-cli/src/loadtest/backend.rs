//! The embedded echo backend, and the outage injected into it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mcp_pool_echo::{spawn_local_server, EchoConfig, EchoServerHandle, Era};
use serde::Serialize;
use tokio::time::Instant;

use super::record::Outage;

/// The echo MCP server the loadtest runs against, on 127.0.0.1, which can be
/// killed (every connection dropped at once, like a crashed process) and
/// brought back on the same port, serving the same protocol era.
pub struct Backend {
    addr: SocketAddr,
    config: EchoConfig,
    server: Option<EchoServerHandle>,
}

impl Backend {
    /// Starts the echo server on `127.0.0.1:port` (0 picks a free port),
    /// serving `era`.
    pub async fn start(port: u16, era: Era) -> io::Result<Backend> {
        // The loadtest never reads the call log: keep it small.
        let config = EchoConfig::default()
            .with_call_log_limit(1000)
            .with_era(era);
        let server = spawn_local_server(SocketAddr::from(([127, 0, 0, 1], port)), &config).await?;
        Ok(Backend {
            addr: server.addr(),
            config,
            server: Some(server),
        })
    }

    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, mcp_pool_echo::MCP_PATH)
    }

    /// The bound address.
    #[cfg(test)]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the server: the port is closed and every connection dropped
    /// when this returns. Server-side sessions are lost.
    pub async fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.kill().await;
        }
    }

    /// Serves a new echo server on the same address, in the same era.
    /// Retries a refused bind
    /// for up to 2 s (the old socket may linger for a moment).
    pub async fn restart(&mut self) -> io::Result<()> {
        let give_up = Instant::now() + Duration::from_secs(2);
        loop {
            match spawn_local_server(self.addr, &self.config).await {
                Ok(server) => {
                    self.server = Some(server);
                    return Ok(());
                }
                Err(e) if Instant::now() < give_up => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot serve the echo server on {} again: {e}", self.addr),
                    ))
                }
            }
        }
    }

    /// Stops the server gracefully (killing it after 1 s).
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(1)).await;
        }
    }
}

/// How the backend comes back after it is killed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// After `--down-for`, on the same port.
    Delayed,
    /// At once, on the same port: connections and server-side sessions are
    /// lost, but new connections are refused for a moment only.
    Instant,
}

/// The outage to inject into (or declare for) each mode.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct OutagePlan {
    /// When the backend goes down, from the mode's start.
    #[serde(rename = "at_s", serialize_with = "secs")]
    pub at: Duration,
    /// How long it stays down (zero for an instant restart).
    #[serde(rename = "down_for_s", serialize_with = "secs")]
    pub down_for: Duration,
    /// How it comes back.
    pub restart: Restart,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl OutagePlan {
    /// The outage as planned, for a backend whose faults are injected from
    /// outside and declared on the command line.
    pub fn declared(&self) -> Outage {
        Outage {
            down_at_s: self.at.as_secs_f64(),
            back_at_s: (self.at + self.down_for).as_secs_f64(),
        }
    }

    /// Kills `backend` at `start + at`, brings it back after `down_for` (at
    /// once for an instant restart), and returns when it went down and when
    /// it was back, from `start`. `on_change` is told `true` when it goes
    /// down and `false` when it is back.
    pub async fn inject(
        &self,
        backend: &mut Backend,
        start: Instant,
        on_change: impl Fn(bool),
    ) -> io::Result<Outage> {
        tokio::time::sleep_until(start + self.at).await;
        let down_at = start.elapsed();
        on_change(true);
        backend.kill().await;
        if self.restart == Restart::Delayed {
            tokio::time::sleep_until(start + self.at + self.down_for).await;
        }
        backend.restart().await?;
        let back_at = start.elapsed();
        on_change(false);
        Ok(Outage {
            down_at_s: down_at.as_secs_f64(),
            back_at_s: back_at.as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_backend_comes_back_on_the_same_port() {
        let mut backend = Backend::start(0, Era::Modern).await.unwrap();
        let addr = backend.addr();
        assert!(backend.url().starts_with("http://127.0.0.1:"));
        let plan = OutagePlan {
            at: Duration::from_millis(10),
            down_for: Duration::from_millis(100),
            restart: Restart::Delayed,
        };
        let changes = std::sync::Mutex::new(Vec::new());
        let outage = plan
            .inject(&mut backend, Instant::now(), |down| {
                changes.lock().unwrap().push(down)
            })
            .await
            .unwrap();
        assert!(outage.down_at_s >= 0.01);
        assert!(outage.back_at_s >= 0.11, "{outage:?}");
        assert_eq!(*changes.lock().unwrap(), vec![true, false]);
        assert_eq!(backend.addr(), addr);
        tokio::net::TcpStream::connect(addr)
            .await
            .expect("serving again");
        // In the era it served before.
        let connector = mcp_pool_rmcp::McpConnector::new().unwrap();
        let key = mcp_pool_rmcp::SessionKey::anonymous(backend.url().as_str()).unwrap();
        let session = connector.open(&key).await.expect("a session");
        assert_eq!(session.era(), mcp_pool_rmcp::Era::Modern);
        session.close().await;
        backend.stop().await;
    }

    #[test]
    fn a_declared_outage_is_the_plan() {
        let plan = OutagePlan {
            at: Duration::from_secs(10),
            down_for: Duration::from_secs(5),
            restart: Restart::Delayed,
        };
        assert_eq!(
            plan.declared(),
            Outage {
                down_at_s: 10.0,
                back_at_s: 15.0
            }
        );
    }
}
