#!/usr/bin/env bash
# Manual check that sigstore-rs accepts ferry-sign's output (see src/main.rs). Needs
# docker-registry and skopeo (Debian packages; scripts/test installs both) and python3 with
# pyca/cryptography. Run from anywhere; uses the workspace's CARGO_TARGET_DIR if set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ws=$(cd "$here/../../../../.." && pwd)
fixtures=$ws/crates/ferry-sign/tests/fixtures
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ws/target}
work=$(mktemp -d)
reg=127.0.0.1:5056
repo=team/app

printf 'version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s/registry}}\nhttp: {addr: %s}\n' \
    "$work" "$reg" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill "$registry_pid"; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://$reg/v2/" > /dev/null && break; sleep 0.1; done

# A one-layer image, and a second P-256 key.
python3 - "$work" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization as s
work = sys.argv[1]; root = work + "/img"; os.makedirs(root + "/blobs/sha256")
def put(b):
    d = hashlib.sha256(b).hexdigest(); open(f"{root}/blobs/sha256/{d}", "wb").write(b); return "sha256:" + d, len(b)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    data = b"hello ferry\n"; ti = tarfile.TarInfo("hello.txt"); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
raw = buf.getvalue(); ld, ls = put(gzip.compress(raw, mtime=0))
cd, cs = put(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}}).encode())
md, ms = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}).encode())
open(root + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
open(root + "/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
k = ec.generate_private_key(ec.SECP256R1())
open(work + "/second.key", "wb").write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()))
open(work + "/second.pub", "wb").write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
PY
skopeo copy -q --dest-tls-verify=false "oci:$work/img:v1" "docker://$reg/$repo:v1"
digest=sha256:$(skopeo inspect --tls-verify=false --raw "docker://$reg/$repo:v1" | sha256sum | cut -d' ' -f1)

# Pushes a folder written by the sign_to_dir example under TAG.
push() {
    local dir=$1 tag=$2 blob location
    for blob in "$dir"/blobs/*; do
        location=$(curl -sf -X POST -D - -o /dev/null "http://$reg/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: //Ip')
        case $location in http*) ;; *) location="http://$reg$location" ;; esac
        curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$blob" \
            "$location&digest=sha256:$(basename "$blob")" > /dev/null
    done
    curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$dir/manifest.json" \
        "http://$reg/v2/$repo/manifests/$tag" > /dev/null
}
tag="sha256-${digest#sha256:}.sig"
cd "$ws"
COSIGN_PASSWORD=ferry-test-password cargo run -q -p ferry-sign --example sign_to_dir -- \
    "$fixtures/p256-cosign.key" "$reg/$repo" "$digest" "$work/sig1"
push "$work/sig1" "$tag"
COSIGN_PASSWORD= cargo run -q -p ferry-sign --example sign_to_dir -- \
    "$work/second.key" "$reg/$repo" "$digest" "$work/sig2" "$work/sig1/manifest.json"
push "$work/sig2" "$tag"
curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/$repo/manifests/$tag" \
    | cmp - "$work/sig2/manifest.json" && echo "ok: the registry serves the merged .sig manifest byte for byte"

cargo run -q --manifest-path "$here/Cargo.toml" -- "$fixtures" "$reg/$repo@$digest" "$work/second.pub"
