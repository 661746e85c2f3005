"""A chat on Flask under gevent: rooms by URL, names, presence, and reconnects without loss.

    python examples/chat/app.py            # http://127.0.0.1:8080
    python examples/chat/app.py --port 9000 --grace 60

Each browser tab is one participant, identified by a session id the page keeps in
``sessionStorage``: a reload, or a network drop shorter than the grace period, brings it back as
the same participant, and the hub flushes what was said meanwhile, in order, after ``on_join``.

The application's own state (history, names, last presence) lives in one pykka actor,
``ChatState``; the hooks talk to it through a proxy made once.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import flask  # noqa: E402
import gevent  # noqa: E402
import gevent.event  # noqa: E402

import wsroom  # noqa: E402
from wsroom.actors import GeventActor  # noqa: E402
from wsroom.transport import client_js, serve  # noqa: E402
from wsroom.transport.flask import handle  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
HISTORY = 200  # messages kept per room
MAX_TEXT = 2000


def clean_name(name: str) -> str:
    name = " ".join(name.split())[:32]
    return name or "anonymous"


class ChatState(GeventActor):
    """Owns every room's history, the members' names and the last presence sent."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, deque[dict[str, Any]]] = {}
        self.seq: dict[str, int] = {}
        self.names: dict[tuple[str, str], str] = {}
        self.presence: dict[str, list[dict[str, Any]]] = {}
        self.epoch: dict[str, str] = {}  # a room's history id: a new one when it is recreated

    def _append(self, room: str, entry: dict[str, Any]) -> dict[str, Any]:
        if room not in self.epoch:
            self.epoch[room] = uuid.uuid4().hex[:12]
        seq = self.seq.get(room, 0) + 1
        self.seq[room] = seq
        entry = {"seq": seq, "ts": time.time(), **entry}
        self.history.setdefault(room, deque(maxlen=HISTORY)).append(entry)
        return entry

    def joined(self, room: str, pid: str, name: str, first: bool) -> dict[str, Any] | None:
        """Record a member's name; a first join also goes into the history as a notice."""
        self.names[(room, pid)] = name
        if first:
            return self._append(room, {"kind": "joined", "from": pid, "name": name})
        return None

    def left(self, room: str, pid: str) -> dict[str, Any] | None:
        name = self.names.pop((room, pid), None)
        if name is None:
            return None
        return self._append(room, {"kind": "left", "from": pid, "name": name})

    def post(self, room: str, pid: str, text: str) -> dict[str, Any]:
        name = self.names.get((room, pid), "anonymous")
        return self._append(room, {"kind": "message", "from": pid, "name": name, "text": text})

    def epoch_of(self, room: str) -> str:
        return self.epoch.get(room, "")

    def since(self, room: str, after: int) -> list[dict[str, Any]]:
        return [e for e in self.history.get(room, ()) if e["seq"] > after]

    def roster(self, room: str, members: dict[str, str]) -> list[dict[str, Any]] | None:
        """The presence list for ``members`` (pid -> "online" | "away"); None if unchanged."""
        people = sorted(
            (
                {"id": pid, "name": self.names.get((room, pid), "anonymous"), "state": state}
                for pid, state in members.items()
            ),
            key=lambda p: (p["name"].lower(), p["id"]),
        )
        if self.presence.get(room) == people:
            return None
        if people:
            self.presence[room] = people
        else:
            self.presence.pop(room, None)
            self.history.pop(room, None)  # an empty room forgets its history
            self.seq.pop(room, None)
            self.epoch.pop(room, None)
        return people

    def rooms(self) -> list[str]:
        return list(self.presence)


