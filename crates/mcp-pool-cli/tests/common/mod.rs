//! What the tests of the `mcp-pool` binary share: the command with every
//! `MCP_POOL_*` setting removed, a loadtest run judged from its `--json`
//! file, and readers of that report.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `mcp-pool` binary, its settings from the arguments only.
pub fn mcp_pool() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-pool"));
    for (name, _) in std::env::vars() {
        if name.starts_with("MCP_POOL_") {
            command.env_remove(name);
        }
    }
    command
}

/// A finished loadtest: its exit code, its output and its JSON report.
pub struct Run {
    /// The exit code (`None` if it was killed).
    pub code: Option<i32>,
    /// What it printed.
    pub stdout: String,
    /// Its logs.
    pub stderr: String,
    /// The `--json` report.
    pub report: Value,
}

impl Run {
    /// The report of mode `name`.
    pub fn mode(&self, name: &str) -> &Value {
        mode(&self.report, name)
    }

    /// Everything it printed, for an assertion's message.
    pub fn context(&self) -> String {
        format!(
            "exit code {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `mcp-pool loadtest ARGS --json FILE`, killed if it has not finished
/// by `give_up`, and reads its JSON report (`name` names the file).
pub fn loadtest(args: &[&str], name: &str, give_up: Duration) -> Run {
    let json = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let mut child = mcp_pool()
        .arg("loadtest")
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcp-pool runs");
    let give_up = Instant::now() + give_up;
    while child.try_wait().expect("waits").is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("its output");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let report = match std::fs::read(&json) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("valid JSON"),
        Err(e) => panic!("no JSON report ({e})\n{stdout}\n{stderr}"),
    };
    let _ = std::fs::remove_file(&json);
    Run {
        code: status.code(),
        stdout,
        stderr,
        report,
    }
}

/// The report of mode `name` in a loadtest report.
pub fn mode<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["modes"]
        .as_array()
        .expect("modes")
        .iter()
        .find(|m| m["mode"] == name)
        .unwrap_or_else(|| panic!("no mode {name} in {report}"))
}

/// A number of the report.
pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A count of the report.
pub fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}
