//! `echo` with `steps`: progress for the request's own token and a log line
//! per step, in every era, reaching the calling client only.
// rmcp marks logging deprecated (SEP-2577); the server still sends it.
#![allow(deprecated)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{call, connect_in, echo, lifecycles, text, QUICK};
use mcp_pool_echo::{spawn_local_server, EchoConfig, Era, ECHO_LOGGER, MAX_ECHO_STEPS};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProgressToken, ServerResult,
};
use rmcp::service::{ClientLifecycleMode, NotificationContext, PeerRequestOptions, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceError};

const STEPS: u32 = 3;
const DELAY_MS: u64 = 150;

/// A client handler that keeps every progress notification and log line.
#[derive(Clone, Debug, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().unwrap().push(params);
    }
}

impl Recorder {
    /// `(progress, total, message)` of the progress received for `token`.
    fn progress_of(&self, token: &ProgressToken) -> Vec<(f64, Option<f64>, Option<String>)> {
        self.progress
            .lock()
            .unwrap()
            .iter()
            .filter(|p| &p.progress_token == token)
            .map(|p| (p.progress, p.total, p.message.clone()))
            .collect()
    }

    fn progress_tokens(&self) -> BTreeSet<String> {
        let progress = self.progress.lock().unwrap();
        progress
            .iter()
            .map(|p| format!("{:?}", p.progress_token))
            .collect()
    }

    /// The log lines about `message`: `(step, steps, progressToken)`.
    fn log_steps_of(&self, message: &str) -> Vec<(u64, u64, serde_json::Value)> {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .filter(|line| line.data["message"] == message)
            .map(|line| {
                assert_eq!(line.logger.as_deref(), Some(ECHO_LOGGER), "{line:?}");
                (
                    line.data["step"].as_u64().unwrap(),
                    line.data["steps"].as_u64().unwrap(),
                    line.data["progressToken"].clone(),
                )
            })
            .collect()
    }

