//! The HTTP layer around [`crate::route::route`]: service endpoints, embedded mirror content,
//! client address (`X-Forwarded-For` from trusted proxies only), access log, metrics, snapshot
//! reload. Cases 3, 3a, 12 and 13 of `docs/request-handling.md` live here.
//!
//! Hot path: a plain hyper HTTP/1.1 service (no router: the dispatch is a handful of exact
//! comparisons). A redirect whose mirrors all have inventories (or are local folders) is answered
//! synchronously, from a borrowed snapshot: no task, no future to box, no `Arc` count touched, and
//! no allocation but the `Location` and the response itself. Only requests that may wait (presence
//! probes, file bytes, `/debug/route`) take the asynchronous path.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::access_log::{AccessLog, Entry};
use crate::counter::ShardedCounter;
use crate::embedded;
use crate::probe::{ProbeSettings, Prober};
use crate::remote::RemoteInventories;
use crate::request::parse_request;
use crate::route::{decide, reject_decision, route, Decision, Detail, NoProbes, Outcome, Presence, Reason};
use crate::snapshot::{canonical, off_runtime, Snapshot, SnapshotError};

/// `X-Forwarded-For` headers longer than this (all of them together) are ignored.
pub const MAX_XFF: usize = 4096;
/// How often `ferry serve` checks the configuration file and local inventories for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How often `ferry serve` fetches remote inventories again.
pub const REMOTE_INVENTORY_INTERVAL: Duration = Duration::from_secs(60);
/// A client must send a request's headers within this time (slow-header clients are cut off).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// One counter per [`Outcome`] (index [`Outcome::index`]), resolved once.
    requests: Vec<ShardedCounter>,
    redirects: Family<RedirectLabels, ShardedCounter>,
    mirror_healthy: Family<MirrorLabels, Gauge>,
    presence_cache_entries: Gauge,
    access_log_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let request_family = Family::<RequestLabels, ShardedCounter>::default();
        let redirects = Family::<RedirectLabels, ShardedCounter>::default();
        registry.register("ferry_serve_requests", "Requests answered, by outcome", request_family.clone());
        registry.register(
            "ferry_serve_redirects",
            "Redirects sent, by outcome, mirror and client location label",
            redirects.clone(),
        );
        let mirror_healthy = Family::<MirrorLabels, Gauge>::default();
        let presence_cache_entries = Gauge::default();
        let access_log_dropped = Counter::default();
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
        registry.register(
            "ferry_serve_access_log_dropped",
            "Access-log lines dropped because the log output did not keep up",
            access_log_dropped.clone(),
        );
        let requests = Outcome::ALL
            .iter()
            .map(|o| request_family.get_or_create(&RequestLabels { outcome: o.as_str().into() }).clone())
            .collect();
        Metrics { registry, requests, redirects, mirror_healthy, presence_cache_entries, access_log_dropped }
    }
}

/// Redirect counters of one snapshot, one cell per (outcome and mirror, client label), each
/// resolved from the family the first time it is used: counting a redirect is then an index and
/// an atomic add, with no label `String`s built per request. Cells never used never appear on
/// `/metrics`.
#[derive(Default)]
pub(crate) struct RedirectCounters {
    /// Label count + 1 (column 0: no label).
    columns: usize,
    cells: Box<[OnceLock<ShardedCounter>]>,
}

impl RedirectCounters {
    /// Rows: one per mirror (outcome `mirror`), then `upstream`, `signatures`, `files`.
    fn new(snapshot: &Snapshot) -> RedirectCounters {
        let columns = snapshot.locator.labels().len() + 1;
        let rows = snapshot.mirrors.len() + 3;
        RedirectCounters { columns, cells: (0..rows * columns).map(|_| OnceLock::new()).collect() }
    }

