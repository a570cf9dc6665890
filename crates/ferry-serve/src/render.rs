//! The response for a decision, decided once ([`ResponseHead`]) and written two ways: as hyper's
//! objects ([`respond`]) and as bytes on the lean path ([`write_response`]). `tests/lean.rs`
//! checks that the two give the same answer byte for byte but for `date`.

use std::time::SystemTime;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};

use crate::decision::{Decision, Outcome};

/// Everything a decision's response says but the framing (`content-length`, `date`,
/// `connection`), which each path writes its own way.
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) kind: Kind,
    /// Empty for redirects and `/v2/`.
    pub(crate) body: String,
}

/// The one header that depends on the decision.
pub(crate) enum Kind {
    /// `docker-distribution-api-version: registry/2.0` (case 4).
    ApiVersion,
    /// `location: <the decision's location>`.
    Redirect(String),
    /// `content-type: text/plain; charset=utf-8`, and `allow: GET, HEAD` with a `405`.
    Text,
    /// `Text`, and `retry-after: <seconds>` (a `429`).
    RetryAfter(u64),
}

impl ResponseHead {
    #[inline]
    pub(crate) fn of(decision: Decision<'_>) -> ResponseHead {
        let text = |status: StatusCode, body: String| ResponseHead { status, kind: Kind::Text, body };
        match decision.outcome {
            Outcome::MethodNotAllowed => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into()),
            Outcome::Ok => ResponseHead { status: StatusCode::OK, kind: Kind::ApiVersion, body: String::new() },
            Outcome::Limited | Outcome::Busy => {
                let retry_after = match decision.reason {
                    crate::decision::Reason::Limited { retry_after } => retry_after,
                    _ => 1,
                };
                let body = format!("{}\n", decision.reason);
                let status = StatusCode::from_u16(decision.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
                ResponseHead { status, kind: Kind::RetryAfter(retry_after), body }
            }
            _ if decision.status == 307 => match decision.location {
                Some(location) if all_bytes(&location, is_header_byte) => ResponseHead {
                    status: StatusCode::TEMPORARY_REDIRECT,
                    kind: Kind::Redirect(location),
                    body: String::new(),
                },
                _ => {
                    tracing::error!(target: "ferry_serve", "unusable Location");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into())
                }
            },
            _ => {
                let status = StatusCode::from_u16(decision.status).unwrap_or(StatusCode::BAD_REQUEST);
                text(status, format!("{}\n", decision.reason))
            }
        }
    }
}

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

pub(crate) fn method_not_allowed() -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// The response for a decision, as hyper's objects; the `Location` header takes the decision's
/// `String` as it is.
pub(crate) fn respond(decision: Decision<'_>) -> Response<Body> {
    let head = ResponseHead::of(decision);
    let mut r = match head.kind {
        Kind::Text if head.status == StatusCode::METHOD_NOT_ALLOWED => return method_not_allowed(),
        Kind::Text => return text(head.status, head.body),
        Kind::RetryAfter(seconds) => {
            let mut r = text(head.status, head.body);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return r;
        }
        Kind::ApiVersion => {
            let mut r = Response::new(Body::empty());
            r.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
            r
        }
        Kind::Redirect(location) => {
            let mut r = Response::new(Body::empty());
            let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(location)).expect("checked header bytes");
            r.headers_mut().insert(header::LOCATION, value);
            r
        }
    };
    *r.status_mut() = head.status;
    r
}

/// The response hyper would send for `decision` ([`respond`]), as bytes: the status line
/// (HTTP/1.1, or HTTP/1.0 to an HTTP/1.0 request), `connection: keep-alive` to an HTTP/1.0
/// request that asked for it or `connection: close` to an HTTP/1.1 request that asked to close,
/// the decision's headers, `content-length` (which hyper leaves out for a `HEAD` whose body would
/// be empty), `date`, and the body unless the request was `HEAD`.
pub(crate) fn write_response(out: &mut Vec<u8>, decision: Decision<'_>, head: bool, http11: bool, keep_alive: bool) {
    let response = ResponseHead::of(decision);
    let status = response.status;
    out.extend_from_slice(if http11 { b"HTTP/1.1 " } else { b"HTTP/1.0 " });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    match &response.kind {
        Kind::ApiVersion => out.extend_from_slice(b"docker-distribution-api-version: registry/2.0\r\n"),
        Kind::Redirect(location) => {
            out.extend_from_slice(b"location: ");
            out.extend_from_slice(location.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Kind::Text => {
            out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
            if status == StatusCode::METHOD_NOT_ALLOWED {
                out.extend_from_slice(b"allow: GET, HEAD\r\n");
            }
        }
        Kind::RetryAfter(seconds) => {
            out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
            out.extend_from_slice(b"retry-after: ");
            out.extend_from_slice(crate::decision::decimal(&mut [0; 20], *seconds as usize).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if !http11 && keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    } else if http11 && !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let body = response.body;
    // hyper sends no length for a `HEAD` whose `GET` would have an empty body.
    if !(head && body.is_empty()) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(crate::decision::decimal(&mut [0; 20], body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    push_date(out);
    out.extend_from_slice(b"\r\n\r\n");
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Whether `test` holds for every byte of `s`. Every byte is tested, with no early exit, so the
/// compiler can test many at once (these checks run on every request).
#[inline]
pub(crate) fn all_bytes(s: &str, test: impl Fn(u8) -> bool) -> bool {
    s.bytes().fold(true, |all, b| all & test(b))
}

/// Visible ASCII, space and tab: what a `Location` may hold (`HeaderValue` would also take
/// bytes past ASCII, which no configured template or validated request part produces).
#[inline]
pub(crate) fn is_header_byte(b: u8) -> bool {
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
