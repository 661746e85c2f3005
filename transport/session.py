"""One connection's session: the checks before the upgrade, the upgrade, its participant actor,
the read loop feeding it, and the report of the end.

``Hub.handle_ws`` calls ``serve_session`` and blocks in it (cooperatively) for the connection's
life; the handler greenlet it runs in is the connection's reader.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import gevent.lock
import pykka

from wsroom.actors import messages as m
from wsroom.actors.participant import ParticipantActor
from wsroom.actors.resume import ClientAcks, quick_ack
from wsroom.errors import HandshakeRejected, HubStopped, MissingParticipantID, ResolverRejected
from wsroom.hooks import HookSet, Resolver
from wsroom.types import Identity, ParticipantID, RoomID

from ._simple_websocket import request_socket
from .connection import Connection, ConnectionOptions
from .handshake import UpgradeRules, check_upgrade

__all__ = ["EXHAUSTED", "EXHAUSTED_REASON", "INBOUND_WINDOW", "serve_session"]

logger = logging.getLogger("wsroom.transport")

INBOUND_WINDOW = 64
"""Frames read but not yet handled, per connection; past it the reader stops reading, so a fast
sender meets TCP backpressure instead of growing the participant actor's (unbounded) inbox."""

EXHAUSTED_REASON = "the server is out of file descriptors; try again later"
"""The 503's reason when the process has no descriptor left (never the OS error's text)."""

EXHAUSTED = (errno.EMFILE, errno.ENFILE)
"""The errors of a process (or system) out of file descriptors."""

_WINDOW_POLL = 0.5  # how often a reader waiting for room checks that its participant still runs


def serve_session(
    hub: pykka.ActorRef[Any],
    hooks: HookSet,
    rules: UpgradeRules,
    options: ConnectionOptions,
    environ: dict[str, Any],
    room: RoomID,
    identity: Identity,
    resolve: Resolver,
) -> None:
    """Upgrade this request and serve it as ``room``'s member until the connection ends.

    Before the upgrade it raises ``HubStopped``, ``ResolverRejected`` (chained to what the
    resolver raised), ``MissingParticipantID`` or ``HandshakeRejected``; after it, nothing.
    """
    if not hub.is_alive():
        raise HubStopped()
    try:
        pid = resolve(room, identity)
    except Exception as exc:
        raise ResolverRejected() from exc
    if not pid:
        raise MissingParticipantID()
    local = _local_address(environ) if rules.allowed_hosts is None else None
    check_upgrade(environ, rules, local)
    try:
        conn = Connection(environ, options)
    except OSError as exc:
        if exc.errno in EXHAUSTED:
            raise HandshakeRejected(EXHAUSTED_REASON, 503) from exc
        raise HandshakeRejected("the upgrade failed: the connection broke", 400) from exc
    except Exception as exc:
        raise HandshakeRejected(f"the upgrade failed: {exc}", 400) from exc
    environ["wsroom.upgraded"] = True
    _run(hub, hooks, conn, room, ParticipantID(pid), identity)


def _local_address(environ: dict[str, Any]) -> str | None:
    """The address the connection arrived on (for the default host rule), when known."""
    sock = request_socket(environ)
    try:
        address = sock.getsockname() if sock is not None else None
    except (OSError, AttributeError):
        return None
    return str(address[0]) if isinstance(address, tuple) and address else None


def _run(
    hub: pykka.ActorRef[Any],
    hooks: HookSet,
    conn: Connection,
    room: RoomID,
    pid: ParticipantID,
    identity: Identity,
) -> None:
    window = gevent.lock.Semaphore(INBOUND_WINDOW)
    participant = ParticipantActor(hub, hooks, room, pid, identity, conn, window.release)
    try:
        hub.tell(m.ParticipantStarted(participant))
        participant.tell(m.Start())
    except pykka.ActorDeadError:
        conn.close(1001, "hub stopped")
    acks = participant.client_acks
    reader = (
        _Inbound(window, participant, conn)
        if acks is None
        else _NumberedInbound(window, participant, conn, acks)
    )
    code, reason = conn.run(reader.text)
    try:
        participant.tell(m.Ended(code, reason))
    except pykka.ActorDeadError:
        return
    participant.stop(block=True)


class _Inbound:
    """What the reader does with each whole text message: wait for room in the participant's
    inbound window, then tell it the message.

    An object, not a closure: a connection's closure and its cells were eight more objects for
    the garbage collector to walk in every full collection, for the connection's whole life.
    """

    __slots__ = ("conn", "participant", "window")

    message: type[m.Inbound] | type[m.NumberedInbound] = m.Inbound

    def __init__(
        self, window: gevent.lock.Semaphore, participant: ParticipantActor, conn: Connection
    ) -> None:
        self.window = window
        self.participant = participant
        self.conn = conn

    def text(self, text: str) -> None:
        """Hand one message to the participant (unless it is gone: the hub stopped)."""
        window = self.window
        while not window.acquire(timeout=_WINDOW_POLL):
            if not self.participant.is_alive():
                return
        try:
            self.participant.tell(self.message(text))
        except pykka.ActorDeadError:
            window.release()
            self.conn.close(1001, "hub stopped")


class _NumberedInbound(_Inbound):
    """A resume connection's (contract §7): its frames go to the participant's numbering, and
    its acks straight to the room's cell, with no window slot, no participant greenlet and no
    message."""

    __slots__ = ("acks", "first")

    message = m.NumberedInbound

    def __init__(
        self,
        window: gevent.lock.Semaphore,
        participant: ParticipantActor,
        conn: Connection,
        acks: ClientAcks,
    ) -> None:
        super().__init__(window, participant, conn)
        self.acks = acks
        self.first = True

    def text(self, text: str) -> None:
        # The first frame is always the participant's (a resume, or an ack of nothing that
        # starts afresh); so is an ack written some other way.
        if self.first:
            self.first = False
        else:
            seq = quick_ack(text)
            if seq is not None:
                self.acks.note(seq)
                return
        super().text(text)
