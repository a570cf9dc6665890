//! Registry access: the [`Registry`] trait and its backends.
//!
//! Like `object_store`, there is one small trait and backends side by side:
//! - [`remote::RemoteRegistry`] speaks the plain OCI distribution API over HTTP(S) — no vendor
//!   extension — with docker/podman credentials, bearer/basic challenges, a per-host request budget
//!   and retries that honour `Retry-After`.
//! - [`layout::LayoutRegistry`] stores each repository `NAME` of an `oci:DIR` registry as the OCI
//!   image layout `DIR/NAME`, tags as `org.opencontainers.image.ref.name` annotations, exactly as
//!   `skopeo copy ... oci:DIR/NAME:TAG` does.
//!
//! Every backend passes the same conformance suite (`tests/conformance.rs`).
//!
//! Contract shared by all backends:
//! - Absence is `Ok(None)` / `Ok(false)` / an empty tag list, never an error.
//! - [`Registry::put_manifest`] stores the exact bytes given; the caller guarantees that everything
//!   the manifest references is already present.
//! - [`Registry::put_blob`] checks the bytes against the digest before they become visible; a blob
//!   that does not match is never published.

pub mod auth;
pub mod cache;
mod error;
pub mod graph;
pub mod layout;
pub mod remote;
pub mod snapshot;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_oci::{Descriptor, Digest, Reference, RepoName, Tag};
use futures::stream::BoxStream;

pub use error::RegistryError;

/// The result of a registry operation.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A blob's bytes as they arrive. Consumers verify the digest as they read.
pub type BlobStream = BoxStream<'static, std::io::Result<Bytes>>;

/// A manifest exactly as stored: bytes, media type and the digest of the bytes.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The manifest's media type: as the registry (or layout index) gives it, else as the document says.
    pub media_type: String,
    /// The sha256 of `bytes`.
    pub digest: Digest,
    /// The manifest exactly as the registry holds it, never re-serialised.
    pub bytes: Bytes,
}

impl Manifest {
    /// A manifest of `bytes`, its digest computed from them.
    pub fn new(media_type: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Manifest { media_type: media_type.into(), digest: Digest::of(&bytes), bytes }
    }
}

/// What a HEAD on a manifest tells: its digest, media type and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    /// The manifest's digest, as the registry reports it.
    pub digest: Digest,
    /// The manifest's media type, as the registry reports it.
    pub media_type: String,
    /// The manifest's length in bytes.
    pub size: u64,
}

/// A blob's bytes ready to send, already verified by the caller. Kept in memory or spooled to a
/// file so that a retried upload never has to read the source again.
#[derive(Clone, Debug)]
pub enum BlobData {
    /// The whole blob, held in memory.
    Memory(Bytes),
    /// The blob spooled to a temporary file, removed when the last clone is dropped.
    File(Arc<tempfile::TempPath>),
}

impl BlobData {
    /// The blob's length in bytes; for a spooled blob, read from the file's metadata.
    pub fn len(&self) -> std::io::Result<u64> {
        match self {
            BlobData::Memory(b) => Ok(b.len() as u64),
            BlobData::File(p) => Ok(std::fs::metadata(&**p)?.len()),
        }
    }

    /// `true` for a blob of no bytes.
    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// What a registry said about a manifest it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// It named the digest now stored under the reference (`Docker-Content-Digest` on the
    /// `201 Created`), and that digest is the manifest's; an `oci:` layout wrote it itself.
    Confirmed,
    /// It accepted the manifest without naming a digest: only reading it back tells.
    Unconfirmed,
}

/// One registry: a remote host (with an optional path prefix) or an `oci:` directory.
/// Repository names passed in are relative to the registry's prefix.
#[async_trait]
pub trait Registry: Send + Sync + fmt::Debug {
    /// How the registry is shown to users: `host[:port]/prefix` or `oci:DIR`.
    fn name(&self) -> &str;

    /// Every repository under the registry's prefix, named relative to it, sorted and without
    /// duplicates: the catalog (`/v2/_catalog`, following pagination) of a remote registry, the
    /// layouts (directories holding an `oci-layout` file) under an `oci:` directory. Empty when
    /// there are none. A name that is not a valid repository name is skipped. A remote registry
    /// that offers no catalog (404) is an error, not an empty registry.
    async fn list_repositories(&self) -> Result<Vec<RepoName>>;

    /// All tags of `repo`, following pagination; empty when the repository does not exist.
    async fn list_tags(&self, repo: &RepoName) -> Result<Vec<Tag>>;

    /// Digest, media type and size of a manifest, or `None` when absent.
    async fn head_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<ManifestHead>>;

    /// The manifest's exact bytes, or `None` when absent. When `reference` is a digest the bytes
    /// are verified against it.
    async fn get_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Manifest>>;

    /// Store `manifest` byte-for-byte under `reference` (its digest, or a tag). A registry that
    /// names a different digest for what it stored is an error ([`RegistryError::DigestMismatch`]).
    async fn put_manifest(&self, repo: &RepoName, reference: &Reference, manifest: &Manifest) -> Result<Stored>;

    /// Whether the blob `digest` is present in `repo`.
    async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;

    /// Stream a blob's bytes. Errors with [`RegistryError::NotFound`] when absent.
    async fn get_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobStream>;

    /// Upload a blob. The backend re-checks the digest before publishing it.
    async fn put_blob(&self, repo: &RepoName, digest: &Digest, data: &BlobData) -> Result<()>;

    /// Make a blob already in `from` (same registry) present in `repo` without uploading it.
    /// `Ok(false)` when the registry declined; the caller then uploads.
    async fn mount_blob(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool>;

    /// Manifests whose `subject` is `digest`, from the OCI 1.1 referrers API; `None` when the
    /// registry does not offer that API (callers then look for the `sha256-<hex>` fallback tag).
    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Vec<Descriptor>>>;
}

/// Open the registry at `address`: a remote one through `client` (shared by all remote
/// registries of a run), or an `oci:` layout directory.
pub fn open(address: &ferry_oci::RegistryAddress, client: &Arc<remote::RemoteClient>) -> Arc<dyn Registry> {
    match address {
        ferry_oci::RegistryAddress::Remote { host, prefix } => Arc::new(client.registry(host, prefix.clone())),
        ferry_oci::RegistryAddress::Layout { dir } => Arc::new(layout::LayoutRegistry::new(dir)),
    }
}
