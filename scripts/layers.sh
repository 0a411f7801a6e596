#!/usr/bin/env bash
# The structural rules of ARCHITECTURE.md, checked on the source:
# - sys/ is the bottom layer: it imports nothing from the modules above it;
# - only the OS layer (socket, fds, cred, fork, child, exe, shared_word, shm, spawn/) calls into sys/;
# - no source file of crates/*/src is over 600 lines.
set -euo pipefail
cd "$(dirname "$0")/.."
src=crates/sockpair/src
status=0

if grep -rn 'crate::' "$src/sys" | grep -v 'crate::sys' | grep -v '^[^:]*:[0-9]*: *//'; then
  echo "layers: $src/sys imports from the layers above it" >&2
  status=1
fi

os_layer='^'"$src"'/(socket|fds|cred|fork|child|exe|shared_word|shm)\.rs:|^'"$src"'/(spawn|sys)/'
if grep -rnE 'crate::sys\b|use crate::\{[^}]*\bsys\b' "$src" | grep -vE "$os_layer"; then
  echo "layers: only the OS layer (socket, fds, cred, fork, child, exe, shared_word, shm, spawn/) may call sys/" >&2
  status=1
fi

while read -r lines file; do
  if [ "$file" != total ] && [ "$lines" -gt 600 ]; then
    echo "layers: $file has $lines lines (at most 600: split it by concept)" >&2
    status=1
  fi
done < <(find crates/*/src -name '*.rs' -print0 | xargs -0 wc -l)

[ "$status" = 0 ] && echo "layers: ok"
exit "$status"
