#!/usr/bin/env bash
# Regenerates server/hot-text.txt, the code layout of release builds (see build.rs and
# docs/PERFORMANCE.md): profiles a running relay under callgrind and lists the functions it
# executes. Run it after large changes to the server or its dependencies, then rebuild and
# compare RSS with `cargo bench --bench load`. Needs valgrind; takes about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "hot-text.sh: needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
profiles=$(mktemp -d)
trap 'rm -rf "$profiles"' EXIT
# Profiles are named KIND.PID: hot_text.py keeps each kind's functions together.
callgrind() { echo "valgrind --tool=callgrind --dump-instr=no --demangle=no --callgrind-out-file=$profiles/$1.%p"; }

# 1. Sessions: every codec, plain and zerocopy sends, driven by the load benchmark's clients.
for codec in pcm flac opus ogg; do
    cargo bench --bench load -- --servers snaprelay --codecs "$codec" --clients 4 \
        --modes off,auto --seconds 4 --warmup 2 --wrap "$(callgrind "$codec")"
done

# 2. The default start-up with the control plane in use: gRPC (snapctl), HTTP, JSON-RPC.
# (The benchmark built both binaries; a `cargo build --release` here would only relink them.)
ports=(--port 47104 --tcp.port=47105 --http.port=47180 --grpc.port=47110)
$(callgrind control) target/release/snaprelay "${ports[@]}" --datadir "$profiles/data" \
    --source "tone:///?name=tone&codec=flac" 2>"$profiles/server.log" &
server=$!
for _ in $(seq 300); do
    target/release/snapctl --server http://127.0.0.1:47110 health >/dev/null 2>&1 && break
    sleep 0.2
done
for command in stats sessions streams groups clients health "config get"; do
    # shellcheck disable=SC2086 # word-splitting "config get" is intended
    target/release/snapctl --server http://127.0.0.1:47110 $command >/dev/null
done
python3 - <<'EOF'
import json, socket, urllib.request
urllib.request.urlopen("http://127.0.0.1:47180/metrics", timeout=30).read()
request = {"id": 1, "jsonrpc": "2.0", "method": "Server.GetStatus"}
urllib.request.urlopen(urllib.request.Request(
    "http://127.0.0.1:47180/jsonrpc", json.dumps(request).encode(),
    {"Content-Type": "application/json"}), timeout=30).read()
with socket.create_connection(("127.0.0.1", 47105), timeout=30) as tcp:
    tcp.sendall(json.dumps(request).encode() + b"\r\n")
    tcp.recv(65536)
EOF
kill -TERM "$server"
wait "$server" || true

python3 scripts/hot_text.py generate target/release/snaprelay "$profiles"/*.[0-9]* > server/hot-text.txt
echo "hot-text.sh: server/hot-text.txt lists $(grep -vc '^#' server/hot-text.txt) functions"
