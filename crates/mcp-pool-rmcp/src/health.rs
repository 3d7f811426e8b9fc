//! Transport-aware health: the cell that records every sign of a dead
//! transport, read by the connector without I/O, and what counts as one.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use mcp_pool::ConnectFailure;
use rmcp::model::RequestId;
use rmcp::transport::streamable_http_client::StreamableHttpError;
use tokio_util::sync::{
    CancellationToken, WaitForCancellationFuture, WaitForCancellationFutureOwned,
};

use crate::redact::redact_urls;
use crate::HttpError;

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
    /// Cancelled by the deaths that leave no call its answer: the session
    /// closed or aborted, or its rmcp service stopped ([`Health::mark_dead`]).
    calls_cut: CancellationToken,
    /// Cancelled when the server said it forgot the session or refused its
    /// era: calls it had not accepted get their own refusals.
    refused: CancellationToken,
    /// Calls' own exchanges, by request id: whether the server accepted the
    /// request (answered with a response stream) and whether that stream
    /// broke, registered by the call waiting on it ([`OwnStream`]) or by
    /// the HTTP layer, whichever came first. An entry lasts while its call
    /// waits or its response stream is open, whichever is longer.
    exchanges: Mutex<HashMap<RequestId, Tracked>>,
    /// Cancelled when an attempt to resume a broken stream from its last
    /// event id failed.
    resume_failed: CancellationToken,
    reason: OnceLock<String>,
    /// The server's words when it said it does not know the session.
    lost: OnceLock<String>,
    /// The server's words when it refused a request as one of another
    /// protocol era.
    era_refusal: OnceLock<String>,
    /// What the first failed HTTP exchange says about the server, for a
    /// connect whose rmcp error no longer carries it.
    failure: OnceLock<ConnectFailure>,
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
    /// while it is alive. The text never contains header values, and every
    /// URL in it is redacted (user info and query values replaced).
    pub fn reason(&self) -> Option<&str> {
        if self.is_dead() {
            self.inner.reason.get().map(String::as_str)
        } else {
            None
        }
    }

    /// Records the transport as dead for `reason` (the first reason is
    /// kept), wakes every [`Health::dead`] future, and cuts short every
    /// call in flight on the session (after a short grace for its own
    /// answer: see [`McpSession`](crate::McpSession)): for a session closed,
    /// aborted, or whose rmcp service stopped. Returns whether this call was
    /// the one that killed it.
    pub fn mark_dead(&self, reason: impl Into<String>) -> bool {
        let first = self.kill(reason.into());
        self.inner.calls_cut.cancel();
        first
    }

    /// Records the transport as dead because a request, the event stream,
    /// or a response stream of a session without server-side state failed
    /// (`reason`): no new request goes out on it, but each call
    /// already sent waits for its answer on its own exchange, which fails
    /// too if the server died (a later death of another kind still cuts it
    /// short). Returns whether this call was the one that killed it.
    pub(crate) fn mark_broken(&self, reason: impl Into<String>) -> bool {
        self.kill(reason.into())
    }

    /// Records that the response stream of request `id` broke (`reason`):
    /// the session retires as [`Health::mark_broken`] has it, and the call
    /// waiting on that stream ([`OwnStream`]) is cut short; the other calls
    /// already sent wait on their own streams (if the server died, those break too). Returns
    /// whether this call was the one that killed the cell.
    pub(crate) fn cut_call(&self, id: &RequestId, reason: impl Into<String>) -> bool {
        let first = self.mark_broken(reason);
        self.record(id, |exchange| exchange.broke.cancel());
        first
    }

    /// Records that the server accepted request `id`: it answered with a
    /// response stream, where the answer will come.
    pub(crate) fn accepted(&self, id: &RequestId) {
        self.record(id, |exchange| exchange.accepted.cancel());
    }

    /// Applies `event` to request `id`'s exchange, tracked from now on if
    /// no call waits on it yet.
    fn record(&self, id: &RequestId, event: impl FnOnce(&Exchange)) {
        let mut exchanges = self.lock_exchanges();
        let tracked = exchanges.entry(id.clone()).or_insert_with(|| Tracked {
            exchange: Exchange::default(),
            bound: false,
        });
        event(&tracked.exchange);
    }

    /// Forgets request `id`'s exchange once its response stream is gone,
    /// unless a call waits on it (which forgets it when done): a request no
    /// call of this crate waits for (one sent through
    /// [`McpSession::peer`](crate::McpSession::peer)) leaves nothing
    /// behind.
    pub(crate) fn stream_dropped(&self, id: &RequestId) {
        let mut exchanges = self.lock_exchanges();
        if exchanges.get(id).is_some_and(|tracked| !tracked.bound) {
            exchanges.remove(id);
        }
    }

    /// A watch on the exchange of the request it will be bound to
    /// ([`OwnStream::bind`]).
    pub(crate) fn own_stream(&self) -> OwnStream {
        OwnStream {
            health: self.clone(),
            exchange: Exchange::default(),
            id: OnceLock::new(),
        }
    }

    /// A future that resolves once the server said it forgot the session or
    /// refused its era.
    pub(crate) fn refused(&self) -> WaitForCancellationFutureOwned {
        self.inner.refused.clone().cancelled_owned()
    }

    /// Records that an attempt to resume a broken stream from its last
    /// event id failed: the server cannot serve the calls waiting on such
    /// streams ([`Health::resume_failed`]).
    pub(crate) fn mark_resume_failed(&self) {
        self.inner.resume_failed.cancel();
    }

    /// A future that resolves once an attempt to resume a broken stream
    /// failed.
    pub(crate) fn resume_failed(&self) -> WaitForCancellationFutureOwned {
        self.inner.resume_failed.clone().cancelled_owned()
    }

    fn lock_exchanges(&self) -> MutexGuard<'_, HashMap<RequestId, Tracked>> {
        // Only ever holds plain values: a poisoned lock is still consistent.
        self.inner
            .exchanges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn kill(&self, reason: String) -> bool {
        let first = self.inner.reason.set(redact_urls(&reason)).is_ok();
        self.inner.dead.cancel();
        if first {
            tracing::debug!(
                reason = self.reason().unwrap_or(""),
                "transport marked dead"
            );
        }
        first
    }

    /// Records that the server forgot the session, in its own words
    /// (`said`), and marks the transport dead with a reason quoting them.
    /// The first words recorded are kept.
    pub(crate) fn mark_lost(&self, said: &str) {
        let said = redact_urls(said);
        let reason = format!("the server forgot the session: {said}");
        // The words first: whoever wakes on the death reads them.
        let _ = self.inner.lost.set(said);
        self.mark_refused(reason);
    }

    /// Records that the server refused a request as one of another protocol
    /// era (see the [crate docs](crate#protocol-eras)), in its own words, and
    /// marks the transport dead with a reason quoting them.
    pub(crate) fn mark_era_refused(&self, said: &str) {
        let said = redact_urls(said);
        let reason = format!("the server no longer speaks this session's protocol era: {said}");
        let _ = self.inner.era_refusal.set(said);
        self.mark_refused(reason);
    }

    /// The server refused the session (`reason` quotes it; its words are
    /// recorded first, for whoever wakes on the death): the transport is
    /// dead, and calls it had not accepted get their own refusals, while
    /// those it accepted wait on their streams.
    fn mark_refused(&self, reason: String) {
        // A live server's definite answer, should a connect end here.
        let _ = self.inner.failure.set(ConnectFailure::Rejected);
        self.kill(reason);
        self.inner.refused.cancel();
    }

    /// The server's own words if it refused a request as one of another
    /// protocol era, else `None`.
    pub fn era_refusal(&self) -> Option<&str> {
        self.inner.era_refusal.get().map(String::as_str)
    }

    /// The server's own words if it said it does not know the session (an
    /// answer listed in the [crate docs](crate#session-loss)), else `None`.
    pub fn lost(&self) -> Option<&str> {
        self.inner.lost.get().map(String::as_str)
    }

    /// Records a failed HTTP exchange: if `error` is fatal, marks the
    /// transport dead as [`Health::mark_broken`] does (calls in flight wait
    /// on exchanges of their own) and keeps what the first such failure
    /// says about the server.
    pub(crate) fn record_failure(&self, what: &str, error: &StreamableHttpError<HttpError>) {
        if is_fatal(error) {
            let _ = self
                .inner
                .failure
                .set(crate::error::http_connect_failure(error));
            self.mark_broken(format!("{what} failed: {}", describe(error)));
        }
    }

    /// What the first failed HTTP exchange said about the server, if one
    /// failed.
    pub(crate) fn first_failure(&self) -> Option<ConnectFailure> {
        self.inner.failure.get().copied()
    }

    /// A future that resolves once the transport is dead (at once if it
    /// already is). Owns what it needs, so it can outlive the session.
    pub fn dead(&self) -> WaitForCancellationFutureOwned {
        self.inner.dead.clone().cancelled_owned()
    }

    /// A future that resolves once the transport died in a way that leaves
    /// no call its answer ([`Health::mark_dead`]).
    pub(crate) fn calls_cut(&self) -> WaitForCancellationFutureOwned {
        self.inner.calls_cut.clone().cancelled_owned()
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

    pub(crate) fn record_session_id(&self, id: Option<&str>) {
        if let Some(id) = id {
            let mut current = self.lock_session_id();
            if current.is_none() {
                *current = Some(Arc::from(id));
            }
        }
    }
}

