//! Credentials never leave the process: everything the pool, the connector
//! and rmcp log at TRACE level is captured while sessions with credentials
//! are opened, used, failed and closed, and every error, key, builder,
//! connector and session met on the way is printed every way (`Display`,
//! `{:#}`, `Debug`, `{:#?}`, the whole `source()` chain); neither the logs
//! nor any of those texts may contain a credential, and the identity hash
//! shown is keyed per process.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pool::{AcquireError, RunError};
use mcp_pool_echo::{spawn_local_server, EchoConfig};
use mcp_pool_rmcp::{McpConnector, SessionKey};
use mcp_pool_tests::{FixtureServer, ForgetfulServer, NotMcp, SessionLossForm};
use rmcp::model::CallToolRequestParams;

#[path = "e2e/common.rs"]
#[allow(dead_code)]
mod common;

use common::{call_echo, connector, pool_with};

const TOKEN: &str = "tok-SECRET-4f1d9c";
const API_KEY: &str = "key-SECRET-77ab02";
const COOKIE: &str = "sid=SECRET-c00k1e";
const QUERY_SECRET: &str = "SECRET-q9e7";
/// What must never be shown: the secrets themselves, the query value, and
/// the password of a URL with user info (`user:pass@`).
const NEVER_SHOWN: [&str; 8] = [
    "SECRET",
    TOKEN,
    API_KEY,
    COOKIE,
    QUERY_SECRET,
    "user:pass",
    "pass@",
    "Bearer",
];

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

/// Every text shown for the values the scenario met.
#[derive(Default)]
struct Shown(Vec<(String, String)>);

impl Shown {
    /// `Display`, `{:#}`, `Debug`, `{:#?}`.
    fn value<T: std::fmt::Display + std::fmt::Debug>(&mut self, what: &str, value: &T) {
        for text in [
            format!("{value}"),
            format!("{value:#}"),
            format!("{value:?}"),
            format!("{value:#?}"),
        ] {
            self.0.push((what.to_owned(), text));
        }
    }

    /// `Debug` and `{:#?}` only.
    fn debug<T: std::fmt::Debug>(&mut self, what: &str, value: &T) {
        for text in [format!("{value:?}"), format!("{value:#?}")] {
            self.0.push((what.to_owned(), text));
        }
    }

