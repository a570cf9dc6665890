//! The payload cosign signs for an image: the "simple signing" JSON of containers/image
//! (<https://github.com/containers/image/blob/main/docs/containers-signature.5.md>), as sigstore's
//! Go `payload.Cosign` type writes it:
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"registry.example/repo"},
//!   "image":{"docker-manifest-digest":"sha256:…"},"type":"cosign container image signature"},
//!  "optional":null}
//! ```
//!
//! `docker-reference` is the repository without tag or digest. `optional` is `null` when there are
//! no annotations (cosign writes `null`, not `{}`, for `cosign sign` without `-a`), else a map
//! sorted by key. The bytes are compact and escaped as Go does, so Ferry's payload for a digest is
//! byte-identical to cosign's. What cosign checks when verifying is only the `type` and that
//! `docker-manifest-digest` is the digest being verified; the reference is reported, not enforced.

use std::collections::BTreeMap;

use ferry_oci::Digest;
use serde::{Deserialize, Serialize};

/// `critical.type` of every cosign image signature payload.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Serialize, Deserialize)]
struct Payload {
    critical: Critical,
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The payload bytes cosign would sign for `digest` in repository `docker_reference` (e.g.
/// `registry.k8s.io/pause`, no tag), with `annotations` as the optional map (`-a key=value` in
/// cosign; an empty map is written as `null`, as cosign does without `-a`).
///
/// For the bytes to equal cosign's, name the repository as go-containerregistry does: Docker Hub
/// repositories are `index.docker.io/library/alpine`, not `alpine`. cosign does not check the
/// reference when verifying, so another spelling still verifies.
pub fn payload(docker_reference: &str, digest: &Digest, annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let optional = (!annotations.is_empty())
        .then(|| annotations.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect());
    crate::gojson::to_vec(&Payload {
        critical: Critical {
            identity: Identity { docker_reference: docker_reference.to_string() },
            image: Image { docker_manifest_digest: digest.to_string() },
            kind: COSIGN_SIGNATURE_TYPE.to_string(),
        },
        optional,
    })
}

/// A payload that passed [`check_payload`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPayload {
    /// `critical.identity.docker-reference`: the repository the signer named.
    pub docker_reference: String,
    /// `optional`, when present (values may be any JSON: other tools put non-strings there).
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// Why a payload was not accepted for a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// Not JSON of the simple-signing shape.
    #[error("the signed payload is not a cosign simple-signing document: {0}")]
    Malformed(String),
    /// `critical.type` is something else.
    #[error("the signed payload is of type {0:?}, not \"cosign container image signature\"")]
    WrongType(String),
    /// The signature is valid but for another image.
    #[error("the signature is for {signed}, not for {expected}")]
    WrongDigest {
        /// The digest in the payload.
        signed: String,
        /// The digest being verified.
        expected: Digest,
    },
}

/// Parses a (signature-verified) payload and checks it is a cosign image signature for `expected`.
pub fn check_payload(bytes: &[u8], expected: &Digest) -> Result<CheckedPayload, PayloadError> {
    let payload: Payload = serde_json::from_slice(bytes).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    if payload.critical.kind != COSIGN_SIGNATURE_TYPE {
        return Err(PayloadError::WrongType(payload.critical.kind));
    }
    if payload.critical.image.docker_manifest_digest != expected.as_str() {
        return Err(PayloadError::WrongDigest {
            signed: payload.critical.image.docker_manifest_digest,
            expected: expected.clone(),
        });
    }
    Ok(CheckedPayload {
        docker_reference: payload.critical.identity.docker_reference,
        annotations: payload.optional.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        format!("sha256:{}", "ab".repeat(32)).parse().unwrap()
    }

    #[test]
    fn payload_is_what_cosign_writes() {
        let bytes = payload("registry.example/team/app", &digest(), &BTreeMap::new());
        let expected = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"registry.example/team/app"}},"image":{{"docker-manifest-digest":"sha256:{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            "ab".repeat(32)
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn annotations_are_sorted_and_go_escaped() {
        let ann: BTreeMap<String, String> =
            [("z", "last"), ("a", "<first & only>")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let text = String::from_utf8(payload("r.example/x", &digest(), &ann)).unwrap();
        assert!(text.ends_with(r#""optional":{"a":"\u003cfirst \u0026 only\u003e","z":"last"}}"#), "{text}");
        let checked = check_payload(text.as_bytes(), &digest()).unwrap();
        assert_eq!(checked.annotations["a"], "<first & only>");
    }

    #[test]
    fn check_reports_reference_and_refuses_other_digests() {
        let bytes = payload("r.example/x", &digest(), &BTreeMap::new());
        assert_eq!(check_payload(&bytes, &digest()).unwrap().docker_reference, "r.example/x");
        let other: Digest = format!("sha256:{}", "cd".repeat(32)).parse().unwrap();
        let err = check_payload(&bytes, &other).unwrap_err();
        assert_eq!(err.to_string(), format!("the signature is for {}, not for {other}", digest()));
        let wrong_type = String::from_utf8(bytes).unwrap().replace("cosign container image signature", "atomic");
        assert!(matches!(check_payload(wrong_type.as_bytes(), &digest()), Err(PayloadError::WrongType(_))));
        assert!(matches!(check_payload(b"{}", &digest()), Err(PayloadError::Malformed(_))));
    }
}