/// What is known of one request's exchange: each token is cancelled once,
/// for good.
#[derive(Clone, Default)]
struct Exchange {
    /// The server answered the request with a response stream.
    accepted: CancellationToken,
    /// That stream broke.
    broke: CancellationToken,
}

/// An exchange as tracked: `bound` once a call waits on it.
struct Tracked {
    exchange: Exchange,
    bound: bool,
}

/// One call's watch on its own exchange, for the request it is bound to
/// ([`OwnStream::bind`]); what happened to that exchange before the binding
/// counts too. Dropping it forgets the request.
pub(crate) struct OwnStream {
    health: Health,
    exchange: Exchange,
    id: OnceLock<RequestId>,
}

impl OwnStream {
    /// Binds the watch to request `id` (once; later calls are ignored).
    pub(crate) fn bind(&self, id: &RequestId) {
        if self.id.set(id.clone()).is_err() {
            return;
        }
        let mut exchanges = self.health.lock_exchanges();
        // What the HTTP layer saw of it before the call learned its id.
        let tracked = Tracked {
            exchange: self.exchange.clone(),
            bound: true,
        };
        if let Some(Tracked { exchange: seen, .. }) = exchanges.insert(id.clone(), tracked) {
            if seen.accepted.is_cancelled() {
                self.exchange.accepted.cancel();
            }
            if seen.broke.is_cancelled() {
                self.exchange.broke.cancel();
            }
        }
    }

