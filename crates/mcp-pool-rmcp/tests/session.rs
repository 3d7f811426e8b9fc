//! One session against the in-process echo server: calls, health, close.

use std::time::Duration;

use mcp_pool::Outcome;
use mcp_pool_echo::{spawn_local_server, EchoConfig, EchoServerHandle};
use mcp_pool_rmcp::{Error, McpConnector, McpSession, SessionKey};
use rmcp::model::CallToolRequestParams;
use rmcp::ServiceError;

fn echo(message: &str) -> CallToolRequestParams {
    let args = rmcp::serde_json::json!({ "message": message });
    CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap())
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    result.content[0].as_text().unwrap().text.clone()
}

/// An echo server on loopback and a session `connector` opened on it.
async fn session_on_echo(connector: &McpConnector) -> (EchoServerHandle, McpSession) {
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let key = SessionKey::anonymous(server.url()).unwrap();
    let session = connector.open(&key).await.unwrap();
    (server, session)
}

/// `echo` of `message`, answered after `delay_ms`.
fn delayed_echo(message: &str, delay_ms: u64) -> CallToolRequestParams {
    let args = rmcp::serde_json::json!({ "message": message, "delay_ms": delay_ms });
    CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap())
}

/// A connector whose requests may run 10 s, longer than any call here.
fn patient_connector() -> McpConnector {
    McpConnector::builder()
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Serves `router` on a loopback port until the test's runtime stops;
/// returns its MCP URL.
async fn serve_on_loopback(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// `response` with its body cut `after` it starts, as a proxy resetting
/// the connection does: the client reads a broken body.
fn cut_after(response: axum::response::Response, after: Duration) -> axum::response::Response {
    use futures_util::StreamExt;

    let (parts, body) = response.into_parts();
    let body = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .take_until(tokio::time::sleep(after))
        .chain(futures_util::stream::once(async {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the proxy cut the stream",
            ))
        }));
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(body))
}

