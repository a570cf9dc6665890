//! What a run did, per edge and in total, as text for people and JSON for machines.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::plan::{Action, PlannedEdge};

/// Where an edge ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Dry run: would be done.
    Planned,
    Promoted,
    Skipped,
    Refused,
    Failed,
}

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
        let status = match (planned.action, confirmed, &error) {
            (Action::Refuse, _, _) => Status::Refused,
            (Action::Skip, _, _) => Status::Skipped,
            (_, false, _) => Status::Planned,
            (_, true, Some(_)) => Status::Failed,
            (_, true, None) => Status::Promoted,
        };
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
        if let Some(why) = self.planned.reason.as_ref().or(self.error.as_ref()) {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    pub planned: usize,
    pub promoted: usize,
    pub skipped: usize,
    pub refused: usize,
    pub failed: usize,
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
        let count = |s: Status| edges.iter().filter(|e| e.status == s).count();
        Summary {
            dry_run: !confirmed,
            planned: count(Status::Planned),
            promoted: count(Status::Promoted),
            skipped: count(Status::Skipped),
            refused: count(Status::Refused),
            failed: count(Status::Failed),
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
                self.planned, self.skipped, self.refused, self.seconds
            )
        } else {
            write!(
                f,
                "promoted {}, skipped {}, refused {}, failed {}; read {} in {} blobs, wrote {} ({} uploads, {} mounts, {} manifests) in {:.1}s",
                self.promoted,
                self.skipped,
                self.refused,
                self.failed,
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

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
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
        self.summary.refused == 0 && self.summary.failed == 0
    }
}
