//! Lying and flaky servers, as a user of the binary meets them: real registries and a real S3
//! server behind the fault proxy, which makes them lie.
//!
//! - A destination registry that acknowledges a blob upload it never stored (and serves other
//!   bytes for it), or claims a blob it does not hold.
//! - A registry whose `Docker-Content-Digest` names another digest than the one pushed: in its
//!   answer to a manifest push, and in its answer to a blob upload.
//! - A registry that serves other bytes for a blob, met by the next reader (`ferry mirror`,
//!   `ferry promote images` from it).
//! - A source whose tags move during the run (the image's tag and its cosign signature tag,
//!   whose planned manifest is even deleted).
//! - An S3 store that fails one part of a multipart upload: once (a 5xx or a dropped connection,
//!   retried) or for good (a 4xx).
//!
//! Each is caught, reported by name (the edge or file in the output), and nothing wrong is
//! published: no tag points at anything but the digest the manifest names, no object holds other
//! bytes than its sha256; a re-run without the fault converges.

use std::path::Path;
use std::process::{Command, Output};

use ferry_oci::{media_types, Digest};
use ferry_registry::remote::{RemoteClient, RemoteRegistry};
use ferry_testkit::fault_proxy::{Fault, FaultProxy, FaultRule};
use ferry_testkit::files::files_under;
use ferry_testkit::images::{push, random_bytes, repo, signature_for, signature_tag, ImageSpec, TestImage};
use ferry_testkit::registry_server::RegistryServer;
use ferry_testkit::s3_server::S3Server;
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary off the async runtime, so that the proxies it talks to keep serving.
async fn ferry(args: &[&str], env: &[(String, String)]) -> Output {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let env = env.to_vec();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).envs(env).output().expect("run ferry")
    })
    .await
    .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON on stdout ({e}): {}", text(&out.stdout)))
}

fn registry(host: &str, prefix: &str) -> RemoteRegistry {
    RemoteClient::new(Default::default()).unwrap().registry(host, Some(repo(prefix)))
}

/// A plain promotion manifest promoting `image` as `name:v1` from `source` to `destinations`.
fn manifest(dir: &Path, file: &str, source: &str, destinations: &[&str], name: &str, image: &TestImage) -> String {
    let mut yaml = format!("registries:\n- name: {source}\n  src: true\n");
    for d in destinations {
        yaml += &format!("- name: {d}\n");
    }
    yaml += &format!("images:\n- name: {name}\n  dmap:\n    \"{}\": [\"v1\"]\n", image.digest());
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// What `host/repo:tag` is, read as a client reads it (straight from the registry's API, past
/// any proxy): `None` when there is no such tag, else the manifest's digest once its whole graph
/// (children, configs, layers) has been read and every byte hashed right.
async fn published(host: &str, repo: &str, tag: &str) -> Option<Digest> {
    let client = reqwest::Client::new();
    let get = |kind: &str, reference: &str| {
        let request =
            client.get(format!("http://{host}/v2/{repo}/{kind}/{reference}")).header("accept", media_types::ACCEPT_ALL);
        async move {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16() == 200).then_some(resp.bytes().await.unwrap().to_vec())
        }
    };
    let top = Digest::of(&get("manifests", tag).await?);
    let mut pending = vec![top.clone()];
    while let Some(digest) = pending.pop() {
        let bytes = get("manifests", digest.as_str()).await.unwrap_or_else(|| panic!("{repo}: {digest} missing"));
        assert_eq!(Digest::of(&bytes), digest, "{repo}:{tag}: manifest {digest} holds other bytes");
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        for child in doc["manifests"].as_array().into_iter().flatten() {
            pending.push(child["digest"].as_str().unwrap().parse().unwrap());
        }
        for blob in doc["layers"].as_array().into_iter().flatten().chain(doc.get("config")) {
            let d: Digest = blob["digest"].as_str().unwrap().parse().unwrap();
            let bytes = get("blobs", d.as_str()).await.unwrap_or_else(|| panic!("{repo}:{tag}: blob {d} missing"));
            assert_eq!(Digest::of(&bytes), d, "{repo}:{tag}: blob {d} holds other bytes");
            assert_eq!(Some(bytes.len() as u64), blob["size"].as_u64(), "{repo}:{tag}: blob {d}");
        }
    }
    Some(top)
}

