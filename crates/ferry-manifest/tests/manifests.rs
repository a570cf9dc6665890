//! The public API against manifests written to disk: valid layouts, and each error kind with the
//! file and line it must name.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_manifest::{load_plain, load_thin_dir, ManifestError, ManifestErrors, PromotionManifest};
use ferry_oci::RegistryAddress;

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn write(path: &Path, text: &str) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn addr(s: &str) -> RegistryAddress {
    s.parse().unwrap()
}

const REGISTRIES: &str = "\
registries:
- name: gcr.io/k8s-staging-foo
  src: true
- name: us.gcr.io/k8s-artifacts-prod/foo
  service-account: promoter@k8s-artifacts-prod.iam.gserviceaccount.com
";

/// Asserts `err` prints as `PATH:LINE: ...` and mentions `needle`.
#[track_caller]
fn assert_at(err: &ManifestError, path: &Path, line: usize, needle: &str) {
    let text = err.to_string();
    let prefix = format!("{}:{line}: ", path.display());
    assert!(text.starts_with(&prefix), "{text:?} should start with {prefix:?}");
    assert!(text.contains(needle), "{text:?} should mention {needle:?}");
    assert_eq!((err.path.as_path(), err.line), (path, Some(line)));
}

/// Asserts `err` prints as `PATH: ...` (no line) and mentions `needle`.
#[track_caller]
fn assert_file(err: &ManifestError, path: &Path, needle: &str) {
    let text = err.to_string();
    let prefix = format!("{}: ", path.display());
    assert!(text.starts_with(&prefix), "{text:?} should start with {prefix:?}");
    assert!(text.contains(needle), "{text:?} should mention {needle:?}");
    assert_eq!(err.line, None);
}

/// The only error of `errors`.
#[track_caller]
fn only(errors: ManifestErrors) -> ManifestError {
    let mut all = errors.into_iter();
    let first = all.next().expect("at least one error");
    let rest: Vec<_> = all.map(|e| e.to_string()).collect();
    assert!(rest.is_empty(), "one error expected, also got {rest:?} after {first}");
    first
}

/// Each error as `FILE:LINE: message`, with the directory's path cut off the front.
fn listed(errors: &ManifestErrors, dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    errors.iter().map(|e| e.to_string().replace(&prefix, "")).collect()
}

fn plain_err(text: &str) -> (ManifestError, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir.path().join("manifest.yaml"), text);
    let err = only(load_plain(&path).expect_err("should be refused"));
    (err, path, dir)
}

/// A thin dir whose single project `foo` has these two files; returns the error and both paths.
fn thin_err(manifest: &str, images: &str) -> (ManifestError, PathBuf, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let m = write(&dir.path().join("manifests/foo/promoter-manifest.yaml"), manifest);
    let i = write(&dir.path().join("images/foo/images.yaml"), images);
    let err = only(load_thin_dir(dir.path()).expect_err("should be refused"));
    (err, m, i, dir)
}

