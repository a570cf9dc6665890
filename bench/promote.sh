#!/usr/bin/env bash
# Promotion benchmark: Ferry against `skopeo copy --all --preserve-digests` (20 at a time) over the
# same edges, side by side in one run, on real CNCF distribution registries on loopback.
#
#   bench/promote.sh [IMAGES] [BASE_KIB] [OWN_KIB]     (default 50 images, 4096 KiB, 512 KiB)
#
# Each image has two architectures; every image shares the base layer of its architecture and has
# its own layer per architecture. One source registry; Ferry promotes to three registries, skopeo
# to three others. Prints wall times and the ratios; then the no-op re-runs.
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-50}; base_kib=${2:-4096}; own_kib=${3:-512}
command -v docker-registry >/dev/null && command -v skopeo >/dev/null || {
  echo "needs docker-registry and skopeo (apt-get install docker-registry skopeo)"; exit 2; }

cargo build --release --quiet -p ferry -p ferry-testkit --examples --bins
work=$(mktemp -d)
# Registry storage: BENCH_STORAGE=disk keeps it under $TMPDIR; the default, tmpfs, puts it in
# /dev/shm so that the run measures the promoters rather than this machine's fsync latency (the
# distribution registry fsyncs every blob, link and tag file it writes).
storage=$work
if [ "${BENCH_STORAGE:-tmpfs}" = tmpfs ] && [ -d /dev/shm ]; then storage=$(mktemp -d -p /dev/shm); fi
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work" "$storage"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() { # NAME VAR: starts registry NAME, sets VAR to its host:port
  local name=$1 port; port=$(free_port)
  mkdir -p "$work/$name"
  cat >"$work/$name/config.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $storage/$name}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
CFG
  docker-registry serve "$work/$name/config.yml" >"$work/$name/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  printf -v "$2" '127.0.0.1:%s' "$port"
}

start_registry src src
target/release/examples/seed "$src/staging" "$images" "$base_kib" "$own_kib" "$work/manifests" "oci:$work/unused"
manifest="$work/manifests/manifests/demo/promoter-manifest.yaml"

now() { date +%s.%N; }
seconds() { local t0; t0=$(now); "$@" >/dev/null; python3 -c "print(round($(now) - $t0, 3))"; }
ferry_run() {
  target/release/ferry promote images --thin-manifest-dir "$work/manifests" --confirm --output json ${FERRY_ARGS:-} >"$work/ferry.json"
}
skopeo_run() {
  for i in $(seq 0 $((images - 1))); do
    name=$(printf 'img%03d' "$i")
    for d in "${skopeo_dests[@]}"; do
      echo "docker://$src/staging/$name:v1 docker://$d/prod/$name:v1"
    done
  done | xargs -P 20 -n 2 skopeo copy --quiet --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false
}

# Each round promotes into six fresh, empty registries: three for Ferry, three for skopeo.
rounds=${BENCH_ROUNDS:-3}
results=()
for round in $(seq "$rounds"); do
  ferry_dests=(); skopeo_dests=()
  for i in 1 2 3; do
    start_registry "r$round-ferry$i" host; ferry_dests+=("$host")
    start_registry "r$round-skopeo$i" host; skopeo_dests+=("$host")
  done
  printf 'registries:\n- name: %s/staging\n  src: true\n' "$src" >"$manifest"
  printf -- '- name: %s/prod\n' "${ferry_dests[@]}" >>"$manifest"
  ferry_first=$(seconds ferry_run)
  summary=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["bytes_read"], s["promoted"], s["failed"]+s["refused"])' "$work/ferry.json")
  skopeo_first=$(seconds skopeo_run)
  ferry_again=$(seconds ferry_run)
  skopeo_again=$(seconds skopeo_run)
  echo "round $round: promotion ferry ${ferry_first}s skopeo ${skopeo_first}s; no-op ferry ${ferry_again}s skopeo ${skopeo_again}s; ferry bytes read, promoted, refused+failed: $summary"
  results+=("$ferry_first $skopeo_first $ferry_again $skopeo_again")
  kill "${pids[@]:1}" 2>/dev/null || true; wait "${pids[@]:1}" 2>/dev/null || true; pids=("${pids[0]}")
done
unique=$(python3 -c "print(($base_kib*2 + $images*2*$own_kib)*1024 + $images*2*1024)")

printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print(f"median of {len(rows)} rounds        ferry     skopeo   ratio")
print(f"promotion ({sys.argv[1]} images x3)  {med[0]:8.2f}s {med[1]:8.2f}s  {med[0]/med[1]:.3f}")
print(f"no-op re-run                {med[2]:8.2f}s {med[3]:8.2f}s  {med[2]/med[3]:.3f}")
' "$images"
echo "unique source blob bytes: about $unique"
