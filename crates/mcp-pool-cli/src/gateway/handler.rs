//! The MCP server each downstream client talks to at `/mcp/NAME`: an rmcp
//! [`ServerHandler`] that forwards the six methods to upstream NAME.
// rmcp marks logging deprecated (SEP-2577); 2026-07-28 still carries
// `notifications/message`, and clients of every era receive it.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, ErrorData,
    GetPromptRequest, GetPromptRequestParams, GetPromptResponse, Implementation,
    ListPromptsRequest, ListPromptsResult, ListResourcesRequest, ListResourcesResult,
    ListToolsRequest, ListToolsResult, LoggingLevel, PaginatedRequestParams, ReadResourceRequest,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
    ServerResult, SetLevelRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};

use super::forward::{Forward, Route, Shared};

/// The downstream side of upstream `route`. rmcp makes one per downstream
/// session (legacy) or request (2026-07-28); all share the gateway's pool.
///
/// It declares the `tools`, `resources`, `prompts` and `logging`
/// capabilities whatever the upstream has (an upstream without one answers
/// its methods with its own JSON-RPC error, passed on as it is), and
/// forwards `tools/list`, `tools/call`, `resources/list`,
/// `resources/read`, `prompts/list` and `prompts/get`; every other
/// request is answered by rmcp's defaults (`ping`, `initialize`,
/// `server/discover`) or refused as method not found.
///
/// `logging/setLevel` sets the lowest level of the upstream log lines this
/// downstream session (or request) receives; it is not forwarded (the
/// upstream session may be shared).
#[derive(Clone)]
pub struct GatewayHandler {
    shared: Arc<Shared>,
    route: Route,
    min_level: Arc<Mutex<Option<LoggingLevel>>>,
}

impl GatewayHandler {
    /// The handler of `route`.
    pub fn new(shared: Arc<Shared>, route: Route) -> Self {
        Self {
            shared,
            route,
            min_level: Arc::new(Mutex::new(None)),
        }
    }

    async fn forward(
        &self,
        ctx: &RequestContext<RoleServer>,
        forward: Forward,
    ) -> Result<ServerResult, ErrorData> {
        let min_level = *self.min_level.lock().unwrap_or_else(|e| e.into_inner());
        self.shared
            .forward(&self.route, ctx, forward, min_level)
            .await
    }

    fn unexpected(&self, method: &str, result: &ServerResult) -> ErrorData {
        let kind = match serde_json::to_value(result) {
            Ok(value) => value
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        ErrorData::internal_error(
            format!(
                "upstream `{}`: `{method}` got an answer of another method (fields: {kind})",
                self.route.name
            ),
            None,
        )
    }
}

fn paginated(request: Option<PaginatedRequestParams>) -> Option<PaginatedRequestParams> {
    request.map(|mut p| {
        p.meta = None;
        p
    })
}

impl ServerHandler for GatewayHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-pool-gateway",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(format!(
            "mcp-pool gateway to the upstream MCP server `{}`.",
            self.route.name
        ))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self.min_level.lock().unwrap_or_else(|e| e.into_inner()) = Some(request.level);
        Ok(())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let forward = match paginated(request) {
            Some(p) if p.cursor.is_some() => Forward::request(ClientRequest::ListToolsRequest(
                ListToolsRequest::with_param(p),
            )),
            _ => Forward::ListAllTools,
        };
        match self.forward(&ctx, forward).await? {
            ServerResult::ListToolsResult(r) => Ok(r),
            other => Err(self.unexpected("tools/list", &other)),
        }
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        request.meta = None;
        let forward = Forward::request(ClientRequest::CallToolRequest(CallToolRequest::new(
            request,
        )));
        match self.forward(&ctx, forward).await? {
            ServerResult::CallToolResult(r) => Ok(CallToolResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
            ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
            other => Err(self.unexpected("tools/call", &other)),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let request = ListResourcesRequest {
            params: paginated(request),
            ..ListResourcesRequest::default()
        };
        let forward = Forward::request(ClientRequest::ListResourcesRequest(request));
        match self.forward(&ctx, forward).await? {
            ServerResult::ListResourcesResult(r) => Ok(r),
            other => Err(self.unexpected("resources/list", &other)),
        }
    }

    async fn read_resource(
        &self,
        mut request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        request.meta = None;
        let forward = Forward::request(ClientRequest::ReadResourceRequest(
            ReadResourceRequest::new(request),
        ));
        match self.forward(&ctx, forward).await? {
            ServerResult::ReadResourceResult(r) => Ok(ReadResourceResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(ReadResourceResponse::InputRequired(r)),
            other => Err(self.unexpected("resources/read", &other)),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let request = ListPromptsRequest {
            params: paginated(request),
            ..ListPromptsRequest::default()
        };
        let forward = Forward::request(ClientRequest::ListPromptsRequest(request));
        match self.forward(&ctx, forward).await? {
            ServerResult::ListPromptsResult(r) => Ok(r),
            other => Err(self.unexpected("prompts/list", &other)),
        }
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        request.meta = None;
        let forward = Forward::request(ClientRequest::GetPromptRequest(GetPromptRequest::new(
            request,
        )));
        match self.forward(&ctx, forward).await? {
            ServerResult::GetPromptResult(r) => Ok(GetPromptResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
            other => Err(self.unexpected("prompts/get", &other)),
        }
    }
}
