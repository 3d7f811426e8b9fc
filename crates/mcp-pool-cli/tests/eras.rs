//! `mcp-pool loadtest` in every protocol era: the embedded echo server
//! served in each era (`--era`), and `--url` against echo servers served in
//! this process that speak only 2026-07-28 or only the legacy revisions.
//! Each run is judged from its exit code and its `--json` file; the era is
//! always what the client detected, never what it was told.

mod common;

use std::time::Duration;

use mcp_pool_echo::{spawn_local_server, EchoConfig, Era};

use common::{f, mode, Run};

/// Runs `mcp-pool loadtest ARGS --json FILE`, killed if it has not finished
/// within two minutes, and reads its JSON report.
fn loadtest(args: &[&str], name: &str) -> Run {
    common::loadtest(args, &format!("eras-{name}"), Duration::from_secs(120))
}

/// The era and protocol version a client detects on an echo server serving
/// `era` (a dual server answers `server/discover`, so it is modern).
fn detected(era: Era) -> (&'static str, &'static str) {
    match era {
        Era::Legacy => ("legacy-stateful", "2025-11-25"),
        Era::LegacyStateless => ("legacy-stateless", "2025-11-25"),
        Era::Modern | Era::Dual => ("modern", "2026-07-28"),
    }
}

#[test]
fn every_era_passes_in_pool_mode_with_no_error_after_the_outage() {
    let run = loadtest(
        &[
            "--era",
            "all",
            "--mode",
            "pool",
            "--duration",
            "3s",
            "--users",
            "4",
            "--delay",
            "100ms",
        ],
        "all",
    );
    let context = run.context();
    assert_eq!(run.code, Some(0), "{context}");
    let eras = run.report["eras"].as_array().expect("one report per era");
    assert_eq!(eras.len(), Era::ALL.len(), "{context}");
    for (report, era) in eras.iter().zip(Era::ALL) {
        assert_eq!(report["served_era"], era.name(), "{context}");
        let pool = mode(report, "pool");
        let (name, version) = detected(era);
        assert_eq!(pool["era"], name, "{era}\n{context}");
        assert_eq!(pool["protocol_version"], version, "{era}\n{context}");
        // The backend was killed and came back (in the same era: the
        // sessions opened after it are of the one era detected).
        assert!(f(&pool["outage"]["back_at_s"]) > f(&pool["outage"]["down_at_s"]));
        assert_eq!(
            pool["eras"].as_array().unwrap().len(),
            1,
            "{era}\n{context}"
        );
        assert_eq!(pool["errors_after_recovery"], 0, "{era}\n{context}");
        assert!(f(&pool["ok"]) > 0.0, "{era}\n{context}");
        assert_eq!(report["verdict"]["passed"], true, "{era}\n{context}");
    }
    assert_eq!(run.report["verdict"]["passed"], true, "{context}");
    // One table per era, each naming what it served and what was detected.
    assert_eq!(run.stdout.matches("era (detected)").count(), 4, "{context}");
    for era in Era::ALL {
        assert!(
            run.stdout.contains(&format!("serving era {}:", era.name())),
            "{era}\n{context}"
        );
    }
}

#[test]
fn on_a_modern_server_only_the_naive_pool_fails_after_the_outage_from_the_client_side() {
    let run = loadtest(
        &[
            "--era",
            "modern",
            "--duration",
            "4s",
            "--users",
            "4",
            "--delay",
            "100ms",
        ],
        "modern",
    );
    let context = run.context();
    assert_eq!(run.code, Some(0), "{context}");
    assert_eq!(run.report["served_era"], "modern", "{context}");
    for name in ["pool", "naive", "none"] {
        let m = mode(&run.report, name);
        assert_eq!(m["era"], "modern", "{name}\n{context}");
        assert_eq!(m["protocol_version"], "2026-07-28", "{name}\n{context}");
    }
    assert_eq!(
        mode(&run.report, "pool")["errors_after_recovery"],
        0,
        "{context}"
    );
    assert_eq!(
        mode(&run.report, "none")["errors_after_recovery"],
        0,
        "{context}"
    );
    // The server lost nothing in the restart, yet the naive pool keeps
    // failing: it hands out sessions the client found dead when their
    // connection broke, which fail without being sent.
    let naive = mode(&run.report, "naive");
    assert!(f(&naive["errors_after_recovery"]) > 0.0, "{context}");
    let last = naive["last_error_samples"]["transport"]
        .as_str()
        .unwrap_or_else(|| panic!("no last transport error\n{context}"));
    assert!(last.contains("was not sent"), "{last}\n{context}");
    assert!(
        run.stdout.contains("the server kept no session to lose"),
        "{context}"
    );
}

