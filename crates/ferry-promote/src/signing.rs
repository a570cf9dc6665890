//! Signature images: merging a source's into a destination's that differs ([`Action::Merge`]),
//! and signing what was promoted (`--sign-key`): one cosign signature per promoted digest, made
//! once (deterministic, RFC 6979) and added to that digest's `.sig` image at every destination
//! next to the signatures already there — and, where the registry has the referrers API, stored
//! as a referrer of the digest too — so every destination carries the same bytes and a re-run
//! adds nothing; with it, the provenance attestation (`.att`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use ferry_oci::{Digest, RegistryAddress, RepoName};
use ferry_sign::signature_image::Layer;
use futures::stream::{self, StreamExt};

use crate::copy::Transfer;
use crate::plan::{Action, PlannedEdge};
use crate::{EdgeKind, Provenance, Registries, Signing};
use ferry_sign::provenance::SLSA_PROVENANCE_V1;

/// Signs every image edge that is in place after the copy (promoted now or already there).
/// Returns the edges whose signature could not be added, with why.
pub(crate) async fn sign(
    registries: &Registries,
    plan: &[PlannedEdge],
    failures: &BTreeMap<usize, String>,
    signing: &Signing,
    concurrency: usize,
    transfer: &Transfer,
) -> BTreeMap<usize, String> {
    let in_place = |i: usize| {
        let p = &plan[i];
        p.edge.kind == EdgeKind::Image && p.action != Action::Refuse && !failures.contains_key(&i)
    };
    // The signed name: the configured identity, else the image's first destination in plan order.
    let mut layers: HashMap<(RepoName, Digest), Result<Layer, String>> = HashMap::new();
    let mut groups: BTreeMap<(String, RepoName, Digest), (RegistryAddress, Vec<usize>)> = BTreeMap::new();
    for i in (0..plan.len()).filter(|&i| in_place(i)) {
        let e = &plan[i].edge;
        layers.entry((e.image.clone(), e.digest.clone())).or_insert_with(|| {
            let reference = match &signing.identity {
                Some(name) => format!("{name}/{}", e.image),
                None => format!("{}/{}", e.destination, e.image),
            };
            ferry_sign::verify::sign_image(signing.signer.as_ref(), &reference, &e.digest, &signing.annotations)
                .map_err(|err| format!("cannot sign {}@{}: {err}", e.image, e.digest))
        });
        groups
            .entry((e.destination.to_string(), e.image.clone(), e.digest.clone()))
            .or_insert_with(|| (e.destination.clone(), Vec::new()))
            .1
            .push(i);
    }
    let layers = &layers;
    let outcomes: Vec<(Vec<usize>, Result<(), String>)> = stream::iter(groups)
        .map(|((_, image, digest), (destination, members))| async move {
            let outcome = match &layers[&(image.clone(), digest.clone())] {
                Err(why) => Err(why.clone()),
                Ok(layer) => {
                    let registry = registries.get(&destination);
                    let added = match ferry_trust::add_signature(registry.as_ref(), &image, &digest, layer).await {
                        Ok(added) => ferry_trust::add_signature_referrer(registry.as_ref(), &image, &digest, layer)
                            .await
                            .map(|_| added),
                        Err(why) => Err(why),
                    };
                    match added {
                        Ok(added) => {
                            if added {
                                transfer.signatures_added.fetch_add(1, Ordering::Relaxed);
                            }
                            match &signing.provenance {
                                Some(provenance) => {
                                    let edge = &plan[members[0]].edge;
                                    attest(registry.as_ref(), edge, signing, provenance, transfer).await
                                }
                                None => Ok(()),
                            }
                        }
                        Err(why) => Err(format!("cannot add Ferry's signature: {why}")),
                    }
                }
            };
            (members, outcome)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    outcomes
        .into_iter()
        .filter_map(|(members, outcome)| outcome.err().map(|why| (members, why)))
        .flat_map(|(members, why)| members.into_iter().map(move |i| (i, why.clone())))
        .collect()
}

/// Attaches the provenance of `edge`'s promotion to its `.att` image, unless one made with
/// Ferry's key is already there (a re-run adds nothing; the first run's provenance stands).
async fn attest(
    registry: &dyn ferry_registry::Registry,
    edge: &crate::Edge,
    signing: &Signing,
    provenance: &Provenance,
    transfer: &Transfer,
) -> Result<(), String> {
    let key = signing.signer.public_key().ok_or("the signer has no public key to check attestations with")?;
    let ours = ferry_sign::signer::Verifier::new().with_key("ferry", key);
    if ferry_trust::find_attestation(registry, &edge.image, &edge.digest, &ours).await.is_ok() {
        return Ok(());
    }
    let destination = format!("{}/{}", edge.destination, edge.image);
    let source = format!("{}/{}", edge.source, edge.image);
    let (file, line) = match edge.origin.rsplit_once(':') {
        Some((file, line)) if line.parse::<u64>().is_ok() => (file, line.parse().ok()),
        _ => (edge.origin.as_str(), None),
    };
    let promotion = ferry_sign::provenance::Promotion {
        destination: &destination,
        digest: &edge.digest,
        source: &source,
        manifest_file: file,
        manifest_line: line,
        manifests_revision: provenance.manifests_revision.as_deref(),
    };
    let run = ferry_sign::provenance::Run {
        builder_id: &provenance.builder_id,
        ferry_version: env!("CARGO_PKG_VERSION"),
        invocation_id: &provenance.invocation_id,
        started_on: provenance.started,
        finished_on: std::time::SystemTime::now(),
    };
    let statement = ferry_sign::provenance::statement(&promotion, &run);
    let layer = ferry_sign::verify::attest(signing.signer.as_ref(), &statement, SLSA_PROVENANCE_V1)
        .map_err(|e| format!("cannot attest: {e}"))?;
    ferry_trust::add_layer(registry, &edge.image, &ferry_trust::attestation_tag(&edge.digest), &layer)
        .await
        .map_err(|why| format!("cannot add Ferry's attestation: {why}"))?;
    transfer.attestations_added.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Adds to each destination signature image of a [`Action::Merge`] edge the source's layers it
/// lacks. Returns the edges that failed, with why.
pub(crate) async fn merge(
    registries: &Registries,
    plan: &[PlannedEdge],
    concurrency: usize,
) -> BTreeMap<usize, String> {
    let merges = (0..plan.len()).filter(|&i| plan[i].action == Action::Merge);
    let outcomes: Vec<(usize, Result<(), String>)> = stream::iter(merges)
        .map(|i| async move {
            let e = &plan[i].edge;
            let tag = e.tag.as_ref().expect("merged edges are tagged");
            let source = registries.get(&e.source);
            let outcome = async {
                let manifest = source
                    .get_manifest(&e.image, &ferry_oci::Reference::Digest(e.digest.clone()))
                    .await
                    .map_err(|err| err.to_string())?
                    .ok_or_else(|| format!("{} is gone from the source", e.source_ref()))?;
                let layers = ferry_trust::read_layers(source.as_ref(), &e.image, &manifest).await?;
                let destination = registries.get(&e.destination);
                for layer in &layers {
                    ferry_trust::add_layer(destination.as_ref(), &e.image, tag, layer).await?;
                }
                Ok(())
            };
            (i, outcome.await.map_err(|why: String| format!("cannot merge signatures: {why}")))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    outcomes.into_iter().filter_map(|(i, outcome)| outcome.err().map(|why| (i, why))).collect()
}
