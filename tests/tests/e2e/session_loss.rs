//! Servers that forget sessions: every way a real server says "I do not know
//! this session" fails the call at once with a typed error quoting it, the
//! session is evicted, and `run_with_retry` runs the call again on a fresh
//! session, so under load every call succeeds and no call runs twice; a call
//! the server accepted before it forgot gets its answer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use mcp_pool::{EvictReason, Metrics, Outcome, RunError};
use mcp_pool_rmcp::{run_with_retry, Error, Health, McpConnector, SessionKey};
use mcp_pool_tests::{ForgetfulServer, SessionLossForm};

use crate::common::{call_echo, pool_with, wait_for};

/// Tool calls each session serves before the server forgets it.
const FORGET_AFTER: u64 = 3;

/// A call on a forgotten session fails long before this (its request
/// timeout is 30 s): a hang bound, not a timing assert.
const HANG_BOUND: Duration = Duration::from_secs(10);

/// A connector whose calls would wait 30 s for an answer that never comes.
fn connector() -> McpConnector {
    McpConnector::builder()
        .connect_timeout(Duration::from_secs(2))
        .initialize_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(30))
        .check_timeout(Duration::from_secs(1))
        .close_timeout(Duration::from_secs(1))
        .build()
        .expect("the connector builds")
}

/// What the server's answer says that a client can see: the body's words,
/// or the status where the HTTP client passes on no body (a 404 with a
/// session attached).
fn words(form: SessionLossForm) -> &'static str {
    match form {
        SessionLossForm::NotFound | SessionLossForm::SessionNotFoundNotFound => "404",
        other => other.message().expect("the form has a body"),
    }
}

fn evicted(metrics: &Metrics) -> u64 {
    metrics.stats.evictions(EvictReason::TransportError)
        + metrics.stats.evictions(EvictReason::TransportClosed)
}

