//! Object stores for Ferry: S3, Google Cloud Storage, Azure Blob and local folders, each opened
//! from a URL with the cloud's standard credentials ([`Store::open`]), every object addressed by
//! a checked [`ObjectName`] relative to the store's base.
//!
//! Writes go through [`Upload`], which makes nothing visible until committed, and
//! [`fan_out`] reads a source once, hashes it, streams it to every destination and commits them
//! only when the hash is the expected one; [`copy_object`] does the same from a store's object,
//! on one or two threads with no per-chunk hand-offs when every store involved is a local folder.
//! Backends come from the `object_store` crate; this crate adds the naming rules, the verified
//! commit and the fast local paths.

mod fan_out;
mod inventory;
mod name;
mod store;
mod upload;

pub use fan_out::{copy_object, fan_out, verify_object, FanOut, SourceError};
pub use inventory::{Inventory, InventoryError};
pub use name::{NameError, ObjectName};
pub use store::{Backend, ByteStream, ObjectInfo, Store, SHA256_METADATA};
pub use upload::{Upload, PARTS_IN_FLIGHT};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("store {url}: {message}")]
    Url { url: String, message: String },
    /// `message` carries the backend's own error text (status, code) for the report.
    #[error("{store} {name}: {message}")]
    Object { store: String, name: String, message: String },
    #[error("not committed: {0}")]
    NotCommitted(String),
}
