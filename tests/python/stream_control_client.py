"""Drives a server's stream properties and controls the way Home Assistant does, with the
python `snapcast` library, plus a raw JSON-RPC connection that records notifications and
error replies exactly. The stream STREAM runs tests/plugins/recording_plugin.py with its
directory PLUGIN_DIR; the stream "NoPlug" has no plugin. Run unchanged against snaprelay and
against snapserver, so the two reports can be compared.

Usage: stream_control_client.py HOST PORT STREAM PLUGIN_DIR
Prints one JSON report on stdout; any failure raises (non-zero exit).
"""

import asyncio
import base64
import json
import os
import sys
import time

import snapcast.control

HOST, PORT, STREAM, PLUGIN_DIR = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
COVER = b"\x89PNG\r\n\x1a\n a cover image for the test"


class Raw:
    """One raw JSON-RPC TCP connection: requests answered in order, notifications kept."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.notifications = []
        self.next_id = 100

    @classmethod
    async def open(cls):
        return cls(*await asyncio.open_connection(HOST, PORT))

    async def read(self, timeout):
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise AssertionError("the server closed the connection")
        return json.loads(line)

    async def call(self, method, params, timeout=8.0):
        """The reply (by order: snapserver answers some errors with a null id)."""
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.writer.write(json.dumps(request).encode() + b"\r\n")
        await self.writer.drain()
        while True:
            message = await self.read(timeout)
            if "method" in message:
                self.notifications.append(message)
                continue
            return message

    async def notification(self, method, check, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            for note in self.notifications:
                if note.get("method") == method and check(note):
                    return note
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {method} within {timeout}s: {self.notifications}")
            try:
                self.notifications.append(await self.read(remaining))
            except asyncio.TimeoutError:
                pass


def emit(message):
    """Makes the plugin write `message` to the server."""
    outbox = os.path.join(PLUGIN_DIR, "outbox")
    name = f"{time.monotonic_ns()}"
    with open(os.path.join(outbox, name + ".tmp"), "w") as f:
        f.write(json.dumps(message))
    os.rename(os.path.join(outbox, name + ".tmp"), os.path.join(outbox, name + ".line"))


def properties(props):
    emit({"jsonrpc": "2.0", "method": "Plugin.Stream.Player.Properties", "params": props})


def received():
    with open(os.path.join(PLUGIN_DIR, "received.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


async def eventually(what, check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.02)


async def main():
    report = {}
    raw = await Raw.open()
    # The plugin answered GetProperties (properties.json, written by the test) by now?
    async def status():
        reply = await raw.call("Server.GetStatus", {})
        return {s["id"]: s for s in reply["result"]["server"]["streams"]}

    deadline = time.monotonic() + 15
    while not (await status())[STREAM]["properties"].get("canGoNext"):
        if time.monotonic() > deadline:
            raise AssertionError("the plugin's properties never arrived")
        await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    server = await snapcast.control.create_server(loop, HOST, PORT, reconnect=False)
    stream = server.stream(STREAM)
    report["initial_properties"] = stream.properties
    report["initial_metadata"] = stream.metadata
    report["plain_properties"] = server.stream("NoPlug").properties

    # A change pushed by the plugin reaches every connection as Stream.OnProperties.
    cover = base64.b64encode(COVER).decode()
    properties({
        "playbackStatus": "playing", "loopStatus": "none", "shuffle": False, "volume": 40,
        "position": 12.5, "canGoNext": True, "canGoPrevious": True, "canPlay": True,
        "canPause": True, "canSeek": True, "canControl": True,
        "metadata": {"title": "Second", "artist": ["B1", "B2"], "album": "Al",
                     "duration": 200.5, "trackNumber": 3, "genre": ["Jazz"],
                     "artData": {"data": cover, "extension": "png"}},
    })
    note = await raw.notification(
        "Stream.OnProperties",
        lambda n: n["params"]["properties"].get("metadata", {}).get("title") == "Second")
    report["notification"] = note
    await eventually("python-snapcast took the new metadata",
                     lambda: (stream.metadata or {}).get("title") == "Second")
    report["library_metadata"] = stream.metadata
    report["library_properties"] = stream.properties

    # Controls through the library; the plugin receives them.
    report["control_next"] = await server.stream_control(STREAM, "next", {})
    report["control_seek"] = await server.stream_control(
        STREAM, "seek", {"params": {"offset": 5}})
    report["set_shuffle"] = await server.stream_setproperty(STREAM, "shuffle", True)
    report["set_loop"] = await server.stream_setproperty(STREAM, "loopStatus", "playlist")
    report["set_volume"] = await server.stream_setproperty(STREAM, "volume", 30)
    asked = [m.get("params") for m in received()
             if m.get("method", "").startswith("Plugin.Stream.Player.")
             and m["method"] != "Plugin.Stream.Player.GetProperties"]
    report["plugin_received"] = asked

    # The plugin's own refusal reaches the caller.
    with open(os.path.join(PLUGIN_DIR, "replies.json"), "w") as f:
        json.dump({"previous": {"error": {"code": -32603, "message": "Oops",
                                          "data": "player gone"}}}, f)
    report["plugin_error"] = (await raw.call(
        "Stream.Control", {"id": STREAM, "command": "previous"}))["error"]

    # Request errors (checked before the flags).
    errors = {}
    async def error(case, method, params):
        reply = await raw.call(method, params)
        errors[case] = reply.get("error", {"result": reply.get("result")})
    await error("unknown_command", "Stream.Control", {"id": STREAM, "command": "jump"})
    await error("seek_without_offset", "Stream.Control", {"id": STREAM, "command": "seek"})
    await error("position_without_position", "Stream.Control",
                {"id": STREAM, "command": "setPosition", "params": {}})
    await error("unknown_stream", "Stream.Control", {"id": "nowhere", "command": "next"})
    await error("shuffle_not_bool", "Stream.SetProperty",
                {"id": STREAM, "property": "shuffle", "value": 1})
    await error("volume_not_int", "Stream.SetProperty",
                {"id": STREAM, "property": "volume", "value": 30.5})
    await error("loop_unknown", "Stream.SetProperty",
                {"id": STREAM, "property": "loopStatus", "value": "all"})
    await error("rate_not_number", "Stream.SetProperty",
                {"id": STREAM, "property": "rate", "value": "fast"})
    await error("unknown_property", "Stream.SetProperty",
                {"id": STREAM, "property": "colour", "value": "red"})

    # Every flag false: each command refused with its flag's code.
    properties({"playbackStatus": "paused"})
    await raw.notification("Stream.OnProperties",
                           lambda n: n["params"]["properties"].get("playbackStatus") == "paused")
    for command, params in [("next", None), ("previous", None), ("play", None),
                            ("pause", None), ("stop", None), ("seek", {"offset": 1}),
                            ("setPosition", {"position": 1})]:
        request = {"id": STREAM, "command": command}
        if params is not None:
            request["params"] = params
        await error(f"flag_{command}", "Stream.Control", request)
    await error("flag_setproperty", "Stream.SetProperty",
                {"id": STREAM, "property": "shuffle", "value": True})
    await error("plain_next", "Stream.Control", {"id": "NoPlug", "command": "next"})
    await error("plain_setproperty", "Stream.SetProperty",
                {"id": "NoPlug", "property": "shuffle", "value": True})
    report["errors"] = errors
    report["final_metadata"] = (await status())[STREAM]["properties"].get("metadata")
    server.stop()
    print(json.dumps(report))


asyncio.run(main())
