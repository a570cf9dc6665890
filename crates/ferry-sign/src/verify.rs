//! Signing an image and checking one layer of a `.sig` or `.att` image: the steps `cosign sign`,
//! `cosign attest`, `cosign verify` and `cosign verify-attestation` take for one key-signed
//! signature, composed from the other modules so callers cannot forget one.
//!
//! Checking a layer: the blob fetched must be the one the manifest names (digest and size), the
//! signature must verify with a trusted key, and the signed document must be about the image
//! being verified. Fetching the manifest and blobs is the caller's business.

use std::collections::BTreeMap;

use ferry_oci::Digest;

use crate::dsse::{Envelope, EnvelopeError, INTOTO_PAYLOAD_TYPE};
use crate::signature_image::{Layer, LayerRef, DSSE_MEDIA_TYPE, SIMPLE_SIGNING_MEDIA_TYPE};
use crate::signer::{SignError, Signer, Verifier, VerifyError};
use crate::simple_signing::{self, PayloadError};

/// The `.sig` layer signing `digest` in repository `docker_reference`.
pub fn sign_image(
    signer: &dyn Signer,
    docker_reference: &str,
    digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> Result<Layer, SignError> {
    let payload = simple_signing::payload(docker_reference, digest, annotations);
    let signature = signer.sign(&payload)?;
    Ok(Layer::signature(payload, &signature))
}

/// The `.att` layer holding `statement` (in-toto JSON of `predicate_type`) signed in a DSSE
/// envelope.
pub fn attest(signer: &dyn Signer, statement: &[u8], predicate_type: &str) -> Result<Layer, SignError> {
    let envelope = Envelope::sign(signer, INTOTO_PAYLOAD_TYPE, statement)?;
    Ok(Layer::attestation(envelope.to_json(), predicate_type))
}

/// Why a layer did not verify.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer is of another kind than the one checked for.
    #[error("layer {digest} has media type {found}, expected {expected}")]
    WrongMediaType {
        /// The layer's digest.
        digest: Digest,
        /// Its media type.
        found: String,
        /// The media type expected.
        expected: &'static str,
    },
    /// The blob is not the one the manifest names.
    #[error("the blob fetched for layer {0} does not match its digest or size")]
    BlobMismatch(Digest),
    /// The layer has no signature annotation.
    #[error("layer {0} has no dev.cosignproject.cosign/signature annotation")]
    NoSignature(Digest),
    /// The signature did not verify.
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// The signature is valid but the payload is not for this image.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The envelope did not verify.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The envelope verified but the statement is not for this image or of this type.
    #[error(transparent)]
    Statement(#[from] crate::provenance::StatementError),
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedSignature {
    /// The name of the key that verified it.
    pub key: String,
    /// The repository named in the payload.
    pub docker_reference: String,
}

/// An attestation that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAttestation {
    /// The name of the key that verified it.
    pub key: String,
    /// The statement's predicate.
    pub predicate: serde_json::Value,
}

fn check_blob(layer: &LayerRef, blob: &[u8], expected: &'static str) -> Result<(), LayerError> {
    if layer.media_type != expected {
        return Err(LayerError::WrongMediaType {
            digest: layer.digest.clone(),
            found: layer.media_type.clone(),
            expected,
        });
    }
    if Digest::of(blob) != layer.digest || blob.len() as u64 != layer.size {
        return Err(LayerError::BlobMismatch(layer.digest.clone()));
    }
    Ok(())
}

/// Checks one `.sig` layer (`blob` being the blob fetched for it) as a signature of `expected`.
pub fn verify_signature(
    layer: &LayerRef,
    blob: &[u8],
    verifier: &Verifier,
    expected: &Digest,
) -> Result<VerifiedSignature, LayerError> {
    check_blob(layer, blob, SIMPLE_SIGNING_MEDIA_TYPE)?;
    let signature = layer.signature_b64().ok_or_else(|| LayerError::NoSignature(layer.digest.clone()))?;
    let key = verifier.verify_base64(blob, signature)?;
    let payload = simple_signing::check_payload(blob, expected)?;
    Ok(VerifiedSignature { key: key.to_string(), docker_reference: payload.docker_reference })
}

/// Checks one `.att` layer as an attestation of `predicate_type` about `expected`.
pub fn verify_attestation(
    layer: &LayerRef,
    blob: &[u8],
    verifier: &Verifier,
    expected: &Digest,
    predicate_type: &str,
) -> Result<VerifiedAttestation, LayerError> {
    check_blob(layer, blob, DSSE_MEDIA_TYPE)?;
    let envelope = Envelope::from_json(blob)?;
    let (key, statement) = envelope.verify(verifier, INTOTO_PAYLOAD_TYPE)?;
    let predicate = crate::provenance::check_statement(&statement, expected, predicate_type)?;
    Ok(VerifiedAttestation { key: key.to_string(), predicate })
}
