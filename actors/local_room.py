"""What one process holds of a room shared through the backplane: its own connections, and how
far it has read the room's stream. Plain and synchronous, like ``state.py``.

The room's truth (members, presence, queues, grace) lives in Redis; a process keeps only the
connections it serves. Each carries ``since``, the last stream entry already accounted for
(queued in Redis or handed over) when it was attached: entries up to it are not delivered to
it again, so switching between queue and live traffic neither loses nor repeats an envelope.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from wsroom.types import ParticipantID
from wsroom.wire import OutFrame

from .resume import NumberedJoin, OutboundLog, Replay, ResumeRefusal, unrecorded

__all__ = [
    "Entry",
    "LocalConn",
    "LocalRoom",
    "StreamId",
    "continue_held",
    "continue_sequence",
    "format_id",
    "hand_over",
    "parse_id",
]

StreamId = tuple[int, int]


def parse_id(text: str) -> StreamId:
    """A Redis stream id ("1700000000000-3") as a comparable pair."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


@attrs.frozen
class Entry:
    """One entry of a room's stream: ``kind`` b(roadcast), s(end), r(eplaced), h(anded over),
    c(losed); ``fields`` as Redis gave them."""

    sid: StreamId
    kind: str
    fields: dict[str, str]

    @classmethod
    def of(cls, sid: str, fields: dict[str, str]) -> Entry:
        return cls(parse_id(sid), fields.get("k", ""), fields)


@attrs.define(eq=False)
class LocalConn:
    """One connection of this process in the room."""

    pid: ParticipantID
    gen: int
    conn: Any
    since: StreamId
    reconnect: bool = False
    live: bool = False
    awaiting_handover: bool = False
    #: A resume connection's join (contract §7); ``log`` its numbered sequence once it went live
    #: (this process holds it then), ``pushed`` the last seq handed to the connection.
    resume: NumberedJoin | None = None
    log: OutboundLog[OutFrame] | None = None
    pushed: int = 0


class LocalRoom:
    """This process's connections in one shared room, by generation and by participant."""

    def __init__(self) -> None:
        self.by_gen: dict[int, LocalConn] = {}
        self.current: dict[ParticipantID, LocalConn] = {}
        self.live: dict[ParticipantID, LocalConn] = {}
        self.last_done: StreamId = (0, 0)

    def attach(
        self, pid: ParticipantID, gen: int, conn: Any, tail: str, reconnect: bool
    ) -> LocalConn:
        """A join began here; entries up to ``tail`` are the backplane's to account for."""
        lc = LocalConn(pid, gen, conn, parse_id(tail), reconnect)
        self.by_gen[gen] = lc
        self.current[pid] = lc
        return lc

    def go_live(self, lc: LocalConn, tail: str) -> None:
        """The queue up to ``tail`` was taken; later entries go straight to the connection."""
        lc.since = max(lc.since, parse_id(tail))
        lc.live = True
        lc.awaiting_handover = False
        self.live[lc.pid] = lc

    def pause(self, lc: LocalConn) -> None:
        """Entries queue in Redis again (the outbox is full while flushing a backlog)."""
        lc.live = False
        if self.live.get(lc.pid) is lc:
            del self.live[lc.pid]

    def detach(self, lc: LocalConn) -> None:
        self.pause(lc)
        self.by_gen.pop(lc.gen, None)
        if self.current.get(lc.pid) is lc:
            del self.current[lc.pid]

    def after(self, lc: LocalConn) -> str:
        """The last entry already delivered to or accounted for ``lc``: what it missed comes
        after this."""
        return format_id(max(lc.since, self.last_done))

    def broadcast_targets(self, entry: Entry, exclude: frozenset[str]) -> Iterator[LocalConn]:
        """The live connections a broadcast entry is for."""
        # No copy of ``live``: the caller changes it only after the loop (slow consumers).
        sid = entry.sid
        for pid, lc in self.live.items():
            if lc.since < sid and pid not in exclude:
                yield lc

    def target(self, entry: Entry) -> LocalConn | None:
        """The live connection a send entry is for, if it is here."""
        lc = self.live.get(ParticipantID(entry.fields.get("t", "")))
        if lc is not None and lc.since < entry.sid:
            return lc
        return None

    def older_than(self, entry: Entry) -> list[LocalConn]:
        """The connections attached before ``entry`` (a room close reaches them, not later ones)."""
        return [lc for lc in self.by_gen.values() if lc.since < entry.sid]

    @property
    def empty(self) -> bool:
        return not self.by_gen


