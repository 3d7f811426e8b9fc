//! The connector: opens, checks, reads and closes rmcp client sessions.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mcp_pool::{ConnectFailure, Connector, Outcome};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, ListToolsRequest, PingRequest,
    ServerResult, Tool,
};
use rmcp::service::{PeerRequestOptions, RunningService};
use rmcp::transport::common::client_side_sse::SseRetryPolicy;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{Peer, RoleClient, ServiceError, ServiceExt};
use tracing::Instrument;

use crate::http::find_failure;
use crate::redact::{redact_urls, shown_hash};
use crate::{Error, Health, HealthClient, HttpError, SessionKey};

/// One step of the health check chain run by [`Connector::check`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckStep {
    /// Send `ping`.
    Ping,
    /// Send `tools/list` (first page, never answered from rmcp's cache).
    ListTools,
    /// Pass without any I/O, trusting the transport's health cell (which is
    /// checked before any step). Ends the chain.
    Skip,
}

impl fmt::Display for CheckStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStep::Ping => "ping",
            CheckStep::ListTools => "tools/list",
            CheckStep::Skip => "skip",
        })
    }
}

/// Reconnect policy for the SSE streams of a session: at most `max_times`
/// attempts, `interval` apart. rmcp's default retries forever, which can hold
/// a call in flight on a dead server for good.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BoundedRetry {
    /// Most reconnect attempts of one stream.
    pub max_times: usize,
    /// Wait before each attempt.
    pub interval: Duration,
}

impl SseRetryPolicy for BoundedRetry {
    fn retry(&self, current_times: usize) -> Option<Duration> {
        (current_times < self.max_times).then_some(self.interval)
    }
}

/// The settings of an [`McpConnector`]; see [`McpConnectorBuilder`] for each.
#[derive(Clone, Debug)]
struct Settings {
    connect_timeout: Duration,
    initialize_timeout: Duration,
    request_timeout: Duration,
    check_timeout: Duration,
    check_chain: Vec<CheckStep>,
    close_timeout: Duration,
    reinit_on_expired_session: bool,
    retry: BoundedRetry,
    max_concurrent_requests: usize,
    stream_idle_timeout: Option<Duration>,
    http_idle_timeout: Duration,
    root_certificates: Vec<Vec<u8>>,
    /// `https://` URLs cannot be served (reqwest without the `tls` feature).
    refuse_https: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(5),
            initialize_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            check_timeout: Duration::from_secs(2),
            check_chain: vec![CheckStep::Ping, CheckStep::ListTools, CheckStep::Skip],
            close_timeout: Duration::from_secs(2),
            reinit_on_expired_session: false,
            retry: BoundedRetry {
                max_times: 2,
                interval: Duration::from_millis(250),
            },
            max_concurrent_requests: 16,
            stream_idle_timeout: None,
            http_idle_timeout: Duration::from_secs(90),
            root_certificates: Vec::new(),
            refuse_https: !cfg!(feature = "tls"),
        }
    }
}

/// Configures an [`McpConnector`]. Start from [`McpConnector::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct McpConnectorBuilder {
    settings: Settings,
}

impl McpConnectorBuilder {
    /// Longest wait for a TCP (and TLS) connection to the server (default
    /// 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Longest wait for the whole `initialize` handshake (default 10 s). Keep
    /// it below the pool's `connect_timeout` to get this crate's typed error.
    pub fn initialize_timeout(mut self, timeout: Duration) -> Self {
        self.settings.initialize_timeout = timeout;
        self
    }

