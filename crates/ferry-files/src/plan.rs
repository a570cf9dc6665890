//! Manifests → targets → a decision for each, from reads only.
//!
//! A target is one file at one destination. Per destination:
//!
//! | destination holds | action |
//! |---|---|
//! | nothing | copy (refused if the source lacks the file or cannot be read) |
//! | recorded sha256 = the manifest's, size = the source's | skip, nothing read |
//! | recorded sha256 = another | refuse: other bytes (overwrite with `allow_overwrite`) |
//! | no recorded sha256, or a size that disagrees | read back and re-hash: skip if it matches, else as above |
//! | (cannot be read) | refuse: cannot read the destination |
//!
//! A name that two manifests give different hashes at one destination refuses every target of
//! that name there. Sources are only ever read (HEAD here, the bytes in `copy`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use ferry_manifest::FileManifest;
use ferry_oci::Digest;
use ferry_store::{verify_object, ObjectInfo, ObjectName, Store};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::{key, Counters, FilesOptions, Stores};

/// What to do with one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Copy: the destination does not have the file.
    Copy,
    /// Copy over a destination file that holds other bytes (only with `allow_overwrite`).
    Overwrite,
    /// Nothing to do: the destination already holds the manifest's bytes.
    Skip,
    /// Leave the destination alone; `reason` says why.
    Refuse,
}

