//! kpromo file promotion manifests: `load_files` (a filestores file and a files manifest).
//!
//! Input: the filestores file, a NUL byte, the files manifest (no NUL: both get the whole text).
//! The loader reads files, so the texts are written to a scratch directory first.
#![no_main]

use std::path::PathBuf;
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
        let dir = scratch_base().join(format!("ferry-fuzz-manifest-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (stores, files) = text.split_once('\0').unwrap_or((text, text));
    let dir = scratch();
    let (stores_path, files_path) = (dir.join("filepromoter-manifest.yaml"), dir.join("files.yaml"));
    std::fs::write(&stores_path, stores).unwrap();
    std::fs::write(&files_path, files).unwrap();
    match ferry_manifest::load_files(&stores_path, &files_path) {
        Ok(m) => {
            assert!(!m.destinations.is_empty(), "no destination accepted");
            assert!(!m.files.is_empty(), "no file accepted");
            assert!(m.source.line >= 1);
            for store in &m.destinations {
                assert!(store.line >= 1);
                assert!(!store.base.is_empty());
            }
            for f in &m.files {
                assert!(f.line >= 1);
                // Names and digests print back to text that parses to the same value.
                assert_eq!(f.sha256.as_str().parse::<ferry_oci::Digest>().as_ref(), Ok(&f.sha256));
                let name = f.name.as_str();
                assert_eq!(ferry_oci::ObjectName::parse(name).as_ref(), Ok(&f.name));
                assert!(!name.starts_with('/') && !name.split('/').any(|s| s.is_empty() || s == ".."));
            }
        }
        Err(errors) => {
            assert!(errors.iter().next().is_some(), "an error without any message");
        }
    }
});
