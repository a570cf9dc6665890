//! `Store`: one object store (S3, Google Cloud Storage, Azure Blob, a local folder) and a base
//! prefix inside it, opened from a URL.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{Attribute, GetOptions, GetResultPayload, ObjectStore, ObjectStoreScheme, PutPayload};
use url::Url;

use crate::credentials::{self, Env};
use crate::name::{ObjectName, ObjectNameError};
use crate::StoreError;

/// Chunk size for reads from a local folder: object_store's own file stream uses 8 KiB, which
/// costs a thread hop per 8 KiB; a chunk of 128 KiB stays in the CPU's cache between being read,
/// hashed and written, and was the fastest of 128 KiB, 256 KiB and 1 MiB for a local-to-local
/// promotion (bench/files.sh).
const LOCAL_READ_CHUNK: usize = 128 << 10;

/// Chunks a local read may run ahead of its consumer.
const LOCAL_READ_AHEAD: usize = 4;

/// Idle read buffers kept for reuse (see [`Pooled`]).
const POOL_MAX: usize = 64;

/// The user-defined metadata key that records an object's sha256 (hex) on cloud stores, so a
/// later run can prove what an object holds without reading it back.
pub const SHA256_METADATA: &str = "sha256";

/// Which kind of backend a store is. Decides what can be proved without a read (only cloud
/// stores keep the sha256 metadata) and the multipart part size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A folder on this machine (`file://` or a plain path).
    Local,
    /// Amazon S3 or an S3-compatible server (`s3://`).
    S3,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// Azure Blob Storage (`az://`).
    Azure,
    /// In memory, gone with the process (`memory://`, for tests).
    Memory,
}

/// A store and a base prefix: every object name is relative to the base.
#[derive(Clone)]
pub struct Store {
    url: Arc<str>,
    backend: Backend,
    inner: Arc<dyn ObjectStore>,
    /// The same store as `inner` for a local folder, for the direct write path of [`Upload`].
    local: Option<Arc<LocalFileSystem>>,
    base: Path,
}

/// What a HEAD tells about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// The sha256 recorded in the object's metadata when Ferry wrote it (cloud stores only).
    pub sha256: Option<String>,
}

/// The bytes of an object, in order.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// An object opened for reading (see [`Store::get`]).
pub(crate) enum Payload {
    File(std::fs::File),
    Stream(ByteStream),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Store {
    /// Opens `url`, resolving a cloud store's credentials now (see `credentials.rs`): a store with
    /// none anywhere is an error saying where they were looked for and how to provide them.
    /// - `s3://bucket/prefix/` (also `s3a://`, `https://bucket.s3.region.amazonaws.com/...`):
    ///   credentials, region and endpoint from the standard `AWS_*` environment
    ///   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
    ///   `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...), the `AWS_PROFILE` profile of the shared
    ///   files, web identity, container credentials or the instance's metadata service;
    /// - `gs://bucket/prefix/`: `GOOGLE_SERVICE_ACCOUNT`/`GOOGLE_APPLICATION_CREDENTIALS`, else
    ///   gcloud's application default credentials, else the metadata server;
    /// - `az://container/prefix/` (also `azure://`, `abfs://`, `https://account.blob.core.windows.net/...`):
    ///   `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, ...,
    ///   else a managed identity;
    /// - `file:///abs/path/` or a plain path (relative to the current directory): a local folder,
    ///   created on first write;
    /// - `memory://` for tests.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &[])
    }

