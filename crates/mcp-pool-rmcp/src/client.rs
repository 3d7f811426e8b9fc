//! The HTTP client wrapper every session runs over: delegates to the real
//! client, records signs of death in the session's [`Health`] cell, tells
//! session loss from other answers, and keeps URLs out of every error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream::{BoxStream, StreamExt};
use http::{HeaderName, HeaderValue};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, DiscoverResult, ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use crate::events::{Router, StreamOf};
use crate::health::Health;
use crate::http::redacted;
use crate::loss::{judge_failure, judge_reply, Posted, Verdict};
use crate::watched::{first_answer, OnBreak, Watched};
use crate::HttpError;

/// A [`StreamableHttpClient`] that delegates every method to `C` and:
///
/// - records in a [`Health`] cell every outcome that shows the transport
///   dead (see [`is_fatal`](crate::is_fatal)), including errors that arrive
///   later on the SSE streams it returns, and the session id the server
///   assigns;
/// - recognizes the answers that say the server forgot the session (the
///   [crate docs' table](crate#session-loss)): records the server's words in
///   the cell and fails that request alone with
///   `StreamableHttpError::SessionExpired`, so it fails at once instead of
///   waiting for an answer rmcp would drop, and is known to be refused;
/// - delivers an error reply without a usable `id` on a sessionless
///   exchange under the request's id, so it fails the call instead of being
///   dropped;
/// - reads the answer to `initialize` up to its JSON-RPC response, so that
///   an unusable answer fails the handshake with what the server sent;
/// - reports every failure as an [`HttpError`] with URLs redacted, so no
///   error, `Debug` output or log line of rmcp can show a request URL.
///
/// Every method of the trait is delegated, the size-limit variants included,
/// so the limits configured on the transport reach `C` unchanged.
///
/// Streams: an error on any SSE stream (a POST's response stream or the
/// session's standalone GET stream) marks the transport dead, at the moment
/// it is read; a stream that ends cleanly does not (the protocol lets a
/// server close a stream, and the transport reconnects through this client,
/// whose answer, such as a 404 or a refused connect, then decides). A
/// client [for a modern session](HealthClient::modern) keeps the cell alive
/// when one request's response stream breaks: in 2026-07-28 that loses
/// that request alone (rmcp fails it), not the other requests sharing the
/// client.
#[derive(Clone)]
pub struct HealthClient<C> {
    inner: C,
    health: Health,
    /// The URL requests really go to, when rmcp is given a redacted one.
    endpoint: Option<Arc<str>>,
    /// Whether a broken response stream loses its request only.
    request_scoped_streams: bool,
    /// A `server/discover` result to answer the first `server/discover`
    /// POST with, without I/O (a fresh cached result).
    local_discover: Arc<Mutex<Option<DiscoverResult>>>,
    answered_locally: Arc<AtomicBool>,
    /// Where the server's messages about calls go (none: nowhere).
    router: Option<Arc<Router>>,
}

impl<C> HealthClient<C> {
    /// Wraps `inner`, recording into `health`.
    pub fn new(inner: C, health: Health) -> Self {
        Self {
            inner,
            health,
            endpoint: None,
            request_scoped_streams: false,
            local_discover: Arc::default(),
            answered_locally: Arc::default(),
            router: None,
        }
    }

    /// Routes every notification read from the streams of this client
    /// through `router` (see the [crate docs](crate#call-events)).
    pub(crate) fn with_router(mut self, router: Arc<Router>) -> Self {
        self.router = Some(router);
        self
    }

    /// Which stream the answer to `message` is, for routing.
    fn stream_of(&self, message: &ClientJsonRpcMessage) -> Option<StreamOf> {
        let router = self.router.as_ref()?;
        Some(match router.posting(message) {
            Some(sink) => StreamOf::Call(sink),
            None => StreamOf::Request,
        })
    }

    /// `result`, with its response stream (if any) routed.
    fn routed(&self, on: Option<StreamOf>, result: PostResult) -> PostResult {
        match (result, &self.router, on) {
            (Ok(StreamableHttpPostResponse::Sse(stream, id)), Some(router), Some(on)) => Ok(
                StreamableHttpPostResponse::Sse(router.watch(on, stream), id),
            ),
            (result, ..) => result,
        }
    }

