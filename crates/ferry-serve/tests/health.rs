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
    let health = prober.spawn_health(state.clone());
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