    /// [`Store::open`], with settings that override the environment's, named as the environment
    /// names them (`AWS_ENDPOINT_URL`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`,
    /// `AWS_PROFILE`, `NO_GCE_CHECK`, ...; case does not matter). Unknown names are refused.
    pub fn open_with(url: &str, settings: &[(String, String)]) -> Result<Store, StoreError> {
        let fail = |message: String| StoreError::Url { url: url.to_string(), message };
        let env = Env::new(settings);
        let settings: Vec<(String, String)> = settings.iter().filter(|(name, _)| !Env::is_own(name)).cloned().collect();
        let settings = settings.as_slice();
        let parsed = match Url::parse(url) {
            Ok(parsed) if parsed.scheme().len() > 1 => parsed,
            // No scheme (or a Windows drive letter): a local path.
            _ => return Store::local(url, std::path::Path::new(url)),
        };
        let (scheme, base) = ObjectStoreScheme::parse(&parsed).map_err(|e| fail(e.to_string()))?;
        // object_store 0.12 drops the first path segment of an `az://` URL (as if it named the
        // container; apache/arrow-rs-object-store#443) while its Azure builder takes the host as
        // the container: `az://container/some/prefix/` would be based at `prefix/`. The whole path
        // is the prefix, as for `azure://`.
        let base = match parsed.scheme() {
            "az" => Path::from_url_path(parsed.path()).map_err(|e| fail(e.to_string()))?,
            _ => base,
        };
        let base = Path::parse(base).map_err(|e| fail(e.to_string()))?;
        let (backend, inner): (Backend, Arc<dyn ObjectStore>) = match scheme {
            ObjectStoreScheme::Local => {
                let path = parsed.to_file_path().map_err(|()| fail("not an absolute file path".into()))?;
                return Store::local(url, &path);
            }
            ObjectStoreScheme::Memory => (Backend::Memory, Arc::new(object_store::memory::InMemory::new())),
            ObjectStoreScheme::AmazonS3 => {
                let builder = object_store::aws::AmazonS3Builder::from_env().with_url(url);
                let builder = configure(builder, settings, |b, k, v| b.with_config(k, v)).map_err(fail)?;
                let store = credentials::s3(builder, &env).map_err(fail)?.build();
                (Backend::S3, Arc::new(store.map_err(|e| fail(e.to_string()))?))
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let builder = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
                let builder = configure(builder, settings, |b, k, v| b.with_config(k, v)).map_err(fail)?;
                let store = credentials::gcs(builder, &env).map_err(fail)?.build();
                (Backend::Gcs, Arc::new(store.map_err(|e| fail(e.to_string()))?))
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let builder = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
                let builder = configure(builder, settings, |b, k, v| b.with_config(k, v)).map_err(fail)?;
                let store = credentials::azure(builder, &env).map_err(fail)?.build();
                (Backend::Azure, Arc::new(store.map_err(|e| fail(e.to_string()))?))
            }
            other => return Err(fail(format!("unsupported store kind {other:?}"))),
        };
        Ok(Store { url: url.into(), backend, inner, local: None, base })
    }

    fn local(url: &str, path: &std::path::Path) -> Result<Store, StoreError> {
        let fail = |message: String| StoreError::Url { url: url.to_string(), message };
        let absolute = std::path::absolute(path).map_err(|e| fail(e.to_string()))?;
        let base = Path::from_absolute_path(&absolute).map_err(|e| fail(e.to_string()))?;
        let local = Arc::new(LocalFileSystem::new());
        Ok(Store { url: url.into(), backend: Backend::Local, inner: local.clone(), local: Some(local), base })
    }

