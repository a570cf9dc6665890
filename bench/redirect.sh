#!/usr/bin/env bash
# Redirector benchmark: `ferry serve` against nginx (geo + map + return 307) answering the same blob
# redirects from the same published AWS + Google Cloud ranges, side by side in one run, on loopback.
#
#   bench/redirect.sh [DURATION_S] [CONNECTIONS]     (defaults 10 64);  BENCH_ROUNDS=7
#   (FERRY_LOG=warn in the environment turns Ferry's access log off, for comparison;
#    FERRY_BASELINE=/path/to/another/ferry adds that build as a third server in every round, to
#    measure a change side by side with the build before it;
#    BENCH_LIMITS=1 gives the Ferry under test (not the baseline) a per-client rate limit that
#    nobody reaches (600,000 requests a minute, bursts of 10,000): with FERRY_BASELINE set to the
#    same binary, that measures what counting every client costs;
#    BENCH_INSTRUCTIONS=1 instead runs both servers under valgrind's callgrind, one nginx worker,
#    and prints the user-space instructions each spends per request: wrk -t1 -c8 for DURATION_S
#    after a 2 s warm-up, the same rotating addresses. Slow, but free of this VM's noise.)
#
# - nginx: `geo $ferry_label` built from every IPv4 and IPv6 prefix of both files (deduplicated; geo
#   does longest-prefix match; same prefix in both files: AWS wins, as in Ferry), `map` from label to
#   target, `return 307`. worker_processes 2 (Ferry's tokio runtime has one worker per core, 2 here).
# - Ferry: the same files under `locations`, one mirror `east` serving aws:us-east-2 with an inventory
#   that lists the digest requested with its size, as `ferry mirror` writes it (so no presence
#   probes; every redirect also counts the blob's bytes in ferry_serve_redirected_bytes_total).
# - Both trust X-Forwarded-For from 127.0.0.1 (nginx: `geo { proxy 127.0.0.1; }`, Ferry:
#   `trusted_proxies`), and wrk sends each request with one of ~1000 client addresses (AWS, GCP, both
#   families, and addresses in no range), rotating.
# - Neither logs to disk: nginx has access_log off; Ferry writes its JSON access log to stdout,
#   which goes to /dev/null (so Ferry still formats one log line per request, nginx none).
# - Before timing, every one of those addresses is asked from both, and the run fails unless both
#   give the same Location (and a few known answers are checked).
# - wrk (-t2 -cN -dS --latency) runs against one server, then the other, BENCH_ROUNDS times
#   alternating, after a 2 s warm-up each; medians are printed. wrk shares the 2 cores with them.
# - Each round also reports the server's CPU time (user + system, all its processes/threads, from
#   /proc) per request: less sensitive than req/s to other load on the machine.
# - Memory: a second Ferry with the same ranges plus a 1,000,000-entry inventory; VmRSS once it
#   answers /healthz.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}; conns=${2:-64}; rounds=${BENCH_ROUNDS:-7}
ranges=$(cd ../shared/data/cloud-ranges && pwd)

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

timeout 600 cargo build --release --quiet -p ferry
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
wait_http() { # URL PID: until URL answers (20 s at most, 120 s under valgrind) or the process is gone
  for _ in $(seq "${wait_tries:-200}"); do
    curl -fs -o /dev/null --max-time 1 "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "server for $1 exited" >&2; return 1; }
    sleep 0.1
  done
  echo "no answer from $1" >&2; return 1
}

nginx_port=$(free_port); ferry_port=$(free_port); health_port=$(free_port); mem_port=$(free_port)
baseline_port=$(free_port); baseline=${FERRY_BASELINE:-}
digest=sha256:$(python3 -c 'import hashlib; print(hashlib.sha256(b"ferry redirect bench").hexdigest())')
path=/v2/app/blobs/$digest
# The mirror is on loopback (a port where nginx answers 404), not on an unresolvable host: Ferry
# health-probes every mirror, inventory or not (HEAD every 3 s; any answer < 500 is healthy), and
# takes one that does not answer out of the routing after two failures.
mirror_base=http://127.0.0.1:$health_port/blobs
upstream_base=https://upstream.example/v2/images

