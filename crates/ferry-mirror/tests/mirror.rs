//! `ferry_mirror::mirror` against the real CNCF registry (behind the counting fault proxy), a real
//! S3 server (`s3s-fs`) and a local folder.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use ferry_mirror::{CopyStatus, Destination, Image, MirrorOptions, Report};
use ferry_oci::Digest;
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_registry::Registry;
use ferry_store::{Inventory, ObjectName, Store};
use ferry_testkit::fault_proxy::{Fault, FaultProxy, FaultRule};
use ferry_testkit::images::{push, repo, ImageSpec, TestImage};
use ferry_testkit::registry_server::RegistryServer;
use ferry_testkit::s3_server::S3Server;
use futures::StreamExt;

struct World {
    _registry: RegistryServer,
    proxy: FaultProxy,
    source: Arc<dyn Registry>,
    s3: S3Server,
    dir: tempfile::TempDir,
    images: Vec<(String, TestImage)>,
}

impl World {
    /// A registry holding images `a`, `b` and `c` (two architectures each, sharing the base
    /// layers), read through the proxy; an S3 server with bucket `mirror`; a temporary folder.
    async fn start() -> World {
        let registry = RegistryServer::start().await.unwrap();
        let proxy = FaultProxy::start(&registry.host()).await.unwrap();
        let client = RemoteClient::new(RemoteOptions { retries: 1, ..RemoteOptions::default() }).unwrap();
        let source = ferry_registry::open(&format!("{}/prod", proxy.host()).parse().unwrap(), &client);
        let images: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), ImageSpec::two_arch(n, 48 << 10, 8 << 10).build()))
            .collect();
        for (name, image) in &images {
            push(source.as_ref(), &repo(name), image, &["v1"]).await.unwrap();
        }
        proxy.reset_counts();
        let s3 = S3Server::start().await.unwrap();
        s3.create_bucket("mirror").unwrap();
        World { _registry: registry, proxy, source, s3, dir: tempfile::tempdir().unwrap(), images }
    }

    fn folder(&self) -> std::path::PathBuf {
        self.dir.path().join("folder")
    }

    /// The local folder and `s3://mirror/blobs/`, each with its default inventory.
    fn destinations(&self) -> Vec<Destination> {
        vec![
            Destination::open(self.folder().to_str().unwrap(), None, &[]).unwrap(),
            Destination::open("s3://mirror/blobs/", None, &self.s3.env()).unwrap(),
        ]
    }

    fn images(&self, names: &[&str]) -> Vec<Image> {
        names
            .iter()
            .map(|n| {
                let image = &self.images.iter().find(|(name, _)| name == n).unwrap().1;
                Image { name: repo(n), digest: image.digest().clone() }
            })
            .collect()
    }

    fn blobs(&self, names: &[&str]) -> BTreeSet<Digest> {
        self.images
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .flat_map(|(_, i)| i.blobs.iter().map(|b| b.digest.clone()))
            .collect()
    }

    fn bytes_of(&self, digest: &Digest) -> Bytes {
        self.images.iter().flat_map(|(_, i)| &i.blobs).find(|b| &b.digest == digest).unwrap().bytes.clone()
    }

    async fn run(&self, names: &[&str], confirm: bool, verify: bool) -> Report {
        let options = MirrorOptions { confirm, verify, concurrency: 4, read_attempts: 2, ..MirrorOptions::default() };
        let report =
            ferry_mirror::mirror(self.source.clone(), &self.images(names), &self.destinations(), &options, &silent())
                .await;
        eprintln!("{report}");
        report
    }

    /// The digests of the blobs the proxy saw downloaded since the last reset.
    fn downloaded(&self) -> Vec<Digest> {
        let mut gets: Vec<Digest> = self
            .proxy
            .requests()
            .into_iter()
            .filter(|(m, p)| m == "GET" && p.contains("/blobs/sha256:"))
            .map(|(_, p)| p.rsplit('/').next().unwrap().parse().unwrap())
            .collect();
        gets.sort();
        gets
    }
}

