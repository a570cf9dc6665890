//! The real client users pull with: `skopeo` (Debian's package), run the way the tests need it.

use std::path::Path;
use std::process::Command;

use ferry_oci::Digest;

use crate::images::TestImage;

/// Runs skopeo and returns its stdout, failing the test with its stderr otherwise.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").args(args).output().expect("skopeo is installed (apt-get install skopeo)");
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Pulls `source` (a `docker://...` reference, over plain HTTP) with every architecture and the
/// digests kept into the directory `target` (skopeo's `dir:` layout), as a user would.
pub fn pull_all(source: &str, target: &Path) {
    let target = format!("dir:{}", target.display());
    skopeo(&["copy", "--all", "--preserve-digests", "--src-tls-verify=false", source, &target]);
}

/// Checks that `target`, filled by [`pull_all`], holds `image` byte for byte: the top manifest
/// and every blob.
pub fn assert_pulled_byte_exact(target: &Path, image: &TestImage) {
    let manifest = std::fs::read(target.join("manifest.json")).expect("skopeo wrote manifest.json");
    assert_eq!(Digest::of(&manifest), *image.digest(), "top manifest in {}", target.display());
    for blob in &image.blobs {
        let bytes = std::fs::read(target.join(blob.digest.hex()))
            .unwrap_or_else(|e| panic!("skopeo did not fetch {}: {e}", blob.digest));
        assert_eq!(Digest::of(&bytes), blob.digest);
    }
}
