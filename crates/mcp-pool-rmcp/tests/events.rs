//! Per-call events against the in-process echo server: each call's progress
//! and log lines reach its own caller, in order, before its result, in
//! every era, and concurrent calls sharing a session never see each other's.
// rmcp marks logging deprecated (SEP-2577); servers still send it.
#![allow(deprecated)]

use std::time::Duration;

use mcp_pool_echo::{
    spawn_local_server, EchoConfig, EchoServerHandle, Era as EchoEra, ECHO_LOGGER,
};
use mcp_pool_rmcp::{CallEvent, Era, McpConnector, McpSession, SessionKey};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const STEPS: u32 = 3;

/// `echo` of `message` in `STEPS` steps over `delay_ms`.
fn stepped(message: &str, delay_ms: u64) -> CallToolRequestParams {
    let args =
        rmcp::serde_json::json!({ "message": message, "delay_ms": delay_ms, "steps": STEPS });
    CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap())
}

fn text(result: &CallToolResult) -> String {
    result.content[0].as_text().unwrap().text.clone()
}

async fn server(era: EchoEra) -> EchoServerHandle {
    spawn_local_server(
        "127.0.0.1:0".parse().unwrap(),
        &EchoConfig::default().with_era(era),
    )
    .await
    .unwrap()
}

fn connector() -> McpConnector {
    McpConnector::builder()
        .initialize_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// An event in a form tests compare: progress as sent, a log line as the
/// echo message and step it reports.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Progress(f64, Option<f64>, Option<String>),
    Log(String, u64),
    Cancelled,
}

fn seen(event: CallEvent) -> Seen {
    match event {
        CallEvent::Progress {
            progress,
            total,
            message,
        } => Seen::Progress(progress, total, message),
        CallEvent::Log(line) => {
            assert_eq!(line.logger.as_deref(), Some(ECHO_LOGGER), "{line:?}");
            Seen::Log(
                line.data["message"].as_str().unwrap().to_owned(),
                line.data["step"].as_u64().unwrap(),
            )
        }
        CallEvent::Cancelled { .. } => Seen::Cancelled,
        other => panic!("unexpected event {other:?}"),
    }
}

/// Everything already received (the call returned: its events are in).
fn received(events: &mut UnboundedReceiver<CallEvent>) -> Vec<Seen> {
    let mut all = Vec::new();
    while let Ok(event) = events.try_recv() {
        all.push(seen(event));
    }
    all
}

fn progress_of(message: &str) -> Vec<Seen> {
    (1..=STEPS)
        .map(|step| {
            Seen::Progress(
                f64::from(step),
                Some(f64::from(STEPS)),
                Some(format!("{message}: step {step} of {STEPS}")),
            )
        })
        .collect()
}

/// Progress and log line of each step, in the order the server sends them.
fn steps_of(message: &str) -> Vec<Seen> {
    progress_of(message)
        .into_iter()
        .zip(1..=u64::from(STEPS))
        .flat_map(|(progress, step)| [progress, Seen::Log(message.to_owned(), step)])
        .collect()
}

