#!/usr/bin/env bash
# `ferry report` benchmark: the same totals from the same gzip access log, computed by `ferry
# report --output json` and by a short Python script (gzip + json.loads per line, grouping into
# dicts: the ad-hoc pipeline an operator would otherwise write), side by side; and, with
# BENCH_JQ=1, by `jq` (slower still: it is run on the first 1,000,000 lines and scaled).
#
#   bench/report.sh            BENCH_LINES=10000000  BENCH_DIR=$TMPDIR/ferry-report-bench
#
# Input (crates/ferry-usage/examples/access_log.rs, generated once and kept in BENCH_DIR):
# BENCH_LINES `ferry serve` access-log lines over 30 days, 50 locations, 5 mirrors, 2,000 blobs
# (sizes from the mirrors' sized inventories), one gzip file. Both tools read the same file and
# produce requests and bytes by outcome, mirror and location; the script checks they agree.
# Throughput is lines per second of wall time; peak memory is the maximum RSS (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${BENCH_LINES:-10000000}
dir=${BENCH_DIR:-${TMPDIR:-/tmp}/ferry-report-bench}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 2; }
cargo build --release --quiet -p ferry --bin ferry
cargo build --release --quiet -p ferry-usage --example access_log
if [ ! -s "$dir/access.jsonl.gz" ] || [ "$(cat "$dir/lines" 2>/dev/null)" != "$lines" ]; then
  echo "generating $lines lines in $dir"
  target/release/examples/access_log "$dir" "$lines"
  echo "$lines" > "$dir/lines"
fi
ls -l "$dir/access.jsonl.gz"

cat > "$dir/report.py" <<'PY'
import gzip, json, sys, glob, os
d = sys.argv[1]
sizes = {}
for inv in glob.glob(os.path.join(d, "m-*.txt")):
    for line in open(inv):
        parts = line.split()
        if len(parts) == 2:
            sizes[parts[0]] = int(parts[1])
tables = {"outcome": {}, "mirror": {}, "location": {}}
requests = total = 0
with gzip.open(os.path.join(d, "access.jsonl.gz"), "rt") as f:
    for line in f:
        r = json.loads(line)
        if r.get("target") != "ferry_serve::access":
            continue
        x = r["fields"]
        requests += 1
        path = x["path"].split("?")[0]
        b = 0
        if x["status"] == 307 and x["method"] == "GET" and "/blobs/" in path:
            b = sizes.get(path.rsplit("/", 1)[1], 0)
        total += b
        for table, key in (("outcome", x["outcome"]), ("mirror", x["mirror"] or "upstream"), ("location", x["label"])):
            c = tables[table].setdefault(key, [0, 0])
            c[0] += 1
            c[1] += b
print(json.dumps({"requests": requests, "bytes": total, "mirror": {k: v for k, v in sorted(tables["mirror"].items())}}))
PY

measure() { # name, command...: prints "name seconds maxrss_kb", keeps stdout in $dir/$name.out
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$dir/$name.time" "$@" > "$dir/$name.out"
  read -r secs kb < "$dir/$name.time"
  printf '%-8s %8.2f s  %10.0f lines/s  %7.1f MB peak\n' "$name" "$secs" "$(echo "$lines / $secs" | bc -l)" "$(echo "$kb / 1024" | bc -l)"
}
echo "tool     wall       throughput       memory"
measure ferry target/release/ferry report --logs "$dir/access.jsonl.gz" --inventories "$dir/ferry.yaml" --output json
measure python python3 "$dir/report.py" "$dir"
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
f = json.load(open(d + "/ferry.out")); p = json.load(open(d + "/python.out"))
assert f["totals"]["requests"] == p["requests"], (f["totals"]["requests"], p["requests"])
assert f["totals"]["bytes"] == p["bytes"], (f["totals"]["bytes"], p["bytes"])
for m in f["by_mirror"]:
    assert [m["requests"], m["bytes"]] == p["mirror"][m["mirror"]], m
print("same totals: %d requests, %d bytes, %d origins" % (p["requests"], p["bytes"], len(p["mirror"])))
PY
if [ "${BENCH_JQ:-0}" = 1 ] && command -v jq >/dev/null; then
  sub=1000000
  start=$(date +%s.%N)
  { zcat "$dir/access.jsonl.gz" || true; } | head -n $sub | jq -c -n 'reduce (inputs | select(.target == "ferry_serve::access") | .fields) as $x ({}; .[$x.outcome + "/" + $x.mirror + "/" + $x.label] += 1)' > /dev/null
  secs=$(echo "$(date +%s.%N) - $start" | bc -l)
  printf 'jq       %8.2f s for %d lines: %10.0f lines/s (counts only, no sizes)\n' "$secs" $sub "$(echo "$sub / $secs" | bc -l)"
fi
