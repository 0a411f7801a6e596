#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS in total (default 60), on stable Rust:
# cargo fuzz with --sanitizer none (libFuzzer's coverage guidance, no ASan, which needs
# nightly). Starts from the committed corpus (fuzz/corpus/<target>), keeps what it finds
# new in a scratch directory, and exits non-zero if a target crashes, panics, leaks into
# a huge allocation (-malloc_limit_mb) or grows past -rss_limit_mb; the input that did it
# is left in fuzz/artifacts/<target>/. Installs cargo-fuzz if it is missing.
#
#   bash scripts/fuzz.sh 120
#
# To keep a finding: copy it into fuzz/corpus/<target>/ under a name that says what it
# found; `cargo test` replays that corpus from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-60}
case $total in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install -q cargo-fuzz --version 0.13.2 --locked
fi
targets=(length_frames lines records memfd_facts fd_rule typed node_line shared_frames)
each=$(( total / ${#targets[@]} ))
[ "$each" -ge 1 ] || each=1
cargo fuzz build -s none 2>&1 | grep -Ev '^ *(Compiling|Finished|Running)' || true
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf '%-14s %10s %10s %8s\n' target seconds runs result
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  if cargo fuzz run -s none "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$each" -malloc_limit_mb=256 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    failed=1
  fi
  runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -1)
  printf '%-14s %10s %10s %8s\n' "$t" "$each" "${runs:-?}" "$result"
  if [ "$result" != ok ]; then
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2
  fi
done
exit "$failed"
