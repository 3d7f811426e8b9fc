//! What the server has seen: the sessions it created and the calls each served.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default number of [`CallRecord`]s a [`SessionRegistry`] retains.
pub const DEFAULT_CALL_LOG_LIMIT: usize = 100_000;

/// How a call reached the server, as the tool saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServedCall {
    pub(crate) session_id: Option<String>,
    pub(crate) protocol_version: Option<String>,
    pub(crate) meta_protocol_version: Option<String>,
}

impl ServedCall {
    /// A legacy call on `session_id` (tests of the registry itself).
    #[cfg(test)]
    fn in_session(session_id: Option<&str>) -> Self {
        Self {
            session_id: session_id.map(str::to_owned),
            ..Self::default()
        }
    }
}

/// One tool call as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// Position of this call among all calls the registry has seen, from 0,
    /// in the order the tool bodies started running.
    pub seq: u64,
    /// The `mcp-session-id` the call arrived with; `None` when it was
    /// served without a session (a legacy stateless server, or any
    /// 2026-07-28 request).
    pub session_id: Option<String>,
    /// The protocol version the call was served under: its own `_meta`
    /// version if it carried one, else the version its session negotiated
    /// over `initialize`, else (stateless legacy) its `MCP-Protocol-Version`
    /// header, 2025-03-26 when absent. `None` only if rmcp knew none.
    pub protocol_version: Option<String>,
    /// The `io.modelcontextprotocol/protocolVersion` the request carried in
    /// its `_meta`: set on 2026-07-28 (per-request) calls, `None` on calls of
    /// the legacy revisions.
    pub meta_protocol_version: Option<String>,
    /// The tool that ran: `"echo"`, `"fail"` or `"whoami"`.
    pub tool: &'static str,
    /// The `message` argument, for the tools that take one.
    pub message: Option<String>,
}

#[derive(Debug)]
struct State {
    created: Vec<String>,
    deleted: Vec<String>,
    per_session: HashMap<String, u64>,
    log: VecDeque<CallRecord>,
    log_limit: usize,
    total_calls: u64,
    initialize_requests: u64,
    discover_requests: u64,
    list_tools_requests: u64,
}

/// A shared, cloneable record of the sessions a server created and of the
/// calls it served.
///
/// Clones share one record. Every session the server's session manager
/// creates is recorded before its id is sent to the client, and every tool
/// call is recorded when the tool body starts, so a client that saw a
/// response can rely on finding it here. The per-session call counts are
/// complete; the call log keeps only the most recent `call_log_limit`
/// calls (see [`SessionRegistry::dropped_calls`]).
#[derive(Clone, Debug)]
pub struct SessionRegistry {
    state: Arc<Mutex<State>>,
}

impl Default for SessionRegistry {
    fn default() -> Self {
        Self::new(DEFAULT_CALL_LOG_LIMIT)
    }
}

impl SessionRegistry {
    /// An empty registry whose call log keeps at most `call_log_limit` calls
    /// (0 keeps none; counts are kept regardless).
    pub fn new(call_log_limit: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                created: Vec::new(),
                deleted: Vec::new(),
                per_session: HashMap::new(),
                log: VecDeque::new(),
                log_limit: call_log_limit,
                total_calls: 0,
                initialize_requests: 0,
                discover_requests: 0,
                list_tools_requests: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent
        // (every update is a single push or increment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record_created(&self, session_id: &str) {
        let mut state = self.lock();
        state.created.push(session_id.to_owned());
        state.per_session.insert(session_id.to_owned(), 0);
    }

    pub(crate) fn record_deleted(&self, session_id: &str) {
        self.lock().deleted.push(session_id.to_owned());
    }

    pub(crate) fn record_initialize_request(&self) {
        self.lock().initialize_requests += 1;
    }

    pub(crate) fn record_discover_request(&self) {
        self.lock().discover_requests += 1;
    }

    pub(crate) fn record_list_tools_request(&self) {
        self.lock().list_tools_requests += 1;
    }

    pub(crate) fn record_call(
        &self,
        call: ServedCall,
        tool: &'static str,
        message: Option<String>,
    ) {
        let ServedCall {
            session_id,
            protocol_version,
            meta_protocol_version,
        } = call;
        let mut state = self.lock();
        let seq = state.total_calls;
        state.total_calls += 1;
        if let Some(id) = &session_id {
            *state.per_session.entry(id.clone()).or_insert(0) += 1;
        }
        if state.log_limit == 0 {
            return;
        }
        if state.log.len() == state.log_limit {
            state.log.pop_front();
        }
        state.log.push_back(CallRecord {
            seq,
            session_id,
            protocol_version,
            meta_protocol_version,
            tool,
            message,
        });
    }

