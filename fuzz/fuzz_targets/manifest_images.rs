//! kpromo image promotion manifests: `load_plain` (one file with `registries:` and `images:`) and
//! `load_thin_dir` (`manifests/<p>/promoter-manifest.yaml` + `images/<p>/images.yaml`).
//!
//! Input: the text of the plain manifest; the part before the first NUL byte is also the thin
//! `promoter-manifest.yaml` and the part after it the thin `images.yaml`. The loaders read files,
//! so the texts are written to a scratch directory first (the public API, as `ferry` calls it).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// Memory-backed when the machine has it: these inputs are written to files on every run.
fn scratch_base() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_base().join(format!("ferry-fuzz-manifest-images-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("manifests/p")).unwrap();
        std::fs::create_dir_all(dir.join("images/p")).unwrap();
        dir
    })
}

/// What every loaded manifest must satisfy, whatever the input.
fn check(m: &ferry_manifest::PromotionManifest, plain: bool) {
    assert!(!m.destinations.is_empty(), "a manifest without destinations was accepted");
    assert!(!m.destinations.contains(&m.source), "the source is also a destination");
    for image in &m.images {
        assert!(image.line >= 1);
        assert_eq!(image.name.as_str().parse::<ferry_oci::RepoName>().as_ref(), Ok(&image.name));
        if plain {
            assert!(!image.digests.is_empty(), "plain manifest image without digests");
        }
        for (digest, tags) in &image.digests {
            assert_eq!(digest.as_str().parse::<ferry_oci::Digest>().as_ref(), Ok(digest));
            assert!(tags.line >= 1);
            for tag in &tags.tags {
                assert_eq!(tag.as_str().parse::<ferry_oci::Tag>().as_ref(), Ok(tag));
            }
        }
    }
    for address in std::iter::once(&m.source).chain(&m.destinations) {
        // A registry address printed back reads as the same address.
        let again: ferry_oci::RegistryAddress = address.to_string().parse().expect("address round trip");
        assert_eq!(&again, address);
    }
}

fn check_errors(errors: &ferry_manifest::ManifestErrors, file: &Path) {
    assert!(errors.iter().next().is_some(), "an error without any message");
    for e in errors.iter() {
        assert!(!e.to_string().is_empty());
    }
    let _ = file;
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = scratch();
    let plain = dir.join("plain.yaml");
    std::fs::write(&plain, text).unwrap();
    match ferry_manifest::load_plain(&plain) {
        Ok(m) => check(&m, true),
        Err(e) => check_errors(&e, &plain),
    }
    let (registries, images) = text.split_once('\0').unwrap_or((text, ""));
    std::fs::write(dir.join("manifests/p/promoter-manifest.yaml"), registries).unwrap();
    std::fs::write(dir.join("images/p/images.yaml"), images).unwrap();
    match ferry_manifest::load_thin_dir(dir) {
        Ok(manifests) => {
            assert_eq!(manifests.len(), 1);
            check(&manifests[0], false);
        }
        Err(e) => check_errors(&e, dir),
    }
});
