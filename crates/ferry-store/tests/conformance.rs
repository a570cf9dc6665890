//! One conformance suite, run against every backend: a local folder, the in-memory store, a
//! real S3 server (`s3s-fs`), Azurite (Azure Blob Storage's emulator) and `fake-gcs-server`
//! (a Google Cloud Storage emulator). `fake-gcs-server` serves the XML API's reads but not its
//! writes (see `GcsServer::xml_writes`): until it does, `gs://` joins the suites that write only
//! as a source (`a_gcs_store_reads_what_the_emulator_holds`), and each suite prints why.

use bytes::Bytes;
use ferry_oci::Digest;
use ferry_store::{copy_object, fan_out, verify_object, Backend, ObjectName, SourceError, Store, SHA256_METADATA};
use ferry_testkit::azurite::Azurite;
use ferry_testkit::gcs_server::GcsServer;
use ferry_testkit::s3_server::S3Server;
use futures::StreamExt;

struct Backends {
    stores: Vec<Store>,
    _dir: tempfile::TempDir,
    _s3: S3Server,
    _azurite: Azurite,
    gcs: GcsServer,
}

async fn backends() -> Backends {
    let dir = tempfile::tempdir().unwrap();
    let (s3, azurite, gcs) = tokio::join!(S3Server::start(), Azurite::start(), GcsServer::start());
    let (s3, azurite, gcs) = (s3.unwrap(), azurite.unwrap(), gcs.unwrap());
    s3.create_bucket("bucket").unwrap();
    azurite.create_container("container").await.unwrap();
    gcs.create_bucket("bucket").await.unwrap();
    let mut stores = vec![
        Store::open(dir.path().join("folder").to_str().unwrap()).unwrap(),
        Store::open("memory:///base").unwrap(),
        Store::open_with("s3://bucket/some/prefix", &s3.env()).unwrap(),
        Store::open_with("az://container/some/prefix", &azurite.settings()).unwrap(),
    ];
    match gcs.xml_writes().await {
        Ok(()) => stores.push(Store::open_with("gs://bucket/some/prefix", &gcs.env()).unwrap()),
        Err(why) => say_once(&format!("gs:// is left out of the suites that write into every backend: {why}")),
    }
    Backends { stores, _dir: dir, _s3: s3, _azurite: azurite, gcs }
}

/// Prints `message` once per test binary, past the test harness's capture (which hides what a
/// passing test prints), so a skipped backend shows in every run's log.
fn say_once(message: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "note: {message}");
    });
}

fn name(s: &str) -> ObjectName {
    ObjectName::parse(s).unwrap()
}

fn chunks(data: &[u8], size: usize) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    let chunks: Vec<_> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures::stream::iter(chunks)
}

async fn read_all(store: &Store, object: &ObjectName) -> Vec<u8> {
    let mut stream = store.read(object).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn verified_copy_lands_byte_exact_everywhere() {
    let b = backends().await;
    // Below one part, and above (a multipart upload on every backend).
    for len in [0, 1000, 9 << 20] {
        let bytes = data(len);
        let digest = Digest::of(&bytes);
        let object = name(&format!("release/{len}/file.bin"));
        let uploads = b.stores.iter().map(|s| s.upload(&object, digest.hex())).collect();
        let result = fan_out(chunks(&bytes, 100_000), &digest, uploads).await;
        assert_eq!(result.source, Ok(()));
        assert_eq!(result.bytes, len as u64);
        for (store, outcome) in b.stores.iter().zip(&result.destinations) {
            assert!(outcome.is_ok(), "{store:?}: {outcome:?}");
            assert_eq!(read_all(store, &object).await, bytes, "{store:?}");
            let info = store.head(&object).await.unwrap().unwrap();
            assert_eq!(info.size, len as u64, "{store:?}");
            if store.backend() != Backend::Local {
                assert_eq!(info.sha256.as_deref(), Some(digest.hex()), "{store:?}");
            }
        }
    }
}

#[tokio::test]
async fn bytes_that_do_not_match_are_written_nowhere() {
    let b = backends().await;
    for len in [1000, 9 << 20] {
        let bytes = data(len);
        let wrong = Digest::of(b"something else");
        let object = name("sha256:bad");
        let uploads = b.stores.iter().map(|s| s.upload(&object, wrong.hex())).collect();
        let result = fan_out(chunks(&bytes, 65536), &wrong, uploads).await;
        assert!(matches!(result.source, Err(SourceError::Mismatch { .. })), "{:?}", result.source);
        for store in &b.stores {
            assert_eq!(store.head(&object).await.unwrap(), None, "{store:?}");
            assert_eq!(store.list("").await.unwrap(), vec![], "{store:?} holds leftovers");
        }
    }
}

#[tokio::test]
async fn a_failed_read_commits_nothing() {
    let b = backends().await;
    let good: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from(vec![1u8; 6 << 20])), Err(std::io::Error::other("connection reset"))];
    let object = name("partial");
    let uploads = b.stores.iter().map(|s| s.upload(&object, Digest::of(b"x").hex())).collect();
    let result = fan_out(futures::stream::iter(good), &Digest::of(b"x"), uploads).await;
    assert!(matches!(result.source, Err(SourceError::Read(ref e)) if e.contains("connection reset")));
    for store in &b.stores {
        assert_eq!(store.head(&object).await.unwrap(), None, "{store:?}");
    }
}

