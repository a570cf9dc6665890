//! `ferry promote files` as a user runs it: a local staging folder promoted to a real S3 server
//! (`s3s-fs`) and a local folder; exit statuses, text and JSON output, memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ferry_testkit::files::files_under;
use ferry_testkit::s3_server::S3Server;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ferry_oci::Digest::of(bytes).hex().to_string()
}

/// A kpromo manifests dir: staging folder → `s3://prod/bin/` and a local folder.
struct Setup {
    dir: tempfile::TempDir,
    s3: S3Server,
}

impl Setup {
    async fn new() -> Setup {
        let s3 = S3Server::start().await.unwrap();
        s3.create_bucket("prod").unwrap();
        let setup = Setup { dir: tempfile::tempdir().unwrap(), s3 };
        let stores = format!(
            "filestores:\n- base: {}\n  src: true\n- base: s3://prod/bin/\n  service-account: promoter@example.iam.gserviceaccount.com\n- base: {}\n",
            setup.staging().display(),
            setup.local().display()
        );
        write(&setup.manifests().join("filestores/kops/filepromoter-manifest.yaml"), stores.as_bytes());
        setup
    }

    fn staging(&self) -> PathBuf {
        self.dir.path().join("staging")
    }

    fn local(&self) -> PathBuf {
        self.dir.path().join("prod")
    }

    fn manifests(&self) -> PathBuf {
        self.dir.path().join("m")
    }

    /// Stages `files` and lists them (with the sha256 given, or their own) in one files manifest.
    fn files(&self, files: &[(&str, &[u8], Option<&str>)]) -> PathBuf {
        let mut yaml = String::from("files:\n");
        for (name, bytes, sha) in files {
            if !name.contains("..") {
                write(&self.staging().join(name), bytes);
            }
            yaml += &format!("- name: {name}\n  sha256: {}\n", sha.map_or_else(|| sha256_hex(bytes), str::to_string));
        }
        let path = self.manifests().join("manifests/kops/release.yaml");
        write(&path, yaml.as_bytes());
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command.args(["promote", "files", "--manifests", self.manifests().to_str().unwrap()]).args(args);
        command.envs(self.s3.env());
        command
    }

