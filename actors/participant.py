"""The participant actor: one connection's join, its inbound frames and its hook calls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from wsroom.envelope import decode, error_frame
from wsroom.errors import (
    BackplaneUnavailable,
    BadEnvelope,
    CloseConnection,
    HubStopped,
    WsroomError,
)
from wsroom.hooks import Client, HookSet
from wsroom.types import Identity, JoinContext, ParticipantID, RoomID
from wsroom.wire import OutFrame

from . import messages as m
from .hookcall import HookRoom, call_hook, hook_room, log_hook_error
from .runtime import TellOnlyActor, handles, tell_quietly
from .state import JoinTicket

__all__ = ["LEAVE_WAIT", "ParticipantActor"]

logger = logging.getLogger("wsroom.actors")

_JOIN_ATTEMPTS = 16
LEAVE_WAIT = 10.0
"""Seconds a join waits for the same participant's previous ``on_leave`` to return."""


class ParticipantActor(TellOnlyActor):
    """Owns one connection's life as a member: join, ``on_join``, ``on_message`` in frame order,
    and the report of its end to the room. Asks go upward only (hub, room), never back to it.

    ``conn`` is the connection's entry points (``push``, ``close``, ``closed_by_server``);
    ``frame_done`` is called once per inbound frame handled, to reopen the reader's window.

    Only ever told (``Start``, ``Inbound``, ``Ended``, ``Shutdown``), so a ``TellOnlyActor``:
    no greenlet while the connection is quiet. Not in pykka's registry; the hub actor keeps
    the set of them. ``hook_room``, set once joined, stays set across its drain greenlets (they
    share one context).
    """

    def __init__(
        self,
        hub: pykka.ActorRef[Any],
        hooks: HookSet,
        room: RoomID,
        pid: ParticipantID,
        identity: Identity,
        conn: Any,
        frame_done: Callable[[], None],
    ) -> None:
        super().__init__()
        self.hub = hub
        self.hooks = hooks
        self.room = room
        self.pid = pid
        self.identity = identity
        self.conn = conn
        self.frame_done = frame_done
        self._room_ref: pykka.ActorRef[Any] | None = None
        self._ticket: JoinTicket[Any] | None = None
        self._member = False  # on_join returned and the room took us

    def on_tell_failed(self, message: Any, exc: Exception) -> None:
        # Hooks are already fenced; this is a bug of ours. Close rather than die silently.
        super().on_tell_failed(message, exc)
        self.conn.close(1011, "internal error")

    @handles(m.Inbound)
    def _inbound(self, message: m.Inbound) -> None:
        self.frame_done()
        if self._member and not self.conn.closed_by_server:
            self._on_frame(message.text)

    @handles(m.Shutdown)
    def _shutdown(self, _message: m.Shutdown) -> None:
        self.conn.close(1001, "hub stopped")

    # -- join -----------------------------------------------------------------------------

    @handles(m.Start)
    def _join(self, _message: m.Start) -> None:
        try:
            ticket = self._ticket = self._begin_join()
        except HubStopped:
            self.conn.close(1001, "hub stopped")
            return
        except BackplaneUnavailable:
            self.conn.close(1013, "backplane unavailable")
            return
        assert self._room_ref is not None
        hook_room.set(HookRoom(self.hub, self.room, self._room_ref))
        jc = JoinContext(self.room, self.pid, self.identity, ticket.reconnect)
        exc = call_hook(self.hooks.on_join, jc, Client(self.conn))
        if exc is not None:
            self._reject(exc)
            return
        try:
            closed = self._room_ref.ask(m.CompleteJoin(self.pid, ticket.gen))
        except pykka.ActorDeadError:
            closed = HubStopped()
        if closed is not None:
            # The room was closed while on_join ran: the join did happen, so it ends here.
            self.conn.close(1001 if isinstance(closed, HubStopped) else 4000, str(closed))
            if getattr(closed, "already_left", False):
                return  # a reconnect of a shared room: its on_leave ran where it was closed
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
        assert self._ticket is not None
        self._tell_room(m.FailJoin(self.pid, self._ticket.gen, exc))

    # -- frames -------------------------------------------------------------------------

    def _on_frame(self, text: str) -> None:
        try:
            envelope = decode(text)
        except BadEnvelope as bad:
            self.conn.push(OutFrame(error_frame("bad_envelope", str(bad))))
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

    @handles(m.Ended)
    def _ended(self, msg: m.Ended) -> None:
        if self._ticket is not None:
            self._tell_room(m.Disconnect(self.pid, self._ticket.gen, msg.code, msg.reason))
        tell_quietly(self.hub, m.ParticipantEnded(self.actor_ref))

    def _tell_room(self, msg: Any) -> None:
        # The room may be closed, or the hub stopped: then nothing is left to report to.
        if self._room_ref is not None:
            tell_quietly(self._room_ref, msg)