#[test]
fn thin_dir_with_two_projects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Written out of order: the result is sorted by path.
    write(&root.join("manifests/zeta/promoter-manifest.yaml"), REGISTRIES);
    write(&root.join("images/zeta/images.yaml"), &format!("- name: z\n  dmap:\n    \"{}\": [\"v1\"]\n", digest('c')));
    write(
        &root.join("manifests/alpha/promoter-manifest.yaml"),
        "registries:\n- name: oci:staging\n  src: true\n- name: localhost:5000/prod\n- name: oci:/srv/mirror\n",
    );
    let images = format!(
        "# Alpha's images.\n- name: team/app\n  dmap:\n    \"{}\": [\"v1.0\", \"latest\"]\n    \"{}\": []\n- name: tool\n  dmap:\n    \"{}\": [\"1.10\"]\n",
        digest('a'),
        digest('b'),
        digest('d'),
    );
    write(&root.join("images/alpha/images.yaml"), &images);
    // Files other than promoter-manifest.yaml are ignored wherever they are.
    write(&root.join("manifests/README.md"), "# notes");
    write(&root.join("manifests/alpha/OWNERS"), "approvers: []");

    let manifests = load_thin_dir(root).unwrap();
    assert_eq!(manifests.len(), 2);
    let [alpha, zeta] = &manifests[..] else { unreachable!() };

    assert_eq!(alpha.path, root.join("manifests/alpha/promoter-manifest.yaml"));
    assert_eq!(alpha.images_path, root.join("images/alpha/images.yaml"));
    assert_eq!(alpha.source, RegistryAddress::Layout { dir: "staging".into() });
    assert_eq!(alpha.destinations, [addr("localhost:5000/prod"), addr("oci:/srv/mirror")]);
    assert_eq!(alpha.images.len(), 2);
    let app = &alpha.images[0];
    assert_eq!((app.name.as_str(), app.line), ("team/app", 2));
    let tags: Vec<_> = app.digests[&digest('a').parse().unwrap()].tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["v1.0", "latest"]);
    assert!(app.digests[&digest('b').parse().unwrap()].tags.is_empty(), "digest-only entry");
    // Each digest has its own line.
    let lines: Vec<_> = app.digests.values().map(|d| d.line).collect();
    assert_eq!(lines, [4, 5]);
    let tool = &alpha.images[1];
    assert_eq!((tool.name.as_str(), tool.line), ("tool", 6));
    // An unquoted number-like tag keeps its text, as with kpromo.
    assert_eq!(tool.digests[&digest('d').parse().unwrap()].tags[0].as_str(), "1.10");

    assert_eq!(zeta.source, addr("gcr.io/k8s-staging-foo"));
    assert_eq!(zeta.destinations, [addr("us.gcr.io/k8s-artifacts-prod/foo")]);
    assert_eq!(zeta.images[0].name.as_str(), "z");
    assert!(alpha.warnings.is_empty() && zeta.warnings.is_empty());
}

#[test]
fn plain_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{REGISTRIES}- name: eu.gcr.io/k8s-artifacts-prod/foo\nimages:\n- name: foo\n  dmap:\n    \"{}\": [\"v1\"]\n- name: bar/baz\n  dmap:\n    {}:\n    - v2\n    - latest\n",
        digest('a'),
        digest('b'),
    );
    let path = write(&dir.path().join("promoter-manifest.yaml"), &text);
    let m: PromotionManifest = load_plain(&path).unwrap();
    assert_eq!((m.path.as_path(), m.images_path.as_path()), (path.as_path(), path.as_path()));
    assert_eq!(m.source, addr("gcr.io/k8s-staging-foo"));
    assert_eq!(m.destinations, [addr("us.gcr.io/k8s-artifacts-prod/foo"), addr("eu.gcr.io/k8s-artifacts-prod/foo")]);
    let lines: Vec<_> = m.images.iter().map(|i| (i.name.as_str(), i.line)).collect();
    assert_eq!(lines, [("foo", 8), ("bar/baz", 11)]);
    // A bare digest key and a block list of tags, as `kpromo` can write them.
    let tags: Vec<_> = m.images[1].digests[&digest('b').parse().unwrap()].tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["v2", "latest"]);
}

#[test]
fn kubernetes_style_thin_dir() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let regions = [
        "asia-east1",
        "asia-northeast1",
        "asia-south1",
        "australia-southeast1",
        "europe-north1",
        "europe-west1",
        "europe-west4",
        "southamerica-west1",
        "us-central1",
        "us-east1",
        "us-west2",
    ];
    let mut manifest = String::from(
        "# google group for gcr.io/k8s-staging-kas-network-proxy is k8s-infra-staging-kas-network-proxy@kubernetes.io\n\
         registries:\n- name: gcr.io/k8s-staging-kas-network-proxy\n  src: true\n",
    );
    for region in regions {
        manifest += &format!(
            "- name: {region}-docker.pkg.dev/k8s-artifacts-prod/images/kas-network-proxy\n  \
             service-account: k8s-infra-gcr-promoter@k8s-artifacts-prod.iam.gserviceaccount.com\n"
        );
    }
    write(&root.join("manifests/k8s-staging-kas-network-proxy/promoter-manifest.yaml"), &manifest);
    let images = "\
- name: proxy-agent
  dmap:
    \"sha256:7479f04932b89ea42c9a1bc260ca52b0bb2575596962481fe9be0e6b4a583615\": [\"v0.0.4\"]
    \"sha256:cb42d59c7a1cd92032e6ebe192f7c4b2576c921119f3ac66cb7be6038d449e77\": [\"v0.0.6\"]
    # 0.29.3 was not built correctly, actually it's 0.29.4
    \"sha256:e5d4082225403e2c46ddcd55a951321fa8ed8922e458cc4b4d88000a6e240f99\": [\"v0.29.3\", \"v0.29.4\"]
