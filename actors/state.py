"""The rules of membership, grace and offline queues, as plain synchronous classes.

Nothing here touches gevent, pykka or a socket: time comes from an injected clock and
connections are opaque handles, so every rule is unit-tested without I/O. The room actor owns
one ``RoomState`` and turns its messages into calls on it.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, cast

import attrs

from wsroom.errors import (
    Disconnected,
    GraceExpired,
    LeaveReason,
    ParticipantNotFound,
    ParticipantOffline,
)
from wsroom.types import Delivery, ParticipantID, Presence, ReconnectPolicy
from wsroom.wire import OutFrame, numbered

from .resume import (
    ASK_FRAME,
    ClientAcks,
    InboundOrder,
    NumberedJoin,
    OutboundLog,
    Replay,
    unrecorded,
)

__all__ = ["JoinTicket", "Leave", "LogQueue", "Member", "NumberedSink", "OfflineQueue", "RoomState"]

C = TypeVar("C")
Clock = Callable[[], float]
Frame = Any
"""An encoded outbound frame: opaque to the rules here."""


class OfflineQueue:
    """A bounded FIFO of encoded frames; when full, the newest is refused and the oldest kept."""

    __slots__ = ("_items", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Made by the first offer: every member has a queue, few ever queue anything, and an
        # empty deque is 760 bytes.
        self._items: deque[Frame] | None = None

    def offer(self, item: Frame) -> bool:
        """Queue ``item``; False when the queue is full (the item is not kept)."""
        items = self._items
        if items is None:
            if self.limit <= 0:
                return False
            self._items = items = deque()
        elif len(items) >= self.limit:
            return False
        items.append(item)
        return True

    def extend(self, items: Iterable[Frame]) -> int:
        """Queue items in order until full; return how many were kept."""
        kept = 0
        for item in items:
            if not self.offer(item):
                break
            kept += 1
        return kept

    def drain(self) -> list[Frame]:
        """Take every queued item, oldest first."""
        items, self._items = self._items, None
        return list(items) if items else []

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._items if self._items is not None else ())


@attrs.define(eq=False)
class Member(Generic[C]):
    """One participant's entry in a room.

    ``joined`` turns True once the first ``on_join`` returned; before that the entry is a join in
    flight and not yet a member. ``conn`` is the current connection (None while offline), and
    ``live`` says whether envelopes go straight to it (False while its ``on_join`` runs).

    A member whose connection is a resume one (contract §7) has a ``log``: its numbered
    sequence, which is also its offline queue (``queue`` is then a ``LogQueue`` on it).
    """

    pid: ParticipantID
    gen: int
    conn: C | None
    queue: OfflineQueue | LogQueue
    joined: bool = False
    live: bool = False
    returning: bool = False  # a reconnect from OFFLINE whose on_join is running
    deadline: float | None = None
    last_close: Disconnected | None = None  # why its last connection ended (made then)
    log: OutboundLog[Any] | None = None
    sink: NumberedSink | None = None  # what the fan-out holds for it while live
    pushed: int = 0  # the highest seq handed to the current connection
    handled: int = 0  # the highest cseq handed to on_message when the last connection stopped
    inbound: InboundOrder | None = None  # the current connection's (see RoomState.begin_join)
    acks: ClientAcks | None = None  # the current connection's client's acks, not yet applied

    @property
    def presence(self) -> Presence:
        return Presence.ONLINE if self.conn is not None else Presence.OFFLINE


class LogQueue:
    """A resume member's offline queue: frames go into its ``OutboundLog`` and get their
    ``seq`` at once, so what waits for a reconnect and what was sent unacknowledged are one
    sequence. A frame lost while the member is still connected (its backlog being flushed)
    would leave a hole in a live stream: the member is reported to ``on_loss``, and the room
    closes it as a slow consumer."""

    __slots__ = ("log", "member", "on_loss")

    def __init__(
        self, log: OutboundLog[Any], member: Member[Any], on_loss: Callable[[Member[Any]], None]
    ) -> None:
        self.log = log
        self.member = member
        self.on_loss = on_loss

    def offer(self, item: Frame) -> bool:
        acks = self.member.acks
        if acks is not None and acks.pending:
            self.log.ack(acks.take())
        if self.log.append(item) is not None:
            return True
        if self.member.conn is not None:
            self.on_loss(self.member)
        return False

    def __len__(self) -> int:
        """The frames not yet handed to a connection."""
        return len(self.log.after(self.member.pushed))


class NumberedSink:
    """What the fan-out loop holds for a live resume member instead of its connection: ``push``
    first applies the acks its client sent since the last frame (``ClientAcks``), numbers the
    shared frame in the member's log (which keeps the shared frame itself) and hands it to the
    connection with its ``seq``. A connection with ``push_numbered`` (the transport's) builds
    the stamped bytes only to write them (``numbered_wire``: a splice, no JSON encoding);
    another is pushed a ``NumberedFrame``. The loop stays the plain one; only resume members
    pay for numbering.

    A full log is a slow consumer: the connection is closed with 4008 and ``push`` answers
    False, like a full outbox; ``kept`` says whether the frame made it into the log.
    """

    __slots__ = ("_push", "acks", "asked", "conn", "kept", "log", "member")

    def __init__(self, conn: Any, member: Member[Any]) -> None:
        # ``member``: a RoomState Member, or anything with its ``log`` and ``pushed`` (a shared
        # room's LocalConn); the client's acks are its ``acks``, or its ``resume``'s.
        if member.log is None:
            raise ValueError("a NumberedSink is for a member with a log")
        self.conn = conn
        self.member = member
        self.log: OutboundLog[Any] = member.log  # a member's log is made once, before its sink
        self.kept = True
        self.asked = False  # ASK_FRAME sent, and no ack since
        acks = getattr(member, "acks", None)
        if acks is None:
            acks = getattr(getattr(member, "resume", None), "acks", None)
        self.acks: ClientAcks = acks if acks is not None else ClientAcks()
        push = getattr(conn, "push_numbered", None)
        self._push: Callable[[OutFrame, int], bool] = (
            push if push is not None else lambda frame, seq: bool(conn.push(numbered(frame, seq)))
        )

    def push(self, frame: OutFrame) -> bool:
        acks = self.acks
        log = self.log
        if acks.pending:
            log.ack(acks.take())
            self.asked = False
        seq = log.append(frame, frame.size)
        if seq is None:
            self.kept = False
            self.conn.close(4008, "slow consumer")
            return False
        self.member.pushed = seq
        if self._push(frame, seq):
            if not self.asked and log.half_full():
                self.ask()
            return True
        self.kept = True  # read only after a refusal: in the log, the outbox was full
        return False

    def ask(self) -> None:
        """Ask the client to acknowledge what it has now (its log is half full), and have the
        connection send it at once rather than behind the peer's delayed ACK."""
        self.asked = True
        self.conn.push(ASK_FRAME)
        flush = getattr(self.conn, "flush", None)
        if flush is not None:
            flush()

    def offer(self, frame: OutFrame) -> bool:
        # A backlog's frames, already numbered: the log has them.
        offer: bool = self.conn.offer(frame)
        return offer

    def take_unsent(self) -> list[Any]:
        # The connection is being let go: the acks its client sent before count (its log is
        # what the member keeps; the unsent frames are in it).
        if self.acks.pending:
            self.log.ack(self.acks.take())
        unsent: list[Any] = self.conn.take_unsent()
        return unsent

    def when_drained(self, callback: Callable[[], None]) -> None:
        self.conn.when_drained(callback)

    def close(self, code: int, reason: str = "") -> None:
        self.conn.close(code, reason)


@attrs.frozen
class JoinTicket(Generic[C]):
    """The room's answer to a join: its generation, whether it is a reconnect, whom it replaces,
    and for a resume connection that asked to resume, the answer to send it (``wsroom.resumed``)."""

    gen: int
    reconnect: bool
    replaced: C | None = None
    answer: Replay[Any] | None = None


@attrs.frozen
class Leave:
    """A membership that has ended: ``on_leave(room, pid, reason)`` is due exactly once."""

    pid: ParticipantID
    reason: BaseException


EXPIRED_KEPT = 1024
"""Memberships a room remembers as expired, so a late resume is told "expired", not "unknown"."""


class RoomState(Generic[C]):
    """Who is in one room, who is online, the grace deadlines and the offline queues."""

    def __init__(self, policy: ReconnectPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.members: dict[ParticipantID, Member[C]] = {}
        #: The live connections, in join order: the fan-out loop walks this and nothing else.
        self.live: dict[ParticipantID, C] = {}
        self.closed = False
        self._joined = 0
        self._next_gen = 0
        self._deadlines: list[tuple[float, int, ParticipantID]] = []
        self._presence_changes: list[tuple[ParticipantID, Presence]] = []
        #: Resume members that lost a frame while connected: the room closes them (4008).
        self.overflowed: list[Member[C]] = []
        self._expired: dict[ParticipantID, None] = {}  # the latest memberships that expired

    # -- joins -------------------------------------------------------------------------

    def begin_join(
        self,
        pid: ParticipantID,
        conn: C,
        resume: NumberedJoin | None = None,
        unsent: Iterable[Frame] = (),
    ) -> JoinTicket[C]:
        """A new connection for ``pid`` has been upgraded; its ``on_join`` is about to run.

        A connection already attached to ``pid`` is replaced: the caller closes it with 4001
        at once (nothing may run in between: see below), and ``unsent``, what it had not yet
        written, goes back to the queue's head.

        ``resume`` comes with a resume connection. Its ``InboundOrder`` gets the membership's
        count of envelopes handed to ``on_message``, taken from the connection it replaces (its
        participant hands nothing on once the server closed it) or kept from the last one to end.
        """
        if self.closed:
            raise RuntimeError("room is closed")
        self._next_gen += 1
        member = self.members.get(pid)
        if member is None:
            member = Member(
                pid, self._next_gen, conn, OfflineQueue(self.policy.max_queued_per_conn)
            )
            self.members[pid] = member
            if resume is None:
                return JoinTicket(member.gen, reconnect=False)
            answer = self._number(member, resume)
            return JoinTicket(member.gen, reconnect=False, answer=answer)
        replaced = member.conn
        if replaced is not None:
            if member.log is None:
                self.requeue(pid, unsent)  # a resume member's log has them already
            self._stop_inbound(member)
        # Coming back from OFFLINE, or replacing such a return before its on_join returned.
        member.returning = member.joined and (
            replaced is None or (member.returning and not member.live)
        )
        member.gen = self._next_gen
        member.conn = conn
        member.live = False
        member.deadline = None
        self.live.pop(pid, None)
        answer = None
        if resume is not None:
            answer = self._number(member, resume)
        elif member.log is not None:
            self._unnumber(member)
        return JoinTicket(member.gen, reconnect=member.joined, replaced=replaced, answer=answer)

    def _number(self, member: Member[C], resume: NumberedJoin) -> Replay[Any] | None:
        """Attach a resume connection: the member's log (made from its queue if it had none),
        where the stream goes on from, and the answer to its resume (None: it starts afresh)."""
        last = resume.last_seq
        fresh = not member.joined
        log = member.log
        if log is None:
            log = OutboundLog(self.policy.max_queued_per_conn, resume.max_bytes, OutFrame.size_of)
            if isinstance(member.queue, OfflineQueue):
                for frame in member.queue.drain():  # a plain connection's queue, numbered now
                    log.append(frame)
            member.log = log
            member.queue = LogQueue(log, member, self._lost)
            member.handled = 0  # a plain connection's envelopes were never numbered
            known = False
        else:
            known = not fresh
        member.inbound = resume.inbound
        # What the cell holds now came before the hub's answer: no ack of this stream.
        resume.acks.take()
        member.acks = resume.acks
        member.sink = NumberedSink(member.conn, member)
        answer: Replay[Any] | None
        if last is None:
            # A fresh start: the client counts from 1 both ways; what is kept goes to it.
            log.restart()
            member.handled = 0
            answer = None
        elif known:
            answer = log.resume(last)
        else:
            answer = unrecorded(last, fresh and member.pid in self._expired)
        if fresh:
            self._expired.pop(member.pid, None)
        member.pushed = (answer.first_seq if answer is not None else 1) - 1
        resume.inbound.handled = member.handled
        return answer

    def _unnumber(self, member: Member[C]) -> None:
        """A plain connection follows a resume one: what the log kept becomes a plain queue."""
        assert member.log is not None
        queue = OfflineQueue(self.policy.max_queued_per_conn)
        queue.extend(member.log.frames())
        member.queue = queue
        member.log = None
        member.sink = None
        member.acks = None
        member.handled = 0

    def _stop_inbound(self, member: Member[C]) -> None:
        # The connection stops being the member's current one: what its participant handed on
        # is final (it hands on nothing once the server closed the connection, or it ended),
        # and so are the acks its client sent (read before the end, or before the replacement).
        if member.inbound is not None:
            member.handled = member.inbound.handled
            member.inbound = None
        acks = member.acks
        if acks is not None:
            member.acks = None
            if acks.pending and member.log is not None:
                member.log.ack(acks.take())

    def ack(self, pid: ParticipantID, gen: int, seq: int) -> None:
        """Connection ``gen`` of ``pid`` acknowledged every numbered frame up to ``seq``; an ack
        from a connection that is no longer current is ignored (it counted another stream)."""
        member = self.members.get(pid)
        if member is not None and member.gen == gen and member.log is not None:
            member.log.ack(seq)

    def complete_join(self, pid: ParticipantID, gen: int) -> list[Frame] | None:
        """``on_join`` returned (or a held flush may go on): the member goes live; return the
        queue to flush, in order.

        None when the join is stale (a newer connection replaced it meanwhile).
        """
        member = self.members.get(pid)
        if member is None or member.gen != gen or member.conn is None:
            return None
        if member.returning:
            member.returning = False
            self._presence_changes.append((pid, Presence.ONLINE))
        if not member.joined:
            member.joined = True
            self._joined += 1
        member.live = True
        if member.log is not None:
            assert member.sink is not None
            self.live[pid] = cast(C, member.sink)  # the fan-out takes it for its connection
            backlog = [numbered(frame, seq) for seq, frame in member.log.after(member.pushed)]
            if backlog:
                member.pushed = backlog[-1].seq
            return backlog
        self.live[pid] = member.conn
        assert isinstance(member.queue, OfflineQueue)
        return member.queue.drain()

    def hold(self, pid: ParticipantID, rest: Iterable[Frame]) -> None:
        """The outbox filled while its backlog was being flushed: ``rest`` goes back to the
        queue's head and sends queue behind it until ``complete_join`` is called again (when
        the outbox drained)."""
        member = self.members.get(pid)
        if member is None:
            return
        member.live = False
        self.live.pop(pid, None)
        if member.log is not None:
            rest = list(rest)
            if rest:
                member.pushed = rest[0].seq - 1  # the log keeps them: flushed from there on
            return
        self.requeue(pid, rest)

    def fail_join(self, pid: ParticipantID, gen: int, reason: BaseException) -> Leave | None:
        """``on_join`` raised. A first join leaves no trace; a reconnect ends the membership."""
        member = self.members.get(pid)
        if member is None or member.gen != gen:
            return None
        self._remove(member)
        return Leave(pid, reason) if member.joined else None

    def requeue(self, pid: ParticipantID, items: Iterable[Frame]) -> None:
        """Put frames a dropped or replaced connection never wrote back at the queue's head."""
        member = self.members.get(pid)
        if member is None or not member.joined or member.log is not None:
            return  # a resume member's log keeps what it sent until acknowledged
        assert isinstance(member.queue, OfflineQueue)
        pending = member.queue.drain()
        member.queue.extend(items)
        member.queue.extend(pending)

    def connection_of(self, pid: ParticipantID, gen: int) -> C | None:
        """``pid``'s connection if ``gen`` is still its current one, else None."""
        member = self.members.get(pid)
        if member is None or member.gen != gen:
            return None
        return member.conn

    # -- disconnects and grace ----------------------------------------------------------

    def disconnect(
        self, pid: ParticipantID, gen: int, code: int, reason: str, unsent: Iterable[Frame] = ()
    ) -> Leave | None:
        """Connection ``gen`` of ``pid`` ended; start its grace period or end the membership.

        A disconnect of a connection that was already replaced or ended is ignored, so a stale
        close can never evict a newer connection.
        """
        member = self.members.get(pid)
        if member is None or self.connection_of(pid, gen) is None:
            return None
        member.conn = None
        member.live = False
        self.live.pop(pid, None)
        self._stop_inbound(member)
        member.last_close = closed = Disconnected(code, reason)
        if not member.joined:
            self._remove(member)
            return None
        if self.policy.grace_period <= 0:
            self._remove(member)
            return Leave(pid, closed)
        self.requeue(pid, unsent)
        member.deadline = self.clock() + self.policy.grace_period
        self._presence_changes.append((pid, Presence.OFFLINE))
        heapq.heappush(self._deadlines, (member.deadline, gen, pid))
        return None

    def next_deadline(self) -> float | None:
        """When the earliest grace period ends, or None when nobody is waiting."""
        while self._deadlines:
            deadline, gen, pid = self._deadlines[0]
            member = self.members.get(pid)
            if member is not None and member.gen == gen and member.deadline == deadline:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    def expire(self) -> list[Leave]:
        """End every membership whose grace period is over; their queues are dropped."""
        now = self.clock()
        leaves: list[Leave] = []
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, _, pid = heapq.heappop(self._deadlines)
            member = self.members[pid]
            self._remove(member)
            self._note_expired(pid)
            expired = GraceExpired()
            expired.__cause__ = member.last_close
            leaves.append(Leave(pid, expired))
        return leaves

    # -- delivery ------------------------------------------------------------------------

    def route(self, pid: ParticipantID, item: Frame) -> C | Delivery:
        """Where one targeted frame goes: a live connection, or ``QUEUED`` for later.

        Raises ``ParticipantNotFound`` for a non-member and ``ParticipantOffline`` when it is
        offline and its queue is full (the frame is not kept).
        """
        conn = self.live.get(pid)
        if conn is not None:
            return conn
        member = self.members.get(pid)
        if member is None or not member.joined:
            raise ParticipantNotFound()
        if member.queue.offer(item):
            return Delivery.QUEUED
        raise ParticipantOffline()

    def queue_for_waiting(
        self, item: Frame, exclude: frozenset[ParticipantID]
    ) -> tuple[int, list[ParticipantID]]:
        """Queue a broadcast for members without a live connection: (queued, dropped)."""
        queued = 0
        dropped: list[ParticipantID] = []
        if len(self.live) == len(self.members):
            return queued, dropped
        for pid, member in self.members.items():
            if member.live or not member.joined or pid in exclude:
                continue
            if member.queue.offer(item):
                queued += 1
            else:
                dropped.append(pid)
        return queued, dropped

    def take_presence_changes(self) -> list[tuple[ParticipantID, Presence]]:
        """Members that went OFFLINE (into their grace period) or came back ONLINE (a reconnect
        whose ``on_join`` returned) since the last call, in order."""
        changes = self._presence_changes
        if changes:
            self._presence_changes = []
        return changes

    def _note_expired(self, pid: ParticipantID) -> None:
        self._expired[pid] = None
        if len(self._expired) > EXPIRED_KEPT:
            del self._expired[next(iter(self._expired))]

    def take_overflowed(self) -> list[Member[C]]:
        """The resume members that lost a frame while connected, since the last call."""
        overflowed = self.overflowed
        if overflowed:
            self.overflowed = []
        return overflowed

    def _lost(self, member: Member[C]) -> None:
        self.overflowed.append(member)

    def _remove(self, member: Member[C]) -> None:
        del self.members[member.pid]
        self.live.pop(member.pid, None)
        if member.joined:
            self._joined -= 1

    # -- the room as a whole --------------------------------------------------------------

    def close_all(self, reason: Callable[[], LeaveReason]) -> tuple[list[C], list[Leave]]:
        """Close the room: every connection to close and every membership's leave."""
        conns = [m.conn for m in self.members.values() if m.conn is not None]
        leaves = [Leave(m.pid, reason()) for m in self.members.values() if m.joined]
        self.members.clear()
        self.live.clear()
        self._deadlines.clear()
        self._joined = 0
        self.closed = True
        return conns, leaves

    def presence(self) -> dict[ParticipantID, Presence]:
        """Every member and whether it is online or inside its grace period."""
        return {pid: m.presence for pid, m in self.members.items() if m.joined}

    @property
    def has_members(self) -> bool:
        """Whether the room exists for the API: at least one completed join."""
        return self._joined > 0

    @property
    def is_empty(self) -> bool:
        """No member and no join in flight: the room can be reaped."""
        return not self.members