async fn read_all(store: &Store, digest: &Digest) -> Vec<u8> {
    let mut stream = store.read(&ObjectName::parse(digest.as_str()).unwrap()).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

async fn inventory(d: &Destination) -> Option<Inventory> {
    Inventory::read(&d.inventory_store, &d.inventory_name).await.unwrap()
}

/// Every blob of `names` is in both stores byte-exact, and each inventory lists exactly them.
async fn assert_mirrored(w: &World, names: &[&str]) {
    let expected = w.blobs(names);
    for d in w.destinations() {
        for digest in &expected {
            assert_eq!(read_all(&d.blobs, digest).await, w.bytes_of(digest), "{digest} in {:?}", d.blobs);
        }
        let listed: BTreeSet<Digest> = inventory(&d).await.expect("an inventory").blobs().cloned().collect();
        assert_eq!(listed, expected, "inventory of {:?}", d.blobs);
    }
}

#[tokio::test]
async fn blobs_land_once_incrementally_and_inventories_list_them() {
    let w = World::start().await;

    // Dry run: reads manifests (and HEADs the stores), writes nothing, downloads no blob.
    let dry = w.run(&["a", "b"], false, false).await;
    assert!(dry.is_success());
    assert_eq!(dry.summary.copies_planned, 2 * w.blobs(&["a", "b"]).len());
    assert!(w.downloaded().is_empty());
    assert!(!w.folder().exists());
    assert!(inventory(&w.destinations()[1]).await.is_none());

    // Each unique blob is read once for both stores; both land byte-exact with their inventories.
    let first = w.run(&["a", "b"], true, false).await;
    assert!(first.is_success());
    let unique = w.blobs(&["a", "b"]);
    assert_eq!(w.downloaded(), unique.iter().cloned().collect::<Vec<_>>());
    assert_eq!(first.summary.bytes_read, first.summary.blob_bytes);
    assert_eq!(first.summary.copies_done, 2 * unique.len());
    assert_mirrored(&w, &["a", "b"]).await;
    let text = std::fs::read_to_string(w.folder().join("inventory.txt")).unwrap();
    let sorted: String = unique.iter().map(|d| format!("{d} {}\n", w.bytes_of(d).len())).collect();
    assert_eq!(text, sorted, "the inventory is one sorted digest a line, with its size");
    // The S3 objects are where registry.k8s.io's mirror buckets keep them.
    let some = unique.first().unwrap();
    assert_eq!(std::fs::read(w.s3.bucket_dir("mirror").join("blobs").join(some.as_str())).unwrap(), w.bytes_of(some));

    // A re-run reads no blob and writes nothing: the inventories are trusted, not probed.
    w.proxy.reset_counts();
    let again = w.run(&["a", "b"], true, false).await;
    assert!(again.is_success());
    assert!(w.downloaded().is_empty());
    assert!(again.stores.iter().all(|s| s.listed == unique.len() && s.present == 0 && !s.inventory_written));

    // Adding one image reads only its new blobs (its config and own layer per architecture).
    w.proxy.reset_counts();
    let more = w.run(&["a", "b", "c"], true, false).await;
    assert!(more.is_success());
    let new: Vec<Digest> = w.blobs(&["c"]).difference(&unique).cloned().collect();
    assert_eq!(new.len(), 4);
    assert_eq!(w.downloaded(), new);
    assert_mirrored(&w, &["a", "b", "c"]).await;

    // Without its inventory, a store is asked (HEAD) and its inventory written again; no blob read.
    std::fs::remove_file(w.folder().join("inventory.txt")).unwrap();
    w.proxy.reset_counts();
    let headed = w.run(&["a", "b", "c"], true, false).await;
    assert!(headed.is_success());
    assert!(w.downloaded().is_empty());
    assert_eq!(headed.stores[0].present, w.blobs(&["a", "b", "c"]).len());
    assert!(headed.stores[0].inventory_written && !headed.stores[1].inventory_written);
    assert_mirrored(&w, &["a", "b", "c"]).await;
}

#[tokio::test]
async fn a_blob_that_does_not_verify_is_retried_then_left_out() {
    let w = World::start().await;
    let blobs = w.blobs(&["a"]);
    let (once, always, throttled) = {
        let mut it = blobs.iter().cloned();
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let corrupt = |digest: &Digest, times| FaultRule {
        method: Some("GET".into()),
        path_contains: format!("/blobs/{digest}"),
        times,
        fault: Fault::CorruptBody,
    };
    // One corrupted read is retried and lands; a blob corrupted on every read lands nowhere.
    w.proxy.add_fault(corrupt(&once, 1));
    w.proxy.add_fault(corrupt(&always, 100));
    // Throttling is the registry client's to retry (honouring Retry-After), not a failed read.
    w.proxy.add_fault(FaultRule {
        method: Some("GET".into()),
        path_contains: format!("/blobs/{throttled}"),
        times: 1,
        fault: Fault::Status { status: 429, retry_after: Some("0".into()) },
    });
    let report = w.run(&["a"], true, false).await;
    assert!(!report.is_success());
    assert_eq!(report.summary.copies_failed, 2);
    assert_eq!(report.summary.blobs_read, blobs.len() as u64 + 1 + 1, "one retry for each corrupted blob");
    for (store, d) in report.stores.iter().zip(w.destinations()) {
        let failed: Vec<_> = store.copies.iter().filter(|c| c.status == CopyStatus::Failed).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].digest, always);
        assert!(failed[0].error.as_ref().unwrap().contains("hash to"), "{:?}", failed[0].error);
        assert_eq!(d.blobs.head(&ObjectName::parse(always.as_str()).unwrap()).await.unwrap(), None);
        let listed: BTreeSet<Digest> = inventory(&d).await.unwrap().blobs().cloned().collect();
        let mut rest = blobs.clone();
        rest.remove(&always);
        assert_eq!(listed, rest, "the inventory lists what landed and only that");
        assert_eq!(read_all(&d.blobs, &once).await, w.bytes_of(&once));
        assert_eq!(read_all(&d.blobs, &throttled).await, w.bytes_of(&throttled));
    }
    assert_eq!(w.proxy.count("GET", &format!("/blobs/{throttled}")), 2);
}

