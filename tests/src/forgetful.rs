//! A legacy stateful MCP server that forgets sessions, answering requests on
//! a forgotten session the way one kind of real server or another does.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use mcp_pool_echo::{EchoApp, EchoConfig};
use serde_json::{json, Value};

use crate::FixtureServer;

/// The header that carries the session id.
const SESSION_HEADER: &str = "mcp-session-id";

/// Largest request body the fixture reads.
const MAX_BODY: usize = 4 << 20;

/// How a server answers a request carrying a session id it does not know.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionLossForm {
    /// HTTP 400, `application/json`,
    /// `{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}`,
    /// with no `id` field at all (the TypeScript SDK's answer).
    BadRequestWithoutId,
    /// HTTP 404 with an empty body (the specification's answer).
    NotFound,
    /// HTTP 200, a JSON-RPC error with the request's id, code -32001,
    /// `Session not found`.
    SessionNotFoundOk,
    /// The same JSON-RPC error as [`SessionLossForm::SessionNotFoundOk`],
    /// with HTTP 404.
    SessionNotFoundNotFound,
    /// HTTP 400, `text/plain`, `Bad Request: invalid or missing session ID`.
    BadRequestText,
}

impl SessionLossForm {
    /// Every form, in a fixed order.
    pub const ALL: [SessionLossForm; 5] = [
        SessionLossForm::BadRequestWithoutId,
        SessionLossForm::NotFound,
        SessionLossForm::SessionNotFoundOk,
        SessionLossForm::SessionNotFoundNotFound,
        SessionLossForm::BadRequestText,
    ];

    /// The form's name: `400-json`, `404`, `200-jsonrpc`, `404-jsonrpc`,
    /// `400-text`.
    pub fn name(self) -> &'static str {
        match self {
            SessionLossForm::BadRequestWithoutId => "400-json",
            SessionLossForm::NotFound => "404",
            SessionLossForm::SessionNotFoundOk => "200-jsonrpc",
            SessionLossForm::SessionNotFoundNotFound => "404-jsonrpc",
            SessionLossForm::BadRequestText => "400-text",
        }
    }

    /// The HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        match self {
            SessionLossForm::BadRequestWithoutId | SessionLossForm::BadRequestText => {
                StatusCode::BAD_REQUEST
            }
            SessionLossForm::NotFound | SessionLossForm::SessionNotFoundNotFound => {
                StatusCode::NOT_FOUND
            }
            SessionLossForm::SessionNotFoundOk => StatusCode::OK,
        }
    }

    /// The words of the answer's body (`None` for an empty body).
    pub fn message(self) -> Option<&'static str> {
        match self {
            SessionLossForm::BadRequestWithoutId => {
                Some("Bad Request: No valid session ID provided")
            }
            SessionLossForm::NotFound => None,
            SessionLossForm::SessionNotFoundOk | SessionLossForm::SessionNotFoundNotFound => {
                Some("Session not found")
            }
            SessionLossForm::BadRequestText => Some("Bad Request: invalid or missing session ID"),
        }
    }

    /// The answer to a request with JSON-RPC id `id` (`None` for a
    /// notification or an unreadable body).
    pub fn response(self, id: Option<&Value>) -> Response {
        let status = self.status();
        match self {
            SessionLossForm::BadRequestWithoutId => json_response(
                status,
                json!({
                    "jsonrpc": "2.0",
                    "error": { "code": -32000, "message": self.message() },
                }),
            ),
            SessionLossForm::NotFound => status.into_response(),
            SessionLossForm::SessionNotFoundOk | SessionLossForm::SessionNotFoundNotFound => {
                let mut body = json!({
                    "jsonrpc": "2.0",
                    "error": { "code": -32001, "message": self.message() },
                });
                if let Some(id) = id {
                    body["id"] = id.clone();
                }
                json_response(status, body)
            }
            SessionLossForm::BadRequestText => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                self.message().unwrap_or_default(),
            )
                .into_response(),
        }
    }
}

impl fmt::Display for SessionLossForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The echo MCP server (legacy, stateful) behind a middleware that forgets a
/// session once it has served `forget_after` tool calls on it: the request
/// with the last of them is served, and every later request carrying that
/// `mcp-session-id` is answered in the [`SessionLossForm`] chosen at
/// construction, without reaching the echo server. `GET` is answered with
/// HTTP 405 (no standalone event stream, so only the request path can reveal
/// the loss); a new `initialize` creates a new session as usual.
///
/// Clones share the same sessions and counters.
#[derive(Clone, Debug)]
pub struct ForgetfulServer {
    app: EchoApp,
    state: Arc<Forgetting>,
}

#[derive(Debug)]
struct Forgetting {
    form: SessionLossForm,
    forget_after: u64,
    books: Mutex<Books>,
}

#[derive(Debug, Default)]
struct Books {
    /// Tool calls served, per session.
    calls: HashMap<String, u64>,
    /// Sessions forgotten.
    forgotten: HashSet<String>,
    /// Requests refused, per forgotten session.
    refused: HashMap<String, u64>,
}

impl Forgetting {
    fn books(&self) -> MutexGuard<'_, Books> {
        // Only plain counters are kept: a poisoned lock is still consistent.
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ForgetfulServer {
    /// A server answering forgotten sessions in `form`, forgetting each
    /// session after `forget_after` tool calls (at least 1).
    pub fn new(form: SessionLossForm, forget_after: u64) -> Self {
        ForgetfulServer {
            app: EchoApp::new(&EchoConfig::default()),
            state: Arc::new(Forgetting {
                form,
                forget_after: forget_after.max(1),
                books: Mutex::new(Books::default()),
            }),
        }
    }

    /// The form of its answers on forgotten sessions.
    pub fn form(&self) -> SessionLossForm {
        self.state.form
    }

    /// The echo application behind the middleware (its registry records
    /// every session created and every call served).
    pub fn app(&self) -> &EchoApp {
        &self.app
    }

    /// The router: the echo app wrapped in the forgetting middleware.
    pub fn router(&self) -> Router {
        self.app
            .router()
            .layer(middleware::from_fn_with_state(self.state.clone(), forget))
    }

    /// How many sessions it has forgotten.
    pub fn forgotten_count(&self) -> usize {
        self.state.books().forgotten.len()
    }

    /// How many requests it refused on each forgotten session (a session
    /// forgotten but never asked again is listed with 0).
    pub fn refusals(&self) -> HashMap<String, u64> {
        let books = self.state.books();
        books
            .forgotten
            .iter()
            .map(|id| (id.clone(), books.refused.get(id).copied().unwrap_or(0)))
            .collect()
    }

    /// Serves it on 127.0.0.1:`port` (0 picks a free port).
    pub async fn spawn(&self, port: u16) -> io::Result<FixtureServer> {
        FixtureServer::spawn(self.router(), port).await
    }
}

async fn forget(State(state): State<Arc<Forgetting>>, request: Request, next: Next) -> Response {
    if request.method() == Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(session) = session.filter(|_| request.method() == Method::POST) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    {
        let mut books = state.books();
        if books.forgotten.contains(&session) {
            *books.refused.entry(session).or_default() += 1;
            return state.form.response(message.get("id"));
        }
        if message.get("method").and_then(Value::as_str) == Some("tools/call") {
            let served = books.calls.entry(session.clone()).or_default();
            *served += 1;
            if *served >= state.forget_after {
                // This call is still served; the session is gone after it.
                books.forgotten.insert(session);
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
