//! The HTTP layer around [`crate::route::decide`]: service endpoints, client address
//! (`X-Forwarded-For` from trusted proxies only), access logs, metrics, snapshot reload.
//! Cases 3, 12 and 13 of `docs/request-handling.md` live here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::probe::{ProbeSettings, Prober};
use crate::request::parse_request;
use crate::route::{decide, route, Decision, NoProbes, Outcome, Presence};
use crate::snapshot::{canonical, Snapshot, SnapshotError};

/// `X-Forwarded-For` headers longer than this (all of them together) are ignored.
pub const MAX_XFF: usize = 4096;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    mirror: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RedirectLabels {
    outcome: String,
    mirror: String,
    location: String,
}

/// Prometheus metrics of one server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    redirects: Family<RedirectLabels, Counter>,
    mirror_healthy: Family<MirrorLabels, Gauge>,
    presence_cache_entries: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let redirects = Family::<RedirectLabels, Counter>::default();
        registry.register("ferry_serve_requests", "Requests answered, by outcome", requests.clone());
        registry.register(
            "ferry_serve_redirects",
            "Redirects sent, by outcome, mirror and client location label",
            redirects.clone(),
        );
        let mirror_healthy = Family::<MirrorLabels, Gauge>::default();
        let presence_cache_entries = Gauge::default();
        registry.register(
            "ferry_serve_mirror_healthy",
            "1 while the mirror's health probes pass (it is in the routing), else 0",
            mirror_healthy.clone(),
        );
        registry.register(
            "ferry_serve_presence_cache_entries",
            "Presence probe answers cached (present, absent and error)",
            presence_cache_entries.clone(),
        );
        Metrics { registry, requests, redirects, mirror_healthy, presence_cache_entries }
    }
}

impl Metrics {
    fn record(&self, decision: &Decision, label: Option<&str>) {
        self.requests.get_or_create(&RequestLabels { outcome: decision.outcome.as_str().into() }).inc();
        if decision.outcome.is_redirect() {
            self.redirects
                .get_or_create(&RedirectLabels {
                    outcome: decision.outcome.as_str().into(),
                    mirror: decision.mirror.clone().unwrap_or_default(),
                    location: label.unwrap_or_default().into(),
                })
                .inc();
        }
    }

    /// Copy the prober's state (health per mirror, cache size) into the gauges.
    fn observe(&self, prober: &Prober, snapshot: &Snapshot) {
        for mirror in &snapshot.mirrors {
            let healthy = i64::from(prober.is_healthy(&mirror.name));
            self.mirror_healthy.get_or_create(&MirrorLabels { mirror: mirror.name.clone() }).set(healthy);
        }
        self.presence_cache_entries.set(prober.cached_answers() as i64);
    }

    /// The OpenMetrics text exposition (which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// What the handlers share: the current snapshot (swapped whole on reload), presence knowledge
/// and metrics.
pub struct AppState {
    snapshot: ArcSwap<Snapshot>,
    /// Used when there is no prober.
    presence: Arc<dyn Presence>,
    prober: Option<Arc<Prober>>,
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(snapshot: Snapshot) -> Arc<AppState> {
        AppState::with_presence(snapshot, Arc::new(NoProbes))
    }

    /// Routes with a fixed [`Presence`] (tests, or no probing at all).
    pub fn with_presence(snapshot: Snapshot, presence: Arc<dyn Presence>) -> Arc<AppState> {
        Arc::new(AppState {
            snapshot: ArcSwap::from_pointee(snapshot),
            presence,
            prober: None,
            metrics: Metrics::default(),
        })
    }

    /// Routes with live presence probing and health (start the health loop with
    /// [`Prober::spawn_health`]).
    pub fn with_prober(snapshot: Snapshot, prober: Arc<Prober>) -> Arc<AppState> {
        Arc::new(AppState {
            snapshot: ArcSwap::from_pointee(snapshot),
            presence: Arc::new(NoProbes),
            prober: Some(prober),
            metrics: Metrics::default(),
        })
    }

