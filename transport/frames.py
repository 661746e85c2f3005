"""Inbound frames cut from the byte stream (sans-I/O), with the fast path for whole text frames."""

from __future__ import annotations

import codecs

__all__ = [
    "BAD_FRAME",
    "BAD_UTF8",
    "FAST",
    "MAX_FRAGMENTS",
    "PING",
    "PONG",
    "RAW",
    "TOO_BIG",
    "TOO_FRAGMENTED",
    "InboundFrames",
    "pong_frame",
    "unmask",
]

FAST = 0
"""An ``InboundFrames`` item: the unmasked payload of a whole, final text frame."""
RAW = 1
"""An ``InboundFrames`` item: one whole frame (or a refused frame's header) for wsproto."""
TOO_BIG = 2
"""An ``InboundFrames`` item: a data frame would take its message over the limit; it is skipped."""
PING = 3
"""An ``InboundFrames`` item: a well-formed ping; the payload is its (unmasked) application data."""
PONG = 4
"""An ``InboundFrames`` item: a well-formed pong (its payload is not kept)."""
BAD_UTF8 = 5
"""An ``InboundFrames`` item: a text message holds invalid UTF-8; nothing more comes out."""
TOO_FRAGMENTED = 6
"""An ``InboundFrames`` item: a message has more than ``MAX_FRAGMENTS`` frames; nothing more."""
BAD_FRAME = 7
"""An ``InboundFrames`` item: a frame other than a continuation inside a fragmented text
message, or one with extension bits or no mask (a protocol error, 1002); nothing more."""

MAX_FRAGMENTS = 1024
"""Frames one fragmented message may have. Sizes alone cannot bound empty continuation frames,
and no client splits a message this finely (browsers never fragment at all)."""