/// The POST body of `request`, read whole, and the request rebuilt to
/// carry it on.
async fn read_body(request: axum::extract::Request) -> (axum::body::Bytes, axum::extract::Request) {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
    (bytes, request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_calls_tools_and_knows_its_upstream_id() {
    let connector = McpConnector::new().unwrap();
    let (server, session) = session_on_echo(&connector).await;

    let result = session.call_tool(echo("hello")).await.unwrap();
    assert_eq!(text(&result), "hello");
    let whoami = session
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    assert_eq!(
        session.upstream_session_id().as_deref(),
        Some(text(&whoami).as_str())
    );
    session.ping().await.unwrap();
    connector.check_session(&session).await.unwrap();
    assert!(!session.is_closed());

    // A tool-level error and an unknown tool are application errors.
    let failed = session
        .call_tool(CallToolRequestParams::new("fail"))
        .await
        .unwrap_err();
    assert!(matches!(failed, Error::Tool { .. }), "{failed}");
    assert_eq!(failed.outcome(), Outcome::ApplicationError);
    let unknown = session
        .call_tool(CallToolRequestParams::new("no-such-tool"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            unknown,
            Error::Service {
                source: ServiceError::McpError(_),
                ..
            }
        ),
        "{unknown}"
    );
    assert_eq!(unknown.outcome(), Outcome::ApplicationError);
    assert!(!session.is_closed());

    // Closing sends DELETE.
    let id = session.upstream_session_id().unwrap().to_string();
    let health = session.health().clone();
    session.close().await;
    assert!(health.is_dead());
    assert!(
        server.registry().deleted_sessions().contains(&id),
        "DELETE reached the server"
    );
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_kills_the_idle_session_at_once() {
    let connector = McpConnector::new().unwrap();
    let (server, session) = session_on_echo(&connector).await;
    session.call_tool(echo("warm")).await.unwrap();
    // Give the standalone event stream time to open.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!session.is_closed());

    server.kill().await;
    tokio::time::timeout(Duration::from_secs(2), session.health().dead())
        .await
        .expect("the health cell dies when the event stream breaks");
    assert!(session.is_closed());
    let reason = session.closed_reason().unwrap();
    assert!(!reason.is_empty());

    let err = session.call_tool(echo("late")).await.unwrap_err();
    assert!(
        matches!(err, Error::TransportClosed { sent: false, .. }),
        "{err}"
    );
    assert!(err.is_safe_to_retry());
    let check = connector.check_session(&session).await.unwrap_err();
    assert_eq!(check.outcome(), Outcome::TransportError);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_the_server_dies_fails_fast() {
    let (server, session) = session_on_echo(&patient_connector()).await;
    let call = session.call_tool(delayed_echo("slow", 5_000));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.kill().await;
    };
    let started = std::time::Instant::now();
    let (result, ()) = tokio::join!(call, kill);
    let err = result.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    eprintln!("{err}");
    assert_eq!(err.outcome(), Outcome::TransportError, "{err}");
    assert!(!err.is_safe_to_retry(), "{err}");
    session.close().await;
}

/// The echo server behind a proxy that cuts every event stream (GET) `cut`
/// after it opens, as a load balancer with a short idle timeout does: the
/// client reads a broken body. POSTs pass untouched. Returns its URL; it
/// stops when the test's runtime does.
async fn echo_behind_a_stream_cutting_proxy(cut: Duration) -> String {
    use axum::extract::Request;
    use axum::http::Method;
    use axum::middleware::{self, Next};

    let app = mcp_pool_echo::EchoApp::new(&EchoConfig::default());
    let router = app.router().layer(middleware::from_fn(
        move |request: Request, next: Next| async move {
            let get = request.method() == Method::GET;
            let response = next.run(request).await;
            if get {
                cut_after(response, cut)
            } else {
                response
            }
        },
    ));
    serve_on_loopback(router).await
}

/// A broken event stream retires a legacy stateful session, but a call
/// already sent runs on its own response stream: it gets its answer,
/// rather than failing as interrupted (a failure no caller could retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_the_event_stream_breaks_gets_its_answer() {
    let url = echo_behind_a_stream_cutting_proxy(Duration::from_millis(150)).await;
    let key = SessionKey::anonymous(url).unwrap();
    let session = patient_connector().open(&key).await.unwrap();
    let result = session.call_tool(delayed_echo("slow", 800)).await;
    // The cut came while the call ran (it opened with the session and
    // lasts 150 ms; the call 800 ms).
    let reason = session.closed_reason().expect("the event stream broke");
    assert!(reason.contains("event stream"), "{reason}");
    let result = result.unwrap_or_else(|e| panic!("the call failed: {e}"));
    assert_eq!(text(&result), "slow");
    // The session is done for: the next call is refused unsent.
    let err = session.call_tool(echo("late")).await.unwrap_err();
    assert!(
        matches!(err, Error::TransportClosed { sent: false, .. }),
        "{err}"
    );
    session.close().await;
}

/// A modern echo server behind a proxy that answers HTTP 500, without
/// passing it on, every POST whose body mentions `boom` (a server failing
/// one request, as an overloaded or crashing handler does). Returns its URL;
/// it stops when the test's runtime does.
async fn modern_echo_failing_boom_with_500() -> String {
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::middleware::{self, Next};
    use axum::response::IntoResponse;

    let config = EchoConfig::default().with_era(mcp_pool_echo::Era::Modern);
    let app = mcp_pool_echo::EchoApp::new(&config);
    let router = app.router().layer(middleware::from_fn(
        |request: Request, next: Next| async move {
            let (body, request) = read_body(request).await;
            if body.windows(4).any(|w| w == b"boom") {
                return (StatusCode::INTERNAL_SERVER_ERROR, "handler crashed").into_response();
            }
            next.run(request).await
        },
    ));
    serve_on_loopback(router).await
}

/// One request failing with HTTP 500 retires the session, but the other
/// calls already sent on it (a shared modern session carries many) run on
/// their own exchanges: they get their answers, rather than failing as
/// interrupted (a failure no caller could retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_another_request_fails_gets_its_answer() {
    let url = modern_echo_failing_boom_with_500().await;
    let key = SessionKey::anonymous(url).unwrap();
    let session = patient_connector().open(&key).await.unwrap();
    let failing = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        session.call_tool(echo("boom")).await
    };
    let (result, failed) = tokio::join!(session.call_tool(delayed_echo("slow", 800)), failing);
    let failed = failed.expect_err("the proxy answers 500");
    assert!(failed.to_string().contains("500"), "{failed}");
    let reason = session
        .closed_reason()
        .expect("the 500 retired the session");
    assert!(reason.contains("500"), "{reason}");
    let result = result.unwrap_or_else(|e| panic!("the call failed: {e}"));
    assert_eq!(text(&result), "slow");
    session.close().await;
}

