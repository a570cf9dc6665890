//! The request handler, top to bottom: service endpoints (case 3), local-folder content (case 3a),
//! then the client (case 12), the decision (cases 1-11, `route.rs`), its access-log line and
//! metrics (case 13) and the response. Read with `docs/request-handling.md`.
//!
//! A redirect whose mirrors all have inventories (or are local folders) is answered
//! synchronously, from a borrowed snapshot: no task, no future to box, no `Arc` count touched, and
//! no allocation but the `Location` and the response itself. Only requests that may wait (presence
//! probes, file bytes, `/debug/route`) take the asynchronous path.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::access_log::{AccessLog, Entry};
use crate::client::{client_address, client_address_from, forwarded_for};
use crate::decision::{Decision, Detail, Outcome, Reason};
use crate::drain::Drain;
use crate::limit::ClientTable;
use crate::local_content;
use crate::metrics::{Metrics, RedirectCounters};
use crate::presence::{NoProbes, Presence};
use crate::probe::Prober;
use crate::proxy::{self, is_proxied, Proxy};
use crate::remote_inventory::RemoteInventories;
use crate::render::{method_not_allowed, respond, text};
use crate::request::{is_reserved, parse_request, Resource, RouteRequest};
use crate::route::{decide, reject_decision, route};
use crate::snapshot::Snapshot;

