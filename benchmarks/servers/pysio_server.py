"""python-socketio on gevent (async_mode="gevent", plain gevent.pywsgi, simple-websocket).

``join`` enters the room it names (scenario E's many small rooms; without a name the one room
``bench``) and answers ``joined``; ``bcast`` goes to the sender's room but the sender
(``emit(..., to=room, skip_sid=sid)``); ``echo`` back to its sender.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent
import socketio
from gevent.pywsgi import WSGIServer

from _common import ROOM, parse_args, raise_nofile, ready


def main() -> None:
    args = parse_args(__doc__ or "")
    raise_nofile()
    sio = socketio.Server(async_mode="gevent", cors_allowed_origins="*")
    room_of: dict[str, str] = {}  # sid -> the room it joined

    @sio.on("join")
    def join(sid: str, data: object = None) -> None:
        room = data if isinstance(data, str) else ROOM
        room_of[sid] = room
        sio.enter_room(sid, room)
        sio.emit("joined", None, to=sid)

    @sio.on("bcast")
    def bcast(sid: str, data: object) -> None:
        sio.emit("bcast", data, to=room_of.get(sid, ROOM), skip_sid=sid)

    @sio.on("disconnect")
    def disconnect(sid: str, *_args: object) -> None:
        room_of.pop(sid, None)

    @sio.on("echo")
    def echo(sid: str, data: object) -> None:
        sio.emit("echo", data, to=sid)

    server = WSGIServer((args.host, args.port), socketio.WSGIApp(sio), log=None)
    server.start()
    ready(server.server_port)
    gevent.wait()


if __name__ == "__main__":
    main()
