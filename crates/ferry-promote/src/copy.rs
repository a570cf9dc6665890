//! Carrying out a plan: fetch the manifest graphs of what must be copied, move each needed blob
//! once, push manifests children-first, then verify every promoted reference.
//!
//! Byte rules:
//! - Each blob is read from the source once per run, verified against its digest and size while
//!   it is read, and held in memory (or spooled to a temporary file when large) so that every
//!   destination — and every retry — is served from that one read. A blob that does not verify is
//!   pushed nowhere.
//! - Inside one destination host a blob is uploaded to one repository and mounted into the
//!   others, under any of the host's prefixes, when the registry allows it.
//! - A manifest is pushed only after everything it references is present at that destination,
//!   and always as the exact source bytes.
//! - Every promoted reference is verified: by the registry's answer to the push when it names
//!   the digest it stored (`Docker-Content-Digest`; another digest there fails the edge), else
//!   by reading the reference back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferry_oci::{Descriptor, Digest, Reference, RegistryAddress, RepoName, Sha256Verifier};
use ferry_registry::graph::{fetch_graph, Graph};
use ferry_registry::{BlobData, Registry, Stored};
use ferry_report::Progress;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{self, StreamExt};
use futures::TryStreamExt;
use tokio::sync::{OnceCell, Semaphore};

use crate::plan::{Action, PlannedEdge};
use crate::{blob_home, Registries};

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct Transfer {
    /// Source blob bytes read (each blob at most once).
    pub bytes_read: AtomicU64,
    /// Blob bytes uploaded, summed over destinations (mounts not counted).
    pub bytes_written: AtomicU64,
    /// Blobs read from a source.
    pub blobs_read: AtomicU64,
    /// Blob uploads, one per destination repository written to.
    pub blobs_uploaded: AtomicU64,
    /// Blobs mounted from another repository of the same destination registry.
    pub blobs_mounted: AtomicU64,
    /// Manifest pushes, one per reference (digest or tag) written.
    pub manifests_pushed: AtomicU64,
    /// Ferry's signatures added to `.sig` images.
    pub signatures_added: AtomicU64,
    /// Ferry's provenance attestations added to `.att` images.
    pub attestations_added: AtomicU64,
}

type Target = (RegistryAddress, RepoName);

