//! The connector's cache of `server/discover` and `tools/list` results,
//! shared by every session of a connector and keyed so that a result marked
//! `cacheScope: private` only ever serves the identity it was fetched for
//! (invariant [`C1`](crate::invariants::C1)).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rmcp::model::{CacheScope, DiscoverResult, Tool};
use tokio::time::Instant;

use crate::redact::redact_url;
use crate::Identity;

/// The longest `ttlMs` honoured (a day), whatever the server says.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Most entries kept; past it, expired entries go first, then the ones
/// expiring soonest.
const MAX_ENTRIES: usize = 4096;

/// Most events an audit log keeps (the oldest go first).
const MAX_EVENTS: usize = 100_000;

/// Which result an entry holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CachedResult {
    /// A `server/discover` result.
    Discover,
    /// Every page of `tools/list`, merged.
    ToolsList,
}

/// Whom an entry may serve: every identity of the endpoint, or one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Partition {
    Public,
    Private(Identity),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EntryKey {
    endpoint: Arc<str>,
    result: CachedResult,
    partition: Partition,
}

/// A cached value.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Discover(Box<DiscoverResult>),
    Tools(Vec<Tool>),
}

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    expires_at: Instant,
    fetched_for: Identity,
}

/// One result served from the cache, as recorded by the audit log (see
/// [`McpConnectorBuilder::cache_audit`](crate::McpConnectorBuilder::cache_audit)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEvent {
    /// The endpoint, its query values replaced.
    pub endpoint: String,
    /// Which result was served.
    pub result: CachedResult,
    /// The scope the server gave it (`private` when it gave none).
    pub scope: CacheScope,
    /// The identity whose request fetched it from the server.
    pub fetched_for: Identity,
    /// The identity it was served to.
    pub served_to: Identity,
}

impl CacheEvent {
    /// Whether this event breaks [`C1`](crate::invariants::C1): a private
    /// result served to an identity other than the one it was fetched for.
    pub fn crosses_identities(&self) -> bool {
        self.scope == CacheScope::Private && self.fetched_for != self.served_to
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert or removal: a poisoned lock is still
    // consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cache. Lookups and stores take one short lock, no I/O.
#[derive(Debug, Default)]
pub(crate) struct ResultCache {
    entries: Mutex<HashMap<EntryKey, Entry>>,
    /// `Some` when auditing is on.
    audit: Option<Mutex<VecDeque<CacheEvent>>>,
}

impl ResultCache {
    pub(crate) fn new(audit: bool) -> ResultCache {
        ResultCache {
            entries: Mutex::default(),
            audit: audit.then(Mutex::default),
        }
    }

    /// A fresh `result` of `endpoint` that `identity` may be served: its
    /// own private entry first, then the endpoint's public one. A private
    /// entry is only ever looked up under the identity asking, so it cannot
    /// reach another (C1).
    pub(crate) fn get(
        &self,
        endpoint: &Arc<str>,
        identity: Identity,
        result: CachedResult,
    ) -> Option<Value> {
        let now = Instant::now();
        let entries = lock(&self.entries);
        for (partition, scope) in [
            (Partition::Private(identity), CacheScope::Private),
            (Partition::Public, CacheScope::Public),
        ] {
            let key = EntryKey {
                endpoint: endpoint.clone(),
                result,
                partition,
            };
            let Some(entry) = entries.get(&key).filter(|e| e.expires_at > now) else {
                continue;
            };
            debug_assert!(
                scope == CacheScope::Public || entry.fetched_for == identity,
                "{}",
                crate::invariants::C1
            );
            if let Some(audit) = &self.audit {
                let mut events = lock(audit);
                if events.len() == MAX_EVENTS {
                    events.pop_front();
                }
                events.push_back(CacheEvent {
                    endpoint: redact_url(endpoint),
                    result,
                    scope,
                    fetched_for: entry.fetched_for,
                    served_to: identity,
                });
            }
            return Some(entry.value.clone());
        }
        None
    }

    /// Stores `value`, fetched for `identity`, for `ttl_ms` (none or 0: not
    /// stored) under the server's `scope`: `public` serves every identity
    /// of the endpoint, `private` (or no scope at all) only `identity`.
    pub(crate) fn put(
        &self,
        endpoint: &Arc<str>,
        identity: Identity,
        result: CachedResult,
        value: Value,
        ttl_ms: Option<u64>,
        scope: Option<CacheScope>,
    ) {
        let ttl = Duration::from_millis(ttl_ms.unwrap_or(0)).min(MAX_TTL);
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let partition = match scope {
            Some(CacheScope::Public) => Partition::Public,
            _ => Partition::Private(identity),
        };
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.expires_at > now);
            while entries.len() >= MAX_ENTRIES {
                let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires_at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                entries.remove(&soonest);
            }
        }
        entries.insert(
            EntryKey {
                endpoint: endpoint.clone(),
                result,
                partition,
            },
            Entry {
                value,
                expires_at: now + ttl,
                fetched_for: identity,
            },
        );
    }

