//! `ferry serve`'s configuration: `Config::from_yaml`, then the validation of `Snapshot::from_config`
//! (URLs, templates, CIDRs, globs, limits) when the configuration names no file to read.
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

fn empty_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_base().join(format!("ferry-fuzz-serve-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let config = match ferry_serve::Config::from_yaml(text, "ferry.yaml") {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.field.is_empty() && !e.message.is_empty(), "error without field or message: {e:?}");
            return;
        }
    };
    // Files named by the configuration (inventories, locations, certificates) would be read from
    // wherever they point: only validate configurations that name none.
    let l = &config.locations;
    let reads_files = config.mirrors.iter().any(|m| m.inventory.is_some())
        || config.tls.is_some()
        || !(l.aws.is_empty() && l.gcp.is_empty() && l.azure.is_empty() && l.countries.is_none());
    if reads_files {
        return;
    }
    let mirrors = config.mirrors.len();
    match ferry_serve::Snapshot::from_config(config, empty_dir()) {
        Ok(snapshot) => {
            assert_eq!(snapshot.mirrors.len(), mirrors);
            for m in snapshot.mirrors.iter() {
                assert!(!m.name.is_empty());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
