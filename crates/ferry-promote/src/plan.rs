//! Edges + registry state → a decision per edge (kpromo's decision table).
//!
//! State is read with the plain distribution API only (HEAD of manifests, `tags/list`), as few
//! requests as the answers allow: a full no-op costs one request per
//! edge, a first promotion two per destination repository. Nothing is written here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;

use ferry_oci::{Digest, Reference, RegistryAddress, RepoName, Tag};
use ferry_registry::Registry;
use ferry_sign::signer::Verifier;
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
    /// A cosign signature or attestation image that differs at the destination: add the
    /// source's layers it lacks, keeping those already there (signers add to these tags).
    Merge,
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

/// Decide every edge. `conflicts` are edges already refused by [`crate::edges::expand`]. With
/// `require_signed`, a source digest without a signature that one of its keys verifies is
/// refused (all of its edges, and nothing of it is copied).
pub async fn plan(
    registries: &Registries,
    mut edges: Vec<Edge>,
    conflicts: &BTreeMap<usize, String>,
    concurrency: usize,
    require_signed: Option<&Verifier>,
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
    let present =
        |e: &Edge| matches!(sources.get(&(e.source.clone(), e.image.clone(), e.digest.clone())), Some(Ok(Some(_))));
    // 1b. Signed by a trusted key, when the policy asks.
    let unsigned: HashMap<(RegistryAddress, RepoName, Digest), String> = match require_signed {
        None => HashMap::new(),
        Some(verifier) => {
            let keys =
                edges.iter().filter(|e| present(e)).map(|e| (e.source.clone(), e.image.clone(), e.digest.clone()));
            for_each_unique(keys, concurrency, |(src, image, digest)| async move {
                ferry_trust::find_signature(registries.get(&src).as_ref(), &image, &digest, verifier).await.err()
            })
            .await
            .into_iter()
            .filter_map(|(key, why)| Some((key, why?)))
            .collect()
        }
    };
    let source_ok =
        |e: &Edge| present(e) && !unsigned.contains_key(&(e.source.clone(), e.image.clone(), e.digest.clone()));

    // 2. Signatures, attestations and referrers of each promotable digest come along.
    let derived = derive_signature_edges(registries, &edges, &source_ok, concurrency).await;
    let first_derived = edges.len();
    edges.extend(derived);

    // 3. Destination state, read per repository.
    let mut by_repository: HashMap<RepoKey, Vec<usize>> = HashMap::new();
    for (i, edge) in edges.iter().enumerate() {
        if !conflicts.contains_key(&i) && (i >= first_derived || source_ok(edge)) {
            by_repository.entry((edge.destination.clone(), edge.image.clone())).or_default().push(i);
        }
    }
    let edges = &edges;
    let mut decided: HashMap<usize, Decision> = stream::iter(by_repository)
        .map(|((destination, image), members)| async move {
            let registry = registries.get(&destination).as_ref();
            let members: Vec<(usize, &Edge)> = members.into_iter().map(|i| (i, &edges[i])).collect();
            decide_repository(registry, &image, &members, concurrency).await
        })
        .buffer_unordered(concurrency.max(1))
        .flat_map(stream::iter)
        .collect()
        .await;
    // A signature image at the destination that differs from the source's is no moved tag:
    // signers add layers. Nothing to do when it holds every signature of the source's, else the
    // missing ones are added.
    let differing: Vec<usize> = decided
        .iter()
        .filter(|(i, d)| {
            d.action == Action::Refuse
                && accumulates(&edges[**i])
                && d.reason.as_deref().is_some_and(|r| r.starts_with("tag move"))
        })
        .map(|(i, _)| *i)
        .collect();
    let kept = for_each_unique(differing, concurrency, |i| holds_every_signature(registries, &edges[i])).await;
    for (i, holds) in kept {
        let action = if holds { Action::Skip } else { Action::Merge };
        decided.insert(i, Decision { action, reason: None, new_repository: false });
    }

    edges
        .iter()
        .enumerate()
        .map(|(i, edge)| {
            let decision = if let Some(reason) = conflicts.get(&i) {
                Decision::refuse(reason.clone())
            } else if let Some(decision) = decided.remove(&i) {
                decision
            } else if let Some(why) = unsigned.get(&(edge.source.clone(), edge.image.clone(), edge.digest.clone())) {
                Decision::refuse(format!("{} is not signed as the policy requires: {why}", edge.source_ref()))
            } else {
                match &sources[&(edge.source.clone(), edge.image.clone(), edge.digest.clone())] {
                    Err(e) => Decision::refuse(format!("cannot read source: {e}")),
                    Ok(_) => Decision::refuse(format!("lost: {} is not in the source", edge.source_ref())),
                }
            };
            PlannedEdge {
                edge: edge.clone(),
                action: decision.action,
                reason: decision.reason,
                new_repository: decision.new_repository,
            }
        })
        .collect()
}

/// What was decided for one edge.
struct Decision {
    action: Action,
    reason: Option<String>,
    new_repository: bool,
}

impl Decision {
    fn refuse(reason: String) -> Decision {
        Decision { action: Action::Refuse, reason: Some(reason), new_repository: false }
    }
}

