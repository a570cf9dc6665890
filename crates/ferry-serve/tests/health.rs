//! A mirror that dies leaves the routing within 10 s, with the production probe settings.

use std::time::{Duration, Instant};

use ferry_serve::{run, AppState, ProbeSettings, Prober, Snapshot};
use ferry_testkit::registry_server::RegistryServer;

#[tokio::test]
async fn a_killed_mirror_leaves_the_routing_within_ten_seconds() {
    let mirror = RegistryServer::start().await.unwrap();
    let digest = format!("sha256:{}", "b".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory.txt"), format!("{digest}\n")).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "upstream:\n  registry: https://upstream.example/images\nmirrors:\n  - name: local\n    \
             blobs: http://{}/v2/blobs/blobs/{{digest}}\n    serves: [\"*\"]\n    inventory: inventory.txt\n",
            mirror.host()
        ),
    )
    .unwrap();
    let prober = Prober::new(ProbeSettings::default());
    let state = std::sync::Arc::new(AppState::with_prober(
        Snapshot::load(&dir.path().join("ferry.yaml")).unwrap(),
        prober.clone(),
    ));
    let health = state.start_health().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(run(listener, state));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let location = || async {
        let r = client.get(format!("{base}/v2/app/blobs/{digest}")).send().await.unwrap();
        r.headers()["location"].to_str().unwrap().to_string()
    };
    assert!(location().await.starts_with(&format!("http://{}/", mirror.host())));
    let metrics = || async { client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap() };

    drop(mirror); // kills the registry process
    let killed = Instant::now();
    loop {
        if location().await.starts_with("https://upstream.example/") {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "the dead mirror is still routed to");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = metrics().await;
    assert!(text.contains(r#"ferry_serve_mirror_healthy{mirror="local"} 0"#), "{text}");
    assert!(text.contains("ferry_serve_presence_cache_entries"), "{text}");
    health.abort();
}

/// Issue #12 item 12: a mirror that is dead when `ferry serve` starts gets no redirect at all —
/// every mirror is probed once before the first connection is accepted, and until its first
/// answer a mirror is out of the routing. A live one is in from the first request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_dead_at_start_up_gets_no_redirect_and_a_live_one_does() {
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_address = live.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(live, axum::Router::new().fallback(|| async { "" })).await.unwrap() });
    let dead_address = {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        closed.local_addr().unwrap()
    };
    let (dead_blob, live_blob) = (format!("sha256:{}", "d".repeat(64)), format!("sha256:{}", "e".repeat(64)));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dead.txt"), format!("{dead_blob}\n")).unwrap();
    std::fs::write(dir.path().join("live.txt"), format!("{live_blob}\n")).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "upstream:\n  registry: https://upstream.example/images\nmirrors:\n\
             \x20 - {{name: dead, blobs: 'http://{dead_address}/b/{{digest}}', serves: ['*'], inventory: dead.txt}}\n\
             \x20 - {{name: live, blobs: 'http://{live_address}/b/{{digest}}', serves: ['*'], inventory: live.txt}}\n"
        ),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = ferry_serve::start(dir.path().join("ferry.yaml"), Some(listener)).await.unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let location = |digest: String| {
        let client = client.clone();
        async move {
            let r = client.get(format!("http://{}/v2/app/blobs/{digest}", server.address)).send().await.unwrap();
            r.headers()["location"].to_str().unwrap().to_string()
        }
    };
    // The very first requests, with no pause after start-up.
    let (dead, live) = tokio::join!(location(dead_blob.clone()), location(live_blob.clone()));
    assert!(dead.starts_with("https://upstream.example/"), "redirected to a mirror that never answered: {dead}");
    assert!(live.starts_with(&format!("http://{live_address}/")), "a live mirror is in at once: {live}");
    server.serving.abort();
}
