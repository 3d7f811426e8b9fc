//! HTTP over the simulated network: an rmcp `StreamableHttpClient` on hyper
//! over turmoil TCP streams, and an axum listener on a turmoil TCP listener.
//!
//! Both sides are real: the client is plugged into the same
//! [`McpConnector`](mcp_pool_rmcp::McpConnector) that runs on real sockets
//! (through `build_with_client`), and the server is the same
//! `mcp-pool-echo` app served by axum. Only the sockets are simulated.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mcp_pool_rmcp::{HttpError, HttpErrorKind};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, ErrorData, ServerJsonRpcMessage};
use rmcp::transport::common::http_header::{
    EVENT_STREAM_MIME_TYPE, HEADER_LAST_EVENT_ID, HEADER_SESSION_ID, JSON_MIME_TYPE,
};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

/// Largest response body read whole (JSON answers and error pages).
const MAX_BODY: usize = 1 << 20;

/// Most bytes of an error answer's body kept in the error's text: rmcp's
/// own HTTP client's default (`max_error_response_size`), so that the
/// connector reads the same text here as on real sockets.
const MAX_ERROR_TEXT: usize = 64 * 1024;

/// An rmcp HTTP client over the simulated network: one turmoil TCP
/// connection per request (HTTP/1.1 via hyper), opened within
/// `connect_timeout`. Errors are [`HttpError`]s, so the connector classifies
/// them like reqwest's: a connect that fails or times out is
/// [`HttpErrorKind::Connect`] (nothing was sent), a connection that breaks
/// is [`HttpErrorKind::Io`].
///
/// Must be used inside a turmoil host. Response size limits requested by
/// rmcp are not enforced beyond 1 MiB for whole bodies.
#[derive(Clone, Debug)]
pub struct SimHttpClient {
    connect_timeout: Duration,
}

impl SimHttpClient {
    /// A client whose connects give up after `connect_timeout` (a crashed
    /// or partitioned host never answers a SYN).
    pub fn new(connect_timeout: Duration) -> Self {
        Self { connect_timeout }
    }

    /// Sends `request` (whose URI is absolute) on a new connection and
    /// returns the response head; the body streams from the connection.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, HttpError> {
        let uri = request.uri();
        let host = uri
            .host()
            .ok_or_else(|| HttpError::new(HttpErrorKind::Other, "the URL has no host"))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| HttpError::new(HttpErrorKind::Other, format!("bad path: {e}")))?;
        parts.uri = path;
        parts.headers.insert(
            header::HOST,
            HeaderValue::from_str(&authority)
                .map_err(|e| HttpError::new(HttpErrorKind::Other, format!("bad host: {e}")))?,
        );
        let connect = turmoil::net::TcpStream::connect(authority.as_str());
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(HttpError::new(HttpErrorKind::Connect, e.to_string())),
            Err(_) => {
                return Err(HttpError::new(
                    HttpErrorKind::Connect,
                    format!("no connection within {:?}", self.connect_timeout),
                ))
            }
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Io, e.to_string()))?;
        tokio::spawn(async move {
            // The connection ends with the response body; its error, if any,
            // reaches the body reader.
            let _ = connection.await;
        });
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Io, e.to_string()))
    }
}

fn request(
    method: Method,
    uri: &str,
    session_id: Option<&str>,
    auth_token: Option<String>,
    custom_headers: HashMap<HeaderName, HeaderValue>,
) -> http::request::Builder {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = auth_token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in custom_headers {
        builder = builder.header(name, value);
    }
    if let Some(id) = session_id {
        builder = builder.header(HEADER_SESSION_ID, id);
    }
    builder
}

fn build(builder: http::request::Builder, body: Bytes) -> Result<Request<Full<Bytes>>, HttpError> {
    builder
        .body(Full::new(body))
        .map_err(|e| HttpError::new(HttpErrorKind::Other, format!("bad request: {e}")))
}

async fn read_body(response: Response<Incoming>) -> Result<Bytes, HttpError> {
    Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| HttpError::new(HttpErrorKind::Io, format!("response body broke: {e}")))
}

fn content_type(response: &Response<Incoming>) -> Option<String> {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn content_type_is(response: &Response<Incoming>, mime: &str) -> bool {
    content_type(response).is_some_and(|v| v.split(';').next().unwrap_or("").trim() == mime)
}

fn sse(response: Response<Incoming>) -> BoxStream<'static, Result<Sse, SseError>> {
    SseStream::new(response.into_body()).boxed()
}