    /// [`Shown::value`] of `error` and of every error in its source chain.
    fn error(&mut self, what: &str, error: &(dyn std::error::Error + 'static)) {
        let mut current = Some(error);
        let mut depth = 0;
        while let Some(e) = current {
            self.value(&format!("{what} (source {depth})"), &e);
            current = e.source();
            depth += 1;
        }
    }
}

// The only test of this binary: it owns the global subscriber, so every
// callsite of every crate is enabled under it from the start.
#[test]
fn credentials_never_appear_in_logs_errors_or_debug_output() {
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
    let (shown, unkeyed) = runtime.block_on(scenario());
    drop(runtime);
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.lines().count() > 20, "the scenario logged: {logs}");
    let mut leaks = Vec::new();
    for secret in NEVER_SHOWN {
        if logs.contains(secret) {
            leaks.push(format!("`{secret}` in the logs"));
        }
        for (what, text) in &shown.0 {
            if text.contains(secret) {
                leaks.push(format!("`{secret}` in {what}: {text}"));
            }
        }
    }
    assert!(
        shown.0.len() > 100,
        "the scenario showed {} texts",
        shown.0.len()
    );
    // The key does appear, as its short hashes, keyed for this process.
    assert!(logs.contains("identity "), "{logs}");
    for hash in unkeyed {
        if logs.contains(&hash) {
            leaks.push(format!("the unkeyed identity hash {hash} in the logs"));
        }
        for (what, text) in &shown.0 {
            if text.contains(&hash) {
                leaks.push(format!(
                    "the unkeyed identity hash {hash} in {what}: {text}"
                ));
            }
        }
    }
    leaks.dedup();
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// The first 8 hex digits of the identity's plain digest: what anyone could
/// compute offline from a guessed credential.
fn unkeyed(key: &SessionKey) -> String {
    key.identity().as_bytes()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn scenario() -> (Shown, Vec<String>) {
    let mut shown = Shown::default();
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let with_secrets = |url: String| {
        SessionKey::builder(format!("{url}?api_key={QUERY_SECRET}"))
            .bearer(TOKEN)
            .header("x-api-key", API_KEY)
            .header("cookie", COOKIE)
            .affinity("downstream-SECRET-session")
    };

    // A URL with user info is refused; neither the builder nor its error
    // shows the password or the query value.
    let userinfo = SessionKey::builder(format!(
        "http://user:pass@{}/mcp?api_key={QUERY_SECRET}",
        server.addr()
    ))
    .bearer(TOKEN)
    .header("x-api-key", API_KEY)
    .affinity("downstream-SECRET-session");
    shown.debug("a builder with user info", &userinfo);
    let refused = userinfo.build().unwrap_err();
    shown.value("the key error", &refused);
    shown.error("the key error", &refused);
    let builder = with_secrets(server.url());
    shown.debug("the builder", &builder);

    let connector = connector();
    shown.debug("the connector", &connector);
    let pool = pool_with(connector.clone(), 2);
    let key = builder.build().unwrap();
    shown.value("the key", &key);
    let identities = vec![unkeyed(&key)];
    pool.run(&key, async |s| {
        shown.debug("a session", s);
        call_echo(s, "hello", 0).await
    })
    .await
    .unwrap();
    let unknown = pool
        .run(&key, async |s| {
            s.call_tool(CallToolRequestParams::new("no-such-tool"))
                .await
        })
        .await
        .unwrap_err();
    shown.error("an unknown tool", &unknown);

    // A session held while the server dies, and calls after.
    let held = connector.open(&key).await.unwrap();
    let url = server.url();
    server.kill().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = pool
        .run(&key, async |s| call_echo(s, "after", 0).await)
        .await
        .unwrap_err();
    shown.error("a pooled call after the server died", &after);
    let direct = call_echo(&held, "held", 0).await.unwrap_err();
    shown.error("a held session's call after the server died", &direct);
    shown.debug("a dead session", &held);
    held.close().await;

    // Connects refused by a closed port, with the same credentials.
    let dead = with_secrets(url).build().unwrap();
    let refused = connector.open(&dead).await.unwrap_err();
    shown.error("a connect to a closed port", &refused);
    let acquire: AcquireError<_> = pool.acquire(&dead).await.unwrap_err();
    shown.error("an acquire on a closed port", &acquire);
    let run: RunError<_> = pool
        .run(&dead, async |s| call_echo(s, "never", 0).await)
        .await
        .unwrap_err();
    shown.error("a run on a closed port", &run);

    // Live servers that do not speak MCP: initialize errors.
    for kind in NotMcp::ALL {
        let fixture = FixtureServer::spawn(kind.router(), 0).await.unwrap();
        let key = with_secrets(fixture.url()).build().unwrap();
        let err = connector.open(&key).await.unwrap_err();
        shown.error(&format!("a connect to {kind}"), &err);
        let err = pool.acquire(&key).await.unwrap_err();
        shown.error(&format!("an acquire on {kind}"), &err);
    }

    // A server that forgets the session.
    let forgetful = ForgetfulServer::new(SessionLossForm::BadRequestWithoutId, 1);
    let fixture = forgetful.spawn(0).await.unwrap();
    let key = with_secrets(fixture.url()).build().unwrap();
    let session = McpConnector::open(&connector, &key).await.unwrap();
    call_echo(&session, "once", 0).await.unwrap();
    let lost = call_echo(&session, "twice", 0).await.unwrap_err();
    shown.error("a call on a forgotten session", &lost);
    shown.debug("a forgotten session", &session);
    session.close().await;

    pool.shutdown().await;
    (shown, identities)
}
