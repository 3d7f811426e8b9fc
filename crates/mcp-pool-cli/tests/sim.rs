//! `mcp-pool sim`: a sweep exits 0 with its table, the naive baseline's
//! cascade shows in it, and a replay in a new process prints the same event
//! log, byte for byte.

use std::process::Command;

fn sim(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-pool"))
        .arg("sim")
        .args(args)
        .env_remove("MCP_POOL_SIM_SEEDS")
        .env_remove("MCP_POOL_SIM_SCENARIO")
        .env_remove("MCP_POOL_SIM_SEED")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    (output.status.success(), stdout)
}

#[test]
fn a_sweep_prints_the_table_with_the_naive_cascade() {
    // Seed 0 meets a legacy stateful backend, seed 1 a modern one.
    let (ok, out) = sim(&["--scenario", "crash-bounce", "--seeds", "2"]);
    assert!(ok, "{out}");
    assert!(out.contains("| crash-bounce | pool | modern |"), "{out}");
    let row = |subject: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("| crash-bounce | {subject} | legacy |")))
            .unwrap_or_else(|| panic!("no {subject} legacy row in:\n{out}"))
            .split('|')
            .map(str::trim)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // Columns: "", scenario, pool, era, seeds, calls, failures, after recovery, ...
    let after_recovery = |r: &[String]| r[7].parse::<u64>().expect("a count");
    assert_eq!(after_recovery(&row("pool")), 0, "{out}");
    assert!(after_recovery(&row("naive")) > 0, "{out}");
}

#[test]
fn a_replay_prints_the_same_event_log() {
    let args = ["--scenario", "cancel", "--seed", "4", "--log"];
    let (ok, first) = sim(&args);
    assert!(ok, "{first}");
    let (_, second) = sim(&args);
    assert!(first.lines().count() > 100, "{first}");
    assert_eq!(first, second);
}

#[test]
fn an_era_swap_replays_with_its_eras() {
    let args = ["--scenario", "era-swap", "--seed", "1", "--log"];
    let (ok, first) = sim(&args);
    assert!(ok, "{first}");
    assert!(
        first.contains("era-swap seed 1 (pool, modern → legacy): every oracle holds"),
        "{first}"
    );
    assert!(
        first.contains("fault swap backend for a legacy one"),
        "{first}"
    );
    assert!(
        first.contains("| era-swap | pool | modern → legacy | 1 |"),
        "{first}"
    );
    let (_, second) = sim(&args);
    assert_eq!(first, second);
}

#[test]
fn bad_options_are_one_line_and_exit_2() {
    for (args, expected) in [
        (["sim", "--scenario", "meteor"], "unknown scenario `meteor`"),
        (["sim", "--seeds", "0"], "'--seeds <SEEDS>'"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_mcp-pool"))
            .args(args)
            .env_remove("MCP_POOL_SIM_SEEDS")
            .output()
            .expect("the binary runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}
