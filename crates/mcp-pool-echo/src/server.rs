//! The MCP handler: tools `echo`, `fail` and `whoami`.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CacheScope, CallToolResult, ContentBlock, DiscoverResult, Implementation, JsonObject,
    ListToolsResult, MetaObject, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::common::http_header::HEADER_SESSION_ID;
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::{Deserialize, Serialize};

use crate::registry::ServedCall;
use crate::{Era, SessionRegistry};

/// The most `steps` an `echo` call may ask for.
pub const MAX_ECHO_STEPS: u32 = 1000;

/// The logger name on the `notifications/message` lines `echo` sends.
pub const ECHO_LOGGER: &str = "mcp-pool-echo";

/// The `_meta` key under which `echo` results carry the id of the session
/// that served them (absent when the server runs stateless).
pub const SESSION_ID_META_KEY: &str = "mcp-pool-echo/session-id";

/// Arguments of the `echo` tool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text returned unchanged.
    pub message: String,
    /// Milliseconds to wait before answering (none or 0: answer at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Report the wait in this many steps (at most 1000, see
    /// `MAX_ECHO_STEPS`), each delay_ms / steps long and followed by a
    /// notifications/progress for the request's progress token (when it
    /// carries one) and a notifications/message log line. None or 0: no
    /// notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
}

/// Arguments of the `fail` tool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailArgs {
    /// Text of the error returned; a default explanation when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The echo MCP server handler. rmcp creates one per session (stateful) or
/// per request (stateless); all of them share one [`SessionRegistry`].
/// It serves the protocol versions of its [`Era`] and declares the `tools`
/// and `logging` capabilities.
///
/// Tools:
/// - `echo {message, delay_ms?, steps?}`: waits `delay_ms` (cut short if
///   the client cancels the request), then returns `message` as the only
///   text content, with the serving session id in
///   `_meta["mcp-pool-echo/session-id"]`. With `steps = n > 0` the wait is
///   cut into `n` equal steps; after step `i` it sends
///   `notifications/progress` (`progress = i`, `total = n`, message
///   `"MESSAGE: step i of n"`) for the request's progress token, if it has
///   one, and a `notifications/message` at level `info` from logger
///   [`ECHO_LOGGER`] with data `{"message", "step", "steps",
///   "progressToken"}`. rmcp routes the progress to the calling request's
///   own response stream in every era; the log line too, except in a legacy
///   session, where rmcp sends it on the session's GET stream. `steps` above
///   [`MAX_ECHO_STEPS`] is refused with -32602 (invalid params).
/// - `fail {message?}`: returns a tool-level error (`is_error: true`), an
///   application error that leaves the session usable.
/// - `whoami {}`: returns the id of the session serving the call as text, or
///   a tool-level error when the server is stateless.
#[derive(Clone, Debug)]
pub struct EchoServer {
    registry: SessionRegistry,
    era: Era,
    cache_hint: Option<(u64, CacheScope)>,
    tool_router: ToolRouter<Self>,
}

