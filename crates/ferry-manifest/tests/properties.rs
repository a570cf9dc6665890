//! Properties of the manifest loaders: a manifest written from a model loads back as that model
//! (names, digests, tags, lines), and no text panics a loader (the fuzz targets
//! `manifest_images` and `manifest_files` in fuzz/ explore the same ground for longer).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ferry_manifest::{load_files, load_plain, load_thin_dir};
use ferry_oci::Digest;
use proptest::prelude::*;

/// Images: repository name → digest (from a seed) → tags.
type Model = BTreeMap<String, BTreeMap<[u8; 2], Vec<String>>>;

fn model() -> impl Strategy<Value = Model> {
    let tags = prop::collection::vec("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", 0..3);
    let digests = prop::collection::btree_map(any::<[u8; 2]>(), tags, 1..4);
    prop::collection::btree_map("[a-z0-9]{1,5}(/[a-z0-9]{1,5}){0,2}", digests, 1..5)
}

/// The `images:` list of `model`, in block or flow style, every scalar quoted.
fn images_yaml(model: &Model, indent: &str, flow: bool) -> String {
    let mut text = String::new();
    for (name, digests) in model {
        text += &format!("{indent}- name: \"{name}\"\n{indent}  dmap:\n");
        for (seed, tags) in digests {
            let digest = Digest::of(seed);
            let quoted: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
            if flow {
                text += &format!("{indent}    \"{digest}\": [{}]\n", quoted.join(", "));
            } else if tags.is_empty() {
                text += &format!("{indent}    {digest}: []\n");
            } else {
                text += &format!("{indent}    {digest}:\n");
                for t in quoted {
                    text += &format!("{indent}    - {t}\n");
                }
            }
        }
    }
    text
}

const REGISTRIES: &str = "registries:\n- name: gcr.io/staging\n  src: true\n- name: us.gcr.io/prod/images\n";

fn check_images(loaded: &[ferry_manifest::Image], model: &Model, text: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(loaded.len(), model.len());
    let lines: Vec<&str> = text.lines().collect();
    for (image, (name, digests)) in loaded.iter().zip(model) {
        prop_assert_eq!(image.name.as_str(), name.as_str());
        prop_assert!(lines[image.line - 1].contains(&format!("name: \"{name}\"")), "line {}", image.line);
        let expected: BTreeMap<Digest, &Vec<String>> = digests.iter().map(|(s, t)| (Digest::of(s), t)).collect();
        prop_assert_eq!(image.digests.len(), expected.len());
        for (digest, tags) in &image.digests {
            let want = expected.get(digest).expect("a digest of the model");
            prop_assert_eq!(&tags.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(), *want);
            prop_assert!(lines[tags.line - 1].contains(digest.as_str()), "digest line {}", tags.line);
        }
    }
    Ok(())
}

proptest! {
    // Each case writes and reads files: 128 keep the whole file well under 5 s in debug builds.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn plain_manifest_loads_as_written(model in model(), flow in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("manifest.yaml");
        let text = format!("{REGISTRIES}images:\n{}", images_yaml(&model, "", flow));
        fs::write(&file, &text).unwrap();
        let loaded = load_plain(&file).unwrap();
        prop_assert_eq!(loaded.source.to_string(), "gcr.io/staging");
        prop_assert_eq!(loaded.destinations.iter().map(|d| d.to_string()).collect::<Vec<_>>(), ["us.gcr.io/prod/images"]);
        check_images(&loaded.images, &model, &text)?;
    }

    #[test]
    fn thin_manifest_loads_as_written(model in model(), flow in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        let images = images_yaml(&model, "", flow);
        write("manifests/p/promoter-manifest.yaml", REGISTRIES);
        write("images/p/images.yaml", &images);
        let loaded = load_thin_dir(dir.path()).unwrap();
        prop_assert_eq!(loaded.len(), 1);
        check_images(&loaded[0].images, &model, &images)?;
    }

    #[test]
    fn files_manifest_loads_as_written(
        files in prop::collection::btree_map("[a-z0-9_.-]{0,4}[a-z0-9](/[a-z0-9_-]{1,5}){0,3}", (any::<[u8; 2]>(), any::<bool>()), 1..8),
    ) {
        let files: BTreeMap<String, _> = files.into_iter().filter(|(n, _)| !n.starts_with('.')).collect();
        prop_assume!(!files.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let stores = dir.path().join("filepromoter-manifest.yaml");
        fs::write(&stores, "filestores:\n- base: gs://staging/rel/\n  src: true\n- base: s3://prod/rel/\n").unwrap();
        let mut text = String::from("files:\n");
        for (name, (seed, upper)) in &files {
            let hex = Digest::of(seed).hex().to_string();
            let hex = if *upper { hex.to_ascii_uppercase() } else { hex };
            text += &format!("- name: \"{name}\"\n  sha256: \"{hex}\"\n");
        }
        let manifest = dir.path().join("files.yaml");
        fs::write(&manifest, &text).unwrap();
        let loaded = load_files(&stores, &manifest).unwrap();
        prop_assert_eq!(loaded.source.base.as_str(), "gs://staging/rel/");
        prop_assert_eq!(loaded.destinations.len(), 1);
        prop_assert_eq!(loaded.files.len(), files.len());
        for (entry, (name, (seed, _))) in loaded.files.iter().zip(&files) {
            prop_assert_eq!(entry.name.as_str(), name.as_str());
            prop_assert_eq!(&entry.sha256, &Digest::of(seed));
            prop_assert!(text.lines().nth(entry.line - 1).unwrap().contains(name.as_str()));
        }
    }

    #[test]
    fn arbitrary_text_never_panics_a_loader(
        text in "(registries:|images:|filestores:|files:|- name: [a-z./:]{0,12}|  src: (true|yes|1)|  dmap:|    \"?sha256:[0-9a-f]{0,64}\"?: \\[[a-z0-9\", ]{0,12}\\]|[ \t]{0,4}[-:{}\\[\\],&*!|>#'\"a-z0-9]{0,12}|\n){0,16}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        fs::write(&path, &text).unwrap();
        check_errors(load_plain(&path).err(), &path)?;
        check_errors(load_files(&path, &path).err(), &path)?;
    }
}

/// Every error names the file it is about.
fn check_errors(errors: Option<ferry_manifest::ManifestErrors>, path: &Path) -> Result<(), TestCaseError> {
    for e in errors.iter().flat_map(|e| e.iter()) {
        prop_assert_eq!(e.path.as_path(), path, "{}", e);
    }
    Ok(())
}
