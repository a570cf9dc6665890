//! What a run did, per edge and in total, as text for people and JSON for machines.

use std::fmt;
use std::time::Duration;

use ferry_report::{human_bytes, why, Decided, Status, Tally};
use serde::Serialize;

use crate::copy::Transfer;
use crate::plan::{Action, PlannedEdge};

/// What became of one edge.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeReport {
    /// The edge and what was planned for it.
    #[serde(flatten)]
    pub planned: PlannedEdge,
    /// What became of it.
    pub status: Status,
    /// Why it failed, when it did (refusal reasons are in `reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl EdgeReport {
    /// The report of `planned`, from its action, whether the run was confirmed (else a dry run)
    /// and the copy's error, if it failed.
    pub fn new(planned: PlannedEdge, confirmed: bool, error: Option<String>) -> Self {
        let decided = match planned.action {
            Action::Refuse => Decided::Refuse,
            Action::Skip => Decided::Skip,
            _ => Decided::Act,
        };
        let status = Status::of(decided, confirmed, error.is_some());
        EdgeReport { planned, status, error }
    }
}

impl fmt::Display for EdgeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.planned.edge;
        let verb = match (self.status, self.planned.action) {
            (Status::Refused, _) => "REFUSE",
            (Status::Failed, _) => "FAILED",
            (Status::Skipped, _) => "skip  ",
            (_, Action::Copy) => "copy  ",
            (_, Action::Merge) => "merge ",
            (_, _) => "tag   ",
        };
        write!(f, "{verb} {} -> {}", e.source_ref(), e.destination_ref())?;
        if let Some(why) = why(self.planned.reason.as_deref(), self.error.as_deref()) {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

/// Totals of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Nothing was written (no `--confirm`).
    pub dry_run: bool,
    /// Edges by status.
    #[serde(flatten)]
    pub tally: Tally,
    /// Source blob bytes read (each blob at most once).
    pub bytes_read: u64,
    /// Blob bytes uploaded, summed over destinations (mounts not counted).
    pub bytes_written: u64,
    /// Blobs read from a source.
    pub blobs_read: u64,
    /// Blob uploads, one per destination repository written to.
    pub blobs_uploaded: u64,
    /// Blobs mounted from another repository of the same destination registry.
    pub blobs_mounted: u64,
    /// Manifest pushes, one per reference (digest or tag) written.
    pub manifests_pushed: u64,
    /// Ferry's signatures added to `.sig` images (`--sign-key`), one per promoted digest and
    /// destination repository that lacked it.
    pub signatures_added: u64,
    /// Ferry's provenance attestations added to `.att` images, one per promoted digest and
    /// destination repository that lacked one by Ferry's key.
    pub attestations_added: u64,
    /// Wall-clock time of the whole run, in seconds.
    pub seconds: f64,
}

impl Summary {
    /// Totals of `edges` and the run's `transfer` counters; `elapsed` is the run's wall-clock time.
    pub fn new(edges: &[EdgeReport], confirmed: bool, transfer: &Transfer, elapsed: Duration) -> Self {
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Summary {
            dry_run: !confirmed,
            tally: Tally::of(edges.iter().map(|e| e.status)),
            bytes_read: count(&transfer.bytes_read),
            bytes_written: count(&transfer.bytes_written),
            blobs_read: count(&transfer.blobs_read),
            blobs_uploaded: count(&transfer.blobs_uploaded),
            blobs_mounted: count(&transfer.blobs_mounted),
            manifests_pushed: count(&transfer.manifests_pushed),
            signatures_added: count(&transfer.signatures_added),
            attestations_added: count(&transfer.attestations_added),
            seconds: elapsed.as_secs_f64(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            write!(
                f,
                "dry run: {} to promote, {} already there, {} refused ({:.1}s). Nothing was written; add --confirm to promote.",
                self.tally.planned, self.tally.skipped, self.tally.refused, self.seconds
            )
        } else {
            write!(
                f,
                "promoted {}, skipped {}, refused {}, failed {}; read {} in {} blobs, wrote {} ({} uploads, {} mounts, {} manifests) in {:.1}s",
                self.tally.promoted,
                self.tally.skipped,
                self.tally.refused,
                self.tally.failed,
                human_bytes(self.bytes_read),
                self.blobs_read,
                human_bytes(self.bytes_written),
                self.blobs_uploaded,
                self.blobs_mounted,
                self.manifests_pushed,
                self.seconds
            )?;
            if self.signatures_added > 0 || self.attestations_added > 0 {
                write!(f, "; added {} signatures, {} attestations", self.signatures_added, self.attestations_added)?;
            }
            Ok(())
        }
    }
}

/// Everything a run planned and did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// One entry per edge, in plan order.
    pub edges: Vec<EdgeReport>,
    /// Totals.
    pub summary: Summary,
}

impl Report {
    /// True when nothing was refused or failed: the exit status is 0 only then.
    pub fn is_success(&self) -> bool {
        self.summary.tally.is_success()
    }
}
