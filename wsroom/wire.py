"""The outbound frame: one encoded message, framed once, shared by the actors and the transport.

A wire value, not a transport object: the facade and the hooks build it in the caller's
greenlet, the room actor hands the same instance to every member, and each connection writes
its bytes. It lives here so neither layer reaches into the other for it.
"""

from __future__ import annotations

import struct

from .envelope import Envelope, encode

__all__ = [
    "PLAIN_PROTOCOL",
    "RESUME_PROTOCOL",
    "NumberedFrame",
    "OutFrame",
    "frame_of",
    "numbered",
    "numbered_wire",
]

_TEXT_FIN = 0x81  # FIN + opcode 1 (text)

RESUME_PROTOCOL = "wsroom.resume.1"
"""The subprotocol a client offers to opt in to resume without loss (contract §7)."""
PLAIN_PROTOCOL = "wsroom.plain.1"
"""The plain protocol by name, for a client offering resume to offer as well: a hub that cannot
resume chooses it, since browsers (and websocket-client) fail a handshake that chose none of
the subprotocols offered."""


class OutFrame:
    """One outbound text message, framed once for every receiver.

    Server frames are not masked, so the bytes of a frame are the same for every connection that
    negotiated no extension: a broadcast builds them once and each socket writes the same bytes.
    """

    __slots__ = ("_heads", "_last", "_last_seq", "size", "text", "wire")

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
        # For numbered_wire: this frame's header and bytes without the final brace, by the
        # length of the ``,"seq":n}`` to follow (made on first use, shared by every member),
        # and the last stamped bytes it made, with their seq.
        self._heads: dict[int, bytes] | None = None
        self._last_seq = 0
        self._last = b""

    @staticmethod
    def size_of(frame: OutFrame) -> int:
        """The payload size in bytes (what ``outbox_max_bytes`` counts)."""
        return frame.size

    def __repr__(self) -> str:
        return f"OutFrame({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def frame_of(envelope: Envelope) -> OutFrame:
    """Encode a user's envelope (``BadEnvelope`` if it cannot be) and frame it once."""
    return OutFrame(encode(envelope))


class NumberedFrame(OutFrame):
    """An ``OutFrame`` stamped with its ``seq`` for one resume connection (contract §7).

    Built by ``numbered`` from the shared frame without encoding JSON again: its bytes are the
    shared ones with ``,"seq":n`` spliced in before the final ``}``. Its ``text`` is made only
    when asked for (a connection with permessage-deflate, a repr): the bytes are what goes out.
    """

    __slots__ = ("seq",)
    seq: int

    def __getattr__(self, name: str) -> str:
        # Only for the text slot, left unset by numbered(): made from the bytes once.
        if name != "text":
            raise AttributeError(name)
        text = self.wire[len(self.wire) - self.size :].decode()
        self.text = text
        return text


_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack
_SHORT_HEADERS = tuple(bytes((_TEXT_FIN, n)) for n in range(126))


def _head(frame: OutFrame, suffix: int) -> bytes:
    # The frame's bytes up to its final brace, under the header of a payload ``suffix - 1``
    # bytes longer; kept on the frame, so a broadcast builds it once for all its members.
    heads = frame._heads
    if heads is None:
        heads = frame._heads = {}
    size = frame.size + suffix - 1
    wire = frame.wire
    body = wire[len(wire) - frame.size : -1]
    if size < 126:
        head = _SHORT_HEADERS[size] + body
    elif size < 65536:
        head = _PACK_16(_TEXT_FIN, 126, size) + body
    else:
        head = _PACK_64(_TEXT_FIN, 127, size) + body
    heads[suffix] = head
    return head


def numbered_wire(frame: OutFrame, seq: int) -> bytes:
    """The bytes of ``frame`` with ``"seq": seq`` as its last key, for a resume connection's
    socket (contract §7): the shared head (built once per frame and suffix length) and the
    member's own ``,"seq":n}``, one concatenation and no JSON encoding.

    The frame keeps the last bytes it made: members that joined together count alike, and the
    fan-out meets them one after another (the room's live members are in join order), so a
    broadcast to them makes one set of bytes, as for plain members.

    Every ``OutFrame`` holds one JSON object, so its last character is the closing brace.
    """
    if seq == frame._last_seq:
        return frame._last
    suffix = b',"seq":%d}' % seq
    heads = frame._heads
    head = heads.get(len(suffix)) if heads is not None else None
    if head is None:
        head = _head(frame, len(suffix))
    data = frame._last = head + suffix
    frame._last_seq = seq
    return data


def numbered(frame: OutFrame, seq: int) -> NumberedFrame:
    """``frame`` stamped with ``seq`` as an ``OutFrame`` of its own (``numbered_wire``'s bytes),
    for what must wait in an outbox or be replayed; a frame written at once needs only the bytes.
    """
    data = numbered_wire(frame, seq)
    out = NumberedFrame.__new__(NumberedFrame)
    out.size = frame.size + 7 + len(b"%d" % seq)  # the payload plus ,"seq":n without a brace
    out.wire = data
    out.seq = seq
    out._heads = None
    out._last_seq = 0
    out._last = b""
    return out
