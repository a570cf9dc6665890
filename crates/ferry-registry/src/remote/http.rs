//! The request machinery under [`RemoteRegistry`]: the per-host budget, authentication challenges
//! and tokens, retries (giving up on a host that cannot be connected to: `reach.rs`), and turning
//! answers into [`RegistryError`]s that never show credentials.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use ferry_oci::Digest;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

use super::reach::{Probe, Reachability};
use super::{RemoteOptions, RemoteRegistry, MAX_DOCUMENT};
use crate::auth::Credentials;
use crate::{BlobData, RegistryError};

const MAX_BACKOFF: Duration = Duration::from_secs(10);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How much of an error answer is read for its message.
const MAX_ERROR_BODY: usize = 16 << 10;

/// A failed attempt, and how long the registry asked us to wait before the next one.
pub(super) struct Failure {
    error: RegistryError,
    retry_after: Option<Duration>,
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        Failure { error, retry_after: None }
    }
}

pub(super) type Attempt<T> = std::result::Result<T, Failure>;

/// What one registry host has: its request budget, whether it can be connected to, how it last
/// asked us to authenticate, the credentials for it and the bearer tokens it granted (per set of
/// scopes).
pub(super) struct Host {
    /// Whether it can be connected to.
    pub(super) reach: Reachability,
    permits: Arc<Semaphore>,
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
    challenge: Mutex<Option<Challenge>>,
    credentials: OnceCell<Option<Credentials>>,
    tokens: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
    /// Set once the host has shown it has no OCI 1.1 referrers API (a 404 or 405 on
    /// `referrers/`, which a registry with the API never answers): later asks are not sent.
    pub(super) lacks_referrers: std::sync::atomic::AtomicBool,
}

impl Host {
    pub(super) fn new(name: &str, opts: &RemoteOptions) -> Host {
        Host {
            reach: Reachability::new(name),
            permits: Arc::new(Semaphore::new(opts.max_concurrent_requests.max(1))),
            interval: opts
                .max_requests_per_second
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next_slot: Mutex::new(Instant::now()),
            challenge: Mutex::default(),
            credentials: OnceCell::new(),
            tokens: Mutex::default(),
            lacks_referrers: Default::default(),
        }
    }