    /// Drops every entry of `endpoint` (its server changed era).
    pub(crate) fn forget_endpoint(&self, endpoint: &str) {
        lock(&self.entries).retain(|key, _| &*key.endpoint != endpoint);
    }

    /// The audit log, oldest first (empty when auditing is off).
    pub(crate) fn events(&self) -> Vec<CacheEvent> {
        self.audit
            .as_ref()
            .map(|a| lock(a).iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ServerCapabilities;

    fn discover() -> Value {
        Value::Discover(Box::new(DiscoverResult::new(
            vec![rmcp::model::ProtocolVersion::LATEST],
            ServerCapabilities::default(),
        )))
    }

    fn endpoint() -> Arc<str> {
        Arc::from("http://127.0.0.1:1/mcp")
    }

    #[tokio::test]
    async fn a_private_entry_serves_only_its_identity() {
        let cache = ResultCache::new(true);
        let (a, b) = (Identity::supplied("a"), Identity::supplied("b"));
        let url = endpoint();
        cache.put(
            &url,
            a,
            CachedResult::Discover,
            discover(),
            Some(60_000),
            Some(CacheScope::Private),
        );
        assert!(cache.get(&url, a, CachedResult::Discover).is_some());
        assert!(cache.get(&url, b, CachedResult::Discover).is_none());
        assert!(cache.get(&url, a, CachedResult::ToolsList).is_none());
        let events = cache.events();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].fetched_for, events[0].served_to), (a, a));
        assert!(!events[0].crosses_identities());
    }

    #[tokio::test]
    async fn a_public_entry_serves_every_identity_and_no_scope_is_private() {
        let cache = ResultCache::new(true);
        let (a, b) = (Identity::supplied("a"), Identity::supplied("b"));
        let url = endpoint();
        cache.put(
            &url,
            a,
            CachedResult::ToolsList,
            Value::Tools(vec![]),
            Some(60_000),
            Some(CacheScope::Public),
        );
        assert!(cache.get(&url, b, CachedResult::ToolsList).is_some());
        cache.put(
            &url,
            a,
            CachedResult::Discover,
            discover(),
            Some(60_000),
            None,
        );
        assert!(cache.get(&url, b, CachedResult::Discover).is_none());
        let events = cache.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].scope, CacheScope::Public);
        assert!(!events[0].crosses_identities());
        assert!(cache
            .get(&Arc::from("http://other/mcp"), a, CachedResult::ToolsList)
            .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_live_for_their_ttl_and_zero_is_not_stored() {
        let cache = ResultCache::new(false);
        let a = Identity::supplied("a");
        let url = endpoint();
        cache.put(
            &url,
            a,
            CachedResult::Discover,
            discover(),
            Some(0),
            Some(CacheScope::Public),
        );
        assert!(cache.get(&url, a, CachedResult::Discover).is_none());
        cache.put(
            &url,
            a,
            CachedResult::Discover,
            discover(),
            Some(1_000),
            Some(CacheScope::Public),
        );
        assert!(cache.get(&url, a, CachedResult::Discover).is_some());
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(cache.get(&url, a, CachedResult::Discover).is_none());
        assert!(cache.events().is_empty(), "auditing is off");
        cache.put(
            &url,
            a,
            CachedResult::Discover,
            discover(),
            Some(1_000),
            Some(CacheScope::Public),
        );
        cache.forget_endpoint(&url);
        assert!(cache.get(&url, a, CachedResult::Discover).is_none());
    }

    #[test]
    fn an_event_across_identities_is_flagged() {
        let event = CacheEvent {
            endpoint: "http://h/mcp".into(),
            result: CachedResult::ToolsList,
            scope: CacheScope::Private,
            fetched_for: Identity::supplied("a"),
            served_to: Identity::supplied("b"),
        };
        assert!(event.crosses_identities());
        let public = CacheEvent {
            scope: CacheScope::Public,
            ..event
        };
        assert!(!public.crosses_identities());
    }
}
