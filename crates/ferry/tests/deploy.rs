//! Deployment (`deploy/`, docs/deploy.md), as an operator goes through it.
//!
//! 1. The container image: `deploy/image.sh` builds it (podman, `FROM scratch`) into an OCI layout
//!    and promotes it with `ferry promote images` into a real CNCF registry; a second run of the
//!    script builds the same digest and promotes nothing. The image is then pulled back from that
//!    registry and **run**, and a client pulls an image through the Ferry inside it.
//!
//!    How it is run: `podman run` cannot start a container in this sandbox (crun's
//!    `setrlimit(RLIMIT_NOFILE)` is refused: "Operation not permitted"), so the test runs the
//!    image's entrypoint from its unpacked root filesystem instead: `umoci unpack` turns the
//!    pulled image into an OCI runtime bundle (`rootfs/` and `config.json`), and the process that
//!    `config.json` names (its arguments, user and environment: the image's entrypoint, default
//!    command and `USER`) runs as `chroot --userspec=UID:GID rootfs ARGS...`. That is the same
//!    binary with only the libraries inside the image (one missing there fails here) as the same
//!    non-root user, without a container's namespaces, cgroups or seccomp; it shares the host's
//!    network, so it reaches the test's registries on loopback. `chroot` needs root: tests run as
//!    root here and in CI; elsewhere that part is skipped, saying so.
//!
//! 2. The Kubernetes manifests (`deploy/kubernetes/`) are validated against the Kubernetes API's
//!    JSON schemas (`kubernetes-validate --strict`, oldest and newest version we support), a
//!    broken copy must fail that validation, and the pieces must agree with each other and with
//!    Ferry (the ConfigMap's `ferry.yaml` loads, probes and ports match, the grace covers the
//!    drain). No cluster runs here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_oci::Digest;
use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;
use ferry_testkit::skopeo::{assert_pulled_byte_exact, pull_all, skopeo};
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Kubernetes versions the manifests are checked against: the first whose kubelet runs the
/// preStop `sleep` action by default, and the newest schema the pinned validator bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// Runs `deploy/image.sh ARGS` with the ferry binary this test was built with.
fn image_sh(args: &[&str]) -> Output {
    let script = repo_root().join("deploy/image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--ferry", env!("CARGO_BIN_EXE_ferry")])
        .args(args)
        .output()
        .expect("run deploy/image.sh");
    assert!(out.status.success(), "deploy/image.sh {args:?}:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    out
}

/// The `image NAME:TAG DIGEST ...` line deploy/image.sh prints.
fn built_digest(stdout: &str) -> Digest {
    let line = stdout.lines().find(|l| l.starts_with("image ")).unwrap_or_else(|| panic!("no image line:\n{stdout}"));
    let mut words = line.split_whitespace().skip(1);
    assert_eq!(words.next(), Some(format!("ferry:{VERSION}").as_str()), "{line}");
    words.next().unwrap().parse().unwrap()
}

