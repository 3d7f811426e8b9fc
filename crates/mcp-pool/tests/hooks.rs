//! The connector's answers about a session and a key reach the pool: the
//! lease limit it gives a session, the labels it gives a key.

use std::sync::atomic::{AtomicU64, Ordering};

use mcp_pool::{Connector, Outcome, Pool};

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

/// Sessions of key "shared" carry three leases, those of "exclusive" one.
#[derive(Default)]
struct Hooks {
    connects: AtomicU64,
}

impl Connector for Hooks {
    type Key = &'static str;
    type Session = u64;
    type Error = Never;

    async fn connect(&self, key: &&'static str) -> Result<u64, Never> {
        let n = self.connects.fetch_add(1, Ordering::SeqCst);
        Ok(if *key == "shared" { 1000 + n } else { n })
    }
    async fn check(&self, _session: &u64) -> Result<(), Never> {
        Ok(())
    }
    fn is_closed(&self, _session: &u64) -> bool {
        false
    }
    fn classify(&self, _error: &Never) -> Outcome {
        Outcome::ApplicationError
    }
    async fn close(&self, _session: u64) {}
    fn max_leases(&self, session: &u64) -> Option<usize> {
        (*session >= 1000).then_some(3)
    }
    fn key_labels(&self, key: &&'static str) -> Vec<(&'static str, String)> {
        vec![("kind", key.to_string())]
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_is_shared_as_its_connector_says_and_keys_carry_labels() {
    let pool = Pool::builder(Hooks::default())
        .max_sessions_per_key(4)
        .build()
        .unwrap();
    let shared: Vec<_> = futures_util::future::join_all((0..3).map(|_| pool.acquire(&"shared")))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        shared
            .iter()
            .all(|l| l.session_id() == shared[0].session_id()),
        "three callers share one session"
    );
    let exclusive: Vec<_> =
        futures_util::future::join_all((0..2).map(|_| pool.acquire(&"exclusive")))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    assert_ne!(exclusive[0].session_id(), exclusive[1].session_id());
    let m = pool.metrics();
    let kinds: Vec<_> = m
        .keys
        .iter()
        .map(|k| k.label("kind").unwrap().to_owned())
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"shared".to_owned()) && kinds.contains(&"exclusive".to_owned()));
    drop((shared, exclusive));
    // Now that the key's sessions are known to carry three, three callers
    // arriving together need one connect, not three.
    pool.drain();
    let before = pool.connector().connects.load(Ordering::SeqCst);
    let again: Vec<_> = futures_util::future::join_all((0..3).map(|_| pool.acquire(&"shared")))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pool.connector().connects.load(Ordering::SeqCst), before + 1);
    drop(again);
    assert!(pool.shutdown().await.is_clean());
}
