//! Checks against fixtures made independently of this crate (`fixtures/generate.py`: pyca/cryptography,
//! hashlib.scrypt, PyNaCl, json.dumps) and golden files of the exact bytes Ferry writes.
//!
//! Set `FERRY_UPDATE_GOLDEN=1` to rewrite the golden files after an intended format change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use ferry_oci::Digest;
use ferry_sign::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use ferry_sign::keys::{KeyError, PrivateKey, PublicKey};
use ferry_sign::provenance::{self, Promotion, Run, SLSA_PROVENANCE_V1};
use ferry_sign::signature_image::{self, SIMPLE_SIGNING_MEDIA_TYPE};
use ferry_sign::signer::{KeySigner, Signer, Verifier};
use ferry_sign::simple_signing;
use ferry_sign::verify::{self, LayerError};

const PASSWORD: &[u8] = b"ferry-test-password";
const REFERENCE: &str = "registry.example/team/app";

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("FERRY_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (FERRY_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(String::from_utf8_lossy(actual), String::from_utf8_lossy(&expected), "golden file {name}");
}

fn digest() -> Digest {
    String::from_utf8(fixture("digest.txt")).unwrap().trim().parse().unwrap()
}

fn public() -> PublicKey {
    PublicKey::from_pem(&fixture("p256.pub")).unwrap()
}

#[test]
fn reads_every_private_key_form_of_the_same_key() {
    for file in ["p256-pkcs8.pem", "p256-sec1.pem", "p256-cosign.key"] {
        let key = PrivateKey::from_pem(&fixture(file), PASSWORD).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(key.public_key(), public(), "{file}");
    }
    // The older label of the same format.
    let old = String::from_utf8(fixture("p256-cosign.key")).unwrap().replace("SIGSTORE", "COSIGN");
    assert_eq!(PrivateKey::from_pem(old.as_bytes(), PASSWORD).unwrap().public_key(), public());
}

#[test]
fn wrong_password_is_a_clear_error() {
    let err = PrivateKey::from_pem(&fixture("p256-cosign.key"), b"not it").unwrap_err();
    assert!(matches!(err, KeyError::WrongPassword));
    assert_eq!(err.to_string(), "wrong password or corrupt key file");
}

#[test]
fn other_key_types_are_named_and_refused() {
    for (name, what) in [("p384", "an ECDSA P-384 key"), ("ed25519", "an Ed25519 key"), ("rsa", "an RSA key")] {
        let private = PrivateKey::from_pem(&fixture(&format!("{name}-pkcs8.pem")), b"").unwrap_err().to_string();
        let public = PublicKey::from_pem(&fixture(&format!("{name}.pub"))).unwrap_err().to_string();
        for err in [private, public] {
            assert!(err.starts_with(&format!("not a P-256 key: found {what};")), "{name}: {err}");
        }
    }
}

#[test]
fn payload_matches_the_independently_written_one() {
    assert_eq!(simple_signing::payload(REFERENCE, &digest(), &BTreeMap::new()), fixture("payload.json"));
}

#[test]
fn verifies_signatures_made_elsewhere_including_high_s() {
    let payload = fixture("payload.json");
    let verifier = Verifier::new().with_key("p256.pub", public());
    let sigs = String::from_utf8(fixture("payload.sigs")).unwrap();
    let mut high_s = 0;
    for sig in sigs.lines() {
        assert_eq!(verifier.verify_base64(&payload, sig), Ok("p256.pub"), "{sig}");
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD.decode(sig).unwrap();
        high_s += usize::from(p256::ecdsa::Signature::from_der(&der).unwrap().normalize_s().is_some());
    }
    assert!(high_s > 0, "the fixture should hold at least one high-S signature (regenerate it)");

    let first = sigs.lines().next().unwrap();
    let mut tampered = payload.clone();
    tampered[20] ^= 1;
    assert!(verifier.verify_base64(&tampered, first).is_err());
    let stranger = Verifier::new().with_key("stranger.pub", PrivateKey::generate().public_key());
    let err = stranger.verify_base64(&payload, first).unwrap_err().to_string();
    assert!(err.starts_with("the signature was not made by the configured key: stranger.pub:"), "{err}");
}

#[test]
fn verifies_an_envelope_made_elsewhere() {
    let envelope = Envelope::from_json(&fixture("envelope.json")).unwrap();
    let verifier = Verifier::new().with_key("p256.pub", public());
    let (key, statement) = envelope.verify(&verifier, INTOTO_PAYLOAD_TYPE).unwrap();
    assert_eq!(key, "p256.pub");
    provenance::check_statement(&statement, &digest(), SLSA_PROVENANCE_V1).unwrap();
}

