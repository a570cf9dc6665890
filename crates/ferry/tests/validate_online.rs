//! `ferry validate --online` through the binary: the sources (a real registry, a local staging
//! folder) are read, and a missing digest, an image without the required platforms, an image
//! over `max_image_bytes`, a missing file and a file whose bytes do not match its sha256 are each
//! refused at their manifest line; a clean change passes; with `--base` only what the change adds
//! is read.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::git::git;

use ferry_testkit::images::{push, repo, ImageSpec, TestImage};
use ferry_testkit::registry_server::RegistryServer;

const MISSING: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn ferry(dir: &Path, args: &[&str]) -> (i32, String) {
    let out: Output =
        Command::new(env!("CARGO_BIN_EXE_ferry")).current_dir(dir).args(args).output().expect("run ferry");
    let stdout = text(&out.stdout);
    (out.status.code().unwrap(), format!("{stdout}{}", text(&out.stderr)))
}

/// A staging registry (`HOST/staging`) holding `images` (name, image), each pushed with tag `v1`.
struct Staging {
    server: RegistryServer,
}

impl Staging {
    async fn new(images: &[(&str, &TestImage)]) -> Staging {
        let server = RegistryServer::start().await.unwrap();
        let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
        let staging = client.registry(&server.host(), Some(repo("staging")));
        for (name, image) in images {
            push(&staging, &repo(name), image, &["v1"]).await.unwrap();
        }
        Staging { server }
    }

    /// A thin directory at `root/deploy` promoting from staging, with `images_yaml` and, when
    /// given, `policy.yaml`.
    fn thin_dir(&self, root: &Path, images_yaml: &str, policy: Option<&str>) {
        let registries = format!(
            "registries:\n- name: {}/staging\n  src: true\n- name: {}/prod\n",
            self.server.host(),
            self.server.host()
        );
        write(&root.join("deploy/manifests/p/promoter-manifest.yaml"), registries.as_bytes());
        write(&root.join("deploy/images/p/images.yaml"), images_yaml.as_bytes());
        if let Some(policy) = policy {
            write(&root.join("deploy/policy.yaml"), policy.as_bytes());
        }
    }
}

fn validate_online(root: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["validate", "--thin-manifest-dir", "deploy", "--online"];
    args.extend(extra);
    ferry(root, &args)
}

/// `images.yaml` with one image per (name, digest), the digest on line 3, 5, 7...
fn images_yaml(entries: &[(&str, &str)]) -> String {
    entries.iter().map(|(name, digest)| format!("- name: {name}\n  dmap:\n    \"{digest}\": [\"v1\"]\n")).collect()
}