    /// Wait for a concurrency permit, then for the next free slot of the rate budget.
    async fn acquire(&self) -> OwnedSemaphorePermit {
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        if let Some(interval) = self.interval {
            let slot = {
                let mut next = self.next_slot.lock().unwrap();
                let slot = (*next).max(Instant::now());
                *next = slot + interval;
                slot
            };
            tokio::time::sleep_until(slot).await;
        }
        permit
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    expires: Instant,
}

impl RemoteRegistry {
    /// Send one request (and, when the host challenges it, once more with credentials): the answer
    /// whatever its status, with the host's permit, to be held while the body is read.
    ///
    /// A request to the registry's own host that cannot connect (name resolution, refused
    /// connection, connect time-out, TLS handshake) is tried again up to `retries` times while the
    /// host's other requests wait; then the host is given up on for the rest of the run.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &Url,
        scopes: &[String],
        headers: HeaderMap,
        body: Option<&BlobData>,
    ) -> Attempt<(Response, OwnedSemaphorePermit)> {
        // Credentials belong to the registry's own host: an upload location or a redirect
        // elsewhere (storage) gets none. reqwest drops Authorization on cross-host redirects.
        let own_host = self.base.as_ref().is_some_and(|b| b.origin() == url.origin());
        let mut auth = if own_host { self.authorization(scopes, None, None).await? } else { None };
        let mut challenged = false;
        let (mut probe, mut connect_failures, mut last_failure) = (None, 0, None);
        loop {
            let permit =
                if own_host { self.take_turn(&mut probe, &mut last_failure).await? } else { self.host.acquire().await };
            let mut request = self.client.http.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(value) = &auth {
                request = request.header(AUTHORIZATION, value.clone());
            }
            if let Some(data) = body {
                request = request.body(self.body(data).await?);
            }
            self.client.counters.requests.fetch_add(1, Relaxed);
            let started = Instant::now();
            let resp = match request.send().await {
                Ok(resp) => resp,
                Err(e) if own_host && self.cannot_connect(&e) => {
                    drop(permit);
                    let failed = failed_request(&method, url, e);
                    connect_failures += 1;
                    if connect_failures > self.client.opts.retries || self.host.reach.first_failure().is_some() {
                        self.host.reach.give_up(&failed);
                        return Err(self.unreachable(failed));
                    }
                    // Find out again, unless another request already is: then wait for its answer.
                    if probe.is_none() {
                        probe = self.host.reach.find_out_again();
                    }
                    if probe.is_some() {
                        let delay = backoff(self.client.opts.retry_base_delay, connect_failures - 1);
                        self.client.counters.retries.fetch_add(1, Relaxed);
                        tracing::warn!(registry = %self.name, what = "connect", error = %failed, ?delay, retry = connect_failures, "retrying");
                        tokio::time::sleep(delay).await;
                    }
                    last_failure = Some(self.unreachable(failed));
                    continue;
                }
                Err(e) => {
                    // Connected, then failed: the host can be reached.
                    if own_host {
                        self.host.reach.connected();
                    }
                    return Err(self.unreachable(failed_request(&method, url, e)));
                }
            };
            if own_host {
                self.host.reach.connected();
                probe = None;
                last_failure = None;
            }
            // The path only: upload locations carry opaque state in their query.
            tracing::debug!(registry = %self.name, %method, path = url.path(), status = resp.status().as_u16(), elapsed = ?started.elapsed(), "request");
            if !challenged && own_host && resp.status() == StatusCode::UNAUTHORIZED {
                challenged = true;
                if let Some((challenge, scope)) = parse_challenges(resp.headers()) {
                    // Kept for the host's later requests; the scope was about this one.
                    *self.host.challenge.lock().unwrap() = Some(challenge);
                    let next = self.authorization(scopes, scope.as_deref(), auth.as_ref()).await?;
                    if next.is_some() && next != auth {
                        auth = next;
                        continue;
                    }
                }
            }
            return Ok((resp, permit));
        }
    }

