//! `ferry validate` through the binary, in temporary git repositories: every refusal names its
//! file and line, a clean addition passes and prints its edges.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::git::git;

const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

const REGISTRIES: &str = "\
registries:
- name: gcr.io/k8s-staging-p
  src: true
- name: registry.k8s.io
- name: us.gcr.io/prod
";

fn write(repo: &Path, path: &str, text: &str) {
    let path = repo.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A repository whose first commit holds `files` (path, text).
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    for (path, text) in files {
        write(dir.path(), path, text);
    }
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "base"]);
    dir
}

/// A thin directory at `deploy/` whose images.yaml is `images`.
fn thin_repo(images: &str) -> tempfile::TempDir {
    repo(&[("deploy/manifests/p/promoter-manifest.yaml", REGISTRIES), ("deploy/images/p/images.yaml", images)])
}

fn ferry(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).current_dir(repo).args(args).output().expect("run ferry")
}

fn validate(repo: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["validate", "--thin-manifest-dir", "deploy", "--base", "HEAD"];
    args.extend(extra);
    let out = ferry(repo, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

fn one_image(digests: &[(&str, &str)]) -> String {
    let mut yaml = "- name: app\n  dmap:\n".to_string();
    for (digest, tags) in digests {
        yaml += &format!("    \"{digest}\": [{tags}]\n");
    }
    yaml
}

const IMAGES: &str = "deploy/images/p/images.yaml";

#[test]
fn a_tag_move_is_refused_at_its_line() {
    let repo = thin_repo(&one_image(&[(A, "\"v1\"")]));
    write(repo.path(), IMAGES, &one_image(&[(A, ""), (B, "\"v1\"")]));
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("error: {IMAGES}:4: tag app:v1 moved from {A} to {B}")), "{out}");
}

#[test]
fn a_removed_digest_is_refused_at_its_image() {
    let repo = thin_repo(&one_image(&[(A, "\"v1\""), (B, "\"v2\"")]));
    write(repo.path(), IMAGES, &one_image(&[(A, "\"v1\"")]));
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("error: {IMAGES}:1: digest {B} removed from image app")), "{out}");
}

#[test]
fn a_removed_tag_and_image_are_refused() {
    let two = one_image(&[(A, "\"v1\", \"latest\"")]) + "- name: other\n  dmap:\n    \"" + C + "\": []\n";
    let repo = thin_repo(&two);
    write(repo.path(), IMAGES, &one_image(&[(A, "\"v1\"")]));
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("error: {IMAGES}:3: tag app:latest removed from {A}")), "{out}");
    assert!(out.contains(&format!("error: {IMAGES}: image other removed (it was at line 4)")), "{out}");
}

#[test]
fn allow_removals_permits_a_removal() {
    let repo = repo(&[
        ("deploy/manifests/p/promoter-manifest.yaml", REGISTRIES),
        ("deploy/images/p/images.yaml", &one_image(&[(A, "\"v1\""), (B, "\"v2\"")])),
        ("deploy/policy.yaml", "allow_removals: true\n"),
    ]);
    write(repo.path(), IMAGES, &one_image(&[(A, "\"v1\"")]));
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 0, "{out}");
    // A tag move is never a removal.
    write(repo.path(), IMAGES, &one_image(&[(A, ""), (B, "\"v1\"")]));
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn a_clean_addition_passes_and_prints_its_edges() {
    let repo = thin_repo(&one_image(&[(A, "\"v1\"")]));
    let added = one_image(&[(A, "\"v1\"")]) + "- name: tool\n  dmap:\n    \"" + C + "\": [\"v2\"]\n";
    write(repo.path(), IMAGES, &added);
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("add image tool ({IMAGES}:4)")), "{out}");
    assert!(out.contains(&format!("edge gcr.io/k8s-staging-p/tool@{C} -> registry.k8s.io/tool:v2")), "{out}");
    assert!(out.contains(&format!("edge gcr.io/k8s-staging-p/tool@{C} -> us.gcr.io/prod/tool:v2")), "{out}");
    assert_eq!(out.matches("edge ").count(), 2, "only the added image is promoted: {out}");

    let json = ferry(repo.path(), &["validate", "--thin-manifest-dir", "deploy", "--base", "HEAD", "--output", "json"]);
    assert!(json.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["edges"].as_array().unwrap().len(), 2);

    // Unchanged: nothing to promote.
    git(repo.path(), &["commit", "-q", "-am", "add tool"]);
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("edge "), "{out}");
}

#[test]
fn a_broken_file_is_refused_at_its_line() {
    let repo = thin_repo(&one_image(&[(A, "\"v1\"")]));
    write(repo.path(), IMAGES, &one_image(&[(A, "\"v1\""), ("sha256:xyz", "\"v2\"")]));
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("error: {IMAGES}:4: ")) && out.contains("sha256:xyz"), "{out}");

    write(repo.path(), IMAGES, "- name: app\n  dmap: [\n");
    write(repo.path(), "deploy/policy.yaml", "allow_removal: true\n");
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("error: {IMAGES}:")), "{out}");
    assert!(out.contains("error: deploy/policy.yaml:1: unknown field `allow_removal`"), "every file's errors: {out}");
}

