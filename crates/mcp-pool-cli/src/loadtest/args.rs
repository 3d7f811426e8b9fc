//! The loadtest's command line, and the checked plan it turns into.

use std::path::PathBuf;
use std::time::Duration;

use rmcp::model::JsonObject;

use super::backend::{OutagePlan, Restart};
use super::era::EraChoice;
use super::modes::{keys, ModeName, ToolCall};
use super::run::Load;
use crate::{duration, UsageError};

/// `mcp-pool loadtest`: the options, each also read from an `MCP_POOL_*`
/// environment variable.
#[derive(Clone, Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct LoadtestArgs {
    /// Virtual users, each making one call after another.
    #[arg(long, env = "MCP_POOL_USERS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: u32,

    /// Users started per second at the beginning of each mode.
    #[arg(long, env = "MCP_POOL_SPAWN_RATE", default_value_t = 100.0, value_parser = positive)]
    pub spawn_rate: f64,

    /// Pause between a user's calls.
    #[arg(long, env = "MCP_POOL_THINK_TIME", default_value = "0s", value_parser = duration)]
    pub think_time: Duration,

    /// How long each mode runs (calls in flight at the end are awaited).
    #[arg(long, env = "MCP_POOL_DURATION", default_value = "30s", value_parser = duration)]
    pub duration: Duration,

    /// How long the echo tool waits before answering (its `delay_ms`).
    #[arg(long, env = "MCP_POOL_DELAY", default_value = "500ms", value_parser = duration)]
    pub delay: Duration,

    /// Spread of the tool delay: each call waits a delay drawn uniformly
    /// from delay ± jitter, so the mean stays the delay. At most the delay.
    #[arg(long, env = "MCP_POOL_JITTER", default_value = "0s", value_parser = duration)]
    pub jitter: Duration,

    /// Identities (tenants) the users are spread over, round robin. Each
    /// sends its own `x-tenant-id` header, so pools keep their sessions
    /// apart. At most the number of users.
    #[arg(long, env = "MCP_POOL_IDENTITIES", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub identities: u32,

    /// Sessions per identity in modes `pool` and `naive` [default: users
    /// per identity, so no user waits for a session].
    #[arg(long, env = "MCP_POOL_POOL_SIZE",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pool_size: Option<u32>,

    /// When the backend goes down, from the start of each mode [default:
    /// half of --duration].
    #[arg(long, env = "MCP_POOL_OUTAGE_AT", value_parser = duration)]
    pub outage_at: Option<Duration>,

    /// How long the backend stays down [default: 5s, at most a quarter of
    /// --duration]. Not with --restart instant.
    #[arg(long, env = "MCP_POOL_DOWN_FOR", value_parser = duration)]
    pub down_for: Option<Duration>,

    /// How the embedded backend comes back on its port after it is killed:
    /// `delayed` (after --down-for) or `instant` (at once; connections and
    /// server-side sessions are lost all the same).
    #[arg(long, env = "MCP_POOL_RESTART", value_enum, default_value_t = Restart::Delayed,
          conflicts_with = "url")]
    pub restart: Restart,

    /// Run without any outage.
    #[arg(long, env = "MCP_POOL_NO_OUTAGE",
          value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue,
          conflicts_with_all = ["outage_at", "down_for", "restart"])]
    pub no_outage: bool,

    /// Pause after a failed call when it is longer than the think time, so
    /// that calls failing at once do not spin.
    #[arg(long, env = "MCP_POOL_ERROR_BACKOFF", default_value = "100ms", value_parser = duration)]
    pub error_backoff: Duration,

    /// Longest a call may take, waiting for a session included; a call
    /// still running then counts as a timeout.
    #[arg(long, env = "MCP_POOL_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub timeout: Duration,

    /// Modes to run, one after another, comma-separated: `pool` (mcp-pool),
    /// `naive` (a pool with the known bug), `none` (a new session per call).
    #[arg(long = "mode", env = "MCP_POOL_MODE", value_enum, value_delimiter = ',',
          default_values_t = [ModeName::Pool, ModeName::Naive, ModeName::None])]
    pub modes: Vec<ModeName>,

    /// Port of the embedded echo server on 127.0.0.1 (0 picks a free one).
    #[arg(
        long,
        env = "MCP_POOL_PORT",
        default_value_t = 0,
        conflicts_with = "url"
    )]
    pub port: u16,

    /// Protocol era the embedded echo server serves: `legacy` (before
    /// 2026-07-28, with `Mcp-Session-Id` sessions), `legacy-stateless`
    /// (`initialize`, no session id), `modern` (2026-07-28 only:
    /// `server/discover`, no sessions), `dual` (both on one endpoint), or
    /// `all` (the whole loadtest once per era, one table each). The backend
    /// comes back in the same era after its outage. The era each mode's
    /// sessions detected is reported either way.
    #[arg(long, env = "MCP_POOL_ERA", default_value = "legacy", conflicts_with = "url",
          value_parser = era_choice)]
    pub era: EraChoice,

    /// Put an embedded `mcp-pool gateway` between the users and the server,
    /// one per mode, its upstream sessions taken as the mode takes them
    /// (mcp-pool, the naive pool, or a new one per call): the topology the
    /// cascade was reported in. Users call the gateway over sessions of
    /// their own (which stay healthy: the gateway is never restarted); the
    /// table's counters and eras are the gateway's upstream side.
    #[arg(long, env = "MCP_POOL_VIA_GATEWAY")]
    pub via_gateway: bool,

    /// Load an external MCP server (Streamable HTTP) instead of the
    /// embedded one. Nothing is injected into it: to judge faults made from
    /// outside, declare them with --outage-at and --down-for.
    #[arg(long, env = "MCP_POOL_URL")]
    pub url: Option<String>,

    /// Tool to call.
    #[arg(long, env = "MCP_POOL_TOOL", default_value = "echo")]
    pub tool: String,

    /// Arguments of every call, as a JSON object (default: for `echo`,
    /// `{"message": <user and call number>, "delay_ms": <--delay ± --jitter>}`;
    /// for other tools, `{}`).
    #[arg(long, env = "MCP_POOL_ARGS", value_parser = json_object)]
    pub args: Option<JsonObject>,

    /// Also write everything measured to FILE as JSON: settings, each
    /// mode's summary, per-second timeline, and when the backend went down
    /// and came back.
    #[arg(long, env = "MCP_POOL_JSON", value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Also draw calls/s and errors/s over time for each mode to FILE
    /// (SVG), with the outage shaded.
    #[arg(long, env = "MCP_POOL_PLOT", value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

