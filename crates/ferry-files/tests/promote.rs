//! File promotion against a real S3 server (`s3s-fs`), local folders and the in-memory store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use ferry_files::{Action, FilesOptions, Report, Status, Stores};
use ferry_manifest::FileManifest;
use ferry_oci::Digest;
use ferry_store::{ObjectName, Store};
use ferry_testkit::s3_server::S3Server;
use futures::StreamExt;

/// Deterministic bytes, different for each seed.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8).collect()
}

fn name(s: &str) -> ObjectName {
    ObjectName::parse(s).unwrap()
}

/// A staging folder, an S3 bucket and a local production folder, with a kpromo manifests dir.
struct World {
    dir: tempfile::TempDir,
    s3: S3Server,
}

impl World {
    async fn new() -> World {
        let s3 = S3Server::start().await.unwrap();
        s3.create_bucket("prod").unwrap();
        World { dir: tempfile::tempdir().unwrap(), s3 }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Puts `bytes` at `staging/<name>` and returns its sha256 hex.
    fn stage(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path("staging").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        Digest::of(bytes).hex().to_string()
    }

    fn local(&self) -> PathBuf {
        self.path("prod-local")
    }

    /// Project `project` promoting `files` (name, sha256 hex) from staging to S3 and the local
    /// folder.
    fn project(&self, project: &str, files: &[(&str, &str)]) -> FileManifest {
        let stores = format!(
            "filestores:\n- base: {}\n  src: true\n- base: s3://prod/binaries/\n- base: {}\n",
            self.path("staging").display(),
            self.local().display()
        );
        let stores_path = self.path(&format!("m/filestores/{project}/filepromoter-manifest.yaml"));
        std::fs::create_dir_all(stores_path.parent().unwrap()).unwrap();
        std::fs::write(&stores_path, stores).unwrap();
        let mut yaml = String::from("files:\n");
        for (name, sha) in files {
            yaml += &format!("- name: {name}\n  sha256: {sha}\n");
        }
        let files_path = self.path(&format!("m/manifests/{project}/release.yaml"));
        std::fs::create_dir_all(files_path.parent().unwrap()).unwrap();
        std::fs::write(&files_path, yaml).unwrap();
        ferry_manifest::load_files(&stores_path, &files_path).unwrap()
    }

    fn stores(&self, manifests: &[FileManifest]) -> Stores {
        Stores::open(manifests, |base| Store::open_with(base, &self.s3.env())).unwrap()
    }

    fn s3_store(&self) -> Store {
        Store::open_with("s3://prod/binaries/", &self.s3.env()).unwrap()
    }

    fn local_store(&self) -> Store {
        Store::open(self.local().to_str().unwrap()).unwrap()
    }
}

async fn run(manifests: &[FileManifest], stores: &Stores, options: FilesOptions) -> Report {
    ferry_files::promote(
        manifests,
        stores,
        &options,
        &(std::sync::Arc::new(ferry_report::Silent) as std::sync::Arc<dyn ferry_report::Progress>),
    )
    .await
}

fn confirm() -> FilesOptions {
    FilesOptions { confirm: true, ..Default::default() }
}

async fn read_all(store: &Store, object: &str) -> Vec<u8> {
    let mut stream = store.read(&name(object)).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Every file under `dir` with its size, modification time and inode: any rewrite changes it.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                files.insert(entry.path(), (meta.len(), meta.modified().unwrap(), meta.ino()));
            }
        }
    }
    files
}

fn statuses(report: &Report) -> Vec<(String, String, Status)> {
    report.files.iter().map(|t| (t.target.name.to_string(), t.target.destination.clone(), t.status)).collect()
}