    /// Wait until a request to the registry's own host may go (see [`Reachability`]), then for a
    /// permit.
    /// Fails at once when the host has been given up on: with `last_failure`, this request's own
    /// connection failure, if it met one, else with the host's first.
    async fn take_turn<'h>(
        &'h self,
        probe: &mut Option<Probe<'h>>,
        last_failure: &mut Option<Failure>,
    ) -> Attempt<OwnedSemaphorePermit> {
        let mut given_up = |first: Arc<str>| last_failure.take().unwrap_or_else(|| self.not_tried(&first));
        if probe.is_none() {
            *probe = self.host.reach.admit().await.map_err(&mut given_up)?;
        }
        let permit = self.host.acquire().await;
        // The host may have been given up on while this request waited for a permit.
        match self.host.reach.first_failure() {
            Some(first) => Err(given_up(first)),
            None => Ok(permit),
        }
    }

    async fn body(&self, data: &BlobData) -> Attempt<reqwest::Body> {
        Ok(match data {
            BlobData::Memory(bytes) => bytes.clone().into(),
            BlobData::File(path) => {
                let file = tokio::fs::File::open(&**path).await.map_err(|source| RegistryError::Io {
                    registry: self.name.clone(),
                    path: path.display().to_string(),
                    source,
                })?;
                reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file))
            }
        })
    }

    /// The `Authorization` for a request needing `scopes`, as the host last challenged; `None`
    /// before any challenge. `extra_scope` is what a fresh challenge asked for; `rejected` is a
    /// token the registry just refused, not to be served from the cache again.
    async fn authorization(
        &self,
        scopes: &[String],
        extra_scope: Option<&str>,
        rejected: Option<&HeaderValue>,
    ) -> Attempt<Option<HeaderValue>> {
        let challenge = self.host.challenge.lock().unwrap().clone();
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        let credentials = self.credentials().await;
        let (realm, service) = match challenge {
            Challenge::Basic => return Ok(credentials.map(|c| basic(&c))),
            Challenge::Bearer { realm, service } => (realm, service),
        };
        let slot = self.host.tokens.lock().unwrap().entry(scopes.join(" ")).or_default().clone();
        // One fetch per scope at a time: concurrent requests wait for it and share its token.
        let mut slot = slot.lock().await;
        if let Some(token) = slot.as_ref().filter(|t| t.expires > Instant::now() && Some(&t.header) != rejected) {
            return Ok(Some(token.header.clone()));
        }
        let token = self.fetch_token(&realm, service.as_deref(), scopes, extra_scope, credentials.as_ref()).await?;
        *slot = Some(token.clone());
        Ok(Some(token.header))
    }

    async fn credentials(&self) -> Option<Credentials> {
        let lookup = || async {
            let (source, host) = (self.client.opts.credentials.clone(), self.host_name.clone());
            // Credential helpers are programs: keep them off the async threads.
            tokio::task::spawn_blocking(move || source.credentials(&host)).await.unwrap_or(None)
        };
        self.host.credentials.get_or_init(lookup).await.clone()
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        extra_scope: Option<&str>,
        credentials: Option<&Credentials>,
    ) -> Attempt<Token> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let mut url = Url::parse(realm).map_err(|_| self.invalid(format!("unusable token realm {realm:?}")))?;
        let realm_host = url[url::Position::BeforeHost..url::Position::AfterPort].to_string();
        if url.scheme() != "https" && !(url.scheme() == "http" && self.client.plain_http_allowed(&realm_host)) {
            return Err(self
                .invalid(format!("token realm {realm:?} is not HTTPS; not sending credentials there"))
                .into());
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            let mut all: Vec<&str> = scopes.iter().map(String::as_str).collect();
            for scope in extra_scope.unwrap_or_default().split(' ').filter(|s| !s.is_empty()) {
                if !all.contains(&scope) {
                    all.push(scope);
                }
            }
            for scope in all {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.client.http.get(url.clone());
        if let Some(c) = credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        self.client.counters.requests.fetch_add(1, Relaxed);
        let resp = request.send().await.map_err(|e| self.unreachable(failed_request(&Method::GET, &url, e)))?;
        if !resp.status().is_success() {
            return Err(self.status_error(&Method::GET, &url, resp).await);
        }
        let body = self.read_document(&Method::GET, &url, resp).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| self.invalid(format!("token realm {} answered no token: {e}", redact(&url))))?;
        let token = answer.token.or(answer.access_token).filter(|t| !t.is_empty());
        let token = token.ok_or_else(|| self.invalid(format!("token realm {} answered no token", redact(&url))))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| self.invalid(format!("token realm {} answered an unusable token", redact(&url))))?;
        header.set_sensitive(true);
        // The spec's default lifetime is 60 s; renew a little early.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60)).mul_f64(0.9);
        Ok(Token { header, expires: Instant::now() + lifetime })
    }

    /// Run `op` until it succeeds, fails for good, or the retries are spent.
    pub(super) async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> crate::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let opts = &self.client.opts;
        let mut retry = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                // A host given up on is not asked again.
                Err(Failure { error, retry_after })
                    if retry < opts.retries && error.is_transient() && self.host.reach.first_failure().is_none() =>
                {
                    let delay = match retry_after {
                        Some(after) => after.min(MAX_RETRY_AFTER),
                        None => backoff(opts.retry_base_delay, retry),
                    };
                    retry += 1;
                    self.client.counters.retries.fetch_add(1, Relaxed);
                    tracing::warn!(registry = %self.name, what, %error, ?delay, retry, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// The error for an unexpected answer, with the registry's own explanation.
    pub(super) async fn status_error(&self, method: &Method, url: &Url, resp: Response) -> Failure {
        let status = resp.status();
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| parse_retry_after(v.to_str().ok()?));
        let error = if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            RegistryError::Denied { registry: self.name.clone(), url: redact(url), status: status.as_u16() }
        } else {
            RegistryError::Http {
                registry: self.name.clone(),
                method: method.to_string(),
                url: redact(url),
                status: status.as_u16(),
                message: error_message(status, &read_prefix(resp, MAX_ERROR_BODY).await),
            }
        };
        Failure { error, retry_after }
    }

    pub(super) fn unreachable(&self, message: String) -> Failure {
        RegistryError::Unreachable { registry: self.name.clone(), message }.into()
    }

    /// What a request to a host given up on fails with, without being sent.
    fn not_tried(&self, first: &str) -> Failure {
        self.unreachable(format!("not tried, since an earlier request could not connect: {first}"))
    }

    /// Whether `error` is a failure to resolve or connect to the registry's own host (not, say,
    /// to the storage a redirect led to).
    fn cannot_connect(&self, error: &reqwest::Error) -> bool {
        let own = |url: &Url| self.base.as_ref().is_some_and(|b| b.origin() == url.origin());
        error.is_connect() && error.url().is_none_or(own)
    }

    /// A whole JSON document (manifest, tag list, token), refused past [`MAX_DOCUMENT`].
    pub(super) async fn read_document(&self, method: &Method, url: &Url, mut resp: Response) -> Attempt<Bytes> {
        let too_large = || self.invalid(format!("{method} {} answered more than {MAX_DOCUMENT} bytes", redact(url)));
        if resp.content_length().is_some_and(|l| l > MAX_DOCUMENT as u64) {
            return Err(too_large().into());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(failed_request(method, url, e)))? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(too_large().into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// The first `limit` bytes of a body, best effort: it only serves an error message.
async fn read_prefix(mut resp: Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]);
        if body.len() == limit {
            break;
        }
    }
    body.freeze()
}