const AFTER_HELP: &str = "\
Each mode runs the same load for --duration against the same backend, one
after another, and the backend goes down in the middle of each. The table
at the end shows, per mode: calls, successes, errors by cause, errors that
started after the backend was back, throughput (over the whole run and
outside the outage) beside the ceiling, latency percentiles (— when no call
succeeded), and the pool's counters.

The ceiling is users / (delay + think time) when the server waits the
delay_ms each call asks for: the embedded echo server does; for --url, the
tool's input schema (tools/list) must take delay_ms. Otherwise it is
users / (p50 + think time), with the lowest median latency measured in
modes pool and none, and the table says so.

Exit code 0 when the run passed, 1 when it failed: mode pool had failed
calls once the backend was up (after the outage, or over the whole run
without one), not counting the tool's own error answers; or some mode had
no successful call. The reason is printed on stderr in one line after the
table (the table and --json are written all the same). 2 for a usage error.

The embedded server serves the protocol era given by --era (legacy
stateful by default); each mode's row `era (detected)` is what its sessions
found, for --url too.

With --via-gateway, users call an embedded gateway (`mcp-pool gateway`),
which calls the server over sessions taken the mode's way; its /metrics
page is read at the end of each mode, and the JSON report holds its
figures beside the table's (`metrics_connects`, `metrics_closes`).

Durations are written like 500ms, 20s, 1m30s.

Examples:
  mcp-pool loadtest --duration 20s
  mcp-pool loadtest --duration 20s --era modern
  mcp-pool loadtest --era all --mode pool --json eras.json
  mcp-pool loadtest --duration 20s --via-gateway
  mcp-pool loadtest --users 50 --delay 100ms --restart instant --json out.json --plot out.svg
  mcp-pool loadtest --url http://127.0.0.1:8000/mcp --tool search --args '{\"q\":\"x\"}' --mode pool";

fn era_choice(text: &str) -> Result<EraChoice, String> {
    text.parse()
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a positive number".into()),
    }
}

fn json_object(text: &str) -> Result<JsonObject, String> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object such as {\"message\": \"hi\"}".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// Where the load goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The embedded echo server on 127.0.0.1, on this port (0: any),
    /// serving this era.
    Embedded {
        /// The port asked for.
        port: u16,
        /// The protocol era it serves (also after its outage).
        era: mcp_pool_echo::Era,
    },
    /// An external MCP server.
    External {
        /// Its endpoint.
        url: String,
    },
}

/// A loadtest whose settings were all checked.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The load every mode runs.
    pub load: Load,
    /// The tool call every user makes.
    pub call: ToolCall,
    /// The modes, in order.
    pub modes: Vec<ModeName>,
    /// Where the load goes.
    pub target: Target,
    /// The outage: injected into the embedded backend, declared for an
    /// external one.
    pub outage: Option<OutagePlan>,
    /// Sessions per identity for the pools.
    pub pool_size: usize,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Where to draw the SVG plot.
    pub plot: Option<PathBuf>,
    /// `--era all`: the loadtest runs once per era (see [`Plan::runs`]);
    /// the target's era is the first.
    pub all_eras: bool,
    /// `--via-gateway`: each mode runs behind an embedded gateway.
    pub via_gateway: bool,
}

