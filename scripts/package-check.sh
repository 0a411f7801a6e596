#!/usr/bin/env bash
# What crates.io would get: each published package lists its README and both licence
# files, and `cargo publish --dry-run` packs and builds them (the CLI against the packed
# library, as after a real publish of both).
set -euo pipefail
cd "$(dirname "$0")/.."
for package in sockpair sockpair-cli; do
  listed=$(cargo package -p "$package" --list --allow-dirty 2>/dev/null)
  for file in README.md LICENSE-MIT LICENSE-APACHE Cargo.toml; do
    if ! grep -qx "$file" <<<"$listed"; then
      echo "package-check: $package does not ship $file" >&2
      exit 1
    fi
  done
done
# cargo unpacks the packed library for the CLI's check into CARGO_HOME and builds it
# keyed by name and version only, as if a published crate never changed: what an
# earlier check left (an unpacked copy, a build of it) would be used instead of this
# one. So both start afresh: a target directory of the check's own.
export CARGO_TARGET_DIR=target/package-check
rm -rf "$CARGO_TARGET_DIR"
cargo_home=${CARGO_HOME:-$HOME/.cargo}
for stale in "$cargo_home"/registry/src/*/sockpair-* "$cargo_home"/registry/cache/*/sockpair-*; do
  case "$stale" in
    */index.crates.io-*) ;;
    *) rm -rf "$stale" ;;
  esac
done
log=$(mktemp)
if ! cargo publish --dry-run --allow-dirty -p sockpair -p sockpair-cli >"$log" 2>&1; then
  cat "$log"
  echo "package-check: cargo publish --dry-run failed" >&2
  exit 1
fi
tail -n 2 "$log"
rm -f "$log"
# No placeholder left where a user or crates.io reads it.
if grep -rn 'example\.invalid\|example\.com' Cargo.toml crates/*/Cargo.toml README.md crates/*/README.md; then
  echo "package-check: a placeholder URL" >&2
  exit 1
fi
echo "package-check: ok"
