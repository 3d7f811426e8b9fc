//! Each known bug, re-introduced in the core on purpose, must be caught by
//! the checker as a violation of the right invariant, with a short
//! counterexample. A checker that cannot fail proves nothing.

use std::collections::BTreeSet;

use mcp_pool_core::mutants::Mutation;
use mcp_pool_core::Pool;
use mcp_pool_spec::{check, configs, properties, PoolSpec};

fn assert_caught(mutation: Mutation, invariant: &'static str) {
    assert_caught_in(configs::ci_timers(), mutation, invariant);
}

fn assert_caught_in(bounds: mcp_pool_spec::Bounds, mutation: Mutation, invariant: &'static str) {
    let mut pool = Pool::new(bounds.pool.clone()).expect("a valid pool config");
    pool.set_mutation(Some(mutation));
    let spec = PoolSpec::with_pool(bounds, pool);
    let report = check::run(spec, Some(BTreeSet::from([invariant])));
    println!("{mutation:?}: {}", report.counts());
    let found = report
        .property(invariant)
        .and_then(|p| p.discovery.as_ref())
        .unwrap_or_else(|| panic!("{mutation:?} was not caught as {invariant:?}\n{report}"));
    println!("counterexample for {invariant}:\n{found}");
    let violation = found
        .violation
        .as_ref()
        .expect("the last state records the violation");
    assert_eq!(violation.invariant, invariant);
    assert!(
        found.steps <= 10,
        "{mutation:?}: counterexample of {} steps, expected at most 10",
        found.steps
    );
}

#[test]
fn release_ignoring_failure_is_caught() {
    assert_caught(Mutation::ReleaseIgnoresFailure, properties::I3);
}

#[test]
fn skipping_the_check_after_use_is_caught() {
    assert_caught(Mutation::SkipCheckAfterUse, properties::I11);
}

#[test]
fn ignoring_transport_closed_is_caught() {
    assert_caught(Mutation::IgnoreTransportClosed, properties::I4);
}

#[test]
fn granting_across_keys_is_caught() {
    assert_caught(Mutation::GrantAcrossKeys, properties::I5);
}

#[test]
fn a_refusal_answering_only_the_head_is_caught() {
    assert_caught_in(
        configs::ci_breaker(false),
        Mutation::RefusalAnswersHeadOnly,
        properties::I17,
    );
}

#[test]
fn a_closed_grant_dropping_its_caller_is_caught() {
    assert_caught_in(
        configs::ci_breaker(false),
        Mutation::ClosedGrantDropsCaller,
        properties::I12,
    );
}

#[test]
fn waiters_that_leave_lanes_alone_are_caught() {
    assert_caught_in(
        configs::ci_lanes(),
        Mutation::WaitersLeaveLanesAlone,
        properties::I18,
    );
}

#[test]
fn every_mutation_has_a_test() {
    assert_eq!(
        Mutation::ALL.len(),
        7,
        "a new mutation needs its own test above"
    );
}
