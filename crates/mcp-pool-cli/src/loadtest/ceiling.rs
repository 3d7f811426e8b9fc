//! The throughput ceiling, the most calls per second any mode can make:
//! from the delay each call asks for, when the server honours it, or else
//! from the latency the modes measured. A ceiling is never assumed from a
//! delay the server may not wait.

use std::time::Duration;

use mcp_pool_rmcp::{McpConnector, SessionKey};
use rmcp::model::{JsonObject, Tool};
use serde::Serialize;

use super::record::ModeReport;

/// The argument through which the echo tool is told how long to wait.
pub const DELAY_ARGUMENT: &str = "delay_ms";

/// Whether the server waits the `delay_ms` each call asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DelaySupport {
    /// It does; the text says how that is known.
    Honoured(String),
    /// It does not, or it is not known; the text says why.
    Unknown(String),
}

/// How [`CeilingBasis::ceiling`] was derived, as the table and the JSON
/// report it (`kind`: `delay`, `measured` or `unknown`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CeilingBasis {
    /// users / (delay + think time): the server waits the delay each call
    /// asks for.
    Delay {
        /// Virtual users.
        users: usize,
        /// The delay each call asks for, ms.
        delay_ms: f64,
        /// The pause between a user's calls, ms.
        think_time_ms: f64,
        /// How it is known that the server honours the delay.
        why: String,
    },
    /// users / (p50 + think time), with the lowest median latency of the
    /// successful calls of modes `pool` and `none`.
    Measured {
        /// Virtual users.
        users: usize,
        /// The median latency used, ms.
        p50_ms: f64,
        /// The mode it was measured in.
        mode: String,
        /// The pause between a user's calls, ms.
        think_time_ms: f64,
        /// Why the delay could not be used.
        why: String,
    },
    /// No ceiling: the delay could not be used and no call of `pool` or
    /// `none` succeeded to measure one.
    Unknown {
        /// Why the delay could not be used.
        why: String,
    },
}

impl CeilingBasis {
    /// Calls per second, when known; never zero or infinite.
    pub fn ceiling(&self) -> Option<f64> {
        let (users, cycle_ms) = match self {
            CeilingBasis::Delay {
                users,
                delay_ms,
                think_time_ms,
                ..
            } => (*users, delay_ms + think_time_ms),
            CeilingBasis::Measured {
                users,
                p50_ms,
                think_time_ms,
                ..
            } => (*users, p50_ms + think_time_ms),
            CeilingBasis::Unknown { .. } => return None,
        };
        (cycle_ms > 0.0 && users > 0).then(|| users as f64 / (cycle_ms / 1000.0))
    }

