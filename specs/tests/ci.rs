//! The CI suite (or the deep one, with `MCP_POOL_SPEC=deep`), each
//! configuration explored exhaustively: every `always` and `eventually`
//! property holds in each, every `sometimes` property is reached in one.

use mcp_pool_spec::{check, configs};

#[test]
fn every_property_holds_on_the_suite() {
    let report = check::run_suite(configs::from_env(), !configs::deep_requested())
        .expect("valid pool configs");
    println!("{report}");
    for r in &report.reports {
        assert!(r.complete, "{}: the exploration stopped early", r.name);
    }
    let failed = report.failures();
    assert!(failed.is_empty(), "properties failed: {failed:?}\n{report}");
}