/// A process killed (and reaped) on drop, however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn status_of(url: &str) -> Option<u16> {
    reqwest::get(url).await.ok().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_is_built_promoted_with_ferry_and_serves_a_pull() {
    assert!(have("podman") || have("buildah"), "neither podman nor buildah: scripts/test installs podman");
    for tool in ["umoci", "skopeo", "strip", "docker-registry"] {
        assert!(have(tool), "{tool} is not installed: scripts/test installs it");
    }
    let started = Instant::now();
    let registry = RegistryServer::start().await.unwrap();
    let upstream = RegistryServer::start().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("image");
    let out_arg = out.display().to_string();
    let prod = format!("{}/prod", registry.host());

    // Build and promote, as the docs say; then again: same digest, nothing to copy.
    let first = image_sh(&["--out", &out_arg, "--to", &prod, "--confirm"]);
    let stdout = text(&first.stdout);
    let digest = built_digest(&stdout);
    assert!(stdout.contains(" build localhost/ferry:") && stdout.contains("FROM scratch"), "{stdout}");
    assert!(stdout.contains(&format!("copy   oci:{out_arg}/ferry@{digest} -> {prod}/ferry:{VERSION}")), "{stdout}");
    assert!(stdout.contains("promoted 1, skipped 0, refused 0, failed 0"), "{stdout}");
    let again = text(&image_sh(&["--out", &out_arg, "--to", &prod, "--confirm"]).stdout);
    assert_eq!(built_digest(&again), digest, "the build is not reproducible:\n{again}");
    assert!(again.contains("promoted 0, skipped 1, refused 0, failed 0"), "{again}");
    eprintln!("built and promoted twice in {:.1}s", started.elapsed().as_secs_f64());

    // What the registry holds: that digest, with the image's configuration.
    let reference = format!("docker://{prod}/ferry:{VERSION}");
    let manifest = skopeo(&["inspect", "--raw", "--tls-verify=false", &reference]);
    assert_eq!(Digest::of(&manifest), digest);
    let config: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--config", "--tls-verify=false", &reference])).unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/ferry"]));
    assert_eq!(c["Cmd"], serde_json::json!(["serve", "--config", "/etc/ferry/ferry.yaml"]));
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], VERSION);

    if !is_root() {
        eprintln!("SKIPPED running the image: chroot needs root (tests run as root in CI)");
        return;
    }
    // Pull it back as a node would, and unpack it into a runtime bundle.
    let pulled = work.path().join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    let layout = format!("oci:{}/ferry:{VERSION}", pulled.display());
    skopeo(&["copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", &reference, &layout]);
    let bundle = work.path().join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}/ferry:{VERSION}", pulled.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(unpack.status.success(), "umoci unpack: {}", text(&unpack.stderr));
    let runtime: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let process = &runtime["process"];
    let args: Vec<&str> = process["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ["/ferry", "serve", "--config", "/etc/ferry/ferry.yaml"]);
    let (uid, gid) = (process["user"]["uid"].as_u64().unwrap(), process["user"]["gid"].as_u64().unwrap());
    assert_eq!((uid, gid), (65532, 65532));
    let rootfs = bundle.join("rootfs");
    let mut entries: Vec<String> =
        std::fs::read_dir(&rootfs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    assert_eq!(entries, ["etc", "ferry", "lib", "lib64"], "nothing but the binary, its libraries and /etc");

    // The configuration a ConfigMap would mount: the upstream registry holds a test image.
    let image = ImageSpec::two_arch("deployed", 64 * 1024, 8 * 1024).build();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    push(&client.registry(&upstream.host(), Some(repo("staging"))), &repo("app"), &image, &["v1"]).await.unwrap();
    let port = free_port();
    std::fs::create_dir_all(rootfs.join("etc/ferry")).unwrap();
    std::fs::write(
        rootfs.join("etc/ferry/ferry.yaml"),
        format!("listen: 127.0.0.1:{port}\nupstream:\n  registry: http://{}/staging\n", upstream.host()),
    )
    .unwrap();

    // Run the image's process as its user, from its root filesystem.
    let log_path = work.path().join("ferry.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = Command::new("chroot");
    command.arg(format!("--userspec={uid}:{gid}")).arg(&rootfs).args(&args).env_clear();
    for pair in process["env"].as_array().unwrap() {
        let (k, v) = pair.as_str().unwrap().split_once('=').unwrap();
        command.env(k, v);
    }
    let mut ferry = Running(
        command.current_dir("/").stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_of(&format!("{base}/healthz")).await != Some(200) {
        assert!(ferry.0.try_wait().unwrap().is_none(), "ferry exited: {}", std::fs::read_to_string(&log_path).unwrap());
        assert!(Instant::now() < deadline, "no /healthz: {}", std::fs::read_to_string(&log_path).unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_of(&format!("{base}/readyz")).await, Some(200), "/readyz while serving");
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", ferry.0.id())).unwrap();
    let uid_line = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid_line.split_whitespace().nth(2), Some("65532"), "runs as the image's user: {uid_line}");

    // A user pulls through it: every byte as pushed.
    let target = work.path().join("pulled-app");
    let (source, into) = (format!("docker://127.0.0.1:{port}/app:v1"), target.clone());
    tokio::task::spawn_blocking(move || pull_all(&source, &into)).await.unwrap();
    assert_pulled_byte_exact(&target, &image);
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferry_serve_requests_total{outcome=\"upstream\"}") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // A rollout's SIGTERM: it stops at once (nothing in flight), cleanly, with its access log written.
    let pid = ferry.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = ferry.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("\"target\":\"ferry_serve::access\"") && log.contains("/v2/app/manifests/v1"), "{log}");
    eprintln!("deploy test: {:.1}s", started.elapsed().as_secs_f64());
}

// ---- the Kubernetes manifests ----

fn kubernetes_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

/// The resource files in `dir`: every `*.yaml` but kustomization.yaml.
fn resource_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// `kubernetes-validate --strict` (unknown fields are errors too) against `version`.
fn validate(files: &[PathBuf], version: &str) -> Output {
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("run python3")
}

/// The YAML documents of `path`, as JSON (PyYAML, which kubernetes-validate brings).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}: {}", path.display(), text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn document(name: &str) -> Value {
    let mut docs = yaml_documents(&kubernetes_dir().join(name));
    assert_eq!(docs.len(), 1, "{name}: one resource");
    docs.remove(0)
}

#[test]
fn the_kubernetes_manifests_are_valid_and_agree_with_ferry() {
    let have_validator =
        Command::new("python3").args(["-c", "import kubernetes_validate"]).output().is_ok_and(|o| o.status.success());
    assert!(
        have_validator,
        "kubernetes-validate is not installed: scripts/test installs it (pip install kubernetes-validate)"
    );
    let files = resource_files(&kubernetes_dir());
    // And the optional ones (the Ingress of docs/deploy.md), not in kustomization.yaml.
    let optional = resource_files(&kubernetes_dir().join("optional"));
    assert!(!optional.is_empty());
    for version in KUBERNETES_VERSIONS {
        let out = validate(&[files.as_slice(), optional.as_slice()].concat(), version);
        assert!(out.status.success(), "Kubernetes {version}:\n{}{}", text(&out.stdout), text(&out.stderr));
    }

    // The validation does fail: a wrong type, and (strict) a misspelt field, each in a copy.
    let broken = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(kubernetes_dir().join("deployment.yaml")).unwrap();
    for (what, from, to, expected) in [
        ("a string replica count", "replicas: 3", "replicas: three", "'three' is not of type 'integer'"),
        ("a misspelt probe", "readinessProbe:", "readinesProbe:", "'readinesProbe' was unexpected"),
    ] {
        assert!(deployment.contains(from), "deployment.yaml no longer has {from:?}");
        let path = broken.path().join("deployment.yaml");
        std::fs::write(&path, deployment.replacen(from, to, 1)).unwrap();
        let out = validate(&[path], KUBERNETES_VERSIONS[1]);
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{what} passed the validation: {said}");
        assert!(said.contains(expected), "{what}: {said}");
    }

    // kustomization.yaml lists exactly the resource files.
    let kustomization = document("kustomization.yaml");
    let mut listed: Vec<&str> =
        kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    listed.sort();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(listed, names);

    // The ConfigMap's ferry.yaml is a configuration Ferry loads (its remote inventories stood in
    // for by empty ones: nothing is fetched).
    let configmap = document("configmap.yaml");
    let ferry_yaml = configmap["data"]["ferry.yaml"].as_str().unwrap();
    let config = ferry_serve::Config::from_yaml(ferry_yaml, "configmap.yaml ferry.yaml").unwrap();
    let mut fetched = std::collections::HashMap::new();
    for source in config.mirrors.iter().filter_map(|m| m.inventory.clone()) {
        assert!(ferry_serve::remote_inventory::is_remote(&source), "{source}: the pods have no other volume");
        fetched.insert(source.clone(), std::sync::Arc::new(ferry_serve::Inventory::parse("", &source).unwrap()));
    }
    // The range files too are fetched by URL; the machine's copies of the real files stand in.
    let ranges = repo_root().join("../shared/data/cloud-ranges");
    let mut files = std::collections::HashMap::new();
    for (sources, local) in [(&config.locations.aws, "aws-ip-ranges.json"), (&config.locations.gcp, "gcp-cloud.json")] {
        for source in sources {
            let source = source.to_string_lossy().into_owned();
            assert!(ferry_serve::remote_inventory::is_remote(&source), "{source}: the pods have no other volume");
            files.insert(source, std::sync::Arc::new(std::fs::read(ranges.join(local)).unwrap()));
        }
    }
    let shutdown_grace = config.shutdown_grace;
    let listen_port = config.listen.port();
    let snapshot = ferry_serve::Snapshot::from_config_with(config, Path::new("/etc/ferry"), &fetched, &files).unwrap();
    assert_eq!(snapshot.locator.locate("3.128.0.5".parse().unwrap()), Some("aws:us-east-2"));

    // The Deployment runs that file, as the image's user, with the probes and grace Ferry needs.
    let deployment = document("deployment.yaml");
    let pod = &deployment["spec"]["template"];
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["args"], serde_json::json!(["serve", "--config", "/etc/ferry/ferry.yaml"]));
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/etc/ferry");
    assert_eq!(spec["volumes"][0]["configMap"]["name"], configmap["metadata"]["name"]);
    assert_eq!(container["ports"][0]["containerPort"], listen_port);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(spec["securityContext"]["runAsUser"], 65532, "the image's USER");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_f64().unwrap();
    let grace = spec["terminationGracePeriodSeconds"].as_f64().unwrap();
    assert!(
        grace > pre_stop + shutdown_grace,
        "{grace} s must exceed preStop {pre_stop} s + shutdown_grace {shutdown_grace} s"
    );

    // The Service, the autoscaler and the disruption budget all point at those pods.
    let labels = &pod["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let service = document("service.yaml");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], container["ports"][0]["name"]);
    let ingress = document("optional/ingress.yaml");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], service["metadata"]["name"]);
    assert_eq!(backend["port"]["name"], service["spec"]["ports"][0]["name"]);
    assert_eq!(&document("pdb.yaml")["spec"]["selector"]["matchLabels"], labels);
    let hpa = document("hpa.yaml");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    assert_eq!(hpa["spec"]["minReplicas"], deployment["spec"]["replicas"]);
}