    /// The whole decision for a request, probing (within the budget) when there is a prober.
    pub async fn decide(
        &self,
        snapshot: &Snapshot,
        method: &str,
        path: &str,
        query: Option<&str>,
        label: Option<&str>,
    ) -> Decision {
        if let (Some(prober), "GET" | "HEAD") = (&self.prober, method) {
            if let Ok(request) = parse_request(path, query) {
                let known = prober.known(snapshot, &request, label).await;
                return route(snapshot, &request, label, &known);
            }
        }
        decide(snapshot, method, path, query, label, &*self.presence)
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the snapshot (atomically: a request sees the old or the new one, whole).
    pub fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Builds a whole new snapshot from `config_path`; only if that succeeds is it swapped in. On
    /// error the old snapshot keeps serving and the error is returned (and logged).
    pub fn reload(&self, config_path: &Path) -> Result<(), SnapshotError> {
        match Snapshot::load(config_path) {
            Ok(new) => {
                tracing::info!(
                    target: "ferry_serve::reload",
                    config = %config_path.display(),
                    mirrors = new.mirrors.len(),
                    "configuration reloaded"
                );
                self.store(new);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    target: "ferry_serve::reload",
                    config = %config_path.display(),
                    error = %e,
                    "new configuration refused; the previous one keeps serving"
                );
                Err(e)
            }
        }
    }
}

/// Modification time and length of each watched file (missing files count as `None`).
fn fingerprint(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))
        .collect()
}

/// Polls the configuration file and every local inventory every `interval`; on a change, calls
/// [`AppState::reload`]. A refused configuration is not retried until the files change again.
pub fn spawn_reloader(state: Arc<AppState>, config_path: PathBuf, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let watched = |state: &AppState| {
            let mut w = state.snapshot().watched.clone();
            if !w.contains(&config_path) {
                w.insert(0, config_path.clone());
            }
            w
        };
        let mut paths = watched(&state);
        let mut seen = fingerprint(&paths);
        loop {
            tokio::time::sleep(interval).await;
            let now = fingerprint(&paths);
            if now == seen {
                continue;
            }
            let _ = state.reload(&config_path);
            // Watch what the snapshot now in force names (the new one, or the old one if refused).
            paths = watched(&state);
            seen = fingerprint(&paths);
        }
    })
}

/// The axum router: every request goes through one handler (strict hand-written dispatch).
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the peer address is
/// known; without it every peer counts as `0.0.0.0`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Runs `ferry serve`: loads the configuration (failing if it is invalid), reloads it when it or
/// an inventory changes (checked every 5 s), probes mirror presence and health, and serves until the process ends.
pub async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let snapshot = Snapshot::load(&config_path)?;
    let listen = snapshot.listen;
    let prober = Prober::new(ProbeSettings::default());
    let state = AppState::with_prober(snapshot, prober.clone());
    prober.spawn_health(state.clone());
    spawn_reloader(state.clone(), config_path, Duration::from_secs(5));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(target: "ferry_serve", %listen, "serving");
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}

/// Case 12: the client address. The TCP peer, unless it is a trusted proxy: then the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (the left-most if all are). A
/// malformed or oversized header is ignored (the peer is used).
pub fn client_address(snapshot: &Snapshot, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = canonical(peer);
    if !snapshot.is_trusted_proxy(peer) {
        return peer;
    }
    let mut total = 0usize;
    let mut entries: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        total += value.len();
        if total > MAX_XFF {
            return peer;
        }
        let Ok(text) = value.to_str() else { return peer };
        for item in text.split(',') {
            match item.trim().parse::<IpAddr>() {
                Ok(ip) => entries.push(canonical(ip)),
                Err(_) => return peer,
            }
        }
    }
    entries.iter().rev().find(|ip| !snapshot.is_trusted_proxy(**ip)).or(entries.first()).copied().unwrap_or(peer)
}

