#!/usr/bin/env python3
"""A small MPD server for tests: enough of the MPD protocol for snapserver's meta_mpd.py
plugin (status, currentsong, idle/noidle, the playback commands). It records every command
it receives, one per line, in LOG and prints its port on stdout once it listens.

Usage: fake_mpd.py LOG
"""
import socket
import sys
import threading

LOG = open(sys.argv[1], "a", buffering=1)
SONGS = [
    # No Artist tag: meta_mpd.py would look it up on musicbrainz.org.
    {"file": "music/one.flac", "Title": "Fake Title", "Album": "Fake Album", "Track": "3",
     "Id": "7", "duration": "200.000"},
    {"file": "music/two.flac", "Title": "Track 2", "Album": "Fake Album", "Track": "4",
     "Id": "8", "duration": "150.000"},
]
lock = threading.Lock()
state = {"state": "play", "volume": "40", "repeat": "0", "random": "0", "single": "0",
         "elapsed": "12.5", "song": 0}


def status():
    song = SONGS[state["song"]]
    fields = {k: v for k, v in state.items() if k != "song"}
    fields.update({"songid": song["Id"], "duration": song["duration"]})
    return "".join(f"{k}: {v}\n" for k, v in fields.items())


def handle(conn):
    stream = conn.makefile("rwb", buffering=0)
    stream.write(b"OK MPD 0.23.5\n")
    idle = False
    pending = False
    for raw in stream:
        line = raw.decode().rstrip("\n")
        LOG.write(line + "\n")
        words = line.split(" ")
        command, argument = words[0], " ".join(words[1:]).strip('"')
        out = ""
        with lock:
            if command == "idle":
                if pending:
                    pending = False
                    stream.write(b"changed: player\nOK\n")
                else:
                    idle = True
                continue
            if command == "noidle":
                if idle:
                    idle = False
                    stream.write(b"OK\n")
                continue
            if command == "commands":
                out = "".join(f"command: {c}\n" for c in [
                    "commands", "urlhandlers", "status", "currentsong", "idle", "noidle",
                    "next", "previous", "play", "pause", "stop", "seekcur", "random",
                    "repeat", "single", "setvol", "password"])
            elif command == "urlhandlers":
                out = "handler: http://\n"
            elif command == "status":
                out = status()
            elif command == "currentsong":
                out = "".join(f"{k}: {v}\n" for k, v in SONGS[state["song"]].items())
            elif command in ("next", "previous"):
                state["song"] = (state["song"] + (1 if command == "next" else -1)) % len(SONGS)
                state["elapsed"] = "0.0"
                pending = True
            elif command in ("play", "stop"):
                state["state"] = command
                pending = True
            elif command == "pause":
                state["state"] = "pause" if argument != "0" else "play"
                pending = True
            elif command in ("setvol", "random", "repeat", "single"):
                state["volume" if command == "setvol" else command] = argument
                pending = True
        stream.write((out + "OK\n").encode())


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(5)
print(server.getsockname()[1], flush=True)
while True:
    connection, _ = server.accept()
    threading.Thread(target=handle, args=(connection,), daemon=True).start()
