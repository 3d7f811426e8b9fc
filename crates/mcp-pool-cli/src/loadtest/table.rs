//! The loadtest's result as text: one column per mode, then what each mode
//! showed in one line, then the first error of each cause.

use std::fmt::Write;

use super::args::{show, Plan, Target};
use super::backend::Restart;
use super::ceiling::CeilingBasis;
use super::record::{Cause, ModeReport};
use super::LoadtestReport;
use mcp_pool_rmcp::Era;

const LABEL: usize = 34;
/// Wide enough for the longest era name, `legacy-stateless`, and a space.
const COLUMN: usize = 17;

/// The longest error text printed, in characters (the JSON has it whole).
const ERROR_TEXT: usize = 150;

/// What a latency cell shows when the mode had no successful call.
const NO_LATENCY: &str = "—";

/// The line printed before the modes run.
pub fn headline(plan: &Plan, url: &str) -> String {
    let modes: Vec<&str> = plan.modes.iter().map(|m| m.as_str()).collect();
    let era = match &plan.target {
        Target::Embedded { era, .. } => format!(" (era {era})"),
        Target::External { .. } => String::new(),
    };
    let via = if plan.via_gateway {
        " through a gateway"
    } else {
        ""
    };
    format!(
        "mcp-pool loadtest: {}{via} against {url}{era}, {} each",
        modes.join(", "),
        show(plan.load.duration)
    )
}

/// The whole result, ready to print.
pub fn render(report: &LoadtestReport) -> String {
    let mut out = String::new();
    let s = &report.settings;
    let delay = match s.delay_ms {
        Some(delay) if s.jitter_ms > 0.0 => {
            format!("delay {} ± {}", ms_text(delay), ms_text(s.jitter_ms))
        }
        Some(delay) => format!("delay {}", ms_text(delay)),
        None => "no delay_ms".into(),
    };
    let _ = writeln!(
        out,
        "load: {} users ({} identit{}), tool `{}`, {delay}, think time {}, {} per mode",
        s.users,
        s.identities,
        if s.identities == 1 { "y" } else { "ies" },
        s.tool,
        ms_text(s.think_time_ms),
        secs_text(s.duration_s),
    );
    let served = report
        .served_era
        .as_deref()
        .and_then(|era| era.parse::<mcp_pool_echo::Era>().ok());
    match (report.embedded, served) {
        (true, Some(era)) => {
            let _ = writeln!(
                out,
                "backend: embedded echo server at {}, serving {}",
                report.url,
                era.summary()
            );
        }
        (true, None) => {
            let _ = writeln!(out, "backend: embedded echo server at {}", report.url);
        }
        (false, _) => {
            let _ = writeln!(out, "backend: external server at {}", report.url);
        }
    }
    if report.via_gateway {
        let _ = writeln!(
            out,
            "via gateway: users call an embedded mcp-pool gateway (its own per mode), which \
             calls the backend over sessions taken the mode's way; counters and eras are the \
             gateway's upstream side"
        );
    }
    match &report.outage {
        Some(o) if report.embedded => {
            let how = match o.restart {
                Restart::Delayed => format!(
                    "killed at {} of each mode, back {} later on the same port",
                    secs_text(o.at.as_secs_f64()),
                    secs_text(o.down_for.as_secs_f64())
                ),
                Restart::Instant => format!(
                    "killed at {} of each mode and restarted at once on the same port",
                    secs_text(o.at.as_secs_f64())
                ),
            };
            let _ = writeln!(out, "outage: {how}");
        }
        Some(o) => {
            let _ = writeln!(
                out,
                "outage (declared): down at {} of each mode for {}",
                secs_text(o.at.as_secs_f64()),
                secs_text(o.down_for.as_secs_f64())
            );
        }
        None => {
            let _ = writeln!(out, "outage: none");
        }
    }
    let _ = writeln!(out, "{}", ceiling_line(report));
    out.push('\n');
    out.push_str(&columns(report));
    for m in report.modes.iter().filter(|m| m.eras.len() > 1) {
        let seen: Vec<String> = m
            .eras
            .iter()
            .map(|e| format!("{} {} ({} calls)", e.era, e.protocol_version, e.calls))
            .collect();
        let _ = writeln!(
            out,
            "sessions of {} were of more than one era: {}",
            m.mode,
            seen.join(", ")
        );
    }
    out.push('\n');
    for m in &report.modes {
        let _ = writeln!(out, "{}", reading(report, m));
        if lost_nothing(m) {
            let _ = writeln!(
                out,
                "       (its sessions were {}: the server kept no session to lose;\n        \
                 these are sessions the client had found dead, put back by the naive pool: see its last error)",
                m.era.as_deref().unwrap_or("-"),
            );
        }
    }
    let samples: Vec<(&ModeReport, &str, &String)> = report
        .modes
        .iter()
        .flat_map(|m| m.error_samples.iter().map(move |(c, e)| (m, *c, e)))
        .collect();
    if !samples.is_empty() {
        let _ = writeln!(out, "\nfirst error of each cause:");
        for (m, cause, message) in samples {
            let _ = writeln!(
                out,
                "  {:<5} {cause}: {}",
                m.mode,
                shorten(message, ERROR_TEXT)
            );
        }
    }
    // The last error tells what failures went on being, where it differs
    // from the first (a naive pool's dead sessions after the outage).
    let changed: Vec<(&ModeReport, &str, &String)> = report
        .modes
        .iter()
        .flat_map(|m| {
            m.last_error_samples
                .iter()
                .filter(|(c, e)| m.error_samples.get(*c) != Some(*e))
                .map(move |(c, e)| (m, *c, e))
        })
        .collect();
    if !changed.is_empty() {
        let _ = writeln!(out, "last error of each cause, where it differs:");
        for (m, cause, message) in changed {
            let _ = writeln!(
                out,
                "  {:<5} {cause}: {}",
                m.mode,
                shorten(message, ERROR_TEXT)
            );
        }
    }
    out
}

