"""The rules of resume without loss (contract §7), as plain synchronous classes.

A resume connection numbers every outbound envelope of its membership (``seq``, contiguous
from 1) and acknowledges them cumulatively; the hub keeps what it sent and was not acknowledged,
so a reconnect inside the grace period can ask for everything after the last ``seq`` it saw.
In the other direction the client numbers its envelopes (``cseq``) and the hub hands each to
``on_message`` once, across reconnects. Nothing here touches a socket or an actor: the room
actor owns one ``OutboundLog`` per resume member (through ``RoomState``), each participant one
``InboundOrder``, and the frames of the protocol are read and built here.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs

from wsroom.envelope import Envelope, decode_object, encode_reserved, envelope_of
from wsroom.errors import BadEnvelope
from wsroom.wire import RESUME_PROTOCOL, OutFrame

__all__ = [
    "ACK",
    "RESUME",
    "RESUMED",
    "RESUME_PROTOCOL",
    "Ack",
    "InboundOrder",
    "Numbered",
    "NumberedJoin",
    "OutboundLog",
    "Replay",
    "ResumeRefusal",
    "Verdict",
    "ack_frame",
    "read_numbered",
    "read_resume",
    "resumed_frame",
]

F = TypeVar("F")

ACK = "wsroom.ack"
RESUME = "wsroom.resume"
RESUMED = "wsroom.resumed"


class ResumeRefusal(enum.Enum):
    """Why a resume cannot give back everything after the client's ``last_seq``."""

    OVERFLOW = "overflow"
    """Envelopes after ``last_seq`` were let go: the log (or the offline queue) was full, or the
    client had acknowledged them already."""
    EXPIRED = "expired"
    """The membership ended (its grace period ran out) before the client came back."""
    UNKNOWN = "unknown"
    """The hub has no record of that sequence (a ``last_seq`` it never sent, or a new hub)."""


@attrs.frozen
class Replay(Generic[F]):
    """The answer to a resume: ``ok`` with the frames to send again in order, or a refusal.

    ``first_seq`` is the ``seq`` of the next numbered envelope the client gets (the first frame
    replayed, or the next one sent): from it on the stream is contiguous again, and what lies
    between the client's ``last_seq`` and it is lost.
    """

    ok: bool
    frames: tuple[tuple[int, F], ...] = ()
    reason: ResumeRefusal | None = None
    first_seq: int = 1


