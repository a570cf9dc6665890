//! The lean path: almost all of the load is `GET`/`HEAD` requests without a body that are
//! answered at once (cases 4-12 of docs/request-handling.md: redirects and refusals). Those are
//! parsed with `httparse` straight from the connection's buffer and answered with a response
//! written into a reused buffer, without building hyper's request and response objects, which
//! cost about as much as everything else a redirect takes.
//!
//! Anything else — another method, a body, `Expect`/`Upgrade`, a request target with bytes
//! outside RFC 3986's path and query characters, a head that does not parse or is over 32 KiB,
//! a service endpoint, the debug route, embedded mirror content, a snapshot that probes presence
//! — hands the connection over to hyper with the bytes already read, and hyper serves it from
//! then on, so every such case keeps hyper's exact behaviour.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::http::{Method, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::route::{Decision, Outcome};
use crate::server::{Connection, HEADER_READ_TIMEOUT};

/// The longest request head: all of it is held in memory until it is complete, so this and
/// `max_connections` bound what clients can make the server hold. Hyper is held to the same
/// (`server::connection_builder`): a longer head is answered `431` on either path.
pub(crate) const MAX_HEAD: usize = 32 << 10;

/// Headers a lean request may carry; with more it goes to hyper.
const MAX_HEADERS: usize = 32;

/// A worker gives up its core after this many answers (`sched_yield`; see [`yield_sometimes`]).
const ANSWERS_PER_YIELD: u32 = 32;

/// Serves `stream` until the client closes it: lean while requests allow, then hyper.
pub(crate) async fn serve(mut stream: TcpStream, connection: Connection, http: hyper::server::conn::http1::Builder) {
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
        match answer(&buffer, &connection, &mut out) {
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
                }
            }
            // A head still incomplete at MAX_HEAD is handed over too: hyper answers it 431 at
            // once, as it holds no more than MAX_HEAD either.
            Step::NeedMore | Step::Hyper => {
                let io = Rewind { prefix: buffer.freeze(), inner: stream };
                let _ = http.serve_connection(hyper_util::rt::TokioIo::new(io), connection).await;
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

enum Step {
    /// `out` holds the response to the first `consumed` bytes.
    Answered {
        consumed: usize,
        keep_alive: bool,
    },
    NeedMore,
    Hyper,
}

/// The response to the request at the start of `buffer`, if it is one for the lean path.
fn answer(buffer: &[u8], connection: &Connection, out: &mut Vec<u8>) -> Step {
    if buffer.is_empty() {
        return Step::NeedMore;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buffer) {
        // Read in one go, but too long all the same: hyper's 431.
        Ok(httparse::Status::Complete(consumed)) if consumed > MAX_HEAD => return Step::Hyper,
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) => return Step::NeedMore,
        // Hyper allows more headers, but must be handed the whole head: its own deadline would
        // start again on a partial one.
        Err(httparse::Error::TooManyHeaders) if !head_is_complete(buffer) => return Step::NeedMore,
        // Anything else hyper refuses at once, as it is.
        Err(_) => return Step::Hyper,
    };
    let method = match request.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Step::Hyper,
    };
    let Some(target) = request.path.filter(|t| t.starts_with('/') && all_bytes(t, is_target_byte)) else {
        return Step::Hyper;
    };
    let (path, query) = match memchr::memchr(b'?', target.as_bytes()) {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    let mut keep_alive = request.version == Some(1);
    let mut forwarded_for: [&[u8]; MAX_HEADERS] = [&[]; MAX_HEADERS];
    let mut forwarded = 0;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for[forwarded] = header.value;
            forwarded += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && request.version == Some(0) {
                    keep_alive = true;
                }
            }
        } else if (name.eq_ignore_ascii_case("content-length") && header.value != b"0")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Step::Hyper;
        }
    }
    let state = &connection.state;
    let snapshot = state.snapshot_guard();
    if matches!(path, "/healthz" | "/metrics") || !state.answers_at_once(&snapshot, path) {
        return Step::Hyper;
    }
    let decision = state.decide_now(&snapshot, connection.peer, &method, (path, query), &forwarded_for[..forwarded]);
    out.clear();
    write_response(out, &decision, method == Method::HEAD, request.version == Some(1), keep_alive);
    Step::Answered { consumed, keep_alive }
}