/// One file at one destination, and what was decided for it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// The file's name, relative to both bases.
    #[serde(serialize_with = "display")]
    pub name: ObjectName,
    /// The manifest's hash of its contents.
    #[serde(serialize_with = "display")]
    pub sha256: Digest,
    /// The source and destination filestore bases, as written in the manifest.
    pub source: String,
    /// The destination filestore base, as written in the manifest.
    pub destination: String,
    /// The files manifest `path:line` that asked for it.
    pub origin: String,
    /// What was decided; [`Action::Copy`] until planned.
    pub action: Action,
    /// Why it is skipped, refused or overwritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Target {
    /// `<base>/<name>`, for messages.
    pub fn source_url(&self) -> String {
        ferry_store::object_url(&self.source, self.name.as_str())
    }

    /// `<destination base>/<name>`, for messages.
    pub fn destination_url(&self) -> String {
        ferry_store::object_url(&self.destination, self.name.as_str())
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// One source file to read (at most once) for the targets that share it.
#[derive(Debug)]
pub struct Job {
    /// The source filestore base, as written in the manifest.
    pub source: String,
    /// The file's name, relative to the base.
    pub name: ObjectName,
    /// The manifest's hash of its contents: the copy commits only bytes that match it.
    pub sha256: Digest,
    /// Indices into [`Plan::targets`].
    pub targets: Vec<usize>,
    /// The source's size, when it has the file.
    pub size: Option<u64>,
}

/// Every target of a run, decided, and the source reads they need.
#[derive(Debug, Default)]
pub struct Plan {
    /// In manifest order: manifests, then files, then destinations.
    pub targets: Vec<Target>,
    /// One per distinct (source, name, sha256) of the targets; a target refused because
    /// manifests disagree belongs to none.
    pub jobs: Vec<Job>,
}

impl Plan {
    /// Bytes the copy will read: each needed source file once.
    pub fn bytes_to_read(&self) -> u64 {
        self.jobs.iter().filter(|j| self.needs_copy(j)).filter_map(|j| j.size).sum()
    }

    pub(crate) fn needs_copy(&self, job: &Job) -> bool {
        job.targets.iter().any(|&i| matches!(self.targets[i].action, Action::Copy | Action::Overwrite))
    }
}

/// An action and why.
type Decision = (Action, Option<String>);

/// Expands `manifests` into targets and decides each one.
pub async fn plan(manifests: &[FileManifest], stores: &Stores, options: &FilesOptions, counters: &Counters) -> Plan {
    let mut plan = expand(manifests);
    let decided: Vec<(usize, Option<u64>, Vec<Decision>)> = stream::iter(plan.jobs.iter().enumerate())
        .map(|(j, job)| {
            let targets: Vec<&Target> = job.targets.iter().map(|&i| &plan.targets[i]).collect();
            async move {
                let (size, decisions) = decide_job(job, &targets, stores, options, counters).await;
                (j, size, decisions)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    for (j, size, decisions) in decided {
        plan.jobs[j].size = size;
        for (&i, (action, reason)) in plan.jobs[j].targets.iter().zip(decisions) {
            plan.targets[i].action = action;
            plan.targets[i].reason = reason;
        }
    }
    plan
}

/// Targets in manifest order, identical ones merged; conflicting ones refused. Each remaining
/// target joins the job of its (source, name, sha256).
fn expand(manifests: &[FileManifest]) -> Plan {
    let mut plan = Plan::default();
    // (destination, name) → the first target asking for it.
    let mut at: HashMap<(String, ObjectName), usize> = HashMap::new();
    let mut conflicts: HashMap<usize, Vec<usize>> = HashMap::new();
    for manifest in manifests {
        for file in &manifest.files {
            for destination in &manifest.destinations {
                let target = Target {
                    name: file.name.clone(),
                    sha256: file.sha256.clone(),
                    source: manifest.source.base.clone(),
                    destination: destination.base.clone(),
                    origin: file.origin(),
                    action: Action::Copy,
                    reason: None,
                };
                let slot = (key(&destination.base), file.name.clone());
                match at.get(&slot) {
                    Some(&first) if plan.targets[first].sha256 == target.sha256 => continue,
                    Some(&first) => conflicts.entry(first).or_default().push(plan.targets.len()),
                    None => {
                        at.insert(slot, plan.targets.len());
                    }
                }
                plan.targets.push(target);
            }
        }
    }
    for (first, others) in conflicts {
        let asked: Vec<String> = std::iter::once(first)
            .chain(others.iter().copied())
            .map(|i| format!("{} at {}", plan.targets[i].sha256.hex(), plan.targets[i].origin))
            .collect();
        let reason = format!("manifests disagree on this file: {}", asked.join(", "));
        for i in std::iter::once(first).chain(others) {
            plan.targets[i].action = Action::Refuse;
            plan.targets[i].reason = Some(reason.clone());
        }
    }
    let mut jobs: HashMap<(String, ObjectName, Digest), usize> = HashMap::new();
    for (i, target) in plan.targets.iter().enumerate() {
        if target.action == Action::Refuse {
            continue;
        }
        let job_key = (key(&target.source), target.name.clone(), target.sha256.clone());
        let j = *jobs.entry(job_key).or_insert_with(|| {
            plan.jobs.push(Job {
                source: target.source.clone(),
                name: target.name.clone(),
                sha256: target.sha256.clone(),
                targets: Vec::new(),
                size: None,
            });
            plan.jobs.len() - 1
        });
        plan.jobs[j].targets.push(i);
    }
    plan
}

/// The source's size (when it has the file) and a decision per target of `job`.
async fn decide_job(
    job: &Job,
    targets: &[&Target],
    stores: &Stores,
    options: &FilesOptions,
    counters: &Counters,
) -> (Option<u64>, Vec<Decision>) {
    let source = stores.get(&job.source).head(&job.name).await;
    let heads = futures::future::join_all(targets.iter().map(|t| stores.get(&t.destination).head(&job.name))).await;
    let held = futures::future::join_all(targets.iter().zip(heads).map(|(target, head)| {
        let store = stores.get(&target.destination);
        let source = &source;
        async move {
            match head {
                Err(e) => Err(format!("cannot read the destination: {e}")),
                Ok(None) => Ok(None),
                Ok(Some(info)) => holds(store, &job.name, &job.sha256, &info, source, counters).await.map(Some),
            }
        }
    }))
    .await;
    let mut decisions = Vec::with_capacity(targets.len());
    for (target, held) in targets.iter().zip(held) {
        let decision = match held {
            Err(reason) => (Action::Refuse, Some(reason)),
            Ok(Some(Holds::Same(how))) => (Action::Skip, Some(how.into())),
            Ok(None) => copy_from(&source, Action::Copy, None),
            Ok(Some(Holds::Other(what))) if options.allow_overwrite => {
                tracing::warn!(destination = %target.destination_url(), holds = %what, "will overwrite (--allow-overwrite)");
                copy_from(&source, Action::Overwrite, Some(format!("overwrites other bytes ({what})")))
            }
            Ok(Some(Holds::Other(what))) => (
                Action::Refuse,
                Some(format!("the destination holds other bytes ({what}); files are never overwritten")),
            ),
        };
        decisions.push(decision);
    }
    (source.ok().flatten().map(|info| info.size), decisions)
}

fn copy_from(
    source: &Result<Option<ObjectInfo>, ferry_store::StoreError>,
    action: Action,
    reason: Option<String>,
) -> Decision {
    match source {
        Ok(Some(_)) => (action, reason),
        Ok(None) => (Action::Refuse, Some("the source store does not have this file".into())),
        Err(e) => (Action::Refuse, Some(format!("cannot read the source: {e}"))),
    }
}

/// What a destination that has the name holds.
enum Holds {
    /// The manifest's bytes; how that was established.
    Same(&'static str),
    /// Other bytes, described.
    Other(String),
}

/// Decides whether the destination object `info` holds the bytes hashing to `sha256`: from the
/// sha256 Ferry recorded when it wrote it (when the size agrees with the source's), else by
/// reading it back.
async fn holds(
    store: &Store,
    name: &ObjectName,
    sha256: &Digest,
    info: &ObjectInfo,
    source: &Result<Option<ObjectInfo>, ferry_store::StoreError>,
    counters: &Counters,
) -> Result<Holds, String> {
    let source_size = source.as_ref().ok().and_then(|s| s.as_ref()).map(|s| s.size);
    match &info.sha256 {
        Some(recorded) if recorded != sha256.hex() => return Ok(Holds::Other(format!("recorded sha256 {recorded}"))),
        Some(_) if source_size.is_none_or(|size| size == info.size) => {
            return Ok(Holds::Same("already there (recorded sha256)"))
        }
        // No record (a local folder, another tool's upload), or a size that contradicts it.
        _ => {}
    }
    // Hashing is CPU-bound: a task of its own, so that a file's destinations hash on separate
    // cores.
    let (store, name, sha256) = (store.clone(), name.clone(), sha256.clone());
    let rehashed = tokio::spawn(async move { rehash(&store, &name, sha256).await });
    let (result, bytes) = rehashed.await.map_err(|e| format!("re-hash task failed: {e}"))?;
    counters.bytes_rehashed.fetch_add(bytes, Ordering::Relaxed);
    result
}

/// Reads `name` back and hashes it; also the bytes read.
async fn rehash(store: &Store, name: &ObjectName, sha256: Digest) -> (Result<Holds, String>, u64) {
    match verify_object(store, name, &sha256, |_| ()).await {
        Ok((bytes, Ok(()))) => (Ok(Holds::Same("already there (re-hashed)")), bytes),
        Ok((bytes, Err(actual))) => (Ok(Holds::Other(actual.to_string())), bytes),
        Err(e) => (Err(format!("cannot read the destination: {e}")), 0),
    }
}
