//! What a failed connect tells the pool: a live server's definite answer is
//! `Rejected` (every waiting caller learns it at once), an unreachable one
//! is `Failed` (callers wait for the next attempt); either way the error
//! names what the server said.

use std::time::Duration;

use mcp_pool::{ConnectFailure, Connector};
use mcp_pool_rmcp::{Error, McpConnector, SessionKey};
use mcp_pool_tests::{FixtureServer, NotMcp};

fn connector() -> McpConnector {
    McpConnector::builder()
        .connect_timeout(Duration::from_secs(2))
        .initialize_timeout(Duration::from_secs(2))
        .build()
        .expect("the connector builds")
}

/// What each fixture's error must name.
fn named(kind: NotMcp) -> &'static [&'static str] {
    match kind {
        NotMcp::Status500 => &["HTTP 500", "initialize"],
        NotMcp::Html => &["text/html"],
        NotMcp::BrokenJson => &["not", "JSON", "garbage"],
        NotMcp::BrokenSse => &["event stream", "not JSON-RPC", "{this is not json"],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_server_that_does_not_speak_mcp_is_rejected_and_named() {
    let connector = connector();
    for kind in NotMcp::ALL {
        let server = FixtureServer::spawn(kind.router(), 0).await.unwrap();
        let key = SessionKey::anonymous(server.url()).unwrap();
        let err = connector.connect(&key).await.unwrap_err();
        eprintln!("{kind}: {err}");
        assert_eq!(
            connector.classify_connect(&err),
            ConnectFailure::Rejected,
            "{kind}: {err}"
        );
        let Error::Initialize { cause, .. } = &err else {
            panic!("{kind}: expected an initialize error, got {err}");
        };
        for words in named(kind) {
            assert!(cause.contains(words), "{kind}: `{words}` not in: {cause}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_fails_and_says_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let connector = connector();
    let key = SessionKey::anonymous(format!("http://{addr}/mcp")).unwrap();
    let err = connector.connect(&key).await.unwrap_err();
    eprintln!("closed port: {err}");
    assert_eq!(
        connector.classify_connect(&err),
        ConnectFailure::Failed,
        "{err}"
    );
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_binary_serves_a_fixture_by_name() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_fixture-server"))
        .arg(NotMcp::Html.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the fixture-server binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let url = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    let url = url.trim().to_owned();
    let result = async {
        assert!(url.starts_with("http://127.0.0.1:"), "printed `{url}`");
        let key = SessionKey::anonymous(url.as_str()).unwrap();
        let connector = connector();
        let err = connector.connect(&key).await.unwrap_err();
        assert_eq!(
            connector.classify_connect(&err),
            ConnectFailure::Rejected,
            "{err}"
        );
    };
    result.await;
    let _ = child.kill();
    let _ = child.wait();
}
