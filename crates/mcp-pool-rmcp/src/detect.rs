//! Which answers say that a server speaks another protocol era than the one
//! a request was made in (see the [crate docs](crate#protocol-eras)).

use rmcp::model::{ErrorCode, ErrorData, ProtocolVersion};
use rmcp::transport::streamable_http_client::StreamableHttpError;

use crate::http::status_in_words;
use crate::loss::names_lost_session;
use crate::{Era, HttpError};

/// The JSON-RPC codes of the 2026-07-28 refusals: -32020 header mismatch,
/// -32021 missing required client capability, -32022 unsupported protocol
/// version.
pub(crate) const MODERN_CODES: [ErrorCode; 3] = [
    ErrorCode::HEADER_MISMATCH,
    ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
    ErrorCode::UNSUPPORTED_PROTOCOL_VERSION,
];

/// Codes legacy servers use for "no such session" (see `loss.rs`).
const SESSION_CODES: [i32; 3] = [-32000, -32001, -32600];

/// The only protocol version this client speaks without `initialize`.
pub(crate) fn modern_version() -> ProtocolVersion {
    ProtocolVersion::LATEST
}

/// The server's error in words, as recorded in errors and logs.
pub(crate) fn said(data: &ErrorData) -> String {
    match &data.data {
        Some(extra) => format!("error {}: {} ({extra})", data.code.0, data.message),
        None => format!("error {}: {}", data.code.0, data.message),
    }
}

/// Whether a modern server's message refuses a request for lacking the
/// per-request `_meta` protocol version (rmcp: -32602 "request requires
/// protocolVersion in request _meta"): what a legacy request meets.
fn asks_for_request_meta(data: &ErrorData) -> bool {
    let message = data.message.to_ascii_lowercase();
    data.code == ErrorCode::INVALID_PARAMS
        && message.contains("_meta")
        && message.contains("protocol")
}

/// Whether `data`, the JSON-RPC error answering a request of `method` made
/// in era `era`, says the server now speaks the other era, so that the
/// request was refused before anything ran:
///
/// - on a modern request: -32022 (the server does not serve 2026-07-28);
///   an answer to `server/discover` other than -32020 and -32021 (every
///   modern server implements it; a legacy one answers -32601 or so); an
///   error naming a missing or unknown session (the server wants
///   `initialize`);
/// - on a legacy request: -32022 (the session's version is no longer
///   served), -32020 (the server checks modern headers), or -32602 asking
///   for the `_meta` protocol version;
/// - on a legacy stateless request (no session to have lost), also an
///   error naming a missing or unknown session: the server keeps sessions
///   now.
pub(crate) fn refuses_era(era: Era, method: &str, data: &ErrorData) -> bool {
    if data.code == ErrorCode::UNSUPPORTED_PROTOCOL_VERSION {
        return true;
    }
    let asks_for_session =
        SESSION_CODES.contains(&data.code.0) && names_lost_session(&data.message);
    match era {
        Era::Modern => {
            (method == "server/discover" && !MODERN_CODES.contains(&data.code)) || asks_for_session
        }
        Era::LegacyStateless => {
            data.code == ErrorCode::HEADER_MISMATCH
                || asks_for_request_meta(data)
                || asks_for_session
        }
        Era::LegacyStateful => {
            data.code == ErrorCode::HEADER_MISMATCH || asks_for_request_meta(data)
        }
    }
}

/// Whether `error`, the HTTP failure of a request made without a session
/// (modern or legacy stateless), is a stateful server's refusal in words:
/// HTTP 400 naming a missing or invalid session (rmcp: `Bad Request:
/// Session ID is required`).
pub(crate) fn http_asks_for_session(error: &StreamableHttpError<HttpError>) -> Option<String> {
    match error {
        StreamableHttpError::UnexpectedServerResponse(text)
            if status_in_words(text) == Some(400) && names_lost_session(text) =>
        {
            Some(text.to_string())
        }
        _ => None,
    }
}

/// Whether `data`, the server's error to `initialize`, is a modern server's
/// refusal (-32022, -32020, or -32602 asking for the `_meta` protocol
/// version): the origin is modern now.
pub(crate) fn initialize_refused_as_modern(data: &ErrorData) -> bool {
    refuses_era(Era::LegacyStateful, "initialize", data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn error(code: i32, message: &'static str) -> ErrorData {
        ErrorData::new(ErrorCode(code), message, None)
    }

    #[test]
    fn legacy_answers_to_modern_requests() {
        let m = Era::Modern;
        assert!(refuses_era(
            m,
            "server/discover",
            &error(-32601, "Method not found")
        ));
        assert!(refuses_era(
            m,
            "server/discover",
            &error(-32600, "Invalid Request")
        ));
        assert!(refuses_era(
            m,
            "tools/call",
            &error(-32022, "Unsupported protocol version")
        ));
        assert!(refuses_era(
            m,
            "tools/call",
            &error(-32000, "Bad Request: No valid session ID provided")
        ));
        // A modern server's own refusals and answers are not.
        assert!(!refuses_era(
            m,
            "server/discover",
            &error(-32021, "needs sampling")
        ));
        assert!(!refuses_era(
            m,
            "server/discover",
            &error(-32020, "header mismatch")
        ));
        assert!(!refuses_era(m, "tools/call", &error(-32601, "ping")));
        assert!(!refuses_era(m, "tools/call", &error(-32602, "no tool `x`")));
        assert!(!refuses_era(
            m,
            "tools/call",
            &error(-32020, "header mismatch")
        ));
    }

    #[test]
    fn modern_answers_to_legacy_requests() {
        let l = Era::LegacyStateful;
        assert!(refuses_era(
            l,
            "tools/call",
            &error(
                -32602,
                "Invalid params: request requires protocolVersion in request _meta"
            )
        ));
        assert!(refuses_era(
            l,
            "tools/call",
            &error(-32020, "header mismatch")
        ));
        assert!(refuses_era(
            Era::LegacyStateless,
            "ping",
            &error(-32022, "Unsupported")
        ));
        assert!(!refuses_era(l, "tools/call", &error(-32602, "no tool `x`")));
        // A stateless session meets a server that keeps sessions now; a
        // stateful one that meets those words lost its session instead.
        let wants_session = error(-32000, "Bad Request: No valid session ID provided");
        assert!(refuses_era(
            Era::LegacyStateless,
            "tools/call",
            &wants_session
        ));
        assert!(!refuses_era(l, "tools/call", &wants_session));
        assert!(!refuses_era(
            l,
            "tools/call",
            &error(-32601, "Method not found")
        ));
        assert!(initialize_refused_as_modern(&error(
            -32022,
            "Unsupported protocol version"
        )));
        assert!(!initialize_refused_as_modern(&error(-32603, "boom")));
    }

    #[test]
    fn a_session_required_in_words_refuses_a_modern_request() {
        let text =
            |t: &'static str| StreamableHttpError::UnexpectedServerResponse(Cow::Borrowed(t));
        assert!(http_asks_for_session(&text(
            "HTTP 400 Bad Request: Bad Request: Session ID is required"
        ))
        .is_some());
        assert!(http_asks_for_session(&text("HTTP 400 Bad Request: bad params")).is_none());
        assert!(http_asks_for_session(&text("HTTP 500: session invalid")).is_none());
    }
}
