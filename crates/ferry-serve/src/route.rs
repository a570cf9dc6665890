//! The routing decision: a function of the snapshot, the parsed request, the client's location
//! label and what is known about mirror presence/health. No network I/O (the one file-system
//! access: a `stat` for a local-folder mirror without an inventory). Every case is listed, numbered, in
//! `docs/request-handling.md`; the tests below are named after those numbers.

use ferry_oci::{Reference, RepoName};

use crate::decision::{Candidate, Decision, Detail, Evidence, Holding, Object, Outcome, Reason};
use crate::glob::{Pattern, Tier};
use crate::presence::Presence;
use crate::request::{parse_request, Reject, Resource, RouteRequest, SafeQuery};
use crate::snapshot::{Mirror, Snapshot};

/// Extensions of checksum and signature files: always served by `upstream.files`, so a mirror can
/// never vouch for its own bytes.
pub const VOUCHING_EXTENSIONS: &[&str] = &["sha256", "sha512", "sig", "cert", "asc"];

/// Cases 1, 2 and 5 (parsing), then [`route`]: the whole decision for a raw request (method, raw path, raw
/// query). Service endpoints (`/healthz`, `/metrics`, `/debug/route`) and local-folder content
/// (`/_ferry/...`) are answered by the server before this is called.
pub fn decide<'a>(
    snapshot: &'a Snapshot,
    method: &str,
    path: &str,
    query: Option<&str>,
    label: Option<&'a str>,
    presence: &dyn Presence,
    detail: Detail,
) -> Decision<'a> {
    if method != "GET" && method != "HEAD" {
        return Decision::answer(
            405,
            Outcome::MethodNotAllowed,
            Reason::Owned(format!("method {method} not allowed (GET, HEAD)")),
        );
    }
    match parse_request(path, query) {
        Ok(request) => route(snapshot, &request, label, presence, detail),
        Err(reject) => reject_decision(reject),
    }
}

/// The answer to a request refused by [`parse_request`].
pub fn reject_decision<'a>(reject: Reject) -> Decision<'a> {
    let outcome = if reject.status() == 400 { Outcome::BadRequest } else { Outcome::NotFound };
    let status = reject.status();
    Decision::answer(status, outcome, Reason::Owned(reject.into_message()))
}

/// Cases 4 and 6-11 of `docs/request-handling.md` (the request is already parsed).
pub fn route<'a>(
    snapshot: &'a Snapshot,
    request: &RouteRequest,
    label: Option<&'a str>,
    presence: &dyn Presence,
    detail: Detail,
) -> Decision<'a> {
    let up = &snapshot.upstream;
    let query = request.query.as_ref();
    match &request.resource {
        Resource::ApiBase => Decision::answer(200, Outcome::Ok, Reason::Text("registry API version check")),
        Resource::Blob { name, digest } => {
            let choice = choose(snapshot, Object::Blob(digest), label, presence, detail);
            let mut d = match choice.winner {
                Some((i, m, reason)) => {
                    let template = m.blobs.as_ref().expect("chosen mirrors have a blobs template");
                    let mut d = Decision::redirect(Outcome::Mirror, template.render(digest.as_str()), reason);
                    (d.mirror, d.mirror_index) = (Some(m.name.as_str()), Some(i));
                    d
                }
                None => Decision::redirect(
                    Outcome::Upstream,
                    with_query(up.registry.blob_url(name, digest), query),
                    Reason::NoEligible { considered: choice.considered },
                ),
            };
            d.candidates = choice.candidates;
            d.size = snapshot.object_size(Object::Blob(digest), d.mirror_index);
            d
        }
        Resource::Manifest { name, reference } => {
            let rest = format!("manifests/{reference}");
            if is_signature_reference(reference) {
                to_signatures(
                    snapshot,
                    name,
                    &rest,
                    query,
                    [
                        "cosign signature/attestation tag: upstream.signatures",
                        "cosign signature/attestation tag: upstream.registry (no upstream.signatures)",
                    ],
                )
            } else {
                to_registry(snapshot, name, &rest, query, "manifests come from the upstream")
            }
        }
        Resource::TagsList { name } => {
            to_registry(snapshot, name, "tags/list", query, "tags lists come from the upstream")
        }
        Resource::Referrers { name, digest } => to_signatures(
            snapshot,
            name,
            &format!("referrers/{digest}"),
            query,
            ["referrers: upstream.signatures", "referrers: upstream.registry (no upstream.signatures)"],
        ),
        Resource::File { path } => {
            let Some(files) = &up.files else {
                return Decision::answer(
                    404,
                    Outcome::NotFound,
                    Reason::Text("no upstream.files configured: file paths are not served"),
                );
            };
            if path.extension().is_some_and(|e| VOUCHING_EXTENSIONS.contains(&e)) {
                return Decision::redirect(
                    Outcome::Files,
                    with_query(files.url(path.as_str()), query),
                    Reason::Text("checksum/signature files always come from upstream.files"),
                );
            }
            let choice = choose(snapshot, Object::File(path), label, presence, detail);
            let mut d = match choice.winner {
                Some((i, m, reason)) => {
                    let template = m.files.as_ref().expect("chosen mirrors have a files template");
                    let mut d = Decision::redirect(Outcome::Mirror, template.render(path.relative()), reason);
                    (d.mirror, d.mirror_index) = (Some(m.name.as_str()), Some(i));
                    d
                }
                None => Decision::redirect(
                    Outcome::Files,
                    with_query(files.url(path.as_str()), query),
                    Reason::NoEligible { considered: choice.considered },
                ),
            };
            d.candidates = choice.candidates;
            d.size = snapshot.object_size(Object::File(path), d.mirror_index);
            d
        }
    }
}

