//! Presence and health probing for mirrors.
//!
//! - **Presence** (mirrors without an inventory): `HEAD` of the object's mirror URL, cached in a
//!   `moka` future cache with a TTL per result (present / absent / error), concurrent misses for one
//!   URL coalesced into one probe. A request waits for probes at most [`ProbeSettings::budget`]
//!   (50 ms by default); a probe still running then keeps going in the background (filling the
//!   cache for the next request) while this request treats presence as unknown, so the upstream
//!   answers it.
//! - **Health** (every mirror): every [`ProbeSettings::health_interval`], a `HEAD` of the mirror's
//!   template rendered with a placeholder object. Any HTTP answer below 500 counts as up; a
//!   connection error, timeout or 5xx as a failure. After [`ProbeSettings::health_failures`]
//!   consecutive failures the mirror is out of the routing; one success brings it back. A mirror
//!   is out until its first success: `ferry serve` probes every mirror once before it accepts a
//!   connection, and a mirror added by a reload is probed as the reload puts it in force.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use moka::Expiry;

use crate::decision::{Holding, Object};
use crate::presence::Presence;
use crate::request::RouteRequest;
use crate::route::probes_needed;
use crate::snapshot::{Mirror, Snapshot};

/// Timings of probing. The defaults keep a failed mirror out of the routing within 10 s
/// (2 failures × 3 s interval + 2 s timeout).
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Longest a request waits for presence probes.
    pub budget: Duration,
    /// Timeout of one probe `HEAD`.
    pub probe_timeout: Duration,
    /// TTL of a probe that found the object.
    pub present_ttl: Duration,
    /// TTL of a probe that found the object missing (403, 404 or 410).
    pub absent_ttl: Duration,
    /// TTL of a probe that failed (connection error, timeout, unexpected status).
    pub error_ttl: Duration,
    /// Time between two rounds of health probes.
    pub health_interval: Duration,
    /// Consecutive failed health probes before a mirror is out.
    pub health_failures: u32,
    /// Most cached probe results.
    pub cache_capacity: u64,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            budget: Duration::from_millis(50),
            probe_timeout: Duration::from_secs(2),
            present_ttl: Duration::from_secs(600),
            absent_ttl: Duration::from_secs(60),
            error_ttl: Duration::from_secs(10),
            health_interval: Duration::from_secs(3),
            health_failures: 2,
            cache_capacity: 200_000,
        }
    }
}

/// The result of one presence probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The mirror answered 2xx.
    Present,
    /// The mirror answered 403, 404 or 410 (S3 says 403 for a missing key).
    Absent,
    /// A connection error, timeout or any other status: presence unknown.
    Error,
}

impl Probe {
    fn holding(self) -> Holding {
        match self {
            Probe::Present => Holding::Yes,
            Probe::Absent => Holding::No,
            Probe::Error => Holding::Unknown,
        }
    }
}

struct ProbeExpiry {
    present: Duration,
    absent: Duration,
    error: Duration,
}

