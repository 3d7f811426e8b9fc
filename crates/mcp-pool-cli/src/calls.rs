//! What a call through an upstream session came to, as the loadtest and
//! the gateway both report it: why it failed ([`Cause`], one stable name per
//! kind of failure) and the protocol era of the session it ran on
//! ([`EraTally`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use mcp_pool::{AcquireError, EvictReason, Outcome, Stats};
use mcp_pool_rmcp::{Era, McpSession};
use rmcp::model::ProtocolVersion;
use serde::Serialize;

/// Why a call failed, as a loadtest reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Sending or receiving on the session failed.
    Transport,
    /// The server answered that it does not know the session (it forgot or
    /// expired it, or restarted), and no other session was left to run the
    /// call on.
    SessionLost,
    /// The call did not finish within its timeout.
    Timeout,
    /// No session could be opened.
    Connect,
    /// The pool's circuit breaker refused the call.
    CircuitOpen,
    /// No session was free before the acquire deadline.
    AcquireTimeout,
    /// Too many callers already waited for a session of this key: the pool
    /// refused one more.
    QueueFull,
    /// The server answered with an error.
    Application,
    /// Anything else.
    Other,
}

impl Cause {
    /// Every cause, in table order.
    pub const ALL: [Cause; 9] = [
        Cause::Transport,
        Cause::SessionLost,
        Cause::Connect,
        Cause::Timeout,
        Cause::CircuitOpen,
        Cause::AcquireTimeout,
        Cause::QueueFull,
        Cause::Application,
        Cause::Other,
    ];

    /// A stable snake_case name for tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Transport => "transport",
            Cause::SessionLost => "session_lost",
            Cause::Timeout => "timeout",
            Cause::Connect => "connect",
            Cause::CircuitOpen => "circuit_open",
            Cause::AcquireTimeout => "acquire_timeout",
            Cause::QueueFull => "queue_full",
            Cause::Application => "application",
            Cause::Other => "other",
        }
    }

    /// Whether a call failing so says something about the sessions the
    /// mode handed out: every cause but [`Cause::Application`], the server's
    /// own error answer to the call, made on a working session.
    pub fn is_session_failure(self) -> bool {
        self != Cause::Application
    }
}

impl Cause {
    /// The cause named `name` ([`Cause::as_str`]), if any.
    pub fn named(name: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// What a failed rmcp request says about the call. A JSON-RPC error an
/// mcp-pool gateway made of an upstream failure (one with `data.upstream`
/// and `data.reason`, see `gateway::forward::to_jsonrpc`) keeps the cause
/// the gateway named; any other JSON-RPC error is the server's own answer
/// ([`Cause::Application`]).
pub fn cause_of(error: &mcp_pool_rmcp::Error) -> Cause {
    use mcp_pool_rmcp::Error as E;
    if let Some((cause, _)) = relayed(error) {
        return cause;
    }
    match error {
        E::Initialize { .. } | E::InitializeTimedOut { .. } | E::HttpClient(_) | E::Key(_) => {
            Cause::Connect
        }
        E::TimedOut { .. } => Cause::Timeout,
        E::SessionLost { .. } => Cause::SessionLost,
        other => match other.outcome() {
            Outcome::ApplicationError => Cause::Application,
            Outcome::TransportError => Cause::Transport,
            Outcome::Timeout => Cause::Timeout,
            Outcome::Ok | Outcome::Cancelled => Cause::Other,
        },
    }
}

/// The cause and the message of a failure an mcp-pool gateway relayed: a
/// JSON-RPC error with `data.upstream` and a `data.reason` naming a
/// [`Cause`]; `None` for any other error.
pub fn relayed(error: &mcp_pool_rmcp::Error) -> Option<(Cause, &str)> {
    let mcp_pool_rmcp::Error::Service {
        source: rmcp::ServiceError::McpError(e),
        ..
    } = error
    else {
        return None;
    };
    let data = e.data.as_ref().filter(|d| d.get("upstream").is_some())?;
    let cause = data
        .get("reason")
        .and_then(|r| r.as_str())
        .and_then(Cause::named)?;
    Some((cause, &e.message))
}

/// Why an acquire was refused, as a cause: a refused acquire keeps its own
/// cause (the connect failure it carries, if any, is in its message: see
/// [`AcquireError::connect_failure`]).
pub fn acquire_cause<E: std::error::Error>(error: &AcquireError<E>) -> Cause {
    match error {
        AcquireError::TimedOut { .. } => Cause::AcquireTimeout,
        AcquireError::CircuitOpen { .. } => Cause::CircuitOpen,
        AcquireError::ConnectFailed { .. } => Cause::Connect,
        AcquireError::QueueFull => Cause::QueueFull,
        AcquireError::TooManyKeys | AcquireError::ShuttingDown => Cause::Other,
    }
}

/// hits, misses, evictions (all reasons), checks, connects and more, from
/// a pool's core counters, by the names the loadtest's table and JSON use.
pub fn pool_counters(s: &Stats) -> BTreeMap<String, u64> {
    let evictions = EvictReason::ALL.iter().map(|r| s.evictions(*r)).sum();
    [
        ("hits", s.hits),
        ("misses", s.misses),
        ("evictions", evictions),
        ("checks", s.checks),
        ("checks_failed", s.checks_failed),
        ("connects", s.connects),
        ("connect_failures", s.connect_failures),
        ("breaker_trips", s.breaker_trips),
        ("rejects", s.rejects()),
    ]
    .into_iter()
    .map(|(name, n)| (name.to_string(), n))
    .collect()
}

/// The era and protocol version of the sessions some of a mode's calls ran
/// on, as the client detected them (never assumed from `--era`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraSeen {
    /// `modern`, `legacy-stateful` or `legacy-stateless`.
    pub era: String,
    /// The protocol version the session speaks (`2026-07-28`, or the one
    /// `initialize` agreed).
    pub protocol_version: String,
    /// Calls that got a session of this era and version (failed ones
    /// included; calls that never got a session are not counted).
    pub calls: u64,
}

/// Counts, per era and protocol version, the calls that got a session:
/// shared by a mode's users, cheap enough for every call.
#[derive(Debug, Default)]
pub struct EraTally {
    seen: Mutex<HashMap<(Era, ProtocolVersion), u64>>,
}

impl EraTally {
    /// Counts one call on `session`.
    pub fn saw(&self, session: &McpSession) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (session.era(), session.protocol_version().clone());
        *seen.entry(key).or_default() += 1;
    }

