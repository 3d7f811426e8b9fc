//! The connector's error type and its classification into pool outcomes.

use std::time::Duration;

use mcp_pool::{ConnectFailure, Outcome};
use rmcp::model::{CallToolResult, ErrorCode, InputRequiredResult};
use rmcp::service::ClientInitializeError;
use rmcp::transport::streamable_http_client::{SseError, StreamableHttpError};
use rmcp::ServiceError;

use crate::detect::initialize_refused_as_modern;
use crate::http::{find_failure, never_reached_the_server, status_in_words};
use crate::redact::redact_urls;
use crate::{describe, is_fatal, CheckStep, Era, Health, HttpError, HttpErrorKind, KeyError};

/// What opening, checking or using an MCP session failed with.
///
/// Every variant says what happened; none carries a header value, and no
/// URL with its user info or query values: neither the message, nor `Debug`
/// output, nor any error of the [`source`](std::error::Error::source) chain
/// (rmcp's errors are kept for programmatic matching, and every HTTP failure
/// inside them is an [`HttpError`] with URLs redacted). A use's error maps
/// to a pool [`Outcome`] with [`Error::outcome`] (the table is in the [crate
/// docs](crate#error-classification)); a connect's error says what it tells
/// of the server with [`Error::connect_failure`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key could not be built (bad URL or header).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The HTTP client could not be built (an invalid root certificate), or
    /// cannot reach this URL (`https://` without the `tls` feature).
    #[error("HTTP client: {0}")]
    HttpClient(String),
    /// The server did not complete the MCP `initialize` handshake: it is
    /// unreachable, refused the connection, answered with something that is
    /// not MCP (an HTML page, HTTP 500, an unparsable event stream), or
    /// answered `initialize` with an error. Nothing was pooled.
    #[error("could not open an MCP session with {url}: {cause}")]
    Initialize {
        /// The endpoint, its query values replaced.
        url: String,
        /// What the server said or what broke, in words (`HTTP 500`, the
        /// content type it answered with, its JSON-RPC code and message, a
        /// refused connection), without any URL's credentials.
        cause: String,
        /// What the failure tells of the server (see
        /// [`Error::connect_failure`]), decided when the error was made.
        failure: ConnectFailure,
        /// What rmcp reported.
        #[source]
        source: Box<ClientInitializeError>,
    },
    /// The `initialize` handshake did not finish within the
    /// `initialize_timeout`. Nothing was pooled.
    #[error("the MCP server at {url} did not complete `initialize` within {after:?}")]
    InitializeTimedOut {
        /// The endpoint, its query values replaced.
        url: String,
        /// The timeout that passed.
        after: Duration,
    },
    /// `server/discover` did not open a 2026-07-28 session: the server
    /// refused it with a modern error (-32020 header mismatch, -32021
    /// missing required client capability), shares no protocol version with
    /// this client, could not be reached, did not answer in time, or (under
    /// [`EraPolicy::Modern`](crate::EraPolicy::Modern)) answered like a
    /// legacy server. Nothing was pooled.
    #[error("could not open an MCP 2026-07-28 session with {url}: {cause}")]
    Discover {
        /// The endpoint, its query values replaced.
        url: String,
        /// What the server said or what broke, in words.
        cause: String,
        /// What the failure tells of the server (see
        /// [`Error::connect_failure`]).
        failure: ConnectFailure,
        /// The failed request, when there was one.
        #[source]
        source: Option<Box<Error>>,
    },
    /// The server refused a request as one of another protocol era: it was
    /// upgraded to 2026-07-28 or downgraded from it in place (see the
    /// [crate docs](crate#protocol-eras)). The refusal came before anything
    /// ran, so the request is safe to run again on another session; this
    /// session is dead and the origin's era is detected again on the next
    /// connect.
    #[error(
        "the MCP server no longer speaks the {era} protocol era: it refused `{method}` with {said}"
    )]
    EraChanged {
        /// The MCP method refused.
        method: &'static str,
        /// The era the session was opened in.
        era: Era,
        /// What the server answered, URLs redacted.
        said: String,
    },
    /// A request got an error from rmcp: the server's JSON-RPC error
    /// ([`ServiceError::McpError`]) or a transport failure.
    #[error("MCP request `{method}` failed: {}", describe_service(source))]
    Service {
        /// The MCP method, such as `tools/call`.
        method: &'static str,
        /// What rmcp reported.
        #[source]
        source: ServiceError,
    },
    /// A request got no answer within its timeout (`request_timeout`, or the
    /// check timeout for a health check). The server may still process it.
    #[error("MCP request `{method}` got no answer within {after:?}")]
    TimedOut {
        /// The MCP method.
        method: &'static str,
        /// The timeout that passed.
        after: Duration,
    },
    /// A paginated listing's server sent, as the next page's cursor, a
    /// cursor it had already sent in this listing: following it would page
    /// forever. Every answer was whole, so the session is fine; the
    /// server's list is not.
    #[error(
        "the MCP server's `{method}` pages loop: it sent the cursor {} a second time",
        shown_cursor(cursor)
    )]
    PagesLoop {
        /// The MCP method, such as `tools/list`.
        method: &'static str,
        /// The cursor the server sent again.
        cursor: String,
    },
    /// The server answered that it does not know the session (it forgot or
    /// expired it, or restarted): one of the answers in the [crate
    /// docs](crate#session-loss). The server refused the request without
    /// processing it, so it is safe to run again on another session; the
    /// session is dead.
    #[error("the MCP server forgot the session: it refused `{method}` with {said}")]
    SessionLost {
        /// The MCP method refused.
        method: &'static str,
        /// What the server answered (status, JSON-RPC code and message, or
        /// its text), URLs redacted.
        said: String,
    },
    /// The session's transport is dead (see
    /// [`McpSession::closed_reason`](crate::McpSession::closed_reason)).
    /// `sent` says whether the request had been handed to the transport: if
    /// not, the server never saw it.
    #[error("the MCP session's transport is dead ({reason}); `{method}` was {}", if *sent { "interrupted" } else { "not sent" })]
    TransportClosed {
        /// The MCP method.
        method: &'static str,
        /// Why the transport is considered dead.
        reason: String,
        /// Whether the request had been sent.
        sent: bool,
    },
    /// A tool ran and reported failure (`CallToolResult { is_error: true }`):
    /// an application error, the session is healthy.
    #[error("the tool `{tool}` reported an error: {message}")]
    Tool {
        /// The tool called.
        tool: String,
        /// The text content of the result, joined (empty if none).
        message: String,
        /// The full result.
        result: Box<CallToolResult>,
    },
    /// A 2026-07-28 server answered with a request for input (MRTR,
    /// `InputRequiredResult`): the result is returned untouched, for the
    /// caller to fulfil (or relay to its own client) and retry the request
    /// with `inputResponses` and `requestState`, on any session. An
    /// application error: the session is healthy.
    #[error(
        "the MCP server needs input to answer `{method}` ({} input request(s)); retry with inputResponses",
        result.input_requests.as_ref().map_or(0, |r| r.len())
    )]
    InputRequired {
        /// The MCP method.
        method: &'static str,
        /// The server's answer, untouched.
        result: Box<InputRequiredResult>,
    },
    /// A health check step failed.
    #[error("health check `{step}` failed: {source}")]
    CheckFailed {
        /// The step that failed.
        step: CheckStep,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// Every step of the health check chain answered "method not found" and
    /// the chain does not end with [`CheckStep::Skip`].
    #[error("the server supports none of the health check methods {tried:?}")]
    CheckUnsupported {
        /// The methods tried.
        tried: Vec<CheckStep>,
    },
}

