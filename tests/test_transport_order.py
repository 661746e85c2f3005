"""Ordering over real sockets: frame order into on_message, send order to one participant,
and one broadcast order seen by every member of a room."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import gevent
import websocket
from conftest import Live, recv_json, send_json, wait_until

import wsroom

N = 500


def _reader(ws: websocket.WebSocket, count: int) -> gevent.Greenlet[Any, Any]:
    """A greenlet reading ``count`` envelopes (its value is the list)."""
    return gevent.spawn(lambda: [recv_json(ws) for _ in range(count)])


def test_on_message_sees_every_frame_once_in_order(make_live: Callable[..., Live]) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    for i in range(N):
        send_json(ws, "n", i)
    send_json(ws, "end")  # frames are handled in order: once it is seen, all before it were
    wait_until(
        lambda: live.hooks.messages and live.hooks.messages[-1][2].type == "end",
        timeout=10,
        what=f"{N} messages",
    )
    assert [e.payload for _, _, e in live.hooks.messages[:-1]] == list(range(N))
    assert {p for _, p, _ in live.hooks.messages} == {"alice"}


def test_on_message_runs_one_at_a_time_per_participant(make_live: Callable[..., Live]) -> None:
    live = make_live()
    running: list[int] = []
    overlaps: list[int] = []

    def slow(room: str, p: str, env: wsroom.Envelope) -> None:
        running.append(env.payload)
        if len(running) > 1:
            overlaps.append(env.payload)
        gevent.sleep(0.001)  # a cooperative pause inside the hook
        running.remove(env.payload)

    live.hooks.message_fn = slow
    ws = live.join("r", "alice")
    for i in range(100):
        send_json(ws, "n", i)
    wait_until(lambda: len(live.hooks.messages) == 100, timeout=10, what="100 messages")
    assert overlaps == []
    assert [e.payload for _, _, e in live.hooks.messages] == list(range(100))


def test_sends_from_one_caller_arrive_in_order(make_live: Callable[..., Live]) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    reader = _reader(ws, N)
    for i in range(N):
        assert live.hub.send_to("r", "alice", wsroom.Envelope("n", i)) is wsroom.Delivery.SENT
    got = reader.get(timeout=10)
    assert [f["payload"] for f in got] == list(range(N))


def test_pipelined_proxy_sends_arrive_in_order(make_live: Callable[..., Live]) -> None:
    # Futures not waited on one by one: the order of the calls is still the order on the wire.
    live = make_live()
    ws = live.join("r", "alice")
    reader = _reader(ws, N)
    futures = [live.hub.proxy.send_to("r", "alice", wsroom.Envelope("n", i)) for i in range(N)]
    assert all(f.get(timeout=10) is wsroom.Delivery.SENT for f in futures)
    got = reader.get(timeout=10)
    assert [f["payload"] for f in got] == list(range(N))


def test_sends_from_a_hook_arrive_in_order(make_live: Callable[..., Live]) -> None:
    live = make_live()

    def burst(room: str, p: str, env: wsroom.Envelope) -> None:
        for i in range(env.payload):
            live.hub.send_to(room, "bob", wsroom.Envelope("n", i))

    live.hooks.message_fn = burst
    alice = live.join("r", "alice")
    bob = live.join("r", "bob")
    reader = _reader(bob, N)
    send_json(alice, "burst", N)
    got = reader.get(timeout=10)
    assert [f["payload"] for f in got] == list(range(N))


def test_concurrent_broadcasters_are_seen_in_one_order_by_every_member(
    make_live: Callable[..., Live],
) -> None:
    per_sender = 250
    live = make_live()
    live.hooks.message_fn = lambda room, p, env: live.hub.broadcast(
        room, wsroom.Envelope("b", {"from": p, "n": env.payload})
    )
    members = {name: live.join("r", name) for name in ("alice", "bob", "carol", "dave")}
    total = 2 * per_sender
    readers = {name: _reader(ws, total) for name, ws in members.items()}

    def send(ws: websocket.WebSocket) -> None:
        for i in range(per_sender):
            send_json(ws, "say", i)
            if i % 10 == 0:
                gevent.sleep(0)  # let the other sender interleave

    senders = [gevent.spawn(send, members["alice"]), gevent.spawn(send, members["bob"])]
    gevent.joinall(senders, raise_error=True, timeout=10)
    seen = {name: [json.dumps(f) for f in r.get(timeout=15)] for name, r in readers.items()}

    reference = seen["alice"]
    assert len(reference) == total
    for name, order in seen.items():
        assert order == reference, f"{name} saw another order than alice"
    # Each sender's own broadcasts in its order, none lost or doubled.
    for sender in ("alice", "bob"):
        ns = [json.loads(f)["payload"]["n"] for f in reference]
        froms = [json.loads(f)["payload"]["from"] for f in reference]
        assert [n for n, f in zip(ns, froms, strict=True) if f == sender] == list(range(per_sender))
    # And the two streams really were interleaved (else the test proves little).
    froms = [json.loads(f)["payload"]["from"] for f in reference]
    switches = sum(1 for a, b in itertools.pairwise(froms) if a != b)
    assert switches > 1


def test_broadcasts_and_sends_to_one_member_keep_the_callers_order(
    make_live: Callable[..., Live],
) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    live.join("r", "bob")
    reader = _reader(ws, N)
    for i in range(N):
        if i % 3:
            live.hub.broadcast("r", wsroom.Envelope("n", i))
        else:
            live.hub.send_to("r", "alice", wsroom.Envelope("n", i))
    assert [f["payload"] for f in reader.get(timeout=10)] == list(range(N))

