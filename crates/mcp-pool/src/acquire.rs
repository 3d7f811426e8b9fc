//! The callers' side: acquiring a session, waiting for it, giving it back.
//!
//! A waiting caller is its own timer: at its deadline it drives the core's
//! timer itself, so an answer arrives at the deadline even if the upkeep
//! task is gone (its runtime shut down, or it died), and never later than
//! [`DEADLINE_GRACE`] after it whatever happens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mcp_pool_core::{AcquireId, InputError, LeaseId, Outcome, RejectReason, Time};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::shared::{report, Answer, Jobs, Mine, Shared, Waiter};
use crate::{guard, AcquireError, Connector, KeyHash, Lease};

/// How long past its deadline a waiting caller waits for the core's answer
/// before it gives up on its own (a bound, never reached while the core
/// answers at the deadline as it promises).
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_millis(100);

/// How an acquire went on its first try.
enum Started<C: Connector> {
    Answered(Answer<C>),
    Waiting(Waiting<C>),
}

impl<C: Connector> Shared<C> {
    /// Acquires a session for `key` before `deadline`; see [`crate::Pool::acquire`].
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        key: &C::Key,
        deadline: Option<Instant>,
    ) -> Result<Lease<C>, AcquireError<C::Error>> {
        self.ensure_upkeep();
        let started = self.now();
        let deadline = match deadline {
            Some(at) => self.time(at),
            None => started + self.config.acquire_timeout,
        };
        let mut state = match self.start_acquire(key, deadline, started) {
            Ok(state) => state,
            Err(InputError::DeadlineNotInFuture) => {
                return Err(AcquireError::TimedOut {
                    waited: self.now().saturating_duration_since(started),
                    last_failure: None,
                })
            }
            Err(e) => unreachable!("acquire refused: {e}"),
        };
        loop {
            let answer = match state {
                (_, Started::Answered(answer)) => answer,
                (id, Started::Waiting(waiting)) => {
                    state = (id, Started::Answered(waiting.until(deadline).await));
                    continue;
                }
            };
            let id = state.0;
            match answer {
                Answer::Granted {
                    lease,
                    session,
                    key: hash,
                } => {
                    if guard::is_closed(&self.connector, &session) {
                        tracing::info!(pool = %self.name, key = %hash, session = %lease.session(), "granted session is closed; back in line");
                        drop(session);
                        state = (id, self.grant_closed(id, key, lease));
                        continue;
                    }
                    return Ok(Lease::new(self.clone(), lease, session));
                }
                Answer::Rejected { reason, cause } => {
                    let waited = self.now().saturating_duration_since(started);
                    return Err(match reason {
                        RejectReason::TimedOut => AcquireError::TimedOut {
                            waited,
                            last_failure: cause,
                        },
                        RejectReason::CircuitOpen => AcquireError::CircuitOpen {
                            waited,
                            last_failure: cause,
                        },
                        RejectReason::ShuttingDown => AcquireError::ShuttingDown,
                        RejectReason::TooManyKeys => AcquireError::TooManyKeys,
                        RejectReason::QueueFull => AcquireError::QueueFull,
                        RejectReason::ConnectFailed { attempt } => AcquireError::ConnectFailed {
                            // The core rejects a connect's waiters in the very
                            // input that reports the failure, where the cause
                            // is kept.
                            cause: cause.unwrap_or_else(|| {
                                unreachable!("no cause kept for the failed connect {attempt}")
                            }),
                        },
                    });
                }
            }
        }
    }

    /// Makes the acquire input at `now` (read by the caller, once).
    fn start_acquire(
        self: &Arc<Self>,
        key: &C::Key,
        deadline: Time,
        now: Time,
    ) -> Result<(AcquireId, Started<C>), InputError> {
        let mut jobs = Jobs::new();
        let started = {
            let Some(mut st) = self.lock() else {
                unreachable!("no unwinding on an acquire")
            };
            let id = st.core.acquire(key, deadline, now)?;
            let started = self.answer_or_wait(&mut st, now, &mut jobs, id, key);
            self.settle(&mut st);
            (id, started)
        };
        self.start(jobs);
        Ok(started)
    }

    /// The driver found the session of `lease` closed before handing it to
    /// the caller of `id`: the core poisons it and puts `id` back at the
    /// head of its queue.
    fn grant_closed(self: &Arc<Self>, id: AcquireId, key: &C::Key, lease: LeaseId) -> Started<C> {
        let mut jobs = Jobs::new();
        let now = self.now();
        let started = {
            let Some(mut st) = self.lock() else {
                unreachable!("no unwinding on an acquire")
            };
            report(st.core.grant_closed(lease, now));
            let started = self.answer_or_wait(&mut st, now, &mut jobs, id, key);
            self.settle(&mut st);
            started
        };
        self.start(jobs);
        started
    }

    /// Carries out the actions of the input just made for acquire `id`:
    /// its answer if it came, else a channel to wait on.
    fn answer_or_wait(
        self: &Arc<Self>,
        st: &mut crate::shared::State<C>,
        now: Time,
        jobs: &mut Jobs<C>,
        id: AcquireId,
        key: &C::Key,
    ) -> Started<C> {
        match self.execute(st, now, jobs, Some(Mine { id, key })) {
            Some(answer) => Started::Answered(answer),
            None => {
                let (tx, rx) = oneshot::channel();
                st.waiters.insert(
                    id,
                    Waiter {
                        tx,
                        key: KeyHash::of(key),
                    },
                );
                Started::Waiting(Waiting {
                    shared: self.clone(),
                    id,
                    rx,
                    done: false,
                })
            }
        }
    }

    /// Gives a lease back; `dead` says the transport was seen closed.
    pub(crate) fn release(self: &Arc<Self>, lease: LeaseId, outcome: Outcome, dead: bool) {
        self.step(|st, now| {
            if dead {
                let key = st.sessions.get(&lease.session()).map(|l| l.key);
                tracing::info!(pool = %self.name, key = ?key, session = %lease.session(), "transport closed under a lease");
                report(st.core.transport_closed(lease.session(), now));
            }
            tracing::trace!(pool = %self.name, %lease, ?outcome, "released");
            report(st.core.release(lease, outcome, now));
        });
    }

    /// A closed-notification fired.
    pub(crate) fn transport_closed(self: &Arc<Self>, session: mcp_pool_core::SessionId) {
        self.step(|st, now| {
            if let Some(live) = st.sessions.get(&session) {
                tracing::info!(pool = %self.name, key = %live.key, %session, "transport closed");
                report(st.core.transport_closed(session, now));
            }
        });
    }

    /// The acquire `id` was dropped before its answer was taken.
    fn abandon(self: &Arc<Self>, id: AcquireId, rx: &mut oneshot::Receiver<Answer<C>>) {
        // From here on a delivery fails and gives its grant back itself; one
        // that came before is in the channel.
        rx.close();
        self.step(|st, now| {
            if st.waiters.remove(&id).is_some() {
                report(st.core.cancel_acquire(id, now));
            } else if let Ok(Answer::Granted { lease, session, .. }) = rx.try_recv() {
                drop(session);
                report(st.core.release_unused(lease, now));
            }
        });
    }
}