    /// A client for a 2026-07-28 session: a broken response stream loses its
    /// own request (rmcp fails it as `TransportClosed`) without marking the
    /// transport dead, since each request is its own HTTP exchange and
    /// others sharing the client are unaffected.
    pub fn modern(mut self) -> Self {
        self.request_scoped_streams = true;
        self
    }

    /// Answers the first `server/discover` request with `result` itself,
    /// without sending it: how a session starts on a cached result.
    pub(crate) fn with_local_discover(self, result: Option<DiscoverResult>) -> Self {
        *self
            .local_discover
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = result;
        self
    }

    /// Whether a `server/discover` was answered from the local result.
    pub(crate) fn answered_locally(&self) -> bool {
        self.answered_locally.load(Ordering::Relaxed)
    }

    fn local_answer(&self, message: &ClientJsonRpcMessage) -> Option<StreamableHttpPostResponse> {
        let ClientJsonRpcMessage::Request(request) = message else {
            return None;
        };
        if !matches!(request.request, ClientRequest::DiscoverRequest(_)) {
            return None;
        }
        let result = self
            .local_discover
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        self.answered_locally.store(true, Ordering::Relaxed);
        Some(StreamableHttpPostResponse::Json(
            ServerJsonRpcMessage::response(
                ServerResult::DiscoverResult(result),
                request.id.clone(),
            ),
            None,
        ))
    }

    /// Sends every request to `endpoint`, whatever URL rmcp passes, so that
    /// rmcp can be given a URL without credentials.
    pub(crate) fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(Arc::from(endpoint));
        self
    }

    /// The cell this client records into.
    pub fn health(&self) -> &Health {
        &self.health
    }

    fn uri(&self, uri: Arc<str>) -> Arc<str> {
        self.endpoint.clone().unwrap_or(uri)
    }
}

impl<C> fmt::Debug for HealthClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthClient")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

type PostResult = Result<StreamableHttpPostResponse, StreamableHttpError<HttpError>>;
type SseResult = Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<HttpError>>;

impl<C> HealthClient<C> {
    async fn observe_post(&self, posted: Posted, result: PostResult) -> PostResult {
        match result {
            Ok(StreamableHttpPostResponse::Json(message, session_id)) => {
                self.health.record_session_id(session_id.as_deref());
                match judge_reply(&posted, &message) {
                    Verdict::Answer => Ok(StreamableHttpPostResponse::Json(message, session_id)),
                    Verdict::Lost(said) => {
                        self.health.mark_lost(&said);
                        Err(StreamableHttpError::SessionExpired)
                    }
                    Verdict::Recorrelate => {
                        let message = match (message, posted.request_id) {
                            (ServerJsonRpcMessage::Error(mut error), Some(id)) => {
                                error.id = Some(id);
                                ServerJsonRpcMessage::Error(error)
                            }
                            (message, _) => message,
                        };
                        Ok(StreamableHttpPostResponse::Json(message, session_id))
                    }
                }
            }
            Ok(StreamableHttpPostResponse::Sse(stream, session_id)) => {
                self.health.record_session_id(session_id.as_deref());
                if let Some(id) = &posted.request_id {
                    self.health.accepted(id);
                }
                let on_break = if self.request_scoped_streams {
                    OnBreak::LoseRequest
                } else if self.health.session_id().is_none() {
                    // Without a server-side session (legacy stateless), the
                    // session carries many callers' calls, each on a stream
                    // of its own: a break fails its own call only (rmcp
                    // cannot resume a stream without event ids, and ends
                    // that call at once).
                    OnBreak::Retire
                } else {
                    // A stateful session serves one caller at a time, whose
                    // calls at once each have a stream of their own: a
                    // break cuts its own call short (rmcp would hold it
                    // while it tries to resume the stream) and spares the
                    // others.
                    OnBreak::CutCall
                };
                let stream = Watched::new(stream, self.health.clone(), "response stream", on_break)
                    .of_request(posted.request_id.clone());
                if posted.initialize {
                    return match first_answer(stream).await {
                        Ok(stream) => Ok(StreamableHttpPostResponse::Sse(stream, session_id)),
                        Err(error) => {
                            self.health.record_failure("initialize", &error);
                            Err(error)
                        }
                    };
                }
                Ok(StreamableHttpPostResponse::Sse(stream.boxed(), session_id))
            }
            Ok(StreamableHttpPostResponse::Accepted) if posted.initialize => {
                let error = StreamableHttpError::UnexpectedServerResponse(Cow::Borrowed(
                    "the server accepted initialize without answering it (HTTP 202 or 204)",
                ));
                self.health.record_failure("initialize", &error);
                Err(error)
            }
            Ok(other) => Ok(other),
            Err(error) => {
                if let Some(said) = judge_failure(&posted, &error) {
                    self.health.mark_lost(&said);
                    return Err(StreamableHttpError::SessionExpired);
                }
                self.health.record_failure("POST", &error);
                Err(error)
            }
        }
    }

