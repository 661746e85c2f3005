"""Two-player tic-tac-toe on plain gevent: wsroom hooks, one pykka actor per game, a bot.

    python examples/game/app.py            # http://127.0.0.1:8080
    python examples/game/app.py --port 9000 --grace 30

Open the printed address: it sends you to a new game. Share its link with a friend, or press
"Play the bot" (a Python client, ``bot.py``, joins as your opponent).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

import wsroom  # noqa: E402
from wsroom.transport import client_js_app, make_handler, run_until_signal, serve  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bot  # noqa: E402
from game import Lobby  # noqa: E402

ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SID_RE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class GameHooks(wsroom.Hooks):
    """Turn hub events into commands for the game actors.

    A player's seat is online from its join (``on_join``), offline while it is inside its grace
    period and online again when it is back (``on_presence``), and free once it left
    (``on_leave``); the game actor broadcasts each new state itself.
    """

    def __init__(self, lobby: Any) -> None:
        self.lobby = lobby  # the Lobby proxy, made once
        self.hub: wsroom.Hub | None = None

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        game = self.lobby.game(jc.room).get()
        name = " ".join(jc.identity.user_id.split())[:24] or "Player"
        state = game.join(jc.participant, name).get()
        client.send(wsroom.Envelope("hello", {"you": jc.participant, "state": state}))

    def on_message(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, envelope: wsroom.Envelope
    ) -> None:
        assert self.hub is not None
        game = self.lobby.find(room).get()
        if game is None:
            return
        payload = envelope.payload if isinstance(envelope.payload, dict) else {}
        error = None
        if envelope.type == "play":
            error = game.play(participant, payload.get("cell")).get()
        elif envelope.type == "rematch":
            error = game.rematch(participant).get()
        elif envelope.type == "sync":
            # Anything broadcast while our join was in flight: the latest state is enough.
            state = game.snapshot().get()
            self.hub.send_to(room, participant, wsroom.Envelope("state", state))
        if error:
            self.hub.send_to(room, participant, wsroom.Envelope("error", {"message": error}))

    def on_leave(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, reason: BaseException
    ) -> None:
        game = self.lobby.find(room).get()
        if game is None:
            return
        game.left(participant).get()
        assert self.hub is not None
        try:
            self.hub.members(room)
        except wsroom.RoomNotFound:
            self.lobby.drop(room)  # nobody left: the game actor stops
        except wsroom.HubStopped:
            pass

    def on_presence(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, presence: wsroom.Presence
    ) -> None:
        """Dropped inside the grace period (the other player sees "reconnecting…"), or back."""
        game = self.lobby.find(room).get()
        if game is not None:
            game.presence(participant, presence is wsroom.Presence.ONLINE)


def identity(environ: Environ) -> wsroom.Identity:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return wsroom.Identity(query.get("name", [""])[0], query.get("sid", [""])[0])


def resolve(room: wsroom.RoomID, ident: wsroom.Identity) -> str:
    if not SID_RE.match(ident.session_id):
        raise ValueError("a session id is needed")
    return ident.session_id


def _file(name: str, content_type: str) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    data = (HERE / "static" / name).read_bytes()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-cache"),
            ],
        )
        return [data]

    return app


def _plain(
    status: str, text: str, start_response: StartResponse, *headers: tuple[str, str]
) -> list[bytes]:
    body = text.encode()
    length = ("Content-Length", str(len(body)))
    start_response(status, [("Content-Type", "text/plain"), length, *headers])
    return [body]


def create_app(
    grace: float = 30.0,
) -> tuple[Callable[[Environ, StartResponse], Iterable[bytes]], wsroom.Hub]:
    """The WSGI app (a tiny router) and its hub."""
    hooks = GameHooks(None)  # the hub and the lobby need each other: wire them after
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(grace, 64))
    lobby = Lobby.start(hub).proxy()
    hooks.lobby = lobby
    hooks.hub = hub

    ws = make_handler(hub, lambda env: str(env["PATH_INFO"]).rsplit("/", 1)[-1], identity, resolve)
    js = client_js_app()
    files = {
        "/static/game.js": _file("game.js", "text/javascript; charset=utf-8"),
        "/static/game.css": _file("game.css", "text/css; charset=utf-8"),
    }
    page = _file("game.html", "text/html; charset=utf-8")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "/")
        parts = path.strip("/").split("/")
        if path == "/":
            where = ("Location", f"/g/{uuid.uuid4().hex[:8]}")
            return _plain("302 Found", "a new game\n", start_response, where)
        if path == "/wsroom.js":
            return js(environ, start_response)
        if path in files:
            return files[path](environ, start_response)
        if len(parts) == 2 and ROOM_RE.match(parts[1]):
            if parts[0] == "g":
                return page(environ, start_response)
            if parts[0] == "ws":
                return ws(environ, start_response)
            if parts[0] == "bot" and environ.get("REQUEST_METHOD") == "POST":
                host = environ.get("HTTP_HOST", f"127.0.0.1:{environ['SERVER_PORT']}")
                gevent.spawn(bot.play, f"ws://{host}/ws/{parts[1]}")
                return _plain("202 Accepted", "the bot is on its way\n", start_response)
        return _plain("404 Not Found", "not found\n", start_response)

    return app, hub


def main() -> None:
    parser = argparse.ArgumentParser(description="wsroom tic-tac-toe")
    parser.add_argument("--host", default=os.environ.get("WSROOM_GAME_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("WSROOM_GAME_PORT", "8080")))
    parser.add_argument("--grace", type=float, default=30.0, help="grace period, seconds")
    args = parser.parse_args()

    app, hub = create_app(grace=args.grace)
    try:
        server = serve(app, args.host, args.port)
    except OSError as exc:  # most often the port is in use: one line, not a traceback
        hub.stop()
        why = os.strerror(exc.errno or 0)
        sys.exit(f"game: cannot listen on {args.host}:{args.port}: {why}; pass --port")
    print(f"wsroom tic-tac-toe on http://{args.host}:{server.server_port}", flush=True)

    run_until_signal(server, hub)


if __name__ == "__main__":
    main()
