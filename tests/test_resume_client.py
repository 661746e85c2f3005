"""wsroom.client with ``resume=True`` (contract §7) against a live hub: the gaps it is told of,
a take-over from a saved ``ResumeState``, manual acks, and a hub that does not offer resume."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from conftest import Live, wait_until

import wsroom
from wsroom import Presence
from wsroom.client import Gap, ResumeState, RoomClient


@pytest.fixture
def clients() -> Iterator[Callable[..., RoomClient]]:
    made: list[RoomClient] = []

    def make(live: Live, user: str, **options: Any) -> RoomClient:
        options = {"resume": True, "min_delay": 0.01, "max_delay": 0.05, **options}
        client = RoomClient(f"ws://127.0.0.1:{live.port}/ws/r?user={user}", **options)
        made.append(client)
        return client.connect()

    yield make
    for client in made:
        client.close()


def presence(live: Live, user: str) -> Presence | None:
    try:
        return live.hub.members("r").get(wsroom.ParticipantID(user))
    except wsroom.RoomNotFound:
        return None


def online(live: Live, user: str) -> None:
    wait_until(lambda: presence(live, user) is Presence.ONLINE, what=f"{user} online")


def offline(live: Live, user: str) -> None:
    wait_until(lambda: presence(live, user) is Presence.OFFLINE, what=f"{user} offline")


def reset(client: RoomClient) -> None:
    """Cut the client's socket with a reset: no close frame; it reconnects by itself."""
    ws = client._ws
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()


def down(live: Live, user: str, *payloads: Any) -> None:
    for payload in payloads:
        live.hub.send_to("r", user, wsroom.Envelope("down", payload))


def test_a_gap_the_hub_cannot_fill_is_reported_and_the_stream_goes_on(
    make_live: Callable[..., Live], clients: Callable[..., RoomClient]
) -> None:
    live = make_live(grace=30, queued=3)
    gaps: list[Gap] = []
    client = clients(
        live,
        "a",
        on_gap=lambda gap, _c: gaps.append(gap),
        min_delay=0.5,
        max_delay=0.5,
        ack_delay=30,  # no ack in this test: the hub keeps seq 1 in its log
    )
    assert client.numbered
    online(live, "a")
    down(live, "a", 1)
    assert client.recv(5) == wsroom.Envelope("down", 1)
    at = client.connections
    reset(client)
    offline(live, "a")
    down(live, "a", 2, 3)  # seq 2 and 3: with 1, the log of 3 is full
    with pytest.raises(wsroom.ParticipantOffline):
        down(live, "a", 4)  # seq 4: lost
    client.wait_reconnected(at)
    wait_until(lambda: gaps, what="the gap")
    assert gaps == [Gap("overflow", 1, 5)] and client.gaps == gaps
    online(live, "a")
    down(live, "a", 5)
    assert client.recv(5) == wsroom.Envelope("down", 5)
    assert client.last_seq == 5


def test_a_saved_state_takes_the_membership_over_without_loss(
    make_live: Callable[..., Live], clients: Callable[..., RoomClient]
) -> None:
    live = make_live(grace=30, queued=64)
    first = clients(live, "a", auto_ack=False)
    online(live, "a")
    down(live, "a", 1, 2, 3)
    assert first.recv(5).payload == 1 and first.taken_seq == 1
    first.ack()  # only 1 is the application's for good
    saved = first.resume_state()
    assert saved == ResumeState(1, 1, ())
    first.close()  # the process goes; its membership waits out its grace period
    offline(live, "a")
    down(live, "a", 4)
    second = clients(live, "a", resume=saved)
    assert [second.recv(5).payload for _ in range(3)] == [2, 3, 4]
    assert second.gaps == []
    second.send("up", "from the second")
    wait_until(lambda: live.hooks.messages, what="the envelope")
    assert [e.payload for _, _, e in live.hooks.messages] == ["from the second"]


def test_what_was_sent_unacknowledged_is_sent_again_once(
    make_live: Callable[..., Live], clients: Callable[..., RoomClient]
) -> None:
    live = make_live(grace=30, queued=64)
    closing: list[int] = []

    def on_message(room: str, pid: str, env: wsroom.Envelope) -> None:
        if env.payload == 3 and not closing:
            closing.append(3)  # the server drops the connection under the client's feet
            raise wsroom.CloseConnection(4008, "dropped for the test")

    live.hooks.message_fn = on_message
    client = clients(live, "a")
    for n in range(1, 7):
        client.send("up", n)
    wait_until(lambda: len(live.hooks.messages) >= 6, what="six envelopes")
    wait_until(lambda: not client.resume_state().pending, what="every ack")
    assert [e.payload for _, _, e in live.hooks.messages] == [1, 2, 3, 4, 5, 6]
    assert client.connections == 2


def test_a_hub_that_does_not_offer_it_is_spoken_to_plainly(
    make_live: Callable[..., Live], clients: Callable[..., RoomClient]
) -> None:
    live = make_live(grace=0, queued=0)
    client = clients(live, "a")
    assert not client.numbered
    online(live, "a")
    down(live, "a", "plain")
    assert client.recv(5) == wsroom.Envelope("down", "plain")
    client.send("up", 1)
    wait_until(lambda: live.hooks.messages, what="the envelope")


def test_a_steady_stream_past_a_small_log_is_acknowledged_in_time(
    make_live: Any, clients: Callable[..., RoomClient]
) -> None:
    # 8 kept at most, and the client batches acks by 16 or 0.5 s: only the hub's asks (at
    # half the log) keep a stream of one envelope a millisecond from overflowing it.
    live = make_live(grace=30, queued=8)
    client = clients(live, "a")
    online(live, "a")
    for n in range(200):
        assert live.hub.send_to("r", "a", wsroom.Envelope("down", n)) is wsroom.Delivery.SENT
        gevent.sleep(0.001)
    got = [client.recv(timeout=5).payload for _ in range(200)]
    assert got == list(range(200))
    assert client.gaps == [] and client.connections == 1
