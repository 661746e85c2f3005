"""python-socketio on gevent across processes: ``socketio.RedisManager`` (Redis pub/sub), as its
users run it to serve one set of rooms from several processes (scenario F).

The same events as pysio_server.py (``join``, ``bcast`` to the sender's room but the sender,
``echo``); ``client_manager=socketio.RedisManager(url)``, so each emit to a room is published
to Redis once and every process, the sender's included, delivers it to its own members of that
room. RedisManager's listener uses redis-py's blocking sockets: like every gevent deployment of
it (gunicorn's gevent worker does the same), the process is monkey-patched first.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent  # noqa: E402
import socketio  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from _common import ROOM, parse_args, raise_nofile, ready  # noqa: E402


def main() -> None:
    args = parse_args(__doc__ or "")
    if not args.redis:
        raise SystemExit("pysio_redis_server.py needs --redis URL")
    raise_nofile()
    sio = socketio.Server(
        async_mode="gevent",
        cors_allowed_origins="*",
        client_manager=socketio.RedisManager(args.redis),
    )
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
