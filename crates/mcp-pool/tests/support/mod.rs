//! A scripted fake [`Connector`] for the driver's tests: sessions are plain
//! values over a fake transport that a test can kill, connects and checks
//! follow a script, and every call is counted. Not product code.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pool::{Connector, Outcome};
use tokio::sync::Notify;

/// What the next connect does.
#[derive(Clone, Debug)]
pub enum Step {
    /// Succeeds after the connect delay.
    Ok,
    /// Fails (connection refused) after the connect delay.
    Fail,
    /// Never finishes.
    Hang,
    /// Panics.
    Panic,
}

/// What a fake call failed with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FakeError {
    /// The transport is dead (send failed).
    #[error("transport closed")]
    Transport,
    /// The server answered with an error.
    #[error("the tool returned an error")]
    Application,
    /// The server refused the connect.
    #[error("connection refused")]
    Refused,
    /// The call ran past its deadline.
    #[error("call timed out")]
    Timeout,
}

/// The fake transport under one session.
#[derive(Default)]
pub struct Transport {
    dead: AtomicBool,
    died: Notify,
}

impl Transport {
    pub fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.died.notify_waiters();
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    async fn closed(&self) {
        loop {
            let died = self.died.notified();
            if self.is_dead() {
                return;
            }
            died.await;
        }
    }
}

/// One fake session.
pub struct FakeSession {
    pub id: u64,
    pub key: &'static str,
    pub transport: Arc<Transport>,
    calls: AtomicU64,
}

impl FakeSession {
    /// One request: fails with [`FakeError::Transport`] if the transport died.
    pub async fn call(&self) -> Result<u64, FakeError> {
        tokio::task::yield_now().await;
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.transport.is_dead() {
            Err(FakeError::Transport)
        } else {
            Ok(self.id)
        }
    }

    /// One request the server answers with an error.
    pub async fn call_failing(&self) -> Result<u64, FakeError> {
        self.call().await?;
        Err(FakeError::Application)
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct Script {
    connects: VecDeque<Step>,
    checks: VecDeque<Step>,
    connect_delay: Duration,
    check_delay: Duration,
    close_delay: Duration,
    /// Connects fail while the server is down (after the script is used up).
    down: bool,
    /// Unscripted connects and checks fail at these rates (percent), drawn
    /// from `rng`.
    connect_fail_pct: u64,
    check_fail_pct: u64,
    rng: Rng,
}

/// A small deterministic generator (xorshift64*), for scripts and tests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Default for Rng {
    fn default() -> Rng {
        Rng::new(1)
    }
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// Counters of what the pool asked the connector to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub connect_attempts: u64,
    pub connects: u64,
    pub closes: u64,
    pub checks: u64,
    pub aborts: u64,
}

#[derive(Default)]
struct Inner {
    script: Mutex<Script>,
    counts: Mutex<Counts>,
    next_id: AtomicU64,
    /// Transports of every session made and not yet closed.
    open: Mutex<HashMap<u64, Arc<Transport>>>,
    /// Whether `is_closed` and `closed_notification` can see a dead transport.
    visible: AtomicBool,
    notifications: AtomicBool,
}

/// The fake connector. Clones share everything.
#[derive(Clone, Default)]
pub struct Fake {
    inner: Arc<Inner>,
}

impl Fake {
    /// A fake whose dead transports are invisible until a call fails, as
    /// with a real HTTP transport whose server was killed.
    pub fn blind() -> Fake {
        Fake::default()
    }

    /// A fake whose `is_closed` reads the transport's state, with
    /// closed-notifications if `notifications`.
    pub fn seeing(notifications: bool) -> Fake {
        let fake = Fake::default();
        fake.inner.visible.store(true, Ordering::SeqCst);
        fake.inner
            .notifications
            .store(notifications, Ordering::SeqCst);
        fake
    }

    pub fn script_connects(&self, steps: impl IntoIterator<Item = Step>) {
        self.inner.script.lock().unwrap().connects.extend(steps);
    }

    pub fn script_checks(&self, steps: impl IntoIterator<Item = Step>) {
        self.inner.script.lock().unwrap().checks.extend(steps);
    }

    pub fn set_connect_delay(&self, d: Duration) {
        self.inner.script.lock().unwrap().connect_delay = d;
    }

    pub fn set_check_delay(&self, d: Duration) {
        self.inner.script.lock().unwrap().check_delay = d;
    }

    pub fn set_close_delay(&self, d: Duration) {
        self.inner.script.lock().unwrap().close_delay = d;
    }

