//! Making and checking the raw signatures cosign puts in its annotations and DSSE envelopes.
//!
//! cosign's key-based signature is ECDSA P-256 over the SHA-256 of the bytes signed, encoded as an
//! ASN.1 DER `SEQUENCE { r INTEGER, s INTEGER }` (Go's `ecdsa.SignASN1`), and base64 (standard
//! alphabet, padded) wherever it is stored as text. Signing here is deterministic (RFC 6979), so the
//! same key and payload always give the same signature, and so the same signature layer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::Signature;

use crate::keys::{PrivateKey, PublicKey};

/// Signing failed in the signer itself (a remote signer's service, say; a local key never fails).
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// Something that signs payloads the way cosign does: ECDSA P-256 over SHA-256 of the payload,
/// returning the ASN.1 DER signature.
///
/// This trait is the seam for other kinds of signing. Keyless signing (Sigstore's OIDC + Fulcio +
/// Rekor flow) would plug in here as another implementation that, on first use, gets an OIDC
/// token, makes an ephemeral key, has Fulcio certify it and signs with it; since such a signature
/// is only checkable with its certificate chain and transparency-log entry, that implementation
/// would also expose them, and the signature layer would carry them as the
/// `dev.sigstore.cosign/certificate`, `dev.sigstore.cosign/chain` and `dev.sigstore.cosign/bundle`
/// annotations. A KMS signer would be a third implementation, with no extra annotations.
/// `Send + Sync` so that one signer can serve a promotion's concurrent copies.
pub trait Signer: Send + Sync {
    /// The DER-encoded ECDSA signature of SHA-256(`payload`).
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignError>;

    /// The public key a verifier will need, when the signer has one fixed key.
    fn public_key(&self) -> Option<PublicKey>;
}

/// Signs with a P-256 private key held in memory (read from a cosign key file, for instance).
#[derive(Debug, Clone)]
pub struct KeySigner {
    key: PrivateKey,
}

impl KeySigner {
    /// A signer using `key`.
    pub fn new(key: PrivateKey) -> KeySigner {
        KeySigner { key }
    }
}

impl Signer for KeySigner {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignError> {
        // `Signer<Signature>` for a P-256 key hashes with SHA-256 and signs the digest (RFC 6979).
        let signature: Signature = self.key.signing_key().sign(payload);
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn public_key(&self) -> Option<PublicKey> {
        Some(self.key.public_key())
    }
}

/// Why a signature was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The verifier was given no key to check with.
    #[error("no public key to verify with")]
    NoKeys,
    /// The signature text is not base64, or its bytes are not a DER ECDSA signature.
    #[error("the signature is not a base64 DER-encoded ECDSA signature: {0}")]
    BadSignatureEncoding(String),
    /// Every key was tried and none matched.
    #[error("the signature was not made by {}: {}", keys_phrase(tried.len()), tried.iter().map(|(k, why)| format!("{k}: {why}")).collect::<Vec<_>>().join("; "))]
    NoKeyMatched {
        /// Each key's name and why it did not verify.
        tried: Vec<(String, String)>,
    },
}

fn keys_phrase(count: usize) -> String {
    match count {
        1 => "the configured key".to_string(),
        n => format!("any of the {n} configured keys"),
    }
}

/// One or more trusted public keys, each with a name for messages (its file path, usually).
/// A signature is accepted if any key verifies it, and the answer says which.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: Vec<(String, PublicKey)>,
}

impl Verifier {
    /// A verifier with no keys yet.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Adds a trusted key under `name`.
    pub fn with_key(mut self, name: impl Into<String>, key: PublicKey) -> Verifier {
        self.keys.push((name.into(), key));
        self
    }

    /// The names of the keys, in the order they are tried.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(name, _)| name.as_str())
    }

    /// Checks a DER signature over `payload`; on success, the name of the key that verified it.
    pub fn verify(&self, payload: &[u8], signature_der: &[u8]) -> Result<&str, VerifyError> {
        if self.keys.is_empty() {
            return Err(VerifyError::NoKeys);
        }
        let signature =
            Signature::from_der(signature_der).map_err(|e| VerifyError::BadSignatureEncoding(e.to_string()))?;
        let mut tried = Vec::with_capacity(self.keys.len());
        for (name, key) in &self.keys {
            match key.verifying_key().verify(payload, &signature) {
                Ok(()) => return Ok(name),
                Err(_) => tried.push((
                    name.clone(),
                    format!("signature does not match this key ({}) over these bytes", key.fingerprint()),
                )),
            }
        }
        Err(VerifyError::NoKeyMatched { tried })
    }

    /// As [`Verifier::verify`], with the signature as base64 text (as in cosign's annotation and
    /// DSSE's `sig` field).
    pub fn verify_base64(&self, payload: &[u8], signature_b64: &str) -> Result<&str, VerifyError> {
        let der = STANDARD
            .decode(signature_b64.trim())
            .map_err(|e| VerifyError::BadSignatureEncoding(format!("base64: {e}")))?;
        self.verify(payload, &der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_names_the_key() {
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        let verifier = Verifier::new().with_key("a.pub", a.public_key()).with_key("b.pub", b.public_key());
        let sig = KeySigner::new(b.clone()).sign(b"payload").unwrap();
        assert_eq!(verifier.verify(b"payload", &sig), Ok("b.pub"));
        assert_eq!(verifier.verify_base64(b"payload", &STANDARD.encode(&sig)), Ok("b.pub"));
        // Deterministic: the same key and payload give the same bytes.
        assert_eq!(KeySigner::new(b).sign(b"payload").unwrap(), sig);
    }

    #[test]
    fn failures_say_which_keys_were_tried() {
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        let sig = KeySigner::new(a.clone()).sign(b"payload").unwrap();
        let only_b = Verifier::new().with_key("b.pub", b.public_key());
        let err = only_b.verify(b"payload", &sig).unwrap_err().to_string();
        assert!(
            err.starts_with("the signature was not made by the configured key: b.pub: signature does not match"),
            "{err}"
        );
        let both = Verifier::new().with_key("a.pub", a.public_key()).with_key("b.pub", b.public_key());
        let err = both.verify(b"tampered", &sig).unwrap_err().to_string();
        assert!(err.contains("any of the 2 configured keys: a.pub:") && err.contains("; b.pub:"), "{err}");
        assert_eq!(Verifier::new().verify(b"payload", &sig), Err(VerifyError::NoKeys));
        assert!(matches!(both.verify(b"payload", b"\x30\x01"), Err(VerifyError::BadSignatureEncoding(_))));
        assert!(matches!(both.verify_base64(b"payload", "not base64!"), Err(VerifyError::BadSignatureEncoding(_))));
    }
}
