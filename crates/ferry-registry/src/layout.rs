//! `oci:DIR` registries: each repository `NAME` is the OCI image layout `DIR/NAME`.
//!
//! The layout is the one `skopeo copy ... oci:DIR/NAME:TAG` writes and reads:
//! `oci-layout`, `index.json` and `blobs/sha256/<hex>`. A tag is an `index.json` entry annotated
//! with `org.opencontainers.image.ref.name`. Manifests are blobs too, so "present by digest" means
//! "the blob file exists".
//!
//! Writes never leave anything half-written: blobs are written to a temporary file in the blob
//! directory, hashed, and renamed into place only when the hash matches; `index.json` is rewritten
//! through a temporary file and a rename, under a per-repository lock. A run killed mid-write
//! leaves its temporary file behind; the first write of a later run to the layout removes those
//! dated (more than 2 s) before that run started: a newer one may be another run's, still being
//! written.
//!
//! `index.json` lists roots: a manifest put by digest gets an untagged entry so that it can be
//! found, and that entry is dropped once an index that lists it as a child is added (so a
//! multi-arch image looks exactly as skopeo leaves it: one entry, for the index).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_oci::{media_types, Descriptor, Digest, ManifestRefs, Reference, RepoName, Sha256Verifier, Tag};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::{BlobData, BlobStream, Manifest, ManifestHead, Registry, RegistryError, Result, Stored};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// How every temporary file Ferry writes in a layout is named (then a random suffix), and nothing
/// else is: a later run removes exactly these.
const TEMP_PREFIX: &str = ".ferry-tmp-";
/// Temporary files dated less than this before a run's start are spared: some filesystems keep
/// coarse times (FAT: 2 s), so a file created just after the start can be dated before it.
const TIMESTAMP_MARGIN: Duration = Duration::from_secs(2);

/// An `oci:DIR` registry. One is opened per run: its creation is the run's start.
#[derive(Debug)]
pub struct LayoutRegistry {
    name: String,
    root: PathBuf,
    index_locks: Mutex<HashMap<RepoName, Arc<tokio::sync::Mutex<()>>>>,
    started: SystemTime,
    /// Repositories written to, whose earlier runs' temporary files are already removed.
    cleaned: Mutex<HashSet<RepoName>>,
}

