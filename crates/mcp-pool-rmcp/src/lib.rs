//! # mcp-pool-rmcp
//!
//! A [`Connector`](mcp_pool::Connector) of [`mcp_pool`] for [rmcp] client
//! sessions over MCP Streamable HTTP, so that a gateway can pool real
//! sessions, in every protocol era, and never hand out a broken one:
//!
//! ```no_run
//! use mcp_pool::Pool;
//! use mcp_pool_rmcp::{McpConnector, SessionKey};
//! use rmcp::model::CallToolRequestParams;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(McpConnector::new()?).max_sessions_per_key(8).build()?;
//! let key = SessionKey::builder("https://mcp.example.com/mcp")
//!     .bearer("token")
//!     .build()?;
//! let args = rmcp::serde_json::json!({ "message": "hi" });
//! let result = pool
//!     .run(&key, async |session| {
//!         let params = CallToolRequestParams::new("echo")
//!             .with_arguments(args.as_object().cloned().unwrap_or_default());
//!         session.call_tool(params).await
//!     })
//!     .await?;
//! # let _ = result; Ok(()) }
//! ```
//!
//! ## Transport-aware health
//!
//! rmcp cannot tell that a transport died: after the server is killed,
//! `RunningService::is_closed` stays false. So each session's HTTP client is
//! a [`HealthClient`], which delegates every method of rmcp's
//! `StreamableHttpClient` to `reqwest` and records in the session's
//! [`Health`] cell each sign of death: a refused connection, a broken
//! response or event stream, the server forgetting the session (see
//! [Session loss](#session-loss)), HTTP 5xx, an answer that is not MCP. The connector's `is_closed` reads the cell (no I/O), its
//! `closed_notification` fires when the cell dies (for an idle session, when
//! the server-sent event stream breaks), and [`McpSession`]'s request methods
//! stop waiting as soon as it dies, unless it died of a failed request, a
//! broken event stream, or another call's broken response stream: each call
//! already sent then waits for the answer on its own exchange. A call whose
//! own response stream broke on a stateful session waits while rmcp resumes
//! the stream from its last event id (a live server behind a proxy that cut
//! it answers there), and fails at the first failed attempt.
//!
//! ## Session loss
//!
//! A legacy stateful server that forgets a session (it expired it, restarted,
//! or lost it behind a load balancer) says so in one of several ways, and
//! rmcp's client passes some of them on only as an answer it then drops, so
//! the call would wait for its request timeout and the dead session would go
//! back to the pool. The [`HealthClient`] sees each request and its answer,
//! and treats these answers to a request that carried an `mcp-session-id`
//! as session loss:
//!
//! | the server answers | as rmcp's reqwest client passes it on | the server's words recorded |
//! |---|---|---|
//! | HTTP 404, any body (the specification's answer; the body is not read) | `SessionExpired` | `HTTP 404 Not Found` |
//! | HTTP 400, a JSON-RPC error without `id`, e.g. `-32000 Bad Request: No valid session ID provided` (TypeScript SDK) | a JSON answer | `error -32000: Bad Request: No valid session ID provided` |
//! | any JSON-RPC error reply to a request whose `id` is missing or another request's, any status | a JSON answer | `error CODE: MESSAGE` |
//! | a JSON-RPC error with the request's `id`, code -32000, -32001 or -32600, whose message says a session is not found, invalid, unknown, expired, missing or terminated (e.g. `-32001 Session not found`), any status | a JSON answer | `error -32001: Session not found` |
//! | HTTP 400 with a body that is not a JSON-RPC error and says a session is invalid, missing, unknown... (e.g. `text/plain` `Bad Request: invalid or missing session ID`) | `HTTP 400 ...: BODY` in words | `HTTP 400 Bad Request: BODY` |
//! | a JSON-RPC error without `id` answering a notification, whose message names a lost session | a JSON answer | `error CODE: MESSAGE` |
//! | HTTP 404 on the standalone event stream (`GET`) | `SessionExpired` | `HTTP 404 Not Found (on the event stream)` |
//!
//! For each, the session's [`Health`] cell goes dead with the server's words
//! in its reason ([`Health::lost`] keeps them), and that request alone fails
//! as `SessionExpired` inside rmcp, which [`McpSession`] reports as
//! [`Error::SessionLost`]: outcome `TransportError` (the pool poisons the
//! session), and [`Error::is_safe_to_retry`], since the server refused the
//! request without processing it, so [`run_with_retry`] runs it again on
//! another session. Other requests in flight on the session are not claimed
//! refused: each gets its own answer (one the server had accepted, its
//! response stream open, waits for it there, as behind a load balancer that
//! lost the session's route while the first replica still streams the
//! call), or fails as interrupted ([`Error::TransportClosed`] with `sent:
//! true`) if within 2 s it got neither its refusal nor a response stream.
//!
//! Not session loss: an error with the request's `id` and another code, or
//! without those words (a tool's own error about some other "session"), and
//! HTTP 400 with other words; they stay the server's answer to that request.
//! Without a session attached (a sessionless server), an error reply whose
//! `id` is missing or another request's is delivered under the request's
//! `id`, so the call fails at once with the server's error (outcome
//! `ApplicationError`) instead of waiting for its timeout. Answers inside a
//! response's event stream are passed on as they are.
//!
//! ## Protocol eras
//!
//! Since MCP 2026-07-28 an upstream is one of three kinds ([`Era`]), and a
//! server may change kind across a restart:
//!
//! | era | connect | server state | `max_leases` | health check (default chain) |
//! |---|---|---|---|---|
//! | [`Era::Modern`] (2026-07-28) | none: an rmcp client started without handshake ([`rmcp::service::serve_directly`]) on the origin's `server/discover` result; every request carries `_meta` (protocol version, client capabilities, client info) and the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers | none | [`McpConnectorBuilder::shared_leases`] (default 16) | `server/discover` sent as a request → `tools/list` → skip |
//! | [`Era::LegacyStateful`] | `initialize`, answered with an `Mcp-Session-Id` | per session | 1 | `ping` → `tools/list` → skip |
//! | [`Era::LegacyStateless`] | `initialize`, answered without one | none | `shared_leases` | `ping` → `tools/list` → skip |
//!
//! **Detection** ([`EraPolicy::Auto`], the default) follows the
//! specification's dual-era rule, once per origin (scheme, host, port and
//! path of the URL) for the life of the connector, single-flight (the
//! first connect probes, concurrent ones wait for its answer): a
//! `server/discover` is sent first, under `discover_timeout`; a result
//! listing 2026-07-28 means modern (and opens this connect's session), a
//! modern refusal (-32020, -32021, or no version in common) means a modern
//! server that refuses this client (the connect fails with it); anything
//! else (a legacy server's -32601, HTTP 400 or 405 without a modern body,
//! no answer in time, no answer at all) falls back to `initialize`, whose
//! `Mcp-Session-Id` or lack of one says stateful or stateless. Every later
//! connect of the origin follows the record: a legacy one sends
//! `initialize` only, and a modern one sends nothing while a
//! `server/discover` result this key may be served is fresh (its `ttlMs`),
//! else one `server/discover`, whose result is cached. rmcp 3.11 cannot
//! tell an HTTP 404 from an HTTP 200 behind a JSON-RPC error, so the
//! rule's "404 with -32601" is taken as a legacy answer; such a server then
//! refuses `initialize` like a 2026-07-28 one, and the connect says both.
//!
//! **Re-detection**: when the record stops holding, the connect or request
//! that found out forgets it and the next connect detects again. A legacy
//! connect whose `initialize` a 2026-07-28 server refuses (-32022, -32020,
//! or -32602 asking for the `_meta` protocol version) detects again at
//! once and succeeds in the new era. A request refused as one of another
//! era fails with [`Error::EraChanged`] (safe to retry, the session is
//! poisoned): on a modern session -32022, an answer to `server/discover`
//! other than -32020 and -32021, or an error naming a missing session; on a
//! legacy one -32022, -32020 or -32602 asking for the `_meta` protocol
//! version; on a legacy stateless one also an error naming a missing
//! session (the server keeps sessions now). A legacy stateful session
//! whose server restarted loses its event stream, and is poisoned before
//! any caller meets the new server. The era and protocol version are shown
//! per key by `key_labels` (`era`, `protocol_version`; `era` = `unknown`
//! before the first connect), per session by [`McpSession::era`] and
//! [`McpSession::protocol_version`], per origin by [`McpConnector::era_of`],
//! and logged (debug) when detected or changed.
//!
//! rmcp's own `ClientLifecycleMode::Auto` (`serve_with_lifecycle`) does the
//! same probe on every connect, and its fallback after 10 s without an
//! answer did not fire over the HTTP transport; its `Discover` mode hides
//! the result's `ttlMs` and `cacheScope`. So this crate probes itself,
//! once per origin under its own timeout, opens legacy sessions with plain
//! `initialize`, and starts modern ones with `serve_directly`, whose first
//! request is a `server/discover` that the [`HealthClient`] answers from
//! the cache without I/O when it can (so the transport's start-up request,
//! which rmcp treats apart, is never a caller's).
//!
//! **What modern sessions pass through untouched**, as rmcp's peer does it
//! in 2026-07-28: `subscriptions/listen` ([`rmcp::Peer::listen`] through
//! [`McpSession::peer`], which holds the lease for as long as it listens;
//! not exercised by this crate's tests); a request for input (MRTR,
//! `InputRequiredResult`), which [`McpSession::call_tool`] returns as
//! [`Error::InputRequired`] and [`McpSession::request`] as
//! `ServerResult::InputRequiredResult`, for the caller to fulfil or relay
//! and retry (on any session) with `inputResponses` and `requestState`.
//! **Not supported yet**: routing a `listen` subscription to a per-key
//! subscriber, and the tasks extension (`call_tool` refuses a task answer
//! as `UnexpectedResponse`). A broken response stream loses its request
//! alone (no resumability in 2026-07-28: rmcp fails it as
//! `TransportClosed`; it may have run, so [`run_with_retry`] never
//! re-issues it), without killing the other requests sharing the session.
//!
//! ## Call events
//!
//! A gateway must carry the server's messages about a call to that call's
//! caller, while other callers share the upstream session.
//! [`McpSession::call_tool_with_events`] and
//! [`McpSession::request_with_events`] send each [`CallEvent`] of their call
//! to the caller's channel, in exclusive and shared leases, in every era:
//!
//! | message | belongs to the call when | event |
//! |---|---|---|
//! | `notifications/progress` | its token is the call's (on any stream of the session) | [`CallEvent::Progress`] |
//! | `notifications/message` | it arrives on the call's response stream; or, on an exclusive session (legacy stateful, or `shared_leases(1)`), on the session's event stream while this is the one call with events in flight | [`CallEvent::Log`] |
//! | `notifications/cancelled` | its `requestId` is the call's | [`CallEvent::Cancelled`] |
//!
//! **How**: the session tags the request (in its extensions, never sent),
//! and its [`HealthClient`] sees the POST that carries it, with the
//! progress token rmcp put in its `_meta`, and the response stream that
//! answers it; each event of that stream (and of the session's GET stream)
//! is routed as it is read, before rmcp gets it. So a call's events reach
//! its channel in the order the server sent them on the call's stream, each
//! exactly once, and before the result, which comes later on the same
//! stream. Not through rmcp's client handler: rmcp 3.11 runs each
//! notification's handler in a task of its own and hands a result to its
//! caller directly, so a handler sees notifications out of order and after
//! the result. Concurrent calls on one shared session each get only their
//! own: each has its own response stream and its own token.
//!
//! **Progress tokens**: every request carries a token of the session's own
//! (rmcp's per-session counter, unique among the session's requests), which
//! replaces any `progressToken` the caller put in `_meta`; the server sees
//! only the session's token, and the events carry none: a gateway labels
//! them with its downstream caller's own token.
//!
//! **Limits**: an rmcp server in a legacy stateful session sends log lines
//! on the session's GET stream, not the call's (its progress and results
//! go on the call's stream; the TypeScript and Python SDK servers send a
//! request's log lines on its own stream). Such a line reaches the call
//! only while the call is in flight and alone on its exclusive session,
//! and may trail the result, since two HTTP streams keep no order between
//! them; a line that comes after the call returned goes to the key's
//! subscriber. On a shared session, a log line on the GET stream is no
//! call's. A call's stream resumed by rmcp (legacy `Last-Event-ID`) is
//! read as the session's stream. Events after the call's result are no
//! longer the call's.
//!
//! **Messages about no call** (list changes, resource updates, progress
//! with an unknown token or a log line on the session's GET stream,
//! cancellations of no call) go to the key's subscriber
//! ([`McpConnector::subscribe`]), else are dropped and counted
//! ([`McpConnector::dropped_notifications`]). A notification on another
//! request's stream (a request sent without events, a `listen`
//! subscription) is that request's business, and is left to rmcp.
//!
//! **Server requests**: a legacy server may ask the client for sampling
//! (`sampling/createMessage`), elicitation or roots (`roots/list`). Each
//! session's client service is a [`PoolClientHandler`]: it answers them
//! through the hook registered with
//! [`McpConnectorBuilder::on_server_request`], or refuses them with
//! JSON-RPC error -32601 "`METHOD` is not supported by this client"
//! (rmcp's own default handler would answer `roots/list` with no roots and
//! decline every elicitation). A 2026-07-28 server asks with MRTR instead,
//! which is returned to the caller untouched (above).
//!
//! ## Result caches and identities
//!
//! `server/discover` and `tools/list` results are cached by the connector
//! for every session of a key, within their `ttlMs` ([`McpSession::discover`],
//! [`McpSession::list_all_tools`]; health checks bypass the cache, and
//! rmcp's own per-session cache is off). A result marked `cacheScope:
//! public` may serve every identity of its endpoint; one marked `private`,
//! or without a scope, serves only the [`Identity`] it was fetched for:
//! invariant [`invariants::C1`], checked with
//! [`McpConnectorBuilder::cache_audit`] and [`McpConnector::cache_events`].
//!
//! ## Connect failures
//!
//! The connector's `classify_connect` is [`Error::connect_failure`]: a live
//! server's definite answer (an HTTP error status other than 429, 502, 503
//! and 504, a body that is not MCP, a JSON-RPC error to `initialize`) is
//! `Rejected`, so every caller waiting for that connect learns it at once;
//! an unreachable or temporarily unavailable server is `Failed`, so callers
//! wait for the next attempt. A modern connect that fails is
//! [`Error::Discover`]: `Rejected` for a modern refusal (-32020, -32021, no
//! version in common, or a legacy answer under [`EraPolicy::Modern`]),
//! `Failed` for no answer. The error names what the server said (`HTTP
//! 500`, the content type, the JSON-RPC code and message, the data of an
//! event it could not parse).
//!
//! ## Credentials
//!
//! No credential leaves the process through this crate: not in errors (their
//! messages, `Debug` output and every error of their `source()` chain), not
//! in `Debug` output of keys, builders, connectors and sessions, not in logs.
//! rmcp's errors stay reachable in [`Error`] for programmatic matching,
//! because every HTTP failure inside them is an [`HttpError`] made by the
//! [`HealthClient`], whose text has every URL redacted (user info and query
//! values replaced); rmcp itself is given the endpoint without credentials.
//! Header values are never printed. Identities and affinity ids are shown
//! as 8 hex digits of a hash keyed per process ([`Identity::short`]).
//!
//! ## Any HTTP layer
//!
//! reqwest is the default. Any other rmcp `StreamableHttpClient` (a
//! simulated network, a Unix socket, a proxy) plugs in with
//! [`McpConnectorBuilder::build_with_client`]; it reports failures as
//! [`HttpError`], so its errors are classified exactly like reqwest's, and
//! it still runs under a [`HealthClient`]. The simulator (`mcp-pool-sim`)
//! runs this crate unchanged over turmoil that way.
//!
//! ## Isolation
//!
//! A [`SessionKey`] is the server URL, the transport, an [`Identity`] (SHA-256
//! of the identity headers, or an identity the caller supplies) and an
//! optional affinity id (a downstream session id). Sessions are only shared
//! between equal keys. Keys print short hashes keyed per process, never
//! header values; the downstream `mcp-session-id` header is never forwarded.
//!
//! ## TLS
//!
//! With the `tls` feature (default), `https://` goes through rustls with
//! reqwest's crypto provider, `aws-lc-rs`, and the platform's certificate
//! verifier (plus any roots added with
//! [`McpConnectorBuilder::add_root_certificate`]). `ring` builds faster, but
//! reqwest can only use it through its `rustls-no-provider` feature, and
//! Cargo's feature unification would then make every other reqwest client
//! built in the same workspace (rmcp's default client, for one) panic unless
//! the program installs a process-wide provider first. Without the feature,
//! `https://` URLs are refused with [`Error::HttpClient`].
//!
//! ## Error classification
//!
//! Every failed use is released to the pool with the [`Outcome`](mcp_pool::Outcome)
//! of [`Error::outcome`]:
//!
//! | error | outcome | why |
//! |---|---|---|
//! | [`Error::Tool`] (`CallToolResult { is_error: true }`) | `ApplicationError` | the tool ran and answered |
//! | `Service(ServiceError::McpError)` (JSON-RPC error, e.g. unknown tool -32602) | `ApplicationError` | the server answered |
//! | `Service(ServiceError::TransportSend)`: HTTP 429, body over the size limit, 403 missing scope, refused custom header | `ApplicationError` | a live server refused this one request |
//! | [`Error::SessionLost`] (every answer of the [session loss table](#session-loss)) | `TransportError` (safe to retry) | the server forgot the session and refused the request |
//! | [`Error::EraChanged`]: -32022 unsupported protocol version (any session); a legacy server's refusal of a modern request (an answer to `server/discover` other than -32020/-32021, an error or an HTTP 400 naming a missing session); a modern server's refusal of a legacy request (-32020, -32602 asking for the `_meta` protocol version) | `TransportError` (safe to retry) | the era changed: the session is poisoned, the origin's era detected again, the request ran nowhere |
//! | `Service(ServiceError::McpError)` -32020 header mismatch, on a modern session | `ApplicationError` | a live modern server refused this one request's headers |
//! | `Service(ServiceError::McpError)` -32021 missing required client capability | `ApplicationError` | the request needs a capability this client does not declare; the session is fine |
//! | an HTTP 400 or 404 whose body is a modern JSON-RPC error (e.g. 404 -32601 for `ping`, 400 -32602), not an `EraChanged` row | `ApplicationError` | rmcp passes the body on as the server's answer |
//! | `Service(ServiceError::TransportClosed)` for a modern request whose response stream broke | `TransportError` (not safe to retry) | no resumability in 2026-07-28: the request is lost and may have run |
//! | `Service(ServiceError::TransportSend)`: anything else (refused connection, 5xx, 401, broken stream, not MCP) | `TransportError` | the transport or the server-side session is gone |
//! | `Service(ServiceError::TransportClosed)` | `TransportError` | rmcp's worker stopped |
//! | `Service(ServiceError::UnexpectedResponse)` | `TransportError` | answers no longer match requests |
//! | `Service(ServiceError::SubscriptionLagged)` | `ApplicationError` | a local consumer was slow; the transport is fine |
//! | `Service(ServiceError::InputRequiredRoundsExceeded)` | `ApplicationError` | the server kept answering |
//! | [`Error::InputRequired`] (MRTR `InputRequiredResult`) | `ApplicationError` | the server answered: it needs input |
//! | [`Error::PagesLoop`] (a listing's `nextCursor` sent twice) | `ApplicationError` | every answer was whole; the server's list loops |
//! | `Service(ServiceError::Cancelled)` | `Cancelled` | unknown state: check before reuse |
//! | `Service(ServiceError::Timeout)`, [`Error::TimedOut`] | `Timeout` | unknown state: check before reuse |
//! | any `ServiceError` variant added later | `TransportError` | when unsure, poison |
//! | [`Error::TransportClosed`] | `TransportError` | the health cell is dead |
//! | [`Error::Initialize`], [`Error::InitializeTimedOut`], [`Error::Discover`], [`Error::HttpClient`], [`Error::Key`] | `TransportError` | (connect errors; no session exists) |
//! | [`Error::CheckFailed`], [`Error::CheckUnsupported`] | `TransportError` | (check errors) |
//!
//! Whatever the outcome, the pool also asks `is_closed` on release, so a
//! session whose health cell died is poisoned even after a successful call.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod client;
mod connector;
mod detect;
mod era;
mod error;
mod events;
mod handler;
mod health;
mod http;
pub mod invariants;
mod key;
mod loss;
mod open;
mod redact;
mod session;
mod watched;