    /// Longest wait for the answer to one request made through
    /// [`McpSession`]'s methods (default 30 s). A request still unanswered
    /// fails with [`Error::TimedOut`] (outcome `Timeout`: the pool checks
    /// the session before reuse).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// Longest wait for each step of a health check (default 2 s).
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.settings.check_timeout = timeout;
        self
    }

    /// The health check chain (default `ping`, `tools/list`, `skip`): steps
    /// run in order; a "method not found" answer moves on to the next step,
    /// any other failure fails the check; [`CheckStep::Skip`] passes. A
    /// chain whose every step is unsupported fails. An empty chain behaves
    /// as `[Skip]`.
    pub fn check_chain(mut self, steps: impl IntoIterator<Item = CheckStep>) -> Self {
        self.settings.check_chain = steps.into_iter().collect();
        self
    }

    /// Longest wait for closing a session, DELETE included (default 2 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.settings.close_timeout = timeout;
        self
    }

    /// Whether the transport re-initializes by itself when the server
    /// forgets the session (any answer of the [session loss
    /// table](crate#session-loss)). Off by default: the new server-side
    /// session would silently lose the old one's state; instead the request
    /// fails with a transport error, the pool poisons the session, and
    /// [`run_with_retry`](crate::run_with_retry) may run the request again
    /// on another session.
    pub fn reinit_on_expired_session(mut self, enable: bool) -> Self {
        self.settings.reinit_on_expired_session = enable;
        self
    }

    /// Reconnect policy of SSE streams (default 2 attempts, 250 ms apart).
    pub fn retry(mut self, retry: BoundedRetry) -> Self {
        self.settings.retry = retry;
        self
    }

    /// Most HTTP POSTs of one session in progress at once (default 16).
    pub fn max_concurrent_requests(mut self, limit: usize) -> Self {
        self.settings.max_concurrent_requests = limit.max(1);
        self
    }

    /// A response or event stream that sends nothing for this long fails,
    /// which marks the session dead (default: none). Set it above the
    /// server's SSE keep-alive interval to detect silent network partitions.
    pub fn stream_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.stream_idle_timeout = timeout;
        self
    }

    /// How long an unused HTTP connection is kept for reuse (default 90 s).
    pub fn http_idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.http_idle_timeout = timeout;
        self
    }

    /// Trusts `certificate` (DER) as a root for `https://` servers, in
    /// addition to the platform's roots (with the `tls` feature; ignored
    /// without it).
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.settings.root_certificates.push(der.into());
        self
    }

    /// Builds the connector and its HTTP client: HTTP/1.1 with connection
    /// reuse and `TCP_NODELAY`, TLS (with the `tls` feature) by rustls with
    /// the platform's verifier, redirects followed only within the same
    /// origin (at most 5). Fails with [`Error::HttpClient`] if a root
    /// certificate is not valid DER.
    pub fn build(self) -> Result<McpConnector, Error> {
        let settings = self.settings;
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt.previous().first().is_some_and(|first| {
                first.scheme() == attempt.url().scheme()
                    && first.host_str() == attempt.url().host_str()
                    && first.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if same_origin && attempt.previous().len() <= 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let mut http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(settings.http_idle_timeout)
            .tcp_nodelay(true)
            .redirect(redirects);
        if let Some(idle) = settings.stream_idle_timeout {
            http = http.read_timeout(idle);
        }
        #[cfg(feature = "tls")]
        for der in &settings.root_certificates {
            let certificate = reqwest::Certificate::from_der(der)
                .map_err(|e| Error::HttpClient(format!("invalid root certificate: {e}")))?;
            http = http.add_root_certificate(certificate);
        }
        let http = http
            .build()
            .map_err(|e| Error::HttpClient(redact_urls(&e.to_string())))?;
        Ok(McpConnector {
            http,
            settings: Arc::new(settings),
        })
    }

    /// Builds a connector whose sessions speak HTTP through `http` instead
    /// of reqwest: a simulated network, a Unix socket, a proxy. Every
    /// session still goes through a [`HealthClient`] around `http`, so the
    /// pool sees the same health, and errors reported as [`HttpError`]
    /// classify exactly like reqwest's (a connect error is safe to retry,
    /// a broken exchange is not). The settings that configure reqwest itself
    /// (`connect_timeout`, `http_idle_timeout`, `stream_idle_timeout`, root
    /// certificates) are the plugged client's business and are ignored here.
    pub fn build_with_client<H>(self, http: H) -> McpConnector<H>
    where
        H: StreamableHttpClient<Error = HttpError> + Sync,
    {
        let mut settings = self.settings;
        settings.refuse_https = false;
        McpConnector {
            http,
            settings: Arc::new(settings),
        }
    }
}

/// A [`Connector`] of [`mcp_pool`] for rmcp client sessions over MCP
/// Streamable HTTP.
///
/// - `connect` runs the `initialize` handshake (under `initialize_timeout`)
///   with the key's headers, over one HTTP client shared by all sessions
///   (connections are reused), through a [`HealthClient`] that records every
///   sign of a dead transport in the session's [`Health`] cell.
/// - `is_closed` reads that cell, without I/O; `closed_notification` fires
///   when it goes dead (the session's event stream broke, a request met a
///   refused connection, HTTP 404 or 5xx, ...), so the pool poisons an idle
///   session before any caller gets it.
/// - `check` runs the [`CheckStep`] chain, each step under `check_timeout`.
/// - `classify` is [`Error::outcome`]; `classify_connect` is
///   [`Error::connect_failure`].
/// - `close` cancels the session under `close_timeout`, which sends DELETE.
///
/// Cloning is cheap and shares the HTTP client. `H` is the HTTP layer:
/// reqwest by default, or any client plugged in with
/// [`McpConnectorBuilder::build_with_client`].
#[derive(Clone)]
pub struct McpConnector<H = reqwest::Client> {
    http: H,
    settings: Arc<Settings>,
}

impl<H> fmt::Debug for McpConnector<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpConnector")
            .field("request_timeout", &self.settings.request_timeout)
            .field("check_chain", &self.settings.check_chain)
            .finish_non_exhaustive()
    }
}

