#!/bin/sh
# Inside `unshare -n -m` (a private network and mount namespace, so nothing reaches a real
# network and the host's /run is untouched): runs a system D-Bus and avahi-daemon, starts the
# relay ($1, datadir $2, then the remaining arguments), and runs a real snapclient with no
# host, which must find the relay through avahi; its audio goes to $2/client.raw.
set -eu
relay=$1
dir=$2
shift 2
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/avahi-daemon
ip link set lo up
ip link set lo multicast on
ip route add 224.0.0.0/4 dev lo
dbus-daemon --system --fork --nopidfile
sleep 0.3
avahi-daemon --no-drop-root --no-chroot -D
"$relay" --datadir "$dir" "$@" >"$dir/relay.log" 2>&1 &
relay_pid=$!
sleep 1
timeout 8 snapclient --player "file:filename=$dir/client.raw" >"$dir/client.log" 2>&1 || true
kill "$relay_pid"
wait "$relay_pid" || true
avahi-daemon -k || true
