//! `Upload`: a write that becomes visible only when committed.
//!
//! For a cloud store, bytes are buffered up to one part. An object that fits in one part is
//! written with a single atomic PUT at commit time; a larger one becomes a multipart upload whose
//! parts are sent in the background (at most [`PARTS_IN_FLIGHT`] at a time, so memory stays
//! bounded) and which is completed only at commit. For a local folder each chunk goes straight
//! to a staging file beside the target, one write in flight (overlapping the caller's next read),
//! and the file is renamed onto the target at commit. Either way nothing exists under the name
//! until [`Upload::commit`], and [`Upload::abort`] (or dropping an uncommitted upload) leaves
//! nothing: not the staging file, nor a directory created for it. A process killed mid-write
//! cannot clean up: its staging file stays (under a `#` name no listing shows) until the next
//! write of the same target commits and removes the older staging files it stepped over.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use object_store::{Attribute, Attributes, MultipartUpload, PutMultipartOptions, PutOptions, PutPayload};
use tokio::task::JoinHandle;

use crate::name::ObjectName;
use crate::store::{Backend, Store, SHA256_METADATA};
use crate::StoreError;

/// Part size: S3's minimum is 5 MiB (except the last part). Local folders do not use parts.
pub(crate) const PART_SIZE: usize = 8 << 20;

/// Parts uploading at once, per upload.
pub const PARTS_IN_FLIGHT: usize = 2;

/// A write of one object, invisible under its name until [`Upload::commit`] (see the module
/// docs). Made by [`Store::upload`]; dropping it uncommitted leaves nothing behind.
pub struct Upload {
    store: Store,
    name: ObjectName,
    attributes: Attributes,
    pending: Vec<Bytes>,
    pending_len: usize,
    multipart: Option<Box<dyn MultipartUpload>>,
    in_flight: Vec<JoinHandle<object_store::Result<()>>>,
    written: u64,
    local: Local,
}

/// How an upload reaches a local folder.
enum Local {
    /// Not a local folder: parts through `object_store`.
    No,
    Direct(LocalWrite),
    /// A local folder, but the name cannot be a file there.
    Invalid(StoreError),
}

/// The direct write path into a local folder.
struct LocalWrite {
    target: PathBuf,
    /// `<target>#<n>`: the name `object_store` stages its own local writes under, which its
    /// listings skip. Created at the first write; `None` again once renamed.
    staging: Option<PathBuf>,
    /// The staging file while no write is in flight.
    file: Option<File>,
    /// The write in flight; it hands the file back when done.
    writing: Option<JoinHandle<std::io::Result<File>>>,
    /// The directories made for the staging file, outermost first: removed again unless the
    /// write is committed.
    created_dirs: Vec<PathBuf>,
    /// When this write began: older staging files of the target are a dead writer's.
    started: SystemTime,
}

impl Upload {
    pub(crate) fn new(store: Store, name: ObjectName, attributes: Attributes) -> Upload {
        let local = match store.local_path(&name) {
            Ok(Some(target)) => Local::Direct(LocalWrite {
                target,
                staging: None,
                file: None,
                writing: None,
                created_dirs: Vec::new(),
                started: SystemTime::now(),
            }),
            Ok(None) => Local::No,
            Err(e) => Local::Invalid(e),
        };
        Upload {
            local,
            store,
            name,
            attributes,
            pending: Vec::new(),
            pending_len: 0,
            multipart: None,
            in_flight: Vec::new(),
            written: 0,
        }
    }

    /// The object being written.
    pub fn name(&self) -> &ObjectName {
        &self.name
    }