/// Execute the Copy and AddTag edges of `plan`. Returns, per edge index, the failure (if any).
pub async fn execute(
    registries: &Registries,
    plan: &[PlannedEdge],
    concurrency: usize,
    memory_blob_limit: u64,
    progress: &dyn Progress,
    transfer: &Transfer,
) -> BTreeMap<usize, String> {
    let mut failures: BTreeMap<usize, String> = BTreeMap::new();
    let work: Vec<usize> =
        (0..plan.len()).filter(|&i| matches!(plan[i].action, Action::Copy | Action::AddTag)).collect();

    // 1. Manifest graphs from the source: the whole graph for copies, the top manifest for tags.
    let graph_keys: HashSet<(RegistryAddress, RepoName, Digest, bool)> = work
        .iter()
        .map(|&i| {
            let e = &plan[i].edge;
            (e.source.clone(), e.image.clone(), e.digest.clone(), plan[i].action == Action::Copy)
        })
        .collect();
    let graphs: HashMap<_, Result<Graph, String>> = stream::iter(graph_keys)
        .map(|key| async move {
            let registry = registries.get(&key.0);
            let graph = fetch_graph(registry.as_ref(), &key.1, &key.2, key.3).await;
            (key, graph)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let graph_of = |i: usize| {
        let e = &plan[i].edge;
        &graphs[&(e.source.clone(), e.image.clone(), e.digest.clone(), plan[i].action == Action::Copy)]
    };

    tracing::debug!(graphs = graphs.len(), "fetched manifest graphs");

    // 2. Blobs: which destination repositories need which blob, and where to read it.
    let mut jobs: BTreeMap<Digest, BlobJob> = BTreeMap::new();
    for &i in &work {
        let e = &plan[i].edge;
        match graph_of(i) {
            Err(why) => {
                failures.insert(i, why.clone());
            }
            Ok(graph) => {
                for blob in &graph.blobs {
                    let job = jobs.entry(blob.digest.clone()).or_insert_with(|| BlobJob {
                        descriptor: blob.clone(),
                        sources: Vec::new(),
                        targets: Vec::new(),
                        new_targets: HashSet::new(),
                    });
                    let source = (e.source.clone(), e.image.clone());
                    if !job.sources.contains(&source) {
                        job.sources.push(source);
                    }
                    let target = (e.destination.clone(), e.image.clone());
                    if plan[i].new_repository {
                        job.new_targets.insert(target.clone());
                    }
                    if !job.targets.contains(&target) {
                        job.targets.push(target);
                    }
                }
            }
        }
    }
    progress.total(jobs.values().map(|j| j.descriptor.size).sum());
    // Each job runs once, when the first group that needs it asks, under a transfer permit;
    // every group that needs the blob shares its outcome.
    let permits = Semaphore::new(concurrency);
    let blobs: HashMap<Digest, Shared<BoxFuture<'_, Arc<TargetResults>>>> = jobs
        .into_iter()
        .map(|(digest, job)| {
            let permits = &permits;
            let run = async move {
                let _permit = permits.acquire().await.expect("semaphore is never closed");
                Arc::new(job.run(registries, memory_blob_limit, progress, transfer).await)
            };
            (digest, run.boxed().shared())
        })
        .collect();

    // 3. Per destination repository and digest, as soon as its blobs are there: manifests children
    //    first, then the top by digest and by each tag; then read back and verify. Image edges go
    //    before signature and referrer edges, so that subjects land first.
    let mut groups: BTreeMap<(bool, String, String, Digest), Vec<usize>> = BTreeMap::new();
    for &i in work.iter().filter(|i| !failures.contains_key(i)) {
        let e = &plan[i].edge;
        let derived = e.kind != crate::EdgeKind::Image;
        groups.entry((derived, e.destination.to_string(), e.image.to_string(), e.digest.clone())).or_default().push(i);
    }
    for derived in [false, true] {
        let results: Vec<Vec<(usize, String)>> = stream::iter(groups.iter().filter(|(k, _)| k.0 == derived))
            .map(|(_, members)| {
                // A copying member's graph holds the children too.
                let lead = members.iter().copied().find(|&i| plan[i].action == Action::Copy).unwrap_or(members[0]);
                let graph = graph_of(lead).as_ref().expect("edges without a graph already failed");
                land_group(registries, plan, members, graph, &blobs, transfer)
            })
            .buffer_unordered(concurrency * 4)
            .collect()
            .await;
        failures.extend(results.into_iter().flatten());
    }
    failures
}

/// Outcome of one blob job per destination repository.
type TargetResults = HashMap<Target, Result<(), String>>;

/// Wait for a group's blobs at its destination, push its manifests, verify. Returns failed edges.
async fn land_group(
    registries: &Registries,
    plan: &[PlannedEdge],
    members: &[usize],
    graph: &Graph,
    blobs: &HashMap<Digest, Shared<BoxFuture<'_, Arc<TargetResults>>>>,
    transfer: &Transfer,
) -> Vec<(usize, String)> {
    let e = &plan[members[0]].edge;
    let target = (e.destination.clone(), e.image.clone());
    let outcomes = futures::future::join_all(graph.blobs.iter().map(|b| blobs[&b.digest].clone())).await;
    if let Some(Err(why)) = outcomes.iter().find_map(|o| o.get(&target).filter(|r| r.is_err())) {
        return members.iter().map(|&i| (i, why.clone())).collect();
    }
    let (mut failed, confirmed) = push_manifests(registries, plan, members, graph, transfer).await;
    let unconfirmed = members.iter().filter(|i| !confirmed.contains(i) && !failed.iter().any(|(f, _)| f == *i));
    for &i in unconfirmed.collect::<Vec<_>>() {
        if let Some(problem) = verify(registries, &plan[i].edge).await {
            failed.push((i, problem));
        }
    }
    failed
}

/// Read a promoted reference back and compare its digest: for registries that accept a manifest
/// without naming the digest they stored.
async fn verify(registries: &Registries, e: &crate::Edge) -> Option<String> {
    let reference = e.tag.clone().map_or(Reference::Digest(e.digest.clone()), Reference::Tag);
    match registries.get(&e.destination).head_manifest(&e.image, &reference).await {
        Ok(Some(head)) if head.digest == e.digest => None,
        Ok(Some(head)) => Some(format!("verification failed: {} is {}", e.destination_ref(), head.digest)),
        Ok(None) => Some(format!("verification failed: {} is missing after the push", e.destination_ref())),
        Err(err) => Some(format!("verification failed: {err}")),
    }
}

struct BlobJob {
    descriptor: Descriptor,
    /// Repositories that hold the blob, tried in order.
    sources: Vec<Target>,
    /// Repositories that need it.
    targets: Vec<Target>,
    /// Those of them that had no tags when planned.
    new_targets: HashSet<Target>,
}

/// Below this size, asking a new repository whether it has a blob costs about as much as sending
/// it, and the answer is almost always no.
const SMALL_BLOB: u64 = 1 << 20;

impl BlobJob {
    /// Make the blob present in every target. Per destination host (all its prefixes): HEAD
    /// the first repository and upload there if missing; mount into the others from it (a mount
    /// is one request, like a HEAD), or, once the host declines a mount, HEAD and upload. The
    /// source is read at most once, and only if some target needs the bytes.
    async fn run(
        self,
        registries: &Registries,
        memory_limit: u64,
        progress: &dyn Progress,
        transfer: &Transfer,
    ) -> TargetResults {
        let digest = &self.descriptor.digest;
        let data: OnceCell<Result<BlobData, String>> = OnceCell::new();
        let data = &data;
        let this = &self;
        // Repositories that existed first: they are the likeliest to hold the blob already.
        let (existing, new): (Vec<&Target>, Vec<&Target>) =
            self.targets.iter().partition(|t| !self.new_targets.contains(*t));
        let mut by_host: BTreeMap<String, Vec<(&Target, Target)>> = BTreeMap::new();
        for target in existing.into_iter().chain(new) {
            let home = blob_home(&target.0, &target.1);
            by_host.entry(home.0.to_string()).or_default().push((target, home));
        }
        let ask_first = |t: &Target| self.descriptor.size > SMALL_BLOB || !self.new_targets.contains(t);
        let results = futures::future::join_all(by_host.into_values().map(|targets| async move {
            let mut results = Vec::new();
            let mut holder: Option<RepoName> = None;
            let mut mountable = true;
            for (target, (address, repo)) in targets {
                let registry = registries.get(&address);
                if let Some(from) = holder.as_ref().filter(|_| mountable) {
                    if registry.mount_blob(&repo, digest, from).await.unwrap_or(false) {
                        transfer.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                        results.push((target.clone(), Ok(())));
                        continue;
                    }
                    mountable = false;
                }
                let present = ask_first(target) && registry.has_blob(&repo, digest).await.unwrap_or(false);
                let outcome = if present {
                    Ok(())
                } else {
                    match data.get_or_init(|| this.read(registries, memory_limit, progress, transfer)).await {
                        Err(why) => Err(why.clone()),
                        Ok(bytes) => match registry.put_blob(&repo, digest, bytes).await {
                            Ok(()) => {
                                transfer.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
                                transfer.bytes_written.fetch_add(this.descriptor.size, Ordering::Relaxed);
                                Ok(())
                            }
                            Err(e) => Err(format!("cannot write blob: {e}")),
                        },
                    }
                };
                if outcome.is_ok() && holder.is_none() {
                    holder = Some(repo);
                }
                results.push((target.clone(), outcome));
            }
            results
        }))
        .await;
        if data.get().is_none() {
            // Every target had it: count it as done for the progress bar.
            progress.advance(self.descriptor.size);
        }
        results.into_iter().flatten().collect()
    }

    /// Read the blob once from the first source that serves it intact.
    async fn read(
        &self,
        registries: &Registries,
        memory_limit: u64,
        progress: &dyn Progress,
        transfer: &Transfer,
    ) -> Result<BlobData, String> {
        let mut why = String::new();
        for (address, repo) in &self.sources {
            match read_verified(registries.get(address).as_ref(), repo, &self.descriptor, memory_limit, progress).await
            {
                Ok(data) => {
                    transfer.blobs_read.fetch_add(1, Ordering::Relaxed);
                    transfer.bytes_read.fetch_add(self.descriptor.size, Ordering::Relaxed);
                    return Ok(data);
                }
                Err(e) => why = e,
            }
        }
        Err(why)
    }
}

/// Stream a blob, checking size and digest as it arrives; keep it in memory up to
/// `memory_limit` bytes, else in a temporary file.
async fn read_verified(
    registry: &dyn Registry,
    repo: &RepoName,
    descriptor: &Descriptor,
    memory_limit: u64,
    progress: &dyn Progress,
) -> Result<BlobData, String> {
    let digest = &descriptor.digest;
    let name = format!("{}/{repo}@{digest}", registry.name());
    let mut stream = registry.get_blob(repo, digest).await.map_err(|e| format!("cannot read source blob: {e}"))?;
    let mut verifier = Sha256Verifier::new(digest.clone());
    let in_memory = descriptor.size <= memory_limit;
    let mut buffer = BytesMut::with_capacity(if in_memory { descriptor.size as usize } else { 0 });
    let mut spool = if in_memory {
        None
    } else {
        Some(tempfile::NamedTempFile::new().map_err(|e| format!("cannot create a spool file: {e}"))?)
    };
    while let Some(chunk) = stream.try_next().await.map_err(|e| format!("reading source blob {name}: {e}"))? {
        verifier.update(&chunk);
        if verifier.len() > descriptor.size {
            return Err(format!("source blob {name} is longer than its declared size {}", descriptor.size));
        }
        progress.advance(chunk.len() as u64);
        match &mut spool {
            Some(file) => file.write_all(&chunk).map_err(|e| format!("spooling {name}: {e}"))?,
            None => buffer.extend_from_slice(&chunk),
        }
    }
    if verifier.len() != descriptor.size {
        return Err(format!("source blob {name} has {} bytes, expected {}", verifier.len(), descriptor.size));
    }
    if let Err(actual) = verifier.finish() {
        return Err(format!("source blob {name} does not match its digest (its bytes hash to {actual}); not pushed"));
    }
    Ok(match spool {
        Some(file) => BlobData::File(Arc::new(file.into_temp_path())),
        None => BlobData::Memory(Bytes::from(buffer)),
    })
}

/// Push one (destination repository, digest) group's manifests. Returns the failed edges, and
/// the edges whose reference the registry confirmed by naming the digest it stored.
async fn push_manifests(
    registries: &Registries,
    plan: &[PlannedEdge],
    members: &[usize],
    graph: &Graph,
    transfer: &Transfer,
) -> (Vec<(usize, String)>, HashSet<usize>) {
    let first = &plan[members[0]].edge;
    let registry = registries.get(&first.destination);
    let repo = first.image.clone();
    let (top, children) = graph.manifests.split_last().expect("a graph has its top manifest");
    let fail_all = |why: String| (members.iter().map(|&i| (i, why.clone())).collect::<Vec<_>>(), HashSet::new());
    let copying = members.iter().any(|&i| plan[i].action == Action::Copy);
    if copying {
        for child in children {
            if let Err(e) = registry.put_manifest(&repo, &Reference::Digest(child.digest.clone()), child).await {
                return fail_all(format!("cannot push manifest {}: {e}", child.digest));
            }
            transfer.manifests_pushed.fetch_add(1, Ordering::Relaxed);
        }
    }
    let (mut failed, mut confirmed) = (Vec::new(), HashSet::new());
    let by_digest: Vec<usize> = members.iter().copied().filter(|&i| plan[i].edge.tag.is_none()).collect();
    let mut references: Vec<(Vec<usize>, Reference)> = Vec::new();
    if !by_digest.is_empty() {
        references.push((by_digest, Reference::Digest(top.digest.clone())));
    }
    references.extend(members.iter().filter_map(|&i| Some((vec![i], Reference::Tag(plan[i].edge.tag.clone()?)))));
    for (edges, reference) in references {
        match registry.put_manifest(&repo, &reference, top).await {
            Err(e) => {
                let why = format!("cannot push manifest {}/{repo}:{reference}: {e}", registry.name());
                if matches!(reference, Reference::Digest(_)) {
                    return fail_all(why);
                }
                failed.extend(edges.into_iter().map(|i| (i, why.clone())));
            }
            Ok(stored) => {
                transfer.manifests_pushed.fetch_add(1, Ordering::Relaxed);
                if stored == Stored::Confirmed {
                    confirmed.extend(edges);
                }
            }
        }
    }
    (failed, confirmed)
}
