"""Resume without loss (contract §7) on a backplane: a client numbered by one process resumes on
another inside its grace period, frame by frame with a raw WebSocket client.

What was sent and not acknowledged when the connection dropped (or was replaced) goes to the
member's queue in Redis with its numbering, so the process the client comes back to replays it;
a process that died holding the sequence leaves an explicit ``ok: false``.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
import websocket
from conftest import Live, read_close, recv_json, recv_numbered, send_json, wait_until

import wsroom
from wsroom import Presence

from .shared import pair
from .support import Cluster

__all__ = ["pair"]  # the fixture, used by name

RESUME = "wsroom.resume.1"
R = "r"


def rconnect(live: Live, user: str, last_seq: int | None = 0) -> tuple[Any, dict[str, Any]]:
    """A resume connection to ``live``; its first frame asks to resume from ``last_seq``.
    Returns the socket and the hub's answer (on a backplane it follows ``on_join``'s own sends,
    which these hooks have none of)."""
    ws = live.connect(R, user, subprotocols=[RESUME])
    assert ws.getsubprotocol() == RESUME
    if last_seq is None:
        return ws, {}
    send_json(ws, "wsroom.resume", {"last_seq": last_seq})
    answer = recv_json(ws)
    assert answer["type"] == "wsroom.resumed", answer
    return ws, answer["payload"]


def presence(live: Live, user: str) -> Presence | None:
    try:
        return live.hub.members(R).get(user)
    except wsroom.RoomNotFound:
        return None


def online(live: Live, user: str, joins: int = 1) -> None:
    def check() -> bool:
        count = sum(1 for e in live.hooks.events if e[:2] == ("join", user))
        return count >= joins and presence(live, user) is Presence.ONLINE

    wait_until(check, what=f"{user} online")


def offline(live: Live, user: str) -> None:
    wait_until(lambda: presence(live, user) is Presence.OFFLINE, what=f"{user} away")


def cut(ws: Any) -> None:
    """Reset the connection (SO_LINGER 0): no close frame, the peer sees ECONNRESET."""
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()


def down(live: Live, user: str, n: int) -> wsroom.Delivery:
    return live.hub.send_to(R, user, wsroom.Envelope("down", n))


def send_n(ws: Any, cseq: int, n: Any) -> None:
    ws.send(json.dumps({"type": "up", "payload": n, "cseq": cseq}))


def ups(*lives: Live) -> list[Any]:
    return [e.payload for live in lives for _, _, e in live.hooks.messages if e.type == "up"]


def test_a_drop_on_one_process_resumes_on_another_with_the_unacknowledged_replayed(
    pair: Callable[..., tuple[Live, Live]],
) -> None:
    a, b = pair(grace=30, queued=64)
    ws, answer = rconnect(a, "u")
    assert answer == {"ok": True, "cseq": 0}
    online(a, "u")
    for n in range(3):
        assert down(a, "u", n) is wsroom.Delivery.SENT
    assert [recv_numbered(ws)["seq"] for _ in range(3)] == [1, 2, 3]
    send_json(ws, "wsroom.ack", {"seq": 1})
    send_n(ws, 1, "x")
    assert recv_json(ws) == {"type": "wsroom.ack", "payload": {"cseq": 1}}
    cut(ws)  # 2 was seen for good, 3 not: the client resumes from 2
    offline(b, "u")
    for n in (3, 4):
        assert down(b, "u", n) is wsroom.Delivery.QUEUED
    ws2, answer = rconnect(b, "u", last_seq=2)
    assert answer == {"ok": True, "cseq": 1}
    assert [recv_json(ws2) for _ in range(3)] == [
        {"type": "down", "payload": n, "seq": n + 1} for n in (2, 3, 4)
    ]
    online(b, "u", 1)
    assert down(a, "u", 5) is wsroom.Delivery.SENT
    assert recv_json(ws2) == {"type": "down", "payload": 5, "seq": 6}
    send_n(ws2, 1, "x")  # a duplicate: acknowledged again, not handed on
    send_n(ws2, 2, "y")
    assert recv_json(ws2) == {"type": "wsroom.ack", "payload": {"cseq": 2}}
    wait_until(lambda: ups(a, b) == ["x", "y"], what="each envelope once")


def test_a_replaced_connection_on_another_process_hands_its_sequence_over(
    pair: Callable[..., tuple[Live, Live]],
) -> None:
    a, b = pair(grace=30, queued=64)
    ws, _ = rconnect(a, "u")
    online(a, "u")
    for n in range(3):
        down(a, "u", n)
    assert [recv_numbered(ws)["seq"] for _ in range(3)] == [1, 2, 3]
    for cseq in (1, 2):
        send_n(ws, cseq, cseq)
    wait_until(lambda: ups(a, b) == [1, 2], what="two envelopes handed on")
    # Half-open: the first connection is still there when the client comes back elsewhere.
    ws2, answer = rconnect(b, "u", last_seq=1)
    assert read_close(ws)[0] == 4001
    assert answer == {"ok": True, "cseq": 2}
    assert [recv_json(ws2) for _ in range(2)] == [
        {"type": "down", "payload": n, "seq": n + 1} for n in (1, 2)
    ]
    down(a, "u", 3)
    assert recv_json(ws2) == {"type": "down", "payload": 3, "seq": 4}
    send_n(ws2, 3, 3)
    wait_until(lambda: ups(a, b) == [1, 2, 3], what="the third envelope")


def test_a_full_queue_gives_overflow_on_the_other_process(
    pair: Callable[..., tuple[Live, Live]],
) -> None:
    a, b = pair(grace=30, queued=4)
    ws, _ = rconnect(a, "u")
    online(a, "u")
    b.join(R, "v")
    online(b, "v")
    cut(ws)
    offline(a, "u")
    for n in range(4):
        assert down(a, "u", n) is wsroom.Delivery.QUEUED
    with pytest.raises(wsroom.ParticipantOffline):
        down(a, "u", 4)  # seq 5, lost
    report = b.hub.broadcast(R, wsroom.Envelope("down", 5), exclude=["v"])  # seq 6, lost
    assert report.dropped == ("u",)
    ws2, answer = rconnect(b, "u", last_seq=0)
    assert answer == {"ok": False, "reason": "overflow", "first_seq": 7, "cseq": 0}
    online(b, "u")
    down(a, "u", 6)
    assert recv_json(ws2) == {"type": "down", "payload": 6, "seq": 7}


def test_a_resume_from_inside_the_queue_replays_only_what_follows(
    pair: Callable[..., tuple[Live, Live]],
) -> None:
    a, b = pair(grace=30, queued=8)
    ws, _ = rconnect(a, "u")
    online(a, "u")
    cut(ws)
    offline(a, "u")
    for n in range(3):
        down(a, "u", n)  # seq 1..3, numbered where they wait
    ws2, answer = rconnect(b, "u", last_seq=0)
    assert answer == {"ok": True, "cseq": 0}
    assert [recv_numbered(ws2)["seq"] for _ in range(3)] == [1, 2, 3]
    cut(ws2)  # none acknowledged
    offline(a, "u")
    ws3, answer = rconnect(a, "u", last_seq=2)
    assert answer == {"ok": True, "cseq": 0}
    assert recv_json(ws3) == {"type": "down", "payload": 2, "seq": 3}
    # A last_seq the hub never sent is unknown; the stream goes on from what it keeps.
    cut(ws3)
    offline(a, "u")
    _, answer = rconnect(b, "u", last_seq=99)
    assert answer == {"ok": False, "reason": "unknown", "first_seq": 3, "cseq": 0}


def test_after_expiry_another_process_answers_expired_and_the_join_is_fresh(
    pair: Callable[..., tuple[Live, Live]],
) -> None:
    a, b = pair(grace=0.3, queued=8)
    a.join(R, "keeper")  # keeps the room
    ws, _ = rconnect(a, "u")
    online(a, "u")
    down(a, "u", 0)
    cut(ws)
    wait_until(
        lambda: any(e[:2] == ("leave", "u") for live in (a, b) for e in live.hooks.events),
        what="u's grace to expire",
    )
    ws2, answer = rconnect(b, "u", last_seq=1)
    assert answer == {"ok": False, "reason": "expired", "first_seq": 1, "cseq": 0}
    online(b, "u")
    down(a, "u", 1)
    assert recv_numbered(ws2)["seq"] == 1  # a new membership counts from 1


def test_a_plain_connection_in_between_ends_the_numbering(
    pair: Callable[..., tuple[Live, Live]],
) -> None:
    a, b = pair(grace=30, queued=8)
    ws, _ = rconnect(a, "u")
    online(a, "u")
    down(a, "u", 0)
    assert recv_numbered(ws)["seq"] == 1
    cut(ws)
    offline(a, "u")
    plain = b.connect(R, "u")
    online(b, "u")
    down(a, "u", 1)
    # The unacknowledged seq 1 is delivered to it as a plain frame, as in one process.
    assert [recv_json(plain) for _ in range(2)] == [{"type": "down", "payload": n} for n in (0, 1)]
    cut(plain)
    offline(a, "u")
    down(a, "u", 2)
    _, answer = rconnect(a, "u", last_seq=1)
    assert answer == {"ok": False, "reason": "unknown", "first_seq": 1, "cseq": 0}


def test_a_process_that_died_holding_the_sequence_gives_an_explicit_gap(
    hub_procs: Callable[..., Cluster], redis_url: str
) -> None:
    c = hub_procs(2, redis_url, grace=30.0, queued=64)
    first = websocket.create_connection(c[0].ws_url(R, "u"), subprotocols=[RESUME], timeout=10)
    send_json(first, "wsroom.resume", {"last_seq": 0})
    assert recv_json(first) == {"type": "hello", "payload": {"reconnect": False}}
    assert recv_json(first)["type"] == "wsroom.resumed"
    wait_until(lambda: c[1].members_or_none(R).get("u") == "ONLINE", what="u online")
    for n in range(3):
        c[1].send_to(R, "u", "down", n)
    assert [recv_numbered(first)["seq"] for _ in range(3)] == [1, 2, 3]
    c.kill(c[0])  # it held seq 1..3, unacknowledged: they die with it
    wait_until(lambda: c[1].members(R).get("u") == "OFFLINE", timeout=15, what="u reaped")
    c[1].send_to(R, "u", "down", 3)
    again = websocket.create_connection(c[1].ws_url(R, "u"), subprotocols=[RESUME], timeout=10)
    send_json(again, "wsroom.resume", {"last_seq": 1})
    assert recv_json(again) == {"type": "hello", "payload": {"reconnect": True}}
    answer = recv_json(again)
    assert answer == {
        "type": "wsroom.resumed",
        "payload": {"ok": False, "reason": "unknown", "first_seq": 2, "cseq": 0},
    }
    # What queued after the death is there, numbered from the first_seq announced.
    assert recv_json(again) == {"type": "down", "payload": 3, "seq": 2}


def test_a_fresh_start_that_replaces_a_connection_elsewhere_counts_its_own_envelopes(
    pair: Callable[..., tuple[Live, Live]],
) -> None:
    a, b = pair(grace=30, queued=8)
    ws, _ = rconnect(a, "u")
    online(a, "u")
    send_n(ws, 1, "old")
    assert recv_json(ws) == {"type": "wsroom.ack", "payload": {"cseq": 1}}
    # A reload: a fresh start on the other process while the old connection is still open;
    # its envelopes count from 1 at once, before its join has the old one's handover.
    ws2, _ = rconnect(b, "u", last_seq=None)
    for cseq in (1, 2):
        send_n(ws2, cseq, f"new{cseq}")
    assert read_close(ws)[0] == 4001
    online(b, "u")
    send_n(ws2, 3, "new3")
    wait_until(lambda: ups(a, b) == ["old", "new1", "new2", "new3"], what="four envelopes")
    acks = [recv_json(ws2)["payload"]["cseq"]]
    while acks[-1] < 3:
        acks.append(recv_json(ws2)["payload"]["cseq"])
