//! The loadtest: the same load through each mode, with the same outage.

pub mod args;
pub mod backend;
pub mod ceiling;
pub mod era;
pub mod modes;
pub mod plot;
pub mod progress;
pub mod record;
pub mod run;
pub mod table;
pub mod verdict;
pub mod via_gateway;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

use self::args::{Plan, Target};
use self::backend::{Backend, OutagePlan};
use self::ceiling::{CeilingBasis, DelaySupport};
use self::modes::{keys, ClientSettings, ModeName, NaiveMode, NoneMode, PoolMode};
use self::progress::Progress;
use self::record::{ModeReport, ModeRun};
use self::run::{run_mode, Mode};
use self::verdict::Verdict;
use self::via_gateway::ViaGateway;

/// Why a loadtest could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// The embedded echo server could not be started.
    #[error("cannot start the embedded echo server on 127.0.0.1:{port}: {source}")]
    Backend {
        /// The port asked for.
        port: u16,
        /// The bind error.
        source: io::Error,
    },
    /// The embedded echo server could not be brought back after the outage.
    #[error("{0}")]
    Restart(io::Error),
    /// The embedded gateway of `--via-gateway` could not be started.
    #[error("cannot start the embedded gateway: {0}")]
    Gateway(String),
    /// The MCP client could not be built.
    #[error("cannot build the MCP client: {0}")]
    Client(#[from] mcp_pool_rmcp::Error),
    /// A session key could not be built from the URL.
    #[error("cannot use the server URL: {0}")]
    Key(#[from] mcp_pool_rmcp::KeyError),
    /// The pool refused its configuration.
    #[error("cannot build the pool: {0}")]
    Pool(#[from] mcp_pool::BuildError),
    /// The JSON report could not be written.
    #[error("cannot write the JSON report to {path}: {source}")]
    Json {
        /// Where it was to go.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// The plot could not be drawn.
    #[error("cannot draw the plot to {path}: {reason}")]
    Plot {
        /// Where it was to go.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
}

/// The settings a loadtest ran with, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    /// Virtual users.
    pub users: usize,
    /// Users started per second.
    pub spawn_rate: f64,
    /// Pause between a user's calls, ms.
    pub think_time_ms: f64,
    /// Pause after a failed call (if longer than the think time), ms.
    pub error_backoff_ms: f64,
    /// The delay each call asks the tool for (its `delay_ms`), ms; `None`
    /// when the calls carry no `delay_ms`.
    pub delay_ms: Option<f64>,
    /// Spread of the delay, ms.
    pub jitter_ms: f64,
    /// How long each mode ran, s.
    pub duration_s: f64,
    /// Identities the users were spread over.
    pub identities: usize,
    /// Sessions per identity for the pools.
    pub pool_size: usize,
    /// Longest a call could take, ms.
    pub call_timeout_ms: f64,
    /// The tool called.
    pub tool: String,
    /// The modes, in the order they ran.
    pub modes: Vec<ModeName>,
}

/// Everything a loadtest measured: what `--json` writes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadtestReport {
    /// The MCP endpoint loaded.
    pub url: String,
    /// Whether it was the embedded echo server (with the outage injected)
    /// or an external one (with the outage, if any, declared).
    pub embedded: bool,
    /// The protocol era the embedded echo server served (`legacy`,
    /// `legacy-stateless`, `modern` or `dual`, as `--era` names them);
    /// `None` for an external server. What each mode's sessions detected
    /// is in its own report (`era`, `protocol_version`).
    pub served_era: Option<String>,
    /// Whether each mode ran behind an embedded gateway (`--via-gateway`):
    /// then each mode's counters and eras are the gateway's upstream side.
    pub via_gateway: bool,
    /// The settings.
    pub settings: Settings,
    /// The outage planned for each mode; each mode's report holds when the
    /// backend actually went down and came back.
    pub outage: Option<OutagePlan>,
    /// The most calls per second any mode can make, when known (see
    /// `ceiling_basis`).
    pub ceiling: Option<f64>,
    /// How the ceiling was derived: from a delay the server honours, from
    /// the measured latency, or not at all.
    pub ceiling_basis: CeilingBasis,
    /// One report per mode, in the order they ran.
    pub modes: Vec<ModeReport>,
    /// Whether the run passed, which decides the exit code.
    pub verdict: Verdict,
}

/// The modes' implementations, kept to read their counters and shut them
/// down.
enum Running {
    Pool(Arc<PoolMode>),
    Naive(Arc<NaiveMode>),
    None(Arc<NoneMode>),
    Via(ViaGateway),
}

impl Running {
    fn mode(&self) -> Arc<dyn Mode> {
        match self {
            Running::Pool(m) => m.clone(),
            Running::Naive(m) => m.clone(),
            Running::None(m) => m.clone(),
            Running::Via(m) => m.users.clone(),
        }
    }

    /// Shuts the mode down; returns its counters and the eras its
    /// sessions had.
    async fn finish(self) -> (std::collections::BTreeMap<String, u64>, Vec<era::EraSeen>) {
        match self {
            Running::Pool(m) => {
                let counters = m.counters();
                m.shutdown().await;
                (counters, m.eras())
            }
            Running::Naive(m) => {
                let counters = m.counters();
                m.shutdown().await;
                (counters, m.eras())
            }
            Running::None(m) => (m.counters(), m.eras()),
            Running::Via(m) => m.finish().await,
        }
    }
}

/// Runs `plan`: each mode in turn, with the outage injected at the same
/// point of each. Progress bars go to stdout when it is a terminal. With
/// `--era all`, run each of [`Plan::runs`] instead.
pub async fn run(plan: &Plan) -> Result<LoadtestReport, LoadtestError> {
    let mut backend = match &plan.target {
        Target::Embedded { port, era } => Some(Backend::start(*port, *era).await.map_err(
            |source| LoadtestError::Backend {
                port: *port,
                source,
            },
        )?),
        Target::External { .. } => None,
    };
    let url = match (&plan.target, &backend) {
        (Target::External { url }, _) => url.clone(),
        (Target::Embedded { .. }, Some(backend)) => backend.url(),
        (Target::Embedded { .. }, None) => unreachable!("the embedded backend was started"),
    };
    let keys = keys(&url, plan.load.identities)?;
    let settings = ClientSettings {
        call_timeout: plan.load.call_timeout,
    };
    if Progress::visible() {
        println!("{}", table::headline(plan, &url));
    }
    let delay_support = match (&plan.target, plan.call.tool.as_str()) {
        (Target::Embedded { .. }, "echo") => {
            DelaySupport::Honoured("the embedded echo server honours delay_ms".into())
        }
        _ if plan.call.asked_delay().is_none() => {
            DelaySupport::Unknown("the calls send no delay_ms".into())
        }
        _ => {
            let connector = settings.connector()?;
            ceiling::probe(
                &connector,
                &keys[0],
                &plan.call.tool,
                plan.load.call_timeout,
            )
            .await
        }
    };
    let mut reports = Vec::new();
    let mut restart_error = None;
    for &name in &plan.modes {
        let connector = settings.connector()?;
        let running = match name {
            _ if plan.via_gateway => Running::Via(
                ViaGateway::start(
                    name,
                    &url,
                    settings,
                    plan.pool_size,
                    plan.load.users,
                    plan.load.identities,
                    plan.call.clone(),
                )
                .await?,
            ),
            ModeName::Pool => {
                let pool = settings.pool(connector, plan.pool_size, keys.len())?;
                Running::Pool(Arc::new(PoolMode::new(
                    pool,
                    keys.clone(),
                    plan.call.clone(),
                )))
            }
            ModeName::Naive => Running::Naive(Arc::new(NaiveMode::new(
                connector,
                plan.pool_size,
                keys.clone(),
                plan.call.clone(),
            ))),
            ModeName::None => Running::None(Arc::new(NoneMode::new(
                connector,
                keys.clone(),
                plan.call.clone(),
            ))),
        };
        let progress = Progress::start(name.as_str(), plan.load.duration);
        let started_at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let start = Instant::now();
        let load = run_mode(running.mode(), &plan.load, start, progress.on_call());
        let outage = async {
            match (&plan.outage, backend.as_mut()) {
                (Some(outage), Some(backend)) => outage
                    .inject(backend, start, |down| progress.set_backend_down(down))
                    .await
                    .map(Some),
                (Some(outage), None) => Ok(Some(outage.declared())),
                (None, _) => Ok(None),
            }
        };
        let (calls, outage) = tokio::join!(load, outage);
        progress.finish();
        let (counters, eras) = running.finish().await;
        let outage = match outage {
            Ok(outage) => outage,
            Err(e) => {
                restart_error = Some(e);
                None
            }
        };
        reports.push(ModeReport::new(ModeRun {
            mode: name.as_str().to_string(),
            records: calls.records,
            duration: plan.load.duration,
            outage,
            counters,
            error_samples: calls.error_samples,
            last_error_samples: calls.last_error_samples,
            started_at_unix_ms,
            eras,
        }));
        if restart_error.is_some() {
            break;
        }
    }
    if let Some(backend) = backend {
        backend.stop().await;
    }
    if let Some(e) = restart_error {
        return Err(LoadtestError::Restart(e));
    }
    let ceiling_basis = CeilingBasis::derive(
        plan.load.users,
        plan.load.think_time,
        plan.call.asked_delay(),
        &delay_support,
        &reports,
    );
    let ceiling = ceiling_basis.ceiling();
    let reports: Vec<ModeReport> = reports
        .into_iter()
        .map(|m| m.with_ceiling(ceiling))
        .collect();
    let verdict = Verdict::of(&reports, plan.outage.is_some());
    let report = LoadtestReport {
        url,
        embedded: matches!(plan.target, Target::Embedded { .. }),
        via_gateway: plan.via_gateway,
        served_era: match &plan.target {
            Target::Embedded { era, .. } => Some(era.name().to_string()),
            Target::External { .. } => None,
        },
        settings: Settings {
            users: plan.load.users,
            spawn_rate: plan.load.spawn_rate,
            think_time_ms: ms(plan.load.think_time),
            error_backoff_ms: ms(plan.load.error_backoff),
            delay_ms: plan.call.asked_delay().map(ms),
            jitter_ms: ms(plan.call.jitter),
            duration_s: plan.load.duration.as_secs_f64(),
            identities: plan.load.identities,
            pool_size: plan.pool_size,
            call_timeout_ms: ms(plan.load.call_timeout),
            tool: plan.call.tool.clone(),
            modes: plan.modes.clone(),
        },
        outage: plan.outage,
        ceiling,
        ceiling_basis,
        modes: reports,
        verdict,
    };
    Ok(report)
}

/// What `--json` writes for `--era all`: every era's report, in the order
/// they ran, and the verdict over all of them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EraReports<'a> {
    /// One report per era served, each as a single-era `--json` writes it.
    pub eras: &'a [LoadtestReport],
    /// Whether every era passed; each failure names its era.
    pub verdict: Verdict,
}

/// The verdict over every report of a run (one per era with `--era all`).
pub fn verdict_of(reports: &[LoadtestReport]) -> Verdict {
    match reports {
        [one] => one.verdict.clone(),
        many => Verdict::of_runs(
            many.iter()
                .map(|r| (r.served_era.as_deref().unwrap_or("external"), &r.verdict)),
        ),
    }
}

/// Writes the reports where the plan says (`--json`, `--plot`): one
/// report as itself; with `--era all` every era's under `eras` (see
/// [`EraReports`]) and one plot per era, its name suffixed by the era
/// (`out.svg` → `out-modern.svg`).
pub fn write_outputs(plan: &Plan, reports: &[LoadtestReport]) -> Result<(), LoadtestError> {
    if let Some(path) = &plan.json {
        let json = match reports {
            [one] if !plan.all_eras => serde_json::to_string_pretty(one),
            many => serde_json::to_string_pretty(&EraReports {
                eras: many,
                verdict: verdict_of(many),
            }),
        }
        .expect("the report serializes");
        std::fs::write(path, json + "\n").map_err(|source| LoadtestError::Json {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &plan.plot {
        for report in reports {
            let path = match (&report.served_era, plan.all_eras) {
                (Some(era), true) => suffixed(path, era),
                _ => path.clone(),
            };
            plot::draw(report, &path).map_err(|reason| LoadtestError::Plot {
                path: path.clone(),
                reason,
            })?;
        }
    }
    Ok(())
}

/// `dir/out.svg` with `-suffix` before its extension: `dir/out-suffix.svg`.
fn suffixed(path: &std::path::Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{suffix}"),
    };
    path.with_file_name(name)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A small report of two modes, for tests.
#[cfg(test)]
pub(crate) fn sample_report() -> LoadtestReport {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use self::backend::Restart;
    use self::record::{CallRecord, Cause, Outage};

    let outage = Outage {
        down_at_s: 1.0,
        back_at_s: 2.0,
    };
    let call = |start_ms, result| CallRecord {
        start: Duration::from_millis(start_ms),
        latency: Duration::from_millis(100),
        result,
    };
    let pool = ModeReport::new(ModeRun {
        mode: "pool".into(),
        eras: vec![era::EraSeen {
            era: "legacy-stateful".into(),
            protocol_version: "2025-11-25".into(),
            calls: 2,
        }],
        records: vec![call(0, Ok(())), call(2500, Ok(()))],
        duration: Duration::from_secs(3),
        outage: Some(outage),
        counters: BTreeMap::from([("hits".into(), 1), ("misses".into(), 1)]),
        ..ModeRun::default()
    })
    .with_ceiling(Some(1.0));
    let naive = ModeReport::new(ModeRun {
        mode: "naive".into(),
        records: vec![call(0, Ok(())), call(2500, Err(Cause::Transport))],
        duration: Duration::from_secs(3),
        outage: Some(outage),
        error_samples: BTreeMap::from([("transport", "the transport is dead".to_string())]),
        ..ModeRun::default()
    })
    .with_ceiling(Some(1.0));
    LoadtestReport {
        url: "http://127.0.0.1:1/mcp".into(),
        embedded: true,
        via_gateway: false,
        served_era: Some("legacy".into()),
        settings: Settings {
            users: 1,
            spawn_rate: 100.0,
            think_time_ms: 0.0,
            error_backoff_ms: 100.0,
            delay_ms: Some(1000.0),
            jitter_ms: 0.0,
            duration_s: 3.0,
            identities: 1,
            pool_size: 1,
            call_timeout_ms: 10_000.0,
            tool: "echo".into(),
            modes: vec![ModeName::Pool, ModeName::Naive],
        },
        outage: Some(OutagePlan {
            at: Duration::from_secs(1),
            down_for: Duration::from_secs(1),
            restart: Restart::Delayed,
        }),
        ceiling: Some(1.0),
        ceiling_basis: CeilingBasis::Delay {
            users: 1,
            delay_ms: 1000.0,
            think_time_ms: 0.0,
            why: "the embedded echo server honours delay_ms".into(),
        },
        verdict: Verdict::of(&[pool.clone(), naive.clone()], true),
        modes: vec![pool, naive],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_per_era_is_named_by_its_era() {
        assert_eq!(
            suffixed(std::path::Path::new("dir/out.svg"), "modern"),
            PathBuf::from("dir/out-modern.svg")
        );
        assert_eq!(
            suffixed(std::path::Path::new("out"), "dual"),
            PathBuf::from("out-dual")
        );
    }

    #[test]
    fn the_verdict_of_several_eras_names_the_failing_one() {
        let passed = sample_report();
        assert_eq!(verdict_of(std::slice::from_ref(&passed)), passed.verdict);
        let mut failed = sample_report();
        failed.served_era = Some("modern".into());
        failed.verdict = Verdict {
            passed: false,
            failures: vec!["pool: 1 call failed after the backend was back".into()],
        };
        let verdict = verdict_of(&[passed, failed]);
        assert!(!verdict.passed);
        assert_eq!(
            verdict.failures,
            vec!["era modern: pool: 1 call failed after the backend was back".to_string()]
        );
    }
}
