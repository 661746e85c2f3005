"""What wsroom takes from its libraries' private internals, so an upgrade that breaks it fails here.

Each failure names the library, its installed version and what to re-check: simple-websocket
(``transport/_simple_websocket.py``), gevent (``transport/_gevent_socket.py``) and pykka
(``actors/runtime.py``, the gevent runtime).
"""

from __future__ import annotations

import _socket
import importlib
import inspect
import socket
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import gevent.event
import gevent.pywsgi
import gevent.socket
import pykka
import pytest
import simple_websocket
from gevent.exceptions import ConcurrentObjectUseError
from wsproto import WSConnection
from wsproto.connection import Connection

from wsroom.actors.runtime import GeventActor
from wsroom.transport._gevent_socket import raw_socket, read_waiter
from wsroom.transport._simple_websocket import ServerSocket, request_socket

HANDSHAKE = {
    "REQUEST_METHOD": "GET",
    "HTTP_HOST": "localhost",
    "HTTP_UPGRADE": "websocket",
    "HTTP_CONNECTION": "Upgrade",
    "HTTP_SEC_WEBSOCKET_VERSION": "13",
    "HTTP_SEC_WEBSOCKET_KEY": "MDEyMzQ1Njc4OWFiY2RlZg==",
    "HTTP_SEC_WEBSOCKET_PROTOCOL": "wsroom.resume.1",
}


def broke(dist: str, what: str, recheck: str) -> str:
    return (
        f"{dist} {version(dist)} changed an internal wsroom relies on: {what}. Re-check {recheck}"
    )


def simple_websocket_broke(what: str) -> str:
    return broke("simple-websocket", what, "transport/_simple_websocket.py (ServerSocket)")


