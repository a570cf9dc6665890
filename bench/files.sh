#!/usr/bin/env bash
# File promotion benchmark: `ferry promote files` against `rclone copy --checksum`, side by side in
# one run, promoting ~2 GB of files of mixed sizes from one local folder to two others.
#
#   bench/files.sh            BENCH_ROUNDS=3 (alternating, medians)  BENCH_STORAGE=hugetmpfs|tmpfs|disk
#
# Files (1,861 of them, 1,989,124,096 bytes): 1 × 512 MiB, 4 × 128 MiB, 16 × 32 MiB, 72 × 4 MiB,
# 256 × 256 KiB, 512 × 16 KiB, 1,000 × 1 KiB, random bytes, with a kpromo files manifest of their
# sha256. Ferry reads each source file once, hashes it and writes both destinations in the same
# pass; rclone copies to one destination per invocation, so it runs twice (once per destination)
# and its time is the sum. Each round starts with empty destinations; `sync` runs (untimed) before
# every timed command so that neither tool pays for the other's writeback. The source stays in
# the page cache for both. Peak memory is the largest maximum RSS of any timed process
# (/usr/bin/time). Then both run again over the full destinations: the no-op re-run.
#
# Storage: tmpfs (/dev/shm, the default; about 10 GB of RAM while it runs) or disk ($TMPDIR). On
# this machine's ext4, creating thousands of files right after deleting thousands (each round
# starts with empty destinations) makes ext4's inode allocator scan for recently deleted inodes,
# which then costs more than the copying; tmpfs (/dev/shm) measures the promoters instead. The
# default, hugetmpfs, is a tmpfs of the run's own with transparent huge pages (`huge=always`,
# mounted for the run; needs root, else the run falls back to /dev/shm and says so): on this VM the
# kernel's allocation of 4 KiB pages costs more than copying into them (writing 1 GB into /dev/shm
# took 0.55 s of system time at best, 0.37 s with huge pages), the same for both tools and none of
# either's doing. Huge pages have their own cost (the kernel zeroes the rest of a 2 MiB page on the
# first smaller write into it), but promotions measured faster on them (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${BENCH_ROUNDS:-3}
command -v rclone >/dev/null || { echo "needs rclone (apt-get install rclone)"; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 2; }

cargo build --release --quiet -p ferry
ferry=${CARGO_TARGET_DIR:-target}/release/ferry
storage=${BENCH_STORAGE:-hugetmpfs}
if [ "$storage" = hugetmpfs ]; then
  work=$(mktemp -d)
  if mount -t tmpfs -o size=12g,huge=always ferry-bench "$work" 2>/dev/null; then
    trap 'umount "$work"; rmdir "$work"' EXIT
  else
    rmdir "$work"; storage=tmpfs; echo "cannot mount a tmpfs here (not root?): using /dev/shm"
  fi
fi
case $storage in
  hugetmpfs) ;;
  tmpfs) work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d); trap 'rm -rf "$work"' EXIT ;;
  disk) work=$(mktemp -d); trap 'rm -rf "$work"' EXIT ;;
  *) echo "BENCH_STORAGE is hugetmpfs, tmpfs or disk"; exit 2 ;;
esac
echo "storage: $storage ($work)"

