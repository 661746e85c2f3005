"""A connection's outbound buffer, bounded by messages and by size (sans-I/O)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Outbox"]

F = TypeVar("F")


def _utf8_size(frame: Any) -> int:
    # str.isascii() is O(1) in CPython; only non-ASCII text pays for an encode.
    text: str = frame
    return len(text) if text.isascii() else len(text.encode())


class Outbox(Generic[F]):
    """Frames waiting for the socket, oldest first.

    ``push`` refuses a frame that would pass either bound, so a stalled reader costs at most
    the bounds. An empty outbox always takes one frame, so one envelope larger than
    ``max_bytes`` is still delivered whole. ``size_of`` gives a frame's size in bytes (by
    default, a ``str``'s length in UTF-8).
    """

    __slots__ = ("_frames", "_size_of", "max_bytes", "max_messages", "size")

    def __init__(
        self, max_messages: int, max_bytes: int, size_of: Callable[[F], int] = _utf8_size
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("outbox bounds must be >= 1")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.size = 0
        self._size_of = size_of
        self._frames: deque[F] = deque()

    def push(self, frame: F) -> bool:
        """Add a frame; False (and nothing added) when it would pass a bound."""
        frames = self._frames
        size = self._size_of(frame)
        if frames and (len(frames) >= self.max_messages or self.size + size > self.max_bytes):
            return False
        frames.append(frame)
        self.size += size
        return True

    def pop(self) -> F | None:
        """The oldest frame, or None when empty."""
        if not self._frames:
            return None
        frame = self._frames.popleft()
        self.size -= self._size_of(frame)
        return frame

    def take_all(self) -> list[F]:
        """Remove and return every frame not yet written, oldest first."""
        frames = list(self._frames)
        self._frames.clear()
        self.size = 0
        return frames

    def __len__(self) -> int:
        return len(self._frames)
