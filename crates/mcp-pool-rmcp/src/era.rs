//! Protocol eras: which kind of MCP server an origin is, detected once per
//! origin and remembered for the life of the connector.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use rmcp::model::ProtocolVersion;

use crate::redact::redact_url;

/// The kind of MCP server a session talks to, since the revision 2026-07-28
/// removed `initialize` and protocol-level sessions.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Era {
    /// MCP 2026-07-28: no handshake, every request carries its own `_meta`
    /// (protocol version, client capabilities, client info), `server/discover`
    /// describes the server; no server-side state.
    Modern,
    /// A revision before 2026-07-28 whose `initialize` was answered with an
    /// `Mcp-Session-Id`: the server keeps per-session state.
    LegacyStateful,
    /// A revision before 2026-07-28 whose `initialize` was answered without
    /// an `Mcp-Session-Id`: every request stands alone.
    LegacyStateless,
}

impl Era {
    /// The era's name in labels and logs: `modern`, `legacy-stateful` or
    /// `legacy-stateless`.
    pub fn name(self) -> &'static str {
        match self {
            Era::Modern => "modern",
            Era::LegacyStateful => "legacy-stateful",
            Era::LegacyStateless => "legacy-stateless",
        }
    }

    /// Whether this is the 2026-07-28 era.
    pub fn is_modern(self) -> bool {
        self == Era::Modern
    }

    /// Whether the server keeps state per session, so that a session must
    /// not be shared between callers ([`Era::LegacyStateful`] only).
    pub fn has_server_state(self) -> bool {
        self == Era::LegacyStateful
    }

    /// The legacy era of a server whose `initialize` answer carried a session
    /// id (`true`) or none.
    pub(crate) fn legacy(stateful: bool) -> Era {
        if stateful {
            Era::LegacyStateful
        } else {
            Era::LegacyStateless
        }
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which era a connector speaks to its upstreams, set with
/// [`McpConnectorBuilder::era`](crate::McpConnectorBuilder::era).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum EraPolicy {
    /// Detect each origin's era once, by the specification's dual-era rule:
    /// `server/discover` first; success or a modern refusal means modern,
    /// anything else falls back to `initialize`. The answer is remembered
    /// per origin and detected again only when it stops holding (see the
    /// [crate docs](crate#protocol-eras)).
    #[default]
    Auto,
    /// Speak 2026-07-28 only: a server that answers like a legacy one fails
    /// the connect.
    Modern,
    /// Speak the legacy handshake (`initialize`) only. Whether a session is
    /// stateful or stateless is always what the server answers (an
    /// `Mcp-Session-Id` or none): forcing it either way would share
    /// per-session server state or refuse a working server.
    Legacy,
}

/// The part of an endpoint URL that names the server process an era
/// belongs to: scheme, host, port and path, without the query (which may
/// carry credentials and does not change the server).
pub(crate) fn origin_of(url: &str) -> Arc<str> {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    Arc::from(&url[..end])
}

/// What was detected about an origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EraRecord {
    pub(crate) era: Era,
    pub(crate) protocol_version: ProtocolVersion,
    /// Bumped by every detection, so that a session made under an older
    /// record cannot discard a newer one.
    pub(crate) generation: u64,
}

