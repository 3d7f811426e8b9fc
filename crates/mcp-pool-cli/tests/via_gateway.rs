//! `mcp-pool loadtest --via-gateway`: the reported topology end to end.
//! Users call an embedded gateway, the gateway calls the echo server over
//! sessions taken the mode's way, the echo server is killed and restarted:
//! through mcp-pool the gateway has no error once the server is back,
//! through the naive pool it fails to the end, and its `/metrics` page,
//! read at the end of each mode, counts what the table counts.

mod common;

use std::time::Duration;

use common::n;

#[test]
fn through_the_gateway_the_pool_recovers_and_the_naive_pool_cascades() {
    let args = [
        "--via-gateway",
        "--duration",
        "5s",
        "--users",
        "4",
        "--delay",
        "100ms",
    ];
    let run = common::loadtest(&args, "via-gateway", Duration::from_secs(120));
    let (stdout, report) = (run.context(), &run.report);
    assert_eq!(run.code, Some(0), "{stdout}");
    assert_eq!(report["verdict"]["passed"], true, "{stdout}");

    let pool = run.mode("pool");
    let naive = run.mode("naive");
    let none = run.mode("none");
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
    // Each says what happened upstream, in the gateway's words.
    let samples = naive["error_samples"].as_object().expect("error samples");
    assert!(
        samples.values().all(|m| m
            .as_str()
            .is_some_and(|m| m.starts_with("via the gateway: upstream `backend`"))),
        "{samples:?}"
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
