#!/usr/bin/env python3
"""Checks ferry-sign's golden files (tests/golden, written by tests/cosign_compat.rs) with other
implementations: pyca/cryptography verifies the .sig layer's ECDSA signature, securesystemslib
(the Python side of the library cosign's Go DSSE code comes from) verifies the attestation's DSSE
envelope, and the in-toto attestation framework's own protobuf bindings parse the statement and
the SLSA v1 predicate strictly (an unknown or mistyped field fails).

    pip install cryptography "securesystemslib[crypto]" in-toto-attestation
    python3 crates/ferry-sign/tests/interop/check_golden.py
"""
import base64, hashlib, json, pathlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

here = pathlib.Path(__file__).resolve().parent
fixtures, golden = here.parent / "fixtures", here.parent / "golden"
public = serialization.load_pem_public_key((fixtures / "p256.pub").read_bytes())
digest = (fixtures / "digest.txt").read_text().strip()


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


# .sig image: layer = payload.json, annotation = base64 DER signature over it; config referenced.
manifest = json.loads((golden / "sig-manifest.json").read_bytes())
config = (golden / "sig-config.json").read_bytes()
assert manifest["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config), "digest": sha256(config)}
[layer] = manifest["layers"]
payload = (fixtures / "payload.json").read_bytes()
assert layer["digest"] == sha256(payload) and layer["size"] == len(payload)
assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
try:
    public.verify(signature, payload + b" ", ec.ECDSA(hashes.SHA256()))
    raise SystemExit("FAIL: a tampered payload verified")
except InvalidSignature:
    pass
assert json.loads(config)["rootfs"]["diff_ids"] == [layer["digest"]]
print("ok: .sig layer signature verifies with pyca/cryptography")

# .att image: layer = DSSE envelope, annotations as cosign writes them.
envelope_bytes = (golden / "att-envelope.json").read_bytes()
[att] = json.loads((golden / "att-manifest.json").read_bytes())["layers"]
assert att["digest"] == sha256(envelope_bytes) and att["size"] == len(envelope_bytes)
assert att["annotations"] == {"dev.cosignproject.cosign/signature": "", "predicateType": "https://slsa.dev/provenance/v1"}
envelope = Envelope.from_dict(json.loads(envelope_bytes))
assert envelope.payload_type == "application/vnd.in-toto+json"
# keyid "" as cosign writes it; securesystemslib only tries keys whose keyid equals the signature's.
key = SSlibKey(keyid="", keytype="ecdsa", scheme="ecdsa-sha2-nistp256", keyval={"public": (fixtures / "p256.pub").read_text()})
envelope.verify([key], 1)
print("ok: DSSE envelope verifies with securesystemslib")

statement_json = json.loads(envelope.payload)
assert envelope.payload == (golden / "provenance-statement.json").read_bytes()
proto = json_format.ParseDict(statement_json, statement_pb2.Statement())
Statement.copy_from_pb(proto).validate()
assert proto.subject[0].digest["sha256"] == digest[len("sha256:"):]
provenance = json_format.ParseDict(statement_json["predicate"], provenance_pb2.Provenance())
assert provenance.run_details.builder.version["ferry"]
assert provenance.run_details.metadata.started_on.seconds > 0
print("ok: statement and SLSA v1 predicate parse strictly with in-toto's protobuf bindings")
