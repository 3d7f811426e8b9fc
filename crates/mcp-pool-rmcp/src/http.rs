//! Plugging in an HTTP layer other than reqwest.

use std::fmt;

use rmcp::transport::streamable_http_client::StreamableHttpError;

/// The error type an HTTP client plugged in with
/// [`McpConnectorBuilder::build_with_client`](crate::McpConnectorBuilder::build_with_client)
/// reports, so that the connector classifies its failures as precisely as
/// reqwest's: a [`HttpErrorKind::Connect`] error means the request never
/// reached the server (safe to run again elsewhere), the others mean the
/// exchange broke (the transport is dead, the request may have run).
///
/// The message must not contain header values; it is logged and shown.
#[derive(Debug)]
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

/// A transport error of one of the HTTP clients this crate knows, found in
/// rmcp's type-erased transport error.
pub(crate) enum HttpFailure<'a> {
    Reqwest(&'a StreamableHttpError<reqwest::Error>),
    Plugged(&'a StreamableHttpError<HttpError>),
}

impl<'a> HttpFailure<'a> {
    /// Finds the HTTP failure in rmcp's transport error, if its client is
    /// reqwest or a plugged client reporting [`HttpError`].
    pub(crate) fn find(error: &'a (dyn std::error::Error + Send + Sync + 'static)) -> Option<Self> {
        if let Some(e) = error.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            return Some(HttpFailure::Reqwest(e));
        }
        error
            .downcast_ref::<StreamableHttpError<HttpError>>()
            .map(HttpFailure::Plugged)
    }

    /// See [`crate::is_fatal`].
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            HttpFailure::Reqwest(e) => crate::is_fatal(*e),
            HttpFailure::Plugged(e) => crate::is_fatal(*e),
        }
    }

    /// See [`crate::describe`].
    pub(crate) fn describe(&self) -> String {
        match self {
            HttpFailure::Reqwest(e) => crate::describe(*e),
            HttpFailure::Plugged(e) => crate::describe(*e),
        }
    }

    /// Whether the server provably never accepted the request: HTTP 404 on
    /// the session, or no connection.
    pub(crate) fn never_reached_the_server(&self) -> bool {
        match self {
            HttpFailure::Reqwest(StreamableHttpError::SessionExpired)
            | HttpFailure::Plugged(StreamableHttpError::SessionExpired) => true,
            HttpFailure::Reqwest(StreamableHttpError::Client(e)) => e.is_connect(),
            HttpFailure::Plugged(StreamableHttpError::Client(e)) => e.is_connect(),
            _ => false,
        }
    }
}
