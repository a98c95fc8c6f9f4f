#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (issue 10) for a bounded time each, starting from the
# committed seed corpus. Installs cargo-fuzz when missing and fails loudly on any crash,
# build failure or missing tool; it never skips.
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, coverage instrumentation). This
# machine has one stable toolchain, so RUSTC_BOOTSTRAP=1 lets that stable rustc accept them.
#
#   scripts/fuzz.sh            # every target, FUZZ_SECONDS (default 25) each
#   scripts/fuzz.sh protocol_stream
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${FUZZ_SECONDS:-25}"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz (crates.io) for the fuzz targets" >&2
  cargo install --locked cargo-fuzz
fi
# libFuzzer itself is C++, built by libfuzzer-sys with the system C++ compiler.
if ! command -v c++ >/dev/null 2>&1; then
  echo "installing g++ (Debian package) to build libFuzzer" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq g++
fi

cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets found" >&2; exit 1; }

cargo fuzz build -O
for target in "${targets[@]}"; do
  # Work on a copy: what libFuzzer adds stays out of the committed corpus.
  work="$(mktemp -d)"
  cp "corpus/$target"/* "$work"/
  echo "fuzz: $target for ${SECONDS_EACH}s" >&2
  if ! cargo fuzz run -O "$target" "$work" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    echo "fuzz: $target FAILED; the crashing input is under fuzz/artifacts/$target/" >&2
    echo "fuzz: turn it into a regression test (tests/hardening_regressions.rs)" >&2
    exit 1
  fi
  rm -rf "$work"
done
echo "fuzz: every target ran clean (${#targets[@]} targets, ${SECONDS_EACH}s each)"
