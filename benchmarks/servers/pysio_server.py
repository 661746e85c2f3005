"""python-socketio on gevent (async_mode="gevent", plain gevent.pywsgi, simple-websocket).

One room; ``join`` enters it and answers ``joined``; ``bcast`` goes to the room but its sender
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

    @sio.on("join")
    def join(sid: str, _data: object = None) -> None:
        sio.enter_room(sid, ROOM)
        sio.emit("joined", None, to=sid)

    @sio.on("bcast")
    def bcast(sid: str, data: object) -> None:
        sio.emit("bcast", data, to=ROOM, skip_sid=sid)

    @sio.on("echo")
    def echo(sid: str, data: object) -> None:
        sio.emit("echo", data, to=sid)

    server = WSGIServer((args.host, args.port), socketio.WSGIApp(sio), log=None)
    server.start()
    ready(server.server_port)
    gevent.wait()


if __name__ == "__main__":
    main()
