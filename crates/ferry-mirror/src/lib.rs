//! Blob mirroring: the config and layer blobs of a set of images → object stores keyed by digest
//! (`<store>/sha256:<hex>`), each with an inventory that `ferry serve` trusts.
//!
//! A run:
//! 1. **Images → blobs.** Each image's manifest graph (every platform of an index) is read from
//!    the registry with `ferry_registry::graph::fetch_graph`; the union of their config and layer
//!    descriptors is the set of blobs to mirror. Manifests stay with the registry, and so do
//!    signatures (see docs/mirror.md).
//! 2. **What each store lacks.** A blob the store's inventory lists is trusted and not asked
//!    about; any other gets a HEAD (present when the size, and on cloud stores the recorded
//!    sha256, match). With `--verify` instead, the store is listed and every `sha256:` object is
//!    read back and re-hashed.
//! 3. **Copy.** Each needed blob is read from the registry once and streamed by
//!    [`ferry_store::fan_out`] into every store that lacks it; each store commits it only when
//!    the whole blob hashed to its digest.
//! 4. **Inventories.** Once its copies are over, each store's inventory is rewritten (atomically,
//!    only when it changed) to list what the store holds: what it already listed or was found
//!    to hold, plus what was committed. A blob that failed is left out.

mod destination;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_oci::{Digest, RepoName};
use ferry_registry::Registry;
use ferry_report::Progress;
use ferry_store::{fan_out, verify_object, Inventory, Store};
use futures::stream::{self, Stream, StreamExt};

pub use destination::{Destination, DEFAULT_INVENTORY};
pub use report::{CopyReport, CopyStatus, Corrupt, Findings, ImageReport, Report, StoreReport, Summary};

/// An image to mirror: `<from>/<name>@<digest>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Image {
    /// The repository, relative to the registry.
    pub name: RepoName,
    /// The image's manifest or index digest.
    pub digest: Digest,
}

/// How a run of [`mirror`] behaves.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// Write blobs and inventories. Without it the run only reads and reports.
    pub confirm: bool,
    /// Check each store against its inventory by listing it and re-hashing every blob, instead
    /// of trusting the inventory; with `confirm`, repair what differs.
    pub verify: bool,
    /// Manifest reads, HEADs, re-hashes and blob copies in flight at once.
    pub concurrency: usize,
    /// Bytes of blob contents held for cloud uploads at once, whatever `concurrency` (see
    /// [`Store::upload_buffer`]; a blob needing more than the whole budget takes all of it).
    pub memory_budget: u64,
    /// Reads of one blob from the registry before it is given up, when a read breaks off or the
    /// bytes do not hash to the digest. (Requests that fail before any byte arrives are retried
    /// by the registry client itself.)
    pub read_attempts: usize,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions { confirm: false, verify: false, concurrency: 16, memory_budget: 96 << 20, read_attempts: 3 }
    }
}

const MIB: u64 = 1 << 20;

/// Where a blob is read from: the first image (in name order) that has it.
#[derive(Debug)]
struct Source {
    repo: RepoName,
    size: u64,
}

/// What a store holds and lacks, as learnt before copying.
#[derive(Default)]
struct Survey {
    error: Option<String>,
    /// The inventory as found (`None` when there was none).
    old: Option<Inventory>,
    /// What the new inventory starts from: the entries known to be held before any copy.
    held: Inventory,
    listed: usize,
    present: usize,
    /// Blobs to copy, with why.
    needs: Vec<(Digest, String)>,
    findings: Option<Findings>,
}

impl Survey {
    fn failed(error: String) -> Survey {
        Survey { error: Some(error), ..Survey::default() }
    }
}

