//! Per-call events: which server message belongs to which call, decided in
//! the HTTP layer as each event of a response or event stream is read, so
//! that a call's events reach its caller in the order the server sent them
//! and before the call's result (see the [crate docs](crate#call-events)).
// rmcp marks logging deprecated (SEP-2577); 2026-07-28 still carries
// `notifications/message`, and servers of every era send it.
#![allow(deprecated)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::stream::{BoxStream, Stream, StreamExt};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, GetExtensions, GetMeta, LoggingMessageNotificationParam,
    ProgressToken, RequestId, ServerJsonRpcMessage, ServerNotification,
};
use rmcp::transport::streamable_http_client::SseError;
use sse_stream::Sse;
use tokio::sync::mpsc::UnboundedSender;

use crate::SessionKey;

/// A server message about one call, delivered to the caller of
/// [`McpSession::call_tool_with_events`](crate::McpSession::call_tool_with_events)
/// or [`McpSession::request_with_events`](crate::McpSession::request_with_events)
/// while the call is in flight, in the order the server sent them on the
/// call's response stream, each exactly once, and before the call returns.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum CallEvent {
    /// `notifications/progress` for this call (token already matched; the
    /// caller re-labels it with its own token, if it has one).
    Progress {
        /// The progress so far, as the server sent it.
        progress: f64,
        /// The total, if the server knows it.
        total: Option<f64>,
        /// The server's words about this step.
        message: Option<String>,
    },
    /// `notifications/message` sent on this call's response stream (or, on
    /// an exclusive session, on the session's event stream while this was
    /// the one call in flight: see the [crate docs](crate#call-events)).
    Log(LoggingMessageNotificationParam),
    /// `notifications/cancelled` naming this call's request: the server
    /// gave up on it. Its result, if any, still ends the call.
    Cancelled {
        /// The server's reason, if it gave one.
        reason: Option<String>,
    },
}

/// Marks a request sent with events: the key of its sink in the session's
/// [`Router`]. Travels in the request's extensions (never serialized) from
/// the session to the HTTP layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CallTag(u64);

/// Where one call's events go.
#[derive(Debug)]
pub(crate) struct CallSink {
    events: UnboundedSender<CallEvent>,
    /// Set when the call returned: nothing is delivered after.
    done: AtomicBool,
    /// The JSON-RPC id the request went out with (known once posted).
    request_id: Mutex<Option<RequestId>>,
}

impl CallSink {
    fn send(&self, event: CallEvent) {
        if !self.done.load(Ordering::Acquire) {
            // A caller that dropped its receiver wants no more events.
            let _ = self.events.send(event);
        }
    }

