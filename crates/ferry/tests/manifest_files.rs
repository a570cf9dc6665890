//! `ferry manifest files` as a user runs it: list a staging store (a local folder, a real S3
//! server), write the files manifest, and promote it with `ferry promote files`: every file
//! lands byte-exact, and a second promotion has nothing to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_testkit::s3_server::S3Server;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn ferry(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).envs(env.iter().cloned()).output().expect("run ferry")
}

/// Nested files of several sizes (one bigger than a read chunk), as a release leaves them.
fn release_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("1.30.0/linux/amd64/kops", (0..700_000u32).map(|i| (i % 251) as u8).collect()),
        ("1.30.0/linux/amd64/kops.sha256", b"2d4f26491e0e\n".to_vec()),
        ("1.30.0/linux/arm64/kops", vec![9u8; 4096]),
        ("1.30.0/README.md", b"# kops\n".to_vec()),
        ("1.30.0/empty", Vec::new()),
        ("1.30.0-rc.1/linux/amd64/kops", b"rc".to_vec()),
        ("yes", b"a name YAML would read as a boolean\n".to_vec()),
    ]
}

/// Runs `ferry manifest files` and checks it succeeded; its manifest.
fn manifest_files(args: &[&str], env: &[(String, String)]) -> String {
    let out = ferry(&[&["manifest", "files"], args].concat(), env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Puts `manifest` in a kpromo manifests directory promoting `source` to an empty folder,
/// promotes it, checks every file of `expected` landed byte-exact, and that a second run has
/// nothing to do.
fn round_trip(dir: &Path, source: &str, manifest: &str, expected: &[(&str, Vec<u8>)], env: &[(String, String)]) {
    let m = dir.join("m");
    let prod = dir.join("prod");
    let stores = format!("filestores:\n- base: {source}\n  src: true\n- base: {}\n", prod.display());
    write(&m.join("filestores/kops/filepromoter-manifest.yaml"), stores.as_bytes());
    write(&m.join("manifests/kops/files.yaml"), manifest.as_bytes());
    let m = m.to_str().unwrap();

    let run = ferry(&["promote", "files", "--manifests", m, "--confirm"], env);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let out = text(&run.stdout);
    assert!(out.contains(&format!("promoted {}, skipped 0, refused 0, failed 0", expected.len())), "{out}");
    for (name, bytes) in expected {
        assert_eq!(&std::fs::read(prod.join(name)).unwrap(), bytes, "{name}");
    }

    let again = ferry(&["promote", "files", "--manifests", m, "--confirm"], env);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let out = text(&again.stdout);
    assert!(out.contains(&format!("promoted 0, skipped {}, refused 0, failed 0", expected.len())), "{out}");
}

fn staging(dir: &Path) -> PathBuf {
    let staging = dir.join("staging");
    for (name, bytes) in release_files() {
        write(&staging.join(name), &bytes);
    }
    staging
}

#[test]
fn a_local_staging_folder_round_trips_through_promote_files() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging(dir.path());
    let source = staging.to_str().unwrap();

    let manifest = manifest_files(&["--from", source], &[]);
    let mut expected = release_files();
    expected.sort_by(|a, b| a.0.cmp(b.0));
    let mut want = String::from("files:\n");
    for (name, bytes) in &expected {
        let name = if *name == "yes" { "'yes'".to_string() } else { name.to_string() };
        want += &format!("- name: {name}\n  sha256: {}\n", ferry_oci::Digest::of(bytes).hex());
    }
    assert_eq!(manifest, want, "sorted, every sha256 that of the file's bytes");
    assert_eq!(manifest_files(&["--from", source], &[]), manifest, "stable");

    round_trip(dir.path(), source, &manifest, &expected, &[]);
}

#[test]
fn a_prefix_lists_whole_segments_and_names_stay_relative_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging(dir.path());
    let source = staging.to_str().unwrap();

    let manifest = manifest_files(&["--from", source, "--prefix", "1.30.0/linux"], &[]);
    let names: Vec<&str> = manifest.lines().filter_map(|l| l.strip_prefix("- name: ")).collect();
    assert_eq!(names, ["1.30.0/linux/amd64/kops", "1.30.0/linux/amd64/kops.sha256", "1.30.0/linux/arm64/kops"]);

    let release = manifest_files(&["--from", source, "--prefix", "1.30.0"], &[]);
    assert!(!release.contains("rc.1"), "1.30.0 does not hold 1.30.0-rc.1: {release}");
    let expected: Vec<_> = release_files().into_iter().filter(|(name, _)| name.starts_with("1.30.0/")).collect();
    round_trip(dir.path(), source, &release, &expected, &[]);
}

#[tokio::test]
async fn an_s3_staging_bucket_round_trips_through_promote_files() {
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket("staging").unwrap();
    for (name, bytes) in release_files() {
        write(&s3.bucket_dir("staging").join("releases").join(name), &bytes);
    }
    write(&s3.bucket_dir("staging").join("elsewhere/other"), b"not under the base");
    let dir = tempfile::tempdir().unwrap();
    let env = s3.env();

    let manifest = manifest_files(&["--from", "s3://staging/releases/"], &env);
    assert!(!manifest.contains("other"), "{manifest}");
    let local = manifest_files(&["--from", staging(dir.path()).to_str().unwrap()], &[]);
    assert_eq!(manifest, local, "the same files give the same manifest");

    round_trip(dir.path(), "s3://staging/releases/", &manifest, &release_files(), &env);
}

#[test]
fn names_promote_files_would_refuse_refuse_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging(dir.path());
    write(&staging.join("1.30.0/windows\\kops.exe"), b"x");
    write(&staging.join("1.30.0/a#b"), b"x");
    let source = staging.to_str().unwrap();

    let out = ferry(&["manifest", "files", "--from", source], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "no manifest is written");
    let err = text(&out.stderr);
    assert!(err.contains("2 name(s)"), "{err}");
    assert!(err.contains(r#""1.30.0/windows\\kops.exe": contains a backslash"#), "{err}");
    assert!(err.contains(r#""1.30.0/a#b": has a character"#), "{err}");

    // Outside the prefix they do not matter.
    manifest_files(&["--from", source, "--prefix", "1.30.0/linux"], &[]);

    let out = ferry(&["manifest", "files", "--from", source, "--prefix", "2.0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no files in") && text(&out.stderr).contains("\"2.0\""),
        "{}",
        text(&out.stderr)
    );
}