    /// The URL or path the store was opened from, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which kind of store this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    pub(crate) fn location(&self, name: &ObjectName) -> Path {
        let mut location = self.base.clone();
        for part in name.as_str().split('/') {
            location = location.child(part);
        }
        location
    }

    /// Where `name` lives on disk, for a local folder (`None` for other stores).
    pub(crate) fn local_path(&self, name: &ObjectName) -> Result<Option<std::path::PathBuf>, StoreError> {
        let Some(local) = &self.local else { return Ok(None) };
        local.path_to_filesystem(&self.location(name)).map(Some).map_err(|e| self.error(name, e))
    }

    pub(crate) fn error(&self, name: &ObjectName, source: object_store::Error) -> StoreError {
        StoreError::Object { store: self.url.to_string(), name: name.to_string(), message: source.to_string() }
    }

    /// Size and recorded sha256 of `name`, or `None` when it does not exist.
    pub async fn head(&self, name: &ObjectName) -> Result<Option<ObjectInfo>, StoreError> {
        let options = GetOptions { head: true, ..Default::default() };
        match self.inner.get_opts(&self.location(name), options).await {
            Ok(result) => {
                let sha256 = result.attributes.get(&Attribute::Metadata(SHA256_METADATA.into())).map(|v| v.to_string());
                Ok(Some(ObjectInfo { size: result.meta.size, sha256 }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(name, e)),
        }
    }

    /// The bytes of `name`. A missing object is an error.
    pub async fn read(&self, name: &ObjectName) -> Result<ByteStream, StoreError> {
        Ok(self.stream(name, self.get(name).await?))
    }

    /// The bytes of `payload`, `name` opened by [`Store::get`].
    pub(crate) fn stream(&self, name: &ObjectName, payload: Payload) -> ByteStream {
        match payload {
            Payload::File(file) => read_file(file, self.url.to_string(), name.to_string()),
            Payload::Stream(stream) => stream,
        }
    }

    /// `name` opened for reading: a local folder's file itself, any other store's stream.
    pub(crate) async fn get(&self, name: &ObjectName) -> Result<Payload, StoreError> {
        let result = self.inner.get(&self.location(name)).await.map_err(|e| self.error(name, e))?;
        let (store, object) = (self.url.to_string(), name.to_string());
        Ok(match result.payload {
            GetResultPayload::File(file, _) => Payload::File(file),
            GetResultPayload::Stream(stream) => Payload::Stream(
                stream
                    .map_err(move |e| StoreError::Object {
                        store: store.clone(),
                        name: object.clone(),
                        message: e.to_string(),
                    })
                    .boxed(),
            ),
        })
    }

    /// The whole of `name` in memory (inventories and other small objects), or `None` when it
    /// does not exist. An object larger than `limit` bytes is refused before its bytes are read.
    pub async fn read_small(&self, name: &ObjectName, limit: u64) -> Result<Option<Bytes>, StoreError> {
        match self.inner.get(&self.location(name)).await {
            Ok(result) if result.meta.size > limit => Err(StoreError::Object {
                store: self.url.to_string(),
                name: name.to_string(),
                message: format!("{} bytes, larger than the limit of {limit}", result.meta.size),
            }),
            Ok(result) => Ok(Some(result.bytes().await.map_err(|e| self.error(name, e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(name, e)),
        }
    }

    /// Writes a small object whole, atomically (inventories): readers see the old or the new
    /// version, never a part.
    pub async fn put_small(&self, name: &ObjectName, bytes: Bytes) -> Result<(), StoreError> {
        self.inner.put(&self.location(name), PutPayload::from(bytes)).await.map_err(|e| self.error(name, e))?;
        Ok(())
    }

    /// Deletes `name`; one that does not exist is no error.
    pub async fn delete(&self, name: &ObjectName) -> Result<(), StoreError> {
        match self.inner.delete(&self.location(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(name, e)),
        }
    }

    /// Every object under the base (recursively) whose name starts with `prefix` (a whole
    /// path segment prefix: `""` for all), with its size, sorted by name. Names that are not
    /// valid `ObjectName`s (left by other tools) are skipped.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(ObjectName, u64)>, StoreError> {
        let base = self.base.clone();
        let fail = |e: object_store::Error| StoreError::Object {
            store: self.url.to_string(),
            name: prefix.to_string(),
            message: e.to_string(),
        };
        let listing: Vec<_> = match self.inner.list(Some(&base)).try_collect().await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(fail(e)),
        };
        let mut objects: Vec<_> = listing
            .into_iter()
            .filter_map(|meta| {
                let relative: Vec<_> = meta.location.prefix_match(&base)?.map(|p| p.as_ref().to_string()).collect();
                let name = ObjectName::parse(&relative.join("/")).ok()?;
                name.as_str().starts_with(prefix).then_some((name, meta.size))
            })
            .collect();
        objects.sort();
        Ok(objects)
    }

    /// Every object under the base (recursively), with its size, sorted by name, for writing a
    /// manifest (`ferry manifest files`): unlike [`Store::list`], an object whose name is not a
    /// valid [`ObjectName`], or that [`Store::read`] would not find by that name (one with a
    /// character `object_store` escapes, such as `#` or `%`), is kept as an error naming it.
    pub async fn list_all(&self) -> Result<Vec<(Result<ObjectName, ObjectNameError>, u64)>, StoreError> {
        let listing: Vec<_> = match self.inner.list(Some(&self.base)).try_collect().await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => {
                return Err(StoreError::Object {
                    store: self.url.to_string(),
                    name: String::new(),
                    message: e.to_string(),
                })
            }
        };
        let mut objects: Vec<_> = listing
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<_> = meta.location.prefix_match(&self.base)?.map(|p| p.as_ref().to_string()).collect();
                let raw = parts.join("/");
                let name = match ObjectName::parse(&raw) {
                    Ok(name) if self.location(&name) == meta.location => Ok(name),
                    Ok(_) => Err(ObjectNameError {
                        name: raw,
                        problem: "has a character the store keeps escaped, so Ferry could not read it by this name",
                    }),
                    Err(e) => Err(e),
                };
                Some((name, meta.size))
            })
            .collect();
        objects.sort_by(|a, b| {
            let key = |o: &'_ (Result<ObjectName, ObjectNameError>, u64)| match &o.0 {
                Ok(name) => name.as_str().to_string(),
                Err(e) => e.name.clone(),
            };
            key(a).cmp(&key(b))
        });
        Ok(objects)
    }
}

