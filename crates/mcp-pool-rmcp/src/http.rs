//! Plugging in an HTTP layer other than reqwest.

use std::borrow::Cow;
use std::fmt;

use rmcp::transport::streamable_http_client::{SseError, StreamableHttpError};

use crate::redact::redact_urls;

/// The error type an HTTP client plugged in with
/// [`McpConnectorBuilder::build_with_client`](crate::McpConnectorBuilder::build_with_client)
/// reports, so that the connector classifies its failures as precisely as
/// reqwest's: a [`HttpErrorKind::Connect`] error means the request never
/// reached the server (safe to run again elsewhere), the others mean the
/// exchange broke (the transport is dead, the request may have run).
///
/// The message must not contain header values; it is logged and shown.
/// URLs in it are redacted before it is (user info and query values
/// replaced).
#[derive(Clone, Debug)]
pub struct HttpError {
    kind: HttpErrorKind,
    message: String,
}

/// What kind of failure an [`HttpError`] is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The connection could not be opened: nothing was sent.
    Connect,
    /// The exchange took longer than the client allows.
    Timeout,
    /// The connection broke while the request or response was under way.
    Io,
    /// Anything else (a malformed request or response).
    Other,
}

impl HttpError {
    /// An error of `kind` described by `message` (no header values).
    pub fn new(kind: HttpErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> HttpErrorKind {
        self.kind
    }

    /// Whether the connection could not be opened (nothing was sent).
    pub fn is_connect(&self) -> bool {
        self.kind == HttpErrorKind::Connect
    }
}

impl fmt::Display for HttpErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpErrorKind::Connect => "connect error",
            HttpErrorKind::Timeout => "timed out",
            HttpErrorKind::Io => "connection broke",
            HttpErrorKind::Other => "HTTP client error",
        })
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for StreamableHttpError<HttpError> {
    fn from(e: HttpError) -> Self {
        StreamableHttpError::Client(e)
    }
}

impl HttpError {
    /// The description of any HTTP client's error, with every URL in it
    /// redacted: an [`HttpError`] keeps its kind; a reqwest error is
    /// classified by what reqwest says of it (connect, timeout, a broken
    /// body or request: I/O; anything else: other) and described by its
    /// status and its chain of causes, never its URL; any other error is
    /// [`HttpErrorKind::Other`].
    pub(crate) fn from_client_error(error: &(dyn std::error::Error + 'static)) -> HttpError {
        if let Some(e) = error.downcast_ref::<HttpError>() {
            return HttpError::new(e.kind, redact_urls(&e.message));
        }
        let mut parts = Vec::new();
        let kind = match error.downcast_ref::<reqwest::Error>() {
            Some(e) => {
                if let Some(status) = e.status() {
                    parts.push(format!("HTTP {}", status.as_u16()));
                }
                if e.is_connect() {
                    HttpErrorKind::Connect
                } else if e.is_timeout() {
                    HttpErrorKind::Timeout
                } else if e.is_body() || e.is_decode() || e.is_request() {
                    HttpErrorKind::Io
                } else {
                    HttpErrorKind::Other
                }
            }
            None => {
                parts.push(error.to_string());
                HttpErrorKind::Other
            }
        };
        let mut source = error.source();
        while let Some(cause) = source {
            parts.push(cause.to_string());
            source = cause.source();
        }
        if parts.is_empty() {
            parts.push("no further detail".to_owned());
        }
        HttpError::new(kind, redact_urls(&parts.join(": ")))
    }
}

/// `error` with every client error turned into an [`HttpError`] and every
/// text redacted (see [`redact_urls`]), so that nothing rmcp stores, logs or
/// returns can print a request URL.
pub(crate) fn redacted<E: std::error::Error + Send + Sync + 'static>(
    error: StreamableHttpError<E>,
) -> StreamableHttpError<HttpError> {
    use StreamableHttpError as S;
    match error {
        S::Client(e) => S::Client(HttpError::from_client_error(&e)),
        S::Sse(e) => S::Sse(redacted_sse(e)),
        S::Io(e) => S::Io(std::io::Error::new(e.kind(), redact_urls(&e.to_string()))),
        S::HttpStatus(e) => S::HttpStatus(e),
        S::UnexpectedEndOfStream => S::UnexpectedEndOfStream,
        S::UnexpectedServerResponse(text) => {
            S::UnexpectedServerResponse(Cow::Owned(redact_urls(&text)))
        }
        S::ResponseBodyTooLarge { max_size } => S::ResponseBodyTooLarge { max_size },
        S::UnexpectedContentType(content_type) => S::UnexpectedContentType(content_type),
        S::ServerDoesNotSupportSse => S::ServerDoesNotSupportSse,
        S::ServerDoesNotSupportDeleteSession => S::ServerDoesNotSupportDeleteSession,
        S::TokioJoinError(e) => S::TokioJoinError(e),
        S::Deserialize(e) => S::Deserialize(e),
        S::TransportChannelClosed => S::TransportChannelClosed,
        S::MissingSessionIdInResponse => S::MissingSessionIdInResponse,
        S::AuthRequired(e) => S::AuthRequired(e),
        S::InsufficientScope(e) => S::InsufficientScope(e),
        S::ReservedHeaderConflict(name) => S::ReservedHeaderConflict(name),
        S::SessionExpired => S::SessionExpired,
        S::SessionRecoveryTimeout => S::SessionRecoveryTimeout,
        S::ReinitializationFailed(data) => S::ReinitializationFailed(data),
        S::ControlRequestTimeout => S::ControlRequestTimeout,
        // A variant added later (or behind an rmcp feature): kept in words.
        other => S::UnexpectedServerResponse(Cow::Owned(redact_urls(&other.to_string()))),
    }
}