impl Plan {
    /// The plans to run, one after another: this one, or with `--era all`
    /// one per era of [`mcp_pool_echo::Era::ALL`], each serving its era.
    pub fn runs(&self) -> Vec<Plan> {
        match (&self.target, self.all_eras) {
            (Target::Embedded { port, .. }, true) => mcp_pool_echo::Era::ALL
                .into_iter()
                .map(|era| Plan {
                    target: Target::Embedded { port: *port, era },
                    all_eras: false,
                    ..self.clone()
                })
                .collect(),
            _ => vec![self.clone()],
        }
    }
}

impl LoadtestArgs {
    /// Checks what the parser could not check alone, and makes the plan.
    pub fn plan(self) -> Result<Plan, UsageError> {
        let usage = |m: String| Err(UsageError(m));
        if self.duration < Duration::from_secs(1) {
            return usage(format!(
                "--duration {}: a mode must run for at least 1s",
                show(self.duration)
            ));
        }
        if self.jitter > self.delay {
            return usage(format!(
                "--jitter {} exceeds --delay {}: a delay cannot go below zero",
                show(self.jitter),
                show(self.delay)
            ));
        }
        if self.identities > self.users {
            return usage(format!(
                "--identities {} exceeds --users {}: some identities would have no user",
                self.identities, self.users
            ));
        }
        if self.timeout.is_zero() {
            return usage("--timeout 0s: a call needs time to run".into());
        }
        for (i, mode) in self.modes.iter().enumerate() {
            if self.modes[..i].contains(mode) {
                return usage(format!("--mode lists `{mode}` twice"));
            }
        }
        if self.modes.is_empty() {
            return usage("--mode is empty: name at least one of pool, naive, none".into());
        }
        let target = match &self.url {
            Some(url) => {
                if let Err(e) = keys(url, 1) {
                    return usage(format!("--url {url}: {e}"));
                }
                Target::External { url: url.clone() }
            }
            None => Target::Embedded {
                port: self.port,
                era: self.era.eras()[0],
            },
        };
        let outage = self.outage(&target)?;
        let users = self.users as usize;
        let identities = self.identities as usize;
        let pool_size = match self.pool_size {
            Some(n) => n as usize,
            None => users.div_ceil(identities),
        };
        let args = match (&self.args, self.tool.as_str()) {
            (Some(args), _) => Some(args.clone()),
            (None, "echo") => None,
            (None, _) => Some(JsonObject::new()),
        };
        Ok(Plan {
            load: Load {
                users,
                spawn_rate: self.spawn_rate,
                think_time: self.think_time,
                error_backoff: self.error_backoff,
                duration: self.duration,
                identities,
                call_timeout: self.timeout,
            },
            call: ToolCall {
                tool: self.tool,
                args,
                delay: self.delay,
                jitter: self.jitter,
            },
            modes: self.modes,
            target,
            outage,
            pool_size,
            json: self.json,
            plot: self.plot,
            all_eras: self.era == EraChoice::All && self.url.is_none(),
            via_gateway: self.via_gateway,
        })
    }

    fn outage(&self, target: &Target) -> Result<Option<OutagePlan>, UsageError> {
        let external = matches!(target, Target::External { .. });
        if self.no_outage || (external && self.outage_at.is_none() && self.down_for.is_none()) {
            return Ok(None);
        }
        let at = self.outage_at.unwrap_or(self.duration / 2);
        let down_for = match (self.restart, self.down_for) {
            (Restart::Instant, Some(_)) => return Err(UsageError(
                "--down-for does not apply to --restart instant (the backend comes back at once)"
                    .into(),
            )),
            (Restart::Instant, None) => Duration::ZERO,
            (Restart::Delayed, Some(d)) => d,
            (Restart::Delayed, None) => Duration::from_secs(5).min(self.duration / 4),
        };
        if at.is_zero() {
            return Err(UsageError(
                "--outage-at 0s: the backend must be up when a mode starts".into(),
            ));
        }
        if at + down_for >= self.duration {
            return Err(UsageError(format!(
                "the outage ends at {} but --duration is {}: the backend must be back before the end, so that recovery can be seen",
                show(at + down_for),
                show(self.duration)
            )));
        }
        Ok(Some(OutagePlan {
            at,
            down_for,
            restart: self.restart,
        }))
    }
}

