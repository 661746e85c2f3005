"""Resume without loss (contract §7) on the wire, frame by frame, with a raw WebSocket client:
the subprotocol, seq and acks, the answers to a resume, cseq handed on once, the refusals
(overflow, expired, unknown), and a plain client on the same hub seeing today's format."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import pytest
from conftest import Live, read_close, recv_json, recv_numbered, send_json, wait_until

import wsroom
from wsroom import Presence

RESUME = "wsroom.resume.1"


def rconnect(live: Live, user: str, last_seq: int | None = 0) -> tuple[Any, dict[str, Any]]:
    """A resume connection; its first frame asks to resume from ``last_seq`` (None: none).
    Returns the socket and the hub's answer (``{}`` when nothing was asked)."""
    ws = live.connect("r", user, subprotocols=[RESUME])
    assert ws.getsubprotocol() == RESUME
    if last_seq is None:
        return ws, {}
    send_json(ws, "wsroom.resume", {"last_seq": last_seq})
    answer = recv_json(ws)
    assert answer["type"] == "wsroom.resumed", answer
    return ws, answer["payload"]


def joined(live: Live, user: str, count: int = 1) -> None:
    wait_until(
        lambda: (
            sum(1 for jc in live.hooks.joins if jc.participant == user) >= count
            and live.hub.members("r").get(user) is Presence.ONLINE
        ),
        what=f"{user} joined",
    )


def cut(ws: Any) -> None:
    """Reset the connection (SO_LINGER 0): no close frame, the peer sees ECONNRESET."""
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()


def offline(live: Live, user: str) -> None:
    wait_until(lambda: live.hub.members("r").get(user) is Presence.OFFLINE, what=f"{user} away")


def send_n(ws: Any, cseq: int, n: Any) -> None:
    ws.send(json.dumps({"type": "up", "payload": n, "cseq": cseq}))


def ups(live: Live) -> list[Any]:
    return [e.payload for _, _, e in live.hooks.messages if e.type == "up"]