    /// Derives the ceiling for `users` users pausing `think_time` between
    /// calls that ask for `delay` (`None`: the calls carry no `delay_ms`),
    /// from what is known of the server's `support` for it and, failing
    /// that, from the modes' `reports`.
    pub fn derive(
        users: usize,
        think_time: Duration,
        delay: Option<Duration>,
        support: &DelaySupport,
        reports: &[ModeReport],
    ) -> CeilingBasis {
        let think_time_ms = ms(think_time);
        let why = match (delay, support) {
            (None, _) => format!("the calls send no {DELAY_ARGUMENT}"),
            (Some(delay), DelaySupport::Honoured(why)) => {
                if !(delay + think_time).is_zero() {
                    return CeilingBasis::Delay {
                        users,
                        delay_ms: ms(delay),
                        think_time_ms,
                        why: why.clone(),
                    };
                }
                "the calls ask for no delay and no think time".to_string()
            }
            (Some(_), DelaySupport::Unknown(why)) => why.clone(),
        };
        let fastest = reports
            .iter()
            .filter(|m| m.mode == "pool" || m.mode == "none")
            .filter_map(|m| m.p50_ms.filter(|p| *p > 0.0).map(|p| (p, &m.mode)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match fastest {
            Some((p50_ms, mode)) => CeilingBasis::Measured {
                users,
                p50_ms,
                mode: mode.clone(),
                think_time_ms,
                why,
            },
            None => CeilingBasis::Unknown { why },
        }
    }
}

/// Whether `schema` (a tool's input schema) declares a `delay_ms` property.
pub fn takes_delay(schema: &JsonObject) -> bool {
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .is_some_and(|p| p.contains_key(DELAY_ARGUMENT))
}

/// What `tools`, the server's `tools/list`, says of tool `name`'s support
/// for `delay_ms`.
pub fn support_in(tools: &[Tool], name: &str) -> DelaySupport {
    match tools.iter().find(|t| t.name == name) {
        Some(tool) if takes_delay(&tool.input_schema) => DelaySupport::Honoured(format!(
            "the input schema of `{name}` takes {DELAY_ARGUMENT}"
        )),
        Some(_) => DelaySupport::Unknown(format!(
            "the server ignores {DELAY_ARGUMENT}: the input schema of `{name}` has no such property"
        )),
        None => DelaySupport::Unknown(format!(
            "the server lists no tool `{name}`, so whether it waits {DELAY_ARGUMENT} is unknown"
        )),
    }
}

/// Asks the server behind `key` for its tools (one session, closed after)
/// and reads tool `name`'s support for `delay_ms`; an error is reported as
/// [`DelaySupport::Unknown`] with the server's answer. Bounded by
/// `timeout` on top of the connector's own timeouts.
pub async fn probe(
    connector: &McpConnector,
    key: &SessionKey,
    name: &str,
    timeout: Duration,
) -> DelaySupport {
    let listed = tokio::time::timeout(timeout, async {
        let session = connector.open(key).await?;
        let tools = session.list_all_tools().await;
        session.close().await;
        tools
    })
    .await;
    match listed {
        Ok(Ok(tools)) => support_in(&tools, name),
        Ok(Err(e)) => DelaySupport::Unknown(format!(
            "whether the server waits {DELAY_ARGUMENT} is unknown, tools/list failed: {e}"
        )),
        Err(_) => DelaySupport::Unknown(format!(
            "whether the server waits {DELAY_ARGUMENT} is unknown, tools/list got no answer within {timeout:?}"
        )),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::loadtest::record::{CallRecord, Cause, ModeRun};

    fn schema(value: serde_json::Value) -> Arc<JsonObject> {
        Arc::new(value.as_object().expect("an object").clone())
    }

    fn mode(name: &str, latency_ms: u64, ok: bool) -> ModeReport {
        ModeReport::new(ModeRun {
            mode: name.into(),
            records: vec![CallRecord {
                start: Duration::ZERO,
                latency: Duration::from_millis(latency_ms),
                result: if ok { Ok(()) } else { Err(Cause::Connect) },
            }],
            duration: Duration::from_secs(1),
            ..ModeRun::default()
        })
    }

    #[test]
    fn the_schema_says_whether_the_tool_takes_the_delay() {
        let tools = vec![
            Tool::new(
                "echo",
                "waits",
                schema(json!({"type": "object", "properties": {"message": {}, "delay_ms": {}}})),
            ),
            Tool::new(
                "search",
                "finds",
                schema(json!({"type": "object", "properties": {"q": {}}})),
            ),
            Tool::new("ping", "answers", schema(json!({"type": "object"}))),
        ];
        assert!(matches!(
            support_in(&tools, "echo"),
            DelaySupport::Honoured(_)
        ));
        for name in ["search", "ping"] {
            let DelaySupport::Unknown(why) = support_in(&tools, name) else {
                panic!("{name} honours the delay");
            };
            assert!(why.starts_with("the server ignores delay_ms"), "{why}");
        }
        let DelaySupport::Unknown(why) = support_in(&tools, "nope") else {
            panic!("a missing tool honours the delay");
        };
        assert!(why.contains("no tool `nope`"), "{why}");
    }

    #[test]
    fn an_honoured_delay_gives_users_over_the_cycle() {
        let basis = CeilingBasis::derive(
            10,
            Duration::ZERO,
            Some(Duration::from_millis(500)),
            &DelaySupport::Honoured("embedded".into()),
            &[mode("pool", 4, true)],
        );
        assert!(matches!(basis, CeilingBasis::Delay { .. }), "{basis:?}");
        assert_eq!(basis.ceiling(), Some(20.0));
    }

    #[test]
    fn an_ignored_delay_gives_the_fastest_measured_median() {
        let reports = [
            mode("naive", 1, true), // not a mode the ceiling is measured in
            mode("pool", 4, true),
            mode("none", 8, true),
        ];
        let basis = CeilingBasis::derive(
            4,
            Duration::from_millis(6),
            Some(Duration::from_millis(500)),
            &DelaySupport::Unknown("the server ignores delay_ms".into()),
            &reports,
        );
        let CeilingBasis::Measured { p50_ms, mode, .. } = &basis else {
            panic!("{basis:?}");
        };
        assert_eq!((*p50_ms, mode.as_str()), (4.0, "pool"));
        assert_eq!(basis.ceiling(), Some(400.0), "4 users / (4 ms + 6 ms)");
        // Calls without a delay are measured even against the echo server.
        let basis = CeilingBasis::derive(
            4,
            Duration::ZERO,
            None,
            &DelaySupport::Honoured("embedded".into()),
            &reports,
        );
        assert_eq!(basis.ceiling(), Some(1000.0));
    }

    #[test]
    fn nothing_to_measure_is_no_ceiling() {
        let basis = CeilingBasis::derive(
            4,
            Duration::ZERO,
            Some(Duration::from_millis(500)),
            &DelaySupport::Unknown("HTTP 500".into()),
            &[mode("pool", 4, false), mode("none", 9, false)],
        );
        assert_eq!(
            basis,
            CeilingBasis::Unknown {
                why: "HTTP 500".into()
            }
        );
        assert_eq!(basis.ceiling(), None);
        let json = serde_json::to_value(&basis).unwrap();
        assert_eq!(json["kind"], "unknown");
    }
}
