"""Browses a relay's mDNS services with python-zeroconf (the library Home Assistant uses).

Run inside a private network namespace (`unshare -n`): it brings loopback up with multicast,
so nothing reaches a real network. Starts the relay (argv[1], with argv[3:] as arguments and
argv[2] as its datadir), browses every service type, stops the relay with SIGTERM and watches
the records go, starts it again and watches them come back. Prints one JSON report.
"""

import json
import os
import subprocess
import sys
import time

from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

TYPES = [
    "_snapcast._tcp.local.",
    "_snapcast-stream._tcp.local.",
    "_snapcast-ctrl._tcp.local.",
    "_snapcast-jsonrpc._tcp.local.",
    "_snapcast-tcp._tcp.local.",
    "_snapcast-http._tcp.local.",
    "_snapcast-https._tcp.local.",
    "_snaprelay-grpc._tcp.local.",
]


def setup_loopback():
    for command in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", "lo", "multicast", "on"],
        ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"],
    ):
        subprocess.run(command, check=True)


class Watch(ServiceListener):
    def __init__(self):
        self.live = {}

    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, timeout=3000)
        self.live[type_] = {
            "name": name,
            "port": info.port if info else None,
            "addresses": info.parsed_addresses() if info else [],
        }

    def update_service(self, zc, type_, name):
        self.add_service(zc, type_, name)

    def remove_service(self, zc, type_, name):
        self.live.pop(type_, None)


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def start(binary, datadir, args):
    return subprocess.Popen(
        [binary, "--datadir", datadir, *args],
        stdout=subprocess.DEVNULL,
        stderr=open(datadir + "/relay.log", "a"),
    )


def main():
    binary, datadir, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    setup_loopback()
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    watch = Watch()
    browsers = [ServiceBrowser(zc, t, watch) for t in TYPES]
    report = {}

    expected = int(os.environ.get("MDNS_EXPECT", "7"))
    relay = start(binary, datadir, args)
    wait_for(lambda: len(watch.live) >= expected, 10)
    time.sleep(1)  # anything else that was going to appear
    report["published"] = dict(watch.live)

    relay.terminate()
    report["exit_code"] = relay.wait(timeout=15)
    report["gone_after_stop"] = wait_for(lambda: not watch.live, 5)
    report["left_after_stop"] = sorted(watch.live)

    relay = start(binary, datadir, args)
    wait_for(lambda: len(watch.live) >= len(report["published"]), 10)
    report["republished"] = sorted(watch.live)
    relay.terminate()
    relay.wait(timeout=15)

    for browser in browsers:
        browser.cancel()
    zc.close()
    print(json.dumps(report))


main()
