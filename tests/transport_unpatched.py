"""Run as a script by test_transport_unpatched.py: wsroom in a process gevent never patched.

The hub and its server run in this process's gevent loop; the client is websocket-client in a
real OS thread (gevent's threadpool), blocking on real sockets. Prints one JSON line.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from typing import Any

import gevent
import gevent.monkey
import websocket

import wsroom
from wsroom.transport import make_handler, serve

N = 50


class Echo(wsroom.Hooks):
    def __init__(self) -> None:
        self.joins: list[str] = []
        self.messages: list[Any] = []
        self.leaves: list[str] = []
        self.hub: wsroom.Hub | None = None

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        self.joins.append(jc.participant)
        client.send(wsroom.Envelope("welcome", jc.participant))

    def on_message(self, room: str, participant: str, envelope: wsroom.Envelope) -> None:
        self.messages.append(envelope.payload)
        assert self.hub is not None
        self.hub.broadcast(room, wsroom.Envelope("echo", envelope.payload))

    def on_leave(self, room: str, participant: str, reason: BaseException) -> None:
        self.leaves.append(f"{participant}:{type(reason).__name__}")


def client(port: int, user: str) -> dict[str, Any]:
    """Runs in an OS thread: a plain blocking client."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/lobby?user={user}", timeout=10)
    try:
        welcome = json.loads(ws.recv())
        for i in range(N):
            ws.send(json.dumps({"type": "n", "payload": i}))
        echoes = [json.loads(ws.recv())["payload"] for _ in range(N)]
        ws.close()
        return {
            "thread": threading.current_thread() is not threading.main_thread(),
            "welcome": welcome,
            "echoes": echoes,
        }
    finally:
        ws.shutdown()


def flask_app(hub: wsroom.Hub) -> Any:
    import flask

    from wsroom.transport.flask import handle

    app = flask.Flask("unpatched")

    @app.route("/ws/<room>", websocket=True)
    def ws(room: str) -> Any:
        user = flask.request.args.get("user", "")
        return handle(hub, room, wsroom.Identity(user), lambda r, i: i.user_id)

    return app


def main(front: str) -> int:
    hooks = Echo()
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(0, 0))
    hooks.hub = hub
    if front == "flask":
        app = flask_app(hub)
    else:
        app = make_handler(
            hub, "lobby", lambda env: wsroom.Identity("alice"), lambda r, i: i.user_id
        )
    server = serve(app, port=0)
    try:
        pool = gevent.get_hub().threadpool
        result = pool.spawn(client, server.server_port, "alice").get(timeout=30)
        with gevent.Timeout(10):
            while not hooks.leaves:
                gevent.sleep(0.01)
    finally:
        hub.stop()
        server.stop(timeout=1)
    print(
        json.dumps(
            {
                "front": front,
                "patched_socket": gevent.monkey.is_module_patched("socket"),
                "patched_anything": gevent.monkey.is_anything_patched(),
                "socket_is_stdlib": socket.socket.__module__ == "socket",
                "client": result,
                "joins": hooks.joins,
                "messages": hooks.messages,
                "leaves": hooks.leaves,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "wsgi"))