    /// What was counted, the most calls first (then by name, so the order
    /// is stable).
    pub fn snapshot(&self) -> Vec<EraSeen> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<EraSeen> = seen
            .iter()
            .map(|((era, version), calls)| EraSeen {
                era: era.name().to_string(),
                protocol_version: version.to_string(),
                calls: *calls,
            })
            .collect();
        out.sort_by(|a, b| {
            b.calls
                .cmp(&a.calls)
                .then_with(|| a.era.cmp(&b.era))
                .then_with(|| a.protocol_version.cmp(&b.protocol_version))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ErrorData;
    use serde_json::json;

    fn answered(data: serde_json::Value) -> mcp_pool_rmcp::Error {
        mcp_pool_rmcp::Error::Service {
            method: "tools/call",
            source: rmcp::ServiceError::McpError(ErrorData::internal_error(
                "upstream `echo`: `tools/call` failed: the session is gone",
                Some(data),
            )),
        }
    }

    #[test]
    fn every_cause_is_found_by_its_name() {
        for cause in Cause::ALL {
            assert_eq!(Cause::named(cause.as_str()), Some(cause));
        }
        assert_eq!(Cause::named("gone"), None);
    }

    #[test]
    fn a_failure_a_gateway_relayed_keeps_the_cause_it_named() {
        let transport = answered(json!({ "upstream": "echo", "reason": "transport" }));
        assert_eq!(cause_of(&transport), Cause::Transport);
        let open = answered(json!({ "upstream": "echo", "reason": "circuit_open" }));
        assert_eq!(cause_of(&open), Cause::CircuitOpen);
        // The server's own error, or a reason nobody knows, is the
        // server's answer.
        let own = answered(json!({ "reason": "transport" }));
        assert_eq!(cause_of(&own), Cause::Application);
        let unknown = answered(json!({ "upstream": "echo", "reason": "gone" }));
        assert_eq!(cause_of(&unknown), Cause::Application);
        let relayed_one = answered(json!({ "upstream": "echo", "reason": "session_lost" }));
        let (cause, message) = relayed(&relayed_one).expect("relayed");
        assert_eq!(cause, Cause::SessionLost);
        assert!(message.starts_with("upstream `echo`"), "{message}");
        assert!(relayed(&own).is_none());
    }
}
