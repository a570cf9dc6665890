//! A real client pulls through `ferry serve`: manifests come from the upstream registry, blobs from
//! the mirror that lists them, and the one blob the mirror lacks from the upstream.

use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_serve::{run, AppState, Snapshot};
use ferry_testkit::fault_proxy::FaultProxy;
use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;
use ferry_testkit::skopeo::{assert_pulled_byte_exact, pull_all};

#[tokio::test]
async fn skopeo_pulls_a_multi_arch_image_through_the_redirector() {
    let upstream = RegistryServer::start().await.unwrap();
    let mirror = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("served", 64 * 1024, 8 * 1024).build();
    let client = RemoteClient::new(RemoteOptions::default()).unwrap();
    push(&client.registry(&upstream.host(), Some(repo("staging"))), &repo("app"), &image, &["v1"]).await.unwrap();
    // The mirror holds every blob (a blob mirror is content-addressed: one place per digest).
    push(&client.registry(&mirror.host(), None), &repo("blobs"), &image, &["v1"]).await.unwrap();

    // Count what each side serves.
    let upstream_proxy = FaultProxy::start(&upstream.host()).await.unwrap();
    let mirror_proxy = FaultProxy::start(&mirror.host()).await.unwrap();

    // The inventory lists every blob but one: that one must come from the upstream.
    let (missing, listed) = image.blobs.split_last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory: String = listed.iter().map(|b| format!("{}\n", b.digest)).collect();
    std::fs::write(dir.path().join("inventory.txt"), inventory).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "upstream:\n  registry: http://{}/staging\nmirrors:\n  - name: local\n    \
             blobs: http://{}/v2/blobs/blobs/{{digest}}\n    serves: [\"*\"]\n    inventory: inventory.txt\n",
            upstream_proxy.host(),
            mirror_proxy.host()
        ),
    )
    .unwrap();
    let state = std::sync::Arc::new(AppState::new(Snapshot::load(&dir.path().join("ferry.yaml")).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(run(listener, state));

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("pulled");
    let source = format!("docker://{address}/app:v1");
    let pulled = target.clone();
    tokio::task::spawn_blocking(move || pull_all(&source, &pulled)).await.unwrap();
    assert_pulled_byte_exact(&target, &image);
    // Blobs from the mirror, except the one it does not list; manifests from the upstream.
    assert_eq!(mirror_proxy.blob_gets(), listed.len(), "{:?}", mirror_proxy.requests());
    let upstream_blobs: Vec<_> =
        upstream_proxy.requests().into_iter().filter(|(m, p)| m == "GET" && p.contains("/blobs/")).collect();
    assert_eq!(upstream_blobs.len(), 1, "{upstream_blobs:?}");
    assert!(upstream_blobs[0].1.contains(missing.digest.as_str()));
    assert!(upstream_proxy.count("GET", "/manifests/") >= 1);
    assert_eq!(mirror_proxy.count("GET", "/manifests/"), 0);
}
