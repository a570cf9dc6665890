//! `Upload`: a write that becomes visible only when committed.
//!
//! Bytes are buffered up to one part. An object that fits in one part is written with a single
//! atomic PUT at commit time; a larger one becomes a multipart upload whose parts are sent in the
//! background (at most [`PARTS_IN_FLIGHT`] at a time, so memory stays bounded) and which is
//! completed only at commit. For a local folder, `object_store` writes a staging file beside the
//! target and renames it on completion. Either way nothing exists under the name until
//! [`Upload::commit`], and [`Upload::abort`] (or dropping an uncommitted upload) leaves nothing.

use bytes::Bytes;
use object_store::{Attributes, MultipartUpload, PutMultipartOptions, PutOptions, PutPayload};
use tokio::task::JoinHandle;

use crate::name::ObjectName;
use crate::store::{Backend, Store};
use crate::StoreError;

/// Part size: S3's minimum is 5 MiB (except the last part); local folders take any size, and
/// smaller parts there mean less memory per file in flight.
fn part_size(backend: Backend) -> usize {
    match backend {
        Backend::Local => 4 << 20,
        _ => 8 << 20,
    }
}

/// Parts uploading at once, per upload.
pub const PARTS_IN_FLIGHT: usize = 2;

pub struct Upload {
    store: Store,
    name: ObjectName,
    attributes: Attributes,
    pending: Vec<Bytes>,
    pending_len: usize,
    multipart: Option<Box<dyn MultipartUpload>>,
    in_flight: Vec<JoinHandle<object_store::Result<()>>>,
    written: u64,
}

impl Upload {
    pub(crate) fn new(store: Store, name: ObjectName, attributes: Attributes) -> Upload {
        Upload {
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

    pub fn name(&self) -> &ObjectName {
        &self.name
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Bytes handed to this upload so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Adds the next bytes. May wait for earlier parts to finish uploading.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= part_size(self.store.backend()) {
            self.send_part().await?;
        }
        Ok(())
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
            self.join(oldest).await?;
        }
        let payload: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
        self.pending_len = 0;
        let part = self.multipart.as_mut().expect("started above").put_part(payload);
        self.in_flight.push(tokio::spawn(part));
        Ok(())
    }

    async fn join(&self, part: JoinHandle<object_store::Result<()>>) -> Result<(), StoreError> {
        match part.await {
            Ok(result) => result.map_err(|e| self.store.error(&self.name, e)),
            Err(e) => Err(StoreError::Object {
                store: self.store.url().to_string(),
                name: self.name.to_string(),
                message: format!("upload task failed: {e}"),
            }),
        }
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
            self.join(part).await?;
        }
        let upload = self.multipart.as_mut().expect("multipart");
        upload.complete().await.map_err(|e| self.store.error(&self.name, e))?;
        self.multipart = None;
        Ok(())
    }

    /// Discards everything written: nothing is left under the name or in the store.
    pub async fn abort(mut self) {
        self.abort_parts().await;
    }

    async fn abort_parts(&mut self) {
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
