"""The end of a connection on the wire: the closing handshake, a peer that never answers it,
the HTTP connection after an upgrade, and control frames between (never inside) data frames."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import websocket
from conftest import Live, read_close, wait_until
from transport_util import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawWS, close_code

import wsroom


def _eof_within(raw: RawWS, timeout: float) -> float:
    """Read until the server closes the TCP connection; return how long it took."""
    raw.sock.settimeout(timeout)
    started = time.monotonic()
    while True:
        try:
            data = raw.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        assert b"HTTP/" not in data, f"an HTTP answer after the upgrade: {data[:200]!r}"
        if not data:
            return time.monotonic() - started


def test_server_close_then_client_reply_ends_the_connection_promptly(
    make_live: Callable[..., Live],
) -> None:
    live = make_live(grace=0.0, close_timeout=10.0)
    ws = live.join("r", "alice")
    live.hub.close_room("r")
    started = time.monotonic()
    assert read_close(ws) == (4000, "room closed")  # read_close answers the close
    ws.settimeout(5)
    try:
        leftover = ws.sock.recv(1)  # the server ends TCP once the handshake is done
    except ConnectionResetError:
        leftover = b""
    assert leftover == b""
    assert time.monotonic() - started < 2.0, "the server waited for its close_timeout"


def test_peer_that_never_answers_the_close_is_cut_after_close_timeout(
    make_live: Callable[..., Live],
) -> None:
    live = make_live(grace=0.0, close_timeout=0.5)
    raw = RawWS(live.port, "/ws/r?user=alice")
    try:
        wait_until(lambda: live.hooks.joins, what="the join")
        live.hub.close_room("r")
        _fin, op, data = raw.read_frame()
        assert op == OP_CLOSE and close_code(data) == (4000, "room closed")
        # No reply from us: the server shuts the socket on its own, after about close_timeout.
        took = _eof_within(raw, timeout=5)
        assert took < 3.0
        wait_until(lambda: live.hooks.leaves_of("alice"), what="on_leave")
        assert isinstance(live.hooks.leaves_of("alice")[0], wsroom.RoomClosed)
    finally:
        raw.close()


def test_no_http_is_spoken_on_a_socket_after_its_upgrade(make_live: Callable[..., Live]) -> None:
    # gevent would read what follows the WebSocket as a new HTTP request unless the handler
    # closes the connection after an upgrade.
    live = make_live(grace=0.0)
    raw = RawWS(live.port, "/ws/r?user=alice")
    try:
        wait_until(lambda: live.hooks.joins, what="the join")
        raw.send_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")
        _fin, op, data = raw.read_frame()
        assert op == OP_CLOSE and close_code(data)[0] == 1000
        try:
            raw.sock.sendall(b"GET /ws/r?user=bob HTTP/1.1\r\nHost: x\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # already closed: what the test wants
        _eof_within(raw, timeout=5)
        wait_until(lambda: live.hooks.leaves_of("alice"), what="on_leave")
        assert [jc.participant for jc in live.hooks.joins] == ["alice"]
    finally:
        raw.close()


def test_pong_is_never_written_inside_a_large_frame(make_live: Callable[..., Live]) -> None:
    live = make_live(grace=0.0)
    raw = RawWS(live.port, "/ws/r?user=alice", rcvbuf=8192)
    try:
        wait_until(lambda: "alice" in live.hub.members("r"), what="the join")
        blob = "".join(f"{i:07d}," for i in range(256 * 1024))  # 2 MiB
        live.hub.send_to("r", "alice", wsroom.Envelope("big", blob))
        # Read the first bytes of the big frame, then ping while the server is mid-frame.
        raw.buf += raw.sock.recv(4096)
        for i in range(5):
            raw.send_frame(OP_PING, f"p{i}".encode())
        _fin, op, data = raw.read_frame()
        assert op == OP_TEXT
        assert json.loads(data) == {"type": "big", "payload": blob}
        # Pings read together get one pong, for the latest (RFC 6455 5.5.3): pongs come in
        # order, whole, and the last ping is answered.
        pongs: list[bytes] = []
        while not pongs or pongs[-1] != b"p4":
            _fin, op, payload = raw.read_frame()
            assert op == OP_PONG
            pongs.append(payload)
        assert pongs == sorted(pongs) and set(pongs) <= {f"p{i}".encode() for i in range(5)}
    finally:
        raw.close()


def test_hub_stop_closes_a_connection_with_1001_on_the_wire(
    make_live: Callable[..., Live],
) -> None:
    live = make_live(grace=30.0, queued=4)
    ws = live.join("r", "alice")
    live.hub.stop()
    assert read_close(ws)[0] == 1001
    assert live.hooks.leaves_of("alice") and isinstance(
        live.hooks.leaves_of("alice")[0], wsroom.HubStopped
    )
    # And the server answers new upgrades with a refusal, not a dead socket.
    try:
        websocket.create_connection(live.url("r", "bob"), timeout=5)
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code == 503
    else:
        raise AssertionError("a stopped hub accepted a connection")
