//! Running the checker and reporting what it found, counterexamples as
//! readable lists of inputs.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use mcp_pool_core::{Applied, Violation};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};

use crate::model::{action_text, ms, PoolSpec, State, Step};

/// A path the checker found, replayed as the inputs that lead to it.
#[derive(Clone, Debug)]
pub struct Trace {
    /// One line per step: time, input, the pool's answer and actions.
    pub lines: Vec<String>,
    /// Steps on the path.
    pub steps: usize,
    /// The violation recorded in the last state, if any.
    pub violation: Option<Violation>,
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "    {line}")?;
        }
        if let Some(v) = &self.violation {
            writeln!(f, "    => violated {v}")?;
        }
        Ok(())
    }
}

/// What the checker concluded about one property.
#[derive(Clone, Debug)]
pub struct PropertyReport {
    /// The property's name (for invariants, its id in `specs/SPEC.md`).
    pub name: &'static str,
    /// `Always`, `Eventually` or `Sometimes`.
    pub expectation: Expectation,
    /// The counterexample (always, eventually) or example (sometimes) found.
    pub discovery: Option<Trace>,
}

impl PropertyReport {
    /// True if the property holds: no counterexample for `always` and
    /// `eventually`, an example for `sometimes`.
    pub fn holds(&self) -> bool {
        match self.expectation {
            Expectation::Sometimes => self.discovery.is_some(),
            Expectation::Always | Expectation::Eventually => self.discovery.is_none(),
        }
    }
}

/// The result of one run of the checker.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The configuration's name.
    pub name: &'static str,
    /// States generated (with repeats).
    pub states: usize,
    /// Distinct states.
    pub unique_states: usize,
    /// Longest path explored, in states.
    pub max_depth: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Whether the whole graph was explored (false if stopped early).
    pub complete: bool,
    /// Every property, in model order.
    pub properties: Vec<PropertyReport>,
}

impl CheckReport {
    /// True if every property holds.
    pub fn all_hold(&self) -> bool {
        self.properties.iter().all(PropertyReport::holds)
    }

    /// The report of the property named `name`.
    pub fn property(&self, name: &str) -> Option<&PropertyReport> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// The one-line summary of the counts.
    pub fn counts(&self) -> String {
        format!(
            "{}: {} states explored, {} unique, max depth {}, {:.2?}{}",
            self.name,
            self.states,
            self.unique_states,
            self.max_depth,
            self.elapsed,
            if self.complete {
                ""
            } else {
                " (stopped early)"
            }
        )
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.counts())?;
        for p in &self.properties {
            let kind = match p.expectation {
                Expectation::Always => "always",
                Expectation::Eventually => "eventually",
                Expectation::Sometimes => "sometimes",
            };
            let verdict = match (&p.expectation, &p.discovery) {
                (Expectation::Sometimes, Some(t)) => format!("ok (example in {} steps)", t.steps),
                (Expectation::Sometimes, None) => "NOT REACHED".to_string(),
                (_, None) => "ok".to_string(),
                (_, Some(t)) => format!("VIOLATED ({} steps)", t.steps),
            };
            writeln!(f, "  {kind:<10} {:<52} {verdict}", p.name)?;
            if !matches!(p.expectation, Expectation::Sometimes) {
                if let Some(t) = &p.discovery {
                    writeln!(f, "  counterexample:")?;
                    write!(f, "{t}")?;
                }
            }
        }
        Ok(())
    }
}

