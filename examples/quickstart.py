"""The Go wsroom README's quick start, in Python: one room, a /ws route on port 8080.

    python examples/quickstart.py
    # then, from another shell (pip install "wsroom[client]"):
    python -c "from wsroom.client import connect; c = connect('ws://127.0.0.1:8080/ws?user=ann'); \
c.send('chat', {'text': 'hi'}); print(c.recv(5))"

Every message a member sends is broadcast to the others; a member who drops is kept for 30 s,
with up to 64 envelopes queued for its return.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import wsroom  # noqa: E402
from wsroom.transport import make_handler, run_until_signal, serve  # noqa: E402


class Hooks(wsroom.Hooks):
    """Welcome each member, relay each message to the rest of the room."""

    hub: wsroom.Hub

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        client.send(wsroom.Envelope("welcome", {"you": jc.participant, "again": jc.reconnect}))

    def on_message(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, envelope: wsroom.Envelope
    ) -> None:
        self.hub.broadcast(room, envelope, exclude=[participant])

    def on_leave(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, reason: BaseException
    ) -> None:
        print(f"{participant} left {room}: {reason!r}")


def identity(environ: dict[str, Any]) -> wsroom.Identity:
    """Who is connecting: ``?user=`` in the URL (a real app would check a session or token)."""
    user = parse_qs(environ.get("QUERY_STRING", "")).get("user", [""])[0]
    return wsroom.Identity(user_id=user)


def resolve(room: wsroom.RoomID, ident: wsroom.Identity) -> str:
    """The participant id: the user id (an empty one is refused with 403)."""
    return ident.user_id


def main() -> None:
    hooks = Hooks()
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(grace_period=30, max_queued_per_conn=64))
    hooks.hub = hub

    ws = make_handler(hub, "lobby", identity, resolve)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/ws":
            return ws(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"try ws://HOST:PORT/ws?user=NAME\n"]

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = serve(app, host, port)
    print(f"wsroom quick start on ws://{host}:{server.server_port}/ws?user=NAME", flush=True)

    run_until_signal(server, hub)


if __name__ == "__main__":
    main()