    /// A future that resolves once the bound request's response stream
    /// broke.
    pub(crate) fn broke(&self) -> WaitForCancellationFuture<'_> {
        self.exchange.broke.cancelled()
    }

    /// A future that resolves once the server accepted the bound request.
    pub(crate) fn accepted(&self) -> WaitForCancellationFuture<'_> {
        self.exchange.accepted.cancelled()
    }
}

impl Drop for OwnStream {
    fn drop(&mut self) {
        if let Some(id) = self.id.get() {
            self.health.lock_exchanges().remove(id);
        }
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("dead", &self.is_dead())
            .field("reason", &self.reason())
            .field("lost", &self.lost().is_some())
            .field("era_refused", &self.era_refusal().is_some())
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

/// A description of `error` fit for logs and errors: what the server said
/// (`HTTP 500`, the content type it answered with, its words), or what broke
/// (the client error's kind and chain of causes), with every URL redacted
/// (see [`HttpError`]) and without any header value.
pub fn describe<E: std::error::Error + Send + Sync + 'static>(
    error: &StreamableHttpError<E>,
) -> String {
    let text = match error {
        StreamableHttpError::Client(e) => HttpError::from_client_error(e).to_string(),
        StreamableHttpError::HttpStatus(status) => match &status.retry_after {
            Some(after) => format!("HTTP {} (Retry-After: {after})", status.status),
            None => format!("HTTP {}", status.status),
        },
        StreamableHttpError::UnexpectedContentType(Some(content_type)) => format!(
            "the server answered with content type `{content_type}`, which is neither JSON nor an event stream"
        ),
        StreamableHttpError::UnexpectedContentType(None) => {
            "the server answered without a content type".to_owned()
        }
        StreamableHttpError::SessionExpired => {
            "HTTP 404 Not Found: the server does not know the session".to_owned()
        }
        StreamableHttpError::UnexpectedServerResponse(text) => text.to_string(),
        StreamableHttpError::Deserialize(e) => {
            format!("the server's answer is not JSON-RPC: {e}")
        }
        other => other.to_string(),
    };
    redact_urls(&text)
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
    async fn a_failed_exchange_kills_the_cell_and_cuts_no_call_until_another_death() {
        let health = Health::new();
        let cut = tokio::spawn(health.calls_cut());
        assert!(health.mark_broken("the event stream broke"));
        assert!(health.is_dead());
        assert_eq!(health.reason(), Some("the event stream broke"));
        health.dead().await;
        tokio::task::yield_now().await;
        assert!(!cut.is_finished(), "calls in flight wait for their answers");
        // Any other death cuts them short, and keeps the first reason.
        assert!(!health.mark_dead("the rmcp service stopped"));
        cut.await.unwrap();
        assert_eq!(health.reason(), Some("the event stream broke"));
    }

    #[tokio::test]
    async fn a_broken_response_stream_cuts_its_own_call_and_no_other() {
        let health = Health::new();
        let (mine, other, early) = (
            health.own_stream(),
            health.own_stream(),
            health.own_stream(),
        );
        mine.bind(&RequestId::Number(1));
        other.bind(&RequestId::Number(2));
        let cut_all = tokio::spawn(health.calls_cut());
        // A stream that broke before its call bound its id cuts it at once.
        assert!(health.cut_call(&RequestId::Number(3), "the response stream broke"));
        early.bind(&RequestId::Number(3));
        early.broke().await;
        assert!(health.is_dead(), "the session retires");
        assert!(!health.cut_call(&RequestId::Number(1), "again"));
        mine.broke().await;
        tokio::task::yield_now().await;
        assert!(
            !other.exchange.broke.is_cancelled(),
            "another call waits on its own stream"
        );
        assert!(!cut_all.is_finished(), "no call is cut short for all");
        assert_eq!(health.reason(), Some("the response stream broke"));
        drop((mine, other, early));
        assert!(
            health.lock_exchanges().is_empty(),
            "the calls forgot their ids"
        );
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
    async fn a_lost_session_refuses_calls_without_cutting_those_it_accepted() {
        let health = Health::new();
        let (accepted, pending) = (health.own_stream(), health.own_stream());
        // The server accepted request 1 before its call learned its id.
        health.accepted(&RequestId::Number(1));
        accepted.bind(&RequestId::Number(1));
        pending.bind(&RequestId::Number(2));
        accepted.accepted().await;
        let cut_all = tokio::spawn(health.calls_cut());
        health.mark_lost("HTTP 404 Not Found");
        health.refused().await;
        assert!(health.is_dead());
        tokio::task::yield_now().await;
        assert!(!cut_all.is_finished(), "no call is cut short for all");
        assert!(!pending.exchange.accepted.is_cancelled());
        assert!(!accepted.exchange.broke.is_cancelled());
    }

    #[test]
    fn an_exchange_no_call_waits_on_is_forgotten_with_its_stream() {
        let health = Health::new();
        let call = health.own_stream();
        call.bind(&RequestId::Number(1));
        // A request sent through `peer()`: no call of this crate waits on it.
        health.accepted(&RequestId::Number(2));
        health.accepted(&RequestId::Number(1));
        assert_eq!(health.lock_exchanges().len(), 2);
        health.stream_dropped(&RequestId::Number(2));
        health.stream_dropped(&RequestId::Number(1));
        assert_eq!(
            health.lock_exchanges().keys().collect::<Vec<_>>(),
            [&RequestId::Number(1)],
            "the waiting call's exchange stays"
        );
        assert!(call.exchange.accepted.is_cancelled());
        drop(call);
        assert!(health.lock_exchanges().is_empty());
    }

    #[test]
    fn a_lost_session_keeps_the_servers_words() {
        let health = Health::new();
        health.mark_lost("error -32001: Session not found");
        assert!(health.is_dead());
        assert_eq!(health.lost(), Some("error -32001: Session not found"));
        assert_eq!(
            health.reason(),
            Some("the server forgot the session: error -32001: Session not found")
        );
        assert_eq!(health.first_failure(), Some(ConnectFailure::Rejected));
    }

    #[test]
    fn only_fatal_failures_are_recorded() {
        let health = Health::new();
        health.record_failure("GET", &StreamableHttpError::ServerDoesNotSupportSse);
        assert!(!health.is_dead());
        assert_eq!(health.first_failure(), None);
        health.record_failure(
            "POST",
            &StreamableHttpError::HttpStatus(HttpStatusError::new(503, None)),
        );
        assert_eq!(health.reason(), Some("POST failed: HTTP 503"));
        assert_eq!(health.first_failure(), Some(ConnectFailure::Failed));
    }

    #[test]
    fn descriptions_name_what_the_server_said() {
        assert_eq!(
            describe(&E::HttpStatus(HttpStatusError::new(500, None))),
            "HTTP 500"
        );
        let html = describe(&E::UnexpectedContentType(Some("text/html".into())));
        assert!(html.contains("`text/html`"), "{html}");
        let client = describe(&E::Client(std::io::Error::other(
            "refused by http://u:pw@h/mcp?k=SECRET",
        )));
        assert!(
            !client.contains("SECRET") && !client.contains("pw"),
            "{client}"
        );
        assert!(client.contains("refused"), "{client}");
    }
}
