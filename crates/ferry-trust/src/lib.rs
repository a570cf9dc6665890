//! An image's cosign signatures where they live, in a registry or `oci:` layout.
//!
//! [`find_signature`] checks whether a digest carries a valid signature by a trusted key, the way
//! `cosign verify --key` does: the `sha256-<hex>.sig` image in the same repository, and cosign
//! signatures the registry lists as OCI 1.1 referrers of the digest (artifact type
//! `application/vnd.dev.cosign.artifact.sig.v1+json`), each layer's payload checked against the keys and the digest.
//! [`find_attestation`] does the same for SLSA provenance in the `sha256-<hex>.att` image, as
//! `cosign verify-attestation --key --type slsaprovenance1` does. [`add_signature`] and
//! [`add_layer`] put one more signature or attestation into such an image, keeping every layer
//! already there (cosign's own behaviour), so that a re-run adds nothing.
//!
//! Bounds: at most [`MAX_LAYERS`] layers per signature image are checked and a payload larger
//! than [`MAX_PAYLOAD_BYTES`] is not read; a registry that serves more is not believed.

use bytes::BytesMut;
use ferry_oci::{Digest, Reference, RepoName, Tag};
use ferry_registry::{BlobData, Manifest, Registry};
use ferry_sign::provenance::SLSA_PROVENANCE_V1;
use ferry_sign::referrer::{signature_referrer, Subject, SIGNATURE_ARTIFACT_TYPE};
use ferry_sign::signature_image::{self, Layer, LayerRef};
use ferry_sign::signer::Verifier;
use ferry_sign::verify::{verify_attestation, verify_signature, VerifiedAttestation, VerifiedSignature};
use futures::TryStreamExt;

/// Layers of one signature image checked at most.
pub const MAX_LAYERS: usize = 64;

/// The largest signature payload read, in bytes (a simple-signing payload is well under 1 KiB).
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 20;

/// The tag cosign stores `digest`'s signatures under: `sha256-<hex>.sig`.
fn signature_tag(digest: &Digest) -> Tag {
    signature_image::signature_tag(digest).parse().expect("a digest's tag prefix and .sig make a valid tag")
}

/// The tag cosign stores `digest`'s attestations under: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> Tag {
    signature_image::attestation_tag(digest).parse().expect("a digest's tag prefix and .att make a valid tag")
}

/// The first signature of `digest` in `repo` that a key of `verifier` verifies; else why there
/// is none, naming the keys tried and what each signature found failed on.
pub async fn find_signature(
    registry: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    verifier: &Verifier,
) -> Result<VerifiedSignature, String> {
    let tag = signature_tag(digest);
    let mut images = Images::read(registry, repo, &tag).await;
    if let Ok(Some(referrers)) = registry.referrers(repo, digest).await {
        for referrer in referrers.iter().filter(|r| r.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT_TYPE)) {
            match registry.get_manifest(repo, &Reference::Digest(referrer.digest.clone())).await {
                Ok(Some(manifest)) => images.found.push(manifest),
                Ok(None) => {}
                Err(e) => images.failures.push(format!("cannot read referrer {}: {e}", referrer.digest)),
            }
        }
    }
    images
        .first_verified(registry, repo, verifier, "cosign signature", |layer, blob| {
            verify_signature(layer, blob, verifier, digest).map_err(|e| e.to_string())
        })
        .await
}

/// The first SLSA provenance v1 attestation of `digest` in `repo` (its `sha256-<hex>.att`
/// image) that a key of `verifier` verifies, with its predicate; else why there is none.
pub async fn find_attestation(
    registry: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    verifier: &Verifier,
) -> Result<VerifiedAttestation, String> {
    let tag = attestation_tag(digest);
    let images = Images::read(registry, repo, &tag).await;
    images
        .first_verified(registry, repo, verifier, "SLSA provenance attestation", |layer, blob| {
            verify_attestation(layer, blob, verifier, digest, SLSA_PROVENANCE_V1).map_err(|e| e.to_string())
        })
        .await
}

