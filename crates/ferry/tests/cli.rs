//! The `ferry` binary as a user runs it: exit statuses, messages, text and JSON output.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("run ferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plain manifest promoting `image` (tag v1) from `source` to `destinations`.
fn write_manifest(dir: &Path, source: &str, destinations: &[&str], digest: &str) -> String {
    let mut yaml = format!("registries:\n- name: {source}\n  src: true\n");
    for d in destinations {
        yaml += &format!("- name: {d}\n");
    }
    yaml += &format!("images:\n- name: app\n  dmap:\n    \"{digest}\": [\"v1\"]\n");
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn layout_to_layout_dry_run_promote_and_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let image = ImageSpec::two_arch("cli", 8192, 1024).build();
    let layout = ferry_registry::layout::LayoutRegistry::new(&staging);
    push(&layout, &repo("app"), &image, &["v1"]).await.unwrap();
    let prod = dir.path().join("prod");
    let manifest = write_manifest(
        dir.path(),
        &format!("oci:{}", staging.display()),
        &[&format!("oci:{}", prod.display())],
        image.digest().as_str(),
    );

    let dry = ferry(&["promote", "images", "--manifest", &manifest]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let out = text(&dry.stdout);
    assert!(out.contains("copy") && out.contains("/app:v1") && out.contains("dry run"), "{out}");
    assert!(!prod.exists());

    let run = ferry(&["promote", "images", "--manifest", &manifest, "--confirm", "--output", "json"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON on stdout");
    assert_eq!(report["summary"]["promoted"], 1);
    assert_eq!(report["edges"][0]["status"], "promoted");
    assert_eq!(report["edges"][0]["tag"], "v1");
    assert!(prod.join("app/index.json").exists());

    let again = ferry(&["promote", "images", "--manifest", &manifest, "--confirm", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["summary"]["skipped"], 1);
    assert_eq!(report["summary"]["bytes_read"], 0);
}

/// A destination listed twice (kpromo accepts it) is one destination: a warning names the line,
/// on stderr and in the JSON report, and the run goes on.
#[tokio::test]
async fn manifest_warnings_are_printed_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let image = ImageSpec::single("warn", 1024).build();
    push(&ferry_registry::layout::LayoutRegistry::new(&staging), &repo("app"), &image, &["v1"]).await.unwrap();
    let prod = format!("oci:{}", dir.path().join("prod").display());
    let manifest =
        write_manifest(dir.path(), &format!("oci:{}", staging.display()), &[&prod, &prod], image.digest().as_str());
    let warning = format!("warning: {manifest}:5: registry {prod} is listed twice (line 4); the entries are merged");

    let dry = ferry(&["promote", "images", "--manifest", &manifest]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert_eq!(text(&dry.stderr).lines().collect::<Vec<_>>(), [warning.as_str()]);
    assert_eq!(text(&dry.stdout).lines().filter(|l| l.contains("/app:v1")).count(), 1, "{}", text(&dry.stdout));

    let json = ferry(&["promote", "images", "--manifest", &manifest, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!(report["warnings"][0]["path"], manifest.as_str());
    assert_eq!(report["warnings"][0]["line"], 5);
    assert_eq!(report["edges"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_manifest_names_file_and_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\nimages:\n- name: app\n  dmap:\n    \"sha256:nothex\": [\"v1\"]\n").unwrap();
    let out = ferry(&["promote", "images", "--manifest", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("manifest.yaml:8"), "{err}");
    assert!(err.contains("sha256:nothex"), "{err}");
}

/// A thin directory of three projects, two broken (one in two ways): every error is printed with
/// its file and line, and nothing is promoted.
#[test]
fn every_manifest_error_is_listed_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let registries = "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\n";
    let good = format!("sha256:{}", "a".repeat(64));
    write("manifests/alpha/promoter-manifest.yaml", registries);
    write("images/alpha/images.yaml", &format!("- name: app\n  dmap:\n    \"{good}\": [v1]\n"));
    write("manifests/beta/promoter-manifest.yaml", registries);
    write("images/beta/images.yaml", "- name: app\n  dmap:\n    \"sha256:nothex\": [v1]\n- name: Bad\n");
    write("manifests/gamma/promoter-manifest.yaml", "registries:\n- name: gcr.io/a\n  src: true\n");
    write("images/gamma/images.yaml", "");

    let out = ferry(&["promote", "images", "--thin-manifest-dir", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr).replace(&format!("{}/", root.display()), "");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    let expected = [
        "error: images/beta/images.yaml:3: [0].dmap: invalid digest \"sha256:nothex\"",
        "error: images/beta/images.yaml:4: [1].name: invalid repository name \"Bad\"",
        "error: manifests/gamma/promoter-manifest.yaml:2: no destination registry",
    ];
    assert_eq!(errors.len(), expected.len(), "{stderr}");
    for (got, want) in errors.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}\n{stderr}");
    }
    assert!(text(&out.stdout).is_empty(), "nothing planned: {}", text(&out.stdout));
}

#[tokio::test]
async fn unreachable_registry_is_named_and_exits_1() {
    let src = RegistryServer::start().await.unwrap();
    let image = ImageSpec::single("unreachable", 1024).build();
    let staging = ferry_registry::open(
        &format!("{}/staging", src.host()).parse().unwrap(),
        &ferry_registry::remote::RemoteClient::new(Default::default()).unwrap(),
    );
    push(staging.as_ref(), &repo("app"), &image, &["v1"]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        write_manifest(dir.path(), &format!("{}/staging", src.host()), &["127.0.0.1:1/prod"], image.digest().as_str());
    let out = ferry(&["promote", "images", "--manifest", &manifest, "--confirm", "--retries", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("REFUSE") && stdout.contains("127.0.0.1:1"), "{stdout}");
    assert!(stdout.contains("unreachable"), "{stdout}");
}

#[test]
fn an_unreachable_source_is_tried_once_and_named_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let prod = dir.path().join("prod");
    let mut yaml = format!(
        "registries:\n- name: 127.0.0.1:{port}/staging\n  src: true\n- name: oci:{}\nimages:\n",
        prod.display()
    );
    for i in 0..50 {
        yaml += &format!("- name: app{i}\n  dmap:\n    \"sha256:{i:064x}\": [\"v1\"]\n");
    }
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(&manifest, yaml).unwrap();
    let out = ferry(&["promote", "images", "--manifest", manifest.to_str().unwrap(), "--retries", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let host_line = format!("registry 127.0.0.1:{port} unreachable: ");
    assert_eq!(stderr.matches(&host_line).count(), 1, "{stderr}");
    let first = stderr.split_once(&host_line).unwrap().1;
    let first = first.split_once("; its remaining requests fail at once").unwrap().0;
    assert!(first.contains("Connection refused"), "{first}");
    let stdout = text(&out.stdout);
    let refused: Vec<&str> = stdout.lines().filter(|l| l.starts_with("REFUSE")).collect();
    assert_eq!(refused.len(), 50, "{stdout}");
    for line in refused {
        assert!(line.ends_with(first), "{line} does not carry {first}");
    }
}

#[test]
fn help_explains_the_dry_run() {
    let out = ferry(&["promote", "images", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("--thin-manifest-dir") && help.contains("--confirm") && help.contains("dry run"), "{help}");
}

#[test]
fn serve_answers_the_registry_api_and_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nupstream:\n  registry: https://registry.example.org/images\n\
             mirrors:\n  - name: m1\n    blobs: https://mirror.example.org/blobs/{{digest}}\n    serves: [\"*\"]\n"
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let ready = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        client.get(format!("{base}/v2/")).send().is_ok()
    });
    let digest = format!("sha256:{}", "a".repeat(64));
    let blob = client.get(format!("{base}/v2/app/blobs/{digest}")).send();
    let post = client.post(format!("{base}/v2/")).send();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(ready, "ferry serve did not start");
    let blob = blob.unwrap();
    assert_eq!(blob.status(), 307);
    assert_eq!(
        blob.headers()["location"],
        format!("https://registry.example.org/v2/images/app/blobs/{digest}").as_str()
    );
    assert_eq!(post.unwrap().status(), 405);

    std::fs::write(&config, "listen: nowhere\n").unwrap();
    let out = ferry(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("ferry.yaml: listen"), "{}", text(&out.stderr));
}

#[test]
fn serve_help_shows_a_configuration_that_is_valid() {
    let help = text(&ferry(&["serve", "--help"]).stdout);
    let example: String = help
        .split("A small configuration:\n\n")
        .nth(1)
        .expect("an example in the help")
        .lines()
        .take_while(|line| !line.is_empty())
        .map(|line| format!("{}\n", line.strip_prefix("  ").expect("indented")))
        .collect();
    // Built into a snapshot as `ferry serve` would, with the real AWS ranges in place of the
    // example's path and an empty inventory for its bucket.
    let ranges = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/cloud-ranges/aws-ip-ranges.json");
    let example = example.replace("/etc/ferry/aws-ip-ranges.json", ranges);
    let config = ferry_serve::Config::from_yaml(&example, "the help's example").expect("the help's example parses");
    let inventory = ferry_serve::Inventory::parse("", "empty").unwrap();
    let fetched = [("s3://bucket/images/inventory.txt".to_string(), std::sync::Arc::new(inventory))].into();
    let snapshot = ferry_serve::Snapshot::from_config_with(config, Path::new("/"), &fetched, &Default::default());
    assert_eq!(snapshot.expect("the help's example is valid").mirrors.len(), 1);
    for endpoint in
        ["/healthz", "/readyz", "/metrics", "/debug/route", "FERRY_LOG", "tls:", "limits:", "shutdown_grace"]
    {
        assert!(help.contains(endpoint), "{endpoint} missing from:\n{help}");
    }
}