#[tokio::test]
async fn a_missing_digest_is_refused_at_its_line_and_a_clean_tree_passes() {
    let app = ImageSpec::two_arch("app", 2048, 256).build();
    let staging = Staging::new(&[("app", &app)]).await;
    let dir = tempfile::tempdir().unwrap();

    staging.thin_dir(dir.path(), &images_yaml(&[("app", app.digest().as_str()), ("gone", MISSING)]), None);
    let (code, out) = validate_online(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("deploy/images/p/images.yaml:6: {}/staging/gone@{MISSING}", staging.server.host())),
        "{out}"
    );
    assert!(out.contains("is missing"), "{out}");
    assert!(!out.contains("images.yaml:3:"), "the present digest is not refused: {out}");

    staging.thin_dir(dir.path(), &images_yaml(&[("app", app.digest().as_str())]), None);
    let (code, out) = validate_online(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn required_platforms_refuse_a_single_platform_image_and_accept_a_two_arch_one() {
    let multi = ImageSpec::two_arch("multi", 2048, 256).build();
    let single = ImageSpec::single("single", 1024).build();
    let staging = Staging::new(&[("multi", &multi), ("single", &single)]).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = "required_platforms: [linux/amd64, linux/arm64]\n";

    let both = images_yaml(&[("multi", multi.digest().as_str()), ("single", single.digest().as_str())]);
    staging.thin_dir(dir.path(), &both, Some(policy));
    let (code, out) = validate_online(dir.path(), &["--output", "github"]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("::error ")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].starts_with("::error file=deploy/images/p/images.yaml,line=6::"), "{out}");
    assert!(errors[0].contains("single-platform image"), "{out}");

    staging.thin_dir(dir.path(), &images_yaml(&[("multi", multi.digest().as_str())]), Some(policy));
    let (code, out) = validate_online(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");

    // An index without one of the platforms is refused, naming it.
    let policy = "required_platforms: [linux/amd64, linux/s390x]\n";
    staging.thin_dir(dir.path(), &images_yaml(&[("multi", multi.digest().as_str())]), Some(policy));
    let (code, out) = validate_online(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("images.yaml:3:") && out.contains("lacks platform linux/s390x"), "{out}");
}

#[tokio::test]
async fn max_image_bytes_refuses_a_large_image() {
    let small = ImageSpec::two_arch("small", 1024, 256).build();
    let large = ImageSpec::two_arch("large", 64 * 1024, 16 * 1024).build();
    let staging = Staging::new(&[("small", &small), ("large", &large)]).await;
    let dir = tempfile::tempdir().unwrap();
    assert!(large.blob_bytes() > 100_000 && small.blob_bytes() < 50_000);

    let yaml = images_yaml(&[("small", small.digest().as_str()), ("large", large.digest().as_str())]);
    staging.thin_dir(dir.path(), &yaml, Some("max_image_bytes: 100000\n"));
    let (code, out) = validate_online(dir.path(), &["--output", "json"]);
    assert_eq!(code, 1, "{out}");
    // The JSON document first (standard output), then anything on standard error.
    let json: serde_json::Value = serde_json::Deserializer::from_str(&out).into_iter().next().unwrap().unwrap();
    assert_eq!(json["status"], "refused");
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{out}");
    assert_eq!(errors[0]["line"], 6);
    assert!(errors[0]["message"].as_str().unwrap().contains("more than the policy's max_image_bytes 100000"), "{out}");
}

#[tokio::test]
async fn with_base_only_the_added_digests_are_read() {
    let app = ImageSpec::two_arch("app", 2048, 256).build();
    let staging = Staging::new(&[("app", &app)]).await;
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    // Already in the tree: a digest no longer in staging (promoted long ago, staging cleaned).
    staging.thin_dir(dir.path(), &images_yaml(&[("old", MISSING)]), None);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "base"]);

    staging.thin_dir(dir.path(), &images_yaml(&[("old", MISSING), ("app", app.digest().as_str())]), None);
    let (code, out) = validate_online(dir.path(), &["--base", "HEAD"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("add digest app@"), "{out}");

    // Without --base every digest is read, the old one too.
    let (code, out) = validate_online(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("images.yaml:3:"), "{out}");
}

#[test]
fn a_missing_file_and_a_file_whose_bytes_do_not_match_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let stores = format!(
        "filestores:\n- base: {}\n  src: true\n- base: {}\n",
        staging.display(),
        dir.path().join("prod").display()
    );
    write(&dir.path().join("m/filestores/p/filepromoter-manifest.yaml"), stores.as_bytes());
    write(&staging.join("good.tar.gz"), b"good bytes");
    write(&staging.join("bad.tar.gz"), b"tampered bytes");
    let sha = |b: &[u8]| ferry_oci::Digest::of(b).hex().to_string();
    let manifest = dir.path().join("m/manifests/p/release.yaml");
    let entry = |name: &str, bytes: &[u8]| format!("- name: {name}\n  sha256: {}\n", sha(bytes));
    let all = format!(
        "files:\n{}{}{}",
        entry("good.tar.gz", b"good bytes"),
        entry("bad.tar.gz", b"the bytes that were reviewed"),
        entry("absent.tar.gz", b"x")
    );
    write(&manifest, all.as_bytes());
    let (code, out) = ferry(dir.path(), &["validate", "--manifests", "m", "--online"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("release.yaml:4: file bad.tar.gz in"), "{out}");
    assert!(out.contains(&format!("hash to sha256:{}, not the manifest's", sha(b"tampered bytes"))), "{out}");
    assert!(out.contains("release.yaml:6: file absent.tar.gz in") && out.contains("is missing"), "{out}");
    assert!(!out.contains("release.yaml:2:"), "{out}");

    write(&manifest, format!("files:\n{}", entry("good.tar.gz", b"good bytes")).as_bytes());
    let (code, out) = ferry(dir.path(), &["validate", "--manifests", "m", "--online"]);
    assert_eq!(code, 0, "{out}");
}