fn with_query(url: String, query: Option<&SafeQuery>) -> String {
    match query {
        Some(q) => format!("{url}?{}", q.as_str()),
        None => url,
    }
}

fn to_registry<'a>(
    snapshot: &Snapshot,
    name: &RepoName,
    rest: &str,
    query: Option<&SafeQuery>,
    why: &'static str,
) -> Decision<'a> {
    Decision::redirect(
        Outcome::Upstream,
        with_query(snapshot.upstream.registry.url(name, rest), query),
        Reason::Text(why),
    )
}

/// `why`: the reason with `upstream.signatures`, and the one without it.
fn to_signatures<'a>(
    snapshot: &Snapshot,
    name: &RepoName,
    rest: &str,
    query: Option<&SafeQuery>,
    why: [&'static str; 2],
) -> Decision<'a> {
    match &snapshot.upstream.signatures {
        Some(sig) => {
            Decision::redirect(Outcome::Signatures, with_query(sig.url(name, rest), query), Reason::Text(why[0]))
        }
        None => to_registry(snapshot, name, rest, query, why[1]),
    }
}

/// The mirrors [`route`] would ask its [`Presence`] about for `request` (those without an
/// inventory or a local folder that could otherwise be chosen), each with the URL to probe: found
/// by routing the request once with nothing known, so the prober never re-derives which mirrors
/// are eligible.
pub fn probes_needed(
    snapshot: &Snapshot,
    request: &RouteRequest,
    label: Option<&str>,
    healthy: impl Fn(&Mirror) -> bool + Send + Sync,
) -> Vec<(String, String)> {
    struct Asking<F> {
        healthy: F,
        asked: std::sync::Mutex<Vec<(String, String)>>,
    }
    impl<F: Fn(&Mirror) -> bool + Send + Sync> Presence for Asking<F> {
        fn holds(&self, mirror: &Mirror, object: Object<'_>) -> Holding {
            let url = match object {
                Object::Blob(digest) => mirror.blobs.as_ref().map(|t| t.render(digest.as_str())),
                Object::File(path) => mirror.files.as_ref().map(|t| t.render(path.relative())),
            };
            if let Some(url) = url {
                self.asked.lock().expect("probe list").push((mirror.name.clone(), url));
            }
            Holding::Unknown
        }
        fn healthy(&self, mirror: &Mirror) -> bool {
            (self.healthy)(mirror)
        }
    }
    let asking = Asking { healthy, asked: std::sync::Mutex::new(Vec::new()) };
    route(snapshot, request, label, &asking, Detail::Lean);
    asking.asked.into_inner().expect("probe list")
}

/// Tags cosign and the referrers fallback use: `sha256-<64 hex>` optionally followed by `.sig`,
/// `.att` or `.sbom`.
pub fn is_signature_reference(reference: &Reference) -> bool {
    let Reference::Tag(tag) = reference else { return false };
    let Some(rest) = tag.as_str().strip_prefix("sha256-") else { return false };
    let (hex, suffix) = rest.split_at(rest.len().min(64));
    hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && matches!(suffix, "" | ".sig" | ".att" | ".sbom")
}

