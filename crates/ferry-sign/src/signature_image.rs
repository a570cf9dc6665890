//! The OCI image cosign stores signatures and attestations in, under the tag
//! `sha256-<hex>.sig` (or `.att`) next to the signed image:
//!
//! ```json
//! {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
//!  "config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":…,"digest":"sha256:…"},
//!  "layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":…,
//!    "digest":"sha256:…","annotations":{"dev.cosignproject.cosign/signature":"MEUC…"}}]}
//! ```
//!
//! Each layer is one signature: its blob is the signed payload, its annotation the base64
//! signature. Attestation layers hold a DSSE envelope (`application/vnd.dsse.envelope.v1+json`),
//! with an empty signature annotation (the signature is inside the envelope) and a
//! `predicateType` annotation. The config is what go-containerregistry's `empty.Image` plus
//! `mutate.Append` gives: no platform, zero creation time, one diff ID and one empty history
//! entry per layer (a layer is stored uncompressed, so its diff ID is its digest). cosign does not
//! read the config when verifying; it is written the same way so that the manifest bytes match.
//!
//! Adding a signature keeps the layers already there byte for byte (re-signing must not disturb
//! signatures made by others) and adds nothing when the same signature is already present, so a
//! promotion that is run again changes nothing. The output depends only on the inputs.

use std::collections::BTreeMap;

use ferry_oci::{media_types, Digest};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Media type of a signature layer: the blob is a simple-signing payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Media type of an attestation layer: the blob is a DSSE envelope.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation holding the base64 signature (empty on attestation layers).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The attestation layer annotation naming the in-toto predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// Media type of the config blob of a signature image.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Go's zero `time.Time`, which is the config's creation time and every history entry's.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The tag cosign stores an image's signatures under: `sha256-<hex>.sig`.
pub fn signature_tag(image: &Digest) -> String {
    format!("{}.sig", image.tag_prefix())
}

/// The tag cosign stores an image's attestations under: `sha256-<hex>.att`.
pub fn attestation_tag(image: &Digest) -> String {
    format!("{}.att", image.tag_prefix())
}

/// One signature or attestation, ready to be added to a signature image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    media_type: String,
    blob: Vec<u8>,
    annotations: BTreeMap<String, String>,
}

impl Layer {
    /// A `.sig` layer: the simple-signing `payload` and the DER signature over it.
    pub fn signature(payload: Vec<u8>, signature_der: &[u8]) -> Layer {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(signature_der);
        Layer {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_string(),
            blob: payload,
            annotations: [(SIGNATURE_ANNOTATION.to_string(), b64)].into_iter().collect(),
        }
    }

    /// An `.att` layer: a signed DSSE `envelope` (JSON) about a statement of `predicate_type`.
    pub fn attestation(envelope: Vec<u8>, predicate_type: &str) -> Layer {
        Layer {
            media_type: DSSE_MEDIA_TYPE.to_string(),
            blob: envelope,
            annotations: [
                (SIGNATURE_ANNOTATION.to_string(), String::new()),
                (PREDICATE_TYPE_ANNOTATION.to_string(), predicate_type.to_string()),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// A layer as another signer wrote it, carried unchanged into another signature image (a
    /// source's signatures merged into a destination's).
    pub fn from_parts(media_type: String, blob: Vec<u8>, annotations: BTreeMap<String, String>) -> Layer {
        Layer { media_type, blob, annotations }
    }

    /// The layer's blob (payload or envelope).
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The layer's media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The layer's annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The digest of the blob.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.blob)
    }
}

/// A blob the caller must upload before the manifest that references it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The blob's digest.
    pub digest: Digest,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// The result of adding a layer to a signature image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The manifest to put under the `.sig`/`.att` tag.
    pub manifest: Vec<u8>,
    /// Its digest.
    pub digest: Digest,
    /// The blobs to upload first (the new config and the new layer); empty when nothing changed.
    pub blobs: Vec<Blob>,
    /// False when the layer was already there: `manifest` is then the existing bytes unchanged.
    pub changed: bool,
}

/// A layer of an existing signature image, as described by its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LayerRef {
    /// The layer's media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The layer's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl LayerRef {
    /// The base64 signature annotation, if present (empty on attestation layers).
    pub fn signature_b64(&self) -> Option<&str> {
        self.annotations.get(SIGNATURE_ANNOTATION).map(String::as_str)
    }
}