impl LayoutRegistry {
    /// The registry whose repositories are layouts under `root`; nothing is read or created yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        LayoutRegistry {
            name: format!("oci:{}", root.display()),
            root,
            index_locks: Mutex::default(),
            started: SystemTime::now(),
            cleaned: Mutex::default(),
        }
    }

    fn repo_dir(&self, repo: &RepoName) -> PathBuf {
        // RepoName's grammar has no `..`, empty or absolute segments: it cannot climb out of root.
        self.root.join(repo.as_str())
    }

    fn blob_path(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo).join("blobs/sha256").join(digest.hex())
    }

    fn io_err(&self, path: &Path, source: std::io::Error) -> RegistryError {
        RegistryError::Io { registry: self.name.clone(), path: path.display().to_string(), source }
    }

    fn index_lock(&self, repo: &RepoName) -> Arc<tokio::sync::Mutex<()>> {
        self.index_locks.lock().unwrap().entry(repo.clone()).or_default().clone()
    }

    /// Before the first write of this run to `repo`: remove the temporary files that runs killed
    /// before this one started left there. Best effort: a file that cannot be removed is only
    /// untidy, so it is reported and the write goes on.
    async fn remove_stale_temp_files(&self, repo: &RepoName) {
        if !self.cleaned.lock().unwrap().insert(repo.clone()) {
            return;
        }
        let repo_dir = self.repo_dir(repo);
        let before = self.started - TIMESTAMP_MARGIN;
        let failures = tokio::task::spawn_blocking(move || {
            let dirs = [repo_dir.join("blobs/sha256"), repo_dir];
            dirs.iter().flat_map(|dir| remove_temp_files_older_than(dir, before)).collect::<Vec<_>>()
        })
        .await
        .expect("blocking task");
        for (path, error) in failures {
            tracing::warn!(registry = %self.name, path = %path.display(), %error, "cannot remove a temporary file an earlier run left");
        }
    }

    /// The entries of `index.json`; empty when the layout does not exist.
    async fn read_index(&self, repo: &RepoName) -> Result<Vec<Value>> {
        let path = self.repo_dir(repo).join("index.json");
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_err(&path, e)),
        };
        let index: Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            registry: self.name.clone(),
            message: format!("{}: not a valid index.json: {e}", path.display()),
        })?;
        Ok(index.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    async fn write_index(&self, repo: &RepoName, entries: Vec<Value>) -> Result<()> {
        let dir = self.repo_dir(repo);
        let index = json!({"schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": entries});
        let bytes = serde_json::to_vec(&index).expect("JSON values serialise");
        let path = dir.join("index.json");
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes))
            .await
            .expect("blocking task")
            .map_err(|(p, e)| self.io_err(&p, e))
    }

    fn entry_descriptor(&self, entry: &Value) -> Result<Descriptor> {
        serde_json::from_value(entry.clone()).map_err(|e| RegistryError::Invalid {
            registry: self.name.clone(),
            message: format!("index.json entry {entry}: {e}"),
        })
    }

    async fn read_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Bytes>> {
        let path = self.blob_path(repo, digest);
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err(&path, e)),
        }
    }

    /// Write `data` as blob `digest` unless present; the file appears only if the bytes match.
    async fn write_blob(&self, repo: &RepoName, digest: &Digest, data: BlobData) -> Result<()> {
        self.remove_stale_temp_files(repo).await;
        let target = self.blob_path(repo, digest);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            return Ok(());
        }
        let repo_dir = self.repo_dir(repo);
        let digest = digest.clone();
        let registry = self.name.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let io = |p: &Path, e: std::io::Error| RegistryError::Io {
                registry: registry.clone(),
                path: p.display().to_string(),
                source: e,
            };
            ensure_layout(&repo_dir).map_err(|(p, e)| io(&p, e))?;
            let dir = target.parent().expect("blob path has a parent");
            let mut tmp = temp_file_in(dir).map_err(|e| io(dir, e))?;
            let mut verifier = Sha256Verifier::new(digest.clone());
            match &data {
                BlobData::Memory(bytes) => {
                    verifier.update(bytes);
                    tmp.write_all(bytes).map_err(|e| io(tmp.path(), e))?;
                }
                BlobData::File(path) => {
                    let mut src = std::fs::File::open(&***path).map_err(|e| io(path, e))?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = src.read(&mut buf).map_err(|e| io(path, e))?;
                        if n == 0 {
                            break;
                        }
                        verifier.update(&buf[..n]);
                        tmp.write_all(&buf[..n]).map_err(|e| io(tmp.path(), e))?;
                    }
                }
            }
            if let Err(actual) = verifier.finish() {
                return Err(RegistryError::DigestMismatch {
                    registry,
                    what: format!("blob upload {digest}"),
                    expected: digest,
                    actual,
                });
            }
            tmp.persist(&target).map_err(|e| io(&target, e.error))?;
            Ok(())
        })
        .await
        .expect("blocking task")
    }
}

/// Create `oci-layout` and `blobs/sha256` if missing.
fn ensure_layout(repo_dir: &Path) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    let blobs = repo_dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| (blobs, e))?;
    let marker = repo_dir.join("oci-layout");
    if !marker.exists() {
        write_atomically(repo_dir, &marker, OCI_LAYOUT.as_bytes())?;
    }
    Ok(())
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    let err = |e| (path.to_path_buf(), e);
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = temp_file_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// A temporary file in `dir`, named so that a later run can tell it is Ferry's.
fn temp_file_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir)
}

