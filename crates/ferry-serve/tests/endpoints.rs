//! The service endpoints (case 3: `/healthz`, `/readyz`, `/metrics`, `/debug/route`) and the API version
//! check (case 4, `/v2/`) answer the same in every serving mode that reaches them: mirrors with
//! inventories (requests answered at once, on the lean path), a mirror probed for presence
//! (requests that may wait), and a local-folder mirror (content served by Ferry) — each with and
//! without `upstream.files`. The servers are started as `ferry serve` starts them
//! ([`ferry_serve::start`]: prober, health checks, reloader, serving threads).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A mirror origin that holds everything (answers every request `200`).
async fn origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "bytes" });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// The `mirrors:` entry of each serving mode.
async fn mirror(mode: &str, dir: &std::path::Path) -> String {
    match mode {
        "inventory" => {
            std::fs::write(dir.join("inv.txt"), format!("{D1}\n/bin/kubectl\n")).unwrap();
            "{name: listed, blobs: 'https://east.example/b/{digest}', files: 'https://east.example/f/{path}', \
             serves: ['*'], inventory: inv.txt}"
                .to_string()
        }
        "probing" => {
            let origin = origin().await;
            format!(
                "{{name: probed, blobs: 'http://{origin}/b/{{digest}}', files: 'http://{origin}/f/{{path}}', \
                 serves: ['*']}}"
            )
        }
        "local-folder" => {
            std::fs::create_dir(dir.join("blobs")).unwrap();
            std::fs::write(dir.join("blobs").join(D1), "blob").unwrap();
            "{name: local, blobs: ./blobs/, serves: ['*']}".to_string()
        }
        _ => unreachable!("{mode}"),
    }
}

/// Sends one raw request (`Connection: close`) and returns the whole answer.
async fn raw(address: SocketAddr, method: &str, target: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("{method} {target} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8(answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_answer_in_every_serving_mode() {
    for mode in ["inventory", "probing", "local-folder"] {
        for files in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let upstream_files = if files { "\n  files: https://dl.example/" } else { "" };
            let config = format!(
                "upstream:\n  registry: https://reg.example/proj{upstream_files}\nmirrors:\n  - {}\n",
                mirror(mode, dir.path()).await
            );
            std::fs::write(dir.path().join("ferry.yaml"), config).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = ferry_serve::start(dir.path().join("ferry.yaml"), Some(listener)).await.unwrap();
            let at = |what: &str| format!("{mode}, upstream.files {files}: {what}");

            let healthz = raw(server.address, "GET", "/healthz").await;
            assert!(healthz.starts_with("HTTP/1.1 200 "), "{}\n{healthz}", at("GET /healthz"));
            assert!(healthz.ends_with("\r\n\r\nok"), "{}\n{healthz}", at("GET /healthz"));
            let head = raw(server.address, "HEAD", "/healthz").await;
            assert!(head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"), "{}\n{head}", at("HEAD /healthz"));
            let post = raw(server.address, "POST", "/healthz").await;
            assert!(post.starts_with("HTTP/1.1 405 "), "{}\n{post}", at("POST /healthz"));
            let readyz = raw(server.address, "GET", "/readyz").await;
            assert!(
                readyz.starts_with("HTTP/1.1 200 ") && readyz.ends_with("\r\n\r\nready"),
                "{}\n{readyz}",
                at("GET /readyz")
            );

            let metrics = raw(server.address, "GET", "/metrics").await;
            assert!(metrics.starts_with("HTTP/1.1 200 "), "{}\n{metrics}", at("GET /metrics"));
            assert!(metrics.contains("application/openmetrics-text"), "{}\n{metrics}", at("GET /metrics"));
            assert!(metrics.contains("# TYPE ferry_serve_requests counter"), "{}\n{metrics}", at("GET /metrics"));

            let v2 = raw(server.address, "GET", "/v2/").await;
            assert!(v2.starts_with("HTTP/1.1 200 "), "{}\n{v2}", at("GET /v2/"));
            assert!(v2.contains("docker-distribution-api-version: registry/2.0"), "{}\n{v2}", at("GET /v2/"));

            let debug = raw(server.address, "GET", &format!("/debug/route?ip=192.0.2.1&digest={D1}")).await;
            assert!(debug.starts_with("HTTP/1.1 200 "), "{}\n{debug}", at("GET /debug/route"));
            assert!(debug.contains(r#""decision":"#), "{}\n{debug}", at("GET /debug/route"));

            server.serving.abort();
        }
    }
}
