//! Forwarding one downstream request upstream, through the pool: the key it
//! runs under, the retry of requests the upstream provably never took, the
//! downstream cancellation, the events of the call relayed to the
//! downstream caller, and the JSON-RPC error a failure becomes.
// rmcp marks logging deprecated (SEP-2577); 2026-07-28 still carries
// `notifications/message`, and servers of every era send it.
#![allow(deprecated)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::request::Parts;
use mcp_pool::{Connector, RunError};
use mcp_pool_rmcp::CallEvent;
use mcp_pool_rmcp::{Era, Error, SessionKey};
use rmcp::model::{
    ClientRequest, ErrorData, ListToolsResult, LoggingLevel, ProgressNotificationParam, ResultType,
    ServerResult,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServiceError};
use serde_json::json;
use tokio_util::task::TaskTracker;

use super::args::Affinity;
use super::metrics::{Exporter, Upstream};
use super::upstreams::{Failed, Upstreams};
use crate::calls::EraTally;

/// One upstream as the gateway serves it.
#[derive(Clone, Debug)]
pub struct Route {
    /// The name in `/mcp/NAME`.
    pub name: Arc<str>,
    /// The upstream's MCP endpoint.
    pub url: Arc<str>,
}

/// What a downstream request asks of the upstream.
#[derive(Clone, Debug)]
pub enum Forward {
    /// `tools/list` without a cursor: every page, from the connector's
    /// identity-keyed cache while the upstream's `ttlMs` allows.
    ListAllTools,
    /// Any other request, sent as it is (its `_meta` removed: the upstream
    /// request gets the gateway's own).
    Request(Box<ClientRequest>),
}

impl Forward {
    /// Forwards `request` as it is.
    pub fn request(request: ClientRequest) -> Forward {
        Forward::Request(Box::new(request))
    }

    /// The MCP method, for logs and metrics.
    pub fn method(&self) -> &'static str {
        match self {
            Forward::ListAllTools => "tools/list",
            Forward::Request(request) => method_name(request),
        }
    }
}

fn method_name(request: &ClientRequest) -> &'static str {
    match request {
        ClientRequest::ListToolsRequest(_) => "tools/list",
        ClientRequest::CallToolRequest(_) => "tools/call",
        ClientRequest::ListResourcesRequest(_) => "resources/list",
        ClientRequest::ReadResourceRequest(_) => "resources/read",
        ClientRequest::ListPromptsRequest(_) => "prompts/list",
        ClientRequest::GetPromptRequest(_) => "prompts/get",
        _ => "other",
    }
}

/// What every forwarded request shares: the one pool, the exporter, the
/// key policy and the drain.
pub struct Shared {
    /// Where upstream sessions come from: the one pool, all upstreams and
    /// identities in it.
    pub upstreams: Upstreams,
    /// The protocol era and version of the upstream sessions requests ran
    /// on, counted per request.
    pub eras: EraTally,
    /// The `/metrics` recorder.
    pub exporter: Exporter,
    /// Identity headers, lower case.
    pub identity_headers: Vec<String>,
    /// Who shares sessions of legacy stateful upstreams.
    pub affinity: Affinity,
    /// Requests in flight; closed when the gateway drains.
    pub in_flight: TaskTracker,
}

impl Shared {
    /// The pool key of a request from a downstream caller with HTTP request
    /// `parts` to `route`: the upstream URL, the caller's identity headers
    /// (forwarded upstream), and, under [`Affinity::PerSession`], the
    /// downstream `Mcp-Session-Id` when the upstream keeps sessions or its
    /// era is not known yet (the first requests of a gateway's life).
    pub fn key(&self, route: &Route, parts: Option<&Parts>) -> Result<SessionKey, ErrorData> {
        let mut builder =
            SessionKey::builder(route.url.as_ref()).identity_headers(&self.identity_headers);
        if let Some(parts) = parts {
            builder = builder.headers(&parts.headers);
            let stateful = match self.upstreams.connector().inner().era_of(&route.url) {
                None => true,
                Some((era, _)) => era == Era::LegacyStateful,
            };
            if stateful && self.affinity == Affinity::PerSession {
                builder = builder.affinity_from(&parts.headers);
            }
        }
        builder.build().map_err(|e| {
            ErrorData::invalid_request(
                format!("upstream `{}`: {e}", route.name),
                Some(json!({ "upstream": &*route.name })),
            )
        })
    }

