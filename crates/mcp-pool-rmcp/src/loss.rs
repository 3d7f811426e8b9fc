//! Which answers say that the server forgot the session, and which error
//! replies would otherwise be dropped by rmcp (see the [crate docs'
//! table](crate#session-loss)).

use rmcp::model::{ClientJsonRpcMessage, ClientRequest, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::StreamableHttpError;

use crate::http::status_in_words;
use crate::HttpError;

/// JSON-RPC codes servers use for "no such session": -32000 (the
/// TypeScript SDK's "Bad Request: No valid session ID provided"), -32001
/// (its "Session not found") and -32600 (Invalid Request, the Python SDK's).
/// A correlated error counts as session loss only with one of these codes
/// and words naming a lost session, so a tool's own error that mentions
/// some other "session" is still the tool's answer.
const SESSION_CODES: [i32; 3] = [-32000, -32001, -32600];

/// What a POST carried, as far as judging its answer needs.
#[derive(Clone, Debug)]
pub(crate) struct Posted {
    /// The request's id (`None` for a notification, response or error).
    pub(crate) request_id: Option<RequestId>,
    /// Whether the request is `initialize`.
    pub(crate) initialize: bool,
    /// Whether an `mcp-session-id` was attached.
    pub(crate) session: bool,
}

impl Posted {
    pub(crate) fn of(message: &ClientJsonRpcMessage, session: bool) -> Posted {
        match message {
            ClientJsonRpcMessage::Request(request) => Posted {
                request_id: Some(request.id.clone()),
                initialize: matches!(request.request, ClientRequest::InitializeRequest(_)),
                session,
            },
            _ => Posted {
                request_id: None,
                initialize: false,
                session,
            },
        }
    }
}

/// What a JSON answer to a POST means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// An answer for rmcp to deliver as it is.
    Answer,
    /// The server forgot the session; these are its words.
    Lost(String),
    /// An error reply to a request of a sessionless exchange whose `id` is
    /// missing or another: rmcp would drop it and the call would wait for
    /// its timeout, so it is delivered under the request's id.
    Recorrelate,
}

/// Whether `text` says that a session is unknown, invalid, expired or
/// missing.
pub(crate) fn names_lost_session(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("session")
        && [
            "not found",
            "no valid",
            "invalid",
            "unknown",
            "expired",
            "missing",
            "terminated",
            "does not exist",
            "no such",
            "required",
        ]
        .iter()
        .any(|words| text.contains(words))
}

/// Whether the reply id `id` answers request `request` (rmcp's own rule: the
/// same id, or a number sent back as its decimal string).
fn answers(request: &RequestId, id: &RequestId) -> bool {
    request == id
        || matches!(
            (request, id),
            (RequestId::Number(n), RequestId::String(s)) if s.parse::<i64>().ok() == Some(*n)
        )
}

/// What `reply`, the JSON answer to `posted`, means. With a session
/// attached, an error reply means the session is lost when its `id` is
/// missing or another (the server could not relate the request to anything
/// it knows), or when it is correlated, has one of the session codes and
/// names a lost session; for a notification only the words count. Without
/// a session, an uncorrelated error reply to a request is re-correlated.
pub(crate) fn judge_reply(posted: &Posted, reply: &ServerJsonRpcMessage) -> Verdict {
    let ServerJsonRpcMessage::Error(error) = reply else {
        return Verdict::Answer;
    };
    let correlated = match (&posted.request_id, &error.id) {
        (Some(request), Some(id)) => answers(request, id),
        _ => false,
    };
    let data = &error.error;
    if posted.session {
        let lost = match posted.request_id {
            Some(_) => {
                !correlated
                    || (SESSION_CODES.contains(&data.code.0) && names_lost_session(&data.message))
            }
            None => names_lost_session(&data.message),
        };
        return match lost {
            true => Verdict::Lost(format!("error {}: {}", data.code.0, data.message)),
            false => Verdict::Answer,
        };
    }
    match posted.request_id.is_some() && !correlated {
        true => Verdict::Recorrelate,
        false => Verdict::Answer,
    }
}