/// What rmcp's own HTTP client makes of a POST answered with a failure
/// status, so that the connector meets the same answers here as on real
/// sockets: a JSON body that is a JSON-RPC error is the server's answer
/// (rmcp passes it on as an `McpError`), except after 401, 403 and 429; a
/// `server/discover` sent without a session and refused with any other 4xx
/// is answered with a JSON-RPC error under the request's id (rmcp's legacy
/// fallback); anything else fails, naming the status and the body.
async fn failed(
    message: &ClientJsonRpcMessage,
    session_attached: bool,
    response: Response<Incoming>,
) -> Result<StreamableHttpPostResponse, StreamableHttpError<HttpError>> {
    let status = response.status();
    let auth = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    let json = content_type_is(&response, JSON_MIME_TYPE);
    if status == StatusCode::TOO_MANY_REQUESTS || (status.is_server_error() && !json) {
        return Err(unexpected(response).await);
    }
    let body = read_body(response).await?;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_TEXT)]).into_owned();
    let error = match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
        Ok(ServerJsonRpcMessage::Error(error)) if json && !auth => Some(error),
        _ => None,
    };
    let discover = match message {
        ClientJsonRpcMessage::Request(request)
            if !session_attached
                && !auth
                && status.is_client_error()
                && matches!(request.request, ClientRequest::DiscoverRequest(_)) =>
        {
            Some(request.id.clone())
        }
        _ => None,
    };
    let answer = match (error, discover) {
        (Some(error), Some(id)) => ServerJsonRpcMessage::error(error.error, Some(id)),
        (Some(error), None) => ServerJsonRpcMessage::Error(error),
        (None, Some(id)) => ServerJsonRpcMessage::error(
            ErrorData::invalid_request(
                format!("server/discover rejected with HTTP {status}: {text}"),
                None,
            ),
            Some(id),
        ),
        (None, None) => {
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!("HTTP {status}: {text}"),
            )))
        }
    };
    Ok(StreamableHttpPostResponse::Json(answer, None))
}

async fn unexpected(response: Response<Incoming>) -> StreamableHttpError<HttpError> {
    let status = response.status();
    let body = read_body(response).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_TEXT)]).into_owned();
    StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!("HTTP {status}: {text}")))
}

impl StreamableHttpClient for SimHttpClient {
    type Error = HttpError;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<HttpError>> {
        let body = serde_json::to_vec(&message)
            .map_err(|e| HttpError::new(HttpErrorKind::Other, e.to_string()))?;
        let builder = request(
            Method::POST,
            &uri,
            session_id.as_deref(),
            auth_token,
            custom_headers,
        )
        .header(header::CONTENT_TYPE, JSON_MIME_TYPE)
        .header(
            header::ACCEPT,
            format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
        );
        let response = self.send(build(builder, body.into())?).await?;
        let status = response.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !status.is_success() {
            return failed(&message, session_id.is_some(), response).await;
        }
        let new_session_id = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if content_type_is(&response, EVENT_STREAM_MIME_TYPE) {
            return Ok(StreamableHttpPostResponse::Sse(
                sse(response),
                new_session_id,
            ));
        }
        if content_type_is(&response, JSON_MIME_TYPE) {
            let body = read_body(response).await?;
            let parsed: ServerJsonRpcMessage = serde_json::from_slice(&body).map_err(|e| {
                StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!(
                    "unparsable JSON-RPC answer: {e}"
                )))
            })?;
            return Ok(StreamableHttpPostResponse::Json(parsed, new_session_id));
        }
        if !matches!(message, ClientJsonRpcMessage::Request(_)) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(content_type(
            &response,
        )))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<HttpError>> {
        let builder = request(
            Method::DELETE,
            &uri,
            Some(&session_id),
            auth_token,
            custom_headers,
        );
        let response = self.send(build(builder, Bytes::new())?).await?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED || response.status().is_success() {
            return Ok(());
        }
        Err(unexpected(response).await)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<HttpError>> {
        let mut builder = request(
            Method::GET,
            &uri,
            session_id.as_deref(),
            auth_token,
            custom_headers,
        )
        .header(
            header::ACCEPT,
            format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
        );
        if let Some(id) = last_event_id {
            builder = builder.header(HEADER_LAST_EVENT_ID, id);
        }
        let response = self.send(build(builder, Bytes::new())?).await?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if response.status() == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !response.status().is_success() {
            return Err(unexpected(response).await);
        }
        if !content_type_is(&response, EVENT_STREAM_MIME_TYPE) {
            return Err(StreamableHttpError::UnexpectedContentType(content_type(
                &response,
            )));
        }
        Ok(sse(response))
    }
}

/// A turmoil TCP listener that axum can serve on.
pub struct SimListener(turmoil::net::TcpListener);

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SimListener")
            .field(&self.0.local_addr().ok())
            .finish()
    }
}

impl SimListener {
    /// Binds `0.0.0.0:port` on the current turmoil host: an address of the
    /// simulated network only, no real socket is opened.
    pub async fn bind(port: u16) -> io::Result<SimListener> {
        turmoil::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .map(SimListener)
    }
}

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                // Accept errors are transient; axum's own listener sleeps too.
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
