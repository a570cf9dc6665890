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
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() { # NAME -> prints host:port
  local name=$1 port; port=$(free_port)
  mkdir -p "$work/$name"
  cat >"$work/$name/config.yml" <<CFG
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/$name/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
CFG
  docker-registry serve "$work/$name/config.yml" >"$work/$name/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  echo "127.0.0.1:$port"
}

src=$(start_registry src)
ferry_dests=(); skopeo_dests=()
for i in 1 2 3; do ferry_dests+=("$(start_registry ferry$i)"); skopeo_dests+=("$(start_registry skopeo$i)"); done

target/release/examples/seed "$src/staging" "$images" "$base_kib" "$own_kib" "$work/manifests" \
  "${ferry_dests[0]}/prod" "${ferry_dests[1]}/prod" "${ferry_dests[2]}/prod"

now() { date +%s.%N; }
seconds() { local t0; t0=$(now); "$@" >/dev/null; python3 -c "print(round($(now) - $t0, 3))"; }
ratio() { python3 -c "print(round($1 / $2, 3))"; }
ferry_run() { target/release/ferry promote images --thin-manifest-dir "$work/manifests" --confirm --output json >"$work/ferry.json"; }
skopeo_run() {
  for i in $(seq 0 $((images - 1))); do
    name=$(printf 'img%03d' "$i")
    for d in "${skopeo_dests[@]}"; do
      echo "docker://$src/staging/$name:v1 docker://$d/prod/$name:v1"
    done
  done | xargs -P 20 -n 2 skopeo copy --quiet --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false
}

ferry_first=$(seconds ferry_run)
read_bytes=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["bytes_read"], s["promoted"], s["failed"]+s["refused"])' "$work/ferry.json")
skopeo_first=$(seconds skopeo_run)
ferry_again=$(seconds ferry_run)
skopeo_again=$(seconds skopeo_run)
unique=$(python3 -c "print(($base_kib*2 + $images*2*$own_kib)*1024)")

printf '%-28s %10s %10s %8s\n' "" ferry skopeo ratio
printf '%-28s %9.2fs %9.2fs %8.3f\n' "promotion ($images images x3)" "$ferry_first" "$skopeo_first" "$(ratio "$ferry_first" "$skopeo_first")"
printf '%-28s %9.2fs %9.2fs %8.3f\n' "no-op re-run" "$ferry_again" "$skopeo_again" "$(ratio "$ferry_again" "$skopeo_again")"
echo "ferry: source bytes read, edges promoted, edges refused+failed: $read_bytes (unique layer bytes ~ $unique)"
