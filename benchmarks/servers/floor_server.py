"""The floor of the stack: gevent.pywsgi + simple-websocket and a plain dict of sets of sockets.

No actors, no hooks; rooms only as a dict of sets (``/ws?id=N&room=R``, default ``bench``); of
wsroom only ``UpgradeAwareHandler``, the pywsgi handler that closes the HTTP connection after an
upgrade. Each broadcast is encoded once (JSON text, then one unmasked text frame) and written whole
with ``sendall`` to every other socket of the sender's room in turn, from the sender's greenlet
(simple-websocket's own ``send`` writes once and may cut a frame, so it is not used for data).
Same wire protocol as wsroom_server.py.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent
import gevent.event
import gevent.selectors
import simple_websocket
from gevent.pywsgi import WSGIServer

from wsroom.transport import UpgradeAwareHandler

from _common import ROOM, parse_args, raise_nofile, ready

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def text_frame(text: str) -> bytes:
    """One whole, unmasked, final text frame (server to client)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + data


class Thread(gevent.Greenlet):  # simple-websocket's reader "thread", as a greenlet
    def __init__(self, target: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(target)


ROOMS: dict[str, set[Any]] = {}  # room name -> raw sockets of its open connections


def app(environ: dict, start_response: Any) -> list[bytes]:
    ws = simple_websocket.Server(
        environ,
        thread_class=Thread,
        event_class=gevent.event.Event,
        selector_class=gevent.selectors.DefaultSelector,
    )
    environ["wsroom.upgraded"] = True  # UpgradeAwareHandler then closes the HTTP connection
    sock = ws.sock
    room = parse_qs(environ.get("QUERY_STRING", "")).get("room", [ROOM])[0]
    members = ROOMS.setdefault(room, set())
    sock.sendall(text_frame('{"type":"joined","payload":null}'))
    members.add(sock)
    try:
        while True:
            text = ws.receive()
            if text is None:
                break
            msg = json.loads(text)
            kind = msg.get("type")
            if kind == "bcast":
                frame = text_frame(_dumps({"type": "bcast", "payload": msg.get("payload")}))
                for other in list(members):
                    if other is not sock:
                        try:
                            other.sendall(frame)
                        except OSError:
                            members.discard(other)
            elif kind == "echo":
                sock.sendall(text_frame(_dumps({"type": "echo", "payload": msg.get("payload")})))
    except simple_websocket.ConnectionClosed:
        pass
    finally:
        members.discard(sock)
        try:
            ws.close()
        except (simple_websocket.ConnectionClosed, OSError):
            pass
    return []


def main() -> None:
    args = parse_args(__doc__ or "")
    raise_nofile()
    server = WSGIServer((args.host, args.port), app, handler_class=UpgradeAwareHandler, log=None)
    server.start()
    ready(server.server_port)
    gevent.wait()


if __name__ == "__main__":
    main()
