//! Configuration and construction of the `/mcp` endpoint, independent of any
//! listener.

use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use axum::Router;
use rmcp::model::CacheScope;
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};
use rmcp::transport::streamable_http_server::session::{SessionId, SessionManager};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::inspect::{inspect_post, Inspector};
use crate::registry::DEFAULT_CALL_LOG_LIMIT;
use crate::sessions::RecordingSessionManager;
use crate::{EchoServer, Era, SessionRegistry};

/// The path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// How the echo server behaves. Start from [`EchoConfig::default`] and adjust
/// with the `with_*` methods or the public fields.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// Host names (or `host:port` authorities) accepted in the `Host` header in
    /// addition to rmcp's defaults `localhost`, `127.0.0.1` and `::1`.
    /// Requests naming any other host get HTTP 403.
    pub extra_allowed_hosts: Vec<String>,
    /// The protocol revisions served, and whether legacy ones keep sessions
    /// (default [`Era::Legacy`]: versions before 2026-07-28, each
    /// `initialize` creating a server-side session (`mcp-session-id`), kept
    /// in memory until deleted, expired or the server stops).
    pub era: Era,
    /// A session idle for this long is dropped by the server (later requests
    /// on it get HTTP 404). `None` keeps idle sessions forever. Default:
    /// rmcp's 300 s.
    pub session_keep_alive: Option<Duration>,
    /// How many calls the [`SessionRegistry`] call log retains
    /// (default [`DEFAULT_CALL_LOG_LIMIT`]); counts are always complete.
    pub call_log_limit: usize,
    /// Interval of the keep-alive comments on open event streams (default:
    /// rmcp's 15 s); `None` sends none. Under a simulated clock, turn them
    /// off: their timer reads the real clock (`std::time::Instant`), so
    /// once simulated time runs ahead of real time they fire on every poll.
    pub sse_keep_alive: Option<Duration>,
    /// The `ttlMs` and `cacheScope` put on `server/discover` and
    /// `tools/list` results of 2026-07-28 requests (default `None`: rmcp's,
    /// `ttlMs` 0 on both, `private` discover and `public` tool lists).
    pub cache_hint: Option<(u64, CacheScope)>,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            extra_allowed_hosts: Vec::new(),
            era: Era::default(),
            session_keep_alive: SessionConfig::default().keep_alive,
            call_log_limit: DEFAULT_CALL_LOG_LIMIT,
            sse_keep_alive: StreamableHttpServerConfig::default().sse_keep_alive,
            cache_hint: None,
        }
    }
}

impl EchoConfig {
    /// Also accept requests whose `Host` header names `host`.
    pub fn with_allowed_host(mut self, host: impl Into<String>) -> Self {
        self.extra_allowed_hosts.push(host.into());
        self
    }

    /// Serve the protocol revisions of `era`.
    pub fn with_era(mut self, era: Era) -> Self {
        self.era = era;
        self
    }

    /// Serve the legacy revisions with (`true`, [`Era::Legacy`]) or without
    /// (`false`, [`Era::LegacyStateless`]) server-side sessions.
    pub fn with_stateful(self, stateful: bool) -> Self {
        self.with_era(if stateful {
            Era::Legacy
        } else {
            Era::LegacyStateless
        })
    }

    /// Whether `initialize` opens a server-side session (see
    /// [`Era::has_sessions`]).
    pub fn is_stateful(&self) -> bool {
        self.era.has_sessions()
    }

    /// Drop sessions idle for `keep_alive` (`None`: never).
    pub fn with_session_keep_alive(mut self, keep_alive: Option<Duration>) -> Self {
        self.session_keep_alive = keep_alive;
        self
    }

    /// Send keep-alive comments on open event streams at this interval
    /// (`None`: never).
    pub fn with_sse_keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.sse_keep_alive = interval;
        self
    }

    /// Mark 2026-07-28 `server/discover` and `tools/list` results fresh for
    /// `ttl_ms` and cacheable under `scope`.
    pub fn with_cache_hint(mut self, ttl_ms: u64, scope: CacheScope) -> Self {
        self.cache_hint = Some((ttl_ms, scope));
        self
    }

    /// Retain at most `limit` calls in the registry's call log.
    pub fn with_call_log_limit(mut self, limit: usize) -> Self {
        self.call_log_limit = limit;
        self
    }
}