- name: proxy-server
  dmap:
    \"sha256:5431119507b1da03ead713e5cfd79b7231d38026bb97189e5bd76d252f91fc3f\": [\"v0.0.4\"]
    \"sha256:a16e56961c8e417d487666446d081e6fce691063f0530834c0df53b6b3121cef\": [\"v0.29.3\", \"v0.29.4\"]
    \"sha256:61b6bfed89291cbee0dd0d5f9bb4982c6989059b15398690cd89e830ac29f1b7\": [\"v0.36.0\"]
";
    write(&root.join("images/k8s-staging-kas-network-proxy/images.yaml"), images);

    let manifests = load_thin_dir(root).unwrap();
    let [m] = &manifests[..] else { panic!("one project expected, got {manifests:?}") };
    assert_eq!(m.source, addr("gcr.io/k8s-staging-kas-network-proxy"));
    assert_eq!(m.destinations.len(), regions.len());
    assert_eq!(
        m.destinations[1],
        RegistryAddress::Remote {
            host: "asia-northeast1-docker.pkg.dev".into(),
            prefix: Some("k8s-artifacts-prod/images/kas-network-proxy".parse().unwrap()),
        }
    );
    let summary: Vec<_> = m.images.iter().map(|i| (i.name.as_str(), i.line, i.digests.len())).collect();
    assert_eq!(summary, [("proxy-agent", 1, 3), ("proxy-server", 7, 3)]);
    let both = &m.images[0].digests
        [&"sha256:e5d4082225403e2c46ddcd55a951321fa8ed8922e458cc4b4d88000a6e240f99".parse().unwrap()];
    assert_eq!(both.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["v0.29.3", "v0.29.4"]);
    assert_eq!(both.line, 6, "the line of the digest, below a comment");
}

#[test]
fn deprecated_images_path_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("manifests/foo/promoter-manifest.yaml"),
        &format!("{REGISTRIES}imagesPath: ../../images/foo\n"),
    );
    write(&dir.path().join("images/foo/images.yaml"), "");
    assert!(load_thin_dir(dir.path()).unwrap()[0].images.is_empty());

    let plain = write(&dir.path().join("plain.yaml"), &format!("imagesPath: whatever\n{REGISTRIES}images: []\n"));
    assert!(load_plain(&plain).unwrap().images.is_empty());
}

#[test]
fn empty_images_files_mean_no_images() {
    for images in ["", "# nothing yet\n", "[]\n", "~\n"] {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("manifests/foo/promoter-manifest.yaml"), REGISTRIES);
        write(&dir.path().join("images/foo/images.yaml"), images);
        assert!(load_thin_dir(dir.path()).unwrap()[0].images.is_empty(), "{images:?}");
    }
}

#[test]
fn malformed_yaml() {
    let (err, path, _dir) = plain_err("registries:\n- name: gcr.io/a\n  src: true\n - name: gcr.io/b\n");
    assert_at(&err, &path, 4, "did not find expected key");

    let (err, path, _dir) = plain_err("registries:\n- name: a\n\tsrc: true\n");
    assert_at(&err, &path, 3, "found a tab character that violates indentation");

    let (err, _m, images, _dir) = thin_err(REGISTRIES, "- name: foo\n  dmap: {\"sha256:a\n");
    assert_eq!(err.path, images);
    assert_eq!(err.line, Some(3), "{err}");
}

