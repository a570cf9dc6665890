//! File promotion: kpromo file manifests → plan → copy → verify → report (and inventories).
//!
//! - [`plan::plan`] turns manifests into targets (one file at one destination), refuses a name
//!   that two manifests give different hashes, and decides each target by reading, never writing:
//!   HEAD the source and every destination; a destination that can prove it holds the bytes (the
//!   sha256 Ferry recorded in its metadata) is skipped without reading anything, one that cannot
//!   (a local folder, an object written by another tool) is read back and re-hashed.
//! - [`copy::execute`] reads each needed source file once and streams it through
//!   [`ferry_store::fan_out`] to every destination lacking it, committed only once the whole file
//!   hashed to the manifest's sha256; then checks each write with a HEAD.
//! - [`inventory`] rewrites each destination's inventory (`/path` lines for `ferry serve`) when
//!   asked.
//! - [`listing`] writes a files manifest from what a staging store holds (`ferry manifest files`).
//!
//! Refusals and failures are per target: every good file lands whatever happens to the rest.

pub mod copy;
pub mod destination_inventory;
pub mod listing;
pub mod plan;
mod report;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferry_manifest::{FileManifest, ManifestError};
use ferry_report::Progress;
use ferry_store::{ObjectName, Store, StoreError};

pub use ferry_report::Status;
pub use plan::{Action, Target};
pub use report::{InventoryReport, InventoryStatus, Report, Summary, TargetReport};

/// Totals of a run, shared by the tasks that add to them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Source files read (each at most once).
    pub files_read: AtomicU64,
    /// Bytes read from sources.
    pub bytes_read: AtomicU64,
    /// Bytes committed, summed over destinations.
    pub bytes_written: AtomicU64,
    /// Destination bytes read back to decide whether they are the manifest's.
    pub bytes_rehashed: AtomicU64,
}

/// The stores a run touches, opened once each by the caller, keyed by base (without a trailing
/// `/`, so `gs://b/dir` and `gs://b/dir/` are one store).
#[derive(Debug, Default)]
pub struct Stores {
    by_base: HashMap<String, Store>,
}

impl Stores {
    /// Opens every filestore of `manifests` with `open`; a store that cannot be opened is an
    /// error naming the filestores file and line.
    pub fn open(
        manifests: &[FileManifest],
        mut open: impl FnMut(&str) -> Result<Store, StoreError>,
    ) -> Result<Stores, ManifestError> {
        let mut by_base = HashMap::new();
        for manifest in manifests {
            for filestore in std::iter::once(&manifest.source).chain(&manifest.destinations) {
                if let std::collections::hash_map::Entry::Vacant(slot) = by_base.entry(key(&filestore.base)) {
                    slot.insert(open(&filestore.base).map_err(|e| ManifestError {
                        path: manifest.filestores_path.clone(),
                        line: Some(filestore.line),
                        message: e.to_string(),
                    })?);
                }
            }
        }
        Ok(Stores { by_base })
    }

    /// The store of `base`; every base of the manifests was opened up front.
    pub fn get(&self, base: &str) -> &Store {
        &self.by_base[&key(base)]
    }
}

/// The identity of a filestore base.
pub(crate) fn key(base: &str) -> String {
    base.trim_end_matches('/').to_string()
}

/// How a run of [`promote`] behaves.
#[derive(Clone, Debug)]
pub struct FilesOptions {
    /// Write to the destinations. Without it the run only plans (a dry run).
    pub confirm: bool,
    /// Replace a destination file that holds other bytes instead of refusing it (logged).
    pub allow_overwrite: bool,
    /// Files planned or copied at once (each to all its destinations).
    pub concurrency: usize,
    /// Bytes of file contents held for cloud uploads at once, whatever `concurrency` (local
    /// folders are written without holding any).
    pub memory_budget: u64,
    /// Rewrite the inventory at this name (relative to each destination's base) to list the
    /// files it holds.
    pub inventory: Option<ObjectName>,
}

impl Default for FilesOptions {
    fn default() -> Self {
        FilesOptions {
            confirm: false,
            allow_overwrite: false,
            concurrency: 8,
            memory_budget: 96 << 20,
            inventory: None,
        }
    }
}

/// Plan, and with `confirm` promote, every file `manifests` ask for.
pub async fn promote(
    manifests: &[FileManifest],
    stores: &Stores,
    options: &FilesOptions,
    progress: &Arc<dyn Progress>,
) -> Report {
    let started = Instant::now();
    let counters = Counters::default();
    progress.phase("checking destinations");
    let plan = plan::plan(manifests, stores, options, &counters).await;
    let failures = if options.confirm {
        progress.phase("copying");
        copy::execute(&plan, stores, options.concurrency, options.memory_budget, progress, &counters).await
    } else {
        Default::default()
    };
    // Each target's size (its source's), for the inventories' size column.
    let mut sizes = vec![None; plan.targets.len()];
    for job in &plan.jobs {
        for &t in &job.targets {
            sizes[t] = job.size;
        }
    }
    let targets: Vec<TargetReport> = plan
        .targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| TargetReport::new(t, options.confirm, failures.get(&i).cloned()))
        .collect();
    let inventories = match &options.inventory {
        Some(name) => {
            progress.phase("inventories");
            destination_inventory::update(&targets, &sizes, stores, name, options.confirm).await
        }
        None => Vec::new(),
    };
    progress.finish();
    let summary = Summary::new(
        &targets,
        options.confirm,
        counters.files_read.load(Ordering::Relaxed),
        counters.bytes_read.load(Ordering::Relaxed),
        counters.bytes_written.load(Ordering::Relaxed),
        counters.bytes_rehashed.load(Ordering::Relaxed),
        started.elapsed(),
    );
    Report { files: targets, inventories, summary }
}
