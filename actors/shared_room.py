"""The room actor of a hub on a backplane: this process's connections in one shared room.

Membership, presence, grace and queues live in Redis (``wsroom.backplane``); this actor
attaches and detaches this process's connections there, and fans the room's stream out to
them: it stays the one place where a room's fan-out happens in a process. Like ``RoomActor``
it never asks another actor, and runs hooks in greenlets of their own.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import gevent
import pykka

from wsroom.errors import BackplaneUnavailable, Disconnected, RoomClosed
from wsroom.hooks import HookSet
from wsroom.types import ParticipantID, Presence, ReconnectPolicy, RoomID
from wsroom.wire import OutFrame, numbered

from . import messages as m
from .hookcall import spawn_hook
from .local_room import (
    Entry,
    LocalConn,
    LocalRoom,
    StreamId,
    continue_held,
    continue_sequence,
    format_id,
    hand_over,
)
from .resume import resumed_frame
from .runtime import GeventActor, handles, tell_quietly
from .state import JoinTicket, NumberedSink

__all__ = ["HANDOVER_WAIT", "SharedRoomActor"]

logger = logging.getLogger("wsroom.actors")

RETRY_EVERY = 0.5
"""Seconds between attempts to report a change while the backplane is unreachable."""
HANDOVER_WAIT = 5.0
"""Seconds a join waits for a replaced connection's process to hand its unsent envelopes over
before it goes live without them (that process is presumed gone)."""


class SharedRoomActor(GeventActor):
    """Owns one ``LocalRoom``; its state changes go through the backplane's ``Store``."""

    def __init__(
        self,
        room: RoomID,
        hub: pykka.ActorRef[Any],
        hooks: HookSet,
        policy: ReconnectPolicy,
        link: Any,
    ) -> None:
        super().__init__()
        self.room = room
        self.hub = hub
        self.hooks = hooks
        self.policy = policy
        self.link = link
        self.store = link.store
        self.local = LocalRoom()
        self.closed = False
        self._departing = False  # stop(): this process is leaving the backplane
        self._subscribed = False
        self._hooks_running: set[gevent.Greenlet[Any, Any]] = set()
        # Reports Redis has not taken yet (it was away), oldest first; see ``_persist``.
        self._unreported: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()

    # -- joins ----------------------------------------------------------------------------

    @handles(m.BeginJoin)
    def _begin_join(self, msg: m.BeginJoin) -> m.Admission:
        if self.closed:
            raise m.RoomIsGone(self.room)
        joined = self.store.begin_join(
            self.room,
            msg.pid,
            self.link.proc,
            self.policy.grace_period,
            self.policy.max_queued_per_conn,
        )
        lc = self.local.attach(msg.pid, joined.gen, msg.conn, joined.tail, joined.reconnect)
        lc.resume = msg.resume
        if not self._subscribed:
            self._subscribed = True
            self.local.last_done = self.local.by_gen[joined.gen].since
            self.link.subscribe(self.room, self.actor_ref, joined.tail)
        return m.Admission(JoinTicket(joined.gen, joined.reconnect))

    @handles(m.CompleteJoin)
    def _complete_join(self, msg: m.CompleteJoin) -> BaseException | None:
        lc = self.local.by_gen.get(msg.gen)
        if lc is None or not self._try_live(lc):
            return None
        # The room was closed while on_join ran. A first join did happen and ends here (the
        # participant runs its on_leave); a reconnect's leave was the closer's.
        return RoomClosed() if not lc.reconnect else _AlreadyLeft()

    def _try_live(self, lc: LocalConn) -> bool:
        """Ask Redis to make ``lc`` live (or to hold it for a handover); True when its member
        is gone (the room was closed), and ``lc`` is detached."""
        try:
            answer = self.store.complete_join(
                self.room, lc.pid, lc.gen, numbered=lc.resume is not None
            )
        except BackplaneUnavailable:
            # Joined in Redis's eyes as soon as it can be told; meanwhile its sends wait there.
            self._later(m.Flush(lc.pid, lc.gen))
            return False
        if answer.get("gone"):
            self.local.detach(lc)
            return True
        self._went_live(lc, answer)
        return False

    def _went_live(self, lc: LocalConn, answer: dict[str, Any]) -> None:
        if answer.get("wait"):
            # A replaced connection elsewhere still has to hand over what it never wrote.
            lc.awaiting_handover = True
            timer = gevent.get_hub().loop.timer(HANDOVER_WAIT)
            timer.start(partial(tell_quietly, self.actor_ref, m.HandoverLate(lc.pid, lc.gen)))
            return
        if not answer.get("ok"):
            return  # stale: replaced meanwhile
        self.local.go_live(lc, answer["tail"])
        if answer.get("back"):
            self._presence(lc.pid, Presence.ONLINE)
        frames = [OutFrame(text) for text in answer["frames"]]
        if lc.resume is not None:
            frames = self._numbered_backlog(lc, frames, answer.get("n"), answer.get("expired"))
        self._flush(lc, frames)

    def _numbered_backlog(
        self, lc: LocalConn, frames: list[OutFrame], seq: Any, expired: Any
    ) -> list[OutFrame]:
        """A resume connection goes live: this process holds its sequence from now on. The
        first time, the answer to its resume goes out before the replay; after a held flush,
        what queued meanwhile joins the log."""
        resume = lc.resume
        assert resume is not None
        if lc.log is None:
            log, answer, handled = continue_sequence(
                frames,
                seq,
                resume.last_seq,
                expired=bool(expired),
                max_frames=self.policy.max_queued_per_conn,
                max_bytes=resume.max_bytes,
            )
            lc.log = log
            # A fresh start's count is its participant's own from its first frame (it may have
            # handled some while this join waited for a handover), and it is answered nothing.
            if resume.last_seq is not None:
                resume.inbound.handled = handled
                lc.conn.push(resumed_frame(answer, handled))
            lc.conn = NumberedSink(lc.conn, lc)  # type: ignore[arg-type]
            lc.pushed = (answer.first_seq if answer is not None else 1) - 1
        elif not continue_held(lc.log, frames, seq or {}):
            lc.conn.close(4008, "slow consumer")
        return [numbered(frame, s) for s, frame in lc.log.after(lc.pushed)]

    def _flush(self, lc: LocalConn, frames: list[OutFrame]) -> None:
        conn = lc.conn
        for i, frame in enumerate(frames):
            if not conn.offer(frame):
                # The backlog is bigger than the outbox: the rest waits in Redis until it drains
                # (a resume connection's log keeps it: only what comes next goes to Redis).
                after = self.local.after(lc)
                self.local.pause(lc)
                if lc.log is not None:
                    lc.pushed = frame.seq - 1  # type: ignore[attr-defined]
                    meta = {"q": lc.log.next_seq, "h": 1}
                    self.store.hold(self.room, lc.pid, lc.gen, after, [], meta)
                else:
                    rest = [f.text for f in frames[i:]]
                    self.store.hold(self.room, lc.pid, lc.gen, after, rest)
                conn.when_drained(partial(tell_quietly, self.actor_ref, m.Flush(lc.pid, lc.gen)))
                return
        if frames and lc.log is not None and lc.log.half_full():
            conn.ask()  # a replay that fills half the log is acknowledged at once

    @handles(m.Flush)
    def _resume_flush(self, msg: m.Flush) -> None:
        self._retry_join(msg.gen)

    def _retry_join(self, gen: int) -> None:
        lc = self.local.by_gen.get(gen)
        if lc is not None and self._try_live(lc):
            lc.conn.close(4000, "room closed")

    @handles(m.FailJoin)
    def _fail_join(self, msg: m.FailJoin) -> None:
        lc = self.local.by_gen.get(msg.gen)
        if lc is not None:
            self.local.detach(lc)
        if self.store.fail_join(self.room, msg.pid, msg.gen):
            self._leave(msg.pid, msg.reason)
        self._reap_if_empty()

    # -- disconnects ------------------------------------------------------------------------

    @handles(m.Disconnect)
    def _disconnect(self, msg: m.Disconnect) -> None:
        lc = self.local.by_gen.get(msg.gen)
        if lc is None:
            return  # replaced (and handed over) or departed already
        self._offline(lc, msg.code, msg.reason)
        self._reap_if_empty()

    def _offline(
        self, lc: LocalConn, code: int, reason: str, through: StreamId | None = None
    ) -> None:
        after, meta, unsent = self._leftovers(lc, through)
        self.local.detach(lc)
        self._persist(self._report_offline, lc, after, code, reason, unsent, meta)

    def _leftovers(
        self, lc: LocalConn, through: StreamId | None = None
    ) -> tuple[str, dict[str, int] | None, list[str]]:
        """What a connection leaving this process hands to Redis: the last stream entry it
        accounted for, a resume connection's sequence, and what it never wrote (a resume
        connection: what it sent unacknowledged, which its log keeps). ``through``: an entry
        whose frame a resume connection's log took although its push failed."""
        taken = lc.conn.take_unsent()
        if lc.log is None:
            if lc.resume is not None:
                # Not live yet: what on_join sent it directly is let go, as in one process.
                return self.local.after(lc), None, []
            return self.local.after(lc), None, [f.text for f in taken]
        assert lc.resume is not None
        after = self.local.after(lc)
        if through is not None:
            after = format_id(max(through, lc.since, self.local.last_done))
        meta, unsent = hand_over(lc.log, lc.resume.inbound.handled)
        return after, meta, unsent

    def _report_offline(
        self,
        lc: LocalConn,
        after: str,
        code: int,
        reason: str,
        unsent: list[str],
        meta: dict[str, int] | None,
    ) -> None:
        # While this process leaves (``_depart``), another one runs the hooks: here the hub
        # calls they make would raise HubStopped.
        answer = self.store.go_offline(
            self.room,
            lc.pid,
            lc.gen,
            self.link.proc,
            after,
            code,
            reason,
            unsent,
            handoff=self._departing,
            meta=meta,
        )
        if "offline" in answer:
            self.link.wake_keeper()
            self._presence(lc.pid, Presence.OFFLINE)
        elif "left" in answer:
            self._leave(lc.pid, Disconnected(code, reason))

    # -- the room's stream --------------------------------------------------------------------

    @handles(m.StreamEntries)
    def _entries(self, msg: m.StreamEntries) -> None:
        local = self.local
        for sid, fields in msg.entries:
            entry = Entry.of(sid, fields)
            if entry.sid <= local.last_done:
                continue
            kind = entry.kind
            if kind == "b":
                self._fan_out(entry)
            elif kind == "s":
                lc = local.target(entry)
                if lc is not None and not lc.conn.push(OutFrame(entry.fields["f"])):
                    self._slow_consumer(lc, entry)
            elif kind == "r":
                self._replaced(entry)
            elif kind == "h":
                self._handed_over(entry)
            elif kind == "c":
                self._closed(entry)
            local.last_done = entry.sid
        self._reap_if_empty()

    def _fan_out(self, entry: Entry) -> None:
        fields = entry.fields
        x = fields.get("x", "[]")
        exclude = frozenset(_json_list(x)) if x != "[]" else frozenset()
        frame = OutFrame(fields["f"])  # framed once per process, the same bytes for every member
        targets = self.local.broadcast_targets(entry, exclude)
        for lc in [lc for lc in targets if not lc.conn.push(frame)]:
            self._slow_consumer(lc, entry)

    def _slow_consumer(self, lc: LocalConn, entry: Entry) -> None:
        # The connection closed itself with 4008; what it missed from this entry on goes to its
        # queue in Redis (``after`` is the last entry finished before this one). A resume
        # connection's log numbered this entry's frame already (kept, or counted as lost).
        self._offline(lc, 4008, "slow consumer", entry.sid if lc.log is not None else None)

    def _replaced(self, entry: Entry) -> None:
        old = self.local.by_gen.get(int(entry.fields.get("g", "0")))
        if old is None or old.since >= entry.sid:
            return
        # Closed first: its participant hands nothing more to on_message (``_leftovers``
        # reads how far it got).
        old.conn.close(4001, "replaced")
        after, meta, unsent = self._leftovers(old)
        self.local.detach(old)
        self._persist(
            self.store.handover, self.room, old.pid, self.link.proc, old.gen, after, unsent, meta
        )

    def _handed_over(self, entry: Entry) -> None:
        lc = self.local.by_gen.get(int(entry.fields.get("g", "0")))
        if lc is not None and lc.awaiting_handover:
            lc.awaiting_handover = False
            self._retry_join(lc.gen)

    @handles(m.HandoverLate)
    def _handover_late(self, msg: m.HandoverLate) -> None:
        lc = self.local.by_gen.get(msg.gen)
        if lc is None or not lc.awaiting_handover:
            return
        logger.warning(
            "room %r: no handover for %r within %.0fs; going live without it",
            self.room,
            lc.pid,
            HANDOVER_WAIT,
        )
        self.store.drop_handovers(self.room, lc.pid)
        lc.awaiting_handover = False
        self._retry_join(lc.gen)

    def _closed(self, entry: Entry) -> None:
        code = int(entry.fields.get("code", "4000"))
        why = entry.fields.get("why", "room closed")
        for lc in self.local.older_than(entry):
            lc.conn.close(code, why)
            self.local.detach(lc)

    @handles(m.Evicted)
    def _evicted(self, _msg: m.Evicted) -> None:
        # Redis holds these members OFFLINE already (their grace runs): nothing to report.
        for lc in list(self.local.by_gen.values()):
            lc.conn.close(1012, "reconnect")
            self.local.detach(lc)
        self._unreported.clear()
        self._reap_if_empty()

    # -- leaving this process -------------------------------------------------------------------

    @handles(m.CloseRoom)
    def _depart(self, msg: m.CloseRoom) -> list[gevent.Greenlet[Any, Any]]:
        """``stop()`` on a backplane: this process leaves; its connections close with
        ``msg.code`` and go OFFLINE for their grace, as if dropped (no ``on_leave``)."""
        self.closed = True
        self._departing = True
        for lc in list(self.local.by_gen.values()):
            lc.conn.close(msg.code, msg.text)
            try:
                self._offline(lc, msg.code, msg.text)
            except Exception:  # noqa: BLE001 -- Redis away: the survivors' reaper ends them
                logger.warning("room %r: could not hand %r to the backplane", self.room, lc.pid)
        self._unsubscribe()
        return list(self._hooks_running)

    # -- bookkeeping ----------------------------------------------------------------------------

    def _persist(self, report: Callable[..., Any], *args: Any) -> None:
        """Tell the backplane of a change it must not miss (a connection gone, a handover):
        while Redis is away, retry every ``RETRY_EVERY`` seconds, in order, until it is back."""
        if self._unreported:
            self._unreported.append((report, args))
            return
        try:
            report(*args)
        except BackplaneUnavailable:
            self._unreported.append((report, args))
            self._retry_later()

    def _retry_later(self) -> None:
        self._later(m.RetryReports())

    def _later(self, msg: Any) -> None:
        timer = gevent.get_hub().loop.timer(RETRY_EVERY)
        timer.start(partial(tell_quietly, self.actor_ref, msg))

    @handles(m.RetryReports)
    def _retry_reports(self, _msg: m.RetryReports) -> None:
        while self._unreported:
            report, args = self._unreported[0]
            try:
                report(*args)
            except BackplaneUnavailable:
                self._retry_later()
                return
            self._unreported.popleft()
        self._reap_if_empty()

    def _reap_if_empty(self) -> None:
        if self.local.empty and not self.closed and not self._unreported:
            self.closed = True
            self._unsubscribe()
            self.hub.tell(m.RoomGone(self.room, self.actor_ref))

    def _unsubscribe(self) -> None:
        if self._subscribed:
            self._subscribed = False
            self.link.unsubscribe(self.room, self.actor_ref)

    def _presence(self, pid: ParticipantID, presence: Presence) -> None:
        on_presence = getattr(self.hooks, "on_presence", None)
        if on_presence is not None:
            self._track(spawn_hook("on_presence", on_presence, self.room, pid, presence))

    def _leave(self, pid: ParticipantID, reason: BaseException) -> None:
        self._track(spawn_hook("on_leave", self.hooks.on_leave, self.room, pid, reason))

    def _track(self, greenlet: gevent.Greenlet[Any, Any]) -> None:
        self._hooks_running.add(greenlet)
        greenlet.rawlink(self._hooks_running.discard)


class _AlreadyLeft(RoomClosed):
    """The room closed while a reconnect's ``on_join`` ran: its ``on_leave`` ran where the room
    was closed; the participant only closes its connection."""

    already_left = True


def _json_list(text: str) -> list[str]:
    value = json.loads(text)
    return value if isinstance(value, list) else []
