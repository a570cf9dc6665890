//! ECDSA P-256 keys read from the PEM files cosign and OpenSSL write.
//!
//! P-256 only, because it is what `cosign generate-key-pair` makes and what almost every cosign
//! public key is; supporting RSA or Ed25519 later means adding a key type here and nowhere else.
//! Any other key is refused with a message that names what it is and says so.
//!
//! Private keys: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) and cosign's own encrypted file
//! (`ENCRYPTED SIGSTORE PRIVATE KEY`, or the older `ENCRYPTED COSIGN PRIVATE KEY`), whose body is
//! JSON described in the `encrypted` module and whose plaintext is a PKCS#8 DER key. Public keys:
//! SubjectPublicKeyInfo (`PUBLIC KEY`), which is what `cosign.pub` holds.

use std::fmt;

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::der::pem;
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding, PrivateKeyInfo};
use rand_core::OsRng;
use sha2::{Digest as _, Sha256};

pub use crate::key_error::KeyError;

/// The PEM labels of the private keys this crate reads.
const PRIVATE_LABELS: &str =
    "\"ENCRYPTED SIGSTORE PRIVATE KEY\", \"ENCRYPTED COSIGN PRIVATE KEY\", \"PRIVATE KEY\" or \"EC PRIVATE KEY\"";

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// Names an algorithm (and curve) identifier for an error message.
fn describe(algorithm: &str, curve: Option<&str>) -> String {
    let curve_name = |oid: &str| match oid {
        OID_P256 => "P-256".to_string(),
        "1.3.132.0.34" => "P-384".to_string(),
        "1.3.132.0.35" => "P-521".to_string(),
        "1.3.132.0.10" => "secp256k1".to_string(),
        other => format!("curve {other}"),
    };
    match (algorithm, curve) {
        (OID_EC_PUBLIC_KEY, Some(curve)) => format!("an ECDSA {} key", curve_name(curve)),
        (OID_EC_PUBLIC_KEY, None) => "an EC key without a named curve".to_string(),
        ("1.2.840.113549.1.1.1", _) => "an RSA key".to_string(),
        ("1.2.840.113549.1.1.10", _) => "an RSA-PSS key".to_string(),
        ("1.3.101.112", _) => "an Ed25519 key".to_string(),
        ("1.3.101.113", _) => "an Ed448 key".to_string(),
        (other, _) => format!("a key of algorithm {other}"),
    }
}

/// The first PEM block in `text` (text before it is skipped, as Go's `pem.Decode` does).
fn first_pem_block(text: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    let start = text
        .windows(11)
        .position(|w| w == b"-----BEGIN ")
        .ok_or_else(|| KeyError::NotPem("no \"-----BEGIN\" line".to_string()))?;
    let block = &text[start..];
    // pem-rfc7468 wants the block alone: cut after the END line.
    let end = block
        .windows(9)
        .position(|w| w == b"-----END ")
        .and_then(|at| block[at + 9..].windows(5).position(|w| w == b"-----").map(|e| at + 9 + e + 5))
        .ok_or_else(|| KeyError::NotPem("no \"-----END\" line".to_string()))?;
    let (label, der) = pem::decode_vec(&block[..end]).map_err(|e| KeyError::NotPem(e.to_string()))?;
    Ok((label.to_string(), der))
}

/// An ECDSA P-256 private key. `Debug` shows only the public key's fingerprint.
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
}

