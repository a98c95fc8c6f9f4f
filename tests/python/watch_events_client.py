#!/usr/bin/env python3
"""A home-automation client of snaprelay's gRPC API that knows it only through server
reflection: it calls WatchEvents, then makes a client volume change over JSON-RPC and has the
stream plugin report a new track, and waits for both to arrive as typed events.

Usage: watch_events_client.py GRPC_TARGET JSONRPC_PORT CLIENT_ID STREAM PLUGIN_DIR
Prints one JSON report; exits non-zero on any failure.
"""
import json
import os
import queue
import socket
import sys
import threading
import time

import grpc
from google.protobuf import descriptor_pool, json_format
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "snaprelay.v1.Control"
TARGET, JSONRPC_PORT, CLIENT_ID, STREAM, PLUGIN_DIR = sys.argv[1:6]


def jsonrpc(method, params):
    with socket.create_connection(("127.0.0.1", int(JSONRPC_PORT)), timeout=10) as conn:
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        conn.sendall(json.dumps(request).encode() + b"\r\n")
        buffered = b""
        while True:
            buffered += conn.recv(65536)
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                reply = json.loads(line)
                if reply.get("id") == 1:
                    assert "result" in reply, reply
                    return reply["result"]


def main():
    channel = grpc.insecure_channel(TARGET)
    grpc.channel_ready_future(channel).result(timeout=10)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    method = pool.FindServiceByName(SERVICE).methods_by_name["WatchEvents"]
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)
    watch = channel.unary_stream(
        f"/{SERVICE}/WatchEvents",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    call = watch(request_class(), timeout=30)
    events = queue.Queue()

    def pump():
        try:
            for event in call:
                events.put(json_format.MessageToDict(event, preserving_proto_field_name=True))
        except grpc.RpcError:
            pass

    # The server sends its headers once it has subscribed: nothing after this is missed.
    call.initial_metadata()
    threading.Thread(target=pump, daemon=True).start()

    jsonrpc("Client.SetVolume", {"id": CLIENT_ID, "volume": {"percent": 23}})
    notification = {
        "jsonrpc": "2.0",
        "method": "Plugin.Stream.Player.Properties",
        "params": {"playbackStatus": "playing", "canPlay": True, "position": 61.0,
                   "metadata": {"title": "Watched", "artist": ["W"], "duration": 180.0}},
    }
    outbox = os.path.join(PLUGIN_DIR, "outbox")
    with open(os.path.join(outbox, "w.tmp"), "w") as f:
        f.write(json.dumps(notification))
    os.rename(os.path.join(outbox, "w.tmp"), os.path.join(outbox, "w.line"))

    seen = {}
    deadline = time.monotonic() + 15
    while len(seen) < 2:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"events missing; seen {list(seen)}")
        try:
            event = events.get(timeout=remaining)
        except queue.Empty:
            continue
        volume = event.get("client_volume")
        if volume and volume.get("client_id") == CLIENT_ID and volume.get("volume_percent") == 23:
            seen["client_volume"] = event
        change = event.get("stream_properties")
        metadata = (change or {}).get("properties", {}).get("metadata", {})
        if change and change.get("stream") == STREAM and metadata.get("title") == "Watched":
            seen["stream_properties"] = event
    call.cancel()
    print(json.dumps(seen))


main()
