//! `mcp-pool gateway` over real sockets on 127.0.0.1: the binary between
//! MCP clients (rmcp's, and raw JSON-RPC over HTTP) and echo servers
//! (in-process, or the `serve-echo` binary when it must die by SIGKILL).
// rmcp marks logging deprecated (SEP-2577); the echo server still sends it.
#![allow(deprecated)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_pool_echo::{spawn_local_server, EchoConfig, Era};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};

/// A bound on every wait (hangs fail the test; no timing is asserted).
const BOUND: Duration = Duration::from_secs(20);

/// A child process killed with SIGKILL on drop, unless it exited.
struct Proc {
    child: Child,
    /// The address it printed (`listening on http://ADDR[/mcp]`).
    addr: SocketAddr,
}

impl Proc {
    /// Starts `mcp-pool ARGS` and waits for its `listening on` line.
    fn start(args: &[&str]) -> Proc {
        Proc::start_logging(args, None)
    }

    /// [`Proc::start`], with `RUST_LOG=trace` and stderr into `log` if given.
    fn start_logging(args: &[&str], log: Option<&std::path::Path>) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-pool"));
        command.args(args).stdout(Stdio::piped());
        match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("a log file");
                command.env("RUST_LOG", "trace").stderr(file);
            }
            // MCP_POOL_TEST_LOGS=1 shows the processes' logs.
            None if std::env::var_os("MCP_POOL_TEST_LOGS").is_some() => {
                command.stderr(Stdio::inherit());
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        let mut child = command.spawn().expect("the mcp-pool binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading so the child never blocks on a full pipe.
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let line = rx.recv_timeout(BOUND).unwrap_or_default();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .map(|rest| rest.trim_end_matches("/mcp"))
            .unwrap_or_else(|| panic!("mcp-pool {args:?} printed {line:?}"));
        Proc {
            addr: addr.parse().expect("an address"),
            child,
        }
    }

    /// A gateway on a free port serving `upstreams` (NAME, URL), with `extra`
    /// options.
    fn gateway(upstreams: &[(&str, &str)], extra: &[&str]) -> Proc {
        Proc::gateway_logging(upstreams, extra, None)
    }

    /// [`Proc::gateway`] logging at TRACE into `log`, if given.
    fn gateway_logging(
        upstreams: &[(&str, &str)],
        extra: &[&str],
        log: Option<&std::path::Path>,
    ) -> Proc {
        let mut args = vec![
            "gateway".to_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        for (name, url) in upstreams {
            args.push("--upstream".into());
            args.push(format!("{name}={url}"));
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::start_logging(&args, log)
    }

    /// `mcp-pool serve-echo` on `port` (0: any), retrying while a port just
    /// freed by a kill is not bindable yet.
    fn echo(port: u16) -> Proc {
        let deadline = Instant::now() + BOUND;
        loop {
            let port_arg = port.to_string();
            let attempt =
                std::panic::catch_unwind(|| Proc::start(&["serve-echo", "--port", &port_arg]));
            match attempt {
                Ok(proc) => return proc,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/mcp/{name}", self.addr)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client handler keeping every progress notification and log line.
#[derive(Clone, Debug, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().unwrap().push(params);
    }
}

type Client<H = ()> = RunningService<RoleClient, H>;

/// An rmcp client (legacy `initialize`) at `url` with `headers`.
async fn client<H: ClientHandler>(handler: H, url: &str, headers: &[(&str, &str)]) -> Client<H> {
    let headers: HashMap<_, _> = headers
        .iter()
        .map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap()))
        .collect();
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(headers);
    let transport = StreamableHttpClientTransport::from_config(config);
    tokio::time::timeout(BOUND, handler.serve(transport))
        .await
        .expect("connects in time")
        .expect("connects")
}

fn echo_params(message: &str, delay_ms: u64, steps: u32) -> CallToolRequestParams {
    let mut args = json!({ "message": message, "delay_ms": delay_ms });
    if steps > 0 {
        args["steps"] = steps.into();
    }
    CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap())
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

async fn call<H: ClientHandler>(
    client: &Client<H>,
    params: CallToolRequestParams,
) -> Result<CallToolResult, rmcp::ServiceError> {
    tokio::time::timeout(BOUND, client.call_tool(params))
        .await
        .expect("the call ends in time")
}

/// Every JSON-RPC message of a raw answer (a JSON body, or the `data:`
/// lines of an event stream).
fn messages(body: &str) -> Vec<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return vec![value];
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim()).ok())
        .collect()
}

