//! The cloud data paths through the binary, against emulators on loopback ports: `ferry promote
//! files` and `ferry mirror` into Azure Blob Storage (Azurite, reached as Azure's tools reach it:
//! `AZURE_STORAGE_USE_EMULATOR`, `AZURITE_BLOB_STORAGE_URL`) and Google Cloud Storage
//! (`fake-gcs-server`, through a service account key naming it in `gcs_base_url`), every object
//! read back through the emulator's own API, not through Ferry.
//!
//! `fake-gcs-server` 1.54.0 serves the XML API's reads but refuses its writes (see
//! `GcsServer::xml_writes`): `gs://` is tested as a staging source (`ferry manifest files` and
//! `ferry promote files` from it), and as a destination only where the emulator takes writes;
//! where it does not, the test prints exactly what it skipped and why.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use ferry_oci::Digest;
use ferry_testkit::azurite::Azurite;
use ferry_testkit::gcs_server::GcsServer;
use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;

fn ferry(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).envs(env.iter().cloned()).output().expect("run ferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// Prints a skipped step past the test harness's capture, so it shows in every run's log.
fn say(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "note: {message}");
}

/// Both emulators, with `container` in Azurite and `bucket` in the GCS emulator, and the
/// environment that points the binary at them; whether the GCS emulator takes writes.
async fn emulators(container: &str, bucket: &str) -> (Azurite, GcsServer, Vec<(String, String)>, Result<(), String>) {
    let (azurite, gcs) = tokio::join!(Azurite::start(), GcsServer::start());
    let (azurite, gcs) = (azurite.unwrap(), gcs.unwrap());
    azurite.create_container(container).await.unwrap();
    gcs.create_bucket(bucket).await.unwrap();
    let env = [azurite.env(), gcs.env()].concat();
    let writes = gcs.xml_writes().await;
    (azurite, gcs, env, writes)
}

/// Release files of several sizes: empty, small, one read chunk and more, and one past a
/// multipart part (8 MiB), which goes up in blocks.
fn release_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("1.30.0/linux/amd64/kops", (0..300_000u32).map(|i| (i % 251) as u8).collect()),
        ("1.30.0/linux/amd64/kops.sha256", b"2d4f26491e0e\n".to_vec()),
        ("1.30.0/empty", Vec::new()),
        ("1.30.0/kops.tar.gz", (0..(9u32 << 20)).map(|i| (i % 241) as u8).collect()),
    ]
}

fn files_manifest(files: &[(&str, Vec<u8>)]) -> String {
    let mut yaml = String::from("files:\n");
    for (name, bytes) in files {
        yaml += &format!("- name: {name}\n  sha256: {}\n", Digest::of(bytes).hex());
    }
    yaml
}

/// The inventory `ferry promote files --inventory` writes for `files`.
fn files_inventory(files: &[(&str, Vec<u8>)]) -> String {
    let mut lines: Vec<String> = files.iter().map(|(name, bytes)| format!("/{name} {}\n", bytes.len())).collect();
    lines.sort();
    lines.concat()
}

/// Every file of `files` under `prefix` of the Azurite container, byte-exact and with its
/// sha256 recorded in the metadata.
async fn assert_in_azure(azurite: &Azurite, container: &str, prefix: &str, files: &[(&str, Vec<u8>)]) {
    for (name, bytes) in files {
        let blob = azurite.blob(container, &format!("{prefix}{name}")).await.unwrap();
        let blob = blob.unwrap_or_else(|| panic!("az://{container}/{prefix}{name} is missing"));
        assert!(blob.bytes == *bytes, "az://{container}/{prefix}{name}: other bytes");
        assert_eq!(blob.metadata.get("sha256").map(String::as_str), Some(Digest::of(bytes).hex()), "{name}");
    }
}

/// [`assert_in_azure`] for the GCS emulator.
async fn assert_in_gcs(gcs: &GcsServer, bucket: &str, prefix: &str, files: &[(&str, Vec<u8>)]) {
    for (name, bytes) in files {
        let object = gcs.object(bucket, &format!("{prefix}{name}")).await.unwrap();
        let object = object.unwrap_or_else(|| panic!("gs://{bucket}/{prefix}{name} is missing"));
        assert!(object.bytes == *bytes, "gs://{bucket}/{prefix}{name}: other bytes");
        assert_eq!(object.metadata.get("sha256").map(String::as_str), Some(Digest::of(bytes).hex()), "{name}");
    }
}

/// What each emulator holds, with what changes on every write (ETag, generation).
async fn written(azurite: &Azurite, container: &str, gcs: &GcsServer, bucket: &str) -> Vec<String> {
    let mut state: Vec<String> =
        azurite.list(container).await.unwrap().into_iter().map(|(name, etag)| format!("az {name} {etag}")).collect();
    for name in gcs.list(bucket).await.unwrap() {
        let generation = gcs.object(bucket, &name).await.unwrap().map(|o| o.generation).unwrap_or_default();
        state.push(format!("gs {name} {generation}"));
    }
    state
}

