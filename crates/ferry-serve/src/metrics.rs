//! Prometheus metrics of the server: requests by outcome, redirects by outcome, mirror and client
//! location (counted through cells resolved once per snapshot), mirror health, the presence
//! cache and dropped access-log lines.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::counter::ShardedCounter;
use crate::decision::{Decision, Outcome};
use crate::probe::Prober;
use crate::snapshot::Snapshot;

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
    redirected_bytes: Family<RedirectLabels, ShardedCounter>,
    mirror_healthy: Family<MirrorLabels, Gauge>,
    presence_cache_entries: Gauge,
    access_log_dropped: Counter,
    /// Proxy mode: body bytes streamed from origins, and blobs whose bytes did not match.
    pub(crate) proxy: crate::proxy::ProxyCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let request_family = Family::<RequestLabels, ShardedCounter>::default();
        let redirects = Family::<RedirectLabels, ShardedCounter>::default();
        let redirected_bytes = Family::<RedirectLabels, ShardedCounter>::default();
        registry.register("ferry_serve_requests", "Requests answered, by outcome", request_family.clone());
        registry.register(
            "ferry_serve_redirects",
            "Redirects sent, by outcome, mirror and client location label",
            redirects.clone(),
        );
        registry.register(
            "ferry_serve_redirected_bytes",
            "Bytes of the blobs and files redirected by GET, by outcome, mirror and client location label (sizes from the inventories; objects no inventory sizes count none)",
            redirected_bytes.clone(),
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
        let proxy = crate::proxy::ProxyCounters { bytes: Counter::default(), mismatches: Counter::default() };
        registry.register(
            "ferry_serve_proxied_bytes",
            "Body bytes Ferry streamed from origins in proxy mode (requests: outcome proxied)",
            proxy.bytes.clone(),
        );
        registry.register(
            "ferry_serve_proxy_digest_mismatches",
            "Proxied blobs whose bytes did not match their digest (connection aborted, mirror copy withdrawn)",
            proxy.mismatches.clone(),
        );
        let requests = Outcome::ALL
            .iter()
            .map(|o| request_family.get_or_create(&RequestLabels { outcome: o.as_str().into() }).clone())
            .collect();
        Metrics {
            registry,
            requests,
            redirects,
            redirected_bytes,
            mirror_healthy,
            presence_cache_entries,
            access_log_dropped,
            proxy,
        }
    }
}

/// Redirect counters of one snapshot, one cell per (outcome and mirror, client label), each
/// resolved from the family the first time it is used: counting a redirect is then an index and
/// an atomic add, with no label `String`s built per request. Cells never used never appear on
/// `/metrics`. The same cells again for the bytes redirected.
pub(crate) struct RedirectCounters {
    /// Label count + 1 (column 0: no label).
    columns: usize,
    cells: Box<[OnceLock<ShardedCounter>]>,
    bytes: Box<[OnceLock<ShardedCounter>]>,
}

impl RedirectCounters {
    /// Rows: one per mirror (outcome `mirror`), then `upstream`, `signatures`, `files`.
    pub(crate) fn new(snapshot: &Snapshot) -> RedirectCounters {
        let columns = snapshot.locator.labels().len() + 1;
        let rows = snapshot.mirrors.len() + 3;
        let cells = || (0..rows * columns).map(|_| OnceLock::new()).collect();
        RedirectCounters { columns, cells: cells(), bytes: cells() }
    }

    /// Counts one redirect, and `bytes` redirected when given.
    fn count(
        &self,
        metrics: &Metrics,
        snapshot: &Snapshot,
        decision: &Decision<'_>,
        label: Option<u32>,
        bytes: Option<u64>,
    ) {
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
        let cell = row * self.columns + column;
        match self.cells.get(cell) {
            Some(c) => c.get_or_init(|| metrics.redirects.get_or_create(&labels()).clone()).inc(),
            None => metrics.redirects.get_or_create(&labels()).inc(),
        };
        if let Some(bytes) = bytes {
            match self.bytes.get(cell) {
                Some(c) => c.get_or_init(|| metrics.redirected_bytes.get_or_create(&labels()).clone()).inc_by(bytes),
                None => metrics.redirected_bytes.get_or_create(&labels()).inc_by(bytes),
            };
        }
    }
}

impl Metrics {
    /// Counts a request that has no decision (local-folder content).
    pub(crate) fn count_request(&self, outcome: Outcome) {
        self.requests[outcome.index()].inc();
    }

    /// The access log's count of lines it dropped, for the next scrape.
    pub(crate) fn set_access_log_dropped(&self, dropped: u64) {
        self.access_log_dropped.inner().store(dropped, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts an answered request (and its redirect, in the snapshot's `redirects` cells, with
    /// the object's bytes for a `get`).
    pub(crate) fn record(
        &self,
        redirects: &RedirectCounters,
        snapshot: &Snapshot,
        decision: &Decision<'_>,
        label: Option<u32>,
        get: bool,
    ) {
        self.requests[decision.outcome.index()].inc();
        if decision.outcome.is_redirect() {
            redirects.count(self, snapshot, decision, label, decision.size.filter(|_| get));
        }
    }

    /// Copy the prober's state (health per mirror, cache size) into the gauges.
    pub(crate) fn observe(&self, prober: &Prober, snapshot: &Snapshot) {
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
