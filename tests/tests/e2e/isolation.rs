//! Isolation: different identities or affinity ids never share an upstream
//! session (checked with the server's own session ids).

use std::collections::{HashMap, HashSet};

use mcp_pool_echo::{spawn_local_server, EchoConfig};
use mcp_pool_rmcp::{McpPool, SessionKey};

use crate::common::{call_echo, pool, whoami};

/// Runs `rounds` concurrent `whoami` + `echo` pairs per key and returns, per
/// key index, the server-side session ids that served it.
async fn sessions_seen(pool: &McpPool, keys: &[SessionKey], rounds: usize) -> Vec<HashSet<String>> {
    let mut tasks = Vec::new();
    for round in 0..rounds {
        for (index, key) in keys.iter().enumerate() {
            let pool = pool.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let id = pool
                    .run(&key, async |s| {
                        // Hold the session a little so that several are needed.
                        call_echo(s, &format!("{index}-{round}"), 2).await?;
                        whoami(s).await
                    })
                    .await
                    .unwrap();
                (index, id)
            }));
        }
    }
    let mut seen = vec![HashSet::new(); keys.len()];
    for task in tasks {
        let (index, id) = task.await.unwrap();
        seen[index].insert(id);
    }
    seen
}

fn assert_disjoint(seen: &[HashSet<String>]) {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (index, ids) in seen.iter().enumerate() {
        assert!(!ids.is_empty());
        for id in ids {
            if let Some(other) = owner.insert(id, index) {
                panic!("upstream session {id} served key {other} and key {index}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identities_never_share_an_upstream_session() {
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let pool = pool(3);
    let alice = SessionKey::builder(server.url())
        .bearer("alice-token")
        .header("x-tenant-id", "t1")
        .build()
        .unwrap();
    let bob = SessionKey::builder(server.url())
        .bearer("bob-token")
        .header("x-tenant-id", "t1")
        .build()
        .unwrap();
    // Same credentials, different tenant: a third identity.
    let alice_t2 = SessionKey::builder(server.url())
        .bearer("alice-token")
        .header("x-tenant-id", "t2")
        .build()
        .unwrap();
    let keys = [alice, bob, alice_t2];
    let seen = sessions_seen(&pool, &keys, 12).await;
    assert_disjoint(&seen);
    let total: usize = seen.iter().map(HashSet::len).sum();
    assert_eq!(total, server.registry().created_count());
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_keys_never_share_an_upstream_session() {
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let pool = pool(2);
    let keys: Vec<SessionKey> = ["downstream-a", "downstream-b", "downstream-c"]
        .iter()
        .map(|id| {
            SessionKey::builder(server.url())
                .bearer("same-user")
                .affinity(*id)
                .build()
                .unwrap()
        })
        .collect();
    let seen = sessions_seen(&pool, &keys, 8).await;
    assert_disjoint(&seen);
    pool.shutdown().await;
}
