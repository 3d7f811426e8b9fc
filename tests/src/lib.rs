//! Fixture servers for the end-to-end tests of mcp-pool, each on a loopback
//! port of its own:
//!
//! - [`forgetful`]: a legacy stateful MCP server (the echo app) that forgets
//!   a session after serving a number of tool calls on it, and then answers
//!   every request on it in one of the ways real servers say "I do not know
//!   this session" ([`SessionLossForm`]);
//! - [`not_mcp`]: live HTTP servers that answer every request with something
//!   that is not MCP ([`NotMcp`]: HTTP 500, an HTML page, broken JSON, a
//!   broken event stream).
//!
//! [`Fixture`] names every fixture, for the `fixture-server` binary, which
//! serves one by name so that the CLI can be pointed at it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod forgetful;
pub mod not_mcp;
pub mod serve;

use std::fmt;
use std::str::FromStr;

use axum::Router;

pub use forgetful::{ForgetfulServer, SessionLossForm};
pub use not_mcp::NotMcp;
pub use serve::FixtureServer;

/// Every fixture, by the name the `fixture-server` binary takes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fixture {
    /// A [`ForgetfulServer`] answering forgotten sessions in this form.
    Forgetful(SessionLossForm),
    /// A live server that does not speak MCP.
    NotMcp(NotMcp),
}

impl Fixture {
    /// Every fixture, in a fixed order.
    pub const ALL: [Fixture; 9] = [
        Fixture::Forgetful(SessionLossForm::BadRequestWithoutId),
        Fixture::Forgetful(SessionLossForm::NotFound),
        Fixture::Forgetful(SessionLossForm::SessionNotFoundOk),
        Fixture::Forgetful(SessionLossForm::SessionNotFoundNotFound),
        Fixture::Forgetful(SessionLossForm::BadRequestText),
        Fixture::NotMcp(NotMcp::Status500),
        Fixture::NotMcp(NotMcp::Html),
        Fixture::NotMcp(NotMcp::BrokenJson),
        Fixture::NotMcp(NotMcp::BrokenSse),
    ];

    /// The fixture's name: `forget-` and the form's name for forgetful
    /// servers, the [`NotMcp`] name otherwise.
    pub fn name(self) -> String {
        match self {
            Fixture::Forgetful(form) => format!("forget-{}", form.name()),
            Fixture::NotMcp(kind) => kind.name().to_owned(),
        }
    }

    /// The fixture's router; a forgetful server forgets each session after
    /// `forget_after` tool calls (build a [`ForgetfulServer`] directly to
    /// read its counters).
    pub fn router(self, forget_after: u64) -> Router {
        match self {
            Fixture::Forgetful(form) => ForgetfulServer::new(form, forget_after).router(),
            Fixture::NotMcp(kind) => kind.router(),
        }
    }
}

impl fmt::Display for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A name that is not one of [`Fixture::ALL`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFixture(pub String);

impl fmt::Display for UnknownFixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = Fixture::ALL.iter().map(|f| f.name()).collect();
        write!(
            f,
            "unknown fixture `{}` (known: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownFixture {}

impl FromStr for Fixture {
    type Err = UnknownFixture;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Fixture::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| UnknownFixture(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_parses_back_from_its_name() {
        for fixture in Fixture::ALL {
            assert_eq!(fixture.name().parse::<Fixture>(), Ok(fixture));
        }
        let err = "nope".parse::<Fixture>().unwrap_err();
        assert!(err.to_string().contains("forget-400-json"), "{err}");
    }
}
