//! Faults: a server killed with SIGKILL (mid-call, idle), restarted on the
//! same port, and servers that do not speak MCP.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mcp_pool::{AcquireError, ConnectError, EvictReason, Outcome, RunError};
use mcp_pool_rmcp::{Error, McpConnector, SessionKey};
use mcp_pool_tests::{FixtureServer, NotMcp};

use crate::common::{call_echo, connector, pool, pool_with, wait_for, whoami, EchoProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_gives_a_typed_error_within_the_timeout() {
    let mut server = EchoProcess::start(0);
    let request_timeout = Duration::from_secs(5);
    let connector = McpConnector::builder()
        .request_timeout(request_timeout)
        .build()
        .unwrap();
    let pool = pool_with(connector, 2);
    let key = SessionKey::anonymous(server.url()).unwrap();
    pool.run(&key, async |s| call_echo(s, "warm", 0).await)
        .await
        .unwrap();

    let call = {
        let pool = pool.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = pool
                .run(&key, async |s| call_echo(s, "slow", 30_000).await)
                .await;
            (result, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let (result, took) = tokio::time::timeout(request_timeout * 2, call)
        .await
        .expect("the call never hangs")
        .unwrap();
    let Err(RunError::Call(err)) = result else {
        panic!("expected the call to fail, got {result:?}");
    };
    eprintln!("killed mid-call after {took:?}: {err}");
    assert!(took < request_timeout, "took {took:?}: {err}");
    assert_eq!(err.outcome(), Outcome::TransportError, "{err}");
    assert!(
        !err.is_safe_to_retry(),
        "an interrupted call is never replayed: {err}"
    );
    let metrics = wait_for(&pool, Duration::from_secs(2), |m| m.live == 0).await;
    assert_eq!(metrics.live, 0, "every session of the dead server is gone");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_of_a_killed_server_is_poisoned_before_the_next_acquire() {
    let mut server = EchoProcess::start(0);
    let port = server.addr.port();
    let pool = pool(2);
    let key = SessionKey::anonymous(server.url()).unwrap();
    // Two sessions, both idle afterwards.
    let (a, b) = tokio::join!(
        pool.run(&key, async |s| {
            call_echo(s, "a", 50).await?;
            whoami(s).await
        }),
        pool.run(&key, async |s| {
            call_echo(s, "b", 50).await?;
            whoami(s).await
        }),
    );
    let old: HashSet<String> = [a.unwrap(), b.unwrap()].into();
    assert_eq!(old.len(), 2);
    assert_eq!(pool.metrics().idle(), 2);
    // Let both sessions' event streams settle before the kill.
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.kill();
    // Nobody calls: the broken event streams alone take the sessions out.
    let metrics = wait_for(&pool, Duration::from_secs(3), |m| {
        m.stats.evictions(EvictReason::TransportClosed) == 2
    })
    .await;
    assert_eq!(
        metrics.stats.evictions(EvictReason::TransportClosed),
        2,
        "{:?}",
        metrics.stats
    );
    assert_eq!(metrics.idle(), 0);

    // Back on the same port: the next caller gets a fresh session at once.
    let _server = EchoProcess::start(port);
    let id = pool
        .run(&key, async |s| whoami(s).await)
        .await
        .expect("no caller sees a dead session");
    assert!(!old.contains(&id));
    let stats = pool.metrics().stats;
    assert_eq!(stats.evictions(EvictReason::TransportError), 0, "{stats:?}");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_on_the_same_port_every_call_succeeds() {
    let mut server = EchoProcess::start(0);
    let port = server.addr.port();
    let pool = pool(4);
    let key = SessionKey::anonymous(server.url()).unwrap();
    let burst = |tag: &'static str, n: usize| {
        let pool = pool.clone();
        let key = key.clone();
        async move {
            let mut tasks = Vec::new();
            for i in 0..n {
                let pool = pool.clone();
                let key = key.clone();
                tasks.push(tokio::spawn(async move {
                    let message = format!("{tag}{i}");
                    pool.run(&key, async |s| call_echo(s, &message, 2).await)
                        .await
                        .map(|got| assert_eq!(got, message))
                }));
            }
            let mut failures = Vec::new();
            for task in tasks {
                if let Err(e) = task.await.unwrap() {
                    failures.push(e.to_string());
                }
            }
            failures
        }
    };
    assert_eq!(burst("before", 16).await, Vec::<String>::new());

    server.kill();
    // Calls while the server is down fail fast with typed errors.
    let started = Instant::now();
    let down = burst("down", 4).await;
    assert_eq!(down.len(), 4);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    let _server = EchoProcess::start(port);
    let mut failures = Vec::new();
    for round in 0..5 {
        let _ = round;
        failures.extend(burst("after", 16).await);
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "zero failures once the server is back"
    );
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_do_not_speak_mcp_give_typed_errors_and_nothing_is_pooled() {
    let mut servers = Vec::new();
    for kind in NotMcp::ALL {
        servers.push((
            kind.name(),
            FixtureServer::spawn(kind.router(), 0).await.unwrap(),
        ));
    }
    // Accepts connections and never answers.
    let silent = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        format!("http://{addr}/mcp")
    };

    let connector = McpConnector::builder()
        .initialize_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let pool = pool_with(connector, 2);
    let urls = servers
        .iter()
        .map(|(name, server)| (*name, server.url()))
        .chain([("silent", silent)]);
    for (name, url) in urls {
        let key = SessionKey::anonymous(url.as_str()).unwrap();
        let started = Instant::now();
        let err = pool.acquire(&key).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "{name}");
        let (AcquireError::ConnectFailed { .. }, Some(ConnectError::Failed(cause))) =
            (&err, err.connect_failure())
        else {
            panic!("{name}: expected a connect failure, got {err}");
        };
        match (name, cause) {
            ("silent", Error::InitializeTimedOut { .. }) => {}
            (_, Error::Initialize { cause, .. }) => assert!(!cause.is_empty(), "{name}"),
            _ => panic!("{name}: unexpected {cause}"),
        }
        eprintln!("{name}: {err}");
    }
    let metrics = pool.metrics();
    assert_eq!(metrics.live, 0, "nothing was pooled");
    assert_eq!(metrics.stats.connected, 0);
    assert_eq!(metrics.stats.connect_failures, 5);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_a_typed_error() {
    for bad in [
        "localhost:8080/mcp",
        "ftp://127.0.0.1/mcp",
        "http://u:p@127.0.0.1/mcp",
    ] {
        let err = SessionKey::anonymous(bad).unwrap_err();
        assert!(
            matches!(err, mcp_pool_rmcp::KeyError::InvalidUrl { .. }),
            "{bad}: {err}"
        );
    }
    // A valid URL nobody listens on: a typed connect error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let key = SessionKey::anonymous(format!("http://{addr}/mcp")).unwrap();
    let err = connector().open(&key).await.unwrap_err();
    assert!(matches!(err, Error::Initialize { .. }), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}