fn rule(method: &str, path_contains: &str, times: usize, fault: Fault) -> FaultRule {
    FaultRule { method: Some(method.into()), path_contains: path_contains.into(), times, fault }
}

/// The bytes of `len` that are not `bytes`: each one flipped.
fn other_bytes(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| !b).collect()
}

/// A destination that answers `201 Created` (naming the right digest) to the upload of one layer
/// and keeps nothing, then serves other bytes for it: the registry itself refuses the manifest
/// that needs the layer, the edge fails by name, and no tag is set. A re-run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_upload_acknowledged_and_never_stored_fails_its_edge_and_tags_nothing() {
    let (src, dst) = (RegistryServer::start().await.unwrap(), RegistryServer::start().await.unwrap());
    // Layers over 1 MiB: the destination is asked before each upload.
    let image = ImageSpec::two_arch("acknowledged", 1_500_000, 1_200_000).build();
    push(&registry(&src.host(), "staging"), &repo("app"), &image, &["v1"]).await.unwrap();
    let victim = image.blobs.iter().find(|b| b.media_type.contains("layer")).unwrap();
    let proxy = FaultProxy::start(&dst.host()).await.unwrap();
    // The upload's closing PUT carries `?digest=sha256%3A<hex>`.
    let acknowledged = Fault::Answer {
        status: 201,
        headers: vec![
            ("docker-content-digest".into(), victim.digest.to_string()),
            ("location".into(), format!("/v2/prod/app/blobs/{}", victim.digest)),
        ],
        body: Vec::new(),
    };
    proxy.add_fault(rule("PUT", victim.digest.hex(), 1, acknowledged));
    let other = other_bytes(&victim.bytes);
    let serves_other = Fault::Answer {
        status: 200,
        headers: vec![("docker-content-digest".into(), victim.digest.to_string())],
        body: other.clone(),
    };
    proxy.add_fault(rule("GET", &format!("/blobs/{}", victim.digest), usize::MAX, serves_other));

    let dir = tempfile::tempdir().unwrap();
    let destination = format!("{}/prod", proxy.host());
    let file = manifest(dir.path(), "m.yaml", &format!("{}/staging", src.host()), &[&destination], "app", &image);
    let out = ferry(&["promote", "images", "--manifest", &file, "--confirm"], &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("FAILED")).unwrap_or_else(|| panic!("no FAILED line: {stdout}"));
    assert!(line.contains(&format!("-> {destination}/app:v1: cannot push manifest")), "{line}");
    assert!(line.to_lowercase().contains("blob unknown"), "the registry's own refusal is shown: {line}");
    assert_eq!(proxy.count("PUT", "/manifests/v1"), 0, "the tag was never pushed: a child was refused first");
    assert_eq!(published(&dst.host(), "prod/app", "v1").await, None, "a tag over a missing blob");
    // A client asking the lying registry for that blob gets other bytes: Ferry never read it.
    assert_eq!(proxy.count("GET", victim.digest.hex()), 0);

    let again = ferry(&["promote", "images", "--manifest", &file, "--confirm", "--output", "json"], &[]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert_eq!(json(&again)["summary"]["promoted"], 1);
    assert_eq!(published(&dst.host(), "prod/app", "v1").await.as_ref(), Some(image.digest()));
}