/// An echo server of `era` behind a proxy that cuts, 100 ms into it, the
/// response stream of every POST whose body mentions `cut`, with a broken
/// body, and answers every GET that asks to resume a stream from its
/// `Last-Event-ID` with `refuse_resume`, if any, in place of the server. Returns its URL; it stops
/// when the test's runtime does.
async fn echo_cutting_responses(
    era: mcp_pool_echo::Era,
    refuse_resume: Option<axum::http::StatusCode>,
) -> String {
    use axum::extract::Request;
    use axum::middleware::{self, Next};
    use axum::response::IntoResponse;

    let config = EchoConfig::default().with_era(era);
    let app = mcp_pool_echo::EchoApp::new(&config);
    let router = app.router().layer(middleware::from_fn(
        move |request: Request, next: Next| async move {
            if let Some(status) =
                refuse_resume.filter(|_| request.headers().contains_key("last-event-id"))
            {
                return (status, "no resumption here").into_response();
            }
            let (body, request) = read_body(request).await;
            let response = next.run(request).await;
            if body.windows(3).any(|w| w == b"cut") {
                cut_after(response, Duration::from_millis(100))
            } else {
                response
            }
        },
    ));
    serve_on_loopback(router).await
}

/// Two calls at once (`slow`, and `cut`, whose response stream the proxy
/// cuts) on a session of `era` behind [`echo_cutting_responses`]. Checks
/// that the cut retired the session and the other call got its answer;
/// returns what the cut call got, and when.
async fn two_calls_one_cut(
    era: mcp_pool_echo::Era,
    refuse_resume: Option<axum::http::StatusCode>,
) -> (Result<rmcp::model::CallToolResult, Error>, Duration) {
    let url = echo_cutting_responses(era, refuse_resume).await;
    let key = SessionKey::anonymous(url).unwrap();
    let session = patient_connector().open(&key).await.unwrap();
    assert_eq!(
        session.upstream_session_id().is_some(),
        era == mcp_pool_echo::Era::Legacy
    );
    let cut = async {
        let started = std::time::Instant::now();
        let result = session.call_tool(delayed_echo("cut", 600)).await;
        (result, started.elapsed())
    };
    let (result, cut) = tokio::join!(session.call_tool(delayed_echo("slow", 800)), cut);
    let reason = session
        .closed_reason()
        .expect("the cut retired the session");
    assert!(reason.contains("response stream"), "{reason}");
    let result = result.unwrap_or_else(|e| panic!("the other call failed: {e}"));
    assert_eq!(text(&result), "slow");
    // The session is done for: the next call is refused unsent.
    let err = session.call_tool(echo("late")).await.unwrap_err();
    assert!(
        matches!(err, Error::TransportClosed { sent: false, .. }),
        "{err}"
    );
    session.close().await;
    cut
}

