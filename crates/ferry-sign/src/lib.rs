//! Cosign-compatible image signatures and SLSA provenance attestations: the formats and the
//! cryptography, with no network and no registry code (callers fetch and push the bytes).
//!
//! Ferry uses this crate to refuse images not signed by configured keys, to sign each promoted
//! digest as `cosign sign --key` would, to attach a provenance attestation that
//! `cosign verify-attestation --key K --type slsaprovenance1` accepts, and for `ferry verify`.
//!
//! # The formats, and where they are specified
//!
//! - **Keys** ([`keys`]): ECDSA P-256 only, cosign's default. Public keys are SubjectPublicKeyInfo
//!   PEM (RFC 5280, RFC 7468). Private keys are PKCS#8 (RFC 5958), SEC1 (RFC 5915), or cosign's
//!   encrypted file: JSON of go-securesystemslib's `encrypted` package (scrypt, RFC 7914, and
//!   NaCl secretbox, <https://nacl.cr.yp.to/secretbox.html>) around a PKCS#8 key, in a PEM block
//!   labelled `ENCRYPTED SIGSTORE PRIVATE KEY` (`ENCRYPTED COSIGN PRIVATE KEY` before).
//! - **Signatures** ([`signer`]): ECDSA over SHA-256 of the payload, ASN.1 DER (SEC 1 §C.8), base64
//!   where stored as text. [`signer::Signer`] is where keyless or KMS signing would plug in.
//! - **Image signature payload** ([`simple_signing`]): containers/image's "simple signing" JSON
//!   (<https://github.com/containers/image/blob/main/docs/containers-signature.5.md>) with
//!   `critical.type` `cosign container image signature`, written byte-for-byte as cosign writes it.
//! - **Where signatures live** ([`signature_image`]): an OCI image manifest
//!   (<https://github.com/opencontainers/image-spec/blob/main/manifest.md>) tagged
//!   `sha256-<hex>.sig` (`.att` for attestations) in the image's repository, one layer per
//!   signature, as described in cosign's `specs/SIGNATURE_SPEC.md`
//!   (<https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md>).
//! - **Attestations** ([`dsse`], [`provenance`]): a DSSE envelope
//!   (<https://github.com/secure-systems-lab/dsse/blob/master/envelope.md>, signed over the PAE of
//!   <https://github.com/secure-systems-lab/dsse/blob/master/protocol.md>) holding an in-toto
//!   Statement v1 (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>) whose
//!   predicate is SLSA Provenance v1 (<https://slsa.dev/spec/v1.0/provenance>).
//! - **Putting it together** ([`verify`]): signing one image, attesting it, and checking one layer
//!   of a `.sig` or `.att` image against trusted keys and the digest being verified.
//!
//! # What "compatible" covers
//!
//! JSON is written as Go's `encoding/json` writes it (field order, sorted maps, Go's escaping), so
//! payloads and manifests are the bytes cosign would produce, and signing is deterministic
//! (RFC 6979): the same key, image and inputs give the same signature and manifest everywhere.
//! Not covered: Rekor transparency-log entries (the `dev.sigstore.cosign/bundle` annotation), so
//! cosign 2.x verifies these signatures only with `--insecure-ignore-tlog=true` (or
//! `--private-infrastructure`); keyless certificates; and the newer Sigstore bundle stored as an
//! OCI referrer rather than under a `.sig` tag, which cosign 3 writes and looks for by default
//! (`--new-bundle-format`; whether cosign 3 falls back to `.sig` tags without
//! `--new-bundle-format=false` has not been checked against a cosign binary).

pub mod dsse;
mod encrypted;
mod gojson;
mod key_error;
pub mod keys;
pub mod provenance;
pub mod referrer;
pub mod signature_image;
pub mod signer;
pub mod simple_signing;
pub mod verify;
