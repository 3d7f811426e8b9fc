//! Client helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, JsonObject, ServerResult,
};
use rmcp::service::{PeerRequestOptions, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceError, ServiceExt};

/// Upper bound for anything that should be quick on loopback.
pub const QUICK: Duration = Duration::from_secs(10);

pub type Client = RunningService<RoleClient, ()>;

/// Connects and initializes an MCP session at `url`.
pub async fn connect(url: &str) -> Client {
    connect_with(StreamableHttpClientTransportConfig::with_uri(
        url.to_owned(),
    ))
    .await
}

/// Connects with a custom transport configuration.
pub async fn connect_with(cfg: StreamableHttpClientTransportConfig) -> Client {
    let transport = StreamableHttpClientTransport::from_config(cfg);
    tokio::time::timeout(QUICK, ().serve(transport))
        .await
        .expect("initialize timed out")
        .expect("initialize failed")
}

/// `tools/call` parameters for `echo`.
pub fn echo(message: &str, delay_ms: Option<u64>) -> CallToolRequestParams {
    let mut args = JsonObject::new();
    args.insert("message".into(), message.into());
    if let Some(ms) = delay_ms {
        args.insert("delay_ms".into(), ms.into());
    }
    CallToolRequestParams::new("echo").with_arguments(args)
}

/// Calls a tool with a per-request timeout.
pub async fn call(
    client: &Client,
    params: CallToolRequestParams,
    timeout: Duration,
) -> Result<CallToolResult, ServiceError> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let response = client
        .send_request_with_option(request, PeerRequestOptions::with_timeout(timeout))
        .await?
        .await_response()
        .await?;
    match response {
        ServerResult::CallToolResult(result) => Ok(result),
        other => panic!("unexpected response to tools/call: {other:?}"),
    }
}

/// The single text content of a tool result.
pub fn text(result: &CallToolResult) -> &str {
    assert_eq!(result.content.len(), 1, "{result:?}");
    &result.content[0]
        .as_text()
        .unwrap_or_else(|| panic!("not text: {result:?}"))
        .text
}

/// Whether `e` is a failure of the transport (as opposed to an answer from the server).
pub fn is_transport_error(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::TransportSend(_) | ServiceError::TransportClosed
    )
}