/// Mirror the blobs of `images`, read from `registry`, into every destination.
pub async fn mirror(
    registry: Arc<dyn Registry>,
    images: &[Image],
    destinations: &[Destination],
    options: &MirrorOptions,
    progress: &Arc<dyn Progress>,
) -> Report {
    let started = Instant::now();
    let concurrency = options.concurrency.max(1);
    progress.phase("reading manifests");
    let (image_reports, sources) = collect_blobs(registry.as_ref(), images, concurrency).await;

    progress.phase(if options.verify { "re-hashing the stores" } else { "reading inventories" });
    let surveys: Vec<Survey> = futures::future::join_all(destinations.iter().map(|d| async {
        if options.verify {
            verify_store(d, &sources, concurrency, progress).await
        } else {
            survey_store(d, &sources, concurrency).await
        }
    }))
    .await;

    // Each needed blob → the stores that need it.
    let mut needed: BTreeMap<&Digest, Vec<usize>> = BTreeMap::new();
    for (index, survey) in surveys.iter().enumerate() {
        for (digest, _) in &survey.needs {
            needed.entry(digest).or_default().push(index);
        }
    }
    let mut outcomes: BTreeMap<(usize, Digest), Result<(), String>> = BTreeMap::new();
    let (mut blobs_read, mut bytes_read) = (0u64, 0u64);
    if options.confirm {
        progress.phase("copying");
        progress.total(needed.keys().map(|d| sources[*d].size).sum());
        let budget_mib = options.memory_budget.div_ceil(MIB).clamp(1, u64::from(u32::MAX)) as u32;
        let budget = tokio::sync::Semaphore::new(budget_mib as usize);
        let copies = needed.iter().map(|(digest, stores)| {
            let source = &sources[*digest];
            let targets: Vec<(usize, Store)> = stores.iter().map(|&i| (i, destinations[i].blobs.clone())).collect();
            let buffered = targets.iter().map(|(_, store)| store.upload_buffer(source.size)).max().unwrap_or(0);
            let weight = buffered.div_ceil(MIB).min(u64::from(budget_mib)) as u32;
            let (budget, registry) = (&budget, &registry);
            async move {
                let _memory = budget.acquire_many(weight).await.expect("the budget is never closed");
                copy_blob(registry.as_ref(), digest, source, targets, options.read_attempts.max(1), progress).await
            }
        });
        let mut copies = stream::iter(copies).buffer_unordered(concurrency);
        while let Some(copy) = copies.next().await {
            blobs_read += copy.reads;
            bytes_read += copy.bytes_read;
            for (index, result) in copy.results {
                outcomes.insert((index, copy.digest.clone()), result);
            }
        }
    }

    progress.phase("writing inventories");
    let mut stores = Vec::with_capacity(destinations.len());
    for (index, (destination, survey)) in destinations.iter().zip(surveys).enumerate() {
        stores.push(finish_store(index, destination, survey, &sources, &outcomes, options.confirm).await);
    }
    progress.finish();

    let copies = || stores.iter().flat_map(|s| &s.copies);
    let count = |status| copies().filter(|c| c.status == status).count();
    let summary = Summary {
        dry_run: !options.confirm,
        verify: options.verify,
        images: image_reports.len(),
        images_failed: image_reports.iter().filter(|i| i.error.is_some()).count(),
        blobs: sources.len(),
        blob_bytes: sources.values().map(|s| s.size).sum(),
        copies_planned: count(CopyStatus::Planned),
        copies_done: count(CopyStatus::Copied),
        copies_failed: count(CopyStatus::Failed),
        blobs_read,
        bytes_read,
        bytes_written: copies().filter(|c| c.status == CopyStatus::Copied).map(|c| c.size).sum(),
        stores_failed: stores.iter().filter(|s| s.error.is_some()).count(),
        differences: stores.iter().filter_map(|s| s.verify.as_ref()).map(Findings::differences).sum(),
        unrepairable: stores
            .iter()
            .filter_map(|s| s.verify.as_ref())
            .flat_map(|f| &f.corrupt)
            .filter(|c| !c.repairable)
            .count(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Report { images: image_reports, stores, summary }
}

/// Reads every image's manifest graph; returns a report per image and the union of their blobs.
async fn collect_blobs(
    registry: &dyn Registry,
    images: &[Image],
    concurrency: usize,
) -> (Vec<ImageReport>, BTreeMap<Digest, Source>) {
    let unique: BTreeSet<&Image> = images.iter().collect();
    let graphs: Vec<_> = stream::iter(unique)
        .map(|image| async move {
            (image, ferry_registry::graph::fetch_graph(registry, &image.name, &image.digest, true).await)
        })
        .buffered(concurrency)
        .collect()
        .await;
    let mut reports = Vec::with_capacity(graphs.len());
    let mut sources = BTreeMap::new();
    for (image, graph) in graphs {
        let (blobs, error) = match graph {
            Ok(graph) => {
                for blob in &graph.blobs {
                    sources
                        .entry(blob.digest.clone())
                        .or_insert_with(|| Source { repo: image.name.clone(), size: blob.size });
                }
                (graph.blobs.len(), None)
            }
            Err(e) => (0, Some(e)),
        };
        reports.push(ImageReport { name: image.name.clone(), digest: image.digest.clone(), blobs, error });
    }
    (reports, sources)
}

/// Trust the inventory for what it lists; HEAD every other blob.
async fn survey_store(destination: &Destination, sources: &BTreeMap<Digest, Source>, concurrency: usize) -> Survey {
    let old = match Inventory::read(&destination.inventory_store, &destination.inventory_name).await {
        Ok(old) => old,
        Err(e) => return Survey::failed(format!("cannot use the inventory (fix or delete it): {e}")),
    };
    let mut held = old.clone().unwrap_or_default();
    let unlisted: Vec<(&Digest, &Source)> = sources.iter().filter(|(d, _)| !held.contains_blob(d)).collect();
    let listed = sources.len() - unlisted.len();
    // Listed blobs get their size from the source's descriptor (older inventories have none).
    for (digest, source) in sources {
        if held.contains_blob(digest) {
            held.insert_blob_sized(digest.clone(), Some(source.size));
        }
    }
    let heads: Vec<_> = stream::iter(unlisted)
        .map(|(digest, source)| async move {
            (digest, source, destination.blobs.head(&Destination::blob_name(digest)).await)
        })
        .buffered(concurrency)
        .collect()
        .await;
    let (mut present, mut needs) = (0, Vec::new());
    for (digest, source, head) in heads {
        match head {
            Ok(Some(info)) if info.size == source.size && info.sha256.as_deref().is_none_or(|h| h == digest.hex()) => {
                present += 1;
                held.insert_blob_sized(digest.clone(), Some(source.size));
            }
            Ok(Some(info)) => {
                let recorded = info.sha256.map(|h| format!(", recorded sha256 {h}")).unwrap_or_default();
                needs.push((digest.clone(), format!("present but {} bytes{recorded}: replaced", info.size)));
            }
            Ok(None) => needs.push((digest.clone(), "absent".into())),
            Err(e) => needs.push((digest.clone(), format!("HEAD failed ({e})"))),
        }
    }
    Survey { error: None, old, held, listed, present, needs, findings: None }
}

/// List the store and re-hash every `sha256:` object; compare with the inventory.
async fn verify_store(
    destination: &Destination,
    sources: &BTreeMap<Digest, Source>,
    concurrency: usize,
    progress: &Arc<dyn Progress>,
) -> Survey {
    let old = match Inventory::read(&destination.inventory_store, &destination.inventory_name).await {
        Ok(old) => old,
        Err(e) => return Survey::failed(format!("cannot use the inventory (fix or delete it): {e}")),
    };
    let listing = match destination.blobs.list("sha256:").await {
        Ok(listing) => listing,
        Err(e) => return Survey::failed(format!("cannot list the store: {e}")),
    };
    let objects: Vec<(Digest, u64)> =
        listing.into_iter().filter_map(|(name, size)| Some((name.as_str().parse().ok()?, size))).collect();
    progress.grow(objects.iter().map(|(_, size)| size).sum());
    let checks: Vec<(Digest, u64, Result<(), String>)> = stream::iter(objects)
        .map(|(digest, size)| {
            let (store, progress) = (destination.blobs.clone(), progress.clone());
            async move {
                let check = tokio::spawn(rehash(store, digest.clone(), progress)).await;
                (digest, size, check.unwrap_or_else(|e| Err(format!("check failed: {e}"))))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let old_blobs: BTreeSet<Digest> = old.iter().flat_map(Inventory::blobs).cloned().collect();
    let in_store: BTreeSet<&Digest> = checks.iter().map(|(d, _, _)| d).collect();
    let mut findings = Findings { checked: checks.len(), ..Findings::default() };
    findings.missing = old_blobs.iter().filter(|d| !in_store.contains(d)).cloned().collect();
    // Paths (release files) are not this command's business: kept as they were.
    let mut held = Inventory::new();
    if let Some(old) = &old {
        for path in old.files() {
            held.insert_file_sized(path, old.file_size(path)).expect("a parsed inventory holds valid paths");
        }
    }
    let mut corrupt = BTreeSet::new();
    for (digest, size, check) in checks {
        match check {
            Ok(()) => {
                if !old_blobs.contains(&digest) {
                    findings.unlisted.push(digest.clone());
                }
                held.insert_blob_sized(digest, Some(size));
            }
            Err(problem) => {
                let repairable = sources.contains_key(&digest);
                findings.corrupt.push(Corrupt { digest: digest.clone(), problem, repairable });
                corrupt.insert(digest);
            }
        }
    }
    findings.corrupt.sort_by(|a, b| a.digest.cmp(&b.digest));
    findings.unlisted.sort();
    let needs = sources
        .keys()
        .filter(|d| !held.contains_blob(d))
        .map(|d| {
            let reason = if corrupt.contains(d) {
                "corrupt"
            } else if old_blobs.contains(d) {
                "missing"
            } else {
                "absent"
            };
            (d.clone(), reason.to_string())
        })
        .collect();
    Survey { error: None, old, held, listed: 0, present: 0, needs, findings: Some(findings) }
}

/// Reads `digest` back from `store` and checks that its bytes hash to it.
async fn rehash(store: Store, digest: Digest, progress: Arc<dyn Progress>) -> Result<(), String> {
    let name = Destination::blob_name(&digest);
    let on_read = move |bytes| progress.advance(bytes);
    let (_, hashed) = verify_object(&store, &name, &digest, on_read).await.map_err(|e| format!("cannot read: {e}"))?;
    hashed.map_err(|actual| format!("bytes hash to {actual}"))
}

struct BlobCopy {
    digest: Digest,
    reads: u64,
    bytes_read: u64,
    /// Per store index: committed, or why not.
    results: Vec<(usize, Result<(), String>)>,
}

/// Reads `digest` from the registry and streams it into every target, committing each only when
/// the bytes hash to the digest. A read that breaks off or does not verify commits nothing and is
/// tried again, up to `attempts` reads.
async fn copy_blob(
    registry: &dyn Registry,
    digest: &Digest,
    source: &Source,
    targets: Vec<(usize, Store)>,
    attempts: usize,
    progress: &Arc<dyn Progress>,
) -> BlobCopy {
    let name = Destination::blob_name(digest);
    let mut copy = BlobCopy { digest: digest.clone(), reads: 0, bytes_read: 0, results: Vec::new() };
    let mut error = String::new();
    for attempt in 1..=attempts {
        let stream = match registry.get_blob(&source.repo, &copy.digest).await {
            Ok(stream) => stream,
            Err(e) => {
                // The registry client has already retried what was worth retrying.
                error = format!("cannot read {}@{} from the registry: {e}", source.repo, copy.digest);
                break;
            }
        };
        copy.reads += 1;
        if attempt > 1 {
            progress.grow(source.size);
        }
        let uploads = targets.iter().map(|(_, store)| store.upload(&name, copy.digest.hex())).collect();
        let out = fan_out(bounded(stream, source.size, progress.clone()), &copy.digest, uploads).await;
        copy.bytes_read += out.bytes;
        match out.source {
            Ok(()) => {
                let results = out.destinations.into_iter().map(|r| r.map_err(|e| e.to_string()));
                copy.results.extend(targets.iter().map(|(i, _)| *i).zip(results));
                return copy;
            }
            Err(e) => {
                tracing::warn!(digest = %copy.digest, attempt, error = %e, "blob read failed");
                error = format!("{}@{}: {e}", source.repo, copy.digest);
            }
        }
    }
    copy.results.extend(targets.iter().map(|(i, _)| (*i, Err(error.clone()))));
    copy
}

/// The registry's stream, cut off with an error as soon as it runs past the descriptor's size
/// (so a misbehaving source cannot stream forever), counting progress as it goes.
fn bounded(
    stream: ferry_registry::BlobStream,
    size: u64,
    progress: Arc<dyn Progress>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Unpin {
    let mut seen = 0u64;
    stream.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > size {
            return Err(std::io::Error::other(format!("longer than its declared size of {size} bytes")));
        }
        progress.advance(chunk.len() as u64);
        Ok(chunk)
    })
}

/// Reports one store's copies and, with `confirm`, rewrites its inventory when it changed.
async fn finish_store(
    index: usize,
    destination: &Destination,
    survey: Survey,
    sources: &BTreeMap<Digest, Source>,
    outcomes: &BTreeMap<(usize, Digest), Result<(), String>>,
    confirm: bool,
) -> StoreReport {
    let mut held = survey.held;
    let copies = survey
        .needs
        .into_iter()
        .map(|(digest, reason)| {
            let size = sources[&digest].size;
            let (status, error) = match outcomes.get(&(index, digest.clone())) {
                None => {
                    // Counted as it would be if the copy lands; a dry run writes nothing.
                    held.insert_blob_sized(digest.clone(), Some(size));
                    (CopyStatus::Planned, None)
                }
                Some(Ok(())) => {
                    held.insert_blob_sized(digest.clone(), Some(size));
                    (CopyStatus::Copied, None)
                }
                Some(Err(e)) => (CopyStatus::Failed, Some(e.clone())),
            };
            CopyReport { digest, size, reason, status, error }
        })
        .collect();
    let mut report = StoreReport {
        store: destination.blobs.url().to_string(),
        inventory: destination.inventory_url.clone(),
        error: survey.error,
        listed: survey.listed,
        present: survey.present,
        copies,
        verify: survey.findings,
        inventory_entries: held.len(),
        inventory_written: false,
    };
    if confirm && report.error.is_none() && survey.old.as_ref() != Some(&held) {
        match held.write(&destination.inventory_store, &destination.inventory_name).await {
            Ok(()) => report.inventory_written = true,
            Err(e) => report.error = Some(format!("writing the inventory failed: {e}")),
        }
    }
    report
}
