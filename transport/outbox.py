"""A connection's outbound buffer, bounded by messages and by size (sans-I/O)."""

from __future__ import annotations

from collections import deque

__all__ = ["Outbox"]


class Outbox:
    """Encoded frames waiting for the socket, oldest first.

    ``push`` refuses a frame that would pass either bound, so a stalled reader costs at most
    the bounds. An empty outbox always takes one frame, so one envelope larger than
    ``max_bytes`` is still delivered whole. Sizes are counted in characters of the encoded
    text in UTF-8 (free for ASCII text, whose length is its size).
    """

    __slots__ = ("_frames", "max_bytes", "max_messages", "size")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("outbox bounds must be >= 1")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.size = 0
        self._frames: deque[str] = deque()

    def push(self, frame: str) -> bool:
        """Add a frame; False (and nothing added) when it would pass a bound."""
        frames = self._frames
        size = _utf8_size(frame)
        if frames and (len(frames) >= self.max_messages or self.size + size > self.max_bytes):
            return False
        frames.append(frame)
        self.size += size
        return True

    def pop(self) -> str | None:
        """The oldest frame, or None when empty."""
        if not self._frames:
            return None
        frame = self._frames.popleft()
        self.size -= _utf8_size(frame)
        return frame

    def take_all(self) -> list[str]:
        """Remove and return every frame not yet written, oldest first."""
        frames = list(self._frames)
        self._frames.clear()
        self.size = 0
        return frames

    def __len__(self) -> int:
        return len(self._frames)


def _utf8_size(frame: str) -> int:
    # str.isascii() is O(1) in CPython; only non-ASCII text pays for an encode.
    return len(frame) if frame.isascii() else len(frame.encode())
