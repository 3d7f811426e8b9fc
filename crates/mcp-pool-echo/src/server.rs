//! The MCP handler: tools `echo`, `fail` and `whoami`.

use std::time::Duration;

use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, MetaObject};
use rmcp::service::RequestContext;
use rmcp::transport::common::http_header::HEADER_SESSION_ID;
use rmcp::{schemars, tool, tool_handler, tool_router, RoleServer, ServerHandler};
use serde::{Deserialize, Serialize};

use crate::SessionRegistry;

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
///
/// Tools:
/// - `echo {message, delay_ms?}`: waits `delay_ms` (cut short if the client
///   cancels the request), then returns `message` as the only text content,
///   with the serving session id in `_meta["mcp-pool-echo/session-id"]`.
/// - `fail {message?}`: returns a tool-level error (`is_error: true`), an
///   application error that leaves the session usable.
/// - `whoami {}`: returns the id of the session serving the call as text, or
///   a tool-level error when the server is stateless.
#[derive(Clone, Debug)]
pub struct EchoServer {
    registry: SessionRegistry,
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

#[tool_router]
impl EchoServer {
    /// A handler that records every call it serves in `registry`.
    pub fn new(registry: SessionRegistry) -> Self {
        Self {
            registry,
            tool_router: Self::tool_router(),
        }
    }

    /// The registry this handler records calls in.
    pub fn registry(&self) -> &SessionRegistry {
        &self.registry
    }

    #[tool(description = "Wait delay_ms milliseconds (optional), then return message unchanged.")]
    async fn echo(
        &self,
        Parameters(args): Parameters<EchoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let session_id = session_id_of(&ctx);
        self.registry
            .record_call(session_id.clone(), "echo", Some(args.message.clone()));
        if let Some(ms) = args.delay_ms.filter(|ms| *ms > 0) {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                () = ctx.ct.cancelled() => {}
            }
        }
        let mut result = CallToolResult::success(vec![ContentBlock::text(args.message)]);
        if let Some(id) = session_id {
            let mut meta = JsonObject::new();
            meta.insert(SESSION_ID_META_KEY.to_owned(), id.into());
            result.meta = Some(MetaObject::from(meta));
        }
        result
    }

    #[tool(description = "Return a tool-level error (isError: true) carrying message.")]
    async fn fail(
        &self,
        Parameters(args): Parameters<FailArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.registry
            .record_call(session_id_of(&ctx), "fail", args.message.clone());
        let text = args
            .message
            .unwrap_or_else(|| "the fail tool always fails: this is a requested tool error".into());
        CallToolResult::error(vec![ContentBlock::text(text)])
    }

    #[tool(description = "Return the id of the MCP session serving this call.")]
    async fn whoami(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let session_id = session_id_of(&ctx);
        self.registry
            .record_call(session_id.clone(), "whoami", None);
        match session_id {
            Some(id) => CallToolResult::success(vec![ContentBlock::text(id)]),
            None => CallToolResult::error(vec![ContentBlock::text(
                "this server runs stateless: the call was not served in a session",
            )]),
        }
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "mcp-pool-echo",
    instructions = "Echo server for testing MCP clients: echo, fail, whoami."
)]
impl ServerHandler for EchoServer {}
