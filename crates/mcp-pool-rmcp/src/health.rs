//! Transport-aware health: an HTTP client wrapper that records every sign of
//! a dead transport in a cell the connector reads without I/O.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures_util::stream::{BoxStream, Stream, StreamExt};
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The shared record of whether one session's transport is alive.
///
/// Starts alive; goes dead once, for good, with the first reason recorded
/// (later reasons are ignored). Reading it ([`Health::is_dead`],
/// [`Health::reason`]) takes no I/O and no await. Clones share one cell.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    dead: CancellationToken,
    reason: OnceLock<String>,
    session_id: Mutex<Option<Arc<str>>>,
}

impl Health {
    /// A cell that is alive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the transport is known to be dead. No I/O.
    pub fn is_dead(&self) -> bool {
        self.inner.dead.is_cancelled()
    }

    /// Why the transport is dead (the first reason recorded), or `None`
    /// while it is alive. The text never contains header values.
    pub fn reason(&self) -> Option<&str> {
        if self.is_dead() {
            self.inner.reason.get().map(String::as_str)
        } else {
            None
        }
    }

    /// Records the transport as dead for `reason` (no effect if already
    /// dead) and wakes every [`Health::dead`] future. Returns whether this
    /// call was the one that killed it.
    pub fn mark_dead(&self, reason: impl Into<String>) -> bool {
        let first = self.inner.reason.set(reason.into()).is_ok();
        self.inner.dead.cancel();
        if first {
            tracing::debug!(
                reason = self.reason().unwrap_or(""),
                "transport marked dead"
            );
        }
        first
    }

    /// A future that resolves once the transport is dead (at once if it
    /// already is). Owns what it needs, so it can outlive the session.
    pub fn dead(&self) -> WaitForCancellationFutureOwned {
        self.inner.dead.clone().cancelled_owned()
    }

    /// The `mcp-session-id` the server assigned, once the initialize
    /// response has been seen; `None` for a server without sessions.
    pub fn session_id(&self) -> Option<Arc<str>> {
        self.lock_session_id().clone()
    }

    fn lock_session_id(&self) -> std::sync::MutexGuard<'_, Option<Arc<str>>> {
        // Only ever holds a plain value: a poisoned lock is still consistent.
        self.inner
            .session_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn record_session_id(&self, id: Option<&str>) {
        if let Some(id) = id {
            let mut current = self.lock_session_id();
            if current.is_none() {
                *current = Some(Arc::from(id));
            }
        }
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("dead", &self.is_dead())
            .field("reason", &self.reason())
            .finish()
    }
}

/// Whether `error`, returned by an HTTP exchange of a session, shows that the
/// session's transport (connection, server process or server-side session)
/// is gone, rather than one request having been refused by a live server.
///
/// Fatal: connect and I/O errors, a broken body or SSE stream, HTTP 5xx, a
/// 404 on the session (`SessionExpired`), a 401 (credentials no longer
/// accepted), a response that is not MCP (wrong content type, unparsable
/// body, missing session id), and any error this crate does not know.
/// Not fatal: HTTP 429, a response over the size limit, a 403 for a missing
/// scope, a refused custom header, and a server without the optional GET
/// stream or DELETE.
pub fn is_fatal<E: std::error::Error + Send + Sync + 'static>(
    error: &StreamableHttpError<E>,
) -> bool {
    match error {
        StreamableHttpError::HttpStatus(status) => status.status != 429,
        StreamableHttpError::ResponseBodyTooLarge { .. }
        | StreamableHttpError::InsufficientScope(_)
        | StreamableHttpError::ReservedHeaderConflict(_)
        | StreamableHttpError::ServerDoesNotSupportSse
        | StreamableHttpError::ServerDoesNotSupportDeleteSession
        | StreamableHttpError::ControlRequestTimeout => false,
        _ => true,
    }
}

