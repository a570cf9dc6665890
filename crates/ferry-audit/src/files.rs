//! Destination stores against what the file manifests list.
//!
//! Per destination store (each base once, however many projects name it), in rounds of at most
//! [`AuditOptions::concurrency`] requests in flight:
//!
//! 1. **List** every object under the base. A listed file absent from the listing is a
//!    `missing-file` with no further request; an object no manifest lists (named in full, so
//!    stores nested under this one and sources are left to themselves; the inventory
//!    `ferry promote files --inventory` writes excepted) is an `unlisted-file`.
//! 2. **HEAD** each listed file at the destination: its size and the sha256 Ferry recorded when it
//!    wrote it (cloud stores).
//! 3. Where a destination's recorded sha256 is the manifest's, **HEAD the source** once per file
//!    for its size: a record is trusted only when the size agrees, as `ferry promote files`
//!    trusts it. A source that lacks the file or cannot be read leaves the record trusted (the
//!    audit is about destinations).
//! 4. **Decide** as `ferry promote files` decides "already there": a recorded sha256 that is
//!    another is a `changed-file`; one that is the manifest's (and agrees with the source's size)
//!    holds the bytes; an object with no record (a local folder, an upload by another tool) or a
//!    record the size contradicts is read back and re-hashed ([`ferry_store::verify_object`]):
//!    other bytes are a `changed-file`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use ferry_files::Stores;
use ferry_manifest::FileManifest;
use ferry_oci::Digest;
use ferry_store::{object_url, verify_object, ObjectInfo, ObjectName, StoreError};
use futures::stream::{self, StreamExt};

use crate::{under_nested_root, AuditOptions, Finding, Kind, Report};

/// A file one destination is promised: every sha256 a manifest gives it (more than one only when
/// manifests disagree: any of them is then accepted), with the `file:line` asking, and the source
/// base it comes from.
#[derive(Debug, Default)]
struct Promised {
    sha256: BTreeMap<Digest, String>,
    source: String,
}

impl Promised {
    fn expected(&self) -> String {
        self.sha256.keys().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
    }

