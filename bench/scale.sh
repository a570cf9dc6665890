#!/usr/bin/env bash
# Scale benchmark: a thin manifest directory the size of a large real project, promoted by Ferry
# into real CNCF distribution registries on loopback (storage in /dev/shm).
#
#   bench/scale.sh [PROJECTS] [IMAGES] [DIGESTS] [PREFIXES]    (default 15 130 4 7)
#
# PROJECTS projects share IMAGES tiny two-arch images (a few KiB), DIGESTS digests each (tags
# v1.0.N), all sourced from one staging registry; each project promotes to 3 registries x PREFIXES
# prefixes. The defaults give 520 digests, 21 destinations, 10,920 edges. Measures:
#   1. the first promotion of the whole tree: wall time, requests per host, requests per edge;
#   2. a full no-op promotion: wall time, requests per edge;
#   3. after a commit adding one image (DIGESTS digests) to one project, --since HEAD~1: wall time,
#      requests;
#   4. ferry validate --base HEAD~1 on the whole tree: wall time.
# Requests are counted exactly from the registries' access logs (one line per request).
set -euo pipefail
cd "$(dirname "$0")/.."
projects=${1:-15}; images=${2:-130}; digests=${3:-4}; prefixes=${4:-7}
command -v docker-registry >/dev/null || { echo "needs docker-registry (apt-get install docker-registry)"; exit 2; }

cargo build --release --quiet -p ferry -p ferry-testkit --examples --bins
ferry=$PWD/target/release/ferry
work=$(mktemp -d)
storage=$work
if [ "${BENCH_STORAGE:-tmpfs}" = tmpfs ] && [ -d /dev/shm ]; then storage=$(mktemp -d -p /dev/shm); fi
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work" "$storage"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() { # NAME VAR: starts registry NAME, sets VAR to its host:port; access log in $work/NAME/access
  local name=$1 port; port=$(free_port)
  mkdir -p "$work/$name"
  cat >"$work/$name/config.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $storage/$name}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
CFG
  # The access log (combined log format) goes to standard output, the rest to standard error.
  docker-registry serve "$work/$name/config.yml" >"$work/$name/access" 2>"$work/$name/log" &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  printf -v "$2" '127.0.0.1:%s' "$port"
}

names=(src dst1 dst2 dst3)
start_registry src src
dests=()
for i in 1 2 3; do
  start_registry "dst$i" host
  for p in $(seq "$prefixes"); do dests+=("$host/prod$p"); done
done
dir=$work/manifests
t0=$(date +%s.%N)
target/release/examples/seed_scale "$src/staging" "$projects" "$images" "$digests" "$dir" "${dests[@]}" >"$work/extra.yaml"
echo "seeding took $(python3 -c "print(round($(date +%s.%N) - $t0, 1))")s"
git_() { git -C "$dir" -c user.name=bench -c user.email=bench@localhost -c commit.gpgsign=false "$@"; }
git_ init --quiet
git_ add -A && git_ commit --quiet -m tree

edges=$((images * digests * ${#dests[@]}))
extra_edges=$((digests * ${#dests[@]}))
count() { # requests logged so far by each registry, space separated
  sleep 0.5 # the access log line is written after the response
  for n in "${names[@]}"; do grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) ' "$work/$n/access" || true; done | xargs
}
kinds() { # BEFORE...: the requests logged since the counts BEFORE, by method, API and status, all hosts
  local i args=()
  for i in "${!names[@]}"; do args+=("$work/${names[$i]}/access" "$1"); shift; done
  python3 - "${args[@]}" <<'PY'
import collections, re, sys
kinds = collections.Counter()
for path, skip in zip(sys.argv[1::2], sys.argv[2::2]):
    seen = 0
    for line in open(path, errors="replace"):
        m = re.search(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d+)', line)
        if not m:
            continue
        seen += 1
        if seen <= int(skip):
            continue
        method, target, status = m.groups()
        path_ = target.split("?")[0]
        api = next((k for k in ("tags/list", "referrers", "blobs/uploads", "manifests", "blobs", "_catalog") if f"/{k}" in path_), "v2")
        if api == "blobs/uploads" and method == "POST":
            api += " (mount)" if "mount=" in target else " (start)"
        kinds[f"{method} {api} {status}"] += 1
for kind, n in kinds.most_common():
    print(f"   {n:>8}  {kind}")
PY
}
now() { date +%s.%N; }
measure() { # LABEL EDGES CMD...: runs CMD, prints wall time and requests; sets secs and reqs
  local label=$1 e=$2 before after t0 t1 status=0; shift 2
  before=($(count)); t0=$(now)
  "$@" >"$work/out" 2>"$work/err" || status=$?
  t1=$(now); after=($(count))
  secs=$(python3 -c "print(round($t1 - $t0, 3))")
  local per=() i; reqs=0
  for i in "${!names[@]}"; do
    per+=("${names[$i]}=$((after[i] - before[i]))"); reqs=$((reqs + after[i] - before[i]))
  done
  echo
  echo "== $label (exit $status)"
  [ "$status" = 0 ] || { echo "   stderr:"; tail -5 "$work/err" | sed 's/^/   /'; }
  echo "   wall time: ${secs}s"
  echo "   requests per host: ${per[*]} (total $reqs)"
  kinds "${before[@]}"
  [ "$e" -gt 0 ] && echo "   requests per edge: $(python3 -c "print(round($reqs / $e, 3))") over $e edges"
  return 0
}
verdict() { python3 -c "import sys; print('met' if $1 else 'NOT met')"; }
summary() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print("   summary:", s)' "$work/out" 2>/dev/null || true; }
results=()

echo "tree: $projects projects, $images images, $((images * digests)) digests, ${#dests[@]} destinations" \
  "(3 registries x $prefixes prefixes), $edges edges; date $(date -u '+%F %T UTC')"

measure "1. first promotion of the whole tree" "$edges" \
  "$ferry" promote images --thin-manifest-dir "$dir" --confirm --output json
summary
r=$(python3 -c "print(round($reqs / $edges, 3))")
results+=("first promotion: ${secs}s, $r requests/edge (target <= 9 requests/edge: $(verdict "$r <= 9"))")

measure "2. full no-op promotion" "$edges" \
  "$ferry" promote images --thin-manifest-dir "$dir" --confirm --output json
summary
r=$(python3 -c "print(round($reqs / $edges, 3))")
results+=("no-op: ${secs}s, $r requests/edge (targets <= 15 s: $(verdict "$secs <= 15"); <= 1.1 requests/edge: $(verdict "$r <= 1.1"))")

cat "$work/extra.yaml" >>"$dir/images/p00/images.yaml"
git_ commit --quiet -am "add image extra to p00"
measure "3. --since HEAD~1 after adding one image ($digests digests, $extra_edges edges)" "$extra_edges" \
  "$ferry" promote images --thin-manifest-dir "$dir" --since HEAD~1 --confirm --output json
summary
r=$(python3 -c "print(round($reqs / $extra_edges, 3))")
results+=("--since one image: ${secs}s, $reqs requests = $r per edge of that image (target <= 1 s: $(verdict "$secs <= 1"))")

measure "4. ferry validate --base HEAD~1 on the whole tree" 0 \
  "$ferry" validate --thin-manifest-dir "$dir" --base HEAD~1
sed 's/^/   | /' "$work/out" | head -5
results+=("validate --base: ${secs}s (target <= 1 s: $(verdict "$secs <= 1"))")

echo
echo "== results ($(date -u '+%F %T UTC'), $(nproc) cores, storage ${BENCH_STORAGE:-tmpfs})"
printf '   %s\n' "${results[@]}"
