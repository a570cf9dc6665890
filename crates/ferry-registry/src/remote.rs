//! `host[:port][/prefix]` registries, over the plain OCI distribution API.
//!
//! One [`RemoteClient`] is shared by every remote registry of a run: one connection pool and, per
//! registry host, one request budget (concurrency and rate), one credential lookup and one token
//! cache, however many prefixes of that host the promoter manifest names.
//!
//! Each operation is retried as a whole on throttling (429, honouring `Retry-After`), server errors
//! and dropped connections; a blob upload restarts from its POST. A host that cannot be resolved
//! or connected to is given up on after one request's retries, and its later requests fail at
//! once. Authentication answers the registry's `WWW-Authenticate` challenge (bearer tokens per
//! repository scope, or basic), and once a host has challenged, later requests carry credentials
//! from the start. Credentials are only sent to the registry's own host and to the token realm it
//! names.

mod http;
mod reach;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_oci::{media_types, Descriptor, Digest, ManifestRefs, Reference, RepoName, Tag};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use self::http::{content_type, header_digest, next_link, Attempt, Host};
use crate::auth::{CredentialSource, DockerCredentials};
use crate::{BlobData, BlobStream, Manifest, ManifestHead, Registry, RegistryError, Result, Stored};

/// Manifests, tag list pages and referrers pages larger than this are refused: a lying server
/// must not make us buffer without bound.
const MAX_DOCUMENT: usize = 4 << 20;

/// How a [`RemoteClient`] talks to registries; `Default` gives what the `ferry` binary uses
/// unless told otherwise.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Hosts (`host[:port]` as written) spoken to over plain HTTP. Loopback hosts always are.
    pub plain_http_hosts: Vec<String>,
    /// Requests in flight per registry host (a blob download counts until its stream ends).
    pub max_concurrent_requests: usize,
    /// Requests started per second per registry host; `None` for no limit.
    pub max_requests_per_second: Option<f64>,
    /// Retries of an operation after a transient failure.
    pub retries: usize,
    /// First retry delay; doubled each retry (with jitter), capped at 10 s.
    pub retry_base_delay: Duration,
    /// Where logins come from, asked once per host when it first challenges.
    pub credentials: Arc<dyn CredentialSource>,
    /// The `User-Agent` header of every request.
    pub user_agent: String,
    /// Tags asked for per page of a tag list (`?n=`).
    pub tags_page_size: usize,
    /// How host names are resolved: the system's resolver when `None`. Tests answer names here
    /// so that no look-up leaves the machine.
    pub resolver: Option<Resolver>,
}

/// A DNS resolver for [`RemoteOptions::resolver`].
#[derive(Clone)]
pub struct Resolver(pub Arc<dyn reqwest::dns::Resolve>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            plain_http_hosts: Vec::new(),
            max_concurrent_requests: 32,
            max_requests_per_second: None,
            retries: 5,
            retry_base_delay: Duration::from_millis(200),
            credentials: Arc::new(DockerCredentials::from_environment()),
            user_agent: format!("ferry/{}", env!("CARGO_PKG_VERSION")),
            tags_page_size: 1000,
            resolver: None,
        }
    }
}

/// Counters over all registries of a client, for progress reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// HTTP requests sent, token requests included.
    pub requests: u64,
    /// Operations started again after a transient failure.
    pub retries: u64,
    /// Blob downloads started.
    pub blob_gets: u64,
    /// Blob bytes received by callers.
    pub blob_bytes_read: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    blob_gets: AtomicU64,
    blob_bytes_read: AtomicU64,
}

/// The HTTP client and per-host state shared by all remote registries of a run.
pub struct RemoteClient {
    http: reqwest::Client,
    opts: RemoteOptions,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    counters: Arc<Counters>,
}

impl fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteClient").field("options", &self.opts).finish_non_exhaustive()
    }
}

impl RemoteClient {
    /// A client with `opts`; fails only when the HTTP client cannot be built.
    pub fn new(opts: RemoteOptions) -> Result<Arc<Self>> {
        let mut http = reqwest::Client::builder()
            .user_agent(&opts.user_agent)
            .connect_timeout(Duration::from_secs(30))
            // Between two reads, not for a whole transfer: blobs can take long.
            .read_timeout(Duration::from_secs(300));
        if let Some(Resolver(resolver)) = &opts.resolver {
            http = http.dns_resolver2(resolver.clone());
        }
        let http = http
            .build()
            .map_err(|e| RegistryError::Invalid { registry: "remote".into(), message: format!("HTTP client: {e}") })?;
        Ok(Arc::new(RemoteClient { http, opts, hosts: Mutex::default(), counters: Arc::default() }))
    }

