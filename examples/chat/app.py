"""A chat on Flask under gevent: rooms by URL, names, presence, and reconnects without loss.

    python examples/chat/app.py            # http://127.0.0.1:8080
    python examples/chat/app.py --port 9000 --grace 60
    python examples/chat/app.py --backplane redis://127.0.0.1:6379/0    # one of many processes
    gunicorn -c examples/chat/gunicorn.conf.py                          # 4 workers (see there)

Each browser tab is one participant, identified by a session id the page keeps in
``sessionStorage``: a reload, or a network drop shorter than the grace period, brings it back as
the same participant, and the hub flushes what was said meanwhile, in order, after ``on_join``.
The page connects with resume without loss (``wsroom.js``'s ``resume: true``): messages go
through once each way across drops, and when the hub could not keep everything (``--queued``
too small for the time away) the page shows a notice and fetches the rest from the history.

The application's own state (history, names, presence) lives in one pykka actor, ``ChatState``;
the hooks talk to it through a proxy made once. Presence is pushed, never polled: ``on_join`` (a
first join: online), ``on_presence`` (away inside the grace period, and back) and ``on_leave``
(gone) each tell the actor, which broadcasts the new list through the hub's proxy.

With a backplane (``--backplane URL`` or ``WSROOM_BACKPLANE``) the hub spans every process on
that Redis, and the chat's state moves to Redis too (``redis_state.RedisChatState``, same calls),
so history, names and presence are the same whichever process a page reaches. ``GET /healthz``
answers 200 ``ok``, or 503 once the process is stopping.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
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
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # redis_state.py, whoever imports this module
ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
CID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HISTORY = 200  # messages kept per room
MAX_TEXT = 2000
logger = logging.getLogger("wsroom.examples.chat")


def clean_name(name: str) -> str:
    name = " ".join(name.split())[:32]
    return name or "anonymous"


class ChatState(GeventActor):
    """Owns every room's history, the members' names and their presence.

    It sends presence lists itself, through the hub's proxy: asks from one actor stay in order,
    so the latest list is always the last one a page gets.
    """

    def __init__(self, hub_proxy: Any) -> None:
        super().__init__()
        self.hub_proxy = hub_proxy
        self.history: dict[str, deque[dict[str, Any]]] = {}
        self.seq: dict[str, int] = {}
        self.names: dict[tuple[str, str], str] = {}
        self.presence: dict[str, dict[str, str]] = {}  # room -> pid -> "online" | "away"
        self.epoch: dict[str, str] = {}  # a room's history id: a new one when it is recreated
        self.versions: dict[str, int] = {}  # room -> the last presence list's version
        # A random id per server start: a page that sees another one knows the server
        # restarted (its history is gone), not merely that its room was emptied and made anew.
        self.server = uuid.uuid4().hex[:12]

    def server_id(self) -> str:
        return self.server

    def _append(self, room: str, entry: dict[str, Any]) -> dict[str, Any]:
        if room not in self.epoch:
            self.epoch[room] = uuid.uuid4().hex[:12]
        seq = self.seq.get(room, 0) + 1
        self.seq[room] = seq
        entry = {"seq": seq, "ts": time.time(), **entry}
        self.history.setdefault(room, deque(maxlen=HISTORY)).append(entry)
        return entry

    def joined(self, room: str, pid: str, name: str, first: bool) -> dict[str, Any] | None:
        """Record a member's name. A first join is online, told to the others and goes into the
        history as a notice; a reconnect gets the list queued behind what it missed (whether it
        is back is ``on_presence``'s news)."""
        self.names[(room, pid)] = name
        if not first:
            self.send_roster(room, pid)
            return None
        self.set_presence(room, pid, "online")
        return self._append(room, {"kind": "joined", "from": pid, "name": name})

    def set_presence(self, room: str, pid: str, state: str) -> None:
        """A member is "online" or "away"; a member that already left stays gone."""
        if (room, pid) in self.names and self.presence.setdefault(room, {}).get(pid) != state:
            self.presence[room][pid] = state
            self.hub_proxy.broadcast(room, wsroom.Envelope("presence", self._roster(room)))

    def left(self, room: str, pid: str) -> dict[str, Any] | None:
        """A membership ended: off the list, and a notice; an empty room forgets its history."""
        name = self.names.pop((room, pid), None)
        members = self.presence.get(room, {})
        members.pop(pid, None)
        if not members:
            for per_room in (self.presence, self.history, self.seq, self.epoch, self.versions):
                per_room.pop(room, None)
            return None
        self.hub_proxy.broadcast(room, wsroom.Envelope("presence", self._roster(room)))
        if name is None:
            return None
        return self._append(room, {"kind": "left", "from": pid, "name": name})

    def send_roster(self, room: str, pid: str) -> None:
        """The presence list for one member (a first join asks for it with its ``sync``)."""
        self.hub_proxy.send_to(room, pid, wsroom.Envelope("presence", self._roster(room)))

    def post(self, room: str, pid: str, text: str, cid: str = "") -> dict[str, Any]:
        """A message; ``cid`` is the page's id for it: a page that re-sends a message it never
        saw confirmed (its socket died under it) gets the entry it already has, not a copy."""
        if cid:
            for entry in self.history.get(room, ()):
                if entry.get("cid") == cid and entry["from"] == pid:
                    return entry
        name = self.names.get((room, pid), "anonymous")
        entry = {"kind": "message", "from": pid, "name": name, "text": text}
        if cid:
            entry["cid"] = cid
        return self._append(room, entry)

    def epoch_of(self, room: str) -> str:
        return self.epoch.get(room, "")

    def since(self, room: str, after: int) -> list[dict[str, Any]]:
        return [e for e in self.history.get(room, ()) if e["seq"] > after]

    def _roster(self, room: str) -> dict[str, Any]:
        """The presence list, with a version (a page keeps the highest: see ``redis_state``)."""
        people = sorted(
            (
                {"id": pid, "name": self.names.get((room, pid), "anonymous"), "state": state}
                for pid, state in self.presence.get(room, {}).items()
            ),
            key=lambda p: (p["name"].lower(), p["id"]),
        )
        self.versions[room] = version = self.versions.get(room, 0) + 1
        return {"version": version, "people": people}


class ChatHooks(wsroom.Hooks):
    """Turn hub events into calls on the ``ChatState`` actor."""

    def __init__(self) -> None:
        self.state: Any = None  # the ChatState (or RedisChatState) proxy, made once
        self.hub: wsroom.Hub | None = None

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        """Greet the member; a first join is also "online" and a "joined" notice."""
        assert self.hub is not None
        name = clean_name(jc.identity.user_id)
        notice = self.state.joined(jc.room, jc.participant, name, not jc.reconnect).get()
        hello: dict[str, Any] = {
            "you": jc.participant,
            "name": name,
            "reconnect": jc.reconnect,
            "epoch": self.state.epoch_of(jc.room).get(),
            "server": self.state.server_id().get(),
            "worker": os.getpid(),  # which process serves this page: one of many behind gunicorn
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
            cid = payload.get("cid", "")
            cid = cid if isinstance(cid, str) and CID_RE.match(cid) else ""
            if text:
                self._broadcast(room, self.state.post(room, participant, text, cid).get())
        elif envelope.type == "sync":
            # Whatever was said between the history snapshot and the join (or after a gap).
            after = payload.get("after", 0)
            missed = self.state.since(room, after if isinstance(after, int) else 0).get()
            try:
                self.hub.send_to(room, participant, wsroom.Envelope("messages", missed))
            except (wsroom.RoomNotFound, wsroom.ParticipantNotFound, wsroom.HubStopped):
                return  # gone meanwhile (or the server is stopping): nobody to answer
            self.state.send_roster(room, participant)  # likewise for who came and went

    def on_presence(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, presence: wsroom.Presence
    ) -> None:
        """Away inside the grace period, or back: the actor tells the room. Waited for, so a
        stopping process (whose members go away as it leaves) tells the room before it ends."""
        online = presence is wsroom.Presence.ONLINE
        self.state.set_presence(room, participant, "online" if online else "away").get()

    def on_leave(
        self, room: wsroom.RoomID, participant: wsroom.ParticipantID, reason: BaseException
    ) -> None:
        """Gone for good: off the presence list, and a "left" notice."""
        notice = self.state.left(room, participant).get()
        if notice is not None:
            self._broadcast(room, notice)

    def _broadcast(self, room: str, entry: dict[str, Any]) -> None:
        assert self.hub is not None
        try:
            self.hub.broadcast(room, wsroom.Envelope("message", entry))
        except (wsroom.RoomNotFound, wsroom.HubStopped):
            pass  # the room emptied meanwhile


def resolve(room: wsroom.RoomID, identity: wsroom.Identity) -> str:
    """The participant is the tab's session id; refuse (403) anything else."""
    if not SID_RE.match(identity.session_id):
        raise ValueError("a session id of 8 to 64 letters, digits, - or _ is needed")
    return identity.session_id


class Chat:
    """A running chat: its Flask app, its hub, and whether it is stopping (for ``/healthz``)."""

    def __init__(self, app: flask.Flask, hub: wsroom.Hub) -> None:
        self.app = app
        self.hub = hub
        self.stopping = False

    def stop(self, timeout: float = 5.0) -> None:
        """From now on ``/healthz`` answers 503; then the hub stops: every connection gets 1001
        (with a backplane its members go away for their grace period, free to come back on
        another process). A second call does nothing more."""
        self.stopping = True
        self.hub.stop(timeout)


def create_app(
    grace: float = 30.0, queued: int = 256, backplane: str | None = None, **hub_options: Any
) -> Chat:
    """The chat: a Flask app and its hub (stop them with ``chat.stop()``). With ``backplane``
    (a ``redis://`` URL) the hub and the chat's state are shared by every process on it."""
    hooks = ChatHooks()  # the hub and the state need each other: wire them after
    if backplane:
        hub_options["backplane"] = backplane
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(grace, queued), **hub_options)
    hooks.hub = hub
    if backplane:
        from redis_state import RedisChatState  # only here: redis is needed with a backplane

        hooks.state = RedisChatState.start(backplane, HISTORY).proxy()
    else:
        hooks.state = ChatState.start(hub.proxy).proxy()

    app = flask.Flask(__name__, static_folder=str(HERE / "static"), static_url_path="/static")
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 0
    chat = Chat(app, hub)
    app.extensions["wsroom_chat"] = chat  # for gunicorn.conf.py's hooks

    @app.get("/")
    def index() -> Any:
        return flask.redirect("/r/lobby")

    @app.get("/healthz")
    def healthz() -> Any:
        """For a load balancer: 503 from the moment this process begins to stop. The header
        says which process answered (one of several workers behind one port)."""
        worker = {"X-Chat-Worker": str(os.getpid())}
        if chat.stopping:
            return flask.Response("stopping\n", 503, worker, mimetype="text/plain")
        return flask.Response("ok\n", 200, worker, mimetype="text/plain")

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

    return chat


def hub_options_from_env() -> dict[str, Any]:
    """Hub options for a server behind a proxy (the README's "Deploy"): the public host names
    (``WSROOM_CHAT_ALLOWED_HOSTS=chat.example.com,…``) and, for a proxy that terminates TLS in
    front of a server that cannot tell by itself, ``WSROOM_CHAT_TRUST_FORWARDED_PROTO=1``."""
    options: dict[str, Any] = {}
    hosts = [h.strip() for h in os.environ.get("WSROOM_CHAT_ALLOWED_HOSTS", "").split(",")]
    if any(hosts):
        options["allowed_hosts"] = [h for h in hosts if h]
    if os.environ.get("WSROOM_CHAT_TRUST_FORWARDED_PROTO") == "1":
        options["trust_forwarded_proto"] = True
    return options


def app_from_env() -> flask.Flask:
    """The WSGI app for a server such as gunicorn (``app:app_from_env()``), set up from the
    environment as ``main`` is from its flags: ``WSROOM_BACKPLANE``, ``WSROOM_CHAT_GRACE`` and
    ``hub_options_from_env``. Its ``Chat`` is ``app.extensions["wsroom_chat"]``."""
    chat = create_app(
        grace=float(os.environ.get("WSROOM_CHAT_GRACE", "30")),
        queued=int(os.environ.get("WSROOM_CHAT_QUEUED", "256")),
        backplane=os.environ.get("WSROOM_BACKPLANE") or None,
        **hub_options_from_env(),
    )
    return chat.app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("WSROOM_CHAT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("WSROOM_CHAT_PORT", "8080")))
    parser.add_argument(
        "--grace",
        type=float,
        default=float(os.environ.get("WSROOM_CHAT_GRACE", "30")),
        help="grace period, seconds",
    )
    parser.add_argument(
        "--queued",
        type=int,
        default=int(os.environ.get("WSROOM_CHAT_QUEUED", "256")),
        help="envelopes kept per member while away",
    )
    parser.add_argument(
        "--backplane",
        default=os.environ.get("WSROOM_BACKPLANE", ""),
        metavar="URL",
        help="redis://host:6379/0: one hub with every process on that Redis",
    )
    args = parser.parse_args()

    chat = create_app(
        grace=args.grace,
        queued=args.queued,
        backplane=args.backplane or None,
        **hub_options_from_env(),
    )
    try:
        server = serve(chat.app, args.host, args.port)
    except OSError as exc:  # most often the port is in use: one line, not a traceback
        chat.stop()
        why = os.strerror(exc.errno or 0)
        sys.exit(f"chat: cannot listen on {args.host}:{args.port}: {why}; pass --port")
    print(f"wsroom chat on http://{args.host}:{server.server_port}", flush=True)

    # As wsroom.transport.run_until_signal, with /healthz turning 503 first.
    received: gevent.event.AsyncResult[int] = gevent.event.AsyncResult()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, received.set, signum)
    logger.info("signal %d: stopping", received.get())
    chat.stop()
    server.stop(timeout=5.0)


if __name__ == "__main__":
    main()
