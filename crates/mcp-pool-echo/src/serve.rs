//! Serving an [`EchoApp`] on a listener, with graceful stop and abrupt kill.

use std::fmt::Debug;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::{Listener, ListenerExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken};

use crate::{EchoApp, EchoConfig, SessionRegistry, MCP_PATH};

/// Stops a server started by [`serve`]: gracefully ([`ServerControl::stop`])
/// or abruptly ([`ServerControl::kill`]). Clones control the same server.
/// Use a new control for each call to [`serve`]: a triggered control stays
/// triggered.
#[derive(Clone, Debug, Default)]
pub struct ServerControl {
    stop: CancellationToken,
    kill: CancellationToken,
    connections: TaskTracker,
}

impl ServerControl {
    /// A control that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Graceful stop: the server stops accepting connections and ends all
    /// sessions (open response streams end cleanly, without a result for
    /// calls still running); [`serve`] returns once every connection has
    /// closed. Idempotent.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Abrupt stop, like killing the process: the listener is closed, and
    /// every open connection fails its next read or write and is dropped
    /// (the peer sees the TCP connection close without an HTTP response),
    /// and all sessions are gone. [`serve`] returns once every connection
    /// has been dropped. Idempotent; also overrides a graceful stop in progress.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// Whether [`ServerControl::kill`] has been called.
    pub fn is_killed(&self) -> bool {
        self.kill.is_cancelled()
    }

    /// How many accepted connections are still open.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }

    /// Wraps `listener` so that its connections obey [`ServerControl::kill`]
    /// and are counted by [`ServerControl::open_connections`]. [`serve`] does
    /// this itself; this is for serving with `axum::serve` directly.
    pub fn wrap<L: Listener>(&self, listener: L) -> KillableListener<L> {
        KillableListener {
            inner: listener,
            control: self.clone(),
        }
    }
}

/// A listener whose accepted connections fail at once when their
/// [`ServerControl`] is killed. Created by [`ServerControl::wrap`].
#[derive(Debug)]
pub struct KillableListener<L> {
    inner: L,
    control: ServerControl,
}

impl<L: Listener> Listener for KillableListener<L> {
    type Io = KillableIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let io = KillableIo {
            inner: io,
            killed: Box::pin(self.control.kill.clone().cancelled_owned()),
            kill: self.control.kill.clone(),
            _open: self.control.connections.token(),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection accepted by a [`KillableListener`]: behaves like the inner
/// connection until the server is killed, then every read, write, flush or
/// shutdown returns `ConnectionAborted`, including operations already
/// waiting (they are woken).
pub struct KillableIo<T> {
    inner: T,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    kill: CancellationToken,
    _open: TaskTrackerToken,
}

impl<T: Debug> Debug for KillableIo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KillableIo")
            .field("inner", &self.inner)
            .field("killed", &self.kill.is_cancelled())
            .finish()
    }
}

impl<T> KillableIo<T> {
    /// `Err` once the server is killed; otherwise registers the task to be
    /// woken by the kill.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.kill.is_cancelled() || self.killed.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the echo server was killed",
            ));
        }
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for KillableIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for KillableIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `app` on any axum listener (TCP, a simulated network, ...) until
/// `control` stops or kills it.
///
/// Returns after a stop once every connection has closed, or after a kill
/// once the listener and every connection have been dropped. In both cases
/// the app's sessions are ended ([`EchoApp::end_sessions`]). Without a stop
/// or kill it runs forever.
pub async fn serve<L>(listener: L, app: EchoApp, control: ServerControl)
where
    L: Listener,
    L::Addr: Debug,
{
    let listener = control.wrap(listener);
    let stop = control.stop.clone();
    let stop_app = app.clone();
    let server = axum::serve(listener, app.router()).with_graceful_shutdown(async move {
        stop.cancelled().await;
        stop_app.end_sessions();
    });
    tokio::select! {
        // `Serve` with graceful shutdown never fails: accept errors are retried.
        _ = server.into_future() => {}
        () = control.kill.cancelled() => {}
    }
    // On a kill the server future (and with it the listener) is dropped here;
    // the connection tasks it spawned fail on their next poll.
    app.end_sessions();
    control.connections.close();
    control.connections.wait().await;
}