    fn logged_messages(&self) -> BTreeSet<String> {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .map(|line| line.data["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits (bounded) until every message has its `STEPS` log lines and
    /// every token its `STEPS` progress notifications: in a legacy session
    /// rmcp sends log lines on the GET stream, which may trail the result.
    async fn wait_for(&self, calls: &[(&str, &ProgressToken)]) {
        let deadline = Instant::now() + QUICK;
        loop {
            let complete = calls.iter().all(|(message, token)| {
                self.progress_of(token).len() >= STEPS as usize
                    && self.log_steps_of(message).len() >= STEPS as usize
            });
            if complete {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "notifications missing: progress {:?}, logs {:?}",
                self.progress.lock().unwrap(),
                self.logs.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn stepped_echo(message: &str) -> CallToolRequestParams {
    let mut params = echo(message, Some(DELAY_MS));
    params
        .arguments
        .as_mut()
        .unwrap()
        .insert("steps".into(), STEPS.into());
    params
}

/// Sends a stepped `echo` and returns its progress token with the pending
/// answer.
async fn start_call(
    client: &RunningService<RoleClient, Recorder>,
    message: &str,
) -> (
    ProgressToken,
    impl std::future::Future<Output = Result<ServerResult, ServiceError>>,
) {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(stepped_echo(message)));
    let handle = client
        .send_request_with_option(request, PeerRequestOptions::with_timeout(QUICK))
        .await
        .expect("the request is sent");
    (handle.progress_token.clone(), handle.await_response())
}

/// The progress and log lines expected for `message` called with `token`.
fn assert_steps_of(recorder: &Recorder, message: &str, token: &ProgressToken, case: &str) {
    let expected: Vec<_> = (1..=STEPS)
        .map(|step| {
            (
                f64::from(step),
                Some(f64::from(STEPS)),
                Some(format!("{message}: step {step} of {STEPS}")),
            )
        })
        .collect();
    assert_eq!(
        recorder.progress_of(token),
        expected,
        "{case}: progress of {message}"
    );
    let token_json = serde_json::to_value(token).unwrap();
    let expected: Vec<_> = (1..=u64::from(STEPS))
        .map(|step| (step, u64::from(STEPS), token_json.clone()))
        .collect();
    assert_eq!(
        recorder.log_steps_of(message),
        expected,
        "{case}: logs of {message}"
    );
}

/// The era and the lifecycle its client uses; the dual era both ways.
fn era_clients() -> Vec<(Era, &'static str, ClientLifecycleMode)> {
    let [(_, initialize), (_, discover), _] = lifecycles();
    vec![
        (Era::Legacy, "initialize", initialize.clone()),
        (Era::LegacyStateless, "initialize", initialize.clone()),
        (Era::Modern, "discover", discover.clone()),
        (Era::Dual, "initialize", initialize),
        (Era::Dual, "discover", discover),
    ]
}

#[tokio::test]
async fn two_concurrent_calls_each_get_their_own_progress() {
    for (era, lifecycle, mode) in era_clients() {
        let case = format!("{era} server, {lifecycle} client");
        let server = spawn_local_server(
            "127.0.0.1:0".parse().unwrap(),
            &EchoConfig::default().with_era(era),
        )
        .await
        .unwrap();
        let recorder = Recorder::default();
        let client = connect_in(recorder.clone(), &server.url(), mode, QUICK)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));

        // Without steps, echo sends nothing (as before steps existed).
        let quiet = call(&client, echo("quiet", Some(20)), QUICK).await.unwrap();
        assert_eq!(text(&quiet), "quiet");

        let (token_a, answer_a) = start_call(&client, "a").await;
        let (token_b, answer_b) = start_call(&client, "b").await;
        assert_ne!(token_a, token_b, "{case}");
        let (a, b) = tokio::join!(answer_a, answer_b);
        for (answer, message) in [(a, "a"), (b, "b")] {
            match answer {
                Ok(ServerResult::CallToolResult(result)) => {
                    assert_eq!(text(&result), message, "{case}")
                }
                other => panic!("{case}: {other:?}"),
            }
        }
        recorder.wait_for(&[("a", &token_a), ("b", &token_b)]).await;
        assert_steps_of(&recorder, "a", &token_a, &case);
        assert_steps_of(&recorder, "b", &token_b, &case);
        let tokens: BTreeSet<_> = [&token_a, &token_b]
            .iter()
            .map(|t| format!("{t:?}"))
            .collect();
        assert_eq!(recorder.progress_tokens(), tokens, "{case}");
        assert_eq!(
            recorder.logged_messages(),
            BTreeSet::from(["a".to_owned(), "b".to_owned()]),
            "{case}"
        );
        client.cancel().await.unwrap();
        server.kill().await;
    }
}

#[tokio::test]
async fn concurrent_clients_never_see_each_others_progress() {
    for (era, lifecycle, mode) in era_clients() {
        let case = format!("{era} server, {lifecycle} clients");
        let server = spawn_local_server(
            "127.0.0.1:0".parse().unwrap(),
            &EchoConfig::default().with_era(era),
        )
        .await
        .unwrap();
        let (first, second) = (Recorder::default(), Recorder::default());
        let one = connect_in(first.clone(), &server.url(), mode.clone(), QUICK)
            .await
            .unwrap();
        let two = connect_in(second.clone(), &server.url(), mode, QUICK)
            .await
            .unwrap();
        let (token_one, answer_one) = start_call(&one, "one").await;
        let (token_two, answer_two) = start_call(&two, "two").await;
        let (r1, r2) = tokio::join!(answer_one, answer_two);
        assert!(r1.is_ok() && r2.is_ok(), "{case}: {r1:?} {r2:?}");
        first.wait_for(&[("one", &token_one)]).await;
        second.wait_for(&[("two", &token_two)]).await;
        // Each client's own counter numbers its tokens, so the two calls may
        // carry the same token; each still gets only its own call's progress.
        assert_steps_of(&first, "one", &token_one, &case);
        assert_steps_of(&second, "two", &token_two, &case);
        assert_eq!(
            first.progress.lock().unwrap().len(),
            STEPS as usize,
            "{case}"
        );
        assert_eq!(
            second.progress.lock().unwrap().len(),
            STEPS as usize,
            "{case}"
        );
        assert_eq!(
            first.logged_messages(),
            BTreeSet::from(["one".to_owned()]),
            "{case}"
        );
        assert_eq!(
            second.logged_messages(),
            BTreeSet::from(["two".to_owned()]),
            "{case}"
        );
        one.cancel().await.unwrap();
        two.cancel().await.unwrap();
        server.kill().await;
    }
}

#[tokio::test]
async fn too_many_steps_are_refused_as_invalid_params() {
    let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &EchoConfig::default())
        .await
        .unwrap();
    let client = connect_in(
        Recorder::default(),
        &server.url(),
        ClientLifecycleMode::Initialize,
        QUICK,
    )
    .await
    .unwrap();
    let mut params = echo("many", None);
    params
        .arguments
        .as_mut()
        .unwrap()
        .insert("steps".into(), (MAX_ECHO_STEPS + 1).into());
    match call(&client, params, QUICK).await {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code.0, -32602, "{e:?}");
            assert!(e.message.contains("at most 1000"), "{e:?}");
        }
        other => panic!("expected invalid params, got {other:?}"),
    }
    assert!(server.registry().calls_for_message("many").is_empty());
    server.kill().await;
}
