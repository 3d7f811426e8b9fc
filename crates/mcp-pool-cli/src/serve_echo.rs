//! `mcp-pool serve-echo`: the echo MCP server alone.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mcp_pool_echo::{serve_tcp, EchoApp, EchoConfig, Era, ServerControl};

use crate::UsageError;

/// `mcp-pool serve-echo`: the options, each also read from an `MCP_POOL_*`
/// environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeEchoArgs {
    /// Port to listen on (0 picks a free one, printed at start).
    #[arg(long, env = "MCP_POOL_PORT", default_value_t = 0)]
    pub port: u16,

    /// Address to listen on. Anything but a loopback address needs
    /// --allow-remote.
    #[arg(long, env = "MCP_POOL_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Allow a non-loopback --host: the server has no authentication.
    #[arg(long, env = "MCP_POOL_ALLOW_REMOTE",
          value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub allow_remote: bool,

    /// Protocol revisions served: legacy (before 2026-07-28, with sessions),
    /// legacy-stateless, modern (2026-07-28 only: server/discover, no
    /// sessions) or dual (both on one endpoint).
    #[arg(long, env = "MCP_POOL_ERA", default_value = "legacy")]
    pub era: Era,

    /// Serve without server-side sessions (no `mcp-session-id`): the
    /// legacy-stateless era.
    #[arg(long, env = "MCP_POOL_STATELESS",
          value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub stateless: bool,
}

/// What to serve, and where.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The address to bind.
    pub addr: SocketAddr,
    /// The server's behaviour.
    pub echo: EchoConfig,
}

impl ServeEchoArgs {
    /// Checks the options and makes the server's configuration.
    pub fn config(&self) -> Result<ServeConfig, UsageError> {
        let era = match (self.era, self.stateless) {
            (era, false) => era,
            (Era::Legacy | Era::LegacyStateless, true) => Era::LegacyStateless,
            (era, true) => {
                return Err(UsageError(format!(
                "--stateless is the legacy-stateless era; it cannot be combined with --era {era}"
            )))
            }
        };
        let mut echo = EchoConfig::default().with_era(era);
        if !self.host.is_loopback() {
            if !self.allow_remote {
                return Err(UsageError(format!(
                    "--host {}: not a loopback address; add --allow-remote to serve the (unauthenticated) echo server on it",
                    self.host
                )));
            }
            echo = echo.with_allowed_host(self.host.to_string());
        }
        Ok(ServeConfig {
            addr: SocketAddr::new(self.host, self.port),
            echo,
        })
    }
}

/// Serves until Ctrl-C or SIGTERM (a graceful stop; a second signal, or 5 s,
/// kills). Prints `listening on http://ADDR/mcp` once bound, and on the next
/// line the era and the protocol versions it serves.
pub async fn run(config: ServeConfig) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    println!("listening on http://{bound}{}", mcp_pool_echo::MCP_PATH);
    println!("{}", config.echo.era.summary());
    let control = ServerControl::new();
    let stopper = control.clone();
    tokio::spawn(async move {
        crate::stop_signal().await;
        eprintln!("stopping (again to kill)");
        stopper.stop();
        tokio::select! {
            () = crate::stop_signal() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        stopper.kill();
    });
    serve_tcp(listener, EchoApp::new(&config.echo), control).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(host: &str, allow_remote: bool) -> ServeEchoArgs {
        ServeEchoArgs {
            port: 0,
            host: host.parse().unwrap(),
            allow_remote,
            era: Era::default(),
            stateless: false,
        }
    }

    #[test]
    fn loopback_by_default_remote_on_request() {
        let config = args("127.0.0.1", false).config().unwrap();
        assert_eq!(config.addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.echo.era, Era::Legacy);
        let refused = args("0.0.0.0", false).config().unwrap_err();
        assert!(refused.0.contains("--allow-remote"), "{refused:?}");
        let config = args("0.0.0.0", true).config().unwrap();
        assert_eq!(config.echo.extra_allowed_hosts, vec!["0.0.0.0".to_string()]);
    }

    #[test]
    fn the_era_is_chosen_by_flag() {
        use clap::Parser;

        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ServeEchoArgs,
        }
        let parse = |argv: &[&str]| {
            Cli::try_parse_from(std::iter::once("serve-echo").chain(argv.iter().copied()))
                .map(|cli| cli.args)
        };
        for era in Era::ALL {
            let args = parse(&["--era", era.name()]).unwrap();
            assert_eq!(args.config().unwrap().echo.era, era);
        }
        let stateless = parse(&["--stateless"]).unwrap().config().unwrap();
        assert_eq!(stateless.echo.era, Era::LegacyStateless);
        let refused = parse(&["--stateless", "--era", "dual"])
            .unwrap()
            .config()
            .unwrap_err();
        assert!(refused.0.contains("--era dual"), "{refused:?}");
        let bad = parse(&["--era", "ancient"]).unwrap_err().to_string();
        for name in Era::NAMES {
            assert!(bad.contains(name), "{bad}");
        }
    }
}
