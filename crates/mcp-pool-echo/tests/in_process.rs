//! A real rmcp client against the echo server served in-process on loopback.

mod common;

use std::time::{Duration, Instant};

use common::{call, connect, connect_with, echo, is_transport_error, text, QUICK};
use mcp_pool_echo::{
    spawn_local_app, spawn_local_server, EchoApp, EchoConfig, EchoServerHandle, SessionRegistry,
    SESSION_ID_META_KEY,
};
use rmcp::model::{CallToolRequestParams, ErrorCode, JsonObject};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::ServiceError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(cfg: &EchoConfig) -> EchoServerHandle {
    spawn_local_server("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("bind loopback")
}

#[tokio::test]
async fn lists_the_three_tools() {
    let server = start(&EchoConfig::default()).await;
    let client = connect(&server.url()).await;
    let tools = tokio::time::timeout(QUICK, client.list_all_tools())
        .await
        .unwrap()
        .unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["echo", "fail", "whoami"]);
    let echo_tool = tools.iter().find(|t| t.name == "echo").unwrap();
    let props = echo_tool.input_schema.get("properties").unwrap();
    assert!(props.get("message").is_some() && props.get("delay_ms").is_some());
    server.kill().await;
}

#[tokio::test]
async fn echo_returns_the_message_with_and_without_delay() {
    let server = start(&EchoConfig::default()).await;
    let client = connect(&server.url()).await;

    let result = call(&client, echo("hello", None), QUICK).await.unwrap();
    assert_eq!(text(&result), "hello");
    assert_eq!(result.is_error, Some(false));

    let started = Instant::now();
    let result = call(&client, echo("later", Some(150)), QUICK)
        .await
        .unwrap();
    assert_eq!(text(&result), "later");
    assert!(started.elapsed() >= Duration::from_millis(150));

    // The serving session is visible in the result, in whoami, and in the registry.
    let created = server.registry().created_sessions();
    assert_eq!(created.len(), 1);
    let meta = result.meta.as_ref().expect("echo result carries _meta");
    assert_eq!(meta.get(SESSION_ID_META_KEY).unwrap(), created[0].as_str());
    let whoami = call(&client, CallToolRequestParams::new("whoami"), QUICK)
        .await
        .unwrap();
    assert_eq!(text(&whoami), created[0]);
    assert_eq!(server.registry().calls_in_session(&created[0]), 3);
    assert_eq!(
        server.registry().sessions_for_message("later"),
        vec![Some(created[0].clone())]
    );
    server.kill().await;
}

#[tokio::test]
async fn fail_is_a_tool_error_and_the_session_stays_usable() {
    let server = start(&EchoConfig::default()).await;
    let client = connect(&server.url()).await;

    let result = call(&client, CallToolRequestParams::new("fail"), QUICK)
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(!text(&result).is_empty());

    let mut args = JsonObject::new();
    args.insert("message".into(), "boom".into());
    let result = call(
        &client,
        CallToolRequestParams::new("fail").with_arguments(args),
        QUICK,
    )
    .await
    .unwrap();
    assert_eq!((result.is_error, text(&result)), (Some(true), "boom"));

    let result = call(&client, echo("still here", None), QUICK)
        .await
        .unwrap();
    assert_eq!(text(&result), "still here");
    server.kill().await;
}

#[tokio::test]
async fn unknown_tool_is_an_mcp_error() {
    let server = start(&EchoConfig::default()).await;
    let client = connect(&server.url()).await;
    let err = call(&client, CallToolRequestParams::new("no-such-tool"), QUICK)
        .await
        .unwrap_err();
    match err {
        ServiceError::McpError(e) => assert_eq!(e.code, ErrorCode::INVALID_PARAMS),
        other => panic!("expected an McpError, got {other:?}"),
    }
    server.kill().await;
}

#[tokio::test]
async fn each_client_gets_its_own_session() {
    let server = start(&EchoConfig::default()).await;
    let a = connect(&server.url()).await;
    let b = connect(&server.url()).await;
    for i in 0..3 {
        call(&a, echo(&format!("a{i}"), None), QUICK).await.unwrap();
        call(&b, echo(&format!("b{i}"), None), QUICK).await.unwrap();
    }
    let registry = server.registry();
    let created = registry.created_sessions();
    assert_eq!(created.len(), 2);
    let session_of = |m: &str| registry.sessions_for_message(m);
    let sa = session_of("a0")[0].clone().unwrap();
    let sb = session_of("b0")[0].clone().unwrap();
    assert_ne!(sa, sb);
    for i in 0..3 {
        assert_eq!(session_of(&format!("a{i}")), vec![Some(sa.clone())]);
        assert_eq!(session_of(&format!("b{i}")), vec![Some(sb.clone())]);
    }
    assert_eq!(registry.call_count(), 6);

    // Closing a client deletes its session on the server.
    a.cancel().await.unwrap();
    assert_eq!(registry.deleted_sessions(), vec![sa]);
    server.kill().await;
}

#[tokio::test]
async fn expired_session_is_refused() {
    let server = start(&EchoConfig::default()).await;
    let cfg = StreamableHttpClientTransportConfig::with_uri(server.url())
        .reinit_on_expired_session(false);
    let client = connect_with(cfg).await;
    call(&client, echo("x", None), QUICK).await.unwrap();
    let id = server.registry().created_sessions().remove(0);
    assert!(server.app().expire_session(&id).await);
    assert!(!server.app().expire_session(&id).await);
    let err = call(&client, echo("y", None), QUICK).await.unwrap_err();
    assert!(is_transport_error(&err), "{err:?}");
    assert_eq!(server.registry().deleted_sessions(), vec![id]);
    server.kill().await;
}

