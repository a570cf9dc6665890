//! Proxy mode (case 12b of docs/request-handling.md): for clients on the `proxy` list, and for
//! mirrors with `proxy: true`, Ferry streams the bytes of the redirect's target itself. Real
//! parts: skopeo, a real registry as the upstream and another as the mirror, each behind a
//! counting (and, for one test, corrupting) HTTP proxy.

use std::sync::Arc;

use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_serve::{run, AccessLog, AppState, Snapshot};
use ferry_testkit::fault_proxy::{Fault, FaultProxy, FaultRule};
use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;
use ferry_testkit::skopeo::{assert_pulled_byte_exact, pull_all};

/// Collects the access log.
#[derive(Clone, Default)]
struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ferry on `ferry.yaml` in `dir`; its address and state.
async fn start(dir: &std::path::Path, log: AccessLog) -> (String, Arc<AppState>) {
    let state = Arc::new(AppState::new(Snapshot::load(&dir.join("ferry.yaml")).unwrap()).with_access_log(log));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(run(listener, state.clone()));
    (address, state)
}

/// A client that shows redirects rather than following them.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn skopeo_pulls_through_ferry_in_proxy_mode_and_never_sees_the_mirror() {
    let upstream = RegistryServer::start().await.unwrap();
    let mirror = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("proxied", 256 * 1024, 8 * 1024).build();
    let client = RemoteClient::new(RemoteOptions::default()).unwrap();
    push(&client.registry(&upstream.host(), Some(repo("staging"))), &repo("app"), &image, &["v1"]).await.unwrap();
    push(&client.registry(&mirror.host(), None), &repo("blobs"), &image, &["v1"]).await.unwrap();
    let upstream_proxy = FaultProxy::start(&upstream.host()).await.unwrap();
    let mirror_proxy = FaultProxy::start(&mirror.host()).await.unwrap();

    let (missing, listed) = image.blobs.split_last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory: String = listed.iter().map(|b| format!("{}\n", b.digest)).collect();
    std::fs::write(dir.path().join("inventory.txt"), inventory).unwrap();
    // Clients at 127.0.0.1 are proxied; behind the trusted proxy 127.0.0.1, the address in
    // X-Forwarded-For decides (198.51.100.7 is not on the list).
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "trusted_proxies: ['127.0.0.1']\nproxy: ['127.0.0.1/32', 'corp:*']\nupstream:\n  registry: http://{}/staging\n\
             mirrors:\n  - name: local\n    blobs: http://{}/v2/blobs/blobs/{{digest}}\n    serves: [\"*\"]\n    \
             inventory: inventory.txt\n",
            upstream_proxy.host(),
            mirror_proxy.host()
        ),
    )
    .unwrap();
    let log = Buffer::default();
    let (address, state) = start(dir.path(), AccessLog::to_writer(Box::new(log.clone()))).await;

    // (1) skopeo pulls the whole image through Ferry; every byte came through Ferry.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("pulled");
    let source = format!("docker://{address}/app:v1");
    let pulled = target.clone();
    tokio::task::spawn_blocking(move || pull_all(&source, &pulled)).await.unwrap();
    assert_pulled_byte_exact(&target, &image);
    assert_eq!(mirror_proxy.blob_gets(), listed.len(), "{:?}", mirror_proxy.requests());
    let upstream_blobs: Vec<_> =
        upstream_proxy.requests().into_iter().filter(|(m, p)| m == "GET" && p.contains("/blobs/")).collect();
    assert_eq!(upstream_blobs.len(), 1, "{upstream_blobs:?}");
    assert!(upstream_blobs[0].1.contains(missing.digest.as_str()));
    assert!(upstream_proxy.count("GET", "/manifests/") >= 1);
    state.access_log().flush();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let outcomes: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["outcome"].as_str()).collect();
    // `/v2/` is Ferry's own answer (ok); everything else was streamed.
    assert!(outcomes.iter().filter(|o| **o == "proxied").count() > image.blobs.len(), "{outcomes:?}");
    assert!(outcomes.iter().all(|o| *o == "proxied" || *o == "ok"), "{outcomes:?}");
    assert!(lines.iter().all(|l| l["fields"]["status"].as_u64() != Some(307)), "{text}");

    // A raw client: 200 with the bytes, no Location, from the mirror.
    let raw = raw_client();
    let blob = listed.iter().max_by_key(|b| b.bytes.len()).unwrap();
    let before = mirror_proxy.blob_gets();
    let r = raw.get(format!("http://{address}/v2/app/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(r.headers()["content-length"], blob.bytes.len().to_string().as_str());
    assert_eq!(&r.bytes().await.unwrap()[..], &blob.bytes[..]);
    assert_eq!(mirror_proxy.blob_gets(), before + 1);
    // HEAD: the length, no body.
    let r = raw.head(format!("http://{address}/v2/app/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["content-length"].to_str().unwrap()),
        (200, &*blob.bytes.len().to_string())
    );

    // (3) Range: 206 with the slice and its Content-Range.
    let r = raw
        .get(format!("http://{address}/v2/app/blobs/{}", blob.digest))
        .header("range", "bytes=1000-5999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 1000-5999/{}", blob.bytes.len()).as_str());
    assert_eq!(&r.bytes().await.unwrap()[..], &blob.bytes[1000..6000]);
    // An unsatisfiable range: the origin's 416.
    let r = raw
        .get(format!("http://{address}/v2/app/blobs/{}", blob.digest))
        .header("range", format!("bytes={}-", blob.bytes.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    // An unknown blob: the origin's 404, relayed (the upstream answers it).
    let unknown = format!("sha256:{}", "e".repeat(64));
    let r = raw.get(format!("http://{address}/v2/app/blobs/{unknown}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("location").is_none());

    // (4) A client not on the list still gets the 307 to the mirror.
    let r = raw
        .get(format!("http://{address}/v2/app/blobs/{}", blob.digest))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"],
        format!("http://{}/v2/blobs/blobs/{}", mirror_proxy.host(), blob.digest).as_str()
    );
    // ... on the hyper path too (a request the lean path hands over: HTTP/1.1 with a body).
    let r = raw
        .get(format!("http://{address}/v2/app/manifests/v1"))
        .header("x-forwarded-for", "198.51.100.7")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);

    let metrics = raw.get(format!("http://{address}/metrics")).send().await.unwrap().text().await.unwrap();
    let proxied_bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferry_serve_proxied_bytes_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    let total: usize = image.blobs.iter().map(|b| b.bytes.len()).sum();
    assert!(proxied_bytes >= total as u64, "{proxied_bytes} < {total}");
    assert!(metrics.contains("ferry_serve_requests_total{outcome=\"proxied\"}"), "{metrics}");
}

#[tokio::test]
async fn wrong_bytes_from_a_mirror_abort_the_client_and_withdraw_the_mirror_copy() {
    let upstream = RegistryServer::start().await.unwrap();
    let mirror = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("corrupt", 512 * 1024, 8 * 1024).build();
    let client = RemoteClient::new(RemoteOptions::default()).unwrap();
    push(&client.registry(&upstream.host(), Some(repo("staging"))), &repo("app"), &image, &["v1"]).await.unwrap();
    push(&client.registry(&mirror.host(), None), &repo("blobs"), &image, &["v1"]).await.unwrap();
    let upstream_proxy = FaultProxy::start(&upstream.host()).await.unwrap();
    let mirror_proxy = FaultProxy::start(&mirror.host()).await.unwrap();
    let blob = image.blobs.iter().max_by_key(|b| b.bytes.len()).unwrap();
    // The mirror flips bytes of that blob (same length), every time.
    mirror_proxy.add_fault(FaultRule {
        method: Some("GET".into()),
        path_contains: blob.digest.as_str().into(),
        times: 100,
        fault: Fault::CorruptBody,
    });
    let dir = tempfile::tempdir().unwrap();
    let inventory: String = image.blobs.iter().map(|b| format!("{}\n", b.digest)).collect();
    std::fs::write(dir.path().join("inventory.txt"), inventory).unwrap();
    // No client list: the mirror itself is proxied (`proxy: true`).
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "upstream:\n  registry: http://{}/staging\nmirrors:\n  - name: flaky\n    \
             blobs: http://{}/v2/blobs/blobs/{{digest}}\n    serves: [\"*\"]\n    inventory: inventory.txt\n    proxy: true\n",
            upstream_proxy.host(),
            mirror_proxy.host()
        ),
    )
    .unwrap();
    let (address, _state) = start(dir.path(), AccessLog::off()).await;
    let raw = raw_client();
    let url = format!("http://{address}/v2/app/blobs/{}", blob.digest);

    // The client is cut off before the last byte: fewer bytes than Content-Length, and an error.
    let mut r = raw.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    let length: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(length, blob.bytes.len());
    let mut received = 0;
    let ended = loop {
        match r.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(ended.is_err(), "the body must end in an error, got {received} of {length} bytes and a clean end");
    assert!(received < length, "{received} of {length}");
    assert_eq!(mirror_proxy.blob_gets(), 1);

    // The next request for that digest does not go to that mirror: the upstream's 307.
    let r = raw.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("http://{}/v2/staging/app/blobs/", upstream_proxy.host())), "{location}");
    assert_eq!(mirror_proxy.blob_gets(), 1, "no further request to the mirror that served wrong bytes");
    // ... and /debug/route says why.
    let debug = raw
        .get(format!("http://{address}/debug/route?ip=127.0.0.1&digest={}", blob.digest))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(debug.contains("did not match the digest"), "{debug}");
    // Other blobs of the mirror are still proxied from it, whole and checked.
    let other = image.blobs.iter().find(|b| b.digest != blob.digest).unwrap();
    let r = raw.get(format!("http://{address}/v2/app/blobs/{}", other.digest)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], &other.bytes[..]);
    let metrics = raw.get(format!("http://{address}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ferry_serve_proxy_digest_mismatches_total 1"), "{metrics}");
}

