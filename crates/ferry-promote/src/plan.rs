//! Edges + registry state → a decision per edge (kpromo's decision table).
//!
//! State is read with the plain distribution API only: `tags/list` on each destination
//! repository, then HEAD of the tags and digests that matter. Nothing is written here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;

use ferry_oci::{Digest, Reference, RegistryAddress, RepoName, Tag};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::edges::{Edge, EdgeKind};
use crate::Registries;

/// What the promoter will do for an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Destination lacks the digest: copy blobs and manifests, then tag.
    Copy,
    /// Destination has the digest but not the tag: push the manifest under the tag.
    AddTag,
    /// Already there.
    Skip,
    /// Refused; `reason` says why. Nothing is written for this edge.
    Refuse,
}

/// An edge and what was decided for it.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedEdge {
    /// The edge.
    #[serde(flatten)]
    pub edge: Edge,
    /// What will be done for it.
    pub action: Action,
    /// Why it is refused; `None` for any other action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The destination repository had no tags when planned: its blobs are very likely absent,
    /// so small ones are uploaded without asking first.
    #[serde(skip)]
    pub new_repository: bool,
}

/// Run `f` over unique keys with bounded concurrency, collecting results by key.
async fn for_each_unique<K, V, F, Fut>(keys: impl IntoIterator<Item = K>, concurrency: usize, f: F) -> HashMap<K, V>
where
    K: Eq + Hash + Clone,
    F: Fn(K) -> Fut,
    Fut: Future<Output = V>,
{
    let unique: HashSet<K> = keys.into_iter().collect();
    stream::iter(unique)
        .map(|k| {
            let fut = f(k.clone());
            async move { (k, fut.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

type RepoKey = (RegistryAddress, RepoName);

/// Decide every edge. `conflicts` are edges already refused by [`crate::edges::expand`].
pub async fn plan(
    registries: &Registries,
    mut edges: Vec<Edge>,
    conflicts: &BTreeMap<usize, String>,
    concurrency: usize,
) -> Vec<PlannedEdge> {
    // 1. Is each source digest there?
    let sources =
        for_each_unique(
            edges.iter().map(|e| (e.source.clone(), e.image.clone(), e.digest.clone())),
            concurrency,
            |(src, image, digest)| async move {
                registries.get(&src).head_manifest(&image, &Reference::Digest(digest)).await
            },
        )
        .await;
    let source_ok =
        |e: &Edge| matches!(sources.get(&(e.source.clone(), e.image.clone(), e.digest.clone())), Some(Ok(Some(_))));

    // 2. Signatures, attestations and referrers of each promotable digest come along.
    let derived = derive_signature_edges(registries, &edges, &source_ok, concurrency).await;
    let first_derived = edges.len();
    edges.extend(derived);

    // 3. Destination state: tags of each repository, then the digests behind the tags we touch.
    let dest_tags = for_each_unique(
        edges.iter().map(|e| (e.destination.clone(), e.image.clone())),
        concurrency,
        |(dst, image)| async move { registries.get(&dst).list_tags(&image).await },
    )
    .await;
    let tag_exists = |e: &Edge, tag: &Tag| matches!(dest_tags.get(&(e.destination.clone(), e.image.clone())), Some(Ok(tags)) if tags.contains(tag));
    let dest_refs = for_each_unique(
        edges.iter().filter(|e| source_ok(e) || e.kind != EdgeKind::Image).map(|e| {
            // An existing tag decides the edge by itself; otherwise ask whether the digest is there.
            let reference = match &e.tag {
                Some(tag) if tag_exists(e, tag) => Reference::Tag(tag.clone()),
                _ => Reference::Digest(e.digest.clone()),
            };
            (e.destination.clone(), e.image.clone(), reference)
        }),
        concurrency,
        |(dst, image, reference)| async move {
            registries.get(&dst).head_manifest(&image, &reference).await.map(|h| h.map(|h| h.digest))
        },
    )
    .await;

    edges
        .into_iter()
        .enumerate()
        .map(|(i, edge)| {
            let decision = if let Some(reason) = conflicts.get(&i) {
                (Action::Refuse, Some(reason.clone()))
            } else if i < first_derived && !source_ok(&edge) {
                match &sources[&(edge.source.clone(), edge.image.clone(), edge.digest.clone())] {
                    Err(e) => (Action::Refuse, Some(format!("cannot read source: {e}"))),
                    Ok(_) => (Action::Refuse, Some(format!("lost: {} is not in the source", edge.source_ref()))),
                }
            } else {
                decide(&edge, &dest_tags, &dest_refs)
            };
            let new_repository = matches!(
                dest_tags.get(&(edge.destination.clone(), edge.image.clone())),
                Some(Ok(tags)) if tags.is_empty()
            );
            PlannedEdge { edge, action: decision.0, reason: decision.1, new_repository }
        })
        .collect()
}

type DestRefs = HashMap<(RegistryAddress, RepoName, Reference), ferry_registry::Result<Option<Digest>>>;

fn decide(
    edge: &Edge,
    dest_tags: &HashMap<RepoKey, ferry_registry::Result<Vec<Tag>>>,
    dest_refs: &DestRefs,
) -> (Action, Option<String>) {
    let lookup = |r: Reference| dest_refs.get(&(edge.destination.clone(), edge.image.clone(), r));
    let unreadable =
        |e: &ferry_registry::RegistryError| (Action::Refuse, Some(format!("cannot read destination: {e}")));
    let tags = match &dest_tags[&(edge.destination.clone(), edge.image.clone())] {
        Ok(tags) => tags,
        Err(e) => return unreadable(e),
    };
    if let Some(tag) = edge.tag.as_ref().filter(|t| tags.contains(t)) {
        return match lookup(Reference::Tag(tag.clone())) {
            Some(Ok(Some(current))) if *current == edge.digest => (Action::Skip, None),
            Some(Ok(Some(current))) => (
                Action::Refuse,
                Some(format!("tag move: {} already points at {current}; tags never move", edge.destination_ref())),
            ),
            // Listed but gone by the time we looked: copy (which skips whatever is present).
            Some(Ok(None)) | None => (Action::Copy, None),
            Some(Err(e)) => unreadable(e),
        };
    }
    let digest_present = match lookup(Reference::Digest(edge.digest.clone())) {
        Some(Ok(found)) => found.is_some(),
        Some(Err(e)) => return unreadable(e),
        None => false,
    };
    match (&edge.tag, digest_present) {
        (Some(_), true) => (Action::AddTag, None),
        (None, true) => (Action::Skip, None),
        (_, false) => (Action::Copy, None),
    }
}

/// Tags the cosign convention and the OCI referrers fallback give artefacts about `digest`.
fn is_artifact_tag(tag: &Tag, digest: &Digest) -> bool {
    let Some(rest) = tag.as_str().strip_prefix(&digest.tag_prefix()) else { return false };
    matches!(rest, "" | ".sig" | ".att" | ".sbom")
}

/// For each promotable image edge, the source's artefact tags and referrers of its digest,
/// as edges to the same destinations.
async fn derive_signature_edges(
    registries: &Registries,
    edges: &[Edge],
    source_ok: &impl Fn(&Edge) -> bool,
    concurrency: usize,
) -> Vec<Edge> {
    let parents: Vec<&Edge> = edges.iter().filter(|e| e.kind == EdgeKind::Image && source_ok(e)).collect();
    let source_tags = for_each_unique(
        parents.iter().map(|e| (e.source.clone(), e.image.clone())),
        concurrency,
        |(src, image)| async move { registries.get(&src).list_tags(&image).await.unwrap_or_default() },
    )
    .await;
    let artifact_tags: Vec<(RegistryAddress, RepoName, Tag)> = source_tags
        .iter()
        .flat_map(|((src, image), tags)| {
            tags.iter()
                .filter(|t| {
                    parents.iter().any(|p| p.source == *src && p.image == *image && is_artifact_tag(t, &p.digest))
                })
                .map(|t| (src.clone(), image.clone(), t.clone()))
        })
        .collect();
    let tag_digests = for_each_unique(artifact_tags, concurrency, |(src, image, tag)| async move {
        registries.get(&src).head_manifest(&image, &Reference::Tag(tag)).await
    })
    .await;
    let referrers = for_each_unique(
        parents.iter().map(|e| (e.source.clone(), e.image.clone(), e.digest.clone())),
        concurrency,
        |(src, image, digest)| async move {
            registries.get(&src).referrers(&image, &digest).await.ok().flatten().unwrap_or_default()
        },
    )
    .await;

    let mut derived = Vec::new();
    let mut seen = HashSet::new();
    for parent in parents {
        let from_tags = tag_digests.iter().filter_map(|((src, image, tag), head)| {
            let head = head.as_ref().ok()?.as_ref()?;
            (*src == parent.source && *image == parent.image && is_artifact_tag(tag, &parent.digest))
                .then(|| (EdgeKind::Signature, head.digest.clone(), Some(tag.clone())))
        });
        let key = (parent.source.clone(), parent.image.clone(), parent.digest.clone());
        let from_referrers =
            referrers.get(&key).into_iter().flatten().map(|d| (EdgeKind::Referrer, d.digest.clone(), None));
        for (kind, digest, tag) in from_tags.chain(from_referrers).collect::<Vec<_>>() {
            let edge = Edge {
                image: parent.image.clone(),
                digest,
                tag,
                source: parent.source.clone(),
                destination: parent.destination.clone(),
                kind,
                origin: format!("{} of {}", kind_name(kind), parent.source_ref()),
            };
            if seen.insert((edge.destination.clone(), edge.image.clone(), edge.digest.clone(), edge.tag.clone())) {
                derived.push(edge);
            }
        }
    }
    derived
}

fn kind_name(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Image => "image",
        EdgeKind::Signature => "signature",
        EdgeKind::Referrer => "referrer",
    }
}
