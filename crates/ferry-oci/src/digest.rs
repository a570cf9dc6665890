use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A content digest, `sha256:<64 lowercase hex>`. Only sha256 is accepted: it is what every
/// registry and kpromo manifest uses, and refusing the rest keeps path building trivially safe.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// Text that is not `sha256:` followed by 64 lowercase hex characters; holds the text given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {0:?}: expected \"sha256:\" followed by 64 lowercase hex characters")]
pub struct DigestError(pub String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{:x}", Sha256::digest(bytes)))
    }

    /// The 64 hex characters after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// The whole digest, `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag cosign and the OCI referrers fallback use for artefacts about this digest:
    /// `sha256-<hex>` (followed by `.sig`, `.att`, `.sbom`, or nothing for the referrers index).
    pub fn tag_prefix(&self) -> String {
        format!("sha256-{}", self.hex())
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| DigestError(s.to_string()))?;
        // Every byte is tested, with no early exit, so the compiler checks many at a time (the
        // redirector parses a digest per request).
        let lower_hex = |b: u8| b.is_ascii_digit() | (b'a'..=b'f').contains(&b);
        if hex.len() == 64 && hex.bytes().fold(true, |all, b| all & lower_hex(b)) {
            Ok(Digest(s.to_string()))
        } else {
            Err(DigestError(s.to_string()))
        }
    }
}

string_newtype!(Digest, DigestError);

/// Hashes bytes as they stream past and says at the end whether they were the expected ones.
pub struct Sha256Verifier {
    expected: Digest,
    hasher: Sha256,
    len: u64,
}

impl Sha256Verifier {
    /// A verifier expecting bytes whose digest is `expected`, with nothing seen yet.
    pub fn new(expected: Digest) -> Self {
        Sha256Verifier { expected, hasher: Sha256::new(), len: 0 }
    }

    /// Hashes the next `chunk` of the stream.
    pub fn update(&mut self, chunk: &[u8]) {
        self.len += chunk.len() as u64;
        self.hasher.update(chunk);
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` while no byte has been seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `Ok(())` when the bytes seen hash to the expected digest, else the digest they do have.
    pub fn finish(self) -> Result<(), Digest> {
        let actual = Digest(format!("sha256:{:x}", self.hasher.finalize()));
        if actual == self.expected {
            Ok(())
        } else {
            Err(actual)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(good.parse::<Digest>().unwrap().hex(), "a".repeat(64));
        for bad in [
            "sha256:".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}/..", "a".repeat(61)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_byte_at_every_position_of_the_hex() {
        for b in 0..=u8::MAX {
            let hex_digit = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            for at in 0..64 {
                let mut hex = vec![b'0'; 64];
                hex[at] = b;
                let Ok(hex) = String::from_utf8(hex) else { continue };
                assert_eq!(format!("sha256:{hex}").parse::<Digest>().is_ok(), hex_digit, "{b:#04x} at {at}");
            }
        }
    }

    #[test]
    fn verifier_detects_mismatch() {
        let d = Digest::of(b"hello");
        let mut v = Sha256Verifier::new(d.clone());
        v.update(b"hel");
        v.update(b"lo");
        assert!(v.finish().is_ok());
        let mut v = Sha256Verifier::new(d);
        v.update(b"jello");
        assert_eq!(v.finish().unwrap_err(), Digest::of(b"jello"));
    }
}