class ChatHooks(wsroom.Hooks):
    def __init__(self, state: Any) -> None:
        self.state = state  # the ChatState proxy, made once
        self.hub: wsroom.Hub | None = None

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        assert self.hub is not None
        name = clean_name(jc.identity.user_id)
        notice = self.state.joined(jc.room, jc.participant, name, not jc.reconnect).get()
        hello: dict[str, Any] = {
            "you": jc.participant,
            "name": name,
            "reconnect": jc.reconnect,
            "epoch": self.state.epoch_of(jc.room).get(),
        }
        if not jc.reconnect:
            # A first join gets the recent history here; a reconnect gets what it missed from
            # the hub's queue, flushed right after this hook returns.
            hello["history"] = self.state.since(jc.room, 0).get()
        client.send(wsroom.Envelope("hello", hello))
        if notice is not None:
            self._broadcast(jc.room, notice)

    def on_message(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, envelope: wsroom.Envelope
    ) -> None:
        assert self.hub is not None
        payload = envelope.payload if isinstance(envelope.payload, dict) else {}
        if envelope.type == "say":
            text = str(payload.get("text", "")).strip()[:MAX_TEXT]
            if text:
                self._broadcast(room, self.state.post(room, participant, text).get())
        elif envelope.type == "sync":
            # Whatever was said between the history snapshot and the join (or after a gap).
            after = payload.get("after", 0)
            missed = self.state.since(room, after if isinstance(after, int) else 0).get()
            self.hub.send_to(room, participant, wsroom.Envelope("messages", missed))

    def on_leave(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, reason: BaseException
    ) -> None:
        notice = self.state.left(room, participant).get()
        if notice is not None:
            self._broadcast(room, notice)

    def _broadcast(self, room: str, entry: dict[str, Any]) -> None:
        assert self.hub is not None
        try:
            self.hub.broadcast(room, wsroom.Envelope("message", entry))
        except (wsroom.RoomNotFound, wsroom.HubStopped):
            pass  # the room emptied meanwhile


def watch_presence(hub: wsroom.Hub, state: Any, every: float) -> None:
    """Broadcast each room's presence list when it changes. The hub has no hook for a member
    going away inside its grace period, so this polls ``hub.members()``."""
    while True:
        try:
            rooms = set(hub.rooms()) | set(state.rooms().get())
        except wsroom.HubStopped:
            return
        for room in rooms:
            try:
                members = {
                    pid: "online" if p is wsroom.Presence.ONLINE else "away"
                    for pid, p in hub.members(room).items()
                }
            except wsroom.RoomNotFound:
                members = {}
            except wsroom.HubStopped:
                return
            people = state.roster(room, members).get()
            if people:
                try:
                    hub.broadcast(room, wsroom.Envelope("presence", people))
                except (wsroom.RoomNotFound, wsroom.HubStopped):
                    pass
        gevent.sleep(every)


def resolve(room: wsroom.RoomID, identity: wsroom.Identity) -> str:
    """The participant is the tab's session id; refuse (403) anything else."""
    if not SID_RE.match(identity.session_id):
        raise ValueError("a session id of 8 to 64 letters, digits, - or _ is needed")
    return identity.session_id


def create_app(
    grace: float = 30.0, queued: int = 256, presence_every: float = 0.25
) -> tuple[flask.Flask, wsroom.Hub]:
    """The Flask app and its hub (stop it with ``hub.stop()``)."""
    state = ChatState.start().proxy()
    hooks = ChatHooks(state)
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(grace, queued))
    hooks.hub = hub
    gevent.spawn(watch_presence, hub, state, presence_every)

    app = flask.Flask(__name__, static_folder=str(HERE / "static"), static_url_path="/static")
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 0

    @app.get("/")
    def index() -> Any:
        return flask.redirect("/r/lobby")

    @app.get("/r/<room>")
    def room_page(room: str) -> Any:
        if not ROOM_RE.match(room):
            flask.abort(404)
        return flask.send_from_directory(HERE / "static", "room.html")

    @app.get("/wsroom.js")
    def wsroom_js() -> Any:
        return flask.Response(client_js(), mimetype="text/javascript")

    @app.route("/ws/<room>", websocket=True)
    def ws(room: str) -> Any:
        if not ROOM_RE.match(room):
            flask.abort(404)
        args = flask.request.args
        identity = wsroom.Identity(user_id=args.get("name", ""), session_id=args.get("sid", ""))
        return handle(hub, room, identity, resolve)

    return app, hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("WSROOM_CHAT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("WSROOM_CHAT_PORT", "8080")))
    parser.add_argument("--grace", type=float, default=30.0, help="grace period, seconds")
    args = parser.parse_args()

    app, hub = create_app(grace=args.grace)
    server = serve(app, args.host, args.port)
    print(f"wsroom chat on http://{args.host}:{server.server_port}", flush=True)

    stopping = gevent.event.Event()
    gevent.signal_handler(signal.SIGINT, stopping.set)
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    stopping.wait()
    hub.stop()
    server.stop(timeout=2)


if __name__ == "__main__":
    main()
