//! Opening sessions: the era of each origin, detected once and remembered,
//! and the connect of each era.

use std::sync::Arc;

use mcp_pool::ConnectFailure;
use rmcp::model::{ProtocolVersion, ServerCapabilities, ServerPeerInfo};
use rmcp::service::{serve_directly, ClientCacheConfig};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ServiceError, ServiceExt};
use tracing::Instrument;

use crate::cache::{CachedResult, Value};
use crate::detect::{modern_version, said, MODERN_CODES};
use crate::era::{EraWatch, OriginSlot};
use crate::events::Router;
use crate::http::find_failure;
use crate::redact::shown_hash;
use crate::{
    describe, Era, EraPolicy, Error, Health, HealthClient, McpConnector, McpSession, SessionKey,
};

/// What a `server/discover` sent to open a modern session found.
enum Discovered {
    /// A modern session, open.
    Opened(McpSession),
    /// The server answered like a legacy one, in these words.
    Legacy(String),
    /// No answer within `discover_timeout`.
    NoAnswer,
    /// A 2026-07-28 server refused this client (-32020, -32021, no version
    /// in common): the origin is modern, the connect fails with this.
    Refused(Error),
}

/// How many times a connect follows an era record that fails before it
/// detects the era itself.
const MAX_STALE_RECORDS: usize = 2;

fn short(text: &str) -> String {
    shown_hash("upstream-session", text.as_bytes())
}

impl<H: StreamableHttpClient + Sync> McpConnector<H> {
    /// Opens a session for `key` outside any pool (the same as the pool's
    /// connect), in the era of the key's origin (see the [crate
    /// docs](crate#protocol-eras)). The caller owns it;
    /// [`McpSession::close`] ends it.
    pub async fn open(&self, key: &SessionKey) -> Result<McpSession, Error> {
        if self.settings.refuse_https && key.url().starts_with("https:") {
            return Err(Error::HttpClient(
                "https URLs need the `tls` feature of mcp-pool-rmcp".into(),
            ));
        }
        let span = tracing::debug_span!("mcp_connect", key = %key);
        async move {
            let session = match self.settings.era {
                EraPolicy::Auto => self.open_auto(key).await,
                EraPolicy::Legacy => self.open_forced_legacy(key).await,
                EraPolicy::Modern => self.open_forced_modern(key).await,
            }?;
            tracing::debug!(
                era = %session.era(),
                protocol_version = %session.protocol_version(),
                upstream_session = ?session.upstream_session_id().map(|id| short(&id)),
                "session open"
            );
            Ok(session)
        }
        .instrument(span)
        .await
    }

