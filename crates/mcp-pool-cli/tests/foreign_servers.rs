//! `mcp-pool loadtest --url` against servers that are not the embedded echo
//! server, each a fixture of `mcp-pool-tests` served in this process on
//! 127.0.0.1: a legacy server that forgets sessions and answers them the
//! TypeScript SDK's way, a live server answering HTTP 500 to everything,
//! and a tool that ignores `delay_ms`. Each run is judged from its exit
//! code, its stderr and its `--json` file.

mod common;

use std::time::Duration;

use mcp_pool_tests::{ForgetfulServer, NotMcp, SessionLossForm};
use serde_json::Value;

use common::{f, Run};

/// The call timeout every run uses; no call may come near it.
const TIMEOUT: &str = "10s";

/// Far below the 10 s call timeout: a call that took this long waited for
/// its timeout rather than get an answer.
const FAR_BELOW_TIMEOUT_MS: f64 = 5000.0;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the fixtures")
}

/// Runs `mcp-pool loadtest --url URL ARGS --json FILE`, killed if it has not
/// finished within a minute, and reads its JSON report.
fn loadtest(url: &str, args: &[&str], name: &str) -> Run {
    let args = [&["--url", url, "--timeout", TIMEOUT], args].concat();
    common::loadtest(&args, &format!("foreign-{name}"), Duration::from_secs(60))
}

/// The slowest call of a mode, ok or failed, in ms (the report carries
/// `null` for a kind of call the mode did not make).
fn slowest_ms(m: &Value) -> f64 {
    let ok = m["max_ms"].as_f64();
    let failed = m["max_failed_ms"].as_f64();
    assert!(
        m.get("max_ms").is_some() && m.get("max_failed_ms").is_some(),
        "the report has no max latencies: {m}"
    );
    ok.into_iter().chain(failed).fold(0.0, f64::max)
}

#[test]
fn a_server_forgetting_sessions_the_typescript_way_costs_the_pool_nothing() {
    let rt = runtime();
    let server = ForgetfulServer::new(SessionLossForm::BadRequestWithoutId, 2);
    let fixture = rt.block_on(server.spawn(0)).expect("the fixture serves");
    let run = loadtest(
        &fixture.url(),
        &[
            "--mode",
            "pool",
            "--mode",
            "none",
            "--users",
            "4",
            "--duration",
            "6s",
            "--no-outage",
        ],
        "forget-400-json",
    );
    let context = run.context();
    // The server did forget sessions under the pool's feet.
    assert!(server.forgotten_count() > 0, "{context}");
    assert!(
        server.refusals().values().sum::<u64>() > 0,
        "the pool never met a forgotten session\n{context}"
    );
    let pool = run.mode("pool");
    let none = run.mode("none");
    // Every forgotten session was found out at its first refusal and the
    // call ran again on another: no call waited for its timeout, none
    // failed, and pool keeps up with a fresh session per call.
    let slowest = slowest_ms(pool);
    assert!(
        slowest < FAR_BELOW_TIMEOUT_MS,
        "pool's slowest call {slowest} ms\n{context}"
    );
    assert_eq!(pool["errors_after_recovery"], 0, "{context}");
    let (pool_rate, none_rate) = (f(&pool["throughput"]), f(&none["throughput"]));
    assert!(none_rate > 0.0, "{context}");
    assert!(
        pool_rate >= 0.5 * none_rate,
        "pool {pool_rate:.1} ok calls/s, none {none_rate:.1}\n{context}"
    );
    // The echo tool behind the fixture takes `delay_ms`: the ceiling is the
    // delay's.
    assert_eq!(run.report["ceiling_basis"]["kind"], "delay", "{context}");
    assert_eq!(run.code, Some(0), "{context}");
    println!(
        "forget-400-json: pool {pool_rate:.1} ok calls/s (slowest {slowest:.1} ms), none {none_rate:.1} ok calls/s (slowest {:.1} ms)",
        slowest_ms(none)
    );
}

