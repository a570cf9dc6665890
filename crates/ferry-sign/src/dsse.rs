//! DSSE, the Dead Simple Signing Envelope (<https://github.com/secure-systems-lab/dsse>,
//! `protocol.md` and `envelope.md`), in which cosign wraps in-toto attestations.
//!
//! The signature is not over the payload but over its pre-authentication encoding
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body` (lengths in ASCII
//! decimal), so that a signature cannot be replayed under another payload type. The envelope is
//! `{"payloadType":…,"payload":<base64>,"signatures":[{"keyid":…,"sig":<base64>}]}`, the field
//! order of go-securesystemslib's Go type that cosign uses. cosign's key-based signer leaves `keyid`
//! empty, and verifiers only compare key IDs when both sides have one, so it is left empty here too.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::signer::{SignError, Signer, Verifier, VerifyError};

/// `payloadType` of an in-toto statement.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The pre-authentication encoding of `payload` under `payload_type`: the bytes actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload's media type, signed along with it.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// One or more signatures over `pae(payload_type, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature in an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Which key signed; a hint only, empty as cosign leaves it.
    #[serde(default)]
    pub keyid: String,
    /// The DER ECDSA signature, base64.
    pub sig: String,
}

/// Why an envelope was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not DSSE envelope JSON.
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    /// The payload type is not the one expected.
    #[error("the envelope's payloadType is {found:?}, expected {expected:?}")]
    WrongPayloadType {
        /// The envelope's type.
        found: String,
        /// The expected type.
        expected: String,
    },
    /// No signature verified (each one's failure is listed).
    #[error("no signature in the envelope verifies: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unverified(Vec<VerifyError>),
    /// The signer failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

impl Envelope {
    /// Signs `payload` of `payload_type` into a one-signature envelope.
    pub fn sign(signer: &dyn Signer, payload_type: &str, payload: &[u8]) -> Result<Envelope, SignError> {
        let signature = signer.sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload_type: payload_type.to_string(),
            payload: STANDARD.encode(payload),
            signatures: vec![EnvelopeSignature { keyid: String::new(), sig: STANDARD.encode(signature) }],
        })
    }

    /// The envelope as compact JSON, as cosign stores it in an attestation layer.
    pub fn to_json(&self) -> Vec<u8> {
        crate::gojson::to_vec(self)
    }

    /// Parses envelope JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// The decoded payload (DSSE allows standard or URL-safe base64).
    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        STANDARD
            .decode(&self.payload)
            .or_else(|_| URL_SAFE.decode(&self.payload))
            .map_err(|e| EnvelopeError::Malformed(format!("payload is not base64: {e}")))
    }

    /// Checks the type and that some signature verifies with some key of `verifier`; returns the
    /// name of that key and the payload. The payload is only trustworthy after this.
    pub fn verify<'v>(&self, verifier: &'v Verifier, payload_type: &str) -> Result<(&'v str, Vec<u8>), EnvelopeError> {
        if self.payload_type != payload_type {
            return Err(EnvelopeError::WrongPayloadType {
                found: self.payload_type.clone(),
                expected: payload_type.to_string(),
            });
        }
        let payload = self.payload_bytes()?;
        let signed = pae(&self.payload_type, &payload);
        let mut failures = Vec::new();
        for signature in &self.signatures {
            match verifier.verify_base64(&signed, &signature.sig) {
                Ok(key) => return Ok((key, payload)),
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            return Err(EnvelopeError::Malformed("the envelope has no signatures".to_string()));
        }
        Err(EnvelopeError::Unverified(failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::signer::KeySigner;

    #[test]
    fn pae_matches_the_spec_example() {
        // protocol.md's worked example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn sign_verify_and_tamper() {
        let key = PrivateKey::generate();
        let verifier = Verifier::new().with_key("k.pub", key.public_key());
        let env = Envelope::sign(&KeySigner::new(key), INTOTO_PAYLOAD_TYPE, br#"{"a":1}"#).unwrap();
        let json = String::from_utf8(env.to_json()).unwrap();
        assert!(json.starts_with(r#"{"payloadType":"application/vnd.in-toto+json","payload":"eyJhIjoxfQ==","signatures":[{"keyid":"","sig":""#), "{json}");
        let parsed = Envelope::from_json(json.as_bytes()).unwrap();
        assert_eq!(parsed.verify(&verifier, INTOTO_PAYLOAD_TYPE).unwrap(), ("k.pub", br#"{"a":1}"#.to_vec()));

        let mut tampered = parsed.clone();
        tampered.payload = STANDARD.encode(br#"{"a":2}"#);
        let err = tampered.verify(&verifier, INTOTO_PAYLOAD_TYPE).unwrap_err().to_string();
        assert!(
            err.starts_with("no signature in the envelope verifies: the signature was not made by the configured key"),
            "{err}"
        );
        // The type is signed too: relabelling breaks it even if a caller accepted the new type.
        let mut relabelled = parsed.clone();
        relabelled.payload_type = "text/plain".into();
        assert!(relabelled.verify(&verifier, "text/plain").is_err());
        assert!(matches!(parsed.verify(&verifier, "text/plain"), Err(EnvelopeError::WrongPayloadType { .. })));
    }
}