    /// The store written to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Bytes handed to this upload so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether no bytes have been handed to it yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Adds the next bytes. May wait for earlier parts to finish uploading.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        if !matches!(self.local, Local::No) {
            let mut file = self.local_file().await?;
            let Local::Direct(local) = &mut self.local else { unreachable!("local_file checked it") };
            local.writing = Some(tokio::task::spawn_blocking(move || file.write_all(&chunk).map(|()| file)));
            return Ok(());
        }
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= PART_SIZE {
            self.send_part().await?;
        }
        Ok(())
    }

    /// The staging file once the write in flight is done, created on first use.
    async fn local_file(&mut self) -> Result<File, StoreError> {
        let (store, name) = (&self.store, &self.name);
        let fail =
            |message: String| StoreError::Object { store: store.url().to_string(), name: name.to_string(), message };
        let local = match &mut self.local {
            Local::Direct(local) => local,
            Local::Invalid(e) => return Err(e.clone()),
            Local::No => unreachable!("only called for local folders"),
        };
        if let Some(writing) = local.writing.take() {
            return match writing.await {
                Ok(Ok(file)) => Ok(file),
                Ok(Err(e)) => Err(fail(format!("writing {}: {e}", local.target.display()))),
                Err(e) => Err(fail(format!("write task failed: {e}"))),
            };
        }
        if let Some(file) = local.file.take() {
            return Ok(file);
        }
        let target = local.target.clone();
        let created = tokio::task::spawn_blocking(move || {
            let mut dirs = Vec::new();
            (create_staging(&target, &mut dirs), dirs)
        });
        let (file, staging) = match created.await {
            Ok((created, dirs)) => {
                local.created_dirs.extend(dirs);
                created.map_err(|e| fail(format!("creating a file beside {}: {e}", local.target.display())))?
            }
            Err(e) => return Err(fail(format!("create task failed: {e}"))),
        };
        local.staging = Some(staging);
        Ok(file)
    }

    async fn send_part(&mut self) -> Result<(), StoreError> {
        if self.multipart.is_none() {
            let options = PutMultipartOptions { attributes: self.attributes.clone(), ..Default::default() };
            let location = self.store.location(&self.name);
            let upload = self.store.inner().put_multipart_opts(&location, options).await;
            self.multipart = Some(upload.map_err(|e| self.store.error(&self.name, e))?);
        }
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            let oldest = self.in_flight.remove(0);
            join(&self.store, &self.name, oldest).await?;
        }
        let payload: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
        self.pending_len = 0;
        let part = self.multipart.as_mut().expect("started above").put_part(payload);
        self.in_flight.push(tokio::spawn(part));
        Ok(())
    }

    /// Makes the object visible under its name. Call only once its bytes are verified.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let result = self.finish().await;
        if result.is_err() {
            self.abort_parts().await;
        }
        result
    }

    async fn finish(&mut self) -> Result<(), StoreError> {
        if !matches!(self.local, Local::No) {
            drop(self.local_file().await?);
            let Local::Direct(local) = &mut self.local else { unreachable!("local_file checked it") };
            let (staging, target) = (local.staging.clone().expect("created by local_file"), local.target.clone());
            let started = local.started;
            let renamed = tokio::task::spawn_blocking(move || {
                std::fs::rename(&staging, &target).map(|()| sweep_leftovers(&target, &staging, started))
            })
            .await;
            return match renamed {
                Ok(Ok(())) => {
                    local.staging = None;
                    local.created_dirs.clear();
                    Ok(())
                }
                Ok(Err(e)) => Err(self.io_error(format!("renaming onto the target: {e}"))),
                Err(e) => Err(self.io_error(format!("rename task failed: {e}"))),
            };
        }
        if self.multipart.is_none() {
            let payload: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
            let options = PutOptions { attributes: std::mem::take(&mut self.attributes), ..Default::default() };
            let location = self.store.location(&self.name);
            self.store
                .inner()
                .put_opts(&location, payload, options)
                .await
                .map_err(|e| self.store.error(&self.name, e))?;
            return Ok(());
        }
        if self.pending_len > 0 {
            self.send_part().await?;
        }
        for part in std::mem::take(&mut self.in_flight) {
            join(&self.store, &self.name, part).await?;
        }
        let upload = self.multipart.as_mut().expect("multipart");
        upload.complete().await.map_err(|e| self.store.error(&self.name, e))?;
        self.multipart = None;
        Ok(())
    }

    /// Whether this upload writes to a local folder, which the `*_blocking` methods need.
    pub(crate) fn is_local(&self) -> bool {
        !matches!(self.local, Local::No)
    }

    /// [`Upload::write`] for a local folder, on the calling thread, which may block.
    pub(crate) fn write_blocking(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        let local = direct(&mut self.local)?;
        let file = match local.file.take() {
            Some(file) => Ok(file),
            None => create_staging(&local.target, &mut local.created_dirs).map(|(file, staging)| {
                local.staging = Some(staging);
                file
            }),
        };
        let written = file.and_then(|mut file| file.write_all(chunk).map(|()| local.file = Some(file)));
        written.map_err(|e| object_error(&self.store, &self.name, format!("writing a file beside it: {e}")))
    }

    /// [`Upload::commit`] for a local folder, on the calling thread, which may block.
    pub(crate) fn commit_blocking(mut self) -> Result<(), StoreError> {
        let local = direct(&mut self.local)?;
        drop(local.file.take());
        let staging = match local.staging.clone() {
            Some(staging) => Ok(staging),
            // Nothing written: an empty object.
            None => create_staging(&local.target, &mut local.created_dirs).map(|(_, staging)| {
                local.staging = Some(staging.clone());
                staging
            }),
        };
        let renamed = staging.and_then(|staging| {
            std::fs::rename(&staging, &local.target).map(|()| sweep_leftovers(&local.target, &staging, local.started))
        });
        match renamed {
            Ok(()) => {
                local.staging = None;
                local.created_dirs.clear();
                Ok(())
            }
            Err(e) => Err(object_error(&self.store, &self.name, format!("renaming onto the target: {e}"))),
        }
    }

    /// Discards everything written: nothing is left under the name or in the store.
    pub async fn abort(mut self) {
        self.abort_parts().await;
    }

    fn io_error(&self, message: String) -> StoreError {
        object_error(&self.store, &self.name, message)
    }

    async fn abort_parts(&mut self) {
        if let Local::Direct(local) = &mut self.local {
            if let Some(writing) = local.writing.take() {
                let _ = writing.await;
            }
            let (staging, dirs) = (local.staging.take(), std::mem::take(&mut local.created_dirs));
            if let Err(e) = tokio::task::spawn_blocking(move || discard(staging, dirs)).await {
                tracing::warn!(store = self.store.url(), object = %self.name, error = %e, "removing what a failed write left failed");
            }
        }
        for part in std::mem::take(&mut self.in_flight) {
            let _ = part.await;
        }
        if let Some(mut upload) = self.multipart.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(store = self.store.url(), object = %self.name, error = %e, "aborting an upload failed");
            }
        }
    }
}