fn columns(report: &LoadtestReport) -> String {
    let mut out = String::new();
    let mut row = |label: &str, cells: Vec<String>| {
        let _ = write!(out, "{label:<LABEL$}");
        for cell in cells {
            let _ = write!(out, "{cell:>COLUMN$}");
        }
        out.push('\n');
    };
    let modes = &report.modes;
    let each = |f: &dyn Fn(&ModeReport) -> String| modes.iter().map(f).collect::<Vec<_>>();
    row("", each(&|m| m.mode.clone()));
    // Detected by the client on the sessions the calls ran on, never
    // assumed from what the embedded server was told to serve.
    row(
        "era (detected)",
        each(&|m| m.era.clone().unwrap_or_else(|| "-".into())),
    );
    row(
        "protocol version",
        each(&|m| m.protocol_version.clone().unwrap_or_else(|| "-".into())),
    );
    row("calls", each(&|m| m.calls.to_string()));
    row("ok", each(&|m| m.ok.to_string()));
    row("errors", each(&|m| m.failed().to_string()));
    for cause in Cause::ALL {
        let name = cause.as_str();
        if modes.iter().any(|m| m.errors.contains_key(name)) {
            row(
                &format!("  {}", name.replace('_', " ")),
                each(&|m| m.errors.get(name).copied().unwrap_or(0).to_string()),
            );
        }
    }
    if report.outage.is_some() {
        row(
            "errors after the backend was back",
            each(&|m| m.errors_after_recovery.to_string()),
        );
    }
    row(
        "throughput, ok calls/s",
        each(&|m| format!("{:.1}", m.throughput)),
    );
    if report.outage.is_some() {
        row(
            "  outside the outage",
            each(&|m| match m.share_of_ceiling() {
                Some(share) => {
                    format!("{:.1} ({:.0}%)", m.throughput_outside_outage, share * 100.0)
                }
                None => format!("{:.1}", m.throughput_outside_outage),
            }),
        );
    } else if report.ceiling.is_some() {
        row(
            "  share of the ceiling",
            each(&|m| {
                m.share_of_ceiling()
                    .map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
            }),
        );
    }
    row("latency p50, ms", each(&|m| latency(m.p50_ms)));
    row("latency p95, ms", each(&|m| latency(m.p95_ms)));
    row("latency p99, ms", each(&|m| latency(m.p99_ms)));
    row("latency max, ms", each(&|m| latency(m.max_ms)));
    if modes.iter().any(|m| m.failed() > 0) {
        row(
            "  of failed calls, max, ms",
            each(&|m| latency(m.max_failed_ms)),
        );
    }
    let counter = |name: &'static str| {
        move |m: &ModeReport| {
            m.counters
                .get(name)
                .map_or("-".to_string(), |n| n.to_string())
        }
    };
    row("connects", each(&counter("connects")));
    row("pool hits", each(&counter("hits")));
    row("pool misses", each(&counter("misses")));
    row("pool evictions", each(&counter("evictions")));
    row("pool checks", each(&counter("checks")));
    if modes.iter().any(|m| m.outage.is_some()) {
        row(
            "backend down -> back, s",
            each(&|m| {
                m.outage.map_or("-".into(), |o| {
                    format!("{:.1} -> {:.1}", o.down_at_s, o.back_at_s)
                })
            }),
        );
    }
    out
}

