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
