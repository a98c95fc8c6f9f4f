#!/usr/bin/env python3
"""A stream plugin for tests (snapserver's `controlscript` protocol), run unchanged by
snaprelay and by snapserver.

It records what it receives and does what the test asks, through one directory given as
`--dir=DIR` (in `controlscriptparams`) or, for servers without `controlscriptparams`
(snapserver 0.26), in the environment variable RECORDING_PLUGIN_DIR:

- `DIR/argv.json`: its command line, written at start.
- `DIR/received.jsonl`: every line the server sent, one JSON object per line.
- `DIR/outbox/*.line`: each file's text is written to stdout as is (then the file is
  deleted), in name order: properties notifications, log lines, garbage, anything.
- `DIR/properties.json`: the answer to Plugin.Stream.Player.GetProperties ({} if absent).
- `DIR/replies.json`: how to answer Control and SetProperty, by command or property name:
  {"next": {"error": {...}}, "pause": "silent", "play": {"result": "ok", "delay_ms": 900}};
  the default is {"result": "ok"} at once.
- `DIR/pid`: its process id, written at start.
- `DIR/exit`: when it appears, the plugin deletes it and exits with status 3.

It says Plugin.Stream.Ready at start.
"""

import json
import os
import select
import sys
import time

directory = os.environ.get("RECORDING_PLUGIN_DIR")
for arg in sys.argv[1:]:
    if arg.startswith("--dir="):
        directory = arg[len("--dir="):]
if directory is None:
    sys.stderr.write("recording_plugin: --dir=DIR is required\n")
    sys.exit(2)

os.makedirs(os.path.join(directory, "outbox"), exist_ok=True)
with open(os.path.join(directory, "argv.json.tmp"), "w") as f:
    json.dump(sys.argv[1:], f)
os.replace(os.path.join(directory, "argv.json.tmp"), os.path.join(directory, "argv.json"))
with open(os.path.join(directory, "pid"), "w") as f:
    f.write(str(os.getpid()))
delayed = []  # (due, line)


def send(line):
    sys.stdout.write(line.rstrip("\n") + "\n")
    sys.stdout.flush()


def read_json(name, default):
    try:
        with open(os.path.join(directory, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def record(message):
    with open(os.path.join(directory, "received.jsonl"), "a") as f:
        f.write(json.dumps(message) + "\n")


def answer(message):
    method = message.get("method")
    params = message.get("params") or {}
    ident = message.get("id")
    if method is None:
        return  # an answer to one of our requests, not a request
    if method == "Plugin.Stream.Player.GetProperties":
        reply = {"result": read_json("properties.json", {})}
    else:
        if method == "Plugin.Stream.Player.Control":
            key = params.get("command")
        else:
            key = next(iter(params), None)
        reply = read_json("replies.json", {}).get(key, {"result": "ok"})
    if reply == "silent" or ident is None:
        return
    reply = dict(reply)
    delay = reply.pop("delay_ms", 0) / 1000.0
    reply["jsonrpc"] = "2.0"
    reply["id"] = ident
    if delay > 0:
        delayed.append((time.monotonic() + delay, json.dumps(reply)))
    else:
        send(json.dumps(reply))


send(json.dumps({"jsonrpc": "2.0", "method": "Plugin.Stream.Ready"}))
buffered = b""
stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
while True:
    ready, _, _ = select.select([stdin], [], [], 0.05)
    if ready:
        chunk = os.read(stdin.fileno(), 65536)
        if not chunk:
            sys.exit(0)  # the server closed our stdin
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                record({"unparsable": line.decode("utf-8", "replace")})
                continue
            record(message)
            answer(message)
    for entry in [d for d in delayed if d[0] <= time.monotonic()]:
        delayed.remove(entry)
        send(entry[1])
    outbox = os.path.join(directory, "outbox")
    for name in sorted(os.listdir(outbox)):
        if not name.endswith(".line"):
            continue
        path = os.path.join(outbox, name)
        with open(path) as f:
            text = f.read()
        os.remove(path)
        send(text)
    if os.path.exists(os.path.join(directory, "exit")):
        os.remove(os.path.join(directory, "exit"))
        sys.exit(3)
