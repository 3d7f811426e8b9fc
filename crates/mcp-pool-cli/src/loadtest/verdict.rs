//! Whether a loadtest passed: what decides the command's exit code.

use serde::Serialize;

use super::record::ModeReport;

/// The loadtest's verdict. It fails when
///
/// - mode `pool` had failed calls once the backend was up
///   ([`ModeReport::errors_after_recovery`]: after the outage, or over the
///   whole run without one), other than the server's own error answers; or
/// - some mode had no successful call at all.
///
/// Anything else passes, however `naive` and `none` fared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Whether no failure was found.
    pub passed: bool,
    /// Each failure, in words (empty when it passed).
    pub failures: Vec<String>,
}

impl Verdict {
    /// Judges the reports of a run; `outage` says whether one was injected
    /// or declared (it only changes the words).
    pub fn of(modes: &[ModeReport], outage: bool) -> Verdict {
        let mut failures = Vec::new();
        for m in modes.iter().filter(|m| m.mode == "pool") {
            let n = m.errors_after_recovery;
            if n > 0 {
                let calls = if n == 1 { "call" } else { "calls" };
                let when = if outage {
                    "after the backend was back"
                } else {
                    "with no outage"
                };
                failures.push(format!("{}: {n} {calls} failed {when}", m.mode));
            }
        }
        let silent: Vec<&str> = modes
            .iter()
            .filter(|m| m.ok == 0)
            .map(|m| m.mode.as_str())
            .collect();
        if !silent.is_empty() {
            failures.push(format!("no call succeeded in {}", silent.join(", ")));
        }
        Verdict {
            passed: failures.is_empty(),
            failures,
        }
    }

    /// The verdict over several runs (`--era all`), each named by its
    /// served era: it passes when every run passed, and lists each failure
    /// prefixed by its run's name.
    pub fn of_runs<'a>(runs: impl IntoIterator<Item = (&'a str, &'a Verdict)>) -> Verdict {
        let failures: Vec<String> = runs
            .into_iter()
            .flat_map(|(name, verdict)| {
                verdict
                    .failures
                    .iter()
                    .map(move |failure| format!("era {name}: {failure}"))
            })
            .collect();
        Verdict {
            passed: failures.is_empty(),
            failures,
        }
    }

    /// The failures in one line, as the command prints them on stderr;
    /// `None` when it passed.
    pub fn reason(&self) -> Option<String> {
        (!self.passed).then(|| format!("loadtest failed: {}", self.failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::loadtest::record::{CallRecord, Cause, ModeRun};

    fn mode(name: &str, results: &[Result<(), Cause>]) -> ModeReport {
        ModeReport::new(ModeRun {
            mode: name.into(),
            records: results
                .iter()
                .enumerate()
                .map(|(i, result)| CallRecord {
                    start: Duration::from_millis(100 * i as u64),
                    latency: Duration::from_millis(10),
                    result: *result,
                })
                .collect(),
            duration: Duration::from_secs(1),
            ..ModeRun::default()
        })
    }

    #[test]
    fn pool_errors_with_the_backend_up_and_silent_modes_fail() {
        let ok = Ok(());
        let lost = Err(Cause::SessionLost);
        let passed = Verdict::of(
            &[mode("pool", &[ok, ok]), mode("naive", &[ok, lost, lost])],
            false,
        );
        assert_eq!(
            passed,
            Verdict {
                passed: true,
                failures: vec![]
            }
        );
        assert_eq!(passed.reason(), None);

        let failed = Verdict::of(
            &[
                mode("pool", &[ok, lost]),
                mode("none", &[Err(Cause::Connect)]),
            ],
            false,
        );
        assert!(!failed.passed);
        assert_eq!(
            failed.reason().unwrap(),
            "loadtest failed: pool: 1 call failed with no outage; no call succeeded in none"
        );
        assert!(!failed.reason().unwrap().contains('\n'));
    }

    #[test]
    fn the_tools_own_errors_do_not_fail_the_pool() {
        let verdict = Verdict::of(&[mode("pool", &[Ok(()), Err(Cause::Application)])], false);
        assert!(verdict.passed, "{verdict:?}");
    }

    #[test]
    fn runs_fail_together_naming_the_era() {
        let ok = Ok(());
        let lost = Err(Cause::SessionLost);
        let passed = Verdict::of(&[mode("pool", &[ok])], true);
        let failed = Verdict::of(&[mode("pool", &[ok, lost])], false);
        assert!(Verdict::of_runs([("legacy", &passed), ("modern", &passed)]).passed);
        let all = Verdict::of_runs([("legacy", &passed), ("modern", &failed)]);
        assert!(!all.passed);
        assert_eq!(
            all.failures,
            vec!["era modern: pool: 1 call failed with no outage".to_string()]
        );
    }
}
