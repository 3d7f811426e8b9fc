//! Each era of the echo server against each client lifecycle of rmcp 3.11:
//! who connects, how the calls are served, what the refusals look like on
//! the wire, and how many handshake requests the server counted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    call, connect_in, discover_request, echo, initialize_request, lifecycles, raw_post, text, QUICK,
};
use mcp_pool_echo::{
    spawn_local_server, EchoConfig, EchoServer, EchoServerHandle, Era, SessionRegistry,
};
use rmcp::model::ProtocolVersion;
use rmcp::service::{ClientInitializeError, ClientLifecycleMode};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;

/// Connecting is quick in every case: well under the 10 s after which
/// `Auto` gives up on an unanswered `server/discover` and falls back, so a
/// connect within this bound did not wait for that timeout.
const CONNECT_BOUND: Duration = Duration::from_secs(5);

async fn start(era: Era) -> EchoServerHandle {
    spawn_local_server(
        "127.0.0.1:0".parse().unwrap(),
        &EchoConfig::default().with_era(era),
    )
    .await
    .expect("bind loopback")
}

/// What a client in some lifecycle meets at a server of some era.
#[derive(Debug)]
enum Outcome {
    /// It connects, and its `echo` call is served like this.
    Served {
        in_session: bool,
        protocol_version: &'static str,
        per_request_meta: bool,
    },
    /// Connecting fails with this JSON-RPC error.
    Refused {
        code: i32,
        message: &'static str,
        data: Option<serde_json::Value>,
    },
}

const LEGACY_SESSION: Outcome = Outcome::Served {
    in_session: true,
    protocol_version: "2025-11-25",
    per_request_meta: false,
};
const LEGACY_STATELESS: Outcome = Outcome::Served {
    in_session: false,
    protocol_version: "2025-11-25",
    per_request_meta: false,
};
const MODERN: Outcome = Outcome::Served {
    in_session: false,
    protocol_version: "2026-07-28",
    per_request_meta: true,
};
const DISCOVER_UNKNOWN: Outcome = Outcome::Refused {
    code: -32601,
    message: "Method not found",
    data: None,
};

/// The expected matrix: for each era, per lifecycle (initialize, discover,
/// auto), the outcome and the `initialize` and `server/discover` requests
/// the server receives for one connect.
fn expected(era: Era) -> [(Outcome, u64, u64); 3] {
    match era {
        Era::Legacy => [
            (LEGACY_SESSION, 1, 0),
            (DISCOVER_UNKNOWN, 0, 1),
            (LEGACY_SESSION, 1, 1),
        ],
        Era::LegacyStateless => [
            (LEGACY_STATELESS, 1, 0),
            (DISCOVER_UNKNOWN, 0, 1),
            (LEGACY_STATELESS, 1, 1),
        ],
        Era::Modern => [
            (
                Outcome::Refused {
                    code: -32022,
                    message: "Unsupported protocol version",
                    // rmcp's default client asks `initialize` for 2026-07-28.
                    data: Some(json!({"requested": "2026-07-28", "supported": ["2026-07-28"]})),
                },
                1,
                0,
            ),
            (MODERN, 0, 1),
            (MODERN, 0, 1),
        ],
        Era::Dual => [(LEGACY_SESSION, 1, 0), (MODERN, 0, 1), (MODERN, 0, 1)],
    }
}

