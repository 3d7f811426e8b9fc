//! The connector's error type and its classification into pool outcomes.

use std::time::Duration;

use mcp_pool::Outcome;
use rmcp::model::{CallToolResult, ErrorCode};
use rmcp::service::ClientInitializeError;
use rmcp::ServiceError;

use crate::http::HttpFailure;
use crate::{CheckStep, KeyError};

/// What opening, checking or using an MCP session failed with.
///
/// Every variant says what happened; none carries a header value. A use's
/// error maps to a pool [`Outcome`] with [`Error::outcome`] (the table is in
/// the [crate docs](crate#error-classification)).
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
        /// The endpoint, without its query.
        url: String,
        /// The root cause in words (connect error, HTTP status, content
        /// type...), without the request URL.
        cause: String,
        /// What rmcp reported.
        #[source]
        source: Box<ClientInitializeError>,
    },
    /// The `initialize` handshake did not finish within the
    /// `initialize_timeout`. Nothing was pooled.
    #[error("the MCP server at {url} did not complete `initialize` within {after:?}")]
    InitializeTimedOut {
        /// The endpoint, without its query.
        url: String,
        /// The timeout that passed.
        after: Duration,
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

/// rmcp's error in words: a transport error is described by its HTTP cause
/// (without rmcp's transport type name and without the request URL).
fn describe_service(error: &ServiceError) -> String {
    match error {
        ServiceError::TransportSend(e) => match HttpFailure::find(e.error.as_ref()) {
            Some(http) => format!("transport error: {}", http.describe()),
            None => format!("transport error: {}", e.error),
        },
        ServiceError::McpError(data) => {
            format!(
                "the server answered error {}: {}",
                data.code.0, data.message
            )
        }
        other => other.to_string(),
    }
}

/// The root cause of a failed `initialize`, in words, without the request
/// URL (which may carry a token in its query).
pub(crate) fn describe_initialize(error: &ClientInitializeError) -> String {
    match error {
        ClientInitializeError::TransportError { error, context } => {
            let cause = match HttpFailure::find(error.error.as_ref()) {
                Some(http) => http.describe(),
                None => error.error.to_string(),
            };
            format!("{cause} (while trying to {context})")
        }
        other => other.to_string(),
    }
}

impl Error {
    /// How the use that failed with this error ended, for the pool: see the
    /// table in the [crate docs](crate#error-classification).
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Service { source, .. } => classify_service_error(source),
            Error::TimedOut { .. } => Outcome::Timeout,
            Error::Tool { .. } => Outcome::ApplicationError,
            Error::Key(_)
            | Error::HttpClient(_)
            | Error::Initialize { .. }
            | Error::InitializeTimedOut { .. }
            | Error::TransportClosed { .. }
            | Error::CheckFailed { .. }
            | Error::CheckUnsupported { .. } => Outcome::TransportError,
        }
    }

    /// Whether the server provably never accepted the request, so running it
    /// again on another session cannot run it twice: the request was refused
    /// with HTTP 404 (`SessionExpired`: the server does not know the session
    /// and processed nothing), its connection could not be opened, or it was
    /// not sent because the transport was already dead. A request that
    /// timed out or whose stream broke is never in this set.
    pub fn is_safe_to_retry(&self) -> bool {
        match self {
            Error::TransportClosed { sent, .. } => !sent,
            Error::Service {
                source: ServiceError::TransportSend(e),
                ..
            } => HttpFailure::find(e.error.as_ref())
                .is_some_and(|http| http.never_reached_the_server()),
            _ => false,
        }
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
        ServiceError::TransportSend(e) => match HttpFailure::find(e.error.as_ref()) {
            Some(http) if !http.is_fatal() => Outcome::ApplicationError,
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

    fn send_error(e: StreamableHttpError<reqwest::Error>) -> ServiceError {
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
        service(ServiceError::TransportSend(
            DynamicTransportError::from_parts("test", std::any::TypeId::of::<()>(), Box::new(e)),
        ))
    }

    #[test]
    fn a_plugged_clients_errors_classify_like_reqwests() {
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
    fn method_not_found_is_recognized() {
        let nf = service(ServiceError::McpError(ErrorData::method_not_found::<
            rmcp::model::PingRequestMethod,
        >()));
        assert!(nf.is_method_not_found());
        let other = service(ServiceError::McpError(ErrorData::invalid_params("x", None)));
        assert!(!other.is_method_not_found());
    }
}