#[test]
fn unknown_fields() {
    let (err, path, _dir) = plain_err(&format!("{REGISTRIES}  region: us\n"));
    assert_at(
        &err,
        &path,
        6,
        "registries[1]: unknown field `region`, expected one of `name`, `src`, `service-account`",
    );

    let (err, path, _dir) = plain_err(&format!("{REGISTRIES}images: []\nsrc-registry: gcr.io/x\n"));
    assert_at(&err, &path, 7, "unknown field `src-registry`");

    let images = format!("- name: foo\n  dmap:\n    \"{}\": []\n  tags: [v1]\n", digest('a'));
    let (err, _m, images_path, _dir) = thin_err(REGISTRIES, &images);
    assert_at(&err, &images_path, 4, "unknown field `tags`");

    // `images:` belongs in images.yaml, not in a thin promoter-manifest.yaml.
    let (err, manifest, _i, _dir) = thin_err(&format!("{REGISTRIES}images: []\n"), "");
    assert_at(&err, &manifest, 6, "unknown field `images`");
}

#[test]
fn src_is_a_yaml_1_1_boolean() {
    // As in kpromo's yaml.v2: `yes`/`on` are true, `no`/`off` false.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir.path().join("m.yaml"),
        "registries:\n- name: gcr.io/a\n  src: yes\n- name: gcr.io/b\n  src: off\n- name: gcr.io/c\n  src:\n",
    );
    let m = load_plain(&path).unwrap();
    assert_eq!((m.source, m.destinations.len()), (addr("gcr.io/a"), 2));

    let (err, path, _dir) = plain_err("registries:\n- name: gcr.io/a\n  src: maybe\n");
    assert_at(&err, &path, 3, "registries[0].src: invalid value: string \"maybe\", expected true or false");
}

#[test]
fn no_source_registry() {
    let (err, path, _dir) = plain_err("registries:\n- name: gcr.io/a\n- name: gcr.io/b\n");
    assert_at(&err, &path, 2, "no source registry: exactly one registry must have `src: true`");

    let (err, path, _dir) = plain_err("images: []\n");
    assert_file(&err, &path, "no source registry");
}

#[test]
fn two_source_registries() {
    let text = "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\n- name: gcr.io/c\n  src: true\n";
    let (err, path, _dir) = plain_err(text);
    assert_at(&err, &path, 5, "second source registry gcr.io/c");
    assert!(err.to_string().contains("gcr.io/a (line 2)"), "{err}");

    let (err, manifest, _i, _dir) = thin_err(text, "");
    assert_at(&err, &manifest, 5, "second source registry");
}

#[test]
fn no_destination_registry() {
    let (err, path, _dir) = plain_err("registries:\n# staging\n- name: gcr.io/a\n  src: true\n");
    assert_at(&err, &path, 3, "no destination registry: gcr.io/a is the source");
}

#[test]
fn duplicate_registries_are_merged_with_a_warning() {
    // As kpromo does (a production manifest lists a destination twice): one destination, and a
    // warning naming the line of each repetition.
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("manifests/foo/promoter-manifest.yaml"), "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\n- name: gcr.io/c\n- name: gcr.io/b\n  service-account: x@y\n- name: gcr.io/a\n  src: true\n");
    write(&dir.path().join("images/foo/images.yaml"), "");
    let manifests = load_thin_dir(dir.path()).unwrap();
    let m = &manifests[0];
    assert_eq!((&m.source, &m.destinations[..]), (&addr("gcr.io/a"), &[addr("gcr.io/b"), addr("gcr.io/c")][..]));
    let warnings: Vec<_> =
        m.warnings.iter().map(|w| w.to_string().replace(&format!("{}/", dir.path().display()), "")).collect();
    assert_eq!(
        warnings,
        [
            "manifests/foo/promoter-manifest.yaml:6: registry gcr.io/b is listed twice (line 4); the entries are merged",
            "manifests/foo/promoter-manifest.yaml:8: registry gcr.io/a is listed twice (line 2); the entries are merged",
        ]
    );
}

