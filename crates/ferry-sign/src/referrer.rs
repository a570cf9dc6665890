//! A signature as an OCI 1.1 referrer, for registries with the referrers API: an image manifest
//! whose `subject` is the signed image and whose `artifactType` is cosign's signature type, with
//! the empty config and the signature's layer — the shape `cosign sign` writes with
//! `--registry-referrers-mode=oci-1-1`. Deterministic: the same layer and subject give the same
//! bytes, so a re-run finds its referrer already listed.

use std::collections::BTreeMap;

use ferry_oci::{media_types, Digest};
use serde::Serialize;

use crate::signature_image::{Blob, Layer};

/// The `artifactType` of a cosign signature stored as a referrer.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// The OCI empty descriptor's media type and content (image-spec 1.1 "Guidance for an empty
/// descriptor").
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";

/// The manifest the registry is told about: what the signature is of.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The signed manifest's media type.
    pub media_type: &'a str,
    /// Its digest.
    pub digest: &'a Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A referrer manifest and the blobs to upload before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The manifest bytes (`application/vnd.oci.image.manifest.v1+json`), pushed by digest.
    pub manifest: Vec<u8>,
    /// Their digest.
    pub digest: Digest,
    /// The empty config and the layer's blob.
    pub blobs: Vec<Blob>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    artifact_type: &'a str,
    config: DescriptorOut<'a>,
    layers: [DescriptorOut<'a>; 1],
    subject: DescriptorOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorOut<'a> {
    media_type: &'a str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a BTreeMap<String, String>>,
}

/// The referrer holding `layer` (a `.sig` layer) about `subject`.
pub fn signature_referrer(layer: &Layer, subject: &Subject<'_>) -> Referrer {
    let manifest = ManifestOut {
        schema_version: 2,
        media_type: media_types::OCI_MANIFEST,
        artifact_type: SIGNATURE_ARTIFACT_TYPE,
        config: DescriptorOut {
            media_type: EMPTY_MEDIA_TYPE,
            digest: Digest::of(EMPTY).to_string(),
            size: EMPTY.len() as u64,
            annotations: None,
        },
        layers: [DescriptorOut {
            media_type: layer.media_type(),
            digest: layer.digest().to_string(),
            size: layer.blob().len() as u64,
            annotations: Some(layer.annotations()),
        }],
        subject: DescriptorOut {
            media_type: subject.media_type,
            digest: subject.digest.to_string(),
            size: subject.size,
            annotations: None,
        },
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serialises");
    Referrer {
        digest: Digest::of(&bytes),
        manifest: bytes,
        blobs: vec![
            Blob { digest: Digest::of(EMPTY), bytes: EMPTY.to_vec() },
            Blob { digest: layer.digest(), bytes: layer.blob().to_vec() },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature_image;

    #[test]
    fn a_referrer_is_deterministic_and_its_layer_parses_as_a_signature_layer() {
        let layer = Layer::signature(b"payload".to_vec(), b"signature");
        let digest = Digest::of(b"image");
        let subject = Subject { media_type: media_types::OCI_INDEX, digest: &digest, size: 5 };
        let (a, b) = (signature_referrer(&layer, &subject), signature_referrer(&layer, &subject));
        assert_eq!(a, b);
        let value: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(value["artifactType"], SIGNATURE_ARTIFACT_TYPE);
        assert_eq!(value["subject"]["digest"], digest.to_string());
        assert_eq!(value["config"]["digest"], Digest::of(b"{}").to_string());
        let layers = signature_image::parse(&a.manifest).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(
            layers[0].signature_b64(),
            layer.annotations().get(signature_image::SIGNATURE_ANNOTATION).map(String::as_str)
        );
    }
}
