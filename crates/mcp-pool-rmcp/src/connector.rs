//! The connector: its settings and builder, and the [`Connector`] the pool
//! drives (opening sessions is in `open.rs`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mcp_pool::{ConnectFailure, Connector, Outcome};
use rmcp::model::{
    ClientCapabilities, ClientRequest, ClientResult, ErrorData, ListToolsRequest, PingRequest,
    ServerNotification, ServerRequest,
};
use rmcp::transport::common::client_side_sse::SseRetryPolicy;
use rmcp::transport::streamable_http_client::StreamableHttpClient;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::cache::{CacheEvent, ResultCache};
use crate::era::EraBook;
use crate::events::Notices;
use crate::handler::{PoolClientHandler, ServerRequestHook};
use crate::redact::redact_urls;
use crate::{Era, EraPolicy, Error, HttpError, McpSession, SessionKey};

/// One step of the health check chain run by [`Connector::check`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckStep {
    /// The era's liveness round trip: `ping` on a legacy session;
    /// `server/discover` sent as a request (never answered from a cache) on
    /// a modern one, since 2026-07-28 has no `ping`.
    Ping,
    /// Send `server/discover` as a request (never answered from a cache),
    /// in any era (a legacy server answers -32601, which moves on).
    Discover,
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
            CheckStep::Discover => "server/discover",
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
pub(crate) struct Settings {
    pub(crate) connect_timeout: Duration,
    pub(crate) initialize_timeout: Duration,
    /// `None`: `initialize_timeout`.
    pub(crate) discover_timeout: Option<Duration>,
    pub(crate) request_timeout: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) check_chain: Vec<CheckStep>,
    pub(crate) close_timeout: Duration,
    pub(crate) reinit_on_expired_session: bool,
    pub(crate) retry: BoundedRetry,
    pub(crate) max_concurrent_requests: usize,
    /// `None`: `max_concurrent_requests`.
    pub(crate) shared_leases: Option<usize>,
    pub(crate) era: EraPolicy,
    pub(crate) cache_audit: bool,
    pub(crate) stream_idle_timeout: Option<Duration>,
    pub(crate) http_idle_timeout: Duration,
    pub(crate) root_certificates: Vec<Vec<u8>>,
    /// `https://` URLs cannot be served (reqwest without the `tls` feature).
    pub(crate) refuse_https: bool,
    /// The client service of every session (its server request hook).
    pub(crate) client: PoolClientHandler,
}

impl Settings {
    /// Longest wait for rmcp to resume a broken response stream from its
    /// last event id: every attempt of the reconnect policy, each after its
    /// wait and bounded by the connect timeout. A failed attempt ends the
    /// wait sooner.
    pub(crate) fn resume_window(&self) -> Duration {
        let attempts = u32::try_from(self.retry.max_times).unwrap_or(u32::MAX);
        (self.retry.interval + self.connect_timeout).saturating_mul(attempts)
    }

    /// Longest wait for a `server/discover` answer.
    pub(crate) fn discover_timeout(&self) -> Duration {
        self.discover_timeout.unwrap_or(self.initialize_timeout)
    }

