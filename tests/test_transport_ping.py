"""Keep-alive: a peer that answers no ping is closed with 1008 and enters its grace period;
a peer that answers stays."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import gevent
import websocket
from conftest import Live, send_json, wait_until
from transport_util import OP_CLOSE, OP_PING, OP_TEXT, RawWS, close_code

import wsroom

INTERVAL = 0.2


def _presence(live: Live, room: str = "r") -> dict[str, wsroom.Presence]:
    try:
        return dict(live.hub.members(room))
    except wsroom.RoomNotFound:
        return {}


def test_silent_peer_is_closed_with_1008_then_leaves_after_grace(
    make_live: Callable[..., Live],
) -> None:
    live = make_live(grace=0.5, queued=4, ping_interval=INTERVAL)
    started = time.monotonic()
    raw = RawWS(live.port, "/ws/r?user=alice")
    try:
        assert raw.status == 101
        wait_until(lambda: _presence(live) == {"alice": wsroom.Presence.ONLINE}, what="join")
        # The raw client neither reads nor answers: after about two intervals it is dropped.
        wait_until(
            lambda: _presence(live) == {"alice": wsroom.Presence.OFFLINE},
            timeout=5,
            what="alice to go offline",
        )
        assert time.monotonic() - started >= 1.5 * INTERVAL, "closed before a ping was due"
        assert live.hooks.leaves == [], "on_leave must wait for the grace period"
        # What it was sent meanwhile: pings, then a close frame with 1008.
        pings = 0
        while True:
            _fin, op, data = raw.read_frame()
            if op == OP_PING:
                pings += 1
                continue
            assert op == OP_CLOSE, f"unexpected opcode {op}"
            assert close_code(data)[0] == 1008
            break
        assert pings >= 1
        wait_until(lambda: live.hooks.leaves_of("alice"), timeout=3, what="on_leave")
        [reason] = live.hooks.leaves_of("alice")
        assert isinstance(reason, wsroom.GraceExpired)
        assert isinstance(reason.__cause__, wsroom.Disconnected)
        assert reason.__cause__.code == 1008
        assert _presence(live) == {}
    finally:
        raw.close()


def test_silent_peer_without_grace_leaves_with_disconnected_1008(
    make_live: Callable[..., Live],
) -> None:
    live = make_live(grace=0.0, ping_interval=INTERVAL)
    raw = RawWS(live.port, "/ws/r?user=alice")
    try:
        wait_until(lambda: live.hooks.joins, what="join")
        wait_until(lambda: live.hooks.leaves_of("alice"), timeout=5, what="on_leave")
        [reason] = live.hooks.leaves_of("alice")
        assert isinstance(reason, wsroom.Disconnected)
        assert reason.code == 1008
    finally:
        raw.close()


def test_peer_answering_pings_stays_connected(make_live: Callable[..., Live]) -> None:
    live = make_live(grace=0.5, queued=4, ping_interval=INTERVAL)
    ws = live.join("r", "alice")
    pings: list[bytes] = []
    texts: list[str] = []

    def read() -> None:
        # websocket-client answers each ping with a pong as it reads it.
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except (websocket.WebSocketException, OSError):
                return
            if opcode == websocket.ABNF.OPCODE_PING:
                pings.append(data)
            elif opcode == websocket.ABNF.OPCODE_TEXT:
                texts.append(data.decode())
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                texts.append("CLOSED")
                return

    reader = gevent.spawn(read)
    try:
        wait_until(lambda: len(pings) >= 6, timeout=5, what="six pings")
        assert "CLOSED" not in texts
        assert _presence(live) == {"alice": wsroom.Presence.ONLINE}
        assert live.hooks.leaves == []
        live.hooks.message_fn = lambda room, p, env: live.hub.send_to(room, p, env)
        send_json(ws, "still-here", len(pings))
        wait_until(lambda: texts, what="the echo")
        assert '"still-here"' in texts[0]
    finally:
        reader.kill()


def test_ping_interval_zero_sends_no_pings(make_live: Callable[..., Live]) -> None:
    live = make_live(grace=0.0, ping_interval=0)
    raw = RawWS(live.port, "/ws/r?user=alice", timeout=0.6)
    try:
        wait_until(lambda: live.hooks.joins, what="join")
        live.hub.send_to("r", "alice", wsroom.Envelope("marker"))
        assert raw.read_json() == {"type": "marker", "payload": None}
        # Nothing else arrives (no ping) while the raw client stays silent.
        try:
            frame = raw.read_frame()
        except TimeoutError:
            frame = None
        assert frame is None, f"unexpected frame {frame!r}"
        assert _presence(live) == {"alice": wsroom.Presence.ONLINE}
    finally:
        raw.close()


def test_slow_reader_answering_pings_is_not_cut_mid_stream(
    make_live: Callable[..., Live],
) -> None:
    # Keep-alive and backpressure together: a reader that drains slowly but steadily, and
    # answers every ping, must get every frame whole and stay connected.
    live = make_live(
        grace=0.0, ping_interval=0.3, outbox_max_bytes=64 * 1024 * 1024, outbox_max_messages=10_000
    )
    raw = RawWS(live.port, "/ws/r?user=alice", rcvbuf=16384)
    raw.auto_pong = True
    raw.pause = 0.001
    try:
        wait_until(lambda: "alice" in live.hub.members("r"), what="the join")
        count, pad = 100, 64 * 1024
        for i in range(count):
            live.hub.send_to("r", "alice", wsroom.Envelope("n", {"i": i, "pad": "x" * pad}))
        got = []
        while len(got) < count:
            op, data = raw.read_message(chunk=16384)
            assert op == OP_TEXT, f"opcode {op} {close_code(data) if op == OP_CLOSE else ''}"
            got.append(json.loads(data)["payload"]["i"])
        assert got == list(range(count))
        assert live.hub.members("r") == {"alice": wsroom.Presence.ONLINE}
        assert live.hooks.leaves == []
    finally:
        raw.close()


def test_frame_that_takes_longer_than_ping_interval_to_write_arrives_whole(
    make_live: Callable[..., Live],
) -> None:
    # An 8 MiB frame to a reader draining a few MiB/s: writing it takes several ping
    # intervals. The reader proves it is alive all along (an unsolicited pong after every
    # read, which RFC 6455 allows as a heartbeat), so nothing may cut the frame short.
    live = make_live(grace=0.0, ping_interval=0.5)
    raw = RawWS(live.port, "/ws/r?user=alice", rcvbuf=16384)
    raw.auto_pong = True
    raw.heartbeat = True
    raw.pause = 0.002
    try:
        wait_until(lambda: "alice" in live.hub.members("r"), what="the join")
        blob = "".join(f"{i:07d}," for i in range(1024 * 1024))
        started = time.monotonic()
        live.hub.send_to("r", "alice", wsroom.Envelope("big", blob))
        try:
            op, data = raw.read_message(chunk=16384)
        except ConnectionError as exc:
            took = time.monotonic() - started
            raise AssertionError(f"the server cut the frame after {took:.2f}s") from exc
        took = time.monotonic() - started
        assert op == OP_TEXT, f"opcode {op} {close_code(data) if op == OP_CLOSE else ''}"
        assert json.loads(data) == {"type": "big", "payload": blob}
        assert took > 1.0, f"read in {took:.2f}s: too fast to test anything"
        live.hub.send_to("r", "alice", wsroom.Envelope("after"))
        assert raw.read_json() == {"type": "after", "payload": None}
        assert live.hub.members("r") == {"alice": wsroom.Presence.ONLINE}
    finally:
        raw.close()
