//! Inventories — and the `locations` range files and country database — that live elsewhere:
//! `http(s)://` URLs and object-store URLs (`s3://`, `gs://`, `az://`, read through
//! `ferry-store`), so that an instance needs no volume of its own. Each is fetched when a snapshot first needs it and then
//! kept, so building a snapshot never waits on the network for an inventory it already has; the
//! reloader calls [`RemoteInventories::refresh`] periodically, and rebuilds the snapshot only when
//! one changed.
//!
//! HTTP fetches are conditional (`If-None-Match` with the last `ETag`, else `If-Modified-Since`
//! with the last `Last-Modified`): an unchanged inventory costs a `304`. Object stores have no such
//! header through `ferry-store`, so they are read whole each time and compared.
//!
//! A fetch that fails, or an inventory that does not parse, is an error: at start (or for a new
//! source in a reloaded configuration) that refuses the snapshot, like an unreadable local file;
//! on refresh the previous inventory stays in force and the error is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::blocking::off_runtime;
use crate::inventory::{Inventory, InventoryError};

/// Longest an inventory fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether an inventory source is remote (fetched by [`RemoteInventories`]) rather than a local
/// path or `file://` URL.
pub fn is_remote(source: &str) -> bool {
    source.split_once("://").is_some_and(|(scheme, _)| scheme != "file")
}

struct Fetched {
    inventory: Arc<Inventory>,
    etag: Option<String>,
    last_modified: Option<String>,
    /// The text it was parsed from, for object stores (no validators to compare).
    text: Option<String>,
}

/// A remote file kept as bytes (a `locations` source).
struct FetchedFile {
    bytes: Arc<Vec<u8>>,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Largest `locations` file fetched, in bytes (a MaxMind city database is under 100 MB).
pub const FILE_LIMIT: usize = 256 << 20;

/// The remote inventories and `locations` files fetched so far, by source URL.
pub struct RemoteInventories {
    client: reqwest::Client,
    fetched: Mutex<HashMap<String, Fetched>>,
    files: Mutex<HashMap<String, FetchedFile>>,
    /// Largest inventory fetched, in bytes: a larger one is refused as it arrives.
    limit: usize,
}

impl Default for RemoteInventories {
    fn default() -> Self {
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().expect("HTTP client");
        RemoteInventories {
            client,
            fetched: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            limit: ferry_store::Inventory::MAX_BYTES,
        }
    }
}

impl RemoteInventories {
    /// Refuses inventories larger than `limit` bytes (by default, the limit of any inventory:
    /// `ferry_store::Inventory::MAX_BYTES`).
    pub fn with_limit(limit: usize) -> RemoteInventories {
        RemoteInventories { limit, ..RemoteInventories::default() }
    }

    /// The inventory at `source`: the one fetched before, else fetched now.
    pub async fn get(&self, source: &str) -> Result<Arc<Inventory>, InventoryError> {
        if let Some(f) = self.fetched.lock().expect("remote inventories").get(source) {
            return Ok(f.inventory.clone());
        }
        self.refresh(source).await?;
        let fetched = self.fetched.lock().expect("remote inventories");
        Ok(fetched.get(source).expect("just fetched").inventory.clone())
    }

    /// Fetches `source` again. `Ok(true)` when it changed (or was fetched for the first time); on
    /// error the previous version is kept.
    pub async fn refresh(&self, source: &str) -> Result<bool, InventoryError> {
        let previous = {
            let fetched = self.fetched.lock().expect("remote inventories");
            fetched.get(source).map(|f| (f.etag.clone(), f.last_modified.clone(), f.text.is_some()))
        };
        let new = if source.starts_with("http://") || source.starts_with("https://") {
            let (etag, modified) = previous.map(|(e, m, _)| (e, m)).unwrap_or_default();
            match self.fetch_http(source, etag, modified).await? {
                None => return Ok(false),
                Some(f) => f,
            }
        } else {
            let text = String::from_utf8(fetch_store(source, self.limit).await?)
                .map_err(|_| InventoryError::Source { file: source.to_string(), message: "not UTF-8 text".into() })?;
            let same = self.fetched.lock().expect("remote inventories").get(source).and_then(|f| f.text.as_ref())
                == Some(&text);
            if same {
                return Ok(false);
            }
            let (inventory, text) = parse(text, source).await?;
            Fetched { inventory, etag: None, last_modified: None, text: Some(text) }
        };
        self.fetched.lock().expect("remote inventories").insert(source.to_string(), new);
        Ok(true)
    }