/// Like [`serve`] on a TCP listener, with `TCP_NODELAY` set on every accepted
/// socket (without it, a client that reuses connections waits ~40 ms per
/// call for Nagle's algorithm and delayed ACKs).
pub async fn serve_tcp(listener: TcpListener, app: EchoApp, control: ServerControl) {
    let listener = listener.tap_io(|tcp| {
        // A socket that cannot take the option still works, only slower.
        let _ = tcp.set_nodelay(true);
    });
    serve(listener, app, control).await;
}

/// Binds `addr`, which must be a loopback address (port 0 picks a free
/// port), and serves a new [`EchoApp`] built from `cfg` on it in a spawned
/// task (via [`serve_tcp`]). Must be called within a tokio runtime.
///
/// Errors: `InvalidInput` for a non-loopback address, or the bind error.
pub async fn spawn_local_server(
    addr: SocketAddr,
    cfg: &EchoConfig,
) -> io::Result<EchoServerHandle> {
    spawn_local_app(addr, EchoApp::new(cfg)).await
}

/// Like [`spawn_local_server`], serving the given `app`: build it with
/// [`EchoApp::with_registry`] to restart a server (same address, new
/// sessions) while keeping one registry. The app must be fresh: an app whose
/// sessions were ended (by a previous stop or kill) fails all MCP requests.
pub async fn spawn_local_app(addr: SocketAddr, app: EchoApp) -> io::Result<EchoServerHandle> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to serve on {addr}: only loopback addresses are allowed"),
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let control = ServerControl::new();
    let task = tokio::spawn(serve_tcp(listener, app.clone(), control.clone()));
    Ok(EchoServerHandle {
        addr,
        app,
        control,
        task: Some(task),
    })
}

/// A running echo server started by [`spawn_local_server`]. Dropping the
/// handle kills the server (see [`ServerControl::kill`]) without waiting;
/// [`EchoServerHandle::kill`] and [`EchoServerHandle::shutdown`] wait until
/// it is fully down.
#[derive(Debug)]
pub struct EchoServerHandle {
    addr: SocketAddr,
    app: EchoApp,
    control: ServerControl,
    task: Option<JoinHandle<()>>,
}

impl EchoServerHandle {
    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MCP endpoint URL, `http://ADDR/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, MCP_PATH)
    }

    /// The served application (its registry, session control).
    pub fn app(&self) -> &EchoApp {
        &self.app
    }

    /// The registry of sessions and calls of this server.
    pub fn registry(&self) -> &SessionRegistry {
        self.app.registry()
    }

    /// The control of this server; triggering it has the same effect as the
    /// methods below, without waiting.
    pub fn control(&self) -> &ServerControl {
        &self.control
    }

    /// How many client connections are open.
    pub fn open_connections(&self) -> usize {
        self.control.open_connections()
    }

    /// Kills the server (see [`ServerControl::kill`]) and returns once the
    /// port is closed (new connections are refused) and every connection
    /// has been dropped.
    pub async fn kill(mut self) {
        self.control.kill();
        self.join().await;
    }

    /// Stops the server gracefully (see [`ServerControl::stop`]); if it is
    /// not down within `grace`, kills it. Returns once it is fully down.
    pub async fn shutdown(mut self, grace: Duration) {
        self.control.stop();
        if let Some(task) = self.task.as_mut() {
            if tokio::time::timeout(grace, task).await.is_ok() {
                self.task = None;
                return;
            }
        }
        self.control.kill();
        self.join().await;
    }

    async fn join(&mut self) {
        if let Some(task) = self.task.take() {
            // The task only ends by returning; a panic in it is re-raised.
            if let Err(e) = task.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}

impl Drop for EchoServerHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.control.kill();
        }
    }
}