/// Remove Ferry's temporary files in `dir` last modified before `before`; what could not be.
fn remove_temp_files_older_than(dir: &Path, before: SystemTime) -> Vec<(PathBuf, std::io::Error)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![(dir.to_path_buf(), e)],
    };
    let mut failures = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                failures.push((dir.to_path_buf(), e));
                continue;
            }
        };
        if !entry.file_name().as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
            continue;
        }
        let path = entry.path();
        // The entry's own metadata: a symbolic link is never followed.
        let removed = match entry.metadata().and_then(|m| Ok(m.is_file() && m.modified()? < before)) {
            Ok(true) => std::fs::remove_file(&path),
            Ok(false) => continue,
            Err(e) => Err(e),
        };
        match removed {
            // Another run may have removed it first.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => failures.push((path, e)),
            _ => {}
        }
    }
    failures
}

/// The layouts under `root` (directories holding an `oci-layout` file, `root` itself excepted),
/// named by their path relative to `root`; those whose path is not a repository name are skipped.
/// Symlinked directories are not followed; a missing `root` holds none.
fn find_layouts(root: &Path) -> std::result::Result<Vec<RepoName>, (PathBuf, std::io::Error)> {
    let mut repos = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => return Ok(repos),
            Err(e) => return Err((dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| (dir.clone(), e))?;
            let file_type = entry.file_type().map_err(|e| (entry.path(), e))?;
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if entry.file_name() == "oci-layout" && dir != root {
                let name = dir.strip_prefix(root).ok().and_then(|p| p.to_str()).map(|p| p.replace('\\', "/"));
                if let Some(repo) = name.and_then(|n| n.parse::<RepoName>().ok()) {
                    repos.push(repo);
                }
            }
        }
    }
    Ok(repos)
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME)?.as_str()
}

fn entry_digest(entry: &Value) -> Option<&str> {
    entry.get("digest")?.as_str()
}