/// Whether `buffer` holds a whole request head: the blank line that ends it (with or without
/// carriage returns, as hyper's parser accepts).
fn head_is_complete(buffer: &[u8]) -> bool {
    memchr::memmem::find(buffer, b"\r\n\r\n").is_some() || memchr::memmem::find(buffer, b"\n\n").is_some()
}

/// RFC 3986 `pchar`s, `/` and `?` (and `%` for escapes): every byte hyper's URI parser accepts
/// in a path and query, and more bytes than requests for blobs and release files use. Written
/// as the printable ASCII bytes but the 12 that are none of those, without branches, so that
/// [`all_bytes`] tests a whole request target a vector at a time.
fn is_target_byte(b: u8) -> bool {
    (b'!'..=b'~').contains(&b)
        & (b != b'"')
        & (b != b'#')
        & (b != b'<')
        & (b != b'>')
        & !(b'['..=b'^').contains(&b)
        & (b != b'`')
        & !(b'{'..=b'}').contains(&b)
}

/// Whether `test` holds for every byte of `s`. Every byte is tested, with no early exit, so the
/// compiler can test many at once (these checks run on every request).
fn all_bytes(s: &str, test: impl Fn(u8) -> bool) -> bool {
    s.bytes().fold(true, |all, b| all & test(b))
}

/// The response hyper would send for `decision` (the same as `server::respond`), as bytes:
/// the status line (HTTP/1.1, or HTTP/1.0 to an HTTP/1.0 request), `connection: keep-alive` to
/// an HTTP/1.0 request that asked for it or `connection: close` to an HTTP/1.1 request that asked
/// to close, the decision's headers, `content-length` (which hyper leaves out for a `HEAD` whose
/// body would be empty), `date`, and the body unless the request was `HEAD`. `tests/lean.rs`
/// compares the two paths' answers byte for byte but for `date`.
fn write_response(out: &mut Vec<u8>, decision: &Decision<'_>, head: bool, http11: bool, keep_alive: bool) {
    let (status, body): (u16, Option<String>) = match decision.outcome {
        Outcome::Ok => (200, None),
        _ if decision.status == 307 && decision.location.as_deref().is_some_and(|l| all_bytes(l, is_header_byte)) => {
            (307, None)
        }
        _ if decision.status == 307 => (500, Some("internal error\n".to_string())),
        _ => (decision.status, Some(format!("{}\n", decision.reason))),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    out.extend_from_slice(if http11 { b"HTTP/1.1 " } else { b"HTTP/1.0 " });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    match decision.outcome {
        Outcome::Ok => out.extend_from_slice(b"docker-distribution-api-version: registry/2.0\r\n"),
        _ if status == StatusCode::TEMPORARY_REDIRECT => {
            out.extend_from_slice(b"location: ");
            out.extend_from_slice(decision.location.as_deref().unwrap_or_default().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n"),
    }
    if !http11 && keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    } else if http11 && !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let body = body.unwrap_or_default();
    // hyper sends no length for a `HEAD` whose `GET` would have an empty body.
    if !(head && body.is_empty()) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(crate::route::decimal(&mut [0; 20], body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    push_date(out);
    out.extend_from_slice(b"\r\n\r\n");
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
}

/// What `HeaderValue::from_maybe_shared` accepts: visible ASCII, space and tab.
fn is_header_byte(b: u8) -> bool {
    (b == b'\t') | (b' '..=b'~').contains(&b)
}

thread_local! {
    /// The `date` header's value and the second it is for.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second {
            *date = (second, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(date.1.as_bytes());
    });
}

/// A connection with bytes already read from it put back in front, for hyper.
struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
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

impl AsyncWrite for Rewind {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_bytes_are_exactly_rfc_3986_path_and_query_characters() {
        for b in 0..=u8::MAX {
            let rfc = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
            assert_eq!(is_target_byte(b), rfc, "{b:#04x}");
            let printable = b == b'\t' || (0x20..0x7f).contains(&b);
            assert_eq!(is_header_byte(b), printable, "{b:#04x}");
        }
        let target = "/v2/app/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(all_bytes(target, is_target_byte));
        for bad in ["/a b", "/a\"", "/<", "/a#b", "/\u{e9}", "/a\\b", "/{x}", "/`", "/^", "/[1]"] {
            assert!(!all_bytes(bad, is_target_byte), "{bad:?}");
        }
    }
}
