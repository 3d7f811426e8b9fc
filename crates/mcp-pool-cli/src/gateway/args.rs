//! `mcp-pool gateway`: the options and the configuration they make.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use mcp_pool_rmcp::{SessionKey, DEFAULT_IDENTITY_HEADERS};

use crate::UsageError;

/// Which downstream requests may share upstream sessions of a legacy
/// stateful upstream (one that keeps per-session state).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Affinity {
    /// Each downstream session gets upstream sessions of its own: the
    /// downstream `Mcp-Session-Id` is part of the pool key.
    #[default]
    PerSession,
    /// Downstream sessions of one identity share upstream sessions (one
    /// caller at a time on each): state kept by the upstream is seen by every
    /// downstream session of that identity.
    PerIdentity,
}

impl fmt::Display for Affinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Affinity::PerSession => "per-session",
            Affinity::PerIdentity => "per-identity",
        })
    }
}

/// How the gateway gets the upstream session a request runs on.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum UpstreamSessions {
    /// From mcp-pool: the gateway's one pool (the only choice of the
    /// command line).
    #[default]
    Pool,
    /// From a naive pool that puts every session back, dead or alive
    /// ([`mcp_pool_naive`]), with no retry: the gateways the reported
    /// cascade happened in, for `loadtest --via-gateway`.
    Naive,
    /// A new upstream session for every request, closed after it: no pool,
    /// for `loadtest --via-gateway`.
    PerRequest,
}

/// `mcp-pool gateway`: the options, each also read from an `MCP_POOL_*`
/// environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on. Anything but a loopback address needs
    /// --allowed-host (the Host names clients use), which rmcp checks
    /// against DNS rebinding.
    #[arg(long, env = "MCP_POOL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// An upstream MCP server, as NAME=URL; served at /mcp/NAME. Repeat for
    /// several.
    #[arg(long = "upstream", env = "MCP_POOL_UPSTREAMS", value_delimiter = ',', required = true, value_parser = upstream)]
    pub upstreams: Vec<(String, String)>,

    /// Host names (or host:port) downstream clients may use to reach the
    /// gateway, besides localhost, 127.0.0.1 and ::1.
    #[arg(
        long = "allowed-host",
        env = "MCP_POOL_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// The downstream request headers that say who the caller is: hashed
    /// into the pool key and forwarded upstream. Repeat for several; the
    /// default is authorization, x-tenant-id, x-user-id, x-api-key and
    /// cookie.
    #[arg(
        long = "identity-header",
        env = "MCP_POOL_IDENTITY_HEADERS",
        value_delimiter = ','
    )]
    pub identity_headers: Vec<String>,

    /// Who shares upstream sessions of a legacy stateful upstream:
    /// per-session (each downstream session its own) or per-identity.
    /// Stateless and 2026-07-28 upstreams are shared per identity either way.
    #[arg(long, env = "MCP_POOL_AFFINITY", default_value_t = Affinity::PerSession)]
    pub affinity: Affinity,

    /// On SIGTERM or Ctrl-C, how long calls in flight may take to finish
    /// before upstream sessions are closed.
    #[arg(long, env = "MCP_POOL_GRACE", default_value = "10s", value_parser = crate::duration)]
    pub grace: Duration,

    /// Longest wait for one upstream call (and for a session to make it on).
    #[arg(long, env = "MCP_POOL_CALL_TIMEOUT", default_value = "60s", value_parser = crate::duration)]
    pub call_timeout: Duration,

    /// Upstream sessions per pool key (upstream URL, identity, affinity).
    #[arg(long, env = "MCP_POOL_SESSIONS_PER_KEY", default_value_t = 8)]
    pub sessions_per_key: usize,

    /// Upstream sessions in all.
    #[arg(long, env = "MCP_POOL_MAX_SESSIONS", default_value_t = 1024)]
    pub max_sessions: usize,

    /// Pool keys tracked at once (with per-session affinity, each downstream
    /// session of a stateful upstream is one).
    #[arg(long, env = "MCP_POOL_MAX_KEYS", default_value_t = 4096)]
    pub max_keys: usize,

    /// An idle upstream session is closed after this long.
    #[arg(long, env = "MCP_POOL_IDLE_TIMEOUT", default_value = "5m", value_parser = crate::duration)]
    pub idle_timeout: Duration,
}