/// A destination that claims a blob it does not hold (`200` to the `HEAD`, other bytes to a
/// `GET`): Ferry trusts the claim and uploads nothing, the registry refuses the manifest that
/// needs the blob, the edge fails by name, and no tag is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_claimed_but_not_held_fails_its_edge_and_tags_nothing() {
    let (src, dst) = (RegistryServer::start().await.unwrap(), RegistryServer::start().await.unwrap());
    let image = ImageSpec::single("claimed", 1_500_000).build();
    push(&registry(&src.host(), "staging"), &repo("app"), &image, &["v1"]).await.unwrap();
    let victim = image.blobs.iter().find(|b| b.media_type.contains("layer")).unwrap();
    let proxy = FaultProxy::start(&dst.host()).await.unwrap();
    let claims = Fault::Answer {
        status: 200,
        headers: vec![
            ("docker-content-digest".into(), victim.digest.to_string()),
            ("content-length".into(), victim.bytes.len().to_string()),
        ],
        body: Vec::new(),
    };
    proxy.add_fault(rule("HEAD", &format!("/blobs/{}", victim.digest), usize::MAX, claims));

    let dir = tempfile::tempdir().unwrap();
    let destination = format!("{}/prod", proxy.host());
    let file = manifest(dir.path(), "m.yaml", &format!("{}/staging", src.host()), &[&destination], "app", &image);
    let out = ferry(&["promote", "images", "--manifest", &file, "--confirm", "--output", "json"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let report = json(&out);
    let edge = &report["edges"][0];
    assert_eq!(edge["status"], "failed", "{report:#}");
    assert_eq!(edge["image"], "app");
    assert_eq!(edge["tag"], "v1");
    assert!(edge["error"].as_str().unwrap().to_lowercase().contains("blob unknown"), "{edge:#}");
    assert_eq!(proxy.count("PUT", victim.digest.hex()), 0, "the claim was trusted: nothing uploaded");
    assert_eq!(published(&dst.host(), "prod/app", "v1").await, None);
}

/// A registry whose answer to the manifest push names another digest than the one pushed: the
/// edge fails naming the reference and the digest claimed. What the registry really holds under
/// the tag is checked as a client would: the manifest's digest, whole — never anything else.
/// A lying answer to a blob upload is shown too (see the notes in the assertions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_docker_content_digest_fails_the_edge_by_name() {
    let (src, dst) = (RegistryServer::start().await.unwrap(), RegistryServer::start().await.unwrap());
    let image = ImageSpec::two_arch("lied-to", 4096, 2048).build();
    let staging = registry(&src.host(), "staging");
    push(&staging, &repo("app"), &image, &["v1"]).await.unwrap();
    let proxy = FaultProxy::start(&dst.host()).await.unwrap();
    let lie = Digest::of(b"not the manifest");
    let header =
        |value: &Digest| Fault::Header { name: "docker-content-digest".into(), value: Some(value.to_string()) };
    proxy.add_fault(rule("PUT", "/prod/app/manifests/v1", usize::MAX, header(&lie)));

    let dir = tempfile::tempdir().unwrap();
    let destination = format!("{}/prod", proxy.host());
    let file = manifest(dir.path(), "m.yaml", &format!("{}/staging", src.host()), &[&destination], "app", &image);
    let out = ferry(&["promote", "images", "--manifest", &file, "--confirm"], &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("FAILED")).unwrap_or_else(|| panic!("no FAILED line: {stdout}"));
    assert!(line.contains(&format!("-> {destination}/app:v1: ")), "{line}");
    assert!(line.contains(lie.as_str()), "the digest claimed is named: {line}");
    assert!(stdout.contains("promoted 0, skipped 0, refused 0, failed 1"), "{stdout}");
    // The registry behind the lie stored the pushed bytes: the tag is the manifest's digest.
    let held = published(&dst.host(), "prod/app", "v1").await;
    assert!(held.is_none() || held.as_ref() == Some(image.digest()), "{held:?}");
    // Asked again without the lie, the run has nothing left to do but see the tag is right.
    let direct = manifest(
        dir.path(),
        "direct.yaml",
        &format!("{}/staging", src.host()),
        &[&format!("{}/prod", dst.host())],
        "app",
        &image,
    );
    let again = ferry(&["promote", "images", "--manifest", &direct, "--confirm"], &[]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
}

/// A registry whose answer to a blob upload names another digest than the one uploaded (the
/// `201`'s `Docker-Content-Digest`): the blob is not taken as written, the edge that needs it
/// fails by name, naming the digest claimed, and no manifest is pushed over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_digest_in_a_blob_upload_answer_fails_the_edge_by_name() {
    let (src, dst) = (RegistryServer::start().await.unwrap(), RegistryServer::start().await.unwrap());
    let image = ImageSpec::single("blob-lied-to", 4096).build();
    push(&registry(&src.host(), "staging"), &repo("app"), &image, &["v1"]).await.unwrap();
    let proxy = FaultProxy::start(&dst.host()).await.unwrap();
    let lie = Digest::of(b"not the blob");
    let header = Fault::Header { name: "docker-content-digest".into(), value: Some(lie.to_string()) };
    proxy.add_fault(rule("PUT", "/prod/app/blobs/uploads/", usize::MAX, header));

    let dir = tempfile::tempdir().unwrap();
    let destination = format!("{}/prod", proxy.host());
    let file = manifest(dir.path(), "m.yaml", &format!("{}/staging", src.host()), &[&destination], "app", &image);
    let out = ferry(&["promote", "images", "--manifest", &file, "--confirm"], &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("FAILED")).unwrap_or_else(|| panic!("no FAILED line: {stdout}"));
    assert!(line.contains(&format!("-> {destination}/app:v1: cannot write blob")), "{line}");
    assert!(line.contains(lie.as_str()), "the digest claimed is named: {line}");
    assert_eq!(proxy.count("PUT", "/manifests/"), 0, "no manifest pushed over the blob");
    assert_eq!(published(&dst.host(), "prod/app", "v1").await, None);
}