    fn origin(&self) -> String {
        self.sha256.values().cloned().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// One destination store: its base as first written, and its promised files.
#[derive(Debug)]
struct Destination {
    base: String,
    files: BTreeMap<ObjectName, Promised>,
}

/// A store's objects and their sizes, or why they could not be listed.
type Listing = Result<Vec<(ObjectName, u64)>, StoreError>;

/// What a HEAD told about an object.
type Head = Result<Option<ObjectInfo>, StoreError>;

/// The identity of a base: without a trailing `/` (as `ferry promote files` keys its stores).
fn key(base: &str) -> &str {
    base.trim_end_matches('/')
}

/// Audits every destination store of `manifests` (opened in `stores`, as for promotion) against
/// the files the manifests list. Only reads (sources: a HEAD per file, at most).
pub async fn audit(manifests: &[FileManifest], stores: &Stores, options: &AuditOptions) -> Report {
    let started = Instant::now();
    let concurrency = options.concurrency.max(1);

    let mut destinations: BTreeMap<String, Destination> = BTreeMap::new();
    for manifest in manifests {
        for destination in &manifest.destinations {
            let entry = destinations
                .entry(key(&destination.base).to_string())
                .or_insert_with(|| Destination { base: destination.base.clone(), files: BTreeMap::new() });
            for file in &manifest.files {
                let promised = entry
                    .files
                    .entry(file.name.clone())
                    .or_insert_with(|| Promised { sha256: BTreeMap::new(), source: manifest.source.base.clone() });
                promised.sha256.entry(file.sha256.clone()).or_insert_with(|| file.origin());
            }
        }
    }
    let roots: Vec<String> = manifests
        .iter()
        .flat_map(|m| std::iter::once(&m.source).chain(&m.destinations))
        .map(|s| key(&s.base).to_string())
        .collect();
    let mentioned: BTreeSet<String> =
        destinations.iter().flat_map(|(k, d)| d.files.keys().map(move |name| format!("{k}/{name}"))).collect();
    let checked = destinations.values().map(|d| d.files.len()).sum();
    let mut findings = Vec::new();

    // Round 1: listings.
    let listings: Vec<(&String, Listing)> = stream::iter(destinations.iter())
        .map(|(k, d)| async move { (k, stores.get(&d.base).list("").await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut heads_needed: Vec<(&String, &ObjectName)> = Vec::new();
    for (k, listing) in listings {
        let destination = &destinations[k];
        let base = &destination.base;
        match listing {
            Ok(objects) => {
                let held: BTreeSet<&ObjectName> = objects.iter().map(|(name, _)| name).collect();
                for (name, promised) in &destination.files {
                    if held.contains(name) {
                        heads_needed.push((k, name));
                    } else {
                        findings.push(Finding {
                            kind: Kind::MissingFile,
                            destination: base.clone(),
                            subject: object_url(base, name.as_str()),
                            expected: promised.expected(),
                            found: "absent".into(),
                            origin: Some(promised.origin()),
                        });
                    }
                }
                for (name, size) in &objects {
                    let full = format!("{k}/{name}");
                    if !mentioned.contains(&full)
                        && !options.inventories.contains(name)
                        && !under_nested_root(&full, k, &roots)
                    {
                        findings.push(Finding {
                            kind: Kind::UnlistedFile,
                            destination: base.clone(),
                            subject: object_url(base, name.as_str()),
                            expected: "absent (no manifest lists it)".into(),
                            found: format!("a file of {size} bytes"),
                            origin: None,
                        });
                    }
                }
            }
            Err(e) => {
                // Unlisted files cannot be looked for; the listed ones are still asked for.
                findings.push(Finding {
                    kind: Kind::Unreadable,
                    destination: base.clone(),
                    subject: base.clone(),
                    expected: "a listing of the store's files".into(),
                    found: e.to_string(),
                    origin: None,
                });
                heads_needed.extend(destination.files.keys().map(|name| (k, name)));
            }
        }
    }

    // Round 2: HEAD at the destinations.
    let heads: Vec<(&String, &ObjectName, Head)> = stream::iter(heads_needed)
        .map(|(k, name)| {
            let store = stores.get(&destinations[k].base);
            async move { (k, name, store.head(name).await) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;

    // Round 3: the source's size, where a record would be trusted.
    let mut sources: BTreeMap<(String, &ObjectName), Option<u64>> = BTreeMap::new();
    for (k, name, head) in &heads {
        let promised = &destinations[*k].files[*name];
        if let Ok(Some(ObjectInfo { sha256: Some(recorded), .. })) = head {
            if promised.sha256.keys().any(|d| d.hex() == recorded) {
                sources.insert((key(&promised.source).to_string(), name), None);
            }
        }
    }
    let source_bases: HashMap<String, String> =
        manifests.iter().map(|m| (key(&m.source.base).to_string(), m.source.base.clone())).collect();
    let sizes: Vec<((String, &ObjectName), Option<u64>)> = stream::iter(sources.into_keys())
        .map(|(source, name)| {
            let store = stores.get(&source_bases[&source]);
            async move {
                let size = match store.head(name).await {
                    Ok(info) => info.map(|i| i.size),
                    Err(e) => {
                        tracing::debug!(error = %e, "the source cannot be read: its size is not compared");
                        None
                    }
                };
                ((source, name), size)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let sizes: BTreeMap<(String, &ObjectName), Option<u64>> = sizes.into_iter().collect();

    // Round 4: decide; re-hash what no record proves.
    let mut rehash = Vec::new();
    for (k, name, head) in heads {
        let destination = &destinations[k];
        let promised = &destination.files[name];
        let finding = |kind, found: String| Finding {
            kind,
            destination: destination.base.clone(),
            subject: object_url(&destination.base, name.as_str()),
            expected: promised.expected(),
            found,
            origin: Some(promised.origin()),
        };
        match head {
            Err(e) => findings.push(finding(Kind::Unreadable, e.to_string())),
            Ok(None) => findings.push(finding(Kind::MissingFile, "absent".into())),
            Ok(Some(info)) => match &info.sha256 {
                Some(recorded) if !promised.sha256.keys().any(|d| d.hex() == recorded) => {
                    findings.push(finding(Kind::ChangedFile, format!("recorded sha256 {recorded}")))
                }
                Some(_)
                    if sizes
                        .get(&(key(&promised.source).to_string(), name))
                        .copied()
                        .flatten()
                        .is_none_or(|size| size == info.size) => {}
                // No record, or a size that contradicts it.
                _ => rehash.push((k, name, info.size)),
            },
        }
    }
    let rehashed: Vec<Option<Finding>> = stream::iter(rehash)
        .map(|(k, name, size)| {
            let destination = &destinations[k];
            let promised = &destination.files[name];
            let store = stores.get(&destination.base);
            let expected = promised.sha256.keys().next().expect("a promised file has a sha256");
            async move {
                let finding = |kind, found: String| Finding {
                    kind,
                    destination: destination.base.clone(),
                    subject: object_url(&destination.base, name.as_str()),
                    expected: promised.expected(),
                    found,
                    origin: Some(promised.origin()),
                };
                match verify_object(store, name, expected, |_| ()).await {
                    Ok((_, Ok(()))) => None,
                    Ok((_, Err(actual))) if promised.sha256.contains_key(&actual) => None,
                    Ok((bytes, Err(actual))) => {
                        Some(finding(Kind::ChangedFile, format!("{actual} ({bytes} bytes, re-hashed)")))
                    }
                    Err(e) => Some(finding(Kind::Unreadable, format!("{e} (a file of {size} bytes)"))),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    findings.extend(rehashed.into_iter().flatten());

    Report::new(findings, destinations.len(), checked, started.elapsed())
}
