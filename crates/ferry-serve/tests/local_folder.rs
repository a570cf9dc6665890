//! The embedded default: a mirror whose `blobs`/`files` is a local folder is served by Ferry
//! itself (case 3a of docs/request-handling.md). skopeo pulls a multi-arch image through
//! `ferry serve` from a real registry: blobs in the folder come from Ferry, the one missing from
//! the folder from the upstream, and the image is byte-identical.

use std::sync::Arc;

use ferry_oci::Digest;
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_serve::{run, AccessLog, AppState, Snapshot};
use ferry_testkit::fault_proxy::FaultProxy;
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

async fn start(dir: &std::path::Path, log: AccessLog) -> (String, Arc<AppState>) {
    let state = Arc::new(AppState::new(Snapshot::load(&dir.join("ferry.yaml")).unwrap()).with_access_log(log));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(run(listener, state.clone()));
    (address, state)
}

#[tokio::test]
async fn skopeo_pulls_blobs_that_ferry_serves_from_a_local_folder() {
    let upstream = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("embedded", 64 * 1024, 8 * 1024).build();
    let client = RemoteClient::new(RemoteOptions::default()).unwrap();
    push(&client.registry(&upstream.host(), Some(repo("staging"))), &repo("app"), &image, &["v1"]).await.unwrap();
    let upstream_proxy = FaultProxy::start(&upstream.host()).await.unwrap();

    // The folder `ferry mirror` would write: one `sha256:<hex>` file per blob; one left out.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("blobs")).unwrap();
    let (missing, present) = image.blobs.split_last().unwrap();
    for blob in present {
        std::fs::write(dir.path().join("blobs").join(blob.digest.as_str()), &blob.bytes).unwrap();
    }
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "upstream:\n  registry: http://{}/staging\nmirrors:\n  - name: local\n    blobs: ./blobs/\n    serves: [\"*\"]\n",
            upstream_proxy.host()
        ),
    )
    .unwrap();
    let log = Buffer::default();
    let (address, state) = start(dir.path(), AccessLog::to_writer(Box::new(log.clone()))).await;

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("pulled");
    let source = format!("docker://{address}/app:v1");
    let pulled = target.clone();
    tokio::task::spawn_blocking(move || pull_all(&source, &pulled)).await.unwrap();
    assert_pulled_byte_exact(&target, &image);
    // Only the blob missing from the folder came from the upstream.
    let upstream_blobs: Vec<_> =
        upstream_proxy.requests().into_iter().filter(|(m, p)| m == "GET" && p.contains("/blobs/")).collect();
    assert_eq!(upstream_blobs.len(), 1, "{upstream_blobs:?}");
    assert!(upstream_blobs[0].1.contains(missing.digest.as_str()));
    // The access log shows each present blob redirected to the folder mirror and served by Ferry.
    state.access_log().flush();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let field = |v: &serde_json::Value, f: &str| v["fields"][f].as_str().unwrap_or_default().to_string();
    for blob in present {
        let redirected =
            lines.iter().find(|l| field(l, "outcome") == "mirror" && field(l, "path").ends_with(blob.digest.as_str()));
        let redirected = redirected.unwrap_or_else(|| panic!("{} not redirected to the mirror: {text}", blob.digest));
        assert_eq!(field(redirected, "location"), format!("/_ferry/mirrors/local/blobs/{}", blob.digest));
        assert!(field(redirected, "reason").contains("in its folder"));
        assert!(lines.iter().any(|l| field(l, "outcome") == "served"
            && field(l, "path") == format!("/_ferry/mirrors/local/blobs/{}", blob.digest)));
    }
}

#[tokio::test]
async fn folder_content_is_served_safely_with_length_type_head_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (blobs, files) = (dir.path().join("blobs"), dir.path().join("files"));
    std::fs::create_dir_all(files.join("release/v1")).unwrap();
    std::fs::create_dir(&blobs).unwrap();
    let bytes: Vec<u8> = (0..100u8).collect();
    let digest = Digest::of(&bytes);
    std::fs::write(blobs.join(digest.as_str()), &bytes).unwrap();
    std::fs::write(files.join("release/v1/kubectl"), b"kubectl bytes").unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), files.join("release/leak")).unwrap();
    let absent = format!("sha256:{}", "e".repeat(64));
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "public_url: https://ferry.example/front/\nupstream:\n  registry: https://up.example/images\n  \
             files: https://dl.example/\nmirrors:\n  - name: local\n    blobs: ./blobs\n    files: {}\n    serves: [\"*\"]\n",
            url::Url::from_directory_path(&files).unwrap()
        ),
    )
    .unwrap();
    let (address, _state) = start(dir.path(), AccessLog::off()).await;
    let base = format!("http://{address}");
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let location = |r: &reqwest::Response| r.headers().get("location").map(|v| v.to_str().unwrap().to_string());

    // Redirects: to public_url + /_ferry/... for what the folders hold, else upstream.
    let r = c.get(format!("{base}/v2/app/blobs/{digest}")).send().await.unwrap();
    assert_eq!(location(&r).unwrap(), format!("https://ferry.example/front/_ferry/mirrors/local/blobs/{digest}"));
    let r = c.get(format!("{base}/v2/app/blobs/{absent}")).send().await.unwrap();
    assert_eq!(location(&r).unwrap(), format!("https://up.example/v2/images/app/blobs/{absent}"));
    let r = c.get(format!("{base}/release/v1/kubectl")).send().await.unwrap();
    assert_eq!(location(&r).unwrap(), "https://ferry.example/front/_ferry/mirrors/local/files/release/v1/kubectl");
    let r = c.get(format!("{base}/release/leak")).send().await.unwrap();
    assert_eq!(location(&r).unwrap(), "https://dl.example/release/leak", "a symlink out of the folder is absent");

    // The bytes.
    let blob_url = format!("{base}/_ferry/mirrors/local/blobs/{digest}");
    let r = c.get(&blob_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-length"], "100");
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(r.bytes().await.unwrap(), bytes);
    let r = c.head(&blob_url).send().await.unwrap();
    assert_eq!((r.status().as_u16(), &r.headers()["content-length"]), (200, &"100".parse().unwrap()));
    let r = c.get(&blob_url).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/100");
    assert_eq!(r.bytes().await.unwrap(), bytes[10..20]);
    let r = c.get(&blob_url).header("range", "bytes=100-").send().await.unwrap();
    assert_eq!((r.status().as_u16(), &r.headers()["content-range"]), (416, &"bytes */100".parse().unwrap()));
    let r = c.get(format!("{base}/_ferry/mirrors/local/files/release/v1/kubectl")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"kubectl bytes"[..]);

    // Missing, unknown, malformed, escaping: never a byte from outside the folders.
    for (path, status) in [
        (format!("/_ferry/mirrors/local/blobs/{absent}"), 404),
        (format!("/_ferry/mirrors/other/blobs/{digest}"), 404),
        ("/_ferry/mirrors/local/files/release/leak".into(), 404),
        ("/_ferry/mirrors/local/files/release".into(), 404),
        ("/_ferry/mirrors/local/files/release/../../secret".into(), 400),
        ("/_ferry/mirrors/local/files/release/%2e%2e/x".into(), 400),
        ("/_ferry/mirrors/local/blobs/sha256:abc".into(), 400),
        ("/_ferry/elsewhere".into(), 404),
    ] {
        let (got, head) = raw_get(&address, &path).await;
        assert_eq!(got, status, "{path}: {head}");
    }
    let r = c.post(&blob_url).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

/// `GET <path>` byte for byte (reqwest would normalise `..`).
async fn raw_get(address: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap().to_string();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), head)
}