/// Calls a stepped echo of `message` with events; returns the events
/// received by the time the call returned.
async fn call_with_events(session: &McpSession, message: &str, delay_ms: u64) -> Vec<Seen> {
    let (to, mut events) = unbounded_channel();
    let result = session
        .call_tool_with_events(stepped(message, delay_ms), to)
        .await
        .unwrap();
    assert_eq!(text(&result), message);
    received(&mut events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_log_lines_reach_the_caller_in_order_before_the_result() {
    for (echo_era, era) in [
        (EchoEra::Modern, Era::Modern),
        (EchoEra::LegacyStateless, Era::LegacyStateless),
        (EchoEra::Legacy, Era::LegacyStateful),
    ] {
        let server = server(echo_era).await;
        let connector = connector();
        let key = SessionKey::anonymous(server.url()).unwrap();
        let session = connector.open(&key).await.unwrap();
        assert_eq!(session.era(), era);

        let events = call_with_events(&session, "steady", 60).await;
        let progress: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Seen::Progress(..)))
            .cloned()
            .collect();
        assert_eq!(progress, progress_of("steady"), "{era}: {events:?}");
        if era != Era::LegacyStateful {
            // Every message of the call comes on its own response stream.
            assert_eq!(events, steps_of("steady"), "{era}");
        }
        // A call without events still works, and gets none.
        let plain = session.call_tool(stepped("plain", 0)).await.unwrap();
        assert_eq!(text(&plain), "plain");
        session.close().await;
        server.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_one_shared_session_each_get_only_their_own() {
    const CALLS: usize = 4;
    for (echo_era, era) in [
        (EchoEra::Modern, Era::Modern),
        (EchoEra::LegacyStateless, Era::LegacyStateless),
    ] {
        let server = server(echo_era).await;
        let connector = connector();
        let key = SessionKey::anonymous(server.url()).unwrap();
        let session = connector.open(&key).await.unwrap();
        assert_eq!(session.era(), era);
        let messages: Vec<String> = (0..CALLS).map(|i| format!("{era}-call-{i}")).collect();
        let calls = messages
            .iter()
            .map(|message| call_with_events(&session, message, 90));
        let all = futures_util::future::join_all(calls).await;
        for (message, events) in messages.iter().zip(all) {
            assert_eq!(events, steps_of(message), "{era}: {message}");
        }
        session.close().await;
        server.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_calls_get_their_own_events_through_pool_run() {
    for echo_era in [EchoEra::Modern, EchoEra::LegacyStateless] {
        let server = server(echo_era).await;
        let pool = mcp_pool::Pool::builder(connector())
            .max_sessions_per_key(2)
            .build()
            .unwrap();
        let key = SessionKey::anonymous(server.url()).unwrap();
        let runs = (0..6).map(|i| {
            let (pool, key) = (&pool, &key);
            async move {
                let message = format!("{echo_era}-pooled-{i}");
                let (to, mut events) = unbounded_channel();
                let params = stepped(&message, 60);
                let result = pool
                    .run(key, async |session| {
                        session.call_tool_with_events(params, to).await
                    })
                    .await
                    .unwrap();
                assert_eq!(text(&result), message);
                (message, received(&mut events))
            }
        });
        for (message, events) in futures_util::future::join_all(runs).await {
            assert_eq!(events, steps_of(&message), "{echo_era}: {message}");
        }
        pool.shutdown().await;
        server.kill().await;
    }
}

/// An rmcp server in a legacy stateful session sends log lines on the
/// session's event stream, not the call's: on the exclusive session they
/// are the one call in flight's while it is in flight, and the key's
/// subscriber's after; each line reaches exactly one of them, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_sessions_log_lines_reach_the_call_or_the_subscriber_once() {
    let server = server(EchoEra::Legacy).await;
    let connector = connector();
    let key = SessionKey::anonymous(server.url()).unwrap();
    let session = connector.open(&key).await.unwrap();
    assert_eq!(session.era(), Era::LegacyStateful);
    let mut notices = connector.subscribe(&key);

    let events = call_with_events(&session, "stateful", 60).await;
    let (progress, logs): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|e| matches!(e, Seen::Progress(..)));
    assert_eq!(progress, progress_of("stateful"));
    let mut steps: Vec<u64> = logs
        .iter()
        .map(|e| match e {
            Seen::Log(message, step) if message == "stateful" => *step,
            other => panic!("not this call's: {other:?}"),
        })
        .collect();
    // The lines that trailed the result reach the subscriber.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while steps.len() < STEPS as usize {
        let notice = tokio::time::timeout_at(deadline, notices.recv())
            .await
            .expect("every log line reached the call or the subscriber")
            .unwrap();
        let rmcp::model::ServerNotification::LoggingMessageNotification(line) = notice else {
            panic!("unexpected notice {notice:?}");
        };
        assert_eq!(line.params.data["message"], "stateful");
        steps.push(line.params.data["step"].as_u64().unwrap());
    }
    let expected: Vec<u64> = (1..=u64::from(STEPS)).collect();
    assert_eq!(steps, expected, "each line once, in order");
    assert!(notices.try_recv().is_err(), "no line twice");
    assert_eq!(connector.dropped_notifications(), 0);
    session.close().await;
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_own_progress_token_is_replaced_and_its_events_still_arrive() {
    let server = server(EchoEra::Modern).await;
    let connector = connector();
    let session = connector
        .open(&SessionKey::anonymous(server.url()).unwrap())
        .await
        .unwrap();
    let params: CallToolRequestParams = rmcp::serde_json::from_value(rmcp::serde_json::json!({
        "name": "echo",
        "arguments": { "message": "mine", "delay_ms": 30, "steps": STEPS },
        "_meta": { "progressToken": "the-callers-own" },
    }))
    .unwrap();
    let (to, mut events) = unbounded_channel();
    session.call_tool_with_events(params, to).await.unwrap();
    let mut raw = Vec::new();
    while let Ok(event) = events.try_recv() {
        raw.push(event);
    }
    // The server saw the session's own token (its log lines name it).
    for event in &raw {
        if let CallEvent::Log(line) = event {
            let token = &line.data["progressToken"];
            assert!(!token.is_null() && token != "the-callers-own", "{line:?}");
        }
    }
    let all: Vec<_> = raw.into_iter().map(seen).collect();
    assert_eq!(all, steps_of("mine"));
    session.close().await;
    server.kill().await;
}