#[test]
fn a_server_answering_500_fails_every_call_at_once_naming_the_500() {
    let rt = runtime();
    let fixture = rt
        .block_on(mcp_pool_tests::FixtureServer::spawn(
            NotMcp::Status500.router(),
            0,
        ))
        .expect("the fixture serves");
    let run = loadtest(
        &fixture.url(),
        &[
            "--mode",
            "pool",
            "--mode",
            "none",
            "--users",
            "4",
            "--duration",
            "2s",
            "--no-outage",
        ],
        "http-500",
    );
    let context = run.context();
    for name in ["pool", "none"] {
        let m = run.mode(name);
        assert_eq!(m["ok"], 0, "{name}\n{context}");
        assert!(f(&m["calls"]) > 0.0, "{name}\n{context}");
        // Every cause a call failed with has a first error naming the 500.
        let errors = m["errors"].as_object().expect("errors by cause");
        let counted: f64 = errors.values().map(f).sum();
        assert_eq!(counted, f(&m["calls"]), "{name}\n{context}");
        for cause in errors.keys() {
            let sample = m["error_samples"][cause]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no sample of {cause}\n{context}"));
            assert!(sample.contains("HTTP 500"), "{name} {cause}: {sample}");
        }
        // No call waited for its timeout; no latency is made up.
        let slowest = m["max_failed_ms"].as_f64().expect("failed calls' max");
        assert!(
            slowest < FAR_BELOW_TIMEOUT_MS,
            "{name}: {slowest} ms\n{context}"
        );
        for cell in ["p50_ms", "p95_ms", "p99_ms", "max_ms"] {
            assert!(m[cell].is_null(), "{name} {cell}: {}\n{context}", m[cell]);
        }
        println!(
            "http-500: {name} {} calls, all failed ({errors:?}), slowest {slowest:.1} ms",
            m["calls"]
        );
    }
    // The table names the 500 in each first error, and shows no latency.
    assert!(run.stdout.contains("HTTP 500"), "{context}");
    let p50 = run
        .stdout
        .lines()
        .find(|l| l.starts_with("latency p50"))
        .unwrap_or_else(|| panic!("no p50 row\n{context}"));
    assert!(!p50.contains("0.0"), "{p50}");
    assert_eq!(p50.matches('—').count(), 2, "{p50}");
    // Exit 1, with the reason on stderr in one line.
    assert_eq!(run.code, Some(1), "{context}");
    let stderr: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(stderr.len(), 1, "{context}");
    assert!(stderr[0].starts_with("mcp-pool: "), "{context}");
    assert!(stderr[0].contains("no call succeeded"), "{context}");
}

#[test]
fn a_tool_ignoring_delay_ms_gets_a_ceiling_from_the_measured_latency() {
    let rt = runtime();
    let server = ForgetfulServer::new(SessionLossForm::BadRequestWithoutId, 1000);
    let fixture = rt.block_on(server.spawn(0)).expect("the fixture serves");
    // `whoami` takes no arguments: the 300 ms asked for are not waited.
    let run = loadtest(
        &fixture.url(),
        &[
            "--mode",
            "pool,none",
            "--users",
            "2",
            "--duration",
            "2s",
            "--no-outage",
            "--tool",
            "whoami",
            "--args",
            r#"{"delay_ms": 300}"#,
        ],
        "whoami",
    );
    let context = run.context();
    assert_eq!(run.code, Some(0), "{context}");
    let basis = &run.report["ceiling_basis"];
    assert_eq!(basis["kind"], "measured", "{context}");
    let p50 = f(&basis["p50_ms"]);
    let fastest = ["pool", "none"]
        .iter()
        .map(|m| f(&run.mode(m)["p50_ms"]))
        .fold(f64::INFINITY, f64::min);
    assert_eq!(p50, fastest, "{context}");
    let ceiling = f(&run.report["ceiling"]);
    assert!((ceiling - 2.0 / (p50 / 1000.0)).abs() < 1e-6, "{context}");
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("ceiling: "))
        .unwrap_or_else(|| panic!("no ceiling line\n{context}"));
    assert!(line.contains("measured p50"), "{line}");
    assert!(line.contains("the server ignores delay_ms"), "{line}");
    assert!(!line.contains("300ms delay"), "{line}");
}
