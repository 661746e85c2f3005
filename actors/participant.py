"""The participant actor: one connection's join, its inbound frames and its hook calls."""

from __future__ import annotations

import logging
from typing import Any

import gevent.lock
import pykka

from wsroom.envelope import decode, error_frame
from wsroom.errors import BadEnvelope, CloseConnection, HubStopped, WsroomError
from wsroom.hooks import Client, HookSet
from wsroom.types import Identity, JoinContext, ParticipantID, RoomID

from . import messages as m
from .hookcall import call_hook, log_hook_error
from .runtime import GeventActor
from .state import JoinTicket

__all__ = ["INBOUND_WINDOW", "ParticipantActor"]

logger = logging.getLogger("wsroom.actors")

INBOUND_WINDOW = 64
"""Frames read but not yet handled, per connection; past it the reader stops reading, so a fast
sender meets TCP backpressure instead of growing the actor's (unbounded) inbox."""

_JOIN_ATTEMPTS = 16
LEAVE_WAIT = 10.0
"""Seconds a join waits for the same participant's previous ``on_leave`` to return."""


class ParticipantActor(GeventActor):
    """Owns one connection's life as a member: join, ``on_join``, ``on_message`` in frame order,
    and the report of its end to the room. Asks go upward only (hub, room), never back to it."""

    def __init__(
        self,
        hub: pykka.ActorRef[Any],
        hooks: HookSet,
        room: RoomID,
        pid: ParticipantID,
        identity: Identity,
        conn: Any,
        window: gevent.lock.Semaphore,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.hooks = hooks
        self.room = room
        self.pid = pid
        self.identity = identity
        self.conn = conn
        self.window = window
        self._room_ref: pykka.ActorRef[Any] | None = None
        self._ticket: JoinTicket[Any] | None = None
        self._member = False  # on_join returned and the room took us

    def on_receive(self, message: Any) -> Any:
        try:
            self._dispatch(message)
        except Exception:
            # Hooks are already fenced; this is a bug of ours. Close rather than die silently.
            logger.exception("participant %r of room %r failed on %r", self.pid, self.room, message)
            self.conn.close(1011, "internal error")

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, m.Frame):
            self.window.release()
            if self._member and not self.conn.closing:
                self._on_frame(message.text)
        elif isinstance(message, m.Start):
            self._join()
        elif isinstance(message, m.Ended):
            self._ended(message)
        elif isinstance(message, m.Shutdown):
            self.conn.close(1001, "hub stopped")

    # -- join -----------------------------------------------------------------------------

    def _join(self) -> None:
        try:
            self._ticket = self._begin_join()
        except HubStopped:
            self.conn.close(1001, "hub stopped")
            return
        ticket = self._ticket
        # Lets this participant's hooks reach their own room without the hub (Hub._own_room).
        self.greenlet.wsroom_room = (self.hub, self.room, self._room_ref)
        jc = JoinContext(self.room, self.pid, self.identity, ticket.reconnect)
        exc = call_hook(self.hooks.on_join, jc, Client(self.conn))
        if exc is not None:
            self._reject(exc)
            return
        assert self._room_ref is not None
        try:
            closed = self._room_ref.ask(m.CompleteJoin(self.pid, ticket.gen))
        except pykka.ActorDeadError:
            closed = HubStopped()
        if closed is not None:
            # The room was closed while on_join ran: the join did happen, so it ends here.
            self.conn.close(1001 if isinstance(closed, HubStopped) else 4000, str(closed))
            exc = call_hook(self.hooks.on_leave, self.room, self.pid, closed)
            if exc is not None:
                log_hook_error("on_leave", exc)
            return
        self._member = True

    def _begin_join(self) -> JoinTicket[Any]:
        for _ in range(_JOIN_ATTEMPTS):
            try:
                room_ref: pykka.ActorRef[Any] = self.hub.ask(m.OpenRoom(self.room))  # type: ignore[assignment]
                self._room_ref = room_ref
            except pykka.ActorDeadError:
                raise HubStopped() from None
            try:
                admission: m.Admission = room_ref.ask(m.BeginJoin(self.pid, self.conn))  # type: ignore[assignment]
            except (m.RoomIsGone, pykka.ActorDeadError):
                continue  # reaped between the two asks; the hub makes a new one
            if admission.after is not None:
                # The previous membership's on_leave still runs: the application sees it end
                # before this join begins.
                admission.after.join(timeout=LEAVE_WAIT)
            ticket: JoinTicket[Any] = admission.ticket
            return ticket
        raise WsroomError(f"room {self.room!r} kept disappearing during the join")

    def _reject(self, exc: BaseException) -> None:
        if isinstance(exc, CloseConnection):
            self.conn.close(exc.code, exc.reason)
        else:
            log_hook_error("on_join", exc)
            self.conn.close(1008, "join rejected")
        assert self._room_ref is not None and self._ticket is not None
        self._tell_room(m.FailJoin(self.pid, self._ticket.gen, exc))

    # -- frames -------------------------------------------------------------------------

    def _on_frame(self, text: str) -> None:
        try:
            envelope = decode(text)
        except BadEnvelope as bad:
            if not self.conn.push(error_frame("bad_envelope", str(bad))):
                self.conn.close(4008, "slow consumer")
            return
        exc = call_hook(self.hooks.on_message, self.room, self.pid, envelope)
        if exc is None:
            return
        if isinstance(exc, CloseConnection):
            self.conn.close(exc.code, exc.reason)
        else:
            log_hook_error("on_message", exc)
            self.conn.close(1011, "on_message failed")

    # -- end ------------------------------------------------------------------------------

    def _ended(self, msg: m.Ended) -> None:
        if self._ticket is not None:
            self._tell_room(m.Disconnect(self.pid, self._ticket.gen, msg.code, msg.reason))
        try:
            self.hub.tell(m.ParticipantEnded(self.actor_ref))
        except pykka.ActorDeadError:
            pass

    def _tell_room(self, msg: Any) -> None:
        if self._room_ref is None:
            return
        try:
            self._room_ref.tell(msg)
        except pykka.ActorDeadError:
            pass  # the room was closed or the hub stopped: nothing left to report to
