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
cargo publish --dry-run --allow-dirty -p sockpair -p sockpair-cli 2>&1 | tail -n 3
# No placeholder left where a user or crates.io reads it.
if grep -rn 'example\.invalid\|example\.com' Cargo.toml crates/*/Cargo.toml README.md crates/*/README.md; then
  echo "package-check: a placeholder URL" >&2
  exit 1
fi
echo "package-check: ok"
