//! Writes what Ferry would push to sign (or attest) one image, as files, so that the crate's output
//! can be pushed with any registry client and checked by another implementation, e.g. pushed under
//! `sha256-<hex>.sig` and checked with `cosign verify --key cosign.pub --insecure-ignore-tlog`.
//!
//! `sign_to_dir KEY_FILE DOCKER_REFERENCE DIGEST OUT_DIR [EXISTING_MANIFEST] [--attest]`; the
//! key's password is read from `COSIGN_PASSWORD`, as cosign does. Writes `OUT_DIR/manifest.json`
//! and `OUT_DIR/blobs/<hex>` for each blob to upload.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ferry_sign::keys::PrivateKey;
use ferry_sign::provenance::{self, Promotion, Run, SLSA_PROVENANCE_V1};
use ferry_sign::signature_image;
use ferry_sign::signer::KeySigner;
use ferry_sign::verify;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let attest = args.iter().any(|a| a == "--attest");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--attest").collect();
    let [key_file, reference, digest, out, rest @ ..] = args.as_slice() else {
        return Err("usage: sign_to_dir KEY_FILE DOCKER_REFERENCE DIGEST OUT_DIR [EXISTING_MANIFEST] [--attest]".into());
    };
    let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
    let key = PrivateKey::from_pem(&std::fs::read(key_file)?, password.as_bytes())?;
    let signer = KeySigner::new(key);
    let digest: ferry_oci::Digest = digest.parse()?;
    let layer = if attest {
        let now = SystemTime::now();
        let statement = provenance::statement(
            &Promotion {
                destination: reference,
                digest: &digest,
                source: reference,
                manifest_file: "images.yaml",
                manifest_line: None,
                manifests_revision: None,
            },
            &Run {
                builder_id: "https://ferry.example/sign_to_dir",
                ferry_version: env!("CARGO_PKG_VERSION"),
                invocation_id: "sign_to_dir",
                started_on: now,
                finished_on: now,
            },
        );
        verify::attest(&signer, &statement, SLSA_PROVENANCE_V1)?
    } else {
        verify::sign_image(&signer, reference, &digest, &BTreeMap::new())?
    };
    let existing = rest.first().map(std::fs::read).transpose()?;
    let merged = signature_image::merge(existing.as_deref(), &layer)?;
    std::fs::create_dir_all(format!("{out}/blobs"))?;
    std::fs::write(format!("{out}/manifest.json"), &merged.manifest)?;
    for blob in &merged.blobs {
        std::fs::write(format!("{out}/blobs/{}", blob.digest.hex()), &blob.bytes)?;
    }
    println!("{} ({} blobs, changed: {})", merged.digest, merged.blobs.len(), merged.changed);
    Ok(())
}