/// One origin's record and the lock that makes its detection single-flight.
#[derive(Debug, Default)]
pub(crate) struct OriginSlot {
    origin: Arc<str>,
    record: Mutex<Option<EraRecord>>,
    generations: Mutex<u64>,
    /// Held by the connect that detects the era; the others wait for it and
    /// read its answer instead of probing themselves.
    pub(crate) probing: tokio::sync::Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only plain values behind it: a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl OriginSlot {
    /// The current record, if the era is known.
    pub(crate) fn record(&self) -> Option<EraRecord> {
        lock(&self.record).clone()
    }

    /// Records what a detection (or a legacy connect) found, logging a
    /// change; returns the new record.
    pub(crate) fn detected(&self, era: Era, protocol_version: ProtocolVersion) -> EraRecord {
        let generation = {
            let mut generations = lock(&self.generations);
            *generations += 1;
            *generations
        };
        let record = EraRecord {
            era,
            protocol_version,
            generation,
        };
        let previous = lock(&self.record).replace(record.clone());
        let origin = redact_url(&self.origin);
        match previous {
            Some(p) if p.era == record.era && p.protocol_version == record.protocol_version => {}
            Some(p) => tracing::debug!(
                %origin,
                era = %record.era,
                protocol_version = %record.protocol_version,
                previous_era = %p.era,
                previous_protocol_version = %p.protocol_version,
                "protocol era changed"
            ),
            None => tracing::debug!(
                %origin,
                era = %record.era,
                protocol_version = %record.protocol_version,
                "protocol era detected"
            ),
        }
        record
    }

    /// A legacy connect saw the server answer `initialize` as `era` (a
    /// session id that appeared or disappeared across a restart): keeps the
    /// record current without a new detection.
    pub(crate) fn legacy_seen(&self, era: Era, protocol_version: &ProtocolVersion) {
        let unchanged = lock(&self.record)
            .as_ref()
            .is_some_and(|r| r.era == era && r.protocol_version == *protocol_version);
        if !unchanged {
            self.detected(era, protocol_version.clone());
        }
    }

    /// Forgets the record made under `generation` (no effect on a newer
    /// one): the next connect detects the era again.
    pub(crate) fn forget(&self, generation: u64, why: &str) {
        let mut record = lock(&self.record);
        if record.as_ref().is_some_and(|r| r.generation == generation) {
            let old = record.take();
            tracing::debug!(
                origin = %redact_url(&self.origin),
                era = %old.map_or("unknown", |r| r.era.name()),
                why,
                "protocol era no longer holds; the next connect detects it again"
            );
        }
    }
}

/// Every origin's era, for the life of one connector (its clones share it).
/// Grows by one small entry per origin ever connected to.
#[derive(Debug, Default)]
pub(crate) struct EraBook {
    origins: Mutex<HashMap<Arc<str>, Arc<OriginSlot>>>,
}

impl EraBook {
    /// The slot of the origin of `url`, created empty on first use.
    pub(crate) fn slot(&self, url: &str) -> Arc<OriginSlot> {
        let origin = origin_of(url);
        lock(&self.origins)
            .entry(origin.clone())
            .or_insert_with(|| {
                Arc::new(OriginSlot {
                    origin,
                    ..OriginSlot::default()
                })
            })
            .clone()
    }

    /// The record of the origin of `url`, without creating a slot.
    pub(crate) fn record(&self, url: &str) -> Option<EraRecord> {
        lock(&self.origins)
            .get(&origin_of(url))
            .and_then(|slot| slot.record())
    }
}

/// What a session needs to report that its era stopped holding.
#[derive(Clone, Debug)]
pub(crate) struct EraWatch {
    pub(crate) slot: Arc<OriginSlot>,
    pub(crate) generation: u64,
}

impl EraWatch {
    pub(crate) fn failed(&self, why: &str) {
        self.slot.forget(self.generation, why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_the_url_without_its_query() {
        assert_eq!(
            &*origin_of("http://127.0.0.1:8/mcp?api_key=SECRET"),
            "http://127.0.0.1:8/mcp"
        );
        assert_eq!(&*origin_of("https://h/mcp"), "https://h/mcp");
        let book = EraBook::default();
        assert!(Arc::ptr_eq(
            &book.slot("http://h/mcp?a=1"),
            &book.slot("http://h/mcp?a=2")
        ));
        assert!(!Arc::ptr_eq(
            &book.slot("http://h/mcp"),
            &book.slot("http://h/other")
        ));
    }

    #[test]
    fn a_record_is_forgotten_only_by_its_own_generation() {
        let book = EraBook::default();
        let slot = book.slot("http://h/mcp");
        let old = slot.detected(Era::LegacyStateful, ProtocolVersion::LATEST_WITH_INITIALIZE);
        let new = slot.detected(Era::Modern, ProtocolVersion::LATEST);
        assert!(new.generation > old.generation);
        slot.forget(old.generation, "stale session");
        assert_eq!(
            book.record("http://h/mcp").map(|r| r.era),
            Some(Era::Modern)
        );
        slot.forget(new.generation, "refused");
        assert_eq!(book.record("http://h/mcp"), None);
    }

    #[test]
    fn a_legacy_connect_keeps_the_record_current() {
        let slot = EraBook::default().slot("http://h/mcp");
        let v = ProtocolVersion::LATEST_WITH_INITIALIZE;
        let first = slot.detected(Era::LegacyStateful, v.clone());
        slot.legacy_seen(Era::LegacyStateful, &v);
        assert_eq!(slot.record().unwrap().generation, first.generation);
        slot.legacy_seen(Era::LegacyStateless, &v);
        assert_eq!(slot.record().unwrap().era, Era::LegacyStateless);
    }
}