    /// Forwards `forward` to `route` for the downstream request `ctx`: on a
    /// pooled session of the caller's key, again on another session while
    /// it fails in a way the upstream provably never accepted (at most
    /// `max_sessions_per_key` more times), until the downstream caller
    /// cancels. The upstream's result passes through unchanged (a tool's
    /// `isError: true` result included); the upstream's JSON-RPC error too;
    /// any other failure becomes a JSON-RPC error naming the upstream and
    /// what happened.
    ///
    /// The upstream's messages about this call reach this downstream
    /// request only, before its result: progress re-labelled with the
    /// downstream request's own progress token (dropped if it sent none),
    /// log lines through the downstream peer: for a 2026-07-28 request,
    /// only those at or above the level its `_meta` opts in to
    /// (`io.modelcontextprotocol/logLevel`; none without it); for a legacy
    /// one, those at `min_level` (the session's `logging/setLevel`) or
    /// above, all when `None`.
    ///
    /// A result of a legacy upstream is marked `resultType: complete`, as
    /// 2026-07-28 requires (rmcp removes it again for legacy downstream
    /// peers).
    pub async fn forward(
        &self,
        route: &Route,
        ctx: &RequestContext<RoleServer>,
        forward: Forward,
        min_level: Option<LoggingLevel>,
    ) -> Result<ServerResult, ErrorData> {
        let method = forward.method();
        if self.in_flight.is_closed() {
            self.exporter
                .count_request(&route.name, method, "refused_draining");
            return Err(ErrorData::internal_error(
                format!(
                    "upstream `{}`: the gateway is shutting down and takes no new requests",
                    route.name
                ),
                Some(json!({ "upstream": &*route.name })),
            ));
        }
        let _in_flight = self.in_flight.token();
        let key = self.key(route, ctx.extensions.get::<Parts>())?;
        let relay = Relay { ctx, min_level };
        let call = run(&self.upstreams, &key, &self.eras, &relay, &forward);
        let result = tokio::select! {
            result = call => result,
            () = ctx.ct.cancelled() => {
                tracing::debug!(upstream = %route.name, method, "cancelled by the downstream caller");
                self.exporter.count_request(&route.name, method, "cancelled");
                return Err(ErrorData::internal_error(
                    format!("upstream `{}`: `{method}` was cancelled by the caller", route.name),
                    None,
                ));
            }
        };
        let outcome = match &result {
            Ok(ServerResult::CallToolResult(r)) if r.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(Failed::Call(Error::Service {
                source: ServiceError::McpError(_),
                ..
            })) => "upstream_error",
            Err(_) => "failed",
        };
        self.exporter.count_request(&route.name, method, outcome);
        result
            .map(mark_complete)
            .map_err(|e| to_jsonrpc(route, method, e))
    }
}

/// Runs `forward` on a session of `key`, counting the session's era in
/// `eras`; with mcp-pool, again on another session while it fails in a way
/// the upstream provably never accepted, at most `max_sessions_per_key`
/// more times (as [`mcp_pool_rmcp::run_with_retry`]). The naive pool and a
/// session per request run it once, as the gateways without mcp-pool did.
async fn run(
    upstreams: &Upstreams,
    key: &SessionKey,
    eras: &EraTally,
    relay: &Relay<'_>,
    forward: &Forward,
) -> Result<ServerResult, Failed> {
    match upstreams {
        Upstreams::Pool(pool) => {
            let mut retries = pool.config().max_sessions_per_key;
            loop {
                let result = pool
                    .run(key, async |session: &Upstream| {
                        eras.saw(session);
                        send(session, relay, forward.clone()).await
                    })
                    .await;
                match result {
                    Err(RunError::Call(e)) if e.is_safe_to_retry() && retries > 0 => {
                        retries -= 1;
                        tracing::debug!(error = %e, "the upstream never took the request; sending it again");
                    }
                    other => return other.map_err(Failed::from),
                }
            }
        }
        Upstreams::Naive { pool, runs } => {
            runs.fetch_add(1, Ordering::Relaxed);
            let result = pool
                .run(key, async |session: &Upstream| {
                    eras.saw(session);
                    send(session, relay, forward.clone()).await
                })
                .await;
            result.map_err(Failed::from)
        }
        Upstreams::PerRequest(connector) => {
            let session = connector.connect(key).await.map_err(Failed::Connect)?;
            eras.saw(&session);
            let result = send(&session, relay, forward.clone()).await;
            connector.close(session).await;
            result.map_err(Failed::Call)
        }
    }
}

