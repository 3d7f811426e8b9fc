//! The invariants this crate adds to those of the pool's specification
//! (`specs/SPEC.md`), by name, so that tests and simulator oracles can cite
//! them and report violations in the same words.

/// **C1 private cache entries never cross identities.** A `server/discover`
/// or `tools/list` result that the server marked `cacheScope: private` (or
/// left without a scope) is served from the connector's cache only to the
/// [`Identity`](crate::Identity) whose request fetched it, at the endpoint
/// it was fetched from; a `public` one may serve every identity of that
/// endpoint.
///
/// How it holds: private entries are stored and looked up under the
/// asking identity only (debug builds also assert it on every hit). How to
/// check it: turn on [`McpConnectorBuilder::cache_audit`] and assert that
/// no [`CacheEvent`] of [`McpConnector::cache_events`]
/// [crosses identities](crate::CacheEvent::crosses_identities).
///
/// [`McpConnectorBuilder::cache_audit`]: crate::McpConnectorBuilder::cache_audit
/// [`McpConnector::cache_events`]: crate::McpConnector::cache_events
/// [`CacheEvent`]: crate::CacheEvent
pub const C1: &str = "C1 private cache entries never cross identities";
