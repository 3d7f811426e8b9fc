//! The `mcp-pool-echo` binary as a separate OS process, killed with SIGKILL.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{call, connect, connect_in, echo, is_transport_error, lifecycles, text, QUICK};
use mcp_pool_echo::Era;

/// Kills the child if the test fails before doing so itself.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on a free loopback port with `args` added, reads the
/// bound address, and returns the line after it (the era).
fn start_binary_with(args: &[&str]) -> (KillOnDrop, SocketAddr, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-pool-echo"))
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mcp-pool-echo");
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    // Blocking reads are bounded: the process either prints or exits (EOF).
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    let mut era = String::new();
    stdout.read_line(&mut era).unwrap();
    (child, addr, era.trim().to_owned())
}

fn start_binary() -> (KillOnDrop, SocketAddr) {
    let (child, addr, _) = start_binary_with(&[]);
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

#[tokio::test]
async fn serves_the_era_it_was_given_and_says_so() {
    let (_default, _, era) = start_binary_with(&[]);
    assert_eq!(era, Era::Legacy.summary());

    let (_child, addr, era) = start_binary_with(&["--era", "modern"]);
    assert_eq!(era, Era::Modern.summary());
    let url = format!("http://{addr}/mcp");
    let [(_, initialize), (_, discover), _] = lifecycles();
    let client = connect_in((), &url, discover, QUICK)
        .await
        .expect("a modern client connects");
    let result = call(&client, echo("modern", None), QUICK).await.unwrap();
    assert_eq!(text(&result), "modern");
    let refused = connect_in((), &url, initialize, QUICK).await.unwrap_err();
    assert!(refused.to_string().contains("-32022"), "{refused}");
}

#[test]
fn an_unknown_era_is_one_line_naming_the_eras() {
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-pool-echo"))
        .args(["--port", "0", "--era", "ancient"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown era 'ancient'"), "{stderr}");
    for name in Era::NAMES {
        assert!(stderr.contains(name), "{stderr}");
    }
}