/// The signature or attestation images found for a digest, and what could not be read.
struct Images {
    tag: Tag,
    found: Vec<Manifest>,
    failures: Vec<String>,
}

impl Images {
    async fn read(registry: &dyn Registry, repo: &RepoName, tag: &Tag) -> Images {
        let mut images = Images { tag: tag.clone(), found: Vec::new(), failures: Vec::new() };
        match registry.get_manifest(repo, &Reference::Tag(tag.clone())).await {
            Ok(Some(manifest)) => images.found.push(manifest),
            Ok(None) => {}
            Err(e) => images.failures.push(format!("cannot read {tag}: {e}")),
        }
        images
    }

    /// The first layer `check` accepts, over every image's first [`MAX_LAYERS`] layers.
    async fn first_verified<T>(
        mut self,
        registry: &dyn Registry,
        repo: &RepoName,
        verifier: &Verifier,
        what: &str,
        check: impl Fn(&LayerRef, &[u8]) -> Result<T, String>,
    ) -> Result<T, String> {
        let keys = verifier.key_names().collect::<Vec<_>>().join(", ");
        if self.found.is_empty() && self.failures.is_empty() {
            return Err(format!("unsigned: no {what} ({}) found; keys required: {keys}", self.tag));
        }
        for image in &self.found {
            let layers = match signature_image::parse(&image.bytes) {
                Ok(layers) => layers,
                Err(e) => {
                    self.failures.push(format!("{}: {e}", image.digest));
                    continue;
                }
            };
            for layer in layers.iter().take(MAX_LAYERS) {
                if layer.size > MAX_PAYLOAD_BYTES {
                    self.failures.push(format!("layer {} is {} bytes, more than it can be", layer.digest, layer.size));
                    continue;
                }
                let blob = match read_blob(registry, repo, &layer.digest, layer.size).await {
                    Ok(blob) => blob,
                    Err(e) => {
                        self.failures.push(format!("cannot read layer {}: {e}", layer.digest));
                        continue;
                    }
                };
                match check(layer, &blob) {
                    Ok(verified) => return Ok(verified),
                    Err(e) => self.failures.push(e),
                }
            }
        }
        self.failures.truncate(5);
        Err(format!("no valid {what} by {keys}: {}", self.failures.join("; ")))
    }
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

/// Where the registry has the OCI 1.1 referrers API, also stores `layer` (a `.sig` layer) as a
/// referrer of `digest` (cosign's `oci-1-1` referrers mode). `false` when the registry has no
/// such API, or the same referrer is already listed.
pub async fn add_signature_referrer(
    registry: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    layer: &Layer,
) -> Result<bool, String> {
    let listed = match registry.referrers(repo, digest).await {
        Ok(Some(listed)) => listed,
        Ok(None) => return Ok(false),
        Err(e) => return Err(format!("cannot list the referrers of {digest}: {e}")),
    };
    let head = registry
        .head_manifest(repo, &Reference::Digest(digest.clone()))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{digest} is not there to be referred to"))?;
    let subject = Subject { media_type: &head.media_type, digest, size: head.size };
    let referrer = signature_referrer(layer, &subject);
    if listed.iter().any(|r| r.digest == referrer.digest) {
        return Ok(false);
    }
    for blob in &referrer.blobs {
        let data = BlobData::Memory(blob.bytes.clone().into());
        registry.put_blob(repo, &blob.digest, &data).await.map_err(|e| format!("cannot write signature blob: {e}"))?;
    }
    let manifest = Manifest::new(ferry_oci::media_types::OCI_MANIFEST, referrer.manifest);
    registry
        .put_manifest(repo, &Reference::Digest(referrer.digest.clone()), &manifest)
        .await
        .map_err(|e| format!("cannot write the signature referrer: {e}"))?;
    Ok(true)
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
