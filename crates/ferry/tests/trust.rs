//! Signatures through the binary, against a real registry: the policy's `require_signatures`
//! refuses an unsigned image and one signed by an unlisted key while a signed one lands;
//! `--sign-key` gives every promoted image one signature, byte-identical at every destination,
//! that `ferry verify` accepts, kept beside a third-party signature already there, and an SLSA
//! provenance attestation `ferry verify --attestation` accepts; both are checked again by an
//! independent verifier (pyca/cryptography); a re-run adds nothing; `ferry audit
//! --require-signatures` names an unsigned image pushed to production by hand.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use ferry_oci::{Digest, Reference, RepoName};
use ferry_registry::Registry;
use ferry_sign::keys::PrivateKey;
use ferry_sign::signer::KeySigner;
use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

async fn ferry(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("run ferry")
    })
    .await
    .unwrap()
}

/// Signs `digest` in `repo` with `key`, as cosign would (a layer added to its `.sig` image).
async fn sign(registry: &dyn Registry, image: &str, digest: &Digest, key: &PrivateKey) {
    let layer = ferry_sign::verify::sign_image(
        &KeySigner::new(key.clone()),
        &format!("staging/{image}"),
        digest,
        &BTreeMap::new(),
    )
    .unwrap();
    assert!(ferry_trust::add_signature(registry, &repo(image), digest, &layer).await.unwrap());
}

