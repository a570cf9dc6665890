//! One bounded look at a cloud's metadata service, the last place a store's credentials can come
//! from. It answers only on that cloud's own machines; anywhere else `object_store` would retry
//! its token request for minutes, on every request. Asked once, with short timeouts, it tells
//! at open time whether it is there.
//!
//! A plain blocking HTTP/1.1 request over a `TcpStream`: stores are opened synchronously, the
//! endpoints speak plain HTTP, and the answers are a few bytes.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use url::Url;

/// How long to wait for a connection: a metadata service is on the local link, and where there
/// is none the packets are often dropped, so waiting longer tells nothing more.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long to wait for each read or write of the exchange.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The most of an answer read: metadata answers are a few hundred bytes.
const ANSWER_MAX: usize = 64 << 10;

/// An HTTP answer.
pub(crate) struct Answer {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Endpoints that have answered as a metadata service in this process, so that a run opening
/// several stores of one cloud (or `ferry serve` re-reading an inventory) asks once.
static FOUND: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// `probe` (the look at `endpoint`), unless one has already succeeded in this process. Failures
/// are not remembered: the next open asks again.
pub(crate) fn once(endpoint: &str, probe: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let found = |f: &mut Option<HashSet<String>>| f.get_or_insert_with(HashSet::new).contains(endpoint);
    if found(&mut FOUND.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(());
    }
    probe()?;
    FOUND.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashSet::new).insert(endpoint.to_string());
    Ok(())
}

/// Sends one request to the plain-HTTP `url` and reads the whole answer, each step bounded by a
/// short timeout. The error says what happened, for messages (never a header's value).
pub(crate) fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    let host = match (parsed.scheme(), parsed.host_str()) {
        ("http", Some(host)) => host,
        _ => return Err(format!("{url} is not a plain http:// URL")),
    };
    let addresses = parsed.socket_addrs(|| Some(80)).map_err(|e| format!("{url}: cannot resolve {host}: {e}"))?;
    let mut stream = connect(&addresses).map_err(|e| format!("nothing answers at {url} ({e})"))?;
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("{url} did not answer within {} s", ANSWER_TIMEOUT.as_secs())
        }
        _ => format!("{url}: {e}"),
    };
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(failed)?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(failed)?;
    let target = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if method != "GET" {
        head += "Content-Length: 0\r\n";
    }
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    stream.write_all(head.as_bytes()).map_err(failed)?;
    let mut answer = Vec::new();
    stream.take(ANSWER_MAX as u64).read_to_end(&mut answer).map_err(failed)?;
    parse(&answer).ok_or_else(|| format!("{url} did not answer in HTTP"))
}

/// A connection to the first of `addresses` that takes one.
fn connect(addresses: &[std::net::SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for address in addresses {
        match TcpStream::connect_timeout(address, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn parse(answer: &[u8]) -> Option<Answer> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.strip_prefix("HTTP/1.")?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut answer = Answer { status, headers, body: answer[end + 4..].to_vec() };
    if answer.header("transfer-encoding").is_some_and(|e| e.eq_ignore_ascii_case("chunked")) {
        answer.body = dechunk(&answer.body);
    }
    Some(answer)
}

/// The bytes of a chunked body (as far as it goes).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..end])
            .ok()
            .and_then(|line| usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16).ok());
        let Some(size @ 1..) = size else { break };
        let chunk = &body[end + 2..];
        bytes.extend_from_slice(&chunk[..size.min(chunk.len())]);
        body = chunk.get(size + 2..).unwrap_or_default();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_and_without_chunks() {
        let plain = parse(b"HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!(
            (plain.status, plain.header("metadata-flavor"), plain.body.as_slice()),
            (200, Some("Google"), &b"hi"[..])
        );
        let chunked =
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nrole\r\n2\r\n-a\r\n0\r\n\r\n").unwrap();
        assert_eq!(chunked.body, b"role-a");
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_none());
    }

    /// A closed loopback port: refused at once, and said so.
    #[test]
    fn a_closed_port_is_nothing_answering() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/latest/api/token");
        let error = request("PUT", &url, &[]).err().unwrap();
        assert!(error.starts_with(&format!("nothing answers at {url} (")), "{error}");
        assert!(request("GET", "https://127.0.0.1/", &[]).is_err());
    }
}
