"""The room actor: one room's membership, grace timers, offline queues and fan-out."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import gevent
import pykka

from wsroom.errors import ParticipantOffline, RoomNotFound
from wsroom.hooks import HookSet
from wsroom.types import BroadcastReport, Delivery, ParticipantID, Presence, ReconnectPolicy, RoomID

from . import messages as m
from .hookcall import call_hook, log_hook_error, spawn_hook
from .resume import resumed_frame
from .runtime import GeventActor, handles, tell_quietly
from .state import Leave, NumberedSink, RoomState

__all__ = ["RoomActor"]

logger = logging.getLogger("wsroom.actors")

SLOW_CONSUMER = (4008, "slow consumer")
YIELD_EVERY = 64
"""Messages a room handles in a row before it lets other greenlets run."""


class RoomActor(GeventActor):
    """Owns one ``RoomState``; hands encoded frames straight to each member's outbox.

    It never asks another actor (so hooks calling back into it cannot deadlock) and runs
    ``on_leave`` in greenlets of their own.
    """

    def __init__(
        self,
        room: RoomID,
        hub: pykka.ActorRef[Any],
        hooks: HookSet,
        policy: ReconnectPolicy,
        leaving: dict[ParticipantID, gevent.Greenlet[Any, Any]] | None = None,
    ) -> None:
        super().__init__()
        # on_leave greenlets still running, by participant: a new join of the same participant
        # waits for its leave, so the application sees leave, then join. Each greenlet removes
        # itself when it ends (``_note_leaving``), so a mass leave stays O(n).
        self._leaving: dict[ParticipantID, gevent.Greenlet[Any, Any]] = {}
        for pid, greenlet in (leaving or {}).items():
            if not greenlet.dead:
                self._note_leaving(pid, greenlet)
        self.room = room
        self.hub = hub
        self.hooks = hooks
        self.state: RoomState[Any] = RoomState(policy, time.monotonic)
        self._timer: Any = None
        self._timer_at: float | None = None
        # Hook greenlets still running (for stop() to wait on); each leaves the set when it
        # ends, so tracking one costs O(1) whatever the room's size.
        self._hooks_running: set[gevent.Greenlet[Any, Any]] = set()
        self._handled = 0  # messages handled since this loop last let other greenlets run
        # Why the room closed, for a join whose on_join was still running then.
        self._closed_reason: BaseException | None = None

    def on_receive(self, message: Any) -> Any:
        # A room may have thousands of messages queued (10,000 members closing at once): it
        # lets other greenlets (the on_leave hooks it spawned, new clients) run every
        # YIELD_EVERY messages, instead of working through its whole inbox in one go. A
        # counter per message, so the fan-out path pays nothing measurable.
        self._handled += 1
        if self._handled >= YIELD_EVERY:
            self._handled = 0
            gevent.sleep(0)
        return super().on_receive(message)

    def after_message(self) -> None:
        if self.state.overflowed:
            self._overflowed()
        # Presence news from whatever the message changed, announced once it is handled.
        changes = self.state.take_presence_changes()
        if not changes:
            return
        on_presence = getattr(self.hooks, "on_presence", None)
        if on_presence is None:
            return
        for pid, presence in changes:
            self._track(spawn_hook("on_presence", on_presence, self.room, pid, presence))

    # -- joins ----------------------------------------------------------------------------

    @handles(m.BeginJoin)
    def _begin_join(self, msg: m.BeginJoin) -> m.Admission:
        if self.state.closed:
            raise m.RoomIsGone(self.room)
        member = self.state.members.get(msg.pid)
        old = member.conn if member is not None else None
        # What the old connection never wrote goes to the new one, after its on_join.
        unsent = old.take_unsent() if old is not None else ()
        ticket = self.state.begin_join(msg.pid, msg.conn, msg.resume, unsent)
        if old is not None:
            # At once: begin_join took what its participant handed to on_message as final.
            old.close(4001, "replaced")
        if ticket.answer is not None:
            # The answer to a resume goes first; the replay follows on_join's own sends.
            assert msg.resume is not None
            msg.conn.push(resumed_frame(ticket.answer, msg.resume.inbound.handled))
        self._rearm()
        after = self._leaving.pop(msg.pid, None)
        return m.Admission(ticket, after if after is not None and not after.dead else None)

    @handles(m.CompleteJoin)
    def _complete_join(self, msg: m.CompleteJoin) -> BaseException | None:
        if self.state.closed:
            return self._closed_reason
        had_members = self.state.has_members
        backlog = self.state.complete_join(msg.pid, msg.gen)
        if backlog is None:
            return None
        if not had_members:
            self.hub.tell(m.RoomActive(self.room))
        self._flush(msg.pid, msg.gen, backlog)
        return None

    def _flush(self, pid: ParticipantID, gen: int, backlog: list[Any]) -> None:
        """Hand the backlog to the connection in order. A backlog larger than the outbox is no
        slow consumer: the rest waits in the queue (and new sends behind it) until the
        connection's writer reports the outbox drained."""
        conn = self.state.live[pid]
        for i, frame in enumerate(backlog):
            if not conn.offer(frame):
                self.state.hold(pid, backlog[i:])
                conn.when_drained(partial(tell_quietly, self.actor_ref, m.Flush(pid, gen)))
                return
        if backlog and type(conn) is NumberedSink and conn.log.half_full():
            conn.ask()  # a replay that fills half the log is acknowledged at once

    @handles(m.Flush)
    def _resume_flush(self, msg: m.Flush) -> None:
        backlog = self.state.complete_join(msg.pid, msg.gen)
        if backlog is not None:
            self._flush(msg.pid, msg.gen, backlog)

    @handles(m.FailJoin)
    def _fail_join(self, msg: m.FailJoin) -> None:
        self._leave(self.state.fail_join(msg.pid, msg.gen, msg.reason))

    # -- disconnects and grace -------------------------------------------------------------

    @handles(m.Disconnect)
    def _disconnect(self, msg: m.Disconnect) -> None:
        conn = self.state.connection_of(msg.pid, msg.gen)
        if conn is None:
            return  # a stale report: replaced meanwhile, or already ended
        unsent = conn.take_unsent()
        self._leave(self.state.disconnect(msg.pid, msg.gen, msg.code, msg.reason, unsent))
        self._rearm()

    def _slow_consumer(self, pid: ParticipantID, conn: Any) -> None:
        # The connection closed itself with 4008 when its outbox overflowed; what it had not
        # written waits in the offline queue for the reconnect.
        member = self.state.members[pid]
        unsent = conn.take_unsent()
        self._leave(self.state.disconnect(pid, member.gen, *SLOW_CONSUMER, unsent))
        self._rearm()

    @handles(m.Expire)
    def _expire(self, _msg: m.Expire) -> None:
        self._timer_at = None
        for leave in self.state.expire():
            self._leave(leave)
        self._rearm()

    def _rearm(self) -> None:
        # One timer per room, set for the earliest grace deadline: no sleeping greenlet per member.
        deadline = self.state.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = gevent.get_hub().loop.timer(max(deadline - time.monotonic(), 0.0))
            self._timer.start(self._fire)

    def _fire(self) -> None:
        tell_quietly(self.actor_ref, m.Expire())

    # -- delivery ------------------------------------------------------------------------

    @handles(m.SendTo)
    def _send_to(self, msg: m.SendTo) -> Delivery:
        if not self.state.has_members:
            raise RoomNotFound()
        frame = msg.frame
        target = self.state.route(msg.pid, frame)
        if isinstance(target, Delivery):
            return target
        if target.push(frame):
            return Delivery.SENT
        self._slow_consumer(msg.pid, target)
        if type(target) is NumberedSink:
            if target.kept:  # numbered and kept in the log: it waits there for the resume
                return Delivery.QUEUED
            raise ParticipantOffline()
        queued = self.state.route(msg.pid, frame)
        if queued is not Delivery.QUEUED:  # pragma: no cover - the member is offline now
            raise ParticipantOffline()
        return Delivery.QUEUED

    @handles(m.Broadcast)
    def _broadcast(self, msg: m.Broadcast) -> BroadcastReport:
        state = self.state
        if not state.has_members:
            raise RoomNotFound()
        frame = msg.frame  # framed once, the same bytes for every member
        exclude = msg.exclude
        sent = 0
        stalled: list[tuple[ParticipantID, Any]] = []
        for pid, conn in state.live.items():
            if exclude and pid in exclude:
                continue
            if conn.push(frame):
                sent += 1
            else:
                stalled.append((pid, conn))
        numbered: list[Any] | None = None
        for pid, conn in stalled:
            self._slow_consumer(pid, conn)
            if type(conn) is NumberedSink:
                numbered = numbered or []
                numbered.append((pid, conn))
        if numbered is not None:
            # Numbered already: kept in their logs for the resume, or lost; not queued again.
            exclude = exclude | {pid for pid, _ in numbered}
        queued, dropped = state.queue_for_waiting(frame, exclude)
        if numbered is not None:
            queued += sum(1 for _, conn in numbered if conn.kept)
            dropped.extend(pid for pid, conn in numbered if not conn.kept)
        return BroadcastReport(sent=sent, queued=queued, dropped=tuple(dropped))

    def _overflowed(self) -> None:
        # Resume members that lost a frame while still connected (their backlog being
        # flushed): a hole in a live stream is not allowed, so they go as slow consumers and
        # learn of the gap when they resume.
        for member in self.state.take_overflowed():
            conn = self.state.connection_of(member.pid, member.gen)
            if conn is not None:
                conn.close(*SLOW_CONSUMER)
                self._leave(
                    self.state.disconnect(
                        member.pid, member.gen, *SLOW_CONSUMER, conn.take_unsent()
                    )
                )
                self._rearm()

    @handles(m.Members)
    def _members(self, _msg: m.Members) -> dict[ParticipantID, Presence]:
        if not self.state.has_members:
            raise RoomNotFound()
        return self.state.presence()

    # -- the room as a whole --------------------------------------------------------------

    @handles(m.CloseRoom)
    def _close_room(self, msg: m.CloseRoom) -> list[gevent.Greenlet[Any, Any]]:
        """Close every connection with ``msg.code``, end every membership; answer the hook
        greenlets still running (``stop()`` waits for them)."""
        if self.state.closed and not msg.must_exist:
            # Emptied already (its RoomGone crossed the hub's stop): nothing is left to close,
            # only its on_leave greenlets to wait for.
            return list(self._hooks_running)
        if self.state.closed or (msg.must_exist and not self.state.has_members):
            raise RoomNotFound()
        self._closed_reason = msg.reason()
        conns, leaves = self.state.close_all(msg.reason)
        for conn in conns:
            conn.close(msg.code, msg.text)
        self._leave_together(leaves)
        self._rearm()
        self.hub.tell(m.RoomGone(self.room, self.actor_ref, dict(self._leaving)))
        return list(self._hooks_running)

    def _leave(self, leave: Leave | None) -> None:
        if leave is not None:
            greenlet = spawn_hook(
                "on_leave", self.hooks.on_leave, self.room, leave.pid, leave.reason
            )
            self._track(greenlet)
            self._note_leaving(leave.pid, greenlet)
        if self.state.is_empty and not self.state.closed:
            self.state.closed = True
            self._closed_reason = None
            # Once per room's life: the copy is O(n) once, not per leave.
            self.hub.tell(m.RoomGone(self.room, self.actor_ref, dict(self._leaving)))

    def _leave_together(self, leaves: list[Leave]) -> None:
        # A closing room's on_leave calls run one after another in one greenlet of their own:
        # one greenlet to schedule instead of 10,000, so they are not left behind the
        # sockets' closing work (stop() waits for them only until its deadline).
        if not leaves:
            return
        hooks, room = self.hooks, self.room

        def run() -> None:
            for leave in leaves:
                exc = call_hook(hooks.on_leave, room, leave.pid, leave.reason)
                if exc is not None:
                    log_hook_error("on_leave", exc)

        greenlet = gevent.spawn(run)
        self._track(greenlet)
        for leave in leaves:
            self._note_leaving(leave.pid, greenlet)

    def _note_leaving(self, pid: ParticipantID, greenlet: gevent.Greenlet[Any, Any]) -> None:
        # The entry goes when its hook ends, unless a newer leave of pid replaced it meanwhile.
        self._leaving[pid] = greenlet

        def done(ended: gevent.Greenlet[Any, Any]) -> None:
            if self._leaving.get(pid) is ended:
                del self._leaving[pid]

        greenlet.rawlink(done)

    def _track(self, greenlet: gevent.Greenlet[Any, Any]) -> None:
        # Kept so stop() can wait for the hooks still running; each lets itself go as it ends.
        self._hooks_running.add(greenlet)
        greenlet.rawlink(self._hooks_running.discard)

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.close()