/// An event stream's error with a broken body described as an
/// [`HttpError`] (I/O), so that it cannot print a URL either.
pub(crate) fn redacted_sse(error: SseError) -> SseError {
    match error {
        SseError::Body(e) => {
            let described = HttpError::from_client_error(e.as_ref());
            SseError::Body(Box::new(HttpError::new(
                HttpErrorKind::Io,
                described.message,
            )))
        }
        other => other,
    }
}

/// The HTTP failure inside rmcp's type-erased transport error. Every
/// session's transport runs over a [`HealthClient`](crate::HealthClient),
/// whose errors are always `StreamableHttpError<HttpError>`.
pub(crate) fn find_failure<'a>(
    error: &'a (dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'a StreamableHttpError<HttpError>> {
    error.downcast_ref::<StreamableHttpError<HttpError>>()
}

/// Whether the server provably never accepted the request: it answered
/// that it does not know the session (`SessionExpired`, which the
/// [`HealthClient`](crate::HealthClient) also reports for the other forms
/// of that answer), or no connection could be opened.
pub(crate) fn never_reached_the_server(error: &StreamableHttpError<HttpError>) -> bool {
    match error {
        StreamableHttpError::SessionExpired => true,
        StreamableHttpError::Client(e) => e.is_connect(),
        _ => false,
    }
}

/// The status of a failure described as `HTTP NNN ...` (how rmcp's reqwest
/// client and plugged clients word an answer they could not use).
pub(crate) fn status_in_words(text: &str) -> Option<u16> {
    let digits = text.strip_prefix("HTTP ")?.get(..3)?;
    digits
        .parse()
        .ok()
        .filter(|status| (100..600).contains(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reqwest_errors_lose_their_url_and_keep_their_kind() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = runtime
            .block_on(
                reqwest::Client::new()
                    .get(format!("http://{addr}/mcp?api_key=SECRET"))
                    .send(),
            )
            .unwrap_err();
        assert!(
            error.to_string().contains("SECRET"),
            "reqwest prints its URL"
        );
        let http = HttpError::from_client_error(&error);
        assert_eq!(http.kind(), HttpErrorKind::Connect);
        let shown = format!("{http} {http:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.to_lowercase().contains("refused"), "{shown}");
        let wrapped = redacted(StreamableHttpError::Client(error));
        assert!(!format!("{wrapped} {wrapped:?}").contains("SECRET"));
    }

    #[test]
    fn statuses_are_read_from_words() {
        assert_eq!(status_in_words("HTTP 400 Bad Request: x"), Some(400));
        assert_eq!(status_in_words("HTTP 503: down"), Some(503));
        assert_eq!(status_in_words("could not parse"), None);
        assert_eq!(status_in_words("HTTP 9"), None);
    }
}