/// Marks a final result without a `resultType` as `complete`.
fn mark_complete(mut result: ServerResult) -> ServerResult {
    let result_type = match &mut result {
        ServerResult::CallToolResult(r) => &mut r.result_type,
        ServerResult::ListToolsResult(r) => &mut r.result_type,
        ServerResult::ListResourcesResult(r) => &mut r.result_type,
        ServerResult::ReadResourceResult(r) => &mut r.result_type,
        ServerResult::ListPromptsResult(r) => &mut r.result_type,
        ServerResult::GetPromptResult(r) => &mut r.result_type,
        _ => return result,
    };
    result_type.get_or_insert(ResultType::COMPLETE);
    result
}

/// Where the events of one forwarded call go: the downstream request.
struct Relay<'a> {
    ctx: &'a RequestContext<RoleServer>,
    min_level: Option<LoggingLevel>,
}

impl Relay<'_> {
    /// Passes one event of the upstream call to the downstream caller. A
    /// downstream caller gone is not an error: the call goes on.
    async fn pass(&self, event: CallEvent) {
        match event {
            CallEvent::Progress {
                progress,
                total,
                message,
            } => {
                let Some(token) = self.ctx.meta.get_progress_token() else {
                    return;
                };
                let mut param = ProgressNotificationParam::new(token, progress);
                param.total = total;
                param.message = message;
                let _ = self.ctx.peer.notify_progress(param).await;
            }
            CallEvent::Log(line) => {
                // A 2026-07-28 request opts in to log lines with its own
                // `_meta` level; a legacy session with `logging/setLevel`.
                let min = match (self.ctx.meta.log_level(), self.ctx.meta.protocol_version()) {
                    (Some(level), _) => Some(level),
                    (None, Some(_)) => return,
                    (None, None) => self.min_level,
                };
                if min.is_some_and(|min| (line.level as u8) < (min as u8)) {
                    return;
                }
                let _ = self.ctx.peer.notify_logging_message(line).await;
            }
            CallEvent::Cancelled { reason } => {
                tracing::debug!(
                    reason = reason.as_deref().unwrap_or(""),
                    "the upstream cancelled the call"
                );
            }
            _ => {}
        }
    }
}

/// Sends one request on one upstream session, relaying its events as they
/// arrive and all of them before the result. The one place that talks to
/// the upstream.
async fn send(
    session: &Upstream,
    relay: &Relay<'_>,
    forward: Forward,
) -> Result<ServerResult, Error> {
    let request = match forward {
        Forward::ListAllTools => {
            let tools = session.list_all_tools().await?;
            return Ok(ServerResult::ListToolsResult(
                ListToolsResult::with_all_items(tools),
            ));
        }
        Forward::Request(request) => *request,
    };
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let call = session.request_with_events(request, events);
    tokio::pin!(call);
    loop {
        tokio::select! {
            biased;
            Some(event) = received.recv() => relay.pass(event).await,
            result = &mut call => {
                while let Ok(event) = received.try_recv() {
                    relay.pass(event).await;
                }
                return result;
            }
        }
    }
}

/// The JSON-RPC error a failed forward becomes: the upstream's own error
/// unchanged, else -32603 (internal error) whose message names the
/// upstream, the method and what happened (the pool's or the connector's
/// words, which carry no credential), with `data.upstream`,
/// `data.retry_safe` (whether the upstream provably never took the request)
/// and `data.reason`, the kind of failure by a stable name (`transport`,
/// `session_lost`, `timeout`, `connect`, `circuit_open`, `acquire_timeout`,
/// `queue_full`, `other`).
pub fn to_jsonrpc(route: &Route, method: &str, error: Failed) -> ErrorData {
    if let Failed::Call(Error::Service {
        source: ServiceError::McpError(data),
        ..
    }) = error
    {
        return data;
    }
    let data = json!({
        "upstream": &*route.name,
        "retry_safe": error.is_safe_to_retry(),
        "reason": error.cause().as_str(),
    });
    let message = match &error {
        Failed::Call(e) => {
            tracing::warn!(upstream = %route.name, method, error = %e, "upstream request failed");
            format!("upstream `{}`: `{method}` failed: {e}", route.name)
        }
        Failed::Acquire(_) | Failed::Connect(_) => {
            tracing::warn!(upstream = %route.name, method, error = %error, "no upstream session");
            format!(
                "upstream `{}`: `{method}` was not sent: {error}",
                route.name
            )
        }
    };
    ErrorData::internal_error(message, Some(data))
}