/// On a legacy stateless session (shared by many calls in a pool), one
/// call's broken response stream fails that call (its stream has no event
/// ids to resume from) and retires the session, but the other calls
/// already sent get their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_response_stream_fails_its_own_call_only_on_a_stateless_session() {
    let (cut, _) = two_calls_one_cut(mcp_pool_echo::Era::LegacyStateless, None).await;
    let cut = cut.expect_err("its response stream was cut");
    assert_eq!(cut.outcome(), Outcome::TransportError, "{cut}");
    assert!(!cut.is_safe_to_retry(), "{cut}");
}

/// On a legacy stateful session (lent to one caller at a time, whose own
/// calls at once share it), rmcp resumes a cut response stream from its
/// last event id, and the server, alive, answers on it: both calls get
/// their answers, and the session retires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_response_stream_brings_its_calls_answer_on_a_stateful_session() {
    let (cut, _) = two_calls_one_cut(mcp_pool_echo::Era::Legacy, None).await;
    let cut = cut.unwrap_or_else(|e| panic!("the resumed call failed: {e}"));
    assert_eq!(text(&cut), "cut");
}

/// The same with a server that refuses to resume the stream: the call whose
/// stream broke fails as interrupted at the first refused attempt (rather
/// than when rmcp gives up), and the caller's other call is spared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_response_stream_fails_its_own_call_only_on_a_stateful_session() {
    let (cut, took) = two_calls_one_cut(
        mcp_pool_echo::Era::Legacy,
        Some(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .await;
    let cut = cut.expect_err("its stream was cut and not resumed");
    assert_eq!(cut.outcome(), Outcome::TransportError, "{cut}");
    assert!(!cut.is_safe_to_retry(), "{cut}");
    // Cut at 100 ms, refused at the first attempt (a reconnect wait of
    // 250 ms later); rmcp alone gives up after about 3 s.
    assert!(took < Duration::from_secs(2), "the cut call took {took:?}");
}

/// The same with a server that answers the attempt to resume with HTTP 404,
/// as one restarted on the same port does: the session is lost, but the
/// call whose stream broke had been accepted, and may have run, so it fails
/// as interrupted, never as a refusal safe to retry; the other call, which
/// the server still runs, gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_stream_broke_is_never_claimed_refused_when_the_session_is_lost() {
    let (cut, _) = two_calls_one_cut(
        mcp_pool_echo::Era::Legacy,
        Some(axum::http::StatusCode::NOT_FOUND),
    )
    .await;
    let cut = cut.expect_err("its stream was cut and not resumed");
    assert!(
        matches!(cut, Error::TransportClosed { sent: true, .. }),
        "{cut:?}"
    );
    assert!(!cut.is_safe_to_retry(), "{cut}");
}

/// How the second page of [`echo_listing_tools_in_two_pages`] comes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SecondPage {
    /// At once, the last page.
    Last,
    /// At once, with `nextCursor` `2` again, as from a server whose pages
    /// loop.
    Looping,
    /// After 2 s, the last page.
    Late,
}

/// The echo server behind a proxy that answers `tools/list` itself, in two
/// pages (tool `one` with `nextCursor` `2`, fresh for 60 s and public; then
/// tool `two`, fresh for 30 s and private), counting the pages it served.
/// The second page is as `second` says. Returns its URL and the count; it
/// stops when the test's runtime does.
async fn echo_listing_tools_in_two_pages(
    second: SecondPage,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use axum::extract::Request;
    use axum::http::header;
    use axum::middleware::{self, Next};
    use axum::response::IntoResponse;
    use rmcp::serde_json::{json, Value};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    let pages = Arc::new(AtomicU32::new(0));
    let served = pages.clone();
    let app = mcp_pool_echo::EchoApp::new(&EchoConfig::default());
    let router = app
        .router()
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let served = served.clone();
            async move {
                let (body, request) = read_body(request).await;
                let message: Value = rmcp::serde_json::from_slice(&body).unwrap_or(Value::Null);
                if message["method"] != "tools/list" {
                    return next.run(request).await;
                }
                served.fetch_add(1, Ordering::SeqCst);
                let schema = json!({ "type": "object" });
                let result = match message["params"]["cursor"].as_str() {
                    None => json!({
                        "tools": [{ "name": "one", "inputSchema": schema }],
                        "nextCursor": "2",
                        "ttlMs": 60_000,
                        "cacheScope": "public",
                    }),
                    Some(cursor) => {
                        assert_eq!(cursor, "2");
                        if second == SecondPage::Late {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let mut page = json!({
                            "tools": [{ "name": "two", "inputSchema": schema }],
                            "ttlMs": 30_000,
                            "cacheScope": "private",
                        });
                        if second == SecondPage::Looping {
                            page["nextCursor"] = json!("2");
                        }
                        page
                    }
                };
                let answer = json!({ "jsonrpc": "2.0", "id": message["id"], "result": result });
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    answer.to_string(),
                )
                    .into_response()
            }
        }));
    (serve_on_loopback(router).await, pages)
}

