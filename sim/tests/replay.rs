//! A seed replays exactly: the same scenario, seed and pool give the same
//! event log, byte for byte, in a new process (which is how a replay
//! command runs). The log holds no rmcp session id, which rmcp draws outside
//! turmoil's random generator. Within one process a second run may differ:
//! process-wide state (tokio's task ids, the standard library's hash keys)
//! carries over from the first.

use std::process::Command;

use mcp_pool_sim::{run, Plan, Scenario, Subject};

const CHILD: &str = "MCP_POOL_SIM_REPLAY_CHILD";
const BEGIN: &str = "--- event log ---";
const END: &str = "--- end ---";

fn cases() -> [(Scenario, u64, Subject); 4] {
    [
        (Scenario::CrashBounce, 7, Subject::Pool),
        (Scenario::CrashBounce, 6, Subject::Naive),
        (Scenario::Cancel, 4, Subject::Pool),
        // Modern to legacy stateful, with a private cache in play.
        (Scenario::EraSwap, 5, Subject::Pool),
    ]
}

/// Run in a child process: prints the event log of the case named by
/// `MCP_POOL_SIM_REPLAY_CHILD`; does nothing in a normal test run.
#[test]
fn child_prints_one_event_log() {
    let Ok(index) = std::env::var(CHILD) else {
        return;
    };
    let (scenario, seed, subject) = cases()[index.parse::<usize>().expect("a case index")];
    let report = run(&Plan::new(scenario, seed), subject);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    println!("{BEGIN}");
    for line in &report.log {
        println!("{line}");
    }
    println!("{END}");
}

fn log_in_new_process(case: usize) -> Vec<String> {
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "child_prints_one_event_log",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, case.to_string())
        .output()
        .expect("the test binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let log: Vec<String> = stdout
        .lines()
        .skip_while(|l| !l.ends_with(BEGIN))
        .skip(1)
        .take_while(|l| *l != END)
        .map(str::to_owned)
        .collect();
    assert!(log.len() > 20, "the run made calls:\n{stdout}");
    log
}

#[test]
fn a_seed_replays_byte_for_byte_in_a_new_process() {
    for (i, (scenario, seed, subject)) in cases().into_iter().enumerate() {
        let first = log_in_new_process(i);
        let second = log_in_new_process(i);
        if let Some(line) =
            (0..first.len().max(second.len())).find(|&l| first.get(l) != second.get(l))
        {
            panic!(
                "{scenario} seed {seed} ({subject}) did not replay: line {line} was\n  {:?}\nthen\n  {:?}",
                first.get(line),
                second.get(line)
            );
        }
    }
}

#[test]
fn different_seeds_make_different_runs() {
    let a = run(&Plan::new(Scenario::CrashBounce, 1), Subject::Pool).log;
    let b = run(&Plan::new(Scenario::CrashBounce, 2), Subject::Pool).log;
    assert!(a.len() > 20 && b.len() > 20);
    assert_ne!(a, b);
}

#[test]
fn the_backend_era_is_drawn_from_the_seed_and_logged() {
    use mcp_pool_sim::plan::{Era, Fault, ERAS, SWAPS};
    for seed in 0..6 {
        let plan = Plan::new(Scenario::Steady, seed);
        assert_eq!(plan.era, ERAS[seed as usize % 3]);
        assert_eq!(plan.eras(), [plan.era]);
        let swap = Plan::new(Scenario::EraSwap, seed);
        let (from, to) = SWAPS[seed as usize % 4];
        assert_eq!(swap.eras(), [from, to]);
        assert_eq!(swap.era_label(), format!("{from} → {to}"));
        assert!(
            matches!(swap.faults.as_slice(), [(at, Fault::Swap(era))] if *era == to && Some(*at) == swap.recovered_at)
        );
    }
    assert_eq!(Plan::era_of_seed(1), Era::Modern);
    let log = run(&Plan::new(Scenario::EraSwap, 5), Subject::Pool).log;
    assert!(
        log[0].contains("scenario: EraSwap, seed: 5") && log[0].contains("era: Modern"),
        "{}",
        log[0]
    );
    assert!(
        log.iter()
            .any(|l| l.ends_with("fault swap backend for a legacy one")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.ends_with(" modern"))
            && log.iter().any(|l| l.ends_with(" legacy-stateful"))
    );
}

#[test]
fn scenario_names_round_trip() {
    for scenario in Scenario::ALL {
        assert_eq!(scenario.name().parse::<Scenario>(), Ok(scenario));
    }
    let e = "crash".parse::<Scenario>().unwrap_err().to_string();
    assert!(
        e.contains("unknown scenario `crash`") && e.contains("crash-bounce"),
        "{e}"
    );
}