    fn ferry(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ferry")
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[tokio::test]
async fn dry_run_promote_and_rerun_through_the_binary() {
    let s = Setup::new().await;
    let kops = vec![7u8; 300_000];
    s.files(&[("1.30.0/linux/amd64/kops", &kops, None), ("1.30.0/kops.sha256", b"abc\n", None)]);

    let dry = s.ferry(&[]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    let out = text(&dry.stdout);
    assert!(out.contains("copy") && out.contains("s3://prod/bin/1.30.0/linux/amd64/kops"), "{out}");
    assert!(out.contains("dry run: 4 to copy"), "{out}");
    assert!(!s.local().exists() && files_under(&s.s3.bucket_dir("prod")).is_empty(), "the dry run wrote");

    let run = s.ferry(&["--confirm", "--output", "json", "--inventory"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let report = json(&run);
    assert_eq!(report["summary"]["promoted"], 4, "{report:#}");
    assert_eq!(report["summary"]["files_read"], 2);
    assert_eq!(report["files"][0]["status"], "promoted");
    assert_eq!(
        report["files"][0]["origin"],
        format!("{}:2", s.manifests().join("manifests/kops/release.yaml").display())
    );
    assert_eq!(report["inventories"][0]["status"], "written");
    assert_eq!(std::fs::read(s.local().join("1.30.0/linux/amd64/kops")).unwrap(), kops);
    assert_eq!(std::fs::read(s.s3.bucket_dir("prod").join("bin/1.30.0/linux/amd64/kops")).unwrap(), kops);
    assert_eq!(
        std::fs::read_to_string(s.local().join("inventory.txt")).unwrap(),
        "/1.30.0/kops.sha256 4\n/1.30.0/linux/amd64/kops 300000\n"
    );

    let again = s.ferry(&["--confirm", "--inventory"]);
    assert_eq!(again.status.code(), Some(0));
    let out = text(&again.stdout);
    assert!(out.contains("promoted 0, skipped 4, refused 0, failed 0; read 0 B in 0 files, wrote 0 B"), "{out}");
    assert!(out.contains("inventory unchanged"), "{out}");
}

#[tokio::test]
async fn refusals_exit_1_and_every_good_file_still_lands() {
    let s = Setup::new().await;
    let wrong = sha256_hex(b"reviewed bytes");
    s.files(&[("good", b"good", None), ("tampered", b"tampered", Some(&wrong))]);
    write(&s.local().join("good"), b"not good");

    let out = s.ferry(&["--confirm"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "REFUSE    {}/good -> {}/good: the destination holds other bytes",
            s.staging().display(),
            s.local().display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED") && stdout.contains("written nowhere"), "{stdout}");
    assert_eq!(std::fs::read(s.local().join("good")).unwrap(), b"not good");
    assert_eq!(std::fs::read(s.s3.bucket_dir("prod").join("bin/good")).unwrap(), b"good");
    assert!(!s.local().join("tampered").exists() && !s.s3.bucket_dir("prod").join("bin/tampered").exists());
}

/// Directories under `dir`, recursively and sorted (empty when it does not exist).
fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.push(path.clone());
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn files_that_fail_leave_no_new_directories_in_a_folder() {
    let s = Setup::new().await;
    let wrong = sha256_hex(b"reviewed bytes");
    s.files(&[
        ("1.30.0/good", b"good", None),
        ("1.30.0/linux/amd64/kops", b"tampered", Some(&wrong)),
        ("1.30.0/darwin/arm64/kops", b"tampered", Some(&wrong)),
        ("new/deep/tree/kops", b"tampered", Some(&wrong)),
    ]);
    std::fs::create_dir_all(s.local().join("1.30.0")).unwrap();
    let before = dirs_under(&s.local());

    let out = s.ferry(&["--confirm"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("FAILED").count(), 6, "{stdout}");
    assert_eq!(std::fs::read(s.local().join("1.30.0/good")).unwrap(), b"good");
    assert_eq!(dirs_under(&s.local()), before, "the failed writes left directories");
}

#[tokio::test]
async fn a_climbing_name_is_refused_before_anything_is_copied() {
    let s = Setup::new().await;
    let files = s.files(&[("fine", b"fine", None), ("../../outside", b"x", None)]);
    let out = s.ferry(&["--confirm"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:4: ", files.display())) && err.contains("../../outside"), "{err}");
    assert!(!s.local().exists(), "something was copied");
    assert!(files_under(&s.s3.bucket_dir("prod")).is_empty(), "something was copied");
}

/// A loopback listener that counts connections and answers every request `404 Not Found`: a
/// metadata endpoint that is not one, or anything else a run must not reach.
struct Counting {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Counting {
    fn start() -> Counting {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Counting { port, connections }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A `gs://`, `s3://` or `az://` destination with no credentials anywhere (an empty environment
/// and home, every metadata endpoint on a loopback listener that is not one) stops the run at
/// once, exit 2, naming the filestores line and the variables that provide credentials, after
/// one bounded look at the metadata endpoint and without a request anywhere else (every other
/// request would reach the second listener, as endpoint or proxy).
#[test]
fn cloud_stores_without_credentials_stop_the_run_before_any_request() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "gs://k8s-artifacts-prod/binaries/kops/",
            &[
                "GOOGLE_APPLICATION_CREDENTIALS",
                "application_default_credentials.json",
                "gcloud auth application-default login",
            ],
        ),
        ("s3://prod/bin/", &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "credentials"]),
        (
            "az://artifacts/binaries/",
            &["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_KEY"],
        ),
    ];
    for (base, variables) in cases {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let stores = dir.path().join("m/filestores/kops/filepromoter-manifest.yaml");
        write(&stores, format!("filestores:\n- base: {}\n  src: true\n- base: {base}\n", staging.display()).as_bytes());
        let mut files = String::from("files:\n");
        for name in ["1.16.0/linux/amd64/kops", "1.16.0/darwin/arm64/kops", "1.16.0/kops.sha256"] {
            write(&staging.join(name), name.as_bytes());
            files += &format!("- name: {name}\n  sha256: {}\n", sha256_hex(name.as_bytes()));
        }
        write(&dir.path().join("m/manifests/kops/release.yaml"), files.as_bytes());
        let (metadata, elsewhere) = (Counting::start(), Counting::start());
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["promote", "files", "--confirm", "--manifests", dir.path().join("m").to_str().unwrap()])
            .env_clear()
            .env("HOME", dir.path())
            // The ecosystem's names for the metadata endpoints, and object_store's own.
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.url())
            .env("AWS_METADATA_ENDPOINT", metadata.url())
            .env("GCE_METADATA_HOST", metadata.host())
            .env("GCE_METADATA_IP", metadata.host())
            .env("AZURE_MSI_ENDPOINT", metadata.url())
            .env("IDENTITY_HEADER", "never-printed-secret")
            .env("AWS_ENDPOINT_URL", elsewhere.url())
            .env("AWS_ALLOW_HTTP", "true")
            .env("HTTP_PROXY", elsewhere.url())
            .env("HTTPS_PROXY", elsewhere.url())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        // A bound on waiting, not a timing assertion: before the fix a run could take minutes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{base}: ferry did not stop");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{base}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{base}: planned anyway: {stdout}");
        assert!(stderr.contains(&format!("{}:4: ", stores.display())), "{base}: {stderr}");
        for variable in variables {
            assert!(stderr.contains(variable), "{base}: {variable} is not named: {stderr}");
        }
        assert!(!stderr.contains("never-printed-secret"), "{base}: {stderr}");
        assert_eq!(metadata.connections(), 1, "{base}: one bounded look at the metadata endpoint: {stderr}");
        assert_eq!(elsewhere.connections(), 0, "{base}: a request was sent: {stderr}");
    }
}

/// Runs `ferry promote files` with `args` and samples the kernel's high-water mark of its
/// resident memory (`VmHWM`) until it exits: its peak in MiB. A bound on memory, not on time.
async fn peak_memory_mib(s: &Setup, args: &[&str]) -> f64 {
    let mut child = s.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        // Once the process has exited its memory is gone and VmHWM is no longer listed.
        let status = std::fs::read_to_string(&status_file).unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(status.success(), "ferry failed: {status}");
    assert!(peak_kib > 0, "VmHWM was never read");
    peak_kib as f64 / 1024.0
}

/// Peak resident memory of a 100 MB promotion to S3 and a folder.
#[tokio::test]
async fn a_100_mb_file_goes_through_with_bounded_memory() {
    let s = Setup::new().await;
    let digest = {
        let big: Vec<u8> = (0..100_000_000u32).map(|i| (i ^ (i >> 11)) as u8).collect();
        s.files(&[("big.tar.gz", &big, None)]);
        ferry_oci::Digest::of(&big)
    };
    let peak_mib = peak_memory_mib(&s, &["--confirm"]).await;
    eprintln!("peak RSS of ferry promoting 100 MB: {peak_mib:.1} MiB");
    assert!(peak_mib < 64.0, "peak RSS {peak_mib:.1} MiB: memory is not bounded");
    assert_eq!(ferry_oci::Digest::of(&std::fs::read(s.local().join("big.tar.gz")).unwrap()), digest);
    assert_eq!(ferry_oci::Digest::of(&std::fs::read(s.s3.bucket_dir("prod").join("bin/big.tar.gz")).unwrap()), digest);
}

/// `--memory` bounds what uploads to S3 hold whatever `--concurrency`: eight 16 MiB files at
/// `--concurrency 8` would hold 128 MiB at once; with `--memory 32` two go at a time.
#[tokio::test]
async fn memory_for_cloud_uploads_is_bounded_whatever_the_concurrency() {
    let s = Setup::new().await;
    let contents: Vec<Vec<u8>> =
        (0..8u32).map(|f| (0..16u32 << 20).map(|i| (i ^ (i >> 9) ^ f) as u8).collect()).collect();
    let names: Vec<String> = (0..8).map(|f| format!("part-{f}.bin")).collect();
    let files: Vec<(&str, &[u8], Option<&str>)> =
        names.iter().zip(&contents).map(|(n, c)| (n.as_str(), c.as_slice(), None)).collect();
    s.files(&files);
    let peak_mib = peak_memory_mib(&s, &["--confirm", "--concurrency", "8", "--memory", "32"]).await;
    eprintln!("peak RSS of ferry promoting 8 x 16 MiB with --memory 32: {peak_mib:.1} MiB");
    assert!(peak_mib < 64.0, "peak RSS {peak_mib:.1} MiB: --memory 32 is not honoured");
    for (name, content) in names.iter().zip(&contents) {
        assert_eq!(&std::fs::read(s.s3.bucket_dir("prod").join("bin").join(name)).unwrap(), content, "{name}");
    }
}

#[test]
fn help_explains_the_dry_run_and_the_formats() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["promote", "files", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    for needle in
        ["--manifests", "--filestores", "--files", "--confirm", "--allow-overwrite", "--inventory", "dry run", "sha256"]
    {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}