/// Explores `spec` breadth-first on one thread (so each counterexample is a
/// shortest one) and reports every property. With `stop_at`, stops as soon
/// as those properties have discoveries.
pub fn run(spec: PoolSpec, stop_at: Option<BTreeSet<&'static str>>) -> CheckReport {
    let name = spec.bounds().name;
    let started = Instant::now();
    let property_count = spec.properties().len();
    let stops_early = stop_at.is_some();
    let mut builder = spec.checker();
    if let Some(names) = stop_at {
        builder = builder.finish_when(HasDiscoveries::AllOf(names));
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = started.elapsed();
    let model = checker.model();
    let discoveries = checker.discoveries();
    let properties = model
        .properties()
        .into_iter()
        .map(|p| PropertyReport {
            name: p.name,
            expectation: p.expectation.clone(),
            discovery: discoveries
                .get(p.name)
                .map(|path| trace(model, path.clone())),
        })
        .collect();
    CheckReport {
        name,
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        complete: !stops_early && discoveries.len() < property_count,
        properties,
    }
}

/// Replays `path` through the model to list its inputs, the pool's answers
/// and the actions it emitted, step by step.
pub fn trace(model: &PoolSpec, path: Path<State, Step>) -> Trace {
    let pairs = path.into_vec();
    let mut lines = Vec::new();
    let mut violation = None;
    for (n, (state, step)) in pairs.iter().enumerate() {
        match step {
            Some(step) => {
                let t = model.transition(state, step);
                let mut line = format!("{:>2}. @{:<6} {step}", n + 1, ms(state.now));
                match &t.result {
                    Some(Ok(Applied::Acquire(id))) => line.push_str(&format!(" -> {id}")),
                    Some(Err(e)) => line.push_str(&format!(" -> refused: {e}")),
                    _ => {}
                }
                if !t.emitted.is_empty() {
                    let actions: Vec<String> = t.emitted.iter().map(action_text).collect();
                    line.push_str(&format!("  => {}", actions.join(", ")));
                }
                lines.push(line);
                for (input, emitted) in &t.followups {
                    let mut line = format!("          then {}", Step::Apply(input.clone()));
                    if !emitted.is_empty() {
                        let actions: Vec<String> = emitted.iter().map(action_text).collect();
                        line.push_str(&format!("  => {}", actions.join(", ")));
                    }
                    lines.push(line);
                }
            }
            None => violation = state.violation.clone(),
        }
    }
    Trace {
        steps: pairs.len().saturating_sub(1),
        lines,
        violation,
    }
}

/// The reports of a suite of configurations.
#[derive(Clone, Debug)]
pub struct SuiteReport {
    /// One report per configuration, in suite order.
    pub reports: Vec<CheckReport>,
}

impl SuiteReport {
    /// Names of the properties that fail the suite: an `always` or
    /// `eventually` property violated in any configuration, or a `sometimes`
    /// property reached in none.
    pub fn failures(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        let Some(first) = self.reports.first() else {
            return failed;
        };
        for p in &first.properties {
            let reports = self.reports.iter().filter_map(|r| r.property(p.name));
            let ok = match p.expectation {
                Expectation::Sometimes => reports.into_iter().any(|q| q.discovery.is_some()),
                _ => reports.into_iter().all(|q| q.discovery.is_none()),
            };
            if !ok {
                failed.push(p.name);
            }
        }
        failed
    }

    /// True if every configuration was explored to the end and no property
    /// fails the suite.
    pub fn all_hold(&self) -> bool {
        self.reports.iter().all(|r| r.complete) && self.failures().is_empty()
    }
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.reports {
            write!(f, "{r}")?;
        }
        writeln!(f, "summary:")?;
        for r in &self.reports {
            writeln!(f, "  {}", r.counts())?;
        }
        let failures = self.failures();
        if failures.is_empty() {
            writeln!(f, "  every property holds")
        } else {
            writeln!(f, "  FAILED: {}", failures.join("; "))
        }
    }
}

/// Checks every configuration of `suite` (see [`run`]): with `parallel`,
/// each on its own thread, all at once; else one after the other (the
/// memory of one exploration at a time).
pub fn run_suite(
    suite: Vec<crate::Bounds>,
    parallel: bool,
) -> Result<SuiteReport, mcp_pool_core::ConfigError> {
    let specs = suite
        .into_iter()
        .map(PoolSpec::new)
        .collect::<Result<Vec<_>, _>>()?;
    if !parallel {
        let reports = specs.into_iter().map(|spec| run(spec, None)).collect();
        return Ok(SuiteReport { reports });
    }
    let reports = std::thread::scope(|scope| {
        let runs: Vec<_> = specs
            .into_iter()
            .map(|spec| scope.spawn(move || run(spec, None)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    Ok(SuiteReport { reports })
}

/// Checks `suite` like [`run_suite`] (the CI suite all at once, a deep one
/// one configuration at a time, as `deep` says), prints the report with any
/// counterexample, and returns the exit code of a command that ran it: 0 if
/// every property holds, 1 if one fails, 2 if a configuration is invalid
/// (with the reason on stderr).
pub fn run_and_print(suite: Vec<crate::Bounds>, deep: bool) -> std::process::ExitCode {
    let report = match run_suite(suite, !deep) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("invalid pool configuration in the suite: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    print!("{report}");
    if report.all_hold() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
