"""Helpers for the cross-process tests: hub processes (``node.py``) and their control API, real
WebSocket clients that read in the background, and waiting on what every process reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import websocket
from conftest import wait_until

import wsroom

NODE_SCRIPT = Path(__file__).resolve().parent / "node.py"

# The timings the fault tests run the backplane with: a dead process is noticed within
# DEAD_AFTER + HEARTBEAT, a call while Redis is away fails within BACKPLANE_TIMEOUT.
DEAD_AFTER = 2.0
HEARTBEAT = 0.5
BACKPLANE_TIMEOUT = 3.0
# What the contract allows whatever the settings (§8): a call while Redis is away fails within
# 10 s, service is back within 20 s of Redis.
UNAVAILABLE_WITHIN = 10.0
BACK_WITHIN = 20.0
# Slack on top of a bound this library promises, for a loaded two-core machine.
SLACK = 3.0


def env(type_: str, payload: Any = None) -> dict[str, Any]:
    """An envelope as the control API takes it."""
    return {"type": type_, "payload": payload}


class NodeError(Exception):
    """A control-API answer naming an error that is not a wsroom exception."""


def raise_named(name: str, detail: str) -> None:
    """Raise the wsroom exception a node reported by class name (so ``pytest.raises`` works)."""
    cls = getattr(wsroom, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(detail)
        except TypeError:
            exc = None
        if exc is not None:
            raise exc
    raise NodeError(f"{name}: {detail}")


class WsClient:
    """One WebSocket connection whose reader greenlet keeps every text frame (parsed) until the
    server's close frame, whose code and reason it records."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.ws = websocket.create_connection(url, timeout=timeout)
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: BaseException | None = None  # the socket failed without a close frame
        self.reading = gevent.event.Event()  # cleared: the client stops reading for a while
        self.reading.set()
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            self.reading.wait()
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except (websocket.WebSocketException, OSError) as exc:
                self.error = exc
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close_code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                self.close_reason = data[2:].decode("utf-8", "replace")
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.frames.append(json.loads(data))

    @property
    def ended(self) -> bool:
        """The connection is over (a close frame, or the socket failed)."""
        return self.reader.dead

    def payloads(self, type_: str) -> list[Any]:
        """The payloads of every frame of ``type_`` received so far, in order."""
        return [f.get("payload") for f in self.frames if f.get("type") == type_]

    def types(self) -> list[str]:
        return [str(f.get("type")) for f in self.frames]

    def wait_payloads(self, type_: str, count: int, timeout: float = 10.0) -> list[Any]:
        """Wait until ``count`` frames of ``type_`` arrived; return all of their payloads."""
        wait_until(
            lambda: len(self.payloads(type_)) >= count or self.ended,
            timeout=timeout,
            what=f"{count} {type_!r} frames on {self.url}",
        )
        got = self.payloads(type_)
        assert len(got) >= count, f"{self.url} ended ({self.close_code}) after {got}"
        return got

    def wait_hello(self, timeout: float = 10.0) -> dict[str, Any]:
        """The latest ``hello`` (sent by the node's ``on_join``), waiting for the first one."""
        return self.wait_payloads("hello", 1, timeout)[-1]  # type: ignore[no-any-return]

    def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Wait for the server's close frame; return its code and reason."""
        self.reader.join(timeout=timeout)
        assert self.reader.dead, f"{self.url} was not closed within {timeout}s"
        return self.close_code, self.close_reason

    def send(self, type_: str, payload: Any = None) -> None:
        self.ws.send(json.dumps({"type": type_, "payload": payload}))

    def close(self, code: int = 1000, reason: bytes = b"bye", timeout: float = 10.0) -> None:
        """Close as a client does, reading what the server wrote before its close reply."""
        self.reading.set()
        if not self.reader.dead:
            try:
                self.ws.send_close(code, reason)
            except (websocket.WebSocketException, OSError):
                pass
            self.reader.join(timeout=timeout)
        self.abort()

    def abort(self) -> None:
        """Drop the socket without a close frame (a client that vanishes)."""
        try:
            self.ws.shutdown()
        except (websocket.WebSocketException, OSError):
            pass
        self.reading.set()
        self.reader.join(timeout=2)