#[test]
fn sign_push_shape_and_verify_a_signature() {
    let signer = KeySigner::new(PrivateKey::from_pem(&fixture("p256-cosign.key"), PASSWORD).unwrap());
    let layer = verify::sign_image(&signer, REFERENCE, &digest(), &BTreeMap::new()).unwrap();
    let merged = signature_image::merge(None, &layer).unwrap();
    // RFC 6979 signing is deterministic, so with a fixed key the whole image is fixed bytes.
    golden("sig-manifest.json", &merged.manifest);
    golden("sig-config.json", &merged.blobs[0].bytes);
    assert_eq!(merged.blobs[1].bytes, fixture("payload.json"));
    assert!(!signature_image::merge(Some(&merged.manifest), &layer).unwrap().changed);

    let verifier =
        Verifier::new().with_key("other.pub", PrivateKey::generate().public_key()).with_key("p256.pub", public());
    let refs = signature_image::parse(&merged.manifest).unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].media_type, SIMPLE_SIGNING_MEDIA_TYPE);
    let blob = &merged.blobs[1].bytes;
    let ok = verify::verify_signature(&refs[0], blob, &verifier, &digest()).unwrap();
    assert_eq!((ok.key.as_str(), ok.docker_reference.as_str()), ("p256.pub", REFERENCE));

    // A signature that is valid, but for another digest.
    let other = Digest::of(b"another image");
    let err = verify::verify_signature(&refs[0], blob, &verifier, &other).unwrap_err();
    assert_eq!(err.to_string(), format!("the signature is for {}, not for {other}", digest()));
    // A blob that is not the one the manifest names.
    let mut swapped = blob.clone();
    swapped.push(b' ');
    assert!(matches!(
        verify::verify_signature(&refs[0], &swapped, &verifier, &digest()),
        Err(LayerError::BlobMismatch(_))
    ));
    // Only an untrusted key.
    let untrusted = Verifier::new().with_key("other.pub", PrivateKey::generate().public_key());
    assert!(matches!(verify::verify_signature(&refs[0], blob, &untrusted, &digest()), Err(LayerError::Signature(_))));
}

#[test]
fn attest_shape_and_verify_provenance() {
    let signer = KeySigner::new(PrivateKey::from_pem(&fixture("p256-pkcs8.pem"), b"").unwrap());
    let digest = digest();
    let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let statement = provenance::statement(
        &Promotion {
            destination: REFERENCE,
            digest: &digest,
            source: "staging.example/team/app",
            manifest_file: "images/team/images.yaml",
            manifest_line: Some(12),
            manifests_revision: Some("0123456789abcdef0123456789abcdef01234567"),
        },
        &Run {
            builder_id: "https://ci.example/ferry/promote",
            ferry_version: "0.1.0",
            invocation_id: "https://ci.example/runs/42",
            started_on: at,
            finished_on: at + Duration::from_secs(90),
        },
    );
    golden("provenance-statement.json", &statement);

    let layer = verify::attest(&signer, &statement, SLSA_PROVENANCE_V1).unwrap();
    let merged = signature_image::merge(None, &layer).unwrap();
    golden("att-manifest.json", &merged.manifest);
    golden("att-envelope.json", layer.blob());
    let again = signature_image::merge(Some(&merged.manifest), &layer).unwrap();
    assert!(!again.changed && again.manifest == merged.manifest);

    let refs = signature_image::parse(&merged.manifest).unwrap();
    let verifier = Verifier::new().with_key("p256.pub", public());
    let ok = verify::verify_attestation(&refs[0], layer.blob(), &verifier, &digest, SLSA_PROVENANCE_V1).unwrap();
    assert_eq!(ok.predicate["runDetails"]["metadata"]["finishedOn"], "2026-01-01T00:01:30Z");
    assert_eq!(ok.predicate["buildDefinition"]["externalParameters"]["manifest"]["line"], 12);

    let err = verify::verify_attestation(&refs[0], layer.blob(), &verifier, &digest, "https://spdx.dev/Document")
        .unwrap_err();
    assert!(err.to_string().contains("predicateType is \"https://slsa.dev/provenance/v1\""), "{err}");
    let err = verify::verify_attestation(&refs[0], layer.blob(), &verifier, &Digest::of(b"x"), SLSA_PROVENANCE_V1)
        .unwrap_err();
    assert!(err.to_string().starts_with("the attestation is about sha256:"), "{err}");
    // A signature layer is not an attestation.
    let sig = signature_image::merge(None, &verify::sign_image(&signer, REFERENCE, &digest, &BTreeMap::new()).unwrap())
        .unwrap();
    let sig_ref = &signature_image::parse(&sig.manifest).unwrap()[0];
    assert!(matches!(
        verify::verify_attestation(sig_ref, &sig.blobs[1].bytes, &verifier, &digest, SLSA_PROVENANCE_V1),
        Err(LayerError::WrongMediaType { .. })
    ));
}

#[test]
fn signer_reports_its_public_key() {
    let signer = KeySigner::new(PrivateKey::from_pem(&fixture("p256-sec1.pem"), b"").unwrap());
    assert_eq!(signer.public_key(), Some(public()));
}