/// A registry that serves other bytes for a blob than its digest names (its storage rotted, or
/// it lies), met by the next readers: `ferry mirror` from it, and `ferry promote images` from it
/// to another registry. Each names the blob or the edge, copies it nowhere and lists it in no
/// inventory; everything else lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_serving_other_bytes_is_caught_by_the_next_reader() {
    let (prod, region) = (RegistryServer::start().await.unwrap(), RegistryServer::start().await.unwrap());
    let image = ImageSpec::two_arch("rotted", 64 << 10, 32 << 10).build();
    let intact = ImageSpec::single("intact", 16 << 10).build();
    let prod_registry = registry(&prod.host(), "prod");
    push(&prod_registry, &repo("app"), &image, &["v1"]).await.unwrap();
    push(&prod_registry, &repo("other"), &intact, &["v1"]).await.unwrap();
    let victim = image.blobs.iter().find(|b| b.media_type.contains("layer")).unwrap();
    let proxy = FaultProxy::start(&prod.host()).await.unwrap();
    proxy.add_fault(rule("GET", &format!("/blobs/{}", victim.digest), usize::MAX, Fault::CorruptBody));
    let lying = format!("{}/prod", proxy.host());

    let dir = tempfile::tempdir().unwrap();
    let region_prefix = format!("{}/prod", region.host());
    let yaml = format!(
        "registries:\n- name: {lying}\n  src: true\n- name: {region_prefix}\nimages:\n\
         - name: app\n  dmap:\n    \"{}\": [\"v1\"]\n- name: other\n  dmap:\n    \"{}\": [\"v1\"]\n",
        image.digest(),
        intact.digest()
    );
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.to_str().unwrap();

    // ferry mirror: the blob is named, nothing is stored under its name, the inventory leaves it out.
    let folder = dir.path().join("mirror");
    let mirror = ["mirror", "--manifest", file, "--from", &lying, "--to", folder.to_str().unwrap(), "--confirm"];
    let out = ferry(&mirror, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.lines().any(|l| l.starts_with("FAILED") && l.contains(victim.digest.as_str())),
        "the blob is named: {stdout}"
    );
    assert!(!folder.join(victim.digest.as_str()).exists(), "{stdout}");
    let inventory = std::fs::read_to_string(folder.join("inventory.txt")).unwrap();
    assert!(!inventory.contains(victim.digest.as_str()), "{inventory}");
    let others: Vec<_> = image.blobs.iter().chain(&intact.blobs).filter(|b| b.digest != victim.digest).collect();
    for blob in &others {
        assert_eq!(std::fs::read(folder.join(blob.digest.as_str())).unwrap(), blob.bytes);
        assert!(inventory.contains(blob.digest.as_str()), "{inventory}");
    }
    for file in files_under(&folder) {
        let name = file.file_name().unwrap().to_str().unwrap();
        if let Ok(digest) = name.parse::<Digest>() {
            assert_eq!(Digest::of(&std::fs::read(&file).unwrap()), digest, "{name} holds other bytes");
        }
    }

    // ferry promote images from it: the edge that needs the blob fails by name; the other lands.
    let out = ferry(&["promote", "images", "--manifest", file, "--confirm"], &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("FAILED")).unwrap_or_else(|| panic!("no FAILED line: {stdout}"));
    assert!(line.contains(&format!("-> {region_prefix}/app:v1: ")), "{line}");
    assert!(line.contains("does not match its digest"), "{line}");
    assert!(stdout.contains("promoted 1, skipped 0, refused 0, failed 1"), "{stdout}");
    assert_eq!(published(&region.host(), "prod/app", "v1").await, None);
    assert_eq!(published(&region.host(), "prod/other", "v1").await.as_ref(), Some(intact.digest()));
}

