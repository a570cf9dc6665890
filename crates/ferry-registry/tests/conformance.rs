//! One conformance suite, run against every backend: a real CNCF distribution registry through
//! `RemoteRegistry`, and an `oci:` directory through `LayoutRegistry`. Whatever the promoter relies
//! on is asserted here, so a backend that passes can be promoted from and to.

use std::sync::Arc;

use bytes::Bytes;
use ferry_oci::{media_types, Digest, Reference, RepoName};
use ferry_registry::layout::LayoutRegistry;
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_registry::{BlobData, Manifest, Registry, RegistryError};
use ferry_testkit::fault_proxy::{Fault, FaultProxy, FaultRule};
use ferry_testkit::images::{push, repo, Flavour, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;
use futures::TryStreamExt;

async fn read_all(registry: &dyn Registry, repo: &RepoName, digest: &Digest) -> Vec<u8> {
    let chunks: Vec<Bytes> = registry.get_blob(repo, digest).await.unwrap().try_collect().await.unwrap();
    chunks.concat()
}

async fn suite(registry: Arc<dyn Registry>) {
    let r = registry.as_ref();
    let app = repo("team/app");
    let other = repo("other");

    // Absence is not an error.
    assert!(r.list_repositories().await.unwrap().is_empty());
    assert!(r.list_tags(&app).await.unwrap().is_empty());
    let missing = Digest::of(b"missing");
    assert_eq!(r.head_manifest(&app, &Reference::Digest(missing.clone())).await.unwrap(), None);
    assert!(r.get_manifest(&app, &Reference::Tag("nope".parse().unwrap())).await.unwrap().is_none());
    assert!(!r.has_blob(&app, &missing).await.unwrap());
    assert!(matches!(r.get_blob(&app, &missing).await, Err(RegistryError::NotFound { .. })));

    // Blobs round-trip; a blob whose bytes are not its digest is never published.
    let bytes = Bytes::from_static(b"layer bytes");
    let digest = Digest::of(&bytes);
    r.put_blob(&app, &digest, &BlobData::Memory(bytes.clone())).await.unwrap();
    assert!(r.has_blob(&app, &digest).await.unwrap());
    assert_eq!(read_all(r, &app, &digest).await, bytes.as_ref());
    let lie = Digest::of(b"something else");
    assert!(r.put_blob(&app, &lie, &BlobData::Memory(bytes.clone())).await.is_err());
    assert!(!r.has_blob(&app, &lie).await.unwrap());

    // A blob spooled to a file uploads the same way.
    let big = Bytes::from(ferry_testkit::images::random_bytes(7, 3 << 20));
    let big_digest = Digest::of(&big);
    let spool = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spool.path(), &big).unwrap();
    r.put_blob(&app, &big_digest, &BlobData::File(Arc::new(spool.into_temp_path()))).await.unwrap();
    assert_eq!(read_all(r, &app, &big_digest).await, big.as_ref());

    // Mount into another repository of the same registry.
    assert!(r.mount_blob(&other, &digest, &app).await.unwrap());
    assert!(r.has_blob(&other, &digest).await.unwrap());

    // Multi-arch images of both media type families: manifests byte-exact by tag and digest.
    for (flavour, tag) in [(Flavour::Oci, "v1"), (Flavour::Docker, "v2")] {
        let image = ImageSpec::two_arch(tag, 4096, 512).flavour(flavour).build();
        push(r, &app, &image, &[tag]).await.unwrap();
        let by_tag = r.get_manifest(&app, &Reference::Tag(tag.parse().unwrap())).await.unwrap().unwrap();
        assert_eq!(by_tag.bytes, image.top.bytes);
        assert_eq!(by_tag.digest, image.top.digest);
        assert_eq!(by_tag.media_type, image.top.media_type);
        let head = r.head_manifest(&app, &Reference::Tag(tag.parse().unwrap())).await.unwrap().unwrap();
        assert_eq!(head.digest, image.top.digest);
        assert_eq!(head.size, image.top.bytes.len() as u64);
        for child in &image.children {
            let got = r.get_manifest(&app, &Reference::Digest(child.digest.clone())).await.unwrap().unwrap();
            assert_eq!(got.bytes, child.bytes);
            assert_eq!(got.media_type, child.media_type);
        }
        for blob in &image.blobs {
            assert_eq!(read_all(r, &app, &blob.digest).await, blob.bytes.as_ref());
        }
    }
    let tags: Vec<String> = r.list_tags(&app).await.unwrap().iter().map(|t| t.to_string()).collect();
    assert_eq!(tags, ["v1", "v2"]);

    // Push by digest only: reachable by digest, no tag.
    let untagged = ImageSpec::single("untagged", 1024).build();
    push(r, &other, &untagged, &[]).await.unwrap();
    let head = r.head_manifest(&other, &Reference::Digest(untagged.top.digest.clone())).await.unwrap().unwrap();
    assert_eq!(head.media_type, media_types::OCI_MANIFEST);
    assert!(r.list_tags(&other).await.unwrap().is_empty());

    // A tag can be added to a manifest already present.
    let m: Manifest = untagged.top.clone();
    r.put_manifest(&other, &Reference::Tag("later".parse().unwrap()), &m).await.unwrap();
    assert_eq!(r.list_tags(&other).await.unwrap().len(), 1);

    // Every repository written to, relative to the prefix, sorted (a nested one included).
    assert_eq!(r.list_repositories().await.unwrap(), [other.clone(), app.clone()]);

    // Distribution 2.8 predates the referrers API; a layout lists them itself (none here).
    let referrers = r.referrers(&app, &untagged.top.digest).await.unwrap();
    assert!(referrers.is_none() || referrers == Some(vec![]), "{referrers:?}");
}