/// Serves the echo server in `era` on 127.0.0.1 in this process, runs
/// every mode against it with `--url` for a second without an outage, and
/// checks every call succeeded on sessions of the era a client detects.
fn every_mode_detects(era: Era) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the server");
    let server = rt
        .block_on(spawn_local_server(
            "127.0.0.1:0".parse().unwrap(),
            &EchoConfig::default().with_era(era),
        ))
        .expect("the echo server serves");
    let run = loadtest(
        &[
            "--url",
            &server.url(),
            "--no-outage",
            "--duration",
            "1s",
            "--users",
            "4",
            "--delay",
            "50ms",
        ],
        era.name(),
    );
    let context = run.context();
    assert_eq!(run.code, Some(0), "{context}");
    assert!(run.report["served_era"].is_null(), "{context}");
    let (name, version) = detected(era);
    for m in run.report["modes"].as_array().unwrap() {
        assert_eq!(m["era"], name, "{}\n{context}", m["mode"]);
        assert_eq!(m["protocol_version"], version, "{}\n{context}", m["mode"]);
        assert!(f(&m["ok"]) > 0.0, "{}\n{context}", m["mode"]);
        assert_eq!(
            m["calls"], m["ok"],
            "{}: a call failed\n{context}",
            m["mode"]
        );
        assert_eq!(m["errors_after_recovery"], 0, "{context}");
    }
    assert_eq!(run.report["modes"].as_array().unwrap().len(), 3);
    rt.block_on(server.shutdown(Duration::from_secs(1)));
}

#[test]
fn a_url_speaking_only_2026_07_28_is_loaded_as_modern() {
    // The server refuses the legacy handshake: a client that only speaks
    // it cannot connect.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = spawn_local_server(
            "127.0.0.1:0".parse().unwrap(),
            &EchoConfig::default().with_era(Era::Modern),
        )
        .await
        .unwrap();
        let legacy_only = mcp_pool_rmcp::McpConnector::builder()
            .era(mcp_pool_rmcp::EraPolicy::Legacy)
            .build()
            .unwrap();
        let key = mcp_pool_rmcp::SessionKey::anonymous(server.url().as_str()).unwrap();
        let refused = legacy_only
            .open(&key)
            .await
            .expect_err("initialize refused");
        assert!(
            refused.to_string().contains("-32022"),
            "refused as an unsupported protocol version: {refused}"
        );
        server.shutdown(Duration::from_secs(1)).await;
    });
    every_mode_detects(Era::Modern);
}

#[test]
fn a_url_speaking_only_legacy_revisions_is_loaded_as_legacy() {
    every_mode_detects(Era::Legacy);
}

/// What the README says of a naive pool of plain rmcp clients (no
/// mcp-pool session, no health cell): across a restart of the server
/// (killed with a call in flight, served again on the same port), a legacy
/// stateful client's session is gone for good (HTTP 404 on every call),
/// while a legacy stateless or modern client's next call succeeds.
#[test]
fn a_plain_rmcp_client_outlives_a_restart_only_where_the_server_kept_no_session() {
    use rmcp::model::{CallToolRequestParams, ProtocolVersion};
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::ServiceExt;

    fn echo(delay_ms: u64) -> CallToolRequestParams {
        let args = serde_json::json!({ "message": "x", "delay_ms": delay_ms });
        CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap())
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for era in [Era::Legacy, Era::LegacyStateless, Era::Modern] {
            let config = EchoConfig::default().with_era(era);
            let server = spawn_local_server("127.0.0.1:0".parse().unwrap(), &config)
                .await
                .unwrap();
            let addr = server.addr();
            let transport = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(server.url().as_str())
                    .reinit_on_expired_session(false),
            );
            let client = match era {
                Era::Modern => {
                    let mode = ClientLifecycleMode::Discover {
                        preferred_versions: vec![ProtocolVersion::LATEST],
                    };
                    ().serve_with_lifecycle(transport, mode).await
                }
                _ => ().serve(transport).await,
            }
            .expect("the client connects");
            client.call_tool(echo(0)).await.expect("a call before");
            // A call in flight when the server dies (a legacy stateful
            // client's would wait through rmcp's retries: it is left).
            let peer = client.peer().clone();
            let in_flight = tokio::spawn(async move { peer.call_tool(echo(2000)).await });
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.kill().await;
            if era != Era::Legacy {
                let broken = tokio::time::timeout(Duration::from_secs(5), in_flight)
                    .await
                    .expect("the call in flight ends")
                    .unwrap();
                assert!(broken.is_err(), "{era}: {broken:?}");
            }
            let server = spawn_local_server(addr, &config).await.unwrap();
            let after = tokio::time::timeout(Duration::from_secs(5), client.call_tool(echo(0)))
                .await
                .expect("an answer after the restart");
            match era {
                Era::Legacy => {
                    let e = after.expect_err("the server forgot the session");
                    assert!(e.to_string().contains("404"), "{era}: {e}");
                }
                _ => {
                    after.unwrap_or_else(|e| panic!("{era}: {e}"));
                }
            }
            server.kill().await;
        }
    });
}
