//! Latency of one `echo` call (delay 0) against the echo server on loopback,
//! four ways, in the same run, for two servers: one of the legacy stateful
//! era (`initialize` answered with an `Mcp-Session-Id`) and one of the
//! modern era (2026-07-28 only: `server/discover`, no sessions):
//!
//! - `pooled`: `pool.run(&key, |s| s.call_tool(..))` through an
//!   `McpConnector` pool (one key, warm session; the connector detects the
//!   era itself);
//! - `held`: plain rmcp, `call_tool` on one client held for the whole run
//!   (the floor: no pool, no health wrapper);
//! - `fresh`: plain rmcp, a new client per call (legacy: `initialize`, the
//!   call, then close with DELETE; modern: rmcp's `Discover` lifecycle, a
//!   `server/discover` round trip, then the call), over one HTTP client
//!   that reuses connections (the cheapest way to go without a pool);
//! - `fresh-default`: the same with rmcp's default HTTP client, built per
//!   client as `StreamableHttpClientTransport::from_uri` does (a new TCP
//!   connection per client).
//!
//! For each era, first a per-call sampler interleaves the four call by
//! call, in an order shuffled at every step, and prints p50, p90 and p99 of
//! each and the ratios to `held`; then
//! criterion measures the same functions (`echo_latency/ERA/MODE`). The
//! servers run on their own runtime thread.
//!
//! Run: `cargo bench -p mcp-pool-rmcp --bench latency`
//! (`-- --quick` for a shorter criterion pass).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mcp_pool::Pool;
use mcp_pool_echo::{spawn_local_server, EchoConfig, Era};
use mcp_pool_rmcp::{McpConnector, McpPool, SessionKey};
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};

fn echo() -> CallToolRequestParams {
    let args = rmcp::serde_json::json!({ "message": "ping", "delay_ms": 0 });
    CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap())
}

struct Setup {
    era: Era,
    url: String,
    pool: McpPool,
    key: SessionKey,
    held: RunningService<RoleClient, ()>,
    http: reqwest::Client,
}

/// A plain rmcp client of `era` over `transport`: `initialize` for a legacy
/// server, rmcp's `Discover` lifecycle (one `server/discover`) for a
/// modern one.
async fn client<T, E, A>(era: Era, transport: T) -> RunningService<RoleClient, ()>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    match era {
        Era::Modern => {
            let mode = ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::LATEST],
            };
            ().serve_with_lifecycle(transport, mode).await
        }
        _ => ().serve(transport).await,
    }
    .expect("the client starts")
}

async fn fresh_session(
    era: Era,
    http: &reqwest::Client,
    url: &str,
) -> RunningService<RoleClient, ()> {
    let config =
        StreamableHttpClientTransportConfig::with_uri(url).reinit_on_expired_session(false);
    client(
        era,
        StreamableHttpClientTransport::with_client(http.clone(), config),
    )
    .await
}

impl Setup {
    async fn new(era: Era, url: String) -> Setup {
        let pool = Pool::builder(McpConnector::new().expect("connector"))
            .max_sessions_per_key(1)
            .checking(false)
            .build()
            .expect("pool");
        let key = SessionKey::anonymous(url.as_str()).expect("key");
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .expect("http client");
        let held = fresh_session(era, &http, &url).await;
        let setup = Setup {
            era,
            url,
            pool,
            key,
            held,
            http,
        };
        // Warm everything up.
        for _ in 0..200 {
            setup.pooled().await;
            setup.held().await;
        }
        for _ in 0..20 {
            setup.fresh().await;
            setup.fresh_default().await;
        }
        setup
    }

    async fn pooled(&self) {
        self.pool
            .run(&self.key, async |s| s.call_tool(echo()).await)
            .await
            .expect("pooled call");
    }

    async fn held(&self) {
        self.held.call_tool(echo()).await.expect("held call");
    }

    async fn fresh(&self) {
        let session = fresh_session(self.era, &self.http, &self.url).await;
        session.call_tool(echo()).await.expect("fresh call");
        session.cancel().await.expect("close");
    }

    async fn fresh_default(&self) {
        let session = client(
            self.era,
            StreamableHttpClientTransport::from_uri(self.url.as_str()),
        )
        .await;
        session.call_tool(echo()).await.expect("fresh call");
        session.cancel().await.expect("close");
    }