async fn a_forgotten_session_fails_fast_is_evicted_and_retried(form: SessionLossForm) {
    let fixture = ForgetfulServer::new(form, FORGET_AFTER);
    let server = fixture.spawn(0).await.unwrap();
    let pool = pool_with(connector(), 1);
    let key = SessionKey::anonymous(server.url()).unwrap();
    for i in 0..FORGET_AFTER {
        let message = format!("m{i}");
        let got = pool
            .run(&key, async |s| call_echo(s, &message, 0).await)
            .await
            .unwrap();
        assert_eq!(got, message);
    }
    assert_eq!(fixture.forgotten_count(), 1, "{form}");

    let seen: Mutex<Option<(Health, Option<String>)>> = Mutex::new(None);
    let started = Instant::now();
    let result = tokio::time::timeout(
        HANG_BOUND,
        pool.run(&key, async |s| {
            let id = s.upstream_session_id().map(|id| id.to_string());
            *seen.lock().unwrap() = Some((s.health().clone(), id));
            call_echo(s, "on a forgotten session", 0).await
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{form}: the call on a forgotten session hung"));
    let took = started.elapsed();
    let Err(RunError::Call(err)) = result else {
        panic!("{form}: expected the call to fail, got {result:?}");
    };
    eprintln!("{form}: failed after {took:?}: {err}");
    assert!(matches!(err, Error::SessionLost { .. }), "{form}: {err:?}");
    let shown = err.to_string();
    assert!(shown.contains("forgot the session"), "{form}: {shown}");
    assert!(shown.contains(words(form)), "{form}: {shown}");
    assert_eq!(err.outcome(), Outcome::TransportError, "{form}: {err}");
    assert!(err.is_safe_to_retry(), "{form}: {err}");
    let (health, old_id) = seen.lock().unwrap().take().expect("the closure ran");
    assert!(health.is_dead(), "{form}");
    let reason = health.reason().unwrap_or_default().to_owned();
    assert!(reason.contains(words(form)), "{form}: {reason}");

    let metrics = wait_for(&pool, Duration::from_secs(2), |m| {
        evicted(m) == 1 && m.live == 0
    })
    .await;
    assert_eq!(evicted(&metrics), 1, "{form}: {:?}", metrics.stats);
    assert_eq!(metrics.live, 0, "{form}: the forgotten session is gone");

    // A fresh session serves the retried call; then it is forgotten too,
    // under a call that `run_with_retry` runs again on a third session.
    let mut ids = vec![old_id.clone()];
    for i in 0..FORGET_AFTER + 1 {
        let message = format!("r{i}");
        let (got, id) = tokio::time::timeout(
            HANG_BOUND,
            run_with_retry(&pool, &key, async |s| {
                let got = call_echo(s, &message, 0).await?;
                Ok((got, s.upstream_session_id().map(|id| id.to_string())))
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("{form}: run_with_retry hung"))
        .unwrap_or_else(|e| panic!("{form}: run_with_retry failed: {e}"));
        assert_eq!(got, message);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    assert_eq!(ids.len(), 3, "{form}: three sessions served: {ids:?}");
    assert_eq!(fixture.forgotten_count(), 2, "{form}");
    let refusals = fixture.refusals();
    assert!(
        refusals.values().all(|&n| n == 1),
        "{form}: a forgotten session was used again: {refusals:?}"
    );
    // Every echo ran exactly once on the server.
    assert_eq!(
        fixture.app().registry().call_count(),
        2 * FORGET_AFTER + 1,
        "{form}"
    );
    pool.shutdown().await;
}

async fn under_load_every_call_succeeds_and_no_forgotten_session_is_reused(form: SessionLossForm) {
    const CALLERS: usize = 4;
    const CALLS_EACH: usize = 10;
    let fixture = ForgetfulServer::new(form, FORGET_AFTER);
    let server = fixture.spawn(0).await.unwrap();
    let pool = pool_with(connector(), CALLERS);
    let key = SessionKey::anonymous(server.url()).unwrap();
    // The callers run concurrently on this task (`run_with_retry`'s future
    // is not `Send` for every lifetime, so it cannot be spawned).
    let caller = async |caller: usize| {
        let mut failures = Vec::new();
        for n in 0..CALLS_EACH {
            let message = format!("{caller}-{n}");
            let result = tokio::time::timeout(
                HANG_BOUND,
                run_with_retry(&pool, &key, async |s| call_echo(s, &message, 1).await),
            )
            .await;
            match result {
                Ok(Ok(got)) => assert_eq!(got, message),
                Ok(Err(e)) => failures.push(format!("{message}: {e}")),
                Err(_) => failures.push(format!("{message}: hung")),
            }
        }
        failures
    };
    let (a, b, c, d) = tokio::join!(caller(0), caller(1), caller(2), caller(3));
    let failures: Vec<String> = [a, b, c, d].concat();
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "{form}: every call succeeds"
    );
    let total = (CALLERS * CALLS_EACH) as u64;
    assert_eq!(
        fixture.app().registry().call_count(),
        total,
        "{form}: every call ran exactly once on the server"
    );
    let forgotten = fixture.forgotten_count() as u64;
    assert!(
        forgotten * FORGET_AFTER + CALLERS as u64 * (FORGET_AFTER - 1) >= total,
        "{form}: only {forgotten} sessions were forgotten"
    );
    let refusals = fixture.refusals();
    assert!(
        refusals.values().all(|&n| n <= 1),
        "{form}: a forgotten session was used again: {refusals:?}"
    );
    pool.shutdown().await;
}

/// A server that forgot the session while it still runs a call it
/// accepted before (a load balancer that lost the session's route sends the
/// next request to a replica that never knew it, while the first replica
/// streams the call): the next request is refused at once with
/// [`Error::SessionLost`], safe to retry, and the call accepted before gets
/// its answer on its own stream, however long it runs.
async fn a_call_accepted_before_the_loss_gets_its_answer(form: SessionLossForm) {
    // The first tool call is served and the session forgotten with it.
    let fixture = ForgetfulServer::new(form, 1);
    let server = fixture.spawn(0).await.unwrap();
    let key = SessionKey::anonymous(server.url()).unwrap();
    let session = connector().open(&key).await.unwrap();
    let refused = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        call_echo(&session, "after the loss", 0).await
    };
    // The accepted call runs past the 2 s a call with no answer is given
    // once the server said it forgot the session.
    let (accepted, refused) = tokio::join!(call_echo(&session, "accepted", 3_000), refused);
    let err = refused.expect_err("the server forgot the session");
    assert!(matches!(err, Error::SessionLost { .. }), "{form}: {err:?}");
    assert!(err.is_safe_to_retry(), "{form}: {err}");
    let got = accepted.unwrap_or_else(|e| panic!("{form}: the accepted call failed: {e}"));
    assert_eq!(got, "accepted", "{form}");
    assert!(session.is_closed(), "{form}: the session retired");
    assert_eq!(fixture.forgotten_count(), 1, "{form}");
    session.close().await;
}

macro_rules! session_loss_tests {
    ($($name:ident: $form:expr,)*) => {
        mod fails_fast {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    a_forgotten_session_fails_fast_is_evicted_and_retried($form).await;
                }
            )*
        }
        mod accepted_calls_go_on {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    a_call_accepted_before_the_loss_gets_its_answer($form).await;
                }
            )*
        }
        mod under_load {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    under_load_every_call_succeeds_and_no_forgotten_session_is_reused($form).await;
                }
            )*
        }
    };
}

