//! Protocol eras end to end: pooled calls against servers of every era, one
//! era probe per origin, an era change across a SIGKILL restart on the same
//! port, sharing of sessions by era, and private cache entries (C1).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pool::Pool;
use mcp_pool_echo::{spawn_local_server, EchoConfig, EchoServerHandle, Era as EchoEra};
use mcp_pool_rmcp::{run_with_retry, Era, McpConnector, McpPool, SessionKey};
use rmcp::model::CacheScope;

use crate::common::{call_echo, connector, pool, pool_with, EchoProcess};

async fn echo_server(config: EchoConfig) -> EchoServerHandle {
    spawn_local_server("127.0.0.1:0".parse().unwrap(), &config)
        .await
        .expect("the echo server starts")
}

fn key_of(url: &str, identity: &str) -> SessionKey {
    SessionKey::builder(url)
        .bearer(&format!("token-of-{identity}"))
        .build()
        .unwrap()
}

/// The labels `pool` shows for its first key.
fn labels(pool: &McpPool) -> (Option<String>, Option<String>) {
    let metrics = pool.metrics();
    let key = metrics.keys.first().expect("one key");
    (
        key.label("era").map(str::to_owned),
        key.label("protocol_version").map(str::to_owned),
    )
}

/// Runs `n` concurrent echo calls through `pool` with `run_with_retry`, on
/// this task (its future is not `Send` for every lifetime); returns the
/// failures, in words.
async fn burst(pool: &McpPool, key: &SessionKey, tag: &str, n: usize) -> Vec<String> {
    let calls = (0..n).map(|i| async move {
        let message = format!("{tag}-{i}");
        let call = run_with_retry(pool, key, async |s| call_echo(s, &message, 2).await);
        match tokio::time::timeout(Duration::from_secs(30), call).await {
            Ok(Ok(got)) if got == message => None,
            Ok(Ok(got)) => Some(format!("{message}: echoed {got:?}")),
            Ok(Err(e)) => Some(format!("{message}: {e}")),
            Err(_) => Some(format!("{message}: hung")),
        }
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_calls_work_against_every_era() {
    let cases = [
        (EchoEra::Legacy, Era::LegacyStateful, "2025-11-25"),
        (EchoEra::LegacyStateless, Era::LegacyStateless, "2025-11-25"),
        (EchoEra::Modern, Era::Modern, "2026-07-28"),
        (EchoEra::Dual, Era::Modern, "2026-07-28"),
    ];
    for (served, expected, version) in cases {
        let server = echo_server(EchoConfig::default().with_era(served)).await;
        let pool = pool(4);
        let key = key_of(&server.url(), "a");
        let failures = burst(&pool, &key, served.name(), 24).await;
        assert_eq!(failures, Vec::<String>::new(), "{served}: no call fails");
        let era = pool
            .run(&key, async |s| {
                Ok::<_, mcp_pool_rmcp::Error>((s.era(), s.protocol_version().clone()))
            })
            .await
            .unwrap();
        assert_eq!(era.0, expected, "{served}");
        assert_eq!(era.1.as_str(), version, "{served}");
        assert_eq!(
            labels(&pool),
            (Some(expected.name().to_owned()), Some(version.to_owned())),
            "{served}"
        );
        // What the server saw: every call served in the detected era.
        let calls = server.registry().calls();
        assert_eq!(calls.len(), 24, "{served}");
        for call in &calls {
            assert_eq!(
                call.protocol_version.as_deref(),
                Some(version),
                "{served}: {call:?}"
            );
            let per_request = call.meta_protocol_version.is_some();
            assert_eq!(per_request, expected.is_modern(), "{served}: {call:?}");
            assert_eq!(
                call.session_id.is_some(),
                expected.has_server_state(),
                "{served}: {call:?}"
            );
        }
        let stats = pool.metrics().stats;
        assert_eq!(stats.connect_failures, 0, "{served}: {stats:?}");
        pool.shutdown().await;
        server.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_is_probed_once_across_connects_keys_and_identities() {
    // (era, cache hint, discover requests expected for 3 identities x 2
    // affinities x 3 connects each, initialize requests expected).
    type Case = (EchoEra, Option<(u64, CacheScope)>, u64, u64);
    let connects = 3 * 2 * 3;
    let cases: [Case; 6] = [
        (EchoEra::Legacy, None, 1, connects),
        (EchoEra::LegacyStateless, None, 1, connects),
        (EchoEra::Modern, Some((60_000, CacheScope::Public)), 1, 0),
        (EchoEra::Dual, Some((60_000, CacheScope::Public)), 1, 0),
        // A private result serves its own identity only: one per identity.
        (EchoEra::Modern, Some((60_000, CacheScope::Private)), 3, 0),
        // rmcp's default, `ttlMs` 0: never fresh, so every modern connect
        // asks again (the era is still known: no `initialize`).
        (EchoEra::Modern, None, connects, 0),
    ];
    for (served, hint, discovers, initializes) in cases {
        let mut config = EchoConfig::default().with_era(served);
        if let Some((ttl, scope)) = hint {
            config = config.with_cache_hint(ttl, scope);
        }
        let server = echo_server(config).await;
        let connector = connector();
        for identity in ["a", "b", "c"] {
            for affinity in ["d1", "d2"] {
                let key = SessionKey::builder(server.url())
                    .bearer(&format!("token-of-{identity}"))
                    .affinity(affinity)
                    .build()
                    .unwrap();
                for _ in 0..3 {
                    let session = connector.open(&key).await.unwrap();
                    assert_eq!(call_echo(&session, "x", 0).await.unwrap(), "x");
                    session.close().await;
                }
            }
        }
        let registry = server.registry();
        assert_eq!(registry.discover_requests(), discovers, "{served} {hint:?}");
        assert_eq!(
            registry.initialize_requests(),
            initializes,
            "{served} {hint:?}"
        );
        eprintln!(
            "{served} {hint:?}: {connects} connects, {} server/discover, {} initialize",
            registry.discover_requests(),
            registry.initialize_requests()
        );
        server.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_share_one_probe() {
    let server = echo_server(EchoConfig::default()).await;
    let connector = connector();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let connector = connector.clone();
        let key = key_of(&server.url(), &format!("id-{i}"));
        tasks.push(tokio::spawn(async move {
            let session = connector.open(&key).await?;
            let era = session.era();
            session.close().await;
            Ok::<_, mcp_pool_rmcp::Error>(era)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Era::LegacyStateful);
    }
    assert_eq!(server.registry().discover_requests(), 1);
    assert_eq!(server.registry().initialize_requests(), 8);
    server.kill().await;
}

/// Runs `callers` concurrent delayed calls through `pool` and returns the
/// most callers that held one session at once.
async fn most_sharing(pool: &McpPool, key: &SessionKey, callers: usize) -> usize {
    let holders: Arc<Mutex<HashMap<usize, (usize, usize)>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..callers {
        let (pool, key, holders) = (pool.clone(), key.clone(), holders.clone());
        tasks.push(tokio::spawn(async move {
            pool.run(&key, async |s| {
                let id = std::ptr::from_ref(s) as usize;
                {
                    let mut holders = holders.lock().unwrap();
                    let (now, most) = holders.entry(id).or_default();
                    *now += 1;
                    *most = (*most).max(*now);
                }
                let result = call_echo(s, &format!("share-{i}"), 150).await;
                holders.lock().unwrap().entry(id).or_default().0 -= 1;
                result
            })
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("every shared call succeeds");
    }
    let most = holders
        .lock()
        .unwrap()
        .values()
        .map(|(_, most)| *most)
        .max();
    most.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_sessions_are_shared_and_legacy_stateful_ones_are_not() {
    for (served, shared) in [
        (EchoEra::Modern, true),
        (EchoEra::LegacyStateless, true),
        (EchoEra::Legacy, false),
    ] {
        let server = echo_server(EchoConfig::default().with_era(served)).await;
        let pool = pool(2);
        let key = key_of(&server.url(), "a");
        let most = most_sharing(&pool, &key, 8).await;
        eprintln!("{served}: at most {most} callers on one session");
        if shared {
            assert!(most > 1, "{served}: sessions are shared, at most {most}");
        } else {
            assert_eq!(most, 1, "{served}: sessions are exclusive");
        }
        pool.shutdown().await;
        server.kill().await;
    }
    // shared_leases(1) makes every session exclusive.
    let server = echo_server(EchoConfig::default().with_era(EchoEra::Modern)).await;
    let exclusive = McpConnector::builder()
        .shared_leases(1)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let pool = pool_with(exclusive, 2);
    let key = key_of(&server.url(), "a");
    assert_eq!(most_sharing(&pool, &key, 6).await, 1);
    pool.shutdown().await;
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_era_change_across_a_restart_is_detected_and_every_call_succeeds() {
    let mut server = EchoProcess::start_era(0, "legacy");
    let port = server.addr.port();
    let pool = pool(4);
    let key = key_of(&server.url(), "a");
    assert_eq!(burst(&pool, &key, "legacy", 16).await, Vec::<String>::new());
    assert_eq!(labels(&pool).0.as_deref(), Some("legacy-stateful"));

    for (era, label, version) in [
        ("modern", "modern", "2026-07-28"),
        ("legacy", "legacy-stateful", "2025-11-25"),
        ("modern", "modern", "2026-07-28"),
    ] {
        server.kill();
        server = EchoProcess::start_era(port, era);
        for round in 0..3 {
            let failures = burst(&pool, &key, &format!("{era}-{round}"), 16).await;
            assert_eq!(failures, Vec::<String>::new(), "after the restart as {era}");
        }
        assert_eq!(
            labels(&pool),
            (Some(label.to_owned()), Some(version.to_owned())),
            "after the restart as {era}"
        );
    }
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_cache_entries_never_serve_another_identity() {
    for scope in [CacheScope::Private, CacheScope::Public] {
        let server = echo_server(
            EchoConfig::default()
                .with_era(EchoEra::Modern)
                .with_cache_hint(60_000, scope),
        )
        .await;
        let connector = McpConnector::builder().cache_audit(true).build().unwrap();
        let pool = Pool::builder(connector.clone())
            .max_sessions_per_key(2)
            .build()
            .unwrap();
        let (a, b) = (key_of(&server.url(), "a"), key_of(&server.url(), "b"));
        for key in [&a, &b, &a, &b] {
            let tools = pool
                .run(key, async |s| s.list_all_tools().await)
                .await
                .unwrap();
            assert!(tools.iter().any(|t| t.name == "echo"));
            let discovered = pool.run(key, async |s| s.discover().await).await.unwrap();
            assert_eq!(discovered.cache_scope, scope);
        }
        let registry = server.registry();
        let (lists, discovers) = match scope {
            // Each identity fetched its own, once.
            CacheScope::Private => (2, 2),
            // The first fetch served both.
            _ => (1, 1),
        };
        assert_eq!(registry.list_tools_requests(), lists, "{scope:?}");
        assert_eq!(registry.discover_requests(), discovers, "{scope:?}");
        let events = connector.cache_events();
        assert!(
            !events.is_empty(),
            "{scope:?}: results were served from the cache"
        );
        for event in &events {
            assert!(
                !event.crosses_identities(),
                "{}: {event:?}",
                mcp_pool_rmcp::invariants::C1
            );
        }
        let across = events
            .iter()
            .filter(|e| e.fetched_for != e.served_to)
            .count();
        match scope {
            CacheScope::Private => assert_eq!(across, 0, "{events:?}"),
            _ => assert!(
                across > 0,
                "a public result serves the other identity: {events:?}"
            ),
        }
        pool.shutdown().await;
        server.kill().await;
    }
}