    async fn run(&self, mode: Mode) {
        match mode {
            Mode::Pooled => self.pooled().await,
            Mode::Held => self.held().await,
            Mode::Fresh => self.fresh().await,
            Mode::FreshDefault => self.fresh_default().await,
        }
    }
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Mode {
    Pooled,
    Held,
    Fresh,
    FreshDefault,
}

const MODES: [(Mode, &str); 4] = [
    (Mode::Pooled, "pooled"),
    (Mode::Held, "held"),
    (Mode::Fresh, "fresh"),
    (Mode::FreshDefault, "fresh-default"),
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Per-call latencies, the modes interleaved call by call in an order
/// shuffled afresh at every step (a fixed seed), so that they see the same
/// machine conditions and each as often follows each other: a fresh
/// client's close and its connections' teardown go on after its call
/// returns, and in a fixed rotation the same mode would always pay for them
/// (in the rounds of batches this sampler used before, `pooled` followed
/// `fresh-default` in three rounds of four, 4-10% on its p50).
async fn sample(setup: &Setup) {
    const ROUNDS: usize = 40;
    const CALLS: usize = 50;
    /// Calls of `pooled` and `held` per call of each fresh mode.
    const FRESH_EVERY: usize = 5;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); MODES.len()];
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut order: Vec<usize> = Vec::with_capacity(MODES.len());
    for step in 0..ROUNDS * CALLS {
        order.clear();
        order.extend((0..MODES.len()).filter(|&i| {
            matches!(MODES[i].0, Mode::Pooled | Mode::Held) || step % FRESH_EVERY == 0
        }));
        // Fisher-Yates with xorshift.
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        for &index in &order {
            let t = Instant::now();
            setup.run(MODES[index].0).await;
            samples[index].push(t.elapsed());
        }
    }
    for s in &mut samples {
        s.sort();
    }
    let p50 = |mode: Mode| {
        let index = MODES.iter().position(|(m, _)| *m == mode).unwrap();
        percentile(&samples[index], 0.5).as_secs_f64()
    };
    let base = p50(Mode::Held);
    println!(
        "echo latency per call (µs), {} server, modes interleaved call by call in shuffled order:",
        era_name(setup.era)
    );
    println!(
        "{:<14} {:>6} {:>9} {:>9} {:>9} {:>11}",
        "mode", "calls", "p50", "p90", "p99", "p50 / held"
    );
    for ((_, name), s) in MODES.iter().zip(&samples) {
        println!(
            "{:<14} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>11.3}",
            name,
            s.len(),
            micros(percentile(s, 0.5)),
            micros(percentile(s, 0.9)),
            micros(percentile(s, 0.99)),
            percentile(s, 0.5).as_secs_f64() / base
        );
    }
    // The legacy targets: a fresh session costs an `initialize` round trip.
    let target = if setup.era == Era::Legacy {
        " (target >= 5x)"
    } else {
        ""
    };
    println!(
        "pool overhead at p50: {:+.1}% (target < 5%); a fresh client per call: {:.1}x the pooled p50 \
         with a connection-reusing HTTP client, {:.1}x with rmcp's default one{target}",
        (p50(Mode::Pooled) / base - 1.0) * 100.0,
        p50(Mode::Fresh) / p50(Mode::Pooled),
        p50(Mode::FreshDefault) / p50(Mode::Pooled),
    );
}

/// The era's name as the connector reports it.
fn era_name(era: Era) -> &'static str {
    match era {
        Era::Legacy => "legacy-stateful",
        Era::Modern => "modern",
        other => other.name(),
    }
}

/// The eras measured: a legacy stateful server and a modern one.
const ERAS: [Era; 2] = [Era::Legacy, Era::Modern];

fn bench(c: &mut Criterion) {
    // The servers get runtime threads of their own, like a separate process.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    let mut servers = Vec::new();
    let mut setups = Vec::new();
    for era in ERAS {
        let server = server_runtime
            .block_on(spawn_local_server(
                "127.0.0.1:0".parse().unwrap(),
                &EchoConfig::default().with_era(era),
            ))
            .expect("echo server");
        let setup = Arc::new(client_runtime.block_on(Setup::new(era, server.url())));
        servers.push(server);
        setups.push(setup);
    }
    for setup in &setups {
        client_runtime.block_on(sample(setup));
    }

    let mut group = c.benchmark_group("echo_latency");
    for setup in &setups {
        for (mode, name) in MODES {
            let setup = setup.clone();
            group.bench_function(format!("{}/{name}", era_name(setup.era)), |b| {
                b.to_async(&client_runtime).iter(|| {
                    let setup = setup.clone();
                    async move { setup.run(mode).await }
                })
            });
        }
    }
    group.finish();
    drop(setups);
    drop(servers);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}

criterion_main!(benches);