/// What [`choose`] found.
struct Choice<'a> {
    /// The chosen mirror: its index, itself, and why.
    winner: Option<(usize, &'a Mirror, Reason<'a>)>,
    /// How many mirrors had a template for the object.
    considered: usize,
    /// Each of them, with why it was skipped ([`Detail::Explain`] only).
    candidates: Vec<Candidate>,
}

/// Cases 6 and 11, "Mirror choice": picks the mirror for an object. The same walk serves and
/// explains; only with [`Detail::Explain`] is each candidate recorded (with why it was skipped).
fn choose<'a>(
    snapshot: &'a Snapshot,
    object: Object<'_>,
    label: Option<&'a str>,
    presence: &dyn Presence,
    detail: Detail,
) -> Choice<'a> {
    let explain = detail == Detail::Explain;
    let mut candidates = Vec::new();
    let mut considered = 0;
    // The best eligible mirror so far: (index, mirror, its pattern, score); ties at its tier.
    let mut best: Option<(usize, &'a Mirror, &'a Pattern, f64)> = None;
    let mut ties = 0;
    let key = match object {
        Object::Blob(d) => d.as_str(),
        Object::File(p) => p.as_str(),
    };
    // (candidate position, tier) of every eligible mirror, to explain the losers afterwards.
    let mut eligible: Vec<(usize, Tier)> = Vec::new();
    for (i, m) in snapshot.mirrors.iter().enumerate() {
        let has_template = match object {
            Object::Blob(_) => m.blobs.is_some(),
            Object::File(_) => m.files.is_some(),
        };
        if !has_template {
            continue; // not a mirror for this kind of object; not listed
        }
        considered += 1;
        let pattern = m.serves.iter().filter(|p| p.matches(label)).max_by_key(|p| p.tier());
        let skipped = match pattern {
            None => Some(Skip::NoMatch),
            Some(_) if !presence.healthy(m) => Some(Skip::Unhealthy),
            Some(_) if matches!(object, Object::Blob(d) if snapshot.withdrawn.contains(&m.name, d.as_str())) => {
                Some(Skip::Withdrawn)
            }
            Some(_) => {
                let holding = match (&m.inventory, object) {
                    (Some(inv), Object::Blob(d)) => bool_holding(inv.has_blob(d)),
                    (Some(inv), Object::File(p)) => bool_holding(inv.has_file(p)),
                    (None, o) => m.local_holds(o).unwrap_or_else(|| presence.holds(m, o)),
                };
                match (holding, evidence(m, object)) {
                    (Holding::Yes, _) => None,
                    (Holding::No, Evidence::Inventory) => Some(Skip::NotInInventory),
                    (Holding::No, Evidence::Probe) => Some(Skip::Absent),
                    (Holding::No, Evidence::Folder) => Some(Skip::NotInFolder),
                    (Holding::Unknown, _) => Some(Skip::Unknown),
                }
            }
        };
        if skipped.is_none() {
            let pattern = pattern.expect("eligible mirrors matched");
            let tier = pattern.tier();
            let s = score(key, m);
            let better = match &best {
                None => true,
                Some((_, bm, bp, bs)) => {
                    tier > bp.tier() || (tier == bp.tier() && (s > *bs || (s == *bs && m.name < bm.name)))
                }
            };
            match &best {
                Some((_, _, bp, _)) if tier == bp.tier() => ties += 1,
                Some((_, _, bp, _)) if tier < bp.tier() => {}
                _ => ties = 1,
            }
            if better {
                best = Some((i, m, pattern, s));
            }
            if explain {
                eligible.push((candidates.len(), tier));
            }
        }
        if explain {
            candidates.push(Candidate {
                mirror: m.name.clone(),
                matched: pattern.map(|p| p.to_string()),
                tier: pattern.map(Pattern::tier),
                skipped: skipped.map(|s| s.text(label)),
            });
        }
    }
    let winner = best.map(|(i, m, pattern, _)| {
        if explain {
            let top = pattern.tier();
            for &(ci, tier) in &eligible {
                if candidates[ci].mirror != m.name {
                    candidates[ci].skipped = Some(if tier == top {
                        format!("tie with {}: object assigned to {} by weighted hash", m.name, m.name)
                    } else {
                        format!("less specific match than {}", m.name)
                    });
                }
            }
        }
        (i, m, Reason::Chosen { pattern, label, evidence: evidence(m, object), ties })
    });
    Choice { winner, considered, candidates }
}