# -- a resume membership's sequence, between Redis and this process (contract §7) -------------


def continue_sequence(
    frames: list[OutFrame],
    seq: dict[str, int] | None,
    last_seq: int | None,
    *,
    expired: bool,
    max_frames: int,
    max_bytes: int,
) -> tuple[OutboundLog[OutFrame], Replay[OutFrame] | None, int]:
    """A resume connection goes live here with its member's queue (``frames``) and the queue's
    numbering as Redis kept it (``seq``: None when the membership was not numbered; see
    ``wsroom/backplane/scripts.py``): its log, the answer to its resume (None for a fresh start)
    and the last ``cseq`` handed to ``on_message``.

    The rules are those of one process (``RoomState._number``), with one more: a sequence whose
    process died while it held it (``d``) cannot be resumed. The client is told ``unknown`` and
    the stream goes on after its ``last_seq``; the count of its envelopes handed to
    ``on_message`` is the one last handed over, so some may reach it twice.
    """
    log: OutboundLog[OutFrame] = OutboundLog(max_frames, max_bytes, OutFrame.size_of)
    numbered = seq is not None and "q" in seq and not seq.get("d")
    if not numbered:
        # Numbered once, its sequence lost with a process: whatever the client saw is unknown.
        lost_with_process = seq is not None and last_seq is not None
        if lost_with_process:
            assert last_seq is not None
            log.next_seq = log.acked = last_seq
            log.next_seq += 1
        for frame in frames:
            log.append(frame)
        if last_seq is None:
            log.restart()  # a fresh start: the client counts from 1 both ways
            return log, None, 0
        if lost_with_process:
            assert seq is not None
            answer: Replay[OutFrame] = Replay(
                False, reason=ResumeRefusal.UNKNOWN, first_seq=last_seq + 1
            )
            return log, answer, int(seq.get("c", 0))
        return log, unrecorded(last_seq, expired), 0
    assert seq is not None
    first = int(seq["q"])
    log.next_seq = first
    log.acked = int(seq.get("f", first - 1))
    for frame in frames:
        log.append(frame)
    lost = int(seq.get("l", 0))
    if lost:
        log.next_seq += lost
        log.lost_upto = log.next_seq - 1
    if last_seq is None:
        log.restart()
        return log, None, 0
    return log, log.resume(last_seq), int(seq.get("c", 0))


def continue_held(log: OutboundLog[OutFrame], frames: list[OutFrame], seq: dict[str, int]) -> bool:
    """A connection that held its backlog (``hold``) goes live again: the queue's frames after
    what the log has join it. False when frames were lost meanwhile (a hole in a live stream:
    the caller closes the connection as a slow consumer)."""
    first = int(seq.get("q", log.next_seq))
    intact = True
    for i, frame in enumerate(frames):
        if first + i >= log.next_seq and log.append(frame) is None:
            intact = False
    lost = int(seq.get("l", 0))
    if lost:
        log.next_seq += lost
        log.lost_upto = log.next_seq - 1
        intact = False
    return intact


def hand_over(log: OutboundLog[OutFrame], handled: int) -> tuple[dict[str, int], list[str]]:
    """What a resume connection leaving this process leaves in Redis: its sequence (``q`` the
    seq of the first frame kept, ``f`` the lowest ``last_seq`` a resume may ask from, ``c`` the
    last ``cseq`` handed to ``on_message``) and its unacknowledged frames, oldest first.

    What lies before the log's last hole is let go (a resume from before it is refused anyway):
    the frames kept after it are contiguous, so the queue can number them by position.
    """
    floor = max(log.acked, log.lost_upto)
    kept = log.after(floor)
    first = kept[0][0] if kept else log.next_seq
    return {"q": first, "f": first - 1, "c": handled}, [frame.text for _, frame in kept]
