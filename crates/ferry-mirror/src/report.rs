//! What a run found and did, per image, per store and in total: text for people, JSON for
//! machines.

use std::fmt;

use ferry_oci::{Digest, RepoName};
use ferry_report::human_bytes;
use serde::Serialize;

/// One image whose blobs were asked for.
#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    /// The repository, relative to the registry.
    pub name: RepoName,
    /// The image's manifest or index digest.
    pub digest: Digest,
    /// Config and layer blobs of the image (all platforms).
    pub blobs: usize,
    /// Why the image's manifests could not be read; its blobs are then not mirrored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What became of one blob copy into one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyStatus {
    /// Dry run: would be copied.
    Planned,
    /// Read, verified and committed.
    Copied,
    /// Not committed (see the copy's `error`); left out of the inventory.
    Failed,
}

/// One blob going into one store.
#[derive(Clone, Debug, Serialize)]
pub struct CopyReport {
    /// The blob.
    pub digest: Digest,
    /// Its size in bytes, as the image's descriptor gives it.
    pub size: u64,
    /// Why it is needed: `absent`, `missing` (listed, not in the store), `corrupt`, or what a
    /// HEAD found wrong.
    pub reason: String,
    /// What became of it.
    pub status: CopyStatus,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An object whose bytes are not its name.
#[derive(Clone, Debug, Serialize)]
pub struct Corrupt {
    /// The object's name: the digest its bytes should hash to.
    pub digest: Digest,
    /// What is wrong: the digest the bytes hash to, or why they could not be read.
    pub problem: String,
    /// Whether one of the images has this blob, so it can be copied again from the registry.
    pub repairable: bool,
}

/// What `--verify` found in one store by listing it and re-hashing every `sha256:` object.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Findings {
    /// `sha256:` objects read back and hashed.
    pub checked: usize,
    /// Listed in the inventory, not in the store.
    pub missing: Vec<Digest>,
    /// In the store, bytes not hashing to the name (listed or not).
    pub corrupt: Vec<Corrupt>,
    /// In the store and intact, but not in the inventory.
    pub unlisted: Vec<Digest>,
}

impl Findings {
    /// Missing, corrupt and unlisted objects together: 0 when store and inventory agree.
    pub fn differences(&self) -> usize {
        self.missing.len() + self.corrupt.len() + self.unlisted.len()
    }
}

/// What one destination store held and what was done to it.
#[derive(Clone, Debug, Serialize)]
pub struct StoreReport {
    /// The blob store's URL or path, as given.
    pub store: String,
    /// Where its inventory is, as shown to users.
    pub inventory: String,
    /// A problem with the whole store (unreadable inventory, listing or inventory write failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Blobs of the images that the inventory lists (trusted, not asked about).
    pub listed: usize,
    /// Blobs of the images not listed but found by a HEAD (size and recorded sha256 matching).
    pub present: usize,
    /// One per blob the store needed.
    pub copies: Vec<CopyReport>,
    /// What `--verify` found; `None` without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Findings>,
    /// Entries of the inventory as written (in a dry run: as it would be if every planned copy
    /// landed).
    pub inventory_entries: usize,
    /// Whether the inventory was rewritten (only when its contents changed).
    pub inventory_written: bool,
}

/// Totals of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Nothing was written (no `--confirm`).
    pub dry_run: bool,
    /// The stores were re-hashed (`--verify`) instead of trusting their inventories.
    pub verify: bool,
    /// Images asked for, each counted once.
    pub images: usize,
    /// Images whose manifests could not be read.
    pub images_failed: usize,
    /// Unique config and layer blobs over all images, and their bytes.
    pub blobs: usize,
    /// The total size of those blobs, in bytes.
    pub blob_bytes: u64,
    /// Copies (blob × store) a dry run would make; 0 once confirmed.
    pub copies_planned: usize,
    /// Copies committed.
    pub copies_done: usize,
    /// Copies that failed.
    pub copies_failed: usize,
    /// Blob downloads from the registry (a retried download counts again) and the bytes read.
    pub blobs_read: u64,
    /// Bytes read from the registry, over all downloads.
    pub bytes_read: u64,
    /// Bytes committed, summed over stores.
    pub bytes_written: u64,
    /// Stores with a problem as a whole (see [`StoreReport::error`]).
    pub stores_failed: usize,
    /// `--verify`: missing + corrupt + unlisted, over all stores.
    pub differences: usize,
    /// `--verify`: corrupt objects no image has, which cannot be copied again.
    pub unrepairable: usize,
    /// Wall-clock time of the whole run, in seconds.
    pub seconds: f64,
}

