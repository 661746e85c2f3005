"""The rules of resume without loss (contract §7), as plain synchronous classes.

A resume connection numbers every outbound envelope of its membership (``seq``, contiguous
from 1) and acknowledges them cumulatively; the hub keeps what it sent and was not acknowledged,
so a reconnect inside the grace period can ask for everything after the last ``seq`` it saw.
In the other direction the client numbers its envelopes (``cseq``) and the hub hands each to
``on_message`` once, across reconnects. Nothing here touches a socket or an actor; the room
actor will own one ``OutboundLog`` per member and the participant one ``InboundOrder``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

__all__ = ["InboundOrder", "OutboundLog", "Replay", "ResumeRefusal", "Verdict"]

F = TypeVar("F")


class ResumeRefusal(enum.Enum):
    """Why a resume cannot give back everything after the client's ``last_seq``."""

    OVERFLOW = "overflow"
    """Envelopes after ``last_seq`` were dropped: the log (or the offline queue) was full."""
    EXPIRED = "expired"
    """The membership ended (its grace period ran out) before the client came back."""
    UNKNOWN = "unknown"
    """The hub has no record of that sequence (a ``last_seq`` it never sent, or a new hub)."""


@attrs.frozen
class Replay(Generic[F]):
    """The answer to a resume: ``ok`` with the frames to send again in order, or a refusal with
    ``first_seq``, the oldest ``seq`` the hub still has (what the client gets next)."""

    ok: bool
    frames: tuple[tuple[int, F], ...] = ()
    reason: ResumeRefusal | None = None
    first_seq: int = 1


class OutboundLog(Generic[F]):
    """One membership's outbound sequence: numbers each frame and keeps the unacknowledged ones.

    Bounded by ``max_frames`` and ``max_bytes`` (``size_of`` gives a frame's bytes); ``append``
    refuses a frame past either bound, and the first ``seq`` so lost is remembered, so a later
    resume from before it is answered ``overflow`` instead of replaying a stream with a hole.
    """

    __slots__ = (
        "_entries",
        "_size",
        "_size_of",
        "acked",
        "lost_from",
        "max_bytes",
        "max_frames",
        "next_seq",
    )

    def __init__(self, max_frames: int, max_bytes: int, size_of: Callable[[F], int]) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._entries: deque[tuple[int, F]] = deque()
        self._size = 0
        self.next_seq = 1
        self.acked = 0  # the highest seq the client acknowledged
        self.lost_from: int | None = None  # the first seq dropped for want of room

    def append(self, frame: F) -> int | None:
        """Number ``frame`` and keep it until acknowledged; None (nothing kept, and the
        sequence now has a gap) when the log is full."""
        seq = self.next_seq
        self.next_seq += 1
        size = self._size_of(frame)
        if len(self._entries) >= self.max_frames or (
            self._entries and self._size + size > self.max_bytes
        ):
            if self.lost_from is None:
                self.lost_from = seq
            return None
        self._entries.append((seq, frame))
        self._size += size
        return seq

    def ack(self, seq: int) -> bool:
        """The client has everything up to ``seq``. False for a ``seq`` never sent (a client's
        bug: the caller decides what to do); a stale ack changes nothing."""
        if seq >= self.next_seq or seq < 0:
            return False
        if seq <= self.acked:
            return True
        self.acked = seq
        entries = self._entries
        while entries and entries[0][0] <= seq:
            _, frame = entries.popleft()
            self._size -= self._size_of(frame)
        return True

    def resume(self, last_seq: int) -> Replay[F]:
        """A reconnect says it saw everything up to ``last_seq``: what to send again, in order."""
        first = self._entries[0][0] if self._entries else self.next_seq
        if last_seq < 0 or last_seq >= self.next_seq:
            return Replay(False, reason=ResumeRefusal.UNKNOWN, first_seq=first)
        self.ack(max(last_seq, self.acked))
        if self.lost_from is not None and self.lost_from > last_seq:
            return Replay(False, reason=ResumeRefusal.OVERFLOW, first_seq=first)
        if last_seq < self.acked:
            # It acknowledged more than it now says it has: what it lost was let go already.
            return Replay(False, reason=ResumeRefusal.OVERFLOW, first_seq=first)
        return Replay(True, frames=tuple(self._entries), first_seq=first)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """The bytes of the frames kept."""
        return self._size


class Verdict(enum.Enum):
    """What to do with one numbered client envelope."""

    HANDLE = "handle"
    DUPLICATE = "duplicate"  # handed to on_message before a reconnect: drop it, ack again
    GAP = "gap"  # a cseq past the next one expected: the client broke the protocol


class InboundOrder:
    """One membership's inbound sequence: each ``cseq`` reaches ``on_message`` once, in order."""

    __slots__ = ("handled",)

    def __init__(self) -> None:
        self.handled = 0  # the highest cseq handed to on_message

    def check(self, cseq: int) -> Verdict:
        """Judge envelope ``cseq``; ``HANDLE`` also records it as handled."""
        if cseq <= self.handled:
            return Verdict.DUPLICATE
        if cseq != self.handled + 1:
            return Verdict.GAP
        self.handled = cseq
        return Verdict.HANDLE