#[tokio::test]
async fn promote_files_into_azure_and_gcs_then_a_rerun_writes_nothing() {
    let (azurite, gcs, env, gcs_writes) = emulators("prod", "prod").await;
    let dir = tempfile::tempdir().unwrap();
    let (staging, manifests) = (dir.path().join("staging"), dir.path().join("m"));
    let files = release_files();
    for (name, bytes) in &files {
        write(&staging.join(name), bytes);
    }
    let mut stores = format!("filestores:\n- base: {}\n  src: true\n- base: az://prod/bin/\n", staging.display());
    match &gcs_writes {
        Ok(()) => stores += "- base: gs://prod/bin/\n",
        Err(why) => say(&format!("`ferry promote files` into gs:// skipped: {why}")),
    }
    let destinations = if gcs_writes.is_ok() { 2 } else { 1 };
    write(&manifests.join("filestores/kops/filepromoter-manifest.yaml"), stores.as_bytes());
    write(&manifests.join("manifests/kops/release.yaml"), files_manifest(&files).as_bytes());
    let args = ["promote", "files", "--manifests", manifests.to_str().unwrap(), "--inventory"];

    let run = ferry(&[&args[..], &["--confirm", "--output", "json"]].concat(), &env);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let report = json(&run);
    assert_eq!(report["summary"]["promoted"], files.len() * destinations, "{report:#}");
    assert_eq!(report["summary"]["files_read"], files.len(), "{report:#}");
    assert_in_azure(&azurite, "prod", "bin/", &files).await;
    let inventory = azurite.blob("prod", "bin/inventory.txt").await.unwrap().expect("an inventory");
    assert_eq!(text(&inventory.bytes), files_inventory(&files));
    if gcs_writes.is_ok() {
        assert_in_gcs(&gcs, "prod", "bin/", &files).await;
        let inventory = gcs.object("prod", "bin/inventory.txt").await.unwrap().expect("an inventory");
        assert_eq!(text(&inventory.bytes), files_inventory(&files));
    }

    let before = written(&azurite, "prod", &gcs, "prod").await;
    assert_eq!(before.len(), (files.len() + 1) * destinations, "{before:#?}");
    let again = ferry(&[&args[..], &["--confirm"]].concat(), &env);
    assert_eq!(again.status.code(), Some(0), "{}\n{}", text(&again.stdout), text(&again.stderr));
    let out = text(&again.stdout);
    let skipped = files.len() * destinations;
    let expected = format!("promoted 0, skipped {skipped}, refused 0, failed 0; read 0 B in 0 files, wrote 0 B");
    assert!(out.contains(&expected) && out.contains("inventory unchanged"), "{out}");
    assert_eq!(written(&azurite, "prod", &gcs, "prod").await, before, "the re-run wrote");
}

/// A `gs://` staging bucket, as a release leaves one: `ferry manifest files` lists and hashes it,
/// `ferry promote files` reads it (once per file) into Azure and a folder, and a re-run reads
/// and writes nothing.
#[tokio::test]
async fn a_gcs_staging_bucket_is_listed_and_promoted_into_azure() {
    let (azurite, gcs, env, _) = emulators("prod", "staging").await;
    let files = release_files();
    for (name, bytes) in &files {
        gcs.put_object("staging", &format!("release/{name}"), bytes, &[]).await.unwrap();
    }
    gcs.put_object("staging", "elsewhere/not-this", b"outside the prefix", &[]).await.unwrap();

    let listed = ferry(&["manifest", "files", "--from", "gs://staging/release/"], &env);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let manifest = text(&listed.stdout);
    for (name, bytes) in &files {
        assert!(manifest.contains(&format!("- name: {name}\n  sha256: {}\n", Digest::of(bytes).hex())), "{manifest}");
    }
    assert!(!manifest.contains("not-this"), "{manifest}");

    let dir = tempfile::tempdir().unwrap();
    let (manifests, folder) = (dir.path().join("m"), dir.path().join("prod"));
    let stores = format!(
        "filestores:\n- base: gs://staging/release/\n  src: true\n- base: az://prod/bin/\n- base: {}\n",
        folder.display()
    );
    write(&manifests.join("filestores/kops/filepromoter-manifest.yaml"), stores.as_bytes());
    write(&manifests.join("manifests/kops/release.yaml"), manifest.as_bytes());
    let args = ["promote", "files", "--manifests", manifests.to_str().unwrap(), "--confirm"];

    let run = ferry(&[&args[..], &["--output", "json"]].concat(), &env);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let report = json(&run);
    assert_eq!(report["summary"]["promoted"], files.len() * 2, "{report:#}");
    assert_eq!(report["summary"]["files_read"], files.len(), "{report:#}");
    assert_in_azure(&azurite, "prod", "bin/", &files).await;
    for (name, bytes) in &files {
        assert!(std::fs::read(folder.join(name)).unwrap() == *bytes, "{name}");
    }

    let before = azurite.list("prod").await.unwrap();
    let again = ferry(&args, &env);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let out = text(&again.stdout);
    let expected = format!("promoted 0, skipped {}, refused 0, failed 0; read 0 B in 0 files", files.len() * 2);
    assert!(out.contains(&expected), "{out}");
    assert_eq!(azurite.list("prod").await.unwrap(), before, "the re-run wrote");
}

