//! Proxy mode (case 12b of `docs/request-handling.md`): for clients on the `proxy` list, and for
//! every redirect to a mirror with `proxy: true`, Ferry fetches the redirect's target itself
//! (the URL it would have answered `307` with) and streams the bytes to the client, so the
//! client only ever talks to Ferry's hostname.
//!
//! - `GET` and `HEAD`; `Range`, `If-Range`, `Accept` and the conditional headers go to the
//!   origin, whose status (`200`, `206`, `304`, `404`, `416`, ...) and content headers come back.
//!   Redirects from the origin (a registry sending blobs to a bucket) are followed here, never
//!   shown to the client.
//! - A blob fetched whole (`200` to a `GET`) is hashed as it streams, and its last chunk held back
//!   until the hash is known: on a mismatch the body ends with an error instead, so hyper resets
//!   the connection before the last byte, and the mirror's copy of that digest is withdrawn from
//!   the routing ([`crate::snapshot::Withdrawn`]). Ranged answers and release files cannot be
//!   checked.
//! - One chunk at a time (what the origin's connection delivers, then the held-back one): memory
//!   per stream is bounded. At most `proxy_max_streams` streams at once (past it `503` with
//!   `Retry-After`); a connect timeout and a timeout between reads.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use bytes::Bytes;
use ferry_oci::{Digest, Sha256Verifier};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::decision::{Decision, Outcome};
use crate::request::LOCAL_CONTENT;
use crate::snapshot::{Snapshot, Withdrawn};

/// Longest wait for a connection to the origin.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the origin's next bytes (its answer's head, then each read of the body).
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects from the origin followed at most.
const MAX_REDIRECTS: usize = 10;

/// Request headers sent on to the origin.
const REQUEST_HEADERS: [HeaderName; 6] = [
    header::RANGE,
    header::IF_RANGE,
    header::ACCEPT,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
];

/// Response headers relayed from the origin (no `Location`, `Set-Cookie` or
/// `WWW-Authenticate`: they would name or concern another host).
const RESPONSE_HEADERS: [&str; 11] = [
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "etag",
    "last-modified",
    "cache-control",
    "expires",
    "content-encoding",
    "docker-content-digest",
    "docker-distribution-api-version",
];

/// Proxy mode's stream permits.
pub(crate) struct Proxy {
    streams: Arc<Semaphore>,
}

impl Proxy {
    /// At most `max_streams` streams at once.
    pub(crate) fn new(max_streams: usize) -> Proxy {
        Proxy { streams: Arc::new(Semaphore::new(max_streams)) }
    }
}

thread_local! {
    /// The HTTP client of this serving thread, built when first needed. One per thread, not one
    /// shared: each serving thread runs its own runtime, and a pooled connection is driven by a
    /// task of the runtime that opened it, so a shared pool would hand every chunk from one
    /// thread to another.
    static CLIENT: std::cell::OnceCell<reqwest::Client> = const { std::cell::OnceCell::new() };
}

fn client() -> reqwest::Client {
    CLIENT.with(|client| {
        client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .expect("HTTP client")
            })
            .clone()
    })
}

/// Whether `decision` is answered by streaming its target rather than with the `307`: a redirect
/// to another host (not Ferry's own local-folder content) for a client on the `proxy` list or to
/// a mirror with `proxy: true`. Only called when the snapshot [`Snapshot::proxies`].
pub(crate) fn is_proxied(snapshot: &Snapshot, client: IpAddr, label: Option<&str>, decision: &Decision<'_>) -> bool {
    if decision.status != 307 {
        return false;
    }
    let Some(location) = decision.location.as_deref() else { return false };
    if !(location.starts_with("http://") || location.starts_with("https://")) || location.contains(LOCAL_CONTENT) {
        return false;
    }
    if decision.mirror_index.is_some_and(|i| snapshot.mirrors.get(i).is_some_and(|m| m.proxy)) {
        return true;
    }
    snapshot.proxy.as_ref().is_some_and(|p| p.matches(client, label))
}

/// What the stream counts into (cloned from [`crate::Metrics`]).
#[derive(Clone)]
pub(crate) struct ProxyCounters {
    pub(crate) bytes: Counter,
    pub(crate) mismatches: Counter,
}