/// Every file under `dir`, staging files included.
fn files_on_disk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_on_disk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// `copy_object` from a folder: into folders only (the one-thread path, and the two-thread one
/// from 8 MiB), and into every backend (the streamed path).
#[tokio::test]
async fn copy_object_from_a_folder_verifies_and_commits_only_good_bytes() {
    let b = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("source").to_str().unwrap()).unwrap();
    let folders: Vec<Store> =
        ["a", "b"].iter().map(|f| Store::open(dir.path().join(f).to_str().unwrap()).unwrap()).collect();
    for destinations in [&folders, &b.stores] {
        for len in [0, 1000, 9 << 20] {
            let bytes = data(len);
            let digest = Digest::of(&bytes);
            let object = name(&format!("copied/{len}.bin"));
            source.put_small(&object, Bytes::from(bytes.clone())).await.unwrap();
            let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counted = read.clone();
            let on_read = move |n| {
                counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            };
            let uploads = destinations.iter().map(|s| s.upload(&object, digest.hex())).collect();
            let result = copy_object(&source, &object, &digest, uploads, on_read).await.unwrap();
            assert_eq!((result.source, result.bytes), (Ok(()), len as u64));
            assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), len as u64);
            for (store, outcome) in destinations.iter().zip(&result.destinations) {
                assert!(outcome.is_ok(), "{store:?}: {outcome:?}");
                assert_eq!(read_all(store, &object).await, bytes, "{store:?}");
            }

            let other = name(&format!("mismatched/{len}.bin"));
            source.put_small(&other, Bytes::from(bytes.clone())).await.unwrap();
            let wrong = Digest::of(b"something else");
            let uploads = destinations.iter().map(|s| s.upload(&other, wrong.hex())).collect();
            let result = copy_object(&source, &other, &wrong, uploads, |_| ()).await.unwrap();
            assert!(matches!(result.source, Err(SourceError::Mismatch { .. })), "{:?}", result.source);
            for store in destinations.iter() {
                assert_eq!(store.head(&other).await.unwrap(), None, "{store:?}");
            }
        }
    }
    for folder in ["a", "b"] {
        let left: Vec<_> = files_on_disk(&dir.path().join(folder).join("mismatched"));
        assert!(left.is_empty(), "{folder} holds leftovers: {left:?}");
    }
    let missing = copy_object(&source, &name("absent"), &Digest::of(b""), Vec::new(), |_| ()).await;
    assert!(missing.unwrap_err().to_string().contains("absent"));
}

