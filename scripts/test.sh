#!/usr/bin/env bash
# Runs every test. Installs what the tests need when it is missing (Debian's snapclient is
# the acceptance test for the relay), so this one command works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v snapclient >/dev/null 2>&1; then
  echo "installing snapclient (Debian package) for the end-to-end tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq snapclient
fi

# The independent gRPC client test (tests/grpc_python.rs) uses Python grpcio with the health
# and reflection packages; install them only when one is missing.
if ! python3 -c "import grpc, grpc_health.v1, grpc_reflection.v1alpha" >/dev/null 2>&1; then
  echo "installing grpcio, grpcio-health-checking, grpcio-reflection (PyPI) for the gRPC tests" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    grpcio grpcio-health-checking grpcio-reflection
fi

# The end-to-end tests run real snapclients in real time; two at once fit two cores.
cargo test --all-targets "$@" -- --test-threads=2
