"""Shared fixtures: a live hub behind a real gevent WSGI server, real clients, and waiting.

The test process is monkey-patched so blocking clients (websocket-client, websockets' sync
client) yield to the hub's greenlets while they wait, like any gevent application.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
import websocket  # noqa: E402

import wsroom  # noqa: E402
from wsroom.transport import make_handler, serve  # noqa: E402


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Wait (cooperatively) until ``predicate()`` is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        gevent.sleep(0.005)


class Recorder(wsroom.Hooks):
    """Hooks that record every call; tests plug behaviour in through the ``*_fn`` attributes."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.joins: list[wsroom.JoinContext] = []
        self.leaves: list[tuple[str, str, BaseException]] = []
        self.messages: list[tuple[str, str, wsroom.Envelope]] = []
        self.join_fn: Callable[[wsroom.JoinContext, wsroom.Client], None] | None = None
        self.message_fn: Callable[[str, str, wsroom.Envelope], None] | None = None
        self.leave_fn: Callable[[str, str, BaseException], None] | None = None

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        self.events.append(("join", jc.participant, jc.reconnect))
        if self.join_fn is not None:
            self.join_fn(jc, client)
        self.joins.append(jc)

    def on_message(self, room: str, participant: str, envelope: wsroom.Envelope) -> None:
        self.events.append(("message", participant, envelope.type))
        self.messages.append((room, participant, envelope))
        if self.message_fn is not None:
            self.message_fn(room, participant, envelope)

    def on_leave(self, room: str, participant: str, reason: BaseException) -> None:
        self.events.append(("leave", participant, type(reason).__name__))
        self.leaves.append((room, participant, reason))
        if self.leave_fn is not None:
            self.leave_fn(room, participant, reason)

    def leaves_of(self, participant: str) -> list[BaseException]:
        return [r for _, p, r in self.leaves if p == participant]


def identity_from_query(environ: dict[str, Any]) -> wsroom.Identity:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return wsroom.Identity(query.get("user", [""])[0], query.get("session", [""])[0])


def room_from_path(environ: dict[str, Any]) -> str:
    return str(environ.get("PATH_INFO", "/ws/lobby")).rsplit("/", 1)[-1] or "lobby"


def resolve_user(room: str, identity: wsroom.Identity) -> str:
    return identity.user_id


class Live:
    """A running hub and server: ``url(room, user)`` and ``connect(room, user)``."""

    def __init__(self, hub: wsroom.Hub, hooks: Recorder, server: Any) -> None:
        self.hub = hub
        self.hooks = hooks
        self.server = server
        self.port: int = server.server_port
        self.clients: list[websocket.WebSocket] = []
        self.extra_servers: list[Any] = []  # more front ends on the same hub, stopped with it

    def url(self, room: str = "lobby", user: str = "alice") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{room}?user={user}"

    def connect(self, room: str = "lobby", user: str = "alice", **kw: Any) -> websocket.WebSocket:
        ws = websocket.create_connection(self.url(room, user), timeout=10, **kw)
        self.clients.append(ws)
        return ws

    def join(self, room: str = "lobby", user: str = "alice", **kw: Any) -> websocket.WebSocket:
        """Connect and wait until ``on_join`` returned (the participant is a member)."""
        before = sum(1 for jc in self.hooks.joins if jc.participant == user and jc.room == room)
        ws = self.connect(room, user, **kw)
        wait_until(
            lambda: (
                sum(1 for jc in self.hooks.joins if jc.participant == user and jc.room == room)
                > before
                and user in _members(self.hub, room)
            ),
            what=f"{user} to join {room}",
        )
        return ws


def _members(hub: wsroom.Hub, room: str) -> dict[Any, Any]:
    try:
        return hub.members(room)
    except wsroom.RoomNotFound:
        return {}


@pytest.fixture
def make_live() -> Iterator[Callable[..., Live]]:
    """Start hubs on demand: ``make_live(grace=..., queued=..., **new_hub_options)``."""
    started: list[Live] = []

    def start(
        grace: float = 0.0,
        queued: int = 0,
        hooks: Recorder | None = None,
        resolve: Callable[[str, wsroom.Identity], str] = resolve_user,
        **options: Any,
    ) -> Live:
        hooks = hooks or Recorder()
        hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(grace, queued), **options)
        app = make_handler(hub, room_from_path, identity_from_query, resolve)
        server = serve(app, port=0)
        live = Live(hub, hooks, server)
        started.append(live)
        return live

    yield start
    for live in started:
        for ws in live.clients:
            try:
                ws.close(timeout=0.5)
            except Exception:  # noqa: BLE001 -- already closed by the test
                pass
        live.hub.stop()
        for server in [live.server, *live.extra_servers]:
            server.stop(timeout=1)


@pytest.fixture
def live(make_live: Callable[..., Live]) -> Live:
    """A hub with a 30 s grace period and 64 queued envelopes, like the Go quick start."""
    return make_live(grace=30.0, queued=64)


def recv_json(ws: websocket.WebSocket) -> dict[str, Any]:
    """The next text frame, parsed."""
    opcode, data = ws.recv_data(control_frame=False)
    assert opcode == websocket.ABNF.OPCODE_TEXT, f"expected a text frame, got opcode {opcode}"
    obj: dict[str, Any] = json.loads(data)
    return obj


ASK = {"type": "wsroom.ack", "payload": {"ask": True}}
"""A resume connection's hub asking for an ack (its log half full: contract §7)."""


def recv_numbered(ws: websocket.WebSocket) -> dict[str, Any]:
    """The next frame of a resume connection that is not the hub asking for an ack."""
    while (obj := recv_json(ws)) == ASK:
        pass
    return obj


def send_json(ws: websocket.WebSocket, type_: str, payload: Any = None) -> None:
    ws.send(json.dumps({"type": type_, "payload": payload}))


def read_close(ws: websocket.WebSocket, timeout: float = 10.0) -> tuple[int, str]:
    """Read frames until the server's close frame; return its code and reason."""
    ws.settimeout(timeout)
    while True:
        frame = ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else 1005
            try:
                ws.send_close(code if code not in (1005, 1006) else 1000)
            except Exception:  # noqa: BLE001 -- the server may already be gone
                pass
            return code, frame.data[2:].decode("utf-8", "replace")
