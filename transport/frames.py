"""Inbound frames cut from the byte stream (sans-I/O), with the fast path for whole text frames."""

from __future__ import annotations

__all__ = ["FAST", "RAW", "TOO_BIG", "InboundFrames", "unmask"]

FAST = 0
"""An ``InboundFrames`` item: the unmasked payload of a whole, final text frame."""
RAW = 1
"""An ``InboundFrames`` item: one whole frame (or a refused frame's header) for wsproto."""
TOO_BIG = 2
"""An ``InboundFrames`` item: a data frame announced a payload over the limit; it is skipped."""


def unmask(payload: bytes | bytearray, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask``, as whole integers (C speed)."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class InboundFrames:
    """Cuts the inbound byte stream at frame boundaries (sans-I/O).

    The common frame, a final, masked text frame with no extension bits outside a fragmented
    message, comes out as ``(FAST, payload)``: unmasked here, in one integer XOR, instead of
    wsproto's pure-Python unmasking and frame generators. Every other frame comes out whole as
    ``(RAW, bytes)`` for wsproto, which so never holds a partial frame and keeps its own state
    (fragments, control frames, closing, protocol errors). A data frame announcing more than
    ``max_payload`` bytes gives ``(TOO_BIG, b"")`` and its payload is skipped, never buffered.
    """

    __slots__ = ("_buf", "_fragmented", "_skip", "fast", "max_payload")

    def __init__(self, max_payload: int, fast: bool = True) -> None:
        self.max_payload = max_payload
        self.fast = fast  # False with permessage-deflate: every frame goes to wsproto
        self._buf = bytearray()
        self._skip = 0
        self._fragmented = False  # a data frame without FIN went to wsproto

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Take the next bytes from the socket; return the frames now complete, in order."""
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end_of_data = len(buf)
        while True:
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
            if (n > 125 and opcode >= 0x8) or (n > self.max_payload and opcode < 0x8):
                # Never buffer an oversized frame: wsproto refuses a long control frame from its
                # header alone; a long data frame is the reader's 1009.
                if opcode >= 0x8:
                    out.append((RAW, bytes(buf[pos : pos + head])))
                else:
                    out.append((TOO_BIG, b""))
                pos += head
                self._skip = n
                continue
            end = pos + head + n
            if end > end_of_data:
                break
            if b0 == 0x81 and masked and self.fast and not self._fragmented:
                out.append((FAST, unmask(buf[end - n : end], bytes(buf[end - n - 4 : end - n]))))
            else:
                if opcode < 0x8:
                    self._fragmented = not (b0 & 0x80)
                out.append((RAW, bytes(buf[pos:end])))
            pos = end
        if pos:
            del buf[:pos]
        return out