#[tokio::test]
async fn mirror_from_a_registry_into_azure_and_gcs_then_nothing_to_do() {
    let (azurite, gcs, env, gcs_writes) = emulators("mirror", "mirror").await;
    let registry = RegistryServer::start().await.unwrap();
    // Layers past a multipart part (8 MiB) and small ones.
    let image = ImageSpec::two_arch("cloud-mirror", 9 << 20, 4 << 10).build();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let prod = format!("{}/prod", registry.host());
    let registry_api = ferry_registry::open(&prod.parse().unwrap(), &client);
    push(registry_api.as_ref(), &repo("app"), &image, &["v1"]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.yaml");
    let yaml = format!(
        "registries:\n- name: {}/staging\n  src: true\n- name: {prod}\nimages:\n- name: app\n  dmap:\n    \"{}\": [\"v1\"]\n",
        registry.host(),
        image.digest()
    );
    write(&manifest, yaml.as_bytes());
    let mut to = vec!["--to", "az://mirror/images/"];
    match &gcs_writes {
        Ok(()) => to.extend(["--to", "gs://mirror/images/"]),
        Err(why) => say(&format!("`ferry mirror` into gs:// skipped: {why}")),
    }
    let stores = to.len() / 2;
    let args = [&["mirror", "--manifest", manifest.to_str().unwrap(), "--from", &prod][..], &to[..]].concat();

    let run = ferry(&[&args[..], &["--confirm", "--output", "json"]].concat(), &env);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let report = json(&run);
    assert_eq!(report["summary"]["copies_done"], stores * image.blobs.len(), "{report:#}");
    assert_eq!(report["summary"]["bytes_read"], image.blob_bytes(), "{report:#}");
    let blobs: Vec<(&str, Vec<u8>)> = image.blobs.iter().map(|b| (b.digest.as_str(), b.bytes.to_vec())).collect();
    let digests: BTreeSet<Digest> = image.blobs.iter().map(|b| b.digest.clone()).collect();
    // An inventory line is a digest, and its size where the format records one.
    let sizes: Vec<(Digest, usize)> = image.blobs.iter().map(|b| (b.digest.clone(), b.bytes.len())).collect();
    let listed = |inventory: &[u8]| -> BTreeSet<Digest> {
        let lines = text(inventory);
        let mut listed = BTreeSet::new();
        for line in lines.lines() {
            let mut fields = line.split_whitespace();
            let digest: Digest = fields.next().unwrap().parse().unwrap();
            if let Some(size) = fields.next() {
                let expected = sizes.iter().find(|(d, _)| *d == digest).map(|(_, size)| size.to_string());
                assert_eq!(Some(size.to_string()), expected, "{line}");
            }
            listed.insert(digest);
        }
        listed
    };
    assert_in_azure(&azurite, "mirror", "images/", &blobs).await;
    let inventory = azurite.blob("mirror", "images/inventory.txt").await.unwrap().expect("an inventory");
    assert_eq!(listed(&inventory.bytes), digests);
    if gcs_writes.is_ok() {
        assert_in_gcs(&gcs, "mirror", "images/", &blobs).await;
        let inventory = gcs.object("mirror", "images/inventory.txt").await.unwrap().expect("an inventory");
        assert_eq!(listed(&inventory.bytes), digests);
    }

    let before = written(&azurite, "mirror", &gcs, "mirror").await;
    let again = ferry(&[&args[..], &["--confirm"]].concat(), &env);
    assert_eq!(again.status.code(), Some(0), "{}\n{}", text(&again.stdout), text(&again.stderr));
    let out = text(&again.stdout);
    assert!(out.contains("copied 0, failed 0") && out.contains("unchanged"), "{out}");
    assert_eq!(written(&azurite, "mirror", &gcs, "mirror").await, before, "the re-run wrote");

    // --verify re-hashes every blob the inventory lists, through the store's reads.
    let verify = ferry(&[&args[..], &["--verify"]].concat(), &env);
    assert_eq!(verify.status.code(), Some(0), "{}\n{}", text(&verify.stdout), text(&verify.stderr));
    assert_eq!(written(&azurite, "mirror", &gcs, "mirror").await, before, "--verify wrote");
}