#[test]
fn the_source_listed_again_without_src_is_not_a_destination() {
    // kpromo would promote from the source into itself; Ferry leaves the source alone.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir.path().join("m.yaml"),
        "registries:\n- name: gcr.io/b\n- name: gcr.io/a\n  src: true\n- name: gcr.io/a\nimages: []\n",
    );
    let m = load_plain(&path).unwrap();
    assert_eq!((&m.source, &m.destinations[..]), (&addr("gcr.io/a"), &[addr("gcr.io/b")][..]));
    let warnings: Vec<_> = m.warnings.iter().map(|w| (w.line, w.message.as_str())).collect();
    assert_eq!(
        warnings,
        [(
            Some(5),
            "registry gcr.io/a is the source (line 3) and is listed again without `src: true`: it is not a destination"
        )]
    );

    // Then nothing may be left to promote to.
    let (err, path, _dir) = plain_err("registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/a\n");
    assert_at(&err, &path, 2, "no destination registry");
}

#[test]
fn duplicate_images_are_merged_with_a_warning() {
    let images = format!(
        "- name: app\n  dmap:\n    \"{a}\": [v1]\n- name: tool\n- name: app\n  dmap:\n    \"{a}\": [v1]\n    \"{b}\": [v2]\n",
        a = digest('a'),
        b = digest('b')
    );
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("manifests/foo/promoter-manifest.yaml"), REGISTRIES);
    let images_path = write(&dir.path().join("images/foo/images.yaml"), &images);
    let m = load_thin_dir(dir.path()).unwrap().remove(0);
    // Both entries are kept, each with its lines: their edges merge when they are expanded.
    let entries: Vec<_> = m.images.iter().map(|i| (i.name.as_str(), i.line, i.digests.len())).collect();
    assert_eq!(entries, [("app", 1, 1), ("tool", 4, 0), ("app", 5, 2)]);
    let warnings: Vec<_> = m.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [format!("{}:5: image app is listed twice (line 1); the entries are merged", images_path.display())]
    );
}

#[test]
fn bad_registry_name() {
    let (err, path, _dir) = plain_err("registries:\n- name: gcr.io/a\n  src: true\n- name: https://gcr.io/b\n");
    assert_at(&err, &path, 4, "https://gcr.io/b");
}

#[test]
fn bad_digest() {
    let images = format!("- name: foo\n  dmap:\n    \"{}\": [v1]\n    \"sha256:ABC\": [v2]\n", digest('a'));
    let (err, _m, images_path, _dir) = thin_err(REGISTRIES, &images);
    assert_at(&err, &images_path, 4, "[0].dmap: invalid digest \"sha256:ABC\"");
    assert!(!err.to_string().contains(".[0]"), "{err}");
}

#[test]
fn bad_tag() {
    let images = format!(
        "- name: foo\n  dmap:\n    \"{}\": [v1]\n    \"{}\":\n    - ok\n    - \"-bad\"\n",
        digest('a'),
        digest('b')
    );
    let (err, _m, images_path, _dir) = thin_err(REGISTRIES, &images);
    assert_at(&err, &images_path, 6, "invalid tag \"-bad\"");

    let (err, path, _dir) =
        plain_err(&format!("{REGISTRIES}images:\n- name: foo\n  dmap:\n    \"{}\": [\"v1\", \"a:b\"]\n", digest('a')));
    assert_at(&err, &path, 9, &format!("images[0].dmap.{}[1]: invalid tag \"a:b\"", digest('a')));
}

#[test]
fn bad_image_name() {
    let images = format!("- name: foo\n  dmap: {{}}\n- dmap:\n    \"{}\": []\n  name: Foo/Bar\n", digest('a'));
    let (err, _m, images_path, _dir) = thin_err(REGISTRIES, &images);
    assert_at(&err, &images_path, 5, "[1].name: invalid repository name \"Foo/Bar\"");

    let (err, _m, images_path, _dir) = thin_err(REGISTRIES, "- dmap: {}\n");
    assert_at(&err, &images_path, 1, "missing field `name`");
}

#[test]
fn duplicate_dmap_key() {
    let images = format!(
        "- name: foo\n  dmap:\n    \"{a}\": [v1]\n    \"{b}\": [v2]\n    {a}: [v3]\n",
        a = digest('a'),
        b = digest('b')
    );
    let (err, _m, images_path, _dir) = thin_err(REGISTRIES, &images);
    assert_at(&err, &images_path, 5, &format!("[0].dmap: digest {} is listed twice in this dmap", digest('a')));
}