impl McpConnector {
    /// Starts configuring a connector with the defaults listed on each
    /// setter of [`McpConnectorBuilder`].
    pub fn builder() -> McpConnectorBuilder {
        McpConnectorBuilder {
            settings: Settings::default(),
        }
    }

    /// A connector with the default settings.
    pub fn new() -> Result<McpConnector, Error> {
        McpConnector::builder().build()
    }
}

impl<H: StreamableHttpClient + Sync> McpConnector<H> {
    /// Opens a session for `key` outside any pool (the same as the pool's
    /// connect). The caller owns it; [`McpSession::close`] ends it.
    pub async fn open(&self, key: &SessionKey) -> Result<McpSession, Error> {
        let url = key.redacted_url();
        if self.settings.refuse_https && key.url().starts_with("https:") {
            return Err(Error::HttpClient(
                "https URLs need the `tls` feature of mcp-pool-rmcp".into(),
            ));
        }
        let span = tracing::debug_span!("mcp_connect", key = %key);
        async move {
            let health = Health::new();
            // rmcp is given the URL without credentials (it may print it);
            // the client sends every request to the real one.
            let client =
                HealthClient::new(self.http.clone(), health.clone()).with_endpoint(key.url());
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                .custom_headers(key.headers().clone())
                .reinit_on_expired_session(self.settings.reinit_on_expired_session)
                .max_concurrent_requests(self.settings.max_concurrent_requests);
            config.retry_config = Arc::new(self.settings.retry);
            let transport = StreamableHttpClientTransport::with_client(client, config);
            let after = self.settings.initialize_timeout;
            let running = match tokio::time::timeout(after, ().serve(transport)).await {
                Ok(Ok(running)) => running,
                Ok(Err(source)) => {
                    let error = Error::initialize(url, source, &health);
                    tracing::debug!(%error, failure = ?error.connect_failure(), "initialize failed");
                    return Err(error);
                }
                Err(_) => {
                    tracing::debug!(?after, "initialize timed out");
                    return Err(Error::InitializeTimedOut { url, after });
                }
            };
            let session = McpSession {
                running,
                health,
                settings: self.settings.clone(),
            };
            tracing::debug!(upstream_session = ?session.upstream_session_id().map(|id| short(&id)), "session open");
            Ok(session)
        }
        .instrument(span)
        .await
    }

    /// Runs the health check chain on `session` (see
    /// [`McpConnectorBuilder::check_chain`]). Fails at once, without I/O, if
    /// the transport is already dead.
    pub async fn check_session(&self, session: &McpSession) -> Result<(), Error> {
        let after = self.settings.check_timeout;
        let mut tried = Vec::new();
        for step in &self.settings.check_chain {
            let result = match step {
                CheckStep::Skip => return session.ensure_alive("health check"),
                CheckStep::Ping => session
                    .request_with_timeout(ClientRequest::PingRequest(PingRequest::default()), after)
                    .await
                    .map(drop),
                CheckStep::ListTools => session
                    .request_with_timeout(
                        ClientRequest::ListToolsRequest(ListToolsRequest::default()),
                        after,
                    )
                    .await
                    .map(drop),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.is_method_not_found() => tried.push(*step),
                Err(e) => {
                    return Err(Error::CheckFailed {
                        step: *step,
                        source: Box::new(e),
                    })
                }
            }
        }
        if tried.is_empty() {
            return session.ensure_alive("health check");
        }
        Err(Error::CheckUnsupported { tried })
    }
}

