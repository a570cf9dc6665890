//! A wrapper that remembers manifests fetched by digest for the life of a run.
//!
//! A manifest named by its digest never changes, so once fetched it can be served again without
//! asking: planning asks "is digest D there?" and copying then needs D's bytes, and with this
//! wrapper the registry is asked once (a GET) instead of twice (a HEAD, then a GET). Absence is
//! not remembered: it can change during a run (Ferry itself pushes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_oci::{Descriptor, Digest, Reference, RepoName, Tag};

use crate::{BlobData, BlobStream, Manifest, ManifestHead, Registry, Result, Stored};

/// A [`Registry`] that passes everything to `inner` but keeps each manifest it GETs by digest,
/// answering later HEADs and GETs of that digest in the same repository from memory.
#[derive(Debug)]
pub struct ManifestCache {
    inner: Arc<dyn Registry>,
    by_digest: Mutex<HashMap<(RepoName, Digest), Manifest>>,
}

impl ManifestCache {
    /// Wraps `inner`, remembering nothing yet.
    pub fn new(inner: Arc<dyn Registry>) -> Self {
        ManifestCache { inner, by_digest: Mutex::default() }
    }

    fn cached(&self, repo: &RepoName, digest: &Digest) -> Option<Manifest> {
        self.by_digest.lock().unwrap().get(&(repo.clone(), digest.clone())).cloned()
    }
}

#[async_trait]
impl Registry for ManifestCache {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn list_repositories(&self) -> Result<Vec<RepoName>> {
        self.inner.list_repositories().await
    }

    async fn list_tags(&self, repo: &RepoName) -> Result<Vec<Tag>> {
        self.inner.list_tags(repo).await
    }

    async fn head_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<ManifestHead>> {
        match reference {
            Reference::Digest(_) => Ok(self.get_manifest(repo, reference).await?.map(|m| ManifestHead {
                size: m.bytes.len() as u64,
                digest: m.digest,
                media_type: m.media_type,
            })),
            Reference::Tag(_) => self.inner.head_manifest(repo, reference).await,
        }
    }

    async fn get_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Manifest>> {
        let Reference::Digest(digest) = reference else {
            return self.inner.get_manifest(repo, reference).await;
        };
        if let Some(hit) = self.cached(repo, digest) {
            return Ok(Some(hit));
        }
        let found = self.inner.get_manifest(repo, reference).await?;
        if let Some(manifest) = &found {
            self.by_digest.lock().unwrap().insert((repo.clone(), digest.clone()), manifest.clone());
        }
        Ok(found)
    }

    async fn put_manifest(&self, repo: &RepoName, reference: &Reference, manifest: &Manifest) -> Result<Stored> {
        self.inner.put_manifest(repo, reference, manifest).await
    }

    async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.inner.has_blob(repo, digest).await
    }

    async fn get_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobStream> {
        self.inner.get_blob(repo, digest).await
    }

    async fn put_blob(&self, repo: &RepoName, digest: &Digest, data: &BlobData) -> Result<()> {
        self.inner.put_blob(repo, digest, data).await
    }

    async fn mount_blob(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        self.inner.mount_blob(repo, digest, from).await
    }

    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        self.inner.referrers(repo, digest).await
    }
}