# --- generated inputs: nginx geo include, client addresses, inventories ---------------------------
python3 - "$ranges" "$work" "$shm" "$digest" <<'PY'
import ipaddress, json, random, secrets, sys
ranges, work, shm, digest = sys.argv[1:]
aws = json.load(open(f"{ranges}/aws-ip-ranges.json"))
gcp = json.load(open(f"{ranges}/gcp-cloud.json"))
label = {}  # prefix -> label; first wins (AWS before GCP, as Ferry's tie order)
def add(prefix, lab):
    net = ipaddress.ip_network(prefix, strict=True)
    label.setdefault(net, lab)
for p in aws["prefixes"]: add(p["ip_prefix"], "aws:" + p["region"])
for p in aws["ipv6_prefixes"]: add(p["ipv6_prefix"], "aws:" + p["region"])
for p in gcp["prefixes"]:
    add(p.get("ipv4Prefix") or p["ipv6Prefix"], "gcp:" + p["scope"])
with open(f"{work}/geo.conf", "w") as f:
    for net, lab in label.items():
        f.write(f"{net} {lab};\n")
rng = random.Random(20261128)
def inside(net):
    host_bits = net.max_prefixlen - net.prefixlen
    return str(net.network_address + rng.getrandbits(host_bits)) if host_bits else str(net.network_address)
nets = list(label)
v4 = [n for n in nets if n.version == 4]; v6 = [n for n in nets if n.version == 6]
east = [n for n, l in label.items() if l == "aws:us-east-2"]
addrs = ["3.128.0.5", "2600:1f16:8000::10", "64.252.69.10", "34.76.1.1", "81.2.69.160"]
addrs += [inside(rng.choice(east)) for _ in range(100)]      # mirror hits
addrs += [inside(rng.choice(v4)) for _ in range(400)]        # other IPv4 ranges
addrs += [inside(rng.choice(v6)) for _ in range(200)]        # IPv6 ranges
addrs += [str(ipaddress.IPv4Address(rng.getrandbits(32) | 0x01000000)) for _ in range(200)]  # mostly misses
addrs += [str(ipaddress.IPv6Address((0x2001 << 112) | rng.getrandbits(112))) for _ in range(95)]  # misses
addrs = list(dict.fromkeys(addrs))  # distinct, order kept
rng.shuffle(addrs)
open(f"{work}/addrs.txt", "w").write("\n".join(addrs) + "\n")
open(f"{work}/inventory.txt", "w").write(digest + " 31457280\n")  # with its size, as `ferry mirror` writes
print(f"{len(label)} distinct prefixes ({len(v4)} IPv4, {len(v6)} IPv6), {len(addrs)} client addresses",
      file=sys.stderr)
# 1,000,000 random digests (plus the benchmark's) for the memory run.
with open(f"{shm}/inventory-1m.txt", "w") as f:
    f.write(digest + "\n")
    f.write("".join(f"sha256:{secrets.token_hex(32)}\n" for _ in range(999_999)))
PY

cat >"$work/nginx.conf" <<CFG
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/tmp-body; proxy_temp_path $work/tmp-proxy;
  fastcgi_temp_path $work/tmp-fcgi; uwsgi_temp_path $work/tmp-uwsgi; scgi_temp_path $work/tmp-scgi;
  keepalive_requests 1000000;
  geo \$ferry_label {
    default "";
    proxy 127.0.0.1;
    include $work/geo.conf;
  }
  map \$ferry_label \$target {
    "aws:us-east-2" $mirror_base/\$digest;
    default $upstream_base/\$repo/blobs/\$digest;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location ~ "^/v2/(?<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)/blobs/(?<digest>sha256:[a-f0-9]{64})\$" {
      return 307 \$target;
    }
    location = /healthz { return 200 ok; }
    location / { return 404; }
  }
  server { listen 127.0.0.1:$health_port; location / { return 404; } }
}
CFG