fn upstream(text: &str) -> Result<(String, String), String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| "expected NAME=URL, e.g. search=http://127.0.0.1:9000/mcp".to_owned())?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "upstream name `{name}`: use letters, digits, `-`, `_` and `.` only"
        ));
    }
    Ok((name.to_owned(), url.trim().to_owned()))
}

/// Everything the gateway needs to run, checked.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The address to bind.
    pub listen: SocketAddr,
    /// Upstream URLs by name, each served at `/mcp/NAME`.
    pub upstreams: BTreeMap<String, String>,
    /// Extra Host names downstream clients may use.
    pub allowed_hosts: Vec<String>,
    /// The identity headers (lower case).
    pub identity_headers: Vec<String>,
    /// Who shares sessions of a legacy stateful upstream.
    pub affinity: Affinity,
    /// Drain grace period.
    pub grace: Duration,
    /// Longest wait for one upstream call.
    pub call_timeout: Duration,
    /// Sessions per key.
    pub sessions_per_key: usize,
    /// Sessions in all.
    pub max_sessions: usize,
    /// Keys at once.
    pub max_keys: usize,
    /// Idle session lifetime.
    pub idle_timeout: Duration,
    /// Where upstream sessions come from ([`UpstreamSessions::Pool`] unless
    /// set in code).
    pub sessions: UpstreamSessions,
}

impl GatewayConfig {
    /// A configuration serving `upstreams` on `listen` with every other
    /// setting at its command-line default.
    pub fn new(listen: SocketAddr, upstreams: BTreeMap<String, String>) -> GatewayConfig {
        GatewayConfig {
            listen,
            upstreams,
            allowed_hosts: Vec::new(),
            identity_headers: DEFAULT_IDENTITY_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            affinity: Affinity::PerSession,
            grace: Duration::from_secs(10),
            call_timeout: Duration::from_secs(60),
            sessions_per_key: 8,
            max_sessions: 1024,
            max_keys: 4096,
            idle_timeout: Duration::from_secs(300),
            sessions: UpstreamSessions::Pool,
        }
    }
}

impl GatewayArgs {
    /// Checks the options: upstream names unique, URLs valid MCP endpoints
    /// (http or https, no user info), identity header names valid, limits
    /// positive.
    pub fn config(&self) -> Result<GatewayConfig, UsageError> {
        let mut upstreams = BTreeMap::new();
        for (name, url) in &self.upstreams {
            // The key builder validates the URL and redacts it in its error.
            SessionKey::anonymous(url.as_str())
                .map_err(|e| UsageError(format!("--upstream {name}: {e}")))?;
            if upstreams.insert(name.clone(), url.clone()).is_some() {
                return Err(UsageError(format!(
                    "--upstream {name}: the name is given twice"
                )));
            }
        }
        let mut config = GatewayConfig::new(self.listen, upstreams);
        if !self.identity_headers.is_empty() {
            config.identity_headers = self
                .identity_headers
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
        }
        SessionKey::builder("http://127.0.0.1/")
            .identity_headers(&config.identity_headers)
            .build()
            .map_err(|e| UsageError(format!("--identity-header: {e}")))?;
        for (flag, value) in [
            ("--sessions-per-key", self.sessions_per_key),
            ("--max-sessions", self.max_sessions),
            ("--max-keys", self.max_keys),
        ] {
            if value == 0 {
                return Err(UsageError(format!("{flag} 0: at least 1 is needed")));
            }
        }
        if self.call_timeout.is_zero() {
            return Err(UsageError("--call-timeout 0s: no call could finish".into()));
        }
        config.allowed_hosts = self.allowed_hosts.clone();
        config.affinity = self.affinity;
        config.grace = self.grace;
        config.call_timeout = self.call_timeout;
        config.sessions_per_key = self.sessions_per_key;
        config.max_sessions = self.max_sessions;
        config.max_keys = self.max_keys;
        config.idle_timeout = self.idle_timeout;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_read_as_name_equals_url() {
        assert_eq!(
            upstream("echo=http://127.0.0.1:9/mcp"),
            Ok(("echo".into(), "http://127.0.0.1:9/mcp".into()))
        );
        assert!(upstream("http://127.0.0.1:9/mcp").is_err());
        assert!(upstream("a/b=http://x/").unwrap_err().contains("a/b"));
    }
}