fn short(text: &str) -> String {
    shown_hash("upstream-session", text.as_bytes())
}

impl<H: StreamableHttpClient + Sync> Connector for McpConnector<H> {
    type Key = SessionKey;
    type Session = McpSession;
    type Error = Error;

    async fn connect(&self, key: &SessionKey) -> Result<McpSession, Error> {
        self.open(key).await
    }

    async fn check(&self, session: &McpSession) -> Result<(), Error> {
        self.check_session(session).await
    }

    fn is_closed(&self, session: &McpSession) -> bool {
        session.is_closed()
    }

    fn classify(&self, error: &Error) -> Outcome {
        error.outcome()
    }

    fn classify_connect(&self, error: &Error) -> ConnectFailure {
        error.connect_failure()
    }

    async fn close(&self, session: McpSession) {
        session.close().await;
    }

    fn closed_notification(
        &self,
        session: &McpSession,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        Some(session.health.dead())
    }

    fn abort(&self, session: &McpSession) {
        session.health.mark_dead("aborted by the pool");
        session.running.cancellation_token().cancel();
    }
}

/// How long a call whose transport just died waits for rmcp's own answer
/// (which tells a refused request from an interrupted one) before failing
/// with [`Error::TransportClosed`].
const DEAD_GRACE: Duration = Duration::from_millis(50);

/// The same wait when the server said it forgot the session: it answers
/// every request on it at once, so the call's own refusal (safe to retry) is
/// surely on its way through rmcp's worker; only a call the server accepted
/// before forgetting waits this long before failing as interrupted.
const LOST_GRACE: Duration = Duration::from_secs(2);

/// One open MCP client session: rmcp's [`RunningService`] over Streamable
/// HTTP plus the [`Health`] cell its HTTP client records into.
///
/// The request methods (`call_tool`, `ping`, `list_all_tools`, `request`)
/// each run under the connector's `request_timeout`, fail at once without
/// sending if the transport is already dead, and fail within a few
/// milliseconds if it dies while they wait (within 2 s when the server said
/// it forgot the session, to let their own refusals arrive), so no call
/// hangs on a dead server. A request the server refused because it forgot
/// the session fails with [`Error::SessionLost`]. Use [`McpSession::peer`]
/// for anything else (without those guarantees).
pub struct McpSession {
    running: RunningService<RoleClient, ()>,
    health: Health,
    settings: Arc<Settings>,
}

