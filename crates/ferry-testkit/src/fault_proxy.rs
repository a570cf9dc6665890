//! An HTTP proxy in front of a real registry (or a real S3 server, see
//! [`FaultProxy::start_keeping_host`]): it records every request and injects the faults a real
//! server will not produce on demand (throttling, server errors, dropped connections, corrupted
//! bodies, missing or lying headers, requests acknowledged but never carried out, slow answers).
//!
//! Connections are served with hyper directly rather than `axum::serve` because a
//! [`Fault::Reset`] has to drop the connection the request came on, which a handler cannot do.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

/// What to do instead of (or to) the upstream's answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status (and `Retry-After`, if given) without asking the upstream.
    Status {
        /// The HTTP status code, e.g. 429 or 503.
        status: u16,
        /// The `Retry-After` header's value (seconds or an HTTP date); `None` to send none.
        retry_after: Option<String>,
    },
    /// Close the connection without answering.
    Reset,
    /// Forward, but flip bytes of the upstream's response body (same length).
    CorruptBody,
    /// Forward, but replace the upstream's response header `name` with `value`, or remove it
    /// when `value` is `None` (a registry that names no digest, or lies about it).
    Header {
        /// The header's name, e.g. `docker-content-digest`.
        name: String,
        /// What to send instead; `None` to send no such header.
        value: Option<String>,
    },
    /// Answer with this response without asking the upstream; the request's body is read to its
    /// end and thrown away. A server that acknowledges what it never stored (`201` to a blob
    /// upload), claims what it does not hold (`200` to a `HEAD`), or serves other bytes.
    Answer {
        /// The HTTP status code, e.g. 201.
        status: u16,
        /// Response headers (name, value), e.g. `Docker-Content-Digest`.
        headers: Vec<(String, String)>,
        /// The response body (for a `HEAD`, send a `Content-Length` header instead).
        body: Vec<u8>,
    },
    /// Forward after waiting this long: a slow server, or a window for a test to change the
    /// upstream while the client waits.
    Delay {
        /// How long to hold the request before forwarding it.
        millis: u64,
    },
}

/// Fires `fault` for the first `times` requests whose method matches (any when `None`) and whose
/// path and query contain `path_contains`.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// The HTTP method (`GET`, `PUT`, ...) to match; `None` for any.
    pub method: Option<String>,
    /// A substring of the path and query to match (`""` for every request).
    pub path_contains: String,
    /// How many matching requests are faulted; later ones pass through.
    pub times: usize,
    /// What to do to them.
    pub fault: Fault,
}

#[derive(Debug)]
struct State {
    upstream: String,
    host: String,
    /// Forward the client's `Host` header instead of the upstream's (S3 signs it).
    keep_host: bool,
    client: reqwest::Client,
    requests: Mutex<Vec<(String, String)>>,
    /// Rules with how often each has fired.
    rules: Mutex<Vec<(FaultRule, usize)>>,
}