/// An acquire waiting for its answer. Dropping it withdraws the acquire, or
/// gives back the session it was granted meanwhile.
struct Waiting<C: Connector> {
    shared: Arc<Shared<C>>,
    id: AcquireId,
    rx: oneshot::Receiver<Answer<C>>,
    done: bool,
}

impl<C: Connector> Waiting<C> {
    /// The answer, waiting at most until `deadline` (then the caller drives
    /// the core's timer itself) plus [`DEADLINE_GRACE`].
    async fn until(mut self, deadline: Time) -> Answer<C> {
        let at = self.shared.instant(deadline);
        tokio::select! {
            biased;
            answer = &mut self => return answer,
            () = tokio::time::sleep_until(at) => {}
        }
        // The deadline has come: the core rejects this acquire on any input
        // from now on; make one in case the upkeep task cannot.
        self.shared.step(|st, now| st.core.handle_timeout(now));
        if let Ok(answer) = tokio::time::timeout(DEADLINE_GRACE, &mut self).await {
            return answer;
        }
        tracing::error!(pool = %self.shared.name, acquire = %self.id, "no answer from the pool at the deadline; giving up");
        // Dropping `self` withdraws the acquire.
        Answer::Rejected {
            reason: RejectReason::TimedOut,
            cause: None,
        }
    }
}

impl<C: Connector> Future for Waiting<C> {
    type Output = Answer<C>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<C>> {
        let this = &mut *self;
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Ready(answer) => {
                this.done = true;
                Poll::Ready(answer.unwrap_or(Answer::Rejected {
                    reason: RejectReason::ShuttingDown,
                    cause: None,
                }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C: Connector> Drop for Waiting<C> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.abandon(self.id, &mut self.rx);
        }
    }
}