/// Why a candidate mirror was skipped (cases a-d).
#[derive(Debug, Clone, Copy)]
enum Skip {
    NoMatch,
    Unhealthy,
    NotInInventory,
    Absent,
    NotInFolder,
    Unknown,
    Withdrawn,
}

fn evidence(m: &Mirror, object: Object<'_>) -> Evidence {
    match (&m.inventory, m.local_dir(object).is_some()) {
        (Some(_), _) => Evidence::Inventory,
        (None, true) => Evidence::Folder,
        (None, false) => Evidence::Probe,
    }
}

impl Skip {
    fn text(self, label: Option<&str>) -> String {
        match (self, label) {
            (Skip::NoMatch, Some(l)) => format!("serves no pattern matching {l:?}"),
            (Skip::NoMatch, None) => "client has no location label and the mirror does not serve \"*\"".into(),
            (Skip::Unhealthy, _) => "unhealthy".into(),
            (Skip::NotInInventory, _) => "not in its inventory".into(),
            (Skip::Absent, _) => "absent (probe)".into(),
            (Skip::NotInFolder, _) => "not in its folder".into(),
            (Skip::Unknown, _) => "presence unknown (no inventory and no probe result)".into(),
            (Skip::Withdrawn, _) => "absent: its copy streamed bytes that did not match the digest".into(),
        }
    }
}

fn bool_holding(b: bool) -> Holding {
    if b {
        Holding::Yes
    } else {
        Holding::No
    }
}