/// The echo server's HTTP application: an axum [`Router`] serving MCP at
/// [`MCP_PATH`], its [`SessionRegistry`], and a switch that ends all its
/// sessions. Not bound to any listener: serve [`EchoApp::router`] with
/// [`crate::serve`], [`crate::spawn_local_server`] or `axum::serve` on any
/// `axum::serve::Listener`.
///
/// Clones share the same sessions, registry and switch.
#[derive(Clone)]
pub struct EchoApp {
    era: Era,
    router: Router,
    registry: SessionRegistry,
    sessions: Arc<RecordingSessionManager>,
    end_sessions: CancellationToken,
}

impl std::fmt::Debug for EchoApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoApp")
            .field("era", &self.era)
            .field("registry", &self.registry)
            .field("sessions_ended", &self.end_sessions.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl EchoApp {
    /// Builds the application described by `cfg`, with a fresh registry and
    /// no sessions.
    pub fn new(cfg: &EchoConfig) -> Self {
        Self::with_registry(cfg, SessionRegistry::new(cfg.call_log_limit))
    }

    /// Builds the application described by `cfg`, with no sessions, recording
    /// into `registry` (whose own call log limit applies; `cfg.call_log_limit`
    /// is ignored). Successive incarnations of a restarted server can share
    /// one registry, so a test sees every session any of them created.
    pub fn with_registry(cfg: &EchoConfig, registry: SessionRegistry) -> Self {
        let mut local = LocalSessionManager::default();
        local.session_config.keep_alive = cfg.session_keep_alive;
        let sessions = Arc::new(RecordingSessionManager::new(local, registry.clone()));

        let end_sessions = CancellationToken::new();
        let era = cfg.era;
        let mut http = era
            .http_config(StreamableHttpServerConfig::default())
            .with_cancellation_token(end_sessions.clone())
            .with_sse_keep_alive(cfg.sse_keep_alive);
        http.allowed_hosts
            .extend(cfg.extra_allowed_hosts.iter().cloned());
        let inspector = Inspector {
            era,
            registry: registry.clone(),
            max_body_bytes: http.max_request_body_bytes,
        };

        let factory_registry = registry.clone();
        let cache_hint = cfg.cache_hint;
        let service = StreamableHttpService::new(
            move || {
                Ok(EchoServer::with_era(factory_registry.clone(), era).with_cache_hint(cache_hint))
            },
            sessions.clone(),
            http,
        );
        let router = Router::new()
            .route_service(MCP_PATH, service)
            .route_layer(middleware::from_fn_with_state(inspector, inspect_post));
        Self {
            era,
            router,
            registry,
            sessions,
            end_sessions,
        }
    }

    /// The era this app serves.
    pub fn era(&self) -> Era {
        self.era
    }

    /// A clone of the router (cheap; shares state with this app).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The registry recording this app's sessions and calls.
    pub fn registry(&self) -> &SessionRegistry {
        &self.registry
    }

    /// Ends every session at once: open response streams end without a
    /// result and session workers stop. From then on MCP requests fail (on
    /// an existing session the response stream ends empty; a new
    /// `initialize` gets HTTP 500), while the HTTP server itself keeps
    /// running. Used when the server shuts down; idempotent.
    pub fn end_sessions(&self) {
        self.end_sessions.cancel();
    }

    /// Whether [`EchoApp::end_sessions`] has been called.
    pub fn sessions_ended(&self) -> bool {
        self.end_sessions.is_cancelled()
    }

    /// Drops session `session_id` on the server side as if it had expired:
    /// later requests carrying it get HTTP 404. Returns whether the session
    /// existed. The session is listed in
    /// [`SessionRegistry::deleted_sessions`].
    pub async fn expire_session(&self, session_id: &str) -> bool {
        let id: SessionId = session_id.to_owned().into();
        let existed = self.sessions.has_session(&id).await.unwrap_or(false);
        if existed {
            // Closing a known session of the local manager only fails if its
            // worker already stopped, which leaves it gone as well.
            let _ = self.sessions.close_session(&id).await;
        }
        existed
    }
}