    fn count(&self, metrics: &Metrics, snapshot: &Snapshot, decision: &Decision<'_>, label: Option<u32>) {
        let n = snapshot.mirrors.len();
        let row = match (decision.outcome, decision.mirror_index) {
            (Outcome::Mirror, Some(i)) => i,
            (Outcome::Upstream, _) => n,
            (Outcome::Signatures, _) => n + 1,
            (Outcome::Files, _) => n + 2,
            _ => return,
        };
        let column = label.map_or(0, |l| l as usize + 1);
        let labels = || RedirectLabels {
            outcome: decision.outcome.as_str().into(),
            mirror: decision.mirror.unwrap_or_default().into(),
            location: label.map(|l| &*snapshot.locator.labels()[l as usize]).unwrap_or_default().into(),
        };
        match self.cells.get(row * self.columns + column) {
            Some(cell) => cell.get_or_init(|| metrics.redirects.get_or_create(&labels()).clone()).inc(),
            None => metrics.redirects.get_or_create(&labels()).inc(),
        };
    }
}

impl Metrics {
    fn record(&self, snapshot: &Snapshot, decision: &Decision<'_>, label: Option<u32>) {
        self.requests[decision.outcome.index()].inc();
        if decision.outcome.is_redirect() {
            snapshot.redirect_counters.count(self, snapshot, decision, label);
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

/// What the handlers share: the current snapshot (swapped whole on reload), presence knowledge,
/// metrics and the access log.
pub struct AppState {
    snapshot: ArcSwap<Snapshot>,
    /// Used when there is no prober.
    presence: Arc<dyn Presence>,
    prober: Option<Arc<Prober>>,
    pub metrics: Metrics,
    access_log: AccessLog,
    /// Remote inventories fetched so far (kept across reloads).
    remote: RemoteInventories,
}

impl AppState {
    pub fn new(snapshot: Snapshot) -> AppState {
        AppState::with_presence(snapshot, Arc::new(NoProbes))
    }

    /// Routes with a fixed [`Presence`] (tests, or no probing at all).
    pub fn with_presence(snapshot: Snapshot, presence: Arc<dyn Presence>) -> AppState {
        let metrics = Metrics::default();
        let snapshot = ArcSwap::from_pointee(prepare(snapshot));
        AppState {
            snapshot,
            presence,
            prober: None,
            metrics,
            access_log: AccessLog::off(),
            remote: RemoteInventories::default(),
        }
    }

    /// Routes with live presence probing and health (start the health loop with
    /// [`Prober::start_health`]; until a mirror's first health probe passes, it is out).
    pub fn with_prober(snapshot: Snapshot, prober: Arc<Prober>) -> AppState {
        AppState { prober: Some(prober), ..AppState::new(snapshot) }
    }

    /// Uses the remote inventories fetched for the first snapshot.
    pub fn with_remote(self, remote: RemoteInventories) -> AppState {
        AppState { remote, ..self }
    }

    /// Logs every request (case 13) to `log`.
    pub fn with_access_log(self, log: AccessLog) -> AppState {
        AppState { access_log: log, ..self }
    }

    pub fn access_log(&self) -> &AccessLog {
        &self.access_log
    }

    /// The whole decision for a request, probing (within the budget) when there is a prober and
    /// a mirror without an inventory could serve it.
    pub async fn decide<'a>(
        &self,
        snapshot: &'a Snapshot,
        method: &str,
        path: &str,
        query: Option<&str>,
        label: Option<&'a str>,
        detail: Detail,
    ) -> Decision<'a> {
        if let (Some(prober), "GET" | "HEAD", true) = (&self.prober, method, snapshot.probes_presence) {
            if let Ok(request) = parse_request(path, query) {
                let known = prober.known(snapshot, &request, label).await;
                return route(snapshot, &request, label, &known, detail);
            }
        }
        let presence: &dyn Presence = match &self.prober {
            Some(prober) => &**prober,
            None => &*self.presence,
        };
        decide(snapshot, method, path, query, label, presence, detail)
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The snapshot in force, for the length of one synchronous answer: unlike
    /// [`AppState::snapshot`] it does not touch the `Arc`'s shared count, which would move
    /// between the worker threads' caches on every request.
    pub(crate) fn snapshot_guard(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Replaces the snapshot (atomically: a request sees the old or the new one, whole).
    pub fn store(&self, snapshot: Snapshot) {
        drop(self.swap(snapshot));
    }

    /// [`AppState::store`], returning the snapshot it replaced.
    fn swap(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        if let Some(prober) = &self.prober {
            prober.track(&snapshot);
        }
        self.snapshot.swap(Arc::new(prepare(snapshot)))
    }

    /// The remote inventories this server has fetched (to build its first snapshot with them).
    pub fn remote(&self) -> &RemoteInventories {
        &self.remote
    }

    /// Builds a whole new snapshot from `config_path` (remote inventories as last fetched, or
    /// fetched now if new); only if that succeeds is it swapped in. On error the old snapshot
    /// keeps serving and the error is returned (and logged).
    pub async fn reload(&self, config_path: &Path) -> Result<(), SnapshotError> {
        match Snapshot::load_fetching(config_path, &self.remote).await {
            Ok(new) => {
                tracing::info!(
                    target: "ferry_serve::reload",
                    config = %config_path.display(),
                    mirrors = new.mirrors.len(),
                    "configuration reloaded"
                );
                // Freeing a large inventory takes a while too: not on this runtime either.
                let old = self.swap(new);
                off_runtime(move || drop(old)).await;
                // Mirrors it adds are out of the routing until they answer: ask them now.
                if let Some(prober) = &self.prober {
                    prober.check_health(&self.snapshot()).await;
                }
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

    /// Fetches every remote inventory of the snapshot in force again; `true` if one changed. A
    /// failed fetch or a malformed inventory is logged and the previous version kept.
    pub async fn refresh_remote(&self) -> bool {
        let mut changed = false;
        for source in &self.snapshot().remote_sources {
            match self.remote.refresh(source).await {
                Ok(c) => changed |= c,
                Err(e) => tracing::warn!(
                    target: "ferry_serve::reload",
                    error = %e,
                    "inventory refresh failed; the previous version stays in force"
                ),
            }
        }
        changed
    }

    /// Whether this request can be answered without waiting: no presence probe can be needed,
    /// it is not for bytes Ferry serves itself, and not `/debug/route`.
    pub(crate) fn answers_at_once(&self, snapshot: &Snapshot, path: &str) -> bool {
        !(path == "/debug/route" || embedded::is_embedded(path) || (self.prober.is_some() && snapshot.probes_presence))
    }

    /// Cases 1-13 for one request, without waiting (see [`AppState::answers_at_once`]).
    fn answer_now(&self, snapshot: &Snapshot, peer: IpAddr, request: &Request<impl Sized>) -> Response<Body> {
        let (method, path, query) = (request.method(), request.uri().path(), request.uri().query());
        if let Some(response) = self.service_endpoint(snapshot, method, path) {
            return response;
        }
        respond(self.decide_now(snapshot, peer, method, (path, query), &forwarded_for(request.headers())))
    }

    /// The same as [`AppState::answer_now`], for requests that may wait.
    async fn answer_later(self: Arc<Self>, peer: IpAddr, request: Request<hyper::body::Incoming>) -> Response<Body> {
        let snapshot = self.snapshot();
        let (method, path, query) = (request.method(), request.uri().path(), request.uri().query());
        if let Some(response) = self.service_endpoint(&snapshot, method, path) {
            return response;
        }
        if path == "/debug/route" {
            return match *method {
                Method::GET | Method::HEAD => debug_route(&self, &snapshot, query.unwrap_or("")).await,
                _ => method_not_allowed(),
            };
        }
        let client = client_address(&snapshot, peer, request.headers());
        let label_id = snapshot.locator.locate_id(client);
        let label = label_id.map(|l| &*snapshot.locator.labels()[l as usize]);
        if embedded::is_embedded(path) {
            let (outcome, status, response) = match (method, embedded::parse(path)) {
                (&Method::GET | &Method::HEAD, Ok(object)) => {
                    embedded::serve(&snapshot, &object, request.headers()).await
                }
                (&Method::GET | &Method::HEAD, Err(reject)) => {
                    let d = reject_decision(reject);
                    let status = d.status;
                    let outcome = d.outcome;
                    let r = respond(d);
                    (outcome, status, r)
                }
                _ => (Outcome::MethodNotAllowed, 405, method_not_allowed()),
            };
            self.metrics.requests[outcome.index()].inc();
            self.access_log.log(&Entry {
                method,
                path,
                client,
                peer,
                label,
                status,
                outcome: outcome.as_str(),
                mirror: None,
                location: None,
                reason: &Reason::Text("mirror content served by Ferry (case 3a)"),
            });
            return response;
        }
        let decision = self.decide(&snapshot, method.as_str(), path, query, label, Detail::Lean).await;
        self.record(&snapshot, method, path, peer, client, label_id, &decision);
        respond(decision)
    }

    /// Service endpoints (case 3) but `/debug/route`.
    fn service_endpoint(&self, snapshot: &Snapshot, method: &Method, path: &str) -> Option<Response<Body>> {
        if !matches!(path, "/healthz" | "/metrics") {
            return None;
        }
        if method != Method::GET && method != Method::HEAD {
            return Some(method_not_allowed());
        }
        Some(if path == "/healthz" {
            text(StatusCode::OK, "ok")
        } else {
            if let Some(prober) = &self.prober {
                self.metrics.observe(prober, snapshot);
            }
            self.metrics
                .access_log_dropped
                .inner()
                .store(self.access_log.dropped(), std::sync::atomic::Ordering::Relaxed);
            let mut r = Response::new(Body::from(self.metrics.encode()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            r
        })
    }

    /// Case 13: the access-log line and the metrics of one answered request.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        snapshot: &Snapshot,
        method: &Method,
        path: &str,
        peer: IpAddr,
        client: IpAddr,
        label_id: Option<u32>,
        decision: &Decision<'_>,
    ) {
        let label = label_id.map(|l| &*snapshot.locator.labels()[l as usize]);
        self.metrics.record(snapshot, decision, label_id);
        self.access_log.log(&Entry {
            method,
            path,
            client,
            peer,
            label,
            status: decision.status,
            outcome: decision.outcome.as_str(),
            mirror: decision.mirror,
            location: decision.location.as_deref(),
            reason: &decision.reason,
        });
    }

    /// The decision of [`AppState::answer_now`] from a request's parts (also the lean path's,
    /// `lean.rs`), already logged and counted. Only for a `path` that
    /// [`AppState::answers_at_once`] and that is not a service endpoint.
    pub(crate) fn decide_now<'s>(
        &self,
        snapshot: &'s Snapshot,
        peer: IpAddr,
        method: &Method,
        target: (&str, Option<&str>),
        forwarded_for: &[&[u8]],
    ) -> Decision<'s> {
        let (path, query) = target;
        let client = client_address_from(snapshot, peer, forwarded_for);
        let label_id = snapshot.locator.locate_id(client);
        let label = label_id.map(|l| &*snapshot.locator.labels()[l as usize]);
        let presence: &dyn Presence = match &self.prober {
            Some(prober) => &**prober,
            None => &*self.presence,
        };
        let decision = decide(snapshot, method.as_str(), path, query, label, presence, Detail::Lean);
        self.record(snapshot, method, path, peer, client, label_id, &decision);
        decision
    }
}

/// Per-snapshot state derived once, when it is put in force.
fn prepare(mut snapshot: Snapshot) -> Snapshot {
    snapshot.redirect_counters = RedirectCounters::new(&snapshot);
    snapshot
}

/// Modification time and length of each watched file (missing files count as `None`).
fn fingerprint(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))
        .collect()
}

/// Polls the configuration file and every local inventory every `interval`, and fetches the
/// remote inventories again every `remote_interval`; on a change, calls [`AppState::reload`]. A
/// refused configuration is not retried until the files change again.
pub fn spawn_reloader(
    state: Arc<AppState>,
    config_path: PathBuf,
    interval: Duration,
    remote_interval: Duration,
) -> tokio::task::JoinHandle<()> {
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
        let mut next_remote = tokio::time::Instant::now() + remote_interval;
        loop {
            tokio::time::sleep(interval).await;
            let mut changed = fingerprint(&paths) != seen;
            if tokio::time::Instant::now() >= next_remote {
                changed |= state.refresh_remote().await;
                next_remote = tokio::time::Instant::now() + remote_interval;
            }
            if !changed {
                continue;
            }
            let _ = state.reload(&config_path).await;
            // Watch what the snapshot now in force names (the new one, or the old one if refused).
            paths = watched(&state);
            seen = fingerprint(&paths);
        }
    })
}

/// One client connection: the hyper service, and what the lean path (`lean.rs`) needs.
pub(crate) struct Connection {
    pub(crate) state: Arc<AppState>,
    /// The peer's address, canonical (IPv4-mapped IPv6 as IPv4).
    pub(crate) peer: IpAddr,
}

/// The response future: ready at once (the hot path), or boxed (requests that wait).
pub(crate) enum Answer {
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
        let snapshot = self.state.snapshot.load();
        if self.state.answers_at_once(&snapshot, request.uri().path()) {
            Answer::Ready(Some(self.state.answer_now(&snapshot, self.peer, &request)))
        } else {
            Answer::Later(Box::pin(self.state.clone().answer_later(self.peer, request)))
        }
    }
}