/// POSTs a 2026-07-28 (sessionless) request with `_meta` and its headers;
/// returns the status and the messages.
async fn post_modern(
    url: &str,
    id: u64,
    method: &str,
    mut params: Value,
    headers: &[(&str, &str)],
) -> (u16, Vec<Value>) {
    let meta = params
        .as_object_mut()
        .unwrap()
        .entry("_meta")
        .or_insert_with(|| json!({}));
    meta["io.modelcontextprotocol/protocolVersion"] = "2026-07-28".into();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .body(body.to_string());
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        request = request.header("mcp-name", name);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(BOUND, async {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        (status, messages(&response.text().await.expect("a body")))
    })
    .await
    .expect("answered in time")
}

/// The `/metrics` page as (name, labels, value) rows.
async fn metrics(gateway: &Proc) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let page = reqwest::get(format!("http://{}/metrics", gateway.addr))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a page");
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("NAME VALUE");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            (name.to_owned(), labels, value.parse().expect("a number"))
        })
        .collect()
}

fn sum(
    rows: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    label: Option<(&str, &str)>,
) -> f64 {
    rows.iter()
        .filter(|(n, labels, _)| {
            n == name && label.is_none_or(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn keys_of(rows: &[(String, BTreeMap<String, String>, f64)], name: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|(n, _, _)| n == name)
        .filter_map(|(_, labels, _)| labels.get("key").cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_and_raw_clients_list_and_call_tools_through_the_gateway() {
    for era in [Era::Legacy, Era::Modern] {
        let upstream = spawn_local_server(
            "127.0.0.1:0".parse().unwrap(),
            &EchoConfig::default().with_era(era),
        )
        .await
        .unwrap();
        let gateway = Proc::gateway(&[("echo", &upstream.url())], &[]);
        let url = gateway.url("echo");

        // rmcp's client, legacy session downstream.
        let rmcp = client((), &url, &[]).await;
        let tools = rmcp.list_all_tools().await.expect("tools/list");
        let names: BTreeSet<_> = tools.iter().map(|t| t.name.to_string()).collect();
        assert!(
            names.contains("echo") && names.contains("fail"),
            "{era}: {names:?}"
        );
        let result = call(&rmcp, echo_params("hello", 0, 0))
            .await
            .expect("tools/call");
        assert_eq!(text(&result), "hello", "{era}");
        // A tool error passes through as a result.
        let failed = call(&rmcp, CallToolRequestParams::new("fail"))
            .await
            .expect("a result");
        assert_eq!(failed.is_error, Some(true), "{era}");
        assert!(text(&failed).contains("fail"), "{era}: {failed:?}");
        // The upstream's JSON-RPC error passes through with its code.
        match call(&rmcp, CallToolRequestParams::new("no-such-tool")).await {
            Err(rmcp::ServiceError::McpError(e)) => {
                assert_eq!(e.code.0, -32602, "{era}: {e:?}");
                assert!(!e.message.is_empty());
            }
            other => panic!("{era}: expected the upstream's error, got {other:?}"),
        }
        // The echo server has no resources: its refusal, never an empty one.
        let refused = rmcp
            .list_resources(None)
            .await
            .expect_err("no resources upstream");
        assert!(!refused.to_string().trim().is_empty());
        rmcp.cancel().await.unwrap();

        // Raw JSON-RPC over HTTP, 2026-07-28 sessionless downstream.
        let (status, listed) = post_modern(&url, 1, "tools/list", json!({}), &[]).await;
        assert_eq!(status, 200, "{era}: {listed:?}");
        let tools = listed.iter().find(|m| m["id"] == 1).expect("an answer");
        assert!(
            tools["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "echo"),
            "{era}: {tools}"
        );
        let (status, called) = post_modern(
            &url,
            2,
            "tools/call",
            json!({ "name": "echo", "arguments": { "message": "raw" } }),
            &[],
        )
        .await;
        assert_eq!(status, 200);
        let answer = called.iter().find(|m| m["id"] == 2).expect("an answer");
        assert_eq!(
            answer["result"]["content"][0]["text"], "raw",
            "{era}: {answer}"
        );
        // 2026-07-28 wants `resultType`, which a legacy upstream never sends.
        assert_eq!(
            answer["result"]["resultType"], "complete",
            "{era}: {answer}"
        );

        // An unknown upstream is an HTTP 404.
        let (status, _) = post_modern(&gateway.url("nope"), 3, "tools/list", json!({}), &[]).await;
        assert_eq!(status, 404);
    }
}

/// Sends a stepped echo with rmcp's own progress token; returns the token
/// and the pending answer.
async fn start_stepped(
    client: &Client<Recorder>,
    message: &str,
) -> (
    ProgressToken,
    impl std::future::Future<Output = Result<ServerResult, rmcp::ServiceError>>,
) {
    let request =
        ClientRequest::CallToolRequest(CallToolRequest::new(echo_params(message, 150, 3)));
    let handle = client
        .send_request_with_option(request, PeerRequestOptions::with_timeout(BOUND))
        .await
        .expect("sent");
    (handle.progress_token.clone(), handle.await_response())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_gets_the_progress_of_its_own_call_only() {
    // Modern: every caller shares the one upstream session pool of the
    // identity; legacy: each downstream session has upstream sessions of its
    // own.
    for era in [Era::Modern, Era::Legacy] {
        let upstream = spawn_local_server(
            "127.0.0.1:0".parse().unwrap(),
            &EchoConfig::default().with_era(era),
        )
        .await
        .unwrap();
        let gateway = Proc::gateway(&[("echo", &upstream.url())], &[]);
        let url = gateway.url("echo");
        let mut clients = Vec::new();
        for _ in 0..3 {
            let recorder = Recorder::default();
            clients.push((
                recorder.clone(),
                client(recorder, &url, &[("x-tenant-id", "t1")]).await,
            ));
        }
        let mut pending = Vec::new();
        for (i, (_, c)) in clients.iter().enumerate() {
            pending.push(start_stepped(c, &format!("caller-{i}")).await);
        }
        // A raw caller without a progress token, sharing the upstream.
        let (status, raw) = post_modern(
            &url,
            9,
            "tools/call",
            json!({
                "name": "echo",
                "arguments": { "message": "raw", "delay_ms": 90, "steps": 3 },
                "_meta": { "io.modelcontextprotocol/logLevel": "info" },
            }),
            &[("x-tenant-id", "t1")],
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            raw.iter().all(|m| m["method"] != "notifications/progress"),
            "{era}: progress without a token: {raw:?}"
        );
        let raw_logs: Vec<_> = raw
            .iter()
            .filter(|m| m["method"] == "notifications/message")
            .collect();
        assert!(
            raw_logs
                .iter()
                .all(|m| m["params"]["data"]["message"] == "raw"),
            "{era}: the raw caller got others' log lines: {raw:?}"
        );
        if era == Era::Modern {
            assert_eq!(raw_logs.len(), 3, "{era}: {raw:?}");
        }
        // Without the `_meta` opt-in, a 2026-07-28 request gets no log lines.
        let (_, quiet) = post_modern(
            &url,
            10,
            "tools/call",
            json!({ "name": "echo", "arguments": { "message": "quiet", "delay_ms": 30, "steps": 3 } }),
            &[("x-tenant-id", "t1")],
        )
        .await;
        assert!(
            quiet.iter().all(|m| m["method"] != "notifications/message"),
            "{era}: log lines without opt-in: {quiet:?}"
        );
        assert!(
            quiet
                .iter()
                .any(|m| m["id"] == 10 && m["result"].is_object()),
            "{era}: {quiet:?}"
        );
        let mut tokens = Vec::new();
        for (token, answer) in pending {
            answer.await.expect("the stepped call answers");
            tokens.push(token);
        }
        // A legacy upstream sends its log lines on the session's event
        // stream, not the call's: a line read after the call's result can
        // no longer be told to be the call's, and is not relayed. So every
        // line is checked to be the caller's own, and all three arrive from
        // a 2026-07-28 upstream, which sends them on the call's stream (the
        // gateway's to a legacy downstream session may trail the result:
        // wait for them, bounded).
        let expected_logs = if era == Era::Modern { 3 } else { 0 };
        let deadline = Instant::now() + BOUND;
        while clients
            .iter()
            .any(|(r, _)| r.logs.lock().unwrap().len() < expected_logs)
        {
            assert!(Instant::now() < deadline, "{era}: log lines missing");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for (i, (recorder, _)) in clients.iter().enumerate() {
            let progress = recorder.progress.lock().unwrap().clone();
            let own: Vec<_> = progress
                .iter()
                .map(|p| (p.progress_token.clone(), p.progress, p.message.clone()))
                .collect();
            let expected: Vec<_> = (1..=3)
                .map(|step| {
                    (
                        tokens[i].clone(),
                        f64::from(step),
                        Some(format!("caller-{i}: step {step} of 3")),
                    )
                })
                .collect();
            assert_eq!(
                own, expected,
                "{era}: caller {i} gets its own progress, in order, and nothing else"
            );
            let logs = recorder.logs.lock().unwrap().clone();
            assert!(
                logs.iter()
                    .all(|l| l.data["message"] == format!("caller-{i}")),
                "{era}: caller {i} got others' log lines: {logs:?}"
            );
            assert!(
                (expected_logs..=3).contains(&logs.len()),
                "{era}: caller {i}: {logs:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_never_share_an_upstream_session_and_metrics_count_each_key() {
    let upstream = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    // Per identity: downstream sessions of one identity may share. Logs at
    // TRACE, to show they carry no credential.
    let log =
        std::env::temp_dir().join(format!("mcp-pool-gateway-test-{}.log", std::process::id()));
    let mut gateway = Proc::gateway_logging(
        &[("echo", &upstream.url())],
        &["--affinity", "per-identity"],
        Some(&log),
    );
    let url = gateway.url("echo");
    let identities = ["Bearer alice-secret", "Bearer bob-secret"];
    let mut clients = Vec::new();
    for (i, token) in identities.iter().enumerate() {
        for _ in 0..2 {
            clients.push((i, client((), &url, &[("authorization", token)]).await));
        }
    }
    let mut calls = Vec::new();
    for round in 0..3 {
        for (n, (i, c)) in clients.iter().enumerate() {
            let message = format!("id{i}-c{n}-r{round}");
            calls.push(async move {
                call(c, echo_params(&message, 20, 0))
                    .await
                    .expect("the call succeeds");
                (*i, message)
            });
        }
    }
    let done = futures_util::future::join_all(calls).await;
    let mut sessions: [BTreeSet<String>; 2] = Default::default();
    for (i, message) in &done {
        for session in upstream.registry().sessions_for_message(message) {
            sessions[*i]
                .insert(session.expect("a legacy stateful upstream serves calls in sessions"));
        }
    }
    assert!(!sessions[0].is_empty() && !sessions[1].is_empty());
    assert!(
        sessions[0].is_disjoint(&sessions[1]),
        "identities shared upstream sessions: {sessions:?}"
    );

    // Per key: the pool's gauges and the gateway's counters, labelled by
    // key hash and never by the credentials.
    let rows = metrics(&gateway).await;
    let page = format!("{rows:?}");
    assert!(!page.contains("secret"), "credentials on /metrics");
    let gauge_keys = keys_of(&rows, "mcp_pool_key_sessions");
    assert_eq!(gauge_keys.len(), 2, "one key per identity: {gauge_keys:?}");
    assert_eq!(keys_of(&rows, "mcp_gateway_key_connects_total"), gauge_keys);
    let connected = sum(
        &rows,
        "mcp_gateway_key_connects_total",
        Some(("result", "connected")),
    );
    assert_eq!(connected, sum(&rows, "mcp_pool_connected_total", None));
    assert_eq!(
        connected as usize,
        upstream.registry().created_count(),
        "every upstream session is one counted connect"
    );
    let live = sum(&rows, "mcp_pool_key_sessions", Some(("state", "idle")));
    assert_eq!(live, connected, "every connected session is idle again");
    assert_eq!(sum(&rows, "mcp_gateway_key_closes_total", None), 0.0);
    assert!(rows.iter().any(|(n, l, _)| n == "mcp_pool_key_sessions"
        && l.get("upstream").map(String::as_str) == Some("echo")));
    for (_, c) in clients {
        c.cancel().await.unwrap();
    }
    gateway.terminate();
    let gateway = tokio::task::spawn_blocking(move || {
        assert!(gateway.wait_exit().success());
        gateway
    })
    .await
    .unwrap();
    drop(gateway);
    let logs = std::fs::read_to_string(&log).expect("the log file");
    let _ = std::fs::remove_file(&log);
    assert!(logs.lines().count() > 10, "TRACE logs were written: {logs}");
    assert!(!logs.contains("secret"), "a credential in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sigkill_and_restart_gives_no_errors_once_it_is_back() {
    let mut upstream = Proc::echo(0);
    let port = upstream.addr.port();
    let gateway = Proc::gateway(
        &[("echo", &format!("http://{}/mcp", upstream.addr))],
        &["--call-timeout", "5s"],
    );
    let url = gateway.url("echo");
    let mut clients = Vec::new();
    for tenant in ["t1", "t2"] {
        for _ in 0..2 {
            clients.push(client((), &url, &[("x-tenant-id", tenant)]).await);
        }
    }
    let round = async |label: &str| {
        let calls = clients.iter().enumerate().map(|(n, c)| {
            let message = format!("{label}-{n}");
            async move { call(c, echo_params(&message, 10, 0)).await }
        });
        futures_util::future::join_all(calls).await
    };
    for result in round("before").await {
        result.expect("calls succeed before the kill");
    }

    upstream.kill();
    // While the upstream is down, a failure says what happened.
    let down = call(&clients[0], echo_params("down", 0, 0)).await;
    match down {
        Err(rmcp::ServiceError::McpError(e)) => {
            assert!(e.message.contains("upstream `echo`"), "{e:?}");
            assert!(e.message.len() > "upstream `echo`".len() + 10, "{e:?}");
        }
        other => panic!("expected an error naming the upstream, got {other:?}"),
    }

    let _restarted = Proc::echo(port);
    // From the moment it listens again, no call through the gateway fails:
    // every stale session is found dead and every refused call sent again.
    let mut errors = Vec::new();
    for r in 0..5 {
        for result in round(&format!("after-{r}")).await {
            if let Err(e) = result {
                errors.push(e.to_string());
            }
        }
    }
    assert_eq!(errors, Vec::<String>::new(), "errors after the restart");

    let rows = metrics(&gateway).await;
    let connected = sum(
        &rows,
        "mcp_gateway_key_connects_total",
        Some(("result", "connected")),
    );
    assert_eq!(connected, sum(&rows, "mcp_pool_connected_total", None));
    let started = sum(
        &rows,
        "mcp_gateway_key_connects_total",
        Some(("result", "started")),
    );
    assert_eq!(started, sum(&rows, "mcp_pool_connects_total", None));
    let evicted = sum(&rows, "mcp_pool_evictions_total", None);
    assert!(evicted >= 2.0, "the dead sessions were evicted: {evicted}");
    assert_eq!(
        sum(&rows, "mcp_gateway_key_closes_total", None),
        sum(&rows, "mcp_pool_closes_total", None),
        "per-key closes add up to the pool's"
    );
    // A legacy stateful upstream under per-session affinity: one key per
    // downstream session.
    assert_eq!(keys_of(&rows, "mcp_pool_key_sessions").len(), clients.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_calls_in_flight_finish_then_closes_upstream_sessions() {
    let upstream = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let mut gateway = Proc::gateway(&[("echo", &upstream.url())], &["--grace", "10s"]);
    let url = gateway.url("echo");
    let c = client((), &url, &[]).await;
    let slow = tokio::spawn(async move {
        let result = call(&c, echo_params("slow", 1500, 0)).await;
        (c, result)
    });
    // Wait (bounded) until the upstream runs the call.
    let deadline = Instant::now() + BOUND;
    while upstream.registry().calls_for_message("slow").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let created = upstream.registry().created_sessions();
    gateway.terminate();
    let (c, result) = slow.await.unwrap();
    let result = result.expect("the call in flight completes");
    assert_eq!(text(&result), "slow");
    let status = tokio::task::spawn_blocking(move || {
        let status = gateway.wait_exit();
        (gateway, status)
    })
    .await
    .unwrap()
    .1;
    assert!(status.success(), "the gateway exits 0: {status:?}");
    // The upstream session it used was ended with DELETE.
    let deleted = upstream.registry().deleted_sessions();
    assert!(
        created.iter().all(|s| deleted.contains(s)),
        "sessions {created:?}, deleted {deleted:?}"
    );
    drop(c);
}
