//! The live progress bar of a mode: calls, errors, current rate, and
//! whether the backend is down. Drawn on stdout, only when it is a terminal.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::record::CallRecord;

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    errors: AtomicU64,
    backend_down: AtomicBool,
}

/// One mode's progress bar, updated five times a second.
pub struct Progress {
    bar: ProgressBar,
    counts: Arc<Counts>,
    duration: Duration,
    started: Instant,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Whether progress is drawn at all (stdout is a terminal).
    pub fn visible() -> bool {
        std::io::stdout().is_terminal()
    }

    /// A bar for `mode`, running for `duration`. Must be called within a
    /// tokio runtime.
    pub fn start(mode: &str, duration: Duration) -> Progress {
        let total = duration.as_millis().max(1) as u64;
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
        // The message is cut to the terminal's width, so a line never wraps.
        let style = ProgressStyle::with_template("{prefix:>5} [{bar:20}] {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(mode.to_string());
        let counts = Arc::new(Counts::default());
        let started = Instant::now();
        let ticker = tokio::spawn({
            let bar = bar.clone();
            let counts = counts.clone();
            async move {
                let mut history: VecDeque<(Instant, u64)> = VecDeque::new();
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    let calls = counts.calls.load(Ordering::Relaxed);
                    history.push_back((now, calls));
                    while history.len() > 2 && now - history[1].0 >= Duration::from_secs(1) {
                        history.pop_front();
                    }
                    let (then, before) = history[0];
                    let span = (now - then).as_secs_f64();
                    let rate = if span > 0.0 {
                        (calls - before) as f64 / span
                    } else {
                        0.0
                    };
                    bar.set_position((now - started).as_millis().min(total as u128) as u64);
                    bar.set_message(message(&counts, now - started, duration, rate));
                }
            }
        });
        Progress {
            bar,
            counts,
            duration,
            started,
            ticker,
        }
    }

    /// The callback that counts each finished call.
    pub fn on_call(&self) -> Arc<dyn Fn(&CallRecord) + Send + Sync> {
        let counts = self.counts.clone();
        Arc::new(move |record: &CallRecord| {
            counts.calls.fetch_add(1, Ordering::Relaxed);
            if record.result.is_err() {
                counts.errors.fetch_add(1, Ordering::Relaxed);
            }
        })
    }

    /// Shows whether the backend is down.
    pub fn set_backend_down(&self, down: bool) {
        self.counts.backend_down.store(down, Ordering::Relaxed);
    }

    /// Stops updating and leaves the final line on screen.
    pub fn finish(self) {
        self.ticker.abort();
        let elapsed = self.started.elapsed();
        let calls = self.counts.calls.load(Ordering::Relaxed);
        let rate = calls as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
        self.bar
            .set_message(message(&self.counts, elapsed, self.duration, rate));
        self.bar.finish();
        if !self.bar.is_hidden() {
            // The next bar, or the table, starts on a line of its own.
            println!();
        }
    }
}

fn message(counts: &Counts, elapsed: Duration, duration: Duration, rate: f64) -> String {
    let calls = counts.calls.load(Ordering::Relaxed);
    let errors = counts.errors.load(Ordering::Relaxed);
    let mut text = format!(
        "{:>2}s/{}s  {calls} calls  {errors} errors  {rate:.1}/s",
        elapsed.as_secs(),
        duration.as_secs()
    );
    if counts.backend_down.load(Ordering::Relaxed) {
        text.push_str("  backend down");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_calls_and_errors() {
        let progress = Progress::start("pool", Duration::from_secs(1));
        let on_call = progress.on_call();
        for result in [Ok(()), Err(super::super::record::Cause::Connect)] {
            on_call(&CallRecord {
                start: Duration::ZERO,
                latency: Duration::ZERO,
                result,
            });
        }
        progress.set_backend_down(true);
        let text = message(
            &progress.counts,
            Duration::from_secs(2),
            Duration::from_secs(5),
            1.5,
        );
        assert_eq!(text, " 2s/5s  2 calls  1 errors  1.5/s  backend down");
        progress.finish();
    }
}
