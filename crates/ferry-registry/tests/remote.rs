//! `RemoteRegistry` against the real CNCF distribution registry (2.8), with the fault proxy in
//! between where a test needs what a real registry will not do on demand. Two protocols that
//! distribution cannot be set up to speak here (bearer token auth, redirects to another host) are
//! played by a minimal scripted HTTP server instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use ferry_oci::{media_types, Digest, Reference, RepoName};
use ferry_registry::auth::DockerCredentials;
use ferry_registry::remote::{RemoteClient, RemoteOptions, RemoteRegistry, Resolver};
use ferry_registry::{BlobData, Manifest, Registry, RegistryError};
use ferry_testkit::fault_proxy::{Fault, FaultProxy, FaultRule};
use ferry_testkit::images::repo;
use ferry_testkit::registry_server::RegistryServer;
use futures::{FutureExt, TryStreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Fast retries, and no credentials from the developer's own docker or podman login.
fn options() -> RemoteOptions {
    RemoteOptions {
        retry_base_delay: Duration::from_millis(10),
        credentials: Arc::new(DockerCredentials::from_files(Vec::<PathBuf>::new())),
        ..RemoteOptions::default()
    }
}

fn open(host: &str, opts: RemoteOptions) -> (Arc<RemoteClient>, RemoteRegistry) {
    let client = RemoteClient::new(opts).unwrap();
    let registry = client.registry(host, None);
    (client, registry)
}

fn tag(t: &str) -> Reference {
    Reference::Tag(t.parse().unwrap())
}

async fn read_blob(r: &dyn Registry, repo: &RepoName, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
    let chunks: Vec<Bytes> = r.get_blob(repo, digest).await?.try_collect().await.unwrap();
    Ok(chunks.concat())
}

fn layer_of(seed: &str) -> Bytes {
    format!("layer of {seed}\n").repeat(100).into()
}

/// Upload a config and a layer for `seed` and return an OCI manifest of them, laid out the way no
/// serialiser would (tabs, spaces, trailing newline) so that any re-serialisation shows.
async fn image(r: &dyn Registry, repo: &RepoName, seed: &str) -> Manifest {
    let config = Bytes::from(format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#));
    let layer = layer_of(seed);
    for blob in [&config, &layer] {
        r.put_blob(repo, &Digest::of(blob), &BlobData::Memory(blob.clone())).await.unwrap();
    }
    let json = format!(
        "{{\n\t\"schemaVersion\": 2,  \"mediaType\": \"{}\",\n\t\"config\": {{\"mediaType\": \
         \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{}\", \"size\": {}}},\n\t\"layers\": \
         [ {{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar\", \"digest\": \"{}\", \"size\": {}}} ]\n}}\n",
        media_types::OCI_MANIFEST,
        Digest::of(&config),
        config.len(),
        Digest::of(&layer),
        layer.len()
    );
    Manifest::new(media_types::OCI_MANIFEST, json)
}

#[tokio::test]
async fn tags_are_listed_sorted_and_absent_repositories_have_none() {
    let server = RegistryServer::start().await.unwrap();
    let (_, r) = open(&server.host(), options());
    let app = repo("app");
    let m = image(&r, &app, "tags").await;
    let want: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
    for t in want.iter().rev() {
        r.put_manifest(&app, &tag(t), &m).await.unwrap();
    }
    let got: Vec<String> = r.list_tags(&app).await.unwrap().iter().map(|t| t.to_string()).collect();
    assert_eq!(got, want);
    assert!(r.list_tags(&repo("absent")).await.unwrap().is_empty());
}

/// Distribution 2.8 ignores `n` on tag lists (it pages only its catalog), so pagination is
/// played by the scripted server: a relative link, an absolute one, then one to another host.
#[tokio::test]
async fn tags_pages_are_followed_on_the_same_host_only() {
    let (host, seen) = scripted(|req, own| {
        let (tags, link) = match req.target.as_str() {
            "/v2/app/tags/list?n=2" => (r#"["b","a"]"#, "</v2/app/tags/list?n=2&last=b>".to_string()),
            "/v2/app/tags/list?n=2&last=b" => (r#"["c","d"]"#, format!("<http://{own}/v2/app/tags/list?n=2&last=d>")),
            "/v2/app/tags/list?n=2&last=d" => {
                (r#"["e"]"#, "<http://127.0.0.2:1/v2/app/tags/list?n=2&last=e>".to_string())
            }
            "/v2/liar/tags/list?n=2" => (r#"["ok","../etc","-x"]"#, String::new()),
            _ => return (404, vec![], String::new()),
        };
        (200, vec![("Link", format!(r#"{link}; rel="next""#))], format!(r#"{{"name":"app","tags":{tags}}}"#))
    })
    .await;
    let (_, r) = open(&host, RemoteOptions { tags_page_size: 2, ..options() });
    let got: Vec<String> = r.list_tags(&repo("app")).await.unwrap().iter().map(|t| t.to_string()).collect();
    assert_eq!(got, ["a", "b", "c", "d", "e"]);
    assert_eq!(seen.lock().unwrap().len(), 3);
    let err = r.list_tags(&repo("liar")).await.unwrap_err().to_string();
    assert!(err.contains("\"../etc\", \"-x\"") && !err.contains("\"ok\""), "{err}");
}

#[tokio::test]
async fn manifests_round_trip_byte_exact_and_absence_is_not_an_error() {
    let server = RegistryServer::start().await.unwrap();
    let (_, r) = open(&server.host(), options());
    let app = repo("team/app");
    let m = image(&r, &app, "exact").await;
    r.put_manifest(&app, &tag("v1"), &m).await.unwrap();
    let index_json = format!(
        "{{ \"schemaVersion\":2, \"mediaType\":\"{}\", \"manifests\":[{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{},\
         \"platform\":{{\"architecture\":\"amd64\",\"os\":\"linux\"}}}}] }}",
        media_types::OCI_INDEX,
        m.media_type,
        m.digest,
        m.bytes.len()
    );
    let index = Manifest::new(media_types::OCI_INDEX, index_json);
    r.put_manifest(&app, &Reference::Digest(index.digest.clone()), &index).await.unwrap();

    for (reference, want) in
        [(tag("v1"), &m), (Reference::Digest(m.digest.clone()), &m), (Reference::Digest(index.digest.clone()), &index)]
    {
        let got = r.get_manifest(&app, &reference).await.unwrap().unwrap();
        assert_eq!((&got.bytes, &got.digest, &got.media_type), (&want.bytes, &want.digest, &want.media_type));
        let head = r.head_manifest(&app, &reference).await.unwrap().unwrap();
        assert_eq!(
            (&head.digest, head.size, &head.media_type),
            (&want.digest, want.bytes.len() as u64, &want.media_type)
        );
    }

    let missing = Digest::of(b"missing");
    for repo in [&app, &repo("absent")] {
        assert_eq!(r.head_manifest(repo, &tag("nope")).await.unwrap(), None);
        assert_eq!(r.head_manifest(repo, &Reference::Digest(missing.clone())).await.unwrap(), None);
        assert!(r.get_manifest(repo, &tag("nope")).await.unwrap().is_none());
        assert!(r.get_manifest(repo, &Reference::Digest(missing.clone())).await.unwrap().is_none());
        assert!(!r.has_blob(repo, &missing).await.unwrap());
        assert!(matches!(r.get_blob(repo, &missing).await, Err(RegistryError::NotFound { .. })));
    }
    // Distribution 2.8 predates the referrers API.
    assert_eq!(r.referrers(&app, &m.digest).await.unwrap(), None);
}

#[tokio::test]
async fn blobs_upload_download_and_mount_under_a_prefix() {
    let server = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let client = RemoteClient::new(options()).unwrap();
    let r = client.registry(&proxy.host(), Some(repo("prefix")));
    assert_eq!(r.name(), format!("{}/prefix", proxy.host()));
    let (app, other) = (repo("app"), repo("other"));

    let small = Bytes::from_static(b"small blob");
    let big = Bytes::from((0..(2 << 20)).map(|i: u32| (i % 251) as u8).collect::<Vec<u8>>());
    let spool = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spool.path(), &big).unwrap();
    r.put_blob(&app, &Digest::of(&small), &BlobData::Memory(small.clone())).await.unwrap();
    r.put_blob(&app, &Digest::of(&big), &BlobData::File(Arc::new(spool.into_temp_path()))).await.unwrap();
    assert!(proxy.requests().iter().all(|(_, path)| path.starts_with("/v2/prefix/app/")));

    let before = client.stats();
    assert_eq!(read_blob(&r, &app, &Digest::of(&small)).await.unwrap(), small.as_ref());
    assert_eq!(read_blob(&r, &app, &Digest::of(&big)).await.unwrap(), big.as_ref());
    let after = client.stats();
    assert_eq!(after.blob_gets - before.blob_gets, 2);
    assert_eq!(after.blob_bytes_read - before.blob_bytes_read, (small.len() + big.len()) as u64);

    assert!(r.mount_blob(&other, &Digest::of(&big), &app).await.unwrap());
    assert_eq!(proxy.count("POST", "from=prefix%2Fapp"), 1);
    assert!(r.has_blob(&other, &Digest::of(&big)).await.unwrap());
    // Declined (nothing to mount): the upload session the registry opened instead is closed.
    assert!(!r.mount_blob(&other, &Digest::of(b"absent"), &app).await.unwrap());
    assert_eq!(proxy.count("DELETE", "/v2/prefix/other/blobs/uploads/"), 1);

    // A blob that is not what its digest says is refused, and the error says who refused it.
    let err = r.put_blob(&app, &Digest::of(b"other bytes"), &BlobData::Memory(small)).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&r.name().to_string()) && message.contains("DIGEST_INVALID"), "{message}");
    assert!(!message.contains("_state"), "upload state leaked into {message}");
}

/// Distribution 2.8 has no referrers API and answers 404; the spec forbids that answer from a
/// registry that has it, so the host is not asked again, under any prefix or repository.
#[tokio::test]
async fn a_host_without_the_referrers_api_is_asked_once() {
    let server = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let client = RemoteClient::new(options()).unwrap();
    let (a, b) = (client.registry(&proxy.host(), Some(repo("a"))), client.registry(&proxy.host(), None));
    let digest = Digest::of(b"subject");
    assert_eq!(a.referrers(&repo("app"), &digest).await.unwrap(), None);
    assert_eq!(a.referrers(&repo("other"), &digest).await.unwrap(), None);
    assert_eq!(b.referrers(&repo("app"), &digest).await.unwrap(), None);
    assert_eq!(proxy.count("GET", "/referrers/"), 1);
}

#[tokio::test]
async fn basic_auth_with_credentials_from_an_auth_file() {
    let server = RegistryServer::start_with_htpasswd("ferry", "s3cret").await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write_auth = |name: &str, user_pass: &str| {
        let path = dir.path().join(name);
        let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
        std::fs::write(&path, format!(r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#, proxy.host())).unwrap();
        Arc::new(DockerCredentials::from_files([path]))
    };
    let app = repo("app");

    let (_, r) =
        open(&proxy.host(), RemoteOptions { credentials: write_auth("good.json", "ferry:s3cret"), ..options() });
    let m = image(&r, &app, "auth").await;
    r.put_manifest(&app, &tag("v1"), &m).await.unwrap();
    assert_eq!(r.list_tags(&app).await.unwrap().len(), 1);
    // Once challenged, requests carry the credentials from the start: no 401 round trips.
    proxy.reset_counts();
    for _ in 0..3 {
        assert!(r.has_blob(&app, &Digest::of(b"x")).await.is_ok_and(|has| !has));
    }
    assert_eq!(proxy.requests().len(), 3, "{:?}", proxy.requests());

    for (what, opts) in [
        ("anonymous", options()),
        ("wrong password", RemoteOptions { credentials: write_auth("bad.json", "ferry:wrong"), ..options() }),
    ] {
        let (client, r) = open(&proxy.host(), opts);
        match r.list_tags(&app).await {
            Err(RegistryError::Denied { status: 401, .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(client.stats().retries, 0, "{what}: denial is not retried");
    }
}

#[tokio::test]
async fn throttling_is_retried_after_the_time_the_registry_asks() {
    let server = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let (client, r) = open(&proxy.host(), options());
    let app = repo("app");
    let m = image(&r, &app, "throttled").await;
    r.put_manifest(&app, &tag("v1"), &m).await.unwrap();
    proxy.add_fault(FaultRule {
        method: Some("GET".into()),
        path_contains: "/tags/list".into(),
        times: 1,
        fault: Fault::Status { status: 429, retry_after: Some("1".into()) },
    });
    let started = Instant::now();
    assert_eq!(r.list_tags(&app).await.unwrap().len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was not honoured");
    assert_eq!(client.stats().retries, 1);
    assert_eq!(proxy.count("GET", "/tags/list"), 2);
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried() {
    let server = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let (client, r) = open(&proxy.host(), options());
    let app = repo("app");
    let m = image(&r, &app, "flaky").await;
    r.put_manifest(&app, &tag("v1"), &m).await.unwrap();
    let fault = |method: &str, path: &str, times, fault| {
        proxy.add_fault(FaultRule { method: Some(method.into()), path_contains: path.into(), times, fault })
    };
    let unavailable = Fault::Status { status: 503, retry_after: None };
    fault("HEAD", "/manifests/", 2, unavailable.clone());
    fault("GET", "/blobs/sha256:", 1, Fault::Reset);
    fault("PUT", "/blobs/uploads/", 1, Fault::Status { status: 500, retry_after: None });

    let head = r.head_manifest(&app, &tag("v1")).await.unwrap().unwrap();
    assert_eq!((head.digest, head.size), (m.digest.clone(), m.bytes.len() as u64));
    // The proxy passed the HEAD answer's headers through: no GET was needed to fill them in.
    assert_eq!(proxy.count("GET", "/manifests/"), 0);
    let layer = layer_of("flaky");
    assert_eq!(read_blob(&r, &app, &Digest::of(&layer)).await.unwrap(), layer.as_ref());
    proxy.reset_counts();
    let fresh = Bytes::from_static(b"fresh");
    r.put_blob(&app, &Digest::of(&fresh), &BlobData::Memory(fresh.clone())).await.unwrap();
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 2, "a retried upload starts over");
    assert_eq!(client.stats().retries, 4);

    // Retries run out: the last error is returned, naming the request and the registry's words.
    let (client, r) = open(&proxy.host(), RemoteOptions { retries: 2, ..options() });
    fault("GET", "/manifests/v1", usize::MAX, unavailable);
    match r.get_manifest(&app, &tag("v1")).await {
        Err(e @ RegistryError::Http { status: 503, .. }) => {
            let message = e.to_string();
            assert!(message.contains(&format!("GET http://{}/v2/app/manifests/v1", proxy.host())), "{message}");
            assert!(message.contains("injected by the fault proxy"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.stats().retries, 2);
}

#[tokio::test]
async fn corrupted_bodies_reach_the_caller_or_fail_verification() {
    let server = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let (_, r) = open(&proxy.host(), options());
    let app = repo("app");
    let m = image(&r, &app, "corrupt").await;
    r.put_manifest(&app, &tag("v1"), &m).await.unwrap();
    proxy.add_fault(FaultRule {
        method: None,
        path_contains: "/blobs/sha256:".into(),
        times: 1,
        fault: Fault::CorruptBody,
    });
    proxy.add_fault(FaultRule {
        method: None,
        path_contains: "/manifests/".into(),
        times: 2,
        fault: Fault::CorruptBody,
    });

    // Blobs are verified by the caller as it reads: the bytes arrive as served.
    let layer = layer_of("corrupt");
    let got = read_blob(&r, &app, &Digest::of(&layer)).await.unwrap();
    assert_eq!(got.len(), layer.len());
    assert_ne!(got, layer.as_ref());
    // Manifests are verified here: by the digest asked for, or by the one the registry announced.
    for reference in [Reference::Digest(m.digest.clone()), tag("v1")] {
        match r.get_manifest(&app, &reference).await {
            Err(RegistryError::DigestMismatch { expected, .. }) => assert_eq!(expected, m.digest),
            other => panic!("{reference}: {other:?}"),
        }
    }
    assert_eq!(r.get_manifest(&app, &tag("v1")).await.unwrap().unwrap().bytes, m.bytes);
}

#[tokio::test]
async fn requests_per_host_are_limited() {
    let server = RegistryServer::start().await.unwrap();
    let (_, r) = open(&server.host(), RemoteOptions { max_concurrent_requests: 1, ..options() });
    let app = repo("app");
    let blob = Bytes::from_static(b"held");
    let digest = Digest::of(&blob);
    r.put_blob(&app, &digest, &BlobData::Memory(blob)).await.unwrap();

    // An open blob stream holds the host's only permit.
    let stream = r.get_blob(&app, &digest).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(300), r.has_blob(&app, &digest));
    assert!(waiting.await.is_err(), "a second request ran alongside the open stream");
    drop(stream);
    assert!(r.has_blob(&app, &digest).await.unwrap());

    let (_, r) = open(&server.host(), RemoteOptions { max_requests_per_second: Some(20.0), ..options() });
    let started = Instant::now();
    for _ in 0..11 {
        assert!(r.has_blob(&app, &digest).await.unwrap());
    }
    assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
}

/// Answers the first `failures` look-ups as DNS answers `*.invalid` (RFC 6761: it never exists),
/// every later one with 127.0.0.1, and counts them: no test query leaves the machine.
struct LoopbackResolver {
    failures: usize,
    lookups: AtomicUsize,
}

impl LoopbackResolver {
    fn new(failures: usize) -> Arc<Self> {
        Arc::new(LoopbackResolver { failures, lookups: AtomicUsize::new(0) })
    }

    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl reqwest::dns::Resolve for LoopbackResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let answer = if self.lookups.fetch_add(1, Ordering::SeqCst) < self.failures {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} does not exist", name.as_str())).into())
        } else {
            // The port is the URL's.
            Ok(Box::new(std::iter::once(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))) as reqwest::dns::Addrs)
        };
        Box::pin(async move { answer })
    }
}

/// A loopback `host:port` where nothing listens: connections are refused at once.
async fn refusing_host() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Many requests of every kind, at once, to two prefixes of `host`; their results in order.
async fn many_requests(client: &Arc<RemoteClient>, host: &str) -> Vec<Result<(), RegistryError>> {
    let registries = [client.registry(host, Some(repo("a"))), client.registry(host, Some(repo("b")))];
    let blob = Bytes::from_static(b"blob");
    let digest = Digest::of(&blob);
    let requests = (0..64).map(|i| {
        let (r, app) = (&registries[i % 2], repo(&format!("app{i}")));
        let (blob, digest) = (blob.clone(), digest.clone());
        async move {
            match i % 4 {
                0 => r.head_manifest(&app, &tag("v1")).await.map(drop),
                1 => r.list_tags(&app).await.map(drop),
                2 => r.has_blob(&app, &digest).await.map(drop),
                _ => r.put_blob(&app, &digest, &BlobData::Memory(blob)).await,
            }
        }
        .boxed()
    });
    futures::future::join_all(requests).await
}

#[tokio::test]
async fn an_unreachable_host_is_tried_once_then_its_requests_fail_at_once() {
    let refusing = refusing_host().await;
    for (host, retries) in
        [("registry.invalid", 0), ("registry.invalid", 2), (refusing.as_str(), 0), (refusing.as_str(), 2)]
    {
        let resolver = LoopbackResolver::new(usize::MAX);
        let opts = RemoteOptions { retries, resolver: Some(Resolver(resolver.clone())), ..options() };
        let client = RemoteClient::new(opts).unwrap();
        let case = format!("{host} with {retries} retries");
        let mut messages = Vec::new();
        for result in many_requests(&client, host).await.into_iter().chain(many_requests(&client, host).await) {
            match result {
                Err(e @ RegistryError::Unreachable { .. }) => messages.push(e.to_string()),
                other => panic!("{case}: {other:?}"),
            }
        }
        let attempts = retries as u64 + 1;
        assert_eq!(client.stats().requests, attempts, "{case}: connect attempts");
        assert_eq!(client.stats().retries, retries as u64, "{case}");
        let lookups = if host == refusing { 0 } else { attempts as usize };
        assert_eq!(resolver.lookups(), lookups, "{case}: DNS look-ups");
        // One request met the failure; every other one reports it without being sent.
        let (tried, not_tried): (Vec<_>, Vec<_>) = messages.iter().partition(|m| !m.contains("not tried"));
        assert_eq!(tried.len(), 1, "{case}: {messages:#?}");
        let first = tried[0].split_once(" is unreachable: ").unwrap().1;
        assert!(first.contains(if host == refusing { "Connection refused" } else { "does not exist" }), "{first}");
        for message in &not_tried {
            assert!(message.ends_with(first), "{case}: {message} does not carry {first}");
        }
    }
}

#[tokio::test]
async fn a_host_that_cannot_be_connected_to_at_first_is_retried_and_kept() {
    let server = RegistryServer::start().await.unwrap();
    let host = format!("registry.test:{}", server.host().rsplit_once(':').unwrap().1);
    let resolver = LoopbackResolver::new(1);
    let opts = RemoteOptions {
        retries: 1,
        plain_http_hosts: vec![host.clone()],
        resolver: Some(Resolver(resolver.clone())),
        ..options()
    };
    let client = RemoteClient::new(opts).unwrap();
    for result in many_requests(&client, &host).await {
        result.unwrap();
    }
    assert!(resolver.lookups() >= 2);
    assert_eq!(client.stats().retries, 1, "only the first request met the failure, and retried");
}

#[tokio::test]
async fn server_errors_and_resets_do_not_make_a_host_unreachable() {
    let server = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let (client, r) = open(&proxy.host(), RemoteOptions { retries: 0, ..options() });
    let app = repo("app");
    let layer = layer_of("answered");
    let digest = &Digest::of(&layer);
    r.put_blob(&app, digest, &BlobData::Memory(layer.clone())).await.unwrap();
    for (fault, path) in
        [(Fault::Status { status: 503, retry_after: None }, "/tags/list"), (Fault::Reset, "/blobs/sha256:")]
    {
        proxy.add_fault(FaultRule { method: Some("GET".into()), path_contains: path.into(), times: 8, fault });
    }
    let failures = futures::future::join_all((0..8).flat_map(|_| {
        [r.list_tags(&app).map(|t| t.map(drop)).boxed(), read_blob(&r, &app, digest).map(|b| b.map(drop)).boxed()]
    }))
    .await;
    for failure in failures {
        assert!(
            matches!(failure, Err(RegistryError::Http { status: 503, .. } | RegistryError::Unreachable { .. })),
            "{failure:?}"
        );
    }
    // Every request reached the host, and it still takes requests.
    assert_eq!((proxy.count("GET", "/tags/list"), proxy.blob_gets()), (8, 8));
    assert_eq!(read_blob(&r, &app, digest).await.unwrap(), layer.as_ref());
    assert!(r.list_tags(&app).await.unwrap().is_empty());
    assert_eq!(client.stats().retries, 0);
}

/// One request as the scripted server saw it.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    headers: HashMap<String, String>,
}

/// A scripted HTTP/1.1 server: every connection gets one answer, `(status, headers, body)`, from
/// `respond(request, own host)`.
async fn scripted<F>(respond: F) -> (String, Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(&Seen, &str) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (own, log) = (host.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            let target = line.split(' ').nth(1).unwrap_or_default().to_string();
            let mut headers = HashMap::new();
            loop {
                line.clear();
                stream.read_line(&mut line).await.unwrap();
                match line.trim_end().split_once(": ") {
                    Some((name, value)) => headers.insert(name.to_ascii_lowercase(), value.to_string()),
                    None => break,
                };
            }
            let request = Seen { target, headers };
            log.lock().unwrap().push(request.clone());
            let (status, headers, body) = respond(&request, &own);
            let mut answer = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (name, value) in headers {
                answer += &format!("{name}: {value}\r\n");
            }
            answer += &format!("\r\n{body}");
            stream.write_all(answer.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
        }
    });
    (host, seen)
}

fn credentials_for(host: &str, user_pass: &str) -> Arc<DockerCredentials> {
    let file = tempfile::NamedTempFile::new().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
    std::fs::write(file.path(), format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)).unwrap();
    Arc::new(DockerCredentials::from_files([file.path()]))
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_credentials_and_cached_per_scope() {
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("robot:pw"));
    let (host, seen) = scripted(move |req, own| {
        if req.target.starts_with("/token?") {
            let ok = req.headers.get("authorization") == Some(&basic);
            return if ok {
                (200, vec![], r#"{"access_token":"tok-1","expires_in":300}"#.into())
            } else {
                (401, vec![], String::new())
            };
        }
        if req.headers.get("authorization").map(String::as_str) == Some("Bearer tok-1") {
            return (200, vec![], r#"{"name":"app","tags":["a","b"]}"#.into());
        }
        let challenge = format!(r#"Bearer realm="http://{own}/token",service="fake",scope="repository:app:pull""#);
        (401, vec![("WWW-Authenticate", challenge)], String::new())
    })
    .await;
    let (_, r) = open(&host, RemoteOptions { credentials: credentials_for(&host, "robot:pw"), ..options() });
    for _ in 0..2 {
        assert_eq!(r.list_tags(&repo("app")).await.unwrap().len(), 2);
    }
    let seen = seen.lock().unwrap().clone();
    let tokens: Vec<_> = seen.iter().filter(|s| s.target.starts_with("/token?")).collect();
    assert_eq!(tokens.len(), 1, "{seen:#?}");
    assert_eq!(tokens[0].target, "/token?service=fake&scope=repository%3Aapp%3Apull");
    assert_eq!(seen.len(), 4, "one challenge, one token, two authorised requests: {seen:#?}");

    let (_, r) = open(&host, RemoteOptions { credentials: credentials_for(&host, "robot:wrong"), ..options() });
    assert!(matches!(r.list_tags(&repo("app")).await, Err(RegistryError::Denied { .. })));
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_host() {
    let (storage, storage_seen) = scripted(|_, _| (200, vec![], "blob bytes".into())).await;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("robot:pw"));
    let (host, _) = scripted(move |req, _| match req.headers.get("authorization") {
        Some(auth) if *auth == basic => {
            (307, vec![("Location", format!("http://{storage}/signed?sig=x"))], String::new())
        }
        _ => (401, vec![("WWW-Authenticate", r#"Basic realm="fake""#.to_string())], String::new()),
    })
    .await;
    let (_, r) = open(&host, RemoteOptions { credentials: credentials_for(&host, "robot:pw"), ..options() });
    assert_eq!(read_blob(&r, &repo("app"), &Digest::of(b"blob bytes")).await.unwrap(), b"blob bytes");
    let storage_seen = storage_seen.lock().unwrap().clone();
    assert_eq!(storage_seen.len(), 1);
    assert!(!storage_seen[0].headers.contains_key("authorization"), "{storage_seen:?}");
}
