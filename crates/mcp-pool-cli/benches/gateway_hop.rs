//! What the gateway hop adds to a pooled call: one `echo` call (delay 0)
//! against the echo server on loopback, two ways in the same run, each
//! through an `McpConnector` pool with one warm session:
//!
//! - `direct`: the pool's session talks to the echo server;
//! - `via-gateway`: the pool's session talks to `mcp-pool gateway` (the
//!   binary of this package, built with the same profile), which forwards
//!   the call through its own pool to the same echo server.
//!
//! First a per-call sampler interleaves the two in rounds and prints p50,
//! p90 and p99 of each, the added p50 and the ratio; then criterion
//! measures the same two functions.
//!
//! Run: `cargo bench -p mcp-pool-cli --bench gateway_hop`
//! (`-- --quick` for a shorter criterion pass).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mcp_pool::Pool;
use mcp_pool_echo::{spawn_local_server, EchoConfig};
use mcp_pool_rmcp::{McpConnector, McpPool, SessionKey};
use rmcp::model::CallToolRequestParams;

fn echo() -> CallToolRequestParams {
    let args = serde_json::json!({ "message": "ping", "delay_ms": 0 });
    CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap())
}

/// The gateway process, killed on drop.
struct GatewayProcess(Child);

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(upstream: &str) -> (GatewayProcess, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-pool"))
        .args(["gateway", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(format!("echo={upstream}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the mcp-pool binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the gateway prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (GatewayProcess(child), format!("{addr}/mcp/echo"))
}

struct Setup {
    pool: McpPool,
    direct: SessionKey,
    via_gateway: SessionKey,
}

impl Setup {
    async fn call(&self, key: &SessionKey) {
        let result = self
            .pool
            .run(key, async |s| s.call_tool(echo()).await)
            .await
            .expect("the call succeeds");
        assert!(result.is_error != Some(true));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench(c: &mut Criterion) {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt
        .block_on(spawn_local_server(
            "127.0.0.1:0".parse().unwrap(),
            &EchoConfig::default(),
        ))
        .unwrap();
    let (_gateway, gateway_url) = start_gateway(&server.url());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = rt.block_on(async {
        let pool = Pool::builder(McpConnector::new().unwrap())
            .max_sessions_per_key(1)
            .build()
            .unwrap();
        let setup = Setup {
            pool,
            direct: SessionKey::anonymous(server.url()).unwrap(),
            via_gateway: SessionKey::anonymous(gateway_url.as_str()).unwrap(),
        };
        // Warm both paths (sessions, the gateway's own pool).
        for _ in 0..50 {
            setup.call(&setup.direct).await;
            setup.call(&setup.via_gateway).await;
        }
        setup
    });

    let rounds = 2000;
    let (mut direct, mut via) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            setup.call(&setup.direct).await;
            direct.push(t.elapsed());
            let t = Instant::now();
            setup.call(&setup.via_gateway).await;
            via.push(t.elapsed());
        }
    });
    direct.sort();
    via.sort();
    let (d50, v50) = (percentile(&direct, 0.5), percentile(&via, 0.5));
    for (name, samples) in [("direct", &direct), ("via-gateway", &via)] {
        println!(
            "{name:>12}: p50 {:?} p90 {:?} p99 {:?} ({rounds} calls)",
            percentile(samples, 0.5),
            percentile(samples, 0.9),
            percentile(samples, 0.99)
        );
    }
    println!(
        "gateway hop: +{:?} at p50 (via-gateway / direct = {:.2})",
        v50.saturating_sub(d50),
        v50.as_secs_f64() / d50.as_secs_f64()
    );

    let mut group = c.benchmark_group("gateway_hop");
    group.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| setup.call(&setup.direct))
    });
    group.bench_function("via-gateway", |b| {
        b.to_async(&rt).iter(|| setup.call(&setup.via_gateway))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
