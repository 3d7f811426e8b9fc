//! Protocol eras in the loadtest: which era the embedded echo server serves
//! (`--era`), and which era each mode's sessions detected.

use std::fmt;
use std::str::FromStr;

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

pub use crate::calls::{EraSeen, EraTally};

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
