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
    "ASK_FRAME",
    "RESUME",
    "RESUMED",
    "RESUME_PROTOCOL",
    "Ack",
    "ClientAcks",
    "InboundOrder",
    "Numbered",
    "NumberedJoin",
    "OutboundLog",
    "Replay",
    "ResumeRefusal",
    "Verdict",
    "ack_frame",
    "quick_ack",
    "read_numbered",
    "read_resume",
    "resumed_frame",
    "unrecorded",
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


class _Gap:
    """Seqs lost between two frames a log kept (it was full, then acks made room again)."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count


def unrecorded(last_seq: int, expired: bool) -> Replay[Any]:
    """The answer to a resume from ``last_seq`` when the hub has no numbered record of the
    membership: ``expired`` (its grace ran out lately), ``ok`` (the client saw nothing, so it
    missed nothing), or ``unknown``; the stream counts from 1."""
    if expired:
        return Replay(False, reason=ResumeRefusal.EXPIRED, first_seq=1)
    if last_seq == 0:
        return Replay(True, first_seq=1)
    return Replay(False, reason=ResumeRefusal.UNKNOWN, first_seq=1)


class OutboundLog(Generic[F]):
    """One membership's outbound sequence: numbers each frame and keeps the unacknowledged ones.

    Bounded by ``max_frames`` and ``max_bytes`` (``size_of`` gives a frame's bytes); ``append``
    refuses a frame past either bound, and the last ``seq`` so lost is remembered, so a later
    resume from before it is answered ``overflow`` instead of replaying a stream with a hole.

    The frames are kept as they are (a broadcast's one shared frame), in a deque without their
    ``seq``: the sequence is contiguous, so the first frame's ``seq`` gives every other's. What
    breaks that (frames lost, then acks made room for more) is marked by one ``_Gap`` where the
    hole is; the usual log has none. So keeping a frame costs one slot of the deque and no
    object of its own: nothing per delivery for the garbage collector to track.
    """

    __slots__ = (
        "_count",
        "_first",
        "_gaps",
        "_items",
        "_lost_run",
        "_next",
        "_size",
        "_size_of",
        "acked",
        "lost_upto",
        "max_bytes",
        "max_frames",
    )

    def __init__(self, max_frames: int, max_bytes: int, size_of: Callable[[F], int]) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._size_of = size_of
        # Frames and, rarely, _Gap markers; never a marker first or last.
        self._items: deque[Any] = deque()
        self._count = 0  # the frames in _items
        self._first = 1  # the seq of _items[0], when there is one
        self._gaps = 0  # the markers in _items
        self._lost_run = 0  # seqs lost since the last frame kept (a marker to come)
        self._size = 0
        self._next = 1  # the seq the next frame gets
        self.acked = 0  # the highest seq the client acknowledged
        self.lost_upto = 0  # the last seq dropped for want of room (0: none)

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next frame gets."""
        return self._next

    @next_seq.setter
    def next_seq(self, seq: int) -> None:
        # Moved on from outside (a sequence continued from elsewhere, seqs lost there): the
        # seqs skipped after a kept frame are a hole, marked before the next frame kept.
        if self._count and seq > self._next:
            self._lost_run += seq - self._next
        self._next = seq

    def append(self, frame: F, size: int | None = None) -> int | None:
        """Number ``frame`` and keep it until acknowledged; None (nothing kept, and the
        sequence now has a gap) when the log is full. ``size``: ``size_of(frame)``, when the
        caller has it at hand (it saves a call per delivery)."""
        seq = self._next
        self._next = seq + 1
        if size is None:
            size = self._size_of(frame)
        count = self._count
        if count >= self.max_frames or (count and self._size + size > self.max_bytes):
            self.lost_upto = seq
            if count:
                self._lost_run += 1
            return None
        if not count:
            self._first = seq
        elif self._lost_run:
            self._items.append(_Gap(self._lost_run))
            self._gaps += 1
            self._lost_run = 0
        self._items.append(frame)
        self._count = count + 1
        self._size += size
        return seq

    def ack(self, seq: int) -> bool:
        """The client has everything up to ``seq``. False for a ``seq`` never sent (a client's
        bug: the caller decides what to do); a stale ack changes nothing."""
        if seq >= self._next or seq < 0:
            return False
        if seq <= self.acked:
            return True
        self.acked = seq
        if self._gaps:
            self._let_go_gapped(seq)
            return True
        drop = seq - self._first + 1
        if drop <= 0 or not self._count:
            return True
        items = self._items
        if drop >= self._count:
            items.clear()
            self._count = 0
            self._size = 0
            self._lost_run = 0
            return True
        size_of = self._size_of
        size = self._size
        for _ in range(drop):
            size -= size_of(items.popleft())
        self._size = size
        self._count -= drop
        self._first += drop
        return True

    def _let_go_gapped(self, seq: int) -> None:
        # ack() past a hole: walk the items, markers and all (rare, and at most max_frames).
        items = self._items
        first = self._first
        while items:
            item = items[0]
            if type(item) is _Gap:
                items.popleft()
                first += item.count
                self._gaps -= 1
                continue
            if first > seq:
                break
            items.popleft()
            self._size -= self._size_of(item)
            self._count -= 1
            first += 1
        self._first = first
        if not items:
            self._lost_run = 0

    def _entries(self) -> list[tuple[int, F]]:
        # The frames kept with their seq, oldest first (for the rare paths: a resume, a flush).
        out: list[tuple[int, F]] = []
        seq = self._first
        for item in self._items:
            if type(item) is _Gap:
                seq += item.count
            else:
                out.append((seq, item))
                seq += 1
        return out

    def resume(self, last_seq: int) -> Replay[F]:
        """A reconnect says it saw everything up to ``last_seq``: what to send again, in order.

        A refusal still gives the frames the stream can go on with: those after the last hole
        (``overflow``), or everything kept (``unknown``: the client's count is not ours).
        """
        if last_seq < 0 or last_seq >= self.next_seq:
            return Replay(
                False, tuple(self._entries()), ResumeRefusal.UNKNOWN, first_seq=self.first_seq
            )
        floor = max(self.acked, self.lost_upto)
        if last_seq >= floor:
            self.ack(last_seq)
            return Replay(True, tuple(self._entries()), first_seq=last_seq + 1)
        # Lost for want of room, or acknowledged and let go: the client cannot have them. What
        # is kept before the last hole is let go too, so the stream goes on without one.
        self.ack(floor)
        return Replay(False, tuple(self._entries()), ResumeRefusal.OVERFLOW, first_seq=floor + 1)

    def after(self, seq: int) -> list[tuple[int, F]]:
        """The frames kept with a ``seq`` past ``seq``, in order."""
        if not self._gaps:
            first = self._first
            skip = max(seq - first + 1, 0)
            return [(first + i, frame) for i, frame in enumerate(self._items) if i >= skip]
        return [entry for entry in self._entries() if entry[0] > seq]

    def restart(self) -> None:
        """Number the frames kept again from 1 (a client starting afresh): the gaps go."""
        if self._gaps:
            self._items = deque(self.frames())
            self._gaps = 0
        self._first = 1
        self._lost_run = 0
        self._next = self._count + 1
        self.acked = 0
        self.lost_upto = 0

    def frames(self) -> list[F]:
        """The frames kept, oldest first."""
        if not self._gaps:
            return list(self._items)
        return [item for item in self._items if type(item) is not _Gap]

    @property
    def first_seq(self) -> int:
        """The oldest ``seq`` kept, or the next one when nothing is."""
        return self._first if self._count else self.next_seq

    def __len__(self) -> int:
        return self._count

    def half_full(self) -> bool:
        """Whether the frames kept fill half of either bound: time the client acknowledged
        (the hub asks it to, ``ASK_FRAME``), so that a burst does not overflow the log while
        the client's batched acks wait for their count or their timer."""
        return self._count * 2 >= self.max_frames or self._size * 2 >= self.max_bytes

    @property
    def size(self) -> int:
        """The bytes of the frames kept."""
        return self._size


class ClientAcks:
    """What the client of one resume connection has acknowledged, on its way to the room.

    A handover by reference, like ``InboundOrder``: the connection's reader (or its
    participant, for an ack not written the usual way) records the highest ``seq`` acknowledged;
    the room actor takes it (and resets it) before it next numbers a frame for the member, and
    when the connection stops being the member's current one. Acks are cumulative, so many of
    them between two looks cost the room one ``OutboundLog.ack``, and none costs a message.
    Both sides run in greenlets of one thread and neither yields between reading and writing
    ``pending``, so no update is lost.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0  # the highest seq acknowledged since the room last took it (0: none)

    def note(self, seq: int) -> None:
        """The client acknowledged everything up to ``seq``."""
        if seq > self.pending:
            self.pending = seq

    def take(self) -> int:
        """The highest ``seq`` noted since the last call (0: none)."""
        seq = self.pending
        self.pending = 0
        return seq


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
    (None: it starts afresh), its participant's ``InboundOrder``, the log's byte bound, and
    the cell its client's acks arrive in."""

    last_seq: int | None
    inbound: InboundOrder
    max_bytes: int
    acks: ClientAcks = attrs.field(factory=ClientAcks)


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


_ACK_HEAD = '{"type":"wsroom.ack","payload":{"seq":'
_ACK_TAIL = "}}"
_ACK_DIGITS = len(_ACK_HEAD) + 18  # past 18 digits (or any other spelling): read_numbered's


def quick_ack(text: str) -> int | None:
    """The ``seq`` of an ack written as wsroom.js and the Python client write it (compact JSON,
    keys in that order), read without a JSON decoder; None for any other text, which goes the
    full way (``read_numbered``, in the participant). The reader of a resume connection calls
    it on every frame after the first, so it costs a prefix comparison for anything else."""
    if not text.startswith(_ACK_HEAD) or not text.endswith(_ACK_TAIL):
        return None
    if len(text) > _ACK_DIGITS + len(_ACK_TAIL):
        return None
    digits = text[len(_ACK_HEAD) : -len(_ACK_TAIL)]
    # JSON's integers: ASCII digits, no sign, no leading zero.
    if not (digits.isascii() and digits.isdigit()) or (digits[0] == "0" and len(digits) > 1):
        return None
    return int(digits)


ASK_FRAME = OutFrame(encode_reserved(Envelope(ACK, {"ask": True})))
"""The hub asks the client to acknowledge now what it has received: its log is half full."""


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