def hello_on_join(live: Live) -> None:
    def join_fn(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        client.send(wsroom.Envelope("hello", {"reconnect": jc.reconnect}))

    live.hooks.join_fn = join_fn


def test_a_plain_client_sees_todays_format_beside_a_resume_client(make_live: Any) -> None:
    live = make_live(grace=30, queued=64)
    plain = live.join("r", "p")
    assert plain.getsubprotocol() is None
    named = live.join("r", "n", subprotocols=["wsroom.plain.1"])  # the plain protocol by name
    assert named.getsubprotocol() == "wsroom.plain.1"
    ws, answer = rconnect(live, "q")
    assert answer == {"ok": True, "cseq": 0}
    joined(live, "q")
    for n in range(3):
        live.hub.broadcast("r", wsroom.Envelope("news", n))
    news = [{"type": "news", "payload": n} for n in range(3)]
    assert [recv_json(plain) for _ in range(3)] == news
    assert [recv_json(named) for _ in range(3)] == news
    assert [recv_json(ws) for _ in range(3)] == [
        {"type": "news", "payload": n, "seq": n + 1} for n in range(3)
    ]
    # The protocol's frames are not a plain connection's: it is answered as today.
    send_json(plain, "wsroom.ack", {"seq": 1})
    error = recv_json(plain)
    assert error["payload"]["code"] == "bad_envelope" and "reserved" in error["payload"]["detail"]
    send_json(plain, "chat", "hi")  # no cseq needed
    wait_until(lambda: live.hooks.messages, what="the plain envelope")


def test_a_hub_without_grace_or_queue_does_not_offer_it(make_live: Any) -> None:
    for grace, queued in ((0, 64), (30, 0)):
        live = make_live(grace=grace, queued=queued)
        # It chooses the plain protocol when offered by name (a browser fails a handshake
        # that chose none of the subprotocols it offered) ...
        ws = live.connect("r", "a", subprotocols=[RESUME, "wsroom.plain.1"])
        assert ws.getsubprotocol() == "wsroom.plain.1"
        joined(live, "a")  # at once: no first frame awaited
        live.hub.send_to("r", "a", wsroom.Envelope("down", 1))
        assert recv_json(ws) == {"type": "down", "payload": 1}
        # ... and none when offered resume alone (by hand: websocket-client would refuse).
        ws = live.connect("r", "b", header=[f"Sec-WebSocket-Protocol: {RESUME}"])
        assert "sec-websocket-protocol" not in ws.getheaders()


def test_the_replay_follows_on_joins_own_sends_and_numbering_goes_on(make_live: Any) -> None:
    live = make_live(grace=30, queued=64)
    hello_on_join(live)
    ws, _ = rconnect(live, "a")
    assert recv_json(ws) == {"type": "hello", "payload": {"reconnect": False}}  # no seq
    joined(live, "a")
    for n in range(3):
        assert live.hub.send_to("r", "a", wsroom.Envelope("down", n)) is wsroom.Delivery.SENT
    assert [recv_numbered(ws)["seq"] for _ in range(3)] == [1, 2, 3]
    send_json(ws, "wsroom.ack", {"seq": 1})
    cut(ws)  # 2 was seen, 3 not: the client says last_seq 2
    offline(live, "a")
    for n in (3, 4):
        assert live.hub.send_to("r", "a", wsroom.Envelope("down", n)) is wsroom.Delivery.QUEUED
    ws2, answer = rconnect(live, "a", last_seq=2)
    assert answer == {"ok": True, "cseq": 0}
    assert recv_json(ws2) == {"type": "hello", "payload": {"reconnect": True}}
    assert [recv_json(ws2) for _ in range(3)] == [
        {"type": "down", "payload": n, "seq": n + 1} for n in (2, 3, 4)
    ]
    joined(live, "a", 2)
    live.hub.send_to("r", "a", wsroom.Envelope("down", 5))
    assert recv_numbered(ws2)["seq"] == 6


def test_client_envelopes_reach_on_message_once_across_reconnects(make_live: Any) -> None:
    live = make_live(grace=30, queued=64)
    ws, _ = rconnect(live, "a")
    joined(live, "a")
    for cseq in (1, 2, 3):
        send_n(ws, cseq, cseq)
    acks = [recv_json(ws)["payload"]["cseq"]]
    while acks[-1] < 3:
        acks.append(recv_json(ws)["payload"]["cseq"])
    assert acks == sorted(acks) and acks[-1] == 3  # cumulative, batched
    cut(ws)
    offline(live, "a")
    ws2, answer = rconnect(live, "a", last_seq=0)
    assert answer == {"ok": True, "cseq": 3}  # what the hub already handed on
    for cseq in (2, 3, 4):  # a client resending what it never saw acknowledged
        send_n(ws2, cseq, cseq)
    assert recv_json(ws2) == {"type": "wsroom.ack", "payload": {"cseq": 4}}
    assert ups(live) == [1, 2, 3, 4]
    # The same across a replacement: the first connection is still open (half-open).
    send_n(ws2, 5, 5)
    ws3, answer = rconnect(live, "a", last_seq=0)
    assert answer["cseq"] == 5
    assert read_close(ws2)[0] == 4001
    send_n(ws3, 5, 5)
    send_n(ws3, 6, 6)
    wait_until(lambda: ups(live) == [1, 2, 3, 4, 5, 6], what="6 envelopes")


def test_a_full_log_offline_gives_overflow_and_where_the_stream_goes_on(make_live: Any) -> None:
    live = make_live(grace=30, queued=4)
    ws, _ = rconnect(live, "a")
    joined(live, "a")
    live.join("r", "b")
    cut(ws)
    offline(live, "a")
    for n in range(4):
        assert live.hub.send_to("r", "a", wsroom.Envelope("down", n)) is wsroom.Delivery.QUEUED
    with pytest.raises(wsroom.ParticipantOffline):
        live.hub.send_to("r", "a", wsroom.Envelope("down", 4))  # seq 5, lost
    report = live.hub.broadcast("r", wsroom.Envelope("down", 5), exclude=["b"])  # seq 6, lost
    assert report.dropped == ("a",)
    ws2, answer = rconnect(live, "a", last_seq=0)
    assert answer == {"ok": False, "reason": "overflow", "first_seq": 7, "cseq": 0}
    joined(live, "a", 2)
    live.hub.send_to("r", "a", wsroom.Envelope("down", 6))
    assert recv_json(ws2) == {"type": "down", "payload": 6, "seq": 7}


def test_a_client_that_lets_its_log_fill_is_a_slow_consumer_and_told_the_gap(
    make_live: Any,
) -> None:
    live = make_live(grace=30, queued=4)
    ws, _ = rconnect(live, "a")
    joined(live, "a")
    for n in range(4):
        assert live.hub.send_to("r", "a", wsroom.Envelope("down", n)) is wsroom.Delivery.SENT
    with pytest.raises(wsroom.ParticipantOffline):  # never acknowledged: no room for seq 5
        live.hub.send_to("r", "a", wsroom.Envelope("down", 4))
    assert [recv_numbered(ws)["seq"] for _ in range(4)] == [1, 2, 3, 4]
    assert read_close(ws) == (4008, "slow consumer")
    offline(live, "a")  # its grace period
    ws2, answer = rconnect(live, "a", last_seq=4)
    assert answer == {"ok": False, "reason": "overflow", "first_seq": 6, "cseq": 0}
    joined(live, "a", 2)
    live.hub.send_to("r", "a", wsroom.Envelope("down", 5))
    assert recv_numbered(ws2)["seq"] == 6


def test_a_broadcast_past_a_full_log_drops_that_member_and_closes_it(make_live: Any) -> None:
    live = make_live(grace=30, queued=2)
    plain = live.join("r", "p")
    ws, _ = rconnect(live, "a")
    joined(live, "a")
    reports = [live.hub.broadcast("r", wsroom.Envelope("news", n)) for n in range(3)]
    assert [(r.sent, r.queued, r.dropped) for r in reports] == [
        (2, 0, ()),
        (2, 0, ()),
        (1, 0, ("a",)),  # no ack came: seq 3 has no room
    ]
    assert [recv_numbered(ws)["seq"] for _ in range(2)] == [1, 2]
    assert read_close(ws) == (4008, "slow consumer")
    assert [recv_json(plain)["payload"] for _ in range(3)] == [0, 1, 2]


def test_after_expiry_a_resume_is_expired_or_unknown_and_the_join_is_fresh(
    make_live: Any,
) -> None:
    live = make_live(grace=0.3, queued=8)
    hello_on_join(live)
    live.join("r", "b")  # keeps the room, which remembers a's expiry
    ws, _ = rconnect(live, "a")
    recv_json(ws)
    joined(live, "a")
    live.hub.send_to("r", "a", wsroom.Envelope("down", 0))
    cut(ws)
    wait_until(lambda: live.hooks.leaves_of("a"), what="a's grace to expire")
    assert isinstance(live.hooks.leaves_of("a")[0], wsroom.GraceExpired)
    ws2, answer = rconnect(live, "a", last_seq=1)
    assert answer == {"ok": False, "reason": "expired", "first_seq": 1, "cseq": 0}
    assert recv_json(ws2) == {"type": "hello", "payload": {"reconnect": False}}
    joined(live, "a", 2)
    live.hub.send_to("r", "a", wsroom.Envelope("down", 1))
    assert recv_numbered(ws2)["seq"] == 1  # a new membership counts from 1
    # A participant the room never saw, asking to resume from 3: unknown, fresh.
    _, answer = rconnect(live, "c", last_seq=3)
    assert answer == {"ok": False, "reason": "unknown", "first_seq": 1, "cseq": 0}


def test_a_first_frame_that_is_not_a_resume_is_a_fresh_start_handled_normally(
    make_live: Any,
) -> None:
    live = make_live(grace=30, queued=8)
    ws, _ = rconnect(live, "a", last_seq=None)
    send_n(ws, 1, "first")
    assert recv_json(ws) == {"type": "wsroom.ack", "payload": {"cseq": 1}}
    assert ups(live) == ["first"]
    assert [jc.reconnect for jc in live.hooks.joins] == [False]


def test_without_a_first_frame_the_join_starts_afresh_after_a_bounded_wait(
    make_live: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("wsroom.actors.participant.FIRST_FRAME_WAIT", 0.3)
    live = make_live(grace=30, queued=8)
    rconnect(live, "a", last_seq=None)
    joined(live, "a")
    live.hub.send_to("r", "a", wsroom.Envelope("down", 0))


def test_frames_that_break_the_protocol(make_live: Any) -> None:
    live = make_live(grace=30, queued=8)
    ws, _ = rconnect(live, "a")
    joined(live, "a")
    for text, detail in (
        ('{"type":"up","payload":1}', "$.cseq"),
        ('{"type":"wsroom.resume","payload":{"last_seq":0}}', "first frame"),
        ('{"type":"wsroom.ack","payload":{"seq":-1}}', "$.payload"),
        ("[1]", "expected a JSON object"),
    ):
        ws.send(text)
        error = recv_json(ws)
        assert error["type"] == "wsroom.error" and detail in error["payload"]["detail"], error
    ws.send('{"type":"","cseq":1}')  # numbered, but no envelope: answered, and counted
    assert recv_json(ws)["payload"]["code"] == "bad_envelope"
    assert recv_json(ws) == {"type": "wsroom.ack", "payload": {"cseq": 1}}
    send_n(ws, 3, "skipped 2")
    assert recv_json(ws)["payload"]["code"] == "bad_cseq"
    assert read_close(ws) == (1008, "cseq out of order")
    assert ups(live) == []


def test_acks_make_room_in_the_log_however_they_are_written(make_live: Any) -> None:
    # The reader takes the usual compact ack itself; any other valid spelling goes through the
    # participant. Either way the acknowledged frames leave the log (4 at most here).
    live = make_live(grace=30, queued=4)
    ws, _ = rconnect(live, "a")
    joined(live, "a")
    seq = 0
    for ack in (
        '{"type":"wsroom.ack","payload":{"seq":%d}}',
        '{"type": "wsroom.ack", "payload": {"seq": %d}}',
        '{"payload":{"seq":%d},"type":"wsroom.ack"}',
    ):
        for n in range(4):
            assert live.hub.send_to("r", "a", wsroom.Envelope("down", n)) is wsroom.Delivery.SENT
        assert [recv_numbered(ws)["seq"] for _ in range(4)] == list(range(seq + 1, seq + 5))
        seq += 4
        ws.send(ack % seq)
        # The frames of one connection are read in order: once this one is answered, the ack
        # before it has been noted.
        send_n(ws, seq // 4, "after the ack")
        assert recv_json(ws) == {"type": "wsroom.ack", "payload": {"cseq": seq // 4}}
    for n in range(4):
        assert live.hub.send_to("r", "a", wsroom.Envelope("down", n)) is wsroom.Delivery.SENT
    with pytest.raises(wsroom.ParticipantOffline):  # no ack this time: no room for a fifth
        live.hub.send_to("r", "a", wsroom.Envelope("down", 4))
    assert [recv_numbered(ws)["seq"] for _ in range(4)] == list(range(seq + 1, seq + 5))
    assert read_close(ws) == (4008, "slow consumer")


def test_the_hub_asks_for_an_ack_when_the_log_is_half_full_and_again_after_one(
    make_live: Any,
) -> None:
    live = make_live(grace=30, queued=4)
    ws, _ = rconnect(live, "a")
    joined(live, "a")
    ask = {"type": "wsroom.ack", "payload": {"ask": True}}
    for n in range(2):
        live.hub.send_to("r", "a", wsroom.Envelope("down", n))
    assert [recv_json(ws) for _ in range(3)] == [
        {"type": "down", "payload": 0, "seq": 1},
        {"type": "down", "payload": 1, "seq": 2},
        ask,  # 2 of 4 kept: asked once ...
    ]
    live.hub.send_to("r", "a", wsroom.Envelope("down", 2))
    assert recv_json(ws) == {"type": "down", "payload": 2, "seq": 3}  # ... not again
    send_json(ws, "wsroom.ack", {"seq": 3})
    send_n(ws, 1, "x")  # read after the ack: once the hub answers it, the ack was read
    assert recv_json(ws) == {"type": "wsroom.ack", "payload": {"cseq": 1}}
    for n in range(3, 6):
        live.hub.send_to("r", "a", wsroom.Envelope("down", n))
    frames = [recv_json(ws) for _ in range(4)]
    assert [f.get("seq") for f in frames] == [4, 5, None, 6]
    assert frames[2] == ask  # 4 and 5 kept after the ack: asked again
