"""A randomized run against a model: whatever the joins, drops, reconnects and replacements,
every envelope the hub accepted for a member reaches it exactly once, in order."""

from __future__ import annotations

import json
import random
import socket
from typing import Any

import gevent
import gevent.event
import pytest
import websocket
from conftest import Live, identity_from_query, resolve_user, room_from_path, wait_until

import wsroom
from wsroom import Presence
from wsroom.transport import make_handler, serve


class Client:
    """One connection whose reader greenlet keeps every data frame until the server's close."""

    def __init__(self, live: Live, user: str, into: list[int], rcvbuf: int | None) -> None:
        opts = ((socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf),) if rcvbuf else ()
        self.ws = live.connect("r", user, sockopt=opts)
        self.into = into
        self.close_code: int | None = None
        self.reading = gevent.event.Event()  # cleared: the client stops reading (a stall)
        self.reading.set()
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            self.reading.wait()
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except (websocket.WebSocketException, OSError):
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close_code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.into.append(json.loads(data)["payload"]["seq"])

    def close(self) -> None:
        """Close, reading what the server wrote before its close reply (none of it is lost)."""
        self.ws.send_close(1000, b"bye")
        self.reading.set()
        self.reader.join(timeout=10)
        assert self.reader.dead, "no close reply"
        self.ws.shutdown()


def small_send_buffers(live: Live) -> None:
    """Serve the hub again with a small kernel send buffer per connection, so what a stalled
    reader does not take piles up in the hub's outbox rather than in the kernel."""
    handler = make_handler(live.hub, room_from_path, identity_from_query, resolve_user)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        wsgi_input = environ["wsgi.input"]
        sock = getattr(wsgi_input, "rfile", wsgi_input).raw._sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return handler(environ, start_response)

    server = serve(app, port=0)
    live.port = server.server_port
    live.extra_servers.append(server)


@pytest.mark.parametrize(
    ("seed", "padding", "rcvbuf"),
    [(1, 0, None), (2, 0, None), (3, 0, None), (4, 3000, 4096), (5, 3000, 4096), (6, 20_000, 4096)],
)
def test_every_accepted_envelope_arrives_once_in_order(
    make_live, seed: int, padding: int, rcvbuf: int | None
) -> None:
    # With padding and a small receive buffer, writes often stop short and queue, so drops and
    # replacements happen with frames still in the outbox (they must be requeued, not lost).
    rng = random.Random(seed)
    pad = "p" * padding
    live: Live = make_live(grace=60.0, queued=10_000, outbox_max_bytes=64 * 1024 * 1024)
    if rcvbuf:
        small_send_buffers(live)
    users = [f"u{i}" for i in range(5)]
    received: dict[str, list[int]] = {u: [] for u in users}
    expected: dict[str, list[int]] = {u: [] for u in users}
    clients: dict[str, Client] = {}
    members: set[str] = set()
    seq = 0

    def connect(user: str) -> None:
        old = clients.get(user)
        joins = sum(1 for jc in live.hooks.joins if jc.participant == user)
        clients[user] = new = Client(live, user, received[user], rcvbuf)
        if old is not None:
            # The client reads its old connection to the end before the new one: what the old
            # one carried (up to its 4001) comes first, whatever the two sockets' timing.
            new.reading.clear()
        wait_until(
            lambda: (
                sum(1 for jc in live.hooks.joins if jc.participant == user) > joins
                and live.hub.members("r").get(user) == Presence.ONLINE
            ),
            what=f"{user} joined",
        )
        if old is not None:  # replaced: the old connection ends with 4001
            old.reading.set()
            old.reader.join(timeout=10)
            assert old.close_code == 4001
            new.reading.set()
        members.add(user)

    def disconnect(user: str) -> None:
        clients.pop(user).close()
        wait_until(lambda: live.hub.members("r").get(user) == Presence.OFFLINE, what="offline")

    for _ in range(300):
        op = rng.random()
        user = rng.choice(users)
        if op < 0.08 and user in clients:
            clients[user].reading.clear()  # stalls until its close or replacement
        elif op < 0.25:
            connect(user)  # a first join, a reconnect inside grace, or a replacement
        elif op < 0.4 and user in clients:
            disconnect(user)
        elif op < 0.7 and members:
            seq += 1
            skip = {u for u in members if rng.random() < 0.2}
            envelope = wsroom.Envelope("m", {"seq": seq, "pad": pad})
            report = live.hub.broadcast("r", envelope, exclude=skip)
            assert report.dropped == ()
            for u in members - skip:
                expected[u].append(seq)
        elif members:
            target = rng.choice(sorted(members))
            stalled = target in clients and not clients[target].reading.is_set()
            # A burst at a stalled reader fills its socket, then its outbox.
            for _ in range(40 if stalled and pad else 1):
                seq += 1
                envelope = wsroom.Envelope("m", {"seq": seq, "pad": pad})
                delivery = live.hub.send_to("r", target, envelope)
                assert delivery is (
                    wsroom.Delivery.SENT if target in clients else wsroom.Delivery.QUEUED
                )
                expected[target].append(seq)

    # Bring everyone back and let it read: a close carries forward (requeues) whatever the
    # server had not written yet, so the end state is reached by reading, not by closing.
    for user in sorted(members):
        if user not in clients:
            connect(user)
        clients[user].reading.set()
    for user in sorted(clients):
        # Generous: a loaded CI machine drains a 40 x 4 KB backlog slowly; order is the point.
        wait_until(
            lambda u=user: len(received[u]) >= len(expected[u]),
            timeout=30,
            what=f"{user}'s backlog",
        )
        clients[user].close()
    for user in users:
        assert received[user] == expected[user], user
    assert live.hooks.leaves == []
    # The run did what it is for: many deliveries, reconnects and replacements among them.
    assert sum(map(len, expected.values())) > 300
    reconnects = [jc for jc in live.hooks.joins if jc.reconnect]
    assert len(reconnects) >= 20, len(reconnects)