/// Promotion manifests name digests: a source tag that moves during the run changes nothing
/// copied. The image's own tag is moved to another image, and the cosign signature tag of the
/// image (which Ferry does read by tag, when planning) is moved to another signature whose
/// planned manifest is then deleted, all after planning and before the copy fetches it. The
/// destination tag is exactly the manifest's digest, whole; the signature edge fails by name
/// and no signature tag is set. A re-run promotes the second signature, and then writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_tag_moving_during_the_run_changes_nothing_promoted() {
    let (src, dst) = (RegistryServer::start().await.unwrap(), RegistryServer::start().await.unwrap());
    let image = ImageSpec::two_arch("moving", 64 << 10, 16 << 10).build();
    let intruder = ImageSpec::two_arch("intruder", 64 << 10, 16 << 10).build();
    let staging = registry(&src.host(), "staging");
    push(&staging, &repo("app"), &image, &["v1"]).await.unwrap();
    push(&staging, &repo("app"), &intruder, &[]).await.unwrap();
    let sig_tag = signature_tag(image.digest());
    let first_sig = signature_for(image.digest());
    push(&staging, &repo("app"), &first_sig, &[sig_tag.as_str()]).await.unwrap();
    // Another signature of the same image: a second payload layer.
    let mut second_sig = signature_for(image.digest());
    let mut doc: Value = serde_json::from_slice(&second_sig.top.bytes).unwrap();
    let extra = ferry_testkit::images::random_bytes(7, 100);
    let extra_digest = Digest::of(&extra);
    doc["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": extra_digest, "size": 100,
    }));
    second_sig.top = ferry_registry::Manifest::new(media_types::OCI_MANIFEST, serde_json::to_vec(&doc).unwrap());
    second_sig.blobs.push(ferry_testkit::images::Blob {
        digest: extra_digest,
        media_type: "application/vnd.dev.cosign.simplesigning.v1+json".into(),
        bytes: extra.into(),
    });

    // Planning fetches the image's manifest (once: it is remembered for the run), then reads the
    // signature tag by HEAD and asks for referrers, last. The copy's manifest fetches after
    // that are held 1.5 s each: the tags move in that window.
    let proxy = FaultProxy::start(&src.host()).await.unwrap();
    proxy.add_fault(rule("GET", "/manifests/sha256:", 1, Fault::Delay { millis: 0 }));
    proxy.add_fault(rule("GET", "/manifests/sha256:", usize::MAX, Fault::Delay { millis: 1500 }));
    let dir = tempfile::tempdir().unwrap();
    let destination = format!("{}/prod", dst.host());
    let file = manifest(dir.path(), "m.yaml", &format!("{}/staging", proxy.host()), &[&destination], "app", &image);
    let run = tokio::spawn({
        let file = file.clone();
        async move { ferry(&["promote", "images", "--manifest", &file, "--confirm", "--output", "json"], &[]).await }
    });
    while proxy.count("GET", "/referrers/") == 0 {
        assert!(!run.is_finished(), "the run ended before planning was done");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The signature first (the tag moved, the planned manifest deleted), then the image's tag.
    push(&staging, &repo("app"), &second_sig, &[sig_tag.as_str()]).await.unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!("http://{}/v2/staging/app/manifests/{}", src.host(), first_sig.digest()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 202);
    push(&staging, &repo("app"), &intruder, &["v1"]).await.unwrap();
    let out = run.await.unwrap();
    let report = json(&out);

    // The image: exactly the manifest's digest, whole, whatever the source tag says now.
    assert_eq!(published(&dst.host(), "prod/app", "v1").await.as_ref(), Some(image.digest()), "{report:#}");
    // The signature: planned as its tag was when read, then gone from the source: its edge fails
    // by name and the destination gets no signature tag, rather than another signature.
    let edges = report["edges"].as_array().unwrap();
    let sig_edge = edges.iter().find(|e| e["kind"] == "signature").expect("the signature was planned");
    assert_eq!(sig_edge["digest"], first_sig.digest().as_str(), "{:#?}", proxy.requests());
    assert_eq!(sig_edge["status"], "failed", "{report:#}");
    assert_eq!(sig_edge["tag"], sig_tag.as_str());
    assert!(sig_edge["error"].as_str().unwrap().contains(first_sig.digest().as_str()), "{sig_edge:#}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(published(&dst.host(), "prod/app", sig_tag.as_str()).await, None);
    let image_edge = edges.iter().find(|e| e["kind"] == "image").unwrap();
    assert_eq!(image_edge["status"], "promoted", "{report:#}");

    // Again: the image is there, the signature tag is now the second signature.
    let again = ferry(&["promote", "images", "--manifest", &file, "--confirm", "--output", "json"], &[]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert_eq!(published(&dst.host(), "prod/app", "v1").await.as_ref(), Some(image.digest()));
    let sig = published(&dst.host(), "prod/app", sig_tag.as_str()).await;
    assert_eq!(sig.as_ref(), Some(second_sig.digest()), "{:#}", json(&again));
    let once_more = ferry(&["promote", "images", "--manifest", &file, "--confirm", "--output", "json"], &[]).await;
    assert_eq!(once_more.status.code(), Some(0), "{}", text(&once_more.stdout));
    let summary = &json(&once_more)["summary"];
    assert_eq!((summary["manifests_pushed"].as_u64(), summary["bytes_written"].as_u64()), (Some(0), Some(0)));
}

/// A release file that S3 receives in parts (over 8 MiB), through a proxy that fails one part:
/// once with a 500 or a dropped connection (retried: the file lands whole, the part was sent
/// twice), and for good with a
/// 400 (the file fails by name, nothing appears under its name, the inventory leaves it out,
/// the upload is aborted); a re-run without the fault converges and then writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_one_multipart_part_is_retried_or_reported_and_publishes_nothing_partial() {
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket("prod").unwrap();
    let proxy = FaultProxy::start_keeping_host(&s3.endpoint().replace("http://", "")).await.unwrap();
    let mut env = s3.env();
    for (name, value) in &mut env {
        if name == "AWS_ENDPOINT_URL" {
            *value = format!("http://{}", proxy.host());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let big = random_bytes(42, 20 << 20);
    let sha = Digest::of(&big).hex().to_string();
    std::fs::create_dir_all(dir.path().join("staging/1.0")).unwrap();
    std::fs::write(dir.path().join("staging/1.0/big"), &big).unwrap();
    std::fs::write(dir.path().join("staging/1.0/small"), b"small").unwrap();
    let small_sha = Digest::of(b"small").hex().to_string();
    let setup = |prefix: &str| {
        let m = dir.path().join(prefix);
        std::fs::create_dir_all(m.join("filestores/p")).unwrap();
        std::fs::create_dir_all(m.join("manifests/p")).unwrap();
        let stores = format!(
            "filestores:\n- base: {}\n  src: true\n- base: s3://prod/{prefix}/\n",
            dir.path().join("staging").display()
        );
        std::fs::write(m.join("filestores/p/filepromoter-manifest.yaml"), stores).unwrap();
        let files = format!("files:\n- name: 1.0/big\n  sha256: {sha}\n- name: 1.0/small\n  sha256: {small_sha}\n");
        std::fs::write(m.join("manifests/p/files.yaml"), files).unwrap();
        m.display().to_string()
    };

    // Once, a 500: retried, and the file lands whole.
    let once = setup("once");
    proxy.add_fault(rule("PUT", "partNumber=2&", 1, Fault::Status { status: 500, retry_after: None }));
    let out = ferry(&["promote", "files", "--manifests", &once, "--confirm", "--inventory"], &env).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(proxy.count("PUT", "partNumber=2&"), 2, "the failed part was sent again");
    assert_eq!(std::fs::read(s3.bucket_dir("prod").join("once/1.0/big")).unwrap(), big);

    // Once, the connection dropped while the part is sent: retried too.
    let reset = setup("reset");
    proxy.add_fault(rule("PUT", "partNumber=2&", 1, Fault::Reset));
    proxy.reset_counts();
    let out = ferry(&["promote", "files", "--manifests", &reset, "--confirm", "--inventory"], &env).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(proxy.count("PUT", "partNumber=2&"), 2, "the dropped part was sent again");
    assert_eq!(std::fs::read(s3.bucket_dir("prod").join("reset/1.0/big")).unwrap(), big);

    // For good, a 400: reported by name, nothing under the name, not in the inventory.
    let good = setup("good");
    proxy.add_fault(rule("PUT", "partNumber=2&", usize::MAX, Fault::Status { status: 400, retry_after: None }));
    proxy.reset_counts();
    let out = ferry(&["promote", "files", "--manifests", &good, "--confirm", "--inventory"], &env).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("FAILED")).unwrap_or_else(|| panic!("no FAILED line: {stdout}"));
    assert!(line.contains("-> s3://prod/good/1.0/big"), "{line}");
    let store = ferry_store::Store::open_with("s3://prod/good/", &s3.env()).unwrap();
    let names: Vec<String> = store.list("").await.unwrap().into_iter().map(|(n, _)| n.as_str().to_string()).collect();
    assert_eq!(names, ["1.0/small", "inventory.txt"], "{stdout}");
    let inventory = std::fs::read_to_string(s3.bucket_dir("prod").join("good/inventory.txt")).unwrap();
    let listed: Vec<&str> = inventory.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(listed, ["/1.0/small"], "{inventory}");
    assert!(proxy.count("DELETE", "uploadId=") >= 1, "the multipart upload was aborted: {:?}", proxy.requests());

    // Straight to the store, without the fault, a re-run lands it, and the one after writes nothing.
    let direct = s3.env();
    let out = ferry(&["promote", "files", "--manifests", &good, "--confirm", "--inventory"], &direct).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(s3.bucket_dir("prod").join("good/1.0/big")).unwrap(), big);
    let out =
        ferry(&["promote", "files", "--manifests", &good, "--confirm", "--inventory", "--output", "json"], &direct)
            .await;
    let report = json(&out);
    assert_eq!(report["summary"]["promoted"], 0, "{report:#}");
    assert_eq!(report["summary"]["bytes_written"], 0, "{report:#}");
    assert_eq!(report["inventories"][0]["status"], "unchanged", "{report:#}");
}
