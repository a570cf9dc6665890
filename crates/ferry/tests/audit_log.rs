//! `--audit-log` through the binary: each confirmed run of `promote images` (into a folder) and
//! `promote files` (into a real S3 server, `s3s-fs`) writes one new record that parses as the
//! documented schema (`ferry_record::RunRecord`, which refuses unknown fields); dry runs and runs
//! without the flag write none and say so; a record that cannot be written fails the run after
//! its work, with the report still printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_record::{RunRecord, SCHEMA};
use ferry_testkit::files::files_under;
use ferry_testkit::git::git;
use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;
use ferry_testkit::s3_server::S3Server;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn ferry(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).envs(env.iter().cloned()).output().expect("run ferry")
}

/// A record file's name: `YYYY/MM/DD/YYYYMMDDTHHMMSSZ-<command>-<16 hex>.json` under `root`.
fn assert_record_name(root: &Path, path: &Path, command: &str, record: &RunRecord) {
    let relative = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
    let expected = format!(
        "{}-{}-{}.json",
        record.started.format("%Y/%m/%d/%Y%m%dT%H%M%SZ"),
        command.replace(' ', "-"),
        record.run_id
    );
    assert_eq!(relative, expected);
    assert!(record.run_id.len() == 16 && record.run_id.bytes().all(|b| b.is_ascii_hexdigit()), "{}", record.run_id);
}

fn read_record(path: &Path) -> RunRecord {
    let bytes = std::fs::read(path).unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}: {}", path.display(), String::from_utf8_lossy(&bytes)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_confirmed_image_promotion_writes_one_record_into_a_folder() {
    let server = RegistryServer::start().await.unwrap();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let staging = client.registry(&server.host(), Some(repo("staging")));
    let image = ImageSpec::two_arch("recorded", 2048, 256).build();
    push(&staging, &repo("app"), &image, &["v1"]).await.unwrap();

    let repo_dir = tempfile::tempdir().unwrap();
    let root = repo_dir.path();
    git(root, &["init", "-q"]);
    let host = server.host();
    write(
        &root.join("manifests/app/promoter-manifest.yaml"),
        format!("registries:\n- name: {host}/staging\n  src: true\n- name: {host}/prod\n").as_bytes(),
    );
    write(
        &root.join("images/app/images.yaml"),
        format!("- name: app\n  dmap:\n    \"{}\": [v1]\n", image.digest()).as_bytes(),
    );
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "app v1"]);
    let head =
        String::from_utf8(Command::new("git").arg("-C").arg(root).args(["rev-parse", "HEAD"]).output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
    let runs = tempfile::tempdir().unwrap();
    let log = runs.path().join("runs");
    let dir = root.to_str().unwrap();
    let log_arg = log.to_str().unwrap();

    let dry = ferry(&["promote", "images", "--thin-manifest-dir", dir, "--audit-log", log_arg], &[]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(text(&dry).contains("audit log: none (dry run)"), "{}", text(&dry));
    assert!(files_under(&log).is_empty(), "a dry run wrote a record");

    let out = ferry(
        &["promote", "images", "--thin-manifest-dir", dir, "--confirm", "--output", "json", "--audit-log", log_arg],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written = files_under(&log);
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(
        report["audit_log"].as_str().unwrap(),
        format!("{}/{}", log_arg, written[0].strip_prefix(&log).unwrap().display())
    );
    let record = read_record(&written[0]);
    assert_record_name(&log, &written[0], "promote images", &record);
    assert_eq!(record.schema, SCHEMA);
    assert_eq!(record.command, "promote images");
    assert_eq!(record.exit_status, 0);
    assert!(record.arguments.contains(&"--confirm".to_string()), "{:?}", record.arguments);
    assert!(record.started <= record.finished);
    let manifests = record.manifests.as_ref().expect("the manifests are in git");
    assert_eq!((manifests.commit.as_str(), manifests.dirty), (head.as_str(), false));
    let edges = record.report["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["digest"], image.digest().to_string());
    assert_eq!((edges[0]["action"].as_str(), edges[0]["status"].as_str()), (Some("copy"), Some("promoted")));
    assert_eq!(record.report["summary"]["promoted"], 1);

    // Another run, another record; the first is untouched.
    let first = std::fs::read(&written[0]).unwrap();
    let again = ferry(&["promote", "images", "--thin-manifest-dir", dir, "--confirm", "--audit-log", log_arg], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let written = files_under(&log);
    assert_eq!(written.len(), 2, "{written:?}");
    assert!(written.iter().any(|p| std::fs::read(p).unwrap() == first));
    let second = written.iter().map(|p| read_record(p)).find(|r| r.run_id != record.run_id).unwrap();
    assert_eq!(second.report["summary"]["skipped"], 1);

    let unrecorded = ferry(&["promote", "images", "--thin-manifest-dir", dir, "--confirm"], &[]);
    assert!(text(&unrecorded).contains("audit log: none (no --audit-log)"), "{}", text(&unrecorded));

    // A record that cannot be written (the folder is a file): the run's work and report stand,
    // the failure is said, and the run fails.
    let blocked = runs.path().join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let failed = ferry(
        &["promote", "images", "--thin-manifest-dir", dir, "--confirm", "--audit-log", blocked.to_str().unwrap()],
        &[],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let said = text(&failed);
    assert!(
        said.contains("skipped")
            && said.contains("audit log: NOT WRITTEN")
            && said.contains("error: cannot write the run record"),
        "{said}"
    );
}

#[tokio::test]
async fn a_file_promotion_records_into_s3() {
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket("audit").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (staging, prod) = (dir.path().join("staging"), dir.path().join("prod"));
    write(
        &dir.path().join("m/filestores/kops/filepromoter-manifest.yaml"),
        format!("filestores:\n- base: {}\n  src: true\n- base: {}\n", staging.display(), prod.display()).as_bytes(),
    );
    write(&staging.join("1.30.0/kops"), b"kops binary");
    write(
        &dir.path().join("m/manifests/kops/release.yaml"),
        format!("files:\n- name: 1.30.0/kops\n  sha256: {}\n", ferry_oci::Digest::of(b"kops binary").hex()).as_bytes(),
    );
    let manifests = dir.path().join("m");
    let out = ferry(
        &[
            "promote",
            "files",
            "--manifests",
            manifests.to_str().unwrap(),
            "--confirm",
            "--audit-log",
            "s3://audit/ferry/runs/",
        ],
        &s3.env(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let bucket = s3.bucket_dir("audit");
    let written: Vec<PathBuf> = files_under(&bucket.join("ferry/runs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?} ({})", text(&out));
    let record = read_record(&written[0]);
    assert_record_name(&bucket.join("ferry/runs"), &written[0], "promote files", &record);
    assert!(
        text(&out).contains(&format!("audit log: s3://audit/ferry/runs/{}", record.object_name().as_str())),
        "{}",
        text(&out)
    );
    assert_eq!(record.command, "promote files");
    assert_eq!(record.manifests, None, "not in a git repository");
    let files = record.report["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["status"], "promoted");
}