def unmask(payload: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask``, as whole integers (C speed)."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def pong_frame(payload: bytes) -> bytes:
    """A server's (unmasked) pong answering a ping with ``payload`` (at most 125 bytes)."""
    return bytes((0x8A, len(payload))) + payload


class InboundFrames:
    """Cuts the inbound byte stream at frame boundaries (sans-I/O).

    The common frame, a final, masked text frame with no extension bits outside a fragmented
    message, comes out as ``(FAST, payload)``: unmasked here, in one integer XOR, instead of
    wsproto's pure-Python unmasking and frame generators. A fragmented text message is
    assembled here too and comes out the same way once whole. Well-formed pings and pongs come
    out as ``(PING, data)`` and ``(PONG, b"")``, as cheaply: floods of fragments or control
    frames cost little each. Every other frame (binary, compressed, malformed, close) comes out
    whole as ``(RAW, bytes)`` for wsproto, which so never holds a partial frame and keeps its
    own state (closing, protocol errors).

    Limits are applied as bytes arrive, never once a frame is whole: a data frame that would
    take its message (fragments included) over ``max_payload`` gives ``(TOO_BIG, b"")`` from its
    header and its payload is skipped, never buffered; the ``MAX_FRAGMENTS + 1``-th frame of one
    message gives ``TOO_FRAGMENTED``; invalid UTF-8 in a text message gives ``BAD_UTF8`` as soon
    as the bad byte is in, even mid-frame (RFC 6455 §8.1: fail fast).

    ``push`` takes bytes, ``pull`` gives at most a given number of items, so a reader can bound
    the work it does between two yields whatever the frames are.
    """

    __slots__ = (
        "_buf",
        "_checked",
        "_decoder",
        "_failed",
        "_fragmented",
        "_fragments",
        "_message_size",
        "_parts",
        "_skip",
        "fast",
        "max_payload",
        "taken",
    )

    def __init__(self, max_payload: int, fast: bool = True) -> None:
        self.max_payload = max_payload
        # False with permessage-deflate: every data frame goes to wsproto, and payloads are
        # compressed, so their UTF-8 cannot be checked here (wsproto checks it once inflated).
        self.fast = fast
        self._buf = bytearray()
        self._skip = 0
        self._fragmented = False  # a data frame without FIN came: its continuations must follow
        self._parts: list[bytes] | None = None  # ... of a text message assembled here, so far
        self._message_size = 0  # payload bytes of the fragmented message so far
        self._fragments = 0  # its frames so far
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._checked = 0  # payload bytes of the incomplete frame at the end already checked
        self._failed = False
        #: Frames the last ``pull`` consumed (a fragment gives no item until its message ends).
        self.taken = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Take the next bytes from the socket; return every frame now complete, in order."""
        self.push(data)
        return self.pull(1 << 62)

    def push(self, data: bytes) -> None:
        """Take the next bytes from the socket."""
        self._buf += data

    def pull(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` items, in order; fewer (maybe none) when more bytes are needed."""
        buf = self._buf
        out: list[tuple[int, bytes]] = []
        self.taken = 0
        if self._failed:
            return out
        asked = limit
        pos = 0
        end_of_data = len(buf)
        while limit:
            if self._skip:
                step = min(self._skip, end_of_data - pos)
                pos += step
                self._skip -= step
                if self._skip:
                    break
            avail = end_of_data - pos
            if avail < 2:
                break
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if avail < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if avail < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            if avail < head:
                break
            opcode = b0 & 0x0F
            end = pos + head + n
            if (
                b0 == 0x81
                and masked
                and end <= end_of_data
                and n <= self.max_payload
                and self.fast
                and not self._fragmented
            ):
                # The common frame: checked first, so it pays for nothing below.
                out.append((FAST, unmask(buf[end - n : end], bytes(buf[end - n - 4 : end - n]))))
                pos = end
                self._checked = 0
                limit -= 1
                continue
            if opcode >= 0x8:
                if n > 125:
                    # wsproto refuses a long control frame from its header alone: never buffer it.
                    out.append((RAW, bytes(buf[pos : pos + head])))
                    pos += head
                    self._skip = n
                    limit -= 1
                    continue
                if end > end_of_data:
                    break
                if masked and b0 in (0x89, 0x8A):  # FIN, no extension bits: well formed
                    if b0 == 0x89:
                        out.append(
                            (PING, unmask(buf[end - n : end], bytes(buf[pos + 2 : pos + 6])))
                        )
                    else:
                        out.append((PONG, b""))
                else:
                    out.append((RAW, bytes(buf[pos:end])))
                pos = end
                limit -= 1
                continue
            # A data frame other than the common one.
            parts = self._parts
            continues = opcode == 0 and self._fragmented
            if continues and self._fragments >= MAX_FRAGMENTS:
                out.append((TOO_FRAGMENTED, b""))
                self._failed = True
                break
            if n + (self._message_size if continues else 0) > self.max_payload:
                out.append((TOO_BIG, b""))
                pos += head
                self._skip = n
                limit -= 1
                continue
            plain = masked and not b0 & 0x70  # a frame this module may unmask and read itself
            if parts is not None and not (opcode == 0 and plain):
                # wsproto does not know of a message assembled here: refuse for it.
                out.append((BAD_FRAME, b""))
                self._failed = True
                break
            if parts is not None or (opcode == 1 and plain and self.fast and not self._fragmented):
                # A fragmented text message is assembled here, its UTF-8 checked as it
                # arrives: no wsproto generators per fragment, and a bad byte fails at once.
                start = pos + head
                if self._checked == 0 and parts is None:
                    self._decoder.reset()
                if end > end_of_data:
                    if end_of_data - start > self._checked and not self._check(
                        buf, start, end_of_data
                    ):
                        out.append((BAD_UTF8, b""))
                        self._failed = True
                    break
                data = unmask(buf[start:end], bytes(buf[start - 4 : start]))
                fin = bool(b0 & 0x80)
                try:
                    self._decoder.decode(data[self._checked :], fin)
                except UnicodeDecodeError:
                    out.append((BAD_UTF8, b""))
                    self._failed = True
                    break
                self._checked = 0
                pos = end
                limit -= 1
                if parts is None:
                    parts = []
                    self._message_size = 0
                    self._fragments = 0
                parts.append(data)
                self._message_size += n
                self._fragments += 1
                self._fragmented = not fin
                if fin:
                    out.append((FAST, parts[0] if len(parts) == 1 else b"".join(parts)))
                    self._parts = None
                else:
                    self._parts = parts
                continue
            if end > end_of_data:
                break
            # wsproto's: binary messages, compressed ones, and frames it must refuse.
            if opcode != 0:
                self._message_size = 0
                self._fragments = 0
            self._message_size += n
            self._fragments += 1
            self._fragmented = not b0 & 0x80
            out.append((RAW, bytes(buf[pos:end])))
            pos = end
            limit -= 1
        self.taken = asked - limit
        if pos:
            del buf[:pos]
        return out

    def _check(self, buf: bytearray, start: int, upto: int) -> bool:
        # Unmask and decode the payload bytes [start + checked, upto) of the incomplete frame
        # whose mask sits just before ``start``; False on invalid UTF-8.
        done = self._checked
        mask = bytes(buf[start - 4 : start])
        turn = done & 3  # the mask key continues where the checked part ended
        mask = mask[turn:] + mask[:turn]
        try:
            self._decoder.decode(unmask(buf[start + done : upto], mask), False)
        except UnicodeDecodeError:
            return False
        self._checked = upto - start
        return True