/// A server's cursor as an error shows it: quoted, and cut after 64
/// characters (a cursor is the server's opaque text, of any length).
fn shown_cursor(cursor: &str) -> String {
    const SHOWN: usize = 64;
    match cursor.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &cursor[..cut], cursor.len()),
        None => format!("{cursor:?}"),
    }
}

/// rmcp's error in words: a transport error is described by its HTTP cause
/// (without rmcp's transport type name and without the request URL).
fn describe_service(error: &ServiceError) -> String {
    match error {
        ServiceError::TransportSend(e) => match find_failure(e.error.as_ref()) {
            Some(http) => format!("transport error: {}", describe(http)),
            None => format!("transport error: {}", redact_urls(&e.error.to_string())),
        },
        ServiceError::McpError(data) => {
            format!(
                "the server answered error {}: {}",
                data.code.0, data.message
            )
        }
        other => redact_urls(&other.to_string()),
    }
}

/// Whether rmcp's `error` still carries what went wrong (an HTTP failure or
/// the server's answer), rather than only that its worker stopped.
fn carries_the_cause(error: &ClientInitializeError) -> bool {
    match error {
        ClientInitializeError::TransportError { error, .. } => find_failure(error.error.as_ref())
            .is_some_and(|http| !matches!(http, StreamableHttpError::TransportChannelClosed)),
        ClientInitializeError::ConnectionClosed(_) => false,
        _ => true,
    }
}