async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let snapshot = state.snapshot();
    let (parts, _body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| canonical(c.0.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let query = parts.uri.query();

    if matches!(path, "/healthz" | "/metrics" | "/debug/route") {
        if method != "GET" && method != "HEAD" {
            return method_not_allowed();
        }
        return match path {
            "/healthz" => (StatusCode::OK, "ok").into_response(),
            "/metrics" => {
                if let Some(prober) = &state.prober {
                    state.metrics.observe(prober, &snapshot);
                }
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    state.metrics.encode(),
                )
                    .into_response()
            }
            _ => debug_route(&state, &snapshot, query.unwrap_or("")).await,
        };
    }

    let client = client_address(&snapshot, peer, &parts.headers);
    let label = snapshot.locator.locate(client);
    let decision = state.decide(&snapshot, method, path, query, label).await;
    state.metrics.record(&decision, label);
    tracing::info!(
        target: "ferry_serve::access",
        method,
        path,
        client = %client,
        peer = %peer,
        label = label.unwrap_or(""),
        status = decision.status,
        outcome = decision.outcome.as_str(),
        mirror = decision.mirror.as_deref().unwrap_or(""),
        location = decision.location.as_deref().unwrap_or(""),
        reason = %decision.reason,
    );
    respond(&decision)
}

fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")], "method not allowed\n").into_response()
}

fn respond(decision: &Decision) -> Response {
    match decision.outcome {
        Outcome::MethodNotAllowed => method_not_allowed(),
        Outcome::Ok => (StatusCode::OK, [("docker-distribution-api-version", "registry/2.0")], "").into_response(),
        _ if decision.status == 307 => {
            let location = decision.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok());
            match location {
                Some(l) => Response::builder()
                    .status(StatusCode::TEMPORARY_REDIRECT)
                    .header(header::LOCATION, l)
                    .body(Body::empty())
                    .expect("valid response"),
                None => {
                    tracing::error!(target: "ferry_serve", location = ?decision.location, "unusable Location");
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
                }
            }
        }
        _ => {
            let status = StatusCode::from_u16(decision.status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, format!("{}\n", decision.reason)).into_response()
        }
    }
}

