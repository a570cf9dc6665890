//! Object stores for Ferry: S3, Google Cloud Storage, Azure Blob and local folders, each opened
//! from a URL with the cloud's standard credentials, resolved when the store is opened
//! ([`Store::open`]), every object addressed by a checked [`ObjectName`] relative to the store's
//! base.
//!
//! Writes go through [`Upload`], which makes nothing visible until committed, and
//! [`fan_out`] reads a source once, hashes it, streams it to every destination and commits them
//! only when the hash is the expected one; [`copy_object`] does the same from a store's object,
//! on one or two threads with no per-chunk hand-offs when every store involved is a local folder.
//! Backends come from the `object_store` crate; this crate adds the naming rules, the verified
//! commit and the fast local paths.

mod credentials;
mod fan_out;
pub mod inventory;
mod metadata;
mod name;
mod store;
mod upload;

pub use fan_out::{copy_object, fan_out, verify_object, FanOut, SourceError};
pub use inventory::{Inventory, InventoryError};
pub use name::{object_url, ObjectName, ObjectNameError};
pub use store::{Backend, ByteStream, ObjectInfo, Store, SHA256_METADATA};
pub use upload::{Upload, PARTS_IN_FLIGHT};

/// Why a store could not be opened, or an object in it read or written.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store could not be opened: a bad URL, an unknown setting or no credentials.
    #[error("store {url}: {message}")]
    Url {
        /// The URL or path as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// `message` carries the backend's own error text (status, code) for the report.
    #[error("{}: {message}", object_url(store, name))]
    Object {
        /// The store's URL or path.
        store: String,
        /// The object's name, relative to the store's base.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// An upload left uncommitted because its source failed or did not verify (the reason).
    #[error("not committed: {0}")]
    NotCommitted(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object prints as its URL, exactly: the store's base and the name joined by one `/`.
    #[test]
    fn an_object_error_names_the_object_by_its_url() {
        let error = |store: &str, name: &str| {
            StoreError::Object { store: store.into(), name: name.into(), message: "403 Forbidden".into() }.to_string()
        };
        let expected = "gs://bucket/binaries/kops/1.16.0/linux/amd64/kops: 403 Forbidden";
        assert_eq!(error("gs://bucket/binaries/kops/", "1.16.0/linux/amd64/kops"), expected);
        assert_eq!(error("gs://bucket/binaries/kops", "1.16.0/linux/amd64/kops"), expected);
        assert_eq!(error("/srv/prod", "sha256:ab"), "/srv/prod/sha256:ab: 403 Forbidden");
    }
}