/// A duration as humantime writes it (`1s 500ms`), or `0s`.
pub fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadtestArgs,
    }

    fn parse(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args.plan().map_err(|e| e.0)
    }

    #[test]
    fn the_defaults_make_the_seed_scenario() {
        let plan = parse(&[]).unwrap();
        assert_eq!(plan.load.users, 10);
        assert_eq!(plan.load.duration, Duration::from_secs(30));
        assert_eq!(plan.call.delay, Duration::from_millis(500));
        assert_eq!(
            plan.modes,
            vec![ModeName::Pool, ModeName::Naive, ModeName::None]
        );
        assert_eq!(
            plan.target,
            Target::Embedded {
                port: 0,
                era: mcp_pool_echo::Era::Legacy
            }
        );
        assert_eq!(plan.runs().len(), 1);
        let outage = plan.outage.unwrap();
        assert_eq!(outage.at, Duration::from_secs(15));
        assert_eq!(outage.down_for, Duration::from_secs(5));
        assert_eq!(outage.restart, Restart::Delayed);
        assert_eq!(plan.pool_size, 10);
        assert_eq!(plan.call.asked_delay(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn a_short_run_gets_a_shorter_outage() {
        let plan = parse(&["--duration", "5s", "--users", "4", "--delay", "100ms"]).unwrap();
        let outage = plan.outage.unwrap();
        assert_eq!(outage.at, Duration::from_millis(2500));
        assert_eq!(outage.down_for, Duration::from_millis(1250));
    }

    #[test]
    fn options_combine() {
        let plan = parse(&[
            "--restart",
            "instant",
            "--mode",
            "none,pool",
            "--identities",
            "3",
            "--think-time",
            "1500ms",
            "--jitter",
            "100ms",
        ])
        .unwrap();
        assert_eq!(plan.outage.unwrap().down_for, Duration::ZERO);
        assert_eq!(plan.modes, vec![ModeName::None, ModeName::Pool]);
        assert_eq!(plan.pool_size, 4);
        assert_eq!(plan.load.think_time, Duration::from_millis(1500));
        assert!(parse(&["--no-outage"]).unwrap().outage.is_none());
    }

    #[test]
    fn an_external_server_gets_no_outage_unless_declared() {
        let url = "http://127.0.0.1:9/mcp";
        let plan = parse(&["--url", url, "--tool", "search"]).unwrap();
        assert!(plan.outage.is_none());
        assert_eq!(plan.call.asked_delay(), None);
        assert_eq!(plan.call.args, Some(JsonObject::new()));
        let plan = parse(&["--url", url, "--outage-at", "10s", "--down-for", "3s"]).unwrap();
        let outage = plan.outage.unwrap();
        assert_eq!(outage.declared().back_at_s, 13.0);
        let plan = parse(&["--url", url, "--args", r#"{"message":"x"}"#]).unwrap();
        assert_eq!(plan.call.asked_delay(), None);
        let plan = parse(&["--url", url, "--args", r#"{"delay_ms":250}"#]).unwrap();
        assert_eq!(plan.call.asked_delay(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn each_era_or_all_of_them_is_served() {
        for era in mcp_pool_echo::Era::ALL {
            let plan = parse(&["--era", era.name()]).unwrap();
            assert_eq!(plan.target, Target::Embedded { port: 0, era });
            assert_eq!(plan.runs().len(), 1);
        }
        let plan = parse(&["--era", "all", "--port", "4000"]).unwrap();
        let eras: Vec<Target> = plan.runs().into_iter().map(|p| p.target).collect();
        assert_eq!(
            eras,
            mcp_pool_echo::Era::ALL
                .into_iter()
                .map(|era| Target::Embedded { port: 4000, era })
                .collect::<Vec<_>>()
        );
        assert!(plan.runs().iter().all(|p| !p.all_eras));
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let cases: &[(&[&str], &str)] = &[
            (&["--duration", "soon"], "--duration"),
            (&["--duration", "500ms"], "at least 1s"),
            (&["--users", "0"], "--users"),
            (&["--spawn-rate=-1"], "positive"),
            (&["--spawn-rate", "0"], "positive"),
            (&["--jitter", "1s"], "exceeds --delay"),
            (&["--identities", "11"], "exceeds --users"),
            (&["--mode", "pool,pool"], "twice"),
            (&["--mode", "fast"], "--mode"),
            (&["--args", "[1]"], "JSON object"),
            (&["--args", "{"], "not valid JSON"),
            (&["--down-for", "20s"], "back before the end"),
            (
                &["--restart", "instant", "--down-for", "1s"],
                "does not apply",
            ),
            (&["--no-outage", "--down-for", "1s"], "cannot be used"),
            (&["--url", "ftp://x", "--mode", "pool"], "--url"),
            (&["--url", "http://x/mcp", "--port", "80"], "cannot be used"),
            (&["--timeout", "0s"], "--timeout"),
            (&["--era", "stateful"], "or all"),
            (
                &["--url", "http://x/mcp", "--era", "modern"],
                "cannot be used",
            ),
        ];
        for (args, needle) in cases {
            let err = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
