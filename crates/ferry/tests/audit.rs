//! `ferry audit` as a user runs it, against a real registry and local folders: what Ferry
//! promoted and signed audits clean (exit 0, with --require-signatures); then changes made by hand — a tag moved, a repository pushed,
//! an image deleted through the registry API, an extra tag, a signature removed; a file changed, deleted, added — are
//! each found and named (exit 1). A registry without a catalog is one finding and the rest of the
//! audit still runs. Bad input exits 2.

use std::path::Path;
use std::process::{Command, Output};

use ferry_registry::Registry as _;

use ferry_testkit::fault_proxy::{Fault, FaultProxy, FaultRule};
use ferry_testkit::images::{push, repo, signature_for, signature_tag, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Runs the binary off the async runtime, so a proxy it talks to keeps serving.
async fn ferry(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("run ferry")
    })
    .await
    .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON on stdout ({e}): {}", text(&out.stdout)))
}

/// A thin manifest directory with one project promoting from `source` to `destination`.
fn thin_dir(root: &Path, source: &str, destination: &str, images_yaml: &str) -> String {
    let registries = format!("registries:\n- name: {source}\n  src: true\n- name: {destination}\n");
    write(&root.join("manifests/proj/promoter-manifest.yaml"), registries.as_bytes());
    write(&root.join("images/proj/images.yaml"), images_yaml.as_bytes());
    root.display().to_string()
}

