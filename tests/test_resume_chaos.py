"""Chaos for resume without loss (contract §7): while 1,000 envelopes stream each way between a
hub and a ``wsroom.client`` resume client, the connection is cut at random points, and the
client comes back inside the grace period. Every envelope must arrive exactly once, in order,
in both directions, and ``on_message`` run once per client envelope.

The cuts: a reset (both ends of a TCP proxy closed with SO_LINGER 0), a half-open socket that
goes silent (the proxy stops forwarding; the client notices and reconnects, the hub still
thinks the old one alive and replaces it), a close from the server (``Client.close``), and the
client process killed (SIGKILL; a new process takes over from what the old one kept on disk).

Seeded: ``WSROOM_CHAOS_SEED`` (default 1) picks every cut point and kind; ``WSROOM_CHAOS_CUTS``
(default 120 per stream) and ``WSROOM_CHAOS_KILLS`` (default 8) scale the run.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
from conftest import Live, wait_until

import wsroom
from wsroom.client import RoomClient

SEED = int(os.environ.get("WSROOM_CHAOS_SEED", "1"))
CUTS = int(os.environ.get("WSROOM_CHAOS_CUTS", "120"))
KILLS = int(os.environ.get("WSROOM_CHAOS_KILLS", "8"))
TOTAL = 1000
CHILD = Path(__file__).with_name("resume_chaos_client.py")


class Pair:
    """One client connection through the proxy, and its upstream connection to the hub."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.silent = False
        self.pumps = [
            gevent.spawn(self._pump, client, upstream),
            gevent.spawn(self._pump, upstream, client),
        ]

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if self.silent:
                    return  # the network went silent: nothing passes, nobody is told
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            self.reset()

    def reset(self) -> None:
        """Both ends see a reset (RST), as when a middlebox drops the connection."""
        for sock in (self.client, self.upstream):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            try:
                sock.close()
            except OSError:
                pass
        gevent.killall(self.pumps, block=False)


class Proxy:
    """A TCP proxy in front of the hub, so the network between client and hub can be cut.
    Given several hub ports (processes on one backplane), each connection goes to the next."""

    def __init__(self, *ports: int) -> None:
        self.ports_upstream = ports
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.pairs: list[Pair] = []
        self.acceptor = gevent.spawn(self._accept)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                port = self.ports_upstream[len(self.pairs) % len(self.ports_upstream)]
                upstream = socket.create_connection(("127.0.0.1", port))
            except OSError:
                return
            self.pairs.append(Pair(client, upstream))

    def close(self) -> None:
        self.acceptor.kill(block=False)
        self.listener.close()
        for pair in self.pairs:
            pair.close()


@pytest.fixture
def proxied(make_live: Any) -> Iterator[tuple[Live, Proxy]]:
    live = make_live(grace=30, queued=4096, close_timeout=0.5)
    proxy = Proxy(live.port)
    yield live, proxy
    proxy.close()


