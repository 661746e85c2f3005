"""The participant actor: one connection's join, its inbound frames and its hook calls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import pykka
from gevent import GreenletExit

from wsroom.envelope import Envelope, decode, error_frame
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
from .resume import (
    Ack,
    ClientAcks,
    InboundOrder,
    NumberedJoin,
    Verdict,
    ack_frame,
    read_numbered,
    read_resume,
)
from .runtime import TellOnlyActor, handles, tell_quietly
from .state import JoinTicket

__all__ = ["ACK_EVERY", "FIRST_FRAME_WAIT", "LEAVE_WAIT", "ParticipantActor"]

logger = logging.getLogger("wsroom.actors")

_JOIN_ATTEMPTS = 16
LEAVE_WAIT = 10.0
"""Seconds a join waits for the same participant's previous ``on_leave`` to return."""
FIRST_FRAME_WAIT = 5.0
"""Seconds a resume connection's join waits for its first frame (a ``wsroom.resume``, or else
a fresh start) before it starts afresh."""
ACK_EVERY = 32
"""A resume connection's envelopes handled before the hub acknowledges them, at the latest;
it also does whenever it has handled all it was given."""


class _Numbered:
    """A resume connection's side of contract §7, kept by its participant."""

    __slots__ = ("acks", "first_wait", "last_seq", "order", "unacked")

    def __init__(self) -> None:
        self.order = InboundOrder()  # which cseq reached on_message (the room sets its start)
        self.acks = ClientAcks()  # the client's acks, for the room (the reader writes most)
        self.first_wait: Any = None  # the timer while the first frame is awaited
        self.last_seq: int | None = None  # what the first frame asked to resume from
        self.unacked = 0  # envelopes judged since the hub last acknowledged


class ParticipantActor(TellOnlyActor):
    """Owns one connection's life as a member: join, ``on_join``, ``on_message`` in frame order,
    and the report of its end to the room. Asks go upward only (hub, room), never back to it.

    ``conn`` is the connection's entry points (``push``, ``close``, ``closed_by_server``);
    ``frame_done`` is called once per inbound frame handled, to reopen the reader's window.

    Only ever told (``Start``, ``Inbound``, ``Ended``, ``Shutdown``), so a ``TellOnlyActor``:
    no greenlet while the connection is quiet. Not in pykka's registry; the hub actor keeps
    the set of them. ``hook_room``, set once joined, stays set across its drain greenlets (they
    share one context).

    A resume connection (contract §7, ``conn.resume``) is told ``NumberedInbound`` instead: its
    first frame decides between a resume and a fresh start, acks go to the room, and each
    ``cseq`` reaches ``on_message`` once (its ``InboundOrder`` starts where the membership's
    last connection stopped: the room sets it at ``BeginJoin``).
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
        # A resume connection's state (contract §7); one attribute for a plain one.
        self._numbered = _Numbered() if getattr(conn, "resume", False) else None

    @property
    def client_acks(self) -> ClientAcks | None:
        """A resume connection's cell for its client's acks (None for a plain one): the
        connection's reader notes the acks it recognises there itself (``quick_ack``)."""
        numbered = self._numbered
        return numbered.acks if numbered is not None else None

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
    def _start(self, message: m.Start) -> None:
        numbered = self._numbered
        if numbered is None:
            self._join(message)
            return
        # A resume connection: its first frame says whether it resumes; wait for it, bounded.
        timer = gevent.get_hub().loop.timer(FIRST_FRAME_WAIT)
        timer.start(tell_quietly, self, m.FirstFrameLate())
        numbered.first_wait = timer

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
                begin = m.BeginJoin(self.pid, self.conn, self._resume())
                admission: m.Admission = room_ref.ask(begin)  # type: ignore[assignment]
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
        self._call_on_message(envelope)

    def _call_on_message(self, envelope: Envelope) -> None:
        # call_hook's fence, inline: no bound method or argument tuple is made per message, to
        # live while the hook waits on a room (more objects in flight for the garbage collector).
        try:
            self.hooks.on_message(self.room, self.pid, envelope)
        except GreenletExit:
            raise
        except BaseException as exc:  # noqa: BLE001 -- as call_hook: it would stop every actor
            if isinstance(exc, CloseConnection):
                self.conn.close(exc.code, exc.reason)
            else:
                log_hook_error("on_message", exc)
                self.conn.close(1011, "on_message failed")

    # -- a resume connection's frames (contract §7) ----------------------------------------

    def _resume(self) -> NumberedJoin | None:
        numbered = self._numbered
        if numbered is None:
            return None
        max_bytes = self.conn.options.outbox_max_bytes
        return NumberedJoin(numbered.last_seq, numbered.order, max_bytes, numbered.acks)

    @handles(m.FirstFrameLate)
    def _first_frame_late(self, _message: m.FirstFrameLate) -> None:
        numbered = self._numbered
        if numbered is not None and numbered.first_wait is not None:
            numbered.first_wait = None
            self._join(m.Start())

    @handles(m.NumberedInbound)
    def _numbered_inbound(self, message: m.NumberedInbound) -> None:
        self.frame_done()
        numbered = self._numbered
        assert numbered is not None
        if numbered.first_wait is not None:
            # The first frame: a resume, or a fresh start and then an ordinary frame.
            numbered.first_wait.close()
            numbered.first_wait = None
            numbered.last_seq = read_resume(message.text)
            self._join(m.Start())
            if numbered.last_seq is not None:
                return
        if self._member and not self.conn.closed_by_server:
            self._on_numbered(message.text)

    def _on_numbered(self, text: str) -> None:
        try:
            item = read_numbered(text)
        except BadEnvelope as bad:
            self.conn.push(OutFrame(error_frame("bad_envelope", str(bad))))
            return
        numbered = self._numbered
        assert numbered is not None
        if isinstance(item, Ack):
            numbered.acks.note(item.seq)  # one the reader did not recognise (quick_ack)
            return
        order = numbered.order
        verdict = order.check(item.cseq)
        if verdict is Verdict.GAP:
            detail = f"cseq {item.cseq} after {order.handled}: envelopes are missing"
            self.conn.push(OutFrame(error_frame("bad_cseq", detail)))
            self.conn.close(1008, "cseq out of order")
            return
        if verdict is Verdict.HANDLE:
            envelope = item.envelope
            if isinstance(envelope, BadEnvelope):
                self.conn.push(OutFrame(error_frame("bad_envelope", str(envelope))))
            else:
                self._call_on_message(envelope)
        # Acknowledged in batches: every ACK_EVERY, and whenever nothing else waits in the
        # inbox (a duplicate too: the client drops its copy).
        numbered.unacked += 1
        if numbered.unacked >= ACK_EVERY or not self._inbox:
            numbered.unacked = 0
            self.conn.push(ack_frame(order.handled))

    # -- end ------------------------------------------------------------------------------

    @handles(m.Ended)
    def _ended(self, msg: m.Ended) -> None:
        numbered = self._numbered
        if numbered is not None and numbered.first_wait is not None:
            numbered.first_wait.close()
            numbered.first_wait = None
        if self._ticket is not None:
            self._tell_room(m.Disconnect(self.pid, self._ticket.gen, msg.code, msg.reason))
        tell_quietly(self.hub, m.ParticipantEnded(self.actor_ref))

    def _tell_room(self, msg: Any) -> None:
        # The room may be closed, or the hub stopped: then nothing is left to report to.
        if self._room_ref is not None:
            tell_quietly(self._room_ref, msg)