/// A folder destination that cannot take the file (a directory where the file goes) fails
/// alone, with nothing left behind; the other still gets it, on both the one- and two-thread
/// paths.
#[tokio::test]
async fn copy_object_into_folders_isolates_a_failing_destination() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("source").to_str().unwrap()).unwrap();
    let good = Store::open(dir.path().join("good").to_str().unwrap()).unwrap();
    let blocked = Store::open(dir.path().join("blocked").to_str().unwrap()).unwrap();
    for len in [1000, 9 << 20] {
        let bytes = data(len);
        let digest = Digest::of(&bytes);
        let object = name(&format!("{len}/file.bin"));
        source.put_small(&object, Bytes::from(bytes.clone())).await.unwrap();
        std::fs::create_dir_all(dir.path().join(format!("blocked/{len}/file.bin/inside"))).unwrap();
        let uploads = vec![blocked.upload(&object, digest.hex()), good.upload(&object, digest.hex())];
        let result = copy_object(&source, &object, &digest, uploads, |_| ()).await.unwrap();
        assert_eq!(result.source, Ok(()));
        assert!(result.destinations[0].is_err(), "{:?}", result.destinations);
        assert!(result.destinations[1].is_ok(), "{:?}", result.destinations);
        assert_eq!(read_all(&good, &object).await, bytes);
        let left = files_on_disk(&dir.path().join(format!("blocked/{len}")));
        assert!(left.is_empty(), "staging files left: {left:?}");
    }
}

/// `verify_object` on every backend: the size and whether the bytes hash to the digest given,
/// else the digest they do hash to; a missing object is an error naming it.
#[tokio::test]
async fn verify_object_hashes_what_is_stored() {
    let b = backends().await;
    for store in &b.stores {
        for len in [0, 1000, 9 << 20] {
            let bytes = data(len);
            let digest = Digest::of(&bytes);
            let object = name(&format!("verified/{len}.bin"));
            store.put_small(&object, Bytes::from(bytes)).await.unwrap();
            let (size, hashed) = verify_object(store, &object, &digest, |_| ()).await.unwrap();
            assert_eq!((size, hashed), (len as u64, Ok(())), "{store:?}");
            let wrong = Digest::of(b"something else");
            let (_, hashed) = verify_object(store, &object, &wrong, |_| ()).await.unwrap();
            assert_eq!(hashed, Err(digest), "{store:?}");
        }
        let missing = verify_object(store, &name("verified/absent"), &Digest::of(b""), |_| ()).await;
        assert!(missing.unwrap_err().to_string().contains("verified/absent"), "{store:?}");
    }
}

#[tokio::test]
async fn small_objects_list_and_delete() {
    let b = backends().await;
    for store in &b.stores {
        assert_eq!(store.read_small(&name("inventory.txt"), u64::MAX).await.unwrap(), None);
        store.put_small(&name("inventory.txt"), Bytes::from_static(b"v1\n")).await.unwrap();
        store.put_small(&name("inventory.txt"), Bytes::from_static(b"v2\n")).await.unwrap();
        store.put_small(&name("sha256:aa"), Bytes::from_static(b"a")).await.unwrap();
        store.put_small(&name("dir/sha256:bb"), Bytes::from_static(b"bb")).await.unwrap();
        assert_eq!(store.read_small(&name("inventory.txt"), u64::MAX).await.unwrap().unwrap(), "v2\n");
        let listed = store.list("").await.unwrap();
        let names: Vec<_> = listed.iter().map(|(n, size)| (n.as_str(), *size)).collect();
        assert_eq!(names, [("dir/sha256:bb", 2), ("inventory.txt", 3), ("sha256:aa", 1)], "{store:?}");
        let sha: Vec<_> = store.list("sha256:").await.unwrap().into_iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(sha, ["sha256:aa"], "{store:?}");
        store.delete(&name("sha256:aa")).await.unwrap();
        store.delete(&name("sha256:aa")).await.unwrap();
        assert_eq!(store.head(&name("sha256:aa")).await.unwrap(), None);
    }
}

#[tokio::test]
async fn stores_only_see_their_own_prefix() {
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket("bucket").unwrap();
    let outer = Store::open_with("s3://bucket/", &s3.env()).unwrap();
    let inner = Store::open_with("s3://bucket/prod", &s3.env()).unwrap();
    outer.put_small(&name("staging/a"), Bytes::from_static(b"a")).await.unwrap();
    inner.put_small(&name("b"), Bytes::from_static(b"b")).await.unwrap();
    assert_eq!(inner.list("").await.unwrap(), vec![(name("b"), 1)]);
    assert!(outer.head(&name("prod/b")).await.unwrap().is_some());
}