/// The findings of a JSON report as (kind, subject) pairs.
fn kinds(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().to_string(), f["subject"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_a_clean_production_passes_and_changes_by_hand_are_each_found() {
    let server = RegistryServer::start().await.unwrap();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let staging = client.registry(&server.host(), Some(repo("staging")));
    let prod = client.registry(&server.host(), Some(repo("prod")));

    // A signed two-arch image with two tags, a second image, one by digest only, one to delete.
    let multi = ImageSpec::two_arch("multi", 2048, 256).build();
    let single = ImageSpec::single("single", 1024).build();
    let untagged = ImageSpec::single("untagged", 512).build();
    let doomed = ImageSpec::single("doomed", 640).build();
    push(&staging, &repo("app"), &multi, &["v1", "v1.0"]).await.unwrap();
    push(&staging, &repo("app"), &signature_for(multi.digest()), &[signature_tag(multi.digest()).as_str()])
        .await
        .unwrap();
    push(&staging, &repo("app"), &single, &["v2"]).await.unwrap();
    push(&staging, &repo("tools/cli"), &untagged, &[]).await.unwrap();
    push(&staging, &repo("old"), &doomed, &["v0"]).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let source = format!("{}/staging", server.host());
    let destination = format!("{}/prod", server.host());
    let images = format!(
        "- name: app\n  dmap:\n    \"{}\": [\"v1\", \"v1.0\"]\n    \"{}\": [\"v2\"]\n\
         - name: tools/cli\n  dmap:\n    \"{}\": []\n\
         - name: old\n  dmap:\n    \"{}\": [\"v0\"]\n",
        multi.digest(),
        single.digest(),
        untagged.digest(),
        doomed.digest()
    );
    let thin = thin_dir(&dir.path().join("thin"), &source, &destination, &images);
    let images_yaml = dir.path().join("thin/images/proj/images.yaml").display().to_string();
    // Promoted and signed by Ferry.
    let key = ferry_sign::keys::PrivateKey::generate();
    let (key_file, public_file) = (dir.path().join("ferry.key"), dir.path().join("ferry.pub"));
    std::fs::write(&key_file, key.to_pkcs8_pem().unwrap()).unwrap();
    std::fs::write(&public_file, key.public_key().to_pem()).unwrap();
    let (key_file, public_file) = (key_file.to_str().unwrap(), public_file.to_str().unwrap());
    let run = ferry(&["promote", "images", "--thin-manifest-dir", &thin, "--confirm", "--sign-key", key_file]).await;
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));

    // Clean: exit 0, no findings (the signature tag belongs to its image; staging, outside the
    // prefix, is not looked at).
    let clean = ferry(&["audit", "--thin-manifest-dir", &thin, "--require-signatures", "--key", public_file]).await;
    assert_eq!(clean.status.code(), Some(0), "{}\n{}", text(&clean.stdout), text(&clean.stderr));
    let out = text(&clean.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("audit: 1 destinations, 8 promised checked, no findings"), "{out}");
    let report = json(&ferry(&["audit", "--thin-manifest-dir", &thin, "--output", "json"]).await);
    assert_eq!(report["findings"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["totals"]["findings"], 0);
    assert_eq!(report["warnings"], serde_json::json!([]));

    // A registry that offers no catalog: one finding, and every promised thing still checked.
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    proxy.add_fault(FaultRule {
        method: None,
        path_contains: "/v2/_catalog".into(),
        times: usize::MAX,
        fault: Fault::Status { status: 404, retry_after: None },
    });
    let behind = thin_dir(&dir.path().join("behind"), &source, &format!("{}/prod", proxy.host()), &images);
    let out = ferry(&["audit", "--thin-manifest-dir", &behind, "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(kinds(&report), [("cannot-list-repositories".to_string(), format!("{}/prod", proxy.host()))]);
    assert!(report["findings"][0]["found"].as_str().unwrap().contains("404"), "{report:#}");
    assert_eq!(report["totals"]["checked"], 8);
    assert!(proxy.count("HEAD", "/v2/prod/") >= 1, "the promised images were still checked");

    // By hand: v2 moved onto another image that also gets an extra tag, a repository pushed
    // under the prefix, the image of old:v0 deleted through the registry API.
    let hand = ImageSpec::single("by-hand", 300).build();
    push(&prod, &repo("app"), &hand, &["v2", "debug"]).await.unwrap();
    push(&prod, &repo("team/pushed-by-hand"), &hand, &["latest"]).await.unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!("http://{}/v2/prod/old/manifests/{}", server.host(), doomed.digest()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 202, "{}", deleted.text().await.unwrap());
    // ... and the signature of tools/cli removed.
    let sig_tag = ferry_oci::Reference::Tag(signature_tag(untagged.digest()));
    let sig = prod.head_manifest(&repo("tools/cli"), &sig_tag).await.unwrap().expect("Ferry signed it");
    let deleted = reqwest::Client::new()
        .delete(format!("http://{}/v2/prod/tools/cli/manifests/{}", server.host(), sig.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 202, "{}", deleted.text().await.unwrap());

    let out = ferry(&[
        "audit",
        "--thin-manifest-dir",
        &thin,
        "--output",
        "json",
        "--require-signatures",
        "--key",
        public_file,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let report = json(&out);
    let at = |what: &str| format!("{destination}/{what}");
    assert_eq!(
        kinds(&report),
        [
            ("unlisted-tag".to_string(), at("app:debug")),
            ("moved-tag".to_string(), at("app:v2")),
            ("missing-tag".to_string(), at("old:v0")),
            ("missing-image".to_string(), at(&format!("old@{}", doomed.digest()))),
            ("unlisted-repository".to_string(), at("team/pushed-by-hand")),
            ("unsigned".to_string(), at(&format!("tools/cli@{}", untagged.digest()))),
        ],
        "{report:#}"
    );
    let findings = report["findings"].as_array().unwrap();
    let moved = &findings[1];
    assert_eq!(moved["destination"], destination.as_str());
    assert_eq!(moved["expected"], single.digest().as_str());
    assert_eq!(moved["found"], hand.digest().as_str());
    assert!(moved["origin"].as_str().unwrap().starts_with(&format!("{images_yaml}:")), "{moved}");
    assert_eq!(findings[0]["found"], hand.digest().as_str());
    assert_eq!(findings[0]["origin"], serde_json::Value::Null);
    assert_eq!(findings[3]["expected"], doomed.digest().as_str());
    assert_eq!(findings[3]["found"], "absent");
    assert_eq!(findings[3]["origin"], format!("{images_yaml}:10"));
    assert_eq!(findings[2]["expected"], doomed.digest().as_str());
    assert_eq!(findings[2]["found"], "no such tag");
    assert_eq!(report["totals"]["findings"], 6);
    assert_eq!(report["totals"]["by_kind"]["moved-tag"], 1);
    assert!(findings[5]["found"].as_str().unwrap().contains("unsigned: no cosign signature"), "{report:#}");

    // The same as text: one line per finding, then the summary.
    let out = ferry(&["audit", "--manifest", &write_plain(dir.path(), &source, &destination, &images)]).await;
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert_eq!(
        lines[1],
        format!(
            "moved-tag {}: expected {}, found {} ({}:9)",
            at("app:v2"),
            single.digest(),
            hand.digest(),
            dir.path().join("plain.yaml").display()
        )
    );
    assert!(lines[5].starts_with("audit: 1 destinations, 8 promised checked, 5 findings (1 missing-tag, 1 missing-image, 1 moved-tag, 1 unlisted-tag, 1 unlisted-repository)"), "{}", lines[5]);
}

/// The same promotion as one plain manifest file (`--manifest`).
fn write_plain(dir: &Path, source: &str, destination: &str, images: &str) -> String {
    let path = dir.join("plain.yaml");
    let indented: String = images.lines().map(|l| format!("{l}\n")).collect();
    let yaml = format!("registries:\n- name: {source}\n  src: true\n- name: {destination}\nimages:\n{indented}");
    write(&path, yaml.as_bytes());
    path.display().to_string()
}

#[tokio::test]
async fn files_a_clean_folder_passes_and_changes_by_hand_are_each_found() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let prod = dir.path().join("prod");
    let m = dir.path().join("m");
    let stores = format!("filestores:\n- base: {}\n  src: true\n- base: {}/\n", staging.display(), prod.display());
    write(&m.join("filestores/kops/filepromoter-manifest.yaml"), stores.as_bytes());
    let files: [(&str, &[u8]); 4] = [
        ("1.30.0/linux/amd64/kops", b"kops binary"),
        ("1.30.0/linux/amd64/kops.sha256", b"0123456789abcdef"),
        ("1.30.0/darwin/arm64/kops", b"kops for darwin"),
        ("1.30.0/README", b"read me"),
    ];
    let mut yaml = String::from("files:\n");
    for (name, bytes) in files {
        write(&staging.join(name), bytes);
        yaml += &format!("- name: {name}\n  sha256: {}\n", ferry_oci::Digest::of(bytes).hex());
    }
    let release = m.join("manifests/kops/1.30.0.yaml");
    write(&release, yaml.as_bytes());
    let m = m.display().to_string();

    // Promoted with an inventory, which the audit leaves alone.
    let run = ferry(&["promote", "files", "--manifests", &m, "--confirm", "--inventory"]).await;
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));
    assert!(prod.join("inventory.txt").exists());

    let clean = ferry(&["audit", "--manifests", &m]).await;
    assert_eq!(clean.status.code(), Some(0), "{}\n{}", text(&clean.stdout), text(&clean.stderr));
    assert!(text(&clean.stdout).starts_with("audit: 1 destinations, 4 promised checked, no findings"));

    // By hand: a file changed (same size: only a re-hash tells), one deleted, one added.
    write(&prod.join("1.30.0/linux/amd64/kops"), b"KOPS BINARY");
    std::fs::remove_file(prod.join("1.30.0/README")).unwrap();
    write(&prod.join("1.30.0/linux/amd64/kubectl"), b"not promoted");

    let out = ferry(&["audit", "--manifests", &m, "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let report = json(&out);
    let base = format!("{}/", prod.display());
    let at = |name: &str| format!("{}/{name}", prod.display());
    assert_eq!(
        kinds(&report),
        [
            ("missing-file".to_string(), at("1.30.0/README")),
            ("changed-file".to_string(), at("1.30.0/linux/amd64/kops")),
            ("unlisted-file".to_string(), at("1.30.0/linux/amd64/kubectl")),
        ],
        "{report:#}"
    );
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["destination"] == base.as_str()), "{report:#}");
    let changed = &findings[1];
    assert_eq!(changed["expected"], ferry_oci::Digest::of(b"kops binary").as_str());
    assert_eq!(changed["found"], format!("{} (11 bytes, re-hashed)", ferry_oci::Digest::of(b"KOPS BINARY")));
    assert_eq!(changed["origin"], format!("{}:2", release.display()));
    assert_eq!(findings[0]["origin"], format!("{}:8", release.display()));
    assert_eq!(findings[2]["origin"], serde_json::Value::Null);

    // Text: a line each and the summary.
    let out = ferry(&["audit", "--manifests", &m]).await;
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(
        lines[2],
        format!(
            "unlisted-file {}: expected absent (no manifest lists it), found a file of 12 bytes",
            at("1.30.0/linux/amd64/kubectl")
        )
    );
}

#[tokio::test]
async fn bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing").display().to_string();
    let bad_yaml = dir.path().join("bad.yaml");
    write(&bad_yaml, b"registries: [oops\n");
    let bad_yaml = bad_yaml.display().to_string();
    let cases: [&[&str]; 5] = [
        &["audit", "--thin-manifest-dir", &missing],
        &["audit", "--manifests", &missing],
        &["audit", "--manifest", &bad_yaml],
        &["audit", "--manifests", &missing, "--inventory", "../escape"],
        &["audit"],
    ];
    for args in cases {
        let out = ferry(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).starts_with("error: "), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Image and file manifests are audited by separate runs.
    let out = ferry(&["audit", "--thin-manifest-dir", &missing, "--manifests", &missing]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be used with"), "{}", text(&out.stderr));
}