/// Decide the edges of one destination repository, asking as little as the answers allow:
/// - One tag is asked for first. When it is there, the repository has been promoted into before
///   and each edge's tag is asked for directly (a full no-op is one request per edge).
/// - Otherwise the tags are listed: a repository without tags needs every tagged edge copied,
///   with nothing more to ask (a first promotion is two requests per repository); in one with
///   tags, a listed tag is asked for and an edge whose tag is not listed asks for its digest.
/// - An edge whose tag is absent asks whether its digest is there (then only the tag is added).
async fn decide_repository(
    registry: &dyn Registry,
    image: &RepoName,
    members: &[(usize, &Edge)],
    concurrency: usize,
) -> Vec<(usize, Decision)> {
    let head = |reference: Reference| async move {
        registry.head_manifest(image, &reference).await.map(|h| h.map(|h| h.digest))
    };
    let mut known: HashMap<Reference, ferry_registry::Result<Option<Digest>>> = HashMap::new();
    let probe = members.iter().find_map(|(_, e)| e.tag.clone());
    let listed = match probe {
        Some(tag) => {
            let found = head(Reference::Tag(tag.clone())).await;
            let present = matches!(found, Ok(Some(_)));
            known.insert(Reference::Tag(tag), found);
            if present {
                None
            } else {
                Some(registry.list_tags(image).await)
            }
        }
        None => Some(registry.list_tags(image).await),
    };
    if let Some(Err(e)) = &listed {
        let why = format!("cannot read destination: {e}");
        return members.iter().map(|&(i, _)| (i, Decision::refuse(why.clone()))).collect();
    }
    let tags: Option<&Vec<Tag>> = listed.as_ref().and_then(|l| l.as_ref().ok());
    let untagged_repository = tags.is_some_and(|t| t.is_empty());
    // Whether the edge's tag is worth asking for: always, unless a listing says it is absent.
    let ask_tag = |e: &Edge| e.tag.as_ref().filter(|t| tags.is_none_or(|tags| tags.contains(t))).cloned();

    // First round: the tags.
    let wanted = members.iter().filter_map(|(_, e)| ask_tag(e)).map(Reference::Tag);
    ask_all(&mut known, wanted, concurrency, &head).await;
    // Second round: the digests of edges without a tag there (a new repository's tagged edges
    // need not ask: nothing is there).
    let tag_absent = |e: &Edge, known: &HashMap<Reference, _>| match ask_tag(e) {
        Some(tag) => matches!(known.get(&Reference::Tag(tag)), Some(Ok(None))),
        None => !(untagged_repository && e.tag.is_some()),
    };
    let wanted: Vec<Reference> = members
        .iter()
        .filter(|(_, e)| tag_absent(e, &known))
        .map(|(_, e)| Reference::Digest(e.digest.clone()))
        .collect();
    ask_all(&mut known, wanted, concurrency, &head).await;

    let unreadable = |e: &ferry_registry::RegistryError| Decision::refuse(format!("cannot read destination: {e}"));
    members
        .iter()
        .map(|&(i, edge)| {
            let decision = |action| Decision { action, reason: None, new_repository: untagged_repository };
            if let Some(tag) = ask_tag(edge) {
                match &known[&Reference::Tag(tag)] {
                    Ok(Some(current)) if *current == edge.digest => return (i, decision(Action::Skip)),
                    Ok(Some(current)) => {
                        let why = format!(
                            "tag move: {} already points at {current}; tags never move",
                            edge.destination_ref()
                        );
                        return (i, Decision::refuse(why));
                    }
                    Err(e) => return (i, unreadable(e)),
                    Ok(None) => {}
                }
            }
            let outcome = match known.get(&Reference::Digest(edge.digest.clone())) {
                // Not asked: a tagged edge of a repository without tags.
                None | Some(Ok(None)) => decision(Action::Copy),
                Some(Ok(Some(_))) if edge.tag.is_some() => decision(Action::AddTag),
                Some(Ok(Some(_))) => decision(Action::Skip),
                Some(Err(e)) => unreadable(e),
            };
            (i, outcome)
        })
        .collect()
}

/// Ask for each reference not yet known, `concurrency` at a time, and remember the answers.
async fn ask_all<F, Fut>(
    known: &mut HashMap<Reference, ferry_registry::Result<Option<Digest>>>,
    wanted: impl IntoIterator<Item = Reference>,
    concurrency: usize,
    head: &F,
) where
    F: Fn(Reference) -> Fut,
    Fut: Future<Output = ferry_registry::Result<Option<Digest>>>,
{
    let missing: Vec<Reference> = wanted.into_iter().filter(|r| !known.contains_key(r)).collect();
    let answers = for_each_unique(missing, concurrency, head).await;
    known.extend(answers);
}

/// A derived edge whose tag names a cosign signature or attestation image, to which signers
/// add layers (so the tag's digest changes without anything being moved).
fn accumulates(edge: &Edge) -> bool {
    edge.kind == EdgeKind::Signature
        && edge.tag.as_ref().is_some_and(|t| t.as_str().ends_with(".sig") || t.as_str().ends_with(".att"))
}

/// Whether the destination's signature image under the edge's tag holds every layer (blob and
/// signature) of the source's.
async fn holds_every_signature(registries: &Registries, edge: &Edge) -> bool {
    let Some(tag) = &edge.tag else { return false };
    let layers = |manifest: Option<ferry_registry::Manifest>| {
        let layers = ferry_sign::signature_image::parse(&manifest?.bytes).ok()?;
        Some(
            layers
                .into_iter()
                .map(|l| (l.digest.clone(), l.signature_b64().map(str::to_string)))
                .collect::<HashSet<_>>(),
        )
    };
    let source = registries.get(&edge.source).get_manifest(&edge.image, &Reference::Digest(edge.digest.clone())).await;
    let destination = registries.get(&edge.destination).get_manifest(&edge.image, &Reference::Tag(tag.clone())).await;
    match (layers(source.ok().flatten()), layers(destination.ok().flatten())) {
        (Some(source), Some(destination)) => source.is_subset(&destination),
        _ => false,
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
