//! The lean path: almost all of the load is `GET`/`HEAD` requests without a body that are
//! answered at once (cases 4-12 of docs/request-handling.md: redirects and refusals). Those are
//! parsed with `httparse` straight from the connection's buffer and answered with a response
//! written into a reused buffer, without building hyper's request and response objects, which
//! cost about as much as everything else a redirect takes.
//!
//! Anything else — another method, a body, `Expect`/`Upgrade`, a request target with bytes
//! outside RFC 3986's path and query characters, a head that does not parse or is over 32 KiB,
//! a service endpoint, the debug route, local-folder content, a snapshot that probes presence,
//! an answer to be proxied (proxy mode) — hands the connection over to hyper with the bytes already read, and hyper serves it from
//! then on, so every such case keeps hyper's exact behaviour.

use std::net::IpAddr;

use axum::http::Method;

use crate::answer::AppState;
use crate::render::{all_bytes, write_response};

/// The longest request head: all of it is held in memory until it is complete, so this and
/// `max_connections` bound what clients can make the server hold. Hyper is held to the same
/// (`server::connection_builder`): a longer head is answered `431` on either path.
pub(crate) const MAX_HEAD: usize = 32 << 10;

/// Headers a lean request may carry; with more it goes to hyper.
const MAX_HEADERS: usize = 32;

pub(crate) enum Step {
    /// `out` holds the response to the first `consumed` bytes.
    Answered {
        consumed: usize,
        keep_alive: bool,
    },
    NeedMore,
    Hyper,
}

/// The response to the request at the start of `buffer`, if it is one for the lean path.
pub(crate) fn answer(buffer: &[u8], state: &AppState, peer: IpAddr, out: &mut Vec<u8>) -> Step {
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
    let snapshot = state.snapshot_guard();
    if crate::answer::is_service_endpoint(path) || !state.answers_at_once(&snapshot, path) {
        return Step::Hyper;
    }
    // A stopping server closes each connection after its answer.
    let keep_alive = keep_alive && !state.drain.is_draining();
    let Some(decision) = state.decide_now(&snapshot, peer, &method, (path, query), &forwarded_for[..forwarded]) else {
        // Proxied: streamed by the asynchronous path.
        return Step::Hyper;
    };
    out.clear();
    write_response(out, decision, method == Method::HEAD, request.version == Some(1), keep_alive);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::is_header_byte;

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
