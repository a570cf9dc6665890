#!/usr/bin/env bash
# Fuzzing: every cargo-fuzz target of fuzz/ (libFuzzer, nightly toolchain), one after the other,
# each for SECONDS of wall time, one process (no -jobs/-workers), and a summary table.
#
#   bench/fuzz.sh [SECONDS]    (default 600)  FUZZ_DIR=$TMPDIR/ferry-fuzz  FUZZ_TARGETS="all of fuzz/"
#
# Needs `cargo +nightly` and cargo-fuzz (`cargo install cargo-fuzz --locked`). Each target starts
# from its committed seeds (fuzz/corpus/<target>/, read only) and the corpus grown by earlier runs
# (FUZZ_DIR/<target>/, outside the repository, where new inputs are written); its log is
# FUZZ_DIR/<target>.log. Printed per target, from libFuzzer's final line and stats: executions,
# executions per second, coverage (cov: edges, ft: features), corpus size (inputs in the grown
# corpus) and crashes (inputs written to fuzz/artifacts/<target>/ by this run: a panic, a failed
# invariant, a timeout of more than 25 s or 2 GB of memory). Exits 1 if any target crashed;
# reproduce one with `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>`.
# The seconds column is libFuzzer's own ("Done N runs in S second(s)"), without the build.
# `cargo fuzz run` rebuilds a target whose sources changed; with FUZZ_PREBUILT=1 the binaries
# built once at the start are run directly instead (same flags), so that edits made to the crates
# while the targets run (a shared working tree) neither rebuild nor break them.
# Run it under `nice -n 10` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${SECONDS_PER_TARGET:-600}}
dir=${FUZZ_DIR:-${TMPDIR:-/tmp}/ferry-fuzz}
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
mkdir -p "$dir"
cargo +nightly fuzz build >/dev/null
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
printf '%-16s %8s %12s %8s %8s %8s %8s %8s\n' target seconds execs exec/s cov ft corpus crashes
failed=0
for t in $targets; do
  mkdir -p "$dir/$t" "fuzz/artifacts/$t"
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  start=$(date +%s)
  status=0
  options=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1)
  if [ "${FUZZ_PREBUILT:-0}" = 1 ]; then
    (cd fuzz && "target/$triple/release/$t" -artifact_prefix="artifacts/$t/" "${options[@]}" \
      "$dir/$t" "corpus/$t") >"$dir/$t.log" 2>&1 || status=$?
  else
    cargo +nightly fuzz run "$t" "$dir/$t" "fuzz/corpus/$t" -- "${options[@]}" >"$dir/$t.log" 2>&1 || status=$?
  fi
  elapsed=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$dir/$t.log" | tail -1)
  elapsed=${elapsed:-$(( $(date +%s) - start ))}
  crashes=$(( $(find "fuzz/artifacts/$t" -type f | wc -l) - before ))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="?(exit $status)"; fi
  last=$(grep -E '^#[0-9]+' "$dir/$t.log" | grep 'cov:' | tail -1 || true)
  field() { sed -nE "s/.* $1: ([0-9]+).*/\\1/p" <<<"$last"; }
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$dir/$t.log" | tail -1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$dir/$t.log" | tail -1)
  corpus=$(find "$dir/$t" -type f | wc -l)
  printf '%-16s %8s %12s %8s %8s %8s %8s %8s\n' "$t" "$elapsed" "${execs:-?}" "${rate:-?}" \
    "$(field cov)" "$(field ft)" "$corpus" "$crashes"
  if [ "$crashes" != 0 ]; then
    failed=1
    grep -E 'panicked at|ERROR: libFuzzer|Test unit written' "$dir/$t.log" | head -5 | sed 's/^/    /'
  fi
done
exit "$failed"
