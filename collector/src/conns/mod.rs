//! The collector's listener: TLS and HTTP/1.1 with every connection bounded, so that no
//! client that has not authenticated can hold the server's memory, file descriptors or
//! time.
//!
//! - **A connection cap** (`max_connections`, kept below the process's file-descriptor
//!   limit) and **a cap on TLS handshakes in progress** (`max_tls_handshakes`). When a cap
//!   is reached, a connection that has not proven anything — still in its TLS handshake,
//!   idle between requests, or sending a request that is not yet authenticated — is closed
//!   to make room: the oldest of the source address that holds the most such connections
//!   (an IPv6 source counts by its /64), so that a flood from a few addresses pushes out
//!   only its own. A connection serving an authenticated request is never closed
//!   for room; when every slot serves one, the new connection is refused. So a flood of
//!   slow clients (slowloris) cycles through the slots while a real request, which
//!   completes in milliseconds, gets through.
//! - **Timeouts**: the TLS handshake (`tls_handshake_timeout_secs`), a request's headers
//!   counted from the moment the connection is ready for them, which is also how long an
//!   idle keep-alive connection stays open (`header_timeout_secs`), and a stalled write
//!   (`write_timeout_secs`: a client that stops reading its response). Bodies are bounded in
//!   [`crate::bodies`].
//! - HTTP/1.1 only (ALPN `http/1.1`): agents and browsers both speak it, and it keeps the
//!   attack surface to one protocol with one set of limits.
//!
//! Handlers see the connection as the [`Conn`] request extension: its peer address, and
//! [`Conn::serving`] to say that the request proved itself (a valid credential or session,
//! or a complete small body), which takes the connection out of the eviction order.

mod tracker;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::warn_throttled;

pub use tracker::{ConnCounters, Tracker};
use tracker::{Guard, Stage};

/// What bounds each connection; from the config (`collector.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_handshakes: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
}

/// File descriptors kept for the database, the log and the listener itself.
pub const RESERVED_FDS: u64 = 128;

/// The connection cap the process can honour: the configured one, lowered to the
/// file-descriptor limit (raised first to its hard limit) less [`RESERVED_FDS`].
pub fn effective_max_connections(configured: usize) -> (usize, u64) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let room = nofile.saturating_sub(RESERVED_FDS).max(16);
    (configured.min(usize::try_from(room).unwrap_or(usize::MAX)), nofile)
}

/// The connection a request came on: a request extension.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    id: u64,
    tracker: Arc<Tracker>,
}

impl Conn {
    /// The request proved itself: the connection is no longer closed to make room.
    pub fn serving(&self) {
        self.tracker.set_stage(self.id, Stage::Serving);
    }

    fn waiting(&self) {
        self.tracker.set_stage(self.id, Stage::Waiting);
    }
}

/// The peer of a request, if it came through this listener (tests may call the router
/// directly).
pub fn peer(ext: &axum::http::Extensions) -> Option<SocketAddr> {
    ext.get::<Conn>().map(|c| c.peer)
}

/// Accepts connections until `shutdown` turns true, then lets requests under way finish
/// (up to 10 s).
pub async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    app: Router,
    tracker: Arc<Tracker>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: the caps should prevent it; wait a moment rather than spin.
                    warn_throttled!("accept_failed", error = %e, "无法接受连接 (cannot accept a connection)");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(guard) = tracker.admit(peer) else {
            warn_throttled!(
                "connection_refused",
                %peer,
                max_connections = tracker.limits.max_connections,
                "连接数达到上限且全部在处理请求, 拒绝新连接 (every connection slot is serving a request: refused a connection)"
            );
            drop(tcp);
            continue;
        };
        tokio::spawn(connection(tcp, peer, guard, tls.clone(), app.clone(), shutdown.clone()));
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tracker.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    guard: Guard,
    tls: TlsAcceptor,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let tracker = guard.tracker.clone();
    let limits = tracker.limits;
    let evict = guard.evict.clone();
    let work = async {
        let _ = tcp.set_nodelay(true);
        let stream = match tokio::time::timeout(limits.handshake_timeout, tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracker.counters.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                warn_throttled!(
                    "handshake_timeout",
                    %peer,
                    timeout_secs = limits.handshake_timeout.as_secs(),
                    "TLS 握手超时, 已关闭连接 (TLS handshake timed out: connection closed)"
                );
                return;
            }
        };
        guard.set(Stage::Waiting);
        let conn = Conn {
            peer,
            id: guard.id,
            tracker: tracker.clone(),
        };
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let conn = conn.clone();
            let mut app = app.clone();
            async move {
                // Served (never closed for room) only once a handler says the request proved
                // itself; until then, even a request without a body may make room.
                req.extensions_mut().insert(conn.clone());
                let resp = tower_service::Service::call(&mut app, req).await;
                Ok::<_, std::convert::Infallible>(resp.map_or_else(
                    |never| match never {},
                    |r| {
                        r.map(|b| {
                            axum::body::Body::new(Served {
                                inner: b,
                                conn: Some(conn),
                            })
                        })
                    },
                ))
            }
        });
        let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(64 * 1024)
            .keep_alive(true);
        let http = builder.serve_connection(io, service);
        tokio::pin!(http);
        let result = tokio::select! {
            r = http.as_mut() => r,
            _ = shutdown.changed() => {
                http.as_mut().graceful_shutdown();
                match tokio::time::timeout(Duration::from_secs(10), http.as_mut()).await {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            if e.is_timeout() {
                tracker.counters.header_timeouts.fetch_add(1, Ordering::Relaxed);
                warn_throttled!(
                    "header_timeout",
                    %peer,
                    timeout_secs = limits.header_timeout.as_secs(),
                    "请求头未在时限内收完或连接空闲超时, 已关闭连接 (request headers too slow or connection idle too long: closed)"
                );
            } else if is_write_timeout(&e) {
                tracker.counters.write_timeouts.fetch_add(1, Ordering::Relaxed);
                warn_throttled!(
                    "write_timeout",
                    %peer,
                    timeout_secs = limits.write_timeout.as_secs(),
                    "客户端长时间不读取响应, 已关闭连接 (client stopped reading its response: closed)"
                );
            } else {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = evict.notified() => {
            tracing::debug!(%peer, "connection closed to make room");
        }
    }
    drop(guard);
}

fn is_write_timeout(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    false
}

/// A response body that hands the connection back to the eviction order when it has been
/// sent (or dropped).
struct Served {
    inner: axum::body::Body,
    conn: Option<Conn>,
}

impl hyper::body::Body for Served {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            c.waiting();
        }
    }
}

/// A stream whose writes fail with `TimedOut` once they have made no progress for the
/// timeout: a client that stops reading cannot hold its connection.
struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            stalled: None,
        }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                let t = self.timeout;
                let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

use std::future::Future as _;

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}