    /// What a GET (`resuming` a broken stream from its last event id, or
    /// opening the session's event stream) returned.
    fn observe_get(&self, session: bool, resuming: bool, result: SseResult) -> SseResult {
        if resuming && result.is_err() {
            self.health.mark_resume_failed();
        }
        match result {
            Ok(stream) => {
                // The event stream carries no call's answer; a resumed one
                // may, and a break of it leaves rmcp to try again (a failed
                // attempt cuts its call short, see `McpSession`).
                let what = if resuming {
                    "resumed stream"
                } else {
                    "event stream"
                };
                let stream =
                    Watched::new(stream, self.health.clone(), what, OnBreak::Retire).boxed();
                Ok(match &self.router {
                    Some(router) => router.watch(StreamOf::Session, stream),
                    None => stream,
                })
            }
            Err(error) => {
                if session && matches!(error, StreamableHttpError::SessionExpired) {
                    self.health
                        .mark_lost("HTTP 404 Not Found (on the event stream)");
                } else {
                    self.health.record_failure("GET", &error);
                }
                Err(error)
            }
        }
    }
}

impl<C: StreamableHttpClient + Sync> StreamableHttpClient for HealthClient<C> {
    type Error = HttpError;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        if let Some(answer) = self.local_answer(&message) {
            return Ok(answer);
        }
        let posted = Posted::of(&message, session_id.is_some());
        let on = self.stream_of(&message);
        let result = self
            .inner
            .post_message(
                self.uri(uri),
                message,
                session_id,
                auth_header,
                custom_headers,
            )
            .await
            .map_err(redacted);
        let result = self.observe_post(posted, result).await;
        self.routed(on, result)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        if let Some(answer) = self.local_answer(&message) {
            return Ok(answer);
        }
        let posted = Posted::of(&message, session_id.is_some());
        let on = self.stream_of(&message);
        let result = self
            .inner
            .post_message_with_max_sse_event_size(
                self.uri(uri),
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
            .map_err(redacted);
        let result = self.observe_post(posted, result).await;
        self.routed(on, result)
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        if let Some(answer) = self.local_answer(&message) {
            return Ok(answer);
        }
        let posted = Posted::of(&message, session_id.is_some());
        let on = self.stream_of(&message);
        let result = self
            .inner
            .post_message_with_response_limits(
                self.uri(uri),
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await
            .map_err(redacted);
        let result = self.observe_post(posted, result).await;
        self.routed(on, result)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        // Whatever the answer, the session is over once DELETE was sent.
        self.health
            .mark_dead("the session was closed (DELETE sent)");
        self.inner
            .delete_session(self.uri(uri), session_id, auth_header, custom_headers)
            .await
            .map_err(redacted)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let session = session_id.is_some();
        let resuming = last_event_id.is_some();
        let result = self
            .inner
            .get_stream(
                self.uri(uri),
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
            )
            .await
            .map_err(redacted);
        self.observe_get(session, resuming, result)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let session = session_id.is_some();
        let resuming = last_event_id.is_some();
        let result = self
            .inner
            .get_stream_with_max_sse_event_size(
                self.uri(uri),
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
            .map_err(redacted);
        self.observe_get(session, resuming, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HttpErrorKind;
    use futures_util::stream;
    use rmcp::model::{
        ClientRequest, ErrorCode, ErrorData, InitializeRequest, InitializeRequestParams,
        PingRequest, RequestId, ServerResult,
    };
    use std::sync::Mutex;

    type Answer = Arc<dyn Fn(&ClientJsonRpcMessage, bool) -> PostResult + Send + Sync>;

    /// An HTTP layer answering each POST with `answer(message, session
    /// attached)` and recording the URLs it was asked for.
    #[derive(Clone)]
    struct Canned {
        answer: Answer,
        uris: Arc<Mutex<Vec<String>>>,
    }

    impl Canned {
        fn new(
            answer: impl Fn(&ClientJsonRpcMessage, bool) -> PostResult + Send + Sync + 'static,
        ) -> Self {
            Canned {
                answer: Arc::new(answer),
                uris: Arc::default(),
            }
        }
    }

    impl StreamableHttpClient for Canned {
        type Error = HttpError;

        async fn post_message(
            &self,
            uri: Arc<str>,
            message: ClientJsonRpcMessage,
            session_id: Option<Arc<str>>,
            _auth_header: Option<String>,
            _custom_headers: HashMap<HeaderName, HeaderValue>,
        ) -> PostResult {
            self.uris.lock().unwrap().push(uri.to_string());
            (self.answer)(&message, session_id.is_some())
        }

        async fn delete_session(
            &self,
            _uri: Arc<str>,
            _session_id: Arc<str>,
            _auth_header: Option<String>,
            _custom_headers: HashMap<HeaderName, HeaderValue>,
        ) -> Result<(), StreamableHttpError<HttpError>> {
            Ok(())
        }

        async fn get_stream(
            &self,
            _uri: Arc<str>,
            _session_id: Option<Arc<str>>,
            _last_event_id: Option<String>,
            _auth_header: Option<String>,
            _custom_headers: HashMap<HeaderName, HeaderValue>,
        ) -> SseResult {
            Err(StreamableHttpError::ServerDoesNotSupportSse)
        }
    }

    fn ping(id: i64) -> ClientJsonRpcMessage {
        ClientJsonRpcMessage::request(
            ClientRequest::PingRequest(PingRequest::default()),
            RequestId::Number(id),
        )
    }

    fn initialize() -> ClientJsonRpcMessage {
        ClientJsonRpcMessage::request(
            ClientRequest::InitializeRequest(InitializeRequest::new(
                InitializeRequestParams::default(),
            )),
            RequestId::Number(0),
        )
    }

    fn id_of(message: &ClientJsonRpcMessage) -> RequestId {
        match message {
            ClientJsonRpcMessage::Request(request) => request.id.clone(),
            _ => panic!("a request"),
        }
    }

    fn ok(id: RequestId) -> PostResult {
        Ok(StreamableHttpPostResponse::Json(
            ServerJsonRpcMessage::response(ServerResult::empty(()), id),
            None,
        ))
    }

    fn id_less_error() -> PostResult {
        Ok(StreamableHttpPostResponse::Json(
            ServerJsonRpcMessage::error(
                ErrorData::new(
                    ErrorCode(-32000),
                    "Bad Request: No valid session ID provided",
                    None,
                ),
                None,
            ),
            None,
        ))
    }

    async fn post(
        client: &HealthClient<Canned>,
        message: ClientJsonRpcMessage,
        session: bool,
    ) -> PostResult {
        client
            .post_message(
                Arc::from("http://127.0.0.1:1/mcp"),
                message,
                session.then(|| Arc::from("s-1")),
                None,
                HashMap::new(),
            )
            .await
    }

    #[tokio::test]
    async fn only_the_refused_request_fails_as_refused() {
        // Request 2 is refused as on a forgotten session; request 1 (in
        // flight at the same time) gets its real answer.
        let canned = Canned::new(|message, _| match id_of(message) {
            RequestId::Number(2) => id_less_error(),
            id => ok(id),
        });
        let client = HealthClient::new(canned, Health::new());
        let refused = post(&client, ping(2), true).await;
        assert!(matches!(refused, Err(StreamableHttpError::SessionExpired)));
        let health = client.health();
        assert!(health.is_dead());
        assert_eq!(
            health.lost(),
            Some("error -32000: Bad Request: No valid session ID provided")
        );
        let answered = post(&client, ping(1), true).await;
        assert!(matches!(
            answered,
            Ok(StreamableHttpPostResponse::Json(
                ServerJsonRpcMessage::Response(_),
                _
            ))
        ));
    }

    #[tokio::test]
    async fn without_a_session_an_id_less_error_answers_the_request() {
        let client = HealthClient::new(Canned::new(|_, _| id_less_error()), Health::new());
        let answer = post(&client, ping(5), false).await;
        let Ok(StreamableHttpPostResponse::Json(ServerJsonRpcMessage::Error(error), _)) = answer
        else {
            panic!("expected the error, delivered");
        };
        assert_eq!(error.id, Some(RequestId::Number(5)));
        assert_eq!(error.error.code, ErrorCode(-32000));
        assert!(!client.health().is_dead(), "the server answered");
    }

    fn sse(events: Vec<Result<Sse, SseError>>) -> PostResult {
        Ok(StreamableHttpPostResponse::Sse(
            stream::iter(events).boxed(),
            Some("s-1".into()),
        ))
    }

    fn event(data: &str) -> Result<Sse, SseError> {
        Ok(Sse {
            data: Some(data.to_owned()),
            ..Sse::default()
        })
    }

    #[tokio::test]
    async fn the_answer_to_initialize_is_read_up_to_its_response() {
        let answer = r#"{"jsonrpc":"2.0","id":0,"result":{}}"#;
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hi"}}"#;
        let client = HealthClient::new(
            Canned::new(move |_, _| sse(vec![event(""), event(log), event(answer)])),
            Health::new(),
        );
        let Ok(StreamableHttpPostResponse::Sse(stream, Some(id))) =
            post(&client, initialize(), false).await
        else {
            panic!("expected the stream");
        };
        assert_eq!(id, "s-1");
        let events: Vec<_> = stream.collect().await;
        assert_eq!(events.len(), 3, "everything read is passed on");
        assert_eq!(client.health().session_id().as_deref(), Some("s-1"));
    }

    #[tokio::test]
    async fn an_unusable_answer_to_initialize_fails_with_what_was_sent() {
        let cases: Vec<(PostResult, &str)> = vec![
            (sse(vec![event("{this is not json")]), "{this is not json"),
            (sse(vec![event("")]), "ended without a response"),
            (
                sse(vec![Err(SseError::Body(Box::new(std::io::Error::other(
                    "reset by http://h/mcp?k=SECRET",
                ))))]),
                "reset",
            ),
            (
                Ok(StreamableHttpPostResponse::Accepted),
                "without answering",
            ),
        ];
        for (answer, words) in cases {
            let answer = Mutex::new(Some(answer));
            let client = HealthClient::new(
                Canned::new(move |_, _| answer.lock().unwrap().take().unwrap()),
                Health::new(),
            );
            let error = match post(&client, initialize(), false).await {
                Err(error) => error,
                Ok(_) => panic!("`{words}`: expected a failure"),
            };
            let shown = format!("{} {:?}", crate::describe(&error), client.health());
            assert!(shown.contains(words), "{shown}");
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(client.health().is_dead(), "{shown}");
        }
    }

    #[tokio::test]
    async fn requests_go_to_the_endpoint_and_errors_lose_urls() {
        let canned = Canned::new(|_, _| {
            Err(StreamableHttpError::Client(HttpError::new(
                HttpErrorKind::Connect,
                "refused by http://user:pw@h/mcp?token=SECRET",
            )))
        });
        let client = HealthClient::new(canned.clone(), Health::new())
            .with_endpoint("http://127.0.0.1:9/mcp?token=SECRET");
        let error = match post(&client, ping(1), false).await {
            Err(error) => error,
            Ok(_) => panic!("expected the refusal"),
        };
        assert_eq!(
            canned.uris.lock().unwrap().as_slice(),
            ["http://127.0.0.1:9/mcp?token=SECRET"]
        );
        let shown = format!("{error} {error:?} {:?}", client.health());
        assert!(
            !shown.contains("SECRET") && !shown.contains("pw@"),
            "{shown}"
        );
        let StreamableHttpError::Client(http) = &error else {
            panic!("a client error: {error}");
        };
        assert!(http.is_connect());
    }
}