#[tokio::test]
async fn proxy_max_streams_answers_503_past_it_and_bad_proxy_entries_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    for (text, field) in [
        ("proxy: ['10.0.0.0/33']\n", "proxy[0]"),
        ("proxy: ['ok', 'bad label!']\n", "proxy[1]"),
        ("proxy_max_streams: 0\n", "proxy_max_streams"),
    ] {
        std::fs::write(dir.path().join("ferry.yaml"), format!("{text}upstream: {{registry: 'https://r.example'}}\n"))
            .unwrap();
        let e = Snapshot::load(&dir.path().join("ferry.yaml")).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{field}: ")), "{e}");
    }

    // A slow origin holds the one stream; a second request is 503 with Retry-After.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        let body = futures::stream::unfold(0, |i| async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            (i < 3).then(|| (Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"chunk")), i + 1))
        });
        axum::body::Body::from_stream(body)
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "proxy: ['*']\nproxy_max_streams: 1\nupstream: {{registry: 'https://r.example', files: 'http://{origin}/rel/'}}\n"
        ),
    )
    .unwrap();
    let (address, _state) = start(dir.path(), AccessLog::off()).await;
    let raw = raw_client();
    let first = raw.get(format!("http://{address}/bin/tool")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = raw.get(format!("http://{address}/bin/tool")).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_eq!(&first.bytes().await.unwrap()[..], b"chunkchunkchunk");
    let third = raw.get(format!("http://{address}/bin/tool")).send().await.unwrap();
    assert_eq!(third.status(), 200, "the permit is back once the stream ended");
}

#[tokio::test]
async fn the_origins_own_redirect_is_followed_by_ferry_never_shown_to_the_client() {
    // A "bucket" holding a blob, and a registry that redirects every blob request to it.
    let bytes = ferry_testkit::images::random_bytes(7, 300_000);
    let digest = ferry_oci::Digest::of(&bytes);
    let bucket_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bucket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bucket_address = bucket.local_addr().unwrap();
    let (served, hits) = (bytes.clone(), bucket_hits.clone());
    let app = axum::Router::new().fallback(move || {
        hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let served = served.clone();
        async move { served }
    });
    tokio::spawn(async move { axum::serve(bucket, app).await.unwrap() });
    let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_address = registry.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || async move {
        axum::response::Redirect::temporary(&format!("http://{bucket_address}/bucket/object"))
    });
    tokio::spawn(async move { axum::serve(registry, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!("proxy: ['*']\nupstream: {{registry: 'http://{registry_address}/images'}}\n"),
    )
    .unwrap();
    let (address, _state) = start(dir.path(), AccessLog::off()).await;
    let r = raw_client().get(format!("http://{address}/v2/app/blobs/{digest}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..], "whole, and checked against the digest");
    assert_eq!(bucket_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