#[tokio::test]
async fn verify_finds_a_deleted_and_a_corrupted_object_and_repairs_them() {
    let w = World::start().await;
    assert!(w.run(&["a", "b"], true, false).await.is_success());
    let blobs: Vec<Digest> = w.blobs(&["a", "b"]).into_iter().collect();
    let (deleted, damaged) = (&blobs[0], &blobs[1]);
    let s3 = w.destinations().pop().unwrap();
    // The folder loses one object and has another overwritten in place; in S3 the same object is
    // overwritten by someone else's write (so its recorded sha256 is gone too).
    std::fs::remove_file(w.folder().join(deleted.as_str())).unwrap();
    let mut bad = w.bytes_of(damaged).to_vec();
    bad[0] ^= 0xff;
    std::fs::write(w.folder().join(damaged.as_str()), &bad).unwrap();
    s3.blobs.put_small(&ObjectName::parse(damaged.as_str()).unwrap(), Bytes::from(bad.clone())).await.unwrap();
    // An intact object the inventory does not list.
    let mut shortened = inventory(&s3).await.unwrap();
    shortened.remove_blob(&blobs[2]);
    shortened.write(&s3.inventory_store, &s3.inventory_name).await.unwrap();

    // A plain run trusts the inventories and sees nothing wrong.
    w.proxy.reset_counts();
    assert!(w.run(&["a", "b"], false, false).await.stores[0].copies.is_empty());

    // --verify reads everything back and finds each difference; a dry run changes nothing.
    let found = w.run(&["a", "b"], false, true).await;
    assert!(!found.is_success(), "differences make the exit status non-zero");
    let f0 = found.stores[0].verify.as_ref().unwrap();
    assert_eq!(f0.checked, blobs.len() - 1);
    assert_eq!(f0.missing, vec![deleted.clone()]);
    assert_eq!(f0.corrupt.iter().map(|c| &c.digest).collect::<Vec<_>>(), [damaged]);
    assert!(f0.corrupt[0].problem.contains("hash to") && f0.corrupt[0].repairable);
    assert!(f0.unlisted.is_empty());
    let f1 = found.stores[1].verify.as_ref().unwrap();
    assert!(f1.missing.is_empty());
    assert_eq!(f1.corrupt.iter().map(|c| &c.digest).collect::<Vec<_>>(), [damaged]);
    assert_eq!(f1.unlisted, vec![blobs[2].clone()]);
    assert_eq!(found.summary.differences, 4);
    assert!(w.downloaded().is_empty());
    assert_eq!(std::fs::read(w.folder().join(damaged.as_str())).unwrap(), bad);

    // --verify --confirm copies the missing and corrupt blobs again (the damaged one read once for
    // both stores) and rewrites the inventories to what the stores now hold.
    let repaired = w.run(&["a", "b"], true, true).await;
    assert!(repaired.is_success());
    assert_eq!(w.downloaded(), {
        let mut two = vec![deleted.clone(), damaged.clone()];
        two.sort();
        two
    });
    assert_mirrored(&w, &["a", "b"]).await;
    assert!(s3.blobs.head(&ObjectName::parse(damaged.as_str()).unwrap()).await.unwrap().unwrap().sha256.is_some());

    let clean = w.run(&["a", "b"], false, true).await;
    assert!(clean.is_success());
    assert_eq!(clean.summary.differences, 0);
}

#[tokio::test]
async fn an_unreadable_image_or_inventory_fails_only_itself() {
    let w = World::start().await;
    let mut images = w.images(&["a"]);
    images.push(Image { name: repo("ghost"), digest: Digest::of(b"nothing") });
    let folder = Destination::open(w.folder().to_str().unwrap(), None, &[]).unwrap();
    let broken = w.dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("inventory.txt"), "sha256:1234\n").unwrap();
    let broken = Destination::open(broken.to_str().unwrap(), None, &[]).unwrap();
    let options = MirrorOptions { confirm: true, ..MirrorOptions::default() };
    let report = ferry_mirror::mirror(w.source.clone(), &images, &[folder.clone(), broken], &options, &silent()).await;
    assert!(!report.is_success());
    assert_eq!(report.summary.images_failed, 1);
    assert!(report.images.iter().any(|i| i.name.as_str() == "ghost" && i.error.as_ref().unwrap().contains("missing")));
    assert!(report.stores[1].error.as_ref().unwrap().contains("inventory.txt:1: "), "{:?}", report.stores[1].error);
    assert_eq!(report.summary.stores_failed, 1);
    let listed: BTreeSet<Digest> = inventory(&folder).await.unwrap().blobs().cloned().collect();
    assert_eq!(listed, w.blobs(&["a"]));
}

fn silent() -> std::sync::Arc<dyn ferry_report::Progress> {
    std::sync::Arc::new(ferry_report::Silent)
}