impl Expiry<String, Probe> for ProbeExpiry {
    fn expire_after_create(&self, _key: &String, value: &Probe, _created_at: Instant) -> Option<Duration> {
        Some(match value {
            Probe::Present => self.present,
            Probe::Absent => self.absent,
            Probe::Error => self.error,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Health {
    healthy: bool,
    failures: u32,
}

/// Presence cache + health table, shared by all requests.
pub struct Prober {
    client: reqwest::Client,
    cache: moka::future::Cache<String, Probe>,
    health: RwLock<HashMap<String, Health>>,
    /// Whether any mirror is out of the routing (unhealthy, or not answered yet): while none is
    /// (the usual case), a request learns that without touching the health table's lock.
    any_unhealthy: AtomicBool,
    settings: ProbeSettings,
}

impl Prober {
    /// A prober with an empty cache and every mirror out of the routing until its first health
    /// probe succeeds.
    pub fn new(settings: ProbeSettings) -> Arc<Prober> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .timeout(settings.probe_timeout)
            .build()
            .expect("HTTP client");
        let cache = moka::future::Cache::builder()
            .max_capacity(settings.cache_capacity)
            .expire_after(ProbeExpiry {
                present: settings.present_ttl,
                absent: settings.absent_ttl,
                error: settings.error_ttl,
            })
            .build();
        Arc::new(Prober {
            client,
            cache,
            health: RwLock::new(HashMap::new()),
            // Out until probed: no mirror is known to be up yet.
            any_unhealthy: AtomicBool::new(true),
            settings,
        })
    }

    /// The timings this prober was built with.
    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// Presence answers currently cached.
    pub fn cached_answers(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Whether a mirror is in the routing: its last health probes passed (a mirror never probed
    /// yet, or that has not answered since it was added, is out).
    pub fn is_healthy(&self, mirror: &str) -> bool {
        !self.any_unhealthy.load(Ordering::Relaxed)
            || self.health.read().expect("health lock").get(mirror).is_some_and(|h| h.healthy)
    }

    /// What is known, within the budget, about the mirrors the route would ask about for this
    /// request ([`probes_needed`]: no inventory, no local folder, and otherwise eligible).
    pub async fn known(self: &Arc<Self>, snapshot: &Snapshot, request: &RouteRequest, label: Option<&str>) -> Known {
        let mut holds = HashMap::new();
        let targets = probes_needed(snapshot, request, label, |m: &Mirror| self.is_healthy(&m.name));
        let mut pending = Vec::new();
        for (name, url) in targets {
            if let Some(p) = self.cache.get(&url).await {
                holds.insert(name, p.holding());
                continue;
            }
            let this = self.clone();
            // Spawned, so a probe outliving the budget still completes and fills the cache.
            let task = tokio::spawn(async move {
                let probe = this.clone().probe(url.clone());
                this.cache.get_with(url, probe).await
            });
            pending.push((name, task));
        }
        let deadline = tokio::time::Instant::now() + self.settings.budget;
        for (name, task) in pending {
            if let Ok(Ok(p)) = tokio::time::timeout_at(deadline, task).await {
                holds.insert(name, p.holding());
            }
        }
        Known { holds, prober: self.clone() }
    }

    async fn probe(self: Arc<Self>, url: String) -> Probe {
        let result = match self.client.head(&url).send().await {
            Ok(r) if r.status().is_success() => Probe::Present,
            // S3 answers 403 for a missing key when listing is not allowed.
            Ok(r) if matches!(r.status().as_u16(), 403 | 404 | 410) => Probe::Absent,
            Ok(_) | Err(_) => Probe::Error,
        };
        tracing::debug!(target: "ferry_serve::probe", %url, ?result, "presence probe");
        result
    }

    /// One round of health probes over the mirrors of `snapshot`, concurrently (each bounded by
    /// the probe timeout). A mirror enters the routing with its first successful probe.
    pub async fn check_health(self: &Arc<Self>, snapshot: &Snapshot) {
        let mut set = tokio::task::JoinSet::new();
        for m in &snapshot.mirrors {
            let Some(url) = health_url(m) else { continue };
            let (this, name) = (self.clone(), m.name.clone());
            set.spawn(async move {
                let ok = matches!(this.client.head(&url).send().await, Ok(r) if r.status().as_u16() < 500);
                (name, ok)
            });
        }
        let mut results = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        let mut table = self.health.write().expect("health lock");
        table.retain(|name, _| snapshot.mirrors.iter().any(|m| &m.name == name));
        for (name, ok) in results {
            let entry = table.get_mut(&name);
            let was = entry.as_ref().map(|h| h.healthy);
            let h = entry.map_or(Health { healthy: false, failures: 0 }, |h| *h);
            let now = if ok {
                Health { healthy: true, failures: 0 }
            } else {
                let failures = h.failures + 1;
                Health { healthy: h.healthy && failures < self.settings.health_failures, failures }
            };
            match (was, now.healthy) {
                (Some(false), true) => {
                    tracing::info!(target: "ferry_serve::health", mirror = %name, "mirror healthy again")
                }
                (Some(true), false) => {
                    tracing::warn!(target: "ferry_serve::health", mirror = %name, failures = now.failures, "mirror unhealthy: out of the routing")
                }
                (None, false) => {
                    tracing::warn!(target: "ferry_serve::health", mirror = %name, "mirror not answering: out of the routing until it does")
                }
                _ => {}
            }
            table.insert(name, now);
        }
        self.expect_mirrors(&mut table, snapshot);
    }

    /// Takes note of the mirrors of a snapshot put in force: a mirror with nothing to probe
    /// (local folders only) is always in the routing, and one never probed yet is out until its
    /// first successful probe.
    pub fn track(&self, snapshot: &Snapshot) {
        self.expect_mirrors(&mut self.health.write().expect("health lock"), snapshot);
    }

    fn expect_mirrors(&self, table: &mut HashMap<String, Health>, snapshot: &Snapshot) {
        for m in snapshot.mirrors.iter().filter(|m| health_url(m).is_none()) {
            table.insert(m.name.clone(), Health { healthy: true, failures: 0 });
        }
        let any_out =
            table.values().any(|h| !h.healthy) || snapshot.mirrors.iter().any(|m| !table.contains_key(&m.name));
        self.any_unhealthy.store(any_out, Ordering::Relaxed);
    }
}

/// The URL a health probe `HEAD`s: the blobs (else files) template with a placeholder object.
/// Local folders are Ferry's own and are not probed.
fn health_url(m: &Mirror) -> Option<String> {
    match (&m.blobs, &m.files) {
        (Some(b), _) if m.local_blobs.is_none() => {
            Some(b.render("sha256:0000000000000000000000000000000000000000000000000000000000000000"))
        }
        (_, Some(f)) if m.local_files.is_none() => Some(f.render("ferry-health-check")),
        _ => None,
    }
}

/// Without a probe result: presence unknown, health from the health probes. What a request is
/// routed with when no mirror needs a presence probe.
impl Presence for Prober {
    fn holds(&self, _mirror: &Mirror, _object: Object<'_>) -> Holding {
        Holding::Unknown
    }

    fn healthy(&self, mirror: &Mirror) -> bool {
        self.is_healthy(&mirror.name)
    }
}

/// What [`Prober::known`] learned for one request; the [`Presence`] that request is routed with.
pub struct Known {
    holds: HashMap<String, Holding>,
    prober: Arc<Prober>,
}

impl Presence for Known {
    fn holds(&self, mirror: &Mirror, _object: Object<'_>) -> Holding {
        self.holds.get(&mirror.name).copied().unwrap_or(Holding::Unknown)
    }

    fn healthy(&self, mirror: &Mirror) -> bool {
        self.prober.is_healthy(&mirror.name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize};
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::{StatusCode, Uri};

    use super::*;
    use crate::answer::AppState;
    use crate::decision::{Detail, Outcome};
    use crate::Config;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    /// A fake mirror: `HEAD /b/<digest>` is 200 for listed digests, else 404; optional delay and
    /// forced status; counts hits per path.
    #[derive(Default)]
    struct Fake {
        present: Mutex<HashSet<String>>,
        hits: Mutex<HashMap<String, usize>>,
        total: AtomicUsize,
        delay_ms: AtomicU64,
        force: AtomicU16,
    }

    impl Fake {
        fn hits(&self, digest: &str) -> usize {
            self.hits.lock().unwrap().get(&format!("/b/{digest}")).copied().unwrap_or(0)
        }
    }

    async fn fake_handler(State(fake): State<Arc<Fake>>, uri: Uri) -> StatusCode {
        fake.total.fetch_add(1, Ordering::SeqCst);
        *fake.hits.lock().unwrap().entry(uri.path().to_string()).or_default() += 1;
        let delay = fake.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let force = fake.force.load(Ordering::SeqCst);
        if force != 0 {
            return StatusCode::from_u16(force).unwrap();
        }
        let digest = uri.path().trim_start_matches("/b/");
        if fake.present.lock().unwrap().contains(digest) {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        }
    }

    async fn start_fake(fake: Arc<Fake>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(fake_handler).with_state(fake);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    async fn setup(settings: ProbeSettings) -> (Arc<Fake>, Arc<AppState>, Arc<Prober>) {
        let fake = Arc::new(Fake::default());
        fake.present.lock().unwrap().insert(D1.to_string());
        let addr = start_fake(fake.clone()).await;
        let text = format!(
            "upstream: {{registry: 'https://reg.example'}}\nmirrors:\n  - name: probed\n    blobs: 'http://{addr}/b/{{digest}}'\n    serves: ['*']\n"
        );
        let snapshot =
            Snapshot::from_config(Config::from_yaml(&text, "t").unwrap(), std::path::Path::new("/")).unwrap();
        let prober = Prober::new(settings);
        prober.check_health(&snapshot).await;
        let state = Arc::new(AppState::with_prober(snapshot, prober.clone()));
        (fake, state, prober)
    }

    /// The explained decision for a blob (owned: the snapshot is this call's).
    async fn blob(state: &AppState, digest: &str) -> (Outcome, String, Vec<crate::Candidate>) {
        let snapshot = state.snapshot();
        let d = state.decide(&snapshot, "GET", &format!("/v2/a/blobs/{digest}"), None, None, Detail::Explain).await;
        (d.outcome, d.reason.to_string(), d.candidates)
    }

    fn generous() -> ProbeSettings {
        ProbeSettings { budget: Duration::from_secs(2), ..ProbeSettings::default() }
    }

    #[tokio::test]
    async fn presence_is_probed_and_cached_both_ways() {
        let (fake, state, _p) = setup(generous()).await;
        for _ in 0..3 {
            let (outcome, reason, _) = blob(&state, D1).await;
            assert_eq!(outcome, Outcome::Mirror);
            assert!(reason.contains("present (probe)"), "{reason}");
            let (outcome, _, candidates) = blob(&state, D2).await;
            assert_eq!(outcome, Outcome::Upstream);
            assert_eq!(candidates[0].skipped.as_deref(), Some("absent (probe)"));
        }
        assert_eq!((fake.hits(D1), fake.hits(D2)), (1, 1), "one probe each, then cached");
    }

    #[tokio::test]
    async fn concurrent_misses_are_coalesced() {
        let (fake, state, _p) = setup(generous()).await;
        fake.delay_ms.store(200, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let state = state.clone();
            tasks.push(tokio::spawn(async move { blob(&state, D1).await.0 }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Outcome::Mirror);
        }
        assert_eq!(fake.hits(D1), 1);
    }

    #[tokio::test]
    async fn slow_probe_never_blocks_past_the_budget() {
        let settings = ProbeSettings { budget: Duration::from_millis(50), ..ProbeSettings::default() };
        let (fake, state, _p) = setup(settings).await;
        fake.delay_ms.store(400, Ordering::SeqCst);
        let start = Instant::now();
        let (outcome, _, candidates) = blob(&state, D1).await;
        assert!(start.elapsed() < Duration::from_millis(300), "{:?}", start.elapsed());
        assert_eq!(outcome, Outcome::Upstream, "the upstream answers while the probe runs");
        assert!(candidates[0].skipped.as_deref().unwrap().starts_with("presence unknown"));
        // The probe finished in the background and filled the cache.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(blob(&state, D1).await.0, Outcome::Mirror);
        assert_eq!(fake.hits(D1), 1);
    }

    #[tokio::test]
    async fn probe_errors_are_unknown_and_short_lived() {
        let settings = ProbeSettings { error_ttl: Duration::from_millis(100), ..generous() };
        let (fake, state, _p) = setup(settings).await;
        fake.force.store(500, Ordering::SeqCst);
        assert_eq!(blob(&state, D1).await.0, Outcome::Upstream);
        fake.force.store(0, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(blob(&state, D1).await.0, Outcome::Mirror);
    }

    #[tokio::test]
    async fn unhealthy_mirror_leaves_and_returns() {
        let (fake, state, prober) = setup(generous()).await;
        let snapshot = state.snapshot();
        assert_eq!(blob(&state, D1).await.0, Outcome::Mirror);
        fake.force.store(503, Ordering::SeqCst);
        prober.check_health(&snapshot).await;
        assert!(prober.is_healthy("probed"), "one failure is not enough");
        prober.check_health(&snapshot).await;
        assert!(!prober.is_healthy("probed"));
        let (outcome, _, candidates) = blob(&state, D1).await;
        assert_eq!(outcome, Outcome::Upstream);
        assert_eq!(candidates[0].skipped.as_deref(), Some("unhealthy"));
        fake.force.store(0, Ordering::SeqCst);
        prober.check_health(&snapshot).await;
        assert!(prober.is_healthy("probed"));
        assert_eq!(blob(&state, D1).await.0, Outcome::Mirror);
    }

    #[tokio::test]
    async fn a_mirror_is_out_until_its_first_answer_and_a_local_folder_is_always_in() {
        let fake = Arc::new(Fake::default());
        let addr = start_fake(fake.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        let text = format!(
            "upstream: {{registry: 'https://reg.example'}}\nmirrors:\n  - {{name: local, blobs: ./blobs/, serves: ['*']}}\n  \
             - {{name: remote, blobs: 'http://{addr}/b/{{digest}}', serves: ['*']}}\n"
        );
        let snapshot = Snapshot::from_config(Config::from_yaml(&text, "t").unwrap(), dir.path()).unwrap();
        let prober = Prober::new(generous());
        // As a reload puts a snapshot in force: nothing probed yet.
        prober.track(&snapshot);
        assert!(prober.is_healthy("local"), "a local folder has nothing to probe");
        assert!(!prober.is_healthy("remote"), "never answered: out");
        fake.force.store(503, Ordering::SeqCst);
        prober.check_health(&snapshot).await;
        assert!(!prober.is_healthy("remote"), "its first answer was a failure: still out");
        fake.force.store(0, Ordering::SeqCst);
        prober.check_health(&snapshot).await;
        assert!(prober.is_healthy("remote") && prober.is_healthy("local"));
    }

    #[tokio::test]
    async fn health_loop_removes_a_dead_mirror_quickly() {
        let settings = ProbeSettings {
            health_interval: Duration::from_millis(30),
            probe_timeout: Duration::from_millis(200),
            ..generous()
        };
        let (fake, state, prober) = setup(settings).await;
        let handle = state.start_health().await;
        fake.force.store(502, Ordering::SeqCst);
        let start = Instant::now();
        while prober.is_healthy("probed") {
            assert!(start.elapsed() < Duration::from_secs(5), "never marked unhealthy");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fake.force.store(0, Ordering::SeqCst);
        while !prober.is_healthy("probed") {
            assert!(start.elapsed() < Duration::from_secs(10), "never healthy again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        handle.abort();
    }
}
