"""Slow and stalled readers: no one else waits for them, their buffer is bounded, they are
closed with 4008 and keep what was not written for their reconnect; big frames arrive whole."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import gevent
import websocket
from conftest import Live, read_close, recv_json, send_json, wait_until
from transport_util import OP_CLOSE, OP_PING, OP_TEXT, RawWS, close_code, vm_rss

import wsroom

OFFLINE = wsroom.Presence.OFFLINE
ONLINE = wsroom.Presence.ONLINE
OUTBOX_BYTES = 256 * 1024
# websocket-client validates UTF-8 in pure Python (20x the cost of everything else here).
FAST = {"skip_utf8_validation": True}


def _stalled(live: Live, room: str, user: str, rcvbuf: int = 4096) -> RawWS:
    """A member with a tiny receive buffer that reads nothing until the test says so."""
    raw = RawWS(live.port, f"/ws/{room}?user={user}", rcvbuf=rcvbuf, timeout=20)
    assert raw.status == 101
    wait_until(lambda: user in live.hub.members(room), what=f"{user} to join")
    return raw


def _reader(ws: websocket.WebSocket, count: int) -> gevent.Greenlet[Any, Any]:
    """A greenlet reading ``count`` envelopes as fast as it can; its value: their seq numbers."""

    def read() -> list[int]:
        return [recv_json(ws)["payload"]["seq"] for _ in range(count)]

    return gevent.spawn(read)


def _drain(raw: RawWS, chunk: int = 65536) -> tuple[list[int], tuple[int, str]]:
    """Resume a stalled reader: every whole envelope's seq, then the close frame's code."""
    seqs: list[int] = []
    while True:
        _fin, op, data = raw.read_frame(chunk)
        if op == OP_PING:
            continue
        if op == OP_CLOSE:
            return seqs, close_code(data)
        assert op == OP_TEXT, f"unexpected opcode {op}"
        seqs.append(json.loads(data)["payload"]["seq"])


def _env(seq: int, pad: int) -> wsroom.Envelope:
    return wsroom.Envelope("tick", {"seq": seq, "pad": "x" * pad})


def _broadcast_until_offline(
    live: Live, user: str, pad: int, limit: int = 20_000
) -> list[wsroom.BroadcastReport]:
    """Broadcast numbered envelopes until ``user`` is dropped as a slow consumer."""
    reports: list[wsroom.BroadcastReport] = []
    for i in range(limit):
        reports.append(live.hub.broadcast("r", _env(i, pad)))
        if i % 16 == 0 and live.hub.members("r")[user] is OFFLINE:
            return reports
    raise AssertionError(f"{user} still online after {limit} broadcasts")


def _slow_live(make_live: Callable[..., Live], **options: Any) -> Live:
    opts: dict[str, Any] = {
        "grace": 30.0,
        "queued": 16,
        "outbox_max_bytes": OUTBOX_BYTES,
        "outbox_max_messages": 100_000,
        "close_timeout": 30.0,  # the staller must still get its close frame once it reads
    }
    opts.update(options)
    return make_live(**opts)


def test_stalled_reader_delays_no_one_and_is_closed_with_4008(
    make_live: Callable[..., Live],
) -> None:
    n, pad = 3000, 4096  # 12 MB to each member: far past the kernel's buffers and the outbox
    live = _slow_live(make_live)
    fast = [live.join("r", "alice", **FAST), live.join("r", "bob", **FAST)]
    staller = _stalled(live, "r", "stall")
    try:
        readers = [_reader(ws, n) for ws in fast]
        started = time.monotonic()
        for i in range(n):
            live.hub.broadcast("r", _env(i, pad))
        for r in readers:
            assert r.get(timeout=20) == list(range(n))
        elapsed = time.monotonic() - started
        # The staller has not read a byte all this time; the others got everything, in order.
        assert elapsed < 20
        assert live.hub.members("r") == {"alice": ONLINE, "bob": ONLINE, "stall": OFFLINE}
        # Once it reads again: whole envelopes in order from the first, then the close frame.
        seqs, (code, reason) = _drain(staller)
        assert (code, reason) == (4008, "slow consumer")
        assert seqs == list(range(len(seqs)))
        assert 0 < len(seqs) < n
    finally:
        staller.close()
    assert live.hooks.leaves_of("stall") == [], "the staller is inside its grace period"


def test_stalled_reader_gets_its_unwritten_envelopes_on_reconnect(
    make_live: Callable[..., Live],
) -> None:
    pad, queued = 4096, 16
    live = _slow_live(make_live, queued=queued)
    staller = _stalled(live, "r", "stall")
    reports = _broadcast_until_offline(live, "stall", pad)
    reports += [live.hub.broadcast("r", _env(len(reports) + i, pad)) for i in range(queued + 4)]
    # After it went offline, broadcasts were queued for it until the queue was full, then dropped.
    assert reports[-1] == wsroom.BroadcastReport(sent=0, queued=0, dropped=("stall",))
    seqs, (code, _) = _drain(staller)
    staller.close()
    assert code == 4008
    assert seqs == list(range(len(seqs)))
    # Reconnect inside the grace period: the envelopes not written, oldest first, up to the bound.
    ws = live.connect("r", "stall")
    backlog = [recv_json(ws)["payload"]["seq"] for _ in range(queued)]
    assert backlog == list(range(len(seqs), len(seqs) + queued))
    wait_until(lambda: live.hub.members("r") == {"stall": ONLINE}, what="back online")
    assert [(jc.participant, jc.reconnect) for jc in live.hooks.joins] == [
        ("stall", False),
        ("stall", True),
    ]
    # Then live traffic, and nothing else from the backlog.
    live.hub.send_to("r", "stall", _env(-1, 0))
    assert recv_json(ws)["payload"]["seq"] == -1


def test_outbox_message_bound_closes_a_stalled_reader(make_live: Callable[..., Live]) -> None:
    # Bound by count: tiny frames, far under the byte bound.
    live = _slow_live(make_live, outbox_max_messages=64, outbox_max_bytes=64 * 1024 * 1024)
    staller = _stalled(live, "r", "stall")
    try:
        sent = 0
        for i in range(200_000):
            try:
                if live.hub.send_to("r", "stall", _env(i, 200)) is not wsroom.Delivery.SENT:
                    break
            except wsroom.ParticipantOffline:
                break  # dropped, and its queue already full of what it had not been written
            sent += 1
        else:
            raise AssertionError("200,000 frames to a stalled reader and it is still online")
        assert live.hub.members("r") == {"stall": OFFLINE}
        # Everything handed to it before the overflow is either on the wire or kept (queue 16).
        seqs, (code, _) = _drain(staller)
        assert code == 4008
        assert seqs == list(range(len(seqs)))
        assert len(seqs) <= sent
    finally:
        staller.close()


def test_send_to_a_stalled_reader_queues_then_raises_offline(
    make_live: Callable[..., Live],
) -> None:
    live = _slow_live(make_live, queued=4)
    staller = _stalled(live, "r", "stall")
    try:
        results = []
        for i in range(5000):
            try:
                results.append(live.hub.send_to("r", "stall", _env(i, 4096)))
            except wsroom.ParticipantOffline:
                results.append("offline")
                break
        assert results[-1] == "offline", "the stalled reader was never dropped"
        assert live.hub.members("r") == {"stall": OFFLINE}
        sent = results.count(wsroom.Delivery.SENT)
        queued = results.count(wsroom.Delivery.QUEUED)
        # SENT while it had room, then (its unwritten frames filling the offline queue) at most
        # as many QUEUED as the queue has room for, then ParticipantOffline.
        assert sent > 0
        assert queued <= 4
        assert results == [wsroom.Delivery.SENT] * sent + [wsroom.Delivery.QUEUED] * queued + [
            "offline"
        ]
    finally:
        staller.close()


def test_memory_stays_bounded_whatever_is_sent_to_a_stalled_reader(
    make_live: Callable[..., Live],
) -> None:
    live = _slow_live(make_live)
    fast = live.join("r", "alice", **FAST)
    staller = _stalled(live, "r", "stall")
    pad = 8192

    def rss_growth(count: int, start: int) -> int:
        reader = _reader(fast, count)
        before = vm_rss()
        peak = before
        for i in range(start, start + count):
            live.hub.broadcast("r", _env(i, pad))
            if i % 50 == 0:
                peak = max(peak, vm_rss())
        assert reader.get(timeout=20) == list(range(start, start + count))
        return max(peak, vm_rss()) - before

    try:
        rss_growth(200, 0)  # warm up: the staller's kernel buffers, outbox and the allocator
        growth = rss_growth(3000, 200)  # 24 MB more to the staller
        # Measured: well under 1 MiB; with an unbounded outbox, 45 MiB.
        bound = 8 * 1024 * 1024 + 4 * OUTBOX_BYTES
        assert growth < bound, f"RSS grew by {growth / 2**20:.1f} MiB sending 24 MiB"
        assert live.hub.members("r")["stall"] is OFFLINE
    finally:
        staller.close()


# -- big frames ---------------------------------------------------------------------------


def test_4mib_envelope_reaches_a_slow_reader_intact(make_live: Callable[..., Live]) -> None:
    live = make_live(grace=0.0)
    raw = _stalled(live, "r", "slow", rcvbuf=16384)
    try:
        # 4 MiB of numbered cells: any byte lost, doubled or moved shows up.
        payload = {"blob": "".join(f"{i:07d}," for i in range(512 * 1024))}
        assert len(payload["blob"]) == 4 * 1024 * 1024
        delivery = live.hub.send_to("r", "slow", wsroom.Envelope("big", payload))
        assert delivery is wsroom.Delivery.SENT
        live.hub.send_to("r", "slow", wsroom.Envelope("after", 1))
        # Read slowly, in small chunks, with pauses: the writer meets backpressure throughout.
        raw.pause = 0.001
        got: list[dict[str, Any]] = []

        def slow_recv() -> None:
            while len(got) < 2:
                op, data = raw.read_message(chunk=16384)
                if op == OP_TEXT:
                    got.append(json.loads(data))

        gevent.spawn(slow_recv).get(timeout=30)
        assert got[0] == {"type": "big", "payload": payload}
        assert got[1] == {"type": "after", "payload": 1}
    finally:
        raw.close()


def test_large_frames_and_small_sends_are_never_cut_or_interleaved(
    make_live: Callable[..., Live],
) -> None:
    live = make_live(grace=0.0, outbox_max_bytes=64 * 1024 * 1024, outbox_max_messages=100_000)
    raw = _stalled(live, "r", "slow", rcvbuf=8192)
    try:
        sizes = [1024 * 1024, 3 * 1024 * 1024, 70_000, 2 * 1024 * 1024, 65_535, 125, 126]

        def big_sender() -> None:
            for k, size in enumerate(sizes):
                live.hub.send_to("r", "slow", wsroom.Envelope("big", {"k": k, "s": "b" * size}))
                gevent.sleep(0)

        def small_sender() -> None:
            for i in range(300):
                live.hub.send_to("r", "slow", wsroom.Envelope("small", i))
                if i % 20 == 0:
                    gevent.sleep(0)

        senders = [gevent.spawn(big_sender), gevent.spawn(small_sender)]
        bigs: list[int] = []
        smalls: list[int] = []
        while len(bigs) + len(smalls) < len(sizes) + 300:
            op, data = raw.read_message(chunk=32768)
            assert op == OP_TEXT
            frame = json.loads(data)  # a cut or interleaved frame would not parse
            if frame["type"] == "big":
                k = frame["payload"]["k"]
                assert frame["payload"]["s"] == "b" * sizes[k]
                bigs.append(k)
            else:
                smalls.append(frame["payload"])
        gevent.joinall(senders, raise_error=True)
        assert bigs == list(range(len(sizes)))
        assert smalls == list(range(300))
    finally:
        raw.close()


def test_client_reading_slowly_but_steadily_is_not_dropped(make_live: Callable[..., Live]) -> None:
    # Slow is not stalled: a reader that keeps up on average stays online.
    live = make_live(grace=0.0, outbox_max_messages=64)
    ws = live.join("r", "alice")
    got: list[int] = []

    def read() -> None:
        for _ in range(300):
            got.append(recv_json(ws)["payload"])
            if len(got) % 10 == 0:
                gevent.sleep(0.001)

    reader = gevent.spawn(read)
    for i in range(300):
        live.hub.send_to("r", "alice", wsroom.Envelope("n", i))
        if i % 16 == 0:
            wait_until(lambda i=i: len(got) >= i - 32, what="the reader to keep up")
    reader.get(timeout=10)
    assert got == list(range(300))
    assert live.hub.members("r") == {"alice": ONLINE}
    send_json(ws, "x")
    live.hub.close_room("r")
    assert read_close(ws)[0] == 4000