class Paced:
    """Sends 1..TOTAL through ``send(n)`` in a greenlet, as far as the test allows, so every
    cut falls inside the streams (with envelopes in flight), not after them."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.allowed = 0
        self.sent = 0
        self.more = gevent.event.Event()
        self.greenlet = gevent.spawn(self._run)

    def allow(self, count: int) -> None:
        self.allowed = min(TOTAL, self.allowed + count)
        self.more.set()

    def _run(self) -> None:
        for n in range(1, TOTAL + 1):
            while self.sent >= self.allowed:
                self.more.clear()
                self.more.wait()
            self.send(n)
            self.sent = n
            if n % 4 == 0:
                gevent.sleep(0)


def send_down(live: Live, user: str) -> Any:
    """``down`` n to ``user``, as the application would (retrying before its first join)."""

    def send(n: int) -> None:
        while True:
            try:
                live.hub.send_to("r", user, wsroom.Envelope("down", n))
                return
            except (wsroom.RoomNotFound, wsroom.ParticipantNotFound):
                gevent.sleep(0.01)

    return send


def ups_seen(live: Live, user: str) -> list[Any]:
    return [e.payload for _, p, e in live.hooks.messages if p == user and e.type == "up"]


@pytest.mark.parametrize("seed", [SEED, SEED + 1])
def test_every_envelope_once_in_order_both_ways_through_random_cuts(
    proxied: tuple[Live, Proxy], seed: int
) -> None:
    live, proxy = proxied
    rnd = random.Random(seed)
    servers: dict[str, wsroom.Client] = {}

    def keep_client(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        servers[jc.participant] = client

    live.hooks.join_fn = keep_client
    client = RoomClient(
        f"ws://127.0.0.1:{proxy.port}/ws/r?user=a", resume=True, min_delay=0.005, max_delay=0.05
    ).connect()
    received: list[Any] = []
    reader = gevent.spawn(lambda: received.extend(e.payload for e in client if e.type == "down"))

    def send_ups() -> None:
        for n in range(1, TOTAL + 1):
            client.send("up", n, timeout=30)
            if n % 4 == 0:
                gevent.sleep(0.001)

    ups = Paced(lambda n: client.send("up", n, timeout=30))
    downs = Paced(send_down(live, "a"))
    kinds: dict[str, int] = {"reset": 0, "silent": 0, "server": 0}
    midstream = 0
    try:
        for _ in range(CUTS):
            # A random point: each stream a random stretch further, some of it in flight.
            for stream in (ups, downs):
                stream.allow(rnd.randint(1, 2 * TOTAL // CUTS))
            gevent.sleep(rnd.random() * 0.004)
            at = client.connections
            wait_until(lambda: client._ready and proxy.pairs, what="a resumed connection")
            midstream += 0 < len(received) < TOTAL
            pair = proxy.pairs[-1]
            kind = rnd.choice(list(kinds))
            kinds[kind] += 1
            if kind == "reset":
                pair.reset()
            elif kind == "silent":
                pair.silent = True
                client.reconnect_now()
            else:
                # The hub's side of the current connection (its on_join may still be running).
                wait_until(
                    lambda: "a" in servers and not servers["a"]._sink.closing,
                    what="the hub's side of the connection",
                )
                servers["a"].close(4008, "cut by the test")
            wait_until(lambda: client.connections > at, what=f"a reconnect after {kind}")  # noqa: B023
        for stream in (ups, downs):
            stream.allow(TOTAL)
        wait_until(
            lambda: len(received) >= TOTAL and len(ups_seen(live, "a")) >= TOTAL,
            timeout=60,
            what="both streams",
        )
        assert received == list(range(1, TOTAL + 1))
        assert ups_seen(live, "a") == list(range(1, TOTAL + 1))  # on_message once each
        assert client.gaps == []
        assert client.connections > CUTS
        assert all(kinds.values()), kinds
        assert midstream > CUTS // 2, midstream
        assert [jc.reconnect for jc in live.hooks.joins].count(False) == 1
    finally:
        client.close()
        reader.kill(block=False)
        ups.greenlet.kill(block=False)
        downs.greenlet.kill(block=False)


def test_a_killed_client_process_is_taken_over_without_loss(
    proxied: tuple[Live, Proxy], tmp_path: Path
) -> None:
    live, proxy = proxied
    rnd = random.Random(SEED)
    state = tmp_path / "client.state"
    url = f"ws://127.0.0.1:{proxy.port}/ws/r?user=k"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(CHILD), url, str(state), str(TOTAL)],
            cwd=tempfile.gettempdir(),  # the repository root would shadow the package
        )

    downs = Paced(send_down(live, "k"))
    downs.allow(TOTAL)
    child = start()
    try:
        for _ in range(KILLS):
            at = len(live.hooks.joins)
            wait_until(lambda: len(live.hooks.joins) > at, timeout=20, what="the child joined")  # noqa: B023
            gevent.sleep(0.05 + rnd.random() * 0.3)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            child = start()
        wait_until(lambda: child.poll() is not None, timeout=60, what="the last child to finish")
        assert child.returncode == 0
        lines = state.read_text().splitlines()
        got = [int(line.split()[2]) for line in lines if line.startswith("d ")]
        assert got == list(range(1, TOTAL + 1))
        assert [line for line in lines if line.startswith("g ")] == []
        assert ups_seen(live, "k") == list(range(1, TOTAL + 1))
        assert len(live.hooks.joins) == KILLS + 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        downs.greenlet.kill(block=False)
