//! The `mcp-pool-echo` binary as a separate OS process, killed with SIGKILL.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{call, connect, echo, is_transport_error, text, QUICK};

/// Kills the child if the test fails before doing so itself.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on a free loopback port and reads the bound address.
fn start_binary() -> (KillOnDrop, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-pool-echo"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mcp-pool-echo");
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    // A blocking read is bounded: the process either prints or exits (EOF).
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

#[tokio::test]
async fn sigkill_makes_the_next_call_fail_fast() {
    let (mut child, addr) = start_binary();
    assert!(addr.ip().is_loopback());
    let client = connect(&format!("http://{addr}/mcp")).await;
    let result = call(&client, echo("over a process boundary", Some(10)), QUICK)
        .await
        .unwrap();
    assert_eq!(text(&result), "over a process boundary");

    child.0.kill().unwrap(); // SIGKILL on unix
    child.0.wait().unwrap();

    let started = Instant::now();
    let err = call(&client, echo("after", None), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(is_transport_error(&err), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn refuses_a_remote_host_without_allow_remote() {
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-pool-echo"))
        .args(["--port", "0", "--host", "0.0.0.0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}