fn basic(c: &Credentials) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// `scheme://host[:port]/path`: no user info, and no query, which can hold upload state or
/// signed storage URLs.
fn redact(url: &Url) -> String {
    format!("{}://{}", url.scheme(), &url[url::Position::BeforeHost..url::Position::AfterPath])
}

/// `METHOD scheme://host/path: error`, for a request that got no answer.
fn failed_request(method: &Method, url: &Url, error: reqwest::Error) -> String {
    format!("{method} {}: {}", redact(url), describe(error))
}

/// A reqwest error and its causes, without the URL (which can carry a signed query).
pub(super) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

/// The registry's explanation: the OCI error document's codes and messages, else the start of
/// the body, else the status's name.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(Errors { errors }) = serde_json::from_slice::<Errors>(body) {
        if !errors.is_empty() {
            return errors
                .iter()
                .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
                .collect::<Vec<_>>()
                .join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => status.canonical_reason().unwrap_or("no explanation").to_string(),
        None => text.to_string(),
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => Some(httpdate::parse_http_date(value).ok()?.duration_since(SystemTime::now()).unwrap_or_default()),
    }
}

/// `base · 2^retry`, capped, times a random factor in [0.5, 1) so that clients throttled
/// together do not come back together.
fn backoff(base: Duration, retry: usize) -> Duration {
    let exponential = base.saturating_mul(1 << retry.min(20)).min(MAX_BACKOFF);
    // A fresh RandomState hashes to a fresh random number: jitter without a rand dependency.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    exponential.mul_f64(0.5 + 0.5 * (random as f64 / u64::MAX as f64))
}

pub(super) fn header_digest(headers: &HeaderMap) -> Option<Digest> {
    headers.get("docker-content-digest")?.to_str().ok()?.trim().parse().ok()
}

/// The media type of `Content-Type`, without parameters.
pub(super) fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_string()).filter(|t| !t.is_empty())
}

/// The target of `Link: <…>; rel="next"`, resolved against `current`.
pub(super) fn next_link(headers: &HeaderMap, current: &Url) -> Option<Url> {
    headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|p| matches!(p.replace(' ', "").as_str(), "rel=\"next\"" | "rel=next"));
        is_next.then(|| current.join(target).ok()).flatten()
    })
}