pub use cache::{CacheEvent, CachedResult};
pub use client::HealthClient;
pub use connector::{BoundedRetry, CheckStep, McpConnector, McpConnectorBuilder};
pub use era::{Era, EraPolicy};
pub use error::{classify_service_error, Error};
pub use events::CallEvent;
pub use handler::PoolClientHandler;
pub use health::{describe, is_fatal, Health};
pub use http::{HttpError, HttpErrorKind};
pub use key::{Identity, KeyBuilder, KeyError, SessionKey, Transport, DEFAULT_IDENTITY_HEADERS};
pub use session::McpSession;

/// A pool of rmcp sessions.
pub type McpPool = mcp_pool::Pool<McpConnector>;

/// Runs `f` on a session of `key` like [`Pool::run`](mcp_pool::Pool::run),
/// and, while it fails with an error the server provably never accepted
/// ([`Error::is_safe_to_retry`]: the server forgot the session, a refused
/// connection, a transport already dead), runs it again, at most
/// `max_sessions_per_key` more times. Each failed session was poisoned on
/// release, so every run gets another one, and after a backend restart that
/// left every pooled session stale, the last run gets a fresh one. A request
/// the server may have accepted is never run twice.
///
/// Works with any connector whose sessions and errors are this crate's
/// ([`McpConnector`] over any HTTP layer, or a wrapper of it).
pub async fn run_with_retry<C, T, F>(
    pool: &mcp_pool::Pool<C>,
    key: &C::Key,
    f: F,
) -> Result<T, mcp_pool::RunError<Error>>
where
    C: mcp_pool::Connector<Session = McpSession, Error = Error>,
    F: AsyncFn(&McpSession) -> Result<T, Error>,
{
    let mut retries = pool.config().max_sessions_per_key;
    loop {
        match pool.run(key, async |s: &McpSession| f(s).await).await {
            Err(mcp_pool::RunError::Call(e)) if e.is_safe_to_retry() && retries > 0 => {
                retries -= 1;
                tracing::debug!(error = %e, "request never reached the server; running it again");
            }
            other => return other,
        }
    }
}