impl Drop for Upload {
    /// An upload dropped without commit or abort (a cancelled task) still cleans up after itself.
    fn drop(&mut self) {
        if let Local::Direct(local) = &mut self.local {
            // A write still in flight carries on into the unlinked file, harmlessly.
            discard(local.staging.take(), std::mem::take(&mut local.created_dirs));
        }
        if let Some(mut upload) = self.multipart.take() {
            let parts = std::mem::take(&mut self.in_flight);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    for part in parts {
                        let _ = part.await;
                    }
                    let _ = upload.abort().await;
                });
            }
        }
    }
}

/// The direct local write path, for the `*_blocking` methods (never mixed with async writes).
fn direct(local: &mut Local) -> Result<&mut LocalWrite, StoreError> {
    match local {
        Local::Direct(local) => Ok(local),
        Local::Invalid(e) => Err(e.clone()),
        Local::No => unreachable!("only called for local folders"),
    }
}

fn object_error(store: &Store, name: &ObjectName, message: String) -> StoreError {
    StoreError::Object { store: store.url().to_string(), name: name.to_string(), message }
}

/// Waits for an uploading part. Borrows the store and name rather than the upload, whose
/// `MultipartUpload` is not `Sync`, so that futures awaiting this stay `Send`.
async fn join(store: &Store, name: &ObjectName, part: JoinHandle<object_store::Result<()>>) -> Result<(), StoreError> {
    match part.await {
        Ok(result) => result.map_err(|e| store.error(name, e)),
        Err(e) => Err(StoreError::Object {
            store: store.url().to_string(),
            name: name.to_string(),
            message: format!("upload task failed: {e}"),
        }),
    }
}

