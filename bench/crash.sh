#!/usr/bin/env bash
# Crash run: `ferry promote images` (two registry prefixes and an `oci:` layout), `ferry promote
# files` and `ferry mirror` (a local folder and S3) killed with SIGKILL at random moments, many
# more times than the test suite does (crates/ferry/tests/crash.rs, 3 kills per scenario in CI).
#
#   bench/crash.sh [KILLS]     KILLS per scenario, default 25; FERRY_CRASH_SEED=N repeats a run
#
# After each kill every destination is read as a client reads it (registry API, layout files,
# S3 API, folder files): every tag present is the manifest's digest with its whole graph hashing
# right, every object under a release or blob name holds exactly its sha256's bytes, every
# inventory line names an object that is there, intact. Each round of up to three kills on the
# same destinations ends with a run to completion (everything there) and one more run, which
# must write nothing. Needs docker-registry and s3s-fs (scripts/test installs them).
#
# Prints one `crash summary:` line per scenario: kills landed mid-run (a run that ended before its
# kill is checked too and tried again, up to 3 × KILLS + 3 tries), rounds, states checked,
# problems found, temporary files left by killed runs.
set -euo pipefail
cd "$(dirname "$0")/.."

kills=${1:-25}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
FERRY_CRASH_KILLS=$kills cargo test --release --locked -p ferry --test crash -- --nocapture --test-threads 1 \
  2>&1 | tee "$log" || status=$?
echo
grep '^crash summary:' "$log" || true
exit "$status"