/// Applies `settings` to a cloud store builder, whose config keys parse from lower-case names.
fn configure<B, K: std::str::FromStr>(
    mut builder: B,
    settings: &[(String, String)],
    set: impl Fn(B, K, String) -> B,
) -> Result<B, String> {
    for (name, value) in settings {
        let key = name.to_ascii_lowercase().parse().map_err(|_| format!("unknown setting {name}"))?;
        builder = set(builder, key, value.clone());
    }
    Ok(builder)
}

/// Reads a local file on one blocking thread in large chunks, handing them over through a small
/// bounded channel (so memory stays bounded when the consumer is slower).
fn read_file(mut file: std::fs::File, store: String, name: String) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, StoreError>>(LOCAL_READ_AHEAD);
    tokio::task::spawn_blocking(move || loop {
        let mut buffer = Pooled::take();
        match buffer.fill_from(&mut file) {
            Ok(()) if buffer.len == 0 => return,
            Ok(()) => {
                let last = buffer.len < LOCAL_READ_CHUNK;
                if tx.blocking_send(Ok(Bytes::from_owner(buffer))).is_err() || last {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(StoreError::Object { store, name, message: e.to_string() }));
                return;
            }
        }
    });
    tokio_stream_from(rx)
}

/// A read buffer that goes back to a small pool when the last `Bytes` of its chunk is dropped, so
/// a steady stream of reads neither allocates nor makes the kernel zero fresh pages per chunk
/// (which cost about a tenth of the CPU of a local-to-local promotion).
pub(crate) struct Pooled {
    buffer: Vec<u8>,
    len: usize,
}

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

impl Pooled {
    pub(crate) fn take() -> Pooled {
        let reused = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
        Pooled { buffer: reused.unwrap_or_else(|| vec![0; LOCAL_READ_CHUNK]), len: 0 }
    }

    /// Replaces the contents with the next bytes of `file`: a whole chunk, fewer only at its end.
    pub(crate) fn fill_from(&mut self, file: &mut std::fs::File) -> std::io::Result<()> {
        use std::io::Read;
        self.len = 0;
        while self.len < LOCAL_READ_CHUNK {
            match file.read(&mut self.buffer[self.len..]) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(std::mem::take(&mut self.buffer));
        }
    }
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>>) -> ByteStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
