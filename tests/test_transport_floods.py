"""One hostile client flooding frames must not freeze anyone else, nor cost unbounded memory.

The flooder runs in a process of its own (``flood_client.py``), so it floods at full speed while
an honest client in this process measures its round trips through the hub.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from conftest import Live, send_json, wait_until
from transport_util import OP_CLOSE, OP_PING, OP_PONG, RawWS, close_code

import wsroom

FLOODER = Path(__file__).with_name("flood_client.py")
FLOOD_SECONDS = 1.5
# Today's read loop froze an honest client for 2-28 s under these floods. The bar of the issue
# (p99 under 50 ms) is held in soak/test_floods.py; here, on a shared and loaded machine, a
# generous bound that still fails by far on a loop that never yields.
WORST_ROUND_TRIP = 0.5


def _echo(live: Live) -> None:
    live.hooks.message_fn = lambda room, p, env: live.hub.send_to(room, p, env)


def _start_flood(port: int, kind: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(FLOODER), str(port), kind, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _round_trips(ws: websocket.WebSocket, until: float) -> list[float]:
    """Echo round trips, one after another, until ``until`` (websocket-client answers pings)."""
    took: list[float] = []
    n = 0
    while time.monotonic() < until:
        n += 1
        started = time.monotonic()
        send_json(ws, "rt", n)
        while True:
            opcode, data = ws.recv_data(control_frame=False)
            assert opcode == websocket.ABNF.OPCODE_TEXT, f"opcode {opcode}: {data[:60]!r}"
            if json.loads(data)["payload"] == n:
                break
        took.append(time.monotonic() - started)
        time.sleep(0.005)
    return took


@pytest.mark.parametrize("kind", ["ping", "pong", "empty_cont", "cont10"])
def test_a_flooding_client_does_not_stall_an_honest_one(
    make_live: Callable[..., Live], kind: str
) -> None:
    live = make_live(grace=0.0, ping_interval=0.5)
    _echo(live)
    ws = live.join("r", "honest")
    ws.settimeout(10)
    flooder = _start_flood(live.port, kind, FLOOD_SECONDS)
    try:
        wait_until(lambda: live.hooks.joins and live.hooks.joins[-1].room == "flood", what="flood")
        took = _round_trips(ws, time.monotonic() + FLOOD_SECONDS)
    finally:
        out, _ = flooder.communicate(timeout=30)
    took.sort()
    assert took, "no round trip completed"
    assert took[-1] < WORST_ROUND_TRIP, (
        f"{kind}: worst round trip {took[-1] * 1000:.0f} ms over {len(took)} "
        f"(p50 {took[len(took) // 2] * 1000:.1f} ms); flooder {out.strip()}"
    )
    assert live.hub.members("r") == {"honest": wsroom.Presence.ONLINE}
    assert not live.hooks.leaves_of("honest")


def _flood_and_read_close(raw: RawWS, frame: bytes, count: int) -> tuple[int, str]:
    """Write ``count`` copies of ``frame`` (stopping if the server hangs up), then read until
    the server's close frame."""
    chunk = frame * 1000
    try:
        for _ in range(count // 1000):
            raw.sock.sendall(chunk)
    except OSError:
        pass
    while True:
        _fin, op, data = raw.read_frame()
        if op == OP_CLOSE:
            return close_code(data)


def _masked(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def _head(opcode: int, length: int, fin: bool = True) -> bytes:
    """The header of a masked frame of 126 to 65535 bytes (zero mask key)."""
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | 126]) + length.to_bytes(2, "big") + bytes(4)


def _next_close_code(raw: RawWS) -> int:
    _fin, op, data = raw.read_frame()
    assert op == OP_CLOSE, f"opcode {op}: {data[:60]!r}"
    return close_code(data)[0]


@contextlib.contextmanager
def _raw_member(
    make_live: Callable[..., Live],
    user: str = "mallory",
    rcvbuf: int | None = None,
    **options: Any,
) -> Iterator[tuple[Live, RawWS]]:
    """A hub without keep-alive, and a raw client joined to its room ``r``."""
    live = make_live(grace=0.0, ping_interval=0, **options)
    raw = RawWS(live.port, f"/ws/r?user={user}", rcvbuf=rcvbuf, timeout=5)
    try:
        wait_until(lambda: live.hooks.joins, what="the join")
        yield live, raw
    finally:
        raw.close()


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG])
def test_a_control_frame_flood_is_closed_with_1008(
    make_live: Callable[..., Live], opcode: int
) -> None:
    with _raw_member(make_live) as (live, raw):
        code, reason = _flood_and_read_close(raw, _masked(opcode), 50_000)
        assert (code, reason) == (1008, "too many control frames")
        wait_until(lambda: live.hooks.leaves_of("mallory"), what="on_leave")


