"""The outbound frame: one encoded message, framed once, shared by the actors and the transport.

A wire value, not a transport object: the facade and the hooks build it in the caller's
greenlet, the room actor hands the same instance to every member, and each connection writes
its bytes. It lives here so neither layer reaches into the other for it.
"""

from __future__ import annotations

import struct

from .envelope import Envelope, encode

__all__ = ["OutFrame", "frame_of"]

_TEXT_FIN = 0x81  # FIN + opcode 1 (text)


class OutFrame:
    """One outbound text message, framed once for every receiver.

    Server frames are not masked, so the bytes of a frame are the same for every connection that
    negotiated no extension: a broadcast builds them once and each socket writes the same bytes.
    """

    __slots__ = ("size", "text", "wire")

    def __init__(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        if n < 126:
            header = bytes((_TEXT_FIN, n))
        elif n < 65536:
            header = struct.pack("!BBH", _TEXT_FIN, 126, n)
        else:
            header = struct.pack("!BBQ", _TEXT_FIN, 127, n)
        self.text = text
        self.size = n
        self.wire = header + data

    @staticmethod
    def size_of(frame: OutFrame) -> int:
        """The payload size in bytes (what ``outbox_max_bytes`` counts)."""
        return frame.size

    def __repr__(self) -> str:
        return f"OutFrame({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def frame_of(envelope: Envelope) -> OutFrame:
    """Encode a user's envelope (``BadEnvelope`` if it cannot be) and frame it once."""
    return OutFrame(encode(envelope))
