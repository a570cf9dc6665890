#!/usr/bin/env bash
# Proxy-mode benchmark: `ferry serve` streaming blobs itself (proxy mode) against nginx
# `proxy_pass`, both in front of the same origin (nginx serving a folder on tmpfs), side by side in
# one run, on loopback.
#
#   bench/proxy.sh [DURATION_S] [CONNECTIONS] [FILES] [FILE_MIB]   (defaults 10 16 64 1); BENCH_ROUNDS=3
#
# - Origin: nginx (1 worker, sendfile) serving FILES random files of FILE_MIB MiB, each named by its
#   sha256 digest, from a tmpfs folder.
# - nginx front: `location ~ ^/v2/.../blobs/(sha256:...)$ { proxy_pass http://origin/blobs/$digest; }`,
#   keep-alive to the origin, worker_processes 2, proxy_buffering on with 16 x 64 KiB buffers and no
#   temporary files (so it streams; nothing is written to disk). No check of the bytes.
# - Ferry front: one mirror `origin` (blobs on the origin, an inventory listing every file,
#   `proxy: true`), so every blob request is streamed by Ferry from the origin, and every whole blob
#   is hashed (sha256) and checked against its digest on the way, which nginx does not do. The same
#   files are also fetched as release files (`/<hex>`, the mirror's `files`, symlinks on the origin):
#   streamed by Ferry unchecked, row `ferry-unchecked`, to show what the check costs.
# - Both: no access log to disk (nginx access_log off; Ferry's JSON access log to /dev/null).
# - Before timing, one blob is fetched through each and its sha256 checked.
# - wrk (-t2 -cN -dS, a Lua script rotating the FILES paths) against one front, then the other,
#   BENCH_ROUNDS times alternating, after a 2 s warm-up each; medians are printed. wrk, the origin
#   and the front under test share the machine's cores.
# - bytes/s: body bytes (requests x file size) / seconds; CPU per byte: the front's user + system
#   time (all its processes and threads, /proc/PID/stat utime + stime) over the bytes it relayed,
#   as CPU ms per GiB. The origin's CPU is the same for both and is not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}; conns=${2:-16}; files=${3:-64}; mib=${4:-1}; rounds=${BENCH_ROUNDS:-3}

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y "${need[@]}" >/dev/null ||
    { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update >/dev/null &&
      DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y "${need[@]}" >/dev/null; }
fi
command -v nginx >/dev/null && command -v wrk >/dev/null && command -v curl >/dev/null &&
  command -v python3 >/dev/null || { echo "needs nginx, wrk, curl, python3" >&2; exit 2; }

timeout 900 cargo build --release --quiet -p ferry
ferry=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/ferry

work=$(mktemp -d)
shm=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$shm"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL PID: until URL answers (20 s at most) or the process is gone
  for _ in $(seq 200); do
    curl -fs -o /dev/null --max-time 1 "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "server for $1 exited" >&2; return 1; }
    sleep 0.1
  done
  echo "no answer from $1" >&2; return 1
}
origin_port=$(free_port); nginx_port=$(free_port); ferry_port=$(free_port)

# --- the blobs: FILES x FILE_MIB MiB of random bytes, named by digest --------------------------------
mkdir -p "$shm/blobs"
python3 - "$shm/blobs" "$files" "$mib" "$work" <<'PY'
import hashlib, os, sys
folder, files, mib, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
digests = []
for i in range(files):
    data = os.urandom(mib << 20)
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    open(os.path.join(folder, d), "wb").write(data)
    digests.append(d)
open(f"{work}/inventory.txt", "w").write("".join(d + "\n" for d in digests))
PY
# The same files as release files (`/<hex>`, no digest in the path: streamed unchecked).
mkdir -p "$shm/files"
while read -r d; do ln -s "../blobs/$d" "$shm/files/${d#sha256:}"; done <"$work/inventory.txt"
sed 's|^sha256:|/|' "$work/inventory.txt" >>"$work/inventory.txt.files"
cat "$work/inventory.txt.files" >>"$work/inventory.txt"
chmod -R a+rX "$shm"   # nginx's workers run as another user when started as root