/// What a mode showed, in one line, from its numbers only.
fn reading(report: &LoadtestReport, m: &ModeReport) -> String {
    let mut parts = Vec::new();
    if report.outage.is_some() {
        parts.push(match m.errors_after_recovery {
            0 => "no errors after the backend was back".to_string(),
            n => format!("{n} errors after the backend was back"),
        });
    } else {
        parts.push(format!("{} errors", m.failed()));
    }
    if let Some(share) = m.share_of_ceiling() {
        let place = if report.outage.is_some() {
            " outside the outage"
        } else {
            ""
        };
        parts.push(format!("{:.0}% of the ceiling{place}", share * 100.0));
    }
    parts.push(match m.p50_ms {
        Some(p50) => format!("p50 {p50:.1} ms"),
        None => "no call succeeded".into(),
    });
    format!("{:<5}: {}", m.mode, parts.join("; "))
}

/// Whether `m` is the naive pool failing after the outage on sessions
/// whose server keeps no per-session state (modern or legacy stateless,
/// as detected): its failures then come from the client's side only.
fn lost_nothing(m: &ModeReport) -> bool {
    m.mode == "naive"
        && m.errors_after_recovery > 0
        && m.outage.is_some()
        && !m.eras.is_empty()
        && m.eras.iter().all(|e| e.era != Era::LegacyStateful.name())
}

/// How the ceiling was derived, in one line.
fn ceiling_line(report: &LoadtestReport) -> String {
    let ceiling = report.ceiling.unwrap_or_default();
    match &report.ceiling_basis {
        CeilingBasis::Delay {
            users,
            delay_ms,
            think_time_ms,
            ..
        } => format!(
            "ceiling: {ceiling:.1} calls/s = {users} users / ({} delay + {} think time)",
            ms_text(*delay_ms),
            ms_text(*think_time_ms)
        ),
        CeilingBasis::Measured {
            users,
            p50_ms,
            mode,
            think_time_ms,
            why,
        } => format!(
            "ceiling: {ceiling:.1} calls/s from the measured p50 {p50_ms:.1} ms of {mode} = {users} users / ({p50_ms:.1} ms + {} think time) ({})",
            ms_text(*think_time_ms),
            shorten(why, ERROR_TEXT)
        ),
        CeilingBasis::Unknown { why } => format!(
            "ceiling: unknown, no call of pool or none succeeded to measure it; {}",
            shorten(why, ERROR_TEXT)
        ),
    }
}

fn latency(ms: Option<f64>) -> String {
    ms.map_or(NO_LATENCY.into(), |ms| format!("{ms:.1}"))
}