/// The answer to a proxied request: the origin's status and outcome for the metrics and the
/// access log, and the response streaming its bytes.
pub(crate) async fn stream(
    proxy: &Proxy,
    snapshot: &Snapshot,
    decision: &Decision<'_>,
    method: &Method,
    headers: &HeaderMap,
    blob: Option<Digest>,
    counters: ProxyCounters,
) -> (u16, Outcome, Response<Body>) {
    let Ok(permit) = proxy.streams.clone().try_acquire_owned() else {
        let mut r = crate::render::text(StatusCode::SERVICE_UNAVAILABLE, "too many proxied streams; retry\n");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return (503, Outcome::Busy, r);
    };
    let location = decision.location.as_deref().expect("proxied decisions are redirects");
    let head = *method == Method::HEAD;
    let mut request = client().request(if head { reqwest::Method::HEAD } else { reqwest::Method::GET }, location);
    for name in &REQUEST_HEADERS {
        for value in headers.get_all(name) {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(target: "ferry_serve::proxy", url = %location, error = %e, "proxied request failed");
            return (502, Outcome::Proxied, crate::render::text(StatusCode::BAD_GATEWAY, "origin unreachable\n"));
        }
    };
    let status = upstream.status().as_u16();
    if upstream.status().is_redirection() && status != 304 {
        // More redirects than followed, or one without a usable Location.
        return (502, Outcome::Proxied, crate::render::text(StatusCode::BAD_GATEWAY, "origin kept redirecting\n"));
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for name in RESPONSE_HEADERS {
        for value in upstream.headers().get_all(name) {
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                response.headers_mut().append(HeaderName::from_static(name), value);
            }
        }
    }
    if head || status == 304 || status == 204 {
        return (status, Outcome::Proxied, response);
    }
    // A whole blob can be checked; a range of one, or a release file, cannot.
    let digest = blob.filter(|_| status == 200);
    let verifier = digest.clone().map(Sha256Verifier::new);
    let withdraw = decision.mirror.map(|m| (snapshot.withdrawn.clone(), m.to_string()));
    let relay = Relay { upstream, verifier, digest, held: None, done: false, withdraw, counters, _permit: permit };
    let body = futures::stream::unfold(relay, Relay::next);
    *response.body_mut() = Body::from_stream(body);
    (status, Outcome::Proxied, response)
}

/// One stream's state: the origin's response, the hash so far and the chunk held back.
struct Relay {
    upstream: reqwest::Response,
    verifier: Option<Sha256Verifier>,
    /// The digest being checked.
    digest: Option<Digest>,
    held: Option<Bytes>,
    done: bool,
    /// Where to withdraw the mirror's copy on a mismatch (`None` for an upstream).
    withdraw: Option<(Arc<Withdrawn>, String)>,
    counters: ProxyCounters,
    /// Released when the stream ends or the client goes away.
    _permit: OwnedSemaphorePermit,
}

impl Relay {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Relay)> {
        if self.done {
            return None;
        }
        loop {
            match self.upstream.chunk().await {
                Ok(Some(chunk)) => {
                    self.counters.bytes.inc_by(chunk.len() as u64);
                    let Some(verifier) = &mut self.verifier else { return Some((Ok(chunk), self)) };
                    verifier.update(&chunk);
                    if let Some(previous) = self.held.replace(chunk) {
                        return Some((Ok(previous), self));
                    }
                }
                Ok(None) => {
                    self.done = true;
                    let verifier = self.verifier.take()?;
                    return match verifier.finish() {
                        Ok(()) => self.held.take().map(|last| (Ok(last), self)),
                        Err(actual) => {
                            self.counters.mismatches.inc();
                            self.held = None;
                            let mirror = self.withdraw.as_ref().map(|(_, m)| m.as_str()).unwrap_or("(upstream)");
                            tracing::error!(target: "ferry_serve::proxy", %mirror, %actual, url = %self.upstream.url(), "proxied blob does not match its digest: connection aborted");
                            if let (Some((withdrawn, mirror)), Some(expected)) = (&self.withdraw, &self.digest) {
                                withdrawn.withdraw(mirror, expected.as_str());
                            }
                            Some((Err(std::io::Error::other("digest mismatch")), self))
                        }
                    };
                }
                Err(e) => {
                    self.done = true;
                    tracing::warn!(target: "ferry_serve::proxy", error = %e, "proxied stream broke off");
                    return Some((Err(std::io::Error::other(e)), self));
                }
            }
        }
    }
}