#[tokio::test]
async fn azure_stores_only_see_their_own_prefix() {
    let azurite = Azurite::start().await.unwrap();
    azurite.create_container("container").await.unwrap();
    let outer = Store::open_with("az://container/", &azurite.settings()).unwrap();
    let inner = Store::open_with("az://container/prod", &azurite.settings()).unwrap();
    outer.put_small(&name("staging/a"), Bytes::from_static(b"a")).await.unwrap();
    inner.put_small(&name("b"), Bytes::from_static(b"b")).await.unwrap();
    assert_eq!(inner.list("").await.unwrap(), vec![(name("b"), 1)]);
    assert!(outer.head(&name("prod/b")).await.unwrap().is_some());
    let blobs: Vec<String> = azurite.list("container").await.unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(blobs, ["prod/b", "staging/a"]);
}

/// `gs://` as a source, the one way the GCS emulator serves `object_store`'s client: objects
/// written through the emulator's JSON API (with the sha256 metadata Ferry records) are seen by
/// HEAD, read whole, in part and listed through Ferry's store, verified, copied into every other
/// backend and deleted; a store sees only its own prefix.
#[tokio::test]
async fn a_gcs_store_reads_what_the_emulator_holds() {
    let b = backends().await;
    let gcs = &b.gcs;
    let store = Store::open_with("gs://bucket/some/prefix", &gcs.env()).unwrap();
    let outer = Store::open_with("gs://bucket/", &gcs.env()).unwrap();
    assert_eq!(store.list("").await.unwrap(), vec![]);
    for len in [0, 1000, 9 << 20] {
        let bytes = data(len);
        let digest = Digest::of(&bytes);
        let object = name(&format!("release/{len}/file.bin"));
        let metadata = [(SHA256_METADATA, digest.hex())];
        gcs.put_object("bucket", &format!("some/prefix/{object}"), &bytes, &metadata).await.unwrap();

        let info = store.head(&object).await.unwrap().unwrap();
        assert_eq!((info.size, info.sha256.as_deref()), (len as u64, Some(digest.hex())));
        assert_eq!(read_all(&store, &object).await, bytes);
        let (size, hashed) = verify_object(&store, &object, &digest, |_| ()).await.unwrap();
        assert_eq!((size, hashed), (len as u64, Ok(())));
        let (_, hashed) = verify_object(&store, &object, &Digest::of(b"something else"), |_| ()).await.unwrap();
        assert_eq!(hashed, Err(digest.clone()));
        assert!(outer.head(&name(&format!("some/prefix/{object}"))).await.unwrap().is_some());

        // Into every backend that takes writes, through the streamed path.
        let uploads = b.stores.iter().map(|s| s.upload(&object, digest.hex())).collect();
        let result = copy_object(&store, &object, &digest, uploads, |_| ()).await.unwrap();
        assert_eq!((result.source, result.bytes), (Ok(()), len as u64));
        for (destination, outcome) in b.stores.iter().zip(&result.destinations) {
            assert!(outcome.is_ok(), "{destination:?}: {outcome:?}");
            assert_eq!(read_all(destination, &object).await, bytes, "{destination:?}");
        }
    }
    gcs.put_object("bucket", "some/prefix/inventory.txt", b"v2\n", &[]).await.unwrap();
    gcs.put_object("bucket", "elsewhere/sha256:aa", b"a", &[]).await.unwrap();
    assert_eq!(store.read_small(&name("inventory.txt"), u64::MAX).await.unwrap().unwrap(), "v2\n");
    assert!(store.read_small(&name("inventory.txt"), 1).await.is_err());
    assert_eq!(store.read_small(&name("absent"), u64::MAX).await.unwrap(), None);
    assert_eq!(store.head(&name("absent")).await.unwrap(), None);
    let listed: Vec<_> = store.list("").await.unwrap().into_iter().map(|(n, size)| (n.to_string(), size)).collect();
    let expected = [("inventory.txt", 3), ("release/0/file.bin", 0), ("release/1000/file.bin", 1000)];
    let mut expected: Vec<_> = expected.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    expected.push(("release/9437184/file.bin".into(), 9 << 20));
    assert_eq!(listed, expected);
    assert_eq!(store.list_all().await.unwrap().len(), 4);
    let missing = verify_object(&store, &name("verified/absent"), &Digest::of(b""), |_| ()).await;
    assert!(missing.unwrap_err().to_string().contains("verified/absent"));

    store.delete(&name("inventory.txt")).await.unwrap();
    store.delete(&name("inventory.txt")).await.unwrap();
    assert_eq!(store.head(&name("inventory.txt")).await.unwrap(), None);
    assert_eq!(gcs.object("bucket", "some/prefix/inventory.txt").await.unwrap(), None);
    assert!(gcs.object("bucket", "elsewhere/sha256:aa").await.unwrap().is_some());
}