/// `text` on one line in at most `max` characters, never cut inside a word
/// (unless it is a single word): when it is longer, words are dropped from the middle and replaced by `…`. An error
/// names what failed first and what the server said last (each layer puts
/// its cause after a colon), so both ends are kept, the end with the larger
/// share.
pub fn shorten(text: &str, max: usize) -> String {
    // One line, whatever the error's own layout.
    let words: Vec<&str> = text.split_whitespace().collect();
    let text = words.join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let width = |w: &[&str]| w.iter().map(|w| w.chars().count() + 1).sum::<usize>();
    // The tail: as many whole words from the end as fit in two thirds.
    let budget = max.saturating_sub(2);
    let mut tail = words.len();
    while tail > 0 && width(&words[tail - 1..]) <= budget * 2 / 3 {
        tail -= 1;
    }
    // The head: as many whole words from the start as fit in the rest.
    let room = budget.saturating_sub(width(&words[tail..]));
    let mut head = 0;
    while head < tail && width(&words[..=head]) <= room {
        head += 1;
    }
    if head == 0 && tail == words.len() {
        // A single word longer than everything: cut it at a character that
        // separates its parts (a URL's `/`, `:` or `.`), or anywhere.
        let cut: String = text.chars().take(budget).collect();
        let at = cut
            .rfind(|c: char| !c.is_alphanumeric())
            .filter(|i| *i > 0)
            .unwrap_or(cut.len());
        return format!("{}…", &cut[..at]);
    }
    let mut out = words[..head].join(" ");
    if !out.is_empty() {
        out.push(' ');
    }
    out.push('…');
    if tail < words.len() {
        out.push(' ');
        out.push_str(&words[tail..].join(" "));
    }
    out
}

