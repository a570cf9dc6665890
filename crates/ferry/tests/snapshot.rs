//! `ferry snapshot` as a user runs it: images promoted by Ferry into a real registry (and an `oci:`
//! layout) are snapshotted, and the snapshot, fed back as a thin manifest's `images.yaml`, plans
//! nothing to copy. The output is stable, `--repos` limits it, bad input exits 2.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::images::{push, repo, signature_for, signature_tag, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("run ferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A thin manifest directory with one project, `proj`, promoting from `source` to `destinations`.
fn thin_dir(root: &Path, source: &str, destinations: &[&str], images_yaml: &str) -> String {
    let mut registries = format!("registries:\n- name: {source}\n  src: true\n");
    for d in destinations {
        registries += &format!("- name: {d}\n");
    }
    std::fs::create_dir_all(root.join("manifests/proj")).unwrap();
    std::fs::create_dir_all(root.join("images/proj")).unwrap();
    std::fs::write(root.join("manifests/proj/promoter-manifest.yaml"), registries).unwrap();
    std::fs::write(root.join("images/proj/images.yaml"), images_yaml).unwrap();
    root.display().to_string()
}

fn snapshot(args: &[&str]) -> String {
    let out = ferry(&[&["snapshot"], args].concat());
    assert!(out.status.success(), "snapshot {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[tokio::test]
async fn a_snapshot_of_what_ferry_promoted_plans_nothing_to_copy() {
    let server = RegistryServer::start().await.unwrap();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let staging = client.registry(&server.host(), Some(repo("staging")));

    // A signed two-arch image with two tags, a second image, and a signed image by digest only.
    let multi = ImageSpec::two_arch("multi", 4096, 512).build();
    let single = ImageSpec::single("single", 1024).build();
    let untagged = ImageSpec::single("untagged", 768).build();
    push(&staging, &repo("app"), &multi, &["v1", "v1.0"]).await.unwrap();
    let sig = signature_for(multi.digest());
    push(&staging, &repo("app"), &sig, &[signature_tag(multi.digest()).as_str()]).await.unwrap();
    push(&staging, &repo("app"), &single, &["v2"]).await.unwrap();
    push(&staging, &repo("tools/cli"), &untagged, &[]).await.unwrap();
    let sig = signature_for(untagged.digest());
    push(&staging, &repo("tools/cli"), &sig, &[signature_tag(untagged.digest()).as_str()]).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let source = format!("{}/staging", server.host());
    let prod = format!("{}/prod", server.host());
    let layout = format!("oci:{}", dir.path().join("layout").display());
    let images = format!(
        "- name: app\n  dmap:\n    \"{}\": [\"v1\", \"v1.0\"]\n    \"{}\": [\"v2\"]\n- name: tools/cli\n  dmap:\n    \"{}\": []\n",
        multi.digest(),
        single.digest(),
        untagged.digest()
    );
    let first = thin_dir(&dir.path().join("first"), &source, &[&prod, &layout], &images);
    let run = ferry(&["promote", "images", "--thin-manifest-dir", &first, "--confirm", "--output", "json"]);
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));

    // The destination's snapshot: index digests only, no signature tags, the signed digest-only
    // image kept without tags; nothing of staging (outside the prefix).
    let yaml = snapshot(&[&prod]);
    let mut app_digests = [multi.digest().to_string(), single.digest().to_string()];
    app_digests.sort();
    let app_lines: Vec<String> = app_digests
        .iter()
        .map(|d| {
            if *d == multi.digest().as_str() {
                format!("    \"{d}\": [\"v1\", \"v1.0\"]\n")
            } else {
                format!("    \"{d}\": [\"v2\"]\n")
            }
        })
        .collect();
    let expected = format!(
        "- name: app\n  dmap:\n{}- name: tools/cli\n  dmap:\n    \"{}\": []\n",
        app_lines.concat(),
        untagged.digest()
    );
    assert_eq!(yaml, expected);
    for child in &multi.children {
        assert!(!yaml.contains(child.digest.as_str()), "child manifest listed: {yaml}");
    }

    // Stable: the same registry state gives the same bytes; the oci: layout holds the same.
    assert_eq!(snapshot(&[&prod]), yaml);
    assert_eq!(snapshot(&[&layout]), yaml);

    // Fed back as a manifest with the same source and destinations: every edge (signatures
    // included) is already there.
    let second = thin_dir(&dir.path().join("second"), &source, &[&prod, &layout], &yaml);
    let dry = ferry(&["promote", "images", "--thin-manifest-dir", &second, "--output", "json"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("JSON on stdout");
    let edges = report["edges"].as_array().unwrap();
    assert!(edges.len() >= 8, "{report:#}");
    assert!(edges.iter().all(|e| e["status"] == "skipped"), "{report:#}");
    assert!(edges.iter().any(|e| e["tag"].as_str().is_some_and(|t| t.ends_with(".sig"))), "{report:#}");

    // --repos limits it; --output json is the same list.
    let only = snapshot(&[&prod, "--repos", "tools/cli"]);
    assert_eq!(only, format!("- name: tools/cli\n  dmap:\n    \"{}\": []\n", untagged.digest()));
    let json: serde_json::Value =
        serde_json::from_str(&snapshot(&[&prod, "--output", "json", "--repos", "app"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["name"], "app");
    assert_eq!(json[0]["dmap"][multi.digest().as_str()], serde_json::json!(["v1", "v1.0"]));

    // A prefix holding nothing, and a named repository that does not exist: no images.
    assert_eq!(snapshot(&[&format!("{}/empty", server.host())]), "[]\n");
    assert_eq!(snapshot(&[&prod, "--repos", "nothing"]), "[]\n");
}

#[test]
fn bad_input_exits_2() {
    for args in [&["snapshot", "not a registry"][..], &["snapshot", "oci:/tmp/x", "--repos", "Bad/Name"]] {
        let out = ferry(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).starts_with("error: "), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
    }
}
