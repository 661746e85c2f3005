"""A cheap WebSocket client for thousands of sockets: asyncio streams and hand-made frames.

One coroutine per client, no thread and no library parser, so the figures measure the server.
Only what the soak scenarios need: the upgrade, reading the greeting, a normal close, and
waiting for the server's close frame (its code, or 1006 when the socket ends without one).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct

__all__ = ["ABNORMAL", "WsClient", "open_many"]

ABNORMAL = 1006
"""What a client reports when the socket ended without a close frame (RFC 6455 §7.1.5)."""


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    return head + mask + body


class WsClient:
    """One client connection: its stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, room: str, user: str) -> WsClient:
        """Upgrade and read the hub's first frame (the soak server's greeting)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws/{room}?user={user} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        client = cls(reader, writer)
        await client.read_frame()
        return client

    async def read_frame(self) -> tuple[int, bytes]:
        """One whole frame from the server (never masked): (opcode, payload)."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(size)

    async def close_code(self) -> int:
        """Read until the server's close frame and answer it: its code, or 1006 without one."""
        try:
            while True:
                opcode, payload = await self.read_frame()
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.writer.write(_masked(0x8, payload[:2]))
                    await self.writer.drain()
                    return int(code)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return ABNORMAL
        finally:
            self.writer.close()

    def send_close(self, code: int = 1000) -> None:
        """Put a normal close frame on the wire (buffered; ``close_code`` then waits)."""
        self.writer.write(_masked(0x8, struct.pack("!H", code)))

    async def close(self, code: int = 1000) -> int:
        """A normal close from the client: send the close frame, then wait for the server's."""
        try:
            self.send_close(code)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return ABNORMAL
        return await self.close_code()


async def open_many(port: int, room: str, count: int, prefix: str = "u") -> list[WsClient]:
    """Open ``count`` clients into ``room``, at most 200 handshakes at a time."""
    gate = asyncio.Semaphore(200)

    async def one(i: int) -> WsClient:
        async with gate:
            return await WsClient.connect(port, room, f"{prefix}{i}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))
