//! The `mcp-pool` binary end to end: a short loadtest with the default
//! outage, judged from its `--json` file; usage errors; the echo server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{f, mcp_pool};

#[test]
fn a_short_loadtest_shows_the_three_modes_apart() {
    let args = ["--duration", "5s", "--users", "4", "--delay", "100ms"];
    let run = common::loadtest(&args, "loadtest", Duration::from_secs(120));
    let (stdout, report) = (run.context(), &run.report);
    assert_eq!(run.code, Some(0), "{stdout}");
    let ceiling = f(&report["ceiling"]);
    assert_eq!(ceiling, 40.0, "4 users / 100 ms");

    for m in report["modes"].as_array().unwrap() {
        // The outage (at 2.5 s, 1.25 s long by default for a 5 s run) was
        // injected into each mode, and the timeline covers the run.
        let down = f(&m["outage"]["down_at_s"]);
        let back = f(&m["outage"]["back_at_s"]);
        assert!((2.4..2.7).contains(&down), "{}: down at {down}", m["mode"]);
        assert!(
            (1.2..1.6).contains(&(back - down)),
            "{}: back at {back}",
            m["mode"]
        );
        assert!(m["timeline"].as_array().unwrap().len() >= 5);
    }

    let pool = run.mode("pool");
    let naive = run.mode("naive");
    let none = run.mode("none");

    // pool: no error once the backend is back, and full speed outside the
    // outage: within 10% of the ceiling at the calls' own pace (a debug
    // build adds a few milliseconds to each 100 ms call, which the nominal
    // ceiling does not count), and never far from the nominal ceiling.
    assert_eq!(pool["errors_after_recovery"], 0, "{stdout}");
    let outside = f(&pool["throughput_outside_outage"]);
    let paced = (4.0 / (f(&pool["p50_ms"]) / 1000.0)).min(ceiling);
    assert!(
        outside >= 0.9 * paced,
        "pool: {outside:.1} calls/s outside the outage, {paced:.1} at its pace\n{stdout}"
    );
    assert!(outside >= 0.8 * ceiling, "{stdout}");

    // naive: the dead sessions went back into the pool, so errors go on
    // after the backend is back, to the end of the run.
    assert!(f(&naive["errors_after_recovery"]) > 0.0, "{stdout}");
    let last_second = &naive["timeline"][4];
    assert_eq!(last_second["ok"], 0, "naive recovered: {last_second}");
    assert!(f(&last_second["calls"]) > 0.0);

    // none: recovers too, but pays a session per call.
    assert_eq!(none["errors_after_recovery"], 0, "{stdout}");
    assert!(
        f(&none["p50_ms"]) > f(&pool["p50_ms"]),
        "none p50 {} vs pool {}\n{stdout}",
        none["p50_ms"],
        pool["p50_ms"]
    );

    // The run passed, and the report says why it exits 0.
    assert_eq!(report["verdict"]["passed"], true, "{stdout}");
    assert_eq!(report["ceiling_basis"]["kind"], "delay", "{stdout}");

    // The table says the same.
    assert!(run.stdout.contains("errors after the backend was back"));
    assert!(run
        .stdout
        .contains("pool : no errors after the backend was back"));
}

#[test]
fn a_bad_value_is_one_line_and_exit_code_2() {
    for args in [
        &["loadtest", "--duration", "soon"][..],
        &["loadtest", "--users", "0"],
        &["loadtest", "--jitter", "1s"],
        &["loadtest", "--bogus"],
        &["serve-echo", "--host", "10.1.2.3"],
    ] {
        let output = mcp_pool().args(args).output().expect("mcp-pool runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("mcp-pool: "), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let output = mcp_pool()
        .args(["loadtest"])
        .env("MCP_POOL_DURATION", "0.5s")
        .output()
        .expect("mcp-pool runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--duration"));
}

#[test]
fn serve_echo_prints_where_it_listens() {
    let mut child = mcp_pool()
        .args(["serve-echo", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mcp-pool runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("a line");
    let _ = child.kill();
    let _ = child.wait();
    let url = line.trim().strip_prefix("listening on ").expect(&line);
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    let port: u16 = url["http://127.0.0.1:".len()..url.len() - "/mcp".len()]
        .parse()
        .unwrap();
    assert_ne!(port, 0);
}
