"""Before the upgrade: one file descriptor per connection, bounded request heads, a handshake
timeout, a connection cap, an exhausted process answered with 503, and quiet client errors."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Live, Recorder, identity_from_query, room_from_path, wait_until
from transport_util import RawWS, http_get, upgrade_headers

import wsroom
from wsroom.transport import make_handler, serve, session


@pytest.fixture
def served() -> Iterator[Callable[..., int]]:
    """A hub behind ``serve(app, port=0, **serve_options)``; returns the port."""
    started: list[tuple[wsroom.Hub, Any]] = []

    def start(**serve_options: Any) -> int:
        hub = wsroom.new_hub(Recorder(), wsroom.ReconnectPolicy(0, 0))
        app = make_handler(hub, room_from_path, identity_from_query, lambda r, i: i.user_id)
        server = serve(app, port=0, **serve_options)
        started.append((hub, server))
        return int(server.server_port)

    yield start
    for hub, server in started:
        hub.stop()
        server.stop(timeout=1)


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _status_and_body(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def _request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_each_connection_holds_one_descriptor_in_the_server(
    make_live: Callable[..., Live],
) -> None:
    live = make_live()
    before = _open_fds()
    clients = [RawWS(live.port, f"/ws/lobby?user=u{i}") for i in range(50)]
    assert all(c.status == 101 for c in clients)
    wait_until(lambda: len(live.hub.members("lobby")) == 50, what="50 members")
    during = _open_fds() - before
    # 50 client sockets (this process) + 50 server sockets; a dup() per connection makes it 150.
    assert during <= 100 + 5, f"{during} descriptors for 50 connections (client and server ends)"
    for c in clients:
        c.sock.close()
    wait_until(lambda: _open_fds() - before <= 5, what="the descriptors to be released")


def test_an_upgrade_failing_for_want_of_descriptors_is_503_with_a_plain_reason(
    make_live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = make_live()

    def exhausted(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(session, "Connection", exhausted)
    answer = http_get(live.port, "/ws/lobby?user=alice", upgrade_headers(live.port))
    assert answer.status == 503, answer
    assert answer.body == "the server is out of file descriptors; try again later\n"
    assert live.hooks.joins == []


# -- the handshake timeout -----------------------------------------------------------------


def test_a_silent_connection_is_closed_after_the_handshake_timeout(
    served: Callable[..., int],
) -> None:
    port = served(handshake_timeout=0.5)
    started = time.monotonic()
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    status, body = _status_and_body(_answer(idle))
    took = time.monotonic() - started
    assert status == 408 and body.count("\n") == 1, (status, body)
    assert 0.4 <= took < 3.0, f"closed after {took:.2f}s"


def test_a_trickled_head_is_cut_at_the_handshake_timeout(served: Callable[..., int]) -> None:
    port = served(handshake_timeout=0.6)
    sock = _request(port, b"GET /ws/lobby?user=alice HTTP/1.1\r\n")
    started = time.monotonic()
    for i in range(40):  # one header every 0.1 s: each read is quick, the head never ends
        try:
            sock.sendall(f"X-Slow-{i}: {'x' * 100}\r\n".encode())
        except OSError:
            break
        time.sleep(0.1)
    status, _ = _status_and_body(_answer(sock))
    assert status == 408
    assert time.monotonic() - started < 3.0


# -- the request head's bounds ---------------------------------------------------------------


def test_a_head_over_max_header_bytes_is_431(served: Callable[..., int]) -> None:
    port = served()
    extra = {f"X-Big-{i}": "v" * 1000 for i in range(40)}  # 40 KB of headers
    answer = http_get(port, "/ws/lobby?user=alice", {**upgrade_headers(port), **extra})
    assert answer.status == 431, answer
    assert answer.body == "request headers are larger than 32768 bytes\n"


def test_a_head_with_too_many_fields_is_431(served: Callable[..., int]) -> None:
    port = served(max_headers=20)
    extra = {f"X-Many-{i}": "v" for i in range(20)}
    answer = http_get(port, "/ws/lobby?user=alice", {**upgrade_headers(port), **extra})
    assert answer.status == 431, answer
    assert answer.body == "more than 20 request headers\n"


def test_one_huge_line_is_cut_at_the_budget(served: Callable[..., int]) -> None:
    port = served(max_header_bytes=4096)
    sock = _request(port, b"GET / HTTP/1.1\r\nX-Huge: " + b"h" * 60000)
    status, body = _status_and_body(_answer(sock))
    assert status == 431 and "4096" in body


def test_a_head_inside_the_bounds_upgrades(served: Callable[..., int]) -> None:
    port = served(max_headers=20)
    extra = {f"X-Some-{i}": "v" * 100 for i in range(10)}
    answer = http_get(port, "/ws/lobby?user=alice", {**upgrade_headers(port), **extra})
    assert answer.status == 101, answer


# -- quiet client errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [b"GET /ws/lobby?user=a HT", b"GET /ws/lobby HTTP/1.1\r\nHost: x\r\nUpgr", b"BREW / HTCPCP"],
    ids=["mid-request-line", "mid-headers", "garbage"],
)
def test_a_client_hanging_up_mid_request_logs_no_error(
    served: Callable[..., int],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    partial: bytes,
) -> None:
    port = served()
    caplog.set_level(logging.DEBUG, logger="wsroom.transport")
    for _ in range(3):
        sock = _request(port, partial)
        sock.shutdown(socket.SHUT_WR)
        _answer(sock)
        sock.close()
    wait_until(
        lambda: sum(1 for r in caplog.records if r.name == "wsroom.transport") >= 3,
        what="the server to note the three requests",
    )
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]
    assert "Traceback" not in capfd.readouterr().err


def test_a_malformed_request_is_400_with_a_one_line_reason(served: Callable[..., int]) -> None:
    port = served()
    sock = _request(port, b"GET / HTTP/7.1\r\n\r\n")
    status, body = _status_and_body(_answer(sock))
    assert status == 400
    assert body.startswith("malformed request") and body.count("\n") == 1, body


# -- the connection cap ----------------------------------------------------------------------


def test_over_max_connections_is_503_logged_once_per_interval(
    served: Callable[..., int], caplog: pytest.LogCaptureFixture
) -> None:
    port = served(max_connections=3)
    caplog.set_level(logging.WARNING, logger="wsroom.transport")
    held = [RawWS(port, f"/ws/lobby?user=u{i}") for i in range(3)]
    assert [c.status for c in held] == [101, 101, 101]
    for i in range(5):
        answer = http_get(port, f"/ws/lobby?user=x{i}", upgrade_headers(port))
        assert answer.status == 503, answer
        assert answer.body == "the server is at its connection limit; try again later\n"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "connection limit (3)" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    held[0].sock.close()
    again = wait_until(
        lambda: (
            (a := http_get(port, "/ws/lobby?user=y", upgrade_headers(port))).status == 101 and a
        ),
        what="a slot to free up",
    )
    assert again.status == 101
    for c in held[1:]:
        c.sock.close()


# -- a process out of descriptors --------------------------------------------------------------

_FD_LIMITED_SERVER = """
from gevent import monkey; monkey.patch_all()
import os, resource, sys
import wsroom
from wsroom.transport import make_handler, run_until_signal, serve
hub = wsroom.new_hub(wsroom.Hooks(), wsroom.ReconnectPolicy(0, 0))
def who(environ):
    return wsroom.Identity(environ["QUERY_STRING"])