#[tokio::test]
async fn every_era_against_every_client_lifecycle() {
    for era in Era::ALL {
        for ((lifecycle, mode), (outcome, initializes, discovers)) in
            lifecycles().into_iter().zip(expected(era))
        {
            let case = format!("{era} server, {lifecycle} client");
            let server = start(era).await;
            let registry = server.registry().clone();
            let connected = connect_in((), &server.url(), mode, CONNECT_BOUND).await;
            match (outcome, connected) {
                (
                    Outcome::Served {
                        in_session,
                        protocol_version,
                        per_request_meta,
                    },
                    Ok(client),
                ) => {
                    let message = format!("via {case}");
                    let result = call(&client, echo(&message, None), QUICK)
                        .await
                        .unwrap_or_else(|e| panic!("{case}: echo failed: {e}"));
                    assert_eq!(text(&result), message, "{case}");
                    let served = registry.calls_for_message(&message);
                    assert_eq!(served.len(), 1, "{case}: {served:?}");
                    let served = &served[0];
                    let created = registry.created_sessions();
                    if in_session {
                        assert_eq!(created.len(), 1, "{case}");
                        assert_eq!(served.session_id.as_ref(), Some(&created[0]), "{case}");
                    } else {
                        assert!(created.is_empty(), "{case}: {created:?}");
                        assert_eq!(served.session_id, None, "{case}");
                    }
                    assert_eq!(
                        served.protocol_version.as_deref(),
                        Some(protocol_version),
                        "{case}"
                    );
                    let meta = per_request_meta.then_some(protocol_version);
                    assert_eq!(served.meta_protocol_version.as_deref(), meta, "{case}");
                }
                (
                    Outcome::Refused {
                        code,
                        message,
                        data,
                    },
                    Err(ClientInitializeError::JsonRpcError(error)),
                ) => {
                    assert_eq!(error.code.0, code, "{case}: {error:?}");
                    assert_eq!(error.message, message, "{case}: {error:?}");
                    assert_eq!(error.data, data, "{case}: {error:?}");
                    assert_eq!(registry.created_count(), 0, "{case}");
                }
                (outcome, Ok(_)) => panic!("{case}: connected, expected {outcome:?}"),
                (outcome, Err(e)) => panic!("{case}: {e:?}, expected {outcome:?}"),
            }
            assert_eq!(
                (registry.initialize_requests(), registry.discover_requests()),
                (initializes, discovers),
                "{case}: (initialize, server/discover) requests received"
            );
            server.kill().await;
        }
    }
}

/// Legacy stateful eras hand out an `Mcp-Session-Id`, the others none; a
/// legacy era refuses `server/discover` as an unknown method, a modern one
/// refuses `initialize`; every request is counted, refused or not.
#[tokio::test]
async fn the_wire_answers_of_each_era() {
    let (discover, discover_headers) = discover_request();
    for era in Era::ALL {
        let server = start(era).await;
        let url = server.url();

        let init = raw_post(&url, initialize_request("2025-11-25"), &[]).await;
        assert_eq!(init.status, 200, "{era}: {init:?}");
        assert_eq!(
            init.session_id.is_some(),
            era.has_sessions(),
            "{era}: {init:?}"
        );
        if era.serves_legacy() {
            let result = &init.message()["result"];
            assert_eq!(result["protocolVersion"], "2025-11-25", "{era}: {init:?}");
        } else {
            // rmcp refuses it in the event stream, with HTTP 200.
            assert_eq!(init.content_type.as_deref(), Some("text/event-stream"));
            assert_eq!(
                init.error(),
                (-32022, "Unsupported protocol version".to_owned()),
                "{era}"
            );
            assert_eq!(
                init.message()["error"]["data"],
                json!({"requested": "2025-11-25", "supported": ["2026-07-28"]})
            );
        }

        let found = raw_post(&url, discover.clone(), &discover_headers).await;
        assert_eq!(found.status, 200, "{era}: {found:?}");
        assert_eq!(found.session_id, None, "{era}: {found:?}");
        let answer = found.message();
        assert_eq!(answer["id"], 7, "{era}: {found:?}");
        if era.serves_modern() {
            let versions: Vec<&str> = era
                .supported_versions()
                .iter()
                .map(|v| v.as_str())
                .collect();
            assert_eq!(
                answer["result"]["supportedVersions"],
                json!(versions),
                "{era}"
            );
        } else {
            assert_eq!(found.content_type.as_deref(), Some("application/json"));
            assert_eq!(
                found.error(),
                (-32601, "Method not found".to_owned()),
                "{era}"
            );
        }

        assert_eq!(server.registry().initialize_requests(), 1, "{era}");
        assert_eq!(server.registry().discover_requests(), 1, "{era}");
        assert_eq!(
            server.registry().created_count(),
            usize::from(era.has_sessions()),
            "{era}"
        );
        server.kill().await;
    }
}