session_loss_tests! {
    bad_request_json_without_id: SessionLossForm::BadRequestWithoutId,
    not_found: SessionLossForm::NotFound,
    session_not_found_with_200: SessionLossForm::SessionNotFoundOk,
    session_not_found_with_404: SessionLossForm::SessionNotFoundNotFound,
    bad_request_text: SessionLossForm::BadRequestText,
}

/// A sessionless echo server that answers every call of the tool `reject`
/// with HTTP 400 and a JSON-RPC error without an `id`.
async fn sessionless_rejecting_server() -> mcp_pool_tests::FixtureServer {
    use axum::body::{to_bytes, Body};
    use axum::extract::Request;
    use axum::http::{header, StatusCode};
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};

    async fn reject(request: Request, next: Next) -> Response {
        let (parts, body) = request.into_parts();
        let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
        let message: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if message["method"] == "tools/call" && message["params"]["name"] == "reject" {
            let body =
                r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: rejected"}}"#;
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        next.run(Request::from_parts(parts, Body::from(bytes)))
            .await
    }

    let app =
        mcp_pool_echo::EchoApp::new(&mcp_pool_echo::EchoConfig::default().with_stateful(false));
    let router = app.router().layer(middleware::from_fn(reject));
    mcp_pool_tests::FixtureServer::spawn(router, 0)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessionless_servers_error_without_an_id_is_its_answer_at_once() {
    let server = sessionless_rejecting_server().await;
    let pool = pool_with(connector(), 1);
    let key = SessionKey::anonymous(server.url()).unwrap();
    let got = pool
        .run(&key, async |s| call_echo(s, "before", 0).await)
        .await
        .unwrap();
    assert_eq!(got, "before");
    let result = tokio::time::timeout(
        HANG_BOUND,
        pool.run(&key, async |s| {
            s.call_tool(rmcp::model::CallToolRequestParams::new("reject"))
                .await
        }),
    )
    .await
    .expect("the call on an uncorrelated error hung");
    let Err(RunError::Call(err)) = result else {
        panic!("expected the server's error, got {result:?}");
    };
    eprintln!("sessionless: {err}");
    assert_eq!(err.outcome(), Outcome::ApplicationError, "{err}");
    assert!(!err.is_safe_to_retry(), "{err}");
    assert!(
        err.to_string().contains("-32000: Bad Request: rejected"),
        "{err}"
    );
    // The server answered: the session stays in service.
    let got = pool
        .run(&key, async |s| call_echo(s, "after", 0).await)
        .await
        .unwrap();
    assert_eq!(got, "after");
    assert_eq!(evicted(&pool.metrics()), 0);
    pool.shutdown().await;
}
