//! Every parser gets attacker-controlled bytes (key files, manifests and blobs from registries), so
//! none may panic: each is fed many mutations of a valid input (bytes flipped, cut, duplicated) and
//! must return, Ok or Err.

use std::path::PathBuf;

use ferry_oci::Digest;
use ferry_sign::dsse::Envelope;
use ferry_sign::keys::{PrivateKey, PublicKey};
use ferry_sign::provenance;
use ferry_sign::signature_image::{self, Layer};
use ferry_sign::simple_signing;

fn read(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir).join(name)).unwrap()
}

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutations(seed: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64);
    (0..count)
        .map(|_| {
            let mut m = seed.to_vec();
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    0 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m[i] = rng.next() as u8;
                    }
                    1 => m.truncate(rng.below(m.len() + 1)),
                    2 if !m.is_empty() => {
                        let (a, b) = (rng.below(m.len()), rng.below(m.len()));
                        let (a, b) = (a.min(b), a.max(b));
                        let piece = m[a..b].to_vec();
                        let at = rng.below(m.len());
                        m.splice(at..at, piece);
                    }
                    _ => {
                        let at = rng.below(m.len() + 1);
                        m.insert(at, *b"{}[]\",:\\0".get(rng.below(10)).unwrap_or(&b'x'));
                    }
                }
            }
            m
        })
        .collect()
}

#[test]
fn parsers_do_not_panic_on_mutated_input() {
    let digest = Digest::of(b"x");
    for m in mutations(&read("golden", "sig-manifest.json"), 3000) {
        let _ = signature_image::parse(&m);
        let _ = signature_image::merge(Some(&m), &Layer::signature(b"p".to_vec(), b"s"));
    }
    for m in mutations(&read("golden", "att-envelope.json"), 2000) {
        if let Ok(env) = Envelope::from_json(&m) {
            let _ = env.payload_bytes();
        }
    }
    for m in mutations(&read("golden", "provenance-statement.json"), 2000) {
        let _ = provenance::check_statement(&m, &digest, provenance::SLSA_PROVENANCE_V1);
    }
    for m in mutations(&read("fixtures", "payload.json"), 2000) {
        let _ = simple_signing::check_payload(&m, &digest);
    }
    for name in ["p256-pkcs8.pem", "p256-sec1.pem", "rsa-pkcs8.pem"] {
        for m in mutations(&read("fixtures", name), 1000) {
            let _ = PrivateKey::from_pem(&m, b"");
        }
    }
    for m in mutations(&read("fixtures", "p256.pub"), 1000) {
        let _ = PublicKey::from_pem(&m);
    }
}

#[test]
fn encrypted_key_file_does_not_panic_on_mutated_input() {
    // Fewer: each mutation that still parses costs one scrypt run.
    let pem = String::from_utf8(read("fixtures", "p256-cosign.key")).unwrap();
    let body_start = pem.find('\n').unwrap() + 1;
    let body_end = pem.rfind("-----END").unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let json = b64.decode(pem[body_start..body_end].replace('\n', "")).unwrap();
    for m in mutations(&json, 60) {
        let text = format!(
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            b64.encode(&m)
        );
        assert!(PrivateKey::from_pem(text.as_bytes(), b"ferry-test-password").is_err() || m == json);
    }
}
