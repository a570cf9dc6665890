//! Destination inventories for `ferry serve`: one `/path <bytes>` line per file a destination
//! holds (the size lets `ferry report` count the bytes sent to each mirror).
//!
//! Each destination's inventory starts from the one already there and is then corrected by what
//! this run established: a file promoted or found holding the manifest's bytes is listed, any other
//! file of the run (refused, failed, lacking) is taken out. So it never lists a file the run did
//! not see in place, and keeps what earlier runs listed. It is replaced in one atomic write, after
//! every copy, and only when it changed.

use std::collections::BTreeMap;

use ferry_store::{Inventory, InventoryError, ObjectName};

use ferry_report::Status;

use crate::report::{InventoryReport, InventoryStatus, TargetReport};
use crate::{key, Stores};

/// A target of the run with its size, when known.
type Sized<'a> = (&'a TargetReport, Option<u64>);

/// Brings each destination's inventory at `name` up to date with `targets` (see the module
/// docs), listing each file with its size from `sizes` (by target, `None` when unknown); with
/// `confirm` false, only says what would change. One report per destination.
pub async fn update(
    targets: &[TargetReport],
    sizes: &[Option<u64>],
    stores: &Stores,
    name: &ObjectName,
    confirm: bool,
) -> Vec<InventoryReport> {
    let mut by_destination: BTreeMap<String, (String, Vec<Sized<'_>>)> = BTreeMap::new();
    for (i, target) in targets.iter().enumerate() {
        let entry = by_destination
            .entry(key(&target.target.destination))
            .or_insert_with(|| (target.target.destination.clone(), Vec::new()));
        entry.1.push((target, sizes.get(i).copied().flatten()));
    }
    let updates = by_destination
        .into_values()
        .map(|(destination, targets)| update_one(destination, targets, stores, name, confirm));
    futures::future::join_all(updates).await
}

async fn update_one(
    destination: String,
    targets: Vec<Sized<'_>>,
    stores: &Stores,
    name: &ObjectName,
    confirm: bool,
) -> InventoryReport {
    let store = stores.get(&destination);
    let mut report = InventoryReport {
        destination,
        name: name.to_string(),
        entries: 0,
        status: InventoryStatus::Failed,
        left_out: Vec::new(),
        error: None,
    };
    let old = match Inventory::read(store, name).await {
        Ok(old) => old,
        // A malformed inventory is replaced by a correct one; the run cannot vouch for what it
        // listed beyond its own files.
        Err(e @ (InventoryError::Line { .. } | InventoryError::Source { .. })) => {
            tracing::warn!(inventory = %name, error = %e, "the inventory cannot be read; writing a new one");
            Some(Inventory::new())
        }
        Err(InventoryError::Store(e)) => {
            report.error = Some(format!("cannot read the inventory: {e}"));
            return report;
        }
    };
    let mut new = old.clone().unwrap_or_default();
    for (target, size) in targets {
        let path = format!("/{}", target.target.name);
        if matches!(target.status, Status::Promoted | Status::Skipped) {
            if new.insert_file_sized(&path, size).is_err() {
                report.left_out.push(target.target.name.to_string());
            }
        } else {
            new.remove_file(&path);
        }
    }
    report.entries = new.len();
    report.status = if old.as_ref() == Some(&new) {
        InventoryStatus::Unchanged
    } else if !confirm {
        InventoryStatus::Planned
    } else {
        match new.write(store, name).await {
            Ok(()) => InventoryStatus::Written,
            Err(e) => {
                report.error = Some(e.to_string());
                InventoryStatus::Failed
            }
        }
    };
    report
}
