//! kpromo file-promotion manifests written to disk: the layouts kpromo reads, and each error with
//! the file and line it must name.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_manifest::{load_files, load_files_dir, ManifestError, ManifestErrors};

fn write(path: &Path, text: &str) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn hex(c: char) -> String {
    c.to_string().repeat(64)
}

const FILESTORES: &str = "\
# staging, then production
filestores:
- base: gs://k8s-staging-kops/kops/releases/
  src: true
- base: gs://k8s-artifacts-prod/binaries/kops/
  service-account: k8s-infra-gcr-promoter@k8s-artifacts-prod.iam.gserviceaccount.com
- base: s3://mirror/kops
";

/// The only error of `errors`.
#[track_caller]
fn only(errors: ManifestErrors) -> ManifestError {
    let mut all = errors.into_iter();
    let first = all.next().expect("at least one error");
    let rest: Vec<_> = all.map(|e| e.to_string()).collect();
    assert!(rest.is_empty(), "one error expected, also got {rest:?} after {first}");
    first
}

#[track_caller]
fn assert_at(err: &ManifestError, path: &Path, line: usize, needle: &str) {
    let text = err.to_string();
    let prefix = format!("{}:{line}: ", path.display());
    assert!(text.starts_with(&prefix), "{text:?} should start with {prefix:?}");
    assert!(text.contains(needle), "{text:?} should mention {needle:?}");
}

/// A manifests dir with project `kops` holding these filestores and one files manifest.
fn project(filestores: &str, files: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let stores = write(&dir.path().join("filestores/kops/filepromoter-manifest.yaml"), filestores);
    let files = write(&dir.path().join("manifests/kops/1.30.0.yaml"), files);
    (dir, stores, files)
}

#[test]
fn reads_a_manifests_dir_like_kpromo() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("filestores/kops/filepromoter-manifest.yaml"), FILESTORES);
    write(
        &dir.path().join("manifests/kops/b.yaml"),
        &format!("files:\n- name: 1.30.0/linux/amd64/kops\n  sha256: {}\n", hex('b')),
    );
    // Merged in path order, recursively; the same file listed twice is one file; upper-case hex
    // is the same hash; OWNERS and other non-YAML files are not manifests.
    write(
        &dir.path().join("manifests/kops/a.yaml"),
        &format!(
            "files:\n- name: 1.30.0/linux/amd64/kops\n  sha256: {}\n- name: 1.30.0/kops.sha256\n  sha256: {}\n",
            hex('B'),
            hex('c')
        ),
    );
    write(
        &dir.path().join("manifests/kops/older/1.29.yml"),
        &format!("files:\n- {{name: old, sha256: {}}}\n", hex('d')),
    );
    write(&dir.path().join("manifests/kops/OWNERS"), "approvers:\n- someone\n");
    write(
        &dir.path().join("filestores/other/filepromoter-manifest.yaml"),
        "filestores:\n- base: /srv/a\n  src: yes\n- base: /srv/b\n",
    );
    write(&dir.path().join("manifests/other/x.yaml"), &format!("files:\n- name: x\n  sha256: {}\n", hex('e')));

    let manifests = load_files_dir(dir.path()).unwrap();
    assert_eq!(manifests.len(), 2);
    let kops = &manifests[0];
    assert_eq!(kops.source.base, "gs://k8s-staging-kops/kops/releases/");
    assert_eq!(kops.source.line, 3);
    let bases: Vec<_> = kops.destinations.iter().map(|d| (d.base.as_str(), d.line)).collect();
    assert_eq!(bases, [("gs://k8s-artifacts-prod/binaries/kops/", 5), ("s3://mirror/kops", 7)]);
    assert!(kops.destinations[0].service_account.is_some());
    let files: Vec<_> = kops.files.iter().map(|f| (f.name.as_str(), f.sha256.hex().to_string(), f.line)).collect();
    assert_eq!(
        files,
        [("1.30.0/linux/amd64/kops", hex('b'), 2), ("1.30.0/kops.sha256", hex('c'), 4), ("old", hex('d'), 2)]
    );
    assert!(kops.files[0].origin().ends_with("manifests/kops/a.yaml:2"), "{}", kops.files[0].origin());
    assert!(kops.files[2].path.ends_with("older/1.29.yml"));
    assert_eq!(manifests[1].source.base, "/srv/a");
}