cat >"$work/nginx.conf" <<CFG
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/tmp-body; proxy_temp_path $shm/tmp-proxy;
  fastcgi_temp_path $work/tmp-fcgi; uwsgi_temp_path $work/tmp-uwsgi; scgi_temp_path $work/tmp-scgi;
  keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$origin_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location ~ "^/v2/[a-z0-9]+(?:[._/-][a-z0-9]+)*/blobs/(?<digest>sha256:[a-f0-9]{64})\$" {
      proxy_pass http://origin/blobs/\$digest;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on; proxy_buffers 16 64k; proxy_max_temp_file_size 0;
    }
    location = /healthz { return 200 ok; }
    location / { return 404; }
  }
}
CFG
cat >"$work/origin.conf" <<CFG
worker_processes 1;
pid $work/origin.pid;
error_log $work/origin-error.log warn;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $work/o-body; proxy_temp_path $work/o-proxy;
  fastcgi_temp_path $work/o-fcgi; uwsgi_temp_path $work/o-uwsgi; scgi_temp_path $work/o-scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$origin_port;
    location /blobs/ { alias $shm/blobs/; }
    location /files/ { alias $shm/files/; }
    location = /healthz { return 200 ok; }
  }
}
CFG
cat >"$work/ferry.yaml" <<CFG
listen: 127.0.0.1:$ferry_port
upstream:
  registry: http://127.0.0.1:$origin_port/unused
  files: http://127.0.0.1:$origin_port/unused/
mirrors:
  - name: origin
    blobs: http://127.0.0.1:$origin_port/blobs/{digest}
    files: http://127.0.0.1:$origin_port/files/{path}
    serves: ["*"]
    inventory: $work/inventory.txt
    proxy: true
CFG

# wrk scripts: one request per blob path (paths.lua) or per file path (files.lua), rotating; each
# thread starts elsewhere in the list.
lua() { # PATHS-FILE
  echo 'local paths = {'; sed 's|.*|"&",|' "$1"; echo '}'
  cat <<'LUA'
local n = 0
function setup(thread) thread:set("offset", n * 17); n = n + 1 end
local reqs, i = {}, 0
function init(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p, { ["Host"] = "127.0.0.1" }) end
  i = (offset or 0) % #reqs
end
function request() i = i % #reqs + 1; return reqs[i] end
LUA
}
grep '^sha256:' "$work/inventory.txt" | sed 's|^|/v2/app/blobs/|' >"$work/blob-paths"
lua "$work/blob-paths" >"$work/paths.lua"
lua "$work/inventory.txt.files" >"$work/files.lua"

nginx -p "$work" -c "$work/origin.conf" -g 'daemon off;' 2>>"$work/origin-error.log" &
pids+=($!); origin_pid=$!
nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' 2>>"$work/nginx-error.log" &
pids+=($!); nginx_pid=$!
"$ferry" serve --config "$work/ferry.yaml" >/dev/null 2>"$work/ferry.err" &
pids+=($!); ferry_pid=$!
wait_http "http://127.0.0.1:$origin_port/healthz" "$origin_pid" || { cat "$work/origin-error.log" >&2; exit 1; }
wait_http "http://127.0.0.1:$nginx_port/healthz" "$nginx_pid" || { cat "$work/nginx-error.log" >&2; exit 1; }
wait_http "http://127.0.0.1:$ferry_port/healthz" "$ferry_pid" || { cat "$work/ferry.err" >&2; exit 1; }