python3 - "$work" <<'PY'
import hashlib, os, sys
work = sys.argv[1]
sizes = [(1, 512 << 20), (4, 128 << 20), (16, 32 << 20), (72, 4 << 20), (256, 256 << 10), (512, 16 << 10), (1000, 1 << 10)]
lines = ["files:"]
total = 0
for count, size in sizes:
    for i in range(count):
        name = f"release/{size}/file-{i:04d}.bin"
        path = os.path.join(work, "staging", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = os.urandom(size)
        with open(path, "wb") as f:
            f.write(data)
        lines.append(f"- name: {name}\n  sha256: {hashlib.sha256(data).hexdigest()}")
        total += size
with open(os.path.join(work, "files.yaml"), "w") as f:
    f.write("\n".join(lines) + "\n")
with open(os.path.join(work, "total"), "w") as f:
    f.write(str(total))
PY
total=$(cat "$work/total")
cat >"$work/filestores.yaml" <<EOF
filestores:
- base: $work/staging
  src: true
- base: $work/ferry-a
- base: $work/ferry-b
EOF
echo "source: $(find "$work/staging" -type f | wc -l) files, $total bytes"

# timed LABEL CMD...: runs CMD after a sync; appends "LABEL wall_s maxrss_kib" to $work/times.
timed() {
  local label=$1; shift
  sync
  /usr/bin/time -f "$label %e %M" -a -o "$work/times" "$@" >"$work/$label.out" 2>"$work/$label.err" || {
    echo "$label failed:"; tail -5 "$work/$label.err"; exit 1; }
}
ferry_run() { timed "$1" "$ferry" promote files --filestores "$work/filestores.yaml" --files "$work/files.yaml" --confirm --output json; }
rclone_run() { timed "$1" rclone copy --checksum "$work/staging" "$work/$2"; }

# Warm-up (untimed, for both tools alike): write and delete two copies of the source, so that
# the first timed run does not also pay for the kernel reclaiming page cache to make room.
cp -r "$work/staging" "$work/warm-a"; cp -r "$work/staging" "$work/warm-b"; rm -rf "$work/warm-a" "$work/warm-b"

: >"$work/times"
# Each tool's destinations are removed as soon as it is done with them, so that at most the
# source and one tool's two copies (about 6 GB) are stored at a time.
ferry_round() {
  ferry_run ferry
  grep -q '"promoted": 3722' "$work/ferry.out" || { echo "ferry did not promote everything:"; tail -20 "$work/ferry.out"; exit 1; }
  diff -r "$work/staging" "$work/ferry-a" >/dev/null && diff -r "$work/staging" "$work/ferry-b" >/dev/null \
    || { echo "ferry's destinations differ from the source"; exit 1; }
  ferry_run ferry-noop
  grep -q '"skipped": 3722' "$work/ferry-noop.out" || { echo "ferry's re-run did not skip everything"; exit 1; }
  rm -rf "$work/ferry-a" "$work/ferry-b"
}
rclone_round() {
  rclone_run rclone-a rclone-a; rclone_run rclone-b rclone-b
  diff -r "$work/staging" "$work/rclone-b" >/dev/null || { echo "rclone's destination differs from the source"; exit 1; }
  rclone_run rclone-noop-a rclone-a; rclone_run rclone-noop-b rclone-b
  rm -rf "$work/rclone-a" "$work/rclone-b"
}
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then ferry_round; rclone_round; else rclone_round; ferry_round; fi
  echo "round $round: $(tail -6 "$work/times" | awk '{printf "%s %ss  ", $1, $2}')"
done

python3 - "$work/times" "$total" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def col(label, i): return [float(r[i]) for r in rows if r[0] == label]
total = int(sys.argv[2])
f, ra, rb = (col(l, 1) for l in ("ferry", "rclone-a", "rclone-b"))
r = [a + b for a, b in zip(ra, rb)]
fn, rn = col("ferry-noop", 1), [a + b for a, b in zip(col("rclone-noop-a", 1), col("rclone-noop-b", 1))]
mem = lambda *labels: max(max(col(l, 2)) for l in labels) / 1024
med = statistics.median
print(f"\n{len(f)} rounds, medians; rclone = the sum of its two invocations")
print(f"{'':28} {'ferry':>9} {'rclone x2':>10} {'ratio':>7}  target")
print(f"{'promotion wall time':28} {med(f):8.2f}s {med(r):9.2f}s {med(f)/med(r):7.3f}  <= 0.5")
print(f"{'no-op re-run wall time':28} {med(fn):8.2f}s {med(rn):9.2f}s {med(fn)/med(rn):7.3f}")
print(f"{'source read and verified':28} {total/med(f)/1e9:7.2f} GB/s  (target >= 1 GB/s; each round: {', '.join(f'{total/x/1e9:.2f}' for x in f)})")
print(f"{'peak RSS, promotion':28} {mem('ferry'):7.1f} MiB {mem('rclone-a', 'rclone-b'):7.1f} MiB     ferry <= 64 MB")
print(f"{'peak RSS, no-op re-run':28} {mem('ferry-noop'):7.1f} MiB {mem('rclone-noop-a', 'rclone-noop-b'):7.1f} MiB")
print("each round, ferry / rclone: " + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(f, r)))
PY