#[test]
fn reads_a_filestores_file_with_a_files_file_or_dir() {
    let (dir, stores, files) = project(FILESTORES, &format!("files:\n- name: a\n  sha256: {}\n", hex('a')));
    let one = load_files(&stores, &files).unwrap();
    assert_eq!(one.files.len(), 1);
    let all = load_files(&stores, &dir.path().join("manifests/kops")).unwrap();
    assert_eq!(all.files, one.files);
}

#[test]
fn names_that_climb_or_are_ambiguous_are_refused_at_their_line() {
    for bad in ["/etc/passwd", "../../etc/passwd", "a/../../b", "a//b", "a/", "\"a\\u0007b\"", "''"] {
        let (_dir, stores, files) = project(
            FILESTORES,
            &format!("files:\n- name: ok\n  sha256: {}\n- name: {bad}\n  sha256: {}\n", hex('a'), hex('b')),
        );
        let err = only(load_files(&stores, &files).unwrap_err());
        assert_at(&err, &files, 4, "invalid object name");
    }
}

#[test]
fn bad_hashes_and_fields_are_refused_at_their_line() {
    for (bad, needle) in [
        ("abc", "64 hex digits"),
        (&format!("{}g", "a".repeat(63)), "64 hex digits"),
        (&format!("sha256:{}", hex('a')), "64 hex digits"),
    ] {
        let (_dir, stores, files) = project(FILESTORES, &format!("files:\n- name: a\n  sha256: {bad}\n"));
        assert_at(&only(load_files(&stores, &files).unwrap_err()), &files, 3, needle);
    }
    let (_dir, stores, files) = project(FILESTORES, &format!("files:\n- name: a\n  sha265: {}\n", hex('a')));
    assert_at(&only(load_files(&stores, &files).unwrap_err()), &files, 3, "sha265");
    let (_dir, stores, files) = project(FILESTORES, "files:\n- name: a\n");
    assert_at(&only(load_files(&stores, &files).unwrap_err()), &files, 2, "sha256");
}

#[test]
fn one_file_with_two_hashes_is_refused_naming_both() {
    let (_dir, stores, files) =
        project(FILESTORES, &format!("files:\n- name: a\n  sha256: {}\n- name: a\n  sha256: {}\n", hex('a'), hex('b')));
    let err = only(load_files(&stores, &files).unwrap_err());
    assert_at(&err, &files, 4, "1.30.0.yaml:2");
}

#[test]
fn filestores_must_have_one_source_and_a_destination() {
    let files = format!("files:\n- name: a\n  sha256: {}\n", hex('a'));
    for (stores, line, needle) in [
        ("filestores:\n- base: gs://a\n- base: gs://b\n", 2, "no source"),
        ("filestores:\n- base: gs://a\n  src: true\n", 2, "no destination"),
        ("filestores:\n- base: gs://a\n  src: true\n- base: gs://b\n  src: true\n", 4, "second source"),
        ("filestores:\n- base: gs://a\n  src: true\n- base: gs://a/\n", 4, "listed twice (line 2)"),
        ("filestores:\n- src: true\n- base: gs://b\n", 2, "no base"),
        ("filestores:\n- base: gs://a\n  src: true\n- base: gs://b\n  bucket: x\n", 5, "bucket"),
        (
            &format!(
                "filestores:\n- base: gs://a\n  src: true\n- base: gs://b\nfiles:\n- name: a\n  sha256: {}\n",
                hex('a')
            ),
            6,
            "files must not",
        ),
    ] {
        let (_dir, stores, files) = project(stores, &files);
        assert_at(&only(load_files(&stores, &files).unwrap_err()), &stores, line, needle);
    }
    let (_dir, stores, files) = project(FILESTORES, &format!("filestores:\n- base: gs://x\n  src: true\n{}", &files));
    assert_at(&only(load_files(&stores, &files).unwrap_err()), &files, 2, "filestores must not");
}