# --- the same bytes from both? ---------------------------------------------------------------------
first=$(head -1 "$work/inventory.txt")
for url in "http://127.0.0.1:$nginx_port/v2/app/blobs/$first" "http://127.0.0.1:$ferry_port/v2/app/blobs/$first" \
  "http://127.0.0.1:$ferry_port/${first#sha256:}"; do
  got=$(curl -s "$url" | sha256sum | cut -d' ' -f1) || true
  [ "sha256:$got" = "$first" ] || {
    echo "$url served other bytes ($got)" >&2
    curl -si "$url" | head -20 >&2
    cat "$work/ferry.err" "$work"/*error.log >&2; exit 1; }
  loc=$(curl -s -o /dev/null -w '%{redirect_url}' "$url")
  [ -z "$loc" ] || { echo "$url redirected to $loc" >&2; exit 1; }
done
echo "both fronts serve the blob byte for byte (sha256 checked), without a redirect"

# --- load ----------------------------------------------------------------------------------------
run_wrk() { # PORT SECONDS SCRIPT -> prints "requests seconds"
  timeout $(($2 + 60)) wrk -t2 -c"$conns" -d"$2"s --timeout 30s -s "$work/$3" "http://127.0.0.1:$1/" |
    python3 -c '
import re, sys
t = sys.stdin.read()
m = re.search(r"^\s*(\d+) requests in ([\d.]+)(ms|s|m)", t, re.M)
secs = float(m.group(2)) * {"ms": 1e-3, "s": 1, "m": 60}[m.group(3)]
if re.search(r"Socket errors|Non-2xx", t):
    print("wrk reported errors:\n" + t, file=sys.stderr); sys.exit(1)
print(m.group(1), secs)'
}
cpu_ticks() { # PID...: user + system clock ticks of these processes (all their threads)
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
hz=$(getconf CLK_TCK)
size=$((mib << 20))
echo "$files blobs of $mib MiB on tmpfs; wrk -t2 -c$conns -d${duration}s rotating paths; $rounds rounds, alternating"
: >"$work/results"
for r in $(seq "$rounds"); do
  for who in nginx ferry ferry-unchecked; do
    port=$nginx_port; procs=("$nginx_pid" $(pgrep -P "$nginx_pid")); script=paths.lua
    [ "$who" = ferry ] && { port=$ferry_port; procs=("$ferry_pid"); }
    [ "$who" = ferry-unchecked ] && { port=$ferry_port; procs=("$ferry_pid"); script=files.lua; }
    run_wrk "$port" 2 "$script" >/dev/null
    t0=$(cpu_ticks "${procs[@]}")
    read -r n secs < <(run_wrk "$port" "$duration" "$script")
    t1=$(cpu_ticks "${procs[@]}")
    python3 - "$who" "$n" "$secs" "$size" "$t0" "$t1" "$hz" >>"$work/results" <<'PY'
import sys
who, n, secs, size, t0, t1, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), *map(int, sys.argv[5:])
total = n * size
cpu = (t1 - t0) / hz
print(who, total / secs, cpu * 1e3 / (total / 2**30), n)
PY
    tail -1 "$work/results" | awk -v r="$r" '{printf "  round %s %-15s %8.1f MiB/s  CPU %7.1f ms/GiB  (%d requests)\n", r, $1, $2 / 1048576, $3, $4}'
  done
done
grep -q "digest" "$work/ferry.err" && { echo "Ferry logged digest problems:" >&2; cat "$work/ferry.err" >&2; exit 1; }

python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    who, *v = line.split(); rows.setdefault(who, []).append([float(x) for x in v])
med = {w: [statistics.median(c) for c in zip(*v)] for w, v in rows.items()}
n, f = med["nginx"], med["ferry"]
print()
print(f"{'median of ' + str(len(rows['ferry'])) + ' rounds':<22}{'MiB/s':>10}{'CPU ms/GiB':>12}")
for w in rows:
    print(f"{w:<22}{med[w][0] / 2**20:>10.1f}{med[w][1]:>12.1f}")
tp, cpu = f[0] / n[0], f[1] / n[1]
print(f"Ferry/nginx bytes/s      {tp:.3f}  (target >= 1: {'met' if tp >= 1 else 'NOT met'})")
print(f"Ferry/nginx CPU per byte {cpu:.3f}  (target <= 1: {'met' if cpu <= 1 else 'NOT met'})")
u = med["ferry-unchecked"]
print(f"without the digest check (release files): Ferry/nginx bytes/s {u[0] / n[0]:.3f}, CPU per byte {u[1] / n[1]:.3f}")
PY