    /// The registry at `host` (`host[:port]`), with repositories under `prefix`.
    pub fn registry(self: &Arc<Self>, host: &str, prefix: Option<RepoName>) -> RemoteRegistry {
        // Docker Hub's API is not served on the name people write.
        let api_host = if host == "docker.io" { "registry-1.docker.io" } else { host };
        let scheme = if self.plain_http_allowed(api_host) { "http" } else { "https" };
        let state = self
            .hosts
            .lock()
            .unwrap()
            .entry(api_host.to_string())
            .or_insert_with(|| Arc::new(Host::new(api_host, &self.opts)))
            .clone();
        RemoteRegistry {
            client: self.clone(),
            host: state,
            host_name: host.to_string(),
            name: match &prefix {
                Some(p) => format!("{host}/{p}"),
                None => host.to_string(),
            },
            base: Url::parse(&format!("{scheme}://{api_host}/v2/")).ok(),
            prefix,
        }
    }

    /// The counters so far, over every registry opened through this client.
    pub fn stats(&self) -> RemoteStats {
        let c = &self.counters;
        RemoteStats {
            requests: c.requests.load(Relaxed),
            retries: c.retries.load(Relaxed),
            blob_gets: c.blob_gets.load(Relaxed),
            blob_bytes_read: c.blob_bytes_read.load(Relaxed),
        }
    }

    fn plain_http_allowed(&self, host: &str) -> bool {
        ferry_oci::is_loopback_host(host) || self.opts.plain_http_hosts.iter().any(|h| h == host)
    }
}

/// One remote registry: a host and an optional repository prefix.
pub struct RemoteRegistry {
    client: Arc<RemoteClient>,
    host: Arc<Host>,
    /// The host as written, for credential look-ups.
    host_name: String,
    name: String,
    /// `scheme://host/v2/`; `None` when the host cannot be part of a URL.
    base: Option<Url>,
    prefix: Option<RepoName>,
}

impl fmt::Debug for RemoteRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRegistry").field("name", &self.name).finish_non_exhaustive()
    }
}

fn pull(repo: &RepoName) -> String {
    format!("repository:{repo}:pull")
}

fn push(repo: &RepoName) -> String {
    format!("repository:{repo}:pull,push")
}

fn accept(media_types: &'static str) -> HeaderMap {
    HeaderMap::from_iter([(ACCEPT, HeaderValue::from_static(media_types))])
}

impl RemoteRegistry {
    fn full(&self, repo: &RepoName) -> RepoName {
        match &self.prefix {
            Some(p) => p.join(repo),
            None => repo.clone(),
        }
    }

    /// `/v2/<repo>/<rest>`.
    fn url(&self, repo: &RepoName, rest: &str) -> Result<Url> {
        self.base
            .as_ref()
            .and_then(|base| base.join(&format!("{repo}/{rest}")).ok())
            .ok_or_else(|| self.invalid(format!("{:?} is not a usable registry host", self.host_name)))
    }

    fn invalid(&self, message: String) -> RegistryError {
        RegistryError::Invalid { registry: self.name.clone(), message }
    }

    /// GET `url` and every page its `Link: <…>; rel="next"` headers lead to on the same host.
    /// `None` when the first page answers one of `absent`.
    async fn get_pages(
        &self,
        url: Url,
        scopes: &[String],
        accept_types: &'static str,
        absent: &[StatusCode],
    ) -> Result<Option<Vec<Bytes>>> {
        let mut pages = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(url);
        while let Some(url) = next.take().filter(|u| seen.insert(u.clone())) {
            let url = &url;
            let page = self
                .retrying("GET", move || async move {
                    let (resp, _permit) = self.send(Method::GET, url, scopes, accept(accept_types), None).await?;
                    if absent.contains(&resp.status()) {
                        return Ok(None);
                    }
                    if !resp.status().is_success() {
                        return Err(self.status_error(&Method::GET, url, resp).await);
                    }
                    let next = next_link(resp.headers(), url).filter(|n| n.origin() == url.origin());
                    Ok(Some((self.read_document(&Method::GET, url, resp).await?, next)))
                })
                .await?;
            let Some((body, link)) = page else { break };
            pages.push(body);
            next = link;
        }
        Ok((!pages.is_empty()).then_some(pages))
    }