    fn is_request(&self, id: Option<&RequestId>) -> bool {
        id.is_some() && lock(&self.request_id).as_ref() == id
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The messages of a connector that belong to no call: one subscriber per
/// key, and a count of those that reached none.
#[derive(Debug, Default)]
pub(crate) struct Notices {
    subscribers: Mutex<HashMap<SessionKey, UnboundedSender<ServerNotification>>>,
    dropped: AtomicU64,
}

impl Notices {
    pub(crate) fn subscribe(&self, key: &SessionKey, to: UnboundedSender<ServerNotification>) {
        lock(&self.subscribers).insert(key.clone(), to);
    }

    pub(crate) fn unsubscribe(&self, key: &SessionKey) {
        lock(&self.subscribers).remove(key);
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn deliver(&self, key: &SessionKey, notification: ServerNotification) {
        let mut subscribers = lock(&self.subscribers);
        if let Some(to) = subscribers.get(key) {
            if to.send(notification).is_ok() {
                return;
            }
            subscribers.remove(key);
        }
        drop(subscribers);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(key = %key, "a notification about no call reached no subscriber");
    }
}

#[derive(Debug, Default)]
struct Calls {
    by_tag: HashMap<CallTag, Arc<CallSink>>,
    by_token: HashMap<ProgressToken, Arc<CallSink>>,
    /// The progress token each posted call went out with.
    tokens: HashMap<CallTag, ProgressToken>,
}

/// One session's calls with events, and where the rest goes.
#[derive(Debug)]
pub(crate) struct Router {
    calls: Mutex<Calls>,
    next: AtomicU64,
    /// One caller at a time (a legacy stateful session): a log line on the
    /// session's event stream while one call is in flight is that call's.
    exclusive: AtomicBool,
    notices: Arc<Notices>,
    key: SessionKey,
}

/// Unregisters a call when dropped (when the call returns or is dropped).
#[must_use]
pub(crate) struct Registration {
    router: Arc<Router>,
    tag: CallTag,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut calls = lock(&self.router.calls);
        if let Some(sink) = calls.by_tag.remove(&self.tag) {
            sink.done.store(true, Ordering::Release);
        }
        if let Some(token) = calls.tokens.remove(&self.tag) {
            calls.by_token.remove(&token);
        }
    }
}

/// Which stream a message arrived on.
#[derive(Clone, Debug)]
pub(crate) enum StreamOf {
    /// The response stream of a call with events.
    Call(Arc<CallSink>),
    /// The response stream of another request (its own business).
    Request,
    /// The session's standalone event stream (GET), or a resumed one.
    Session,
}

impl Router {
    pub(crate) fn new(key: SessionKey, notices: Arc<Notices>) -> Self {
        Router {
            calls: Mutex::default(),
            next: AtomicU64::new(0),
            exclusive: AtomicBool::new(false),
            notices,
            key,
        }
    }

    /// Says whether the session serves one caller at a time.
    pub(crate) fn set_exclusive(&self, exclusive: bool) {
        self.exclusive.store(exclusive, Ordering::Relaxed);
    }

    /// Registers `events` as the sink of `request`, which is tagged for the
    /// HTTP layer to find.
    pub(crate) fn register(
        self: &Arc<Self>,
        request: &mut ClientRequest,
        events: UnboundedSender<CallEvent>,
    ) -> Registration {
        let tag = CallTag(self.next.fetch_add(1, Ordering::Relaxed));
        request.extensions_mut().insert(tag);
        let sink = Arc::new(CallSink {
            events,
            done: AtomicBool::new(false),
            request_id: Mutex::new(None),
        });
        lock(&self.calls).by_tag.insert(tag, sink);
        Registration {
            router: self.clone(),
            tag,
        }
    }

    /// The sink of a request about to be posted, if it is a call with
    /// events; records the id and progress token it goes out with.
    pub(crate) fn posting(&self, message: &ClientJsonRpcMessage) -> Option<Arc<CallSink>> {
        let ClientJsonRpcMessage::Request(request) = message else {
            return None;
        };
        let tag = *request.request.extensions().get::<CallTag>()?;
        let mut calls = lock(&self.calls);
        let sink = calls.by_tag.get(&tag)?.clone();
        *lock(&sink.request_id) = Some(request.id.clone());
        if let Some(token) = request.request.get_meta().get_progress_token() {
            calls.by_token.insert(token.clone(), sink.clone());
            if let Some(old) = calls.tokens.insert(tag, token) {
                calls.by_token.remove(&old);
            }
        }
        Some(sink)
    }

    fn by_token(&self, token: &ProgressToken) -> Option<Arc<CallSink>> {
        lock(&self.calls).by_token.get(token).cloned()
    }

    /// The one call in flight on an exclusive session.
    fn only_call(&self) -> Option<Arc<CallSink>> {
        if !self.exclusive.load(Ordering::Relaxed) {
            return None;
        }
        let calls = lock(&self.calls);
        match calls.by_tag.len() {
            1 => calls.by_tag.values().next().cloned(),
            _ => None,
        }
    }

    /// The call whose request has id `id`.
    fn by_request(&self, id: Option<&RequestId>) -> Option<Arc<CallSink>> {
        let calls = lock(&self.calls);
        calls.by_tag.values().find(|s| s.is_request(id)).cloned()
    }

    /// Routes one server message read from a stream of the session.
    fn route(&self, on: &StreamOf, message: ServerJsonRpcMessage) {
        let ServerJsonRpcMessage::Notification(notification) = message else {
            return;
        };
        let notification = notification.notification;
        match notification {
            ServerNotification::ProgressNotification(n) => {
                match self.by_token(&n.params.progress_token) {
                    Some(sink) => sink.send(CallEvent::Progress {
                        progress: n.params.progress,
                        total: n.params.total,
                        message: n.params.message,
                    }),
                    // Progress for a request sent without events is that
                    // request's business.
                    None if matches!(on, StreamOf::Session) => self
                        .notices
                        .deliver(&self.key, ServerNotification::ProgressNotification(n)),
                    None => {}
                }
            }
            ServerNotification::LoggingMessageNotification(n) => match on {
                StreamOf::Call(sink) => sink.send(CallEvent::Log(n.params)),
                StreamOf::Request => {}
                StreamOf::Session => match self.only_call() {
                    Some(sink) => sink.send(CallEvent::Log(n.params)),
                    None => self
                        .notices
                        .deliver(&self.key, ServerNotification::LoggingMessageNotification(n)),
                },
            },
            ServerNotification::CancelledNotification(n) => {
                let id = n.params.request_id.as_ref();
                let sink = match on {
                    StreamOf::Call(sink) if sink.is_request(id) => Some(sink.clone()),
                    _ => self.by_request(id),
                };
                match (sink, on) {
                    (Some(sink), _) => sink.send(CallEvent::Cancelled {
                        reason: n.params.reason,
                    }),
                    // A cancellation of a request the server sent the
                    // client: rmcp's own business.
                    (None, StreamOf::Call(_) | StreamOf::Request) => {}
                    (None, StreamOf::Session) => self
                        .notices
                        .deliver(&self.key, ServerNotification::CancelledNotification(n)),
                }
            }
            // A `subscriptions/listen` notification: rmcp hands it to the
            // subscription.
            other if other.get_meta().subscription_id().is_some() => {}
            other => self.notices.deliver(&self.key, other),
        }
    }

    /// `stream`, each of whose events is routed as it is read, before it is
    /// passed on unchanged.
    pub(crate) fn watch(
        self: &Arc<Self>,
        on: StreamOf,
        stream: BoxStream<'static, Result<Sse, SseError>>,
    ) -> BoxStream<'static, Result<Sse, SseError>> {
        Routed {
            inner: stream,
            router: self.clone(),
            on,
            answered: false,
        }
        .boxed()
    }
}

/// An SSE stream whose notifications are routed as they are read.
struct Routed {
    inner: BoxStream<'static, Result<Sse, SseError>>,
    router: Arc<Router>,
    on: StreamOf,
    /// The call's answer went by: later events are no call's.
    answered: bool,
}

impl Stream for Routed {
    type Item = Result<Sse, SseError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(event))) = &polled {
            // Only notifications are routed, and a call's answer noted:
            // anything else is passed on without parsing.
            let data = event.data.as_deref().unwrap_or_default();
            let call = matches!(self.on, StreamOf::Call(_));
            if !self.answered
                && (data.contains("notifications/") || (call && data.contains("\"id\"")))
            {
                match serde_json::from_str::<ServerJsonRpcMessage>(data) {
                    Ok(ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)) => {
                        self.answered = call;
                    }
                    Ok(message) => self.router.route(&self.on, message),
                    Err(_) => {}
                }
            }
        }
        polled
    }
}
