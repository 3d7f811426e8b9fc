//! Protocol eras in the loadtest: which era the embedded echo server serves
//! (`--era`), and which era each mode's sessions detected.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use mcp_pool_rmcp::{Era, McpSession};
use rmcp::model::ProtocolVersion;
use serde::Serialize;

/// What `--era` asks of the embedded echo server: one era, or each in turn.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EraChoice {
    /// Serve this era.
    One(mcp_pool_echo::Era),
    /// Run the whole loadtest once per era, in the order of
    /// [`mcp_pool_echo::Era::ALL`].
    All,
}

impl EraChoice {
    /// The eras to serve, in the order they run.
    pub fn eras(self) -> Vec<mcp_pool_echo::Era> {
        match self {
            EraChoice::One(era) => vec![era],
            EraChoice::All => mcp_pool_echo::Era::ALL.to_vec(),
        }
    }
}

impl FromStr for EraChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<EraChoice, String> {
        if s.trim() == "all" {
            return Ok(EraChoice::All);
        }
        s.parse::<mcp_pool_echo::Era>()
            .map(EraChoice::One)
            .map_err(|e| format!("{e}, or all"))
    }
}

impl fmt::Display for EraChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EraChoice::One(era) => era.fmt(f),
            EraChoice::All => f.write_str("all"),
        }
    }
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

    #[test]
    fn an_era_choice_reads_every_era_and_all() {
        for era in mcp_pool_echo::Era::ALL {
            let choice: EraChoice = era.name().parse().unwrap();
            assert_eq!(choice, EraChoice::One(era));
            assert_eq!(choice.to_string(), era.name());
            assert_eq!(choice.eras(), vec![era]);
        }
        let all: EraChoice = "all".parse().unwrap();
        assert_eq!(all.eras(), mcp_pool_echo::Era::ALL.to_vec());
        let err = "stateful".parse::<EraChoice>().unwrap_err();
        assert!(
            err.contains("'stateful'") && err.ends_with("or all"),
            "{err}"
        );
    }
}