    /// POST to `url` (an upload start, or a mount); the answer's status and upload location.
    async fn post_upload(&self, url: &Url, scopes: &[String]) -> Attempt<(StatusCode, Option<Url>)> {
        let (resp, _permit) =
            self.send(Method::POST, url, scopes, HeaderMap::new(), Some(&BlobData::Memory(Bytes::new()))).await?;
        match resp.status() {
            status @ (StatusCode::CREATED | StatusCode::ACCEPTED) => {
                let location =
                    resp.headers().get(reqwest::header::LOCATION).and_then(|l| url.join(l.to_str().ok()?).ok());
                Ok((status, location))
            }
            _ => Err(self.status_error(&Method::POST, url, resp).await),
        }
    }
}

#[async_trait]
impl Registry for RemoteRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_repositories(&self) -> Result<Vec<RepoName>> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let mut url = self
            .base
            .as_ref()
            .and_then(|base| base.join("_catalog").ok())
            .ok_or_else(|| self.invalid(format!("{:?} is not a usable registry host", self.host_name)))?;
        url.query_pairs_mut().append_pair("n", &self.client.opts.tags_page_size.to_string());
        let scopes = ["registry:catalog:*".to_string()];
        // An empty registry answers an empty list; 404 means there is no catalog to read.
        let pages =
            self.get_pages(url, &scopes, "application/json", &[StatusCode::NOT_FOUND]).await?.ok_or_else(|| {
                self.invalid(
                    "offers no catalog (GET /v2/_catalog answered 404 Not Found): name the repositories to read instead".into(),
                )
            })?;
        let under = self.prefix.as_ref().map(|p| format!("{p}/"));
        let mut repos = Vec::new();
        for page in pages {
            let catalog: Catalog = serde_json::from_slice(&page)
                .map_err(|e| self.invalid(format!("the catalog is not valid JSON: {e}")))?;
            for name in catalog.repositories.unwrap_or_default() {
                let relative = match &under {
                    Some(under) => match name.strip_prefix(under.as_str()) {
                        Some(rest) => rest,
                        None => continue,
                    },
                    None => name.as_str(),
                };
                match relative.parse::<RepoName>() {
                    Ok(repo) => repos.push(repo),
                    Err(_) => {
                        tracing::warn!(registry = %self.name, repository = %name, "skipping an invalid repository name in the catalog")
                    }
                }
            }
        }
        // Pages of a changing catalog can overlap.
        repos.sort();
        repos.dedup();
        Ok(repos)
    }

    async fn list_tags(&self, repo: &RepoName) -> Result<Vec<Tag>> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let full = self.full(repo);
        let mut url = self.url(&full, "tags/list")?;
        url.query_pairs_mut().append_pair("n", &self.client.opts.tags_page_size.to_string());
        let pages = self.get_pages(url, &[pull(&full)], "application/json", &[StatusCode::NOT_FOUND]).await?;
        let (mut tags, mut invalid) = (Vec::new(), Vec::new());
        for page in pages.unwrap_or_default() {
            let list: TagList = serde_json::from_slice(&page)
                .map_err(|e| self.invalid(format!("the tag list of {full} is not valid JSON: {e}")))?;
            for tag in list.tags.unwrap_or_default() {
                match tag.parse::<Tag>() {
                    Ok(t) => tags.push(t),
                    Err(_) => invalid.push(tag),
                }
            }
        }
        if !invalid.is_empty() {
            invalid.truncate(5);
            return Err(self.invalid(format!("{full} lists invalid tags, such as {invalid:?}")));
        }
        // Registries page in storage order; pages of a changing list can overlap.
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    async fn head_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<ManifestHead>> {
        let full = self.full(repo);
        let url = &self.url(&full, &format!("manifests/{reference}"))?;
        let scopes = &[pull(&full)];
        let head = self
            .retrying("HEAD manifest", move || async move {
                let (resp, _permit) =
                    self.send(Method::HEAD, url, scopes, accept(media_types::ACCEPT_ALL), None).await?;
                match resp.status() {
                    StatusCode::NOT_FOUND => return Ok(None),
                    s if s.is_success() => {}
                    _ => return Err(self.status_error(&Method::HEAD, url, resp).await),
                }
                let h = resp.headers();
                // Not `resp.content_length()`: a HEAD answer has no body, whatever its header says.
                let size = h.get(CONTENT_LENGTH).and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
                Ok(Some((header_digest(h), content_type(h), size)))
            })
            .await?;
        match head {
            None => Ok(None),
            Some((Some(digest), Some(media_type), Some(size))) => {
                if let Reference::Digest(expected) = reference {
                    if *expected != digest {
                        return Err(RegistryError::DigestMismatch {
                            registry: self.name.clone(),
                            what: format!("manifest {full}@{reference} (HEAD)"),
                            expected: expected.clone(),
                            actual: digest,
                        });
                    }
                }
                Ok(Some(ManifestHead { digest, media_type, size }))
            }
            // Some registries leave these headers out of HEAD answers: the manifest tells.
            Some(_) => Ok(self.get_manifest(repo, reference).await?.map(|m| ManifestHead {
                digest: m.digest,
                media_type: m.media_type,
                size: m.bytes.len() as u64,
            })),
        }
    }

    async fn get_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Manifest>> {
        let full = self.full(repo);
        let url = &self.url(&full, &format!("manifests/{reference}"))?;
        let scopes = &[pull(&full)];
        let fetched = self
            .retrying("GET manifest", move || async move {
                let (resp, _permit) =
                    self.send(Method::GET, url, scopes, accept(media_types::ACCEPT_ALL), None).await?;
                match resp.status() {
                    StatusCode::NOT_FOUND => return Ok(None),
                    s if s.is_success() => {}
                    _ => return Err(self.status_error(&Method::GET, url, resp).await),
                }
                let (served, media_type) = (header_digest(resp.headers()), content_type(resp.headers()));
                Ok(Some((served, media_type, self.read_document(&Method::GET, url, resp).await?)))
            })
            .await?;
        let Some((served, media_type, bytes)) = fetched else {
            return Ok(None);
        };
        let digest = Digest::of(&bytes);
        let expected = match reference {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => served.as_ref(),
        };
        if let Some(expected) = expected.filter(|e| **e != digest) {
            return Err(RegistryError::DigestMismatch {
                registry: self.name.clone(),
                what: format!("manifest {full}@{reference}"),
                expected: expected.clone(),
                actual: digest,
            });
        }
        let media_type = match media_type.filter(|t| t.starts_with("application/vnd.")) {
            Some(t) => t,
            // A generic or missing Content-Type: the document names its own type.
            None => ManifestRefs::parse(&digest, &bytes, None).map_err(|e| self.invalid(e.to_string()))?.media_type,
        };
        Ok(Some(Manifest { media_type, digest, bytes }))
    }

    async fn put_manifest(&self, repo: &RepoName, reference: &Reference, manifest: &Manifest) -> Result<Stored> {
        let full = &self.full(repo);
        let url = &self.url(full, &format!("manifests/{reference}"))?;
        let scopes = &[push(full)];
        let content_type = HeaderValue::from_str(&manifest.media_type)
            .map_err(|_| self.invalid(format!("media type {:?} cannot be sent", manifest.media_type)))?;
        let headers = &HeaderMap::from_iter([(CONTENT_TYPE, content_type)]);
        let body = &BlobData::Memory(manifest.bytes.clone());
        self.retrying("PUT manifest", move || async move {
            let (resp, _permit) = self.send(Method::PUT, url, scopes, headers.clone(), Some(body)).await?;
            if !resp.status().is_success() {
                return Err(self.status_error(&Method::PUT, url, resp).await);
            }
            match header_digest(resp.headers()) {
                Some(stored) if stored != manifest.digest => Err(RegistryError::DigestMismatch {
                    registry: self.name.clone(),
                    what: format!("manifest stored as {full}@{reference}"),
                    expected: manifest.digest.clone(),
                    actual: stored,
                }
                .into()),
                Some(_) => Ok(Stored::Confirmed),
                None => Ok(Stored::Unconfirmed),
            }
        })
        .await
    }

    async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let full = self.full(repo);
        let url = &self.url(&full, &format!("blobs/{digest}"))?;
        let scopes = &[pull(&full)];
        self.retrying("HEAD blob", move || async move {
            let (resp, _permit) = self.send(Method::HEAD, url, scopes, HeaderMap::new(), None).await?;
            match resp.status() {
                StatusCode::NOT_FOUND => Ok(false),
                s if s.is_success() => Ok(true),
                _ => Err(self.status_error(&Method::HEAD, url, resp).await),
            }
        })
        .await
    }

    async fn get_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobStream> {
        let full = &self.full(repo);
        let url = &self.url(full, &format!("blobs/{digest}"))?;
        let scopes = &[pull(full)];
        let (resp, permit) = self
            .retrying("GET blob", move || async move {
                let (resp, permit) = self.send(Method::GET, url, scopes, HeaderMap::new(), None).await?;
                match resp.status() {
                    s if s.is_success() => Ok((resp, permit)),
                    StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                        registry: self.name.clone(),
                        what: format!("blob {digest} in {full}"),
                    }
                    .into()),
                    _ => Err(self.status_error(&Method::GET, url, resp).await),
                }
            })
            .await?;
        let counters = self.client.counters.clone();
        counters.blob_gets.fetch_add(1, Relaxed);
        let context = format!("{}: reading blob {digest}", self.name);
        Ok(resp
            .bytes_stream()
            .map(move |chunk| {
                // The host's permit is held until the stream ends or is dropped.
                let _permit = &permit;
                let chunk = chunk.map_err(|e| std::io::Error::other(format!("{context}: {}", http::describe(e))))?;
                counters.blob_bytes_read.fetch_add(chunk.len() as u64, Relaxed);
                Ok(chunk)
            })
            .boxed())
    }

    async fn put_blob(&self, repo: &RepoName, digest: &Digest, data: &BlobData) -> Result<()> {
        let full = self.full(repo);
        let start = &self.url(&full, "blobs/uploads/")?;
        let scopes = &[push(&full)];
        let len = data.len().map_err(|source| RegistryError::Io {
            registry: self.name.clone(),
            path: "blob to upload".into(),
            source,
        })?;
        let headers = &HeaderMap::from_iter([
            (CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (CONTENT_LENGTH, HeaderValue::from(len)),
        ]);
        self.retrying("blob upload", move || async move {
            let mut location = match self.post_upload(start, scopes).await? {
                (StatusCode::ACCEPTED, Some(location)) => location,
                _ => return Err(self.invalid(format!("POST {start} answered no upload location")).into()),
            };
            location.query_pairs_mut().append_pair("digest", digest.as_str());
            let (resp, _permit) = self.send(Method::PUT, &location, scopes, headers.clone(), Some(data)).await?;
            if !resp.status().is_success() {
                return Err(self.status_error(&Method::PUT, &location, resp).await);
            }
            // A registry that names another digest than the one sent did not store this blob.
            match header_digest(resp.headers()) {
                Some(stored) if stored != *digest => Err(RegistryError::DigestMismatch {
                    registry: self.name.clone(),
                    what: format!("blob upload to {}", self.full(repo)),
                    expected: digest.clone(),
                    actual: stored,
                }
                .into()),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn mount_blob(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        let (full, from_full) = (self.full(repo), self.full(from));
        let mut url = self.url(&full, "blobs/uploads/")?;
        url.query_pairs_mut().append_pair("mount", digest.as_str()).append_pair("from", from_full.as_str());
        let (url, scopes) = (&url, &[push(&full), pull(&from_full)]);
        self.retrying("blob mount", move || async move {
            match self.post_upload(url, scopes).await? {
                (StatusCode::CREATED, _) => Ok(true),
                (_, location) => {
                    // Declined: an upload session was opened instead. Close it; it is only tidiness.
                    if let Some(location) = location {
                        let _ = self.send(Method::DELETE, &location, scopes, HeaderMap::new(), None).await;
                    }
                    Ok(false)
                }
            }
        })
        .await
    }

    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Index {
            media_type: Option<String>,
            manifests: Option<Vec<Descriptor>>,
        }
        // The distribution spec forbids a registry with the API to answer 404 (an unknown digest
        // gets an empty list), so one 404 or 405 speaks for the whole host.
        if self.host.lacks_referrers.load(Relaxed) {
            return Ok(None);
        }
        let full = self.full(repo);
        let url = self.url(&full, &format!("referrers/{digest}"))?;
        let absent = [StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED];
        let Some(pages) = self.get_pages(url, &[pull(&full)], media_types::OCI_INDEX, &absent).await? else {
            self.host.lacks_referrers.store(true, Relaxed);
            return Ok(None);
        };
        let mut referrers = Vec::new();
        for page in pages {
            match serde_json::from_slice::<Index>(&page) {
                Ok(Index { media_type, manifests: Some(m) })
                    if media_type.as_deref().is_none_or(|t| t == media_types::OCI_INDEX) =>
                {
                    referrers.extend(m)
                }
                // Something else answers on that path: the registry has no referrers API.
                _ => {
                    self.host.lacks_referrers.store(true, Relaxed);
                    return Ok(None);
                }
            }
        }
        Ok(Some(referrers))
    }
}
