use serde::Deserialize;

use crate::Digest;

/// Media types Ferry recognises. Anything else is still copied byte-for-byte; these only decide
/// which fields are followed to find children.
pub mod media_types {
    /// An OCI image manifest: a config and layers.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image index: child manifests, one per platform or artefact.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// A Docker schema 2 image manifest: a config and layers.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// A Docker manifest list: child manifests, one per platform.
    pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

    /// The `Accept` header value asking a registry for any of the manifest kinds above.
    pub const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    /// `true` for the kinds that list child manifests (OCI index, Docker manifest list).
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }
}

/// A content descriptor as found in manifests and indexes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The target's media type; empty when the descriptor gives none.
    #[serde(default)]
    pub media_type: String,
    /// The target's digest.
    pub digest: Digest,
    /// The target's length in bytes.
    pub size: u64,
    /// The OCI 1.1 `artifactType`, when given (referrers use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// A manifest's bytes that are not JSON of a readable shape, or a Docker schema 1 manifest.
#[derive(Debug, thiserror::Error)]
#[error("manifest {digest} is not a manifest Ferry can read: {reason}")]
pub struct ManifestError {
    /// The digest of the manifest that could not be read.
    pub digest: Digest,
    /// What was wrong with it (the JSON error, or why the kind is refused).
    pub reason: String,
}

/// What a manifest refers to. Parsed leniently (unknown fields ignored) from the exact bytes;
/// the bytes themselves are never re-serialised.
#[derive(Clone, Debug, Default)]
pub struct ManifestRefs {
    /// The manifest's own media type: its `mediaType` field, or the one the registry reported.
    pub media_type: String,
    /// Child manifests (for an index or manifest list).
    pub manifests: Vec<Descriptor>,
    /// Config and layers (for an image manifest).
    pub blobs: Vec<Descriptor>,
    /// The manifest this one is about (OCI 1.1 `subject`), for referrers.
    pub subject: Option<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    blobs: Vec<Descriptor>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    schema_version: Option<u32>,
}

impl ManifestRefs {
    /// Parse `bytes` (whose digest is `digest`, for messages). `served_type` is the Content-Type the
    /// registry gave, used when the document has no `mediaType` field (allowed for OCI manifests).
    pub fn parse(digest: &Digest, bytes: &[u8], served_type: Option<&str>) -> Result<Self, ManifestError> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError { digest: digest.clone(), reason: e.to_string() })?;
        if raw.schema_version == Some(1) {
            return Err(ManifestError {
                digest: digest.clone(),
                reason: "Docker schema 1 manifests are deprecated and not supported".into(),
            });
        }
        // An empty `mediaType` (or Content-Type) names no type: it is inferred like a missing one.
        let media_type = raw
            .media_type
            .filter(|t| !t.is_empty())
            .or_else(|| served_type.filter(|t| !t.is_empty()).map(str::to_string))
            .or_else(|| {
                // OCI allows omitting mediaType; infer from the shape.
                Some(
                    if !raw.manifests.is_empty() { media_types::OCI_INDEX } else { media_types::OCI_MANIFEST }
                        .to_string(),
                )
            })
            .unwrap_or_default();
        let mut blobs: Vec<Descriptor> = raw.config.into_iter().collect();
        blobs.extend(raw.layers);
        blobs.extend(raw.blobs);
        Ok(ManifestRefs { media_type, manifests: raw.manifests, blobs, subject: raw.subject })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_and_manifest() {
        let d = Digest::of(b"x");
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":3,"platform":{{"os":"linux"}}}}]}}"#,
            media_types::OCI_INDEX,
            media_types::OCI_MANIFEST,
            d
        );
        let r = ManifestRefs::parse(&d, idx.as_bytes(), None).unwrap();
        assert_eq!(r.media_type, media_types::OCI_INDEX);
        assert_eq!(r.manifests.len(), 1);
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{d}","size":1}},"layers":[{{"mediaType":"l","digest":"{d}","size":1}}]}}"#
        );
        let r = ManifestRefs::parse(&d, m.as_bytes(), Some(media_types::DOCKER_MANIFEST)).unwrap();
        assert_eq!(r.media_type, media_types::DOCKER_MANIFEST);
        assert_eq!(r.blobs.len(), 2);
        assert!(ManifestRefs::parse(&d, b"{\"schemaVersion\":1}", None).is_err());
        assert!(ManifestRefs::parse(&d, b"nope", None).is_err());
    }
}