fn ms_text(ms: f64) -> String {
    if ms == 0.0 {
        "0s".into()
    } else if ms >= 1000.0 && ms % 1000.0 == 0.0 {
        format!("{}s", ms / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

fn secs_text(s: f64) -> String {
    let rounded = (s * 1000.0).round() / 1000.0;
    format!("{rounded}s")
}

#[cfg(test)]
mod tests {
    use super::super::sample_report as report;
    use super::*;

    #[test]
    fn the_table_shows_each_mode_side_by_side() {
        let text = render(&report());
        assert!(text.contains("ceiling: 1.0 calls/s = 1 users / (1s delay + 0s think time)"));
        let line = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in\n{text}"))
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(line("errors after the backend was back")[6..], ["0", "1"]);
        assert_eq!(line("  transport")[1..], ["0", "1"]);
        assert_eq!(line("pool hits")[2..], ["1", "-"]);
        assert_eq!(line("era (detected)")[2..], ["legacy-stateful", "-"]);
        assert_eq!(line("protocol version")[2..], ["2025-11-25", "-"]);
        assert!(text.contains("backend: embedded echo server at http://127.0.0.1:1/mcp, serving era legacy: MCP 2024-11-05 to 2025-11-25;"), "{text}");
        assert!(!text.contains("more than one era"), "{text}");
        assert!(text.contains(
            "pool : no errors after the backend was back; 100% of the ceiling outside the outage"
        ));
        assert!(text.contains("naive: 1 errors after the backend was back"));
        assert!(text.contains("naive transport: the transport is dead"));
    }

    #[test]
    fn a_naive_cascade_on_sessionless_servers_is_explained() {
        use crate::loadtest::era::EraSeen;

        let mut report = report();
        assert!(!render(&report).contains("kept no session to lose"));
        let naive = &mut report.modes[1];
        naive.eras = vec![EraSeen {
            era: "modern".into(),
            protocol_version: "2026-07-28".into(),
            calls: 2,
        }];
        naive.era = Some("modern".into());
        let text = render(&report);
        assert!(
            text.contains("naive: 1 errors after the backend was back; 50% of the ceiling outside the outage; p50 100.0 ms\n       (its sessions were modern: the server kept no session to lose;"),
            "{text}"
        );
        report.modes[1].eras.push(EraSeen {
            era: "legacy-stateful".into(),
            protocol_version: "2025-11-25".into(),
            calls: 1,
        });
        let text = render(&report);
        assert!(!text.contains("kept no session to lose"), "{text}");
        assert!(
            text.contains("sessions of naive were of more than one era: modern 2026-07-28 (2 calls), legacy-stateful 2025-11-25 (1 calls)"),
            "{text}"
        );
    }

    const CIRCUIT_OPEN: &str = "circuit open after recent connects to this server failed (waited 69.905µs); the last connect failed: could not open an MCP session with http://127.0.0.1:33289/mcp: HTTP 500 (while trying to send initialize request)";

    #[test]
    fn a_long_error_loses_words_from_its_middle_only() {
        let short = shorten(CIRCUIT_OPEN, 150);
        assert!(short.chars().count() <= 150, "{short}");
        assert!(short.starts_with("circuit open"), "{short}");
        assert!(
            short.ends_with("HTTP 500 (while trying to send initialize request)"),
            "what the server said is kept: {short}"
        );
        let (head, tail) = short.split_once(" … ").expect("words left out");
        let words: Vec<&str> = CIRCUIT_OPEN.split(' ').collect();
        let kept: Vec<&str> = head.split(' ').chain(tail.split(' ')).collect();
        assert!(
            kept.iter().all(|w| words.contains(w)),
            "a word was cut: {short}"
        );
        assert_eq!(shorten("HTTP 500", 150), "HTTP 500");
        assert_eq!(shorten("two\nlines", 150), "two lines");
        for max in [10, 20, 40, 80] {
            let s = shorten(CIRCUIT_OPEN, max);
            assert!(s.chars().count() <= max, "{max}: {s}");
            assert!(s.contains('…'), "{max}: {s}");
        }
        let url = shorten(
            "http://127.0.0.1:33289/a-very-long-path/without/any/spaces",
            30,
        );
        assert!(url.chars().count() <= 30 && url.ends_with('…'), "{url}");
        assert!(url.starts_with("http://127.0.0.1:33289/"), "{url}");
    }

    #[test]
    fn a_mode_without_a_success_shows_no_latency() {
        use crate::loadtest::record::{CallRecord, ModeRun};
        use std::time::Duration;

        let mut report = report();
        let dead = ModeReport::new(ModeRun {
            mode: "none".into(),
            records: vec![CallRecord {
                start: Duration::ZERO,
                latency: Duration::from_millis(3),
                result: Err(Cause::Connect),
            }],
            duration: Duration::from_secs(3),
            error_samples: [("connect", CIRCUIT_OPEN.to_string())].into(),
            ..ModeRun::default()
        });
        report.modes.push(dead);
        let text = render(&report);
        let row = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in\n{text}"))
                .to_string()
        };
        for label in ["latency p50", "latency p95", "latency p99", "latency max"] {
            let cells: Vec<String> = row(label).split_whitespace().map(str::to_string).collect();
            assert_eq!(
                cells.last().map(String::as_str),
                Some("—"),
                "{label}: {cells:?}"
            );
            assert_eq!(cells[cells.len() - 3], "100.0", "{label}: {cells:?}");
        }
        let failed = row("  of failed calls, max");
        assert!(failed.ends_with("3.0"), "{failed}");
        assert!(text.contains("none : 1 errors after the backend was back; no call succeeded"));
        assert!(!text.contains(" 0.0 "), "{text}");
        assert!(
            text.contains("HTTP 500 (while trying to send initialize request)"),
            "{text}"
        );
    }

    #[test]
    fn the_ceiling_line_says_how_it_was_derived() {
        let mut report = report();
        report.ceiling_basis = CeilingBasis::Measured {
            users: 4,
            p50_ms: 4.0,
            mode: "pool".into(),
            think_time_ms: 0.0,
            why: "the server ignores delay_ms: the input schema of `search` has no such property"
                .into(),
        };
        report.ceiling = report.ceiling_basis.ceiling();
        let text = render(&report);
        assert!(
            text.contains("ceiling: 1000.0 calls/s from the measured p50 4.0 ms of pool = 4 users / (4.0 ms + 0s think time) (the server ignores delay_ms"),
            "{text}"
        );
        report.ceiling_basis = CeilingBasis::Unknown {
            why: "HTTP 500".into(),
        };
        report.ceiling = None;
        let text = render(&report);
        assert!(
            text.contains(
                "ceiling: unknown, no call of pool or none succeeded to measure it; HTTP 500"
            ),
            "{text}"
        );
    }
}
