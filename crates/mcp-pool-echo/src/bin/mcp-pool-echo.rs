//! `mcp-pool-echo`: serves the echo MCP server at `http://HOST:PORT/mcp`.
//!
//! Prints `listening on ADDR` and then the era on stdout once bound, then
//! serves until interrupted (Ctrl-C / SIGTERM stop it gracefully).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use mcp_pool_echo::{serve_tcp, EchoApp, EchoConfig, Era, ServerControl};

const USAGE: &str = "\
usage: mcp-pool-echo --port PORT [--host ADDR] [--allow-remote] [--allowed-host NAME]...
                     [--era ERA] [--stateless] [--session-keep-alive-secs N]

Serves an echo MCP server over Streamable HTTP at http://ADDR:PORT/mcp
(tools: echo, fail, whoami) and prints `listening on ADDR:PORT`, then a line
naming the era, once bound.

  --port PORT                  port to bind (0 picks a free one)
  --host ADDR                  IP address to bind (default 127.0.0.1)
  --allow-remote               allow a non-loopback --host
  --allowed-host NAME          also accept this Host header (repeatable)
  --era ERA                    protocol revisions served: legacy (default; before
                               2026-07-28, with sessions), legacy-stateless,
                               modern (2026-07-28 only) or dual (both)
  --stateless                  the same as --era legacy-stateless
  --session-keep-alive-secs N  drop sessions idle for N seconds (0: never; default 300)
";

#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    cfg: EchoConfig,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut port: Option<u16> = None;
    let mut host: IpAddr = IpAddr::from([127, 0, 0, 1]);
    let mut allow_remote = false;
    let mut era: Option<Era> = None;
    let mut stateless = false;
    let mut cfg = EchoConfig::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                port = Some(
                    v.parse()
                        .map_err(|_| format!("--port {v}: not a port number"))?,
                );
            }
            "--host" => {
                let v = value("--host")?;
                host = v
                    .parse()
                    .map_err(|_| format!("--host {v}: not an IP address"))?;
            }
            "--allow-remote" => allow_remote = true,
            "--allowed-host" => cfg = cfg.with_allowed_host(value("--allowed-host")?),
            "--era" => {
                let v = value("--era")?;
                era = Some(v.parse().map_err(|e| format!("--era: {e}"))?);
            }
            "--stateless" => stateless = true,
            "--session-keep-alive-secs" => {
                let v = value("--session-keep-alive-secs")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--session-keep-alive-secs {v}: not a number"))?;
                cfg = cfg.with_session_keep_alive((secs > 0).then(|| Duration::from_secs(secs)));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let port = port.ok_or("--port is required")?;
    cfg = cfg.with_era(match (era, stateless) {
        (None, false) => Era::default(),
        (None | Some(Era::LegacyStateless | Era::Legacy), true) => Era::LegacyStateless,
        (Some(era), false) => era,
        (Some(era), true) => {
            return Err(format!(
                "--stateless is the legacy-stateless era; it cannot be combined with --era {era}"
            ))
        }
    });
    if !host.is_loopback() {
        if !allow_remote {
            return Err(format!(
                "--host {host} is not a loopback address; add --allow-remote to serve on it"
            ));
        }
        cfg = cfg.with_allowed_host(host.to_string());
    }
    Ok(Args {
        addr: SocketAddr::new(host, port),
        cfg,
    })
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("mcp-pool-echo: {msg} (see --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-pool-echo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("mcp-pool-echo: cannot bind {}: {e}", args.addr);
                return ExitCode::FAILURE;
            }
        };
        let bound = match listener.local_addr() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("mcp-pool-echo: cannot read the bound address: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut stdout = std::io::stdout().lock();
        // One write for both lines, so a reader that stops after the first
        // (closing the pipe) cannot make a second write fail. If stdout is
        // gone, whoever started us cannot learn the port; serve anyway.
        let banner = format!("listening on {bound}\n{}\n", args.cfg.era.summary());
        let _ = stdout
            .write_all(banner.as_bytes())
            .and_then(|()| stdout.flush());
        drop(stdout);

        let control = ServerControl::new();
        let stopper = control.clone();
        tokio::spawn(async move {
            stop_signal().await;
            stopper.stop();
            // A second signal, or a stop that takes too long, kills.
            tokio::select! {
                () = stop_signal() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            stopper.kill();
        });
        serve_tcp(listener, EchoApp::new(&args.cfg), control).await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn loopback_by_default() {
        let args = parse(&["--port", "0"]).unwrap();
        assert_eq!(args.addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(args.cfg.era, Era::Legacy);
        assert!(args.cfg.is_stateful());
    }

    #[test]
    fn eras_by_name_and_stateless_as_legacy_stateless() {
        for era in Era::ALL {
            let args = parse(&["--port", "0", "--era", era.name()]).unwrap();
            assert_eq!(args.cfg.era, era);
        }
        for stateless in [
            &["--port", "0", "--stateless"][..],
            &["--port", "0", "--stateless", "--era", "legacy"],
            &["--port", "0", "--era", "legacy-stateless", "--stateless"],
        ] {
            assert_eq!(parse(stateless).unwrap().cfg.era, Era::LegacyStateless);
        }
        let err = parse(&["--port", "0", "--era", "modern", "--stateless"]).unwrap_err();
        assert!(err.contains("--era modern"), "{err}");
        let err = parse(&["--port", "0", "--era", "ancient"]).unwrap_err();
        assert!(err.starts_with("--era: unknown era 'ancient'"), "{err}");
        for name in Era::NAMES {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn remote_host_needs_allow_remote() {
        let err = parse(&["--port", "1", "--host", "0.0.0.0"]).unwrap_err();
        assert!(err.contains("--allow-remote"), "{err}");
        let args = parse(&["--port", "1", "--host", "0.0.0.0", "--allow-remote"]).unwrap();
        assert_eq!(args.cfg.extra_allowed_hosts, vec!["0.0.0.0".to_string()]);
        assert!(parse(&["--port", "1", "--host", "::1"]).is_ok());
    }

    #[test]
    fn bad_arguments_are_explained() {
        assert!(parse(&[]).unwrap_err().contains("--port is required"));
        assert!(parse(&["--port", "x"]).unwrap_err().contains("not a port"));
        assert!(parse(&["--port"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--bogus"])
            .unwrap_err()
            .contains("unknown argument"));
        let args = parse(&[
            "--port",
            "1",
            "--stateless",
            "--session-keep-alive-secs",
            "0",
        ])
        .unwrap();
        assert!(!args.cfg.is_stateful());
        assert_eq!(args.cfg.session_keep_alive, None);
    }
}
