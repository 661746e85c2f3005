"""Nothing a client sends can crash an actor, hang the hub or grow memory without bound."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys

import gevent.event
import websocket
from conftest import Live, read_close, recv_json, send_json, wait_until

import wsroom


def _raw_upgrade(live: Live, room: str, user: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/{room}?user={user} HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101")
    return sock


def _masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _close_code(sock: socket.socket) -> int | None:
    """Read until the server's close frame (its code) or EOF (None)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        while len(data) >= 2:
            opcode, n = data[0] & 0x0F, data[1] & 0x7F
            start = 2 + (2 if n == 126 else 8 if n == 127 else 0)
            if n == 126 and len(data) >= 4:
                n = int.from_bytes(data[2:4], "big")
            elif n == 127 and len(data) >= 10:
                n = int.from_bytes(data[2:10], "big")
            if len(data) < start + n:
                break
            if opcode == 0x8:
                return int.from_bytes(data[start : start + 2], "big")
            data = data[start + n :]


def _hub_still_works(live: Live) -> None:
    ws = live.join("check", f"ok-{len(live.clients)}")
    live.hub.send_to("check", f"ok-{len(live.clients) - 1}", wsroom.Envelope("alive"))
    assert recv_json(ws)["type"] == "alive"


def test_invalid_utf8_in_a_text_frame_closes_with_1007(make_live) -> None:
    live: Live = make_live()
    sock = _raw_upgrade(live, "r", "mallory")
    wait_until(lambda: "r" in live.hub.rooms())
    sock.sendall(_masked(0x1, b'{"type":"x","payload":"\xff\xfe"}'))
    assert _close_code(sock) == 1007
    _hub_still_works(live)


def test_protocol_garbage_closes_the_connection_and_nothing_else(make_live) -> None:
    live: Live = make_live(grace=0.0)
    sock = _raw_upgrade(live, "r", "mallory")
    wait_until(lambda: "r" in live.hub.rooms())
    sock.sendall(bytes([0x8F, 0x80]) + os.urandom(64))  # reserved opcode, unmasked length
    assert _close_code(sock) in (1002, None)
    wait_until(lambda: live.hooks.leaves_of("mallory"))
    _hub_still_works(live)


def test_a_continuation_without_a_start_and_an_oversized_ping_are_refused(make_live) -> None:
    live: Live = make_live()
    for frame in (_masked(0x0, b"orphan"), _masked(0x9, b"p" * 200)):
        sock = _raw_upgrade(live, "r", "mallory")
        sock.sendall(frame)
        assert _close_code(sock) in (1002, None)
        sock.close()
    _hub_still_works(live)


def test_a_flooding_sender_meets_backpressure_instead_of_growing_memory(make_live) -> None:
    live: Live = make_live()
    gate = gevent.event.Event()
    live.hooks.message_fn = lambda room, p, env: gate.wait(30)
    ws = live.join("r", "flood")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    ws.settimeout(1.0)
    chunk = '{"type":"x","payload":"' + "a" * 60_000 + '"}'
    sent = 0
    try:
        while sent < 3000:  # 180 MB if nothing pushed back
            ws.send(chunk)
            sent += 1
    except (websocket.WebSocketTimeoutException, TimeoutError):
        pass
    gate.set()
    # The hub held at most its inbound window (64) plus what sits in socket buffers.
    assert sent < 400, f"{sent} frames of 60 KB were accepted while on_message was stuck"


def test_a_hook_that_raises_base_exceptions_harms_no_actor(make_live) -> None:
    live: Live = make_live()

    def nasty(room: str, p: str, env: wsroom.Envelope) -> None:
        raise gevent.Timeout(0.001)

    live.hooks.message_fn = nasty
    bad = live.join("r", "bad")
    good = live.join("r", "good")
    send_json(bad, "x")
    assert read_close(bad)[0] == 1011
    live.hub.send_to("r", "good", wsroom.Envelope("still"))
    assert recv_json(good)["type"] == "still"
    _hub_still_works(live)


def test_import_wsroom_pulls_in_nothing_heavier_than_the_stack(tmp_path) -> None:
    code = (
        "import sys, wsroom, wsroom.transport;"
        "heavy = {'flask', 'werkzeug', 'websocket', 'websockets', 'redis', 'playwright'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    # Run outside the checkout, so the installed package is imported, not the source folder.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]"