class OutboundLog(Generic[F]):
    """One membership's outbound sequence: numbers each frame and keeps the unacknowledged ones.

    Bounded by ``max_frames`` and ``max_bytes`` (``size_of`` gives a frame's bytes); ``append``
    refuses a frame past either bound, and the last ``seq`` so lost is remembered, so a later
    resume from before it is answered ``overflow`` instead of replaying a stream with a hole.
    """

    __slots__ = (
        "_entries",
        "_size",
        "_size_of",
        "acked",
        "lost_upto",
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
        self.lost_upto = 0  # the last seq dropped for want of room (0: none)

    def append(self, frame: F) -> int | None:
        """Number ``frame`` and keep it until acknowledged; None (nothing kept, and the
        sequence now has a gap) when the log is full."""
        seq = self.next_seq
        self.next_seq += 1
        size = self._size_of(frame)
        if len(self._entries) >= self.max_frames or (
            self._entries and self._size + size > self.max_bytes
        ):
            self.lost_upto = seq
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
        """A reconnect says it saw everything up to ``last_seq``: what to send again, in order.

        A refusal still gives the frames the stream can go on with: those after the last hole
        (``overflow``), or everything kept (``unknown``: the client's count is not ours).
        """
        if last_seq < 0 or last_seq >= self.next_seq:
            return Replay(
                False, tuple(self._entries), ResumeRefusal.UNKNOWN, first_seq=self.first_seq
            )
        floor = max(self.acked, self.lost_upto)
        if last_seq >= floor:
            self.ack(last_seq)
            return Replay(True, tuple(self._entries), first_seq=last_seq + 1)
        # Lost for want of room, or acknowledged and let go: the client cannot have them. What
        # is kept before the last hole is let go too, so the stream goes on without one.
        self.ack(floor)
        return Replay(False, tuple(self._entries), ResumeRefusal.OVERFLOW, first_seq=floor + 1)

    def after(self, seq: int) -> list[tuple[int, F]]:
        """The frames kept with a ``seq`` past ``seq``, in order."""
        return [entry for entry in self._entries if entry[0] > seq]

    def restart(self) -> None:
        """Number the frames kept again from 1 (a client starting afresh): the gaps go."""
        self._entries = deque((i, frame) for i, (_, frame) in enumerate(self._entries, 1))
        self.next_seq = len(self._entries) + 1
        self.acked = 0
        self.lost_upto = 0

    def frames(self) -> list[F]:
        """The frames kept, oldest first."""
        return [frame for _, frame in self._entries]

    @property
    def first_seq(self) -> int:
        """The oldest ``seq`` kept, or the next one when nothing is."""
        return self._entries[0][0] if self._entries else self.next_seq

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
    """One membership's inbound sequence: each ``cseq`` reaches ``on_message`` once, in order.

    Each connection's participant holds one and is its only writer; the room reads ``handled``
    when that connection stops being the member's current one, and hands it to the next.
    """

    __slots__ = ("handled",)

    def __init__(self, handled: int = 0) -> None:
        self.handled = handled  # the highest cseq handed to on_message

    def check(self, cseq: int) -> Verdict:
        """Judge envelope ``cseq``; ``HANDLE`` also records it as handled."""
        if cseq <= self.handled:
            return Verdict.DUPLICATE
        if cseq != self.handled + 1:
            return Verdict.GAP
        self.handled = cseq
        return Verdict.HANDLE


@attrs.frozen
class NumberedJoin:
    """What a resume connection brings to its join: the ``last_seq`` it asks to resume from
    (None: it starts afresh), its participant's ``InboundOrder``, and the log's byte bound."""

    last_seq: int | None
    inbound: InboundOrder
    max_bytes: int


# -- the protocol's frames ------------------------------------------------------------------


def _positive_int(value: Any, zero: bool = True) -> int | None:
    if type(value) is not int or value < (0 if zero else 1):
        return None
    return value


def read_resume(text: str) -> int | None:
    """The ``last_seq`` of a ``wsroom.resume`` frame, or None when ``text`` is not one."""
    try:
        obj = decode_object(text)
    except BadEnvelope:
        return None
    if obj.get("type") != RESUME:
        return None
    payload = obj.get("payload")
    return _positive_int(payload.get("last_seq")) if isinstance(payload, dict) else None


@attrs.frozen
class Ack:
    """A client's ``wsroom.ack``: it has every outbound envelope up to ``seq``."""

    seq: int


@attrs.frozen
class Numbered:
    """A client's envelope and its ``cseq``."""

    cseq: int
    envelope: Envelope | BadEnvelope  # a numbered frame that is no envelope still counts


def read_numbered(text: str) -> Ack | Numbered:
    """Read one frame of a resume connection after its first: an ack, or a numbered envelope.

    Raises ``BadEnvelope`` for a frame that is neither (no ``cseq``, a misplaced resume).
    """
    obj = decode_object(text)
    kind = obj.get("type")
    if kind == ACK:
        payload = obj.get("payload")
        seq = _positive_int(payload.get("seq")) if isinstance(payload, dict) else None
        if seq is None:
            raise BadEnvelope('wsroom.ack needs a payload {"seq": n >= 0} @ $.payload')
        return Ack(seq)
    if kind == RESUME:
        raise BadEnvelope("wsroom.resume is only valid as a connection's first frame @ $.type")
    cseq = _positive_int(obj.get("cseq"), zero=False)
    if cseq is None:
        raise BadEnvelope("a resume connection's envelope needs a cseq >= 1 @ $.cseq")
    try:
        return Numbered(cseq, envelope_of(obj))
    except BadEnvelope as bad:
        return Numbered(cseq, bad)


def ack_frame(cseq: int) -> OutFrame:
    """The hub's cumulative ack of the client's envelopes up to ``cseq``."""
    return OutFrame(encode_reserved(Envelope(ACK, {"cseq": cseq})))


def resumed_frame(replay: Replay[Any] | None, handled: int) -> OutFrame:
    """The answer to a ``wsroom.resume``; ``cseq`` says which of the client's envelopes the hub
    has already handed on, so the client sends again only those after it."""
    payload: dict[str, Any]
    if replay is None or replay.ok:
        payload = {"ok": True, "cseq": handled}
    else:
        assert replay.reason is not None
        payload = {
            "ok": False,
            "reason": replay.reason.value,
            "first_seq": replay.first_seq,
            "cseq": handled,
        }
    return OutFrame(encode_reserved(Envelope(RESUMED, payload)))