#[test]
fn plain_images_need_digests() {
    // kpromo's plain-manifest validation refuses an empty dmap; its thin reader does not.
    let dir = tempfile::tempdir().unwrap();
    let path =
        write(&dir.path().join("m.yaml"), &format!("{REGISTRIES}images:\n- name: foo\n  dmap: {{}}\n- name: bar\n"));
    let errors = listed(&load_plain(&path).unwrap_err(), dir.path());
    assert_eq!(
        errors,
        [
            "m.yaml:7: image foo: dmap must list at least one digest",
            "m.yaml:9: image bar: dmap must list at least one digest"
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("manifests/foo/promoter-manifest.yaml"), REGISTRIES);
    write(&dir.path().join("images/foo/images.yaml"), "- name: foo\n");
    assert!(load_thin_dir(dir.path()).unwrap()[0].images[0].digests.is_empty());
}

#[test]
fn missing_images_yaml() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("manifests/foo/promoter-manifest.yaml"), REGISTRIES);
    write(&dir.path().join("images/bar/images.yaml"), "");
    let err = only(load_thin_dir(dir.path()).unwrap_err());
    let expected = dir.path().join("images/foo/images.yaml");
    assert_file(&err, &expected, "missing");
    assert!(err.to_string().contains("manifests/foo/promoter-manifest.yaml"), "{err}");
}

#[test]
fn promoter_manifest_at_wrong_depth() {
    for misplaced in ["manifests/promoter-manifest.yaml", "manifests/a/b/promoter-manifest.yaml"] {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("manifests/foo/promoter-manifest.yaml"), REGISTRIES);
        write(&dir.path().join("images/foo/images.yaml"), "");
        let bad = write(&dir.path().join(misplaced), REGISTRIES);
        let err = only(load_thin_dir(dir.path()).unwrap_err());
        assert_file(&err, &bad, "misplaced");
    }
}

#[test]
fn missing_or_empty_manifests_dir() {
    let dir = tempfile::tempdir().unwrap();
    let err = only(load_thin_dir(dir.path()).unwrap_err());
    assert_file(&err, &dir.path().join("manifests"), "missing");

    fs::create_dir_all(dir.path().join("manifests/foo")).unwrap();
    let err = only(load_thin_dir(dir.path()).unwrap_err());
    assert_file(&err, &dir.path().join("manifests"), "no manifests");
}

#[test]
fn missing_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.yaml");
    assert_file(&only(load_plain(&path).unwrap_err()), &path, "cannot read");
}

/// Whatever the bytes, loading returns a result: every prefix of a valid manifest, and a few
/// hostile documents.
#[test]
fn never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    let valid = format!(
        "registries:\n- name: gcr.io/a\n  src: true\n- {{name: \"oci:x\"}}\nimages:\n- name: foo\n  dmap:\n    \"{}\": [v1, 'v2']\n    {}: ~\n",
        digest('a'),
        digest('b')
    );
    assert!(load_plain(&write(&path, &valid)).is_ok());
    for end in 0..valid.len() {
        let _ = load_plain(&write(&path, &valid[..end]));
    }
    let deep = "[".repeat(10_000);
    let hostile = [
        deep.as_str(),
        "registries: &r [*r]\n",
        "a: &a [*a, *a]\nb: *a\n",
        "<<: {registries: []}\n",
        "registries:\n- <<: {name: gcr.io/a, src: true}\n- name: gcr.io/b\n",
        "registries: [{name: !!binary aGVsbG8=}]\n",
        "images:\n- name: foo\n  dmap: {? [a]: [b]}\n",
        "images:\n- name: foo\n  dmap: \"x\"\n",
        "---\nregistries: []\n---\nimages: []\n",
        "\u{feff}registries: []\n",
        "registries: !!map {}\n",
        "%YAML 1.1\n---\n",
        "- - - -\n",
        "\0",
    ];
    for text in hostile {
        let _ = load_plain(&write(&path, text));
    }
    fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    assert_file(&only(load_plain(&path).unwrap_err()), &path, "cannot read");
}

