"""Drives snaprelay's JSON-RPC API with the real python `snapcast` library (PyPI `snapcast`,
what Home Assistant and Music Assistant use), the way Home Assistant does: connect over TCP,
synchronize, change things, and follow the notifications for changes made elsewhere.

Usage: snapcast_ha.py HOST PORT CLIENT_ID SNAPCTL GRPC_URL FREE_PORT
Prints one line per step and "OK" at the end; any failure raises (non-zero exit).
"""

import asyncio
import json
import subprocess
import sys

import snapcast.control


async def eventually(what, check, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.02)
    print(f"seen: {what}", flush=True)


async def other_connection(host, port, method, params):
    """A change made by another control connection (raw TCP JSON-RPC)."""
    reader, writer = await asyncio.open_connection(host, port)
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    writer.write(json.dumps(request).encode() + b"\r\n")
    await writer.drain()
    reply = json.loads(await reader.readline())
    assert "result" in reply, reply
    writer.close()


async def main(host, port, client_id, snapctl, grpc_url):
    loop = asyncio.get_running_loop()
    server = await snapcast.control.create_server(loop, host, port, reconnect=False)
    print(f"synchronized: version {server.version}", flush=True)
    assert server.version == "0.34.0", server.version
    streams = sorted(s.identifier for s in server.streams)
    assert streams == ["default", "radio"], streams
    assert [s.friendly_name for s in server.streams]
    client = server.client(client_id)
    group = client.group
    assert client.connected

    # Changes through the library (responses read back into its cache).
    await client.set_volume(37)
    assert client.volume == 37
    await group.set_stream("radio")
    assert group.stream == "radio"
    await client.set_name("Bedroom")
    assert client.friendly_name == "Bedroom"
    await client.set_latency(15)
    await group.set_muted(False)
    await group.set_name("Upstairs")
    version = await server.rpc_version()
    print(f"rpc version {version}", flush=True)
    print("changed: volume, stream, name, latency, mute, group name", flush=True)

    # Changes by another control connection arrive as notifications.
    await other_connection(
        host, port, "Client.SetVolume", {"id": client_id, "volume": {"percent": 12}}
    )
    await eventually("Client.OnVolumeChanged", lambda: client.volume == 12)
    await other_connection(
        host, port, "Group.SetStream", {"id": group.identifier, "stream_id": "default"}
    )
    await eventually("Group.OnStreamChanged", lambda: group.stream == "default")
    # ... and by the gRPC front end.
    subprocess.run([snapctl, "--server", grpc_url, "name", client_id, "Loft"], check=True)
    await eventually("Client.OnNameChanged (from gRPC)", lambda: client.friendly_name == "Loft")
    subprocess.run(
        [snapctl, "--server", grpc_url, "volume", client_id, "64"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    await eventually("Client.OnVolumeChanged (from gRPC)", lambda: client.volume == 64)

    # Music Assistant's dynamic streams.
    added = await server.stream_add_stream(
        f"tcp://127.0.0.1:{int(sys.argv[6])}?name=MA&sampleformat=48000:16:2"
    )
    assert "id" in added, added
    removed = await server.stream_remove_stream("MA")
    assert "id" in removed, removed
    server.stop()
    print("OK", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
