//! Why a key could not be read, shared by the PEM and the encrypted-file readers.

/// Why a key could not be read or written. The messages are meant for the person who pointed
/// Ferry at the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The input has no PEM block, or a broken one.
    #[error("not a PEM key file: {0}")]
    NotPem(String),
    /// A PEM block of a kind that is not a key this crate reads.
    #[error("unsupported PEM block \"{found}\": expected {expected}")]
    UnsupportedPem {
        /// The label after `-----BEGIN `.
        found: String,
        /// The labels that would have been accepted.
        expected: &'static str,
    },
    /// A well-formed key of another algorithm or curve.
    #[error("not a P-256 key: found {found}; Ferry signs and verifies with ECDSA P-256 keys only (cosign's default, as made by `cosign generate-key-pair`)")]
    NotP256 {
        /// What the key is, as far as could be told.
        found: String,
    },
    /// The bytes inside the PEM block do not decode.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which structure failed to decode.
        what: &'static str,
        /// The decoder's words.
        detail: String,
    },
    /// Decryption failed: the password is wrong or the file was altered (the two cannot be told
    /// apart, by design of authenticated encryption).
    #[error("wrong password or corrupt key file")]
    WrongPassword,
    /// An encrypted key file using a scheme or parameters cosign does not write.
    #[error("unsupported encrypted key file: {0}")]
    UnsupportedEncryption(String),
}
