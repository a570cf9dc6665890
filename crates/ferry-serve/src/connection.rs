//! One client connection, from its first byte to its close: requests the lean path answers
//! (`lean.rs`) are answered from the connection's buffer; at the first one it does not, the
//! connection is handed to hyper with the bytes already read, and hyper serves it from then on.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::answer::AppState;
use crate::lean::{self, Step, MAX_HEAD};

/// A client must send a request's headers within this time (slow-header clients are cut off).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One client connection: the hyper service, and what the lean path (`lean.rs`) needs.
struct Connection {
    state: Arc<AppState>,
    /// The peer's address, canonical (IPv4-mapped IPv6 as IPv4).
    peer: IpAddr,
}

/// The response future: ready at once (the hot path), or boxed (requests that wait).
enum Answer {
    Ready(Option<Response<Body>>),
    Later(Pin<Box<dyn Future<Output = Response<Body>> + Send>>),
}

impl Future for Answer {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Ready(r) => Poll::Ready(Ok(r.take().expect("polled after completion"))),
            Answer::Later(f) => f.as_mut().poll(cx).map(Ok),
        }
    }
}

impl hyper::service::Service<Request<hyper::body::Incoming>> for Connection {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<hyper::body::Incoming>) -> Answer {
        let snapshot = self.state.snapshot_guard();
        // A snapshot that proxies answers on the asynchronous path: any answer may be a stream.
        if !snapshot.proxies && self.state.answers_at_once(&snapshot, request.uri().path()) {
            Answer::Ready(Some(self.state.answer_now(&snapshot, self.peer, &request)))
        } else {
            Answer::Later(Box::pin(self.state.clone().answer_later(self.peer, request)))
        }
    }
}

/// HTTP/1.1 with keep-alive; request headers must arrive within [`HEADER_READ_TIMEOUT`] and be
/// at most `lean::MAX_HEAD` long.
pub(crate) fn connection_builder() -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_HEAD);
    http
}

/// Serves one connection until the client closes it: over TLS when `tls` is given (the
/// handshake within [`HEADER_READ_TIMEOUT`]; HTTP/2 when the client chose it by ALPN, served by
/// hyper), else, and for HTTP/1.1, the lean path while it can (`lean.rs`), then hyper.
pub(crate) fn serve_connection(
    http: &hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    state: &Arc<AppState>,
    drained: Arc<Notify>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let connection = Connection { state: state.clone(), peer: peer.ip().to_canonical() };
    let (open, http) = (state.drain.opened(), http.clone());
    async move {
        match tls {
            None => answer_until_closed(stream, connection, http, drained).await,
            Some(acceptor) => match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                    serve_http2(stream, connection, drained).await
                }
                Ok(Ok(stream)) => answer_until_closed(stream, connection, http, drained).await,
                // A failed or slow handshake: nothing was asked, nothing to answer.
                Ok(Err(_)) | Err(_) => {}
            },
        }
        drop(open);
    }
}

/// HTTP/2 (over TLS, by ALPN): hyper serves every stream with the same handler; a stopping
/// server sends GOAWAY and lets the streams in flight finish.
async fn serve_http2<S>(stream: S, connection: Connection, drained: Arc<Notify>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stopping = drained.notified();
    tokio::pin!(stopping);
    stopping.as_mut().enable();
    let draining = connection.state.drain.is_draining();
    let mut http = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    http.timer(hyper_util::rt::TokioTimer::new()).max_header_list_size(MAX_HEAD as u32);
    let served = http.serve_connection(hyper_util::rt::TokioIo::new(stream), connection);
    tokio::pin!(served);
    if !draining {
        tokio::select! {
            _ = served.as_mut() => return,
            () = stopping => {}
        }
    }
    served.as_mut().graceful_shutdown();
    let _ = served.await;
}

/// A worker gives up its core after this many answers (`sched_yield`; see [`yield_sometimes`]).
const ANSWERS_PER_YIELD: u32 = 32;

