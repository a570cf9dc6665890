//! `ferry promote images|files --since REV` through the binary, in temporary git repositories:
//! after a full promotion, a change that adds one image (or one file) promotes only that, reading
//! nothing of the rest (a counting proxy in front of the source registry; an untouched file made
//! unreadable and its published copy changed); a full run then has nothing to do; a change that
//! moves a tag is refused with its file:line and promotes nothing.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::git::git;

use ferry_testkit::fault_proxy::FaultProxy;
use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A git repository with nothing committed yet.
fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    dir
}

fn commit(repo: &Path) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "change"]);
}

/// Runs the binary in `dir` off the async runtime, so the proxy it talks to keeps serving.
async fn ferry(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferry")).current_dir(dir).args(args).output().expect("run ferry")
    })
    .await
    .unwrap()
}

fn images_yaml(images: &[(&str, String, &str)]) -> String {
    images.iter().map(|(name, digest, tags)| format!("- name: {name}\n  dmap:\n    \"{digest}\": [{tags}]\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_images_since_promotes_only_the_added_image() {
    let server = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&server.host()).await.unwrap();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let staging = client.registry(&server.host(), Some(repo("staging")));
    let one = ImageSpec::two_arch("one", 2048, 256).build();
    let two = ImageSpec::single("two", 1024).build();
    let three = ImageSpec::two_arch("three", 1536, 128).build();
    push(&staging, &repo("one"), &one, &["v1"]).await.unwrap();
    push(&staging, &repo("two"), &two, &["v2", "latest"]).await.unwrap();
    push(&staging, &repo("three"), &three, &["v3"]).await.unwrap();

    // The source is read through the proxy; two destinations on the registry itself.
    let repo_dir = new_repo();
    let root = repo_dir.path();
    let registries = format!(
        "registries:\n- name: {}/staging\n  src: true\n- name: {host}/prod\n- name: {host}/eu\n",
        proxy.host(),
        host = server.host()
    );
    write(&root.join("deploy/manifests/p/promoter-manifest.yaml"), registries.as_bytes());
    let images = root.join("deploy/images/p/images.yaml");
    let base = images_yaml(&[
        ("one", one.digest().to_string(), "\"v1\""),
        ("two", two.digest().to_string(), "\"v2\", \"latest\""),
    ]);
    write(&images, base.as_bytes());
    commit(root);

    let full = ferry(root, &["promote", "images", "--thin-manifest-dir", "deploy", "--confirm"]).await;
    assert_eq!(full.status.code(), Some(0), "{}", text(&full));

    // One image added (not committed: the working tree against HEAD, as a presubmit sees it).
    let head = base.clone() + &images_yaml(&[("three", three.digest().to_string(), "\"v3\"")]);
    write(&images, head.as_bytes());
    proxy.reset_counts();
    let since =
        ferry(root, &["promote", "images", "--thin-manifest-dir", "deploy", "--since", "HEAD", "--confirm"]).await;
    let out = text(&since);
    assert_eq!(since.status.code(), Some(0), "{out}");
    assert!(out.contains("promoted 2, skipped 0, refused 0, failed 0"), "{out}");
    assert!(out.contains(&format!("{}/prod/three:v3", server.host())), "{out}");
    assert!(out.contains(&format!("{}/eu/three:v3", server.host())), "{out}");
    let requests = proxy.requests();
    assert!(proxy.count("GET", "/staging/three/") > 0, "{requests:?}");
    for other in ["/staging/one/", "/staging/two/"] {
        assert!(requests.iter().all(|(_, path)| !path.contains(other)), "read {other}: {requests:?}");
    }

    // Everything is there: a full run has nothing to do.
    commit(root);
    let rerun = ferry(root, &["promote", "images", "--thin-manifest-dir", "deploy"]).await;
    let out = text(&rerun);
    assert_eq!(rerun.status.code(), Some(0), "{out}");
    assert!(out.contains("dry run: 0 to promote, 8 already there, 0 refused"), "{out}");
    // Nothing changed since HEAD: --since has nothing to plan and reads nothing.
    proxy.reset_counts();
    let nothing = ferry(root, &["promote", "images", "--thin-manifest-dir", "deploy", "--since", "HEAD"]).await;
    assert_eq!(nothing.status.code(), Some(0), "{}", text(&nothing));
    assert!(text(&nothing).contains("dry run: 0 to promote, 0 already there"), "{}", text(&nothing));
    assert!(proxy.requests().iter().all(|(_, p)| !p.contains("/staging/")), "{:?}", proxy.requests());

    // A tag move in the change refuses the whole run, naming the line, and reads nothing.
    let moved = format!(
        "{}- name: two\n  dmap:\n    \"{}\": [\"v2\"]\n    \"{}\": [\"latest\"]\n{}",
        images_yaml(&[("one", one.digest().to_string(), "\"v1\"")]),
        two.digest(),
        three.digest(),
        images_yaml(&[("three", three.digest().to_string(), "\"v3\"")]),
    );
    write(&images, moved.as_bytes());
    let refused =
        ferry(root, &["promote", "images", "--thin-manifest-dir", "deploy", "--since", "HEAD", "--confirm"]).await;
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(out.contains("deploy/images/p/images.yaml:7: tag two:latest moved from"), "{out}");
    assert!(out.contains("nothing promoted"), "{out}");
    assert!(proxy.requests().iter().all(|(_, p)| !p.contains("/staging/")), "{:?}", proxy.requests());

    // A revision that does not exist is bad input; --since needs a thin-manifest directory.
    let bad = ferry(root, &["promote", "images", "--thin-manifest-dir", "deploy", "--since", "no-such-rev"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let plain = ferry(root, &["promote", "images", "--manifest", "x.yaml", "--since", "HEAD"]).await;
    assert_eq!(plain.status.code(), Some(2), "{}", text(&plain));
}

fn sha256_hex(bytes: &[u8]) -> String {
    ferry_oci::Digest::of(bytes).hex().to_string()
}

fn files_yaml(files: &[(&str, &[u8])]) -> String {
    let mut yaml = String::from("files:\n");
    for (name, bytes) in files {
        yaml += &format!("- name: {name}\n  sha256: {}\n", sha256_hex(bytes));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_files_since_reads_only_the_added_file() {
    let repo_dir = new_repo();
    let root = repo_dir.path();
    let stores_dir = tempfile::tempdir().unwrap();
    let staging = stores_dir.path().join("staging");
    let prod = stores_dir.path().join("prod");
    let stores = format!("filestores:\n- base: {}\n  src: true\n- base: {}\n", staging.display(), prod.display());
    write(&root.join("m/filestores/kops/filepromoter-manifest.yaml"), stores.as_bytes());
    let (a, b, c): (&[u8], &[u8], &[u8]) = (b"first file\n", b"second file\n", b"third file\n");
    for (name, bytes) in [("v1/a", a), ("v1/b", b), ("v2/c", c)] {
        write(&staging.join(name), bytes);
    }
    let manifest = root.join("m/manifests/kops/release.yaml");
    write(&manifest, files_yaml(&[("v1/a", a), ("v1/b", b)]).as_bytes());
    commit(root);

    let full = ferry(root, &["promote", "files", "--manifests", "m", "--confirm"]).await;
    assert_eq!(full.status.code(), Some(0), "{}", text(&full));
    assert_eq!(std::fs::read(prod.join("v1/b")).unwrap(), b);

    // The untouched files cannot be read in staging, and one's published copy now differs: a run
    // that looked at them would fail or refuse.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(staging.join("v1/a"), std::fs::Permissions::from_mode(0o000)).unwrap();
    write(&prod.join("v1/b"), b"tampered\n");

    write(&manifest, files_yaml(&[("v1/a", a), ("v1/b", b), ("v2/c", c)]).as_bytes());
    let since =
        ferry(root, &["promote", "files", "--manifests", "m", "--since", "HEAD", "--confirm", "--output", "json"])
            .await;
    assert_eq!(since.status.code(), Some(0), "{}", text(&since));
    let report: serde_json::Value = serde_json::from_slice(&since.stdout).unwrap();
    assert_eq!(report["summary"]["promoted"], 1, "{report:#}");
    assert_eq!(report["summary"]["files_read"], 1, "{report:#}");
    assert_eq!(report["files"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(std::fs::read(prod.join("v2/c")).unwrap(), c);

    // The full run sees the changed copy; put back, it has nothing to do.
    let full = ferry(root, &["promote", "files", "--manifests", "m"]).await;
    assert_eq!(full.status.code(), Some(1), "{}", text(&full));
    write(&prod.join("v1/b"), b);
    std::fs::set_permissions(staging.join("v1/a"), std::fs::Permissions::from_mode(0o644)).unwrap();
    commit(root);
    let full = ferry(root, &["promote", "files", "--manifests", "m", "--output", "json"]).await;
    assert_eq!(full.status.code(), Some(0), "{}", text(&full));
    let report: serde_json::Value = serde_json::from_slice(&full.stdout).unwrap();
    assert_eq!(report["summary"]["planned"], 0, "{report:#}");
    assert_eq!(report["summary"]["skipped"], 3, "{report:#}");

    // A changed sha256 refuses the run at its line and copies nothing.
    write(&manifest, files_yaml(&[("v1/a", a), ("v1/b", c), ("v2/c", c), ("v3/d", a)]).as_bytes());
    let refused = ferry(root, &["promote", "files", "--manifests", "m", "--since", "HEAD", "--confirm"]).await;
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(out.contains("m/manifests/kops/release.yaml:4: file v1/b: sha256 changed"), "{out}");
    assert!(!prod.join("v3/d").exists());
}
