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

    The deque exists only while frames wait (an empty one is 760 bytes, and most outboxes are
    empty for most of their connection's life: a free socket is written at once).
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
        self._frames: deque[F] | None = None

    def push(self, frame: F) -> bool:
        """Add a frame; False (and nothing added) when it would pass a bound."""
        frames = self._frames
        size = self._size_of(frame)
        if frames is None:
            self._frames = deque((frame,))
        elif len(frames) >= self.max_messages or self.size + size > self.max_bytes:
            return False
        else:
            frames.append(frame)
        self.size += size
        return True

    def pop(self) -> F | None:
        """The oldest frame, or None when empty."""
        frames = self._frames
        if frames is None:
            return None
        frame = frames.popleft()
        if not frames:
            self._frames = None
        self.size -= self._size_of(frame)
        return frame

    def take_all(self) -> list[F]:
        """Remove and return every frame not yet written, oldest first."""
        frames, self._frames = self._frames, None
        self.size = 0
        return list(frames) if frames is not None else []

    def __len__(self) -> int:
        return len(self._frames) if self._frames is not None else 0
