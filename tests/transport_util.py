"""Helpers for the transport tests: raw HTTP, a raw-socket WebSocket client, process memory.

The raw client speaks just enough RFC 6455 to do what library clients will not: stop reading,
never answer a ping, read a 4 MiB frame in small slow chunks, with a tiny receive buffer.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import struct
import time
from typing import Any

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

KEY = base64.b64encode(os.urandom(16)).decode()


def upgrade_headers(port: int, **extra: str) -> dict[str, str]:
    """The headers of a valid upgrade request; ``extra`` overrides (a value of "" drops one)."""
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in extra.items():
        name = name.replace("_", "-")
        if value == "":
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


class HTTPAnswer:
    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"HTTPAnswer({self.status}, {self.headers!r}, {self.body!r})"


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> HTTPAnswer:
    """One GET over a fresh connection; for a 101, the body is empty and the socket closed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for name, value in (headers or {"Host": f"127.0.0.1:{port}"}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        body = "" if resp.status == 101 else resp.read().decode("utf-8", "replace")
        return HTTPAnswer(resp.status, hdrs, body)
    finally:
        conn.close()


class RawWS:
    """A minimal WebSocket client on a plain socket, under the test's full control."""

    def __init__(
        self,
        port: int,
        path: str,
        rcvbuf: int | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect(), so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.pause = 0.0  # seconds to wait after each recv: a slow reader
        self.auto_pong = False  # answer each ping as it is read, like a browser
        self.heartbeat = False  # send an unsolicited pong after each recv (RFC 6455 5.5.3)
        lines = [f"GET {path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in (headers or upgrade_headers(port)).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {self.buf!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n", 1)[0].decode()
        self.status = int(self.status_line.split()[1])

    # -- reading --------------------------------------------------------------------------

    def _need(self, n: int, chunk: int = 65536) -> bytes:
        while len(self.buf) < n:
            data = self.sock.recv(chunk)
            if not data:
                raise ConnectionError("connection closed by the server")
            self.buf += data
            if self.heartbeat:
                self.send_frame(OP_PONG, b"")
            if self.pause:
                time.sleep(self.pause)  # cooperative in the (monkey-patched) test process
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self, chunk: int = 65536) -> tuple[bool, int, bytes]:
        """The next frame as (fin, opcode, payload)."""
        b0, b1 = self._need(2, chunk)
        assert not b1 & 0x80, "a server frame must not be masked"
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._need(2, chunk))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._need(8, chunk))
        payload = self._need(length, chunk)
        if self.auto_pong and b0 & 0x0F == OP_PING:
            self.send_frame(OP_PONG, payload)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def read_message(self, chunk: int = 65536) -> tuple[int, bytes]:
        """The next data message (fragments joined) or close frame, skipping pings."""
        parts: list[bytes] = []
        first_op: int | None = None
        while True:
            fin, op, data = self.read_frame(chunk)
            if op in (OP_PING, OP_PONG):
                continue
            if op == OP_CLOSE:
                return op, data
            if first_op is None:
                first_op = op
            parts.append(data)
            if fin:
                return first_op, b"".join(parts)

    def read_json(self, chunk: int = 65536) -> dict[str, Any]:
        op, data = self.read_message(chunk)
        assert op == OP_TEXT, f"expected a text frame, got opcode {op}: {data[:100]!r}"
        obj: dict[str, Any] = json.loads(data)
        return obj

    # -- writing --------------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
        self.sock.sendall(head + mask + masked)

    def send_text(self, text: str) -> None:
        self.send_frame(OP_TEXT, text.encode())

    def send_json(self, type_: str, payload: Any = None) -> None:
        self.send_text(json.dumps({"type": type_, "payload": payload}))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def close_code(data: bytes) -> tuple[int, str]:
    """Code and reason of a close frame's payload."""
    if len(data) < 2:
        return 1005, ""
    return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", "replace")


def vm_rss() -> int:
    """This process's resident set size in bytes (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