/// `/debug/route?ip=ADDR&digest=D[&name=REPO]` or `?ip=ADDR&path=P`.
async fn debug_route(state: &AppState, snapshot: &Snapshot, query: &str) -> Response {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response();
    let (mut ip, mut digest, mut path, mut name) = (None, None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "ip" => ip = Some(v.into_owned()),
            "digest" => digest = Some(v.into_owned()),
            "path" => path = Some(v.into_owned()),
            "name" => name = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(Ok(ip)) = ip.map(|s| s.parse::<IpAddr>()) else {
        return bad("ip=ADDR is required and must be an IP address");
    };
    let ip = canonical(ip);
    let request_path = match (digest, path) {
        (Some(d), None) => format!("/v2/{}/blobs/{d}", name.as_deref().unwrap_or("debug")),
        (None, Some(p)) => p,
        _ => return bad("give exactly one of digest=sha256:... or path=/..."),
    };
    let label = snapshot.locator.locate(ip);
    let decision = state.decide(snapshot, "GET", &request_path, None, label).await;
    let body = serde_json::json!({ "ip": ip, "label": label, "path": request_path, "decision": decision });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::Config;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn config_text(trusted: &str) -> String {
        format!(
            r#"
trusted_proxies: {trusted}
upstream:
  registry: https://reg.example/proj
  files: https://dl.example/
locations:
  cidrs: {{"203.0.113.7/32": "aws:us-east-2", "127.0.0.1/32": "aws:us-east-2"}}
mirrors:
  - name: east
    blobs: https://east.example/b/{{digest}}
    files: https://east.example/f/{{path}}
    serves: ["aws:us-east-2"]
    inventory: inv.txt
"#
        )
    }

    fn setup(trusted: &str) -> (tempfile::TempDir, Arc<AppState>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n/bin/kubectl\n")).unwrap();
        std::fs::write(dir.path().join("ferry.yaml"), config_text(trusted)).unwrap();
        let snapshot = Snapshot::load(&dir.path().join("ferry.yaml")).unwrap();
        (dir, AppState::new(snapshot))
    }

    async fn start(state: Arc<AppState>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
        });
        format!("http://{addr}")
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
    }

    fn location(r: &reqwest::Response) -> Option<&str> {
        r.headers().get("location").map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn case_01_methods_over_http() {
        let (_d, state) = setup("[]");
        let base = start(state).await;
        let c = client();
        for m in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE] {
            let r = c.request(m.clone(), format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
            assert_eq!(r.status(), 405, "{m}");
            assert_eq!(r.headers()["allow"], "GET, HEAD");
            assert_eq!(c.request(m, format!("{base}/healthz")).send().await.unwrap().status(), 405);
        }
        let r = c.head(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
        assert_eq!(r.status(), 307);
    }

    #[tokio::test]
    async fn case_02_malformed_over_http_never_redirect() {
        let (_d, state) = setup("[]");
        let base = start(state).await;
        let c = client();
        // reqwest normalises `..` and `%2e%2e` away, so these go over a raw socket, byte for byte.
        for p in [
            "/bin/%2e%2e/etc/passwd",
            "/bin/../etc/passwd",
            "/bin//kubectl",
            "/bin/%5Cx",
            "/bin\\x",
            "/v2/a/%2e%2e/blobs/x",
            "/v2/a/../b/blobs/x",
            "/bin/%00",
            "//evil.example/x",
        ] {
            let (status, head) = raw_get(&base, p).await;
            assert_eq!(status, 400, "{p}: {head}");
            assert!(!head.to_ascii_lowercase().contains("location:"), "{head}");
        }
        let r = c.get(format!("{base}/bin/kubectl")).send().await.unwrap();
        assert_eq!(r.status(), 307);
    }

    /// Sends `GET <path>` exactly as given; returns the status and the response head.
    async fn raw_get(base: &str, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let head = text.split("\r\n\r\n").next().unwrap().to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head)
    }

    #[tokio::test]
    async fn case_03_service_endpoints_and_metrics() {
        let (_d, state) = setup("[]");
        let base = start(state).await;
        let c = client();
        let r = c.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "ok".to_string()));
        c.get(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
        c.get(format!("{base}/v2/a/blobs/{D2}")).send().await.unwrap();
        assert_eq!(raw_get(&base, "/nope/..").await.0, 400);
        let text = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(text.contains(r#"ferry_serve_requests_total{outcome="mirror"} 1"#), "{text}");
        assert!(text.contains(r#"ferry_serve_requests_total{outcome="upstream"} 1"#), "{text}");
        assert!(text.contains(r#"ferry_serve_requests_total{outcome="bad_request"} 1"#), "{text}");
        assert!(
            text.contains(r#"ferry_serve_redirects_total{outcome="mirror",mirror="east",location="aws:us-east-2"} 1"#),
            "{text}"
        );
        // Debug route.
        let r = c.get(format!("{base}/debug/route?ip=203.0.113.7&digest={D1}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["label"], "aws:us-east-2");
        assert_eq!(v["decision"]["mirror"], "east");
        assert_eq!(v["decision"]["location"], format!("https://east.example/b/{D1}"));
        let v: serde_json::Value = c
            .get(format!("{base}/debug/route?ip=198.51.100.1&path=/bin/kubectl"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["label"], serde_json::Value::Null);
        assert_eq!(v["decision"]["outcome"], "files");
        assert_eq!(
            v["decision"]["candidates"][0]["skipped"],
            "client has no location label and the mirror does not serve \"*\""
        );
        for q in ["", "ip=x&digest=a", "ip=1.2.3.4", "ip=1.2.3.4&digest=a&path=/b"] {
            assert_eq!(c.get(format!("{base}/debug/route?{q}")).send().await.unwrap().status(), 400, "{q}");
        }
        let v: serde_json::Value =
            c.get(format!("{base}/debug/route?ip=1.2.3.4&digest=nope")).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["decision"]["status"], 400);
    }

    #[tokio::test]
    async fn case_04_api_base_header() {
        let (_d, state) = setup("[]");
        let base = start(state).await;
        let r = client().get(format!("{base}/v2/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["docker-distribution-api-version"], "registry/2.0");
    }

    #[tokio::test]
    async fn case_06_07_11_redirects_over_http() {
        let (_d, state) = setup("[]");
        let base = start(state).await;
        let c = client();
        // Peer 127.0.0.1 is labelled aws:us-east-2 by the test locator.
        let r = c.get(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
        assert_eq!((r.status().as_u16(), location(&r)), (307, Some(&*format!("https://east.example/b/{D1}"))));
        let r = c.get(format!("{base}/v2/a/b/blobs/{D2}")).send().await.unwrap();
        assert_eq!(location(&r), Some(&*format!("https://reg.example/v2/proj/a/b/blobs/{D2}")));
        let r = c.get(format!("{base}/v2/a/tags/list?n=5")).send().await.unwrap();
        assert_eq!(location(&r), Some("https://reg.example/v2/proj/a/tags/list?n=5"));
        let r = c.get(format!("{base}/bin/kubectl")).send().await.unwrap();
        assert_eq!(location(&r), Some("https://east.example/f/bin/kubectl"));
        let r = c.get(format!("{base}/bin/kubectl.sha256")).send().await.unwrap();
        assert_eq!(location(&r), Some("https://dl.example/bin/kubectl.sha256"));
    }

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn case_12_client_address() {
        let dir = tempfile::tempdir().unwrap();
        let text = "trusted_proxies: ['10.0.0.0/8', '::1']\nupstream: {registry: https://r}\n";
        let s = Snapshot::from_config(Config::from_yaml(text, "t").unwrap(), dir.path()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = ip("10.1.1.1");
        let outsider = ip("198.51.100.9");
        // Untrusted peer: XFF ignored.
        assert_eq!(client_address(&s, outsider, &headers(&["203.0.113.7"])), outsider);
        // Trusted peer: right-most non-trusted entry.
        assert_eq!(client_address(&s, proxy, &headers(&["1.1.1.1, 203.0.113.7, 10.2.2.2"])), ip("203.0.113.7"));
        // Several headers form one list.
        assert_eq!(client_address(&s, proxy, &headers(&["1.1.1.1", "203.0.113.8"])), ip("203.0.113.8"));
        // All trusted: the left-most.
        assert_eq!(client_address(&s, proxy, &headers(&["10.3.3.3, 10.4.4.4"])), ip("10.3.3.3"));
        // No header: the peer.
        assert_eq!(client_address(&s, proxy, &headers(&[])), proxy);
        // Malformed: the peer.
        for bad in ["203.0.113.7, nope", "", "203.0.113.7:80", "1.1.1.1,,2.2.2.2", "unknown"] {
            assert_eq!(client_address(&s, proxy, &headers(&[bad])), proxy, "{bad:?}");
        }
        // Oversized: the peer.
        let huge = vec!["1.1.1.1"; 1000].join(",");
        assert_eq!(client_address(&s, proxy, &headers(&[&huge])), proxy);
        // IPv6 and IPv4-mapped peers.
        assert_eq!(client_address(&s, ip("::1"), &headers(&["2001:db8::1"])), ip("2001:db8::1"));
        assert_eq!(client_address(&s, ip("::ffff:10.1.1.1"), &headers(&["::ffff:203.0.113.7"])), ip("203.0.113.7"));
    }

    #[tokio::test]
    async fn case_12_xff_over_http_and_huge_headers() {
        // Loopback is trusted: XFF decides the label.
        let (_d, state) = setup("['127.0.0.0/8']");
        let base = start(state).await;
        let c = client();
        let blob = format!("{base}/v2/a/blobs/{D1}");
        let r = c.get(&blob).header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
        assert_eq!(location(&r), Some(&*format!("https://reg.example/v2/proj/a/blobs/{D1}")), "unlabelled client");
        let r = c.get(&blob).header("x-forwarded-for", "203.0.113.7, 127.0.0.9").send().await.unwrap();
        assert_eq!(location(&r), Some(&*format!("https://east.example/b/{D1}")));
        // Malformed: the peer (127.0.0.1, labelled).
        let r = c.get(&blob).header("x-forwarded-for", "garbage").send().await.unwrap();
        assert_eq!(location(&r), Some(&*format!("https://east.example/b/{D1}")));
        // Huge header: no panic; the peer is used.
        let huge = vec!["198.51.100.1"; 5000].join(", ");
        let r = c.get(&blob).header("x-forwarded-for", huge).send().await.unwrap();
        assert_eq!(location(&r), Some(&*format!("https://east.example/b/{D1}")));
        let r = c.get(&blob).header("x-junk", "a".repeat(200_000)).send().await.unwrap();
        assert!(r.status() == 307 || r.status() == 431, "{}", r.status());
        assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    }

    /// A `MakeWriter` collecting everything into one buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn case_13_access_log_is_structured_json() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt().json().with_writer(buffer.clone()).finish();
        // A current-thread runtime keeps every task on this thread, under this subscriber.
        tracing::subscriber::with_default(subscriber, || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (_d, state) = setup("[]");
                let base = start(state).await;
                client().get(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
            });
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().find(|l| l.contains("ferry_serve::access")).expect(&text);
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let f = &v["fields"];
        assert_eq!(f["status"], 307);
        assert_eq!(f["outcome"], "mirror");
        assert_eq!(f["mirror"], "east");
        assert_eq!(f["label"], "aws:us-east-2");
        assert_eq!(f["client"], "127.0.0.1");
        assert_eq!(f["location"], format!("https://east.example/b/{D1}"));
        assert!(f["reason"].as_str().unwrap().contains("exact match"), "{line}");
    }

    #[tokio::test]
    async fn reload_swaps_whole_snapshots_and_refuses_bad_ones() {
        let (dir, state) = setup("[]");
        let cfg = dir.path().join("ferry.yaml");
        let base = start(state.clone()).await;
        let c = client();
        let blob = format!("{base}/v2/a/blobs/{D2}");
        let r = c.get(&blob).send().await.unwrap();
        assert_eq!(location(&r), Some(&*format!("https://reg.example/v2/proj/a/blobs/{D2}")));
        // A bad inventory: refused, the old snapshot keeps serving.
        std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n{D2}\nbroken line\n")).unwrap();
        let e = state.reload(&cfg).unwrap_err();
        assert!(e.to_string().contains("inv.txt:3"), "{e}");
        assert_eq!(
            location(&c.get(&blob).send().await.unwrap()),
            Some(&*format!("https://reg.example/v2/proj/a/blobs/{D2}"))
        );
        // A bad config: refused too.
        std::fs::write(&cfg, "upstream: {registry: ftp://x}\n").unwrap();
        assert!(state.reload(&cfg).unwrap_err().to_string().starts_with("upstream.registry"));
        // Good again (inventory now lists D2): the new snapshot serves, located by its own config.
        std::fs::write(&cfg, config_text("[]")).unwrap();
        std::fs::write(dir.path().join("inv.txt"), format!("{D2}\n")).unwrap();
        state.reload(&cfg).unwrap();
        assert_eq!(location(&c.get(&blob).send().await.unwrap()), Some(&*format!("https://east.example/b/{D2}")));
    }

    #[tokio::test]
    async fn clients_are_located_with_the_published_cloud_ranges() {
        let ranges = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/cloud-ranges");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n")).unwrap();
        let config = config_text("[]").replace(
            "locations:\n",
            &format!("locations:\n  aws: [{ranges}/aws-ip-ranges.json]\n  gcp: [{ranges}/gcp-cloud.json]\n"),
        );
        std::fs::write(dir.path().join("ferry.yaml"), config).unwrap();
        let base = start(AppState::new(Snapshot::load(&dir.path().join("ferry.yaml")).unwrap())).await;
        let c = client();
        for (ip, label, mirror) in [
            ("3.128.0.5", "aws:us-east-2", Some("east")),
            ("2600:1f16:8000::10", "aws:us-east-2", Some("east")),
            ("64.252.69.10", "aws:us-east-1", None),
            ("34.76.1.1", "gcp:europe-west1", None),
        ] {
            let url = format!("{base}/debug/route?ip={ip}&digest={D1}");
            let v: serde_json::Value = c.get(url).send().await.unwrap().json().await.unwrap();
            assert_eq!(v["label"], label, "{ip}");
            assert_eq!(v["decision"]["mirror"].as_str(), mirror, "{ip}: {v}");
        }
    }

    #[tokio::test]
    async fn reloader_picks_up_file_changes() {
        let (dir, state) = setup("[]");
        let handle = spawn_reloader(state.clone(), dir.path().join("ferry.yaml"), Duration::from_millis(20));
        let d2: ferry_oci::Digest = D2.parse().unwrap();
        let holds = |s: &AppState| s.snapshot().mirrors[0].inventory.as_ref().unwrap().has_blob(&d2);
        assert!(!holds(&state));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Different length, so the change is seen even with a coarse mtime.
        std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n{D2}\n")).unwrap();
        for _ in 0..100 {
            if holds(&state) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(holds(&state));
        handle.abort();
    }
}