ferry_config() { # PORT INVENTORY [LIMITS]
  if [ -n "${3:-}" ]; then
    printf 'limits:\n  per_client: {requests_per_minute: 600000, burst: 10000}\n'
  fi
  cat <<CFG
listen: 127.0.0.1:$1
trusted_proxies: ["127.0.0.1/32"]
upstream:
  registry: https://upstream.example/images
locations:
  aws: [$ranges/aws-ip-ranges.json]
  gcp: [$ranges/gcp-cloud.json]
mirrors:
  - name: east
    blobs: $mirror_base/{digest}
    serves: ["aws:us-east-2"]
    inventory: $2
CFG
}
ferry_config "$ferry_port" "$work/inventory.txt" "${BENCH_LIMITS:-}" >"$work/ferry.yaml"
ferry_config "$mem_port" "$shm/inventory-1m.txt" >"$work/ferry-1m.yaml"
ferry_config "$baseline_port" "$work/inventory.txt" >"$work/baseline.yaml"

# wrk script: the addresses, one request each, pre-formatted; each thread starts elsewhere in the list.
{
  echo "local path = \"$path\""
  echo 'local addrs = {'; sed 's/.*/"&",/' "$work/addrs.txt"; echo '}'
  cat <<'LUA'
local n = 0
function setup(thread) thread:set("offset", n * 487); n = n + 1 end
local reqs, i = {}, 0
function init(args)
  for k, a in ipairs(addrs) do
    reqs[k] = wrk.format("GET", path, { ["Host"] = "127.0.0.1", ["X-Forwarded-For"] = a })
  end
  i = (offset or 0) % #reqs
end
function request() i = i % #reqs + 1; return reqs[i] end
LUA
} >"$work/xff.lua"

# --- start both ---------------------------------------------------------------------------------
under=(); nginx_mode='daemon off;'
if [ -n "${BENCH_INSTRUCTIONS:-}" ]; then
  command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || { echo "needs valgrind" >&2; exit 2; }
  under=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p"); wait_tries=1200
  sed -i 's/^worker_processes 2;/worker_processes 1;/' "$work/nginx.conf"; nginx_mode='daemon off; master_process off;'
fi
"${under[@]}" nginx -p "$work" -c "$work/nginx.conf" -g "$nginx_mode" 2>>"$work/nginx-error.log" &
pids+=($!); nginx_pid=$!
"${under[@]}" "$ferry" serve --config "$work/ferry.yaml" >/dev/null 2>"$work/ferry.err" &
pids+=($!); ferry_pid=$!
wait_http "http://127.0.0.1:$nginx_port/healthz" "$nginx_pid" || { cat "$work/nginx-error.log" >&2; exit 1; }
wait_http "http://127.0.0.1:$ferry_port/healthz" "$ferry_pid" || { cat "$work/ferry.err" >&2; exit 1; }
servers=(nginx ferry)
if [ -n "$baseline" ]; then
  "${under[@]}" "$baseline" serve --config "$work/baseline.yaml" >/dev/null 2>"$work/baseline.err" &
  pids+=($!); baseline_pid=$!; servers+=(baseline)
  wait_http "http://127.0.0.1:$baseline_port/healthz" "$baseline_pid" || { cat "$work/baseline.err" >&2; exit 1; }
  loc=$(curl -s -o /dev/null -w '%{redirect_url}' -H 'X-Forwarded-For: 3.128.0.5' "http://127.0.0.1:$baseline_port$path")
  [ "$loc" = "$mirror_base/$digest" ] || { echo "the baseline answered $loc" >&2; exit 1; }
fi