/// Serves `stream` until the client closes it, or until the server stops (`drained` wakes it:
/// then an idle connection closes, and one with a request in flight closes after its answer):
/// lean while requests allow, then hyper.
async fn answer_until_closed<S>(
    mut stream: S,
    connection: Connection,
    http: hyper::server::conn::http1::Builder,
    drained: Arc<Notify>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buffer = BytesMut::with_capacity(4 << 10);
    let mut out = Vec::with_capacity(1 << 10);
    // The next request's head must be complete by `deadline`. The timer is not moved with it
    // after every answer (a timer-wheel update per request); it keeps an earlier deadline, and
    // when it fires early it is set to the current one. So the timer is touched about once per
    // HEADER_READ_TIMEOUT per connection, however many requests it carries.
    let mut deadline = Instant::now() + HEADER_READ_TIMEOUT;
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    loop {
        match lean::answer(&buffer, &connection.state, connection.peer, &mut out) {
            Step::Answered { consumed, keep_alive } => {
                buffer.advance(consumed);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                yield_sometimes();
                if !keep_alive {
                    let _ = stream.shutdown().await;
                    return;
                }
                deadline = Instant::now() + HEADER_READ_TIMEOUT;
            }
            Step::NeedMore if buffer.len() < MAX_HEAD => {
                // Between requests, a stopping server closes the connection (registered before
                // the flag is read, so a stop in between still wakes it).
                let idle = buffer.is_empty();
                let stopping = drained.notified();
                tokio::pin!(stopping);
                if idle {
                    stopping.as_mut().enable();
                    if connection.state.drain.is_draining() {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
                tokio::select! {
                    biased;
                    read = stream.read_buf(&mut buffer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    () = timer.as_mut() => {
                        if Instant::now() >= deadline {
                            return;
                        }
                        timer.as_mut().reset(deadline);
                    }
                    () = &mut stopping, if idle => {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            }
            // A head still incomplete at MAX_HEAD is handed over too: hyper answers it 431 at
            // once, as it holds no more than MAX_HEAD either.
            Step::NeedMore | Step::Hyper => {
                let io = hyper_util::rt::TokioIo::new(Rewind { prefix: buffer.freeze(), inner: stream });
                let stopping = drained.notified();
                tokio::pin!(stopping);
                stopping.as_mut().enable();
                if connection.state.drain.is_draining() {
                    // Stopping already: the request that came in is answered, then it closes.
                    let mut last = http;
                    last.keep_alive(false);
                    let _ = last.serve_connection(io, connection).await;
                    return;
                }
                let served = http.serve_connection(io, connection);
                tokio::pin!(served);
                tokio::select! {
                    _ = served.as_mut() => return,
                    () = stopping => {}
                }
                // Stopped meanwhile: a request in flight is answered, an idle connection closes.
                served.as_mut().graceful_shutdown();
                let _ = served.await;
                return;
            }
        }
    }
}

thread_local! {
    /// Answers this worker thread has sent since it last yielded.
    static SINCE_YIELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Every [`ANSWERS_PER_YIELD`] answers, lets the other threads waiting for this core run. A busy
/// worker otherwise keeps its core for whole scheduler slices while the clients and proxies that
/// share the machine wait to send the next requests and read the answers; nginx's workers get
/// the same effect by sleeping in `epoll_wait` more often. On bench/redirect.sh (wrk on the same
/// two cores) this cut Ferry's p99 from 3.3 to 2.6 ms and raised its throughput (docs/
/// benchmarks.md); with nothing else waiting, `sched_yield` returns at once.
fn yield_sometimes() {
    SINCE_YIELD.with(|since| {
        let answered = since.get() + 1;
        if answered >= ANSWERS_PER_YIELD {
            since.set(0);
            std::thread::yield_now();
        } else {
            since.set(answered);
        }
    });
}

/// A connection with bytes already read from it put back in front, for hyper.
struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
