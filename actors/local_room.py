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

__all__ = ["Entry", "LocalConn", "LocalRoom", "StreamId", "format_id", "parse_id"]

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
