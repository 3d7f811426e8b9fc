//! The SSE streams the session's HTTP client ([`HealthClient`]) hands to
//! rmcp: each watched for a break, which it records in the session's
//! [`Health`] cell as what the break means for the session ([`OnBreak`]),
//! and the answer to `initialize` read up to its response
//! ([`first_answer`]).
//!
//! [`HealthClient`]: crate::HealthClient

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use rmcp::model::{RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{SseError, StreamableHttpError};
use sse_stream::Sse;

use crate::health::Health;
use crate::http::redacted_sse;
use crate::HttpError;

/// Bytes of an unusable event quoted in an error.
const PREVIEW: usize = 200;

/// What a broken SSE stream does to its session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum OnBreak {
    /// Nothing: its request alone is lost (a modern session, whose every
    /// request is its own HTTP exchange).
    LoseRequest,
    /// Retires the session and spares the calls in flight
    /// ([`Health::mark_broken`]): the session's event stream, which carries
    /// no call's answer, and the response streams of a session without
    /// server-side state.
    Retire,
    /// Retires the session and cuts short the call of the stream's request
    /// ([`Health::cut_call`]; as [`OnBreak::Retire`] for a stream of no
    /// request): a stateful session's response stream. It is its own call's
    /// failure, and rmcp's attempts to resume it (from its event ids) would
    /// hold that call for seconds; the other calls wait on their own
    /// streams, which break as well when the server died.
    CutCall,
}

/// An SSE stream that records in the cell what its break means
/// ([`OnBreak`]) when it yields an error, and passes the error on with its
/// body error redacted.
pub(crate) struct Watched {
    inner: BoxStream<'static, Result<Sse, SseError>>,
    health: Health,
    what: &'static str,
    on_break: OnBreak,
    /// The request whose response stream it is: its exchange is forgotten
    /// with the stream ([`Health::stream_dropped`]).
    request: Option<RequestId>,
}

impl Watched {
    pub(crate) fn new(
        inner: BoxStream<'static, Result<Sse, SseError>>,
        health: Health,
        what: &'static str,
        on_break: OnBreak,
    ) -> Self {
        Self {
            inner,
            health,
            what,
            on_break,
            request: None,
        }
    }

    /// The same, as the response stream of request `id`.
    pub(crate) fn of_request(mut self, id: Option<RequestId>) -> Self {
        self.request = id;
        self
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(id) = &self.request {
            self.health.stream_dropped(id);
        }
    }
}

impl Stream for Watched {
    type Item = Result<Sse, SseError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Err(error))) => {
                let error = redacted_sse(error);
                let mut text = format!("the {} broke: {error}", self.what);
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                match (&self.on_break, &self.request) {
                    (OnBreak::LoseRequest, _) => {
                        tracing::debug!(reason = %text, "a response stream broke; its request is lost");
                    }
                    (OnBreak::CutCall, Some(id)) => {
                        self.health.cut_call(id, text);
                    }
                    (OnBreak::Retire | OnBreak::CutCall, _) => {
                        self.health.mark_broken(text);
                    }
                }
                Poll::Ready(Some(Err(error)))
            }
            other => other,
        }
    }
}

/// Reads `stream` (the answer to `initialize`) up to its first JSON-RPC
/// response or error, and returns a stream that yields everything read and
/// then the rest. Fails with what the server sent if an event is not
/// JSON-RPC, the stream breaks, or it ends without an answer.
pub(crate) async fn first_answer(
    mut stream: Watched,
) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<HttpError>> {
    let mut read = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(event)) => {
                let data = event.data.as_deref().unwrap_or_default().trim().to_owned();
                read.push(Ok(event));
                if data.is_empty() {
                    continue;
                }
                match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                    Ok(ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)) => {
                        return Ok(stream::iter(read).chain(stream).boxed());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let preview: String = data.chars().take(PREVIEW).collect();
                        return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                            format!(
                                "the answer to initialize is an event stream whose data is not JSON-RPC ({e}): {preview}"
                            ),
                        )));
                    }
                }
            }
            Some(Err(error)) => return Err(StreamableHttpError::Sse(error)),
            None => {
                return Err(StreamableHttpError::UnexpectedServerResponse(
                    Cow::Borrowed(
                        "the answer to initialize is an event stream that ended without a response",
                    ),
                ))
            }
        }
    }
}