    /// How many callers may share a session of `era`.
    pub(crate) fn leases_for(&self, era: Era) -> usize {
        if era.has_server_state() {
            1
        } else {
            self.shared_leases.unwrap_or(self.max_concurrent_requests)
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(5),
            initialize_timeout: Duration::from_secs(10),
            discover_timeout: None,
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
            shared_leases: None,
            era: EraPolicy::Auto,
            cache_audit: false,
            stream_idle_timeout: None,
            http_idle_timeout: Duration::from_secs(90),
            root_certificates: Vec::new(),
            refuse_https: !cfg!(feature = "tls"),
            client: PoolClientHandler::default(),
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

    /// Longest wait for the answer to the `server/discover` a connect sends
    /// (default: the `initialize_timeout`): to detect an origin's era, or to refresh a modern
    /// origin's result once its `ttlMs` ran out. A detection without an
    /// answer in time falls back to `initialize` (a legacy server may
    /// ignore the unknown method); a refresh fails the connect. A connect
    /// may take this plus `initialize_timeout`: keep both below the pool's
    /// `connect_timeout`.
    pub fn discover_timeout(mut self, timeout: Duration) -> Self {
        self.settings.discover_timeout = Some(timeout);
        self
    }

    /// Which protocol era to speak (default [`EraPolicy::Auto`]: detect each
    /// origin's era once and remember it; see the [crate
    /// docs](crate#protocol-eras)).
    pub fn era(mut self, policy: EraPolicy) -> Self {
        self.settings.era = policy;
        self
    }

    /// How many callers may share one session of a server without
    /// per-session state (modern and legacy stateless), reported to the pool
    /// by `max_leases` (default: `max_concurrent_requests`, 16). Sessions of
    /// a legacy stateful server are always exclusive; 1 makes every session
    /// exclusive.
    pub fn shared_leases(mut self, leases: usize) -> Self {
        self.settings.shared_leases = Some(leases.max(1));
        self
    }

    /// Records every result served from the connector's cache of
    /// `server/discover` and `tools/list` results, for checking invariant
    /// [`C1`](crate::invariants::C1) with [`McpConnector::cache_events`]
    /// (default off; it costs a lock and a small record per cache hit, and
    /// keeps the last 100,000).
    pub fn cache_audit(mut self, enable: bool) -> Self {
        self.settings.cache_audit = enable;
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

    /// The health check chain (default `ping`, `tools/list`, `skip`, which is
    /// `ping` → `tools/list` → skip on a legacy session and `server/discover`
    /// → `tools/list` → skip on a modern one; see [`CheckStep::Ping`]): steps
    /// run in order, each a real round trip that no cache answers; a "method not found" answer moves on to the next step,
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

    /// Answers the requests servers send the client (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`, custom methods) with `hook`, and
    /// declares `capabilities` to every server (in `initialize`, or in each
    /// 2026-07-28 request's `_meta`). Without a hook (the default) every
    /// such request is refused with JSON-RPC error -32601 "`METHOD` is not
    /// supported by this client", and no capability is declared. A
    /// server's `ping` is always answered. The hook does not answer a
    /// 2026-07-28 server's requests for input (MRTR): those are returned to
    /// the caller as [`Error::InputRequired`].
    pub fn on_server_request<F, Fut>(mut self, capabilities: ClientCapabilities, hook: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ClientResult, ErrorData>> + Send + 'static,
    {
        let hook: ServerRequestHook = Arc::new(move |request| Box::pin(hook(request)));
        self.settings.client = PoolClientHandler::new(Some(hook), capabilities);
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
        Ok(McpConnector::with_settings(http, settings))
    }

    /// Builds a connector whose sessions speak HTTP through `http` instead
    /// of reqwest: a simulated network, a Unix socket, a proxy. Every
    /// session still goes through a [`HealthClient`](crate::HealthClient) around `http`, so the
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
        McpConnector::with_settings(http, settings)
    }
}

/// A [`Connector`] of [`mcp_pool`] for rmcp client sessions over MCP
/// Streamable HTTP, in every protocol era.
///
/// - `connect` opens a session in the origin's era (detected once per
///   origin, see the [crate docs](crate#protocol-eras)): the `initialize`
///   handshake (legacy, under `initialize_timeout`), or an rmcp client
///   without handshake on the origin's `server/discover` result (modern: no
///   I/O while a result this key may be served is fresh, else one
///   `server/discover` under `discover_timeout`). Every session sends the
///   key's headers over one HTTP client shared by all sessions
///   (connections are reused), through a [`HealthClient`](crate::HealthClient)
///   that records every sign of a dead transport in the session's
///   [`Health`](crate::Health) cell.
/// - `max_leases` is 1 for a legacy stateful session and
///   [`McpConnectorBuilder::shared_leases`] for the others; `key_labels`
///   are the origin's `era` and `protocol_version`.
/// - `is_closed` reads that cell, without I/O; `closed_notification` fires
///   when it goes dead (the session's event stream broke, a request met a
///   refused connection, HTTP 404 or 5xx, ...), so the pool poisons an idle
///   session before any caller gets it.
/// - `check` runs the [`CheckStep`] chain, each step under `check_timeout`.
/// - `classify` is [`Error::outcome`]; `classify_connect` is
///   [`Error::connect_failure`].
/// - `close` cancels the session under `close_timeout`, which sends DELETE.
///
/// Cloning is cheap and shares the HTTP client, the eras detected and the
/// result cache. `H` is the HTTP layer: reqwest by default, or any client
/// plugged in with [`McpConnectorBuilder::build_with_client`].
#[derive(Clone)]
pub struct McpConnector<H = reqwest::Client> {
    pub(crate) http: H,
    pub(crate) settings: Arc<Settings>,
    pub(crate) eras: Arc<EraBook>,
    pub(crate) cache: Arc<ResultCache>,
    pub(crate) notices: Arc<Notices>,
}

impl<H> fmt::Debug for McpConnector<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpConnector")
            .field("era", &self.settings.era)
            .field("request_timeout", &self.settings.request_timeout)
            .field("check_chain", &self.settings.check_chain)
            .finish_non_exhaustive()
    }
}

impl<H> McpConnector<H> {
    fn with_settings(http: H, settings: Settings) -> McpConnector<H> {
        McpConnector {
            http,
            cache: Arc::new(ResultCache::new(settings.cache_audit)),
            settings: Arc::new(settings),
            eras: Arc::default(),
            notices: Arc::default(),
        }
    }

