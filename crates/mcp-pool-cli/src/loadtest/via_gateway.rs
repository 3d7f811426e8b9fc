//! `--via-gateway`: each mode behind an embedded `mcp-pool gateway`, so the
//! loadtest runs the topology the cascade was reported in: users, a
//! gateway, an upstream killed and restarted.
//!
//! The gateway's upstream sessions are taken the mode's way (mcp-pool, the
//! naive pool, a new one per call); the users call the gateway through
//! mcp-pool over sessions that stay healthy (the gateway is never
//! restarted), so every failure a user sees is one the gateway relayed. The
//! gateway says what kind of failure it was (`data.reason` of its JSON-RPC
//! error), which the table counts by cause as for a direct mode.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::modes::{keys, ClientSettings, ModeName, PoolMode, ToolCall};
use super::LoadtestError;
use crate::calls::EraSeen;
use crate::gateway::{Affinity, Gateway, GatewayConfig, UpstreamSessions};

/// How long the gateway may take to finish calls in flight when a mode
/// ends (its users have stopped by then).
const GRACE: Duration = Duration::from_secs(2);

/// The upstream's name in the gateway: users call `/mcp/backend`.
const UPSTREAM: &str = "backend";

/// A mode behind its gateway: the users' pool and the gateway.
pub struct ViaGateway {
    /// The users' side: calls the gateway.
    pub users: Arc<PoolMode>,
    gateway: Gateway,
}

impl ViaGateway {
    /// Starts a gateway on 127.0.0.1 in front of `url`, taking upstream
    /// sessions the way of `mode` (`pool_size` per identity), and a pool of
    /// users' sessions to it: enough for each of `users` users spread over
    /// `identities` identities to have one.
    pub async fn start(
        mode: ModeName,
        url: &str,
        settings: ClientSettings,
        pool_size: usize,
        users: usize,
        identities: usize,
        call: ToolCall,
    ) -> Result<ViaGateway, LoadtestError> {
        let mut config = GatewayConfig::new(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            BTreeMap::from([(UPSTREAM.to_owned(), url.to_owned())]),
        );
        config.sessions = match mode {
            ModeName::Pool => UpstreamSessions::Pool,
            ModeName::Naive => UpstreamSessions::Naive,
            ModeName::None => UpstreamSessions::PerRequest,
        };
        // One key per identity upstream, as the direct modes have.
        config.affinity = Affinity::PerIdentity;
        config.call_timeout = settings.call_timeout;
        config.sessions_per_key = pool_size.max(1);
        config.max_sessions = (pool_size * identities).max(1);
        config.max_keys = identities.max(1);
        config.grace = GRACE;
        let gateway = Gateway::start(&config)
            .await
            .map_err(|e| LoadtestError::Gateway(e.to_string()))?;
        let endpoint = format!("http://{}/mcp/{UPSTREAM}", gateway.addr());
        let keys = keys(&endpoint, identities)?;
        let per_identity = users.div_ceil(identities.max(1));
        let pool = settings.pool(settings.connector()?, per_identity, keys.len())?;
        Ok(ViaGateway {
            users: Arc::new(PoolMode::new(pool, keys, call)),
            gateway,
        })
    }

    /// Ends the mode: reads the gateway's `/metrics` page (its per-key
    /// connect and close counters summed, as `metrics_connects` and
    /// `metrics_closes` beside the gateway's own counters), closes the
    /// users' sessions and drains the gateway. Returns the counters and the
    /// eras of the upstream sessions.
    pub async fn finish(self) -> (BTreeMap<String, u64>, Vec<EraSeen>) {
        let mut counters = self.gateway.counters();
        match scrape(self.gateway.addr()).await {
            Ok(page) => {
                counters.insert(
                    "metrics_connects".into(),
                    sum(&page, "mcp_gateway_key_connects_total", Some("started")),
                );
                counters.insert(
                    "metrics_closes".into(),
                    sum(&page, "mcp_gateway_key_closes_total", None),
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the gateway's /metrics"),
        }
        let eras = self.gateway.eras();
        self.users.shutdown().await;
        let report = self.gateway.drain(GRACE).await;
        if report.cut_off > 0 {
            tracing::warn!(
                cut_off = report.cut_off,
                "calls still in flight in the gateway were cut off"
            );
        }
        (counters, eras)
    }
}

/// `GET /metrics` of the gateway at `addr`.
async fn scrape(addr: SocketAddr) -> Result<String, String> {
    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    response.text().await.map_err(|e| e.to_string())
}

/// The sum of every sample of counter `name` on a Prometheus text page,
/// only those labelled `result="<result>"` when `result` is given.
pub fn sum(page: &str, name: &str, result: Option<&str>) -> u64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            if let Some(result) = result {
                if !labels.contains(&format!("result=\"{result}\"")) {
                    return None;
                }
            }
            value.parse::<f64>().ok()
        })
        .map(|v| v as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_keys_and_filter_by_result() {
        let page = "\
# TYPE mcp_gateway_key_connects_total counter
mcp_gateway_key_connects_total{key=\"a\",result=\"started\"} 3
mcp_gateway_key_connects_total{key=\"a\",result=\"connected\"} 2
mcp_gateway_key_connects_total{key=\"b\",result=\"started\"} 4
mcp_gateway_key_closes_total{key=\"a\"} 1
mcp_gateway_key_closes_total{key=\"b\"} 2
";
        assert_eq!(
            sum(page, "mcp_gateway_key_connects_total", Some("started")),
            7
        );
        assert_eq!(
            sum(page, "mcp_gateway_key_connects_total", Some("connected")),
            2
        );
        assert_eq!(sum(page, "mcp_gateway_key_closes_total", None), 3);
        assert_eq!(sum(page, "mcp_pool_live", None), 0);
    }
}
