//! `mcp-pool loadtest --via-gateway`: the reported topology end to end.
//! Users call an embedded gateway, the gateway calls the echo server over
//! sessions taken the mode's way, the echo server is killed and restarted:
//! through mcp-pool the gateway has no error once the server is back,
//! through the naive pool it fails to the end, and its `/metrics` page,
//! read at the end of each mode, counts what the table counts.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn mcp_pool() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-pool"));
    for (name, _) in std::env::vars() {
        if name.starts_with("MCP_POOL_") {
            command.env_remove(name);
        }
    }
    command
}

fn mode<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["modes"]
        .as_array()
        .expect("modes")
        .iter()
        .find(|m| m["mode"] == name)
        .unwrap_or_else(|| panic!("no mode {name}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn through_the_gateway_the_pool_recovers_and_the_naive_pool_cascades() {
    let json = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("via-gateway-{}.json", std::process::id()));
    let output = mcp_pool()
        .args([
            "loadtest",
            "--via-gateway",
            "--duration",
            "5s",
            "--users",
            "4",
            "--delay",
            "100ms",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("mcp-pool runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{stdout}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON file")).expect("valid JSON");
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["verdict"]["passed"], true, "{stdout}");

    let pool = mode(&report, "pool");
    let naive = mode(&report, "naive");
    let none = mode(&report, "none");
    for m in [pool, naive, none] {
        assert!(
            n(&m["ok"]) > 0,
            "{}: no call got through\n{stdout}",
            m["mode"]
        );
    }

    // mcp-pool behind the gateway: no error once the backend is back.
    assert_eq!(pool["errors_after_recovery"], 0, "{stdout}");
    // The naive pool behind the gateway: the cascade, to the end of the run.
    assert!(n(&naive["errors_after_recovery"]) > 0, "{stdout}");
    let last_second = &naive["timeline"][4];
    assert_eq!(last_second["ok"], 0, "naive recovered: {last_second}");
    // The naive failures are the upstream's, relayed by the gateway with
    // their kind: transport or session loss, never the gateway's own.
    let causes = naive["errors"].as_object().expect("errors by cause");
    assert!(
        causes.keys().all(|c| c != "application"),
        "the gateway's relayed failures were counted as tool errors: {causes:?}"
    );
    // A session per call recovers too.
    assert_eq!(none["errors_after_recovery"], 0, "{stdout}");

    // The gateway's /metrics counted the connects the table counts, per key
    // and summed, and no more closes than the pool evicted.
    let counters = &pool["counters"];
    assert!(n(&counters["connects"]) > 0, "{counters}");
    assert_eq!(
        counters["metrics_connects"], counters["connects"],
        "{counters}"
    );
    assert!(
        n(&counters["metrics_closes"]) <= n(&counters["evictions"]),
        "{counters}"
    );
    assert!(
        n(&counters["evictions"]) > 0,
        "the outage evicted nothing: {counters}"
    );
    let counters = &naive["counters"];
    assert_eq!(
        counters["metrics_connects"], counters["connects"],
        "{counters}"
    );
    assert_eq!(
        counters["metrics_closes"], counters["evictions"],
        "{counters}"
    );

    // The eras are the upstream sessions', as the gateway found them.
    let eras = pool["eras"].as_array().expect("eras");
    assert!(
        eras.iter().any(|e| e["era"] == "legacy-stateful"),
        "{eras:?}"
    );
    assert!(
        stdout.contains("pool : no errors after the backend was back"),
        "{stdout}"
    );
}
