"""Before the upgrade, at scale: idle and trickling sockets are let go, a connection costs one
file descriptor (issue 8, "Bounded input, truly" and "10,000 members")."""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from conftest import SoakServer, report

KEY = "MDEyMzQ1Njc4OWFiY2RlZg=="


def _server_fds(server: SoakServer) -> int:
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def _wait_closed(socks: list[socket.socket], timeout: float) -> tuple[int, list[bytes]]:
    """Wait until the server closed every socket; return how many it closed and their answers."""
    selector = selectors.DefaultSelector()
    answers: dict[int, bytes] = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        answers[sock.fileno()] = b""
    closed = 0
    deadline = time.monotonic() + timeout
    while closed < len(socks) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock: Any = key.fileobj
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if data:
                answers[sock.fileno()] += data
                continue
            selector.unregister(sock)
            closed += 1
    selector.close()
    return closed, list(answers.values())


def test_idle_sockets_are_let_go_after_the_handshake_timeout(
    soak_server: Callable[..., SoakServer],
) -> None:
    server = soak_server()
    before = _server_fds(server)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2000)]
    started = time.monotonic()
    held = _server_fds(server) - before
    closed, answers = _wait_closed(socks, timeout=30.0)
    took = time.monotonic() - started
    for sock in socks:
        sock.close()
    deadline = time.monotonic() + 5
    while (after := _server_fds(server) - before) > 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    report(
        "idle sockets",
        opened=len(socks),
        server_fds_held=held,
        closed_by_server=closed,
        seconds=f"{took:.1f}",
        answered_408=sum(a.startswith(b"HTTP/1.1 408") for a in answers),
        server_fds_after=after,
    )
    assert closed == len(socks)
    assert took < 20.0  # the default handshake_timeout is 10 s
    assert after <= 10


def test_trickled_heads_hold_bounded_memory(soak_server: Callable[..., SoakServer]) -> None:
    server = soak_server()
    rss_before = server.stats()["rss_kb"]
    socks = []
    for i in range(40):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /ws/lobby?user=t{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        socks.append(sock)
    # 30 KB of headers each (inside the 32 KiB budget), never the blank line that ends them.
    for _ in range(30):
        for sock in socks:
            sock.sendall(b"X-Trickle: " + b"t" * 1010 + b"\r\n")
        time.sleep(0.05)
    rss_held = server.stats()["rss_kb"] - rss_before
    # One more connection goes over the budget: 431 at once.
    over = socket.create_connection(("127.0.0.1", server.port))
    over.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"b" * 40000 + b"\r\n")
    _, [over_answer] = _wait_closed([over], timeout=5.0)
    closed, answers = _wait_closed(socks, timeout=20.0)
    report(
        "trickled heads",
        connections=len(socks),
        rss_kb_per_connection=f"{rss_held / len(socks):.0f}",
        over_budget=over_answer.split(b"\r\n", 1)[0].decode(),
        closed_by_timeout=closed,
        answered_408=sum(a.startswith(b"HTTP/1.1 408") for a in answers),
    )
    for sock in [*socks, over]:
        sock.close()
    assert over_answer.startswith(b"HTTP/1.1 431")
    assert closed == len(socks)
    assert rss_held / len(socks) < 200  # KB; the issue measured 5.7 MB apiece


def test_a_connection_holds_one_descriptor(soak_server: Callable[..., SoakServer]) -> None:
    server = soak_server()
    before = _server_fds(server)
    socks = []
    for i in range(2000):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            (
                f"GET /ws/lobby?user=m{i} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        assert sock.recv(12) == b"HTTP/1.1 101"
        socks.append(sock)
    deadline = time.monotonic() + 30
    while server.stats()["joins"] < len(socks) and time.monotonic() < deadline:
        time.sleep(0.2)
    per_connection = (_server_fds(server) - before) / len(socks)
    report("descriptors", connections=len(socks), server_fds_per_connection=f"{per_connection:.2f}")
    for sock in socks:
        sock.close()
    assert per_connection < 1.05
