//! `/metrics`: the pool's series and the gateway's own, in the Prometheus
//! text format, through the `metrics` facade and `metrics-exporter-prometheus`.
//!
//! Every series that names a pool key carries `key`, the pool's
//! [`KeyHash`] of it (16 hex digits, keyed per process), never the key's
//! URL query, headers or identity. The gateway's connector counts each key's
//! connects and closes, so that the pool's per-key gauges come with per-key
//! counters that add up to the pool's own totals.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pool::{ConnectFailure, Connector, KeyHash, Outcome};
use mcp_pool_rmcp::{Error, McpConnector, McpSession, SessionKey};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;

/// How often the pool's snapshot is recorded besides each scrape, so that
/// series of keys that left the pool (or changed labels) age out.
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A series not recorded for this long is dropped from the page: a key the
/// pool no longer tracks, or a label set it no longer has (a key's `era`
/// once detected).
pub const SERIES_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// One upstream session, with the hash of the key it was opened for.
pub struct Upstream {
    session: McpSession,
    key: KeyHash,
}

impl Deref for Upstream {
    type Target = McpSession;

    fn deref(&self) -> &McpSession {
        &self.session
    }
}

/// Counts of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// Connects started.
    pub connects: u64,
    /// Connects that opened a session.
    pub connected: u64,
    /// Sessions closed.
    pub closes: u64,
}

/// [`McpConnector`] counting each key's connects and closes, and labelling
/// each key with the upstream name it serves. Everything else is the inner
/// connector's, unchanged (the pool decides as it would with it).
pub struct MeteredConnector {
    inner: McpConnector,
    counts: Mutex<HashMap<KeyHash, KeyCounts>>,
    names: BTreeMap<String, String>,
}

impl MeteredConnector {
    /// Wraps `inner`; `names` maps each upstream URL (normalized as
    /// [`SessionKey::url`] shows it) to its name.
    pub fn new(inner: McpConnector, names: BTreeMap<String, String>) -> MeteredConnector {
        MeteredConnector {
            inner,
            counts: Mutex::new(HashMap::new()),
            names,
        }
    }

    /// The wrapped connector.
    pub fn inner(&self) -> &McpConnector {
        &self.inner
    }

    fn count(&self, key: KeyHash, f: impl FnOnce(&mut KeyCounts)) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        f(counts.entry(key).or_default());
    }

    /// Each key's counts so far.
    pub fn counts(&self) -> HashMap<KeyHash, KeyCounts> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the counts of keys that are not in `live` and have every
    /// session closed, so that per-session keys do not pile up; their series
    /// then age out of the page.
    fn prune(&self, live: &[KeyHash]) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.retain(|key, c| live.contains(key) || c.closes < c.connected);
    }
}

impl Connector for MeteredConnector {
    type Key = SessionKey;
    type Session = Upstream;
    type Error = Error;

    async fn connect(&self, key: &SessionKey) -> Result<Upstream, Error> {
        let hash = KeyHash::of(key);
        self.count(hash, |c| c.connects += 1);
        let session = self.inner.connect(key).await?;
        self.count(hash, |c| c.connected += 1);
        Ok(Upstream { session, key: hash })
    }

    async fn check(&self, session: &Upstream) -> Result<(), Error> {
        self.inner.check(&session.session).await
    }

    fn is_closed(&self, session: &Upstream) -> bool {
        self.inner.is_closed(&session.session)
    }

    fn classify(&self, error: &Error) -> Outcome {
        self.inner.classify(error)
    }

    fn max_leases(&self, session: &Upstream) -> Option<usize> {
        self.inner.max_leases(&session.session)
    }

    fn key_labels(&self, key: &SessionKey) -> Vec<(&'static str, String)> {
        let mut labels = self.inner.key_labels(key);
        if let Some(name) = self.names.get(key.url()) {
            labels.push(("upstream", name.clone()));
        }
        labels
    }

    fn classify_connect(&self, error: &Error) -> ConnectFailure {
        self.inner.classify_connect(error)
    }

    async fn close(&self, session: Upstream) {
        self.count(session.key, |c| c.closes += 1);
        self.inner.close(session.session).await;
    }

    fn closed_notification(
        &self,
        session: &Upstream,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.inner.closed_notification(&session.session)
    }

    fn abort(&self, session: &Upstream) {
        self.inner.abort(&session.session);
    }
}

/// The gateway's Prometheus page: a recorder of its own (not the process's
/// global one, so several gateways can live in one process), filled from
/// the pool on each scrape and every [`EXPORT_INTERVAL`].
#[derive(Clone)]
pub struct Exporter {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl Exporter {
    /// A recorder dropping series idle for [`SERIES_IDLE_TIMEOUT`].
    pub fn new() -> Exporter {
        let recorder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::ALL, Some(SERIES_IDLE_TIMEOUT))
            .build_recorder();
        let handle = recorder.handle();
        Exporter {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    /// Runs `f` with this exporter as the `metrics` recorder.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// Records the pool's snapshot ([`mcp_pool::Metrics::export`]) and each
    /// key's connect and close counts:
    /// `mcp_gateway_key_connects_total{key, result="started"|"connected"}`
    /// and `mcp_gateway_key_closes_total{key}`.
    ///
    /// Without a pool (see [`super::UpstreamSessions`]) only the per-key
    /// counts are recorded, and never forgotten.
    pub fn export(&self, upstreams: &super::upstreams::Upstreams) {
        let connector = upstreams.connector();
        let counts = connector.counts();
        let pool = upstreams.pool();
        let snapshot = pool.map(|p| (p.name(), p.metrics()));
        self.record(|| {
            if let Some((name, snapshot)) = &snapshot {
                snapshot.export(name);
            }
            for (key, c) in &counts {
                let key = key.to_string();
                metrics::counter!("mcp_gateway_key_connects_total", "key" => key.clone(), "result" => "started")
                    .absolute(c.connects);
                metrics::counter!("mcp_gateway_key_connects_total", "key" => key.clone(), "result" => "connected")
                    .absolute(c.connected);
                metrics::counter!("mcp_gateway_key_closes_total", "key" => key).absolute(c.closes);
            }
        });
        if let Some((_, snapshot)) = &snapshot {
            let live: Vec<KeyHash> = snapshot.keys.iter().map(|k| k.key).collect();
            connector.prune(&live);
        }
    }

    /// Counts one forwarded request: `mcp_gateway_requests_total{upstream,
    /// method, result}` with `result` one of `ok`, `tool_error` (a result
    /// with `isError: true`), `upstream_error` (the upstream's JSON-RPC
    /// error) and `failed` (no answer from the upstream).
    pub fn count_request(&self, upstream: &str, method: &'static str, result: &'static str) {
        self.record(|| {
            metrics::counter!("mcp_gateway_requests_total", "upstream" => upstream.to_owned(), "method" => method, "result" => result)
                .increment(1);
        });
    }

    /// The page, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drops idle series (the recorder's upkeep).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter::new()
    }
}
