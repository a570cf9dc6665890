//! What a run did, per edge and in total, as text for people and JSON for machines.

use std::fmt;
use std::time::Duration;

use ferry_report::{human_bytes, why, Decided, Status, Tally};
use serde::Serialize;

use crate::plan::{Action, PlannedEdge};

#[derive(Clone, Debug, Serialize)]
pub struct EdgeReport {
    #[serde(flatten)]
    pub planned: PlannedEdge,
    pub status: Status,
    /// Why it failed, when it did (refusal reasons are in `reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl EdgeReport {
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
            (_, _) => "tag   ",
        };
        write!(f, "{verb} {} -> {}", e.source_ref(), e.destination_ref())?;
        if let Some(why) = why(self.planned.reason.as_deref(), self.error.as_deref()) {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    /// Edges by status.
    #[serde(flatten)]
    pub tally: Tally,
    /// Source blob bytes read (each blob at most once).
    pub bytes_read: u64,
    /// Blob bytes uploaded, summed over destinations (mounts not counted).
    pub bytes_written: u64,
    pub blobs_read: u64,
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub manifests_pushed: u64,
    pub seconds: f64,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        edges: &[EdgeReport],
        confirmed: bool,
        bytes_read: u64,
        bytes_written: u64,
        blobs_read: u64,
        blobs_uploaded: u64,
        blobs_mounted: u64,
        manifests_pushed: u64,
        elapsed: Duration,
    ) -> Self {
        Summary {
            dry_run: !confirmed,
            tally: Tally::of(edges.iter().map(|e| e.status)),
            bytes_read,
            bytes_written,
            blobs_read,
            blobs_uploaded,
            blobs_mounted,
            manifests_pushed,
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
            )
        }
    }
}

/// Everything a run planned and did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub edges: Vec<EdgeReport>,
    pub summary: Summary,
}

impl Report {
    /// True when nothing was refused or failed: the exit status is 0 only then.
    pub fn is_success(&self) -> bool {
        self.summary.tally.is_success()
    }
}
