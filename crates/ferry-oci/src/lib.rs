//! The vocabulary shared by every Ferry crate: OCI names and digests, and the names of objects
//! in stores.
//!
//! Validated newtypes ([`Digest`], [`Tag`], [`RepoName`]) mean the rest of the code never handles an
//! unchecked string that will later become a URL path or a file name, and [`ManifestRefs`] extracts
//! what a manifest points at without re-serialising it: manifests are always kept and copied as the
//! exact bytes the registry served, because their digest is the hash of those bytes.

/// The conversions every validated string newtype shares: `TryFrom<String>` (through `FromStr`, so
/// serde validates while deserialising), back to `String`, and `Display`/`Debug` as the bare string.
macro_rules! string_newtype {
    ($name:ident, $error:ty) => {
        impl TryFrom<String> for $name {
            type Error = $error;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

mod address;
mod digest;
mod file_path;
mod manifest;
mod names;
mod object_name;

pub use address::{is_loopback_host, AddressError, RegistryAddress};
pub use digest::{Digest, DigestError, Sha256Verifier};
pub use file_path::{FilePath, MAX_PATH};
pub use manifest::{media_types, Descriptor, ManifestError, ManifestRefs};
pub use names::{NameError, Reference, RepoName, Tag};
pub use object_name::{ObjectName, ObjectNameError};
