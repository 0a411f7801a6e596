#!/usr/bin/env bash
# The fault suite (crates/sockpair/tests/faults): peer death, descriptor soak,
# inheritance, EMFILE, signals, a hostile peer and load, against the real kernel, with
# real processes. Prints one row per experiment; exits non-zero if any trial failed.
#
#   bash scripts/faults.sh          the short version (as cargo test runs it), release build
#   bash scripts/faults.sh --long   the long one: >= 500 kill points, >= 100,000 operations
#
# SOCKPAIR_FAULTS_SEED=N replays the random choices of a run (each experiment prints its
# seed on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in
  --long) export SOCKPAIR_FAULTS=long ;;
  '') unset SOCKPAIR_FAULTS ;;
  *) echo "usage: scripts/faults.sh [--long]" >&2; exit 2 ;;
esac
log=$(mktemp)
trap 'rm -f "$log"' EXIT
started=$(date +%s)
status=0
cargo test -q --release -p sockpair --all-features --test faults -- \
  --nocapture --test-threads=1 >"$log" 2>&1 || status=$?
printf '%-46s %9s %9s  %s\n' experiment trials failures worst
# A row may follow libtest's progress dots on its line.
awk '{ i = index($0, "fault-row: "); if (i == 0) next
       n = split(substr($0, i + 11), f, "\t"); printf "%-46s %9s %9s  %s\n", f[1], f[2], f[3], f[4] }' "$log" |
  sort
echo "($(( $(date +%s) - started )) s, ${SOCKPAIR_FAULTS:-short})"
if [ "$status" != 0 ]; then
  grep -E 'panicked|trials failed|^round|FAILED' "$log" | head -40 >&2
  echo "faults.sh: some experiment failed (full output above was in $log)" >&2
fi
exit "$status"