# --- same answers? ---------------------------------------------------------------------------------
check_answers() {
  python3 - "$work/addrs.txt" "$nginx_port" "$ferry_port" "$path" "$mirror_base/$digest" \
    "$upstream_base/app/blobs/$digest" <<'PY'
import http.client, sys
addrs_file, nport, fport, path, mirror, upstream = sys.argv[1:]
def answers(port):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
    out = {}
    for a in open(addrs_file).read().split():
        c.request("GET", path, headers={"X-Forwarded-For": a})
        r = c.getresponse(); r.read()
        out[a] = (r.status, r.getheader("Location"))
    return out
n, f = answers(nport), answers(fport)
bad = [a for a in n if n[a] != f[a]]
for a in bad[:10]:
    print(f"MISMATCH {a}: nginx {n[a]}  ferry {f[a]}", file=sys.stderr)
expect = {"3.128.0.5": mirror, "2600:1f16:8000::10": mirror, "34.76.1.1": upstream,
          "81.2.69.160": upstream, "64.252.69.10": upstream}
for a, loc in expect.items():
    for who, got in (("nginx", n[a]), ("ferry", f[a])):
        if got != (307, loc):
            print(f"WRONG {who} {a}: {got}, expected 307 {loc}", file=sys.stderr); bad.append(a)
hits = sum(1 for a in f if f[a][1] == mirror)
if bad:
    print(f"FAIL: {len(bad)} of {len(n)} addresses answered differently", file=sys.stderr); sys.exit(1)
print(f"same Location from both for all {len(n)} addresses ({hits} to the mirror, {len(n) - hits} upstream)")
PY
}
check_answers

# --- instructions per request (BENCH_INSTRUCTIONS=1) --------------------------------------------
if [ -n "${BENCH_INSTRUCTIONS:-}" ]; then
  echo "user-space instructions per request (callgrind), wrk -t1 -c8 -d${duration}s, rotating X-Forwarded-For"
  for who in "${servers[@]}"; do
    pid=$nginx_pid port=$nginx_port
    [ "$who" = ferry ] && { pid=$ferry_pid; port=$ferry_port; }
    [ "$who" = baseline ] && { pid=$baseline_pid; port=$baseline_port; }
    wrk -t1 -c8 -d2s -s "$work/xff.lua" "http://127.0.0.1:$port$path" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    n=$(wrk -t1 -c8 -d"$duration"s -s "$work/xff.lua" "http://127.0.0.1:$port$path" | awk '/requests in/ {print $1}')
    callgrind_control -d "$pid" >/dev/null 2>&1
    dump=$(ls -t "$work/callgrind.$pid".* | head -1)
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    echo "$who $((ir / n))" >>"$work/instructions"
    printf '  %-9s %8d instructions/request (%d requests)\n' "$who" $((ir / n)) "$n"
  done
  awk '{v[$1] = $2} END {printf "Ferry/nginx instructions per request %.3f\n", v["ferry"] / v["nginx"]}' "$work/instructions"
  exit 0
fi