/// A modern server wants the per-request signals on every request: without
/// the `MCP-Protocol-Version` header -32020, with the headers but without
/// `_meta` -32602, both with HTTP 400; and it has no GET stream.
#[tokio::test]
async fn modern_requests_need_their_own_metadata() {
    let server = start(Era::Modern).await;
    let url = server.url();
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}});

    let bare = raw_post(&url, list.clone(), &[]).await;
    assert_eq!(bare.status, 400, "{bare:?}");
    let (code, message) = bare.error();
    assert_eq!(code, -32020, "{bare:?}");
    assert!(message.contains("MCP-Protocol-Version"), "{message}");

    let headers_only = raw_post(
        &url,
        list,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    assert_eq!(headers_only.status, 400, "{headers_only:?}");
    let (code, message) = headers_only.error();
    assert_eq!(code, -32602, "{headers_only:?}");
    assert!(message.contains("_meta"), "{message}");

    let get = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert!(server.registry().calls().is_empty());
    server.kill().await;
}

/// Probes are counted one by one, across clients and lifecycles, and only
/// `initialize` and `server/discover` count (calls, notifications, GETs and
/// DELETEs do not).
#[tokio::test]
async fn handshake_requests_are_counted_exactly() {
    let [(_, initialize), (_, discover), (_, auto)] = lifecycles();
    for (era, auto_clients, initialize_clients) in [(Era::Legacy, 3, 2), (Era::Dual, 2, 1)] {
        let server = start(era).await;
        let mut clients = Vec::new();
        for _ in 0..auto_clients {
            clients.push(
                connect_in((), &server.url(), auto.clone(), CONNECT_BOUND)
                    .await
                    .unwrap(),
            );
        }
        for _ in 0..initialize_clients {
            clients.push(
                connect_in((), &server.url(), initialize.clone(), CONNECT_BOUND)
                    .await
                    .unwrap(),
            );
        }
        let discovered = connect_in((), &server.url(), discover.clone(), CONNECT_BOUND).await;
        assert_eq!(discovered.is_ok(), era.serves_modern(), "{era}");
        for (i, client) in clients.iter().enumerate() {
            call(client, echo(&format!("{era} {i}"), None), QUICK)
                .await
                .unwrap();
        }
        for client in clients {
            client.cancel().await.unwrap();
        }
        let registry = server.registry();
        // Legacy: every Auto client probed, was refused, and initialized.
        // Dual: every Auto client stayed modern.
        let expected_initialize = match era {
            Era::Legacy => auto_clients + initialize_clients,
            _ => initialize_clients,
        };
        assert_eq!(registry.initialize_requests(), expected_initialize, "{era}");
        assert_eq!(registry.discover_requests(), auto_clients + 1, "{era}");
        assert_eq!(
            registry.call_count(),
            auto_clients + initialize_clients,
            "{era}"
        );
        server.kill().await;
    }
}

/// Why the legacy eras refuse `server/discover` themselves: with rmcp's
/// version list alone (the echo handler of the legacy era behind rmcp's
/// default HTTP service), rmcp answers it with -32022 and the legacy
/// versions, which rmcp's `Auto` client takes for a modern server it shares
/// no version with: it fails instead of falling back to `initialize`.
#[tokio::test]
async fn auto_gives_up_on_a_server_that_only_narrows_its_versions() {
    let registry = SessionRegistry::default();
    let service = StreamableHttpService::new(
        move || Ok(EchoServer::with_era(registry.clone(), Era::Legacy)),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, router).await });

    let auto = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::LATEST],
        legacy_version: None,
    };
    match connect_in((), &url, auto, CONNECT_BOUND).await {
        Err(ClientInitializeError::NoCompatibleProtocolVersion {
            client_supported,
            server_supported,
        }) => {
            assert_eq!(client_supported, vec![ProtocolVersion::LATEST]);
            assert_eq!(server_supported, Era::Legacy.supported_versions());
        }
        other => panic!(
            "expected NoCompatibleProtocolVersion, got {:?}",
            other.map(|_| ())
        ),
    }
    // The same client connects to the legacy era, which refuses the probe.
    let server = start(Era::Legacy).await;
    let [_, _, (_, auto)] = lifecycles();
    connect_in((), &server.url(), auto, CONNECT_BOUND)
        .await
        .expect("Auto falls back to initialize");
    server.kill().await;
    task.abort();
}
