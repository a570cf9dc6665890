//! Image promotion: manifests → edges → plan → copy → verify → report.
//!
//! - [`edges::expand`] turns kpromo manifests into edges and finds tags that two manifests
//!   disagree on.
//! - [`plan::plan`] reads the registries (never writes) and decides each edge: skip, add a tag,
//!   copy, or refuse (lost source, tag move, conflict).
//! - [`copy::execute`] carries out the copies and tags, reading each source blob once, and
//!   verifies every promoted reference by reading it back.
//!
//! Refusals and failures are per edge: every good edge is promoted whatever happens to the rest.

pub mod copy;
pub mod edges;
pub mod plan;
mod report;
mod signing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ferry_manifest::PromotionManifest;
use ferry_oci::{RegistryAddress, RepoName};
use ferry_registry::cache::ManifestCache;
use ferry_registry::Registry;
use ferry_report::Progress;

pub use edges::{Edge, EdgeKind};
pub use ferry_report::Status;
pub use plan::{Action, PlannedEdge};
pub use report::{EdgeReport, Report, Summary};

/// The registries a run touches, opened once by the caller (so that remote registries share one
/// HTTP client, request budget and token cache).
#[derive(Debug, Default)]
pub struct Registries {
    by_address: HashMap<RegistryAddress, Arc<dyn Registry>>,
}

impl Registries {
    /// Open every registry named by `manifests` with `open`, each behind a [`ManifestCache`]
    /// (planning then copying asks for the same manifests; the registry is asked once).
    pub fn open<E>(
        manifests: &[PromotionManifest],
        mut open: impl FnMut(&RegistryAddress) -> Result<Arc<dyn Registry>, E>,
    ) -> Result<Registries, E> {
        let mut by_address = HashMap::new();
        let named = manifests.iter().flat_map(|m| std::iter::once(&m.source).chain(&m.destinations));
        // Each destination host without its prefix too: blobs are mounted across prefixes.
        let hosts = manifests.iter().flat_map(|m| &m.destinations).filter_map(|d| match d {
            RegistryAddress::Remote { host, prefix: Some(_) } => {
                Some(RegistryAddress::Remote { host: host.clone(), prefix: None })
            }
            _ => None,
        });
        for address in named.cloned().chain(hosts) {
            if let std::collections::hash_map::Entry::Vacant(slot) = by_address.entry(address) {
                let registry: Arc<dyn Registry> = Arc::new(ManifestCache::new(open(slot.key())?));
                slot.insert(registry);
            }
        }
        Ok(Registries { by_address })
    }

    /// The registry at `address`; every address of the manifests, and each destination host
    /// without its prefix, was opened up front.
    pub fn get(&self, address: &RegistryAddress) -> &Arc<dyn Registry> {
        &self.by_address[address]
    }
}

/// Where the blobs of `repo` at `address` live: for a registry with a path prefix, the host
/// itself and the full repository name (`prefix/repo`). Blobs are the host's, not a prefix's, so
/// one upload can be mounted into the repositories of every prefix.
pub(crate) fn blob_home(address: &RegistryAddress, repo: &RepoName) -> (RegistryAddress, RepoName) {
    if let RegistryAddress::Remote { host, prefix: Some(prefix) } = address {
        // A full name too long to be a repository name stays under its prefix.
        if let Ok(full) = format!("{prefix}/{repo}").parse() {
            return (RegistryAddress::Remote { host: host.clone(), prefix: None }, full);
        }
    }
    (address.clone(), repo.clone())
}

/// How a run of [`promote`] behaves.
#[derive(Clone, Debug)]
pub struct PromoteOptions {
    /// Write to the destinations. Without it the run only plans (a dry run).
    pub confirm: bool,
    /// Requests (planning) and blob transfers (copying) in flight at once, across registries.
    /// Per-host limits are the registry client's.
    pub concurrency: usize,
    /// Blobs up to this size are held in memory between the one source read and the writes;
    /// larger ones are spooled to a temporary file.
    pub memory_blob_limit: u64,
    /// Signatures required of the sources, and made for what is promoted.
    pub trust: Trust,
}

impl Default for PromoteOptions {
    fn default() -> Self {
        PromoteOptions { confirm: false, concurrency: 16, memory_blob_limit: 64 << 20, trust: Trust::default() }
    }
}

/// What a promotion asks of signatures.
#[derive(Clone, Default)]
pub struct Trust {
    /// Each source digest of an image edge must carry a cosign signature that one of these keys
    /// verifies (an index: its own digest signed); else its edges are refused.
    pub require: Option<Arc<ferry_sign::signer::Verifier>>,
    /// Sign each promoted digest, once, and add that signature to its `.sig` image at every
    /// destination, next to those already there.
    pub sign: Option<Arc<Signing>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").field("require", &self.require).field("sign", &self.sign.is_some()).finish()
    }
}

/// How promoted digests are signed.
pub struct Signing {
    /// The key (or, later, keyless identity) that signs.
    pub signer: Box<dyn ferry_sign::signer::Signer>,
    /// The registry name written as the signed `docker-reference` (`NAME/IMAGE`), the same for
    /// every destination so that one signature, byte for byte, is pushed everywhere; `None` for
    /// the first destination of the image's manifest.
    pub identity: Option<String>,
    /// Annotations signed into the payload's `optional` section.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Also attach an SLSA provenance attestation to each promoted digest at each destination
    /// (its `.att` image), signed with the same key; `None` for signatures only.
    pub provenance: Option<Provenance>,
}

/// What a promotion's provenance says about the run.
pub struct Provenance {
    /// `builder.id`: the CI job (its URL) or machine that ran Ferry.
    pub builder_id: String,
    /// This run: a CI run URL or a random id.
    pub invocation_id: String,
    /// The git commit of the manifests, when known.
    pub manifests_revision: Option<String>,
    /// When the run started.
    pub started: std::time::SystemTime,
}

/// Plan, and with `confirm` promote, everything `manifests` ask for.
pub async fn promote(
    manifests: &[PromotionManifest],
    registries: &Registries,
    options: &PromoteOptions,
    progress: &dyn Progress,
) -> Report {
    let started = Instant::now();
    let (edges, conflicts) = edges::expand(manifests);
    progress.phase("reading registries");
    let planned =
        plan::plan(registries, edges, &conflicts, options.concurrency, options.trust.require.as_deref()).await;
    tracing::debug!(edges = planned.len(), "planned");
    let transfer = copy::Transfer::default();
    let failures = if options.confirm {
        progress.phase("copying");
        let mut failures =
            copy::execute(registries, &planned, options.concurrency, options.memory_blob_limit, progress, &transfer)
                .await;
        failures.extend(signing::merge(registries, &planned, options.concurrency).await);
        if let Some(signing) = &options.trust.sign {
            progress.phase("signing");
            let unsigned =
                signing::sign(registries, &planned, &failures, signing, options.concurrency, &transfer).await;
            failures.extend(unsigned);
        }
        failures
    } else {
        Default::default()
    };
    progress.finish();
    let edges: Vec<EdgeReport> = planned
        .into_iter()
        .enumerate()
        .map(|(i, p)| EdgeReport::new(p, options.confirm, failures.get(&i).cloned()))
        .collect();
    let summary = Summary::new(&edges, options.confirm, &transfer, started.elapsed());
    Report { edges, summary }
}