# --- load ----------------------------------------------------------------------------------------
run_wrk() { # PORT SECONDS -> prints "rps p50_ms p99_ms requests"
  timeout $(($2 + 30)) wrk -t2 -c"$conns" -d"$2"s --latency -s "$work/xff.lua" "http://127.0.0.1:$1$path" |
    python3 -c '
import re, sys
t = sys.stdin.read()
def ms(v):
    n, u = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
n = int(re.search(r"^\s*(\d+) requests in", t, re.M).group(1))
if re.search(r"Socket errors|Non-2xx", t):
    print("wrk reported errors:\n" + t, file=sys.stderr); sys.exit(1)
print(rps, p50, p99, n)'
}
cpu_ticks() { # PID...: user + system clock ticks of these processes (all their threads)
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
hz=$(getconf CLK_TCK)
echo "wrk -t2 -c$conns -d${duration}s --latency, rotating X-Forwarded-For; $rounds rounds, alternating"
: >"$work/results"
for r in $(seq "$rounds"); do
  for who in "${servers[@]}"; do
    port=$nginx_port; procs=("$nginx_pid" $(pgrep -P "$nginx_pid"))
    [ "$who" = ferry ] && { port=$ferry_port; procs=("$ferry_pid"); }
    [ "$who" = baseline ] && { port=$baseline_port; procs=("$baseline_pid"); }
    run_wrk "$port" 2 >/dev/null
    t0=$(cpu_ticks "${procs[@]}")
    read -r rps p50 p99 n < <(run_wrk "$port" "$duration")
    t1=$(cpu_ticks "${procs[@]}")
    cpu_us=$(python3 -c "print(($t1 - $t0) * 1e6 / $hz / $n)")
    echo "$who $rps $p50 $p99 $cpu_us" >>"$work/results"
    printf '  round %s %-5s %10.0f req/s  p50 %.3f ms  p99 %.3f ms  CPU %.2f us/request\n' \
      "$r" "$who" "$rps" "$p50" "$p99" "$cpu_us"
  done
done
check_answers >/dev/null   # still the same answers after the load (mirror still healthy, etc.)

# --- memory with a 1,000,000-entry inventory ------------------------------------------------------
t0=$(date +%s.%N)
"$ferry" serve --config "$work/ferry-1m.yaml" >/dev/null 2>"$work/ferry-1m.err" &
pids+=($!); mem_pid=$!
wait_http "http://127.0.0.1:$mem_port/healthz" "$mem_pid" || { cat "$work/ferry-1m.err" >&2; exit 1; }
ready=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
rss_1m=$(awk '/VmRSS/ {print $2}' "/proc/$mem_pid/status")
hwm_1m=$(awk '/VmHWM/ {print $2}' "/proc/$mem_pid/status")
loc=$(curl -s -o /dev/null -w '%{redirect_url}' -H 'X-Forwarded-For: 3.128.0.5' "http://127.0.0.1:$mem_port$path")
[ "$loc" = "$mirror_base/$digest" ] || { echo "1M-inventory Ferry answered $loc" >&2; exit 1; }
rss_small=$(awk '/VmRSS/ {print $2}' "/proc/$ferry_pid/status")
rss_nginx=$(pgrep -P "$nginx_pid" | while read -r w; do awk '/VmRSS/ {print $2}' "/proc/$w/status"; done |
  awk '{s += $1} END {print s}')
rss_nginx=$((rss_nginx + $(awk '/VmRSS/ {print $2}' "/proc/$nginx_pid/status")))

# --- summary ---------------------------------------------------------------------------------------
python3 - "$work/results" "$rss_1m" "$hwm_1m" "$ready" "$rss_small" "$rss_nginx" <<'PY'
import statistics, sys
res, rss, hwm, ready, rss_small, rss_nginx = sys.argv[1:]
rows = {}
for line in open(res):
    who, *v = line.split(); rows.setdefault(who, []).append([float(x) for x in v])
med = {w: [statistics.median(c) for c in zip(*v)] for w, v in rows.items()}
n, f = med["nginx"], med["ferry"]
print()
print(f"{'median of ' + str(len(rows['ferry'])) + ' rounds':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}")
for w in rows:
    print(f"{w:<22}{med[w][0]:>10.0f}{med[w][1]:>9.3f}{med[w][2]:>9.3f}{med[w][3]:>12.2f}")
if "baseline" in med:
    b = med["baseline"]
    print(f"baseline/nginx: throughput {b[0] / n[0]:.3f}, p99 {b[2] / n[2]:.3f}, CPU per request {b[3] / n[3]:.3f}")
    print(f"Ferry/baseline: throughput {f[0] / b[0]:.3f}, p99 {f[2] / b[2]:.3f}, CPU per request {f[3] / b[3]:.3f}")
tp, lat = f[0] / n[0], f[2] / n[2]
print(f"Ferry/nginx CPU per request {f[3] / n[3]:.3f}")
print(f"Ferry/nginx throughput {tp:.3f}  (target >= 1: {'met' if tp >= 1 else 'NOT met'})")
print(f"Ferry p99 / nginx p99  {lat:.3f}  (target <= 1: {'met' if lat <= 1 else 'NOT met'})")
mb = int(rss) / 1024
print(f"Ferry RSS with 1,000,000-entry inventory: {mb:.1f} MiB (VmHWM {int(hwm)/1024:.1f} MiB), "
      f"ready in {ready} s  (target <= 200 MB: {'met' if int(rss) * 1024 <= 200e6 else 'NOT met'})")
print(f"RSS after the load: Ferry (1-entry inventory) {int(rss_small)/1024:.1f} MiB; "
      f"nginx master + 2 workers {int(rss_nginx)/1024:.1f} MiB")
PY