/// The endpoints answered before any routing (case 3), `/debug/route` aside: liveness,
/// readiness and metrics.
pub(crate) fn is_service_endpoint(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// What the handlers share: the current snapshot (swapped whole on reload), presence knowledge,
/// metrics and the access log.
pub struct AppState {
    snapshot: ArcSwap<InForce>,
    /// Used when there is no prober.
    presence: Arc<dyn Presence>,
    pub(crate) prober: Option<Arc<Prober>>,
    /// The Prometheus metrics every answered request updates.
    pub metrics: Metrics,
    access_log: AccessLog,
    /// Remote inventories fetched so far (kept across reloads).
    pub(crate) remote: RemoteInventories,
    /// Whether the server is stopping, and the connections still open.
    pub drain: Arc<Drain>,
    /// The clients counted by the per-client rate limit (allocated when first needed; kept
    /// across reloads).
    clients: std::sync::OnceLock<ClientTable>,
    /// HTTPS: the TLS acceptor every new connection goes through (`None`: plain HTTP).
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Proxy mode's HTTP client and stream permits (`proxy_max_streams` of the first snapshot).
    proxy: Proxy,
}

impl AppState {
    /// Routes `snapshot` without probing: every mirror counts as healthy, and one without an
    /// inventory or a local folder is never chosen. No access log.
    pub fn new(snapshot: Snapshot) -> AppState {
        AppState::with_presence(snapshot, Arc::new(NoProbes))
    }

    /// Routes with a fixed [`Presence`] (tests, or no probing at all).
    pub fn with_presence(snapshot: Snapshot, presence: Arc<dyn Presence>) -> AppState {
        let metrics = Metrics::default();
        let proxy = Proxy::new(snapshot.proxy_max_streams);
        let snapshot = ArcSwap::from_pointee(InForce::new(snapshot));
        AppState {
            snapshot,
            presence,
            prober: None,
            metrics,
            access_log: AccessLog::off(),
            remote: RemoteInventories::default(),
            drain: Arc::default(),
            clients: std::sync::OnceLock::new(),
            tls: None,
            proxy,
        }
    }

    /// Routes with live presence probing and health (start the health loop with
    /// [`AppState::start_health`]; until a mirror's first health probe passes, it is out).
    pub fn with_prober(snapshot: Snapshot, prober: Arc<Prober>) -> AppState {
        AppState { prober: Some(prober), ..AppState::new(snapshot) }
    }

    /// Probes every mirror of the snapshot in force once (so none is routed to before it has
    /// answered), then again every `health_interval` in the background. Rounds start on that
    /// fixed schedule whatever they take (a hung mirror holds a round up to the probe timeout),
    /// which is what bounds how long a failed mirror stays in the routing (docs/serve.md,
    /// "Bounds"). Without a prober there is nothing to probe.
    pub async fn start_health(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let Some(prober) = self.prober.clone() else { return tokio::spawn(async {}) };
        let mut rounds = tokio::time::interval(prober.settings().health_interval);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rounds.tick().await; // the first tick is now
        prober.check_health(&self.snapshot()).await;
        let state = self.clone();
        tokio::spawn(async move {
            loop {
                rounds.tick().await;
                prober.check_health(&state.snapshot()).await;
            }
        })
    }

    /// Uses the remote inventories fetched for the first snapshot.
    pub fn with_remote(self, remote: RemoteInventories) -> AppState {
        AppState { remote, ..self }
    }

    /// Serves HTTPS with `certificates` (see `tls.rs`).
    pub fn with_tls(self, certificates: &Arc<crate::tls::Certificates>) -> AppState {
        AppState { tls: Some(tokio_rustls::TlsAcceptor::from(certificates.server_config())), ..self }
    }

    /// Logs every request (case 13) to `log`.
    pub fn with_access_log(self, log: AccessLog) -> AppState {
        AppState { access_log: log, ..self }
    }

    /// The access log requests are written to ([`AccessLog::off`] unless one was given).
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
    pub fn snapshot(&self) -> Arc<InForce> {
        self.snapshot.load_full()
    }

    /// The snapshot in force, for the length of one synchronous answer: unlike
    /// [`AppState::snapshot`] it does not touch the `Arc`'s shared count, which would move
    /// between the worker threads' caches on every request.
    pub(crate) fn snapshot_guard(&self) -> arc_swap::Guard<Arc<InForce>> {
        self.snapshot.load()
    }

    /// Replaces the snapshot (atomically: a request sees the old or the new one, whole).
    pub fn store(&self, snapshot: Snapshot) {
        drop(self.swap(snapshot));
    }

    /// [`AppState::store`], returning the snapshot it replaced.
    pub(crate) fn swap(&self, mut snapshot: Snapshot) -> Arc<InForce> {
        // Mirror copies withdrawn for bad bytes stay withdrawn.
        snapshot.withdrawn = self.snapshot.load().withdrawn.clone();
        if let Some(prober) = &self.prober {
            prober.track(&snapshot);
        }
        self.snapshot.swap(Arc::new(InForce::new(snapshot)))
    }

    /// The remote inventories this server has fetched (to build its first snapshot with them).
    pub fn remote(&self) -> &RemoteInventories {
        &self.remote
    }

    /// Whether this request can be answered without waiting: no presence probe can be needed,
    /// it is not for bytes Ferry serves itself, and not `/debug/route`.
    pub(crate) fn answers_at_once(&self, snapshot: &Snapshot, path: &str) -> bool {
        !(path == "/debug/route" || is_reserved(path) || (self.prober.is_some() && snapshot.probes_presence))
    }

    /// Cases 1-13 for one request, without waiting (see [`AppState::answers_at_once`]).
    pub(crate) fn answer_now(&self, snapshot: &InForce, peer: IpAddr, request: &Request<impl Sized>) -> Response<Body> {
        let (method, path, query) = (request.method(), request.uri().path(), request.uri().query());
        if let Some(response) = self.service_endpoint(snapshot, method, path) {
            return response;
        }
        match self.decide_now(snapshot, peer, method, (path, query), &forwarded_for(request.headers())) {
            Some(decision) => respond(decision),
            // Not reached: a snapshot that proxies is answered by `answer_later` on this path.
            None => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
        }
    }

    /// The same as [`AppState::answer_now`], for requests that may wait.
    pub(crate) async fn answer_later(
        self: Arc<Self>,
        peer: IpAddr,
        request: Request<hyper::body::Incoming>,
    ) -> Response<Body> {
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
        if let Some(limited) = self.limit(&snapshot, client, label) {
            self.record(&snapshot, method, path, peer, client, label_id, &limited);
            return respond(limited);
        }
        if is_reserved(path) {
            let (outcome, status, response) = match (method, local_content::parse(path)) {
                (&Method::GET | &Method::HEAD, Ok(object)) => {
                    local_content::answer(&snapshot, &object, request.headers()).await
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
            self.metrics.count_request(outcome);
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
        if snapshot.proxies && is_proxied(&snapshot, client, label, &decision) {
            let blob = match parse_request(path, query) {
                Ok(RouteRequest { resource: Resource::Blob { digest, .. }, .. }) => Some(digest),
                _ => None,
            };
            let counters = self.metrics.proxy.clone();
            let (status, outcome, response) =
                proxy::stream(&self.proxy, &snapshot, &decision, method, request.headers(), blob, counters).await;
            let answered = Decision { status, outcome, ..decision };
            self.record(&snapshot, method, path, peer, client, label_id, &answered);
            return response;
        }
        self.record(&snapshot, method, path, peer, client, label_id, &decision);
        respond(decision)
    }

    /// Case 12a: the `429` for a client over its per-client rate limit; `None` within it, when
    /// exempt, or when there is no limit.
    fn limit<'a>(&self, snapshot: &Snapshot, client: IpAddr, label: Option<&str>) -> Option<Decision<'a>> {
        let limits = snapshot.limits.as_ref()?;
        if limits.exempts(client, label) {
            return None;
        }
        let clients = self.clients.get_or_init(ClientTable::default);
        let retry_after = clients.check(client, limits.rate, std::time::Instant::now()).err()?;
        Some(Decision::answer(429, Outcome::Limited, Reason::Limited { retry_after }))
    }

    /// Service endpoints (case 3) but `/debug/route`.
    fn service_endpoint(&self, snapshot: &Snapshot, method: &Method, path: &str) -> Option<Response<Body>> {
        if !is_service_endpoint(path) {
            return None;
        }
        if method != Method::GET && method != Method::HEAD {
            return Some(method_not_allowed());
        }
        Some(if path == "/healthz" {
            text(StatusCode::OK, "ok")
        } else if path == "/readyz" {
            match self.drain.is_draining() {
                false => text(StatusCode::OK, "ready"),
                true => text(StatusCode::SERVICE_UNAVAILABLE, "stopping"),
            }
        } else {
            if let Some(prober) = &self.prober {
                self.metrics.observe(prober, snapshot);
            }
            self.metrics.set_access_log_dropped(self.access_log.dropped());
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
        snapshot: &InForce,
        method: &Method,
        path: &str,
        peer: IpAddr,
        client: IpAddr,
        label_id: Option<u32>,
        decision: &Decision<'_>,
    ) {
        let label = label_id.map(|l| &*snapshot.locator.labels()[l as usize]);
        self.metrics.record(&snapshot.redirects, snapshot, decision, label_id, method == Method::GET);
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
    /// [`AppState::answers_at_once`] and that is not a service endpoint. `None` (nothing logged
    /// or counted) when the answer is to be proxied, which takes the asynchronous path.
    pub(crate) fn decide_now<'s>(
        &self,
        snapshot: &'s InForce,
        peer: IpAddr,
        method: &Method,
        target: (&str, Option<&str>),
        forwarded_for: &[&[u8]],
    ) -> Option<Decision<'s>> {
        let (path, query) = target;
        let client = client_address_from(snapshot, peer, forwarded_for);
        let label_id = snapshot.locator.locate_id(client);
        let label = label_id.map(|l| &*snapshot.locator.labels()[l as usize]);
        let presence: &dyn Presence = match &self.prober {
            Some(prober) => &**prober,
            None => &*self.presence,
        };
        if snapshot.proxies {
            // Decided first (the rate limit is then counted once, on the path that answers).
            let decision = decide(snapshot, method.as_str(), path, query, label, presence, Detail::Lean);
            if is_proxied(snapshot, client, label, &decision) {
                return None;
            }
            if let Some(limited) = self.limit(snapshot, client, label) {
                self.record(snapshot, method, path, peer, client, label_id, &limited);
                return Some(limited);
            }
            self.record(snapshot, method, path, peer, client, label_id, &decision);
            return Some(decision);
        }
        if let Some(limited) = self.limit(snapshot, client, label) {
            self.record(snapshot, method, path, peer, client, label_id, &limited);
            return Some(limited);
        }
        let decision = decide(snapshot, method.as_str(), path, query, label, presence, Detail::Lean);
        self.record(snapshot, method, path, peer, client, label_id, &decision);
        Some(decision)
    }
}

/// The snapshot in force with the metrics state that belongs to it (its redirect counter
/// cells): swapped together, so a request counts into the cells of the snapshot it was decided
/// with. Reads as the [`Snapshot`] itself.
pub struct InForce {
    snapshot: Snapshot,
    redirects: RedirectCounters,
}

impl InForce {
    fn new(snapshot: Snapshot) -> InForce {
        InForce { redirects: RedirectCounters::new(&snapshot), snapshot }
    }
}

impl std::ops::Deref for InForce {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.snapshot
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
    let ip = ip.to_canonical();
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