    /// The dual-era connect: follows the origin's record while it holds,
    /// and detects the era (single-flight per origin) when there is none or
    /// it failed.
    async fn open_auto(&self, key: &SessionKey) -> Result<McpSession, Error> {
        let slot = self.eras.slot(key.url());
        for _ in 0..MAX_STALE_RECORDS {
            let Some(record) = slot.record() else {
                let _probing = slot.probing.lock().await;
                if slot.record().is_some() {
                    // Another connect detected it meanwhile.
                    continue;
                }
                return self.probe(key, &slot).await;
            };
            let watch = EraWatch {
                slot: slot.clone(),
                generation: record.generation,
            };
            if record.era.is_modern() {
                match self.open_modern(key, Some(watch), true).await? {
                    Discovered::Opened(session) => return Ok(session),
                    Discovered::Legacy(said) => {
                        slot.forget(
                            record.generation,
                            &format!("server/discover refused: {said}"),
                        );
                    }
                    Discovered::NoAnswer => return Err(self.no_discover_answer(key)),
                    Discovered::Refused(e) => return Err(e),
                }
            } else {
                match self.open_legacy(key, Some(watch)).await {
                    Ok(session) => {
                        slot.legacy_seen(session.era(), session.protocol_version());
                        return Ok(session);
                    }
                    Err(e) if e.is_modern_refusal_of_initialize() => {
                        slot.forget(record.generation, &format!("initialize refused: {e}"));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let _probing = slot.probing.lock().await;
        self.probe(key, &slot).await
    }

    /// Detects the era of the key's origin, by the specification's dual-era
    /// rule, and opens the session in it: `server/discover` first (never
    /// answered from the cache); success means modern, and so does a modern
    /// refusal (the connect then fails with it); anything else falls back
    /// to `initialize`: a legacy answer, no answer within
    /// `discover_timeout`, and also no answer at all (an unreachable server
    /// then fails the connect with `initialize`'s error, as a legacy
    /// connect does, and the era stays unknown).
    async fn probe(&self, key: &SessionKey, slot: &Arc<OriginSlot>) -> Result<McpSession, Error> {
        let discovered = self.open_modern(key, None, false).await;
        let refusal = match discovered {
            Ok(Discovered::Opened(mut session)) => {
                let record = slot.detected(Era::Modern, session.protocol_version().clone());
                session.watch = Some(EraWatch {
                    slot: slot.clone(),
                    generation: record.generation,
                });
                return Ok(session);
            }
            Ok(Discovered::Legacy(said)) => said,
            Ok(Discovered::NoAnswer) => format!(
                "no answer to server/discover within {:?}",
                self.settings.discover_timeout()
            ),
            Ok(Discovered::Refused(e)) => {
                slot.detected(Era::Modern, modern_version());
                return Err(e);
            }
            Err(e) => e.to_string(),
        };
        tracing::debug!(refusal = %refusal, "no 2026-07-28 answer; trying initialize");
        match self.open_legacy(key, None).await {
            Ok(mut session) => {
                let record = slot.detected(session.era(), session.protocol_version().clone());
                session.watch = Some(EraWatch {
                    slot: slot.clone(),
                    generation: record.generation,
                });
                Ok(session)
            }
            Err(e) if e.is_modern_refusal_of_initialize() => Err(Error::Discover {
                url: key.redacted_url(),
                cause: format!(
                    "the server answered server/discover like a legacy server ({refusal}) but refused initialize like a 2026-07-28 one ({e})"
                ),
                failure: ConnectFailure::Rejected,
                source: Some(Box::new(e)),
            }),
            Err(e) => Err(e),
        }
    }

    async fn open_forced_legacy(&self, key: &SessionKey) -> Result<McpSession, Error> {
        let session = self.open_legacy(key, None).await?;
        self.eras
            .slot(key.url())
            .legacy_seen(session.era(), session.protocol_version());
        Ok(session)
    }

    async fn open_forced_modern(&self, key: &SessionKey) -> Result<McpSession, Error> {
        match self.open_modern(key, None, true).await? {
            Discovered::Opened(session) => {
                let slot = self.eras.slot(key.url());
                if slot.record().is_none_or(|r| !r.era.is_modern()) {
                    slot.detected(Era::Modern, session.protocol_version().clone());
                }
                Ok(session)
            }
            Discovered::Legacy(said) => Err(Error::Discover {
                url: key.redacted_url(),
                cause: format!(
                    "the server answered server/discover like a legacy server ({said}), and this connector speaks 2026-07-28 only"
                ),
                failure: ConnectFailure::Rejected,
                source: None,
            }),
            Discovered::NoAnswer => Err(self.no_discover_answer(key)),
            Discovered::Refused(e) => Err(e),
        }
    }

    fn no_discover_answer(&self, key: &SessionKey) -> Error {
        Error::Discover {
            url: key.redacted_url(),
            cause: format!(
                "no answer to server/discover within {:?}",
                self.settings.discover_timeout()
            ),
            failure: ConnectFailure::Failed,
            source: None,
        }
    }

    fn transport_config(&self, key: &SessionKey) -> StreamableHttpClientTransportConfig {
        // rmcp is given the URL without credentials (it may print it); the
        // client sends every request to the real one.
        let mut config = StreamableHttpClientTransportConfig::with_uri(key.redacted_url())
            .custom_headers(key.headers().clone())
            .reinit_on_expired_session(self.settings.reinit_on_expired_session)
            .max_concurrent_requests(self.settings.max_concurrent_requests);
        config.retry_config = Arc::new(self.settings.retry);
        config
    }

    /// Opens a modern session: an rmcp client started without a handshake,
    /// whose first request is a `server/discover` that the HTTP client
    /// answers itself from the cache when `cached` and a result this key may
    /// be served is fresh (no I/O), and sends otherwise.
    async fn open_modern(
        &self,
        key: &SessionKey,
        watch: Option<EraWatch>,
        cached: bool,
    ) -> Result<Discovered, Error> {
        let endpoint: Arc<str> = Arc::from(key.url());
        let identity = key.identity();
        let local = match cached {
            true => match self.cache.get(&endpoint, identity, CachedResult::Discover) {
                Some(Value::Discover(result)) => Some(*result),
                _ => None,
            },
            false => None,
        };
        let health = Health::new();
        let router = Arc::new(Router::new(key.clone(), self.notices.clone()));
        let client = HealthClient::new(self.http.clone(), health.clone())
            .with_endpoint(key.url())
            .modern()
            .with_local_discover(local)
            .with_router(router.clone());
        router.set_exclusive(self.settings.leases_for(Era::Modern) == 1);
        let transport =
            StreamableHttpClientTransport::with_client(client.clone(), self.transport_config(key));
        let version = modern_version();
        // The peer info's version seeds every request's `_meta`.
        let info = ServerPeerInfo::new(version.clone(), ServerCapabilities::default());
        let running = serve_directly(self.settings.client.clone(), transport, Some(info));
        // One cache for all sessions, keyed by identity: rmcp's own
        // (per session, serving stale entries on errors) stays off.
        running
            .peer()
            .set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        let session = McpSession {
            running,
            health,
            settings: self.settings.clone(),
            era: Era::Modern,
            protocol_version: version.clone(),
            watch,
            cache: self.cache.clone(),
            endpoint,
            identity,
            router,
        };
        let discovered = session
            .discover_uncached(self.settings.discover_timeout())
            .await;
        let result = match discovered {
            Ok(result) => result,
            Err(e) => {
                session.running.cancellation_token().cancel();
                return self.discover_failed(key, e, &session.health);
            }
        };
        if !result.supported_versions.contains(&version) {
            session.running.cancellation_token().cancel();
            let listed: Vec<&str> = result
                .supported_versions
                .iter()
                .map(ProtocolVersion::as_str)
                .collect();
            if result
                .supported_versions
                .iter()
                .any(ProtocolVersion::has_initialize)
            {
                return Ok(Discovered::Legacy(format!(
                    "server/discover lists only versions before {version}: {listed:?}"
                )));
            }
            return Ok(Discovered::Refused(Error::Discover {
                url: key.redacted_url(),
                cause: format!(
                    "the server supports none of this client's versions ([{version}]): {listed:?}"
                ),
                failure: ConnectFailure::Rejected,
                source: None,
            }));
        }
        if !client.answered_locally() {
            session.cache_discover(&result);
        }
        session
            .running
            .peer()
            .set_peer_info(ServerPeerInfo::from_discover_result(version, result));
        Ok(Discovered::Opened(session))
    }

    /// What a failed `server/discover` says: a legacy server's answer (the
    /// dual-era rule's "anything else"), a modern refusal, or (`Err`) no
    /// usable answer: an unreachable or unavailable server, or refused
    /// credentials.
    fn discover_failed(
        &self,
        key: &SessionKey,
        e: Error,
        health: &Health,
    ) -> Result<Discovered, Error> {
        let fail = |failure: ConnectFailure, cause: String, e: Error| {
            Err(Error::Discover {
                url: key.redacted_url(),
                cause,
                failure,
                source: Some(Box::new(e)),
            })
        };
        match &e {
            Error::EraChanged { said, .. } => Ok(Discovered::Legacy(said.clone())),
            Error::TimedOut { .. } => Ok(Discovered::NoAnswer),
            Error::Service {
                source: ServiceError::McpError(data),
                ..
            } if MODERN_CODES.contains(&data.code) => Ok(Discovered::Refused(Error::Discover {
                url: key.redacted_url(),
                cause: format!("the server refused server/discover with {}", said(data)),
                failure: ConnectFailure::Rejected,
                source: Some(Box::new(e)),
            })),
            Error::Service {
                source: ServiceError::McpError(data),
                ..
            } => Ok(Discovered::Legacy(said(data))),
            Error::Service {
                source: ServiceError::TransportSend(send),
                ..
            } => match find_failure(send.error.as_ref()) {
                Some(http) => {
                    let failure = crate::error::http_connect_failure(http);
                    let refused_credentials = matches!(
                        http,
                        StreamableHttpError::AuthRequired(_)
                            | StreamableHttpError::InsufficientScope(_)
                    ) || matches!(http, StreamableHttpError::HttpStatus(s) if matches!(s.status, 401 | 403));
                    if failure == ConnectFailure::Failed || refused_credentials {
                        fail(failure, describe(http), e)
                    } else {
                        Ok(Discovered::Legacy(describe(http)))
                    }
                }
                None => fail(ConnectFailure::Failed, e.to_string(), e),
            },
            _ => match health.first_failure() {
                Some(ConnectFailure::Rejected) => Ok(Discovered::Legacy(
                    health
                        .reason()
                        .unwrap_or("not an MCP 2026-07-28 answer")
                        .to_owned(),
                )),
                _ => {
                    let cause = health.reason().map_or_else(|| e.to_string(), str::to_owned);
                    fail(ConnectFailure::Failed, cause, e)
                }
            },
        }
    }

    /// Opens a legacy session: the `initialize` handshake, under
    /// `initialize_timeout`. Stateful when the server answered with an
    /// `Mcp-Session-Id`.
    async fn open_legacy(
        &self,
        key: &SessionKey,
        watch: Option<EraWatch>,
    ) -> Result<McpSession, Error> {
        let url = key.redacted_url();
        let health = Health::new();
        let router = Arc::new(Router::new(key.clone(), self.notices.clone()));
        let client = HealthClient::new(self.http.clone(), health.clone())
            .with_endpoint(key.url())
            .with_router(router.clone());
        let transport =
            StreamableHttpClientTransport::with_client(client, self.transport_config(key));
        let after = self.settings.initialize_timeout;
        let running = match tokio::time::timeout(
            after,
            self.settings.client.clone().serve(transport),
        )
        .await
        {
            Ok(Ok(running)) => running,
            Ok(Err(source)) => {
                let error = Error::initialize(url, source, &health);
                tracing::debug!(%error, failure = ?error.connect_failure(), "initialize failed");
                return Err(error);
            }
            Err(_) => {
                tracing::debug!(?after, "initialize timed out");
                return Err(Error::InitializeTimedOut { url, after });
            }
        };
        running
            .peer()
            .set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        let protocol_version = running
            .peer()
            .peer_info()
            .map(|info| info.protocol_version.clone())
            .unwrap_or_default();
        let era = Era::legacy(health.session_id().is_some());
        router.set_exclusive(self.settings.leases_for(era) == 1);
        Ok(McpSession {
            era,
            router,
            running,
            health,
            settings: self.settings.clone(),
            protocol_version,
            watch,
            cache: self.cache.clone(),
            endpoint: Arc::from(key.url()),
            identity: key.identity(),
        })
    }
}
