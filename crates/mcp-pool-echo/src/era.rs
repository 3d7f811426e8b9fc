//! Which MCP protocol revisions the server speaks, and how.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use rmcp::model::ProtocolVersion;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;

/// The protocol era the echo server emulates: which MCP revisions it serves
/// on its one endpoint, and whether the legacy ones keep sessions.
///
/// The revision 2026-07-28 removed `initialize`, sessions and the GET stream
/// and added `server/discover` with per-request `_meta`; the revisions before
/// it (2024-11-05 to 2025-11-25) negotiate over `initialize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Era {
    /// Revisions before 2026-07-28 only, stateful: `initialize` is answered
    /// with an `Mcp-Session-Id`, later requests must carry it. A
    /// `server/discover` is refused as an unknown method (JSON-RPC -32601
    /// "Method not found", HTTP 200), as a server that predates it does.
    #[default]
    Legacy,
    /// Revisions before 2026-07-28 only, stateless: `initialize` is answered
    /// without an `Mcp-Session-Id` and every request stands alone; no GET
    /// stream, no DELETE. `server/discover` is refused as in [`Era::Legacy`].
    LegacyStateless,
    /// 2026-07-28 only: `server/discover` and requests carrying their own
    /// `_meta` protocol version and client capabilities, never a session,
    /// no GET stream. A legacy `initialize` is refused with -32022
    /// "Unsupported protocol version" (`data.supported` = `["2026-07-28"]`;
    /// rmcp sends it in an event stream with HTTP 200); a request without
    /// the `MCP-Protocol-Version` header with -32020, one without the `_meta`
    /// protocol version with -32602 (both HTTP 400).
    Modern,
    /// Both on one endpoint: 2026-07-28 requests are served sessionless as in
    /// [`Era::Modern`], `initialize` opens a stateful legacy session as in
    /// [`Era::Legacy`].
    Dual,
}

/// A name that is not one of [`Era::NAMES`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown era '{given}': the eras are legacy, legacy-stateless, modern and dual")]
pub struct UnknownEra {
    /// The name that was given.
    pub given: String,
}

const MODERN_ONLY: &[ProtocolVersion] = &[ProtocolVersion::V_2026_07_28];

impl Era {
    /// Every era, in the order of [`Era::NAMES`].
    pub const ALL: [Era; 4] = [Era::Legacy, Era::LegacyStateless, Era::Modern, Era::Dual];

    /// The names [`Era::from_str`] accepts (and [`Era::name`] returns).
    pub const NAMES: [&'static str; 4] = ["legacy", "legacy-stateless", "modern", "dual"];

    /// The name of this era on command lines: `legacy`, `legacy-stateless`,
    /// `modern` or `dual`.
    pub fn name(self) -> &'static str {
        match self {
            Era::Legacy => Self::NAMES[0],
            Era::LegacyStateless => Self::NAMES[1],
            Era::Modern => Self::NAMES[2],
            Era::Dual => Self::NAMES[3],
        }
    }

    /// The protocol versions served, oldest first: what `server/discover`
    /// advertises, what `initialize` may agree to and what per-request
    /// versions are checked against.
    pub fn supported_versions(self) -> &'static [ProtocolVersion] {
        match self {
            Era::Legacy | Era::LegacyStateless => {
                ProtocolVersion::known_up_to(&ProtocolVersion::LATEST_WITH_INITIALIZE)
            }
            Era::Modern => MODERN_ONLY,
            Era::Dual => ProtocolVersion::KNOWN_VERSIONS,
        }
    }

    /// Whether a legacy `initialize` opens a server-side session (answered
    /// with an `Mcp-Session-Id`).
    pub fn has_sessions(self) -> bool {
        matches!(self, Era::Legacy | Era::Dual)
    }

    /// Whether the server answers `server/discover` (2026-07-28 is served).
    pub fn serves_modern(self) -> bool {
        matches!(self, Era::Modern | Era::Dual)
    }

    /// Whether the server answers a legacy `initialize`.
    pub fn serves_legacy(self) -> bool {
        self != Era::Modern
    }

    /// One line for start-up banners: the era and what it serves.
    pub fn summary(self) -> Cow<'static, str> {
        let versions = self.supported_versions();
        let range = match (versions.first(), versions.last()) {
            (Some(first), Some(last)) if first != last => {
                format!("{} to {}", first.as_str(), last.as_str())
            }
            (Some(only), _) => only.as_str().to_owned(),
            _ => "no versions".to_owned(),
        };
        let how = match self {
            Era::Legacy => "initialize with Mcp-Session-Id",
            Era::LegacyStateless => "initialize without sessions",
            Era::Modern => "server/discover and per-request _meta, no sessions",
            Era::Dual => "server/discover sessionless, initialize with Mcp-Session-Id",
        };
        Cow::Owned(format!("era {}: MCP {range}; {how}", self.name()))
    }

    /// rmcp's HTTP settings for this era, applied on top of `base`.
    ///
    /// Legacy and dual keep rmcp's session mode (it applies to versions below
    /// 2026-07-28 only; 2026-07-28 requests are always served sessionless);
    /// legacy-stateless and modern turn it off. Modern also requires the
    /// per-request protocol signals (`MCP-Protocol-Version` header and `_meta`
    /// protocol version) before any handler runs.
    pub(crate) fn http_config(
        self,
        base: StreamableHttpServerConfig,
    ) -> StreamableHttpServerConfig {
        base.with_legacy_session_mode(self.has_sessions())
            .with_stateless_protocol_metadata_required(self == Era::Modern)
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Era {
    type Err = UnknownEra;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Era::ALL
            .into_iter()
            .find(|era| era.name() == s.trim())
            .ok_or_else(|| UnknownEra {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_list_the_eras() {
        for era in Era::ALL {
            assert_eq!(era.name().parse::<Era>(), Ok(era));
            assert_eq!(era.to_string(), era.name());
        }
        let err = "stateful".parse::<Era>().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("'stateful'"), "{text}");
        for name in Era::NAMES {
            assert!(text.contains(name), "{text}");
        }
        assert_eq!(Era::default(), Era::Legacy);
    }

    #[test]
    fn versions_split_at_2026_07_28() {
        let legacy = Era::Legacy.supported_versions();
        assert!(!legacy.is_empty() && legacy.iter().all(ProtocolVersion::has_initialize));
        assert_eq!(
            legacy.last(),
            Some(&ProtocolVersion::LATEST_WITH_INITIALIZE)
        );
        assert_eq!(Era::LegacyStateless.supported_versions(), legacy);
        assert_eq!(
            Era::Modern.supported_versions(),
            &[ProtocolVersion::V_2026_07_28]
        );
        let dual = Era::Dual.supported_versions();
        assert!(dual.contains(&ProtocolVersion::LATEST));
        assert!(legacy.iter().all(|v| dual.contains(v)));
    }

    #[test]
    fn summaries_name_the_era_and_its_versions() {
        assert_eq!(
            Era::Modern.summary(),
            "era modern: MCP 2026-07-28; server/discover and per-request _meta, no sessions"
        );
        assert!(Era::Legacy
            .summary()
            .starts_with("era legacy: MCP 2024-11-05 to 2025-11-25;"));
    }
}