def pykka_broke(what: str) -> str:
    return broke("pykka", what, "actors/runtime.py (GeventActor, GeventFuture)")


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair: the server's end (handed over in the environ) and the client's."""
    server, client = socket.socketpair()
    server.settimeout(5)
    client.settimeout(5)
    yield server, client
    server.close()
    client.close()


# simple-websocket


def test_simple_websocket_server_has_handle_events() -> None:
    assert callable(getattr(simple_websocket.Server, "_handle_events", None)), (
        simple_websocket_broke("Server._handle_events, which ServerSocket overrides, is gone")
    )


def test_simple_websocket_server_takes_the_keywords_server_socket_passes() -> None:
    params = inspect.signature(simple_websocket.Server.__init__).parameters
    for name in ("subprotocols", "thread_class", "event_class"):
        assert name in params, simple_websocket_broke(f"Server.__init__ lost its keyword {name}")


def test_simple_websocket_handshake_runs_in_the_constructor_through_ws_and_sock(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    server_end, _ = sockets
    seen: dict[str, Any] = {}

    class Probe(simple_websocket.Server):  # type: ignore[misc]
        def _handle_events(self) -> bool:
            seen["ws"] = getattr(self, "ws", None)
            seen["sock"] = getattr(self, "sock", None)
            seen["choose_subprotocol"] = getattr(self, "choose_subprotocol", None)
            return True

    readers: list[Any] = []

    class Reader:
        def __init__(self, target: Any = None) -> None:
            self.name = "reader"
            self.target = target
            self.started = False
            readers.append(self)

        def start(self) -> None:
            self.started = True

    Probe(
        {**HANDSHAKE, "werkzeug.socket": server_end},
        subprotocols=["wsroom.resume.1"],
        thread_class=Reader,
        event_class=gevent.event.Event,
    )
    assert seen, simple_websocket_broke("Server.__init__ no longer calls self._handle_events()")
    assert isinstance(seen["ws"], WSConnection), simple_websocket_broke(
        "self.ws is no longer the wsproto WSConnection during the handshake"
    )
    assert seen["sock"] is server_end, simple_websocket_broke(
        "self.sock is no longer the environ's socket"
    )
    assert callable(seen["choose_subprotocol"]), simple_websocket_broke(
        "self.choose_subprotocol(request) is gone"
    )
    assert len(readers) == 1 and readers[0].target is not None and readers[0].started, (
        simple_websocket_broke("the reader is no longer thread_class(target=...) then .start()")
    )


def test_server_socket_answers_the_handshake_and_leaves_the_socket_to_wsroom(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    server_end, client_end = sockets
    server = ServerSocket(
        {**HANDSHAKE, "werkzeug.socket": server_end},
        compression=False,
        subprotocols=["wsroom.resume.1"],
    )
    answer = client_end.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), simple_websocket_broke(
        f"ServerSocket sent {answer[:40]!r} instead of a 101"
    )
    assert b"wsroom.resume.1" in answer, simple_websocket_broke("choose_subprotocol went unused")
    assert b"permessage-deflate" not in answer.lower(), simple_websocket_broke(
        "its own _handle_events answered (it always accepts permessage-deflate)"
    )
    assert server.subprotocol == "wsroom.resume.1"
    assert isinstance(server.protocol, Connection), broke(
        "wsproto",
        "WSConnection.connection is no longer the Connection after the handshake",
        "transport/_simple_websocket.py (ServerSocket.protocol)",
    )
    # Nothing of simple-websocket's reads the socket: what the client sends next is wsroom's.
    client_end.sendall(b"frames")
    gevent.sleep(0.01)
    assert server_end.recv(16) == b"frames", simple_websocket_broke(
        "it read the socket itself, past the reader stand-in"
    )


# gevent


def test_gevent_pywsgi_keeps_the_request_socket_behind_wsgi_input() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["sock"] = request_socket(environ)
        seen["stream"] = environ["wsgi.input"]
        start_response("204 No Content", [])
        return []

    class Handler(gevent.pywsgi.WSGIHandler):  # type: ignore[misc]
        def handle_one_response(self) -> None:
            seen["handler_socket"] = self.socket
            super().handle_one_response()

    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, handler_class=Handler, log=None)
    server.start()
    try:
        client = socket.create_connection(("127.0.0.1", server.server_port), timeout=5)
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 204")
        client.close()
    finally:
        server.stop(timeout=1)
    assert seen["sock"] is seen["handler_socket"], broke(
        "gevent",
        "wsgi.input no longer leads (.rfile.raw._sock) to the handler's own socket",
        "transport/_simple_websocket.py (request_socket)",
    )
    assert callable(getattr(seen["stream"].rfile, "close", None)), broke(
        "gevent", "wsgi.input.rfile has no close()", "transport/_simple_websocket.py"
    )


def test_gevent_socket_wraps_a_real_socket_in_sock() -> None:
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        inner = getattr(sock, "_sock", None)
        assert isinstance(inner, _socket.socket), broke(
            "gevent",
            f"a gevent.socket.socket's _sock is {type(inner).__name__}, not a real socket",
            "transport/_gevent_socket.py (raw_socket)",
        )
        assert raw_socket(sock) is inner
        assert inner.gettimeout() == 0.0, broke(
            "gevent", "the socket in _sock is no longer non-blocking", "transport/_gevent_socket.py"
        )
    finally:
        sock.close()
    assert raw_socket(sock) is None


def test_gevent_socket_waits_for_readable_on_its_read_watcher() -> None:
    a, b = gevent.socket.socketpair()
    try:
        wait = read_waiter(a)
        assert wait is not None, broke(
            "gevent",
            "a gevent.socket.socket has no _read_event watcher",
            "transport/_gevent_socket.py (read_waiter)",
        )
        gevent.spawn_later(0.01, b.sendall, b"x")
        with gevent.Timeout(2):
            wait()  # parks until the byte is there
        assert raw_socket(a).recv(16) == b"x"  # type: ignore[union-attr]
        # another greenlet waiting on the same socket is refused, as gevent's own recv would be
        other = gevent.spawn(lambda: read_waiter(a)())  # type: ignore[misc]
        gevent.sleep(0)
        with pytest.raises(ConcurrentObjectUseError):
            wait()
        other.kill()
        # closed by another greenlet while waiting: the waiter hears of it
        gevent.spawn_later(0.01, a.close)
        with gevent.Timeout(2), pytest.raises(OSError):
            wait()
    finally:
        a.close()
        b.close()
    assert read_waiter(object()) is None


# pykka


@pytest.mark.parametrize(
    "name",
    [
        "_create_actor_inbox",
        "_create_future",
        "_start_actor_loop",
        "_handle_receive",
        "_actor_loop",
    ],
)
def test_pykka_actor_keeps_the_runtime_hooks(name: str) -> None:
    assert callable(getattr(pykka.Actor, name, None)), pykka_broke(f"Actor.{name} is gone")


def test_pykka_future_keeps_its_get_hook() -> None:
    future: pykka.Future[int] = pykka.Future()
    assert hasattr(future, "_get_hook"), pykka_broke("Future() has no _get_hook")
    assert future._get_hook is None, pykka_broke("Future()._get_hook is not None by default")
    assert callable(getattr(future, "set_get_hook", None)), pykka_broke("Future.set_get_hook")
    future.set_get_hook(lambda timeout: 7)
    assert future._get_hook is not None, pykka_broke("set_get_hook() no longer sets _get_hook")
    assert future.get() == 7


def test_pykka_answers_an_ask_with_what_handle_receive_returns() -> None:
    # runtime.py returns an ask's refusal (RoomNotFound, ...) from _handle_receive as a value,
    # since pykka logs every exception it hands back to a caller.
    marker = object()

    class Probe(GeventActor):
        def _handle_receive(self, message: Any) -> Any:
            if message == "probe":
                return marker
            return super()._handle_receive(message)

    ref = Probe.start()
    try:
        assert ref.ask("probe", timeout=2) is marker, pykka_broke(
            "an ask is no longer answered with what Actor._handle_receive returns"
        )
    finally:
        ref.stop()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pykka._actor", "ActorInbox"),
        ("pykka._future", "GetHookFunc"),
        ("pykka._types", "OptExcInfo"),
    ],
)
def test_pykka_private_types_import(module: str, name: str) -> None:
    try:
        found = hasattr(importlib.import_module(module), name)
    except ImportError:
        found = False
    assert found, pykka_broke(f"{module}.{name} no longer imports")


def redis_broke(what: str) -> str:
    return broke("redis", what, "wsroom/backplane/_redis_gevent.py (GeventConnection)")


def test_redis_connection_still_connects_through_connect_hook() -> None:
    redis = pytest.importorskip("redis")
    from wsroom.backplane._redis_gevent import GeventConnection

    assert callable(getattr(redis.Connection, "_connect", None)), redis_broke(
        "Connection._connect is gone"
    )
    assert "_connect" in redis.Connection.__dict__, redis_broke(
        "Connection no longer defines _connect itself"
    )
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    conn = GeventConnection(host="127.0.0.1", port=listener.getsockname()[1])
    try:
        conn.connect_check_health = False
        sock = conn._connect()
        assert isinstance(sock, gevent.socket.socket), redis_broke("the socket is not gevent's")
        sock.close()
    finally:
        listener.close()