/// A running fault proxy; it stops serving (and drops its open connections) on drop.
pub struct FaultProxy {
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream_host` (`host:port`, plain HTTP).
    pub async fn start(upstream_host: &str) -> Result<FaultProxy> {
        Self::start_inner(upstream_host, false).await
    }

    /// [`FaultProxy::start`], but each request reaches the upstream with the `Host` header the
    /// client sent (the proxy's address), not the upstream's: for S3 servers, whose SigV4
    /// signatures cover `Host`. Point the client's endpoint at [`FaultProxy::host`].
    pub async fn start_keeping_host(upstream_host: &str) -> Result<FaultProxy> {
        Self::start_inner(upstream_host, true).await
    }

    async fn start_inner(upstream_host: &str, keep_host: bool) -> Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let state = Arc::new(State {
            upstream: upstream_host.to_string(),
            host: listener.local_addr()?.to_string(),
            keep_host,
            // Redirects are the client's business: pass them through.
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?,
            requests: Mutex::default(),
            rules: Mutex::default(),
        });
        let server = tokio::spawn(serve(listener, state.clone()));
        Ok(FaultProxy { state, server })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.state.host.clone()
    }

    /// Adds a rule for the requests from now on. Rules are tried in the order added; a request
    /// gets the fault of the first one that matches and has fired fewer than `times` times.
    pub fn add_fault(&self, rule: FaultRule) {
        self.state.rules.lock().unwrap().push((rule, 0));
    }

    /// Every request seen since the last [`FaultProxy::reset_counts`]: (method, path and query).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests seen (since the last [`FaultProxy::reset_counts`]) with `method` whose path and
    /// query contain `path_contains`, faulted ones included.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        let requests = self.state.requests.lock().unwrap();
        requests.iter().filter(|(m, p)| m == method && p.contains(path_contains)).count()
    }

    /// Blob downloads (GET on `/blobs/sha256:`), faulted ones included.
    pub fn blob_gets(&self) -> usize {
        self.count("GET", "/blobs/sha256:")
    }

    /// Forgets the requests seen so far; the rules and how often they have fired are kept.
    pub fn reset_counts(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every open connection.
        self.server.abort();
    }
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        let reset = Arc::new(Notify::new());
        let service = hyper::service::service_fn({
            let reset = reset.clone();
            move |req| handle(state.clone(), reset.clone(), req)
        });
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        connections.spawn(async move {
            tokio::select! {
                _ = connection => {}
                // Dropping the connection closes the socket with the request unanswered.
                _ = reset.notified() => {}
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

impl State {
    /// The first rule that matches and has not fired `times` times yet, counted as fired.
    fn fault_for(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let (rule, fired) = rules.iter_mut().find(|(r, fired)| {
            *fired < r.times && r.method.as_deref().is_none_or(|m| m == method) && path.contains(&r.path_contains)
        })?;
        *fired += 1;
        Some(rule.fault.clone())
    }
}

const HOP_BY_HOP: [header::HeaderName; 5] =
    [header::CONNECTION, header::HOST, header::TE, header::TRANSFER_ENCODING, header::UPGRADE];

async fn handle(state: Arc<State>, reset: Arc<Notify>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    state.requests.lock().unwrap().push((method.to_string(), path.clone()));
    let fault = state.fault_for(method.as_str(), &path);
    match &fault {
        Some(Fault::Status { status, retry_after }) => {
            let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the fault proxy"}]}"#;
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = StatusCode::from_u16(*status).expect("valid status in fault rule");
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(after) = retry_after {
                resp.headers_mut().insert(header::RETRY_AFTER, after.parse().expect("valid Retry-After"));
            }
            return Ok(resp);
        }
        Some(Fault::Reset) => {
            reset.notify_one();
            return std::future::pending().await;
        }
        Some(Fault::Answer { status, headers, body }) => {
            // Read what the client sends, as a server that took it would, and keep none of it.
            let mut incoming = Body::new(req.into_body()).into_data_stream();
            while let Some(Ok(_)) = incoming.next().await {}
            let mut resp = Response::new(Body::from(body.clone()));
            *resp.status_mut() = StatusCode::from_u16(*status).expect("valid status in fault rule");
            for (name, value) in headers {
                let name: header::HeaderName = name.parse().expect("valid header name in fault rule");
                resp.headers_mut().insert(name, value.parse().expect("valid header value in fault rule"));
            }
            return Ok(resp);
        }
        Some(Fault::Delay { millis }) => tokio::time::sleep(std::time::Duration::from_millis(*millis)).await,
        Some(Fault::CorruptBody | Fault::Header { .. }) | None => {}
    }

    let host = req.headers().get(header::HOST).cloned();
    let mut headers = req.headers().clone();
    strip_hop_by_hop(&mut headers);
    if let Some(host) = host.filter(|_| state.keep_host) {
        headers.insert(header::HOST, host);
    }
    let has_body = headers.get(header::CONTENT_LENGTH).is_some_and(|l| l != "0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut upstream = state.client.request(method, format!("http://{}{path}", state.upstream)).headers(headers);
    if has_body {
        upstream = upstream.body(reqwest::Body::wrap_stream(Body::new(req.into_body()).into_data_stream()));
    }
    let upstream = match upstream.send().await {
        Ok(r) => r,
        Err(e) => {
            let mut resp = Response::new(Body::from(format!("fault proxy: upstream failed: {e}")));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(resp);
        }
    };

    let mut headers = upstream.headers().clone();
    strip_hop_by_hop(&mut headers);
    if let Some(location) = headers.get(header::LOCATION).and_then(|l| l.to_str().ok()) {
        let upstream_url = format!("http://{}", state.upstream);
        if let Some(rest) = location.strip_prefix(&upstream_url) {
            let rewritten = format!("http://{}{rest}", state.host);
            headers.insert(header::LOCATION, rewritten.parse().expect("was a valid header"));
        }
    }
    if let Some(Fault::Header { name, value }) = &fault {
        let name: header::HeaderName = name.parse().expect("valid header name in fault rule");
        match value {
            Some(value) => headers.insert(name, value.parse().expect("valid header value in fault rule")),
            None => headers.remove(name),
        };
    }
    let status = upstream.status();
    let corrupt = matches!(fault, Some(Fault::CorruptBody));
    let body = upstream.bytes_stream().map(move |chunk| chunk.map(|b| if corrupt { flip(&b) } else { b }));
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn flip(chunk: &Bytes) -> Bytes {
    chunk.iter().map(|b| !b).collect()
}
