//! The client side of every pooled session: answers the requests a server
//! sends the client (sampling, elicitation, roots) through the caller's hook
//! or with a clear refusal. Notifications are routed in the HTTP layer
//! ([`crate::events`]), not here.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, ErrorCode, ErrorData, ServerNotification,
    ServerRequest,
};
use rmcp::service::{NotificationContext, RequestContext, Service};
use rmcp::RoleClient;

/// A hook answering the requests servers send the client; see
/// [`McpConnectorBuilder::on_server_request`](crate::McpConnectorBuilder::on_server_request).
pub(crate) type ServerRequestHook =
    Arc<dyn Fn(ServerRequest) -> BoxFuture<'static, Result<ClientResult, ErrorData>> + Send + Sync>;

/// The rmcp client service of every pooled session.
///
/// It answers `ping` from the server, and every other request a server
/// sends the client (`sampling/createMessage`, `elicitation/create`,
/// `roots/list`, any custom method) through the hook registered with
/// [`McpConnectorBuilder::on_server_request`](crate::McpConnectorBuilder::on_server_request),
/// or, without one, with JSON-RPC error -32601 "`METHOD` is not supported
/// by this client". It declares the capabilities given with the hook (none
/// without one). Notifications are not handled here: the session's HTTP
/// layer routes them (see the [crate docs](crate#call-events)).
#[derive(Clone, Default)]
pub struct PoolClientHandler {
    hook: Option<ServerRequestHook>,
    capabilities: ClientCapabilities,
}

impl fmt::Debug for PoolClientHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolClientHandler")
            .field("hook", &self.hook.is_some())
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl PoolClientHandler {
    pub(crate) fn new(hook: Option<ServerRequestHook>, capabilities: ClientCapabilities) -> Self {
        PoolClientHandler { hook, capabilities }
    }

    /// Whether server requests are answered by a hook.
    pub fn has_hook(&self) -> bool {
        self.hook.is_some()
    }
}

/// The method of a server request.
pub(crate) fn server_method(request: &ServerRequest) -> String {
    match request {
        ServerRequest::PingRequest(_) => "ping".to_owned(),
        ServerRequest::CreateMessageRequest(_) => "sampling/createMessage".to_owned(),
        ServerRequest::ListRootsRequest(_) => "roots/list".to_owned(),
        ServerRequest::ElicitRequest(_) => "elicitation/create".to_owned(),
        ServerRequest::CustomRequest(custom) => custom.method.clone(),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v["method"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "a server request".to_owned()),
    }
}

/// The refusal of a server request no hook answers.
pub(crate) fn not_supported(method: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!(
            "`{method}` is not supported by this client (an mcp-pool session answers server requests only through a hook)"
        ),
        None,
    )
}

impl Service<RoleClient> for PoolClientHandler {
    fn handle_request(
        &self,
        request: ServerRequest,
        _context: RequestContext<RoleClient>,
    ) -> impl Future<Output = Result<ClientResult, ErrorData>> + Send + '_ {
        let method = server_method(&request);
        let answer: BoxFuture<'static, Result<ClientResult, ErrorData>> =
            match (&self.hook, request) {
                (_, ServerRequest::PingRequest(_)) => {
                    Box::pin(async { Ok(ClientResult::empty(())) })
                }
                (Some(hook), request) => hook(request),
                (None, _) => {
                    tracing::debug!(%method, "refused a server request: no hook");
                    Box::pin(async move { Err(not_supported(&method)) })
                }
            };
        answer
    }

    async fn handle_notification(
        &self,
        _notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities = self.capabilities.clone();
        info
    }
}
