#!/usr/bin/env bash
# Mirroring benchmark: `ferry mirror` into three local stores against `skopeo copy --all` of the
# same images into three `oci:` layouts, side by side in one run, from one real CNCF distribution
# registry on loopback holding the bench/promote.sh image set.
#
#   bench/mirror.sh [IMAGES] [BASE_KIB] [OWN_KIB]      (default 50 images, 4096 KiB, 512 KiB)
#
# Prints, per round and as medians: wall times and their ratio, Ferry's bytes read from the
# registry against the unique blob bytes (target 1.0x), and the no-op re-runs.
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-50}; base_kib=${2:-4096}; own_kib=${3:-512}
command -v docker-registry >/dev/null && command -v skopeo >/dev/null || {
  echo "needs docker-registry and skopeo (apt-get install docker-registry skopeo)"; exit 2; }

target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p ferry -p ferry-testkit --examples --bins
work=$(mktemp -d)
# The registry's storage and every destination are on tmpfs (/dev/shm) by default, as in
# bench/promote.sh, so that the run measures the copiers rather than this machine's disk;
# BENCH_STORAGE=disk keeps them under $TMPDIR.
storage=$work
if [ "${BENCH_STORAGE:-tmpfs}" = tmpfs ] && [ -d /dev/shm ]; then storage=$(mktemp -d -p /dev/shm); fi
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work" "$storage"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $storage/registry}}
http: {addr: 127.0.0.1:$port}
CFG
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
src=127.0.0.1:$port
"$target/release/examples/seed" "$src/staging" "$images" "$base_kib" "$own_kib" "$work/manifests" "oci:$work/unused"

now() { date +%s.%N; }
seconds() { local t0; t0=$(now); "$@" >/dev/null; python3 -c "print(round($(now) - $t0, 3))"; }
ferry_run() { # OUT_JSON
  "$target/release/ferry" mirror --thin-manifest-dir "$work/manifests" --from "$src/staging" \
    --to "$dest/ferry1" --to "$dest/ferry2" --to "$dest/ferry3" --confirm --output json >"$1"
}
# One oci: layout per destination holding every image (ref imgNNN). A layout's index.json is not
# safe for concurrent writers, so each layout gets one skopeo at a time; the three run in parallel.
skopeo_run() {
  for k in 1 2 3; do
    for i in $(seq 0 $((images - 1))); do
      name=$(printf 'img%03d' "$i")
      skopeo copy --quiet --all --preserve-digests --src-tls-verify=false \
        "docker://$src/staging/$name:v1" "oci:$dest/skopeo$k:$name"
    done &
  done
  wait
}

rounds=${BENCH_ROUNDS:-3}
results=()
for round in $(seq "$rounds"); do
  dest=$storage/round$round; mkdir -p "$dest"
  ferry_first=$(seconds ferry_run "$work/first.json")
  skopeo_first=$(seconds skopeo_run)
  ferry_again=$(seconds ferry_run "$work/again.json")
  skopeo_again=$(seconds skopeo_run)
  bytes=$(python3 - "$work/first.json" "$work/again.json" <<'PY'
import json, sys
first, again = (json.load(open(f))["summary"] for f in sys.argv[1:])
assert first["copies_failed"] == 0 and first["images_failed"] == 0, first
assert first["copies_done"] == 3 * first["blobs"], first
assert again["blobs_read"] == 0 and again["copies_planned"] + again["copies_done"] == 0, again
print(first["bytes_read"], first["blob_bytes"], first["blobs_read"], first["blobs"], again["bytes_read"])
PY
)
  read -r read_bytes unique_bytes blobs_read blobs again_bytes <<<"$bytes"
  # The three stores hold the same bytes, and each blob is its own name's content.
  for k in 2 3; do diff -r "$dest/ferry1" "$dest/ferry$k" >/dev/null; done
  (cd "$dest/ferry1" && for f in sha256:*; do [ "sha256:$(sha256sum "$f" | cut -c1-64)" = "$f" ] || { echo "bad $f"; exit 1; }; done)
  echo "round $round: mirror ferry ${ferry_first}s skopeo ${skopeo_first}s; no-op ferry ${ferry_again}s skopeo ${skopeo_again}s;" \
    "ferry read $read_bytes bytes in $blobs_read blobs for $unique_bytes unique bytes in $blobs blobs (re-run read $again_bytes)"
  results+=("$ferry_first $skopeo_first $ferry_again $skopeo_again $read_bytes $unique_bytes")
  rm -rf "$dest"
done

printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print(f"median of {len(rows)} rounds          ferry     skopeo   ratio")
print(f"mirror ({sys.argv[1]} images x3 stores) {med[0]:8.2f}s {med[1]:8.2f}s  {med[0]/med[1]:.3f}")
print(f"no-op re-run                  {med[2]:8.2f}s {med[3]:8.2f}s  {med[2]/med[3]:.3f}")
print(f"ferry bytes read / unique blob bytes: {int(med[4])} / {int(med[5])} = {med[4]/med[5]:.3f}x")
' "$images"