/// The challenge of a 401 (bearer preferred when a registry offers several) and the scope it
/// asks for.
fn parse_challenges(headers: &HeaderMap) -> Option<(Challenge, Option<String>)> {
    let challenges = headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| parse_challenge(v.to_str().ok()?));
    challenges.min_by_key(|(c, _)| matches!(c, Challenge::Basic))
}

fn parse_challenge(value: &str) -> Option<(Challenge, Option<String>)> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = parse_auth_params(params);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some((Challenge::Basic, None)),
        "bearer" => Some((
            Challenge::Bearer { realm: params.remove("realm")?, service: params.remove("service") },
            params.remove("scope"),
        )),
        _ => None,
    }
}

/// `key="value", key=value` (RFC 7235); quoted values may hold commas and `\"`.
fn parse_auth_params(mut rest: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim_matches(|c: char| c == ',' || c.is_whitespace()).to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => {
                let (mut value, mut end, mut escaped) = (String::new(), quoted.len(), false);
                for (i, c) in quoted.char_indices() {
                    match c {
                        _ if escaped => {
                            value.push(c);
                            escaped = false;
                        }
                        '\\' => escaped = true,
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        _ => value.push(c),
                    }
                }
                (value, &quoted[end..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        params.insert(key, value);
        rest = tail;
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let bearer =
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#;
        assert_eq!(
            parse_challenge(bearer),
            Some((
                Challenge::Bearer {
                    realm: "https://auth.example/token".into(),
                    service: Some("registry.example".into()),
                },
                Some("repository:a/b:pull,push".into())
            ))
        );
        assert_eq!(parse_challenge(r#"Basic realm="x \"y\"""#), Some((Challenge::Basic, None)));
        assert_eq!(parse_challenge("Bearer service=x"), None, "a bearer challenge needs a realm");
        assert_eq!(parse_challenge("Negotiate"), None);
        let params = parse_auth_params(r#"a=1, b="2,3" ,c="""#);
        assert_eq!((params["a"].as_str(), params["b"].as_str(), params["c"].as_str()), ("1", "2,3", ""));
    }

    #[test]
    fn links() {
        let current = Url::parse("https://r.example/v2/a/tags/list?n=2").unwrap();
        let mut h = HeaderMap::new();
        h.insert(LINK, r#"</v2/a/tags/list?last=b&n=2>; rel="next""#.parse().unwrap());
        assert_eq!(next_link(&h, &current).unwrap().as_str(), "https://r.example/v2/a/tags/list?last=b&n=2");
        h.insert(LINK, r#"<https://other.example/x>; rel="prev", <https://r.example/y>; rel=next"#.parse().unwrap());
        assert_eq!(next_link(&h, &current).unwrap().as_str(), "https://r.example/y");
        h.insert(LINK, r#"<https://other.example/x>; rel="prev""#.parse().unwrap());
        assert_eq!(next_link(&h, &current), None);
    }

    #[test]
    fn retry_after_and_backoff() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        assert!(parse_retry_after(&later).unwrap() > Duration::from_secs(25));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
        let base = Duration::from_millis(200);
        assert!((Duration::from_millis(100)..Duration::from_millis(200)).contains(&backoff(base, 0)));
        assert!((Duration::from_millis(800)..Duration::from_millis(1600)).contains(&backoff(base, 3)));
        assert!(backoff(base, 60) <= MAX_BACKOFF);
    }

    #[test]
    fn messages_hide_queries_and_credentials() {
        let url = Url::parse("https://user:pw@r.example:5000/v2/a/blobs/uploads/x?_state=secret&digest=d").unwrap();
        assert_eq!(redact(&url), "https://r.example:5000/v2/a/blobs/uploads/x");
        let oci = br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match"}]}"#;
        assert_eq!(error_message(StatusCode::BAD_REQUEST, oci), "DIGEST_INVALID provided digest did not match");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b""), "Bad Gateway");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, "é".repeat(300).as_bytes()).chars().count(), 201);
    }
}
