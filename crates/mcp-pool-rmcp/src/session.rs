//! One pooled MCP session: rmcp's client, its health cell, its era, and the
//! guarded request methods callers use.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CacheScope, CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotification,
    CancelledNotificationParam, ClientRequest, DiscoverRequest, DiscoverRequestParams,
    DiscoverResult, ListToolsRequest, MetaObject, PaginatedRequestParams, PingRequest,
    ProtocolVersion, RequestId, ServerResult, Tool,
};
use rmcp::service::{PeerRequestOptions, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use rmcp::{Peer, RoleClient, ServiceError};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::error::Elapsed;
use tokio::time::Instant;

use crate::cache::{CachedResult, ResultCache, Value};
use crate::connector::Settings;
use crate::detect::{http_asks_for_session, refuses_era, said};
use crate::era::EraWatch;
use crate::events::{CallEvent, Router};
use crate::handler::PoolClientHandler;
use crate::health::OwnStream;
use crate::http::find_failure;
use crate::{Era, Error, Health, Identity};

/// How long a call whose transport just died waits for rmcp's own answer
/// (which tells a refused request from an interrupted one) before failing
/// with [`Error::TransportClosed`].
const DEAD_GRACE: Duration = Duration::from_millis(50);

/// How long a call waits, once the server said it forgot the session or
/// refused a request as one of another era, for its own refusal (safe to
/// retry) or its acceptance (a response stream, where it waits for its
/// answer): the server answers every request on the session at once, so
/// either is surely on its way; a call with neither by then fails as
/// interrupted.
const REFUSED_GRACE: Duration = Duration::from_secs(2);

/// The whole list of tools, with its cache hint.
struct ToolPages {
    tools: Vec<Tool>,
    ttl_ms: Option<u64>,
    cache_scope: Option<CacheScope>,
}

/// One open MCP client session: rmcp's [`RunningService`] over Streamable
/// HTTP, the [`Health`] cell its HTTP client records into, and the
/// protocol [`Era`] it was opened in.
///
/// A legacy session is an initialized rmcp client (with a server-side
/// session when [`Era::LegacyStateful`]). A modern session is an rmcp client
/// started without a handshake ([`rmcp::service::serve_directly`]) on the
/// origin's `server/discover` result; every request carries its own
/// `_meta`, and it holds no server-side state.
///
/// The request methods (`call_tool`, `ping`, `discover`, `list_all_tools`,
/// `request`) each run under the connector's `request_timeout` and fail at
/// once without sending if the transport is already dead. While they wait:
/// - a failed request (HTTP 5xx, a refused connection), a broken event
///   stream, or another call's broken response stream retires the session
///   but cuts no call short: a call already sent waits for the answer on
///   its own exchange, which fails too if the server died;
/// - a call's own broken response stream on a stateful session lets rmcp
///   resume it from its last event id (the answer may come there), and
///   fails the call within a few milliseconds of the first failed attempt
///   (or once every attempt of the connector's reconnect policy could
///   have run). Without event ids (a stateless or modern session) rmcp
///   fails such a call itself. Each page of `list_all_tools` is a call of
///   its own here;
/// - a session aborted by the pool, closed, or whose rmcp service stopped
///   fails them within a few milliseconds;
/// - a server that said it forgot the session, or refused the session's
///   era, fails within 2 s the calls it had not accepted (their own
///   refusals arrive first); a call it had accepted (its response stream
///   open) waits for its answer there, as above.
///
/// A request the server refused because it forgot the session fails with
/// [`Error::SessionLost`]; one it refused as of another era, with
/// [`Error::EraChanged`]. Use [`McpSession::peer`] for anything else
/// (without those guarantees).
pub struct McpSession {
    pub(crate) running: RunningService<RoleClient, PoolClientHandler>,
    pub(crate) health: Health,
    pub(crate) settings: Arc<Settings>,
    pub(crate) era: Era,
    pub(crate) protocol_version: ProtocolVersion,
    /// Where to report that the era stopped holding (`None` when the era is
    /// forced).
    pub(crate) watch: Option<EraWatch>,
    pub(crate) cache: Arc<ResultCache>,
    /// The key's URL: the cache's endpoint.
    pub(crate) endpoint: Arc<str>,
    pub(crate) identity: Identity,
    /// Where the server's messages about this session's calls go.
    pub(crate) router: Arc<Router>,
}

impl fmt::Debug for McpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSession")
            .field("era", &self.era)
            .field("protocol_version", &self.protocol_version)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

fn discover_request() -> ClientRequest {
    ClientRequest::DiscoverRequest(DiscoverRequest::new(DiscoverRequestParams {}))
}

impl McpSession {
    /// Calls tool `params.name`. A tool that reports failure
    /// (`is_error: true`) is returned as [`Error::Tool`], an application
    /// error; a 2026-07-28 server's request for input (MRTR) as
    /// [`Error::InputRequired`], untouched; any other result is `Ok`. The
    /// server's messages about the call are not delivered (see
    /// [`McpSession::call_tool_with_events`]).
    pub async fn call_tool(&self, params: CallToolRequestParams) -> Result<CallToolResult, Error> {
        let tool = params.name.to_string();
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let result = self.request(request).await?;
        tool_result(tool, result)
    }

    /// Like [`McpSession::call_tool`], with every event of this call sent
    /// to `events` as it arrives, before the result: its progress, the log
    /// lines the server sends on its response stream, and its cancellation
    /// by the server (see the [crate docs](crate#call-events)). The request
    /// carries a progress token of the session's own, unique among its
    /// calls in flight, in place of any in `params`' `_meta`; the events
    /// carry none. A closed receiver is not an error: the call goes on.
    pub async fn call_tool_with_events(
        &self,
        params: CallToolRequestParams,
        events: UnboundedSender<CallEvent>,
    ) -> Result<CallToolResult, Error> {
        let tool = params.name.to_string();
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let result = self.request_with_events(request, events).await?;
        tool_result(tool, result)
    }

    /// Like [`McpSession::request`], with the events of this request sent to
    /// `events` as they arrive, before the result, as
    /// [`McpSession::call_tool_with_events`] does.
    pub async fn request_with_events(
        &self,
        mut request: ClientRequest,
        events: UnboundedSender<CallEvent>,
    ) -> Result<ServerResult, Error> {
        let _registration = self.router.register(&mut request, events);
        self.request(request).await
    }

    /// Sends `ping` (legacy sessions; 2026-07-28 has no `ping`, and a modern
    /// server answers it with -32601 method not found).
    pub async fn ping(&self) -> Result<(), Error> {
        self.request(ClientRequest::PingRequest(PingRequest::default()))
            .await
            .map(drop)
    }

    /// The server's `server/discover` result: from the connector's cache
    /// while a result this session's identity may be served is fresh (see
    /// [`C1`](crate::invariants::C1)), else asked of the server and cached
    /// for its `ttlMs` under its `cacheScope`. On a legacy session the
    /// request is sent as it is (a legacy server refuses it with -32601).
    pub async fn discover(&self) -> Result<DiscoverResult, Error> {
        if let Some(Value::Discover(result)) =
            self.cache
                .get(&self.endpoint, self.identity, CachedResult::Discover)
        {
            return Ok(*result);
        }
        let result = self
            .discover_uncached(self.settings.request_timeout)
            .await?;
        self.cache_discover(&result);
        Ok(result)
    }

    /// Sends `server/discover` (never answered from a cache).
    pub(crate) async fn discover_uncached(&self, after: Duration) -> Result<DiscoverResult, Error> {
        match self.request_with_timeout(discover_request(), after).await? {
            ServerResult::DiscoverResult(result) => Ok(result),
            _ => Err(Error::Service {
                method: "server/discover",
                source: ServiceError::UnexpectedResponse,
            }),
        }
    }

    pub(crate) fn cache_discover(&self, result: &DiscoverResult) {
        self.cache.put(
            &self.endpoint,
            self.identity,
            CachedResult::Discover,
            Value::Discover(Box::new(result.clone())),
            Some(result.ttl_ms),
            Some(result.cache_scope),
        );
    }

    /// Lists every tool of the server (all pages): from the connector's
    /// cache while a list this session's identity may be served is fresh,
    /// else asked of the server and cached for the earliest `ttlMs` of its
    /// pages, `private` if any page is private or lacks a scope (legacy
    /// servers send no `ttlMs`: their lists are not cached). A server whose
    /// pages loop (a `nextCursor` it already sent in this listing) ends it
    /// with [`Error::PagesLoop`] as soon as the cursor comes back.
    pub async fn list_all_tools(&self) -> Result<Vec<Tool>, Error> {
        if let Some(Value::Tools(tools)) =
            self.cache
                .get(&self.endpoint, self.identity, CachedResult::ToolsList)
        {
            return Ok(tools);
        }
        let list = self.list_tool_pages().await?;
        self.cache.put(
            &self.endpoint,
            self.identity,
            CachedResult::ToolsList,
            Value::Tools(list.tools.clone()),
            list.ttl_ms,
            list.cache_scope,
        );
        Ok(list.tools)
    }

    /// Every page of `tools/list`, from the first to the one without a
    /// `nextCursor`, each page a request of its own (as
    /// [`McpSession::request`] sends one, so a page waits on its own
    /// response stream), all within one request timeout. The cache hint is
    /// the whole list's, merged as rmcp merges one: the earliest page's
    /// expiry (none if a page has none), `private` if a page is, no scope if
    /// a page has none. A cursor sent a second time ends it
    /// ([`Error::PagesLoop`]).
    async fn list_tool_pages(&self) -> Result<ToolPages, Error> {
        const METHOD: &str = "tools/list";
        let timeout = self.settings.request_timeout;
        let started = Instant::now();
        let mut tools = Vec::new();
        let mut cursor = None;
        // Every cursor the server sent in this listing: one sent again
        // means its pages loop.
        let mut sent = std::collections::HashSet::new();
        let mut hint: Option<(Option<Instant>, Option<CacheScope>)> = None;
        // The listing's timeout, whichever page it passed in.
        let timed_out = || Error::TimedOut {
            method: METHOD,
            after: timeout,
        };
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(timed_out());
            }
            let params = PaginatedRequestParams::default().with_cursor(cursor.take());
            let request = ClientRequest::ListToolsRequest(ListToolsRequest::with_param(params));
            // A page that times out ends the listing within its timeout,
            // which is what the error names.
            let answer = self.request_with_timeout(request, left).await;
            let ServerResult::ListToolsResult(page) = answer.map_err(|e| match e {
                Error::TimedOut { .. } => timed_out(),
                e => e,
            })?
            else {
                return Err(unexpected(METHOD));
            };
            let expires = page
                .ttl_ms
                .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
            hint = Some(match hint {
                None => (expires, page.cache_scope),
                Some((merged, scope)) => (
                    merged.zip(expires).map(|(a, b)| a.min(b)),
                    match (scope, page.cache_scope) {
                        (Some(CacheScope::Private), _) | (_, Some(CacheScope::Private)) => {
                            Some(CacheScope::Private)
                        }
                        (Some(CacheScope::Public), Some(CacheScope::Public)) => {
                            Some(CacheScope::Public)
                        }
                        _ => None,
                    },
                ),
            });
            tools.extend(page.tools);
            match page.next_cursor {
                Some(next) if !sent.insert(next.clone()) => {
                    return Err(Error::PagesLoop {
                        method: METHOD,
                        cursor: next,
                    })
                }
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let (expires, cache_scope) = hint.unwrap_or_default();
        Ok(ToolPages {
            tools,
            ttl_ms: expires.map(|at| {
                let left = at.saturating_duration_since(Instant::now());
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
            }),
            cache_scope,
        })
    }

    /// Sends any client request and returns the server's result.
    pub async fn request(&self, request: ClientRequest) -> Result<ServerResult, Error> {
        self.request_with_timeout(request, self.settings.request_timeout)
            .await
    }

    pub(crate) async fn request_with_timeout(
        &self,
        request: ClientRequest,
        after: Duration,
    ) -> Result<ServerResult, Error> {
        let method = method_of(&request);
        // rmcp's own timeout cancels the request on the server; the guard's
        // (slightly later) is the backstop.
        let peer = self.running.peer();
        // `initialize` and `server/discover` are never cancelled.
        let cancellable = !matches!(
            request,
            ClientRequest::InitializeRequest(_) | ClientRequest::DiscoverRequest(_)
        );
        let own = self.health.own_stream();
        let send = async {
            let handle = peer
                .send_request_with_option(request, PeerRequestOptions::with_timeout(after))
                .await?;
            own.bind(&handle.id);
            let mut abandoned = AbandonedRequest {
                peer: cancellable.then(|| peer.clone()),
                id: handle.id.clone(),
            };
            let result = handle.await_response().await;
            abandoned.peer = None;
            result
        };
        self.guard(method, after + Duration::from_millis(100), send, &own)
            .await
    }

    /// Fails with [`Error::TransportClosed`] (not sent) if the transport is
    /// dead.
    pub(crate) fn ensure_alive(&self, method: &'static str) -> Result<(), Error> {
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

    /// The server refused `method` as a request of another era: the session
    /// is dead, the origin's era is detected again, and this endpoint's
    /// cached results are dropped.
    fn era_refused(&self, method: &'static str, said: String) -> Error {
        self.health.mark_era_refused(&said);
        if let Some(watch) = &self.watch {
            watch.failed(&format!("`{method}` refused: {said}"));
        }
        self.cache.forget_endpoint(&self.endpoint);
        Error::EraChanged {
            method,
            era: self.era,
            said: self.health.era_refusal().unwrap_or(&said).to_owned(),
        }
    }

    fn service_error(&self, method: &'static str, source: ServiceError) -> Error {
        match source {
            ServiceError::Timeout { timeout } => Error::TimedOut {
                method,
                after: timeout,
            },
            ServiceError::McpError(data) if refuses_era(self.era, method, &data) => {
                self.era_refused(method, said(&data))
            }
            ServiceError::TransportSend(e) => {
                let failure = find_failure(e.error.as_ref());
                if matches!(failure, Some(StreamableHttpError::SessionExpired)) {
                    return Error::SessionLost {
                        method,
                        said: self
                            .health
                            .lost()
                            .unwrap_or("HTTP 404 Not Found")
                            .to_owned(),
                    };
                }
                let refused = failure
                    .filter(|_| !self.era.has_server_state())
                    .and_then(http_asks_for_session);
                match refused {
                    Some(words) => self.era_refused(method, words),
                    None => Error::Service {
                        method,
                        source: ServiceError::TransportSend(e),
                    },
                }
            }
            source => Error::Service { method, source },
        }
    }

    /// Runs `request` (one call, whose exchange `own` watches) under the
    /// timeout `after` and the cuts [`McpSession`] lists.
    pub(crate) async fn guard<T>(
        &self,
        method: &'static str,
        after: Duration,
        request: impl Future<Output = Result<T, ServiceError>>,
        own: &OwnStream,
    ) -> Result<T, Error> {
        self.ensure_alive(method)?;
        let request = std::pin::pin!(request);
        let timed = tokio::time::timeout(after, request);
        tokio::pin!(timed);
        // A failed request, a broken event stream, or another call's broken
        // response stream does not cut the call short: its answer comes on
        // its own exchange.
        let answer = |result: Result<Result<T, ServiceError>, Elapsed>| match result {
            Ok(result) => result.map_err(|e| self.service_error(method, e)),
            Err(_) => Err(Error::TimedOut { method, after }),
        };
        let calls_cut = self.health.calls_cut();
        tokio::pin!(calls_cut);
        let own_cut = own.broke();
        tokio::pin!(own_cut);
        let refused = self.health.refused();
        tokio::pin!(refused);
        // Whether the server accepted the request before it said it forgot
        // the session (or refused its era).
        let mut accepted = false;
        loop {
            tokio::select! {
                biased;
                result = &mut timed => return answer(result),
                () = &mut calls_cut => return self.cut_short(method, &mut timed).await,
                () = &mut own_cut => {
                    // rmcp resumes the stream from its last event id, as a
                    // live server behind a proxy that cut it allows: the
                    // answer may still come, unless an attempt fails, the
                    // session dies, or rmcp's attempts run out.
                    tokio::select! {
                        biased;
                        result = &mut timed => return answer(result),
                        () = &mut calls_cut => {}
                        () = self.health.resume_failed() => {}
                        () = tokio::time::sleep(self.settings.resume_window()) => {}
                    }
                    return self.cut_short(method, &mut timed).await;
                }
                () = &mut refused, if !accepted => {
                    // A request the server had not accepted gets its own
                    // refusal at once (safe to retry). One it accepted goes
                    // on, on its own stream: a server whose load balancer
                    // lost the session's route still streams the calls it
                    // took.
                    tokio::select! {
                        biased;
                        result = &mut timed => return answer(result),
                        () = own.accepted() => accepted = true,
                        () = tokio::time::sleep(REFUSED_GRACE) => {
                            return Err(self.interrupted(method));
                        }
                    }
                }
            }
        }
    }

    /// The end of a call cut short: rmcp's own answer if it comes within
    /// [`DEAD_GRACE`] (it is more precise: a refused request is safe to
    /// retry, a broken one is not), else [`Error::TransportClosed`] (sent).
    async fn cut_short<T>(
        &self,
        method: &'static str,
        timed: impl Future<Output = Result<Result<T, ServiceError>, Elapsed>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(DEAD_GRACE, timed).await {
            Ok(Ok(result)) => result.map_err(|e| self.service_error(method, e)),
            _ => Err(self.interrupted(method)),
        }
    }

    /// A call that was sent and got no answer: [`Error::TransportClosed`].
    fn interrupted(&self, method: &'static str) -> Error {
        Error::TransportClosed {
            method,
            reason: self.health.reason().unwrap_or("unknown").to_owned(),
            sent: true,
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

    /// The protocol era the session was opened in.
    pub fn era(&self) -> Era {
        self.era
    }

    /// The protocol version the session speaks: the one `initialize`
    /// agreed on (legacy), or the one every request's `_meta` carries
    /// (modern, 2026-07-28).
    pub fn protocol_version(&self) -> &ProtocolVersion {
        &self.protocol_version
    }

    /// The `mcp-session-id` the server assigned (`None` for a server without
    /// sessions, and for every modern session). Identifies the upstream
    /// session, for logs and tests.
    pub fn upstream_session_id(&self) -> Option<Arc<str>> {
        self.health.session_id()
    }

    /// The rmcp peer, for requests the methods above do not cover (those
    /// requests get no timeout from this crate).
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.running.peer()
    }

    /// The rmcp service.
    pub fn service(&self) -> &RunningService<RoleClient, PoolClientHandler> {
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

/// Tells the server a request was given up (`notifications/cancelled`) when
/// dropped while `peer` is set: the caller dropped the call's future.
struct AbandonedRequest {
    peer: Option<Peer<RoleClient>>,
    id: RequestId,
}

impl Drop for AbandonedRequest {
    fn drop(&mut self) {
        let (Some(peer), Ok(runtime)) = (self.peer.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let notice = CancelledNotification::new(CancelledNotificationParam::new(
            Some(self.id.clone()),
            Some("the caller gave up the request".to_owned()),
        ));
        runtime.spawn(async move {
            let _ = peer.send_notification(notice.into()).await;
        });
    }
}

/// A `tools/call` answer as the result of tool `tool`: a tool error as
/// [`Error::Tool`], a request for input as [`Error::InputRequired`], an
/// answer without content (as rmcp's own `call_tool` accepts it) as an
/// empty result.
fn tool_result(tool: String, result: ServerResult) -> Result<CallToolResult, Error> {
    let result = match result {
        ServerResult::CallToolResult(result) => result,
        ServerResult::InputRequiredResult(result) => {
            return Err(Error::InputRequired {
                method: "tools/call",
                result: Box::new(result),
            })
        }
        ServerResult::EmptyResult(_) => CallToolResult::default(),
        ServerResult::CustomResult(custom) => match custom.0 {
            serde_json::Value::Object(mut fields) if fields.len() == 1 => {
                let meta = fields
                    .remove("_meta")
                    .map(serde_json::from_value::<MetaObject>);
                match meta {
                    Some(Ok(meta)) => {
                        let mut result = CallToolResult::default();
                        result.meta = Some(meta);
                        result
                    }
                    _ => return Err(unexpected("tools/call")),
                }
            }
            _ => return Err(unexpected("tools/call")),
        },
        _ => return Err(unexpected("tools/call")),
    };
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

fn unexpected(method: &'static str) -> Error {
    Error::Service {
        method,
        source: ServiceError::UnexpectedResponse,
    }
}

pub(crate) fn method_of(request: &ClientRequest) -> &'static str {
    match request {
        ClientRequest::PingRequest(_) => "ping",
        ClientRequest::ListToolsRequest(_) => "tools/list",
        ClientRequest::CallToolRequest(_) => "tools/call",
        ClientRequest::InitializeRequest(_) => "initialize",
        ClientRequest::DiscoverRequest(_) => "server/discover",
        _ => "request",
    }
}
