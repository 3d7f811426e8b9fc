//! Drives virtual users against one mode and records every call.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::record::{CallRecord, Cause, Failure};

/// A boxed call future, as modes return them.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// One way of making calls (through mcp-pool, through the naive pool, or a
/// fresh session per call).
pub trait Mode: Send + Sync {
    /// Makes call number `seq` of `user`, as `identity`.
    fn call(&self, user: usize, identity: usize, seq: u64) -> CallFuture<'_>;
}

/// The shape of the load.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    /// Virtual users, each calling in a loop.
    pub users: usize,
    /// Users started per second (the rest start later).
    pub spawn_rate: f64,
    /// Pause between a user's calls.
    pub think_time: Duration,
    /// Pause after a failed call, if longer than the think time, so that a
    /// mode whose calls fail at once does not spin.
    pub error_backoff: Duration,
    /// How long users keep starting calls; calls in flight at the end are
    /// awaited.
    pub duration: Duration,
    /// Identities (tenants) the users are spread over, round robin.
    pub identities: usize,
    /// Upper bound of one call, after which it counts as a timeout.
    pub call_timeout: Duration,
}

/// What [`run_mode`] returns: every finished call, from the start of the
/// run, sorted by start, and the first and last error message of each
/// cause.
#[derive(Debug, Default)]
pub struct Calls {
    /// Every finished call.
    pub records: Vec<CallRecord>,
    /// The first error message seen for each cause.
    pub error_samples: BTreeMap<&'static str, String>,
    /// The last error message seen for each cause (what the mode's failures
    /// looked like at the end, e.g. long after an outage).
    pub last_error_samples: BTreeMap<&'static str, String>,
}

/// Runs `load` against `mode` from `start`. `on_call` sees each record as it
/// lands (for progress).
pub async fn run_mode(
    mode: Arc<dyn Mode>,
    load: &Load,
    start: Instant,
    on_call: Arc<dyn Fn(&CallRecord) + Send + Sync>,
) -> Calls {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let mut users = Vec::with_capacity(load.users);
    for user in 0..load.users {
        let delay = Duration::from_secs_f64(user as f64 / load.spawn_rate.max(f64::MIN_POSITIVE));
        let mode = mode.clone();
        let calls = calls.clone();
        let on_call = on_call.clone();
        let load = load.clone();
        users.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + delay).await;
            let identity = user % load.identities.max(1);
            let mut seq = 0u64;
            while start.elapsed() < load.duration {
                let began = Instant::now();
                let result =
                    match tokio::time::timeout(load.call_timeout, mode.call(user, identity, seq))
                        .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(Failure::new(
                            Cause::Timeout,
                            format!("no answer within {:?}", load.call_timeout),
                        )),
                    };
                seq += 1;
                let failed = result.is_err();
                let record = CallRecord {
                    start: began - start,
                    latency: began.elapsed(),
                    result: result.as_ref().map(drop).map_err(|f| f.cause),
                };
                on_call(&record);
                {
                    let mut calls = calls.lock().expect("records");
                    calls.records.push(record);
                    if let Err(failure) = result {
                        let cause = failure.cause.as_str();
                        if !calls.error_samples.contains_key(cause) {
                            calls.error_samples.insert(cause, failure.message.clone());
                        }
                        calls.last_error_samples.insert(cause, failure.message);
                    }
                }
                let pause = if failed {
                    load.think_time.max(load.error_backoff)
                } else {
                    load.think_time
                };
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for user in users {
        if let Err(e) = user.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
    let mut calls = std::mem::take(&mut *calls.lock().expect("records"));
    calls.records.sort_by_key(|r| r.start);
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy;

    impl Mode for Sleepy {
        fn call(&self, user: usize, _identity: usize, _seq: u64) -> CallFuture<'_> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if user == 0 {
                    Err(Failure::new(Cause::Transport, "broken pipe"))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn load() -> Load {
        Load {
            users: 4,
            spawn_rate: 1000.0,
            think_time: Duration::ZERO,
            error_backoff: Duration::ZERO,
            duration: Duration::from_secs(1),
            identities: 2,
            call_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn users_call_in_a_loop_until_the_end() {
        let seen = Arc::new(Mutex::new(0usize));
        let counter = seen.clone();
        let calls = run_mode(
            Arc::new(Sleepy),
            &load(),
            Instant::now(),
            Arc::new(move |_| *counter.lock().unwrap() += 1),
        )
        .await;
        // Each user makes 10 calls of 100 ms in 1 s (the last one started
        // before the end finishes after it).
        assert_eq!(calls.records.len(), 40);
        assert_eq!(*seen.lock().unwrap(), 40);
        assert_eq!(
            calls.records.iter().filter(|r| r.result.is_err()).count(),
            10
        );
        assert!(calls.records.windows(2).all(|w| w[0].start <= w[1].start));
        assert_eq!(
            calls.error_samples.get("transport").map(String::as_str),
            Some("broken pipe")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_is_followed_by_the_backoff() {
        let load = Load {
            error_backoff: Duration::from_millis(400),
            ..load()
        };
        let calls = run_mode(Arc::new(Sleepy), &load, Instant::now(), Arc::new(|_| {})).await;
        // User 0 fails every call: 100 ms call + 400 ms pause, so 2 calls.
        assert_eq!(
            calls.records.iter().filter(|r| r.result.is_err()).count(),
            2
        );
        assert_eq!(calls.records.len(), 32);
    }

    struct Stuck;

    impl Mode for Stuck {
        fn call(&self, _user: usize, _identity: usize, _seq: u64) -> CallFuture<'_> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_timeout_is_a_timeout() {
        let load = Load {
            users: 1,
            call_timeout: Duration::from_millis(300),
            ..load()
        };
        let calls = run_mode(Arc::new(Stuck), &load, Instant::now(), Arc::new(|_| {})).await;
        assert_eq!(calls.records.len(), 4);
        assert!(calls
            .records
            .iter()
            .all(|r| r.result == Err(Cause::Timeout)));
        assert!(calls.error_samples["timeout"].contains("300ms"));
    }
}
