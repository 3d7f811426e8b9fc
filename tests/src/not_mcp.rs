//! Live HTTP servers that answer every request with something that is not
//! MCP: what a pool meets when its URL points at the wrong service, a proxy
//! error page or a broken server.

use std::fmt;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

/// What a [`NotMcp`] fixture answers, to every method on every path.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NotMcp {
    /// HTTP 500 with a `text/plain` body `internal error`.
    Status500,
    /// HTTP 200, `text/html`: a web server's welcome page.
    Html,
    /// HTTP 200, `application/json`, with a body that is not JSON.
    BrokenJson,
    /// HTTP 200, `text/event-stream`, with an event whose data is not JSON.
    BrokenSse,
}

impl NotMcp {
    /// Every kind, in a fixed order.
    pub const ALL: [NotMcp; 4] = [
        NotMcp::Status500,
        NotMcp::Html,
        NotMcp::BrokenJson,
        NotMcp::BrokenSse,
    ];

    /// The kind's name: `http-500`, `html`, `broken-json`, `broken-sse`.
    pub fn name(self) -> &'static str {
        match self {
            NotMcp::Status500 => "http-500",
            NotMcp::Html => "html",
            NotMcp::BrokenJson => "broken-json",
            NotMcp::BrokenSse => "broken-sse",
        }
    }

    /// The response it gives to every request.
    pub fn response(self) -> Response {
        match self {
            NotMcp::Status500 => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
            NotMcp::Html => (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><body>Welcome to nginx!</body></html>",
            )
                .into_response(),
            NotMcp::BrokenJson => (
                [(header::CONTENT_TYPE, "application/json")],
                "\u{0}\u{1}garbage",
            )
                .into_response(),
            NotMcp::BrokenSse => (
                [(header::CONTENT_TYPE, "text/event-stream")],
                "data: {this is not json\n\n",
            )
                .into_response(),
        }
    }

    /// A router answering [`NotMcp::response`] to every request.
    pub fn router(self) -> Router {
        Router::new().fallback(any(move || async move { self.response() }))
    }
}

impl fmt::Display for NotMcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
