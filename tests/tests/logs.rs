//! Credentials never reach the logs: everything the pool, the connector and
//! rmcp log at TRACE level is captured while sessions with credentials are
//! opened, used, failed and closed, and searched for the secrets.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pool_echo::{spawn_local_server, EchoConfig};
use mcp_pool_rmcp::SessionKey;
use rmcp::model::CallToolRequestParams;

#[path = "e2e/common.rs"]
#[allow(dead_code)]
mod common;

use common::{call_echo, pool};

const TOKEN: &str = "tok-SECRET-4f1d9c";
const API_KEY: &str = "key-SECRET-77ab02";
const COOKIE: &str = "sid=SECRET-c00k1e";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The only test of this binary: it owns the global subscriber, so every
// callsite of every crate is enabled under it from the start.
#[test]
fn credentials_never_appear_in_captured_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(scenario());
    drop(runtime);
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.lines().count() > 20, "the scenario logged: {logs}");
    for secret in ["SECRET", TOKEN, API_KEY, COOKIE] {
        assert!(!logs.contains(secret), "`{secret}` leaked into the logs");
    }
    // The key does appear, as its short hashes.
    assert!(logs.contains("identity "), "{logs}");
}

async fn scenario() {
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let pool = pool(2);
    let key = SessionKey::builder(server.url())
        .bearer(TOKEN)
        .header("x-api-key", API_KEY)
        .header("cookie", COOKIE)
        .affinity("downstream-SECRET-session")
        .build()
        .unwrap();
    pool.run(&key, async |s| call_echo(s, "hello", 0).await)
        .await
        .unwrap();
    let _ = pool
        .run(&key, async |s| {
            s.call_tool(CallToolRequestParams::new("no-such-tool"))
                .await
        })
        .await
        .unwrap_err();
    // The server dies under an idle session, and a call finds it down.
    let url = server.url();
    server.kill().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = pool
        .run(&key, async |s| call_echo(s, "after", 0).await)
        .await
        .unwrap_err();
    // A connect refused with the same credentials.
    let dead = SessionKey::builder(url).bearer(TOKEN).build().unwrap();
    let _ = pool.acquire(&dead).await.unwrap_err();
    pool.shutdown().await;
}
