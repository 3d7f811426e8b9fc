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
pub async fn call<H: rmcp::ClientHandler>(
    client: &RunningService<RoleClient, H>,
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

/// The client lifecycles of rmcp 3.11, by name: plain `initialize`,
/// `server/discover` only, and `Auto` (discover first, falling back to
/// `initialize` when the server looks legacy or stays silent for 10 s).
pub fn lifecycles() -> [(&'static str, rmcp::service::ClientLifecycleMode); 3] {
    use rmcp::model::ProtocolVersion;
    use rmcp::service::ClientLifecycleMode;
    [
        ("initialize", ClientLifecycleMode::Initialize),
        (
            "discover",
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::LATEST],
            },
        ),
        (
            "auto",
            ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::LATEST],
                legacy_version: None,
            },
        ),
    ]
}

/// Starts a client with `handler` at `url` in lifecycle `mode`; fails the
/// test if that takes longer than `bound` (a hang bound, not a timing).
// The error is rmcp's own (large) type, returned as the client got it.
#[allow(clippy::result_large_err)]
pub async fn connect_in<H: rmcp::ClientHandler>(
    handler: H,
    url: &str,
    mode: rmcp::service::ClientLifecycleMode,
    bound: Duration,
) -> Result<RunningService<RoleClient, H>, rmcp::service::ClientInitializeError> {
    use rmcp::service::ClientServiceExt;
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    tokio::time::timeout(bound, handler.serve_with_lifecycle(transport, mode))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} took longer than {bound:?}"))
}

/// A raw HTTP answer of the MCP endpoint.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub session_id: Option<String>,
    pub body: String,
}

impl RawResponse {
    /// The JSON-RPC message of the body: the body itself (JSON), or the
    /// first `data:` line carrying an `id` (event stream).
    pub fn message(&self) -> serde_json::Value {
        if self.content_type.as_deref() == Some("application/json") {
            return serde_json::from_str(&self.body).expect("a JSON body");
        }
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
            .find(|message| message.get("id").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC answer in {self:?}"))
    }

    /// `error.code` and `error.message` of the answer.
    pub fn error(&self) -> (i64, String) {
        let message = self.message();
        let error = message
            .get("error")
            .unwrap_or_else(|| panic!("not an error: {message}"));
        (
            error["code"].as_i64().expect("an error code"),
            error["message"]
                .as_str()
                .expect("an error message")
                .to_owned(),
        )
    }
}

/// POSTs one JSON-RPC message as an MCP client would, with `headers` added,
/// and reads the whole answer (bounded by [`QUICK`]).
pub async fn raw_post(url: &str, body: serde_json::Value, headers: &[(&str, &str)]) -> RawResponse {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(QUICK, async move {
        let response = request.send().await.expect("the server answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let content_type = header("content-type");
        let session_id = header("mcp-session-id");
        let body = response.text().await.expect("a readable body");
        RawResponse {
            status,
            content_type,
            session_id,
            body,
        }
    })
    .await
    .expect("the answer arrives in time");
    response
}

/// A legacy `initialize` request naming `version`.
pub fn initialize_request(version: &str) -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": { "name": "raw", "version": "0" },
        },
    })
}

/// A 2026-07-28 `server/discover` request with its per-request `_meta`, and
/// the headers that go with it.
pub fn discover_request() -> (serde_json::Value, [(&'static str, &'static str); 2]) {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 7, "method": "server/discover",
        "params": { "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": { "name": "raw", "version": "0" },
        }},
    });
    (
        body,
        [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
    )
}
