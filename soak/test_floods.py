"""One hostile client floods; honest clients must not notice (issue 8, event-loop starvation).

Against a hub in its own process at ``ping_interval=2``, ``HONEST`` clients echo envelopes and
answer pings while one flooder (``tests/flood_client.py``, a process of its own, reconnecting
whenever it is closed) sends one kind of flood for ``SECONDS``. The bar: the honest clients'
p99 round trip under 50 ms, and none of them closed. Each kind prints p50/p99/max and closes.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SoakServer, report

FLOODER = Path(__file__).resolve().parent.parent / "tests" / "flood_client.py"
HONEST = int(os.environ.get("WSROOM_SOAK_HONEST", "100"))
SECONDS = float(os.environ.get("WSROOM_SOAK_FLOOD_SECONDS", "8"))
PACE = 0.1  # each honest client sends one envelope, waits for its echo, then waits this long
P99_BAR = 0.050


class Honest:
    """One honest client on a non-blocking raw socket: echoes, answers pings, times echoes."""

    def __init__(self, port: int, name: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/honest?user={name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sock.setblocking(False)
        self.joined = False
        self.closed: str | None = None
        self.sent_at: float | None = None
        self.next_at = 0.0
        self.seq = 0
        self.round_trips: list[float] = []
        self.recording = False

    def send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode]) + (
            bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
        )
        data = head + b"\0\0\0\0" + payload  # a zero mask key: the payload as it is
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def maybe_send(self, now: float) -> None:
        if self.joined and self.closed is None and self.sent_at is None and now >= self.next_at:
            self.seq += 1
            self.sent_at = now
            self.send(0x1, json.dumps({"type": "echo", "payload": self.seq}).encode())

    def on_readable(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self.closed = f"error {exc.errno}"
            return
        if not chunk:
            self.closed = self.closed or "eof"
            return
        self.buf += chunk
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            n, head = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, head = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, head = struct.unpack("!Q", self.buf[2:10])[0], 10
            if len(self.buf) < head + n:
                return
            payload, self.buf = self.buf[head : head + n], self.buf[head + n :]
            self.on_frame(b0 & 0x0F, payload)

    def on_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:
            self.send(0xA, payload)
        elif opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.closed = f"close {code} {payload[2:].decode(errors='replace')}"
        elif opcode == 0x1:
            message = json.loads(payload)
            if message["type"] == "joined":
                self.joined = True
            elif message["type"] == "echo" and message["payload"] == self.seq:
                now = time.monotonic()
                assert self.sent_at is not None
                if self.recording:
                    self.round_trips.append(now - self.sent_at)
                self.sent_at = None
                self.next_at = now + PACE


class HonestCrowd:
    """``count`` honest clients driven by one thread with a selector."""

    def __init__(self, port: int, count: int) -> None:
        self.clients = [Honest(port, f"h{i}") for i in range(count)]
        self.selector = selectors.DefaultSelector()
        for client in self.clients:
            self.selector.register(client.sock, selectors.EVENT_READ, client)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.005):
                client: Honest = key.data
                if client.closed is None:
                    client.on_readable()
            now = time.monotonic()
            for client in self.clients:
                client.maybe_send(now)

    def record(self, on: bool) -> None:
        for client in self.clients:
            client.recording = on
            if on:
                client.round_trips.clear()

    def figures(self) -> dict[str, Any]:
        trips = sorted(t for c in self.clients for t in c.round_trips)
        # An echo still awaited counts as a round trip of at least its wait so far.
        now = time.monotonic()
        trips += [now - c.sent_at for c in self.clients if c.sent_at is not None]
        trips.sort()

        def at(q: float) -> float:
            return round(trips[min(len(trips) - 1, int(q * len(trips)))] * 1000, 1)

        return {
            "round_trips": len(trips),
            "p50_ms": at(0.5),
            "p99_ms": at(0.99),
            "max_ms": round(trips[-1] * 1000, 1),
            "closed": sum(1 for c in self.clients if c.closed is not None),
            "why": sorted({c.closed for c in self.clients if c.closed is not None}),
        }

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for client in self.clients:
            client.sock.close()


@pytest.mark.parametrize(
    "kind", ["none", "ping", "pong", "empty_cont", "cont10", "fragments", "oversize", "after_close"]
)
def test_one_flooding_client_leaves_honest_clients_unharmed(
    soak_server: Callable[..., SoakServer], kind: str
) -> None:
    server = soak_server(grace=0, queued=0, ping_interval=2)
    crowd = HonestCrowd(server.port, HONEST)
    try:
        deadline = time.monotonic() + 20
        while not all(c.joined for c in crowd.clients):
            assert time.monotonic() < deadline, "honest clients did not all join"
            time.sleep(0.05)
        time.sleep(1.0)  # warm up: first round trips pay for imports and caches
        crowd.record(True)
        flood: dict[str, Any] = {}
        if kind == "none":
            time.sleep(SECONDS)
        else:
            flooder = subprocess.Popen(
                [sys.executable, str(FLOODER), str(server.port), kind, str(SECONDS)],
                stdout=subprocess.PIPE,
                text=True,
            )
            out, _ = flooder.communicate(timeout=SECONDS + 60)
            flood = json.loads(out)
        crowd.record(False)
        figures = crowd.figures()
        stats = server.stats()
        report(
            f"flood {kind}",
            honest=HONEST,
            seconds=SECONDS,
            **figures,
            flooder_connections=flood.get("connections", 0),
            flooder_mb=round(flood.get("written", 0) / 1e6),
            server_leaves=stats["leaves"],
            rss_mb=round(stats["rss_kb"] / 1024),
        )
        assert figures["closed"] == 0, f"honest clients closed: {figures['why']}"
        assert figures["p99_ms"] < P99_BAR * 1000, f"honest p99 {figures['p99_ms']} ms"
    finally:
        crowd.close()


def test_unread_pings_do_not_grow_the_server(soak_server: Callable[..., SoakServer]) -> None:
    # 500k pings from a client that never reads: once its pongs back up only the latest is
    # answered, and past the control-frame budget it is closed with 1008. Today's figure was
    # 39 MB growing to 113 MB.
    server = soak_server(grace=0, queued=0, ping_interval=2)
    before = server.stats()["rss_kb"]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/r?user=lazy HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # read nothing, hold little
    ping = bytes([0x89, 0x80 | 4]) + b"\0\0\0\0" + b"ping"
    sent = 0
    sock.settimeout(2)
    try:
        for _ in range(500):
            sock.sendall(ping * 1000)
            sent += 1000
    except OSError:
        pass  # closed by the server (or its buffers are full and it stopped reading)
    # Measure once the server has read what the kernel still held for it (or gave up on it).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            unsent = struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0" * 4))[0]
        except OSError:
            break
        if unsent == 0 or server.stats()["leaves"]:
            break  # all read, or the server closed it
        time.sleep(0.2)
    after = server.stats()["rss_kb"]
    sock.close()
    report(
        "unread pings",
        pings_sent=sent,
        rss_before_mb=round(before / 1024, 1),
        rss_after_mb=round(after / 1024, 1),
        leaves=server.stats()["leaves"],
    )
    assert after - before < 8 * 1024, f"the server grew by {(after - before) / 1024:.0f} MB"