/// The layers' signature annotations of `digest`'s `.sig` image in `repo`.
async fn signatures(registry: &dyn Registry, repo: &RepoName, digest: &Digest) -> (Digest, Vec<String>) {
    let tag = Reference::Tag(ferry_sign::signature_image::signature_tag(digest).parse().unwrap());
    let manifest = registry.get_manifest(repo, &tag).await.unwrap().expect("a .sig image");
    let layers = ferry_sign::signature_image::parse(&manifest.bytes).unwrap();
    (manifest.digest, layers.iter().map(|l| l.signature_b64().unwrap().to_string()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_signatures_signing_and_verify() {
    let server = RegistryServer::start().await.unwrap();
    let host = server.host();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let staging = client.registry(&host, Some(repo("staging")));
    let (release, stranger, ferry_key, third_party) =
        (PrivateKey::generate(), PrivateKey::generate(), PrivateKey::generate(), PrivateKey::generate());
    let signed = ImageSpec::two_arch("signed", 2048, 256).build();
    let unsigned = ImageSpec::single("unsigned", 1024).build();
    let other = ImageSpec::single("other", 1024).build();
    push(&staging, &repo("signed"), &signed, &["v1"]).await.unwrap();
    push(&staging, &repo("unsigned"), &unsigned, &["v1"]).await.unwrap();
    push(&staging, &repo("other"), &other, &["v1"]).await.unwrap();
    sign(&staging, "signed", signed.digest(), &release).await;
    sign(&staging, "other", other.digest(), &stranger).await;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("keys/release.pub"), release.public_key().to_pem().as_bytes());
    write(&root.join("ferry.pub"), ferry_key.public_key().to_pem().as_bytes());
    write(&root.join("stranger.pub"), stranger.public_key().to_pem().as_bytes());
    write(&root.join("ferry.key"), ferry_key.to_encrypted_pem(b"sesame").unwrap().as_bytes());
    let thin = root.join("thin");
    write(
        &thin.join("manifests/p/promoter-manifest.yaml"),
        format!("registries:\n- name: {host}/staging\n  src: true\n- name: {host}/prod\n- name: {host}/eu\n")
            .as_bytes(),
    );
    let images: String = [("signed", signed.digest()), ("unsigned", unsigned.digest()), ("other", other.digest())]
        .iter()
        .map(|(name, digest)| format!("- name: {name}\n  dmap:\n    \"{digest}\": [v1]\n"))
        .collect();
    write(&thin.join("images/p/images.yaml"), images.as_bytes());
    write(
        &thin.join("policy.yaml"),
        format!("require_signatures:\n  keys: [{}]\n", root.join("keys/release.pub").display()).as_bytes(),
    );

    // A third party has already signed the image at one destination.
    let prod = client.registry(&host, Some(repo("prod")));
    let eu = client.registry(&host, Some(repo("eu")));
    let theirs =
        ferry_sign::verify::sign_image(&KeySigner::new(third_party), "prod/signed", signed.digest(), &BTreeMap::new())
            .unwrap();
    ferry_trust::add_signature(&prod, &repo("signed"), signed.digest(), &theirs).await.unwrap();

    let thin_arg = thin.to_str().unwrap();
    let key_arg = root.join("ferry.key");
    let run = || async {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["promote", "images", "--thin-manifest-dir", thin_arg, "--confirm", "--output", "json"])
            .args(["--sign-key", key_arg.to_str().unwrap(), "--sign-identity", "registry.example"])
            .env("COSIGN_PASSWORD", "sesame")
            .output()
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        (out, json)
    };
    let (out, report) = run().await;
    assert_eq!(out.status.code(), Some(1), "two images refused: {}", text(&out));
    let status_of = |report: &serde_json::Value, image: &str| -> Vec<(String, String)> {
        report["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["image"] == image && e["kind"] == "image")
            .map(|e| (e["status"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    assert!(status_of(&report, "signed").iter().all(|(s, _)| s == "promoted"), "{report:#}");
    for (status, reason) in status_of(&report, "unsigned") {
        assert_eq!(status, "refused");
        assert!(reason.contains("unsigned") && reason.contains("release.pub"), "{reason}");
    }
    for (status, reason) in status_of(&report, "other") {
        assert_eq!(status, "refused");
        assert!(reason.contains("no valid cosign signature by") && reason.contains("release.pub"), "{reason}");
    }
    assert_eq!(
        prod.head_manifest(&repo("unsigned"), &Reference::Digest(unsigned.digest().clone())).await.unwrap(),
        None
    );
    assert_eq!(report["summary"]["signatures_added"], 2, "{:#}", report["summary"]);
    assert_eq!(report["summary"]["attestations_added"], 2, "{:#}", report["summary"]);

    // One Ferry signature, the same bytes at both destinations, beside the third party's (prod)
    // and the release signature copied from staging.
    let (_, at_prod) = signatures(&prod, &repo("signed"), signed.digest()).await;
    let (_, at_eu) = signatures(&eu, &repo("signed"), signed.digest()).await;
    let ours: Vec<&String> = at_eu.iter().filter(|s| !at_prod.is_empty() && at_prod.contains(s)).collect();
    assert_eq!(at_eu.len(), 2, "release + Ferry: {at_eu:?}");
    assert_eq!(at_prod.len(), 3, "third party + release + Ferry: {at_prod:?}");
    assert_eq!(ours.len(), 2, "release and Ferry's are byte-identical in both: {at_prod:?} {at_eu:?}");

    for (key, expected) in [("ferry.pub", 0), ("keys/release.pub", 0), ("stranger.pub", 1)] {
        let key = root.join(key);
        let out = ferry(&["verify", &format!("{host}/eu/signed:v1"), "--key", key.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(expected), "{}", text(&out));
    }
    let out = ferry(&[
        "verify",
        &format!("{host}/prod/signed@{}", signed.digest()),
        "--key",
        root.join("ferry.pub").to_str().unwrap(),
    ])
    .await;
    assert!(text(&out).starts_with("verified: ") && text(&out).contains("ferry.pub"), "{}", text(&out));

    // An implementation that shares no code with Ferry's (pyca/cryptography, from cosign's
    // published format) agrees.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent/cosign_verify.py");
    for (key, kind, expected) in [
        ("ferry.pub", "signature", 0),
        ("stranger.pub", "signature", 1),
        ("ferry.pub", "attestation", 0),
        ("keys/release.pub", "attestation", 1),
    ] {
        let out = Command::new("python3")
            .args([script, &host, "eu/signed", &signed.digest().to_string(), root.join(key).to_str().unwrap()])
            .args((kind == "attestation").then_some("attestation"))
            .output()
            .expect("run python3");
        assert_eq!(out.status.code(), Some(expected), "{key} {kind}: {}", text(&out));
    }

    // The provenance, checked as a user would: where the image came from, which manifest line.
    let ferry_pub = root.join("ferry.pub");
    let out =
        ferry(&["verify", &format!("{host}/prod/signed:v1"), "--key", ferry_pub.to_str().unwrap(), "--attestation"])
            .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains(&format!("promoted from {host}/staging/signed")) && said.contains("images.yaml:3"), "{said}");
    let release_pub = root.join("keys/release.pub");
    let out =
        ferry(&["verify", &format!("{host}/prod/signed:v1"), "--key", release_pub.to_str().unwrap(), "--attestation"])
            .await;
    assert_eq!(out.status.code(), Some(1), "staging's key signed no provenance: {}", text(&out));

    // The re-run adds nothing: every .sig image keeps its digest.
    let before = (
        signatures(&prod, &repo("signed"), signed.digest()).await.0,
        signatures(&eu, &repo("signed"), signed.digest()).await.0,
    );
    let (out, report) = run().await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(report["summary"]["signatures_added"], 0, "{:#}", report["summary"]);
    assert_eq!(report["summary"]["attestations_added"], 0, "{:#}", report["summary"]);
    assert!(status_of(&report, "signed").iter().all(|(s, _)| s == "skipped"), "{report:#}");
    let derived_refused: Vec<_> = report["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] != "image" && e["status"] == "refused")
        .collect();
    assert!(derived_refused.is_empty(), "a signature image Ferry added to is no moved tag: {derived_refused:#?}");
    let after = (
        signatures(&prod, &repo("signed"), signed.digest()).await.0,
        signatures(&eu, &repo("signed"), signed.digest()).await.0,
    );
    assert_eq!(before, after);

    // An image pushed to production by hand, as the manifests promise but unsigned: the audit
    // names it; the image Ferry signed passes.
    push(&prod, &repo("unsigned"), &unsigned, &["v1"]).await.unwrap();
    let out = ferry(&[
        "audit",
        "--thin-manifest-dir",
        thin_arg,
        "--require-signatures",
        "--key",
        ferry_pub.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unsigned_subjects = |audit: &serde_json::Value| -> Vec<String> {
        audit["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "unsigned")
            .map(|f| format!("{} {}", f["subject"].as_str().unwrap(), f["origin"].as_str().unwrap_or("")))
            .collect()
    };
    let found = unsigned_subjects(&audit);
    assert_eq!(found.len(), 1, "{audit:#}");
    assert!(
        found[0].starts_with(&format!("{host}/prod/unsigned@{} ", unsigned.digest()))
            && found[0].contains("images.yaml:"),
        "{found:?}"
    );
    // Without --key, the policy's keys: staging's release key signed `signed`, nothing else.
    let out = ferry(&["audit", "--thin-manifest-dir", thin_arg, "--require-signatures", "--output", "json"]).await;
    let audit: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(unsigned_subjects(&audit).len(), 1, "{audit:#}");
}

/// The same over an `oci:` layout destination: signed and attested there, verified there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_and_verify_on_an_oci_layout() {
    let server = RegistryServer::start().await.unwrap();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let staging = client.registry(&server.host(), Some(repo("staging")));
    let image = ImageSpec::two_arch("layout", 2048, 256).build();
    push(&staging, &repo("team/app"), &image, &["v1"]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = PrivateKey::generate();
    write(&root.join("ferry.key"), key.to_pkcs8_pem().unwrap().as_bytes());
    write(&root.join("ferry.pub"), key.public_key().to_pem().as_bytes());
    let layouts = root.join("out");
    let thin = root.join("thin");
    write(
        &thin.join("manifests/p/promoter-manifest.yaml"),
        format!("registries:\n- name: {}/staging\n  src: true\n- name: oci:{}\n", server.host(), layouts.display())
            .as_bytes(),
    );
    write(
        &thin.join("images/p/images.yaml"),
        format!("- name: team/app\n  dmap:\n    \"{}\": [v1]\n", image.digest()).as_bytes(),
    );
    let (thin, key_file, public) =
        (thin.to_str().unwrap(), root.join("ferry.key"), root.join("ferry.pub").to_str().unwrap().to_string());
    let out = ferry(&[
        "promote",
        "images",
        "--thin-manifest-dir",
        thin,
        "--confirm",
        "--sign-key",
        key_file.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("added 1 signatures, 1 attestations"), "{}", text(&out));

    let reference = format!("oci:{}/team/app:v1", layouts.display());
    let out = ferry(&["verify", &reference, "--key", &public, "--attestation"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("promoted from"), "{}", text(&out));
    let other = root.join("other.pub");
    write(&other, PrivateKey::generate().public_key().to_pem().as_bytes());
    let out = ferry(&["verify", &reference, "--key", other.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = ferry(&["verify", &format!("oci:{}/nothing:v1", layouts.display()), "--key", &public]).await;
    assert_eq!(out.status.code(), Some(2), "no layout there is bad input: {}", text(&out));
    let out = ferry(&[
        "promote",
        "images",
        "--thin-manifest-dir",
        thin,
        "--confirm",
        "--sign-key",
        key_file.to_str().unwrap(),
    ])
    .await;
    assert!(!text(&out).contains("added"), "a re-run adds nothing: {}", text(&out));

    // A layout lists its referrers: the signature is there as one too (once, after two runs),
    // and verifies from there alone once the .sig tag is gone.
    let layout = ferry_registry::open(&format!("oci:{}", layouts.display()).parse().unwrap(), &client);
    let referrers = layout.referrers(&repo("team/app"), image.digest()).await.unwrap().unwrap();
    assert_eq!(referrers.len(), 1, "{referrers:?}");
    assert_eq!(referrers[0].artifact_type.as_deref(), Some(ferry_sign::referrer::SIGNATURE_ARTIFACT_TYPE));
    let index_path = layouts.join("team/app/index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let sig_tag = ferry_sign::signature_image::signature_tag(image.digest());
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["annotations"]["org.opencontainers.image.ref.name"].as_str() != Some(sig_tag.as_str()));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let out = ferry(&["verify", &reference, "--key", &public]).await;
    assert_eq!(out.status.code(), Some(0), "verified from the referrer: {}", text(&out));
}