    /// How many `initialize` requests arrived (HTTP POSTs whose JSON-RPC
    /// method is `initialize`), answered or refused, counted before the
    /// server looked at anything else in them.
    pub fn initialize_requests(&self) -> u64 {
        self.lock().initialize_requests
    }

    /// How many `server/discover` requests arrived, counted like
    /// [`SessionRegistry::initialize_requests`]: those the server answered and
    /// those it refused (a legacy era refuses every one).
    pub fn discover_requests(&self) -> u64 {
        self.lock().discover_requests
    }

    /// How many `tools/list` requests arrived, counted like
    /// [`SessionRegistry::initialize_requests`].
    pub fn list_tools_requests(&self) -> u64 {
        self.lock().list_tools_requests
    }

    /// Ids of every session the server created, in creation order. A session
    /// id never appears twice.
    pub fn created_sessions(&self) -> Vec<String> {
        self.lock().created.clone()
    }

    /// How many sessions the server has created.
    pub fn created_count(&self) -> usize {
        self.lock().created.len()
    }

    /// Ids of the sessions ended by a client's HTTP `DELETE` or by
    /// [`EchoApp::expire_session`](crate::EchoApp::expire_session), in order.
    /// Sessions that ended because they sat idle past the keep-alive are not
    /// listed.
    pub fn deleted_sessions(&self) -> Vec<String> {
        self.lock().deleted.clone()
    }

    /// The retained call log, oldest first (at most `call_log_limit` entries).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().log.iter().cloned().collect()
    }

    /// How many tool calls the server received in total (all tools, all
    /// sessions, stateless calls included).
    pub fn call_count(&self) -> u64 {
        self.lock().total_calls
    }

    /// How many tool calls arrived on session `session_id` (0 for an unknown id).
    pub fn calls_in_session(&self, session_id: &str) -> u64 {
        self.lock()
            .per_session
            .get(session_id)
            .copied()
            .unwrap_or(0)
    }

    /// How many calls fell out of the call log because it was full.
    pub fn dropped_calls(&self) -> u64 {
        let state = self.lock();
        state.total_calls - state.log.len() as u64
    }

    /// The sessions that served an `echo` or `fail` call whose message was
    /// `message`, in call order (retained log only). Lets a test tag each
    /// caller's messages and check which upstream sessions served them.
    pub fn sessions_for_message(&self, message: &str) -> Vec<Option<String>> {
        self.lock()
            .log
            .iter()
            .filter(|call| call.message.as_deref() == Some(message))
            .map(|call| call.session_id.clone())
            .collect()
    }

    /// The retained calls of `echo` or `fail` whose message was `message`,
    /// in call order: how each was served (session, protocol version).
    pub fn calls_for_message(&self, message: &str) -> Vec<CallRecord> {
        self.lock()
            .log
            .iter()
            .filter(|call| call.message.as_deref() == Some(message))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_bounded_and_counts_are_complete() {
        let registry = SessionRegistry::new(2);
        registry.record_created("a");
        for i in 0..5 {
            registry.record_call(
                ServedCall::in_session(Some("a")),
                "echo",
                Some(i.to_string()),
            );
        }
        registry.record_call(ServedCall::in_session(None), "echo", Some("x".into()));
        assert_eq!(registry.call_count(), 6);
        assert_eq!(registry.calls_in_session("a"), 5);
        assert_eq!(registry.dropped_calls(), 4);
        let calls = registry.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].seq, 4);
        assert_eq!(calls[1].session_id, None);
        assert_eq!(registry.sessions_for_message("4"), vec![Some("a".into())]);
        assert_eq!(registry.created_sessions(), vec!["a".to_string()]);
    }

    #[test]
    fn zero_limit_keeps_counts_only() {
        let registry = SessionRegistry::new(0);
        registry.record_call(ServedCall::in_session(Some("s")), "fail", None);
        assert!(registry.calls().is_empty());
        assert_eq!(registry.calls_in_session("s"), 1);
        assert_eq!(registry.dropped_calls(), 1);
    }

    #[test]
    fn handshake_requests_are_counted_apart() {
        let registry = SessionRegistry::default();
        registry.record_discover_request();
        registry.record_initialize_request();
        registry.record_discover_request();
        assert_eq!(registry.discover_requests(), 2);
        assert_eq!(registry.initialize_requests(), 1);
        assert_eq!(registry.call_count(), 0);
    }
}