#[test]
fn missing_or_empty_parts_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = only(load_files_dir(dir.path()).unwrap_err());
    assert!(err.to_string().contains("filestores") && err.line.is_none(), "{err}");
    fs::create_dir_all(dir.path().join("filestores/kops")).unwrap();
    // Both parts are missing, and both are reported.
    let errors = load_files_dir(dir.path()).unwrap_err().to_string();
    assert!(errors.contains("filepromoter-manifest.yaml: cannot read"), "{errors}");
    assert!(errors.contains("manifests/kops: missing"), "{errors}");
    write(&dir.path().join("filestores/kops/filepromoter-manifest.yaml"), FILESTORES);
    let err = only(load_files_dir(dir.path()).unwrap_err());
    assert!(err.to_string().contains("manifests/kops: missing"), "{err}");
    write(&dir.path().join("manifests/kops/empty.yaml"), "# nothing yet\n");
    let err = only(load_files_dir(dir.path()).unwrap_err());
    assert!(err.to_string().contains("no files"), "{err}");
}

/// Every error of every project and files manifest is reported at once.
#[test]
fn every_error_of_every_project_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("filestores/a/filepromoter-manifest.yaml"), "filestores:\n- base: gs://a\n- base: gs://b\n");
    write(&dir.path().join("manifests/a/x.yaml"), &format!("files:\n- name: ok\n  sha256: {}\n", hex('a')));
    write(&dir.path().join("filestores/b/filepromoter-manifest.yaml"), FILESTORES);
    write(
        &dir.path().join("manifests/b/1.yaml"),
        &format!("files:\n- name: /abs\n  sha256: {}\n- name: c\n  sha256: abc\n", hex('b')),
    );
    write(&dir.path().join("manifests/b/2.yaml"), "files:\n- name: d\n  sha256: xyz\n");
    write(&dir.path().join("filestores/c/filepromoter-manifest.yaml"), FILESTORES);
    write(&dir.path().join("manifests/c/ok.yaml"), &format!("files:\n- name: e\n  sha256: {}\n", hex('e')));

    let errors = load_files_dir(dir.path()).unwrap_err();
    let prefix = format!("{}/", dir.path().display());
    let listed: Vec<String> = errors.iter().map(|e| e.to_string().replace(&prefix, "")).collect();
    let expected = [
        "filestores/a/filepromoter-manifest.yaml:2: no source filestore",
        "manifests/b/1.yaml:2: files[0].name: invalid object name",
        "manifests/b/1.yaml:5: files[1].sha256: invalid sha256 \"abc\"",
        "manifests/b/2.yaml:3: files[0].sha256: invalid sha256 \"xyz\"",
    ];
    assert_eq!(listed.len(), expected.len(), "{listed:#?}");
    for (got, want) in listed.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

#[test]
fn deeply_nested_yaml_is_refused_before_parsing() {
    let n = 100_000;
    for deep in ["[".repeat(n) + &"]".repeat(n), "{a: ".repeat(n) + "x" + &"}".repeat(n)] {
        let (_dir, stores, files) = project(FILESTORES, &format!("# release\nfiles: {deep}\n"));
        assert_at(&only(load_files(&stores, &files).unwrap_err()), &files, 2, "nested deeper than 64 levels");
        let (_dir, stores, files) = project(&format!("filestores: {deep}\n"), "files: []\n");
        let errors = load_files(&stores, &files).unwrap_err();
        assert_at(errors.iter().next().unwrap(), &stores, 1, "nested deeper than 64 levels");
    }
}
