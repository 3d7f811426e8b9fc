//! What a pooled session does with the requests a server sends the client,
//! with notifications about no call, and with a 2026-07-28 server's request
//! for input (MRTR), against a small rmcp fixture server on loopback whose
//! tools send them.
// rmcp marks sampling and roots deprecated (SEP-2577); legacy servers still
// send them.
#![allow(deprecated)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mcp_pool_rmcp::{EraPolicy, Error, McpConnector, SessionKey};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientResult,
    CreateMessageRequestParams, CreateMessageResult, InputRequest, InputRequiredResult,
    ListRootsRequest, ListRootsResult, Role, Root, SamplingMessage, SamplingMessageContentBlock,
    ServerCapabilities, ServerConfig, ServerNotification, ServerRequest,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};

/// Tools that ask the client things, announce a list change, or need input.
#[derive(Clone)]
struct Asker {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Asker {
    fn new() -> Self {
        Asker {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Ask the client to sample; return what it answered.")]
    async fn ask_sampling(&self, ctx: RequestContext<RoleServer>) -> String {
        let message = SamplingMessage::new(Role::User, SamplingMessageContentBlock::text("say hi"));
        match ctx
            .peer
            .create_message(CreateMessageRequestParams::new(vec![message], 10))
            .await
        {
            Ok(result) => format!("answered: {}", result.model),
            Err(e) => format!("refused: {e}"),
        }
    }

    #[tool(description = "Ask the client for its roots; return what it answered.")]
    async fn ask_roots(&self, ctx: RequestContext<RoleServer>) -> String {
        match ctx.peer.list_roots().await {
            Ok(result) => format!(
                "answered: {:?}",
                result
                    .roots
                    .iter()
                    .map(|r| r.uri.clone())
                    .collect::<Vec<_>>()
            ),
            Err(e) => format!("refused: {e}"),
        }
    }

    #[tool(description = "Send notifications/tools/list_changed (on the session's stream).")]
    async fn announce(&self, ctx: RequestContext<RoleServer>) -> String {
        match ctx.peer.notify_tool_list_changed().await {
            Ok(()) => "announced".to_owned(),
            Err(e) => format!("not sent: {e}"),
        }
    }

    #[tool(description = "Answer with a request for input (2026-07-28 MRTR).")]
    async fn need_input(&self) -> InputRequiredResult {
        let requests = BTreeMap::from([(
            "roots".to_owned(),
            InputRequest::ListRoots(ListRootsRequest::default()),
        )]);
        InputRequiredResult::new(Some(requests), Some("state-1".to_owned()))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Asker {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// The fixture on loopback (every protocol version, legacy sessions
/// stateful); returns its URL. It stops when the test's runtime does.
async fn fixture() -> String {
    let service = StreamableHttpService::new(
        || Ok(Asker::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn connector(era: EraPolicy) -> mcp_pool_rmcp::McpConnectorBuilder {
    McpConnector::builder()
        .era(era)
        .initialize_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
}

fn text(result: &CallToolResult) -> String {
    result.content[0].as_text().unwrap().text.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_are_refused_clearly_without_a_hook() {
    let url = fixture().await;
    let connector = connector(EraPolicy::Legacy).build().unwrap();
    let session = connector
        .open(&SessionKey::anonymous(&url).unwrap())
        .await
        .unwrap();
    for (tool, method) in [
        ("ask_sampling", "sampling/createMessage"),
        ("ask_roots", "roots/list"),
    ] {
        let said = text(
            &session
                .call_tool(CallToolRequestParams::new(tool))
                .await
                .unwrap(),
        );
        assert!(said.starts_with("refused: "), "{tool}: {said}");
        assert!(
            said.contains(&format!("`{method}` is not supported by this client")),
            "{tool}: {said}"
        );
        assert!(said.contains("-32601"), "{tool}: {said}");
    }
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_hook_answers_server_requests() {
    let url = fixture().await;
    let mut capabilities = ClientCapabilities::default();
    capabilities.sampling = Some(Default::default());
    capabilities.roots = Some(Default::default());
    let connector = connector(EraPolicy::Legacy)
        .on_server_request(capabilities, |request| async move {
            match request {
                ServerRequest::CreateMessageRequest(_) => Ok(ClientResult::CreateMessageResult(
                    Box::new(CreateMessageResult::new(
                        SamplingMessage::new(
                            Role::Assistant,
                            SamplingMessageContentBlock::text("hi"),
                        ),
                        "hook-model".to_owned(),
                    )),
                )),
                ServerRequest::ListRootsRequest(_) => {
                    Ok(ClientResult::ListRootsResult(ListRootsResult::new(vec![
                        Root::new("file:///hooked"),
                    ])))
                }
                _ => Err(ErrorData::invalid_request("not in this test", None)),
            }
        })
        .build()
        .unwrap();
    let session = connector
        .open(&SessionKey::anonymous(&url).unwrap())
        .await
        .unwrap();
    let sampled = session
        .call_tool(CallToolRequestParams::new("ask_sampling"))
        .await
        .unwrap();
    assert_eq!(text(&sampled), "answered: hook-model");
    let roots = session
        .call_tool(CallToolRequestParams::new("ask_roots"))
        .await
        .unwrap();
    assert_eq!(text(&roots), r#"answered: ["file:///hooked"]"#);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_about_no_call_reaches_the_keys_subscriber_or_is_counted() {
    let url = fixture().await;
    let connector = connector(EraPolicy::Legacy).build().unwrap();
    let key = SessionKey::anonymous(&url).unwrap();
    let session = connector.open(&key).await.unwrap();
    let mut notices = connector.subscribe(&key);
    let announce = || session.call_tool(CallToolRequestParams::new("announce"));
    assert_eq!(text(&announce().await.unwrap()), "announced");
    // It comes on the session's event stream, maybe after the result.
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("the subscriber got the notification")
        .unwrap();
    assert!(
        matches!(notice, ServerNotification::ToolListChangedNotification(_)),
        "{notice:?}"
    );
    assert_eq!(connector.dropped_notifications(), 0);

    // Another key's subscriber sees nothing of this key.
    let other = SessionKey::builder(&url)
        .bearer("someone-else")
        .build()
        .unwrap();
    let mut others = connector.subscribe(&other);

    // Without a subscriber for the key, it is dropped and counted.
    connector.unsubscribe(&key);
    assert_eq!(text(&announce().await.unwrap()), "announced");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while connector.dropped_notifications() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "never counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(connector.dropped_notifications(), 1);
    assert!(
        others.try_recv().is_err(),
        "another key's subscriber got it"
    );
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_input_is_returned_untouched() {
    let url = fixture().await;
    let connector = connector(EraPolicy::Modern).build().unwrap();
    let session = connector
        .open(&SessionKey::anonymous(&url).unwrap())
        .await
        .unwrap();
    assert!(session.era().is_modern());
    let error = session
        .call_tool(CallToolRequestParams::new("need_input"))
        .await
        .unwrap_err();
    let Error::InputRequired { result, .. } = &error else {
        panic!("expected the request for input, got {error}");
    };
    assert_eq!(result.request_state.as_deref(), Some("state-1"));
    let requests = result.input_requests.as_ref().unwrap();
    assert!(
        matches!(requests.get("roots"), Some(InputRequest::ListRoots(_))),
        "{requests:?}"
    );
    assert_eq!(error.outcome(), mcp_pool::Outcome::ApplicationError);
    assert!(error.to_string().contains("needs input"), "{error}");
}