/// `list_all_tools` follows `nextCursor` through every page, each its own
/// request, and caches the whole list (for the earliest page's `ttlMs`): a
/// second listing asks the server nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_the_tools_is_listed_and_the_list_cached() {
    let (url, pages) = echo_listing_tools_in_two_pages(SecondPage::Last).await;
    let key = SessionKey::anonymous(url).unwrap();
    let session = patient_connector().open(&key).await.unwrap();
    for _ in 0..2 {
        let tools = session.list_all_tools().await.unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, ["one", "two"]);
    }
    assert_eq!(pages.load(std::sync::atomic::Ordering::SeqCst), 2);
    session.close().await;
}

/// A server whose pages loop (its second page sends the cursor it was
/// asked with again) gets a typed error naming the cursor once the cursor
/// comes back, after two pages, instead of being paged until the request
/// timeout with every page's tools piling up; the session stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_loop_end_the_listing_with_a_typed_error() {
    let (url, pages) = echo_listing_tools_in_two_pages(SecondPage::Looping).await;
    let key = SessionKey::anonymous(url).unwrap();
    let session = patient_connector().open(&key).await.unwrap();
    let err = session.list_all_tools().await.unwrap_err();
    assert!(
        matches!(&err, Error::PagesLoop { method: "tools/list", cursor } if cursor == "2"),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"2\""), "{err}");
    assert_eq!(err.outcome(), Outcome::ApplicationError, "{err}");
    assert_eq!(pages.load(std::sync::atomic::Ordering::SeqCst), 2);
    let echoed = session.call_tool(echo("still here")).await.unwrap();
    assert!(text(&echoed).contains("still here"), "{echoed:?}");
    session.close().await;
}

/// A listing whose pages together take longer than the request timeout
/// times out, and its error names that timeout (the whole listing's), not
/// what was left of it when the late page was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_times_out_names_its_whole_timeout() {
    let (url, pages) = echo_listing_tools_in_two_pages(SecondPage::Late).await;
    let key = SessionKey::anonymous(url).unwrap();
    let timeout = Duration::from_millis(500);
    let connector = McpConnector::builder()
        .request_timeout(timeout)
        .build()
        .unwrap();
    let session = connector.open(&key).await.unwrap();
    let err = session.list_all_tools().await.unwrap_err();
    assert!(
        matches!(err, Error::TimedOut { method: "tools/list", after } if after == timeout),
        "{err:?}"
    );
    assert_eq!(pages.load(std::sync::atomic::Ordering::SeqCst), 2);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_a_typed_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let connector = McpConnector::new().unwrap();
    let key = SessionKey::anonymous(format!("http://{addr}/mcp")).unwrap();
    let err = connector.open(&key).await.unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::Initialize { .. }), "{err}");

    // https to a plain port: the TLS stack (aws-lc-rs) is wired and fails typed.
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let key = SessionKey::anonymous(format!("https://{}/mcp", server.addr())).unwrap();
    let err = connector.open(&key).await.unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::Initialize { .. }), "{err}");
}
