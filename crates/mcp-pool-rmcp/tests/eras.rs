//! Sessions of every protocol era against the in-process echo server: what
//! each era's connect, health check, leases and labels are, forced eras,
//! and servers that change era in place (restarted on the same port).

use std::net::SocketAddr;
use std::time::Duration;

use mcp_pool::{ConnectFailure, Connector, Outcome};
use mcp_pool_echo::{spawn_local_server, EchoConfig, EchoServerHandle, Era as EchoEra};
use mcp_pool_rmcp::{Era, EraPolicy, Error, McpConnector, McpSession, SessionKey};
use rmcp::model::{CacheScope, CallToolRequestParams};

fn echo(message: &str) -> CallToolRequestParams {
    let args = rmcp::serde_json::json!({ "message": message });
    CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap())
}

async fn call(session: &McpSession, message: &str) -> Result<String, Error> {
    let result = session.call_tool(echo(message)).await?;
    Ok(result.content[0].as_text().unwrap().text.clone())
}

async fn server_at(addr: SocketAddr, config: EchoConfig) -> EchoServerHandle {
    // A port just freed by a kill may take a moment to be bindable again.
    for _ in 0..100 {
        if let Ok(server) = spawn_local_server(addr, &config).await {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the echo server could not listen on {addr}");
}

async fn server(era: EchoEra) -> EchoServerHandle {
    server_at(
        "127.0.0.1:0".parse().unwrap(),
        EchoConfig::default().with_era(era),
    )
    .await
}

/// Opens a session on a server that was just restarted. The HTTP client may
/// still hold a keep-alive connection to the killed server; a connect sent
/// on it breaks before it reaches the new one and fails as `Failed`, which
/// the pool retries. This does the same, a bounded number of times, and
/// lets every other failure through.
async fn open_after_restart(connector: &McpConnector, key: &SessionKey) -> McpSession {
    let mut last = None;
    for _ in 0..5 {
        match connector.open(key).await {
            Ok(session) => return session,
            Err(err) => {
                assert_eq!(
                    connector.classify_connect(&err),
                    ConnectFailure::Failed,
                    "only a broken connection is retried: {err}"
                );
                last = Some(err);
            }
        }
    }
    panic!("no session after a restart: {}", last.unwrap());
}

/// Kills `server` and waits until every HTTP connection the client pooled
/// to it has been idle for longer than the connectors' 1 ms
/// `http_idle_timeout`, so none is handed out again: the client may not
/// have seen the server close it yet (a loaded machine), and a request sent
/// on it would break instead of reaching the next server.
async fn kill_and_let_pooled_connections_expire(server: EchoServerHandle) {
    server.kill().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
}

fn connector(policy: EraPolicy) -> McpConnector {
    McpConnector::builder()
        .era(policy)
        .initialize_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_era_has_its_leases_labels_and_check() {
    let cases = [
        (EchoEra::Legacy, Era::LegacyStateful, 1),
        (EchoEra::LegacyStateless, Era::LegacyStateless, 16),
        (EchoEra::Modern, Era::Modern, 16),
    ];
    for (served, era, leases) in cases {
        let config = EchoConfig::default()
            .with_era(served)
            .with_cache_hint(60_000, CacheScope::Public);
        let server = server_at("127.0.0.1:0".parse().unwrap(), config).await;
        let connector = connector(EraPolicy::Auto);
        let key = SessionKey::anonymous(server.url()).unwrap();
        assert_eq!(
            connector.key_labels(&key),
            vec![("era", "unknown".to_owned())]
        );
        let session = connector.connect(&key).await.unwrap();
        assert_eq!(session.era(), era, "{served}");
        assert_eq!(connector.max_leases(&session), Some(leases), "{served}");
        assert_eq!(
            connector.key_labels(&key)[0],
            ("era", era.name().to_owned())
        );
        assert_eq!(
            connector
                .era_of(&server.url())
                .map(|(e, v)| (e, v.to_string())),
            Some((era, session.protocol_version().to_string()))
        );
        assert_eq!(
            session.upstream_session_id().is_some(),
            era.has_server_state()
        );

        // Every check is a round trip no cache answers: a modern one sends
        // server/discover (the result is cached for a minute), a legacy one
        // ping.
        let registry = server.registry();
        let discovers = registry.discover_requests();
        for _ in 0..3 {
            connector.check(&session).await.unwrap();
        }
        let expected = if era.is_modern() {
            discovers + 3
        } else {
            discovers
        };
        assert_eq!(registry.discover_requests(), expected, "{served}");
        connector.close(session).await;
        server.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_era_refuses_a_server_of_the_other() {
    let legacy = server(EchoEra::Legacy).await;
    let key = SessionKey::anonymous(legacy.url()).unwrap();
    let modern_only = connector(EraPolicy::Modern);
    let err = modern_only.open(&key).await.unwrap_err();
    assert!(matches!(err, Error::Discover { .. }), "{err}");
    assert_eq!(err.connect_failure(), ConnectFailure::Rejected);
    assert!(
        err.to_string().contains("-32601"),
        "names what the server said: {err}"
    );
    assert_eq!(legacy.registry().initialize_requests(), 0);

    let modern = server(EchoEra::Modern).await;
    let key = SessionKey::anonymous(modern.url()).unwrap();
    let legacy_only = connector(EraPolicy::Legacy);
    let err = legacy_only.open(&key).await.unwrap_err();
    assert!(matches!(err, Error::Initialize { .. }), "{err}");
    assert!(err.to_string().contains("-32022"), "{err}");
    assert_eq!(modern.registry().discover_requests(), 0);
    let session = modern_only.open(&key).await.unwrap();
    assert_eq!(call(&session, "hi").await.unwrap(), "hi");

    // A dual server serves either as asked.
    let dual = server(EchoEra::Dual).await;
    let key = SessionKey::anonymous(dual.url()).unwrap();
    assert_eq!(
        legacy_only.open(&key).await.unwrap().era(),
        Era::LegacyStateful
    );
    assert_eq!(modern_only.open(&key).await.unwrap().era(), Era::Modern);
    for s in [legacy, modern, dual] {
        s.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_session_outlives_a_restart_of_its_server() {
    let first = server(EchoEra::Modern).await;
    let addr = first.addr();
    // As in `call_across_an_era_change`: no pooled HTTP connection to the
    // old server.
    let connector = McpConnector::builder()
        .http_idle_timeout(Duration::from_millis(1))
        .build()
        .unwrap();
    let key = SessionKey::anonymous(first.url()).unwrap();
    let session = connector.open(&key).await.unwrap();
    assert_eq!(call(&session, "before").await.unwrap(), "before");
    kill_and_let_pooled_connections_expire(first).await;
    let second = server_at(addr, EchoConfig::default().with_era(EchoEra::Modern)).await;
    // Nothing about the server's restart concerns a session without
    // server-side state: no session loss, the same session goes on.
    assert_eq!(call(&session, "after").await.unwrap(), "after");
    assert!(!session.is_closed());
    assert_eq!(session.health().lost(), None);
    second.kill().await;
}

/// Opens a session on `from`, restarts the server on the same port as
/// `to`, and returns the error of the next call on that session, and the
/// era of the next session opened.
async fn call_across_an_era_change(from: EchoEra, to: EchoEra) -> (Error, Era) {
    let first = server(from).await;
    let addr = first.addr();
    // No HTTP connection outlives its idle millisecond (and the restart
    // waits past it), so the call after the restart reaches the new server
    // instead of racing the close of a pooled connection to the old one.
    let connector = McpConnector::builder()
        .http_idle_timeout(Duration::from_millis(1))
        .initialize_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let key = SessionKey::anonymous(first.url()).unwrap();
    let session = connector.open(&key).await.unwrap();
    assert_eq!(call(&session, "before").await.unwrap(), "before");
    kill_and_let_pooled_connections_expire(first).await;
    let second = server_at(addr, EchoConfig::default().with_era(to)).await;
    let err = call(&session, "after").await.unwrap_err();
    assert!(session.is_closed(), "{from} -> {to}: the session is dead");
    assert_eq!(connector.era_of(key.url()), None, "{from} -> {to}: {err}");
    let next = open_after_restart(&connector, &key).await;
    assert_eq!(call(&next, "next").await.unwrap(), "next");
    let era = next.era();
    assert_eq!(connector.era_of(key.url()).map(|(e, _)| e), Some(era));
    second.kill().await;
    (err, era)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_changes_era_in_place_refuses_safely_and_is_detected_again() {
    // Sessions that do not notice the restart by themselves (no event
    // stream): modern ones, and legacy stateless ones.
    let cases = [
        (
            EchoEra::Modern,
            EchoEra::Legacy,
            Era::LegacyStateful,
            "-32022",
        ),
        (
            EchoEra::Modern,
            EchoEra::LegacyStateless,
            Era::LegacyStateless,
            "-32022",
        ),
        (
            EchoEra::LegacyStateless,
            EchoEra::Modern,
            Era::Modern,
            "_meta",
        ),
        (
            EchoEra::LegacyStateless,
            EchoEra::Legacy,
            Era::LegacyStateful,
            "Session ID is required",
        ),
    ];
    for (from, to, next, words) in cases {
        let (err, era) = call_across_an_era_change(from, to).await;
        eprintln!("{from} -> {to}: {err}");
        assert!(
            matches!(err, Error::EraChanged { .. }),
            "{from} -> {to}: {err}"
        );
        assert!(err.to_string().contains(words), "{from} -> {to}: {err}");
        assert_eq!(err.outcome(), Outcome::TransportError);
        assert!(
            err.is_safe_to_retry(),
            "the server refused it before running it"
        );
        assert_eq!(era, next, "{from} -> {to}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_origin_that_turned_modern_is_detected_by_the_connect_that_finds_out() {
    let first = server(EchoEra::Legacy).await;
    let addr = first.addr();
    let connector = connector(EraPolicy::Auto);
    let key = SessionKey::anonymous(first.url()).unwrap();
    connector.open(&key).await.unwrap().close().await;
    assert_eq!(
        connector.era_of(key.url()).map(|(e, _)| e),
        Some(Era::LegacyStateful)
    );
    first.kill().await;
    let second = server_at(addr, EchoConfig::default().with_era(EchoEra::Modern)).await;
    // The recorded era fails (initialize refused with -32022); the same
    // connect detects the new one and succeeds in it.
    let session = open_after_restart(&connector, &key).await;
    assert_eq!(session.era(), Era::Modern);
    assert_eq!(call(&session, "hi").await.unwrap(), "hi");
    assert_eq!(second.registry().initialize_requests(), 1);
    assert_eq!(second.registry().discover_requests(), 1);
    second.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_that_disappears_across_a_restart_is_seen_by_the_next_connect() {
    let first = server(EchoEra::Legacy).await;
    let addr = first.addr();
    let connector = connector(EraPolicy::Auto);
    let key = SessionKey::anonymous(first.url()).unwrap();
    let stateful = connector.open(&key).await.unwrap();
    assert_eq!(stateful.era(), Era::LegacyStateful);
    first.kill().await;
    let second = server_at(
        addr,
        EchoConfig::default().with_era(EchoEra::LegacyStateless),
    )
    .await;
    let stateless = open_after_restart(&connector, &key).await;
    assert_eq!(stateless.era(), Era::LegacyStateless);
    assert_eq!(connector.max_leases(&stateless), Some(16));
    assert_eq!(
        connector.key_labels(&key)[0],
        ("era", "legacy-stateless".to_owned())
    );
    assert_eq!(call(&stateless, "hi").await.unwrap(), "hi");
    // Detected by the initialize answer alone: no new probe.
    assert_eq!(second.registry().discover_requests(), 0);
    second.kill().await;
}
