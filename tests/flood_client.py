"""A hostile client in a process of its own: floods one kind of frame at a hub for a while.

Run as ``python flood_client.py PORT KIND SECONDS [PATH]``. It connects, upgrades, and writes
``KIND`` frames as fast as the socket takes them, never reading; when the server ends the
connection it connects again, until ``SECONDS`` have passed. It prints one JSON line: how many
connections it made and how many bytes it wrote. Standard library only, so it costs the hub's
process nothing and floods at full speed from a core of its own.

Kinds: ``ping``, ``pong`` (empty control frames), ``empty_cont`` and ``cont10`` (a text message
begun, then continuation frames of 0 or 10 bytes that never end it), ``fragments`` (valid
envelopes, each cut into 1-byte fragments), ``oversize`` (a text frame announcing 2**40 bytes,
then endless payload), ``after_close`` (an oversize frame header, so the server closes, then
whole tiny text frames it must skip).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import time

_MASK = b"\x00\x00\x00\x00"  # a zero key leaves the payload as it is: cheap to build, still valid


def _frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + _MASK + payload


def _oversize_header() -> bytes:
    return bytes([0x81, 0x80 | 127]) + (2**40).to_bytes(8, "big") + _MASK


def plan(kind: str) -> tuple[bytes, bytes]:
    """What to send once after the upgrade, and the chunk to repeat (about 64 KB)."""
    if kind == "ping":
        return b"", _frame(0x9) * 10_000
    if kind == "pong":
        return b"", _frame(0xA) * 10_000
    if kind == "empty_cont":
        return _frame(0x1, b'{"type":', fin=False), _frame(0x0, fin=False) * 10_000
    if kind == "cont10":
        return _frame(0x1, b'{"type":"', fin=False), _frame(0x0, b"x" * 10, fin=False) * 4_000
    if kind == "fragments":
        text = b'{"type":"noop"}'
        one = _frame(0x1, text[:1], fin=False)
        one += b"".join(_frame(0x0, text[i : i + 1], fin=False) for i in range(1, len(text) - 1))
        one += _frame(0x0, text[-1:])
        return b"", one * (65536 // len(one))
    if kind == "oversize":
        return _oversize_header(), b"y" * 65536
    if kind == "after_close":
        return _oversize_header()[:2] + (70000).to_bytes(8, "big") + _MASK + b"z" * 70000, (
            _frame(0x1, b'{"type":"noop"}') * 3000
        )
    raise SystemExit(f"unknown kind {kind!r}")


def upgrade(port: int, path: str) -> socket.socket:
    """A connected, upgraded socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(answer.split(b"\r\n", 1)[0].decode())
    return sock


def flood(port: int, kind: str, seconds: float, path: str) -> dict[str, int]:
    """Flood until ``seconds`` have passed; the figures of the run."""
    first, chunk = plan(kind)
    deadline = time.monotonic() + seconds
    connections = written = 0
    while time.monotonic() < deadline:
        try:
            sock = upgrade(port, f"{path}{'&' if '?' in path else '?'}user=flood{connections}")
        except OSError:
            time.sleep(0.05)
            continue
        connections += 1
        sock.settimeout(0.5)
        view, pos = memoryview(chunk), 0
        try:
            if first:
                sock.sendall(first)
            while time.monotonic() < deadline:
                try:
                    sent = sock.send(view[pos:])
                except TimeoutError:
                    continue  # the server is not reading now; try again
                written += sent
                pos = (pos + sent) % len(chunk)  # never cut a frame: go on where the write ended
        except OSError:
            pass  # the server ended this connection: connect again
        finally:
            sock.close()
    return {"connections": connections, "written": written}


if __name__ == "__main__":
    port_arg, kind_arg, seconds_arg = sys.argv[1:4]
    path_arg = sys.argv[4] if len(sys.argv) > 4 else "/ws/flood"
    figures = flood(int(port_arg), kind_arg, float(seconds_arg), path_arg)
    sys.stdout.write(json.dumps(figures) + "\n")
