//! An inventory in an S3 bucket (a real `s3s-fs`, through `ferry-store`), refreshed when the
//! object changes. Its own test binary: it sets the standard AWS environment for the process.

use ferry_serve::remote_inventory::RemoteInventories;
use ferry_serve::{AppState, Snapshot};
use ferry_testkit::s3_server::S3Server;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

#[tokio::test]
async fn s3_inventory_is_read_and_refreshed() {
    let s3 = S3Server::start().await.unwrap();
    for (k, v) in s3.env() {
        std::env::set_var(k, v);
    }
    s3.create_bucket("mirror").unwrap();
    let object = s3.bucket_dir("mirror").join("containers");
    std::fs::create_dir_all(&object).unwrap();
    std::fs::write(object.join("inventory.txt"), format!("{D1}\n")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.yaml");
    std::fs::write(
        &path,
        "upstream: {registry: 'https://up.example/images'}\nmirrors:\n  - name: m\n    \
         blobs: 'https://m.example/{digest}'\n    serves: ['*']\n    inventory: s3://mirror/containers/inventory.txt\n",
    )
    .unwrap();
    let remote = RemoteInventories::default();
    let state = AppState::new(Snapshot::load_fetching(&path, &remote).await.unwrap()).with_remote(remote);
    let holds = |d: &str| state.snapshot().mirrors[0].inventory.as_ref().unwrap().has_blob(&d.parse().unwrap());
    assert!(holds(D1) && !holds(D2));

    assert!(!state.refresh_remote().await, "unchanged");
    std::fs::write(object.join("inventory.txt"), format!("{D1}\n{D2}\n")).unwrap();
    assert!(state.refresh_remote().await, "changed");
    state.reload(&path).await.unwrap();
    assert!(holds(D2));

    // A missing object refuses a configuration naming it.
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("inventory.txt", "nope.txt")).unwrap();
    let e = state.reload(&path).await.unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    assert!(holds(D2));

    // An object larger than the limit is refused before its bytes are read.
    std::fs::write(object.join("big.txt"), format!("{D1}\n{D2}\n")).unwrap();
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("nope.txt", "big.txt")).unwrap();
    let small = RemoteInventories::with_limit(100);
    let e = Snapshot::load_fetching(&path, &small).await.unwrap_err();
    assert!(e.to_string().contains("larger than the limit of 100"), "{e}");
}