/// Why a signature manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not an image manifest of the expected shape.
    #[error("not a cosign signature manifest: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct ManifestIn<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: ConfigRefIn,
    #[serde(borrow)]
    layers: Vec<&'a RawValue>,
    #[serde(borrow)]
    annotations: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ConfigRefIn {
    #[serde(rename = "mediaType")]
    media_type: String,
}

#[derive(Serialize)]
struct ManifestOut<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: DescriptorOut<'a>,
    layers: Vec<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct DescriptorOut<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: usize,
    digest: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct ConfigOut<'a> {
    architecture: &'a str,
    created: &'a str,
    history: Vec<History<'a>>,
    os: &'a str,
    rootfs: RootFs<'a>,
    config: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a str>,
}

fn parse_manifest(bytes: &[u8]) -> Result<(ManifestIn<'_>, Vec<LayerRef>), ImageError> {
    let manifest: ManifestIn<'_> = serde_json::from_slice(bytes).map_err(|e| ImageError::Malformed(e.to_string()))?;
    if manifest.schema_version != 2 {
        return Err(ImageError::Malformed(format!("schemaVersion {}", manifest.schema_version)));
    }
    if let Some(mt) = &manifest.media_type {
        if media_types::is_index(mt) {
            return Err(ImageError::Malformed(format!("it is an index ({mt}), not an image manifest")));
        }
    }
    let layers = manifest
        .layers
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            serde_json::from_str::<LayerRef>(raw.get()).map_err(|e| ImageError::Malformed(format!("layer {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((manifest, layers))
}

/// The layers of a signature (or attestation) manifest, in order, for verification.
pub fn parse(manifest: &[u8]) -> Result<Vec<LayerRef>, ImageError> {
    parse_manifest(manifest).map(|(_, layers)| layers)
}

/// Adds `layer` to the signature image whose manifest is `existing` (`None` when the tag does not
/// exist yet). Existing layers are kept byte for byte and in order, as are the manifest's media
/// type and annotations; a layer with the same blob digest and signature annotation as one already
/// present is not added again (then `changed` is false and the manifest is `existing` itself).
pub fn merge(existing: Option<&[u8]>, layer: &Layer) -> Result<Merged, ImageError> {
    let new_digest = layer.digest();
    let parsed = existing.map(parse_manifest).transpose()?;
    if let (Some(bytes), Some((_, layers))) = (existing, &parsed) {
        let present = layers.iter().any(|l| {
            l.digest == new_digest
                && l.annotations.get(SIGNATURE_ANNOTATION) == layer.annotations.get(SIGNATURE_ANNOTATION)
        });
        if present {
            return Ok(Merged {
                manifest: bytes.to_vec(),
                digest: Digest::of(bytes),
                blobs: Vec::new(),
                changed: false,
            });
        }
    }

    let new_descriptor = crate::gojson::to_vec(&DescriptorOut {
        media_type: &layer.media_type,
        size: layer.blob.len(),
        digest: new_digest.as_str(),
        annotations: Some(&layer.annotations),
    });
    let new_descriptor = String::from_utf8(new_descriptor).expect("serde_json writes UTF-8");
    let new_raw: Box<RawValue> = RawValue::from_string(new_descriptor).expect("serde_json output is JSON");

    let (existing_raw, existing_refs, media_type, config_media_type, annotations) = match &parsed {
        Some((m, refs)) => (
            m.layers.clone(),
            refs.as_slice(),
            m.media_type.as_deref().unwrap_or(media_types::OCI_MANIFEST),
            m.config.media_type.as_str(),
            m.annotations,
        ),
        None => (Vec::new(), &[][..], media_types::OCI_MANIFEST, CONFIG_MEDIA_TYPE, None),
    };

    let diff_ids: Vec<&str> =
        existing_refs.iter().map(|l| l.digest.as_str()).chain(std::iter::once(new_digest.as_str())).collect();
    let config = crate::gojson::to_vec(&ConfigOut {
        architecture: "",
        created: ZERO_TIME,
        history: diff_ids.iter().map(|_| History { created: ZERO_TIME }).collect(),
        os: "",
        rootfs: RootFs { kind: "layers", diff_ids: diff_ids.clone() },
        config: BTreeMap::new(),
    });
    let config_digest = Digest::of(&config);

    let mut layers = existing_raw;
    layers.push(&new_raw);
    let manifest = crate::gojson::to_vec(&ManifestOut {
        schema_version: 2,
        media_type,
        config: DescriptorOut {
            media_type: config_media_type,
            size: config.len(),
            digest: config_digest.as_str(),
            annotations: None,
        },
        layers,
        annotations,
    });
    let blobs =
        vec![Blob { digest: config_digest, bytes: config }, Blob { digest: new_digest, bytes: layer.blob.clone() }];
    Ok(Merged { digest: Digest::of(&manifest), manifest, blobs, changed: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig_layer(payload: &str, sig: &[u8]) -> Layer {
        Layer::signature(payload.as_bytes().to_vec(), sig)
    }

    #[test]
    fn first_signature_makes_a_cosign_shaped_image() {
        let merged = merge(None, &sig_layer("{}", b"\x30\x00")).unwrap();
        assert!(merged.changed);
        let text = String::from_utf8(merged.manifest.clone()).unwrap();
        let config = &merged.blobs[0];
        let expected = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{}"}},"#,
                r#""layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":2,"#,
                r#""digest":"{}","annotations":{{"dev.cosignproject.cosign/signature":"MAA="}}}}]}}"#
            ),
            config.bytes.len(),
            config.digest,
            Digest::of(b"{}")
        );
        assert_eq!(text, expected);
        assert_eq!(
            String::from_utf8(config.bytes.clone()).unwrap(),
            format!(
                r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
                Digest::of(b"{}")
            )
        );
        assert_eq!(merged.blobs[1].bytes, b"{}");
        assert_eq!(merged.digest, Digest::of(&merged.manifest));
    }

    #[test]
    fn merging_keeps_existing_layers_verbatim_and_is_idempotent() {
        // An existing manifest written by another tool, with its own spacing, an extra annotation
        // and a manifest-level annotation: all of it must survive.
        let foreign = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"layers":[ {"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json", "size":3,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","annotations":{"dev.sigstore.cosign/bundle":"{\"x\":1}","dev.cosignproject.cosign/signature":"AAA="}}],"annotations":{"k":"v"}}"#;
        let layer = sig_layer("payload", b"sig");
        let once = merge(Some(foreign.as_bytes()), &layer).unwrap();
        let text = String::from_utf8(once.manifest.clone()).unwrap();
        assert!(
            text.contains(r#""layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json", "size":3,"#),
            "{text}"
        );
        assert!(text.ends_with(r#""annotations":{"k":"v"}}"#), "{text}");
        let refs = parse(&once.manifest).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].signature_b64(), Some("AAA="));
        assert_eq!(refs[1].digest, layer.digest());

        let twice = merge(Some(&once.manifest), &layer).unwrap();
        assert!(!twice.changed);
        assert_eq!(twice.manifest, once.manifest);
        assert!(twice.blobs.is_empty());

        // Same payload, another signature (another key): a new layer.
        let other = merge(Some(&once.manifest), &sig_layer("payload", b"other")).unwrap();
        assert!(other.changed);
        assert_eq!(parse(&other.manifest).unwrap().len(), 3);
    }

    #[test]
    fn tags() {
        let d = Digest::of(b"x");
        assert_eq!(signature_tag(&d), format!("sha256-{}.sig", d.hex()));
        assert_eq!(attestation_tag(&d), format!("sha256-{}.att", d.hex()));
    }

    #[test]
    fn same_inputs_same_bytes() {
        let a = merge(None, &sig_layer("p", b"s")).unwrap();
        let b = merge(None, &sig_layer("p", b"s")).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn attestation_layer_annotations() {
        let layer = Layer::attestation(b"{}".to_vec(), "https://slsa.dev/provenance/v1");
        let merged = merge(None, &layer).unwrap();
        let text = String::from_utf8(merged.manifest).unwrap();
        assert!(text.contains(r#""mediaType":"application/vnd.dsse.envelope.v1+json","size":2,"#));
        assert!(text.contains(r#""annotations":{"dev.cosignproject.cosign/signature":"","predicateType":"https://slsa.dev/provenance/v1"}"#));
    }

    #[test]
    fn bad_manifests_are_errors() {
        for bad in [
            &b""[..],
            b"{}",
            br#"{"schemaVersion":1,"config":{"mediaType":"x"},"layers":[]}"#,
            br#"{"schemaVersion":2,"config":{"mediaType":"x"},"layers":[{"digest":"nope"}]}"#,
        ] {
            assert!(parse(bad).is_err());
            assert!(merge(Some(bad), &sig_layer("p", b"s")).is_err());
        }
    }
}
