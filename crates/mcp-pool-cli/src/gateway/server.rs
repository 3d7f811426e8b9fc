//! The gateway's HTTP server: the routes, the pool behind them, and the
//! drain.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::calls::{EraSeen, EraTally};
use axum::extract::Request;
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::StreamExt;
use mcp_pool::{Pool, ShutdownReport};
use mcp_pool_rmcp::{McpConnector, SessionKey};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::args::GatewayConfig;
#[cfg(doc)]
use super::args::UpstreamSessions;
use super::forward::{Route, Shared};
use super::handler::GatewayHandler;
use super::metrics::{Exporter, MeteredConnector, EXPORT_INTERVAL};
use super::upstreams::Upstreams;

/// How long the HTTP server may take to close its connections once the
/// downstream sessions are ended.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the pool's shutdown waits for sessions to come back and close
/// once the grace period is over (it runs after requests in flight
/// finished or were cut off).
const POOL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The HTTP client of the upstream connector cannot be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    Connector(#[from] mcp_pool_rmcp::Error),
    /// The pool settings cannot work.
    #[error(transparent)]
    Pool(#[from] mcp_pool::BuildError),
    /// An upstream URL is not a valid MCP endpoint.
    #[error("upstream `{name}`: {source}")]
    Upstream {
        /// The upstream's name.
        name: String,
        /// What is wrong with its URL.
        source: mcp_pool_rmcp::KeyError,
    },
}

/// A running gateway: its address, and the way to drain it.
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Ends every downstream session (rmcp's service token).
    sessions: CancellationToken,
    /// Stops accepting connections.
    accept: CancellationToken,
    /// Stops the metrics export loop.
    export: CancellationToken,
    server: JoinHandle<()>,
}

/// What a drain found.
#[derive(Debug)]
pub struct DrainReport {
    /// Downstream requests still in flight when the grace period ended
    /// (each was cut off).
    pub cut_off: usize,
    /// How the pool's shutdown went (`None` when the sessions came from
    /// elsewhere: see [`UpstreamSessions`]).
    pub pool: Option<ShutdownReport>,
}

/// The upstream sessions every upstream shares: one pool (unless the
/// configuration asks for another source, see [`UpstreamSessions`]).
fn upstreams(
    config: &GatewayConfig,
    names: BTreeMap<String, String>,
) -> Result<Upstreams, StartError> {
    let connector = McpConnector::builder()
        .request_timeout(config.call_timeout)
        .build()?;
    let connector = MeteredConnector::new(connector, names);
    let upstreams = Upstreams::new(
        config.sessions,
        connector,
        config.sessions_per_key,
        |connector| {
            Pool::builder(connector)
                .name("gateway")
                .max_sessions_per_key(config.sessions_per_key)
                .max_sessions_total(config.max_sessions)
                .max_keys(config.max_keys)
                .acquire_timeout(config.call_timeout)
                .idle_timeout(Some(config.idle_timeout))
                .shutdown_timeout(POOL_SHUTDOWN_TIMEOUT)
                .build()
        },
    )?;
    Ok(upstreams)
}

impl Gateway {
    /// Binds `config.listen` and serves: each upstream at `/mcp/NAME`
    /// (Streamable HTTP, legacy sessions and 2026-07-28 sessionless
    /// requests alike), `GET /metrics`, and HTTP 404 for any other path.
    pub async fn start(config: &GatewayConfig) -> Result<Gateway, StartError> {
        let mut names = BTreeMap::new();
        let mut routes = Vec::new();
        for (name, url) in &config.upstreams {
            let key =
                SessionKey::anonymous(url.as_str()).map_err(|source| StartError::Upstream {
                    name: name.clone(),
                    source,
                })?;
            names.insert(key.url().to_owned(), name.clone());
            routes.push(Route {
                name: Arc::from(name.as_str()),
                url: Arc::from(key.url()),
            });
        }
        let shared = Arc::new(Shared {
            upstreams: upstreams(config, names)?,
            eras: EraTally::default(),
            exporter: Exporter::new(),
            identity_headers: config.identity_headers.clone(),
            affinity: config.affinity,
            in_flight: TaskTracker::new(),
        });
        let sessions = CancellationToken::new();
        let mut http =
            StreamableHttpServerConfig::default().with_cancellation_token(sessions.clone());
        http.legacy_session_mode = true;
        http.allowed_hosts
            .extend(config.allowed_hosts.iter().cloned());

        let mut router = Router::new();
        for route in routes {
            let path = format!("/mcp/{}", route.name);
            let (shared, route) = (shared.clone(), route.clone());
            let service = StreamableHttpService::new(
                move || Ok(GatewayHandler::new(shared.clone(), route.clone())),
                Arc::new(LocalSessionManager::default()),
                http.clone(),
            );
            router = router.route_service(&path, service);
        }
        // A POST is in flight until its response body (an event stream for
        // a call) has been sent to the end, not only until the handler
        // returned, so the drain never ends a session under a response.
        let tracker = shared.in_flight.clone();
        router = router.route_layer(middleware::from_fn(move |request, next| {
            track_post(tracker.clone(), request, next)
        }));
        let metrics_shared = shared.clone();
        router = router
            .route(
                "/metrics",
                get(move || {
                    let shared = metrics_shared.clone();
                    async move {
                        shared.exporter.export(&shared.upstreams);
                        (
                            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                            shared.exporter.render(),
                        )
                    }
                }),
            )
            .fallback(not_found);

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let listener = listener.tap_io(|tcp| {
            // Without it, a client reusing connections waits ~40 ms per
            // call (Nagle and delayed ACK).
            let _ = tcp.set_nodelay(true);
        });
        let accept = CancellationToken::new();
        let stop = accept.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
        let export = CancellationToken::new();
        let (stop, exporting) = (export.clone(), shared.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPORT_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        exporting.exporter.export(&exporting.upstreams);
                        exporting.exporter.upkeep();
                    }
                    () = stop.cancelled() => return,
                }
            }
        });
        Ok(Gateway {
            addr,
            shared,
            sessions,
            accept,
            export,
            server,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream side's counters, by the names the loadtest's table
    /// uses (see [`Upstreams::counters`]).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.shared.upstreams.counters()
    }

    /// The protocol eras of the upstream sessions requests ran on so far.
    pub fn eras(&self) -> Vec<EraSeen> {
        self.shared.eras.snapshot()
    }

    /// Drains: stops accepting connections and new requests (refused with
    /// a JSON-RPC error naming the shutdown), lets requests in flight finish
    /// for up to `grace`, then ends every downstream session and shuts the
    /// pool down, which closes every upstream session (`DELETE` for legacy
    /// stateful ones) and aborts any still held.
    pub async fn drain(self, grace: Duration) -> DrainReport {
        self.shared.in_flight.close();
        self.accept.cancel();
        let in_flight = self.shared.in_flight.len();
        if in_flight > 0 {
            tracing::info!(in_flight, ?grace, "waiting for requests in flight");
        }
        let finished = tokio::time::timeout(grace, self.shared.in_flight.wait()).await;
        let cut_off = if finished.is_ok() {
            0
        } else {
            self.shared.in_flight.len()
        };
        self.sessions.cancel();
        let pool = self.shared.upstreams.shutdown().await;
        self.export.cancel();
        let mut server = self.server;
        if tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        // The downstream sessions' tasks hold the pool until they wind
        // down; the pool's last handle gone, its background task stops
        // before the runtime does (bounded wait).
        let deadline = tokio::time::Instant::now() + SERVER_STOP_TIMEOUT;
        while Arc::strong_count(&self.shared) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        DrainReport { cut_off, pool }
    }
}

/// Runs `request`, holding a token of `tracker` until the response body of
/// a POST has been sent in full (or dropped).
async fn track_post(tracker: TaskTracker, request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let token = tracker.token();
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &token;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(body))
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    let path = uri.path();
    let text = match path.strip_prefix("/mcp/") {
        Some(name) => format!("no upstream named `{name}` (see the gateway's --upstream)\n"),
        None => {
            format!("not found: {path} (MCP endpoints are at /mcp/NAME, metrics at /metrics)\n")
        }
    };
    (StatusCode::NOT_FOUND, text)
}
