#!/usr/bin/env python3
"""An independent check of a cosign key signature, written from cosign's published format
(specs/SIGNATURE_SPEC.md) with pyca/cryptography, sharing no code with Ferry.

    cosign_verify.py HOST:PORT REPO DIGEST PUBLIC_KEY.pem [attestation]

Reads the sha256-<hex>.sig image of DIGEST in REPO over plain HTTP, and exits 0 when one of its
layers is a simple-signing payload whose blob matches its digest, whose
dev.cosignproject.cosign/signature verifies with the key (ECDSA P-256, SHA-256, DER), and whose
critical.image.docker-manifest-digest is DIGEST; else exits 1 saying why.

With `attestation`, reads the sha256-<hex>.att image instead and exits 0 when one of its layers
is a DSSE envelope (secure-systems-lab/dsse: the signature is over the PAE of the payload type
and payload) signed by the key, holding an in-toto statement of predicate type
https://slsa.dev/provenance/v1 whose subject has DIGEST.
"""
import base64
import hashlib
import json
import sys
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def get(url, accept=None):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request) as response:
        return response.read()


def checked_layers(host, repo, digest, suffix, media_type, reasons):
    """The layers of DIGEST's sha256-<hex>SUFFIX image of MEDIA_TYPE, each with its blob checked
    against the layer's digest; the others are noted in REASONS."""
    tag = digest.replace(":", "-") + suffix
    manifest = json.loads(get(f"http://{host}/v2/{repo}/manifests/{tag}", "application/vnd.oci.image.manifest.v1+json"))
    for layer in manifest["layers"]:
        if layer["mediaType"] != media_type:
            reasons.append(f"{layer['digest']}: media type {layer['mediaType']}")
            continue
        blob = get(f"http://{host}/v2/{repo}/blobs/{layer['digest']}")
        if "sha256:" + hashlib.sha256(blob).hexdigest() != layer["digest"]:
            reasons.append(f"{layer['digest']}: blob does not match")
            continue
        yield layer, blob


def verify_attestation(host, repo, digest, key):
    reasons = []
    for layer, blob in checked_layers(host, repo, digest, ".att", "application/vnd.dsse.envelope.v1+json", reasons):
        envelope = json.loads(blob)
        payload = base64.b64decode(envelope["payload"])
        kind = envelope["payloadType"].encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
        signed = False
        for signature in envelope["signatures"]:
            try:
                key.verify(base64.b64decode(signature["sig"]), pae, ec.ECDSA(hashes.SHA256()))
                signed = True
            except InvalidSignature:
                pass
        if not signed:
            reasons.append(f"{layer['digest']}: not signed by this key")
            continue
        statement = json.loads(payload)
        subjects = [s["digest"].get("sha256") for s in statement["subject"]]
        if statement["predicateType"] != "https://slsa.dev/provenance/v1":
            reasons.append(f"{layer['digest']}: predicate type {statement['predicateType']}")
        elif digest.split(":", 1)[1] not in subjects:
            reasons.append(f"{layer['digest']}: about {subjects}")
        else:
            source = statement["predicate"]["buildDefinition"]["externalParameters"]["source"]["reference"]
            print(f"verified provenance of {digest}: from {source}")
            return 0
    print("not verified: " + "; ".join(reasons))
    return 1


def main():
    host, repo, digest, key_file = sys.argv[1:5]
    key = serialization.load_pem_public_key(open(key_file, "rb").read())
    if sys.argv[5:] == ["attestation"]:
        return verify_attestation(host, repo, digest, key)
    reasons = []
    for layer, blob in checked_layers(host, repo, digest, ".sig", "application/vnd.dev.cosign.simplesigning.v1+json", reasons):
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        try:
            key.verify(signature, blob, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            reasons.append(f"{layer['digest']}: not signed by this key")
            continue
        payload = json.loads(blob)
        critical = payload["critical"]
        if critical["type"] != "cosign container image signature":
            reasons.append(f"{layer['digest']}: type {critical['type']}")
        elif critical["image"]["docker-manifest-digest"] != digest:
            reasons.append(f"{layer['digest']}: signs {critical['image']['docker-manifest-digest']}")
        else:
            print(f"verified {digest} as {critical['identity']['docker-reference']}")
            return 0
    print("not verified: " + "; ".join(reasons))
    return 1


if __name__ == "__main__":
    sys.exit(main())