#[test]
fn bad_urls_and_settings_are_refused_with_the_url() {
    let err = Store::open_with("s3://bucket/", &[("AWS_NOT_A_SETTING".into(), "x".into())]).unwrap_err();
    assert!(err.to_string().contains("AWS_NOT_A_SETTING"), "{err}");
    let err = Store::open("ftp://host/x").unwrap_err();
    assert!(err.to_string().contains("ftp://host/x"), "{err}");
}

/// Every directory under `dir`, sorted.
fn dirs_on_disk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut dirs: Vec<_> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .flat_map(|path| std::iter::once(path.clone()).chain(dirs_on_disk(&path)))
        .collect();
    dirs.sort();
    dirs
}

/// A name whose last segment is longer than any file system takes (255 bytes): its folders can
/// be created, its staging file cannot.
fn unwritable_name(dirs: &str) -> ObjectName {
    name(&format!("{dirs}/{}", "x".repeat(300)))
}

/// A failed write into a folder removes the directories it created for the file, deepest first,
/// and no other: not one that existed before, not one another write has put something in since.
/// Bytes that do not match, a source that breaks off, and a file that cannot be created; through
/// `fan_out` and through `copy_object`'s one-thread path.
#[tokio::test]
async fn a_failed_write_leaves_no_directory_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    let store = Store::open(folder.to_str().unwrap()).unwrap();
    std::fs::create_dir_all(folder.join("existing/inner")).unwrap();
    let before = dirs_on_disk(&folder);
    let bytes = data(200_000);
    let wrong = Digest::of(b"something else");

    let mismatched = fan_out(chunks(&bytes, 65536), &wrong, vec![store.upload(&name("new/a/b/file"), wrong.hex())]);
    assert!(matches!(mismatched.await.source, Err(SourceError::Mismatch { .. })));
    let broken: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from(bytes.clone())), Err(std::io::Error::other("connection reset"))];
    let object = name("existing/inner/new/file");
    let result = fan_out(futures::stream::iter(broken), &wrong, vec![store.upload(&object, wrong.hex())]).await;
    assert!(matches!(result.source, Err(SourceError::Read(_))), "{:?}", result.source);
    let digest = Digest::of(&bytes);
    let result = fan_out(chunks(&bytes, 65536), &digest, vec![store.upload(&unwritable_name("new/c"), digest.hex())]);
    assert!(result.await.destinations[0].is_err());
    assert_eq!(dirs_on_disk(&folder), before, "the async path left directories");

    let source = Store::open(dir.path().join("source").to_str().unwrap()).unwrap();
    let object = name("staged.bin");
    source.put_small(&object, Bytes::from(bytes.clone())).await.unwrap();
    for (destination, expected) in [(name("new/d/e/file"), &wrong), (unwritable_name("existing/new/f"), &digest)] {
        let uploads = vec![store.upload(&destination, expected.hex())];
        let result = copy_object(&source, &object, expected, uploads, |_| ()).await.unwrap();
        assert!(result.source.is_err() || result.destinations[0].is_err(), "{result:?}");
    }
    assert_eq!(dirs_on_disk(&folder), before, "the one-thread path left directories");

    // Another write puts a file in a directory the failing one created: that one stays.
    let mut upload = store.upload(&name("shared/sub/file"), wrong.hex());
    upload.write(Bytes::from_static(b"partial")).await.unwrap();
    store.put_small(&name("shared/other"), Bytes::from_static(b"other")).await.unwrap();
    upload.abort().await;
    assert!(!folder.join("shared/sub").exists() && folder.join("shared/other").exists());
}