    /// `None` when the server answered `304 Not Modified`.
    async fn fetch_http(
        &self,
        source: &str,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> Result<Option<Fetched>, InventoryError> {
        let fail = |message: String| InventoryError::Source { file: source.to_string(), message };
        let Some((body, etag, last_modified)) = self.fetch_http_bytes(source, etag, last_modified, self.limit).await?
        else {
            return Ok(None);
        };
        let text = String::from_utf8(body).map_err(|_| fail("cannot fetch: not UTF-8 text".into()))?;
        let (inventory, _) = parse(text, source).await?;
        Ok(Some(Fetched { inventory, etag, last_modified, text: None }))
    }

    /// The body at `source` with its `ETag` and `Last-Modified`; `None` on `304 Not Modified`.
    /// Never more than `limit` bytes plus one chunk is held: a larger body is refused as it
    /// arrives.
    async fn fetch_http_bytes(
        &self,
        source: &str,
        etag: Option<String>,
        last_modified: Option<String>,
        limit: usize,
    ) -> Result<Option<(Vec<u8>, Option<String>, Option<String>)>, InventoryError> {
        let fail = |message: String| InventoryError::Source { file: source.to_string(), message };
        let mut request = self.client.get(source);
        if let Some(etag) = &etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        } else if let Some(modified) = &last_modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
        }
        let response = request.send().await.map_err(|e| fail(format!("cannot fetch: {e}")))?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED && (etag.is_some() || last_modified.is_some()) {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(fail(format!("cannot fetch: HTTP {}", response.status())));
        }
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (etag, last_modified) = (header(reqwest::header::ETAG), header(reqwest::header::LAST_MODIFIED));
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(format!("cannot fetch: {e}")))? {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(fail(format!("larger than the limit of {limit} bytes")));
            }
        }
        Ok(Some((body, etag, last_modified)))
    }

    /// The `locations` file at `source`: the one fetched before, else fetched now.
    pub async fn get_file(&self, source: &str) -> Result<Arc<Vec<u8>>, InventoryError> {
        if let Some(f) = self.files.lock().expect("remote files").get(source) {
            return Ok(f.bytes.clone());
        }
        self.refresh_file(source).await?;
        Ok(self.files.lock().expect("remote files").get(source).expect("just fetched").bytes.clone())
    }

    /// Fetches the `locations` file at `source` again: `Ok(true)` when it changed (or was
    /// fetched for the first time); on error the previous version is kept.
    pub async fn refresh_file(&self, source: &str) -> Result<bool, InventoryError> {
        let previous = {
            let files = self.files.lock().expect("remote files");
            files.get(source).map(|f| (f.etag.clone(), f.last_modified.clone(), f.bytes.clone()))
        };
        let new = if source.starts_with("http://") || source.starts_with("https://") {
            let (etag, modified) = previous.as_ref().map(|(e, m, _)| (e.clone(), m.clone())).unwrap_or_default();
            match self.fetch_http_bytes(source, etag, modified, FILE_LIMIT).await? {
                None => return Ok(false),
                Some((bytes, etag, last_modified)) => FetchedFile { bytes: Arc::new(bytes), etag, last_modified },
            }
        } else {
            let bytes = fetch_store(source, FILE_LIMIT).await?;
            FetchedFile { bytes: Arc::new(bytes), etag: None, last_modified: None }
        };
        if previous.is_some_and(|(_, _, bytes)| *bytes == *new.bytes) {
            return Ok(false);
        }
        self.files.lock().expect("remote files").insert(source.to_string(), new);
        Ok(true)
    }
}

/// Parses an inventory off the runtime ([`off_runtime`]); the text is handed back.
async fn parse(text: String, source: &str) -> Result<(Arc<Inventory>, String), InventoryError> {
    let source = source.to_string();
    off_runtime(move || Inventory::parse(&text, &source).map(|inventory| (Arc::new(inventory), text))).await
}

/// Reads `<store URL>/<object>` (the last path segment is the object) through `ferry-store`.
async fn fetch_store(source: &str, limit: usize) -> Result<Vec<u8>, InventoryError> {
    let fail = |message: String| InventoryError::Source { file: source.to_string(), message };
    let (store_url, object) = source
        .rsplit_once('/')
        .filter(|(dir, object)| {
            !object.is_empty() && dir.split_once("://").is_some_and(|(_, bucket)| !bucket.is_empty())
        })
        .ok_or_else(|| fail("an object-store source must name an object: <scheme>://<bucket>/<path>".into()))?;
    let store = ferry_store::Store::open(&format!("{store_url}/")).map_err(|e| fail(e.to_string()))?;
    let name = ferry_store::ObjectName::parse(object).map_err(|e| fail(e.to_string()))?;
    let bytes = store
        .read_small(&name, limit as u64)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("not found".into()))?;
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_sources() {
        for s in ["http://h/i.txt", "https://h/i.txt", "s3://b/i.txt", "gs://b/i.txt", "az://c/i.txt"] {
            assert!(is_remote(s), "{s}");
        }
        for s in ["inv.txt", "/abs/inv.txt", "file:///abs/inv.txt"] {
            assert!(!is_remote(s), "{s}");
        }
    }

    #[tokio::test]
    async fn an_object_store_source_must_name_an_object() {
        for s in ["s3://bucket", "s3://bucket/", "s3:///x"] {
            let e = fetch_store(s, 1 << 20).await.unwrap_err();
            assert!(e.to_string().contains("must name an object"), "{s}: {e}");
        }
    }
}