#[test]
fn github_output_is_well_formed() {
    let repo = thin_repo(&one_image(&[(A, "\"v1\"")]));
    write(repo.path(), IMAGES, &one_image(&[(A, ""), (B, "\"v1\"")]));
    let (code, out) = validate(repo.path(), &["--output", "github"]);
    assert_eq!(code, 1, "{out}");
    let commands: Vec<&str> = out.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(commands.len(), 1, "{out}");
    let rest = commands[0].strip_prefix(&format!("::error file={IMAGES},line=4::")).expect(commands[0]);
    assert!(rest.starts_with("tag app:v1 moved") && !rest.contains(['\n', '\r']), "{rest}");

    // From inside DIR, paths are still relative to the repository root.
    let out = ferry(
        &repo.path().join("deploy"),
        &["validate", "--thin-manifest-dir", ".", "--base", "HEAD", "--output", "github"],
    );
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains(&format!("::error file={IMAGES},line=4::")), "{out}");
}

#[test]
fn allowed_sources_refuses_a_source_not_listed() {
    let repo = repo(&[
        ("deploy/manifests/p/promoter-manifest.yaml", REGISTRIES),
        ("deploy/images/p/images.yaml", &one_image(&[(A, "\"v1\"")])),
        ("deploy/policy.yaml", "allowed_sources: [gcr.io/k8s-staging-q]\n"),
    ]);
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: deploy/manifests/p/promoter-manifest.yaml:2: source gcr.io/k8s-staging-p is not one of"),
        "{out}"
    );
    write(repo.path(), "deploy/policy.yaml", "allowed_sources: [gcr.io/k8s-staging-]\n");
    git(repo.path(), &["commit", "-q", "-am", "allow"]);
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn files_a_changed_sha256_and_a_removed_file_are_refused() {
    let stores = "filestores:\n- base: gs://staging/p/\n  src: true\n- base: gs://prod/p/\n";
    let files = |sha: &str| {
        format!("files:\n- name: a.tar.gz\n  sha256: {}\n- name: b.tar.gz\n  sha256: {}\n", sha, "b".repeat(64))
    };
    let repo = repo(&[
        ("files/filestores/p/filepromoter-manifest.yaml", stores),
        ("files/manifests/p/files.yaml", &files(&"a".repeat(64))),
    ]);
    let run = |repo: &Path| {
        let out = ferry(repo, &["validate", "--manifests", "files", "--base", "HEAD"]);
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    write(repo.path(), "files/manifests/p/files.yaml", &files(&"c".repeat(64)));
    let (code, out) = run(repo.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: files/manifests/p/files.yaml:2: file a.tar.gz: sha256 changed"), "{out}");

    write(
        repo.path(),
        "files/manifests/p/files.yaml",
        &format!("files:\n- name: a.tar.gz\n  sha256: {}\n", "a".repeat(64)),
    );
    let (code, out) = run(repo.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: files/manifests/p/files.yaml: file b.tar.gz removed (it was at line 4)"), "{out}");

    let added = files(&"a".repeat(64)) + &format!("- name: c.tar.gz\n  sha256: {}\n", "c".repeat(64));
    write(repo.path(), "files/manifests/p/files.yaml", &added);
    let (code, out) = run(repo.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("edge gs://staging/p/c.tar.gz -> gs://prod/p/c.tar.gz"), "{out}");
}

#[test]
fn a_bad_revision_or_a_directory_outside_git_is_bad_input() {
    let repo = thin_repo(&one_image(&[(A, "\"v1\"")]));
    let out = ferry(repo.path(), &["validate", "--thin-manifest-dir", "deploy", "--base", "no-such-rev"]);
    let (code, out) = (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("bad revision \"no-such-rev\""), "{out}");

    let plain = tempfile::tempdir().unwrap();
    write(plain.path(), "deploy/manifests/p/promoter-manifest.yaml", REGISTRIES);
    write(plain.path(), IMAGES, &one_image(&[(A, "\"v1\"")]));
    let (code, out) = validate(plain.path(), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not in a git repository"), "{out}");
    // Without --base no git is needed.
    let out = ferry(plain.path(), &["validate", "--thin-manifest-dir", "deploy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_directory_new_since_the_base_is_all_added() {
    let repo = repo(&[("README.md", "x\n")]);
    write(repo.path(), "deploy/manifests/p/promoter-manifest.yaml", REGISTRIES);
    write(repo.path(), IMAGES, &one_image(&[(A, "\"v1\"")]));
    let (code, out) = validate(repo.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("edge ").count(), 2, "{out}");
    assert!(out.contains("ok: the change adds 1 images, 1 digests, 1 tags"), "{out}");
}
