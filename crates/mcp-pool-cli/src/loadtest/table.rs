//! The loadtest's result as text: one column per mode, then what each mode
//! showed in one line, then the first error of each cause.

use std::fmt::Write;

use super::args::{show, Plan};
use super::backend::Restart;
use super::record::{Cause, ModeReport};
use super::LoadtestReport;

const LABEL: usize = 34;
const COLUMN: usize = 14;

/// The line printed before the modes run.
pub fn headline(plan: &Plan, url: &str) -> String {
    let modes: Vec<&str> = plan.modes.iter().map(|m| m.as_str()).collect();
    format!(
        "mcp-pool loadtest: {} against {url}, {} each",
        modes.join(", "),
        show(plan.load.duration)
    )
}

/// The whole result, ready to print.
pub fn render(report: &LoadtestReport) -> String {
    let mut out = String::new();
    let s = &report.settings;
    let _ = writeln!(
        out,
        "load: {} users ({} identit{}), tool `{}`, delay {}{}, think time {}, {} per mode",
        s.users,
        s.identities,
        if s.identities == 1 { "y" } else { "ies" },
        s.tool,
        ms_text(s.delay_ms),
        if s.jitter_ms > 0.0 {
            format!(" ± {}", ms_text(s.jitter_ms))
        } else {
            String::new()
        },
        ms_text(s.think_time_ms),
        secs_text(s.duration_s),
    );
    let backend = if report.embedded {
        "embedded echo server"
    } else {
        "external server"
    };
    let _ = writeln!(out, "backend: {backend} at {}", report.url);
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
    if let Some(ceiling) = report.ceiling {
        let _ = writeln!(
            out,
            "ceiling: {ceiling:.1} calls/s = {} users / ({} delay + {} think time)",
            s.users,
            ms_text(s.delay_ms),
            ms_text(s.think_time_ms)
        );
    }
    out.push('\n');
    out.push_str(&columns(report));
    out.push('\n');
    for m in &report.modes {
        let _ = writeln!(out, "{}", reading(report, m));
    }
    let samples: Vec<(&ModeReport, &str, &String)> = report
        .modes
        .iter()
        .flat_map(|m| m.error_samples.iter().map(move |(c, e)| (m, *c, e)))
        .collect();
    if !samples.is_empty() {
        let _ = writeln!(out, "\nfirst error of each cause:");
        for (m, cause, message) in samples {
            let _ = writeln!(out, "  {:<5} {cause}: {}", m.mode, shorten(message, 150));
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
    row("latency p50, ms", each(&|m| format!("{:.1}", m.p50_ms)));
    row("latency p95, ms", each(&|m| format!("{:.1}", m.p95_ms)));
    row("latency p99, ms", each(&|m| format!("{:.1}", m.p99_ms)));
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
    parts.push(format!("p50 {:.1} ms", m.p50_ms));
    format!("{:<5}: {}", m.mode, parts.join("; "))
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}...")
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
        assert!(text.contains(
            "pool : no errors after the backend was back; 100% of the ceiling outside the outage"
        ));
        assert!(text.contains("naive: 1 errors after the backend was back"));
        assert!(text.contains("naive transport: the transport is dead"));
    }
}