#[tokio::test]
async fn dry_run_then_promote_then_a_rerun_that_writes_nothing() {
    let w = World::new().await;
    // Below one part, and above (a multipart upload to S3 and to the folder).
    let small = data(1000, 1);
    let big = data(9 << 20, 2);
    let files = [
        ("v1.30.0/bin/linux/amd64/kubectl", w.stage("v1.30.0/bin/linux/amd64/kubectl", &big)),
        ("v1.30.0/kubectl.sha256", w.stage("v1.30.0/kubectl.sha256", &small)),
        ("empty", w.stage("empty", b"")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
    let manifests = vec![w.project("k8s", &files)];
    let stores = w.stores(&manifests);
    let staging_before = snapshot(&w.path("staging"));

    let dry = run(&manifests, &stores, FilesOptions::default()).await;
    assert_eq!(dry.summary.tally.planned, 6, "{:#?}", dry.files);
    assert!(dry.is_success());
    assert_eq!((dry.summary.bytes_read, dry.summary.bytes_written), (0, 0));
    assert!(!w.local().exists(), "a dry run created the local destination");
    assert!(snapshot(&w.s3.bucket_dir("prod")).is_empty(), "a dry run wrote to S3");

    let report = run(&manifests, &stores, confirm()).await;
    assert_eq!(report.summary.tally.promoted, 6, "{:#?}", report.files);
    assert!(report.is_success());
    // Each source file read once for both destinations.
    assert_eq!(report.summary.files_read, 3);
    assert_eq!(report.summary.bytes_read, (big.len() + small.len()) as u64);
    assert_eq!(report.summary.bytes_written, 2 * (big.len() + small.len()) as u64);
    for store in [w.s3_store(), w.local_store()] {
        assert_eq!(read_all(&store, "v1.30.0/bin/linux/amd64/kubectl").await, big, "{store:?}");
        assert_eq!(read_all(&store, "v1.30.0/kubectl.sha256").await, small, "{store:?}");
        assert_eq!(read_all(&store, "empty").await, b"", "{store:?}");
        // Nothing else: no staging or part files left behind.
        assert_eq!(store.list("").await.unwrap().len(), 3, "{store:?}");
    }
    assert_eq!(std::fs::read(w.local().join("v1.30.0/bin/linux/amd64/kubectl")).unwrap(), big);
    assert_eq!(std::fs::read(w.s3.bucket_dir("prod").join("binaries/v1.30.0/kubectl.sha256")).unwrap(), small);

    let local_before = snapshot(&w.local());
    let s3_before = snapshot(&w.s3.bucket_dir("prod"));
    let again = run(&manifests, &stores, confirm()).await;
    assert_eq!(again.summary.tally.skipped, 6, "{:#?}", again.files);
    assert_eq!((again.summary.files_read, again.summary.bytes_read, again.summary.bytes_written), (0, 0, 0));
    for target in &again.files {
        let expected = if target.target.destination.starts_with("s3://") {
            "already there (recorded sha256)"
        } else {
            "already there (re-hashed)"
        };
        assert_eq!(target.target.reason.as_deref(), Some(expected), "{target}");
    }
    // S3 proved its copies from metadata; only the folder's were read back.
    assert_eq!(again.summary.bytes_rehashed, (big.len() + small.len()) as u64);
    assert_eq!(snapshot(&w.local()), local_before, "the re-run rewrote a local file");
    assert_eq!(snapshot(&w.s3.bucket_dir("prod")), s3_before, "the re-run rewrote an S3 object");
    assert_eq!(snapshot(&w.path("staging")), staging_before, "the source was touched");
}

#[tokio::test]
async fn a_source_that_does_not_match_its_sha256_is_written_nowhere() {
    let w = World::new().await;
    let good = w.stage("good", &data(5000, 3));
    w.stage("tampered", &data(9 << 20, 4));
    let claimed = Digest::of(b"what the manifest was reviewed with").hex().to_string();
    let manifests = vec![w.project("k8s", &[("tampered", &claimed), ("good", &good)])];
    let stores = w.stores(&manifests);

    let report = run(&manifests, &stores, confirm()).await;
    assert!(!report.is_success());
    assert_eq!(report.summary.tally.failed, 2, "{:#?}", report.files);
    assert_eq!(report.summary.tally.promoted, 2, "the good file must still land");
    for target in report.files.iter().filter(|t| t.target.name.as_str() == "tampered") {
        assert_eq!(target.status, Status::Failed);
        assert!(target.error.as_deref().unwrap().contains("written nowhere"), "{target}");
    }
    for store in [w.s3_store(), w.local_store()] {
        assert_eq!(store.head(&name("tampered")).await.unwrap(), None, "{store:?}");
        let names: Vec<_> = store.list("").await.unwrap().into_iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["good"], "{store:?}");
    }
    // Not even a staging file in the folder.
    let leftovers: Vec<_> = snapshot(&w.local()).into_keys().filter(|p| !p.ends_with("good")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_destination_holding_other_bytes_is_left_alone_unless_overwrite_is_allowed() {
    let w = World::new().await;
    let release = data(3000, 5);
    let sha = w.stage("kubectl", &release);
    let other = w.stage("other", &data(100, 6));
    let manifests = vec![w.project("k8s", &[("kubectl", &sha), ("other", &other)])];
    let stores = w.stores(&manifests);
    // The folder holds other bytes (no record: found by re-hashing); S3 holds an object that
    // records another sha256.
    std::fs::create_dir_all(w.local()).unwrap();
    std::fs::write(w.local().join("kubectl"), b"someone else's kubectl").unwrap();
    let mut upload = w.s3_store().upload(&name("kubectl"), &"f".repeat(64));
    upload.write(Bytes::from_static(b"an older kubectl")).await.unwrap();
    upload.commit().await.unwrap();
    let s3_file = w.s3.bucket_dir("prod").join("binaries/kubectl");
    let before = (std::fs::read(w.local().join("kubectl")).unwrap(), std::fs::read(&s3_file).unwrap());

    let report = run(&manifests, &stores, confirm()).await;
    assert!(!report.is_success());
    let refused: Vec<_> = report.files.iter().filter(|t| t.status == Status::Refused).collect();
    assert_eq!(refused.len(), 2, "{:#?}", report.files);
    assert!(refused.iter().all(|t| t.target.name.as_str() == "kubectl"));
    assert!(refused.iter().all(|t| t.target.reason.as_deref().unwrap().contains("never overwritten")));
    assert!(refused.iter().any(|t| t
        .target
        .reason
        .as_deref()
        .unwrap()
        .contains(&format!("recorded sha256 {}", "f".repeat(64)))));
    assert!(refused.iter().any(|t| t
        .target
        .reason
        .as_deref()
        .unwrap()
        .contains(Digest::of(b"someone else's kubectl").as_str())));
    assert_eq!(report.summary.tally.promoted, 2, "the other file must still land");
    assert_eq!((std::fs::read(w.local().join("kubectl")).unwrap(), std::fs::read(&s3_file).unwrap()), before);

    let allowed = FilesOptions { confirm: true, allow_overwrite: true, ..Default::default() };
    let report = run(&manifests, &stores, allowed).await;
    assert!(report.is_success(), "{:#?}", report.files);
    let overwritten: Vec<_> = report.files.iter().filter(|t| t.target.action == Action::Overwrite).collect();
    assert_eq!(overwritten.len(), 2);
    assert!(overwritten.iter().all(|t| t.status == Status::Promoted));
    assert_eq!(read_all(&w.s3_store(), "kubectl").await, release);
    assert_eq!(read_all(&w.local_store(), "kubectl").await, release);
}

#[tokio::test]
async fn manifests_that_disagree_refuse_only_that_file() {
    let w = World::new().await;
    let a = w.stage("shared", &data(10, 7));
    let b = Digest::of(b"another").hex().to_string();
    let mine = w.stage("mine", &data(10, 8));
    let manifests = vec![w.project("one", &[("shared", &a), ("mine", &mine)]), w.project("two", &[("shared", &b)])];
    let stores = w.stores(&manifests);
    let report = run(&manifests, &stores, confirm()).await;
    let shared: Vec<_> = report.files.iter().filter(|t| t.target.name.as_str() == "shared").collect();
    assert_eq!(shared.len(), 4);
    for t in shared {
        assert_eq!(t.status, Status::Refused);
        let reason = t.target.reason.as_deref().unwrap();
        assert!(reason.contains("disagree") && reason.contains(&a) && reason.contains(&b), "{reason}");
    }
    assert_eq!(report.summary.tally.promoted, 2);
    assert_eq!(w.s3_store().head(&name("shared")).await.unwrap(), None);
}

#[tokio::test]
async fn inventories_list_what_each_destination_holds() {
    let w = World::new().await;
    let one = w.stage("v1/kubectl", &data(10, 9));
    let two = w.stage("v1/kubeadm", &data(10, 10));
    let lost = Digest::of(b"never staged").hex().to_string();
    let manifests = vec![w.project("k8s", &[("v1/kubectl", &one), ("v1/kubeadm", &two), ("v1/lost", &lost)])];
    let stores = w.stores(&manifests);
    // An earlier run's entry is kept; one for a file this run finds missing is dropped.
    let inventory = name("inventory.txt");
    w.s3_store().put_small(&inventory, Bytes::from_static(b"/v0/kubectl\n/v1/lost\n")).await.unwrap();
    let options = FilesOptions { confirm: true, inventory: Some(inventory.clone()), ..Default::default() };

    let dry = run(&manifests, &stores, FilesOptions { confirm: false, ..options.clone() }).await;
    assert!(dry.inventories.iter().all(|i| i.status == ferry_files::InventoryStatus::Planned), "{:?}", dry.inventories);
    assert!(!w.local().exists());

    let report = run(&manifests, &stores, options.clone()).await;
    assert_eq!(report.summary.tally.refused, 2, "the lost file is refused");
    let s3 = w.s3_store().read_small(&inventory, u64::MAX).await.unwrap().unwrap();
    // The earlier run's line keeps its form (no size); this run's files are listed with theirs.
    assert_eq!(s3, "/v0/kubectl\n/v1/kubeadm 10\n/v1/kubectl 10\n");
    let local = w.local_store().read_small(&inventory, u64::MAX).await.unwrap().unwrap();
    assert_eq!(local, "/v1/kubeadm 10\n/v1/kubectl 10\n");

    let again = run(&manifests, &stores, options).await;
    assert!(
        again.inventories.iter().all(|i| i.status == ferry_files::InventoryStatus::Unchanged),
        "{:?}",
        again.inventories
    );
}

#[tokio::test]
async fn google_and_azure_stores_open_from_their_configuration_and_memory_takes_the_copy() {
    // No local server speaks the GCS or Azure protocols here: their configuration is parsed and
    // the clients built, and the copy itself goes to the in-memory store.
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let bytes = data(70_000, 11);
    std::fs::write(staging.join("kops"), &bytes).unwrap();
    let stores_path = dir.path().join("filepromoter-manifest.yaml");
    std::fs::write(
        &stores_path,
        format!(
            "filestores:\n- base: {}\n  src: true\n- base: gs://k8s-artifacts-prod/binaries/kops/\n- base: az://artifacts/binaries/\n- base: memory:///mirror\n",
            staging.display()
        ),
    )
    .unwrap();
    let files_path = dir.path().join("files.yaml");
    std::fs::write(&files_path, format!("files:\n- name: kops\n  sha256: {}\n", Digest::of(&bytes).hex())).unwrap();
    let manifests = vec![ferry_manifest::load_files(&stores_path, &files_path).unwrap()];
    // Application default credentials as `gcloud auth application-default login` leaves them.
    let adc = dir.path().join("application_default_credentials.json");
    std::fs::write(
        &adc,
        r#"{"type":"authorized_user","client_id":"id","client_secret":"secret","refresh_token":"token"}"#,
    )
    .unwrap();
    let settings = |base: &str| -> Vec<(String, String)> {
        if base.starts_with("gs://") {
            vec![("GOOGLE_APPLICATION_CREDENTIALS".into(), adc.display().to_string())]
        } else if base.starts_with("az://") {
            vec![
                ("AZURE_STORAGE_ACCOUNT_NAME".into(), "artifacts".into()),
                ("AZURE_STORAGE_ACCOUNT_KEY".into(), "a2V5".into()),
            ]
        } else {
            Vec::new()
        }
    };
    let stores = Stores::open(&manifests, |base| Store::open_with(base, &settings(base))).unwrap();
    assert_eq!(stores.get("gs://k8s-artifacts-prod/binaries/kops").backend(), ferry_store::Backend::Gcs);
    assert_eq!(stores.get("az://artifacts/binaries/").backend(), ferry_store::Backend::Azure);

    // A bad setting is refused at open, naming the filestores file and line.
    let err = Stores::open(&manifests, |base| {
        let mut s = settings(base);
        if base.starts_with("az://") {
            s.push(("AZURE_NOT_A_SETTING".into(), "x".into()));
        }
        Store::open_with(base, &s)
    })
    .unwrap_err();
    assert!(err.to_string().starts_with(&format!("{}:5: ", stores_path.display())), "{err}");

    // Only the in-memory destination is promoted to here (one manifest, one destination).
    let memory_only = vec![FileManifest {
        destinations: manifests[0].destinations.iter().filter(|d| d.base.starts_with("memory:")).cloned().collect(),
        ..manifests[0].clone()
    }];
    let report = run(&memory_only, &stores, confirm()).await;
    assert_eq!(statuses(&report), [("kops".to_string(), "memory:///mirror".to_string(), Status::Promoted)]);
    assert_eq!(read_all(stores.get("memory:///mirror"), "kops").await, bytes);
    let again = run(&memory_only, &stores, confirm()).await;
    assert_eq!(again.files[0].target.reason.as_deref(), Some("already there (recorded sha256)"));
}

/// A TCP proxy in front of the S3 server that answers the first request of the first `faults`
/// connections with `503 SlowDown` (what S3 says when it throttles; s3s-fs never does) and
/// closes them; every other connection is forwarded byte for byte, so signatures still hold.
/// Returns the proxy's port and how many requests it throttled.
async fn throttling_proxy(upstream: String, faults: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let throttled = std::sync::Arc::new(AtomicUsize::new(0));
    let count = throttled.clone();
    tokio::spawn(async move {
        let mut accepted = 0;
        while let Ok((mut client, _)) = listener.accept().await {
            accepted += 1;
            if accepted > faults {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let mut server = tokio::net::TcpStream::connect(upstream.as_str()).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                continue;
            }
            let count = count.clone();
            tokio::spawn(async move {
                // Read the request head (and any body it announces) before answering.
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let mut body = request.len() - head_end;
                while body < length {
                    match client.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body += n,
                    }
                }
                let xml = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                let answer = format!(
                    "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
                    xml.len()
                );
                count.fetch_add(1, Ordering::SeqCst);
                let _ = client.write_all(answer.as_bytes()).await;
                let _ = client.shutdown().await;
            });
        }
    });
    (port, throttled)
}

#[tokio::test]
async fn throttled_requests_are_retried_with_backoff() {
    let w = World::new().await;
    let files: Vec<(String, String)> =
        (0..3).map(|i| (format!("f{i}"), w.stage(&format!("f{i}"), &data(20_000 + i, i as u8)))).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    let manifests = vec![w.project("k8s", &files)];
    let (port, throttled) = throttling_proxy(w.s3.endpoint().trim_start_matches("http://").to_string(), 4).await;
    let mut env = w.s3.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), format!("http://127.0.0.1:{port}")));
    let stores = Stores::open(&manifests, |base| Store::open_with(base, &env)).unwrap();

    let report = run(&manifests, &stores, confirm()).await;
    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(report.summary.tally.promoted, 6);
    assert_eq!(throttled.load(std::sync::atomic::Ordering::SeqCst), 4, "the proxy throttled fewer requests than set");
    for (file, _) in &files {
        assert_eq!(
            read_all(&w.s3_store(), file).await.len(),
            std::fs::metadata(w.path("staging").join(file)).unwrap().len() as usize
        );
    }
}

#[tokio::test]
async fn a_destination_that_cannot_be_written_fails_alone_and_keeps_nothing() {
    let w = World::new().await;
    let bytes = data(6 << 20, 12);
    let sha = w.stage("bin/kubectl", &bytes);
    let manifests = vec![w.project("k8s", &[("bin/kubectl", &sha)])];
    let stores = w.stores(&manifests);
    // In the folder, a directory is in the way: the bytes are written beside it, but the rename
    // that would publish them fails.
    std::fs::create_dir_all(w.local().join("bin/kubectl")).unwrap();

    let report = run(&manifests, &stores, confirm()).await;
    assert!(!report.is_success());
    let by_destination: Vec<_> = statuses(&report).into_iter().map(|(_, d, s)| (d.starts_with("s3://"), s)).collect();
    assert_eq!(by_destination, [(true, Status::Promoted), (false, Status::Failed)], "{:#?}", report.files);
    assert!(report.files[1].error.as_deref().unwrap().contains("renaming"), "{}", report.files[1]);
    assert_eq!(report.summary.files_read, 1);
    assert_eq!(read_all(&w.s3_store(), "bin/kubectl").await, bytes);
    assert!(snapshot(&w.local()).is_empty(), "the failed write left a file behind");
}