/// The root cause of a failed `initialize`, in words, without the request
/// URL (which may carry a token in its query).
fn describe_initialize(error: &ClientInitializeError) -> String {
    let text = match error {
        ClientInitializeError::TransportError { error, context } => {
            let cause = match find_failure(error.error.as_ref()) {
                Some(http) => describe(http),
                None => error.error.to_string(),
            };
            format!("{cause} (while trying to {context})")
        }
        ClientInitializeError::JsonRpcError(data) => format!(
            "the server answered initialize with error {}: {}",
            data.code.0, data.message
        ),
        other => other.to_string(),
    };
    redact_urls(&text)
}

/// Whether HTTP `status` says the server is temporarily unavailable:
/// 429 Too Many Requests, 502 Bad Gateway, 503 Service Unavailable, 504
/// Gateway Timeout.
fn is_temporary(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// What a failed HTTP exchange of a connect tells of the server; the rows
/// are those of [`Error::connect_failure`].
pub(crate) fn http_connect_failure(error: &StreamableHttpError<HttpError>) -> ConnectFailure {
    use ConnectFailure::{Failed, Rejected};
    use StreamableHttpError as S;
    match error {
        S::Client(e) => match e.kind() {
            HttpErrorKind::Connect | HttpErrorKind::Timeout | HttpErrorKind::Io => Failed,
            _ => Rejected,
        },
        S::HttpStatus(status) if is_temporary(status.status) => Failed,
        S::HttpStatus(_) => Rejected,
        S::UnexpectedServerResponse(text) => match status_in_words(text) {
            Some(status) if is_temporary(status) => Failed,
            _ => Rejected,
        },
        S::Sse(SseError::Body(_)) => Failed,
        S::Sse(_)
        | S::UnexpectedContentType(_)
        | S::Deserialize(_)
        | S::ResponseBodyTooLarge { .. }
        | S::MissingSessionIdInResponse
        | S::AuthRequired(_)
        | S::InsufficientScope(_)
        | S::ReservedHeaderConflict(_)
        | S::SessionExpired
        | S::ReinitializationFailed(_) => Rejected,
        _ => Failed,
    }
}

/// What a failed `initialize` tells of the server: the HTTP failure rmcp
/// reports, or the first one `health` recorded when rmcp only reports that
/// its worker stopped; an answer that is not a session is a rejection.
fn initialize_connect_failure(error: &ClientInitializeError, health: &Health) -> ConnectFailure {
    use ClientInitializeError as I;
    match error {
        I::TransportError { error, .. } => match find_failure(error.error.as_ref()) {
            Some(StreamableHttpError::TransportChannelClosed) | None => {
                health.first_failure().unwrap_or(ConnectFailure::Failed)
            }
            Some(http) => http_connect_failure(http),
        },
        I::JsonRpcError(_)
        | I::UncorrelatedErrorResponse { .. }
        | I::ExpectedInitResponse(_)
        | I::ExpectedInitResult(_)
        | I::ConflictInitResponseId(..)
        | I::NoCompatibleProtocolVersion { .. } => ConnectFailure::Rejected,
        I::ConnectionClosed(_) => health.first_failure().unwrap_or(ConnectFailure::Failed),
        _ => ConnectFailure::Failed,
    }
}

impl Error {
    /// The error of a failed `initialize` with `url`: rmcp's `source`,
    /// described and classified with what `health` (the session's cell)
    /// recorded of the HTTP exchanges when rmcp's error no longer says.
    pub(crate) fn initialize(url: String, source: ClientInitializeError, health: &Health) -> Error {
        let mut cause = describe_initialize(&source);
        if !carries_the_cause(&source) {
            if let Some(reason) = health.reason() {
                cause = format!("{reason} ({cause})");
            }
        }
        Error::Initialize {
            url,
            failure: initialize_connect_failure(&source, health),
            cause,
            source: Box::new(source),
        }
    }

    /// What this error, returned by a connect, tells of the server, for
    /// [`Connector::classify_connect`](mcp_pool::Connector::classify_connect):
    ///
    /// | what happened | answer |
    /// |---|---|
    /// | connection refused or reset, an I/O error, a connect or read timeout | `Failed` |
    /// | HTTP 429, 502, 503, 504 (as a status, or in words `HTTP 503 ...`) | `Failed` |
    /// | any other HTTP error status (400, 401, 403, 404, 500, ...) | `Rejected` |
    /// | a body that is not MCP: a content type other than JSON or an event stream, unparsable JSON, an unparsable event stream, an answer without a response, one over the size limit | `Rejected` |
    /// | a JSON-RPC error (or any answer that is not an `initialize` result) to `initialize`, no compatible protocol version | `Rejected` |
    /// | an event stream whose body broke mid-answer | `Failed` |
    /// | a request the HTTP client could not make or a malformed exchange ([`HttpErrorKind::Other`]) | `Rejected` |
    /// | rmcp's worker stopped without saying why: what the session's first failed HTTP exchange says, else `Failed` | |
    /// | [`Error::InitializeTimedOut`] | `Failed` (the pool reports its own deadline as `TimedOut`) |
    /// | [`Error::HttpClient`], [`Error::Key`]: no attempt can succeed | `Rejected` |
    /// | any other error (not a connect's) | `Failed` |
    ///
    /// `Rejected` lets every caller waiting for that connect learn the
    /// server's answer at once; `Failed` makes them wait for the next
    /// attempt, as a server that is restarting or overloaded may answer it.
    pub fn connect_failure(&self) -> ConnectFailure {
        match self {
            Error::Initialize { failure, .. } | Error::Discover { failure, .. } => *failure,
            Error::HttpClient(_) | Error::Key(_) => ConnectFailure::Rejected,
            _ => ConnectFailure::Failed,
        }
    }

    /// How the use that failed with this error ended, for the pool: see the
    /// table in the [crate docs](crate#error-classification).
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Service { source, .. } => classify_service_error(source),
            Error::TimedOut { .. } => Outcome::Timeout,
            Error::Tool { .. } | Error::InputRequired { .. } | Error::PagesLoop { .. } => {
                Outcome::ApplicationError
            }
            Error::Key(_)
            | Error::HttpClient(_)
            | Error::Initialize { .. }
            | Error::InitializeTimedOut { .. }
            | Error::Discover { .. }
            | Error::EraChanged { .. }
            | Error::SessionLost { .. }
            | Error::TransportClosed { .. }
            | Error::CheckFailed { .. }
            | Error::CheckUnsupported { .. } => Outcome::TransportError,
        }
    }

    /// Whether the server provably never accepted the request, so running it
    /// again on another session cannot run it twice: the server answered
    /// that it does not know the session ([`Error::SessionLost`], or
    /// `SessionExpired` in rmcp's error: it processed nothing), the
    /// request's connection could not be opened, or it was not sent because
    /// the transport was already dead. A request that timed out or whose
    /// stream broke is never in this set.
    pub fn is_safe_to_retry(&self) -> bool {
        match self {
            Error::SessionLost { .. } | Error::EraChanged { .. } => true,
            Error::TransportClosed { sent, .. } => !sent,
            Error::Service {
                source: ServiceError::TransportSend(e),
                ..
            } => find_failure(e.error.as_ref()).is_some_and(never_reached_the_server),
            _ => false,
        }
    }

    /// Whether this is a failed `initialize` that a 2026-07-28 server
    /// refused as such (-32022 unsupported protocol version, -32020, or
    /// -32602 asking for the `_meta` protocol version): the origin is modern.
    pub(crate) fn is_modern_refusal_of_initialize(&self) -> bool {
        matches!(
            self,
            Error::Initialize { source, .. }
                if matches!(&**source, ClientInitializeError::JsonRpcError(data) if initialize_refused_as_modern(data))
        )
    }

    /// Whether this is the server's JSON-RPC "method not found" (-32601).
    pub fn is_method_not_found(&self) -> bool {
        matches!(
            self,
            Error::Service {
                source: ServiceError::McpError(data),
                ..
            } if data.code == ErrorCode::METHOD_NOT_FOUND
        )
    }
}