/// Creates a new, empty staging file `<target>#<n>`, and the target's missing folders, adding
/// those it made to `created_dirs`.
fn create_staging(target: &Path, created_dirs: &mut Vec<PathBuf>) -> std::io::Result<(File, PathBuf)> {
    let mut n = 1u64;
    loop {
        let mut staging = target.as_os_str().to_owned();
        staging.push(format!("#{n}"));
        let staging = PathBuf::from(staging);
        match File::options().write(true).create_new(true).open(&staging) {
            Ok(file) => return Ok((file, staging)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_dirs(target.parent().ok_or(e)?, created_dirs)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Once a write committed from `<target>#<n>`, removes the staging files `<target>#1` to
/// `#<n-1>` it had to step over that are older than the write (`started`): what writers killed
/// mid-write left. A live writer's file is newer, and is left alone.
fn sweep_leftovers(target: &Path, staging: &Path, started: SystemTime) {
    let index = staging.to_str().and_then(|s| s.rsplit_once('#')).and_then(|(_, n)| n.parse::<u64>().ok());
    for n in 1..index.unwrap_or(1) {
        let mut leftover = target.as_os_str().to_owned();
        leftover.push(format!("#{n}"));
        let leftover = PathBuf::from(leftover);
        if std::fs::metadata(&leftover).and_then(|m| m.modified()).is_ok_and(|modified| modified < started) {
            let _ = std::fs::remove_file(&leftover);
        }
    }
}

/// `create_dir_all`, adding the directories this call made (not those another write made
/// meanwhile) to `created`, outermost first.
fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            created.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_dirs(dir.parent().ok_or(e)?, created)?;
            create_dirs(dir, created)
        }
        Err(e) => Err(e),
    }
}

/// Removes what an uncommitted local write left: its staging file, then the directories it
/// created, deepest first, stopping at the first that is not empty. `remove_dir` (never
/// `remove_dir_all`) only removes an empty directory, so one another write has put a file in
/// since, and every directory above it, stays.
fn discard(staging: Option<PathBuf>, created_dirs: Vec<PathBuf>) {
    if let Some(staging) = staging {
        let _ = std::fs::remove_file(staging);
    }
    for dir in created_dirs.iter().rev() {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return,
        }
    }
}

/// Writing to a store starts here (the store knows nothing of its writers).
impl Store {
    /// The most memory an [`Upload`] of `size` bytes to this store holds at once: for a cloud
    /// store the part being filled and the parts uploading (or the whole object, if smaller);
    /// nothing for a local folder, whose writes go straight to disk.
    pub fn upload_buffer(&self, size: u64) -> u64 {
        match self.backend() {
            Backend::Local => 0,
            _ => size.min((PART_SIZE * (PARTS_IN_FLIGHT + 1)) as u64),
        }
    }

    /// Starts writing `name`, to be committed only once its bytes are known to hash to
    /// `sha256_hex`. Nothing is visible at `name` until [`Upload::commit`].
    pub fn upload(&self, name: &ObjectName, sha256_hex: &str) -> Upload {
        let mut attributes = Attributes::new();
        if !matches!(self.backend(), Backend::Local) {
            attributes.insert(Attribute::Metadata(SHA256_METADATA.into()), sha256_hex.to_string().into());
        }
        Upload::new(self.clone(), name.clone(), attributes)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_commit_removes_what_killed_writers_left_and_spares_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let leftover = |n: u32| dir.path().join(format!("file#{n}"));
        // Two killed writers' staging files, and one being written right now.
        for n in [1, 2] {
            let file = File::create(leftover(n)).unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(60)).unwrap();
        }
        let name = ObjectName::parse("file").unwrap();
        let mut upload = store.upload(&name, ferry_oci::Digest::of(b"bytes").hex());
        // (File times come from a coarse clock: well after the upload began.)
        std::thread::sleep(Duration::from_millis(50));
        File::create(leftover(3)).unwrap();
        upload.write(Bytes::from_static(b"bytes")).await.unwrap();
        upload.commit().await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("file")).unwrap(), b"bytes");
        assert!(!leftover(1).exists() && !leftover(2).exists(), "the dead writers' files are gone");
        assert!(leftover(3).exists(), "a live writer's file (newer than this write) stays");
    }
}