/// Everything a run found and did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// One per image asked for, each once, in name order.
    pub images: Vec<ImageReport>,
    /// One per destination, in the order given.
    pub stores: Vec<StoreReport>,
    /// Totals.
    pub summary: Summary,
}

impl Report {
    /// True when the exit status should be 0: every image read, every store usable, every copy
    /// committed, and for `--verify`, no difference left unrepaired.
    pub fn is_success(&self) -> bool {
        let s = &self.summary;
        let differences_left = s.verify && s.dry_run && s.differences > 0;
        s.images_failed == 0 && s.stores_failed == 0 && s.copies_failed == 0 && s.unrepairable == 0 && !differences_left
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for image in &self.images {
            if let Some(error) = &image.error {
                writeln!(f, "FAILED  image {}@{}: {error}", image.name, image.digest)?;
            }
        }
        for store in &self.stores {
            if let Some(findings) = &store.verify {
                for digest in &findings.missing {
                    writeln!(f, "MISSING  {digest} in {}: listed in the inventory, not in the store", store.store)?;
                }
                for c in &findings.corrupt {
                    let fix = if c.repairable { "" } else { " (no image has it: cannot be copied again)" };
                    writeln!(f, "CORRUPT  {} in {}: {}{fix}", c.digest, store.store, c.problem)?;
                }
                for digest in &findings.unlisted {
                    writeln!(f, "UNLISTED {digest} in {}: intact, not in the inventory", store.store)?;
                }
            }
            for copy in &store.copies {
                let verb = match copy.status {
                    CopyStatus::Planned => "copy   ",
                    CopyStatus::Copied => "copied ",
                    CopyStatus::Failed => "FAILED ",
                };
                write!(f, "{verb} {} ({}) -> {}: {}", copy.digest, human_bytes(copy.size), store.store, copy.reason)?;
                match &copy.error {
                    Some(error) => writeln!(f, "; {error}")?,
                    None => writeln!(f)?,
                }
            }
        }
        for store in &self.stores {
            write!(f, "store {}: ", store.store)?;
            if let Some(error) = &store.error {
                writeln!(f, "FAILED: {error}")?;
                continue;
            }
            let count = |status| store.copies.iter().filter(|c| c.status == status).count();
            match &store.verify {
                Some(findings) => write!(f, "{} checked, {} differences", findings.checked, findings.differences())?,
                None => write!(f, "{} listed, {} present", store.listed, store.present)?,
            }
            let inventory = if store.inventory_written {
                "written"
            } else if self.summary.dry_run {
                "not written (dry run)"
            } else {
                "unchanged"
            };
            writeln!(
                f,
                ", {} to copy, {} copied, {} failed; inventory {} ({} entries) {inventory}",
                count(CopyStatus::Planned),
                count(CopyStatus::Copied),
                count(CopyStatus::Failed),
                store.inventory,
                store.inventory_entries,
            )?;
        }
        let s = &self.summary;
        write!(
            f,
            "{} images ({} failed), {} unique blobs ({}); ",
            s.images,
            s.images_failed,
            s.blobs,
            human_bytes(s.blob_bytes)
        )?;
        if s.dry_run {
            write!(f, "dry run: {} copies to make", s.copies_planned)?;
            if s.verify {
                write!(f, ", {} differences", s.differences)?;
            }
            write!(f, " ({:.1}s). Nothing was written; add --confirm to ", s.seconds)?;
            f.write_str(if s.verify { "repair." } else { "copy." })
        } else {
            write!(
                f,
                "copied {}, failed {}; read {} in {} blobs from the registry, wrote {} in {:.1}s",
                s.copies_done,
                s.copies_failed,
                human_bytes(s.bytes_read),
                s.blobs_read,
                human_bytes(s.bytes_written),
                s.seconds
            )
        }
    }
}
