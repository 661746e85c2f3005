"""A small hub for the wsroom.js tests: a test page, /wsroom.js, and /ws/<room>?user=.

Hooks: every join gets ``hello`` {you, reconnect}; ``echo`` is answered to the sender;
``shout`` is broadcast to the others; ``drop`` closes the sender's connection with 4008
(not a final code: the client reconnects). ``--refuse NAME`` makes the resolver refuse that
user (403), as a server restarted with new rules would.

For resume without loss: ``stream`` {count} sends the sender ``tick`` 1..count, paced; ``up``
envelopes are kept per user and ``GET /ups?user=NAME`` answers them as JSON; ``GET
/cut?user=NAME`` cuts the server's side of that user's socket (the network goes away under
the client, no close frame); ``GET /members?room=ROOM`` answers ``hub.members``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402

import wsroom  # noqa: E402
from wsroom.transport import client_js_app, make_handler, run_until_signal, serve  # noqa: E402

PAGE = b"""<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">
<title>wsroom.js test</title>
<script type="module">
import * as wsroom from "/wsroom.js";
window.wsroom = wsroom;
window.ready = true;
</script>
"""


class Hooks(wsroom.Hooks):
    hub: wsroom.Hub

    def __init__(self) -> None:
        self.clients: dict[str, wsroom.Client] = {}  # the latest connection of each user
        self.ups: dict[str, list[Any]] = {}

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        self.clients[jc.participant] = client
        client.send(wsroom.Envelope("hello", {"you": jc.participant, "reconnect": jc.reconnect}))

    def on_message(self, room: Any, participant: Any, envelope: wsroom.Envelope) -> None:
        if envelope.type == "echo":
            self.hub.send_to(room, participant, envelope)
        elif envelope.type == "shout":
            self.hub.broadcast(room, envelope, exclude=[participant])
        elif envelope.type == "drop":
            raise wsroom.CloseConnection(4008, "dropped for the test")
        elif envelope.type == "up":
            self.ups.setdefault(participant, []).append(envelope.payload)
        elif envelope.type == "stream":
            gevent.spawn(self._stream, room, participant, int(envelope.payload["count"]))

    def _stream(self, room: Any, participant: Any, count: int) -> None:
        for n in range(1, count + 1):
            self.hub.send_to(room, participant, wsroom.Envelope("tick", n))
            gevent.sleep(0.002)

    def cut(self, user: str) -> bool:
        """Shut the server's side of ``user``'s socket down, as a network failure would."""
        client = self.clients.get(user)
        if client is None:
            return False
        conn = client._sink  # the test reaches into the connection: nothing else does this
        try:
            conn._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--grace", type=float, default=20.0)
    parser.add_argument("--queued", type=int, default=64)
    parser.add_argument("--refuse", default="", help="a user the resolver refuses (403)")
    args = parser.parse_args()

    def resolve(room: Any, ident: wsroom.Identity) -> str:
        if args.refuse and ident.user_id == args.refuse:
            raise ValueError(f"{args.refuse} is not welcome")
        return ident.user_id

    hooks = Hooks()
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(args.grace, args.queued))
    hooks.hub = hub
    ws = make_handler(
        hub,
        lambda env: str(env["PATH_INFO"]).rsplit("/", 1)[-1],
        lambda env: wsroom.Identity(parse_qs(env.get("QUERY_STRING", "")).get("user", [""])[0]),
        resolve,
    )
    js = client_js_app()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/wsroom.js":
            return js(environ, start_response)
        if path.startswith("/ws/"):
            return ws(environ, start_response)
        if path in ("/cut", "/ups", "/members"):
            query = parse_qs(environ.get("QUERY_STRING", ""))
            user = query.get("user", [""])[0]
            answer: Any
            if path == "/members":
                try:
                    members = hub.members(query.get("room", [""])[0])
                except wsroom.RoomNotFound:
                    members = {}
                answer = {pid: presence.value for pid, presence in members.items()}
            else:
                answer = hooks.cut(user) if path == "/cut" else hooks.ups.get(user, [])
            body = json.dumps(answer).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        headers = [("Content-Type", "text/html"), ("Content-Length", str(len(PAGE)))]
        start_response("200 OK", headers)
        return [PAGE]

    server = serve(app, "127.0.0.1", args.port)
    print(f"js test hub on http://127.0.0.1:{server.server_port}", flush=True)
    run_until_signal(server, hub)


if __name__ == "__main__":
    main()
