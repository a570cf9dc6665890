//! The OCI vocabulary shared by every Ferry crate.
//!
//! Validated newtypes ([`Digest`], [`Tag`], [`RepoName`]) mean the rest of the code never handles an
//! unchecked string that will later become a URL path or a file name, and [`ManifestRefs`] extracts
//! what a manifest points at without re-serialising it: manifests are always kept and copied as the
//! exact bytes the registry served, because their digest is the hash of those bytes.

mod address;
mod digest;
mod manifest;
mod names;

pub use address::{is_loopback_host, AddressError, RegistryAddress};
pub use digest::{Digest, DigestError, Sha256Verifier};
pub use manifest::{media_types, Descriptor, ManifestError, ManifestRefs};
pub use names::{NameError, Reference, RepoName, Tag};