#[async_trait]
impl Registry for LayoutRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_repositories(&self) -> Result<Vec<RepoName>> {
        let root = self.root.clone();
        let found = tokio::task::spawn_blocking(move || find_layouts(&root)).await.expect("blocking task");
        let mut repos = found.map_err(|(p, e)| self.io_err(&p, e))?;
        repos.sort();
        repos.dedup();
        Ok(repos)
    }

    async fn list_tags(&self, repo: &RepoName) -> Result<Vec<Tag>> {
        let mut tags: Vec<Tag> =
            self.read_index(repo).await?.iter().filter_map(|e| ref_name(e)?.parse().ok()).collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    async fn head_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<ManifestHead>> {
        Ok(self.get_manifest(repo, reference).await?.map(|m| ManifestHead {
            size: m.bytes.len() as u64,
            digest: m.digest,
            media_type: m.media_type,
        }))
    }

    async fn get_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Manifest>> {
        let entries = self.read_index(repo).await?;
        let (digest, listed_type) = match reference {
            Reference::Tag(tag) => {
                let Some(entry) = entries.iter().rev().find(|e| ref_name(e) == Some(tag.as_str())) else {
                    return Ok(None);
                };
                let d = self.entry_descriptor(entry)?;
                (d.digest, Some(d.media_type))
            }
            Reference::Digest(d) => {
                let listed = entries.iter().find(|e| entry_digest(e) == Some(d.as_str()));
                (d.clone(), listed.and_then(|e| e.get("mediaType")?.as_str().map(str::to_string)))
            }
        };
        let Some(bytes) = self.read_blob(repo, &digest).await? else {
            return Ok(None);
        };
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.name.clone(),
                what: format!("{repo}@{digest} on disk"),
                expected: digest,
                actual,
            });
        }
        let media_type = match listed_type.filter(|t| !t.is_empty()) {
            Some(t) => t,
            None => {
                ManifestRefs::parse(&digest, &bytes, None)
                    .map_err(|e| RegistryError::Invalid { registry: self.name.clone(), message: e.to_string() })?
                    .media_type
            }
        };
        Ok(Some(Manifest { media_type, digest, bytes }))
    }

    async fn put_manifest(&self, repo: &RepoName, reference: &Reference, manifest: &Manifest) -> Result<Stored> {
        self.write_blob(repo, &manifest.digest, BlobData::Memory(manifest.bytes.clone())).await?;
        let lock = self.index_lock(repo);
        let _guard = lock.lock().await;
        let mut entries = self.read_index(repo).await?;
        let mut entry = json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.bytes.len(),
        });
        match reference {
            Reference::Tag(tag) => {
                // The tag replaces any untagged entry for the same digest: one entry per image.
                entries.retain(|e| match ref_name(e) {
                    Some(name) => name != tag.as_str(),
                    None => entry_digest(e) != Some(manifest.digest.as_str()),
                });
                entry["annotations"] = json!({ REF_NAME: tag.as_str() });
            }
            Reference::Digest(_) => {
                if entries.iter().any(|e| entry_digest(e) == Some(manifest.digest.as_str())) {
                    return Ok(Stored::Confirmed);
                }
            }
        }
        if media_types::is_index(&manifest.media_type) {
            if let Ok(refs) = ManifestRefs::parse(&manifest.digest, &manifest.bytes, Some(&manifest.media_type)) {
                entries.retain(|e| {
                    ref_name(e).is_some() || !refs.manifests.iter().any(|c| entry_digest(e) == Some(c.digest.as_str()))
                });
            }
        }
        entries.push(entry);
        self.write_index(repo, entries).await?;
        Ok(Stored::Confirmed)
    }

    async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.blob_path(repo, digest)).await.unwrap_or(false))
    }

    async fn get_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobStream> {
        let path = self.blob_path(repo, digest);
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).boxed()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RegistryError::NotFound { registry: self.name.clone(), what: format!("blob {repo}@{digest}") })
            }
            Err(e) => Err(self.io_err(&path, e)),
        }
    }

    async fn put_blob(&self, repo: &RepoName, digest: &Digest, data: &BlobData) -> Result<()> {
        self.write_blob(repo, digest, data.clone()).await
    }

    async fn mount_blob(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        self.remove_stale_temp_files(repo).await;
        let source = self.blob_path(from, digest);
        let target = self.blob_path(repo, digest);
        let repo_dir = self.repo_dir(repo);
        // Blobs are immutable once named by their digest, so a hard link is a safe, free copy.
        Ok(tokio::task::spawn_blocking(move || {
            ensure_layout(&repo_dir).is_ok() && (target.exists() || std::fs::hard_link(&source, &target).is_ok())
        })
        .await
        .expect("blocking task"))
    }

    /// A layout has no API, but holds its referrers: every manifest of `index.json` whose
    /// `subject` is `digest`, each with its `artifactType` (else its config's media type, as the
    /// distribution spec answers).
    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        let mut referrers = Vec::new();
        for entry in self.read_index(repo).await? {
            let descriptor = self.entry_descriptor(&entry)?;
            if media_types::is_index(&descriptor.media_type) {
                continue;
            }
            let Some(bytes) = self.read_blob(repo, &descriptor.digest).await? else { continue };
            let Ok(refs) = ManifestRefs::parse(&descriptor.digest, &bytes, Some(&descriptor.media_type)) else {
                continue;
            };
            if refs.subject.as_ref().is_some_and(|s| s.digest == *digest) {
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Typed {
                    artifact_type: Option<String>,
                    config: Option<Descriptor>,
                }
                let typed: Option<Typed> = serde_json::from_slice(&bytes).ok();
                let artifact_type = typed.and_then(|t| t.artifact_type.or(t.config.map(|c| c.media_type)));
                referrers.push(Descriptor { artifact_type, ..descriptor });
            }
        }
        Ok(Some(referrers))
    }
}