/// A description of `error` fit for logs: the error's kind and its source
/// chain, without the request URL that `reqwest` errors print (a URL may
/// carry a token in its query) and without any header value.
pub fn describe<E: std::error::Error + Send + Sync + 'static>(
    error: &StreamableHttpError<E>,
) -> String {
    match error {
        StreamableHttpError::Client(e) => {
            let mut text = String::from("HTTP client error");
            let any: &(dyn std::error::Error + 'static) = e;
            if let Some(e) = any.downcast_ref::<reqwest::Error>() {
                let kind = if e.is_connect() {
                    "connect error"
                } else if e.is_timeout() {
                    "timed out"
                } else if e.is_body() {
                    "response body broke"
                } else if e.is_decode() {
                    "response body undecodable"
                } else if e.is_request() {
                    "request failed"
                } else {
                    "HTTP client error"
                };
                text = kind.to_owned();
                if let Some(status) = e.status() {
                    text.push_str(&format!(": HTTP {}", status.as_u16()));
                }
            } else if let Some(e) = any.downcast_ref::<crate::HttpError>() {
                text = e.to_string();
            }
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
        other => other.to_string(),
    }
}

/// A [`StreamableHttpClient`] that delegates every method to `C` and records
/// in a [`Health`] cell every outcome that shows the transport dead (see
/// [`is_fatal`]), including errors that arrive later on the SSE streams it
/// returns. It also records the session id the server assigns.
///
/// Every method of the trait is delegated, the size-limit variants included,
/// so the limits configured on the transport reach `C` unchanged.
///
/// Streams: an error on any SSE stream (a POST's response stream or the
/// session's standalone GET stream) marks the transport dead, at the moment
/// it is read; a stream that ends cleanly does not (the protocol lets a
/// server close a stream, and the transport reconnects through this client,
/// whose answer, such as a 404 or a refused connect, then decides).
#[derive(Clone)]
pub struct HealthClient<C> {
    inner: C,
    health: Health,
}

impl<C> HealthClient<C> {
    /// Wraps `inner`, recording into `health`.
    pub fn new(inner: C, health: Health) -> Self {
        Self { inner, health }
    }

    /// The cell this client records into.
    pub fn health(&self) -> &Health {
        &self.health
    }
}

impl<C> fmt::Debug for HealthClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthClient")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl<C: StreamableHttpClient> HealthClient<C> {
    fn observe_error(&self, what: &str, error: &StreamableHttpError<C::Error>) {
        if is_fatal(error) {
            self.health
                .mark_dead(format!("{what} failed: {}", describe(error)));
        }
    }

    fn observe_post(
        &self,
        result: Result<StreamableHttpPostResponse, StreamableHttpError<C::Error>>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<C::Error>> {
        match result {
            Ok(StreamableHttpPostResponse::Json(message, session_id)) => {
                self.health.record_session_id(session_id.as_deref());
                Ok(StreamableHttpPostResponse::Json(message, session_id))
            }
            Ok(StreamableHttpPostResponse::Sse(stream, session_id)) => {
                self.health.record_session_id(session_id.as_deref());
                let stream = Watched::new(stream, self.health.clone(), "response stream");
                Ok(StreamableHttpPostResponse::Sse(stream.boxed(), session_id))
            }
            Ok(other) => Ok(other),
            Err(error) => {
                self.observe_error("POST", &error);
                Err(error)
            }
        }
    }

    fn observe_get(
        &self,
        result: Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<C::Error>>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<C::Error>> {
        match result {
            Ok(stream) => Ok(Watched::new(stream, self.health.clone(), "event stream").boxed()),
            Err(error) => {
                self.observe_error("GET", &error);
                Err(error)
            }
        }
    }
}

impl<C: StreamableHttpClient + Sync> StreamableHttpClient for HealthClient<C> {
    type Error = C::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let result = self
            .inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await;
        self.observe_post(result)
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
        let result = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.observe_post(result)
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
        let result = self
            .inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await;
        self.observe_post(result)
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
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let result = self
            .inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await;
        self.observe_get(result)
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
        let result = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.observe_get(result)
    }
}

/// An SSE stream that marks the cell dead when it yields an error.
struct Watched {
    inner: BoxStream<'static, Result<Sse, SseError>>,
    health: Health,
    what: &'static str,
}

impl Watched {
    fn new(
        inner: BoxStream<'static, Result<Sse, SseError>>,
        health: Health,
        what: &'static str,
    ) -> Self {
        Self {
            inner,
            health,
            what,
        }
    }
}

impl Stream for Watched {
    type Item = Result<Sse, SseError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(Err(error))) = &item {
            let mut text = format!("the {} broke: {error}", self.what);
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            self.health.mark_dead(text);
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::transport::streamable_http_client::HttpStatusError;

    type E = StreamableHttpError<std::io::Error>;

    #[test]
    fn a_cell_dies_once_with_its_first_reason() {
        let health = Health::new();
        assert!(!health.is_dead());
        assert_eq!(health.reason(), None);
        assert!(health.mark_dead("first"));
        assert!(!health.mark_dead("second"));
        assert!(health.is_dead());
        assert_eq!(health.reason(), Some("first"));
    }

    #[tokio::test]
    async fn the_dead_future_fires_when_marked_and_at_once_after() {
        let health = Health::new();
        let waiter = tokio::spawn(health.dead());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        health.mark_dead("gone");
        waiter.await.unwrap();
        health.dead().await;
    }

    #[test]
    fn fatal_errors_are_transport_failures() {
        assert!(is_fatal(&E::SessionExpired));
        assert!(is_fatal(&E::Client(std::io::Error::other("refused"))));
        assert!(is_fatal(&E::HttpStatus(HttpStatusError::new(502, None))));
        assert!(is_fatal(&E::UnexpectedContentType(Some(
            "text/html".into()
        ))));
        assert!(is_fatal(&E::UnexpectedEndOfStream));
        assert!(!is_fatal(&E::HttpStatus(HttpStatusError::new(429, None))));
        assert!(!is_fatal(&E::ServerDoesNotSupportSse));
        assert!(!is_fatal(&E::ResponseBodyTooLarge { max_size: 1 }));
    }

    #[tokio::test]
    async fn a_broken_stream_kills_the_cell_and_a_clean_end_does_not() {
        let health = Health::new();
        let ok = futures_util::stream::iter(vec![Ok(Sse::default())]).boxed();
        let mut watched = Watched::new(ok, health.clone(), "event stream");
        while watched.next().await.is_some() {}
        assert!(!health.is_dead());

        let broken = futures_util::stream::iter(vec![Err(SseError::Body(Box::new(
            std::io::Error::other("connection reset"),
        )))])
        .boxed();
        let mut watched = Watched::new(broken, health.clone(), "event stream");
        while watched.next().await.is_some() {}
        assert!(health.is_dead());
        assert!(health.reason().unwrap().contains("connection reset"));
    }
}