/// The server's words if `error`, the failure of `posted`, says that the
/// server forgot the session: with a session attached, HTTP 404
/// (`SessionExpired`), or HTTP 400 whose body names a lost session.
pub(crate) fn judge_failure(
    posted: &Posted,
    error: &StreamableHttpError<HttpError>,
) -> Option<String> {
    if !posted.session {
        return None;
    }
    match error {
        StreamableHttpError::SessionExpired => Some("HTTP 404 Not Found".to_owned()),
        StreamableHttpError::UnexpectedServerResponse(text)
            if status_in_words(text) == Some(400) && names_lost_session(text) =>
        {
            Some(text.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ErrorCode, ErrorData, JsonRpcError};
    use std::borrow::Cow;

    fn request(id: i64, session: bool) -> Posted {
        Posted {
            request_id: Some(RequestId::Number(id)),
            initialize: false,
            session,
        }
    }

    fn notification(session: bool) -> Posted {
        Posted {
            request_id: None,
            initialize: false,
            session,
        }
    }

    fn error(id: Option<RequestId>, code: i32, message: &'static str) -> ServerJsonRpcMessage {
        ServerJsonRpcMessage::Error(JsonRpcError::new(
            id,
            ErrorData::new(ErrorCode(code), message, None),
        ))
    }

    #[test]
    fn the_typescript_answer_without_an_id_is_a_lost_session() {
        let reply = error(None, -32000, "Bad Request: No valid session ID provided");
        assert_eq!(
            judge_reply(&request(7, true), &reply),
            Verdict::Lost("error -32000: Bad Request: No valid session ID provided".into())
        );
    }

    #[test]
    fn any_uncorrelated_error_on_a_session_is_a_lost_session() {
        let other_id = error(Some(RequestId::Number(8)), -32603, "internal");
        let no_id = error(None, -32700, "Parse error");
        for reply in [other_id, no_id] {
            assert!(matches!(
                judge_reply(&request(7, true), &reply),
                Verdict::Lost(_)
            ));
        }
    }

    #[test]
    fn session_not_found_with_the_request_id_is_a_lost_session() {
        let reply = error(Some(RequestId::Number(7)), -32001, "Session not found");
        assert_eq!(
            judge_reply(&request(7, true), &reply),
            Verdict::Lost("error -32001: Session not found".into())
        );
        // The id sent back as a string still answers the request.
        let as_string = error(
            Some(RequestId::String("7".into())),
            -32600,
            "Invalid session",
        );
        assert!(matches!(
            judge_reply(&request(7, true), &as_string),
            Verdict::Lost(_)
        ));
    }

    #[test]
    fn a_tools_own_error_is_its_answer() {
        let unknown_tool = error(Some(RequestId::Number(7)), -32602, "no tool `x`");
        let about_a_session = error(
            Some(RequestId::Number(7)),
            -32602,
            "browser session not found",
        );
        for reply in [unknown_tool, about_a_session] {
            assert_eq!(judge_reply(&request(7, true), &reply), Verdict::Answer);
        }
        let result = ServerJsonRpcMessage::response(
            rmcp::model::ServerResult::empty(()),
            RequestId::Number(7),
        );
        assert_eq!(judge_reply(&request(7, true), &result), Verdict::Answer);
    }

    #[test]
    fn a_notification_counts_only_the_words() {
        let lost = error(None, -32000, "Bad Request: No valid session ID provided");
        assert!(matches!(
            judge_reply(&notification(true), &lost),
            Verdict::Lost(_)
        ));
        let other = error(None, -32602, "unknown request id");
        assert_eq!(judge_reply(&notification(true), &other), Verdict::Answer);
    }

    #[test]
    fn without_a_session_an_uncorrelated_error_is_recorrelated() {
        let no_id = error(None, -32000, "Bad Request: No valid session ID provided");
        assert_eq!(
            judge_reply(&request(7, false), &no_id),
            Verdict::Recorrelate
        );
        let correlated = error(Some(RequestId::Number(7)), -32001, "Session not found");
        assert_eq!(
            judge_reply(&request(7, false), &correlated),
            Verdict::Answer
        );
        assert_eq!(judge_reply(&notification(false), &no_id), Verdict::Answer);
    }

    #[test]
    fn failures_that_say_the_session_is_gone() {
        type E = StreamableHttpError<HttpError>;
        let text = |t: &'static str| E::UnexpectedServerResponse(Cow::Borrowed(t));
        let on_session = request(1, true);
        assert_eq!(
            judge_failure(&on_session, &E::SessionExpired).as_deref(),
            Some("HTTP 404 Not Found")
        );
        let words = "HTTP 400 Bad Request: Bad Request: invalid or missing session ID";
        assert_eq!(
            judge_failure(&on_session, &text(words)).as_deref(),
            Some(words)
        );
        // A plugged client words a JSON body the same way.
        let json = r#"HTTP 400 Bad Request: {"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}"#;
        assert!(judge_failure(&on_session, &text(json)).is_some());
        assert_eq!(
            judge_failure(&on_session, &text("HTTP 400 Bad Request: bad params")),
            None
        );
        assert_eq!(
            judge_failure(&on_session, &text("HTTP 500: session invalid")),
            None
        );
        assert_eq!(judge_failure(&request(1, false), &text(words)), None);
    }
}