app = make_handler(hub, "lobby", who, lambda room, identity: identity.user_id)
server = serve(app, port=0, max_connections=1000)
limit = len(os.listdir("/proc/self/fd")) + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print("READY", server.server_port, flush=True)
run_until_signal(server, hub)
"""


def test_a_process_out_of_descriptors_answers_503_with_a_plain_reason() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _FD_LIMITED_SERVER, "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Outside the checkout, so the installed package is imported, not the source folder.
        cwd=tempfile.gettempdir(),
    )
    clients: list[RawWS] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split()[1])
        refused: list[RawWS] = []
        for i in range(20):
            ws = RawWS(port, f"/?u{i}", headers=upgrade_headers(port))
            (clients if ws.status == 101 else refused).append(ws)
            if len(refused) >= 3:
                break
        # 8 descriptors over what was open (one of those, listdir's own, is free again).
        assert 1 <= len(clients) <= 9, [c.status for c in clients]
        assert refused, "no refusal once the process ran out of descriptors"
        for ws in refused:
            assert ws.status == 503, ws.status_line
            body = _answer(ws.sock) if not ws.buf else ws.buf + _answer(ws.sock)
            assert body == b"the server is out of file descriptors; try again later\n", body
        for ws in clients:
            ws.sock.close()
        # Descriptors are back: the server serves again.
        again = wait_until(
            lambda: (
                (ws := RawWS(port, "/?again", headers=upgrade_headers(port))).status == 101 and ws
            ),
            what="the server to serve again",
        )
        again.sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err and "Errno" not in err, err[-2000:]
    assert err.count("out of file descriptors") <= 2, err