    /// Unscripted connects and checks fail at random at these rates.
    pub fn set_flaky(&self, seed: u64, connect_fail_pct: u64, check_fail_pct: u64) {
        let mut s = self.inner.script.lock().unwrap();
        s.rng = Rng::new(seed);
        s.connect_fail_pct = connect_fail_pct;
        s.check_fail_pct = check_fail_pct;
    }

    /// While down, unscripted connects fail.
    pub fn set_down(&self, down: bool) {
        self.inner.script.lock().unwrap().down = down;
    }

    /// The server restarts: every open session's transport dies.
    pub fn kill_all(&self) {
        for t in self.inner.open.lock().unwrap().values() {
            t.kill();
        }
    }

    /// Kills one session's transport.
    pub fn kill(&self, id: u64) {
        if let Some(t) = self.inner.open.lock().unwrap().get(&id) {
            t.kill();
        }
    }

    /// Kills the transport of one open session, chosen by `pick`.
    pub fn kill_one(&self, pick: u64) {
        let open = self.inner.open.lock().unwrap();
        let mut ids: Vec<u64> = open.keys().copied().collect();
        ids.sort_unstable();
        if let Some(id) = ids.get((pick % ids.len().max(1) as u64) as usize) {
            open[id].kill();
        }
    }

    pub fn counts(&self) -> Counts {
        self.inner.counts.lock().unwrap().clone()
    }

    /// Sessions made and not closed.
    pub fn open(&self) -> usize {
        self.inner.open.lock().unwrap().len()
    }

    pub fn is_open(&self, id: u64) -> bool {
        self.inner.open.lock().unwrap().contains_key(&id)
    }

    async fn play(&self, step: Option<Step>, delay: Duration) -> Result<(), FakeError> {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match step {
            None | Some(Step::Ok) => Ok(()),
            Some(Step::Fail) => Err(FakeError::Refused),
            Some(Step::Hang) => std::future::pending().await,
            Some(Step::Panic) => panic!("scripted panic"),
        }
    }
}

impl Connector for Fake {
    type Key = &'static str;
    type Session = FakeSession;
    type Error = FakeError;

    async fn connect(&self, key: &&'static str) -> Result<FakeSession, FakeError> {
        self.inner.counts.lock().unwrap().connect_attempts += 1;
        let (step, delay) = {
            let mut s = self.inner.script.lock().unwrap();
            let flaky = s.connect_fail_pct > 0 && {
                let pct = s.connect_fail_pct;
                s.rng.chance(pct)
            };
            let step = s
                .connects
                .pop_front()
                .or((s.down || flaky).then_some(Step::Fail));
            (step, s.connect_delay)
        };
        self.play(step, delay).await?;
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let transport = Arc::new(Transport::default());
        self.inner
            .open
            .lock()
            .unwrap()
            .insert(id, transport.clone());
        self.inner.counts.lock().unwrap().connects += 1;
        Ok(FakeSession {
            id,
            key,
            transport,
            calls: AtomicU64::new(0),
        })
    }

    async fn check(&self, session: &FakeSession) -> Result<(), FakeError> {
        self.inner.counts.lock().unwrap().checks += 1;
        let (step, delay) = {
            let mut s = self.inner.script.lock().unwrap();
            let flaky = s.check_fail_pct > 0 && {
                let pct = s.check_fail_pct;
                s.rng.chance(pct)
            };
            let step = s.checks.pop_front().or(flaky.then_some(Step::Fail));
            (step, s.check_delay)
        };
        self.play(step, delay).await?;
        session.call().await.map(|_| ())
    }

    fn is_closed(&self, session: &FakeSession) -> bool {
        self.inner.visible.load(Ordering::SeqCst) && session.transport.is_dead()
    }

    fn classify(&self, error: &FakeError) -> Outcome {
        match error {
            FakeError::Application => Outcome::ApplicationError,
            FakeError::Timeout => Outcome::Timeout,
            FakeError::Transport | FakeError::Refused => Outcome::TransportError,
        }
    }

    async fn close(&self, session: FakeSession) {
        let delay = self.inner.script.lock().unwrap().close_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.inner.open.lock().unwrap().remove(&session.id);
        self.inner.counts.lock().unwrap().closes += 1;
    }

    fn closed_notification(
        &self,
        session: &FakeSession,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        if !self.inner.notifications.load(Ordering::SeqCst) {
            return None;
        }
        let transport = session.transport.clone();
        Some(async move { transport.closed().await })
    }

    fn abort(&self, session: &FakeSession) {
        self.inner.counts.lock().unwrap().aborts += 1;
        session.transport.kill();
    }
}