#[tokio::test]
async fn remote_registry_conforms() {
    let server = RegistryServer::start().await.unwrap();
    let client = RemoteClient::new(RemoteOptions::default()).unwrap();
    suite(Arc::new(client.registry(&server.host(), Some(repo("prefix"))))).await;

    // The catalog is filtered by the prefix: a repository outside it is not listed, and one
    // level up the prefixed ones are.
    let top = client.registry(&server.host(), None);
    let image = ImageSpec::single("elsewhere", 256).build();
    push(&top, &repo("elsewhere"), &image, &["v1"]).await.unwrap();
    let prefixed = client.registry(&server.host(), Some(repo("prefix")));
    assert_eq!(prefixed.list_repositories().await.unwrap(), [repo("other"), repo("team/app")]);
    assert_eq!(
        top.list_repositories().await.unwrap(),
        [repo("elsewhere"), repo("prefix/other"), repo("prefix/team/app")]
    );
}

#[tokio::test]
async fn remote_catalog_follows_pagination_and_refuses_a_missing_catalog() {
    let server = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let client = RemoteClient::new(RemoteOptions { tags_page_size: 2, ..RemoteOptions::default() }).unwrap();
    let registry = client.registry(&proxy.host(), None);
    let image = ImageSpec::single("paged", 256).build();
    let names = ["a", "b/c", "d", "e", "f"];
    for name in names {
        push(&registry, &repo(name), &image, &["v1"]).await.unwrap();
    }
    proxy.reset_counts();
    assert_eq!(registry.list_repositories().await.unwrap(), names.map(repo));
    assert!(proxy.count("GET", "/v2/_catalog") >= 3, "{:?}", proxy.requests());

    // No catalog at all (404) is an error, not an empty registry.
    proxy.add_fault(FaultRule {
        method: None,
        path_contains: "/v2/_catalog".into(),
        times: 1,
        fault: Fault::Status { status: 404, retry_after: None },
    });
    let error = registry.list_repositories().await.unwrap_err().to_string();
    assert!(error.contains("offers no catalog"), "{error}");
}

#[tokio::test]
async fn layout_registry_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(LayoutRegistry::new(dir.path()))).await;
}

#[tokio::test]
async fn manifest_cache_over_a_layout_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(ferry_registry::cache::ManifestCache::new(Arc::new(LayoutRegistry::new(dir.path()))))).await;
}