#[tokio::test]
async fn stateless_mode_has_no_sessions() {
    let server = start(&EchoConfig::default().with_stateful(false)).await;
    let client = connect(&server.url()).await;
    let result = call(&client, echo("s", None), QUICK).await.unwrap();
    assert_eq!(text(&result), "s");
    assert!(result.meta.is_none());
    let whoami = call(&client, CallToolRequestParams::new("whoami"), QUICK)
        .await
        .unwrap();
    assert_eq!(whoami.is_error, Some(true));
    assert_eq!(server.registry().created_count(), 0);
    assert_eq!(server.registry().sessions_for_message("s"), vec![None]);
    server.kill().await;
}

#[tokio::test]
async fn kill_closes_connections_and_the_port() {
    let server = start(&EchoConfig::default()).await;
    let addr = server.addr();
    let client = connect(&server.url()).await;
    call(&client, echo("before", None), QUICK).await.unwrap();

    // A call in flight when the server dies, and an idle raw connection.
    let in_flight = {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            let req = rmcp::model::ClientRequest::CallToolRequest(
                rmcp::model::CallToolRequest::new(echo("slow", Some(60_000))),
            );
            peer.send_request_with_option(
                req,
                rmcp::service::PeerRequestOptions::with_timeout(Duration::from_secs(30)),
            )
            .await
        })
    };
    let mut raw = TcpStream::connect(addr).await.unwrap();
    // Wait until the slow call has reached the tool.
    let deadline = Instant::now() + QUICK;
    while server.registry().sessions_for_message("slow").is_empty() {
        assert!(Instant::now() < deadline, "slow call never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(server.open_connections() >= 1);
    let control = server.control().clone();

    let started = Instant::now();
    tokio::time::timeout(QUICK, server.kill())
        .await
        .expect("kill returns promptly");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(control.open_connections(), 0);

    // The raw connection sees the close.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(QUICK, raw.read(&mut buf))
        .await
        .expect("closed connection is noticed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // The port is closed.
    assert!(TcpStream::connect(addr).await.is_err());

    // A new call fails quickly with a transport error.
    let started = Instant::now();
    let err = call(&client, echo("after", None), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(is_transport_error(&err), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    in_flight.abort();
}

#[tokio::test]
async fn restart_on_the_same_port_loses_sessions_but_keeps_the_registry() {
    let cfg = EchoConfig::default();
    let registry = SessionRegistry::default();
    let first = spawn_local_app(
        "127.0.0.1:0".parse().unwrap(),
        EchoApp::with_registry(&cfg, registry.clone()),
    )
    .await
    .unwrap();
    let addr = first.addr();
    let url = first.url();
    let old = connect_with(
        StreamableHttpClientTransportConfig::with_uri(url.clone()).reinit_on_expired_session(false),
    )
    .await;
    call(&old, echo("first life", None), QUICK).await.unwrap();
    first.kill().await;

    let second = spawn_local_app(addr, EchoApp::with_registry(&cfg, registry.clone()))
        .await
        .expect("rebind the same port");
    // The old session is unknown to the new incarnation.
    let err = call(&old, echo("stale", None), QUICK).await.unwrap_err();
    assert!(is_transport_error(&err), "{err:?}");
    let new = connect(&url).await;
    call(&new, echo("second life", None), QUICK).await.unwrap();

    let created = registry.created_sessions();
    assert_eq!(created.len(), 2);
    assert_eq!(
        registry.sessions_for_message("first life"),
        vec![Some(created[0].clone())]
    );
    assert_eq!(
        registry.sessions_for_message("second life"),
        vec![Some(created[1].clone())]
    );
    assert!(registry.sessions_for_message("stale").is_empty());
    second.kill().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_promptly_with_clients_attached() {
    let server = start(&EchoConfig::default()).await;
    let addr = server.addr();
    let client = connect(&server.url()).await;
    call(&client, echo("x", None), QUICK).await.unwrap();
    let started = Instant::now();
    server.shutdown(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "graceful shutdown took {:?}",
        started.elapsed()
    );
    assert!(TcpStream::connect(addr).await.is_err());
    let err = call(&client, echo("y", None), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(is_transport_error(&err), "{err:?}");
}

/// Sends a bare `initialize` POST with the given Host header; returns the status line.
async fn post_initialize_with_host(addr: std::net::SocketAddr, host: &str) -> String {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    // Read up to the end of the status line.
    while !response.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(QUICK, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before a status line");
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn extra_allowed_hosts_are_accepted() {
    let server = start(&EchoConfig::default()).await;
    let status = post_initialize_with_host(server.addr(), "server.sim").await;
    assert!(status.contains(" 403 "), "{status}");
    let status = post_initialize_with_host(server.addr(), "localhost").await;
    assert!(status.contains(" 200 "), "{status}");
    server.kill().await;

    let server = start(&EchoConfig::default().with_allowed_host("server.sim")).await;
    let status = post_initialize_with_host(server.addr(), "server.sim").await;
    assert!(status.contains(" 200 "), "{status}");
    server.kill().await;
}

#[tokio::test]
async fn non_loopback_addresses_are_refused() {
    let err = spawn_local_server("0.0.0.0:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