/// Serves HTTP/1.1 on `listener` until the future is dropped, on the current runtime: one task
/// per connection (see [`serve_connection`]), at most `max_connections` at once.
pub async fn run(listener: tokio::net::TcpListener, state: Arc<AppState>) {
    let http = connection_builder();
    let acceptor = Acceptor::new(listener, state.snapshot().max_connections);
    loop {
        let (stream, peer, permit) = acceptor.accept().await;
        let connection = serve_connection(&http, stream, peer, &state);
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}

/// Accepts connections, at most a fixed number open at once: past it, new connections wait in
/// the kernel's listen queue until one closes, instead of each holding memory here.
pub(crate) struct Acceptor {
    listener: tokio::net::TcpListener,
    open: Arc<tokio::sync::Semaphore>,
}

/// One open connection's place under `max_connections`; dropped when the connection closes.
pub(crate) type ConnectionPermit = tokio::sync::OwnedSemaphorePermit;

impl Acceptor {
    pub(crate) fn new(listener: tokio::net::TcpListener, max_connections: usize) -> Acceptor {
        Acceptor { listener, open: Arc::new(tokio::sync::Semaphore::new(max_connections)) }
    }

    /// The next connection, once fewer than `max_connections` are open. Failures (out of file
    /// descriptors and the like) are logged and retried after a pause rather than in a spin.
    pub(crate) async fn accept(&self) -> (tokio::net::TcpStream, std::net::SocketAddr, ConnectionPermit) {
        let permit = self.open.clone().acquire_owned().await.expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => return (stream, peer, permit),
                Err(e) => {
                    tracing::warn!(target: "ferry_serve", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// HTTP/1.1 with keep-alive; request headers must arrive within [`HEADER_READ_TIMEOUT`] and be
/// at most `lean::MAX_HEAD` long.
pub(crate) fn connection_builder() -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(crate::lean::MAX_HEAD);
    http
}

/// Serves one connection until the client closes it: the lean path while it can (`lean.rs`),
/// then hyper.
pub(crate) fn serve_connection(
    http: &hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    state: &Arc<AppState>,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let connection = Connection { state: state.clone(), peer: canonical(peer.ip()) };
    crate::lean::serve(stream, connection, http.clone())
}

/// Runs `ferry serve`: [`start`]s the server on the configured `listen` address and serves until
/// SIGINT or SIGTERM, then writes the access-log lines still pending and returns.
pub async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let server = start(config_path, None).await?;
    tracing::info!(target: "ferry_serve", listen = %server.address, workers = server.workers, "serving");
    tokio::select! {
        () = shutdown_signal() => {}
        started = server.serving => started.context("serving task failed")?.context("starting the serving threads")?,
    }
    tracing::info!(target: "ferry_serve", "shutting down");
    server.state.access_log.flush();
    Ok(())
}

/// A server [`start`]ed: what `ferry serve` runs, and what tests drive.
pub struct Server {
    pub state: Arc<AppState>,
    /// Where it accepts connections.
    pub address: std::net::SocketAddr,
    /// Serving threads.
    pub workers: usize,
    /// The acceptor; it ends only if the serving threads cannot be started.
    pub serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts everything `ferry serve` runs: loads the configuration (failing if it is invalid),
/// reloads it when it or an inventory changes (checked every 5 s), probes mirror presence and
/// health, logs each request to stdout (unless `FERRY_LOG` filters `ferry_serve::access` out),
/// and accepts on `listener` (else on the configuration's `listen` address).
///
/// Requests are served like nginx's workers, on one thread per core, each with its own
/// single-threaded runtime, so a request never crosses threads (see [`crate::workers`]).
/// Accepting, reload and probing run on the caller's runtime.
pub async fn start(config_path: PathBuf, listener: Option<tokio::net::TcpListener>) -> anyhow::Result<Server> {
    let remote = RemoteInventories::default();
    let snapshot = Snapshot::load_fetching(&config_path, &remote).await?;
    let listen = snapshot.listen;
    let prober = Prober::new(ProbeSettings::default());
    let log = if tracing::enabled!(target: "ferry_serve::access", tracing::Level::INFO) {
        AccessLog::stdout()
    } else {
        AccessLog::off()
    };
    let state = Arc::new(AppState::with_prober(snapshot, prober.clone()).with_access_log(log).with_remote(remote));
    prober.start_health(state.clone()).await;
    spawn_reloader(state.clone(), config_path, RELOAD_INTERVAL, REMOTE_INVENTORY_INTERVAL);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listener = match listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?,
    };
    let address = listener.local_addr().context("the listening address")?;
    let serving = tokio::spawn(crate::workers::serve_on_workers(listener, state.clone(), workers));
    Ok(Server { state, address, workers, serving })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { term.as_mut()?.recv().await } => {}
    }
}

/// Case 12: the client address. The TCP peer, unless it is a trusted proxy: then the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (the left-most if all are). A
/// malformed or oversized header is ignored (the peer is used). One pass, right to left, with no
/// allocation: the answer is kept while the rest of the list is still checked.
pub fn client_address(snapshot: &Snapshot, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    client_address_from(snapshot, peer, &forwarded_for(headers))
}

/// The raw values of the `X-Forwarded-For` headers, in order.
fn forwarded_for(headers: &HeaderMap) -> Vec<&[u8]> {
    headers.get_all("x-forwarded-for").iter().map(HeaderValue::as_bytes).collect()
}

/// [`client_address`] from the raw values of the request's `X-Forwarded-For` headers, in order.
pub(crate) fn client_address_from(snapshot: &Snapshot, peer: IpAddr, forwarded_for: &[&[u8]]) -> IpAddr {
    let peer = canonical(peer);
    if !snapshot.is_trusted_proxy(peer) {
        return peer;
    }
    if forwarded_for.iter().map(|v| v.len()).sum::<usize>() > MAX_XFF {
        return peer;
    }
    let (mut answer, mut leftmost) = (None, None);
    for value in forwarded_for.iter().rev() {
        for entry in value.rsplit(|&b| b == b',') {
            let Some(ip) = parse_ip(entry.trim_ascii()) else { return peer };
            let ip = canonical(ip);
            if answer.is_none() && !snapshot.is_trusted_proxy(ip) {
                answer = Some(ip);
            }
            leftmost = Some(ip);
        }
    }
    answer.or(leftmost).unwrap_or(peer)
}

/// An IP address as the standard library parses it. Dotted IPv4, nearly every client, is
/// parsed here directly from the bytes (the standard parser costs as much again as the whole
/// address lookup); it accepts exactly what `Ipv4Addr::from_str` accepts (test
/// `ipv4_parsing_matches_the_standard_library`).
fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    match parse_ipv4(text) {
        Some(v4) => Some(IpAddr::V4(v4)),
        // Whatever else the standard parser accepts has a ':' (IPv6), so the rest is refused.
        None if text.contains(&b':') => std::str::from_utf8(text).ok()?.parse().ok(),
        None => None,
    }
}

/// Four decimal octets separated by `.`, each 0-255 in at most three digits, none with a
/// leading zero but `0` itself. One pass over the bytes.
fn parse_ipv4(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let (mut octets, mut at) = ([0u8; 4], 0);
    let (mut value, mut digits) = (0u16, 0);
    for &b in text {
        match b {
            b'0'..=b'9' if digits < 3 && !(digits == 1 && value == 0) => {
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && at < 3 => {
                octets[at] = u8::try_from(value).ok()?;
                (at, value, digits) = (at + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || at != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(std::net::Ipv4Addr::from(octets))
}

fn text(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn method_not_allowed() -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// The response for a decision; the `Location` header takes the decision's `String` as it is.
fn respond(decision: Decision<'_>) -> Response<Body> {
    match decision.outcome {
        Outcome::MethodNotAllowed => method_not_allowed(),
        Outcome::Ok => {
            let mut r = Response::new(Body::empty());
            r.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
            r
        }
        _ if decision.status == 307 => {
            let location = decision.location.map(|l| HeaderValue::from_maybe_shared(bytes::Bytes::from(l)));
            match location {
                Some(Ok(l)) => {
                    let mut r = Response::new(Body::empty());
                    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
                    r.headers_mut().insert(header::LOCATION, l);
                    r
                }
                _ => {
                    tracing::error!(target: "ferry_serve", "unusable Location");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                }
            }
        }
        _ => {
            let status = StatusCode::from_u16(decision.status).unwrap_or(StatusCode::BAD_REQUEST);
            text(status, format!("{}\n", decision.reason))
        }
    }
}

/// `/debug/route?ip=ADDR&digest=D[&name=REPO]` or `?ip=ADDR&path=P`.
async fn debug_route(state: &AppState, snapshot: &Snapshot, query: &str) -> Response<Body> {
    let bad = |m: &str| text(StatusCode::BAD_REQUEST, format!("{m}\n"));
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
    let decision = state.decide(snapshot, "GET", &request_path, None, label, Detail::Explain).await;
    let body = serde_json::json!({ "ip": ip, "label": label, "path": request_path, "decision": decision });
    let mut r = Response::new(Body::from(body.to_string()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
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
        (dir, Arc::new(AppState::new(snapshot)))
    }

    async fn start(state: Arc<AppState>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(run(listener, state));
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

    #[test]
    fn ipv4_parsing_matches_the_standard_library() {
        let std_v4 = |t: &[u8]| std::str::from_utf8(t).unwrap().parse::<std::net::Ipv4Addr>().ok();
        // Every string of up to 7 characters from "0129." (leading zeros, empty and extra
        // octets, too many dots), then random strings of digits and dots up to 17 long.
        let alphabet = b"0129.";
        let mut strings: Vec<Vec<u8>> = vec![vec![]];
        let mut all = vec![];
        for _ in 0..7 {
            strings = strings.iter().flat_map(|s| alphabet.iter().map(move |&c| [&s[..], &[c]].concat())).collect();
            all.extend(strings.iter().cloned());
        }
        let random = ferry_testkit::images::random_bytes(12, 200_000 * 18);
        for bytes in random.chunks(18) {
            let len = usize::from(bytes[0]) % 18;
            all.push(bytes[1..=len].iter().map(|&b| b"0123456789.."[usize::from(b) % 12]).collect());
        }
        for octets in [[0, 0, 0, 0], [255, 255, 255, 255], [3, 128, 0, 5], [10, 0, 100, 9], [1, 20, 255, 0]] {
            all.push(std::net::Ipv4Addr::from(octets).to_string().into_bytes());
        }
        for text in &all {
            assert_eq!(parse_ipv4(text), std_v4(text), "{:?}", String::from_utf8_lossy(text));
            assert_eq!(parse_ip(text), std::str::from_utf8(text).unwrap().parse().ok());
        }
        for text in ["01.2.3.4", "1.2.3.04", "00.1.1.1", "1.2.3.256", "1.2.3.999", "1..2.3", ".1.2.3.4", "1.2.3.0"] {
            assert_eq!(parse_ipv4(text.as_bytes()), text.parse().ok(), "{text:?}");
        }
        for text in ["2001:db8::1", "::ffff:1.2.3.4", "1.2.3.4 ", "x", "256.1.1.1", "1.2.3.4.", "", "1.2.3.4:80"] {
            assert_eq!(parse_ip(text.as_bytes()), text.parse().ok(), "{text:?}");
        }
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
        // Over MAX_XFF (but within the 32 KiB head limit): no panic; the peer is used.
        let huge = vec!["198.51.100.1"; 1000].join(", ");
        let r = c.get(&blob).header("x-forwarded-for", huge).send().await.unwrap();
        assert_eq!(location(&r), Some(&*format!("https://east.example/b/{D1}")));
        let r = c.get(&blob).header("x-junk", "a".repeat(200_000)).send().await.unwrap();
        assert!(r.status() == 307 || r.status() == 431, "{}", r.status());
        assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    }

    /// Collects everything written into one buffer.
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

    #[tokio::test]
    async fn case_13_access_log_is_structured_json() {
        let buffer = Buffer::default();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n/bin/kubectl\n")).unwrap();
        std::fs::write(dir.path().join("ferry.yaml"), config_text("[]")).unwrap();
        let snapshot = Snapshot::load(&dir.path().join("ferry.yaml")).unwrap();
        let log = AccessLog::to_writer(Box::new(buffer.clone()));
        let state = Arc::new(AppState::new(snapshot).with_access_log(log));
        let base = start(state.clone()).await;
        let c = client();
        c.get(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
        c.get(format!("{base}/v2/a/blobs/{D2}")).send().await.unwrap();
        c.post(format!("{base}/bin/x")).send().await.unwrap();
        assert_eq!(raw_get(&base, "/bin/%22x").await.0, 400);
        c.get(format!("{base}/healthz")).send().await.unwrap();
        state.access_log().flush();
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4, "one line per request, service endpoints excepted: {text}");
        let f = &lines[0]["fields"];
        assert_eq!(lines[0]["target"], "ferry_serve::access");
        assert_eq!(f["status"], 307);
        assert_eq!(f["outcome"], "mirror");
        assert_eq!(f["mirror"], "east");
        assert_eq!(f["label"], "aws:us-east-2");
        assert_eq!(f["client"], "127.0.0.1");
        assert_eq!(f["peer"], "127.0.0.1");
        assert_eq!(f["method"], "GET");
        assert_eq!(f["location"], format!("https://east.example/b/{D1}"));
        assert!(f["reason"].as_str().unwrap().contains("exact match"), "{f}");
        let f = &lines[1]["fields"];
        assert_eq!((&f["outcome"], &f["mirror"]), (&"upstream".into(), &"".into()));
        assert_eq!(f["reason"], "no eligible mirror (1 considered)");
        assert_eq!((&lines[2]["fields"]["status"], &lines[2]["fields"]["method"]), (&405.into(), &"POST".into()));
        assert_eq!(lines[3]["fields"]["path"], "/bin/%22x");
        assert_eq!(lines[3]["fields"]["status"], 400);
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
        let e = state.reload(&cfg).await.unwrap_err();
        assert!(e.to_string().contains("inv.txt:3"), "{e}");
        assert_eq!(
            location(&c.get(&blob).send().await.unwrap()),
            Some(&*format!("https://reg.example/v2/proj/a/blobs/{D2}"))
        );
        // A bad config: refused too.
        std::fs::write(&cfg, "upstream: {registry: ftp://x}\n").unwrap();
        assert!(state.reload(&cfg).await.unwrap_err().to_string().starts_with("upstream.registry"));
        // Good again (inventory now lists D2): the new snapshot serves, located by its own config.
        std::fs::write(&cfg, config_text("[]")).unwrap();
        std::fs::write(dir.path().join("inv.txt"), format!("{D2}\n")).unwrap();
        state.reload(&cfg).await.unwrap();
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
        let base = start(Arc::new(AppState::new(Snapshot::load(&dir.path().join("ferry.yaml")).unwrap()))).await;
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
        let handle = spawn_reloader(
            state.clone(),
            dir.path().join("ferry.yaml"),
            Duration::from_millis(20),
            Duration::from_secs(3600),
        );
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
