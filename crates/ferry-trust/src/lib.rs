//! An image's cosign signatures where they live, in a registry or `oci:` layout.
//!
//! [`find_signature`] checks whether a digest carries a valid signature by a trusted key, the way
//! `cosign verify --key` does: the `sha256-<hex>.sig` image in the same repository, and cosign
//! signatures the registry lists as OCI 1.1 referrers of the digest (artifact type
//! [`REFERRER_ARTIFACT_TYPE`]), each layer's payload checked against the keys and the digest.
//! [`add_signature`] puts one more signature into a `.sig` image, keeping every signature already
//! there (cosign's own behaviour), so that a re-run adds nothing.
//!
//! Bounds: at most [`MAX_LAYERS`] layers per signature image are checked and a payload larger
//! than [`MAX_PAYLOAD_BYTES`] is not read; a registry that serves more is not believed.

use bytes::BytesMut;
use ferry_oci::{Digest, Reference, RepoName, Tag};
use ferry_registry::{BlobData, Manifest, Registry};
use ferry_sign::signature_image::{self, Layer};
use ferry_sign::signer::Verifier;
use ferry_sign::verify::{verify_signature, VerifiedSignature};
use futures::TryStreamExt;

/// The artifact type of a cosign signature stored as an OCI 1.1 referrer.
pub const REFERRER_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// Layers of one signature image checked at most.
pub const MAX_LAYERS: usize = 64;

/// The largest signature payload read, in bytes (a simple-signing payload is well under 1 KiB).
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 20;

/// The tag cosign stores `digest`'s signatures under: `sha256-<hex>.sig`.
fn signature_tag(digest: &Digest) -> Tag {
    signature_image::signature_tag(digest).parse().expect("a digest's tag prefix and .sig make a valid tag")
}

/// The first signature of `digest` in `repo` that a key of `verifier` verifies; else why there
/// is none, naming the keys tried and what each signature found failed on.
pub async fn find_signature(
    registry: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    verifier: &Verifier,
) -> Result<VerifiedSignature, String> {
    let keys = verifier.key_names().collect::<Vec<_>>().join(", ");
    let mut failures: Vec<String> = Vec::new();
    let mut images: Vec<Manifest> = Vec::new();
    let tag = signature_tag(digest);
    match registry.get_manifest(repo, &Reference::Tag(tag.clone())).await {
        Ok(Some(manifest)) => images.push(manifest),
        Ok(None) => {}
        Err(e) => failures.push(format!("cannot read {tag}: {e}")),
    }
    if let Ok(Some(referrers)) = registry.referrers(repo, digest).await {
        for referrer in referrers.iter().filter(|r| r.artifact_type.as_deref() == Some(REFERRER_ARTIFACT_TYPE)) {
            match registry.get_manifest(repo, &Reference::Digest(referrer.digest.clone())).await {
                Ok(Some(manifest)) => images.push(manifest),
                Ok(None) => {}
                Err(e) => failures.push(format!("cannot read referrer {}: {e}", referrer.digest)),
            }
        }
    }
    if images.is_empty() && failures.is_empty() {
        return Err(format!("unsigned: no cosign signature ({tag}) in the source; keys required: {keys}"));
    }
    for image in &images {
        let layers = match signature_image::parse(&image.bytes) {
            Ok(layers) => layers,
            Err(e) => {
                failures.push(format!("{}: {e}", image.digest));
                continue;
            }
        };
        for layer in layers.iter().take(MAX_LAYERS) {
            if layer.size > MAX_PAYLOAD_BYTES {
                failures
                    .push(format!("signature {} is {} bytes, more than a payload can be", layer.digest, layer.size));
                continue;
            }
            let payload = match read_blob(registry, repo, &layer.digest, layer.size).await {
                Ok(payload) => payload,
                Err(e) => {
                    failures.push(format!("cannot read signature {}: {e}", layer.digest));
                    continue;
                }
            };
            match verify_signature(layer, &payload, verifier, digest) {
                Ok(verified) => return Ok(verified),
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    failures.truncate(5);
    Err(format!("no valid signature by {keys}: {}", failures.join("; ")))
}

/// Adds `layer` to the `.sig` image of `digest` in `repo` (creating it when absent), keeping
/// every signature already there. Returns `false` when the signature was already there (nothing
/// written).
pub async fn add_signature(
    registry: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    layer: &Layer,
) -> Result<bool, String> {
    add_layer(registry, repo, &signature_tag(digest), layer).await
}

/// Adds `layer` to the signature (or attestation) image under `tag` in `repo`, keeping every
/// layer already there; `false` when it was already there.
pub async fn add_layer(registry: &dyn Registry, repo: &RepoName, tag: &Tag, layer: &Layer) -> Result<bool, String> {
    let tag = Reference::Tag(tag.clone());
    let existing = registry.get_manifest(repo, &tag).await.map_err(|e| format!("cannot read {tag}: {e}"))?;
    let merged = signature_image::merge(existing.as_ref().map(|m| m.bytes.as_ref()), layer)
        .map_err(|e| format!("cannot add to {tag}: {e}"))?;
    if !merged.changed {
        return Ok(false);
    }
    for blob in &merged.blobs {
        let data = BlobData::Memory(blob.bytes.clone().into());
        registry.put_blob(repo, &blob.digest, &data).await.map_err(|e| format!("cannot write signature blob: {e}"))?;
    }
    let media_type = existing.map_or_else(|| ferry_oci::media_types::OCI_MANIFEST.to_string(), |m| m.media_type);
    let manifest = Manifest::new(media_type, merged.manifest);
    registry.put_manifest(repo, &tag, &manifest).await.map_err(|e| format!("cannot write {tag}: {e}"))?;
    Ok(true)
}

/// The layers of the signature image `manifest` (in `repo` of `registry`), with their blobs,
/// ready to be added elsewhere.
pub async fn read_layers(registry: &dyn Registry, repo: &RepoName, manifest: &Manifest) -> Result<Vec<Layer>, String> {
    let refs = signature_image::parse(&manifest.bytes).map_err(|e| format!("{}: {e}", manifest.digest))?;
    let mut layers = Vec::new();
    for layer in refs.iter().take(MAX_LAYERS) {
        if layer.size > MAX_PAYLOAD_BYTES {
            return Err(format!("layer {} is {} bytes, more than a signature can be", layer.digest, layer.size));
        }
        let blob = read_blob(registry, repo, &layer.digest, layer.size)
            .await
            .map_err(|e| format!("cannot read layer {}: {e}", layer.digest))?;
        layers.push(Layer::from_parts(layer.media_type.clone(), blob, layer.annotations.clone()));
    }
    Ok(layers)
}

/// A blob of at most `size` bytes (more is an error), checked against `digest`.
async fn read_blob(registry: &dyn Registry, repo: &RepoName, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
    let mut stream = registry.get_blob(repo, digest).await.map_err(|e| e.to_string())?;
    let mut bytes = BytesMut::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| e.to_string())? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > size {
            return Err(format!("longer than the {size} bytes its manifest says"));
        }
    }
    if Digest::of(&bytes) != *digest {
        return Err("does not match its digest".into());
    }
    Ok(bytes.to_vec())
}
