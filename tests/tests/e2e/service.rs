//! Normal service: calls succeed, sessions are reused, application errors
//! keep sessions, expired sessions are retried once.

use std::collections::HashSet;
use std::time::Duration;

use mcp_pool::{EvictReason, Outcome, RunError};
use mcp_pool_echo::{spawn_local_server, EchoConfig};
use mcp_pool_rmcp::{run_with_retry, Error, SessionKey};
use rmcp::model::CallToolRequestParams;
use rmcp::ServiceError;

use crate::common::{call_echo, pool, whoami};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_the_pool_succeed_and_reuse_sessions() {
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let pool = pool(4);
    let key = SessionKey::anonymous(server.url()).unwrap();

    let mut calls = Vec::new();
    for i in 0..64 {
        let pool = pool.clone();
        let key = key.clone();
        calls.push(tokio::spawn(async move {
            let message = format!("m{i}");
            let got = pool
                .run(&key, async |s| call_echo(s, &message, 1).await)
                .await
                .unwrap();
            assert_eq!(got, message);
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    let metrics = pool.metrics();
    assert_eq!(metrics.stats.grants, 64);
    assert!(metrics.stats.connected <= 4, "{:?}", metrics.stats);
    assert!(server.registry().created_count() <= 4);
    assert_eq!(server.registry().call_count(), 64);
    assert!(pool.shutdown().await.is_clean());
    // Shutdown closed every session with DELETE.
    let deleted: HashSet<String> = server.registry().deleted_sessions().into_iter().collect();
    for id in server.registry().created_sessions() {
        assert!(deleted.contains(&id), "session {id} was not deleted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tool_is_an_mcp_error_and_the_session_stays_pooled() {
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let pool = pool(1);
    let key = SessionKey::anonymous(server.url()).unwrap();
    let before = pool.run(&key, async |s| whoami(s).await).await.unwrap();

    let err = pool
        .run(&key, async |s| {
            s.call_tool(CallToolRequestParams::new("no-such-tool"))
                .await
        })
        .await
        .unwrap_err();
    let RunError::Call(err) = err else {
        panic!("expected the call's error, got {err}");
    };
    assert!(
        matches!(
            &err,
            Error::Service {
                source: ServiceError::McpError(_),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.outcome(), Outcome::ApplicationError);

    // A tool-level error keeps the session too.
    let err = pool
        .run(&key, async |s| {
            s.call_tool(CallToolRequestParams::new("fail")).await
        })
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Call(Error::Tool { .. })), "{err}");

    let metrics = pool.metrics();
    assert_eq!(metrics.idle(), 1);
    assert_eq!(metrics.stats.connected, 1);
    assert_eq!(metrics.stats.evictions.iter().sum::<u64>(), 0);
    let after = pool.run(&key, async |s| whoami(s).await).await.unwrap();
    assert_eq!(before, after, "the same upstream session served every call");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_poisoned_and_the_request_retried_once_elsewhere() {
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let pool = pool(1);
    let key = SessionKey::anonymous(server.url()).unwrap();
    let first = pool.run(&key, async |s| whoami(s).await).await.unwrap();

    // The server forgets the session: the next request on it gets HTTP 404.
    assert!(server.app().expire_session(&first).await);
    let second = run_with_retry(&pool, &key, async |s| whoami(s).await)
        .await
        .expect("the refused request runs again on a fresh session");
    assert_ne!(first, second);
    assert_eq!(server.registry().created_count(), 2);

    // The same without the retry: a plain run fails with a typed error that
    // says the server never accepted the request, and poisons the session.
    assert!(server.app().expire_session(&second).await);
    let outcome = pool.run(&key, async |s| whoami(s).await).await;
    match outcome {
        Err(RunError::Call(e)) => {
            eprintln!("plain run after expiry: {e}");
            assert!(e.is_safe_to_retry(), "{e}");
            assert_eq!(e.outcome(), Outcome::TransportError, "{e}");
        }
        // The expiry may also be seen first on the event stream.
        Ok(third) => {
            eprintln!("plain run after expiry succeeded");
            assert_ne!(third, second)
        }
        Err(e) => panic!("unexpected {e}"),
    }
    let metrics = pool.metrics();
    assert!(
        metrics.stats.evictions(EvictReason::TransportError)
            + metrics.stats.evictions(EvictReason::TransportClosed)
            >= 2,
        "{:?}",
        metrics.stats
    );
    let last = pool.run(&key, async |s| whoami(s).await).await.unwrap();
    assert_ne!(last, second);
    pool.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), server.kill())
        .await
        .unwrap();
}