/// The `mcp-session-id` header of the HTTP request that carried this MCP
/// request, which rmcp puts in the request context as `http::request::Parts`.
fn session_id_of(ctx: &RequestContext<RoleServer>) -> Option<String> {
    ctx.extensions
        .get::<Parts>()
        .and_then(|parts| parts.headers.get(HEADER_SESSION_ID))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// How the request in `ctx` reached the server.
fn served_call(ctx: &RequestContext<RoleServer>) -> ServedCall {
    ServedCall {
        session_id: session_id_of(ctx),
        protocol_version: ctx.protocol_version().map(|v| v.as_str().to_owned()),
        meta_protocol_version: ctx.meta.protocol_version().map(|v| v.as_str().to_owned()),
    }
}

/// Sleeps for `duration`, or until the request is cancelled; returns whether
/// it was cancelled.
async fn wait(duration: Duration, ctx: &RequestContext<RoleServer>) -> bool {
    if duration.is_zero() {
        return ctx.ct.is_cancelled();
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = ctx.ct.cancelled() => true,
    }
}

/// Sends step `step` of `steps` of the `echo` of `message`: progress for the
/// request's token (if any) and a log line. A failed send means the client
/// is gone; the result will not reach it either, so it is not an error here.
// rmcp marks logging deprecated (SEP-2577); 2026-07-28 still carries
// `notifications/message`, and clients of every era receive it.
#[allow(deprecated)]
async fn report_step(ctx: &RequestContext<RoleServer>, message: &str, step: u32, steps: u32) {
    use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
    let token = ctx.meta.get_progress_token();
    if let Some(token) = &token {
        let mut progress = ProgressNotificationParam::new(token.clone(), f64::from(step));
        progress.total = Some(f64::from(steps));
        progress.message = Some(format!("{message}: step {step} of {steps}"));
        let _ = ctx.peer.notify_progress(progress).await;
    }
    let data = serde_json::json!({
        "message": message,
        "step": step,
        "steps": steps,
        "progressToken": token.map(|t| t.0),
    });
    let mut line = LoggingMessageNotificationParam::new(LoggingLevel::Info, data);
    line.logger = Some(ECHO_LOGGER.to_owned());
    let _ = ctx.peer.notify_logging_message(line).await;
}

#[tool_router]
impl EchoServer {
    /// A handler of the default era ([`Era::Legacy`]) that records every
    /// call it serves in `registry`.
    pub fn new(registry: SessionRegistry) -> Self {
        Self::with_era(registry, Era::default())
    }

    /// A handler that serves the protocol versions of `era` and records every
    /// call it serves in `registry`. (The era's HTTP behaviour, sessions and
    /// the refusal of `server/discover`, lives in [`crate::EchoApp`].)
    pub fn with_era(registry: SessionRegistry, era: Era) -> Self {
        Self {
            registry,
            era,
            cache_hint: None,
            tool_router: Self::tool_router(),
        }
    }

    /// The same handler, putting `hint` (`ttlMs`, `cacheScope`) on its
    /// 2026-07-28 `server/discover` and `tools/list` results (`None`: rmcp's
    /// defaults).
    pub fn with_cache_hint(mut self, hint: Option<(u64, CacheScope)>) -> Self {
        self.cache_hint = hint;
        self
    }

    /// The era whose protocol versions this handler serves.
    pub fn era(&self) -> Era {
        self.era
    }

    /// The registry this handler records calls in.
    pub fn registry(&self) -> &SessionRegistry {
        &self.registry
    }

    #[tool(
        description = "Wait delay_ms milliseconds (optional), then return message unchanged. \
                       With steps, report the wait in that many steps: progress for the \
                       request's progress token and a log line after each."
    )]
    async fn echo(
        &self,
        Parameters(args): Parameters<EchoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let steps = args.steps.unwrap_or(0);
        if steps > MAX_ECHO_STEPS {
            return Err(ErrorData::invalid_params(
                format!("steps {steps}: at most {MAX_ECHO_STEPS} are allowed"),
                None,
            ));
        }
        let served = served_call(&ctx);
        let session_id = served.session_id.clone();
        self.registry
            .record_call(served, "echo", Some(args.message.clone()));
        let delay = Duration::from_millis(args.delay_ms.unwrap_or(0));
        if steps == 0 {
            wait(delay, &ctx).await;
        } else {
            for step in 1..=steps {
                if wait(delay / steps, &ctx).await {
                    break;
                }
                report_step(&ctx, &args.message, step, steps).await;
            }
        }
        let mut result = CallToolResult::success(vec![ContentBlock::text(args.message)]);
        if let Some(id) = session_id {
            let mut meta = JsonObject::new();
            meta.insert(SESSION_ID_META_KEY.to_owned(), id.into());
            result.meta = Some(MetaObject::from(meta));
        }
        Ok(result)
    }

    #[tool(description = "Return a tool-level error (isError: true) carrying message.")]
    async fn fail(
        &self,
        Parameters(args): Parameters<FailArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.registry
            .record_call(served_call(&ctx), "fail", args.message.clone());
        let text = args
            .message
            .unwrap_or_else(|| "the fail tool always fails: this is a requested tool error".into());
        CallToolResult::error(vec![ContentBlock::text(text)])
    }

    #[tool(description = "Return the id of the MCP session serving this call.")]
    async fn whoami(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let served = served_call(&ctx);
        let session_id = served.session_id.clone();
        self.registry.record_call(served, "whoami", None);
        match session_id {
            Some(id) => CallToolResult::success(vec![ContentBlock::text(id)]),
            None => CallToolResult::error(vec![ContentBlock::text(
                "this server runs stateless: the call was not served in a session",
            )]),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for EchoServer {
    // `logging` is declared because `echo` sends log lines (see `report_step`).
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-pool-echo",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions("Echo server for testing MCP clients: echo, fail, whoami.".to_owned())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(self.era.supported_versions())
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        let mut result = DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            self.get_info(),
        );
        if let Some((ttl_ms, scope)) = self.cache_hint {
            result = result.with_ttl_ms(ttl_ms).with_cache_scope(scope);
        }
        Ok(result)
    }

    // As rmcp's generated one (cache hints on 2026-07-28 answers only), with
    // the configured hint.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let hinted = context
            .protocol_version()
            .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28);
        let (ttl_ms, scope) = self.cache_hint.unwrap_or((0, CacheScope::Public));
        let mut result = ListToolsResult::with_all_items(self.tool_router.list_all());
        result.result_type = Some(ResultType::COMPLETE);
        result.ttl_ms = hinted.then_some(ttl_ms);
        result.cache_scope = hinted.then_some(scope);
        Ok(result)
    }
}