/// Weighted rendezvous score of (object key, mirror): deterministic across runs and builds.
fn score(key: &str, mirror: &Mirror) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0xff]).chain(mirror.name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser, then a uniform value in (0, 1).
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(mirror.weight) / u.ln()
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    use super::*;
    use crate::presence::NoProbes;
    use crate::Config;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn snapshot_with(dir: &Path, mirrors: &str, upstream_extra: &str) -> Snapshot {
        let text = format!(
            "upstream:\n  registry: https://reg.example/my-project/images\n{upstream_extra}mirrors:\n{mirrors}"
        );
        Snapshot::from_config(Config::from_yaml(&text, "t").unwrap(), dir).unwrap()
    }

    fn inv(dir: &Path, name: &str, lines: &[&str]) {
        std::fs::write(dir.join(name), lines.join("\n")).unwrap();
    }

    fn mirror(name: &str, serves: &str, inventory: &str) -> String {
        format!(
            "  - name: {name}\n    blobs: https://{name}.example/b/{{digest}}\n    files: https://{name}.example/f/{{path}}\n    serves: {serves}\n    inventory: {inventory}\n"
        )
    }

    fn get<'a>(s: &'a Snapshot, path: &str, label: Option<&'a str>) -> Decision<'a> {
        decide(s, "GET", path, None, label, &NoProbes, Detail::Explain)
    }

    /// Test presence: fixed answers per mirror, some mirrors unhealthy.
    struct Fixed {
        holds: HashMap<String, Holding>,
        unhealthy: HashSet<String>,
    }

    impl Presence for Fixed {
        fn holds(&self, m: &Mirror, _o: Object<'_>) -> Holding {
            self.holds.get(&m.name).copied().unwrap_or(Holding::Unknown)
        }
        fn healthy(&self, m: &Mirror) -> bool {
            !self.unhealthy.contains(&m.name)
        }
    }

    fn plain() -> (tempfile::TempDir, Snapshot) {
        let dir = tempfile::tempdir().unwrap();
        inv(dir.path(), "all.txt", &[D1, "/bin/kubectl"]);
        let s = snapshot_with(dir.path(), &mirror("m", "['*']", "all.txt"), "  files: https://dl.example/rel/\n");
        (dir, s)
    }

    #[test]
    fn case_01_only_get_and_head() {
        let (_d, s) = plain();
        for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let d = decide(&s, m, &format!("/v2/a/blobs/{D1}"), None, None, &NoProbes, Detail::Explain);
            assert_eq!((d.status, d.outcome, d.location), (405, Outcome::MethodNotAllowed, None), "{m}");
        }
        assert_eq!(
            decide(&s, "HEAD", &format!("/v2/a/blobs/{D1}"), None, None, &NoProbes, Detail::Explain).status,
            307
        );
    }

    #[test]
    fn case_02_malformed_paths_are_400_never_redirects() {
        let (_d, s) = plain();
        for p in [
            "/bin/../etc/passwd",
            "/bin/%2e%2e/x",
            "/bin//kubectl",
            "/bin/ku\u{1}bectl",
            "/bin\\kubectl",
            "/bin/kubé",
            "/bin/.hidden",
            &format!("/{}", "a".repeat(3000)),
            &format!("/v2/a/../b/blobs/{D1}"),
            &format!("/v2/a/%2e%2e/blobs/{D1}"),
            &format!("/v2//a/blobs/{D1}"),
        ] {
            let d = get(&s, p, None);
            assert_eq!((d.status, d.location.as_deref()), (400, None), "{p:?}");
        }
    }

    #[test]
    fn case_04_api_base() {
        let (_d, s) = plain();
        for p in ["/v2/", "/v2"] {
            let d = get(&s, p, None);
            assert_eq!((d.status, d.outcome, d.location), (200, Outcome::Ok, None));
        }
    }

    #[test]
    fn case_05_bad_names_digests_and_unknown_endpoints() {
        let (_d, s) = plain();
        for (p, status) in [
            (format!("/v2/Upper/blobs/{D1}"), 400),
            ("/v2/a/blobs/sha256:abc".to_string(), 400),
            ("/v2/a/blobs/sha512:abc".to_string(), 400),
            ("/v2/a/manifests/-bad".to_string(), 400),
            ("/v2/a/referrers/latest".to_string(), 400),
            ("/v2/_catalog".to_string(), 404),
            ("/v2/a/blobs/uploads/x".to_string(), 404),
        ] {
            let d = get(&s, &p, None);
            assert_eq!((d.status, d.location.as_deref()), (status, None), "{p}");
        }
        let d = decide(&s, "GET", "/v2/a/tags/list", Some("n=1\"x"), None, &NoProbes, Detail::Explain);
        assert_eq!(d.status, 400);
    }

    #[test]
    fn case_06_mirror_choice_e_most_specific_wins() {
        let dir = tempfile::tempdir().unwrap();
        inv(dir.path(), "all.txt", &[D1, D2]);
        inv(dir.path(), "only2.txt", &[D2]);
        let mirrors = [
            mirror("exact", "['aws:us-east-2']", "only2.txt"),
            mirror("glob", "['aws:us-*']", "all.txt"),
            mirror("any", "['*']", "all.txt"),
        ]
        .concat();
        let s = snapshot_with(dir.path(), &mirrors, "");
        // e: exact label beats glob beats "*".
        let d = get(&s, &format!("/v2/a/blobs/{D2}"), Some("aws:us-east-2"));
        assert_eq!(d.location.as_deref(), Some(&*format!("https://exact.example/b/{D2}")));
        assert_eq!(d.mirror, Some("exact"));
        assert_eq!(d.candidates.iter().filter(|c| c.skipped.is_none()).count(), 1);
        assert!(d
            .candidates
            .iter()
            .any(|c| c.mirror == "any" && c.skipped.as_deref().unwrap().contains("less specific")));
        // c: the exact mirror lacks D1 -> the glob one.
        let d = get(&s, &format!("/v2/a/blobs/{D1}"), Some("aws:us-east-2"));
        assert_eq!(d.mirror, Some("glob"));
        let exact = d.candidates.iter().find(|c| c.mirror == "exact").unwrap();
        assert_eq!(exact.skipped.as_deref(), Some("not in its inventory"));
        // a: a label matching only "*".
        assert_eq!(get(&s, &format!("/v2/a/blobs/{D1}"), Some("gcp:x")).mirror, Some("any"));
        // a: no label at all: only "*" serves.
        let d = get(&s, &format!("/v2/a/blobs/{D1}"), None);
        assert_eq!(d.mirror, Some("any"));
        assert!(d.candidates[0].skipped.as_deref().unwrap().contains("no location label"));
    }

    #[test]
    fn case_06_mirror_choice_a_b_c_d_skips() {
        let dir = tempfile::tempdir().unwrap();
        inv(dir.path(), "all.txt", &[D1]);
        let mirrors = format!(
            "{}{}  - name: probed\n    blobs: https://probed.example/{{digest}}\n    serves: ['aws:us-east-2']\n",
            mirror("sick", "['aws:us-east-2']", "all.txt"),
            mirror("fallback", "['*']", "all.txt")
        );
        let s = snapshot_with(dir.path(), &mirrors, "");
        let path = format!("/v2/a/blobs/{D1}");
        // No probes: "probed" has no inventory -> unknown -> skipped.
        let p = Fixed { holds: HashMap::new(), unhealthy: HashSet::from(["sick".to_string()]) };
        let d = decide(&s, "GET", &path, None, Some("aws:us-east-2"), &p, Detail::Explain);
        assert_eq!(d.mirror, Some("fallback"));
        let why: HashMap<_, _> = d.candidates.iter().map(|c| (c.mirror.as_str(), c.skipped.clone())).collect();
        assert_eq!(why["sick"].as_deref(), Some("unhealthy"));
        assert!(why["probed"].as_deref().unwrap().starts_with("presence unknown"));
        // A positive probe result makes it eligible (exact beats "*").
        let p = Fixed { holds: HashMap::from([("probed".to_string(), Holding::Yes)]), unhealthy: HashSet::new() };
        let d = decide(&s, "GET", &path, None, Some("aws:us-east-2"), &p, Detail::Explain);
        assert!(d.mirror == Some("probed") || d.mirror == Some("sick"));
        // A negative probe result skips it.
        let p = Fixed {
            holds: HashMap::from([("probed".to_string(), Holding::No)]),
            unhealthy: HashSet::from(["sick".to_string()]),
        };
        let d = decide(&s, "GET", &path, None, Some("aws:us-east-2"), &p, Detail::Explain);
        assert_eq!(d.mirror, Some("fallback"));
    }

    #[test]
    fn case_06_mirror_choice_f_ties_spread_by_weighted_hash() {
        let dir = tempfile::tempdir().unwrap();
        let digests: Vec<String> = (0..2000u32).map(|i| format!("sha256:{:064x}", u128::from(i) * 7919)).collect();
        let refs: Vec<&str> = digests.iter().map(String::as_str).collect();
        inv(dir.path(), "all.txt", &refs);
        let mirrors =
            format!("{}{}    weight: 3\n", mirror("light", "['*']", "all.txt"), mirror("heavy", "['*']", "all.txt"));
        let s = snapshot_with(dir.path(), &mirrors, "");
        let mut heavy = 0;
        for d in &digests {
            let first = get(&s, &format!("/v2/a/blobs/{d}"), None);
            let again = get(&s, &format!("/v2/other/blobs/{d}"), Some("x"));
            assert_eq!(first.mirror, again.mirror, "one blob, one mirror");
            assert!(first.reason.to_string().contains("chosen among 2"));
            if first.mirror == Some("heavy") {
                heavy += 1;
            }
        }
        // Expected share 3/4 = 1500 of 2000.
        assert!((1350..1650).contains(&heavy), "heavy got {heavy}");
    }

    #[test]
    fn case_06_blob_without_eligible_mirror_goes_upstream() {
        let (_d, s) = plain();
        let d = get(&s, &format!("/v2/team/app/blobs/{D2}"), None);
        assert_eq!(d.outcome, Outcome::Upstream);
        assert_eq!(
            d.location.as_deref(),
            Some(&*format!("https://reg.example/v2/my-project/images/team/app/blobs/{D2}"))
        );
        assert_eq!(d.candidates[0].skipped.as_deref(), Some("not in its inventory"));
    }

    #[test]
    fn case_06_blob_query_kept_to_the_upstream_dropped_to_a_mirror() {
        let (_d, s) = plain();
        let query = Some("ns=registry.k8s.io");
        let d = decide(&s, "GET", &format!("/v2/a/blobs/{D2}"), query, None, &NoProbes, Detail::Explain);
        assert_eq!(d.outcome, Outcome::Upstream);
        let upstream = format!("https://reg.example/v2/my-project/images/a/blobs/{D2}?ns=registry.k8s.io");
        assert_eq!(d.location.as_deref(), Some(&*upstream));
        let d = decide(&s, "GET", &format!("/v2/a/blobs/{D1}"), query, None, &NoProbes, Detail::Explain);
        assert_eq!((d.outcome, d.location.as_deref()), (Outcome::Mirror, Some(&*format!("https://m.example/b/{D1}"))));
        let d = decide(&s, "GET", &format!("/v2/a/blobs/{D2}"), Some("a=<b>"), None, &NoProbes, Detail::Explain);
        assert_eq!(d.status, 400, "a query that cannot be copied safely is refused, as for manifests");
    }

    #[test]
    fn case_07_manifests_and_tags_go_upstream_with_query() {
        let (_d, s) = plain();
        let d = decide(&s, "GET", "/v2/team/app/tags/list", Some("n=10&last=v1"), None, &NoProbes, Detail::Explain);
        assert_eq!(
            d.location.as_deref(),
            Some("https://reg.example/v2/my-project/images/team/app/tags/list?n=10&last=v1")
        );
        let d = get(&s, "/v2/app/manifests/v1.30.0", Some("aws:x"));
        assert_eq!((d.status, d.outcome), (307, Outcome::Upstream));
        assert_eq!(d.location.as_deref(), Some("https://reg.example/v2/my-project/images/app/manifests/v1.30.0"));
        let d = get(&s, &format!("/v2/app/manifests/{D1}"), None);
        assert_eq!(d.location.unwrap(), format!("https://reg.example/v2/my-project/images/app/manifests/{D1}"));
        assert!(d.candidates.is_empty(), "manifests never go to mirrors");
    }

    #[test]
    fn case_08_signatures_and_referrers() {
        let (_d, without) = plain();
        let dir = tempfile::tempdir().unwrap();
        let with = snapshot_with(dir.path(), "  []\n", "  signatures: https://sig.example/sigs\n");
        let hex = &D1[7..];
        for tag in [format!("sha256-{hex}.sig"), format!("sha256-{hex}.att"), format!("sha256-{hex}")] {
            let p = format!("/v2/app/manifests/{tag}");
            let d = get(&with, &p, None);
            assert_eq!(d.outcome, Outcome::Signatures);
            assert_eq!(d.location.unwrap(), format!("https://sig.example/v2/sigs/app/manifests/{tag}"));
            let d = get(&without, &p, None);
            assert_eq!(d.outcome, Outcome::Upstream);
        }
        // Not a signature tag: too short, or another suffix.
        for tag in ["sha256-abc.sig", &format!("sha256-{hex}.txt")] {
            assert_eq!(get(&with, &format!("/v2/app/manifests/{tag}"), None).outcome, Outcome::Upstream, "{tag}");
        }
        let d = decide(
            &with,
            "GET",
            &format!("/v2/app/referrers/{D1}"),
            Some("artifactType=x"),
            None,
            &NoProbes,
            Detail::Explain,
        );
        assert_eq!(d.location.unwrap(), format!("https://sig.example/v2/sigs/app/referrers/{D1}?artifactType=x"));
        let d = get(&without, &format!("/v2/app/referrers/{D1}"), None);
        assert_eq!(d.location.unwrap(), format!("https://reg.example/v2/my-project/images/app/referrers/{D1}"));
    }

    #[test]
    fn case_09_files_without_upstream_files_are_404() {
        let dir = tempfile::tempdir().unwrap();
        inv(dir.path(), "all.txt", &["/bin/kubectl"]);
        let s = snapshot_with(dir.path(), &mirror("m", "['*']", "all.txt"), "");
        for p in ["/bin/kubectl", "/bin/kubectl.sha256"] {
            let d = get(&s, p, None);
            assert_eq!((d.status, d.outcome, d.location), (404, Outcome::NotFound, None), "{p}");
        }
    }

    #[test]
    fn case_10_checksums_and_signatures_always_from_upstream_files() {
        let dir = tempfile::tempdir().unwrap();
        let entries =
            ["/bin/kubectl.sha256", "/bin/kubectl.sha512", "/bin/kubectl.sig", "/bin/kubectl.cert", "/bin/kubectl.asc"];
        inv(dir.path(), "all.txt", &entries);
        let s = snapshot_with(dir.path(), &mirror("m", "['*']", "all.txt"), "  files: https://dl.example/rel/\n");
        for p in entries {
            let d = get(&s, p, Some("aws:x"));
            assert_eq!(d.outcome, Outcome::Files, "{p}");
            assert_eq!(d.location.unwrap(), format!("https://dl.example/rel{p}"));
            assert_eq!(d.mirror, None);
        }
    }

    #[test]
    fn case_11_files_use_mirror_files_template_else_upstream() {
        let (_d, s) = plain();
        let d = get(&s, "/bin/kubectl", None);
        assert_eq!(d.outcome, Outcome::Mirror);
        assert_eq!(d.location.as_deref(), Some("https://m.example/f/bin/kubectl"));
        let d = get(&s, "/bin/kubeadm", None);
        assert_eq!(d.outcome, Outcome::Files);
        assert_eq!(d.location.as_deref(), Some("https://dl.example/rel/bin/kubeadm"));
        assert_eq!(d.candidates[0].skipped.as_deref(), Some("not in its inventory"));
        // A mirror without a files template is not considered for files.
        let dir = tempfile::tempdir().unwrap();
        inv(dir.path(), "all.txt", &["/bin/kubectl"]);
        let m =
            "  - name: blobsonly\n    blobs: https://b.example/{digest}\n    serves: ['*']\n    inventory: all.txt\n";
        let s = snapshot_with(dir.path(), m, "  files: https://dl.example/\n");
        let d = get(&s, "/bin/kubectl", None);
        assert_eq!((d.outcome, d.candidates.len()), (Outcome::Files, 0));
    }

    #[test]
    fn case_10_11_file_query_kept_to_upstream_files_dropped_to_a_mirror() {
        let (_d, s) = plain();
        let with = |path: &str, query| decide(&s, "GET", path, Some(query), None, &NoProbes, Detail::Explain);
        let d = with("/bin/kubeadm", "ns=dl.k8s.io&x=1");
        assert_eq!(d.outcome, Outcome::Files);
        assert_eq!(d.location.as_deref(), Some("https://dl.example/rel/bin/kubeadm?ns=dl.k8s.io&x=1"));
        let d = with("/bin/kubectl.sha256", "ns=dl.k8s.io");
        assert_eq!(d.location.as_deref(), Some("https://dl.example/rel/bin/kubectl.sha256?ns=dl.k8s.io"));
        let d = with("/bin/kubectl", "ns=dl.k8s.io");
        assert_eq!((d.outcome, d.location.as_deref()), (Outcome::Mirror, Some("https://m.example/f/bin/kubectl")));
        assert_eq!(with("/bin/kubeadm", "a=<b>").status, 400);
        assert_eq!(with("/bin/kubeadm", "").location.as_deref(), Some("https://dl.example/rel/bin/kubeadm"));
    }

    /// Every Location is a configured base/template followed by validated text: fuzz a spread of
    /// hostile inputs and check each redirect starts with a configured prefix and has no
    /// characters outside the validated sets.
    #[test]
    fn redirects_only_to_configured_hosts() {
        let dir = tempfile::tempdir().unwrap();
        inv(dir.path(), "all.txt", &[D1, "/bin/kubectl"]);
        let s = snapshot_with(
            dir.path(),
            &mirror("m", "['*']", "all.txt"),
            "  files: https://dl.example/rel/\n  signatures: https://sig.example/sigs\n",
        );
        let allowed = [
            "https://m.example/b/",
            "https://m.example/f/",
            "https://reg.example/v2/my-project/images/",
            "https://dl.example/rel/",
            "https://sig.example/v2/sigs/",
        ];
        let hostile = [
            "//evil.example/x",
            "/\\evil.example",
            "/@evil.example",
            "/v2/evil.example/manifests/x",
            "/v2/a/manifests/x@evil.example",
            "/http:/evil.example",
            "/v2/a/tags/list",
            "/bin/kubectl",
            "/bin/x.sig",
            "/%2F%2Fevil.example",
            "/\r\nLocation: https://evil.example/",
        ];
        let queries = [None, Some("n=1"), Some("x=//evil.example"), Some("a=b#c"), Some("u=https://evil.example/")];
        for p in
            hostile.iter().map(|s| s.to_string()).chain([format!("/v2/a/blobs/{D1}"), format!("/v2/a/referrers/{D1}")])
        {
            for q in queries {
                let d = decide(&s, "GET", &p, q, Some("l"), &NoProbes, Detail::Explain);
                if let Some(loc) = d.location {
                    assert!(allowed.iter().any(|a| loc.starts_with(a)), "{p} {q:?} -> {loc}");
                    assert!(!loc.contains(['\r', '\n', ' ', '\\', '#', '"']), "{loc}");
                    let url = url::Url::parse(&loc).unwrap();
                    assert!(
                        ["m.example", "reg.example", "dl.example", "sig.example"].contains(&url.host_str().unwrap())
                    );
                } else {
                    assert_ne!(d.status, 307);
                }
            }
        }
    }
}
