//! A manual interoperability check: sigstore-rs (Sigstore's Rust implementation of cosign's
//! verification) reads and verifies what ferry-sign writes. Run through `run.sh`, which starts a
//! registry on 127.0.0.1:5056, pushes an image and Ferry's `.sig` image for it (two signatures,
//! merged), then runs this with the fixtures folder, the image reference and the second key.

use ferry_sign::keys::{PrivateKey, PublicKey};
use ferry_sign::signer::{KeySigner, Signer as _};
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::{verify_constraints, ClientBuilder, CosignCapabilities};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};

fn key_verifier(pem: &str) -> VerificationConstraintVec {
    vec![Box::new(PublicKeyVerifier::new(pem.as_bytes(), &SigningScheme::ECDSA_P256_SHA256_ASN1).unwrap())]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (fixtures, image, second_pub) = (&args[1], args[2].parse::<OciReference>().unwrap(), &args[3]);
    let read = |n: &str| std::fs::read(format!("{fixtures}/{n}")).unwrap();
    let pub_pem = String::from_utf8(read("p256.pub")).unwrap();
    let norm = |p: &str| PublicKey::from_pem(p.as_bytes()).unwrap();

    // Encrypted key files, both ways.
    let theirs = SigStoreKeyPair::from_encrypted_pem(&read("p256-cosign.key"), b"ferry-test-password").unwrap();
    assert_eq!(norm(&theirs.public_key_to_pem().unwrap()), norm(&pub_pem));
    let ours = PrivateKey::generate();
    let ours_file = ours.to_encrypted_pem(b"pw").unwrap();
    let read_by_them = SigStoreKeyPair::from_encrypted_pem(ours_file.as_bytes(), b"pw").unwrap();
    assert_eq!(norm(&read_by_them.public_key_to_pem().unwrap()), ours.public_key());
    let their_file = theirs.private_key_to_encrypted_pem(b"pw2").unwrap();
    assert_eq!(PrivateKey::from_pem(their_file.as_bytes(), b"pw2").unwrap().public_key(), norm(&pub_pem));
    println!("ok: encrypted key files interoperate both ways with sigstore-rs");

    // A raw signature.
    let vk = CosignVerificationKey::from_pem(pub_pem.as_bytes(), &SigningScheme::ECDSA_P256_SHA256_ASN1).unwrap();
    let signer = KeySigner::new(PrivateKey::from_pem(&read("p256-pkcs8.pem"), b"").unwrap());
    let sig = signer.sign(b"hello").unwrap();
    vk.verify_signature(Signature::Raw(&sig), b"hello").unwrap();
    assert!(vk.verify_signature(Signature::Raw(&sig), b"hellp").is_err());
    println!("ok: sigstore-rs verifies a Ferry ECDSA signature, and not over other bytes");

    // The .sig image in the registry.
    let mut client = ClientBuilder::default()
        .with_oci_client_config(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() })
        .build()
        .unwrap();
    let layers = client.trusted_signature_layers(&Auth::Anonymous, &image).await.unwrap();
    assert_eq!(layers.len(), 2, "sigstore-rs should read both merged signatures");
    for layer in &layers {
        println!("  layer for {}", layer.simple_signing.critical.image.docker_manifest_digest);
    }
    verify_constraints(&layers, key_verifier(&pub_pem).iter()).unwrap();
    verify_constraints(&layers, key_verifier(&std::fs::read_to_string(second_pub).unwrap()).iter()).unwrap();
    println!("ok: sigstore-rs reads both signatures of the merged .sig image and verifies each key's");
    let stranger = PrivateKey::generate().public_key().to_pem();
    assert!(verify_constraints(&layers, key_verifier(&stranger).iter()).is_err());
    println!("ok: sigstore-rs refuses the image for a key that signed nothing");
}