def test_never_ending_empty_fragments_are_closed_with_1008(
    make_live: Callable[..., Live],
) -> None:
    with _raw_member(make_live) as (live, raw):
        raw.sock.sendall(_masked(0x1, b'{"type":', fin=False))
        code, reason = _flood_and_read_close(raw, _masked(0x0, fin=False), 50_000)
        assert (code, reason) == (1008, "too many fragments in one message")
        assert live.hooks.messages == []


def test_a_fragmented_message_over_the_limit_is_refused_from_the_header(
    make_live: Callable[..., Live],
) -> None:
    # The fragment that would take the message over the limit is refused as its header
    # arrives: its payload is never waited for, nor buffered.
    with _raw_member(make_live, max_message_size=1000) as (_live, raw):
        raw.sock.sendall(_masked(0x1, b"x" * 100, fin=False))
        raw.sock.sendall(_masked(0x0, b"x" * 100, fin=False))
        # 200 so far; a fragment of 900 announced, and only its first bytes ever sent.
        raw.sock.sendall(_head(0x0, 900, fin=False) + b"xx")
        assert _next_close_code(raw) == 1009


def test_unread_pings_keep_one_pong_waiting_not_one_each(make_live: Callable[..., Live]) -> None:
    # A client that pings and never reads: only the latest ping is answered once pongs back
    # up (RFC 6455 5.5.3), so what the server holds for it stays small. Pings come slowly
    # enough to stay inside the control-frame budget.
    with _raw_member(make_live, "lazy", rcvbuf=4096) as (live, raw):
        conn = _connection_of(raw)
        conn._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # back up soon
        payload = os.urandom(124)
        for i in range(3000):
            raw.send_frame(OP_PING, payload + bytes([i % 256]))
            if i % 100 == 99:
                time.sleep(0.12)  # about 800 a second: under the budget
        wait_until(lambda: raw.sock.recv(1, socket.MSG_PEEK), what="a pong")
        assert len(conn._control) <= 1, f"{len(conn._control)} control frames wait"
        assert getattr(conn, "_pong", None) is not None, "no pong backed up: nothing tested"
        # What was written is a run of pongs, each whole; the last answers the last ping.
        raw.sock.settimeout(2)
        last = None
        try:
            while True:
                _fin, op, data = raw.read_frame()
                assert op == OP_PONG
                last = data
        except TimeoutError:
            pass
        assert last is not None and last[-1] == 2999 % 256
        assert live.hub.members("r") == {"lazy": wsroom.Presence.ONLINE}


def _connection_of(raw: RawWS) -> Any:
    """The server's ``Connection`` for ``raw`` (white box: the control queue is not public)."""
    from wsroom.transport.connection import Connection

    port = raw.sock.getsockname()[1]
    for obj in gc.get_objects():
        live_socket = isinstance(obj, Connection) and obj._sock.fileno() != -1
        if live_socket and obj._sock.getpeername()[1] == port:
            return obj
    raise AssertionError("no server connection for this client")


def test_invalid_utf8_is_refused_as_it_arrives_not_when_the_frame_is_whole(
    make_live: Callable[..., Live],
) -> None:
    # A 60 KB text frame whose bad byte is in its first TCP chunk: 1007 comes before the rest
    # of the frame is sent (conformance cases 6.4.3-6.4.4).
    with _raw_member(make_live) as (_live, raw):
        payload = b'{"type":"x","payload":"' + b"a" * 1000 + b"\xff" + b"a" * 60000 + b'"}'
        raw.sock.sendall(_head(0x1, len(payload)) + payload[:2000])
        assert _next_close_code(raw) == 1007


def test_invalid_utf8_inside_a_fragment_is_refused_as_it_arrives(
    make_live: Callable[..., Live],
) -> None:
    # A multi-byte character cut between two fragments is fine; a bad byte in the second,
    # still incomplete, fragment is refused before the fragment ends.
    with _raw_member(make_live) as (_live, raw):
        raw.sock.sendall(_masked(0x1, b'{"type":"x","payload":"\xc3', fin=False))
        second = b"\xa9" + b"b" * 500 + b"\xc0\xaf" + b"b" * 3000
        raw.sock.sendall(_head(0x0, len(second)) + second[:1000])
        assert _next_close_code(raw) == 1007


def test_a_valid_fragmented_message_with_a_split_character_still_arrives(
    make_live: Callable[..., Live],
) -> None:
    with _raw_member(make_live, "alice") as (live, raw):
        _echo(live)
        text = '{"type":"x","payload":"h\u00e9llo \u20ac"}'.encode()
        cut = text.index(b"\xe2") + 1  # inside the euro sign
        raw.sock.sendall(_masked(0x1, text[:cut], fin=False) + _masked(0x0, text[cut:]))
        assert raw.read_json() == {"type": "x", "payload": "h\u00e9llo \u20ac"}
