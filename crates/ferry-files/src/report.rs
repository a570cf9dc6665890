//! What a run did, per target and in total, as text for people and JSON for machines.

use std::fmt;
use std::time::Duration;

use ferry_report::{human_bytes, why, Decided, Status, Tally};
use serde::Serialize;

use crate::plan::{Action, Target};

/// What became of one target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// The target and what was planned for it.
    #[serde(flatten)]
    pub target: Target,
    /// What became of it.
    pub status: Status,
    /// Why it failed, when it did (refusal reasons are in `reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TargetReport {
    /// The report of `target`, from its planned action, whether the run was confirmed (else a dry
    /// run) and the copy's error, if it failed.
    pub fn new(target: Target, confirmed: bool, error: Option<String>) -> Self {
        let decided = match target.action {
            Action::Refuse => Decided::Refuse,
            Action::Skip => Decided::Skip,
            _ => Decided::Act,
        };
        let status = Status::of(decided, confirmed, error.is_some());
        TargetReport { target, status, error }
    }
}

impl fmt::Display for TargetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.target;
        let verb = match (self.status, t.action) {
            (Status::Refused, _) => "REFUSE   ",
            (Status::Failed, _) => "FAILED   ",
            (Status::Skipped, _) => "skip     ",
            (_, Action::Overwrite) => "OVERWRITE",
            (_, _) => "copy     ",
        };
        write!(f, "{verb} {} -> {}", t.source_url(), t.destination_url())?;
        if let Some(why) = why(t.reason.as_deref(), self.error.as_deref()) {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

/// What happened to one destination's inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InventoryStatus {
    /// Dry run: would be rewritten.
    Planned,
    /// Rewritten in one atomic write.
    Written,
    /// Already listed exactly what it should: not written.
    Unchanged,
    /// Not read or not written (see `error`); the run fails.
    Failed,
}

/// One destination's inventory, as this run left it.
#[derive(Clone, Debug, Serialize)]
pub struct InventoryReport {
    /// The destination filestore base, as written in the manifest.
    pub destination: String,
    /// The inventory's object name, relative to the destination's base.
    pub name: String,
    /// Entries in the new inventory.
    pub entries: usize,
    /// What happened to it.
    pub status: InventoryStatus,
    /// Files held but left out because `ferry serve` would not accept their path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl fmt::Display for InventoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.status {
            InventoryStatus::Planned => "inventory",
            InventoryStatus::Written => "inventory written",
            InventoryStatus::Unchanged => "inventory unchanged",
            InventoryStatus::Failed => "INVENTORY FAILED",
        };
        write!(f, "{verb} {}: {} entries", ferry_store::object_url(&self.destination, &self.name), self.entries)?;
        if !self.left_out.is_empty() {
            write!(f, " ({} files left out: not valid request paths)", self.left_out.len())?;
        }
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

/// Totals of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Nothing was written (no `--confirm`).
    pub dry_run: bool,
    /// Targets by status.
    #[serde(flatten)]
    pub tally: Tally,
    /// Source files read (each at most once, however many destinations).
    pub files_read: u64,
    /// Bytes read from sources.
    pub bytes_read: u64,
    /// Bytes committed, summed over destinations.
    pub bytes_written: u64,
    /// Destination bytes read back to decide whether they hold the manifest's bytes.
    pub bytes_rehashed: u64,
    /// Wall-clock time of the whole run, in seconds.
    pub seconds: f64,
}

impl Summary {
    /// Totals of `targets` and the run's counters; `elapsed` is the run's wall-clock time.
    pub fn new(
        targets: &[TargetReport],
        confirmed: bool,
        files_read: u64,
        bytes_read: u64,
        bytes_written: u64,
        bytes_rehashed: u64,
        elapsed: Duration,
    ) -> Self {
        Summary {
            dry_run: !confirmed,
            tally: Tally::of(targets.iter().map(|t| t.status)),
            files_read,
            bytes_read,
            bytes_written,
            bytes_rehashed,
            seconds: elapsed.as_secs_f64(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            write!(
                f,
                "dry run: {} to copy, {} already there, {} refused; re-hashed {} ({:.1}s). Nothing was written; add --confirm to promote.",
                self.tally.planned,
                self.tally.skipped,
                self.tally.refused,
                human_bytes(self.bytes_rehashed),
                self.seconds
            )
        } else {
            write!(
                f,
                "promoted {}, skipped {}, refused {}, failed {}; read {} in {} files, wrote {}, re-hashed {} in {:.1}s",
                self.tally.promoted,
                self.tally.skipped,
                self.tally.refused,
                self.tally.failed,
                human_bytes(self.bytes_read),
                self.files_read,
                human_bytes(self.bytes_written),
                human_bytes(self.bytes_rehashed),
                self.seconds
            )
        }
    }
}

/// Everything a run planned and did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// One entry per file and destination.
    pub files: Vec<TargetReport>,
    /// One entry per destination, when inventories were asked for.
    pub inventories: Vec<InventoryReport>,
    /// Totals.
    pub summary: Summary,
}

impl Report {
    /// True when nothing was refused or failed: the exit status is 0 only then.
    pub fn is_success(&self) -> bool {
        self.summary.tally.is_success() && self.inventories.iter().all(|i| i.status != InventoryStatus::Failed)
    }
}