class Node:
    """A hub process (``node.py``) and its control API."""

    def __init__(self, argv: list[str], log_path: Path, name: str) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.port = 0
        self.last_events: list[list[Any]] = []  # what it had recorded when last asked
        self.hub_stopped = False  # stop_hub() was called: the process is up, its hub is not
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(NODE_SCRIPT), *argv],
                stdout=subprocess.PIPE,
                stderr=log,
                # The repository root would shadow the installed package.
                cwd=tempfile.gettempdir(),
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Read ``PORT <n>`` from the process's first line of output."""
        assert self.proc.stdout is not None
        line = b""
        with gevent.Timeout(timeout, False):
            line = self.proc.stdout.readline()
        if not line.startswith(b"PORT "):
            self.kill()
            raise RuntimeError(f"{self.name} did not start ({line!r}): {self.log_tail()}")
        self.port = int(line.split()[1])

    def __repr__(self) -> str:
        return f"<Node {self.name} port={self.port} alive={self.alive}>"

    # -- the process ---------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process vanishes mid-stream, its sockets reset by the kernel."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM: ``hub.stop()``, then exit; returns the exit status."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- WebSocket clients ---------------------------------------------------------------

    def ws_url(self, room: str, user: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{room}?user={user}"

    def connect(self, room: str, user: str) -> WsClient:
        return WsClient(self.ws_url(room, user))

    # -- the control API -----------------------------------------------------------------

    def _http(self, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            headers={"Content-Type": "application/json"},
            method="GET" if data is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a refusal still carries a JSON answer
            return json.loads(exc.read() or b"{}")

    def events(self, kind: str | None = None) -> list[list[Any]]:
        """The hook events this process recorded so far (of one ``kind``: join, message,
        leave, presence, error)."""
        self.last_events = self._http("/events")
        return [e for e in self.last_events if kind is None or e[0] == kind]

    def call_raw(self, method: str, *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        """The control API's answer as is: ``{"ok": ...}`` or ``{"error": ..., "detail": ...}``."""
        return self._http(
            "/call", {"method": method, "args": list(args), "kwargs": kwargs}, timeout=timeout
        )

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A hub call in this process: its result as JSON, or the wsroom error it raised."""
        answer = self.call_raw(method, *args, **kwargs)
        if "error" in answer:
            raise_named(answer["error"], answer.get("detail", ""))
        return answer["ok"]

    def send_to(self, room: str, user: str, type_: str, payload: Any = None) -> str:
        """``hub.send_to``: ``"SENT"`` or ``"QUEUED"``."""
        return self.call("send_to", room, user, env(type_, payload))  # type: ignore[no-any-return]

    def broadcast(
        self, room: str, type_: str, payload: Any = None, exclude: tuple[str, ...] | list[str] = ()
    ) -> dict[str, Any]:
        """``hub.broadcast``: ``{"sent": n, "queued": n, "dropped": [...]}``."""
        return self.call(  # type: ignore[no-any-return]
            "broadcast", room, env(type_, payload), exclude=list(exclude)
        )

    def close_room(self, room: str) -> None:
        self.call("close_room", room)

    def rooms(self) -> list[str]:
        return sorted(self.call("rooms"))

    def members(self, room: str) -> dict[str, str]:
        """``hub.members``: ``{pid: "ONLINE" | "OFFLINE"}``."""
        return self.call("members", room)  # type: ignore[no-any-return]

    def members_or_none(self, room: str) -> dict[str, str]:
        """Members, or ``{}`` when the room does not exist."""
        try:
            return self.members(room)
        except wsroom.RoomNotFound:
            return {}

    def stop_hub(self) -> None:
        """``hub.stop()`` in this process (the process stays up, its hub stopped, so what
        its hooks recorded can still be read)."""
        self.call("stop")
        self.hub_stopped = True


class Cluster:
    """Hub processes against one backplane. Indexing is stable: a dead node keeps its place."""

    def __init__(self, nodes: list[Node], spawn: Any) -> None:
        self.nodes = nodes
        self._spawn = spawn  # () -> Node, started and ready
        self.clients: list[WsClient] = []

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def live(self) -> list[Node]:
        """The processes whose hub runs (the ones to ask)."""
        return [n for n in dict.fromkeys(self.nodes) if n.alive and not n.hub_stopped]

    def add(self) -> Node:
        """Start one more process on the same backplane."""
        node: Node = self._spawn()
        self.nodes.append(node)
        return node

    def kill(self, node: Node) -> None:
        """SIGKILL one process, keeping what it had recorded (its events count in the sums)."""
        node.events()
        node.kill()

    def shutdown(self) -> None:
        for ws in self.clients:
            ws.abort()
        for node in self.nodes:
            node.kill()

    # -- clients -------------------------------------------------------------------------

    def connect(self, node: Node, room: str, user: str) -> WsClient:
        ws = node.connect(room, user)
        self.clients.append(ws)
        return ws

    def join(self, node: Node, room: str, user: str, timeout: float = 10.0) -> WsClient:
        """Connect through ``node`` and wait until every live process sees the member ONLINE."""
        ws = self.connect(node, room, user)
        ws.wait_hello(timeout)
        self.wait_presence(room, user, "ONLINE", timeout=timeout)
        return ws

    def drop(self, ws: WsClient, room: str, user: str, timeout: float = 10.0) -> None:
        """Close a client and wait until every live process sees the member OFFLINE."""
        ws.close()
        self.wait_presence(room, user, "OFFLINE", timeout=timeout)

    # -- what the processes report -------------------------------------------------------

    def wait_presence(
        self, room: str, user: str, presence: str | None, timeout: float = 10.0
    ) -> None:
        """Wait until ``members(room)`` on every live process gives ``user`` that presence
        (None: not a member, or no such room)."""
        try:
            wait_until(
                lambda: all(n.members_or_none(room).get(user) == presence for n in self.live),
                timeout=timeout,
                what=f"{user} to be {presence} in {room} on every process",
            )
        except AssertionError as exc:
            seen = {n.name: n.call_raw("members", room) for n in self.live}
            raise AssertionError(
                f"{exc}; members({room!r}) as each process sees it: {seen}"
            ) from exc

    def events(self, kind: str | None = None) -> list[list[Any]]:
        """Hook events summed over the processes (a dead one: what it had when it died)."""
        out: list[list[Any]] = []
        for node in dict.fromkeys(self.nodes):  # each process once
            out.extend(node.events() if node.alive else node.last_events)
        return [e for e in out if kind is None or e[0] == kind]

    def leaves(self, user: str | None = None, room: str | None = None) -> list[list[Any]]:
        """``["leave", room, pid, reason, cause]`` events over every process."""
        return [
            e
            for e in self.events("leave")
            if (user is None or e[2] == user) and (room is None or e[1] == room)
        ]

    def presences(self, user: str) -> list[str]:
        """``ONLINE`` / ``OFFLINE`` changes reported for ``user`` over every process."""
        return [e[3] for e in self.events("presence") if e[2] == user]

    def joins(self, user: str) -> list[list[Any]]:
        return [e for e in self.events("join") if e[2] == user]


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[float, Any, BaseException | None]:
    """Run ``call``; return the seconds it took, its result and what it raised."""
    start = time.monotonic()
    try:
        result = call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- the caller asserts on it
        return time.monotonic() - start, None, exc
    return time.monotonic() - start, result, None
