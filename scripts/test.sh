#!/usr/bin/env bash
# The test suite, after installing what its real-world children need: node (a Node.js
# child on its IPC channel) and Debian's python3-systemd (libsystemd itself, checking the
# systemd convention). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
/usr/bin/python3 -c 'import systemd.daemon' >/dev/null 2>&1 || need+=(python3-systemd)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: the tests need: ${need[*]} (sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo test --workspace --all-features "$@"
# The library without its optional features (serde) must build and pass too.
cargo test -p sockpair --no-default-features "$@"
# Under panic = "abort" a worker's panic message still comes back: the example built
# that way, in a target directory of its own (the strategy changes every crate).
CARGO_PROFILE_DEV_PANIC=abort CARGO_TARGET_DIR=target/panic-abort \
  cargo run -q -p sockpair --features worker --example worker_panic
