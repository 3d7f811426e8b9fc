//! An axum middleware in front of rmcp's service that reads the JSON-RPC
//! method of each POST body: it counts the `initialize` and `server/discover`
//! requests the server receives, and in the legacy eras refuses
//! `server/discover` the way a server that predates it does.
//!
//! rmcp offers no hook for either. Its handlers see only the requests that
//! pass its checks (a `server/discover` naming a version the handler does
//! not serve is refused before `ServerHandler::discover` runs), so counting
//! there would miss the refused probes. And the refusal rmcp gives a
//! legacy-only handler, -32022 "Unsupported protocol version" listing the
//! legacy versions (HTTP 400), is a modern answer: rmcp's own `Auto` client
//! reads it as a modern server sharing no version with it and gives up
//! instead of falling back to `initialize`. A server that predates
//! 2026-07-28 answers -32601 instead, which is what the legacy eras send.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;

use crate::{Era, SessionRegistry};

/// The JSON-RPC method the legacy eras do not know.
const DISCOVER: &str = "server/discover";
const INITIALIZE: &str = "initialize";
const LIST_TOOLS: &str = "tools/list";

/// What the middleware needs: the era and where to count.
#[derive(Clone, Debug)]
pub(crate) struct Inspector {
    pub(crate) era: Era,
    pub(crate) registry: SessionRegistry,
    /// The most bytes of a POST body read; rmcp's own limit, so a body rmcp
    /// would accept is never refused here.
    pub(crate) max_body_bytes: usize,
}

/// The only fields read from a POST body. serde skips the rest (`params`
/// included) without building it.
#[derive(Deserialize)]
struct Envelope {
    method: Option<String>,
    /// Present (any JSON value, null included) on requests, absent on
    /// notifications.
    #[serde(default, deserialize_with = "present")]
    id: Option<serde_json::Value>,
}

/// Keeps `"id": null` apart from a missing `id`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Counts `initialize` and `server/discover` POSTs, refuses `server/discover`
/// in the legacy eras, and passes every request on with its body unchanged.
pub(crate) async fn inspect_post(
    State(inspector): State<Inspector>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let declared_len = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > inspector.max_body_bytes as u64) {
        // rmcp refuses it (413) without reading it all; so do we.
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, inspector.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) => return unreadable_body(&e, inspector.max_body_bytes),
    };
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(&bytes) {
        match envelope.method.as_deref() {
            Some(INITIALIZE) => inspector.registry.record_initialize_request(),
            Some(LIST_TOOLS) => inspector.registry.record_list_tools_request(),
            Some(DISCOVER) => {
                inspector.registry.record_discover_request();
                if let (false, Some(id)) = (inspector.era.serves_modern(), envelope.id) {
                    return method_not_found(id);
                }
            }
            _ => {}
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The answer of a server that does not know the method: JSON-RPC -32601
/// "Method not found" with the request's id, HTTP 200, as the TypeScript and
/// Python SDKs of the legacy revisions send it.
fn method_not_found(id: serde_json::Value) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": -32601, "message": "Method not found" },
    });
    json_response(StatusCode::OK, Bytes::from(body.to_string()))
}

/// rmcp's answers to a body it cannot take: 413 past the limit (its wording),
/// 400 when the body could not be read at all.
fn unreadable_body(error: &axum::Error, limit: usize) -> Response {
    let too_large = std::error::Error::source(error)
        .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
    let (status, text) = if too_large {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {limit} bytes"),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("Bad Request: cannot read the request body: {error}"),
        )
    };
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