impl PrivateKey {
    /// Reads a private key PEM file. `password` decrypts cosign's encrypted key files (cosign reads
    /// it from `COSIGN_PASSWORD`; an empty password is valid there) and is ignored for plain
    /// PKCS#8 and SEC1 keys.
    pub fn from_pem(pem_text: &[u8], password: &[u8]) -> Result<PrivateKey, KeyError> {
        let (label, der) = first_pem_block(pem_text)?;
        match label.as_str() {
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                let plain = crate::encrypted::open(&der, password)?;
                Self::from_pkcs8_der(&plain)
            }
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                .map(|k| PrivateKey { key: k.into() })
                .map_err(|_| KeyError::NotP256 { found: "an EC PRIVATE KEY block that does not hold a P-256 key (or is malformed)".to_string() }),
            "RSA PRIVATE KEY" => Err(KeyError::NotP256 { found: "an RSA key".to_string() }),
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::UnsupportedPem {
                found: label,
                expected: "a cosign key file (PKCS#8 encrypted with a password by OpenSSL is not read; decrypt it with `openssl pkcs8` or import it with `cosign import-key-pair`)",
            }),
            _ => Err(KeyError::UnsupportedPem { found: label, expected: PRIVATE_LABELS }),
        }
    }

    /// A PKCS#8 DER private key, checked to be P-256 first so that other keys get a clear error.
    fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, KeyError> {
        let info = PrivateKeyInfo::try_from(der)
            .map_err(|e| KeyError::Malformed { what: "PKCS#8 private key", detail: e.to_string() })?;
        let algorithm = info.algorithm.oid.to_string();
        let curve = info.algorithm.parameters_oid().ok().map(|o| o.to_string());
        if algorithm != OID_EC_PUBLIC_KEY || curve.as_deref() != Some(OID_P256) {
            return Err(KeyError::NotP256 { found: describe(&algorithm, curve.as_deref()) });
        }
        let secret = p256::SecretKey::from_pkcs8_der(der)
            .map_err(|e| KeyError::Malformed { what: "PKCS#8 P-256 private key", detail: e.to_string() })?;
        Ok(PrivateKey { key: secret.into() })
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> PrivateKey {
        PrivateKey { key: SigningKey::random(&mut OsRng) }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey { key: *self.key.verifying_key() }
    }

    /// The key as cosign's encrypted key file (`ENCRYPTED SIGSTORE PRIVATE KEY`, scrypt N=32768,
    /// random salt and nonce), which `cosign sign --key` reads with the same password.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let der = self.pkcs8_der()?;
        let body = crate::encrypted::seal(der.as_bytes(), password)?;
        pem::encode_string("ENCRYPTED SIGSTORE PRIVATE KEY", pem::LineEnding::LF, &body)
            .map_err(|e| KeyError::Malformed { what: "PEM output", detail: e.to_string() })
    }

    /// The key as an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let der = self.pkcs8_der()?;
        pem::encode_string("PRIVATE KEY", pem::LineEnding::LF, der.as_bytes())
            .map_err(|e| KeyError::Malformed { what: "PEM output", detail: e.to_string() })
    }

    fn pkcs8_der(&self) -> Result<p256::pkcs8::SecretDocument, KeyError> {
        p256::SecretKey::from(&self.key)
            .to_pkcs8_der()
            .map_err(|e| KeyError::Malformed { what: "PKCS#8 output", detail: e.to_string() })
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_key().fingerprint())
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Reads a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) PEM, as in `cosign.pub`.
    pub fn from_pem(pem_text: &[u8]) -> Result<PublicKey, KeyError> {
        let (label, der) = first_pem_block(pem_text)?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::UnsupportedPem { found: label, expected: "\"PUBLIC KEY\"" });
        }
        let info = SubjectPublicKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| KeyError::Malformed { what: "public key", detail: e.to_string() })?;
        let algorithm = info.algorithm.oid.to_string();
        let curve = info.algorithm.parameters_oid().ok().map(|o| o.to_string());
        if algorithm != OID_EC_PUBLIC_KEY || curve.as_deref() != Some(OID_P256) {
            return Err(KeyError::NotP256 { found: describe(&algorithm, curve.as_deref()) });
        }
        let key = p256::PublicKey::from_public_key_der(&der)
            .map_err(|e| KeyError::Malformed { what: "P-256 public key", detail: e.to_string() })?;
        Ok(PublicKey { key: key.into() })
    }

    /// The key as a `-----BEGIN PUBLIC KEY-----` PEM, the form of `cosign.pub`.
    pub fn to_pem(&self) -> String {
        p256::PublicKey::from(&self.key)
            .to_public_key_pem(LineEnding::LF)
            .expect("encoding a valid P-256 point as SubjectPublicKeyInfo does not fail")
    }

    /// `sha256:<hex>` of the key's SubjectPublicKeyInfo DER: a short name for messages and logs.
    pub fn fingerprint(&self) -> String {
        let der = p256::PublicKey::from(&self.key)
            .to_public_key_der()
            .expect("encoding a valid P-256 point as SubjectPublicKeyInfo does not fail");
        format!("sha256:{:x}", Sha256::digest(der.as_bytes()))
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_pem_round_trip_and_public_key() {
        let key = PrivateKey::generate();
        let pem_text = key.to_pkcs8_pem().unwrap();
        assert!(pem_text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = PrivateKey::from_pem(format!("leading text\n{pem_text}trailing").as_bytes(), b"").unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::from_pem(key.public_key().to_pem().as_bytes()).unwrap();
        assert_eq!(public, key.public_key());
    }

    #[test]
    fn encrypted_round_trip() {
        let key = PrivateKey::generate();
        let pem_text = key.to_encrypted_pem(b"hunter2").unwrap();
        assert!(pem_text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert_eq!(PrivateKey::from_pem(pem_text.as_bytes(), b"hunter2").unwrap().public_key(), key.public_key());
        let err = PrivateKey::from_pem(pem_text.as_bytes(), b"hunter3").unwrap_err();
        assert_eq!(err.to_string(), "wrong password or corrupt key file");
        let old_label = pem_text.replace("SIGSTORE", "COSIGN");
        assert_eq!(PrivateKey::from_pem(old_label.as_bytes(), b"hunter2").unwrap().public_key(), key.public_key());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in
            [&b""[..], b"hello", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", b"-----BEGIN "]
        {
            assert!(PrivateKey::from_pem(input, b"").is_err());
            assert!(PublicKey::from_pem(input).is_err());
        }
        let err =
            PrivateKey::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b"").unwrap_err();
        assert!(err.to_string().contains("unsupported PEM block \"CERTIFICATE\""), "{err}");
    }
}