/// A thin directory with three projects, two of them broken: every error of every file is
/// reported, each with its file and line, not only the first.
#[test]
fn every_error_of_every_project_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("manifests/alpha/promoter-manifest.yaml"), REGISTRIES);
    write(&root.join("images/alpha/images.yaml"), &format!("- name: app\n  dmap:\n    \"{}\": [v1]\n", digest('a')));
    // beta: no source registry, and two bad values in its images.
    write(&root.join("manifests/beta/promoter-manifest.yaml"), "registries:\n- name: gcr.io/a\n- name: gcr.io/b\n");
    write(
        &root.join("images/beta/images.yaml"),
        &format!("- name: app\n  dmap:\n    \"sha256:ABC\": [v1]\n    \"{}\": [\"-bad\"]\n", digest('b')),
    );
    // gamma: its images.yaml is not YAML.
    write(&root.join("manifests/gamma/promoter-manifest.yaml"), REGISTRIES);
    write(&root.join("images/gamma/images.yaml"), "- name: app\n\tdmap: {}\n");

    let errors = load_thin_dir(root).unwrap_err();
    let listed = listed(&errors, root);
    assert_eq!(listed.len(), 4, "{listed:#?}");
    let expected = [
        "manifests/beta/promoter-manifest.yaml:2: no source registry",
        "images/beta/images.yaml:3: [0].dmap: invalid digest \"sha256:ABC\"",
        &format!("images/beta/images.yaml:4: [0].dmap.{}[0]: invalid tag \"-bad\"", digest('b')),
        "images/gamma/images.yaml:2: found a tab character",
    ];
    for (got, want) in listed.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

/// Within one file, every bad value is reported, in line order.
#[test]
fn every_bad_value_of_a_file_is_reported() {
    let text = format!(
        "registries:\n- name: gcr.io/a\n  src: true\n- name: https://gcr.io/b\n- name: gcr.io/c\nimages:\n\
         - name: Foo\n  dmap:\n    \"sha256:1\": [v1]\n    \"{a}\": [ok, \"a:b\", \".x\"]\n\
         - name: bar\n  dmap:\n    \"{a}\": [v1]\n    \"{a}\": [v2]\n",
        a = digest('a')
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir.path().join("manifest.yaml"), &text);
    let errors = load_plain(&path).unwrap_err();
    let listed = listed(&errors, dir.path());
    let expected = [
        "manifest.yaml:4: registries[1].name: ",
        "manifest.yaml:7: images[0].name: invalid repository name \"Foo\"",
        "manifest.yaml:9: images[0].dmap: invalid digest \"sha256:1\"",
        &format!("manifest.yaml:10: images[0].dmap.{}[1]: invalid tag \"a:b\"", digest('a')),
        &format!("manifest.yaml:10: images[0].dmap.{}[2]: invalid tag \".x\"", digest('a')),
        &format!("manifest.yaml:14: images[1].dmap: digest {} is listed twice in this dmap (line 13)", digest('a')),
    ];
    assert_eq!(listed.len(), expected.len(), "{listed:#?}");
    for (got, want) in listed.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

/// The two pathological forms, 100,000 levels deep: serde_yaml_ng (libyaml) takes time quadratic in
/// the depth on them (27 s and 50 s), so they are refused before it sees them.
fn deep_documents() -> [String; 3] {
    let n = 100_000;
    ["[".repeat(n) + &"]".repeat(n), "{a: ".repeat(n) + "x" + &"}".repeat(n), "- ".repeat(n) + "x"]
}

#[test]
fn deeply_nested_yaml_is_refused_before_parsing() {
    for deep in deep_documents() {
        let (err, path, _dir) = plain_err(&format!("registries:\n- name: gcr.io/a\n  src: true\nimages:\n  {deep}\n"));
        assert_at(&err, &path, 5, "nested deeper than 64 levels");

        let (err, manifest, _i, _dir) = thin_err(&format!("registries:\n  {deep}\n"), "");
        assert_at(&err, &manifest, 2, "nested deeper than 64 levels");

        let images = format!("- name: app\n  dmap:\n    {deep}\n");
        let (err, _m, images_path, _dir) = thin_err(REGISTRIES, &images);
        assert_at(&err, &images_path, 3, "nested deeper than 64 levels");
    }
}