/// How a use that failed with rmcp's `error` ended, for the pool (the
/// `ServiceError` rows of the [crate docs' table](crate#error-classification)).
pub fn classify_service_error(error: &ServiceError) -> Outcome {
    match error {
        ServiceError::McpError(_)
        | ServiceError::SubscriptionLagged { .. }
        | ServiceError::InputRequiredRoundsExceeded { .. } => Outcome::ApplicationError,
        ServiceError::TransportSend(e) => match find_failure(e.error.as_ref()) {
            Some(http) if !is_fatal(http) => Outcome::ApplicationError,
            _ => Outcome::TransportError,
        },
        ServiceError::Timeout { .. } => Outcome::Timeout,
        ServiceError::Cancelled { .. } => Outcome::Cancelled,
        ServiceError::TransportClosed | ServiceError::UnexpectedResponse => Outcome::TransportError,
        _ => Outcome::TransportError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HttpError, HttpErrorKind};
    use rmcp::model::ErrorData;
    use rmcp::transport::streamable_http_client::HttpStatusError;
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    use rmcp::transport::DynamicTransportError;

    fn send_error(e: StreamableHttpError<HttpError>) -> ServiceError {
        ServiceError::TransportSend(DynamicTransportError::from_parts(
            "test",
            std::any::TypeId::of::<()>(),
            Box::new(e),
        ))
    }

    fn service(source: ServiceError) -> Error {
        Error::Service {
            method: "tools/call",
            source,
        }
    }

    #[test]
    fn every_rmcp_error_maps_to_the_documented_outcome() {
        let cases: Vec<(ServiceError, Outcome)> = vec![
            (
                ServiceError::McpError(ErrorData::invalid_params("no such tool", None)),
                Outcome::ApplicationError,
            ),
            (
                send_error(StreamableHttpError::SessionExpired),
                Outcome::TransportError,
            ),
            (
                send_error(StreamableHttpError::HttpStatus(HttpStatusError::new(
                    503, None,
                ))),
                Outcome::TransportError,
            ),
            (
                send_error(StreamableHttpError::HttpStatus(HttpStatusError::new(
                    429, None,
                ))),
                Outcome::ApplicationError,
            ),
            (
                send_error(StreamableHttpError::ResponseBodyTooLarge { max_size: 1 }),
                Outcome::ApplicationError,
            ),
            (
                send_error(StreamableHttpError::UnexpectedContentType(None)),
                Outcome::TransportError,
            ),
            (ServiceError::TransportClosed, Outcome::TransportError),
            (ServiceError::UnexpectedResponse, Outcome::TransportError),
            (
                ServiceError::SubscriptionLagged { capacity: 1 },
                Outcome::ApplicationError,
            ),
            (ServiceError::Cancelled { reason: None }, Outcome::Cancelled),
            (
                ServiceError::Timeout {
                    timeout: Duration::from_secs(1),
                },
                Outcome::Timeout,
            ),
            (
                ServiceError::InputRequiredRoundsExceeded { max_rounds: 3 },
                Outcome::ApplicationError,
            ),
        ];
        for (error, expected) in cases {
            let shown = error.to_string();
            assert_eq!(classify_service_error(&error), expected, "{shown}");
            assert_eq!(service(error).outcome(), expected, "{shown}");
        }
    }

    #[test]
    fn own_errors_map_to_outcomes() {
        let tool = Error::Tool {
            tool: "fail".into(),
            message: "boom".into(),
            result: Box::new(CallToolResult::error(vec![])),
        };
        assert_eq!(tool.outcome(), Outcome::ApplicationError);
        let timed_out = Error::TimedOut {
            method: "ping",
            after: Duration::from_secs(1),
        };
        assert_eq!(timed_out.outcome(), Outcome::Timeout);
        let closed = Error::TransportClosed {
            method: "ping",
            reason: "gone".into(),
            sent: false,
        };
        assert_eq!(closed.outcome(), Outcome::TransportError);
        assert!(closed.is_safe_to_retry());
        assert!(!timed_out.is_safe_to_retry());
        assert!(service(send_error(StreamableHttpError::SessionExpired)).is_safe_to_retry());
        assert!(
            !service(send_error(StreamableHttpError::UnexpectedEndOfStream)).is_safe_to_retry()
        );
    }

    fn plugged(e: StreamableHttpError<HttpError>) -> Error {
        service(send_error(e))
    }

    #[test]
    fn http_errors_classify_by_kind() {
        let refused = plugged(StreamableHttpError::Client(HttpError::new(
            HttpErrorKind::Connect,
            "refused",
        )));
        assert_eq!(refused.outcome(), Outcome::TransportError);
        assert!(refused.is_safe_to_retry());
        assert!(refused.to_string().contains("connect error: refused"));
        let broken = plugged(StreamableHttpError::Client(HttpError::new(
            HttpErrorKind::Io,
            "reset",
        )));
        assert_eq!(broken.outcome(), Outcome::TransportError);
        assert!(!broken.is_safe_to_retry());
        let expired = plugged(StreamableHttpError::SessionExpired);
        assert!(expired.is_safe_to_retry());
        let busy = plugged(StreamableHttpError::HttpStatus(HttpStatusError::new(
            429, None,
        )));
        assert_eq!(busy.outcome(), Outcome::ApplicationError);
    }

    #[test]
    fn a_lost_session_is_a_transport_error_safe_to_retry() {
        let lost = Error::SessionLost {
            method: "tools/call",
            said: "error -32000: Bad Request: No valid session ID provided".into(),
        };
        assert_eq!(lost.outcome(), Outcome::TransportError);
        assert!(lost.is_safe_to_retry());
        let shown = lost.to_string();
        assert!(shown.contains("forgot the session"), "{shown}");
        assert!(shown.contains("No valid session ID provided"), "{shown}");
        assert!(shown.contains("tools/call"), "{shown}");
    }

    fn transport(e: StreamableHttpError<HttpError>) -> ClientInitializeError {
        ClientInitializeError::TransportError {
            error: DynamicTransportError::from_parts(
                "test",
                std::any::TypeId::of::<()>(),
                Box::new(e),
            ),
            context: "send initialize request".into(),
        }
    }

    fn initialize(source: ClientInitializeError, health: &Health) -> Error {
        Error::initialize("http://h/mcp".into(), source, health)
    }

    #[test]
    fn every_connect_failure_row() {
        use ConnectFailure::{Failed, Rejected};
        use StreamableHttpError as S;
        let client = |kind| S::Client(HttpError::new(kind, "x"));
        let status = |code| S::HttpStatus(HttpStatusError::new(code, None));
        let words = |text: &'static str| S::UnexpectedServerResponse(text.into());
        let bad_json = rmcp::serde_json::from_str::<u8>("{").unwrap_err();
        let rows: Vec<(StreamableHttpError<HttpError>, ConnectFailure)> = vec![
            (client(HttpErrorKind::Connect), Failed),
            (client(HttpErrorKind::Timeout), Failed),
            (client(HttpErrorKind::Io), Failed),
            (S::Io(std::io::Error::other("reset")), Failed),
            (status(429), Failed),
            (status(502), Failed),
            (status(503), Failed),
            (status(504), Failed),
            (words("HTTP 503 Service Unavailable: restarting"), Failed),
            (words("HTTP 429 Too Many Requests: slow down"), Failed),
            (
                S::Sse(SseError::Body(Box::new(std::io::Error::other("reset")))),
                Failed,
            ),
            (S::UnexpectedEndOfStream, Failed),
            (S::TransportChannelClosed, Failed),
            (status(500), Rejected),
            (status(501), Rejected),
            (words("HTTP 400 Bad Request: no"), Rejected),
            (words("HTTP 401 Unauthorized: who are you"), Rejected),
            (words("HTTP 403 Forbidden: no"), Rejected),
            (words("HTTP 404 Not Found: "), Rejected),
            (
                words("could not parse JSON response as ServerJsonRpcMessage"),
                Rejected,
            ),
            (S::UnexpectedContentType(Some("text/html".into())), Rejected),
            (S::UnexpectedContentType(None), Rejected),
            (S::Sse(SseError::InvalidLine), Rejected),
            (S::Deserialize(bad_json), Rejected),
            (S::ResponseBodyTooLarge { max_size: 1 }, Rejected),
            (S::MissingSessionIdInResponse, Rejected),
            (S::SessionExpired, Rejected),
            (client(HttpErrorKind::Other), Rejected),
        ];
        for (http, expected) in rows {
            let shown = http.to_string();
            let health = Health::new();
            let error = initialize(transport(http), &health);
            assert_eq!(error.connect_failure(), expected, "{shown}");
            assert!(
                !matches!(&error, Error::Initialize { cause, .. } if cause.is_empty()),
                "{shown}"
            );
        }
        let health = Health::new();
        let json_rpc = initialize(
            ClientInitializeError::JsonRpcError(ErrorData::new(
                ErrorCode(-32022),
                "Unsupported protocol version",
                None,
            )),
            &health,
        );
        assert_eq!(json_rpc.connect_failure(), Rejected);
        assert!(
            json_rpc
                .to_string()
                .contains("-32022: Unsupported protocol version"),
            "{json_rpc}"
        );
        let timed_out = Error::InitializeTimedOut {
            url: "http://h/mcp".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(timed_out.connect_failure(), Failed);
        assert_eq!(
            Error::HttpClient("no tls".into()).connect_failure(),
            Rejected
        );
    }

    #[test]
    fn a_stopped_worker_is_classified_by_the_first_failed_exchange() {
        use ConnectFailure::{Failed, Rejected};
        let closed = || ClientInitializeError::ConnectionClosed("initialize response".into());
        assert_eq!(
            initialize(closed(), &Health::new()).connect_failure(),
            Failed
        );
        let health = Health::new();
        health.record_failure(
            "POST",
            &StreamableHttpError::HttpStatus(HttpStatusError::new(500, None)),
        );
        let error = initialize(closed(), &health);
        assert_eq!(error.connect_failure(), Rejected);
        assert!(error.to_string().contains("HTTP 500"), "{error}");
        let channel = initialize(
            transport(StreamableHttpError::TransportChannelClosed),
            &health,
        );
        assert_eq!(channel.connect_failure(), Rejected);
        assert!(channel.to_string().contains("HTTP 500"), "{channel}");
    }

    #[test]
    fn method_not_found_is_recognized() {
        let nf = service(ServiceError::McpError(ErrorData::method_not_found::<
            rmcp::model::PingRequestMethod,
        >()));
        assert!(nf.is_method_not_found());
        let other = service(ServiceError::McpError(ErrorData::invalid_params("x", None)));
        assert!(!other.is_method_not_found());
    }
}