impl fmt::Debug for McpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSession")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl McpSession {
    /// Calls tool `params.name`. A tool that reports failure
    /// (`is_error: true`) is returned as [`Error::Tool`], an application
    /// error; any other result is `Ok`.
    pub async fn call_tool(&self, params: CallToolRequestParams) -> Result<CallToolResult, Error> {
        let tool = params.name.to_string();
        let result = self
            .guard(
                "tools/call",
                self.settings.request_timeout,
                self.running.call_tool(params),
            )
            .await?;
        if result.is_error == Some(true) {
            let message = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
                .collect::<Vec<_>>()
                .join("\n");
            return Err(Error::Tool {
                tool,
                message,
                result: Box::new(result),
            });
        }
        Ok(result)
    }

    /// Sends `ping`.
    pub async fn ping(&self) -> Result<(), Error> {
        self.request(ClientRequest::PingRequest(PingRequest::default()))
            .await
            .map(drop)
    }

    /// Lists every tool of the server (all pages).
    pub async fn list_all_tools(&self) -> Result<Vec<Tool>, Error> {
        self.guard(
            "tools/list",
            self.settings.request_timeout,
            self.running.list_all_tools(),
        )
        .await
    }

    /// Sends any client request and returns the server's result.
    pub async fn request(&self, request: ClientRequest) -> Result<ServerResult, Error> {
        self.request_with_timeout(request, self.settings.request_timeout)
            .await
    }

    async fn request_with_timeout(
        &self,
        request: ClientRequest,
        after: Duration,
    ) -> Result<ServerResult, Error> {
        let method = method_of(&request);
        // rmcp's own timeout cancels the request on the server; the guard's
        // (slightly later) is the backstop.
        let peer = self.running.peer();
        let send = async move {
            peer.send_request_with_option(request, PeerRequestOptions::with_timeout(after))
                .await?
                .await_response()
                .await
        };
        self.guard(method, after + Duration::from_millis(100), send)
            .await
    }

    /// Fails with [`Error::TransportClosed`] (not sent) if the transport is
    /// dead.
    fn ensure_alive(&self, method: &'static str) -> Result<(), Error> {
        if self.running.peer().is_transport_closed() {
            self.health.mark_dead("the rmcp service stopped");
        }
        match self.health.reason() {
            Some(reason) => Err(Error::TransportClosed {
                method,
                reason: reason.to_owned(),
                sent: false,
            }),
            None => Ok(()),
        }
    }

    async fn guard<T>(
        &self,
        method: &'static str,
        after: Duration,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, Error> {
        self.ensure_alive(method)?;
        let service = |source: ServiceError| match source {
            ServiceError::Timeout { timeout } => Error::TimedOut {
                method,
                after: timeout,
            },
            ServiceError::TransportSend(e)
                if matches!(
                    find_failure(e.error.as_ref()),
                    Some(StreamableHttpError::SessionExpired)
                ) =>
            {
                Error::SessionLost {
                    method,
                    said: self
                        .health
                        .lost()
                        .unwrap_or("HTTP 404 Not Found")
                        .to_owned(),
                }
            }
            source => Error::Service { method, source },
        };
        let request = std::pin::pin!(request);
        let timed = tokio::time::timeout(after, request);
        tokio::pin!(timed);
        let dead = self.health.dead();
        tokio::select! {
            biased;
            result = &mut timed => match result {
                Ok(result) => result.map_err(service),
                Err(_) => Err(Error::TimedOut { method, after }),
            },
            () = dead => {
                // rmcp's own answer, if it comes at once, is more precise
                // (a refused request is safe to retry, a broken one is not).
                let grace = match self.health.lost() {
                    Some(_) => LOST_GRACE,
                    None => DEAD_GRACE,
                };
                match tokio::time::timeout(grace, &mut timed).await {
                    Ok(Ok(result)) => result.map_err(service),
                    _ => Err(Error::TransportClosed {
                        method,
                        reason: self.health.reason().unwrap_or("unknown").to_owned(),
                        sent: true,
                    }),
                }
            }
        }
    }

    /// Whether the transport is known to be dead (no I/O): the health cell
    /// is dead, or rmcp's service loop has stopped.
    pub fn is_closed(&self) -> bool {
        self.health.is_dead() || self.running.peer().is_transport_closed()
    }

    /// Why the transport is considered dead, or `None` while it is alive.
    /// Never contains a header value.
    pub fn closed_reason(&self) -> Option<String> {
        self.health.reason().map(str::to_owned)
    }

    /// The session's health cell.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The `mcp-session-id` the server assigned (`None` for a server without
    /// sessions). Identifies the upstream session, for logs and tests.
    pub fn upstream_session_id(&self) -> Option<Arc<str>> {
        self.health.session_id()
    }

    /// The rmcp peer, for requests the methods above do not cover (those
    /// requests get no timeout from this crate).
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.running.peer()
    }

    /// The rmcp service.
    pub fn service(&self) -> &RunningService<RoleClient, ()> {
        &self.running
    }

    /// Ends the session: cancels it, which sends DELETE for a server-side
    /// session, waiting at most the connector's `close_timeout`. The health
    /// cell is dead afterwards.
    pub async fn close(self) {
        let after = self.settings.close_timeout;
        let health = self.health.clone();
        let mut running = self.running;
        match running.close_with_timeout(after).await {
            Ok(Some(_)) => {}
            Ok(None) => tracing::debug!(?after, "close timed out"),
            Err(e) => tracing::debug!(error = %e, "close failed"),
        }
        health.mark_dead("the session was closed");
    }
}

fn method_of(request: &ClientRequest) -> &'static str {
    match request {
        ClientRequest::PingRequest(_) => "ping",
        ClientRequest::ListToolsRequest(_) => "tools/list",
        ClientRequest::CallToolRequest(_) => "tools/call",
        ClientRequest::InitializeRequest(_) => "initialize",
        _ => "request",
    }
}
