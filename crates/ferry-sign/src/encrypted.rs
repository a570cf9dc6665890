//! The body of cosign's encrypted private key file (`ENCRYPTED SIGSTORE PRIVATE KEY`, formerly
//! `ENCRYPTED COSIGN PRIVATE KEY`), the format of go-securesystemslib's `encrypted` package:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<base64 32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64 24 bytes>"},
//!  "ciphertext":"<base64: 16-byte Poly1305 tag, then the encrypted PKCS#8 DER key>"}
//! ```
//!
//! The 32-byte secretbox key is scrypt(password, salt, N, r, p). Only the three scrypt settings
//! go-securesystemslib itself writes and accepts are accepted here: a file is attacker-controlled
//! input, and unbounded N or r would let it make us allocate and compute without limit.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::key_error::KeyError;

/// (N, r, p) that go-securesystemslib names Legacy, Standard and OWASP; cosign writes Legacy.
const ACCEPTED_SCRYPT: [(u64, u32, u32); 3] = [(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)];
const WRITTEN_SCRYPT: (u64, u32, u32) = ACCEPTED_SCRYPT[0];
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn unsupported(what: impl Into<String>) -> KeyError {
    KeyError::UnsupportedEncryption(what.into())
}

fn derive_key(password: &[u8], salt: &[u8], (n, r, p): (u64, u32, u32)) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 32)
        .map_err(|e| unsupported(format!("scrypt parameters N={n} r={r} p={p}: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut_slice())
        .map_err(|e| unsupported(format!("scrypt output length: {e}")))?;
    Ok(key)
}

/// Decrypts the JSON body of an encrypted key file; the result is the plaintext (a PKCS#8 DER key
/// for cosign's files).
pub(crate) fn open(body: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let sealed: Sealed = serde_json::from_slice(body)
        .map_err(|e| KeyError::Malformed { what: "encrypted key file", detail: e.to_string() })?;
    if sealed.kdf.name != "scrypt" {
        return Err(unsupported(format!("key derivation {:?} (only scrypt is supported)", sealed.kdf.name)));
    }
    if sealed.cipher.name != "nacl/secretbox" {
        return Err(unsupported(format!("cipher {:?} (only nacl/secretbox is supported)", sealed.cipher.name)));
    }
    let ScryptParams { n, r, p } = sealed.kdf.params;
    if !ACCEPTED_SCRYPT.contains(&(n, r, p)) {
        return Err(unsupported(format!(
            "scrypt parameters N={n} r={r} p={p} (cosign and go-securesystemslib use N=32768, 65536 or 131072 with r=8, p=1)"
        )));
    }
    let decode = |field: &'static str, text: &str| {
        STANDARD
            .decode(text)
            .map_err(|e| KeyError::Malformed { what: "encrypted key file", detail: format!("{field}: {e}") })
    };
    let salt = decode("kdf.salt", &sealed.kdf.salt)?;
    let nonce = decode("cipher.nonce", &sealed.cipher.nonce)?;
    let ciphertext = decode("ciphertext", &sealed.ciphertext)?;
    if nonce.len() != NONCE_LEN {
        return Err(KeyError::Malformed {
            what: "encrypted key file",
            detail: format!("the nonce is {} bytes, not {NONCE_LEN}", nonce.len()),
        });
    }
    let key = derive_key(password, &salt, (n, r, p))?;
    let cipher = XSalsa20Poly1305::new(key.as_slice().into());
    // A wrong password and a flipped byte look the same to an authenticated cipher.
    let plain = cipher.decrypt(nonce.as_slice().into(), ciphertext.as_slice()).map_err(|_| KeyError::WrongPassword)?;
    Ok(Zeroizing::new(plain))
}

/// Encrypts `plaintext` the way cosign does (scrypt N=32768 r=8 p=1, random salt and nonce) and
/// returns the JSON body, with Go's field order.
pub(crate) fn seal(plaintext: &[u8], password: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let key = derive_key(password, &salt, WRITTEN_SCRYPT)?;
    let cipher = XSalsa20Poly1305::new(key.as_slice().into());
    let ciphertext = cipher
        .encrypt(nonce.as_slice().into(), plaintext)
        .map_err(|_| unsupported("the cipher refused to encrypt the key"))?;
    let (n, r, p) = WRITTEN_SCRYPT;
    let sealed = Sealed {
        kdf: Kdf { name: "scrypt".into(), params: ScryptParams { n, r, p }, salt: STANDARD.encode(salt) },
        cipher: Cipher { name: "nacl/secretbox".into(), nonce: STANDARD.encode(nonce) },
        ciphertext: STANDARD.encode(ciphertext),
    };
    Ok(crate::gojson::to_vec(&sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector written by go-securesystemslib's own Go code (its `encrypted_test.go`,
    /// `TestDecrypt`): an independent implementation of scrypt + NaCl secretbox.
    const GO_VECTOR: &str = r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}"#;

    #[test]
    fn opens_go_securesystemslib_vector() {
        let plain = open(GO_VECTOR.as_bytes(), b"supersecret").unwrap();
        assert_eq!(plain.as_slice(), b"reallyimportant");
    }

    #[test]
    fn wrong_password_is_reported_as_such() {
        let err = open(GO_VECTOR.as_bytes(), b"supersecreT").unwrap_err();
        assert!(matches!(err, KeyError::WrongPassword), "{err}");
        assert_eq!(err.to_string(), "wrong password or corrupt key file");
    }

    #[test]
    fn seal_then_open() {
        let body = seal(b"secret key bytes", b"pw").unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.starts_with(r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":""#), "{text}");
        assert_eq!(open(&body, b"pw").unwrap().as_slice(), b"secret key bytes");
    }

    #[test]
    fn refuses_unbounded_scrypt_parameters() {
        let body = GO_VECTOR.replace(r#""N":32768"#, r#""N":1073741824"#);
        let err = open(body.as_bytes(), b"supersecret").unwrap_err();
        assert!(err.to_string().contains("scrypt parameters N=1073741824"), "{err}");
    }
}