    /// Sends every server notification that belongs to no call, from any
    /// session of `key` (open now or later), to the returned receiver (see
    /// the [crate docs](crate#call-events)): list changes, resource updates,
    /// log lines and progress on a session's event stream that no call in
    /// flight claims. Replaces an earlier subscriber of the key. While a key
    /// has no subscriber (or its receiver is closed), such notifications
    /// are dropped and counted by [`McpConnector::dropped_notifications`].
    pub fn subscribe(&self, key: &SessionKey) -> UnboundedReceiver<ServerNotification> {
        let (to, from) = tokio::sync::mpsc::unbounded_channel();
        self.notices.subscribe(key, to);
        from
    }

    /// Removes the subscriber of `key`, if any.
    pub fn unsubscribe(&self, key: &SessionKey) {
        self.notices.unsubscribe(key);
    }

    /// How many server notifications that belong to no call reached no
    /// subscriber, over all keys, since the connector was built.
    pub fn dropped_notifications(&self) -> u64 {
        self.notices.dropped()
    }

    /// The era and protocol version last detected for the origin of `url`
    /// (scheme, host, port and path), or `None` while unknown (never
    /// connected, or detected again on the next connect).
    pub fn era_of(&self, url: &str) -> Option<(Era, rmcp::model::ProtocolVersion)> {
        self.eras
            .record(url)
            .map(|record| (record.era, record.protocol_version))
    }

    /// Every result served from the result cache so far, oldest first, when
    /// [`McpConnectorBuilder::cache_audit`] is on (else empty). An oracle of
    /// invariant [`C1`](crate::invariants::C1) asserts that none
    /// [crosses identities](CacheEvent::crosses_identities).
    pub fn cache_events(&self) -> Vec<CacheEvent> {
        self.cache.events()
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
    /// Runs the health check chain on `session` (see
    /// [`McpConnectorBuilder::check_chain`]). Fails at once, without I/O, if
    /// the transport is already dead.
    pub async fn check_session(&self, session: &McpSession) -> Result<(), Error> {
        let after = self.settings.check_timeout;
        let mut tried = Vec::new();
        for step in &self.settings.check_chain {
            let result = match step {
                CheckStep::Skip => return session.ensure_alive("health check"),
                CheckStep::Ping if session.era().is_modern() => {
                    session.discover_uncached(after).await.map(drop)
                }
                CheckStep::Discover => session.discover_uncached(after).await.map(drop),
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

    fn max_leases(&self, session: &McpSession) -> Option<usize> {
        Some(self.settings.leases_for(session.era()))
    }

    fn key_labels(&self, key: &SessionKey) -> Vec<(&'static str, String)> {
        match self.eras.record(key.url()) {
            Some(record) => vec![
                ("era", record.era.name().to_owned()),
                ("protocol_version", record.protocol_version.to_string()),
            ],
            None => vec![("era", "unknown".to_owned())],
        }
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
